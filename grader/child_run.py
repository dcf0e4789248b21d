"""One child process: runs a week's probes on one module in a sandboxed child (`grader.sandbox`) and
gathers the evidence it sends back. A probe that kills the child costs its own checks only (the child
is started again for the probes after it); every record is decoded within one budget and must carry
this run's nonce; whatever is missing gets the reason a student can act on.
"""


import dataclasses
import os
import secrets
import shutil
import signal
import sys
import time
from pathlib import Path

from grader import evidence as ev
from grader import sandbox
from grader.checks import HIDDEN_PREFIX
from grader.child import WALL_CLOCK_FACTOR
from grader.grading import RECORDED_DIR, REPO, Settings, WEEKS, hidden_seed, probe_names


PACKAGES_FOR_CHILD = ("course", "grader")
MAX_RESTARTS = 2
MAX_OVERRUN_CHECKS = 2  # probes at their own time limit whose time the week's limit forgives


@dataclasses.dataclass
class ChildRun:
    """What one child left behind: evidence per probe, and why any evidence is missing."""

    evidence: dict[str, dict]
    missing_reason: str
    exit_code: int | None
    output: str
    seconds: float
    reasons: dict = dataclasses.field(default_factory=dict)  # why one probe's evidence is missing
    sandbox: str = ""  # the level it ran at


class InfrastructureError(RuntimeError):
    """Grading could not start the child (the sandbox failed before the submitted code could run):
    not the submission's doing, so never recorded as its result."""


def protected_paths(settings: Settings) -> tuple[Path, ...]:
    """What submitted code must never read: the solutions, the reference evidence (the one graded
    against, and a release's recorded one), the caches, the repository's history and whatever the
    caller adds (a batch's submissions and results; an autograder's source/ and results/)."""
    paths = [path for path in (settings.solutions_dir, REPO / "solutions", RECORDED_DIR, REPO / ".git")
             if os.path.lexists(path)]
    paths += [settings.cache_dir, *settings.protected]  # an installed grader (a wheel) has neither solutions nor .git
    if settings.reference_dir is not None:
        paths.append(settings.reference_dir)
    return tuple(Path(os.path.abspath(path)) for path in dict.fromkeys(paths))


def sandbox_level(settings: Settings) -> str:
    """The sandbox level of this grading (see `grader.sandbox`); at the user level the protected
    paths are closed to other users first."""
    level = sandbox.choose(settings.sandbox, protected_paths(settings))
    if level == "user":
        for path in sandbox.close_to_others(list(protected_paths(settings))):  # it skips the missing ones
            print(f"course grade: closed {path} to other users (unprivileged-user sandbox)", file=sys.stderr)
    return level


def _copy_packages(lib: Path) -> None:
    """The packages the child imports, without bytecode and without the instructor tools (no child uses them)."""
    for package in PACKAGES_FOR_CHILD:
        shutil.copytree(REPO / package, lib / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "instructor"))


