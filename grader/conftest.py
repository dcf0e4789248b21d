"""The grader as pytest tests: every check of every week is one test in `grader/test_week*.py`.

    python -m pytest grader                         # grades exercises/
    python -m pytest grader --target solutions      # or --target path/to/a/folder/of/week/modules
    python -m pytest grader -k conv2d -x -q         # -k, -m task_3_1, -m week3, --lf, --junitxml...

The submitted code never runs in this process. Once the tests are selected, each week that has a
selected test is graded once, in the sandboxed child (`grader.runner`, `grader.sandbox`), two
weeks at a time; every test then judges its check from that week's evidence. A test passes with
full marks; a failing test's message is the check's feedback, and its points (partial credit
included) are recorded as the test's `score` property, which the JUnit XML shows.
"""

import json
import re
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from grader import cli, report, runner, sandbox

GRADING = pytest.StashKey["Grading"]()


def pytest_addoption(parser):
    group = parser.getgroup("grader", "grading week modules against the reference")
    group.addoption("--target", default="exercises",
                    help="'exercises' (default), 'solutions', or a folder holding week modules")
    cli.add_grading_options(group.addoption, timeout_flag="--week-timeout")  # --timeout is pytest-timeout's
    group.addoption("--protect", action="append", default=[], metavar="PATH",
                    help="a path the submitted code must not read (repeatable)")
    group.addoption("--grade-jobs", type=int, default=runner.Settings.jobs, help="weeks graded at once")
    group.addoption("--grade-cache-dir", default=None, metavar="DIR",
                    help="where the reference evidence is cached (default: $COURSE_CACHE_DIR, else ~/.cache)")
    group.addoption("--grade-progress", action="store_true",
                    help="print a line on stderr as each check starts (course grade does at a terminal)")
    group.addoption("--grade-json", default=None, metavar="FILE",
                    help="write the graded weeks and every judged check here (for course grade and grade-batch)")


def pytest_configure(config):
    known = set()
    for week in runner.WEEKS:
        config.addinivalue_line("markers", f"week{week}: the checks of week {week}")
        known.add(f"week{week}")
        for task in sorted({check.task for check in runner.checks_module(week).CHECKS}):
            config.addinivalue_line("markers", f"{task_marker(task)}: the checks of task {task}")
            known.add(task_marker(task))
    expression = config.getoption("markexpr", "") or ""
    if unknown := [name for name in re.findall(r"\b(?:week\d+|task_\d+_\d+)\b", expression) if name not in known]:
        weeks = sorted(runner.WEEKS)
        raise pytest.UsageError(f"-m {expression!r}: there is no {', '.join(unknown)} (the weeks are week{weeks[0]} to "
                                f"week{weeks[-1]}; a task's marker is task_N_K, e.g. task_3_1)")
    config.stash[GRADING] = Grading(config)


def task_marker(task: str) -> str:
    """The marker of a task: "task_3_1" for task 3.1."""
    return "task_" + task.replace(".", "_")


def pytest_generate_tests(metafunc):
    """Parametrizes a week's `test_check` over the week's checks, each marked with its week and task."""
    if "check" not in metafunc.fixturenames:
        return
    week = metafunc.module.WEEK
    metafunc.parametrize("check", [
        pytest.param(check, id=f"{check.task} {check.name}",
                     marks=[getattr(pytest.mark, f"week{week}"), getattr(pytest.mark, task_marker(check.task))])
        for check in runner.checks_module(week).CHECKS])


def pytest_collection_finish(session):
    """Starts grading the weeks of the selected tests (after -k, -m and --lf have chosen them)."""
    if session.config.option.collectonly:
        return
    weeks = sorted({item.module.WEEK for item in session.items if hasattr(item.module, "WEEK")})
    session.config.stash[GRADING].start(weeks)


def pytest_sessionfinish(session):
    session.config.stash[GRADING].finish()


class Grading:
    """The weeks being graded for this session, and the checks judged so far."""

    def __init__(self, config):
        option = config.getoption
        self.target_text = option("--target")
        options = {"timeout": option("--week-timeout"), "probe_timeout": option("--probe-timeout"),
                   "memory_gb": option("--memory-gb"), "reference_dir": option("--reference-dir"),
                   "sandbox": option("--sandbox"), "progress": option("--grade-progress")}
        self.settings = runner.Settings.from_options(options, jobs=option("--grade-jobs"),
                                                     protected=tuple(Path(path) for path in option("--protect")))
        if option("--grade-cache-dir"):
            self.settings.cache_dir = Path(option("--grade-cache-dir"))
        self.json_path = option("--grade-json")
        self.weeks: dict[int, Future] = {}
        self.judged: dict[int, list] = {}
        self.pool = None

    def start(self, weeks: list[int]) -> None:
        if not weeks:
            return
        try:
            target = runner.resolve_target(self.target_text)
        except ValueError as error:
            raise pytest.UsageError(f"--target: {error}") from None
        self.pool = ThreadPoolExecutor(max_workers=max(1, self.settings.jobs))
        self.weeks = {week: self.pool.submit(runner.grade_week, week, target, self.settings) for week in weeks}

    def result(self, week: int, check):
        """The Result of `check`, waiting for its week to be graded."""
        try:
            week_report = self.weeks[week].result()
        except (sandbox.Unavailable, runner.ReferenceEvidenceError, runner.InfrastructureError) as error:
            pytest.fail(f"grading did not run: {report.printable(str(error), lines=True)}", pytrace=False)
        result = next((result for result in week_report.results if result.check.name == check.name), None)
        if result is None:
            pytest.skip("a hidden check: graded where the solutions are (by your instructor), on inputs that no "
                        "student release contains")
        self.judged.setdefault(week, []).append(result)
        return result

    def finish(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)
        if self.json_path:
            Path(self.json_path).write_text(json.dumps(self.summary(), indent=1))

    def summary(self) -> dict:
        """The graded weeks and their judged checks, for `course grade` and `grade-batch`."""
        weeks = []
        for week, future in sorted(self.weeks.items()):
            if future.exception() is not None:
                weeks.append({"week": week, "error": f"{type(future.exception()).__name__}: {future.exception()}"})
                continue
            week_report = future.result()
            judged = {result.check.name: result for result in self.judged.get(week, [])}
            weeks.append({"week": week, "seconds": week_report.seconds, "output": week_report.output,
                          "environment": week_report.environment, "public_only": week_report.public_only,
                          "integrity": week_report.integrity,
                          "results": [{"name": r.check.name, "score": r.score, "status": r.status,
                                       "feedback": r.feedback, "self_reported": r.self_reported}
                                      for r in judged.values()]})
        return {"target": self.target_text, "weeks": weeks}


@pytest.fixture(scope="session")
def grading(request) -> Grading:
    return request.config.stash[GRADING]


@pytest.fixture
def graded(request, grading):
    """Judges a check of the test's week: `graded(check)` fails the test unless it earned full marks."""

    def judge(check):
        result = grading.result(request.module.WEEK, check)
        request.node.user_properties += [("score", result.score), ("max_score", result.max_score),
                                         ("status", result.status)]
        if result.score < result.max_score:
            pytest.fail(failure_message(result), pytrace=False)

    return judge


def failure_message(result) -> str:
    """What a failing test says: the points, then the check's feedback, one line each."""
    lines = [f"Task {result.check.task} ({result.check.function}), {result.check.name}: {result.status}, "
             f"{result.score:g}/{result.max_score:g} points"]
    lines += ["  " + report.printable(line) for line in result.feedback if not line.startswith(f"Task {result.check.task} (")]
    return "\n".join(lines)
