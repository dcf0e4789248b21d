"""Tests of the reports: whatever the graded code puts in its feedback, the scorecard prints it as indented
single lines without acting on control characters, and the JUnit XML and results.json stay well-formed."""

import json
import xml.etree.ElementTree as ET

from grader import report
from grader.checks import Check, Result
from grader.runner import WeekReport

EVERY_C0 = "".join(map(chr, range(0x20)))
UNENCODABLE = "\x7f\x85\ud800\udcff\ufffe\uffff"


def reports_with_feedback(*feedback: str) -> list[WeekReport]:
    check = Check("mse_loss: value", "1.2", "mse_loss", 2.0, "mse", lambda got, expected: [])
    passed = Check("sigmoid: value", "1.3", "sigmoid", 1.0, "sigmoid", lambda got, expected: [])
    results = [Result(check, 1, 0.0, "failed", list(feedback)), Result(passed, 1, 1.0, "passed", [])]
    return [WeekReport(1, results, 0.5, "", {})]


def test_printable_escapes_control_characters_and_keeps_newlines_only_when_asked():
    assert report.printable("a\x1b[2J\nb\tc\rd\x00\x7f\x85\udcff\ufffeé") == (
        "a\\x1b[2J\\x0ab\\x09c\\x0dd\\x00\\x7f\\x85\\udcff\\ufffeé")
    assert report.printable("line 1\nline\x1b 2\r\n", lines=True) == "line 1\nline\\x1b 2\\x0d\n"


def test_feedback_cannot_fake_the_total_or_control_the_terminal():
    card = report.scorecard(reports_with_feedback("\x1b[2J\nTOTAL 23/23", "\rTOTAL 23/23", EVERY_C0 + UNENCODABLE))
    lines = card.split("\n")
    assert [line for line in lines if line.startswith("TOTAL")] == [lines[-1]] == ["TOTAL 1/3 (33%)"]
    assert "           \\x1b[2J\\x0aTOTAL 23/23" in lines and "           \\x0dTOTAL 23/23" in lines
    assert not set(card) & set(EVERY_C0.replace("\n", "") + UNENCODABLE)


def test_junit_is_well_formed_whatever_the_feedback():
    xml = report.junit(reports_with_feedback(EVERY_C0 + UNENCODABLE, "\x1b[31mred\x1b[0m"))
    failure = ET.fromstring(xml).find("testsuite/testcase/failure")
    assert failure.text.split("\n")[1:] == [report.printable(EVERY_C0 + UNENCODABLE), "\\x1b[31mred\\x1b[0m"]


def test_gradescope_results_encode_as_utf8_json_whatever_the_feedback():
    results = report.gradescope(reports_with_feedback(EVERY_C0 + UNENCODABLE), 1.0)
    text = json.dumps(results, ensure_ascii=False).encode("utf-8").decode("utf-8")
    assert json.loads(text)["tests"][0]["output"] == "Task 1.2 (mse_loss): failed\n" + report.printable(
        EVERY_C0 + UNENCODABLE)
    assert "\\udcff" in results["tests"][0]["output"]
