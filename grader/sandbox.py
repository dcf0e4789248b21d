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

At every level the child's resource limits (memory, processes, file size, CPU time) are set by the
child itself before it imports submitted code (`grader.child`), and its evidence comes back over a
pipe (`evidence.receive`), bounded and checked here: the grader never opens a file the child made.
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

LEVELS = ("bubblewrap", "user", "none")
AUTO = "auto"
ENVIRONMENT_VARIABLE = "COURSE_SANDBOX"  # auto (default), bubblewrap, user or none
INSIDE = Path("/grading")  # where the child's folders appear inside a bubblewrap sandbox
SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/nsswitch.conf")
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/dev/mqueue")
CHILD_UIDS = range(1_900_000_000, 1_990_000_000)  # never in /etc/passwd; one fresh uid per run
ENVIRONMENT_PASSED = ("LANG", "LC_ALL", "JAX_PLATFORMS", "XLA_FLAGS", "CUDA_VISIBLE_DEVICES", "TPU_VISIBLE_CHIPS")


class Unavailable(RuntimeError):
    """The requested sandbox level cannot run on this machine; the message says why."""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What one child may use. Memory, file size and CPU time are per process."""

    memory_bytes: int
    file_bytes: int
    cpu_seconds: int
    processes: int = 512  # threads count too: XLA starts a pool per device
    scratch_bytes: int = 1 * 2**30  # the private tmpfs (bubblewrap)
    output_bytes: int = 16 * 2**10  # how much of the child's stdout and stderr is kept
    record_bytes: int = 64 * 2**20  # one evidence record
    evidence_bytes: int = 256 * 2**20  # all evidence records of one run


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
    """What came back from one child: bounded output and evidence records, not yet judged."""

    exit_code: int | None
    timed_out: bool
    output: str
    stream: ev.Stream


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
    return {
        "bubblewrap": "bubblewrap: own namespaces, no network, read-only view of only what grading needs",
        "user": "unprivileged user: own uid, private folders, grader files closed; network not cut off",
        "none": "NOT SANDBOXED: the submitted code ran as you, with your files (self-check only)",
    }[level]


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
    """Gives what is in the run's folder, as the grader made it, to the child's uid (as root), closed
    to other users. Done once, before any child starts: later the child could have put links there."""
    if folders.uid is None or folders.handed_over:
        return
    for entry in folders.root.iterdir():
        for path in _tree(entry):
            os.lchown(path, folders.uid, folders.uid)
        entry.chmod(0o700 if entry.is_dir() else 0o600)
    folders.root.chmod(0o711)
    folders.handed_over = True


def _tree(path: Path):
    """`path` and, for a folder, everything in it (links are not followed)."""
    yield path
    if path.is_dir() and not path.is_symlink():
        for directory, subfolders, files in os.walk(path):
            for name in subfolders + files:
                yield os.path.join(directory, name)


def run(level: str, job: dict, folders: Folders, limits: Limits, timeout: float) -> Outcome:
    """Runs `grader.child` with `job` at `level`, `timeout` seconds at most; returns what came back."""
    inside = _paths_inside(level, folders)
    read_end, write_end = os.pipe()
    job = {**job, **inside, "evidence_fd": write_end, "limits": dataclasses.asdict(limits),
           "guard": level == "none", "parent_pid": None if level == "bubblewrap" else os.getpid()}
    boot = f"import sys; sys.path.insert(0, {inside['lib']!r}); import grader.child; grader.child.main()"
    command = [sys.executable, "-I", "-c", boot]
    try:
        process = start(level, command, folders, job, pass_fds=(write_end,))
    finally:
        os.close(write_end)
    output, stream = {}, ev.Stream(limits.record_bytes, limits.evidence_bytes)
    readers = [threading.Thread(target=_drain, args=(process.stdout, limits.output_bytes, output), daemon=True),
               threading.Thread(target=stream.read_from, args=(read_end,), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        process.stdin.write(json.dumps(job).encode())
        process.stdin.close()
    except (BrokenPipeError, OSError):
        pass
    timed_out = False
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
    _stop(level, process, folders)
    for reader in readers:
        reader.join(timeout=5)
    stream.close()
    os.close(read_end)
    _clean_up(level, folders)
    return Outcome(process.returncode, timed_out, _output_text(output), stream)


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


def start(level: str, command: list[str], folders: Folders, job: dict, pass_fds) -> subprocess.Popen:
    inside = _paths_inside(level, folders)
    env = _environment(level, inside["scratch"])
    options = dict(stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, pass_fds=pass_fds,
                   env=env, start_new_session=True)
    if folders.uid is not None:
        hand_over(folders)
        options.update(user=folders.uid, group=folders.uid, extra_groups=[], umask=0o077)
    if level == "bubblewrap":
        return subprocess.Popen(_bubblewrap_arguments(folders, env, job) + command, **options)
    return subprocess.Popen(command, cwd=folders.scratch, **options)


def _bubblewrap_arguments(folders: Folders, env: dict, job: dict) -> list[str]:
    limits = job.get("limits", {})
    arguments = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
                 "--cap-drop", "ALL", "--uid", "65534", "--gid", "65534", "--hostname", "grader",
                 "--clearenv", "--proc", "/proc", "--dev", "/dev",
                 "--size", str(limits.get("scratch_bytes", Limits.scratch_bytes)), "--tmpfs", "/tmp"]
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


def _stop(level: str, process: subprocess.Popen, folders: Folders) -> None:
    """Kills the child and everything it started; at the user level, every process of its uid."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    process.wait()
    if folders.uid is not None:
        kill_every_process_of(folders.uid)


def kill_every_process_of(uid: int) -> None:
    """SIGKILL to every process of `uid`, from a helper that runs as `uid` (kill(-1) reaches exactly
    the processes it may signal), until none is left."""
    for _ in range(20):
        if not processes_of(uid):
            return
        subprocess.run([sys.executable, "-I", "-S", "-c",
                        "import os\ntry:\n    os.kill(-1, 9)\nexcept ProcessLookupError:\n    pass"],
                       user=uid, group=uid, extra_groups=[], env={}, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=False)
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
    """Removes what a user-level child left in the world-writable folders."""
    if level != "user":
        return
    for base in WORLD_WRITABLE:
        _remove_owned_by(Path(base), folders.uid, depth=3)


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
    """Closes each existing path to group and others (user level); returns what was changed.

    Raises Unavailable for a path that root does not own (then closing it could lock out its owner)."""
    changed = []
    for path in paths:
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        if info.st_uid != 0:
            owner = _owner_name(info.st_uid)
            raise Unavailable(f"{path} belongs to {owner}, not root: the unprivileged-user sandbox needs it "
                              "owned by root and closed to other users")
        if info.st_mode & 0o077 and not stat.S_ISLNK(info.st_mode):
            os.chmod(path, stat.S_IMODE(info.st_mode) & 0o700)
            changed.append(str(path))
    return changed


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
