"""Runs the probes of a week in a child process and judges the evidence against the reference.

The reference evidence comes from running the same probes on `solutions/` in a trusted child; it is
cached under a hash of everything it depends on (the solution, the grader, the `course` package,
library versions), so it is computed once per change. A student release can ship that cache in
place of the solutions (`Settings.reference_dir`).
"""

import dataclasses
import hashlib
import importlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

from grader import evidence as ev
from grader.checks import Result, judge_check

REPO = Path(__file__).resolve().parent.parent
WEEKS = {
    1: "week1_regression",
    2: "week2_neural_networks",
    3: "week3_convolutions",
    4: "week4_simple_cnn",
    5: "week5_lenet",
    6: "week6_alexnet",
}
PACKAGES_FOR_CHILD = ("course", "grader")
RECORDED_DIR = REPO / "reference_evidence"  # recorded reference evidence of a student release (`course release`)
MAX_RESTARTS = 2
ENVIRONMENT_PASSED = ("PATH", "HOME", "LANG", "LC_ALL", "JAX_PLATFORMS", "XLA_FLAGS", "CUDA_VISIBLE_DEVICES",
                      "TPU_VISIBLE_CHIPS", "COURSE_DATA_DIR")


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


@dataclasses.dataclass
class ChildRun:
    """What one child left behind: evidence per probe, and why any evidence is missing."""

    evidence: dict[str, dict]
    missing_reason: str
    exit_code: int | None
    output: str
    seconds: float
    reasons: dict = dataclasses.field(default_factory=dict)  # why one probe's evidence is missing


def week_number(text: str) -> int:
    """1 from "1", "week1" or "week1_regression"."""
    digits = text.lower().removeprefix("week")[:1]
    if not digits.isdigit() or int(digits) not in WEEKS:
        raise ValueError(f"unknown week {text!r}; weeks are 1 to {len(WEEKS)} (e.g. 3 or week3)")
    return int(digits)


def checks_module(week: int):
    return importlib.import_module(f"grader.{WEEKS[week]}")


# ---------------------------------------------------------------------------------------------
# One child process


def _copy_packages(lib: Path) -> None:
    for package in PACKAGES_FOR_CHILD:
        shutil.copytree(REPO / package, lib / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def _drain(stream, keep: int, sink: dict) -> None:
    """Reads a child's output to the end, keeping its first `keep` bytes and the last few lines."""
    head, tail, total = bytearray(), b"", 0
    while chunk := stream.read(65536):
        total += len(chunk)
        if len(head) < keep:
            head.extend(chunk[: keep - len(head)])
        tail = (tail + chunk)[-2048:]
    sink.update(head=bytes(head), tail=tail, total=total)


def run_child(week: int, module_file: Path, mode: str, settings: Settings, given: Path | None = None,
              protected: tuple[Path, ...] = ()) -> ChildRun:
    """Runs the week's probes on `module_file` in a fresh interpreter; `mode` is "reference" or "student"."""
    start = time.perf_counter()
    run_dir = Path(tempfile.mkdtemp(prefix="course-grade-"))
    try:
        lib, submission, evidence_dir, scratch = (run_dir / name for name in ("lib", "submission", "evidence", "tmp"))
        for folder in (submission, evidence_dir, scratch):
            folder.mkdir()
        _copy_packages(lib)
        shutil.copyfile(module_file, submission / f"{WEEKS[week]}.py")
        if given is not None:
            given = Path(shutil.copyfile(given, run_dir / "given.npz"))
        compile_cache = settings.cache_dir / "jax-compilation"
        compile_cache.mkdir(parents=True, exist_ok=True)
        nonce = secrets.token_hex(16)
        job = {
            "mode": mode,
            "parent_pid": os.getpid(),
            "week_module": WEEKS[week],
            "grader_module": f"grader.{WEEKS[week]}",
            "submission_dir": str(submission),
            "evidence_dir": str(evidence_dir),
            "given_path": str(given) if given else None,
            "nonce": nonce,
            "probe_timeout_s": settings.probe_timeout_s,
            "memory_bytes": settings.memory_bytes,
            "file_bytes": settings.file_bytes,
            "compile_cache_dir": str(compile_cache),
            "writable_dirs": [str(run_dir), str(compile_cache)],
            "protected_dirs": [str(path) for path in protected],
        }
        probes = ["__module__", *checks_module(week).PROBES]
        reasons, output, exit_code, timed_out, unreadable = {}, "", None, False, []
        # A probe that kills the process loses only its own checks: the child is started again
        # for the probes after it (at most MAX_RESTARTS times, within the week's time limit).
        for _ in range(MAX_RESTARTS + 1):
            remaining = settings.week_timeout_s - (time.perf_counter() - start)
            job["skip"] = sorted(set(_collect(evidence_dir, nonce)[0]) | set(reasons))
            exit_code, timed_out, text = _launch(job, lib, scratch, run_dir, settings, max(remaining, 1.0))
            output += text
            evidence, unreadable = _collect(evidence_dir, nonce)
            running = _read_start(evidence_dir / "__running__")
            if timed_out or not running or running in evidence or running == "__module__":
                break
            reasons[running] = (f"not graded: the grading process ended during this check (exit code {exit_code}); "
                                "did your code call os._exit, exhaust the memory or crash?")
            if all(probe in evidence or probe in reasons for probe in probes):
                break
        reason = _missing_reason(timed_out, exit_code, settings, unreadable, output)
        return ChildRun(evidence, reason, exit_code, output[: settings.output_bytes * 2], time.perf_counter() - start,
                        reasons)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)


