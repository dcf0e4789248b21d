"""Tests of `course similarity` (`grader.instructor.similarity`): on week-1 submissions written as
students write them (tests/week1_variants.py), a copy with renamed variables is found, two correct
solutions written independently (and the reference) are not flagged, the starter code never counts,
and the report escapes whatever a submission holds. Nothing is graded."""

import csv
import zipfile

import pytest

from course.cli import main as course_main
from grader.instructor import similarity
from tests import week1_variants as variants

MODULE = variants.MODULE


def week1(**sources: str) -> dict[str, dict[str, bytes]]:
    return {name: {MODULE: text.encode()} for name, text in sources.items()}


def shares(comparison: similarity.Comparison) -> dict[tuple[str, str], float]:
    return {(pair.first, pair.second): pair.share for pair in comparison.flagged}


def test_a_renamed_copy_is_found_and_honest_work_is_not_flagged():
    alice = variants.filled(variants.HONEST_A)
    comparison = similarity.compare(week1(alice=alice, bob=variants.renamed(alice),
                                          carol=variants.filled(variants.HONEST_B),
                                          dave=variants.filled(variants.reference_bodies()),
                                          erin=variants.EXERCISE, frank=variants.EXERCISE), [1])
    assert variants.renamed(alice) != alice
    assert list(shares(comparison)) == [("alice", "bob")] and shares(comparison)[("alice", "bob")] > 0.95
    [pair] = comparison.flagged
    assert pair.first_share > 0.95 and pair.second_share > 0.95 and pair.matched > 500
    assert len(comparison.shares[1]) == 15  # every pair of the six compared
    assert max(share for share in comparison.shares[1] if share < 0.95) < 0.45  # honest pairs: well under 50%


def test_the_starter_code_never_counts():
    flagged, pair_shares = similarity.compare_week(1, {"erin": variants.EXERCISE, "frank": variants.EXERCISE + "\n"},
                                                   similarity.starter_code(1), 0.01)
    assert flagged == [] and pair_shares == [0.0]
    one_task = variants.filled({"1.1": "    return features @ weights + bias\n"})
    without, _ = similarity.compare_week(1, {"a": one_task, "b": one_task}, "", 0.5)
    assert without and without[0].share == 1.0  # with no starter code excluded, the stubs themselves match


def test_the_report_escapes_what_submissions_hold(tmp_path):
    hostile = variants.filled({**variants.HONEST_A, "1.1": '    note = "</pre><script>alert(1)</script>\\u202e"\n'
                                                           "    return jnp.dot(features, weights) + bias\n"})
    comparison = similarity.compare(week1(**{"eve<img src=x onerror=alert(1)>": hostile,
                                             "=mallory": variants.renamed(hostile)}), [1])
    similarity.write_report(tmp_path, comparison)
    page = (tmp_path / "similarity.html").read_text()
    assert "<script" not in page and "<img" not in page and "&lt;/pre&gt;&lt;script&gt;" in page
    assert "default-src 'none'" in page and page.count("<pre>") == 2 and "<mark>" in page
    with open(tmp_path / "similarity.csv", newline="") as file:
        [line] = list(csv.DictReader(file))
    assert line["first"] == "'=mallory" and float(line["first_share_percent"]) > 95  # no formula


def test_control_characters_are_shown_escaped():
    assert similarity.shown_text(b"x = 1\r\n\ty = '\x1b[2J\xe2\x80\xae'\n\xff\n") == (
        "x = 1\n    y = '\\x1b[2J\\u202e'\n\ufffd\n")


def test_course_similarity_writes_the_report_of_the_weeks_submitted(tmp_path, capsys):
    root, out = tmp_path / "submissions", tmp_path / "out"
    alice = variants.filled(variants.HONEST_A)
    for name, text in (("alice", alice), ("carol", variants.filled(variants.HONEST_B))):
        (root / name).mkdir(parents=True)
        (root / name / MODULE).write_text(text)
    with zipfile.ZipFile(root / "bob.zip", "w") as archive:
        archive.writestr(f"bob/{MODULE}", variants.renamed(alice))
    (root / "broken.zip").write_bytes(b"PK\x03\x04 not a zip")
    assert course_main(["similarity", str(root), "--out", str(out)]) == 0
    printed = capsys.readouterr()
    assert "week 1: 3 submissions, 3 pairs, 1 at 50% or more" in printed.out and "broken" in printed.err
    with open(out / "similarity.csv", newline="") as file:
        assert [(line["first"], line["second"]) for line in csv.DictReader(file)] == [("alice", "bob")]
    assert "alice and bob" in (out / "similarity.html").read_text()


@pytest.mark.parametrize("options, words", [(["--threshold", "0"], "--threshold 0: expected a share"),
                                            (["--weeks", "9"], "unknown week")])
def test_bad_usage(tmp_path, capsys, options, words):
    assert similarity.main([str(tmp_path), "--out", str(tmp_path / "out"), *options]) == 2
    assert words in capsys.readouterr().err
