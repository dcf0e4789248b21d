"""Tests of the late policy (`grader.instructor.late`): the due date and rule grammar, the penalty of
each rule, and when a submission was made (Gradescope's metadata, else its files' times, never
through a link), on submissions made in tmp_path; nothing is graded."""

import json
import os
import zipfile
from datetime import datetime, timedelta, timezone

import pytest

from grader.instructor import late
from grader.instructor.submissions import Submission

DUE = "2025-03-07T23:59:00+00:00"


def when(text: str) -> datetime:
    return datetime.fromisoformat(text)


@pytest.mark.parametrize("text, expected", [
    ("2025-03-07T23:59", "2025-03-07T23:59:00+00:00"),  # no offset: UTC
    ("2025-03-07T23:59Z", "2025-03-07T23:59:00+00:00"),
    ("2025-03-07T23:59-05:00", "2025-03-07T23:59:00-05:00"),
    ("2018-07-01T14:22:32.365935-07:00", "2018-07-01T14:22:32.365935-07:00"),  # Gradescope's created_at
])
def test_due_dates_are_iso_8601_and_utc_without_an_offset(text, expected):
    assert late.parse_due(text) == when(expected)


@pytest.mark.parametrize("text, words", [("2025-03-07", "give the time too"), ("next friday", "not an ISO 8601"),
                                         ("2025-13-07T10:00", "not an ISO 8601")])
def test_a_bad_due_date_is_named_with_what_is_expected(text, words):
    with pytest.raises(ValueError, match=words) as error:
        late.parse_due(text)
    assert text in str(error.value) and "2025-03-07T23:59" in str(error.value)


@pytest.mark.parametrize("rule, late_by, penalty", [
    ("none", timedelta(days=9), 0.0),
    ("10%/day", timedelta(0), 0.0),
    ("10%/day", timedelta(minutes=1), 0.1),  # a started day counts whole
    ("10%/day", timedelta(hours=25), 0.2),
    ("10%/day", timedelta(days=30), 1.0),  # never more than everything
    ("25%", timedelta(seconds=1), 0.25),
    ("zero-after:3d", timedelta(days=3), 0.0),
    ("zero-after:3d", timedelta(days=3, seconds=1), 1.0),
    ("10%/day,zero-after:2d", timedelta(days=2), 0.2),
    ("10%/day,zero-after:2d", timedelta(days=2, hours=1), 1.0),
    ("grace:15m,10%/day", timedelta(minutes=14), 0.0),  # the due date moves 15 minutes later
    ("grace:15m,10%/day", timedelta(minutes=16), 0.1),
    ("5%,5%/day", timedelta(hours=30), 0.15),
    ("zero-after:12h", timedelta(hours=13), 1.0),
])
def test_each_rule_takes_its_share(rule, late_by, penalty):
    rules = late.policy(DUE, rule)
    assert rules.penalty(rules.lateness(when(DUE) + late_by)) == pytest.approx(penalty)


def test_on_time_and_unknown_times_cost_nothing():
    rules = late.policy(DUE, "10%/day")
    assert rules.lateness(when(DUE) - timedelta(days=1)) == timedelta(0) and rules.penalty(timedelta(0)) == 0
    assert rules.lateness(None) is None and rules.penalty(None) == 0
    assert late.Policy().lateness(when(DUE)) is None  # no due date: nobody is late
    assert late.days_late(timedelta(hours=25)) == 2 and late.days_late(timedelta(0)) == 0


@pytest.mark.parametrize("rule, words", [
    ("10 percent", "'10 percent' is not a term"), ("10%/week", "'10%/week' is not a term"),
    ("zero-after:3w", "'3w' is not a duration"), ("grace:", "'' is not a duration"), ("150%", "more than 100%"),
])
def test_a_bad_rule_names_the_term_and_what_a_term_may_be(rule, words):
    with pytest.raises(ValueError) as error:
        late.policy(DUE, rule)
    assert words in str(error.value) and f"--late-penalty {rule!r}" in str(error.value)


