"""Tests of Canvas's gradebook import (`grader.instructor.canvas`): reading the instructor's roster
(its own columns, or Canvas's export with a submission column), clear errors on a bad roster, and
canvas.csv's columns, Points Possible row and scores after the late penalty, from gradebook rows
made in memory; nothing is graded."""

import csv
from pathlib import Path

import pytest

from grader.instructor import canvas, gradebook
from grader.instructor.submissions import Submission


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def results(name: str, week_scores: dict[int, float], status: str = gradebook.GRADED) -> dict:
    """A results.json with one test per week scoring `week_scores`, out of 10 points each."""
    tests = [{"name": f"Week {week} / Task {week}.1 / f: value", "score": score, "max_score": 10.0}
             for week, score in week_scores.items()]
    return {"score": sum(week_scores.values()), "tests": tests,
            "extra_data": {"max_score": 10.0 * len(week_scores), "integrity": [],
                           "batch": {"submission": name, "status": status, "problems": [], "weeks": list(week_scores)}}}


def row(name: str, week_scores: dict[int, float], penalty: float = 0.0, status: str = gradebook.GRADED) -> dict:
    lateness = {"submitted_at": "", "time_from": "", "days_late": 1 if penalty else 0, "late_penalty": penalty}
    return gradebook.gradebook_row(Submission(name, Path(name), name), results(name, week_scores, status), lateness=lateness)


def test_a_roster_of_its_own_columns(tmp_path):
    roster = write(tmp_path / "roster.csv", "submission,student,id,section\nalice,\"Liddell, Alice\",101,A\n"
                                            "bob,\"Bobson, Bob\",102,\n")
    students = canvas.read_roster(roster)
    assert [(s.submission, s.student, s.id, s.section, s.line) for s in students] == [
        ("alice", "Liddell, Alice", "101", "A", 2), ("bob", "Bobson, Bob", "102", "", 3)]


def test_canvas_export_with_a_submission_column_is_a_roster(tmp_path):
    export = ("\ufeffStudent,ID,SIS User ID,SIS Login ID,Section,Week 1 (555),Current Score,Submission\n"
              "    Points Possible,,,,,32,(read only),\n"
              "\"Liddell, Alice\",101,s-1,alice1,A,30,93.75,alice\n"
              "\"Student, Test\",999,,,A,,,\n")  # Canvas's test student: no submission of its own
    students = canvas.read_roster(write(tmp_path / "export.csv", export))
    assert [(s.submission, s.id, s.sis_user_id, s.sis_login_id) for s in students] == [
        ("alice", "101", "s-1", "alice1"), ("", "999", "", "")]


@pytest.mark.parametrize("text, words", [
    ("", "empty; expected a header row"),
    ("name,id\nalice,1\n", "line 1: no column submission or student; the header has 'name', 'id'; expected submission, "
                           "student, id"),
    ("submission,student\nalice,Alice\n", "line 1: no column id (or sis_user_id, sis_login_id)"),
    ("submission,student,id\nalice,,1\n", "line 2: no student name for 'alice'"),
    ("submission,student,id\nalice,Alice,1\nbob,Bob,\n", "line 3: no ID for 'bob'; expected id, sis_user_id or sis_login_id"),
    ("submission,student,sis_login_id\nalice,Alice,a\nAlice,Alice Two,b\n", "line 3: the submission 'Alice' is already on line 2"),
])
def test_a_bad_roster_names_the_file_the_line_and_what_was_expected(tmp_path, text, words):
    path = write(tmp_path / "roster.csv", text)
    with pytest.raises(canvas.RosterError) as error:
        canvas.read_roster(path)
    assert str(error.value).startswith(f"roster {path}") and words in str(error.value)


def test_an_unreadable_roster_is_an_error_too(tmp_path):
    with pytest.raises(canvas.RosterError, match="cannot be read"):
        canvas.read_roster(tmp_path / "nothing.csv")
    (tmp_path / "latin1.csv").write_bytes("submission,student,id\nzoe,Zo\xe9,1\n".encode("latin-1"))
    with pytest.raises(canvas.RosterError, match="cannot be read as a UTF-8 CSV file"):
        canvas.read_roster(tmp_path / "latin1.csv")


def test_assignment_columns_default_to_week_names_and_take_canvas_names():
    assert canvas.assignment_columns(None, [1, 2]) == {1: "Week 1", 2: "Week 2"}
    assert canvas.assignment_columns(["2=Week 2: networks (777)"], [1, 2]) == {1: "Week 1", 2: "Week 2: networks (777)"}
    for bad, words in (("Week 1 (1)", "expected WEEK=NAME"), ("3=Week 3", "week 3 is not graded"), ("1=", "WEEK=NAME")):
        with pytest.raises(ValueError, match=words):
            canvas.assignment_columns([bad], [1, 2])


def test_canvas_csv_has_canvas_columns_points_possible_and_penalized_scores(tmp_path):
    roster = write(tmp_path / "roster.csv", "submission,student,id,sis_user_id,sis_login_id,section\n"
                                            "alice,\"Liddell, Alice\",101,s1,al,A\nBob,=Bob,102,,,A\n"
                                            "carol,Carol,103,,,B\nzed,Zed,104,,,B\nerin,Erin,105,,,B\n")
    rows = [row("alice", {1: 10.0, 2: 8.0}), row("bob", {1: 10.0, 2: 5.0}, penalty=0.2),
            row("carol", {1: 0.0, 2: 0.0}, status=gradebook.ERROR),
            gradebook.gradebook_row(Submission("erin", Path("erin"), "erin"), None, "the grader failed"),
            row("dave", {1: 1.0, 2: 1.0})]
    students = canvas.read_roster(roster)
    path = tmp_path / "canvas.csv"
    canvas.write_canvas(path, students, rows, {1: 10.0, 2: 10.0}, {1: "Week 1 (555)", 2: "Week 2"})
    with open(path, newline="") as file:
        lines = list(csv.reader(file))
    assert lines == [
        ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "Week 1 (555)", "Week 2"],
        ["    Points Possible", "", "", "", "", "10", "10"],
        ["Liddell, Alice", "101", "s1", "al", "A", "10", "8"],
        ["'=Bob", "102", "", "", "A", "8", "4"],  # names compared ignoring case; 20% off; no formula
        ["Carol", "103", "", "", "B", "0", "0"],  # not gradable: 0
        ["Zed", "104", "", "", "B", "", ""],  # no submission: blank, Canvas keeps what it has
        ["Erin", "105", "", "", "B", "", ""],  # the grader failed: blank until rerun
    ]
    problems = canvas.roster_problems(students, rows)
    assert [(problem["who"], problem["what"]) for problem in problems] == [
        ("dave", "not on the roster"), ("Zed (zed)", "no submission")]
    assert "line 5" in problems[1]["why"]
