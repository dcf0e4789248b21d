"""Tests of the autograder: full marks for the solutions, zero for the exercises, a corpus of student
bugs that lose points exactly where they are, correct alternatives that keep full marks, and valid
Gradescope and JUnit reports. Hostile submissions are in test_sandbox.py.

The grading runs in child processes (one per week and case), two at a time; the reference
evidence is computed once per test session.
"""

import dataclasses
import importlib.util
import json
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from grader import cli, report, runner

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("grader_cases", REPO / "tests" / "grader_cases" / "cases.py")
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)


@pytest.fixture(scope="session")
def settings(tmp_path_factory) -> runner.Settings:
    return runner.Settings(cache_dir=tmp_path_factory.getbasetemp() / "course-cache", probe_timeout_s=60,
                           week_timeout_s=120)


def submission(case: dict, folder: Path, placeholders: dict | None = None) -> Path:
    """A folder holding the case's week module: the solution with the case's patches applied, and
    "{NAME}" in them replaced by `placeholders[NAME]` (and {RESULTS_PATH} by a results file there)."""
    name = runner.WEEKS[case["week"]]
    source = (REPO / "solutions" / f"{name}.py").read_text()
    values = {"RESULTS_PATH": str(folder / "results.json"), **(placeholders or {})}
    for old, new in case["patches"]:
        assert source.count(old) == 1, f"{case['name']}: patch target found {source.count(old)} times: {old!r}"
        for key, value in values.items():
            new = new.replace("{" + key + "}", str(value))
        source = source.replace(old, new)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(source)
    return folder


def grade_cases(case_list, root: Path, settings, placeholders: dict | None = None
                ) -> dict[str, runner.WeekReport | AssertionError]:
    """Grades every case, two at a time; a case whose patch no longer applies maps to its error."""

    def one(case):
        try:
            folder = submission(case, root / case["name"].replace(" ", "_").replace("/", "_"), placeholders)
        except AssertionError as error:
            return case["name"], error
        return case["name"], runner.grade_week(case["week"], folder, settings)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, case_list))


def by_task(week_report) -> dict[str, list]:
    if isinstance(week_report, AssertionError):
        raise week_report
    grouped = {}
    for result in week_report.results:
        grouped.setdefault(result.check.task, []).append(result)
    return grouped


@pytest.fixture(scope="session")
def solution_reports(settings) -> list[runner.WeekReport]:
    return runner.grade(sorted(runner.WEEKS), REPO / "solutions", settings)


@pytest.fixture(scope="session")
def bug_reports(settings, tmp_path_factory):
    return grade_cases(cases.BUGS, tmp_path_factory.mktemp("bugs"), settings)


@pytest.fixture(scope="session")
def alternative_reports(settings, tmp_path_factory):
    return grade_cases(cases.ALTERNATIVES, tmp_path_factory.mktemp("alternatives"), settings)


def test_solutions_score_full_marks(solution_reports):
    lost = [(r.week, r.check.name, r.status, r.feedback) for rep in solution_reports for r in rep.results
            if r.score != r.max_score]
    assert not lost
    score, maximum = report.totals(solution_reports)
    assert score == maximum > 0


def test_every_task_of_every_solution_is_graded(solution_reports):
    from course.publish import find_tasks

    for week_report in solution_reports:
        source = (REPO / "solutions" / f"{runner.WEEKS[week_report.week]}.py").read_text()
        tasks = {task.id: task.function for task in find_tasks(source)}
        graded = {r.check.task: r.check.function for r in week_report.results}
        assert graded == tasks, f"week {week_report.week}: checks name tasks {graded}, the solution has {tasks}"


def test_exercises_score_zero_and_say_not_attempted(settings):
    reports = runner.grade(sorted(runner.WEEKS), REPO / "exercises", settings)
    for result in report.all_results(reports):
        assert result.score == 0
        assert result.status == "not attempted", (result.check.name, result.feedback)
        assert result.feedback == [f"Task {result.check.task} ({result.check.function}): not attempted"]


@pytest.mark.parametrize("case", cases.BUGS, ids=[case["name"] for case in cases.BUGS])
def test_bug_loses_points_in_its_task_only(case, bug_reports):
    tasks = by_task(bug_reports[case["name"]])
    lost_here = [r for r in tasks[case["task"]] if r.score < r.max_score]
    assert lost_here, f"no points lost in task {case['task']}"
    for result in lost_here:
        assert result.feedback, "lost points need feedback"
        assert result.status in ("partial", "failed", "error")
    elsewhere = [(r.check.name, r.feedback) for task, results in tasks.items() if task != case["task"]
                 for r in results if r.score < r.max_score]
    assert not elsewhere


def test_bug_corpus_is_large_enough():
    assert len(cases.BUGS) >= 20
    assert len({case["task"] for case in cases.BUGS}) >= 15


