"""Tests of `course grade-batch`: a class of week-1 submissions (correct, partial, broken, hostile and
malformed) graded two at a time, killed midway, resumed, with a complete and correct gradebook."""

import csv
import importlib.util
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grader import report
from grader.instructor import batch, gradebook, submissions

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
    # a few of the bugs and hostile cases of tests/grader_cases (test_grader and test_sandbox grade them all)
    for index, name in enumerate(("mse summed instead of averaged", "standardize with ddof=1")):
        folder(f"partial_{index}", {MODULE: patched(BUGS[name], out)}, ("lost", BUGS[name]["task"]))
    folder("broken_syntax", {MODULE: SOLUTION.replace("def sigmoid(", "def sigmoid(:", 1)}, (PROBLEMS, "does not compile"))
    for index, name in enumerate(("os._exit(0)", "writes the results file", "sys.exit at import")):
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
    return [str(root), "--out", str(out), "--weeks", "1", "--jobs", "2", "--timeout", "90", "--probe-timeout", "15",
            "--quiet"]


def graded_results(out: Path) -> list[Path]:
    """results.json files of submissions whose code ran (not error rows)."""
    found = []
    for path in out.glob("*/results.json"):
        try:
            if json.loads(path.read_text())["extra_data"]["batch"]["status"] != gradebook.ERROR:
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
    boot = f"import sys; from grader.instructor import batch; sys.exit(batch.main({command(root, out)!r}))"
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
    tests = [name for name, _ in gradebook.test_names([1])]
    maximum = sum(points for _, points in gradebook.test_names([1]))
    for name, (expectation, detail) in expected.items():
        row = rows[name]
        scores = {test: float(row[test]) for test in tests}
        lost = {test.split(" / ")[1] for test in tests if scores[test] < dict(gradebook.test_names([1]))[test]}
        assert float(row["max_score"]) == maximum, name
        if expectation == FULL:
            assert (row["status"], float(row["score"])) == (gradebook.GRADED, maximum), row
        elif expectation == "lost":
            assert row["status"] == gradebook.GRADED and lost == {f"Task {detail}"}, (name, lost, row["problems"])
        elif expectation == "zero":
            assert float(row["score"]) == 0, row
        elif expectation == PROBLEMS:
            assert row["status"] == gradebook.PROBLEMS and detail in row["problems"], row
        else:
            assert row["status"] == gradebook.ERROR and float(row["score"]) == 0 and detail in row["problems"], row
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
        return submissions.stage(submissions.Submission(name, tmp_path / name, name), [1, 2])

    one_week = staged("one_week", {MODULE: SOLUTION.encode()})
    assert set(one_week.modules) == {MODULE} and one_week.problems == ["missing week2_neural_networks.py: week 2 scores 0"]
    huge = staged("huge", {MODULE: b"#" * (submissions.MAX_MODULE_BYTES + 10)})
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
    found = submissions.stage(submissions.Submission("whole_course", whole_course, "whole_course"), [1])
    assert set(found.modules) == {MODULE}
    assert found.problems == ["graded the week modules found in course/exercises/",
                              "ignored files that are not week modules: notes.txt"]
    traversal = tmp_path / "traversal.zip"
    with zipfile.ZipFile(traversal, "w") as archive:
        archive.writestr("../" + MODULE, SOLUTION)
        archive.writestr("/etc/" + MODULE, SOLUTION)
    found = submissions.stage(submissions.Submission("traversal", traversal, "traversal"), [1])
    assert "no week module" in found.fatal and "unsafe path" in found.fatal


def test_gradebook_cells_are_never_formulas(tmp_path):
    row = {"submission": "=HYPERLINK(\"x\")", "status": gradebook.ERROR, "score": 0.0, "max_score": 23.0,
           "percent": 0.0, "problems": "-1", "tests": {}}
    gradebook.write_gradebook(tmp_path / "gradebook.csv", [row], [])
    with open(tmp_path / "gradebook.csv") as file:
        written = list(csv.DictReader(file))[0]
    assert written["submission"].startswith("'=") and written["problems"] == "'-1"


def test_bad_usage(tmp_path, capsys):
    assert batch.main([str(tmp_path / "nothing"), "--out", str(tmp_path / "out")]) == 2
    assert batch.main([str(tmp_path), "--out", str(tmp_path / "out"), "--weeks", "8"]) == 2
    assert "course grade-batch" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["a b", "../x", ".hidden", "ünïcode"])
def test_output_folders_are_safe_names(tmp_path, name):
    assert "/" not in submissions.safe_folder_name(name) and not submissions.safe_folder_name(name).startswith(".")


