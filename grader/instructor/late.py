"""A late policy for `course grade-batch --due DATE --late-penalty RULE`: when each submission was made,
how late it is, and the share of its score it loses (none unless asked).

DATE is ISO 8601 with a time: `2025-03-07T23:59` (UTC), `2025-03-07T23:59-05:00` or `...Z`.
RULE is one term, or several joined by commas whose penalties add up (to at most 100%):

    none             no penalty (the default)
    10%/day          lose 10% of the score for every day late, a started day counting whole
    25%              lose 25% once, when late at all
    zero-after:3d    score 0 when more than 3 days late (a duration is a number and d, h or m)
    grace:15m        the due date is 15 minutes later (upload delays)

e.g. `10%/day,zero-after:5d`. A penalty is a share of the score earned: 2 days late under 10%/day,
32 points become 25.6. It applies to the total and, equally, to every week's subtotal.

When a submission was made: the `created_at` of a `submission_metadata.json` at the top of its
folder (Gradescope's format: "2018-07-01T14:22:32.365935-07:00"), else the newest modification time
of its files, for a zip the zip file's own. Nothing of a submission is followed: times are read with
lstat through the folder's own descriptor (`grader.intake`), and the metadata file as a regular file
of at most 1 MiB. A zip's own metadata file is not read: what a zip holds is the student's to write.
"""

import dataclasses
import json
import math
import os
import re
import stat
from datetime import datetime, timedelta, timezone

from grader import intake
from grader.instructor.submissions import IGNORED_NAMES, MAX_ENTRIES, Submission

METADATA = "submission_metadata.json"
MAX_METADATA_BYTES = 2**20
FILE_TIME, METADATA_TIME = "file time", METADATA
RULE_HELP = ("none; P%%/day (P%% of the score per started day late); P%% (once, when late); "
             "zero-after:N[d|h|m] (0 when later than that); grace:N[d|h|m]; terms joined by commas, "
             "e.g. 10%%/day,zero-after:3d")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhm])")
_UNITS = {"d": timedelta(days=1), "h": timedelta(hours=1), "m": timedelta(minutes=1)}
_PERCENT = re.compile(r"(\d+(?:\.\d+)?)%(/day)?")


@dataclasses.dataclass(frozen=True)
class Policy:
    """A due date and a rule. `per_day` and `once` are fractions of the score; `zero_after` the
    lateness past which the score is 0; `grace` moves the due date later."""

    due: datetime | None = None
    rule: str = "none"
    per_day: float = 0.0
    once: float = 0.0
    zero_after: timedelta | None = None
    grace: timedelta = timedelta(0)

    def lateness(self, submitted: datetime | None) -> timedelta | None:
        """How late `submitted` is (0 when on time); None without a due date or a time."""
        if self.due is None or submitted is None:
            return None
        return max(submitted - (self.due + self.grace), timedelta(0))

    def penalty(self, late: timedelta | None) -> float:
        """The share of the score lost, 0 to 1, for a submission `late` past the due date."""
        if not late:
            return 0.0
        if self.zero_after is not None and late > self.zero_after:
            return 1.0
        return min(1.0, self.once + self.per_day * days_late(late))

    def describe(self) -> str:
        """The policy in words, for the outputs."""
        if self.due is None:
            return "none (no --due)"
        return f"due {self.due.isoformat(timespec='seconds')}, penalty {self.rule}"


def days_late(late: timedelta | None) -> int:
    """Started days: 1 for a minute late, 2 for 25 hours; 0 when on time."""
    return math.ceil(late / timedelta(days=1)) if late else 0


def parse_due(text: str) -> datetime:
    """The due date of `--due TEXT`, timezone-aware (UTC when TEXT gives no offset). Raises
    ValueError naming TEXT and what is expected."""
    example = "e.g. 2025-03-07T23:59 (UTC), 2025-03-07T23:59-05:00 or 2025-03-07T23:59Z"
    if re.fullmatch(r"\s*\d{4}-\d{2}-\d{2}\s*", text):
        raise ValueError(f"--due {text}: give the time too, {example}")
    try:
        due = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"--due {text!r} is not an ISO 8601 date and time; expected {example}") from None
    return due if due.tzinfo else due.replace(tzinfo=timezone.utc)


def parse_rule(text: str) -> dict:
    """The fields of a `Policy` that RULE sets (see the module's docstring). Raises ValueError naming
    the term that is wrong and what a term may be."""
    fields = {"rule": text.strip() or "none"}
    if fields["rule"].lower() == "none":
        return fields
    for term in (part.strip().lower() for part in text.split(",")):
        if match := _PERCENT.fullmatch(term):
            share = float(match[1]) / 100
            if share > 1:
                raise ValueError(f"--late-penalty {text!r}: {term} is more than 100%")
            key = "per_day" if match[2] else "once"
            fields[key] = fields.get(key, 0.0) + share
        elif term.startswith(("zero-after:", "grace:")):
            name, _, duration = term.partition(":")
            fields[name.replace("-", "_")] = parse_duration(duration, text)
        else:
            expected = RULE_HELP.replace("%%", "%")
            raise ValueError(f"--late-penalty {text!r}: {term!r} is not a term; expected {expected}")
    return fields