def test_feedback_names_expected_and_got(bug_reports):
    lines = [line for r in bug_reports["mse summed instead of averaged"].results for line in r.feedback]
    assert any("max abs error" in line and "expected" in line and "got" in line for line in lines), lines
    lines = [line for r in bug_reports["conv2d pads the batch axis instead of the width"].results for line in r.feedback]
    assert any("expected shape" in line for line in lines), lines
    lines = [line for r in bug_reports["SimpleCNN missing bias"].results for line in r.feedback]
    assert any("parameter count" in line for line in lines), lines
    assert any("use_bias expected True, got False" in line for line in lines), lines


def test_partial_credit_inside_a_check(bug_reports):
    results = [r for r in bug_reports["mse summed instead of averaged"].results if r.check.task == "1.2"]
    assert all(0 < r.score < r.max_score for r in results)  # right shape and jit, wrong values


@pytest.mark.parametrize("case", cases.ALTERNATIVES, ids=[case["name"] for case in cases.ALTERNATIVES])
def test_correct_alternatives_score_full_marks(case, alternative_reports):
    week_report = alternative_reports[case["name"]]
    by_task(week_report)
    lost = [(r.check.name, r.feedback) for r in week_report.results if r.score < r.max_score]
    assert not lost


def test_there_are_enough_alternatives():
    assert len(cases.ALTERNATIVES) >= 5


def test_week_time_limit_stops_an_endless_import(settings, tmp_path):
    case = dict(name="endless import", week=1, patches=[("\n\nimport functools\n", "\n\nwhile True:\n    pass\n")])
    quick = dataclasses.replace(settings, week_timeout_s=8)
    week_report = runner.grade_week(1, submission(case, tmp_path), quick)
    assert all(r.score == 0 and r.status == "timeout" for r in week_report.results)
    assert "time limit" in week_report.results[0].feedback[0]
    assert week_report.seconds < 60


def validate_gradescope(data: dict) -> None:
    """The parts of Gradescope's results.json specification that a grader must respect."""
    assert set(data) <= {"score", "execution_time", "output", "output_format", "test_output_format",
                         "test_name_format", "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
    assert isinstance(data["score"], (int, float)) and isinstance(data["execution_time"], (int, float))
    assert data.get("visibility", "visible") in ("visible", "hidden", "after_due_date", "after_published")
    assert isinstance(data["tests"], list) and data["tests"]
    allowed = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format",
               "tags", "visibility", "extra_data"}
    for test in data["tests"]:
        assert set(test) <= allowed, set(test) - allowed
        assert isinstance(test["name"], str) and isinstance(test["output"], str)
        assert isinstance(test["score"], (int, float)) and isinstance(test["max_score"], (int, float))
        assert 0 <= test["score"] <= test["max_score"]
        assert test["status"] in ("passed", "failed")
        assert test["visibility"] in ("visible", "hidden", "after_due_date", "after_published")
        assert all(isinstance(tag, str) for tag in test["tags"])
    assert abs(data["score"] - sum(test["score"] for test in data["tests"])) < 1e-6
    environment = data["extra_data"]["environment"]
    for key in ("jax", "jaxlib", "flax", "backend", "device_count", "xla_flags"):
        assert key in environment


def test_cli_writes_gradescope_json_and_junit(settings, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(settings.cache_dir))
    json_path, junit_path = tmp_path / "results.json", tmp_path / "junit.xml"
    code = cli.main(["1", "week3", "--target", "solutions", "--json", str(json_path), "--junit", str(junit_path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "TOTAL" in printed and "100%" in printed
    data = json.loads(json_path.read_text())
    validate_gradescope(data)
    assert data["score"] == data["extra_data"]["max_score"]
    suites = ET.parse(junit_path).getroot()
    assert [suite.get("name") for suite in suites] == ["week1", "week3"]
    assert sum(int(suite.get("failures")) for suite in suites) == 0


def test_reports_of_a_buggy_submission(bug_reports):
    reports = [bug_reports["softmax normalised over the wrong axis"]]
    data = report.gradescope(reports, 1.0)
    validate_gradescope(data)
    failed = [test for test in data["tests"] if test["status"] == "failed"]
    assert failed and all("2.5" in test["name"] for test in failed)
    suites = ET.fromstring(report.junit(reports))
    assert len(suites.findall(".//failure")) == len(failed)
    assert "softmax" in report.scorecard(reports)


def test_cli_rejects_bad_usage(capsys):
    assert cli.main(["9"]) == 2
    assert cli.main(["--target", "/no/such/folder"]) == 2
    assert "course grade" in capsys.readouterr().err


def test_missing_week_module_is_reported(settings, tmp_path):
    week_report = runner.grade_week(1, tmp_path, settings)
    assert all(r.score == 0 and "there is no week1_regression.py" in r.feedback[0] for r in week_report.results)
