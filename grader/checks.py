"""Checks and judges: how the grader turns evidence into points. Runs only in the grading process.

A `Check` names the exercise it grades, its points, the probe whose evidence it reads, and a judge.
A judge compares the graded code's evidence with the reference's and returns `Part`s, one per
independent property (shape, values, gradient, ...); the check's score is its points times the
weighted share of parts that passed, so a right shape with wrong values still earns something.

Some properties can only be observed inside the graded process: how often a step is traced, whether a
function runs under `jax.jit`, where arrays are placed. The graded code can rewrite whatever reports
them there (`jax.jit`, the grader's counters, `jax.Array.sharding`), so such a part is *self-reported*:
it is never scored, its weight goes to the check's other parts, and when it fails the feedback says so
("reported by your code, not scored: ..."), so that an honest student still gets the advice.

The judges themselves, of arrays, models' layers and self-reported properties, are in `grader.judges`.
"""

import dataclasses
from collections.abc import Callable

from grader import evidence as ev

VISIBILITIES = ("visible", "after_due_date", "after_published", "hidden")
HIDDEN_PREFIX = "hidden:"  # evidence of a probe run again on the hidden inputs


@dataclasses.dataclass(frozen=True)
class Part:
    """One property a judge checked: what, its weight within the check, passed or not, and why."""

    what: str
    weight: float
    passed: bool
    detail: str = ""
    not_attempted: bool = False
    hint: str = ""  # what to look at for this particular failure (else the check's own hint)
    self_reported: bool = False  # only the graded process could observe it: reported, never scored


Judge = Callable[[dict, dict], list[Part]]


def reading(*keys: str) -> Callable[[Judge], Judge]:
    """Decorator: marks a judge with the evidence keys it reads (`reads(judge)`; "grad:*" is every key
    starting with "grad:"). The tests match them against what each probe records on the reference, so
    a mistyped key fails a test instead of costing every student the check's points."""

    def mark(judge: Judge) -> Judge:
        judge.reads = tuple(keys)
        return judge

    return mark


def reads(judge: Judge) -> tuple[str, ...]:
    """The evidence keys `judge` reads (`reading`); () for a judge that does not say."""
    return getattr(judge, "reads", ())


def missing_keys(judge: Judge, evidence: dict) -> list[str]:
    """The keys `judge` reads (`reads`) that `evidence` (a probe's record on the reference) lacks."""
    def present(key):
        return any(name.startswith(key[:-1]) for name in evidence) if key.endswith("*") else key in evidence
    return [key for key in reads(judge) if not present(key)]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Check:
    """One graded test, declared with keywords: `Check(name=..., task=..., function=..., points=...,
    judge=...)`.

    Attributes:
      name: short unique name, e.g. "conv2d: values".
      task: the exercise's task id ("3.1") and function ("conv2d"), as the exercise file shows them.
      points: the most this check awards.
      probe: key of the probe in the week's PROBES whose evidence the judge reads (default: the
        function's name).
      judge: (got, expected) evidence -> parts.
      hint: what to look at when the check fails.
      visibility: Gradescope visibility; "after_due_date" hides the result until the deadline there.
      hidden: probed on inputs drawn from the instructor's secret seed (see `grader.grading.hidden_seed`);
        graded only where the solutions run, never from a student release's recorded evidence.
    """

    name: str
    task: str
    function: str
    points: float
    judge: Judge
    probe: str = ""
    hint: str = ""
    visibility: str = "visible"
    hidden: bool = False

    def __post_init__(self):
        if not self.probe:
            object.__setattr__(self, "probe", self.function)
        if self.visibility not in VISIBILITIES:
            raise ValueError(f"check {self.name!r}: visibility must be one of {VISIBILITIES}")
        if self.points <= 0:
            raise ValueError(f"check {self.name!r}: points must be positive")
        if self.hidden and (self.visibility == "visible" or not self.probe.startswith(HIDDEN_PREFIX)):
            raise ValueError(f"check {self.name!r}: a hidden check reads a '{HIDDEN_PREFIX}' probe and is not visible")


def validate(week: int, checks: list[Check], probes: dict) -> None:
    """Raises ValueError, naming the check, where a week's checks do not fit together: a repeated
    name, a probe that is not in `probes` (a typo would cost every student the check's points), or
    a task of another week."""
    names = [check.name for check in checks]
    if repeated := sorted({name for name in names if names.count(name) > 1}):
        raise ValueError(f"week {week}: check names used twice: {', '.join(repeated)}")
    for check in checks:
        probe = check.probe.removeprefix(HIDDEN_PREFIX)
        if probe not in probes:
            raise ValueError(f"week {week}: check {check.name!r} reads probe {probe!r}, which is not in PROBES "
                             f"({', '.join(sorted(probes))})")
        week_part, _, number = check.task.partition(".")
        if week_part != str(week) or not number.isdigit() or not check.function:
            raise ValueError(f"week {week}: check {check.name!r} names task {check.task!r} ({check.function!r}); "
                             f"expected {week}.k and its function")