def _read_start(path: Path, size: int = 200) -> str:
    """The first `size` characters of a small text file the child writes, or ""."""
    try:
        with open(path, errors="replace") as file:
            return file.read(size)
    except OSError:
        return ""


def _launch(job: dict, lib: Path, scratch: Path, run_dir: Path, settings: Settings, timeout: float):
    """Starts one child with `job` on stdin; returns (exit code, timed out, kept output)."""
    env = {name: os.environ[name] for name in ENVIRONMENT_PASSED if name in os.environ}
    env.update(TMPDIR=str(scratch), PYTHONHASHSEED="0")
    boot = f"import sys; sys.path.insert(0, {str(lib)!r}); import grader.child; grader.child.main()"
    process = subprocess.Popen(
        [sys.executable, "-I", "-c", boot], cwd=scratch, env=env, start_new_session=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    output = {}
    reader = threading.Thread(target=_drain, args=(process.stdout, settings.output_bytes, output), daemon=True)
    reader.start()
    timed_out = False
    try:
        process.stdin.write(json.dumps(job).encode())
        process.stdin.close()
    except BrokenPipeError:
        pass
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    _kill_group(process)
    process.wait()
    reader.join(timeout=5)
    return process.returncode, timed_out, _output_text(output)


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def _collect(evidence_dir: Path, nonce: str) -> tuple[dict[str, dict], list[str]]:
    found, unreadable = {}, []
    for path in sorted(evidence_dir.glob("*.npz")):
        if path.name.endswith(".partial.npz"):
            continue
        try:
            record = ev.load(path)
        except Exception as error:  # noqa: BLE001 - a forged or truncated file is simply not evidence
            unreadable.append(f"{path.stem}: {error}")
            continue
        if ev.text(record, ev.NONCE) != nonce:
            unreadable.append(f"{path.stem}: not written by the grader")
            continue
        found[path.stem] = record
    return found, unreadable


def _output_text(output: dict) -> str:
    head = output.get("head", b"").decode("utf-8", "replace")
    total = output.get("total", 0)
    if total > len(output.get("head", b"")):
        head += f"\n[... {total:,} bytes of output in all; the rest is not kept ...]\n"
        head += output.get("tail", b"").decode("utf-8", "replace")[-1000:]
    return head


def _missing_reason(timed_out: bool, exit_code: int | None, settings: Settings, unreadable, text: str) -> str:
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


def fingerprint_files(week: int, settings: Settings) -> str:
    """Hash of everything the reference evidence of `week` depends on."""
    digest = hashlib.sha256()
    files = [settings.solutions_dir / f"{WEEKS[week]}.py"]
    for package in PACKAGES_FOR_CHILD:
        files += sorted((REPO / package).glob("*.py"))
    for path in files:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for package in ("jax", "jaxlib", "flax", "optax", "numpy"):
        digest.update(f"{package}={_version(package)}".encode())
    for name in ("JAX_PLATFORMS", "XLA_FLAGS", "CUDA_VISIBLE_DEVICES"):
        digest.update(f"{name}={os.environ.get(name, '')}".encode())
    return digest.hexdigest()[:24]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


class ReferenceError(RuntimeError):
    """The reference evidence could not be produced (a bug in the solutions or the grader)."""


def reference_folder(week: int, settings: Settings) -> Path:
    """The folder holding the reference evidence of `week`, computing it if it is not cached."""
    if settings.reference_dir is not None:
        folder = settings.reference_dir / WEEKS[week]
        if not (folder / "complete").exists():
            raise ReferenceError(f"no recorded reference evidence for week {week} in {settings.reference_dir}")
        return folder
    folder = settings.cache_dir / "reference" / fingerprint_files(week, settings) / WEEKS[week]
    if (folder / "complete").exists():
        return folder
    solution = settings.solutions_dir / f"{WEEKS[week]}.py"
    if not solution.exists():
        raise ReferenceError(f"no reference solution {solution} and no recorded reference evidence")
    reference_settings = dataclasses.replace(settings, week_timeout_s=max(settings.week_timeout_s, 300.0),
                                             probe_timeout_s=max(settings.probe_timeout_s, 120.0))
    run = run_child(week, solution, "reference", reference_settings)
    failed = [name for name, record in run.evidence.items() if ev.text(record, ev.STATUS) != "ok"]
    expected = {"__module__", *checks_module(week).PROBES}
    if failed or not expected <= set(run.evidence):
        problems = [f"{name}: {ev.text(run.evidence[name], ev.MESSAGE)} {ev.text(run.evidence[name], ev.WHERE)}"
                    for name in failed] or [run.missing_reason]
        raise ReferenceError(f"the reference solution of week {week} failed its probes: {problems[:3]}\n"
                             f"{run.output[-2000:]}")
    partial = folder.with_name(folder.name + f".partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
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


def grade_week(week: int, target: Path, settings: Settings) -> WeekReport:
    """Grades the module of `week` found in the folder `target`."""
    start = time.perf_counter()
    module = checks_module(week)
    folder = reference_folder(week, settings)
    expected = load_folder(folder)
    module_file = target / f"{WEEKS[week]}.py"
    if not module_file.exists():
        reason = f"not graded: there is no {module_file.name} in {target}"
        run = ChildRun({}, reason, None, "", 0.0)
    else:
        protected = (settings.solutions_dir, settings.cache_dir / "reference")
        if settings.reference_dir is not None:
            protected += (settings.reference_dir,)
        given = folder / "__setup__.npz"
        run = run_child(week, module_file, "student", settings, given if given.exists() else None, protected)
    module_record = run.evidence.get("__module__")
    missing_reason = run.missing_reason
    if module_record is not None and ev.text(module_record, ev.STATUS) != "ok":
        where = ev.text(module_record, ev.WHERE)
        missing_reason = (f"not graded: importing {module_file.name} failed: {ev.text(module_record, ev.MESSAGE)}"
                          + (f" (at {where})" if where else ""))
    results = [
        judge_check(check, week, run.evidence.get(check.probe), expected.get(check.probe),
                    run.reasons.get(check.probe, missing_reason))
        for check in module.CHECKS
    ]
    environment = {key[4:]: ev.text(record, key) for record in [expected.get("__module__", {})]
                   for key in record if key.startswith("env:")}
    return WeekReport(week, results, time.perf_counter() - start, run.output, environment)


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
        return list(pool.map(lambda week: grade_week(week, target, settings), weeks))
