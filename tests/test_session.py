"""Tests of the grader as a pytest session (grader/conftest.py, grader/test_week*.py): `python -m pytest
grader` grades like any pytest suite through the same engine as `course grade`, selection grades only
the selected weeks, and `course grade` reports exactly what the tests judged."""

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from grader import cli, grading
from tests.test_grader import cases, submission

REPO = Path(__file__).resolve().parent.parent
ALL_CHECKS = sum(len(grading.checks_module(week).CHECKS) for week in grading.WEEKS)


def pytest_grader(tmp_path: Path, *options: str, cache: bool = False) -> tuple[int, list[ET.Element], dict]:
    """Runs `python -m pytest grader OPTIONS` in a fresh process; returns its exit code, its JUnit
    testcases and the weeks it graded (from its terminal summary's "grader: week N graded" lines)."""
    junit = tmp_path / "junit.xml"
    junit.unlink(missing_ok=True)
    command = [sys.executable, "-m", "pytest", "grader", *options, f"--junitxml={junit}",
               "-o", f"cache_dir={tmp_path / 'pytest-cache'}"]
    if not cache:
        command += ["-p", "no:cacheprovider"]
    finished = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert finished.returncode in (0, 1, 5), finished.stdout[-3000:] + finished.stderr[-3000:]
    cases_run = ET.parse(junit).getroot().findall(".//testcase")
    graded = [int(week) for week in re.findall(r"^grader: week (\d+) graded in ", finished.stdout, re.M)]
    return finished.returncode, cases_run, graded


def properties(case: ET.Element) -> dict:
    """A testcase's recorded points: {"score": ..., "max_score": ...} as numbers, and its status."""
    found = {item.get("name"): item.get("value") for item in case.iter("property")}
    return {**found, "score": float(found["score"]), "max_score": float(found["max_score"])}


