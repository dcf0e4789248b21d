"""A batch's gradebook: `DIR/gradebook.csv`, one row per submission with its status, total, per-week
subtotals, lateness (`grader.instructor.late`) and the score after the late penalty, one column per
test, then the problems and integrity flags; every cell safe to open in a spreadsheet (`_cell`).
The summary of a batch is `grader.instructor.summary`'s."""

import csv
import io
import re
import sys
import unicodedata
from pathlib import Path

from course.files import write_atomically
from grader import grading
from grader.instructor import late
from grader.instructor.submissions import Submission

FORMULA_STARTS = ("=", "+", "-", "@")  # a spreadsheet reads a cell starting so as a formula
QUOTED_STARTS = ("'", "\t", "\r")  # quoted too: a leading quote is doubled, so that quoting stays reversible
PRINTABLE_ESCAPE = re.compile(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")  # as report.printable writes them
GRADED, NOTHING, PROBLEMS, ERROR, FAILURE = ("graded", "graded: nothing attempted", "graded with problems", "error",
                                             "grader failure")
STATUSES = (GRADED, NOTHING, PROBLEMS, ERROR, FAILURE)
LATE_COLUMNS = ("submitted_at", "time_from", "days_late", "late_penalty_percent", "final_score", "final_percent")


def test_names(weeks: list[int]) -> list[tuple[str, float]]:
    """(column name, max score) of every test of `weeks`, as results.json names them."""
    return [(f"Week {week} / Task {check.task} / {check.name}", check.points)
            for week in weeks for check in grading.checks_module(week).CHECKS]


def week_of(test: str) -> int:
    """The week of a test named as results.json names it ("Week 3 / Task 3.1 / ...")."""
    return int(test.split(" / ", 1)[0].removeprefix("Week "))


def weeks_of(tests: list[tuple[str, float]]) -> dict[int, float]:
    """{week: its points} of the tests `test_names` gives, in order."""
    points = {}
    for name, maximum in tests:
        points[week_of(name)] = points.get(week_of(name), 0.0) + maximum
    return points


def gradebook_row(submission: Submission, results: dict | None, failure: str = "",
                  lateness: dict | None = None) -> dict:
    """One submission's row: from its results.json, or (results None) a grader failure saying `failure`.
    `lateness` is `late.assess`'s answer (none known when not given); `final_score` is the score after
    its penalty."""
    lateness = lateness or late.no_lateness()
    if results is None:
        return {"submission": submission.name, "status": FAILURE, "score": "", "max_score": "", "percent": "",
                "problems": failure, "problem_list": [failure], "tests": {}, "weeks": {}, "submitted_weeks": [],
                "attempted_weeks": [],
                "integrity": "", "integrity_list": [], **lateness, "final_score": "", "final_percent": ""}
    batch = results["extra_data"]["batch"]
    score, maximum = results["score"], results["extra_data"]["max_score"]
    tests = {test["name"]: test["score"] for test in results["tests"]}
    weeks = {}
    for name, value in tests.items():
        weeks[week_of(name)] = round(weeks.get(week_of(name), 0.0) + value, 6)
    flags = [str(flag) for flag in results["extra_data"].get("integrity", [])]  # flags for review
    final = score * (1 - lateness["late_penalty"])
    return {"submission": submission.name, "status": batch["status"], "score": score, "max_score": maximum,
            "percent": _percent(score, maximum), "problems": "; ".join(batch["problems"]),
            "problem_list": list(batch["problems"]), "tests": tests, "weeks": weeks,
            "submitted_weeks": batch.get("submitted_weeks", batch.get("weeks", [])),
            "attempted_weeks": batch.get("attempted_weeks", batch.get("weeks", [])),  # results without them
            "integrity": "; ".join(flags), "integrity_list": flags,
            **lateness, "final_score": round(final, 2), "final_percent": _percent(final, maximum)}


def _percent(score: float, maximum: float) -> float:
    return round(100 * score / maximum, 1) if maximum else 0.0


def after_penalty(row: dict, score: float | str) -> float | str:
    """`score` (a week's subtotal, say) after the row's late penalty, to 2 decimals; "" stays ""."""
    return "" if score == "" else round(score * (1 - row["late_penalty"]), 2)


def _cell(value) -> str:
    """A CSV cell that a spreadsheet shows as text: a leading quote on any text whose first visible character
    could start a formula (`FORMULA_STARTS`, after any blanks, control or invisible characters or their
    escapes: see `_first_visible`), or that starts with a quote, a tab or a carriage return. No formula can
    come from a submission's name or problems, and two different texts never give the same cell. Numbers
    are written as they are."""
    if isinstance(value, (int, float)):
        return f"{value:g}" if isinstance(value, float) else str(value)
    text = str(value)
    return "'" + text if text.startswith(QUOTED_STARTS) or _first_visible(text) in FORMULA_STARTS else text


def _first_visible(text: str) -> str:
    """The first character of `text` that is not a blank, a control or an invisible character (a Unicode
    space, a line separator, a zero-width or bidirectional character, a byte order mark), nor the escape
    of one that `report.printable` writes (`\\x09`, `\\u200b`); "" when there is none."""
    index = 0
    while index < len(text):
        escape = PRINTABLE_ESCAPE.match(text, index)
        if _is_invisible(text[index]):
            index += 1
        elif escape and (code := int(escape[0][2:], 16)) <= sys.maxunicode and _is_invisible(chr(code)):
            index = escape.end()
        else:
            return text[index]
    return ""


def _is_invisible(character: str) -> bool:
    """Unicode categories Z (spaces, line and paragraph separators) and C (control, format, surrogate,
    private-use and unassigned characters)."""
    return unicodedata.category(character)[0] in "ZC"


def write_gradebook(path: Path, rows: list[dict], tests: list[tuple[str, float]]) -> None:
    """gradebook.csv: a row per submission (sorted by name): status, total, each week's subtotal
    ("Week N / total"), `LATE_COLUMNS`, a column per test, problems and integrity flags."""
    weeks = list(weeks_of(tests))
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["submission", "status", "score", "max_score", "percent"]
                    + [f"Week {week} / total" for week in weeks]
                    + list(LATE_COLUMNS) + [name for name, _ in tests] + ["problems", "integrity"])
    for row in sorted(rows, key=lambda row: row["submission"]):
        penalty = round(100 * row.get("late_penalty", 0.0), 1)
        writer.writerow([_cell(row[key]) for key in ("submission", "status", "score", "max_score", "percent")]
                        + [_cell(row.get("weeks", {}).get(week, "")) for week in weeks]
                        + [_cell(row.get(key, "")) for key in LATE_COLUMNS[:3]] + [_cell(penalty)]
                        + [_cell(row.get(key, "")) for key in LATE_COLUMNS[4:]]
                        + [_cell(row["tests"].get(name, "")) for name, _ in tests] + [_cell(row["problems"])]
                        + [_cell(row.get("integrity", ""))])
    write_atomically(path, buffer.getvalue())
