"""The child process that imports one week module (the student's or the reference) and probes it.

Started by `grader.sandbox` behind the operating-system boundary, as a fresh isolated interpreter
(`python -I`) whose `sys.path` holds a private copy of the `course` and `grader` packages, the folder
of the graded module and the installed libraries, never the repository. The job arrives as JSON on
stdin. Its resource limits were set before it started (`grader.launcher`). Each probe runs under its
own time limit, counted in the CPU time this process uses (so a check is not cut short because a
classmate's grading holds the cores), with a wall-clock limit of twice that as a backstop (the public
probes, then, where the grader asks for them, the hidden checks' probes again on the hidden inputs).
Its evidence is sent to the grader over the pipe `evidence_fd` as soon as it finishes, so a later
crash or exit loses only the checks not yet probed.

Without a sandbox (level "none", a student's own laptop) an audit hook also refuses process
creation and writes outside the scratch folder. That is a seat belt against accidents, not a
boundary: code in this process can switch it off, which is why instructors grade in a sandbox.
"""

import gc
import importlib
import json
import os
import signal
import sys
from pathlib import Path

BLOCKED_EVENTS = {
    "os.fork", "os.forkpty", "os.posix_spawn", "os.spawn", "os.exec", "os.system", "subprocess.Popen",
    "os.kill", "os.killpg", "signal.pthread_kill", "ctypes.dlopen", "ctypes.dlsym", "socket.connect",
    "socket.bind", "pty.spawn", "os.startfile", "webbrowser.open",
}
PATH_EVENTS = {  # event -> positions of path arguments that must lie in a writable folder
    "os.remove": (0,), "os.rename": (0, 1), "os.rmdir": (0,), "os.mkdir": (0,), "os.chmod": (0,),
    "os.chown": (0,), "os.truncate": (0,), "os.link": (0, 1), "os.symlink": (1,), "os.utime": (0,),
    "shutil.rmtree": (0,), "os.mkfifo": (0,), "os.mknod": (0,),
}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
WALL_CLOCK_FACTOR = 2  # a check's wall-clock limit, in multiples of its CPU-time limit


def _inside(path: str, folders: list[str]) -> bool:
    return any(path == folder or path.startswith(folder + os.sep) for folder in folders)


def install_guard(writable: list[str], protected: list[str]) -> None:
    """Adds the audit hook described in the module docstring (it stays for the process's life)."""
    writable = [os.path.realpath(folder) for folder in writable]
    protected = [os.path.realpath(folder) for folder in protected]
    realpath, fsdecode = os.path.realpath, os.fsdecode

    def check_path(event, path, writing):
        if isinstance(path, int) or path is None:
            return
        real = realpath(fsdecode(path))
        if _inside(real, protected):
            raise PermissionError(f"the grader does not let graded code open {fsdecode(path)}")
        if writing and not _inside(real, writable):
            raise PermissionError(f"the grader does not let graded code write {fsdecode(path)} ({event})")

    def hook(event, args):
        if event == "open":
            path, mode, flags = args
            writing = (mode is not None and any(c in mode for c in "wax+")) or (
                mode is None and isinstance(flags, int) and flags & WRITE_FLAGS
            )
            check_path(event, path, writing)
        elif event in PATH_EVENTS:
            for position in PATH_EVENTS[event]:
                if position < len(args):
                    check_path(event, args[position], True)
        elif event in BLOCKED_EVENTS:
            raise PermissionError(f"the grader does not allow {event} in graded code")

    sys.addaudithook(hook)


# XLA's CPU compiler with its older (LLVM IR) fusion emitters compiles a small program in about
# half the time of the default MLIR emitters (a probe compiles a hundred or so): the six weeks'
# probes take about 0.7 times as long (docs/performance.md). XLA aborts the process on a flag it
# does not know, so it is given only to the jaxlib versions it was measured with.
FAST_COMPILE_FLAGS = {(0, 10): "--xla_cpu_use_fusion_emitters=false"}


def xla_flags(flags: str, jaxlib_version: tuple[int, ...]) -> str:
    """`flags` (the XLA_FLAGS a child inherited) plus the grading child's own: 8 CPU devices (the
    week 6 probes shard a batch over them) and, for a known jaxlib, the fast-compile flags."""
    wanted = ["--xla_force_host_platform_device_count=8"]
    fast = FAST_COMPILE_FLAGS.get(tuple(jaxlib_version[:2]))
    if fast:
        wanted.append(fast)
    added = [flag for flag in wanted if flag.split("=")[0] not in flags]
    return " ".join([flags, *added]).strip()


