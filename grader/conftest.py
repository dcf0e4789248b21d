"""The grader as pytest tests: every check of every week is one test in `grader/test_week*.py`.

    python -m pytest grader                         # grades exercises/
    python -m pytest grader --target solutions      # or --target path/to/a/folder/of/week/modules
    python -m pytest grader -k conv2d -x -q         # -k, -m task_3_1, -m week3, --lf, --junitxml...

This is the grader's engine (`grader.runner`) seen through pytest: once the tests are selected, each
week that has a selected test is graded once by `runner.start` (in sandboxed children, two weeks at
a time; the submitted code never runs in this process), and each test reads its check's Result from
that week's report, in memory. A test passes with full marks; a failing test's message is the
check's feedback, and its points (partial credit included) are recorded as the test's `score`
property, which the JUnit XML shows. The terminal summary ends with a line per graded week.
"""

import re
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from grader import child_run, cli, grading, reference, report, runner, sandbox

GRADING = pytest.StashKey["Grading"]()


def pytest_addoption(parser):
    group = parser.getgroup("grader", "grading week modules against the reference")
    group.addoption("--target", default="exercises",
                    help="'exercises' (default), 'solutions', or a folder holding week modules")
    cli.add_grading_options(group.addoption, timeout_flag="--week-timeout")  # --timeout is pytest-timeout's
    group.addoption("--protect", action="append", default=[], metavar="PATH",
                    help="a path the submitted code must not read (repeatable)")
    group.addoption("--grade-jobs", type=int, default=grading.Settings.jobs, help="weeks graded at once")
    group.addoption("--grade-cache-dir", default=None, metavar="DIR",
                    help="where the reference evidence is cached (default: $COURSE_CACHE_DIR, else ~/.cache)")
    group.addoption("--grade-progress", action="store_true",
                    help="print a line on stderr as each check starts (course grade does at a terminal)")


def pytest_configure(config):
    known = set()
    for week in grading.WEEKS:
        config.addinivalue_line("markers", f"week{week}: the checks of week {week}")
        known.add(f"week{week}")
        for task in sorted({check.task for check in grading.checks_module(week).CHECKS}):
            config.addinivalue_line("markers", f"{task_marker(task)}: the checks of task {task}")
            known.add(task_marker(task))
    expression = config.getoption("markexpr", "") or ""
    if unknown := [name for name in re.findall(r"\b(?:week\d+|task_\d+_\d+)\b", expression) if name not in known]:
        weeks = sorted(grading.WEEKS)
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
        for check in grading.checks_module(week).CHECKS])


def pytest_collection_finish(session):
    """Starts grading the weeks of the selected tests (after -k, -m and --lf have chosen them)."""
    if session.config.option.collectonly:
        return
    weeks = sorted({item.module.WEEK for item in session.items if hasattr(item.module, "WEEK")})
    session.config.stash[GRADING].start(weeks)


def pytest_sessionfinish(session):
    session.config.stash[GRADING].finish()


def pytest_terminal_summary(terminalreporter, config):
    """A line per graded week: "grader: week 3 graded in 4.2 s (sandbox: bubblewrap)"."""
    for line in config.stash[GRADING].summary_lines():
        terminalreporter.write_line(line)


class Grading:
    """The weeks this session grades (`runner.start`), each a future WeekReport that its tests wait on."""

    def __init__(self, config):
        option = config.getoption
        self.target_text = option("--target")
        options = {"timeout": option("--week-timeout"), "probe_timeout": option("--probe-timeout"),
                   "memory_gb": option("--memory-gb"), "reference_dir": option("--reference-dir"),
                   "sandbox": option("--sandbox"), "progress": option("--grade-progress")}
        self.settings = grading.Settings.from_options(options, jobs=option("--grade-jobs"),
                                                     protected=tuple(Path(path) for path in option("--protect")))
        if option("--grade-cache-dir"):
            self.settings.cache_dir = Path(option("--grade-cache-dir"))
        self.weeks: dict[int, Future] = {}
        self.pool = None

    def start(self, weeks: list[int]) -> None:
        if not weeks:
            return
        try:
            target = runner.resolve_target(self.target_text)
        except ValueError as error:
            raise pytest.UsageError(f"--target: {error}") from None
        self.pool = ThreadPoolExecutor(max_workers=max(1, self.settings.jobs))
        self.weeks = runner.start(self.pool, weeks, target, self.settings)

    def result(self, week: int, check):
        """The Result of `check`, waiting for its week to be graded."""
        try:
            week_report = self.weeks[week].result()
        except (sandbox.Unavailable, reference.ReferenceEvidenceError, child_run.InfrastructureError) as error:
            pytest.fail(f"grading did not run: {report.printable(str(error), lines=True)}", pytrace=False)
        result = next((result for result in week_report.results if result.check.name == check.name), None)
        if result is None:
            pytest.skip("a hidden check: graded where the solutions are (by your instructor), on inputs that no "
                        "student release contains")
        return result

    def finish(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True)

    def summary_lines(self) -> list[str]:
        """"grader: week N graded in S s (sandbox: LEVEL)", or why it was not, for each week this session graded."""
        lines = []
        for week, future in sorted(self.weeks.items()):
            if future.exception() is not None:
                lines.append(f"grader: week {week} not graded: {type(future.exception()).__name__}")
            else:
                week_report = future.result()
                lines.append(f"grader: week {week} graded in {week_report.seconds:.1f} s "
                             f"(sandbox: {week_report.environment.get('sandbox', '?')})")
        return lines


@pytest.fixture(scope="session")
def session_grading(request) -> Grading:
    return request.config.stash[GRADING]


@pytest.fixture
def graded(request, session_grading):
    """Judges a check of the test's week: `graded(check)` fails the test unless it earned full marks."""

    def judge(check):
        result = session_grading.result(request.module.WEEK, check)
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