def parse_duration(text: str, rule: str) -> timedelta:
    """3d, 12h or 30m as a timedelta; ValueError naming `rule` otherwise."""
    match = _DURATION.fullmatch(text.strip())
    if not match:
        raise ValueError(f"--late-penalty {rule!r}: {text!r} is not a duration; expected a number and d, h or m "
                         "(3d, 12h, 30m)")
    return float(match[1]) * _UNITS[match[2]]


def policy(due: str | None, rule: str | None) -> Policy:
    """The policy of `--due` and `--late-penalty`; ValueError on a rule without a due date."""
    fields = parse_rule(rule or "none")
    if due is None:
        if fields["rule"].lower() != "none":
            raise ValueError(f"--late-penalty {rule!r} needs --due DATE, the due date it counts from")
        return Policy()
    return Policy(parse_due(due), **fields)


# ---------------------------------------------------------------------------------------------
# When a submission was made


def submission_time(submission: Submission) -> tuple[datetime | None, str]:
    """(when `submission` was made, where that came from: `METADATA_TIME` or `FILE_TIME`, with the
    reason when a metadata file was there but unreadable); (None, why) when neither can be read."""
    path = submission.path
    kind = intake.entry_kind(path)
    if kind == "a regular file":
        return datetime.fromtimestamp(os.lstat(path).st_mtime, timezone.utc), FILE_TIME
    if kind != "a folder":
        return None, f"no time: {submission.name} is {kind or 'gone'}"
    try:
        with intake.Folder(path, follow_root=False) as folder:
            created, note = _metadata_time(folder)
            if created is not None:
                return created, METADATA_TIME
            newest = _newest_file_time(folder.fd, depth=3, budget=[MAX_ENTRIES])
    except (OSError, intake.Refused) as error:
        return None, f"no time: {error}"
    if newest is None:
        return None, "no time: the folder holds no file"
    return datetime.fromtimestamp(newest, timezone.utc), FILE_TIME + note


def _metadata_time(folder: intake.Folder) -> tuple[datetime | None, str]:
    """(created_at of the folder's `submission_metadata.json`, ""), or (None, why it was not used;
    "" when there is none)."""
    try:
        metadata = json.loads(folder.read((METADATA,), MAX_METADATA_BYTES))
        created = datetime.fromisoformat(metadata["created_at"])
    except FileNotFoundError:
        return None, ""
    except (intake.Refused, ValueError, KeyError, TypeError) as error:
        return None, f" ({METADATA} not used: {type(error).__name__}: {str(error)[:100]})"
    if created.tzinfo is None:
        created = created.replace(tzinfo=timezone.utc)
    return created, ""


def _newest_file_time(fd: int, depth: int, budget: list[int]) -> float | None:
    """The newest modification time of the regular files in the folder `fd` and its folders `depth`
    levels down, hidden and ignored names apart (`.DS_Store`, `__MACOSX`, ...); links are not
    followed. At most `budget[0]` entries are looked at in all."""
    newest = None
    with os.scandir(fd) as entries:
        for entry in entries:
            budget[0] -= 1
            if budget[0] < 0:
                break
            if entry.name.startswith(".") or entry.name in IGNORED_NAMES:
                continue
            info = entry.stat(follow_symlinks=False)
            found = None
            if stat.S_ISREG(info.st_mode):
                found = info.st_mtime
            elif stat.S_ISDIR(info.st_mode) and depth > 0:
                inner = os.open(entry.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_DIRECTORY, dir_fd=fd)
                try:
                    found = _newest_file_time(inner, depth - 1, budget)
                finally:
                    os.close(inner)
            if found is not None and (newest is None or found > newest):
                newest = found
    return newest


def assess(submission: Submission, rules: Policy) -> dict:
    """What the gradebook shows of a submission's lateness: submitted_at (ISO, UTC), time_from,
    days_late ("" without a due date) and late_penalty (a fraction)."""
    submitted, source = submission_time(submission)
    late = rules.lateness(submitted)
    return {"submitted_at": submitted.astimezone(timezone.utc).isoformat(timespec="seconds") if submitted else "",
            "time_from": source, "days_late": "" if late is None else days_late(late),
            "late_penalty": rules.penalty(late)}


def no_lateness() -> dict:
    """`assess`'s answer where nothing is known (a row made without a policy)."""
    return {"submitted_at": "", "time_from": "", "days_late": "", "late_penalty": 0.0}

