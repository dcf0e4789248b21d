"""Canvas's gradebook import: `grade-batch --roster ROSTER` writes `DIR/canvas.csv`, the file Canvas's
Grades > Import takes: the columns Student, ID, SIS User ID, SIS Login ID, Section, then one column
per week graded (an assignment: "Week 1" unless `--canvas-assignment 1="Week 1 (12345)"` names the
column as the Canvas export does, the assignment's id in brackets; a new name makes a new assignment),
a "Points Possible" row, then one line per student of the roster: each week's subtotal after the late
penalty (`grader.instructor.late`). A student with no submission, or whose grading failed, gets blank
cells: Canvas leaves a blank cell's grade as it is.

ROSTER is a CSV file with a header row (case, spaces and underscores in the names do not matter, so
Canvas's own gradebook export with a column `submission` added is a roster; other columns are
ignored, a "Points Possible" line too; a student without a submission name has blank cells):

    submission     the submission's name in gradebook.csv (its folder, or its .zip without .zip)
    student        the student's name as Canvas shows it ("Last, First")                        required
    id             Canvas's user ID                                   \\
    sis_user_id    the SIS User ID                                     } at least one, on every line
    sis_login_id   the SIS Login ID                                   /
    section        the section                                                                  optional
"""

import csv
import dataclasses
import io
from pathlib import Path

from course.files import write_atomically
from grader.instructor.gradebook import ERROR, FAILURE, _cell, after_penalty

COLUMNS = {"submission": "submission", "student": "student", "id": "id", "sis user id": "sis_user_id",
           "sis login id": "sis_login_id", "section": "section"}
IDENTIFIERS = ("id", "sis_user_id", "sis_login_id")
CANVAS_HEADER = ["Student", "ID", "SIS User ID", "SIS Login ID", "Section"]
POINTS_POSSIBLE = "    Points Possible"  # as Canvas's export writes it
MAX_ROSTER_BYTES = 16 * 2**20


class RosterError(ValueError):
    """The roster cannot be read; the message names the file, the line and what was expected."""


@dataclasses.dataclass(frozen=True)
class Student:
    """One line of the roster (`line`: its line number in the file)."""

    submission: str
    student: str
    id: str
    sis_user_id: str
    sis_login_id: str
    section: str
    line: int


def _column(name: str) -> str:
    """A header's column: "SIS User ID", "sis_user_id" and " Sis user id " are all "sis_user_id"."""
    return COLUMNS.get(" ".join(name.replace("_", " ").lower().split()), "")


def read_roster(path: Path) -> list[Student]:
    """The students of ROSTER, in its order. Raises RosterError naming the file, the line and what
    was expected: no header with `submission`, `student` and an ID column, a line with a submission but
    no student name, a student without any ID, a submission named twice (names compared ignoring case,
    as submissions are)."""
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_ROSTER_BYTES + 1)
        if len(data) > MAX_ROSTER_BYTES:
            raise RosterError(f"roster {path}: larger than {MAX_ROSTER_BYTES // 2**20} MiB")
        lines = list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise RosterError(f"roster {path}: cannot be read as a UTF-8 CSV file ({error})") from None
    if not lines:
        raise RosterError(f"roster {path}: empty; expected a header row naming the columns {_expected()}")
    columns = [_column(name) for name in lines[0]]
    missing = [name for name in ("submission", "student") if name not in columns]
    if missing or not set(IDENTIFIERS) & set(columns):
        needed = missing + ([] if set(IDENTIFIERS) & set(columns) else ["id (or sis_user_id, sis_login_id)"])
        raise RosterError(f"roster {path} line 1: no column {' or '.join(needed)}; the header has "
                          f"{', '.join(repr(name) for name in lines[0]) or 'nothing'}; expected {_expected()}")
    students, seen = [], {}
    for number, cells in enumerate(lines[1:], 2):
        values = {column: cell.strip() for column, cell in zip(columns, cells) if column}
        if not (values.get("submission") or values.get("student")) or values["student"] == POINTS_POSSIBLE.strip():
            continue  # a line of no student: blank, Points Possible, ...
        student = Student(**{field: values.get(field, "") for field in
                             ("submission", "student", *IDENTIFIERS, "section")}, line=number)
        _check(path, student, seen)
        seen.setdefault(student.submission.lower(), number)
        students.append(student)
    return students


