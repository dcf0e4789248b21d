"""Clearing away what a graded uid left once its run is over (`grader.sandbox`, the grader running
as root): every process of the uid, new sessions and double forks included, and, at the user level,
where the child shared the machine's folders and IPC tables, its files in the world-writable folders
and its System V IPC objects.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

LAUNCHER = Path(__file__).with_name("launcher.py")  # the kill helper starts as the uid, like a child
WORLD_WRITABLE = ("/tmp", "/var/tmp", "/dev/shm", "/dev/mqueue", "/run/lock", "/var/lock", "/run/shm")


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
                if os.stat(f"/proc/{entry}").st_uid == uid and not is_zombie(entry):
                    found.append(int(entry))
            except OSError:
                continue
    return found


def is_zombie(pid: str) -> bool:
    """True for a process that has exited (a zombie, or gone altogether)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            return file.read().rsplit(b")", 1)[-1].split()[0] == b"Z"
    except OSError:
        return True


def remove_files_of(uid: int) -> None:
    """Removes what `uid` made in the world-writable folders (and in the world-writable folders in
    them, three levels deep)."""
    for base in dict.fromkeys(os.path.realpath(folder) for folder in WORLD_WRITABLE):
        _remove_owned_by(Path(base), uid, depth=3)


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


def remove_system_v_objects_of(uid: int) -> None:
    """Removes the System V IPC objects (shared memory, message queues, semaphores) of `uid`."""
    for kind, option in (("shm", "-m"), ("msg", "-q"), ("sem", "-s")):
        for identifier in system_v_objects_of(uid, kind):
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
