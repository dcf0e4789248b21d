"""Limits over all the processes of one grading, not per process: memory (shared memory and
RAM-backed files included), the number of processes, an equal share of the CPU, and the CPU time.

Used by `grader.sandbox` for every sandboxed child. Two mechanisms, the first that works:

  watchdog       always: a thread of the grader samples the grading's processes (its control
                 group's, else those of the child's uid, else the child's descendants) five times a
                 second and stops the grading when their memory together (anonymous and shared
                 memory, and at the user level the uid's RAM-backed files) or their CPU time
                 together goes over the limit. It reacts within a sample, so a burst can overshoot
                 briefly.
  control group  where the grader may make one (root, with the memory, pids and cpu controllers of
                 cgroup v1 or v2): the kernel also bounds the group's memory (with headroom over the
                 watchdog's limit for the page cache, so that the watchdog, which says why, acts first)
                 and its process count, gives each grading the same CPU weight (so `--jobs N`
                 classmates keep their share however many processes one of them starts), counts the
                 group's CPU time, and everything in the group is killed at the end.
"""

import dataclasses
import functools
import itertools
import os
import signal
import stat
import threading
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
V1_CONTROLLERS = ("memory", "pids", "cpu", "cpuacct")
PAGE = os.sysconf("SC_PAGE_SIZE")
TICKS = os.sysconf("SC_CLK_TCK")
SAMPLE_SECONDS = 0.2
_names = itertools.count()


class ControlGroup:
    """One grading's control group (v1: one folder per controller; v2: one folder). `create`
    returns None where none can be made here."""

    def __init__(self, folders: dict[str, Path], version: int):
        self.folders, self.version = folders, version

    @classmethod
    def create(cls, memory_bytes: int, processes: int) -> "ControlGroup | None":
        """A new group for one grading whose processes may hold `memory_bytes` together (the kernel's
        limit has headroom for the page cache) and number `processes`; None where none can be made."""
        memory_bytes = int(memory_bytes * 1.25) + 256 * 2**20
        name = f"course-grade-{os.getpid()}-{next(_names)}"
        for make in (cls._make_v2, cls._make_v1):
            try:
                group = make(name)
            except OSError:
                continue
            if group is None:
                continue
            try:
                group._configure(memory_bytes, processes)
                return group
            except OSError:
                group.remove()
        return None

    @classmethod
    def _make_v1(cls, name: str) -> "ControlGroup | None":
        own = _own_cgroups()
        folders = {}
        for controller in V1_CONTROLLERS:
            base = CGROUP_ROOT / controller
            if not (base / "cgroup.procs").exists():
                return None
            parent = base / own.get(controller, "/").lstrip("/")
            if not parent.is_dir():  # a namespace's view can hide its own path: the hierarchy's root then
                parent = base
            folders[controller] = Path(os.path.realpath(parent)) / name
        group = cls({}, 1)
        for controller, folder in folders.items():
            if folder not in group.folders.values():
                folder.mkdir()
            group.folders[controller] = folder
        return group

    @classmethod
    def _make_v2(cls, name: str) -> "ControlGroup | None":
        if not (CGROUP_ROOT / "cgroup.controllers").exists():
            return None
        parent = CGROUP_ROOT / _own_cgroups().get("", "/").lstrip("/")
        enabled = (parent / "cgroup.subtree_control").read_text().split()
        if not {"memory", "pids", "cpu"} <= set(enabled):
            return None
        folder = parent / name
        folder.mkdir()
        return cls({controller: folder for controller in ("memory", "pids", "cpu")}, 2)

    def _configure(self, memory_bytes: int, processes: int) -> None:
        if self.version == 1:
            memory = self.folders["memory"]
            (memory / "memory.limit_in_bytes").write_text(str(memory_bytes))
            if (memory / "memory.memsw.limit_in_bytes").exists():  # no swapping past the limit either
                (memory / "memory.memsw.limit_in_bytes").write_text(str(memory_bytes))
            (self.folders["pids"] / "pids.max").write_text(str(processes))
            (self.folders["cpu"] / "cpu.shares").write_text("1024")
        else:
            folder = self.folders["memory"]
            (folder / "memory.max").write_text(str(memory_bytes))
            if (folder / "memory.swap.max").exists():
                (folder / "memory.swap.max").write_text("0")
            (folder / "pids.max").write_text(str(processes))
            (folder / "cpu.weight").write_text("100")

    @property
    def procs_files(self) -> list[str]:
        """The files a process writes its pid to, to join the group."""
        return [str(folder / "cgroup.procs") for folder in dict.fromkeys(self.folders.values())]

    def pids(self) -> list[int]:
        found = set()
        for path in self.procs_files:
            try:
                found.update(int(line) for line in Path(path).read_text().split())
            except (OSError, ValueError):
                continue
        return sorted(found)

    def cpu_seconds(self) -> float:
        try:
            if self.version == 1:
                return int((self.folders["cpuacct"] / "cpuacct.usage").read_text()) / 1e9
            usage = dict(line.split() for line in (self.folders["cpu"] / "cpu.stat").read_text().splitlines())
            return int(usage["usage_usec"]) / 1e6
        except (OSError, ValueError, KeyError):
            return 0.0

    def out_of_memory(self) -> bool:
        """Whether the kernel killed a process of the group for its memory limit."""
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        try:
            lines = (self.folders["memory"] / name).read_text().splitlines()
        except OSError:
            return False
        counts = dict(line.split()[:2] for line in lines if len(line.split()) >= 2)
        return counts.get("oom_kill", "0") != "0"

    def kill(self) -> None:
        """SIGKILL to every process of the group, until none is left (a forking process cannot
        outrun it: its children are in the group too, and the group's process count is bounded)."""
        for _ in range(100):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.02)

    def remove(self) -> None:
        self.kill()
        for folder in dict.fromkeys(self.folders.values()):
            for _ in range(50):  # a killed process leaves its group a moment later
                try:
                    folder.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)


