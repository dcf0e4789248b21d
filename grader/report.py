"""Reports of a grading run: the scorecard printed for the student, Gradescope's results.json, JUnit XML."""

import json
import os
import platform
import re
import textwrap
import xml.etree.ElementTree as ET
from importlib import metadata

from grader.checks import Result
from grader.grading import checks_module
from grader.runner import WeekReport

VISIBILITY_NOTE = {"after_due_date": " (shown after the due date on Gradescope)"}
# Characters that must never reach a terminal, a report or a spreadsheet as they are:
# - C0 and C1 control characters and DEL: a terminal acts on them (ESC starts the sequences that move the
#   cursor or clear the screen), and \x0b, \x0c, \x1c-\x1e and \x85 end a line for str.splitlines();
# - U+2028 and U+2029, the line and paragraph separators: a new line for editors, browsers and splitlines();
# - invisible and bidirectional formatting characters (soft hyphen, U+061C, U+180E, U+200B-U+200F,
#   U+202A-U+202E, U+2060-U+206F, U+FEFF, the tag characters U+E0000-U+E007F): they hide text, or show
#   the text around them in another order than it has;
# - lone surrogates, U+FFF9-U+FFFB, U+FFFE and U+FFFF: what XML 1.0 and UTF-8 cannot hold, or annotations.
_UNPRINTABLE_CLASS = (r"\x00-\x1f\x7f-\x9f\xad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u206f"
                      r"\ud800-\udfff\ufeff\ufff9-\ufffb\ufffe\uffff\U000e0000-\U000e007f")
_UNPRINTABLE = re.compile(f"[{_UNPRINTABLE_CLASS}]")
_UNPRINTABLE_BUT_NEWLINES = re.compile(rf"(?!\n)[{_UNPRINTABLE_CLASS}]")  # the same, newlines apart


def printable(text: str, lines: bool = False) -> str:
    """`text` safe to print, or to write in XML or UTF-8 JSON: every character listed above becomes an escape
    that shows what it was (ESC becomes the four characters `\\x1b`, U+2028 the six characters `\\u2028`),
    newlines too unless `lines` allows them. No line of the result can then be split in two or reordered."""
    return (_UNPRINTABLE_BUT_NEWLINES if lines else _UNPRINTABLE).sub(_escape, text)


def _escape(match: re.Match) -> str:
    code = ord(match[0])
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _shared_feedback(results: list[Result]) -> list[str]:
    """The feedback every check of a week shares when none passed (a missing file, an import or syntax
    error, a week past its time limit): the scorecard says it once instead of once per check."""
    if len(results) < 2 or any(result.score > 0 for result in results):
        return []
    first = results[0].feedback
    return list(first) if first and all(result.feedback == first for result in results) else []


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
        shared = _shared_feedback(report.results)  # one reason for the whole week: said once, below
        for result in report.results:
            points = f"{_number(result.score)}/{_number(result.max_score)}"
            name, *rest = textwrap.wrap(printable(result.check.name), 45) or [""]
            lines.append(f"{report.week:<5}{result.check.task:<6}{name:<46}{points:>11}  {result.status}")
            lines.extend(" " * 11 + more for more in rest)
            for line in [] if shared else result.feedback:
                lines.extend(textwrap.wrap(printable(line), width - 11, initial_indent=" " * 11,
                                           subsequent_indent=" " * 13))
        for line in shared:
            lines.extend(textwrap.wrap(printable(f"every check of week {report.week}: {line}"), width - 11,
                                       initial_indent=" " * 11, subsequent_indent=" " * 13))
        week_score = sum(r.score for r in report.results)
        week_max = sum(r.max_score for r in report.results)
        lines.append(f"{'':<5}{'':<6}{'week ' + str(report.week) + ' total':<46}"
                     f"{_number(week_score) + '/' + _number(week_max):>11}  ({report.seconds:.1f} s)")
        lines.append("-" * width)
    flags = integrity_flags(reports)
    if flags:  # before the total, which stays the table's last line
        lines.append("Integrity (for your instructor): for review, not a penalty; the points above do not depend on it")
        lines += [printable("  " + flag) for flag in flags]
        claims = self_reported_claims(reports)
        if claims:
            lines.extend(textwrap.wrap(printable("reported by the code, not scored: " + "; ".join(claims)),
                                       width - 2, initial_indent="  ", subsequent_indent="    "))
        lines.append("-" * width)
    score, maximum = totals(reports)
    share = f" ({score / maximum:.0%})" if maximum else ""
    lines.append(f"TOTAL {_number(score)}/{_number(maximum)}{share}")
    ungraded = hidden_not_graded(reports)
    if ungraded:
        lines.append(f"Public checks only: {len(ungraded)} hidden checks ({_number(sum(c.points for c in ungraded))} "
                     "points, on inputs no student release contains) are graded by your instructor.")
    return "\n".join(lines)


def integrity_flags(reports: list[WeekReport]) -> list[str]:
    """Every graded week's `grader.integrity` flags: code that reaches for the grader's or JAX's
    internals, for the instructor to review (they change no score)."""
    return [flag for report in reports for flag in report.integrity]


def self_reported_claims(reports: list[WeekReport]) -> list[str]:
    """What the graded code reported about the properties that are not scored because only its own
    process can observe them (`grader.judges.self_reported`), e.g.
    "week 2 / train_step: ...: compiled once for batches of one shape: reported yes"."""
    return [f"week {report.week} / {result.check.name}: {claim}"
            for report in reports for result in report.results for claim in result.self_reported]


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
    flags = [printable(flag) for flag in integrity_flags(reports)]
    return {
        "score": score,
        "execution_time": round(execution_time, 3),
        "output": f"Total {_number(score)}/{_number(maximum)}" + (
            f" (public checks only: {len(hidden_not_graded(reports))} hidden checks are graded by your instructor)"
            if hidden_not_graded(reports) else "") + (
            f"\nIntegrity (for your instructor, not a penalty): {'; '.join(flags)}" if flags else ""),
        "visibility": "visible",
        "stdout_visibility": "hidden",
        "tests": tests,
        "extra_data": {"max_score": maximum, "environment": environment(reports), "integrity": flags,
                       "self_reported": [printable(claim) for claim in self_reported_claims(reports)]},
    }


def junit(reports: list[WeekReport]) -> str:
    """JUnit XML: one testsuite per week, one testcase per check; lost points are failures."""
    suites = ET.Element("testsuites")
    for report in reports:
        results = report.results
        suite = ET.SubElement(suites, "testsuite", name=f"week{report.week}", tests=str(len(results)),
                              failures=str(sum(r.score < r.max_score for r in results)), time=f"{report.seconds:.3f}")
        if report.integrity:  # grader.integrity's flags, for review
            ET.SubElement(ET.SubElement(suite, "properties"), "property", name="integrity",
                          value=printable("; ".join(report.integrity)))
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
