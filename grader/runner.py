"""The grader's engine: `grade(weeks, target, settings)` grades the week modules in the folder `target`
and returns a `WeekReport` per week. `course grade`, `course grade-batch` and the Gradescope entry call
it; the pytest session (`grader/conftest.py`) is the same engine seen through pytest (`start`).

One week, top to bottom (`grade_week`): the submitted module is read as a regular file
(`grader.intake`); its probes run in a sandboxed child (`grader.child_run`); each check is judged
(`grader.checks`) against the reference evidence (`grader.reference`); integrity flags are read from
its source (`grader.integrity`).
"""

import dataclasses
import difflib
import itertools
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from grader import evidence as ev
from grader import intake, integrity, notebook_source
from grader.checks import Result, judge_check
from grader.child_run import ChildRun, run_child, sandbox_level
from grader.grading import REPO, Settings, WEEKS, checks_module, hidden_seed, without_seed
from grader.reference import load_folder, reference_folder


@dataclasses.dataclass
class WeekReport:
    week: int
    results: list[Result]
    seconds: float
    output: str
    environment: dict
    public_only: bool = False  # the hidden checks were not graded (a student release)
    integrity: list[str] = dataclasses.field(default_factory=list)  # grader.integrity's flags, for review


def grade(weeks: list[int], target: Path, settings: Settings) -> list[WeekReport]:
    """Grades `weeks` of the folder `target`, `settings.jobs` weeks at a time; the reports in week order.
    Raises what stops a grading: `sandbox.Unavailable`, `reference.ReferenceEvidenceError`,
    `child_run.InfrastructureError` (never the submission's doing)."""
    with ThreadPoolExecutor(max_workers=max(1, settings.jobs)) as pool:
        futures = start(pool, weeks, target, settings)
        return [futures[week].result() for week in sorted(weeks)]


def start(pool: ThreadPoolExecutor, weeks: list[int], target: Path, settings: Settings) -> dict[int, Future]:
    """Starts grading each of `weeks` on `pool`, the slowest first (later weeks have bigger models:
    starting them first keeps every worker busy to the end); {week: its future WeekReport}."""
    return {week: pool.submit(grade_week, week, target, settings) for week in sorted(weeks, reverse=True)}


def grade_week(week: int, target: Path, settings: Settings) -> WeekReport:
    """Grades the module of `week` found in the folder `target`."""
    began = time.perf_counter()
    module = checks_module(week)
    folder = reference_folder(week, settings)
    expected = load_folder(folder)
    module_file = target / f"{WEEKS[week]}.py"
    source, reason, notebook = read_submission(target, WEEKS[week])
    graded_name = f"{WEEKS[week]}.ipynb" if notebook else module_file.name
    if source is None:
        run = ChildRun({}, reason, None, "", 0.0)
    else:
        given = folder / "__setup__.npz"
        run = run_child(week, source, "student", settings, given if given.exists() else None)
    module_record = run.evidence.get("__module__")
    missing_reason = run.missing_reason
    if module_record is not None and ev.text(module_record, ev.STATUS) != "ok":
        where = ev.text(module_record, ev.WHERE)
        missing_reason = (f"not graded: importing {graded_name} failed: {ev.text(module_record, ev.MESSAGE)}"
                          + (f" (at {where})" if where else ""))
    seed = hidden_seed(settings)
    public_only = seed is None
    results = [
        judge_check(check, week, run.evidence.get(check.probe), expected.get(check.probe),
                    run.reasons.get(check.probe, missing_reason))
        for check in module.CHECKS if not (check.hidden and public_only)
    ]

    def shown(line: str) -> str:  # without the hidden seed; a notebook's lines named as its cells
        line = without_seed(line, seed)
        return notebook.located(line, module_file.name, graded_name) if notebook else line

    results = [dataclasses.replace(result, feedback=[shown(line) for line in result.feedback],
                                   self_reported=[shown(line) for line in result.self_reported])
               for result in without_misleading_hidden_hints(results)]
    environment = {key[4:]: ev.text(record, key) for record in [expected.get("__module__", {})]
                   for key in record if key.startswith("env:")}
    environment["sandbox"] = run.sandbox or sandbox_level(settings)
    flags = [shown(flag) for flag in integrity.scan(source, module_file.name)] if source is not None else []
    return WeekReport(week, results, time.perf_counter() - began, shown(run.output), environment, public_only, flags)


def read_submission(target: Path, name: str) -> tuple[bytes | None, str, notebook_source.Program | None]:
    """(the source graded as the module `name`.py of the folder `target`, why there is none, the notebook
    it came from). The module is `name.py`, else the code cells of the notebook `name.ipynb`; each is
    read once, here, as a regular file only, never through a link (see grader.intake)."""
    module, notebook = f"{name}.py", f"{name}.ipynb"
    try:
        return intake.read_file(target, module), "", None
    except FileNotFoundError:
        pass
    except intake.Refused as error:
        return None, str(error), None
    try:
        data = intake.read_file(target, notebook, notebook_source.MAX_NOTEBOOK_BYTES)
        program = notebook_source.program(data, notebook, module)
    except FileNotFoundError:
        return None, f"missing file: there is no {module} (nor {notebook}) in {target}{_nearest(target, module)}", None
    except intake.Refused as error:
        return None, str(error), None
    except notebook_source.NotebookError as error:
        return None, f"not graded: {error}", None
    return program.source, "", program


def without_misleading_hidden_hints(results: list[Result]) -> list[Result]:
    """A hidden check's hint ("when the public checks pass and this fails, something is fixed to the
    public inputs") only where its task's public checks passed: otherwise it would send a student
    after a fault that is not there."""
    public_lost = {result.check.task for result in results if not result.check.hidden and result.score < result.max_score}
    return [dataclasses.replace(result, feedback=[line for line in result.feedback if line != f"hint: {result.check.hint}"])
            if result.check.hidden and result.check.task in public_lost else result for result in results]


def _nearest(folder: Path, name: str) -> str:
    """" (found NAME)" for the file in `folder` whose name is closest to `name` (a misnamed or
    misplaced module: Week1_Regression.py, week1.py), else ""; names only, nothing is opened."""
    try:
        with os.scandir(folder) as entries:
            names = [entry.name for entry in itertools.islice(entries, 10_000)]
    except OSError:
        return ""
    by_lower = {found.lower(): found for found in names}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (found {by_lower[close[0]]})" if close else ""


def resolve_target(target: str) -> Path:
    if target in ("exercises", "solutions"):
        return REPO / target
    path = Path(target).expanduser().resolve()
    if not path.is_dir():
        raise ValueError(f"--target must be 'exercises', 'solutions' or a folder; {target!r} is not a folder")
    return path
