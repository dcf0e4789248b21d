"""`course lessons`: lists the lessons and writes them as Jupyter notebooks.

    course lessons                                  # write notebooks/weekN_*.ipynb
    course lessons week3 --out ~/cnn --open         # one lesson, then open it in Jupyter
    course lessons --execute --target solutions     # run them too, outputs saved in the notebooks

The lessons are jupytext percent scripts (`course/lessons/weekN_*.py`): plain Python, diff-friendly,
with `# %% [markdown]` cells. jupytext turns each into an `.ipynb`; nbclient runs it in a "python3"
kernel, which jupyter_client starts with this very interpreter (`sys.executable`).
"""

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from course import lessons
from course import weeks as course_weeks

LESSON_DIR = Path(__file__).resolve().parent
REPO = LESSON_DIR.parents[1]
DEFAULT_OUT = "notebooks"
CELL_TIMEOUT_S = 600


def lesson_path(module_name: str) -> Path:
    """The percent script of lesson `module_name`, e.g. course/lessons/week3_convolutions.py."""
    return LESSON_DIR / f"{module_name}.py"


def select(weeks: list[str]) -> list[str]:
    """Lesson module names for "3", "week3" or "week3_convolutions" (all lessons when `weeks` is empty)."""
    if not weeks:
        return list(lessons.LESSONS.values())
    chosen = []
    for week in weeks:
        try:
            chosen.append(lessons.LESSONS[course_weeks.week_number(week)])
        except ValueError:
            raise lessons.LessonError(f"unknown lesson {week!r}; valid: 1-6, week1-week6 or a module name") from None
    return chosen


def title(module_name: str) -> str:
    """The lesson's first Markdown heading, e.g. "Week 3: convolution and pooling by hand"."""
    for line in lesson_path(module_name).read_text().splitlines():
        if line.startswith("# # "):
            return line[4:].strip()
    return module_name


def read_notebook(module_name: str):
    """The lesson as an nbformat notebook (no outputs)."""
    import jupytext

    return jupytext.read(lesson_path(module_name))


def execute(notebook, *, target: str = "solutions", full: bool = False, timeout: int = CELL_TIMEOUT_S):
    """Runs `notebook` top to bottom in a fresh python3 kernel started in the repository root.

    The kernel gets COURSE_LESSON_TARGET=`target`, COURSE_LESSON_FULL as `full`, and matplotlib's
    Agg backend (nothing needs a display). Fills in the outputs of `notebook` and returns it.
    Raises nbclient's CellExecutionError at the first failing cell (a stub's NotImplementedError
    included, whose output is the fill-in line); the cells before it keep their outputs.
    """
    import nbclient

    lessons.check_target(target, "target")
    if target not in lessons.TARGETS:
        target = str(Path(target).resolve())  # the kernel starts in the repository root
    env = {**os.environ, lessons.TARGET_VARIABLE: target, lessons.FULL_VARIABLE: "1" if full else "0",
           "MPLBACKEND": "Agg"}
    client = nbclient.NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                                     resources={"metadata": {"path": str(REPO)}})
    client.execute(env=env)
    return notebook


def open_in_jupyter(path: Path) -> int:
    """Opens `path` (a notebook or folder) in JupyterLab or the classic notebook, if installed."""
    for command in (["jupyter-lab"], ["jupyter-notebook"]):
        executable = shutil.which(command[0])
        if executable:
            return subprocess.call([executable, str(path)])
    print(f"Jupyter is not installed here: `pip install jupyterlab`, then `jupyter lab {path}`.")
    return 1


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="course lessons", description="List the lessons and write them as notebooks.")
    top.add_argument("weeks", nargs="*", metavar="WEEK", help="lessons to write, e.g. 3 or week3 (default: all)")
    top.add_argument("--out", default=DEFAULT_OUT, help=f"folder for the .ipynb files (default: {DEFAULT_OUT}/)")
    top.add_argument("--execute", action="store_true", help="run each notebook and keep its outputs")
    top.add_argument("--target", default=None,
                     help=f"with --execute: run exercises/, solutions/ or a folder of week modules "
                          f"(default: ${lessons.TARGET_VARIABLE} or exercises)")
    top.add_argument("--full", action="store_true", help="with --execute: use the real datasets ($COURSE_DATA_DIR)")
    top.add_argument("--open", action="store_true", help="open the notebooks in Jupyter afterwards")
    top.add_argument("--list", action="store_true", help="only list the lessons")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        names = select(args.weeks)
        target = args.target or lessons.target()
        lessons.check_target(target, "--target")
    except lessons.LessonError as error:
        print(f"course lessons: error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    failed = 0
    for name in names:
        print(f"{name:24s} {title(name)}")
        if args.list:
            continue
        notebook = read_notebook(name)
        if args.execute:
            failed += not run_and_report(notebook, target, args.full)
        import jupytext

        out.mkdir(parents=True, exist_ok=True)
        jupytext.write(notebook, out / f"{name}.ipynb")
        print(f"{'':24s} -> {out / f'{name}.ipynb'}")
    if args.open and not args.list:
        return open_in_jupyter(out / f"{names[0]}.ipynb" if len(names) == 1 else out)
    return 1 if failed else 0


def run_and_report(notebook, target: str, full: bool) -> bool:
    """Executes `notebook`, printing how it went; True unless a cell failed for another reason than a stub."""
    import nbclient.exceptions

    start = time.perf_counter()
    try:
        execute(notebook, target=target, full=full)
    except nbclient.exceptions.CellExecutionError as error:
        stub = error.ename == "NotImplementedError" and fill_in_lines(notebook)
        if stub:
            print(f"{'':24s} stopped at an exercise to write: {stub[-1].splitlines()[0]}")
            return True
        print(f"{'':24s} FAILED: {error.ename}: {error.evalue}", file=sys.stderr)
        return False
    print(f"{'':24s} ran against {target}/ in {time.perf_counter() - start:.0f} s")
    return True


def fill_in_lines(notebook) -> list[str]:
    """The fill-in messages printed by the notebook's cells (see `course.lessons.fill_in_message`)."""
    return [output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
            if output.get("output_type") == "stream" and output.get("text", "").startswith("fill in `")]