def run_child(week: int, source: bytes, mode: str, settings: Settings, given: Path | None = None) -> ChildRun:
    """Runs the week's probes on the module `source` in a sandboxed child; `mode` is "reference" or
    "student". The child's replies (one per launch) decode into one budget of `Limits.evidence_bytes`
    together, whatever the number of records: a record past it is refused, costing its checks."""
    start = time.perf_counter()
    level = sandbox_level(settings)
    # A probe has its own time limit (probe_timeout_s of CPU time, twice that of wall-clock time, in the
    # child). One that runs for half of it or more (honest probes take seconds) is taken for one at
    # its limit, and its time does not count against the week's: an endless loop costs its own
    # checks only (the time of at most MAX_OVERRUN_CHECKS such probes is forgiven).
    check_wall_s = WALL_CLOCK_FACTOR * settings.probe_timeout_s
    limits = sandbox.Limits(memory_bytes=settings.memory_bytes, file_bytes=settings.file_bytes,
                            cpu_seconds=int((settings.week_timeout_s + MAX_OVERRUN_CHECKS * settings.probe_timeout_s)
                                            * (os.cpu_count() or 1)) + 60,
                            output_bytes=settings.output_bytes, check_seconds=settings.probe_timeout_s / 2,
                            overrun_seconds=MAX_OVERRUN_CHECKS * check_wall_s)
    with sandbox.Workspace(level) as folders:
        _copy_packages(folders.lib)
        (folders.submission / f"{WEEKS[week]}.py").write_bytes(source)
        if given is not None:
            folders.given = Path(shutil.copyfile(given, folders.root / "given.npz"))
        nonce = secrets.token_hex(16)
        public, hidden = probe_names(week)
        seed = hidden_seed(settings)
        job = {"mode": mode, "week_module": WEEKS[week], "grader_module": f"grader.{WEEKS[week]}", "nonce": nonce,
               "probe_timeout_s": settings.probe_timeout_s, "probes": public,
               "hidden_probes": hidden if seed is not None else [], "hidden_seed": seed,
               "protected_dirs": [str(path) for path in protected_paths(settings)]}
        probes = ["__module__", *public, *[HIDDEN_PREFIX + name for name in job["hidden_probes"]]]
        job["records"] = [*probes, *(["__setup__"] if mode == "reference" else [])]  # what the stream takes
        evidence, reasons, rejected, output = {}, {}, [], ""
        budget = ev.Budget(limits.evidence_bytes)
        # A probe that kills the process loses only its own checks: the child is started again
        # for the probes after it (at most MAX_RESTARTS times, within the week's time limit).
        cpu_left = limits.cpu_seconds  # the week's CPU time, over all its processes and launches
        for launch in range(MAX_RESTARTS + 1):
            remaining = settings.week_timeout_s - (time.perf_counter() - start)
            job["skip"] = sorted(set(evidence) | set(reasons))
            outcome = sandbox.run(level, job, folders, dataclasses.replace(limits, cpu_seconds=max(int(cpu_left), 1)),
                                  max(remaining, 1.0), on_probe=_progress(week, mode) if settings.progress else None)
            cpu_left -= outcome.usage.cpu_seconds
            output += outcome.output
            if launch == 0 and not outcome.stream.running and not outcome.timed_out:
                raise InfrastructureError(f"the {level} sandbox did not start the grading child (exit code "
                                          f"{outcome.exit_code}): {outcome.output.strip()[-500:]}")
            found, refused = _accept(outcome.stream, nonce, budget)
            evidence.update(found)
            rejected += [outcome.stream.problem] * bool(outcome.stream.problem)
            rejected += [f"{name}: {why}" for name, why in refused.items()]
            for name, why in refused.items():
                reasons.setdefault(name, f"not graded: the grader refused this check's output: {why}")
            running = outcome.stream.running
            if outcome.timed_out or running in evidence or running in ("", "__module__", "__done__"):
                break
            reasons.setdefault(running,  # a refused record of this check says more than what came after it
                               f"not graded: the grader refused this check's output: {outcome.stream.problem}"
                               if outcome.stream.problem else
                               f"not graded: the grader stopped your code during this check: "
                               f"{outcome.usage.stopped_for}" if outcome.usage.stopped_for else
                               f"not graded: the grading process ended during this check (exit code "
                               f"{outcome.exit_code}); did your code call os._exit, exhaust the memory or crash?")
            if all(probe in evidence or probe in reasons for probe in probes) or cpu_left < 1:
                break
        reason = _missing_reason(outcome.timed_out, outcome.exit_code, settings, rejected, output,
                                 outcome.usage.stopped_for)
        return ChildRun(evidence, reason, outcome.exit_code, output[: settings.output_bytes * 2],
                        time.perf_counter() - start, reasons, level)


def _progress(week: int, mode: str):
    """Prints, on stderr, the check a grading child has started (`Settings.progress`)."""
    def show(name: str) -> None:
        shown = name.replace(HIDDEN_PREFIX, "hidden inputs: ").replace("__module__", "importing the module")
        print(f"  week {week}{' (reference)' if mode == 'reference' else ''}: {shown} ...", file=sys.stderr, flush=True)
    return show


def _accept(stream: ev.Stream, nonce: str, budget: ev.Budget) -> tuple[dict[str, dict], dict[str, str]]:
    """The stream's records that parse as evidence of this run, within what `budget` lets them decode
    to, and {name: why} for every other record. Never raises: whatever a record holds costs only
    its own checks (and, once the budget is spent, those of the records after it)."""
    found, refused = {}, {}
    for name, data in stream.records.items():
        try:
            record = ev.parse(data, name, budget=budget)
        except Exception as error:  # noqa: BLE001 - a forged or truncated record is simply not evidence
            refused[name] = (str(error) if isinstance(error, ev.EvidenceError)
                             else f"{type(error).__name__}: {error}")[:300]
            continue
        if ev.text(record, ev.NONCE) != nonce:
            refused[name] = "not written by the grader"
            continue
        found[name] = record
    return found, refused


def _missing_reason(timed_out: bool, exit_code: int | None, settings: Settings, unreadable, text: str,
                    stopped_for: str = "") -> str:
    if stopped_for:
        return f"not graded: the grader stopped your code before this check: {stopped_for}"
    if timed_out:
        return (f"not graded: the week ran past its time limit of {settings.week_timeout_s:.0f} s "
                "(an endless loop?) and was stopped before this check")
    if exit_code is not None and exit_code < 0:
        name = signal.Signals(-exit_code).name if -exit_code in signal.Signals._value2member_map_ else str(-exit_code)
        return f"not graded: the grading process was killed by {name} before this check (out of memory?)"
    last = " ".join(text.strip().splitlines()[-1:])[:200]
    detail = f"; last output: {last}" if last else ""
    if unreadable:
        detail += f"; evidence rejected: {unreadable[0]}"
    return f"not graded: the grading process exited early (exit code {exit_code}) before this check{detail}"
