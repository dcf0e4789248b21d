"""Runs the probes of a week in a child process and judges the evidence against the reference.

The reference evidence comes from running the same probes on `solutions/` in a trusted child; it is
cached under a hash of everything it depends on (the solution, the grader, the `course` package,
library versions), so it is computed once per change. A student release can ship that cache in
place of the solutions (`Settings.reference_dir`).
"""

import ast
import dataclasses
import difflib
import functools
import hashlib
import importlib
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import sys
import threading
import time
from importlib import metadata
from pathlib import Path

from course import weeks
from grader import evidence as ev
from grader import intake, integrity, sandbox
from grader.checks import HIDDEN_PREFIX, Result, judge_check, validate
from grader.child import WALL_CLOCK_FACTOR

REPO = Path(__file__).resolve().parent.parent
WEEKS = weeks.MODULES  # the course's one table of weeks
PACKAGES_FOR_CHILD = ("course", "grader")
RECORDED_DIR = REPO / "reference_evidence"  # recorded reference evidence of a student release (`course release`)
MAX_RESTARTS = 2
MAX_OVERRUN_CHECKS = 2  # probes at their own time limit whose time the week's limit forgives


def user_cache_dir() -> Path:
    root = os.environ.get("COURSE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "deep-into-cnn"
    )
    return Path(root)


def default_reference_dir() -> Path | None:
    """The recorded reference evidence when there are no solutions (a student release), else None."""
    if RECORDED_DIR.is_dir() and not (REPO / "solutions").is_dir():
        return RECORDED_DIR
    return None


@dataclasses.dataclass
class Settings:
    """Limits and places for one grading run."""

    week_timeout_s: float = 120.0
    probe_timeout_s: float = 60.0
    memory_bytes: int = 6 * 2**30
    file_bytes: int = 256 * 2**20
    output_bytes: int = 16 * 2**10  # how much of a child's output is kept for diagnostics
    cache_dir: Path = dataclasses.field(default_factory=user_cache_dir)
    solutions_dir: Path = REPO / "solutions"
    # recorded reference evidence to use instead of running the solutions
    reference_dir: Path | None = dataclasses.field(default_factory=default_reference_dir)
    jobs: int = 2
    sandbox: str | None = None  # "auto", "bubblewrap", "user" or "none"; None: $COURSE_SANDBOX, else auto
    protected: tuple[Path, ...] = ()  # more paths the submitted code must not read
    public_only: bool = False  # skip the hidden checks even where the solutions run (a release's recording)
    progress: bool = False  # a line on stderr as each check's probe starts (course grade at a terminal)

    @classmethod
    def from_options(cls, options: dict, **fields) -> "Settings":
        """The settings of the grading options every front end takes (`grader.cli.add_grading_options`):
        `options` maps timeout, probe_timeout, memory_gb, reference_dir and sandbox to their values
        (a missing reference_dir or sandbox: the default); `fields` sets any other field."""
        reference = options.get("reference_dir")
        return cls(**{"week_timeout_s": float(options["timeout"]), "probe_timeout_s": float(options["probe_timeout"]),
                      "memory_bytes": int(options["memory_gb"] * 2**30),
                      "reference_dir": Path(reference) if reference else default_reference_dir(),
                      "sandbox": options.get("sandbox"), "progress": bool(options.get("progress")), **fields})


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


week_number = weeks.week_number


@functools.cache
def checks_module(week: int):
    """The grader's module of `week` (its PROBES and CHECKS), checked when first loaded (`checks.validate`)."""
    module = importlib.import_module(f"grader.{WEEKS[week]}")
    validate(week, module.CHECKS, module.PROBES)
    return module


def probe_names(week: int) -> tuple[list[str], list[str]]:
    """(the probes the public checks read, those the hidden checks read on the hidden inputs)."""
    module = checks_module(week)
    public = {check.probe for check in module.CHECKS if not check.hidden}
    hidden = {check.probe.removeprefix(HIDDEN_PREFIX) for check in module.CHECKS if check.hidden}
    return [name for name in module.PROBES if name in public], [name for name in module.PROBES if name in hidden]


# ---------------------------------------------------------------------------------------------
# Hidden checks

HIDDEN_SECRET_VARIABLE = "COURSE_HIDDEN_SECRET"


