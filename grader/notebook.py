"""Grading a notebook from inside it: the last cell of each exercise notebook is

    from grader import notebook
    notebook.check(week=2)

which grades the notebook's code as saved (in Colab: as the editor holds it), never the kernel's live
objects: the notebook is copied into a fresh folder and graded by `course grade` in a new process,
behind the same sandbox as every grading. The scorecard shows as a table, with the feedback of every
check that lost points.

Which notebook is this? Jupyter (JupyterLab, Notebook 7, nbclient) names it in `$JPY_SESSION_NAME`,
VS Code in `__vsc_ipynb_file__`, and Colab hands it over on request; elsewhere, pass its path:
`notebook.check(week=2, notebook="week2_neural_networks.ipynb")`.
"""

import dataclasses
import html
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from grader import intake
from grader.grading import WEEKS
from grader.notebook_source import MAX_NOTEBOOK_BYTES

IN_GRADED_CHILD = "COURSE_GRADING_CHILD"  # set by the sandbox in the process that imports graded code
WEEK_IN_NAME = re.compile(r"week[ _-]?(\d)", re.IGNORECASE)
COLAB_TIMEOUT_S = 30


class NotebookCheckError(RuntimeError):
    """The notebook could not be found or graded; the message says what to do."""


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    score: float
    max_score: float
    status: str
    feedback: list[str]


@dataclasses.dataclass(frozen=True)
class Scorecard:
    """A week's scorecard, shown as a table in a notebook (`_repr_html_`) and as text elsewhere."""

    week: int
    notebook: str
    score: float
    max_score: float
    rows: list[Row]
    summary: str

    def __str__(self) -> str:
        lines = [f"Week {self.week} ({self.notebook}): {self.score:g}/{self.max_score:g} points"]
        for row in self.rows:
            lines.append(f"  {row.score:g}/{row.max_score:g}  {row.name}  [{row.status}]")
            lines.extend(f"      {line}" for line in row.feedback if row.score < row.max_score)
        return "\n".join([*lines, self.summary])

    __repr__ = __str__

    def _repr_html_(self) -> str:
        cells = []
        for row in self.rows:
            lost = row.score < row.max_score
            feedback = "<br>".join(html.escape(line) for line in row.feedback) if lost else ""
            colour = "#fde2e1" if lost else "#e3f6e5"
            cells.append(f'<tr style="background:{colour}"><td style="text-align:left">{html.escape(row.name)}</td>'
                         f"<td>{row.score:g}/{row.max_score:g}</td><td>{html.escape(row.status)}</td>"
                         f'<td style="text-align:left">{feedback}</td></tr>')
        return (f"<p><b>Week {self.week}: {self.score:g}/{self.max_score:g} points</b> "
                f"({html.escape(self.notebook)})</p>"
                "<table><tr><th>check</th><th>points</th><th>status</th><th>feedback</th></tr>"
                + "".join(cells) + f"</table><p>{html.escape(self.summary)}</p>")


def check(week: int | None = None, notebook: str | os.PathLike | None = None, timeout: float | None = None):
    """Grades this notebook's saved code as week `week` (default: the week in its file name) and returns
    its Scorecard, which a notebook shows as a table. `notebook`: its path, where it cannot be found
    by itself. Inside a grading (the graded module is the notebook's code) it does nothing."""
    if os.environ.get(IN_GRADED_CHILD):
        return None
    data, name, saved = _this_notebook(notebook)
    week = week if week is not None else _week_of(name)
    if week not in WEEKS:
        raise NotebookCheckError(f"week must be one of {sorted(WEEKS)}, not {week!r}")
    with tempfile.TemporaryDirectory(prefix="course-notebook-") as folder:
        Path(folder, f"{WEEKS[week]}.ipynb").write_bytes(data)
        results = Path(folder, "results.json")
        command = [sys.executable, "-m", "grader.cli", str(week), "--target", folder, "--json", str(results), "--quiet"]
        if timeout is not None:
            command += ["--timeout", str(timeout)]
        finished = subprocess.run(command, capture_output=True, text=True, cwd=folder)
        if finished.returncode != 0 or not results.exists():
            raise NotebookCheckError(f"grading did not run (course grade exit {finished.returncode}): "
                                     f"{(finished.stderr or finished.stdout).strip()[-2000:]}")
        graded = json.loads(results.read_text())
    rows = [_row(test) for test in graded["tests"]]
    summary = f"graded {name} {saved}; {graded['output'].splitlines()[0]}; sandbox: {graded['extra_data']['environment'].get('sandbox', '?')}"
    return Scorecard(week, name, graded["score"], graded["extra_data"]["max_score"], rows, summary)


def _row(test: dict) -> Row:
    """A test of results.json: its output's first line is "Task T (function): status", then the feedback."""
    first, *feedback = test["output"].splitlines() or [""]
    status = first.rsplit(": ", 1)[-1] if ": " in first else test["status"]
    name = test["name"].split(" / ", 1)[-1]
    return Row(name, test["score"], test["max_score"], status, feedback)


def _week_of(name: str) -> int:
    match = WEEK_IN_NAME.search(name)
    if not match:
        raise NotebookCheckError(f"cannot tell the week from the notebook's name {name!r}: pass it, e.g. "
                                 "notebook.check(week=2)")
    return int(match[1])


def _this_notebook(path) -> tuple[bytes, str, str]:
    """(the notebook's bytes, its name, when it was saved) for `path`, or the notebook this kernel runs."""
    if path is None and "google.colab" in sys.modules:
        from google.colab import _message  # noqa: PLC0415 - Colab's own module, only in Colab

        reply = _message.blocking_request("get_ipynb", timeout_sec=COLAB_TIMEOUT_S)
        if not reply or "ipynb" not in reply:
            raise NotebookCheckError("Colab did not hand over this notebook; try again, or save a copy and pass its path")
        return json.dumps(reply["ipynb"]).encode(), "this Colab notebook", "as the editor holds it"
    path = path or _jupyter_notebook() or _vscode_notebook()
    if not path:
        raise NotebookCheckError("cannot tell which notebook this is: pass its path, e.g. "
                                 "notebook.check(week=2, notebook='week2_neural_networks.ipynb')")
    path = Path(path).expanduser().absolute()
    try:
        data = intake.read_file(path.parent, path.name, MAX_NOTEBOOK_BYTES)
        saved = time.strftime("%H:%M:%S", time.localtime(path.lstat().st_mtime))
    except (OSError, intake.Refused) as error:
        raise NotebookCheckError(f"cannot read the notebook {path}: {error}") from None
    return data, path.name, f"as saved at {saved} (save it first to grade your latest changes)"


def _jupyter_notebook() -> Path | None:
    """The notebook Jupyter started this kernel for: `$JPY_SESSION_NAME` is its path, absolute or relative
    to the server's folder, while the kernel runs in the notebook's own folder."""
    named = os.environ.get("JPY_SESSION_NAME")
    if not named:
        return None
    named = Path(named).expanduser()
    candidates = [named] if named.is_absolute() else [Path.cwd() / named, Path.cwd() / named.name]
    return next((candidate for candidate in candidates if candidate.is_file()), candidates[0])


def _vscode_notebook() -> str | None:
    try:
        from IPython import get_ipython  # noqa: PLC0415 - only inside a kernel
    except ImportError:
        return None
    shell = get_ipython()
    return shell.user_ns.get("__vsc_ipynb_file__") if shell is not None else None
