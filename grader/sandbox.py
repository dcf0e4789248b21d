"""Runs one grading child behind an operating-system boundary. Every child that imports submitted
code (and the reference children too, so that both see the same machine) starts here.

Three levels, chosen once per grading run (`choose`):

  bubblewrap  Linux with user namespaces and `bwrap` installed (`grader.bubblewrap`). The child gets
              new user, pid, ipc, uts, cgroup and network namespaces, no capabilities, no network,
              its own session, and dies with the grader. Its file system holds, read-only, only the
              system folders, the Python environment, the grader's child-side code, the submitted
              module and the week's given inputs; it writes only to a private, size-limited tmpfs.
  user        Root without bubblewrap (a container, a grading server). The child runs as a fresh
              unprivileged uid in a private folder; the solutions, the reference evidence, caches,
              `.git` and the batch's folders are closed to other users first (`grader.permissions`).
              After the run every process of that uid is killed and its files in the world-writable
              folders are removed (`grader.uid_cleanup`). The network is not cut off at this level.
  none        Neither (a student's laptop): the child is an ordinary process, for self-checking only.
              Every report says so, and instructor commands refuse it unless told otherwise.

When the grader runs as root, bubblewrap too is started as a fresh unprivileged uid of the run's
own (no other process shares it): the kernel exempts root from the process limit, and a child that
got out of its namespaces would still be nobody. The Python environment must then lie in folders
that other users can open.

Every child starts through `grader.launcher`, trusted code that runs before the child exists: it
joins the grading's control group, sets the hard resource limits (address space, file size, CPU
time, processes), sets no_new_privs (setuid programs gain nothing), at the user level unshares the
IPC, network and mount namespaces where the kernel lets root (so System V IPC, the network,
loopback included, and the RAM-backed lock and shared-memory folders are the child's own), drops
to the child's uid, and only then becomes the child. Memory, processes and CPU are also bounded
over all the processes of one grading together (`grader.resource_limits`: a control group where
one can be made, else a watchdog). The child's evidence comes back over a pipe, bounded and
checked here: the grader never opens a file the child made.
"""

import dataclasses
import functools
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
from pathlib import Path

from grader import bubblewrap, child_output, permissions, resource_limits, uid_cleanup
from grader import evidence as ev

LEVELS = ("bubblewrap", "user", "none")
AUTO = "auto"
ENVIRONMENT_VARIABLE = "COURSE_SANDBOX"  # auto (default), bubblewrap, user or none
RAM_BACKED = ("/dev/shm", "/run/lock", "/var/lock", "/run/shm")  # private tmpfs mounts at the user level, if it can
LAUNCHER = Path(__file__).with_name("launcher.py")
ENVIRONMENT_PASSED = ("LANG", "LC_ALL", "JAX_PLATFORMS", "XLA_FLAGS", "CUDA_VISIBLE_DEVICES", "TPU_VISIBLE_CHIPS")


class Unavailable(RuntimeError):
    """The requested sandbox level cannot run on this machine; the message says why."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one grading may use. Memory and CPU time bound each process and, through
    `grader.resource_limits`, all its processes together; file size bounds each file written."""

    memory_bytes: int
    file_bytes: int
    cpu_seconds: int
    processes: int = 512  # threads count too: XLA starts a pool per device
    scratch_bytes: int = 1 * 2**30  # the private tmpfs folders (bubblewrap: /tmp and /dev/shm together)
    shared_memory_bytes: int = 64 * 2**20  # of which /dev/shm (and, at the user level, each lock folder)
    output_bytes: int = 16 * 2**10  # how much of the child's stdout and stderr is kept
    record_bytes: int = 64 * 2**20  # one evidence record
    evidence_bytes: int = 256 * 2**20  # all evidence records of one run
    # a probe that runs check_seconds or longer is at its own time limit: the run's wall-clock limit
    # grows by its time (`evidence.Stream.overrun`), by overrun_seconds at most
    check_seconds: float = float("inf")
    overrun_seconds: float = 0.0


@dataclasses.dataclass
class Folders:
    """A run's private folders, made by the grader: `lib` (the child-side packages), `submission`
    (the graded module), `given` (the week's inputs, optional) and `scratch` (the child's temp folder
    where there is no tmpfs)."""

    root: Path
    lib: Path
    submission: Path
    given: Path | None
    scratch: Path
    uid: int | None = None  # the child's own uid (when the grader runs as root)
    handed_over: bool = False


