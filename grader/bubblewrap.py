"""The `bwrap` command line of a child at the sandbox's bubblewrap level (`grader.sandbox`): every
namespace new, no capabilities, and a file system that holds, read-only, only the system folders,
the Python environment, the GPUs' devices and the run's folders (under /grading), and a private,
size-limited tmpfs for /tmp and /dev/shm, its only places to write.
"""

import functools
import glob
import os
import site
import sys
import sysconfig
from pathlib import Path

INSIDE = Path("/grading")  # where the child's folders appear inside a bubblewrap sandbox
SYSTEM_FOLDERS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/localtime", "/etc/nsswitch.conf")


def arguments(folders, env: dict, scratch_bytes: int, shared_memory_bytes: int) -> list[str]:
    """`bwrap` and its options, up to the "--" before the child's command: `folders` (the run's
    `sandbox.Folders`) appear under INSIDE, `env` is the child's whole environment, and /tmp and
    /dev/shm share `scratch_bytes` (of which /dev/shm gets `shared_memory_bytes`, half at most)."""
    shared = min(shared_memory_bytes, scratch_bytes // 2)
    options = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
               "--cap-drop", "ALL", "--uid", "65534", "--gid", "65534", "--hostname", "grader",
               "--clearenv", "--proc", "/proc", "--dev", "/dev",
               "--size", str(scratch_bytes - shared), "--tmpfs", "/tmp", "--size", str(shared), "--tmpfs", "/dev/shm"]
    for name, value in env.items():
        options += ["--setenv", name, value]
    for folder in SYSTEM_FOLDERS:
        if os.path.islink(folder):
            options += ["--symlink", os.readlink(folder), folder]
        elif os.path.isdir(folder):
            options += ["--ro-bind", folder, folder]
    for path in SYSTEM_FILES:
        options += ["--ro-bind-try", path, path]
    for folder in python_folders():
        if not any(folder != other and _is_within(Path(folder), Path(other)) for other in python_folders()):
            options += ["--ro-bind", folder, folder]
    for device in sorted(glob.glob("/dev/nvidia*")):  # GPUs, where there are any
        options += ["--dev-bind-try", device, device]
    options += ["--ro-bind", str(folders.lib), str(INSIDE / "lib"),
                "--ro-bind", str(folders.submission), str(INSIDE / "submission")]
    if folders.given is not None:
        options += ["--ro-bind", str(folders.given), str(INSIDE / "given.npz")]
    return options + ["--remount-ro", "/", "--chdir", "/tmp", "--"]


@functools.cache
def python_folders() -> tuple[str, ...]:
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


def in_python_folders(path: Path) -> bool:
    """True for a path that lies in one of the Python environment's folders, which every child sees."""
    return any(_is_within(path, Path(folder)) for folder in python_folders())


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents
