"""Reports of a grading run: the scorecard printed for the student, Gradescope's results.json, JUnit XML."""

import json
import os
import platform
import re
import textwrap
import xml.etree.ElementTree as ET
from importlib import metadata

from grader.checks import Result
from grader.runner import WeekReport, checks_module

VISIBILITY_NOTE = {"after_due_date": " (shown after the due date on Gradescope)"}
# C0 and C1 control characters (ESC starts the sequences that move the cursor or clear the screen), DEL, lone
# surrogates and U+FFFE, U+FFFF: characters a terminal acts on, or that XML 1.0 and UTF-8 cannot hold.
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")
_UNPRINTABLE_BUT_NEWLINES = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")


def printable(text: str, lines: bool = False) -> str:
    """`text` safe to print, or to write in XML or UTF-8 JSON: every unprintable character becomes an escape
    that shows what it was (ESC becomes the four characters `\\x1b`), newlines too unless `lines` allows them."""
    return (_UNPRINTABLE_BUT_NEWLINES if lines else _UNPRINTABLE).sub(_escape, text)


def _escape(match: re.Match) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def all_results(reports: list[WeekReport]) -> list[Result]:
    return [result for report in reports for result in report.results]


def totals(reports: list[WeekReport]) -> tuple[float, float]:
    results = all_results(reports)
    return round(sum(r.score for r in results), 4), round(sum(r.max_score for r in results), 4)


def scorecard(reports: list[WeekReport], width: int = 100) -> str:
    """A table of every check (week, task, points, status) with the feedback for lost points, indented, one
    feedback line never more than one (wrapped) line of the table."""
    lines = [f"{'week':<5}{'task':<6}{'check':<46}{'points':>11}  status", "-" * width]
    for report in reports:
        for result in report.results:
            points = f"{_number(result.score)}/{_number(result.max_score)}"
            lines.append(f"{report.week:<5}{result.check.task:<6}{result.check.name[:45]:<46}{points:>11}  {result.status}")
            for line in result.feedback:
                lines.extend(textwrap.wrap(printable(line), width - 11, initial_indent=" " * 11,
                                           subsequent_indent=" " * 13))
        week_score = sum(r.score for r in report.results)
        week_max = sum(r.max_score for r in report.results)
        lines.append(f"{'':<5}{'':<6}{'week ' + str(report.week) + ' total':<46}"
                     f"{_number(week_score) + '/' + _number(week_max):>11}  ({report.seconds:.1f} s)")
        lines.append("-" * width)
    score, maximum = totals(reports)
    share = f" ({score / maximum:.0%})" if maximum else ""
    lines.append(f"TOTAL {_number(score)}/{_number(maximum)}{share}")
    ungraded = hidden_not_graded(reports)
    if ungraded:
        lines.append(f"Public checks only: {len(ungraded)} hidden checks ({_number(sum(c.points for c in ungraded))} "
                     "points, on inputs no student release contains) are graded by your instructor.")
    return "\n".join(lines)


def hidden_not_graded(reports: list[WeekReport]) -> list:
    """The hidden checks of the weeks graded from public evidence only (a student release)."""
    return [check for report in reports if report.public_only
            for check in checks_module(report.week).CHECKS if check.hidden]


def _number(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.2f}"


def environment(reports: list[WeekReport]) -> dict:
    """Versions and devices: the facts that can make two machines' scores differ."""
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for package in ("jax", "jaxlib", "flax", "optax", "numpy"):
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            found[package] = None
    for report in reports:
        found.update(report.environment)
    found["xla_flags"] = os.environ.get("XLA_FLAGS", "")
    found["jax_platforms"] = os.environ.get("JAX_PLATFORMS", "")
    return found


def _test_output(result: Result) -> str:
    """The status and feedback of a check, one printable line each (feedback comes from the graded code)."""
    return "\n".join([f"Task {result.check.task} ({result.check.function}): {result.status}",
                      *map(printable, result.feedback)])


def gradescope(reports: list[WeekReport], execution_time: float) -> dict:
    """Gradescope's results.json: https://gradescope-autograders.readthedocs.io/en/latest/specs/"""
    score, maximum = totals(reports)
    tests = []
    for result in all_results(reports):
        tests.append({
            "name": f"Week {result.week} / Task {result.check.task} / {result.check.name}",
            "number": result.check.task,
            "score": result.score,
            "max_score": result.max_score,
            "status": "passed" if result.score >= result.max_score else "failed",
            "output": _test_output(result),
            "visibility": result.check.visibility,
            "tags": [f"week{result.week}", f"task{result.check.task}"],
        })
    return {
        "score": score,
        "execution_time": round(execution_time, 3),
        "output": f"Total {_number(score)}/{_number(maximum)}" + (
            f" (public checks only: {len(hidden_not_graded(reports))} hidden checks are graded by your instructor)"
            if hidden_not_graded(reports) else ""),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {"max_score": maximum, "environment": environment(reports)},
    }


def junit(reports: list[WeekReport]) -> str:
    """JUnit XML: one testsuite per week, one testcase per check; lost points are failures."""
    suites = ET.Element("testsuites")
    for report in reports:
        results = report.results
        suite = ET.SubElement(suites, "testsuite", name=f"week{report.week}", tests=str(len(results)),
                              failures=str(sum(r.score < r.max_score for r in results)), time=f"{report.seconds:.3f}")
        for result in results:
            case = ET.SubElement(suite, "testcase", classname=f"week{report.week}.task{result.check.task}",
                                 name=result.check.name)
            ET.SubElement(case, "properties")
            for name, value in (("score", result.score), ("max_score", result.max_score)):
                ET.SubElement(case.find("properties"), "property", name=name, value=str(value))
            if result.score < result.max_score:
                failure = ET.SubElement(case, "failure", message=f"{_number(result.score)}/{_number(result.max_score)} "
                                        f"points: {result.status}")
                failure.text = _test_output(result)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True)


def write_json(path: str, data: dict) -> None:
    with open(path, "w") as file:
        json.dump(data, file, indent=2)
        file.write("\n")