# ---------------------------------------------------------------------------------------------
# Staging odd and corrupt submissions (nothing is graded)


def zip_with_corrupt_module(path: Path, method: int) -> Path:
    """A zip of the solution whose week module's compressed data is overwritten with 0xff bytes, past the
    first 9 (the LZMA header) so that each method's decompressor, not the zip's own checks, fails first."""
    with zipfile.ZipFile(path, "w", method) as archive:
        archive.writestr(MODULE, SOLUTION)
        archive.writestr("notes.txt", "mine")
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(MODULE)
    data = bytearray(path.read_bytes())
    name_length, extra_length = struct.unpack("<HH", data[info.header_offset + 26:info.header_offset + 30])
    start = info.header_offset + 30 + name_length + extra_length
    data[start + 9:start + info.compress_size] = b"\xff" * (info.compress_size - 9)
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("method, reason", [
    (zipfile.ZIP_STORED, "not a readable zip file (zipfile.BadZipFile: Bad CRC-32 for file 'week1_regression.py')"),
    (zipfile.ZIP_DEFLATED, "not a readable zip file (zlib.error: Error -3 while decompressing data: "),
    (zipfile.ZIP_LZMA, "not a readable zip file (lzma.LZMAError: Corrupt input data)"),
    (zipfile.ZIP_BZIP2, "not a readable zip file (OSError: Invalid data stream)"),
])
def test_a_corrupt_zip_gets_an_error_row_whatever_its_compression(tmp_path, method, reason):
    path = zip_with_corrupt_module(tmp_path / "corrupt.zip", method)
    staged = submissions.stage(submissions.Submission("corrupt", path, "corrupt"), [1])
    assert (staged.modules, staged.problems) == ({}, [])
    assert staged.fatal.startswith(reason) and staged.fatal.endswith(")") and "\n" not in staged.fatal


