"""A batch's gradebook and summary: `DIR/gradebook.csv` (one row per submission, one column per test,
the total; every cell safe to open in a spreadsheet), `summary.md`/`summary.json` (each test's pass
rate, the distribution of scores) and `summary.png`."""

import csv
import io
import re
import statistics
import sys
import unicodedata
from pathlib import Path

from course.files import write_atomically
from grader import grading
from grader.instructor.submissions import Submission

FORMULA_STARTS = ("=", "+", "-", "@")  # a spreadsheet reads a cell starting so as a formula
QUOTED_STARTS = ("'", "\t", "\r")  # quoted too: a leading quote is doubled, so that quoting stays reversible
PRINTABLE_ESCAPE = re.compile(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")  # as report.printable writes them
GRADED, PROBLEMS, ERROR, FAILURE = "graded", "graded with problems", "error", "grader failure"


def test_names(weeks: list[int]) -> list[tuple[str, float]]:
    """(column name, max score) of every test of `weeks`, as results.json names them."""
    return [(f"Week {week} / Task {check.task} / {check.name}", check.points)
            for week in weeks for check in grading.checks_module(week).CHECKS]


def gradebook_row(submission: Submission, results: dict | None, failure: str = "") -> dict:
    if results is None:
        return {"submission": submission.name, "status": FAILURE, "score": "", "max_score": "", "percent": "",
                "problems": failure, "tests": {}, "integrity": ""}
    batch = results["extra_data"]["batch"]
    score, maximum = results["score"], results["extra_data"]["max_score"]
    return {"submission": submission.name, "status": batch["status"], "score": score, "max_score": maximum,
            "percent": round(100 * score / maximum, 1) if maximum else 0.0, "problems": "; ".join(batch["problems"]),
            "tests": {test["name"]: test["score"] for test in results["tests"]},
            "integrity": "; ".join(map(str, results["extra_data"].get("integrity", [])))}  # flags for review


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
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["submission", "status", "score", "max_score", "percent"] + [name for name, _ in tests]
                    + ["problems", "integrity"])
    for row in sorted(rows, key=lambda row: row["submission"]):
        writer.writerow([_cell(row[key]) for key in ("submission", "status", "score", "max_score", "percent")]
                        + [_cell(row["tests"].get(name, "")) for name, _ in tests] + [_cell(row["problems"])]
                        + [_cell(row.get("integrity", ""))])
    write_atomically(path, buffer.getvalue())


def summary(rows: list[dict], tests: list[tuple[str, float]]) -> dict:
    """Per-test pass rates (full marks) and mean scores, and the distribution of total scores."""
    graded = [row for row in rows if row["status"] != FAILURE]
    per_test = []
    for name, points in tests:
        scores = [row["tests"].get(name, 0.0) for row in graded]
        per_test.append({"test": name, "max_score": points,
                         "pass_rate": sum(score >= points for score in scores) / len(scores) if scores else 0.0,
                         "mean_score": sum(scores) / len(scores) if scores else 0.0})
    percents = sorted(float(row["percent"]) for row in graded)
    bins = [0] * 10
    for percent in percents:
        bins[min(int(percent // 10), 9)] += 1
    median = statistics.median(percents) if percents else 0.0
    return {"submissions": len(rows), "graded": len(graded),
            "statuses": {status: sum(row["status"] == status for row in rows)
                         for status in (GRADED, PROBLEMS, ERROR, FAILURE)},
            "mean_percent": sum(percents) / len(percents) if percents else 0.0, "median_percent": median,
            "distribution": [{"range": f"{10 * index}-{10 * index + 10}%", "count": count}
                             for index, count in enumerate(bins)],
            "tests": per_test}


def summary_markdown(data: dict) -> str:
    lines = ["# Batch grading summary", "",
             f"{data['submissions']} submissions: "
             + ", ".join(f"{count} {status}" for status, count in data["statuses"].items() if count),
             f"mean {data['mean_percent']:.1f}%, median {data['median_percent']:.1f}%", "",
             "## Score distribution", "", "| total | submissions | |", "|---|---:|---|"]
    for entry in data["distribution"]:
        lines.append(f"| {entry['range']} | {entry['count']} | {'#' * entry['count']} |")
    lines += ["", "## Tests", "", "| test | points | full marks | mean score |", "|---|---:|---:|---:|"]
    for test in data["tests"]:
        lines.append(f"| {test['test']} | {test['max_score']:g} | {test['pass_rate']:.0%} | {test['mean_score']:.2f} |")
    return "\n".join(lines) + "\n"


def summary_figure(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tests = data["tests"]
    figure, (scores, rates) = plt.subplots(1, 2, figsize=(13, max(3.5, 0.22 * len(tests) + 1.2)),
                                           gridspec_kw={"width_ratios": [1, 1.6]})
    counts = [entry["count"] for entry in data["distribution"]]
    scores.bar([10 * index + 5 for index in range(10)], counts, width=9)
    scores.set(xlabel="total score (%)", ylabel="submissions", xlim=(0, 100),
               title=f"Scores of {data['submissions']} submissions")
    rates.barh(range(len(tests)), [100 * test["pass_rate"] for test in tests])
    rates.set_yticks(range(len(tests)), [test["test"].replace("Week ", "W").replace(" / Task ", " ")[:50]
                                         for test in tests], fontsize=7)
    rates.invert_yaxis()
    rates.set(xlabel="submissions with full marks (%)", xlim=(0, 100), title="Pass rate per test")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
