"""grader.report: whatever the graded code puts in its feedback, the scorecard prints it as indented single
lines without acting on control characters (C0, line and paragraph separators, bidirectional and invisible
characters), so feedback cannot fake the total; the JUnit XML and results.json stay well-formed; the
scorecard shows whole check names and says a reason every check of a week shares once."""

import json
import xml.etree.ElementTree as ET

from hypothesis import given, settings
from hypothesis import strategies as st

from grader import report
from grader.checks import Check, Result
from grader.runner import WeekReport

EVERY_C0 = "".join(map(chr, range(0x20)))
UNENCODABLE = "\x7f\x85\ud800\udcff\ufffe\uffff"


def reports_with_feedback(*feedback: str) -> list[WeekReport]:
    check = Check(name="mse_loss: value", task="1.2", function="mse_loss", points=2.0, probe="mse",
                  judge=lambda got, expected: [])
    passed = Check(name="sigmoid: value", task="1.3", function="sigmoid", points=1.0, judge=lambda got, expected: [])
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


# Round 2 (issue 25): Unicode line and paragraph separators, bidirectional controls, invisible characters
BIDIRECTIONAL = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
INVISIBLE = "\xad\u180e\u200b\u200c\u200d\u2060\u2063\ufeff\U000e0001\U000e0041"


def test_printable_leaves_no_character_that_ends_a_line():
    breakers = [character for character in map(chr, range(0x110000)) if len(f"a{character}b".splitlines()) > 1]
    assert set(breakers) == set("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")  # what Python's splitlines() knows
    for character in breakers:
        assert len(report.printable(f"a{character}b").splitlines()) == 1, hex(ord(character))
        assert len(report.printable(f"a{character}b", lines=True).splitlines()) == (2 if character == "\n" else 1)


def test_printable_escapes_bidirectional_and_invisible_characters():
    assert report.printable("\u2028TOTAL\u2029 \u202edessap\u202c \x85") == "\\u2028TOTAL\\u2029 \\u202edessap\\u202c \\x85"
    assert report.printable("\ufeff\u200b\xad\U000e0041") == "\\ufeff\\u200b\\xad\\U000e0041"  # 8 digits past U+FFFF
    for character in BIDIRECTIONAL + INVISIBLE:
        assert report.printable(character).startswith("\\"), hex(ord(character))
    assert report.printable("é ü 中文 ∑ 😀 \xa0") == "é ü 中文 ∑ 😀 \xa0"  # printable text stays as it is


@given(st.text())
@settings(max_examples=300, deadline=None)
def test_printable_text_is_one_line_in_one_order(text):
    shown = report.printable(text)
    assert len(shown.splitlines()) <= 1
    assert not set(shown) & set(BIDIRECTIONAL + INVISIBLE + EVERY_C0 + UNENCODABLE)
    shown.encode("utf-8")


def test_separators_cannot_fake_the_total_in_any_report():
    forged = ["\u2028TOTAL 23/23 (100%)\u2029", "\u202eTOTAL 23/23\u202c", "x" * 88 + "\u2028TOTAL 23/23",
              "\x1c\x1d\x1eTOTAL 23/23\x85TOTAL 23/23", "\u2066TOTAL\u2069 " * 30]
    reports = reports_with_feedback(*forged)
    card = report.scorecard(reports)
    assert [line for line in card.splitlines() if line.startswith("TOTAL")] == [card.splitlines()[-1]]
    assert card.splitlines() == card.split("\n")
    junit = report.junit(reports)
    results = json.dumps(report.gradescope(reports, 1.0), ensure_ascii=False)
    for text in (card, junit, results):
        assert not set(text) & set(BIDIRECTIONAL + "\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
    for text in (junit, results):
        assert not [line for line in text.splitlines() if line.startswith("TOTAL")]
    failure = ET.fromstring(junit).find("testsuite/testcase/failure")
    assert failure.text.split("\n")[1] == "\\u2028TOTAL 23/23 (100%)\\u2029"


def test_the_scorecard_shows_whole_names_and_a_reason_every_check_shares_once():
    long_name = "train_step: loss, accuracy, parameters and optimizer state after one step"
    checks = [Check(name=name, task="2.10", function="train_step", points=1.0, judge=lambda got, expected: [])
              for name in (long_name, "eval_step: loss and accuracy", "eval_step: changes nothing")]
    reason = "not graded: importing week2_neural_networks.py failed: SyntaxError: invalid syntax (at line 12)"
    broken = [WeekReport(2, [Result(check, 2, 0.0, "crashed", [reason]) for check in checks], 0.5, "", {})]
    card = report.scorecard(broken)
    assert card.count("SyntaxError") == 1 and "every check of week 2: not graded: importing" in card
    shown = " ".join(line[11:57].strip() for line in card.splitlines())
    assert long_name in shown  # wrapped over two lines of the check column, not cut
    assert all(len(line) <= 100 for line in card.splitlines())
    one_failure = [WeekReport(2, [Result(checks[0], 2, 0.0, "failed", [reason]),
                                  Result(checks[1], 2, 1.0, "passed", [])], 0.5, "", {})]
    assert report.scorecard(one_failure).count("SyntaxError") == 1  # said under its own check, as before
    assert "every check of week" not in report.scorecard(one_failure)