def test_a_truncated_or_ambiguous_zip_gets_an_error_row(tmp_path):
    whole = tmp_path / "whole.zip"
    with zipfile.ZipFile(whole, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(MODULE, SOLUTION)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    assert submissions.stage(submissions.Submission("truncated", truncated, "truncated"), [1]).fatal == (
        "not a readable zip file (zipfile.BadZipFile: File is not a zip file)")
    twice = tmp_path / "twice.zip"
    with zipfile.ZipFile(twice, "w") as archive:
        archive.writestr(f"student/{MODULE}", SOLUTION)
        archive.writestr(f"student\\{MODULE}", "x = 1\n")  # the same path, written the Windows way
    assert submissions.stage(submissions.Submission("twice", twice, "twice"), [1]).fatal == (
        "the zip holds student/week1_regression.py twice: which one to grade is ambiguous")


def test_odd_names_in_a_zip_are_escaped_shortened_or_explained(tmp_path):
    odd = tmp_path / "odd.zip"
    with zipfile.ZipFile(odd, "w") as archive:
        archive.writestr(MODULE, SOLUTION)
        archive.writestr("notes\x1b[2J\nTOTAL\t.txt", "x")
        archive.writestr("L" * 1000, "x")
    staged = submissions.stage(submissions.Submission("odd", odd, "odd"), [1])
    assert set(staged.modules) == {MODULE} and staged.fatal == ""
    assert staged.problems == ["ignored files that are not week modules: " + "L" * 57 + "..., "
                               "notes\\x1b[2J\\x0aTOTAL\\x09.txt"]
    not_utf8 = tmp_path / "not_utf8.zip"
    with zipfile.ZipFile(not_utf8, "w") as archive:
        archive.writestr(MODULE, SOLUTION)
        archive.writestr("éé.txt", "x")  # a UTF-8 name: the zip flags its names as UTF-8
    not_utf8.write_bytes(not_utf8.read_bytes().replace("éé".encode(), b"\xff\xfe\x1b\n"))
    assert submissions.stage(submissions.Submission("not_utf8", not_utf8, "not_utf8"), [1]).fatal == (
        "not a readable zip file (UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position 0: "
        "invalid start byte)")


def test_odd_submission_and_file_names_are_escaped(tmp_path):
    raw_name = "evil\x1b[2J\nTOTAL\t" + os.fsdecode(b"\xff")
    (tmp_path / raw_name).mkdir()
    (tmp_path / raw_name / MODULE).write_text(SOLUTION)
    (tmp_path / raw_name / os.fsdecode(b"\x9b\xfe\r.txt")).write_text("x")
    [submission] = submissions.find_submissions(tmp_path)
    assert submission.name == "evil\\x1b[2J\\x0aTOTAL\\x09\\udcff" and submission.fatal == ""
    assert submission.folder == "evil_x1b_2J_x0aTOTAL_x09_udcff"
    staged = submissions.stage(submission, [1])
    assert set(staged.modules) == {MODULE}
    assert staged.problems == ["ignored files that are not week modules: \\udc9b\\udcfe\\x0d.txt"]


def test_any_error_while_staging_costs_only_that_submission(tmp_path, monkeypatch):
    (tmp_path / "alice").mkdir()
    (tmp_path / "alice" / MODULE).write_text(SOLUTION)

    def grader_bug(name, content):
        raise TypeError("line\nbreak")

    monkeypatch.setattr(submissions, "compile_problem", grader_bug)
    assert submissions.stage(submissions.Submission("alice", tmp_path / "alice", "alice"), [1]).fatal == (
        "could not be read (TypeError: line\\x0abreak)")


def test_a_folder_and_a_zip_of_the_same_name_are_both_ambiguous(tmp_path):
    for name in ("alice", "bob"):
        (tmp_path / name).mkdir()
        (tmp_path / name / MODULE).write_text(SOLUTION)
    for name in ("Alice.zip", "carol.zip"):
        with zipfile.ZipFile(tmp_path / name, "w") as archive:
            archive.writestr(MODULE, SOLUTION)
    found = {submission.path.name: submission for submission in submissions.find_submissions(tmp_path)}
    assert {name: submission.folder for name, submission in found.items()} == {
        "Alice.zip": "Alice", "alice": "alice_", "bob": "bob", "carol.zip": "carol"}
    assert found["Alice.zip"].fatal == ("Alice.zip collides with alice/: both are the submission 'Alice' "
                                        "(names are compared ignoring case); keep only one")
    assert found["alice"].fatal == ("alice/ collides with Alice.zip: both are the submission 'alice' "
                                    "(names are compared ignoring case); keep only one")
    staged = submissions.stage(found["alice"], [1])
    assert (staged.modules, staged.fatal) == ({}, found["alice"].fatal)
    assert found["bob"].fatal == found["carol.zip"].fatal == ""
    assert set(submissions.stage(found["carol.zip"], [1]).modules) == {MODULE}


def test_submissions_named_like_the_batch_files_get_other_folders(tmp_path):
    for name in ("gradebook.csv.zip", "summary.png.zip", "Summary.MD.zip", "summary.json.zip", "failure.txt.zip"):
        with zipfile.ZipFile(tmp_path / name, "w") as archive:
            archive.writestr(MODULE, SOLUTION)
    (tmp_path / "summary.md_").mkdir()
    (tmp_path / "summary.md_" / MODULE).write_text(SOLUTION)
    found = submissions.find_submissions(tmp_path)
    assert {submission.name: submission.folder for submission in found} == {
        "Summary.MD": "Summary.MD_", "failure.txt": "failure.txt_", "gradebook.csv": "gradebook.csv_",
        "summary.json": "summary.json_", "summary.md_": "summary.md__", "summary.png": "summary.png_"}
    assert all(set(submissions.stage(submission, [1]).modules) == {MODULE} for submission in found)


@pytest.mark.parametrize("value, cell", [
    ("=1+1", "'=1+1"), ("\t=1+1", "'\t=1+1"), ("\r=1+1", "'\r=1+1"), ("  =1+1", "'  =1+1"), (" @SUM(A1)", "' @SUM(A1)"),
    ("-1", "'-1"), ("\tplain", "'\tplain"), ("alice", "alice"), (" alice", " alice"), (-0.5, "-0.5"), (23.0, "23"),
    (3, "3"),
])
def test_gradebook_cells_that_could_start_a_formula_are_quoted(value, cell):
    assert gradebook._cell(value) == cell


# Round 2 (issue 25): names that show alike, and the formula guard after blanks and invisible characters
def test_submissions_whose_names_show_alike_get_distinct_names(tmp_path):
    for name in ("a\x01", "a\\x01", "alice", "alice (2)", "bob\u2028TOTAL", "bob\\u2028TOTAL", "carol"):
        (tmp_path / name).mkdir()
        (tmp_path / name / MODULE).write_text(SOLUTION)
    with zipfile.ZipFile(tmp_path / "alice.zip", "w") as archive:
        archive.writestr(MODULE, SOLUTION)
    found = {submission.path.name: submission for submission in submissions.find_submissions(tmp_path)}
    assert {entry: submission.name for entry, submission in found.items()} == {
        "a\\x01": "a\\x01", "a\x01": "a\\x01 (2)",  # the name shown as it is keeps it
        "alice": "alice", "alice.zip": "alice (3)", "alice (2)": "alice (2)",  # never another entry's own name
        "bob\\u2028TOTAL": "bob\\u2028TOTAL", "bob\u2028TOTAL": "bob\\u2028TOTAL (2)", "carol": "carol"}
    assert found["alice"].fatal and found["alice.zip"].fatal  # the same student twice: ambiguous
    assert not found["a\x01"].fatal and not found["a\\x01"].fatal  # two students: both graded
    assert len({submission.folder for submission in found.values()}) == len(found)
    rows = [gradebook.gradebook_row(submission, None, "not graded") for submission in found.values()]
    gradebook.write_gradebook(tmp_path / "gradebook.csv", rows, [])
    with open(tmp_path / "gradebook.csv", newline="") as file:
        written = [row["submission"] for row in csv.DictReader(file)]
    assert len(written) == len(set(written)) == len(found)
    assert not set("".join(written)) & set("\x01\u2028")


def test_names_that_differ_only_in_quotes_give_different_cells():
    assert gradebook._cell("=x") == "'=x" and gradebook._cell("'=x") == "''=x"


INVISIBLE_LEADS = st.sampled_from(["\t", "\r", "\n", " ", "\x00", "\x1f", "\x85", "\xa0", "\u2000", "\u3000", "\u200b",
                                   "\u200d", "\u2060", "\ufeff", "\u202e", "\u2066", "\u2028", "\u2029", "\U000e0020"])


@given(st.lists(INVISIBLE_LEADS, max_size=6).map("".join), st.sampled_from("=+-@"), st.text())
@settings(max_examples=300, deadline=None)
def test_no_cell_can_start_a_formula(lead, start, rest):
    text = lead + start + rest
    assert gradebook._cell(text).startswith("'")
    assert gradebook._cell(report.printable(text)).startswith("'")  # as a name is written: escaped first


@given(st.text())
@settings(max_examples=300, deadline=None)
def test_cells_are_the_text_itself_or_quoted_and_never_alike(text):
    assert gradebook._cell(text) in (text, "'" + text)
    assert gradebook._cell(text) != gradebook._cell("'" + text)
    if text[:1].isalnum():
        assert gradebook._cell(text) == text


# Round 3 (issue 30): the weeks a class submitted, untouched stubs, the late policy, Canvas, similarity
def test_a_week_1_class_with_stubs_late_work_a_roster_and_a_copy(tmp_path, capsys):
    """No --weeks: the class submitted week 1 only, so week 1 alone is graded and complete work is
    "graded"; the untouched exercise is "graded: nothing attempted"; a submission a day late loses 10%
    everywhere the score is shown; canvas.csv follows the roster; the renamed copy is the one pair."""
    from tests import week1_variants as variants

    root, out = tmp_path / "submissions", tmp_path / "out"
    due = datetime(2025, 3, 7, 23, 59, tzinfo=timezone.utc)
    on_time = (due - timedelta(hours=2)).timestamp()
    alice = variants.filled(variants.HONEST_A)
    for name, source in (("alice", alice), ("carol", variants.filled(variants.HONEST_B)), ("dave", SOLUTION),
                         ("stub", variants.EXERCISE)):
        (root / name).mkdir(parents=True)
        (root / name / MODULE).write_text(source)
        os.utime(root / name / MODULE, (on_time, on_time))
    (root / "alice" / "submission_metadata.json").write_text(json.dumps({"created_at": "2025-03-08T09:00:00-05:00"}))
    with zipfile.ZipFile(root / "bob.zip", "w") as archive:
        archive.writestr(f"bob/{MODULE}", variants.renamed(alice))
    os.utime(root / "bob.zip", (on_time, on_time))
    roster = tmp_path / "roster.csv"
    roster.write_text("submission,student,id,section\nalice,\"Liddell, Alice\",101,A\nbob,Bob,102,A\ncarol,Carol,103,B\n"
                      "stub,Stubbs,104,B\nerin,Erin,105,B\n")
    assert batch.main([str(root), "--out", str(out), "--jobs", "2", "--timeout", "90", "--probe-timeout", "15",
                       "--quiet", "--due", "2025-03-07T23:59", "--late-penalty", "10%/day,zero-after:3d",
                       "--roster", str(roster), "--similarity"]) == 0
    assert "week 1 (those the submissions hold; --weeks to choose)" in capsys.readouterr().err
    with open(out / "gradebook.csv", newline="") as file:
        rows = {row["submission"]: row for row in csv.DictReader(file)}
    assert [name for name in next(iter(rows.values())) if name.startswith("Week ")][0] == "Week 1 / total"
    assert not [name for name in next(iter(rows.values())) if name.startswith("Week 2")]
    for name in ("alice", "bob", "carol", "dave"):
        assert (rows[name]["status"], rows[name]["score"], rows[name]["max_score"]) == (gradebook.GRADED, "32", "32")
    assert rows["stub"]["status"] == gradebook.NOTHING and rows["stub"]["score"] == "0"
    assert "nothing attempted in week1_regression.py" in rows["stub"]["problems"]
    alice_row = {key: rows["alice"][key] for key in gradebook.LATE_COLUMNS}
    assert alice_row == {"submitted_at": "2025-03-08T14:00:00+00:00", "time_from": "submission_metadata.json",
                         "days_late": "1", "late_penalty_percent": "10", "final_score": "28.8", "final_percent": "90"}
    assert (rows["bob"]["days_late"], rows["bob"]["final_score"], rows["bob"]["time_from"]) == ("0", "32", "file time")
    with open(out / "canvas.csv", newline="") as file:
        assert list(csv.reader(file)) == [["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Week 1"],
                                          ["    Points Possible", "", "", "", "", "32"],
                                          ["Liddell, Alice", "101", "", "", "A", "28.8"], ["Bob", "102", "", "", "A", "32"],
                                          ["Carol", "103", "", "", "B", "32"], ["Stubbs", "104", "", "", "B", "0"],
                                          ["Erin", "105", "", "", "B", ""]]
    with open(out / "similarity.csv", newline="") as file:
        assert [(line["first"], line["second"]) for line in csv.DictReader(file)] == [("alice", "bob")]
    text = (out / "summary.md").read_text()
    problems = text[text.index("## Problems"):text.index("## Weeks")]
    assert text.index("## Problems") < text.index("## Weeks") < text.index("## Tests")
    for line in ("| stub | nothing attempted |", "| alice | late (1 day) |", "| alice and bob | similar code (week 1) |",
                 "| dave | not on the roster |", "| Erin (erin) | no submission |"):
        assert line in problems, line
    assert "carol" not in problems  # independent work, on time, on the roster: nothing to look at
    assert "week 1 (32 points): 4 graded, 1 graded: nothing attempted." in text


def test_the_default_weeks_are_those_the_submissions_hold(tmp_path):
    for name, files in (("a", ["week1_regression.py"]), ("b", ["week3_convolutions.py", "notes.txt"]), ("c", [])):
        (tmp_path / name).mkdir()
        for file_name in files:
            (tmp_path / name / file_name).write_text("x = 1\n")
    found = submissions.find_submissions(tmp_path)
    assert batch.chosen_weeks(None, found) == [1, 3]
    assert batch.chosen_weeks(["2"], found) == [2]
    assert batch.chosen_weeks(None, [found[2]]) == [1, 2, 3, 4, 5, 6]  # nothing held: every week


def test_untouched_weeks_set_the_status():
    clean, odd = submissions.Staged({}, []), submissions.Staged({}, ["ignored files that are not week modules: x"])
    assert batch.status_of(clean, [1, 2], []) == gradebook.GRADED
    assert batch.status_of(clean, [1, 2], [1, 2]) == gradebook.NOTHING
    assert batch.status_of(odd, [1], [1]) == gradebook.NOTHING  # nothing attempted says the most
    assert batch.status_of(clean, [1, 2], [2]) == gradebook.PROBLEMS  # week 2 left as the starter code
    assert batch.status_of(odd, [1], []) == gradebook.PROBLEMS


@pytest.mark.parametrize("options, words", [
    (["--late-penalty", "10%/day"], "needs --due DATE"),
    (["--due", "2025-03-07", "--late-penalty", "10%/day"], "give the time too"),
    (["--due", "2025-03-07T23:59", "--late-penalty", "ten percent"], "'ten percent' is not a term"),
    (["--roster", "missing.csv"], "roster missing.csv: cannot be read"),
    (["--canvas-assignment", "1=Week 1 (5)"], "needs --roster"),
    (["--similarity", "--similarity-threshold", "2"], "expected a share above 0"),
])
def test_bad_late_canvas_and_similarity_options_stop_before_grading(tmp_path, capsys, monkeypatch, options, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "class" / "alice").mkdir(parents=True)
    (tmp_path / "class" / "alice" / MODULE).write_text(SOLUTION)
    assert batch.main(["class", "--out", "out", *options]) == 2
    error = capsys.readouterr().err
    assert error.startswith("course grade-batch: ") and words in error and not (tmp_path / "out").exists()