@dataclasses.dataclass
class Outcome:
    """What came back from one child: bounded output and evidence records, not yet judged, and
    what its processes used together (and why the grader stopped them, if it did)."""

    exit_code: int | None
    timed_out: bool
    output: str
    stream: ev.Stream
    usage: resource_limits.Usage = dataclasses.field(default_factory=resource_limits.Usage)


# ---------------------------------------------------------------------------------------------
# Choosing the level


def choose(requested: str | None = None, protected: tuple[Path, ...] = ()) -> str:
    """The level to grade at: `requested` (or $COURSE_SANDBOX), or with "auto" the strongest that
    works here. Raises Unavailable when a requested level cannot run, saying why."""
    requested = (requested or os.environ.get(ENVIRONMENT_VARIABLE) or AUTO).lower()
    if requested not in (AUTO, *LEVELS):
        raise Unavailable(f"unknown sandbox level {requested!r}; expected one of auto, {', '.join(LEVELS)}")
    if requested == "none":
        return "none"
    candidates = LEVELS[:-1] if requested == AUTO else (requested,)
    reasons = []
    for level in candidates:
        problem = why_unavailable(level, tuple(sorted(str(path) for path in protected)))
        if not problem:
            return level
        reasons.append(f"{level}: {problem}")
    if requested == AUTO:
        return "none"
    raise Unavailable(f"the {requested} sandbox cannot run here: {'; '.join(reasons)}")


@functools.cache
def why_unavailable(level: str, protected: tuple[str, ...] = ()) -> str:
    """"" when `level` works on this machine, else the reason (tried once per process)."""
    if level == "bubblewrap":
        if not sys.platform.startswith("linux"):
            return "bubblewrap needs Linux"
        if shutil.which("bwrap") is None:
            return "bwrap is not installed (Debian and Ubuntu: apt-get install bubblewrap)"
        exposed = [path for path in protected if bubblewrap.in_python_folders(Path(path))]
        if exposed:
            return f"{exposed[0]} lies inside a folder the sandbox must show (the Python environment or a system folder)"
        return _smoke_test("bubblewrap")
    if level == "user":
        if not sys.platform.startswith("linux"):
            return "the unprivileged-user sandbox needs Linux"
        if os.geteuid() != 0:
            return "only root can run a child as another user"
        return _smoke_test("user")
    return ""


def _smoke_test(level: str) -> str:
    """Starts Python (and numpy) at `level`; "" when that works, else the reason."""
    hint = (" (as root the child runs as another user: is Python installed in folders that other users can "
            "open? /root, for one, is closed to them)" if os.geteuid() == 0 else "")
    with Workspace(level) as folders:
        command = [sys.executable, "-I", "-c", "import numpy"]
        try:
            result = start(level, command, folders, {}, pass_fds=())
            output, _ = result.communicate(timeout=60)
        except (OSError, subprocess.SubprocessError) as error:
            return f"could not start a child ({error}){hint}"
        finally:
            _clean_up(level, folders)
    if result.returncode != 0:
        last = output.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit code {result.returncode}"]
        return f"a test child failed: {last[0][:300]}{hint}"
    return ""


def describe(level: str) -> str:
    """One line for reports: what the level promises."""
    if level == "user":
        namespaces = user_level_namespaces()
        network = "no network" if "net" in namespaces else "network not cut off"
        own = f"own {', '.join(namespaces)} namespaces, " if namespaces else ""
        return f"unprivileged user: own uid, {own}private folders, grader files closed; {network}"
    return {
        "bubblewrap": "bubblewrap: own namespaces, no network, read-only view of only what grading needs",
        "none": "NOT SANDBOXED: the submitted code ran as you, with your files (self-check only)",
    }[level]


@functools.cache
def user_level_namespaces() -> tuple[str, ...]:
    """The namespaces a user-level child gets of its own: ("ipc", "net", "mount") where the kernel
    lets root unshare them (not in most containers), else fewer, or none. Tried once per process."""
    if os.geteuid() != 0 or not sys.platform.startswith("linux"):
        return ()
    for namespaces in (("ipc", "net", "mount"), ("ipc", "net"), ("ipc",)):
        spec = {"namespaces": list(namespaces), "private_mounts": _private_mounts(namespaces, Limits(1, 1, 1)),
                "command": [sys.executable, "-I", "-S", "-c", "pass"], "cwd": "/"}
        finished = subprocess.run([sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(spec)],
                                  capture_output=True, timeout=60, check=False)
        if finished.returncode == 0:
            return namespaces
    return ()