def hidden_seed(settings: Settings) -> int | None:
    """The seed of the hidden checks' inputs, or None where they are not graded.

    They are graded where the solutions run, and from recorded evidence only when it records them
    (an autograder zip, `course autograder`; never a student release). The seed comes from
    $COURSE_HIDDEN_SECRET, so that several graders of one class agree, or else from a secret made
    once in the grader's cache folder, which submitted code cannot read. Knowing the seed would not
    help a submission anyway: the answers on those inputs exist only where the solutions do, or in
    recorded evidence that the sandbox keeps from submitted code."""
    if settings.public_only:
        return None
    if settings.reference_dir is not None:
        return recorded_hidden_seed(settings.reference_dir)
    secret = os.environ.get(HIDDEN_SECRET_VARIABLE, "").encode()
    if not secret:
        path = settings.cache_dir / "hidden-inputs.secret"
        if not path.exists():  # made whole, then linked: two graders starting at once agree on one secret
            make_private(path.parent)
            partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}")
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32))
            try:
                os.link(partial, path)
            except FileExistsError:
                pass
            finally:
                partial.unlink()
        secret = path.read_bytes().strip()
    return int.from_bytes(hashlib.sha256(b"hidden inputs " + secret).digest()[:8], "big") >> 1


SEED_SHOWN_AS = "<the hidden inputs' seed>"


def without_seed(text: str, seed: int | None) -> str:
    """`text` with the hidden seed, written in decimal or hexadecimal, replaced by SEED_SHOWN_AS, also where
    up to 8 characters that are not letters or digits separate its digits ("4,611,686", "4 6 1 1").

    The grader itself never writes the seed in a message, but the graded code runs beside it (the child draws
    the hidden inputs from it) and could put it in an error message or an output: every feedback line is
    read through this. An encoding of the graded code's own choosing cannot be recognised; the seed alone
    does not give the hidden answers anyway (see `hidden_seed`)."""
    if seed is None or not text:
        return text
    for digits, flags in ((str(seed), 0), (f"{seed:x}", re.IGNORECASE)):
        text = re.sub("[^0-9A-Za-z]{0,8}".join(digits), SEED_SHOWN_AS, text, flags=flags)
    return text


MANIFEST = "MANIFEST.json"  # of recorded reference evidence: versions, files and, if recorded, the hidden seed


def make_private(folder: Path) -> None:
    """Makes the grader's cache folder (reference evidence, the hidden secret) if it is missing, and
    closes it to other users: it holds every check's answers."""
    folder.mkdir(parents=True, exist_ok=True)
    if folder.stat().st_uid == os.geteuid() and folder.stat().st_mode & 0o077:
        folder.chmod(0o700)


def _manifest(reference_dir: Path) -> dict:
    """The manifest of recorded evidence (at most 1 MiB read), or {} where there is none to read."""
    try:
        with open(reference_dir / MANIFEST, "rb") as file:
            manifest = json.loads(file.read(2**20))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def recorded_weeks(reference_dir: Path) -> list[int]:
    """The weeks whose evidence `reference_dir` records (a release's weeks), in order."""
    recorded = _manifest(reference_dir).get("weeks")
    return sorted(week for week, module in WEEKS.items() if isinstance(recorded, dict) and module in recorded)