def _own_cgroups() -> dict[str, str]:
    """{controller ("" for cgroup v2): this process's path in its hierarchy}."""
    found = {}
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for controller in controllers.split(","):
                found[controller] = path
    except (OSError, ValueError):
        pass
    return found


@functools.cache
def remove_abandoned_groups() -> None:
    """Removes the control groups of graders that are gone (killed before they could clean up); once
    per grading process, since a live grader removes its own."""
    own = _own_cgroups()
    parents = {CGROUP_ROOT / own.get("", "/").lstrip("/")}
    for controller in V1_CONTROLLERS:
        parents |= {CGROUP_ROOT / controller, CGROUP_ROOT / controller / own.get(controller, "/").lstrip("/")}
    for parent in parents:
        try:
            candidates = [path for path in parent.glob("course-grade-*-*") if path.is_dir()][:1000]
        except OSError:
            continue
        for folder in candidates:
            owner = folder.name.split("-")[2]
            if owner.isdigit() and not Path(f"/proc/{owner}").exists():
                ControlGroup({"any": folder}, 1).remove()


# ---------------------------------------------------------------------------------------------
# The watchdog


@dataclasses.dataclass
class Usage:
    """What a grading's processes used together: the peak of their memory, their CPU time."""

    peak_memory_bytes: int = 0
    cpu_seconds: float = 0.0
    stopped_for: str = ""  # why the watchdog stopped the grading, if it did