def test_project_tests_and_grader_checks_do_not_mix():
    project = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"],
                             cwd=REPO, capture_output=True, text=True, timeout=300)
    assert "grader/test_week" not in project.stdout
    graded = subprocess.run([sys.executable, "-m", "pytest", "grader", "--collect-only", "-q", "-p", "no:cacheprovider"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    collected = [line for line in graded.stdout.splitlines() if "::" in line]
    assert len(collected) == ALL_CHECKS
    assert all(line.startswith("grader/test_week") and "::test_check[" in line for line in collected)


def test_fresh_exercises_fail_every_check_as_not_attempted(tmp_path):
    code, testcases, graded = pytest_grader(tmp_path)
    assert code == 1 and graded == sorted(grading.WEEKS)
    assert len(testcases) == ALL_CHECKS
    for case in testcases:
        failure = case.find("failure")
        assert failure is not None and "not attempted" in failure.get("message"), case.get("name")
        assert "Traceback" not in (failure.text or "") and "grader/" not in (failure.text or "")


def test_solutions_pass_every_check(tmp_path):
    code, testcases, graded = pytest_grader(tmp_path, "--target", "solutions")
    assert code == 0 and graded == sorted(grading.WEEKS)
    assert len(testcases) == ALL_CHECKS
    assert all(properties(case)["score"] == properties(case)["max_score"] for case in testcases)


@pytest.mark.parametrize("selection, week, function", [(["-k", "conv2d"], 3, "conv2d"),
                                                       (["-m", "task_1_2"], 1, "mse_loss")])
def test_selection_grades_only_the_selected_week(tmp_path, selection, week, function):
    code, testcases, graded = pytest_grader(tmp_path, "--target", "solutions", *selection)
    assert code == 0 and graded == [week]
    expected = [check for check in grading.checks_module(week).CHECKS if check.function == function]
    assert len(testcases) == len(expected) > 0


def test_last_failed_reruns_only_the_failures_and_feedback_is_the_message(tmp_path):
    bug = next(case for case in cases.BUGS if case["name"] == "mse summed instead of averaged")
    folder = submission(bug, tmp_path / "submission")
    code, testcases, _ = pytest_grader(tmp_path, "--target", str(folder), "-m", "week1", cache=True)
    failed = [case for case in testcases if case.find("failure") is not None]
    assert code == 1 and 0 < len(failed) < len(testcases)
    message = failed[0].find("failure").get("message")
    assert "Task 1.2 (mse_loss)" in message and "expected" in message and "got" in message
    code, rerun, graded = pytest_grader(tmp_path, "--target", str(folder), "--lf", cache=True)
    assert graded == [1]
    assert sorted(case.get("name") for case in rerun) == sorted(case.get("name") for case in failed)


def test_course_grade_scores_are_the_tests_scores(tmp_path, capsys):
    bug = next(case for case in cases.BUGS if case["name"] == "mse summed instead of averaged")
    folder = submission(bug, tmp_path / "submission")
    assert cli.main(["1", "--target", str(folder), "--json", str(tmp_path / "results.json"),
                     "--junit", str(tmp_path / "course.xml")]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    _, testcases, _ = pytest_grader(tmp_path, "--target", str(folder), "-m", "week1")
    scores = {case.get("name"): properties(case)["score"] for case in testcases}
    assert results["score"] == pytest.approx(sum(scores.values()))
    passed = [case for case in testcases if case.find("failure") is None]
    assert all(properties(case)["score"] == properties(case)["max_score"] for case in passed)
    assert 0 < results["score"] < results["extra_data"]["max_score"]
    assert "TOTAL" in capsys.readouterr().out


def test_hostile_submission_through_pytest(tmp_path):
    case = next(case for case in cases.HOSTILE if case["name"] == "opens the solutions through dir_fd")
    folder = submission(case, tmp_path / "submission", {"REPO": REPO})
    code, testcases, graded = pytest_grader(tmp_path, "--target", str(folder), "-m", "task_1_1")
    assert code == 1 and graded == [1] and testcases
    assert all(case.find("failure") is not None for case in testcases)


def test_every_front_end_builds_its_settings_from_the_grading_options_alike():
    """`Settings.from_options` is the one reading of the grading options: `course grade`'s flags, the
    pytest session's and a Gradescope zip's config give the same settings for the same values."""
    from grader import conftest
    from grader.instructor import gradescope

    flags = ["--probe-timeout", "7", "--memory-gb", "1.5", "--sandbox", "none", "--reference-dir", "/recorded"]
    from_cli = grading.Settings.from_options(vars(cli.parser().parse_args(["--timeout", "30", *flags])), jobs=3)
    assert (from_cli.week_timeout_s, from_cli.probe_timeout_s, from_cli.memory_bytes, from_cli.sandbox,
            from_cli.reference_dir, from_cli.jobs) == (30.0, 7.0, int(1.5 * 2**30), "none", Path("/recorded"), 3)
    assert grading.Settings.from_options(vars(cli.parser().parse_args([]))) == grading.Settings()

    class PytestConfig:  # what conftest.Grading reads: pytest's getoption
        values = {"--target": "exercises", "--week-timeout": 30.0, "--probe-timeout": 7.0, "--memory-gb": 1.5,
                  "--sandbox": "none", "--reference-dir": "/recorded", "--grade-jobs": 3, "--protect": [],
                  "--grade-cache-dir": None, "--grade-progress": False}

        def getoption(self, name):
            return self.values[name]

    assert conftest.Grading(PytestConfig()).settings == from_cli
    config = {"week_timeout_s": 30, "probe_timeout_s": 7, "memory_gb": 1.5}
    zipped = gradescope.settings_for(Path("/autograder"), config)
    assert (zipped.week_timeout_s, zipped.probe_timeout_s, zipped.memory_bytes, zipped.reference_dir) == (
        30.0, 7.0, int(1.5 * 2**30), Path("/autograder/source") / gradescope.EVIDENCE)


def test_a_marker_of_a_week_or_task_that_does_not_exist_is_a_usage_error():
    finished = subprocess.run([sys.executable, "-m", "pytest", "grader", "-m", "week7", "-q", "-p", "no:cacheprovider"],
                              capture_output=True, text=True, cwd=REPO, timeout=300)
    assert finished.returncode == 4, finished.stdout + finished.stderr
    assert "there is no week7 (the weeks are week1 to week6" in finished.stdout + finished.stderr