def recorded_hidden_seed(reference_dir: Path) -> int | None:
    """The hidden seed that recorded evidence was made with, or None where it holds no hidden checks."""
    seed = _manifest(reference_dir).get("hidden_seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**63 else None


# ---------------------------------------------------------------------------------------------
# One child process


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
    for package in PACKAGES_FOR_CHILD:
        shutil.copytree(REPO / package, lib / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


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


# ---------------------------------------------------------------------------------------------
# Reference evidence


def imported_sources(start: list[Path]) -> list[Path]:
    """The project's source files that `start` imports, directly or through each other, `start`
    included: `course.*` and `grader.*` modules (and their packages' `__init__.py`), and the week
    modules beside a file that it imports relatively (`from .week2_neural_networks import ...`).
    Read from the syntax trees, imports inside functions included; nothing is run."""
    found, todo = set(), list(start)
    while todo:
        path = todo.pop()
        if path in found or not path.is_file():
            continue
        found.add(path)
        tree = integrity.parse(path.read_bytes(), str(path))  # under the grader's lock: release hashes in threads
        if tree is None:
            raise ReferenceEvidenceError(f"{path} could not be parsed to key its reference evidence")
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level:
                todo += [path.parent / f"{(node.module or alias.name).split('.')[0]}.py" for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] in PACKAGES_FOR_CHILD:
                    todo.append(REPO / parts[0] / "__init__.py")
                    todo += [REPO.joinpath(*parts[:depth]).with_suffix(".py") for depth in range(2, len(parts) + 1)]
    return sorted(found)


def reference_sources(week: int, settings: Settings) -> list[Path]:
    """The source files the child that records `week`'s reference evidence runs: its launcher and
    child, the week's grader module, the solution, the library modules it withholds, and what they import."""
    child = [REPO / "grader" / "launcher.py", REPO / "grader" / "child.py", REPO / "grader" / f"{WEEKS[week]}.py"]
    child += [REPO.joinpath(*answer.module.split(".")).with_suffix(".py")  # the child imports them to withhold them
              for answer in getattr(checks_module(week), "LIBRARY_ANSWERS", ())]
    return imported_sources(child + [settings.solutions_dir / f"{WEEKS[week]}.py"])


def fingerprint_files(week: int, settings: Settings) -> str:
    """Hash of everything the reference evidence of `week` depends on: `reference_sources`, the
    library versions, the environment that changes XLA's results, the hidden seed."""
    digest = hashlib.sha256()
    for path in reference_sources(week, settings):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for package in ("jax", "jaxlib", "flax", "optax", "numpy"):
        digest.update(f"{package}={_version(package)}".encode())
    for name in ("JAX_PLATFORMS", "XLA_FLAGS", "CUDA_VISIBLE_DEVICES"):
        digest.update(f"{name}={os.environ.get(name, '')}".encode())
    digest.update(f"hidden seed={hidden_seed(settings)}".encode())
    return digest.hexdigest()[:24]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


class ReferenceEvidenceError(RuntimeError):
    """The reference evidence could not be produced (a bug in the solutions or the grader)."""


def reference_folder(week: int, settings: Settings) -> Path:
    """The folder holding the reference evidence of `week`, computing it if it is not cached."""
    if settings.reference_dir is not None:
        folder = settings.reference_dir / WEEKS[week]
        if not (folder / "complete").exists():
            released = ", ".join(map(str, recorded_weeks(settings.reference_dir))) or "none"
            raise ReferenceEvidenceError(f"no recorded reference evidence for week {week} in {settings.reference_dir} "
                                 f"(it records weeks: {released})")
        public, hidden = probe_names(week)
        expected = [*public, *([HIDDEN_PREFIX + name for name in hidden] if hidden_seed(settings) is not None else [])]
        if absent := [name for name in expected if not (folder / f"{name}.npz").exists()]:
            raise ReferenceEvidenceError(f"the recorded reference evidence of week {week} in {settings.reference_dir} lacks "
                                 f"{', '.join(absent[:5])}: record it again with the grader that reads it")
        return folder
    folder = settings.cache_dir / "reference" / fingerprint_files(week, settings) / WEEKS[week]
    if (folder / "complete").exists():
        return folder
    solution = settings.solutions_dir / f"{WEEKS[week]}.py"
    if not solution.exists():
        raise ReferenceEvidenceError(f"no reference solution {solution} and no recorded reference evidence")
    reference_settings = dataclasses.replace(settings, week_timeout_s=max(settings.week_timeout_s, 300.0),
                                             probe_timeout_s=max(settings.probe_timeout_s, 120.0))
    run = run_child(week, solution.read_bytes(), "reference", reference_settings)
    failed = [name for name, record in run.evidence.items() if ev.text(record, ev.STATUS) != "ok"]
    public, hidden = probe_names(week)
    expected = {"__module__", *public, *([HIDDEN_PREFIX + name for name in hidden] if hidden_seed(settings) else [])}
    if failed or not expected <= set(run.evidence):
        problems = [f"{name}: {ev.text(run.evidence[name], ev.MESSAGE)} {ev.text(run.evidence[name], ev.WHERE)}"
                    for name in failed] or [run.missing_reason]
        raise ReferenceEvidenceError(f"the reference solution of week {week} failed its probes: {problems[:3]}\n"
                             f"{run.output[-2000:]}")
    partial = folder.with_name(folder.name + f".partial-{os.getpid()}-{threading.get_ident()}")  # threads too
    shutil.rmtree(partial, ignore_errors=True)
    make_private(settings.cache_dir)
    partial.mkdir(parents=True)
    for name, record in run.evidence.items():
        ev.save(partial / f"{name}.npz", record)
    (partial / "complete").write_text(json.dumps({"seconds": run.seconds}))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
    for stale in folder.parent.parent.glob(f"*/{WEEKS[week]}"):  # evidence of older solutions or graders
        if stale != folder:
            shutil.rmtree(stale, ignore_errors=True)
    return folder


def load_folder(folder: Path) -> dict[str, dict]:
    return {path.stem: ev.load(path) for path in sorted(folder.glob("*.npz"))}


# ---------------------------------------------------------------------------------------------
# Grading


@dataclasses.dataclass
class WeekReport:
    week: int
    results: list[Result]
    seconds: float
    output: str
    environment: dict
    public_only: bool = False  # the hidden checks were not graded (a student release)
    integrity: list[str] = dataclasses.field(default_factory=list)  # grader.integrity's flags, for review


def grade_week(week: int, target: Path, settings: Settings) -> WeekReport:
    """Grades the module of `week` found in the folder `target`."""
    start = time.perf_counter()
    module = checks_module(week)
    folder = reference_folder(week, settings)
    expected = load_folder(folder)
    module_file = target / f"{WEEKS[week]}.py"
    try:  # a regular file only, never through a link (see grader.intake); read once, here
        source, reason = intake.read_file(target, module_file.name), ""
    except FileNotFoundError:
        source, reason = None, f"missing file: there is no {module_file.name} in {target}{_nearest(target, module_file.name)}"
    except intake.Refused as error:
        source, reason = None, str(error)
    if source is None:
        run = ChildRun({}, reason, None, "", 0.0)
    else:
        given = folder / "__setup__.npz"
        run = run_child(week, source, "student", settings, given if given.exists() else None)
    module_record = run.evidence.get("__module__")
    missing_reason = run.missing_reason
    if module_record is not None and ev.text(module_record, ev.STATUS) != "ok":
        where = ev.text(module_record, ev.WHERE)
        missing_reason = (f"not graded: importing {module_file.name} failed: {ev.text(module_record, ev.MESSAGE)}"
                          + (f" (at {where})" if where else ""))
    seed = hidden_seed(settings)
    public_only = seed is None
    results = [
        judge_check(check, week, run.evidence.get(check.probe), expected.get(check.probe),
                    run.reasons.get(check.probe, missing_reason))
        for check in module.CHECKS if not (check.hidden and public_only)
    ]
    results = [dataclasses.replace(result, feedback=[without_seed(line, seed) for line in result.feedback],
                                   self_reported=[without_seed(line, seed) for line in result.self_reported])
               for result in without_misleading_hidden_hints(results)]
    environment = {key[4:]: ev.text(record, key) for record in [expected.get("__module__", {})]
                   for key in record if key.startswith("env:")}
    environment["sandbox"] = run.sandbox or sandbox_level(settings)
    flags = integrity.scan(source, module_file.name) if source is not None else []
    return WeekReport(week, results, time.perf_counter() - start, without_seed(run.output, seed), environment,
                      public_only, flags)


def without_misleading_hidden_hints(results: list[Result]) -> list[Result]:
    """A hidden check's hint ("when the public checks pass and this fails, something is fixed to the
    public inputs") only where its task's public checks passed: otherwise it would send a student
    after a fault that is not there."""
    public_lost = {result.check.task for result in results if not result.check.hidden and result.score < result.max_score}
    return [dataclasses.replace(result, feedback=[line for line in result.feedback if line != f"hint: {result.check.hint}"])
            if result.check.hidden and result.check.task in public_lost else result for result in results]


def _nearest(folder: Path, name: str) -> str:
    """" (found NAME)" for the file in `folder` whose name is closest to `name` (a misnamed or
    misplaced module: Week1_Regression.py, week1.py), else ""; names only, nothing is opened."""
    try:
        with os.scandir(folder) as entries:
            names = [entry.name for entry in itertools.islice(entries, 10_000)]
    except OSError:
        return ""
    by_lower = {found.lower(): found for found in names}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=1, cutoff=0.6)
    return f" (found {by_lower[close[0]]})" if close else ""


def resolve_target(target: str) -> Path:
    if target in ("exercises", "solutions"):
        return REPO / target
    path = Path(target).expanduser().resolve()
    if not path.is_dir():
        raise ValueError(f"--target must be 'exercises', 'solutions' or a folder; {target!r} is not a folder")
    return path


def grade(weeks: list[int], target: Path, settings: Settings) -> list[WeekReport]:
    """Grades the weeks, `settings.jobs` children at a time; the reports are in week order."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, settings.jobs)) as pool:
        futures = {week: pool.submit(grade_week, week, target, settings) for week in slowest_first(weeks)}
        return [futures[week].result() for week in sorted(weeks)]


def slowest_first(weeks: list[int]) -> list[int]:
    """The order to start grading in: later weeks have bigger models and take longer, and starting
    them first keeps every worker busy to the end."""
    return sorted(weeks, reverse=True)
