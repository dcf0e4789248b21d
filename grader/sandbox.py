"""Runs one grading child behind an operating-system boundary. Every child that imports submitted
code (and the reference children too, so that both see the same machine) starts here.

Three levels, chosen once per grading run (`choose`):

  bubblewrap  Linux with user namespaces and `bwrap` installed. The child gets new user, pid, ipc,
              uts, cgroup and network namespaces, no capabilities, no network, its own session, and
              dies with the grader. Its file system holds, read-only, only the system folders, the
              Python environment, the grader's child-side code, the submitted module and the week's
              given inputs; it writes only to a private, size-limited tmpfs that vanishes with it.
  user        Root without bubblewrap (a container, a grading server). The child runs as a fresh
              unprivileged uid in a private folder; the solutions, the reference evidence, caches,
              `.git` and the batch's folders are closed to other users first. After the run every
              process of that uid is killed and its files in the world-writable folders are removed.
              The network is not cut off at this level.
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
import glob
import json
import os
import pwd
import secrets
import shutil
import signal
import site
import stat
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

from grader import evidence as ev
from grader import resource_limits

LEVELS = ("bubblewrap", "user", "none")
AUTO = "auto"
ENVIRONMENT_VARIABLE = "COURSE_SANDBOX"  # auto (default), bubblewrap, user or none
INSIDE = Path("/grading")  # where the child's folders appear inside a bubblewrap sandbox
SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/nsswitch.conf")
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/dev/mqueue", "/run/lock", "/var/lock", "/run/shm")
RAM_BACKED = ("/dev/shm", "/run/lock", "/var/lock", "/run/shm")  # private tmpfs mounts at the user level, if it can
LAUNCHER = Path(__file__).with_name("launcher.py")
CHILD_UIDS = range(1_900_000_000, 1_990_000_000)  # never in /etc/passwd; one fresh uid per run
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
        exposed = [path for path in protected if any(_is_within(Path(path), Path(folder))
                                                      for folder in _bound_folders())]
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
        import tempfile

        remove_abandoned_workspaces()
        resource_limits.remove_abandoned_groups()
        root = Path(tempfile.mkdtemp(prefix=f"course-grade-{os.getpid()}-"))
        uid = secrets.choice(CHILD_UIDS) if self.level != "none" and os.geteuid() == 0 else None
        self.folders = Folders(root, root / "lib", root / "submission", None, root / "scratch", uid)
        for folder in (self.folders.lib, self.folders.submission, self.folders.scratch):
            folder.mkdir()
        return self.folders

    def __exit__(self, *exc_info) -> None:
        shutil.rmtree(self.folders.root, ignore_errors=True)


def remove_abandoned_workspaces() -> None:
    """Removes the run folders of graders that are gone (killed before they could clean up)."""
    import tempfile

    for folder in Path(tempfile.gettempdir()).glob("course-grade-*-*"):
        owner = folder.name.split("-")[2]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            shutil.rmtree(folder, ignore_errors=True)


def hand_over(folders: Folders) -> None:
    """Opens the run's folders to the child's uid (as root) and to no one else: the grader's code,
    the submission and the given inputs stay root's, readable through the child's own group but not
    writable (a child that rewrote them would change the next child started for the same grading);
    only the scratch folder is the child's. Done once, before any child starts."""
    if folders.uid is None or folders.handed_over:
        return
    for entry in folders.root.iterdir():
        writable = entry == folders.scratch
        for path in _tree(entry):
            os.lchown(path, folders.uid if writable else 0, folders.uid)
            if not os.path.islink(path):
                folder = os.path.isdir(path)
                os.chmod(path, (0o700 if folder else 0o600) if writable else (0o750 if folder else 0o640))
    folders.root.chmod(0o711)
    folders.handed_over = True