def _private_mounts(namespaces, limits: Limits) -> dict[str, int]:
    """The RAM-backed folders a user-level child gets a small tmpfs of its own on (in its own mount
    namespace), so that nothing it writes there is shared or outlives it."""
    if "mount" not in namespaces:
        return {}
    folders = {os.path.realpath(folder) for folder in RAM_BACKED if os.path.isdir(folder)}
    return {folder: limits.shared_memory_bytes for folder in sorted(folders)}


# ---------------------------------------------------------------------------------------------
# One run


class Workspace:
    """A run's private folders under the system temp folder, removed (with anything the child left)
    on exit. When the grader runs as root, the folder itself stays root's (mode 0711, so the child
    can neither remove nor replace it) and what is in it is handed to the child's uid, closed to
    everyone else."""

    def __init__(self, level: str):
        self.level = level

    def __enter__(self) -> Folders:
        remove_abandoned_workspaces()
        resource_limits.remove_abandoned_groups()
        root = Path(tempfile.mkdtemp(prefix=f"course-grade-{os.getpid()}-"))
        uid = secrets.choice(permissions.CHILD_UIDS) if self.level != "none" and os.geteuid() == 0 else None
        self.folders = Folders(root, root / "lib", root / "submission", None, root / "scratch", uid)
        for folder in (self.folders.lib, self.folders.submission, self.folders.scratch):
            folder.mkdir()
        return self.folders

    def __exit__(self, *exc_info) -> None:
        shutil.rmtree(self.folders.root, ignore_errors=True)


def remove_abandoned_workspaces() -> None:
    """Removes the run folders of graders that are gone (killed before they could clean up)."""
    for folder in Path(tempfile.gettempdir()).glob("course-grade-*-*"):
        owner = folder.name.split("-")[2]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def run(level: str, job: dict, folders: Folders, limits: Limits, timeout: float, on_probe=None) -> Outcome:
    """Runs `grader.child` with `job` at `level`, `timeout` seconds at most; returns what came back.
    `on_probe(name)`, when given, is called as the child starts each probe (looked at four times a second)."""
    inside = _paths_inside(level, folders)
    read_end, write_end = os.pipe()
    job = {**job, **inside, "evidence_fd": write_end, "limits": dataclasses.asdict(limits),
           "guard": level == "none", "parent_pid": None if level == "bubblewrap" else os.getpid()}
    boot = f"import sys; sys.path.insert(0, {inside['lib']!r}); import grader.child; grader.child.main()"
    command = [sys.executable, "-I", "-c", boot]
    group = resource_limits.ControlGroup.create(limits.memory_bytes, limits.processes) if level != "none" else None
    try:
        process = start(level, command, folders, job, pass_fds=(write_end,), limits=limits, group=group)
    except BaseException:
        if group is not None:
            group.remove()
        raise
    finally:
        os.close(write_end)
    watchdog = resource_limits.Watchdog(
        process.pid, folders.uid, group, limits.memory_bytes, limits.cpu_seconds,
        kill=lambda: _stop(level, process, folders, group, wait=False),
        shared_folders=RAM_BACKED if level == "user" and "mount" not in user_level_namespaces() else ()).start()
    output = child_output.Output(limits.output_bytes)
    stream = ev.Stream(limits.record_bytes, limits.evidence_bytes, job.get("records"))
    readers = [threading.Thread(target=output.read_from, args=(process.stdout,), daemon=True),
               threading.Thread(target=stream.read_from, args=(read_end,), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        process.stdin.write(json.dumps(job).encode())
        process.stdin.close()
    except (BrokenPipeError, OSError):
        pass
    timed_out, deadline, shown = False, time.monotonic() + timeout, ""
    while True:
        if on_probe is not None and stream.running != shown:
            shown = stream.running
            if shown not in ("", ev.DONE):
                on_probe(shown)
        left = deadline + min(stream.overrun(limits.check_seconds), limits.overrun_seconds) - time.monotonic()
        if left <= 0:
            timed_out = True
            break
        try:
            process.wait(timeout=min(left, 0.25 if on_probe is not None else 1.0))
            break
        except subprocess.TimeoutExpired:
            continue
    usage = watchdog.stop()
    _stop(level, process, folders, group)
    if group is not None:
        if group.out_of_memory() and not usage.stopped_for:
            usage.stopped_for = (f"its processes together reached the memory limit of {limits.memory_bytes / 2**30:g} "
                                 "GiB and the kernel stopped one")
        group.remove()
    for reader in readers:
        reader.join(timeout=5)
    stream.close()
    os.close(read_end)
    _clean_up(level, folders)
    return Outcome(process.returncode, timed_out and not usage.stopped_for, output.text(), stream, usage)


def _paths_inside(level: str, folders: Folders) -> dict:
    """The job's paths as the child sees them."""
    if level == "bubblewrap":
        inside = bubblewrap.INSIDE
        return {"lib": str(inside / "lib"), "submission_dir": str(inside / "submission"),
                "given_path": str(inside / "given.npz") if folders.given else None, "scratch": "/tmp"}
    return {"lib": str(folders.lib), "submission_dir": str(folders.submission),
            "given_path": str(folders.given) if folders.given else None, "scratch": str(folders.scratch)}


def _environment(level: str, scratch: str) -> dict:
    env = {name: os.environ[name] for name in ENVIRONMENT_PASSED if name in os.environ}
    env.update(PATH="/usr/bin:/bin", HOME=scratch, TMPDIR=scratch, PYTHONHASHSEED="0", USER="grader",
               LOGNAME="grader", PYTHONDONTWRITEBYTECODE="1", COURSE_GRADING_CHILD="1")  # see grader.notebook
    return env


def start(level: str, command: list[str], folders: Folders, job: dict, pass_fds, limits: Limits | None = None,
          group: resource_limits.ControlGroup | None = None) -> subprocess.Popen:
    """Starts `command` at `level` through `grader.launcher` (see the module docstring)."""
    inside = _paths_inside(level, folders)
    env = _environment(level, inside["scratch"])
    sizes = limits or Limits(1, 1, 1)
    permissions.hand_over(folders)
    if level == "bubblewrap":
        command = bubblewrap.arguments(folders, env, sizes.scratch_bytes, sizes.shared_memory_bytes) + command
    namespaces = user_level_namespaces() if level == "user" else ()
    spec = {"cgroup_procs": group.procs_files if group is not None else [],
            "namespaces": list(namespaces), "private_mounts": _private_mounts(namespaces, sizes),
            "limits": _resource_limits(level, limits), "uid": folders.uid,
            "command": [shutil.which(command[0]) or command[0], *command[1:]],
            "cwd": "/" if level == "bubblewrap" else str(folders.scratch)}
    return subprocess.Popen([sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(spec)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=pass_fds, env=env,
                            start_new_session=True)


def _resource_limits(level: str, limits: Limits | None) -> dict[str, int]:
    """The hard limits the launcher sets on the child. The process count is per user: only a sandbox
    gives the child a user of its own, so only there is it limited."""
    if limits is None:
        return {}
    chosen = {"address_space": limits.memory_bytes, "file_size": limits.file_bytes, "cpu_time": limits.cpu_seconds,
              "core_size": 0}
    if level != "none":
        chosen["processes"] = limits.processes
    return chosen


def _stop(level: str, process: subprocess.Popen, folders: Folders,
          group: resource_limits.ControlGroup | None = None, wait: bool = True) -> None:
    """Kills the child and everything it started: its control group, its process group and, as
    root, every process of its uid."""
    if group is not None:
        group.kill()
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if wait:
        process.wait()
    if folders.uid is not None:
        uid_cleanup.kill_every_process_of(folders.uid)


def _clean_up(level: str, folders: Folders) -> None:
    """Removes what a user-level child left in the world-writable folders and its System V IPC
    objects (where it had no IPC namespace of its own)."""
    if level == "user":
        uid_cleanup.remove_files_of(folders.uid)
        uid_cleanup.remove_system_v_objects_of(folders.uid)


def close_to_others(paths: list[Path]) -> list[str]:
    """Closes each protected path to group and others (user level), before any child starts; returns
    what was changed. Raises Unavailable, naming the path, for one that closing would not protect
    (`permissions.why_not_closable`: a link, a path under a folder that others can write, a path root
    does not own)."""
    changed = []
    for path in (Path(os.path.abspath(path)) for path in paths):
        if problem := permissions.why_not_closable(path):
            raise Unavailable(problem)
        if permissions.close(path):
            changed.append(str(path))
    return changed