def _expected() -> str:
    return "submission, student, id and/or sis_user_id and/or sis_login_id, and optionally section"


def _check(path: Path, student: Student, seen: dict[str, int]) -> None:
    where = f"roster {path} line {student.line}"
    if not student.student:
        raise RosterError(f"{where}: no student name for {student.submission!r} (the column 'student')")
    if not any(getattr(student, field) for field in IDENTIFIERS):
        raise RosterError(f"{where}: no ID for {student.submission!r}; expected id, sis_user_id or sis_login_id")
    if student.submission and student.submission.lower() in seen:
        raise RosterError(f"{where}: the submission {student.submission!r} is already on line "
                          f"{seen[student.submission.lower()]}")


def assignment_columns(texts: list[str] | None, weeks: list[int]) -> dict[int, str]:
    """{week: its column in canvas.csv}: "Week N", or what `--canvas-assignment N=NAME` says.
    Raises ValueError on anything but WEEK=NAME for a week graded."""
    columns = {week: f"Week {week}" for week in weeks}
    for text in texts or []:
        week, equals, name = text.partition("=")
        if not equals or not week.strip().isdigit() or not name.strip():
            raise ValueError(f"--canvas-assignment {text!r}: expected WEEK=NAME, e.g. 1='Week 1 (12345)'")
        if int(week) not in columns:
            raise ValueError(f"--canvas-assignment {text!r}: week {week} is not graded in this batch "
                             f"(weeks {', '.join(map(str, weeks))})")
        columns[int(week)] = name.strip()
    return columns


def canvas_lines(students: list[Student], rows: list[dict], points: dict[int, float],
                 columns: dict[int, str]) -> list[list]:
    """The lines of canvas.csv: the header, Points Possible, then one per student."""
    by_name = {row["submission"].lower(): row for row in rows}
    lines = [CANVAS_HEADER + list(columns.values()),
             [POINTS_POSSIBLE, "", "", "", ""] + [points[week] for week in columns]]
    for student in students:
        row = by_name.get(student.submission.lower())
        scores = ["" if row is None or row["status"] == FAILURE else
                  0.0 if row["status"] == ERROR else after_penalty(row, row["weeks"].get(week, 0.0))
                  for week in columns]
        lines.append([student.student, student.id, student.sis_user_id, student.sis_login_id, student.section] + scores)
    return lines


def write_canvas(path: Path, students: list[Student], rows: list[dict], points: dict[int, float],
                 columns: dict[int, str]) -> None:
    """Writes canvas.csv whole; every text cell safe in a spreadsheet (`gradebook._cell`)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    for line in canvas_lines(students, rows, points, columns):
        writer.writerow([_cell(cell) for cell in line])
    write_atomically(path, buffer.getvalue())


def roster_problems(students: list[Student], rows: list[dict]) -> list[dict]:
    """summary.md's problems: submissions not on the roster (left out of canvas.csv) and students of
    the roster without a submission (blank cells)."""
    listed = {student.submission.lower() for student in students if student.submission}
    found = {row["submission"].lower() for row in rows}
    return ([{"who": row["submission"], "what": "not on the roster",
              "why": "left out of canvas.csv: add a line for it to the roster"}
             for row in sorted(rows, key=lambda row: row["submission"]) if row["submission"].lower() not in listed]
            + [{"who": f"{student.student} ({student.submission})", "what": "no submission",
                "why": f"on the roster (line {student.line}) but "
                       + ("without a submission name" if not student.submission else "not among the submissions")
                       + ": blank in canvas.csv"}
               for student in students if student.submission.lower() not in found])
