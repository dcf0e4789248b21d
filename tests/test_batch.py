"""Tests of `course grade-batch`: a class of week-1 submissions (correct, partial, broken, hostile and
malformed) graded two at a time, killed midway, resumed, with a complete and correct gradebook."""

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from grader import batch, runner

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("grader_cases", REPO / "tests" / "grader_cases" / "cases.py")
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)
SOLUTION = (REPO / "solutions" / "week1_regression.py").read_text()
MODULE = "week1_regression.py"
BUGS = {case["name"]: case for case in cases.BUGS if case["week"] == 1}
HOSTILE = {case["name"]: case for case in cases.HOSTILE}
FULL, ERROR, PROBLEMS = "full", "error", "problems"


def patched(case: dict, results_path: Path) -> str:
    source = SOLUTION
    for old, new in case["patches"]:
        assert source.count(old) == 1, case["name"]
        source = source.replace(old, new.replace("{RESULTS_PATH}", str(results_path)))
    return source


def make_class(root: Path, out: Path) -> dict[str, tuple]:
    """Writes the submissions into `root`; returns {name: (expectation, detail)}."""
    expected = {}

    def folder(name: str, files: dict[str, str], expectation: tuple) -> None:
        (root / name).mkdir(parents=True)
        for file_name, text in files.items():
            (root / name / file_name).write_text(text)
        expected[name] = expectation

    folder("correct", {MODULE: SOLUTION}, (FULL, None))
    with zipfile.ZipFile(root / "correct_zip_with_wrapper.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"student/{MODULE}", SOLUTION)
        archive.writestr("__MACOSX/._student", "")
    expected["correct_zip_with_wrapper"] = (FULL, None)
    for index, name in enumerate(("mse summed instead of averaged", "sigmoid branches swapped", "standardize with ddof=1")):
        folder(f"partial_{index}", {MODULE: patched(BUGS[name], out)}, ("lost", BUGS[name]["task"]))
    folder("broken_syntax", {MODULE: SOLUTION.replace("def sigmoid(", "def sigmoid(:", 1)}, (PROBLEMS, "does not compile"))
    for index, name in enumerate(("os._exit(0)", "writes the results file", "always-equal object", "infinite loop",
                                  "reads the reference solutions", "sys.exit at import")):
        case = HOSTILE[name]
        source = patched(case, out / f"hostile_{index}" / "results.json")
        folder(f"hostile_{index}", {MODULE: source}, ("lost", case["task"]) if case["correct_elsewhere"] else ("zero", None))
    folder("extra_files", {MODULE: SOLUTION, "notes.txt": "my notes", "helper.py": "X = 1\n"},
           (PROBLEMS, "notes.txt"))
    folder("missing_files", {"README.txt": "I forgot"}, (ERROR, "no week module"))
    folder("wrong_name", {"Week1.py": SOLUTION}, (ERROR, "wrong file name 'Week1.py'"))
    (root / "symlink").mkdir()
    (root / "symlink" / MODULE).symlink_to(REPO / "solutions" / MODULE)
    expected["symlink"] = (ERROR, "symbolic link")
    with zipfile.ZipFile(root / "zip_bomb.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open(MODULE, "w", force_zip64=True) as member:
            for _ in range(48):
                member.write(bytes(2**20))
    expected["zip_bomb"] = (ERROR, "zip bomb")
    (root / "not_a_zip.zip").write_bytes(b"PK\x03\x04 garbage")
    expected["not_a_zip"] = (ERROR, "not a readable zip")
    (root / "tarball.tar.gz").write_bytes(b"\x1f\x8b")
    expected["tarball.tar.gz"] = (ERROR, "neither a folder nor a .zip")
    return expected


def command(root: Path, out: Path) -> list[str]:
    return [str(root), "--out", str(out), "--weeks", "1", "--jobs", "2", "--timeout", "60", "--probe-timeout", "6",
            "--quiet"]


def graded_results(out: Path) -> list[Path]:
    """results.json files of submissions whose code ran (not error rows)."""
    found = []
    for path in out.glob("*/results.json"):
        try:
            if json.loads(path.read_text())["extra_data"]["batch"]["status"] != batch.ERROR:
                found.append(path)
        except (OSError, ValueError):
            pass
    return found


def children_of(pid: int) -> list[int]:
    found = []
    for stat_file in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat_file.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat_file.parent.name))
    return found