class Watchdog:
    """Samples one grading's processes until `stop` and stops the grading (calls `kill`) when they
    go over `memory_bytes` together or over `cpu_seconds` of CPU time together."""

    def __init__(self, root_pid: int, uid: int | None, group: ControlGroup | None, memory_bytes: int,
                 cpu_seconds: float, kill, shared_folders: tuple[str, ...] = ()):
        self.root_pid, self.uid, self.group = root_pid, uid, group
        self.memory_bytes, self.cpu_limit, self.kill = memory_bytes, cpu_seconds, kill
        self.shared_folders = shared_folders  # where RAM-backed files of the uid count as its memory
        self.usage = Usage()
        self._cpu_of: dict[int, float] = {}  # the last CPU time seen of every process, gone ones too
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> "Watchdog":
        self._thread.start()
        return self

    def stop(self) -> Usage:
        self._sample()
        self._stop.set()
        self._thread.join(timeout=5)
        return self.usage

    def _watch(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            memory, cpu = self._sample()
            if self.usage.stopped_for:
                continue
            if memory > self.memory_bytes:
                self.usage.stopped_for = (f"its processes together used more than the memory limit of "
                                          f"{self.memory_bytes / 2**30:g} GiB")
            elif cpu > self.cpu_limit:
                self.usage.stopped_for = (f"its processes together used more than {self.cpu_limit:.0f} s of CPU "
                                          "time, the week's share")
            if self.usage.stopped_for:
                self.kill()

    def _sample(self) -> tuple[int, float]:
        pids = self.group.pids() if self.group is not None else self._processes()
        memory = 0
        for pid in pids:
            memory += _private_memory(pid)
            if (seconds := _cpu_seconds(pid)) is not None:
                self._cpu_of[pid] = max(seconds, self._cpu_of.get(pid, 0.0))
        if self.uid is not None:
            memory += sum(_files_bytes(Path(folder), self.uid) for folder in self.shared_folders)
        cpu = self.group.cpu_seconds() if self.group is not None else sum(self._cpu_of.values())
        self.usage.peak_memory_bytes = max(self.usage.peak_memory_bytes, memory)
        self.usage.cpu_seconds = max(self.usage.cpu_seconds, cpu)
        return memory, cpu

    def _processes(self) -> list[int]:
        """The grading's live processes: those of its uid, or else the child and its descendants."""
        table = _process_table()
        if self.uid is not None:
            return [pid for pid, (_, uid) in table.items() if uid == self.uid]
        children: dict[int, list[int]] = {}
        for pid, (parent, _) in table.items():
            children.setdefault(parent, []).append(pid)
        found, todo = [], [self.root_pid]
        while todo and len(found) < 100_000:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found


def _process_table() -> dict[int, tuple[int, int]]:
    """{pid: (parent pid, uid)} of the live processes."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_bytes().rsplit(b")", 1)[1].split()
            if fields[0] != b"Z":
                table[int(entry)] = (int(fields[1]), os.stat(f"/proc/{entry}").st_uid)
        except (OSError, IndexError, ValueError):
            continue
    return table


def _private_memory(pid: int) -> int:
    """Resident memory that is not a mapped file: anonymous pages and shared memory."""
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
        resident, file_backed = int(fields[1]), int(fields[2])
        return max(resident - file_backed, 0) * PAGE + _shared_memory(pid)
    except (OSError, IndexError, ValueError):
        return 0


def _shared_memory(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssShmem:"):
                return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


def _cpu_seconds(pid: int) -> float | None:
    """User and system time of a process and of its children that it has waited for."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()
        return sum(int(value) for value in fields[11:15]) / TICKS
    except (OSError, IndexError, ValueError):
        return None


def _files_bytes(folder: Path, uid: int, depth: int = 3, budget: list | None = None) -> int:
    """The space the files of `uid` take in `folder` (RAM-backed folders: /dev/shm), a bounded walk."""
    budget = budget if budget is not None else [10_000]
    total = 0
    try:
        entries = os.scandir(folder)
    except OSError:
        return 0
    with entries:
        for entry in entries:
            budget[0] -= 1
            if budget[0] < 0:
                break
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if info.st_uid == uid and stat.S_ISREG(info.st_mode):
                total += info.st_blocks * 512
            elif stat.S_ISDIR(info.st_mode) and depth > 1:
                total += _files_bytes(Path(entry.path), uid, depth - 1, budget)
    return total