def configure_jax() -> None:
    import jaxlib.version

    os.environ["XLA_FLAGS"] = xla_flags(os.environ.get("XLA_FLAGS", ""), jaxlib.version.__version_info__)
    import jax

    # No persistent compilation cache: nothing a child writes is ever read by another run.
    # Full float32 matmuls on every backend (no TF32 on GPUs), so that tolerances are the same.
    jax.config.update("jax_default_matmul_precision", "highest")
    # The probes run small inputs through many freshly compiled programs: compiling fast matters
    # more than running fast (reference and submission are compiled alike, so they stay comparable).
    jax.config.update("jax_disable_most_optimizations", True)


def die_with_parent(parent_pid: int | None) -> None:
    """Asks Linux to kill this process when the grader that started it dies (say, a killed batch),
    so that no orphaned child keeps running; elsewhere a no-op."""
    if not sys.platform.startswith("linux") or parent_pid is None:
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the grader died before prctl took effect
        os._exit(1)


def main() -> None:
    job = json.loads(sys.stdin.read())
    sys.stdin.close()
    channel = job["evidence_fd"]
    die_with_parent(job.get("parent_pid"))
    configure_jax()

    import flax.nnx  # noqa: F401 - imported before the graded code, like every library the probes use
    import optax  # noqa: F401

    from grader import evidence, probing

    checks_module = importlib.import_module(job["grader_module"])
    probing.withhold(getattr(checks_module, "LIBRARY_ANSWERS", ()))
    # Tracing and compiling make many short-lived objects: the cycle collector ran often and walked
    # every object of the libraries each time. Those now sit outside its reach (gc.freeze), and it
    # runs less often: a week's probes take about 0.9 times as long (docs/performance.md).
    gc.freeze()
    gc.set_threshold(20_000, 20, 20)
    nonce = job["nonce"]
    probe_timeout = float(job["probe_timeout_s"])
    results_of = {}

    def send(name: str, results: dict, status: str = "ok", message: str = "", where: str = ""):
        record = evidence.to_evidence(results)
        record.update({evidence.STATUS: status, evidence.MESSAGE: message, evidence.WHERE: where,
                       evidence.NONCE: nonce})
        arrays = {key: evidence.to_array(value, key) for key, value in record.items()}
        results_of[name] = arrays
        evidence.send(channel, evidence.RECORD, name, evidence.dumps(arrays))

    def on_alarm(signum, frame):
        used = "of CPU time" if signum == signal.SIGPROF else "of wall-clock time"
        limit = probe_timeout if signum == signal.SIGPROF else WALL_CLOCK_FACTOR * probe_timeout
        raise probing.ProbeTimeout(f"ran past the grader's time limit of {limit:.0f} s {used} for one check "
                                   "(an endless loop?)")

    signal.signal(signal.SIGALRM, on_alarm)
    signal.signal(signal.SIGPROF, on_alarm)

    def set_timers(seconds: float) -> None:
        signal.setitimer(signal.ITIMER_PROF, seconds)
        signal.setitimer(signal.ITIMER_REAL, WALL_CLOCK_FACTOR * seconds)

    def run(name: str, function, *args) -> dict | None:
        evidence.send(channel, evidence.RUNNING, name)
        set_timers(probe_timeout)
        try:
            results = function(*args)
            set_timers(0)
            send(name, results)
            return results
        except BaseException as error:  # noqa: BLE001 - graded code may raise anything
            set_timers(0)
            failed = probing.failure(error)
            send(name, {}, failed.status, failed.message, failed.where)
            return None

    given_path = job.get("given_path")
    given = evidence.load(Path(given_path)) if given_path else {}

    submission_dir = os.path.realpath(job["submission_dir"])
    probing.SUBMISSION_DIR = submission_dir
    sys.path.insert(0, submission_dir)
    if job["guard"]:
        install_guard([job["scratch"]], job["protected_dirs"])

    week = None

    def import_week():
        nonlocal week
        week = importlib.import_module(job["week_module"])
        import jax

        return {"env:backend": jax.default_backend(), "env:device_count": str(jax.device_count()),
                "env:devices": ", ".join(sorted({device.device_kind for device in jax.devices()}))}

    if run("__module__", import_week) is None:
        return

    if job["mode"] == "reference":
        setup = getattr(checks_module, "setup", None)
        if setup is not None and run("__setup__", setup, week) is None:
            return
        given = results_of.get("__setup__", {}) if setup is not None else {}

    skip = set(job.get("skip", ()))
    for name in job["probes"]:
        if name not in skip:
            run(name, checks_module.PROBES[name], week, given)
    if job["hidden_probes"]:
        probing.HIDDEN_SEED = int(job["hidden_seed"])  # every probe input now comes from the hidden seed too
        for name in job["hidden_probes"]:
            if "hidden:" + name not in skip:
                run("hidden:" + name, checks_module.PROBES[name], week, given)
    evidence.send(channel, evidence.RUNNING, "__done__")


if __name__ == "__main__":
    main()
