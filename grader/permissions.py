"""File permissions when the grader runs as root and each run's child is a fresh unprivileged uid
(`grader.sandbox`): the range those uids are drawn from, the run's folders handed to one
(`hand_over`), and the protected paths (solutions, reference evidence, caches, results) closed to
all of them before the user level grades (`why_not_closable`, `close`).
"""

import os
import pwd
import stat
from pathlib import Path

CHILD_UIDS = range(1_900_000_000, 1_990_000_000)  # never in /etc/passwd; one fresh uid per run


def hand_over(folders) -> None:
    """Opens the run's folders (`sandbox.Folders`) to the child's uid and to no one else: the
    grader's code, the submission and the given inputs stay root's, readable through the child's own
    group but not writable (a child that rewrote them would change the next child started for the
    same grading); only the scratch folder is the child's. Done once, before any child starts."""
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


def why_not_closable(path: Path) -> str:
    """"" when closing `path` to group and others keeps the graded uids out of it, else why not,
    naming it. Closing a folder closes everything in it, but only where the graded code cannot get
    round it, so not a path that
      - is a symbolic link: a link has no mode of its own, and its target stays open under its own name;
      - lies under a folder that other users can write: the graded code could move the path away and
        put one of its own in its place, or make a path that does not exist yet before the grader does
        (an entry of a sticky folder like /tmp that exists and is not a graded uid's is safe);
      - root does not own: closing it could lock out its owner.
    A path that does not exist is fine once nothing on its way lets other users make it."""
    if writable := _folder_others_can_write_on_the_way(path):
        return (f"{path} lies under {writable}, which other users can write: the graded code could put its own "
                "files in its place; the unprivileged-user sandbox needs it in a folder that only root can change")
    try:
        info = path.lstat()
    except FileNotFoundError:
        return ""
    if stat.S_ISLNK(info.st_mode):
        return (f"{path} is a symbolic link (to {os.readlink(path)}): the unprivileged-user sandbox cannot close "
                "a link to other users; give the grader the real path instead")
    if info.st_uid != 0:
        return (f"{path} belongs to {_owner_name(info.st_uid)}, not root: the unprivileged-user sandbox needs it "
                "owned by root and closed to other users")
    return ""


def close(path: Path) -> bool:
    """Takes group's and others' access to `path` away; True where they had any."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return False
    if not mode & 0o077:
        return False
    os.chmod(path, stat.S_IMODE(mode) & 0o700)
    return True


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