def test_batch_survives_a_kill_and_resumes_to_a_complete_gradebook(tmp_path, capsys):
    root, out = tmp_path / "submissions", tmp_path / "out"
    root.mkdir()
    expected = make_class(root, out)
    assert len(expected) >= 12
    boot = f"import sys; from grader import batch; sys.exit(batch.main({command(root, out)!r}))"
    process = subprocess.Popen([sys.executable, "-c", boot], cwd=REPO, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline, children = time.monotonic() + 240, set()
    try:
        while len(graded_results(out)) < 3 and process.poll() is None and time.monotonic() < deadline:
            children.update(children_of(process.pid))
            time.sleep(0.2)
        children.update(children_of(process.pid))
        assert children, "the batch grades in child processes"
        assert process.poll() is None, "the batch ended before it could be killed"
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    before = {path.parent.name: path.stat().st_mtime_ns for path in out.glob("*/results.json")}
    assert 3 <= len(before) < len(expected)
    with open(out / "gradebook.csv") as file:
        assert len(list(csv.DictReader(file))) == len(before)
    time.sleep(1.0)
    assert not [pid for pid in children if Path(f"/proc/{pid}").exists()
                and "grader.child" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")]

    assert batch.main(command(root, out)) == 0
    assert f"{len(before)} already graded" in capsys.readouterr().err
    after = {path.parent.name: path.stat().st_mtime_ns for path in out.glob("*/results.json")}
    assert {name: after[name] for name in before} == before, "results of the first run were kept, not regraded"
    with open(out / "gradebook.csv") as file:
        rows = {row["submission"]: row for row in csv.DictReader(file)}
    assert set(rows) == set(expected)
    tests = [name for name, _ in batch.test_names([1])]
    maximum = sum(points for _, points in batch.test_names([1]))
    for name, (expectation, detail) in expected.items():
        row = rows[name]
        scores = {test: float(row[test]) for test in tests}
        lost = {test.split(" / ")[1] for test in tests if scores[test] < dict(batch.test_names([1]))[test]}
        assert float(row["max_score"]) == maximum, name
        if expectation == FULL:
            assert (row["status"], float(row["score"])) == (batch.GRADED, maximum), row
        elif expectation == "lost":
            assert row["status"] == batch.GRADED and lost == {f"Task {detail}"}, (name, lost, row["problems"])
        elif expectation == "zero":
            assert float(row["score"]) == 0, row
        elif expectation == PROBLEMS:
            assert row["status"] == batch.PROBLEMS and detail in row["problems"], row
        else:
            assert row["status"] == batch.ERROR and float(row["score"]) == 0 and detail in row["problems"], row
    assert float(rows["broken_syntax"]["score"]) == 0
    assert float(rows["extra_files"]["score"]) == maximum
    hostile_results = out / "hostile_1" / "results.json"
    assert json.loads(hostile_results.read_text())["extra_data"]["batch"]["submission"] == "hostile_1"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["submissions"] == len(expected) and sum(entry["count"] for entry in summary["distribution"]) == len(expected)
    assert (out / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| Week 1 / Task 1.2 / mse_loss: value |" in (out / "summary.md").read_text()


def test_malformed_submissions_are_explained_without_running_them(tmp_path):
    def staged(name: str, files: dict[str, bytes]):
        (tmp_path / name).mkdir()
        for file_name, content in files.items():
            (tmp_path / name / file_name).write_bytes(content)
        return batch.stage(batch.Submission(name, tmp_path / name, name), [1, 2])

    one_week = staged("one_week", {MODULE: SOLUTION.encode()})
    assert set(one_week.modules) == {MODULE} and one_week.problems == ["missing week2_neural_networks.py: week 2 scores 0"]
    huge = staged("huge", {MODULE: b"#" * (batch.MAX_MODULE_BYTES + 10)})
    assert "more than 1 MiB" in huge.fatal
    nulls = staged("nulls", {MODULE: b"x = 1\0\n"})
    assert "does not compile" in nulls.problems[-1]
    empty = staged("empty", {})
    assert "no week module" in empty.fatal
    whole_course = tmp_path / "whole_course.zip"
    with zipfile.ZipFile(whole_course, "w") as archive:
        archive.writestr("course/README.md", "course")
        archive.writestr(f"course/exercises/{MODULE}", SOLUTION)
        archive.writestr("course/exercises/notes.txt", "mine")
    found = batch.stage(batch.Submission("whole_course", whole_course, "whole_course"), [1])
    assert set(found.modules) == {MODULE}
    assert found.problems == ["graded the week modules found in course/exercises/",
                              "ignored files that are not week modules: notes.txt"]
    traversal = tmp_path / "traversal.zip"
    with zipfile.ZipFile(traversal, "w") as archive:
        archive.writestr("../" + MODULE, SOLUTION)
        archive.writestr("/etc/" + MODULE, SOLUTION)
    found = batch.stage(batch.Submission("traversal", traversal, "traversal"), [1])
    assert "no week module" in found.fatal and "unsafe path" in found.fatal


def test_gradebook_cells_are_never_formulas(tmp_path):
    row = {"submission": "=HYPERLINK(\"x\")", "status": batch.ERROR, "score": 0.0, "max_score": 23.0,
           "percent": 0.0, "problems": "-1", "tests": {}}
    batch.write_gradebook(tmp_path / "gradebook.csv", [row], [])
    with open(tmp_path / "gradebook.csv") as file:
        written = list(csv.DictReader(file))[0]
    assert written["submission"].startswith("'=") and written["problems"] == "'-1"


def test_bad_usage(tmp_path, capsys):
    assert batch.main([str(tmp_path / "nothing"), "--out", str(tmp_path / "out")]) == 2
    assert batch.main([str(tmp_path), "--out", str(tmp_path / "out"), "--weeks", "8"]) == 2
    assert "course grade-batch" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["a b", "../x", ".hidden", "ünïcode"])
def test_output_folders_are_safe_names(tmp_path, name):
    assert "/" not in batch.safe_folder_name(name) and not batch.safe_folder_name(name).startswith(".")