def test_a_rule_needs_a_due_date_and_the_default_is_none():
    with pytest.raises(ValueError, match="needs --due"):
        late.policy(None, "10%/day")
    assert late.policy(None, None) == late.Policy() and late.Policy().describe() == "none (no --due)"
    assert late.policy(DUE, None).penalty(timedelta(days=3)) == 0.0
    assert late.policy(DUE, "10%/day").describe() == f"due {DUE}, penalty 10%/day"


# ---------------------------------------------------------------------------------------------
# When a submission was made


def folder_submission(root, name: str, files: dict[str, tuple[str, float]]) -> Submission:
    """A submission folder whose files {name: (text, modification time)} are written with those times."""
    (root / name).mkdir()
    for file_name, (text, mtime) in files.items():
        path = root / name / file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.utime(path, (mtime, mtime))
    return Submission(name, root / name, name)


def test_gradescope_metadata_gives_the_time(tmp_path):
    metadata = json.dumps({"id": 123456, "created_at": "2025-03-08T10:00:00.365935-05:00",
                           "assignment": {"due_date": "2025-03-07T23:59:00.000000-05:00"}})
    submission = folder_submission(tmp_path, "alice", {"week1_regression.py": ("x = 1\n", 1e9),
                                                       late.METADATA: (metadata, 1e9)})
    assert late.submission_time(submission) == (when("2025-03-08T10:00:00.365935-05:00"), late.METADATA_TIME)
    assessed = late.assess(submission, late.policy("2025-03-07T23:59-05:00", "10%/day"))
    assert assessed == {"submitted_at": "2025-03-08T15:00:00+00:00", "time_from": late.METADATA_TIME,
                        "days_late": 1, "late_penalty": 0.1}


def test_without_metadata_the_newest_file_counts_and_links_are_not_followed(tmp_path):
    newest = datetime(2025, 3, 9, 12, tzinfo=timezone.utc).timestamp()
    (tmp_path / "elsewhere.py").write_text("y = 2\n")  # newer than everything: reached only through a link
    submission = folder_submission(tmp_path, "bob", {"week1_regression.py": ("x = 1\n", newest - 3600),
                                                     "notes/more.txt": ("mine", newest),
                                                     ".DS_Store": ("finder", newest + 9e6)})
    (tmp_path / "bob" / "link.py").symlink_to(tmp_path / "elsewhere.py")
    assert late.submission_time(submission) == (datetime.fromtimestamp(newest, timezone.utc), late.FILE_TIME)
    assert late.assess(submission, late.Policy())["days_late"] == ""  # no due date: not late, not on time


def test_unreadable_metadata_falls_back_to_the_file_time_and_says_why(tmp_path):
    submission = folder_submission(tmp_path, "carol", {"week1_regression.py": ("x = 1\n", 1e9),
                                                       late.METADATA: ('{"created_at": "yesterday"}', 1e9)})
    when_made, source = late.submission_time(submission)
    assert when_made == datetime.fromtimestamp(1e9, timezone.utc)
    assert source.startswith("file time (submission_metadata.json not used: ValueError")
    (tmp_path / "carol" / late.METADATA).unlink()
    (tmp_path / "carol" / late.METADATA).symlink_to(tmp_path / "carol" / "week1_regression.py")
    assert "symbolic link" in late.submission_time(submission)[1]


def test_a_zip_counts_by_its_own_time_and_its_metadata_is_the_students(tmp_path):
    path = tmp_path / "dave.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("week1_regression.py", "x = 1\n")
        archive.writestr(late.METADATA, json.dumps({"created_at": "2000-01-01T00:00:00+00:00"}))  # forged
    os.utime(path, (1.5e9, 1.5e9))
    assert late.submission_time(Submission("dave", path, "dave")) == (
        datetime.fromtimestamp(1.5e9, timezone.utc), late.FILE_TIME)
    (tmp_path / "erin.zip").symlink_to(path)
    assert late.submission_time(Submission("erin", tmp_path / "erin.zip", "erin")) == (
        None, "no time: erin is a symbolic link")