def _tree(path: Path):
    """`path` and, for a folder, everything in it (links are not followed)."""
    yield path
    if path.is_dir() and not path.is_symlink():
        for directory, subfolders, files in os.walk(path):
            for name in subfolders + files:
                yield os.path.join(directory, name)


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
    output, stream = {}, ev.Stream(limits.record_bytes, limits.evidence_bytes, job.get("records"))
    readers = [threading.Thread(target=_drain, args=(process.stdout, limits.output_bytes, output), daemon=True),
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
    return Outcome(process.returncode, timed_out and not usage.stopped_for, _output_text(output), stream, usage)


def _paths_inside(level: str, folders: Folders) -> dict:
    """The job's paths as the child sees them."""
    if level == "bubblewrap":
        return {"lib": str(INSIDE / "lib"), "submission_dir": str(INSIDE / "submission"),
                "given_path": str(INSIDE / "given.npz") if folders.given else None, "scratch": "/tmp"}
    return {"lib": str(folders.lib), "submission_dir": str(folders.submission),
            "given_path": str(folders.given) if folders.given else None, "scratch": str(folders.scratch)}


def _environment(level: str, scratch: str) -> dict:
    env = {name: os.environ[name] for name in ENVIRONMENT_PASSED if name in os.environ}
    env.update(PATH="/usr/bin:/bin", HOME=scratch, TMPDIR=scratch, PYTHONHASHSEED="0", USER="grader",
               LOGNAME="grader", PYTHONDONTWRITEBYTECODE="1")
    return env


def start(level: str, command: list[str], folders: Folders, job: dict, pass_fds, limits: Limits | None = None,
          group: resource_limits.ControlGroup | None = None) -> subprocess.Popen:
    """Starts `command` at `level` through `grader.launcher` (see the module docstring)."""
    inside = _paths_inside(level, folders)
    env = _environment(level, inside["scratch"])
    if folders.uid is not None:
        hand_over(folders)
    if level == "bubblewrap":
        command = _bubblewrap_arguments(folders, env, job) + command
    namespaces = user_level_namespaces() if level == "user" else ()
    spec = {"cgroup_procs": group.procs_files if group is not None else [],
            "namespaces": list(namespaces), "private_mounts": _private_mounts(namespaces, limits or Limits(1, 1, 1)),
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


def _bubblewrap_arguments(folders: Folders, env: dict, job: dict) -> list[str]:
    limits = job.get("limits", {})
    scratch = limits.get("scratch_bytes", Limits.scratch_bytes)
    shared = min(limits.get("shared_memory_bytes", Limits.shared_memory_bytes), scratch // 2)
    arguments = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
                 "--cap-drop", "ALL", "--uid", "65534", "--gid", "65534", "--hostname", "grader",
                 "--clearenv", "--proc", "/proc", "--dev", "/dev",
                 "--size", str(scratch - shared), "--tmpfs", "/tmp", "--size", str(shared), "--tmpfs", "/dev/shm"]
    for name, value in env.items():
        arguments += ["--setenv", name, value]
    for folder in SYSTEM_FOLDERS:
        if os.path.islink(folder):
            arguments += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            arguments += ["--ro-bind", folder, folder]
    for path in SYSTEM_FILES:
        arguments += ["--ro-bind-try", path, path]
    for folder in _bound_folders():
        if not any(folder != other and _is_within(Path(folder), Path(other)) for other in _bound_folders()):
            arguments += ["--ro-bind", folder, folder]
    for device in sorted(glob.glob("/dev/nvidia*")):  # GPUs, where there are any
        arguments += ["--dev-bind-try", device, device]
    arguments += ["--ro-bind", str(folders.lib), str(INSIDE / "lib"),
                  "--ro-bind", str(folders.submission), str(INSIDE / "submission")]
    if folders.given is not None:
        arguments += ["--ro-bind", str(folders.given), str(INSIDE / "given.npz")]
    return arguments + ["--remount-ro", "/", "--chdir", "/tmp", "--"]


@functools.cache
def _bound_folders() -> tuple[str, ...]:
    """The Python environment's folders (interpreter, standard library, site-packages), real paths."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
                  *site.getsitepackages(), sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"],
                  os.path.dirname(os.path.realpath(sys.executable))}
    user_site = site.getusersitepackages()
    if site.ENABLE_USER_SITE and os.path.isdir(user_site):
        candidates.add(user_site)
    folders = set()
    for folder in candidates:
        for path in (folder, os.path.realpath(folder)):
            if os.path.isdir(path) and not any(path == system or path.startswith(system + "/")
                                               for system in SYSTEM_FOLDERS):
                folders.add(path)
    return tuple(sorted(folders))


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


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
        kill_every_process_of(folders.uid)


def kill_every_process_of(uid: int) -> None:
    """SIGKILL to every process of `uid`, from a helper that runs as `uid` (kill(-1) reaches exactly
    the processes it may signal), until none is left."""
    for _ in range(20):
        if not processes_of(uid):
            return
        helper = {"uid": uid, "cwd": "/", "limits": {"address_space": 2**30, "cpu_time": 10, "file_size": 0},
                  "command": [sys.executable, "-I", "-S", "-c",
                              "import os\ntry:\n    os.kill(-1, 9)\nexcept ProcessLookupError:\n    pass"]}
        subprocess.run([sys.executable, "-I", "-S", str(LAUNCHER), json.dumps(helper)], env={},
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        time.sleep(0.05)


def processes_of(uid: int) -> list[int]:
    """The pids of the live (not zombie) processes whose uid is `uid` (from /proc)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.stat(f"/proc/{entry}").st_uid == uid and not _is_zombie(entry):
                    found.append(int(entry))
            except OSError:
                continue
    return found


def _is_zombie(pid: str) -> bool:
    """True for a process that has exited (a zombie, or gone altogether)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            return file.read().rsplit(b")", 1)[-1].split()[0] == b"Z"
    except OSError:
        return True


def _clean_up(level: str, folders: Folders) -> None:
    """Removes what a user-level child left in the world-writable folders and its System V IPC
    objects (where it had no IPC namespace of its own)."""
    if level != "user":
        return
    for base in dict.fromkeys(os.path.realpath(folder) for folder in WORLD_WRITABLE):
        _remove_owned_by(Path(base), folders.uid, depth=3)
    for kind, option in (("shm", "-m"), ("msg", "-q"), ("sem", "-s")):
        for identifier in system_v_objects_of(folders.uid, kind):
            subprocess.run(["ipcrm", option, str(identifier)], capture_output=True, check=False)


def system_v_objects_of(uid: int, kind: str) -> list[int]:
    """The ids of the System V IPC objects (`kind`: shm, msg or sem) that belong to `uid`, as this
    process's IPC namespace sees them."""
    try:
        lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()
    except OSError:
        return []
    header = lines[0].split() if lines else []
    found = []
    for line in lines[1:]:
        fields = dict(zip(header, line.split()))
        if fields.get("uid") == str(uid) or fields.get("cuid") == str(uid):
            found.append(int(fields.get("shmid") or fields.get("msqid") or fields.get("semid") or -1))
    return [identifier for identifier in found if identifier >= 0]


def _remove_owned_by(folder: Path, uid: int, depth: int) -> None:
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries[:10_000]:
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if info.st_uid == uid:
            if stat.S_ISDIR(info.st_mode):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                Path(entry.path).unlink(missing_ok=True)
        elif stat.S_ISDIR(info.st_mode) and depth > 1 and info.st_mode & stat.S_IWOTH:
            _remove_owned_by(Path(entry.path), uid, depth - 1)


def close_to_others(paths: list[Path]) -> list[str]:
    """Closes each protected path to group and others (user level), before any child starts; returns
    what was changed.

    Closing a folder closes everything in it, but only where the graded code cannot get round it, so
    this raises Unavailable, naming the path, for one that
      - is a symbolic link: a link has no mode of its own, and its target stays open under its own name;
      - lies under a folder that other users can write: the graded code could move the path away and
        put one of its own in its place, or make a path that does not exist yet before the grader does
        (an entry of a sticky folder like /tmp that exists and is not a graded uid's is safe);
      - root does not own: closing it could lock out its owner.
    A path that does not exist is skipped once nothing on its way lets other users make it."""
    changed = []
    for path in (Path(os.path.abspath(path)) for path in paths):
        if writable := _folder_others_can_write_on_the_way(path):
            raise Unavailable(f"{path} lies under {writable}, which other users can write: the graded code could "
                              "put its own files in its place; the unprivileged-user sandbox needs it in a folder "
                              "that only root can change")
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(info.st_mode):
            raise Unavailable(f"{path} is a symbolic link (to {os.readlink(path)}): the unprivileged-user sandbox "
                              "cannot close a link to other users; give the grader the real path instead")
        if info.st_uid != 0:
            owner = _owner_name(info.st_uid)
            raise Unavailable(f"{path} belongs to {owner}, not root: the unprivileged-user sandbox needs it "
                              "owned by root and closed to other users")
        if info.st_mode & 0o077:
            os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700)
            changed.append(str(path))
    return changed


def _folder_others_can_write_on_the_way(path: Path) -> str:
    """The first folder on the way to `path` (as written, and once links are resolved) in which a user
    other than root could replace or make the next step of the way; "" where there is none. Such a
    folder is one that others can write, unless it is sticky (like /tmp) and the next step exists and
    belongs to someone other than a graded uid: then only its owner can move it. (ACLs are not read.)"""
    for way in dict.fromkeys((path, Path(os.path.realpath(path)))):
        for folder, step in zip(way.parents, (way, *way.parents)):
            try:
                mode = folder.stat().st_mode
            except OSError:  # not made yet: the nearest folder that exists decides
                continue
            if not mode & stat.S_IWOTH:
                continue
            try:
                owner = step.lstat().st_uid
            except FileNotFoundError:
                return str(folder)
            if not (mode & stat.S_ISVTX and owner not in CHILD_UIDS):
                return str(folder)
    return ""


def _owner_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def _drain(stream, keep: int, sink: dict) -> None:
    """Reads a child's output to the end, keeping its first `keep` bytes and the last 2 KiB."""
    head, tail, total = bytearray(), b"", 0
    while chunk := stream.read(65536):
        total += len(chunk)
        if len(head) < keep:
            head.extend(chunk[: keep - len(head)])
        tail = (tail + chunk)[-2048:]
    sink.update(head=bytes(head), tail=tail, total=total)


def _output_text(output: dict) -> str:
    head = output.get("head", b"").decode("utf-8", "replace")
    total = output.get("total", 0)
    if total > len(output.get("head", b"")):
        head += f"\n[... {total:,} bytes of output in all; the rest is not kept ...]\n"
        head += output.get("tail", b"").decode("utf-8", "replace")[-1000:]
    return head