@dataclasses.dataclass
class Result:
    """The outcome of one check: its score, a status and the lines of feedback to show."""

    check: Check
    week: int
    score: float
    status: str  # passed, partial, failed, not attempted, error, timeout, crashed, missing file
    feedback: list[str]
    # what the graded code reported about the check's self-reported properties, e.g.
    # "compiled once for batches of one shape: reported yes" (see the module docstring)
    self_reported: list[str] = dataclasses.field(default_factory=list)

    @property
    def max_score(self) -> float:
        return self.check.points


# ---------------------------------------------------------------------------------------------
# Judging one check


def judge_check(check: Check, week: int, got: dict | None, expected: dict | None, missing_reason: str) -> Result:
    """Scores one check from the graded code's evidence `got` and the reference's `expected`."""
    if expected is None or ev.text(expected, ev.STATUS) != "ok":
        reason = ev.text(expected or {}, ev.MESSAGE, "no reference evidence")
        return Result(check, week, 0.0, "error", [f"grader problem: the reference failed this probe ({reason})"])
    if got is None:
        return Result(check, week, 0.0, _status_of_reason(missing_reason), [missing_reason])
    status = ev.text(got, ev.STATUS)
    if status != "ok":
        return _failed_probe(check, week, got, status)
    try:
        parts = check.judge(got, expected)
    except Exception as error:  # noqa: BLE001 - malformed evidence must cost points, not crash the grader
        parts = [Part("evidence", 1.0, False, f"unusable output ({type(error).__name__}: {error})")]
    reported = [part for part in parts if part.self_reported]
    parts = [part for part in parts if not part.self_reported]
    total = sum(part.weight for part in parts)
    earned = sum(part.weight for part in parts if part.passed)
    lost = [part for part in parts if not part.passed]
    # weight 0 is a part not judged this time; a check with no part judged earns nothing (its other
    # checks say what is wrong), so a part that is only reported never carries a check's points
    score = round(check.points * earned / total, 4) if total else 0.0
    if not total and not lost:
        lost = [Part("not judged", 0.0, False, "nothing of this check could be judged: it needs the plain result "
                     "right first (see this task's other checks)")]
    if lost and all(part.not_attempted for part in lost) and earned == 0:
        return not_attempted(check, week, [part.detail for part in lost])
    claims = [f"{part.what}: reported {'yes' if part.passed else 'no'}" for part in reported]
    advice = [part for part in reported if not part.passed]
    advice_lines = [f"reported by your code, not scored: {part.what}" + (f": {part.detail}" if part.detail else "")
                    for part in advice]
    advice_lines += [f"hint: {hint}" for hint in dict.fromkeys(part.hint for part in advice if part.hint)]
    if not lost:
        return Result(check, week, score, "passed", advice_lines, claims)
    feedback = [f"{part.what}: {part.detail}" for part in lost]
    hints = list(dict.fromkeys(part.hint for part in lost if part.hint)) or ([check.hint] if check.hint else [])
    feedback += [f"hint: {hint}" for hint in hints]
    feedback += [line for line in advice_lines if line not in feedback]
    return Result(check, week, score, "partial" if score > 0 else "failed", feedback, claims)


def not_attempted(check: Check, week: int, reasons: list[str]) -> Result:
    """0 points, "Task N.k (function): not attempted", then any reason given other than a stub's own
    (say, a task handed to the course library's code for it)."""
    said = [reason.removeprefix("NotImplementedError: ") for reason in reasons]
    said = [reason for reason in dict.fromkeys(said) if reason and "not attempted" not in reason]
    return Result(check, week, 0.0, "not attempted", [f"Task {check.task} ({check.function}): not attempted", *said])


def _status_of_reason(reason: str) -> str:
    if reason.startswith("missing file"):
        return "missing file"
    if "time limit" in reason or "timed out" in reason:
        return "timeout"
    return "crashed"


def _failed_probe(check: Check, week: int, got: dict, status: str) -> Result:
    message, where = ev.text(got, ev.MESSAGE), ev.text(got, ev.WHERE)
    if status == "not_attempted":
        return not_attempted(check, week, [message + (f" (at {where})" if where else "")])
    lines = [f"your code raised {message}" if status == "error" else message]
    if where:
        lines.append(f"at {where}")
    if check.hint:
        lines.append(f"hint: {check.hint}")
    return Result(check, week, 0.0, "timeout" if status == "timeout" else "error", lines)
