"""Reading what a student submitted: regular files only, never through a link, and never more than a bound.

A submitted folder may hold anything its author could make: a week module that is a symbolic link
to a classmate's file or to `/dev/zero`, a FIFO that blocks whoever opens it, a folder named like a
module. Every file here is opened relative to the submission root's own directory descriptor, one
component at a time and with O_NOFOLLOW, so no link is followed anywhere below the root; O_NONBLOCK
keeps a FIFO from blocking the open. What was opened is then checked with `fstat` (a regular file,
or else an error naming what it is), and read up to a bound that is counted while reading, not
taken from the size the file claims. Checking the opened descriptor, not the name, leaves no time
between a check and an open in which the entry could be swapped for a link.

    with intake.Folder(path, follow_root=False) as folder:
        source = folder.read(("week1_regression.py",))
"""

import errno
import os
import stat
from pathlib import Path

MAX_MODULE_BYTES = 1 * 2**20  # one week module
_CHUNK = 1 << 16
_NO_FOLLOW = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
_DIRECTORY = _NO_FOLLOW | os.O_DIRECTORY
_FILE = _NO_FOLLOW | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0)


class Refused(ValueError):
    """A submitted entry is not a regular file or folder, or is too large; the message names it and
    says it is not graded, e.g. "week1_regression.py is a symbolic link: not graded"."""


def kind(mode: int) -> str:
    """What a file mode is, in words: "a regular file", "a symbolic link", "a FIFO", ..."""
    if stat.S_ISREG(mode):
        return "a regular file"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _size_words(limit: int) -> str:
    return f"{limit // 2**20} MiB" if limit % 2**20 == 0 else f"{limit:,} bytes"


def _entry_kind(name: str, dir_fd: int) -> str:
    """What the entry `name` of the folder `dir_fd` is, without following it ("" if it is gone)."""
    try:
        return kind(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return ""


def _refusal(shown: str, name: str, dir_fd: int, error: OSError, wanted: str) -> Exception:
    """The error for an entry that could not be opened as `wanted` ("a file" or "a folder")."""
    if error.errno == errno.ENOENT:
        return FileNotFoundError(errno.ENOENT, f"there is no {shown}", shown)
    found = _entry_kind(name, dir_fd)
    if error.errno in (errno.ELOOP, errno.EMLINK) or found == "a symbolic link":
        return Refused(f"{shown} is a symbolic link: not graded")
    if error.errno in (errno.ENOTDIR, errno.ENXIO, errno.EISDIR) and found:
        return Refused(f"{shown} is {found}, not {wanted}: not graded")
    return Refused(f"{shown} cannot be read ({error.strerror}): not graded")


def read_regular(fd: int, shown: str, limit: int) -> bytes:
    """The bytes of the open file `fd`, which must be a regular file of at most `limit` bytes.
    Reads at most `limit + 1` bytes whatever the file's size says (a file may grow while read)."""
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        raise Refused(f"{shown} is {kind(mode)}: not graded")
    chunks, total = [], 0
    while total <= limit:
        try:
            chunk = os.read(fd, min(_CHUNK, limit + 1 - total))
        except OSError as error:
            raise Refused(f"{shown} cannot be read ({error.strerror}): not graded") from None
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    if total > limit:
        raise Refused(f"{shown} is larger than {_size_words(limit)}: not graded")
    return b"".join(chunks)


class Folder:
    """A submission's root folder, held open by its directory descriptor. `follow_root` says whether
    the root itself may be reached through a link (a path the grader was given, say `--target`) or
    must not be (an entry of a class's submissions, which its student chose)."""

    def __init__(self, path: Path | str, follow_root: bool = True, shown: str | None = None):
        path = Path(path)
        self.shown = shown or path.name or str(path)
        try:
            self.fd = os.open(path, _DIRECTORY if not follow_root else _DIRECTORY & ~os.O_NOFOLLOW)
        except FileNotFoundError:
            raise FileNotFoundError(errno.ENOENT, f"there is no {self.shown}", str(path)) from None
        except OSError as error:
            found = entry_kind(path)
            if found == "a symbolic link" or error.errno in (errno.ELOOP, errno.EMLINK):
                raise Refused(f"{self.shown} is a symbolic link: not graded") from None
            if found and found != "a folder":
                raise Refused(f"{self.shown} is {found}, not a folder: not graded") from None
            raise Refused(f"{self.shown} cannot be read ({error.strerror}): not graded") from None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "Folder":
        return self

    def __exit__(self, *exception) -> None:
        self.close()

    def _open_folder(self, parts: tuple[str, ...]) -> int:
        """A descriptor of the sub-folder `parts` (each component opened without following links)."""
        fd = os.dup(self.fd)
        try:
            for depth, name in enumerate(parts):
                _check_name(name)
                try:
                    inner = os.open(name, _DIRECTORY, dir_fd=fd)
                except OSError as error:
                    raise _refusal("/".join(parts[:depth + 1]), name, fd, error, "a folder") from None
                os.close(fd)
                fd = inner
            return fd
        except BaseException:
            os.close(fd)
            raise

    def read(self, parts: tuple[str, ...], limit: int = MAX_MODULE_BYTES) -> bytes:
        """The bytes of the regular file at `parts` below the root, at most `limit` of them; raises
        Refused naming it when it is a link, a FIFO, a device, a folder or too large, and
        FileNotFoundError when there is none."""
        *folders, name = parts
        _check_name(name)
        shown = "/".join(parts)
        directory = self._open_folder(tuple(folders))
        try:
            try:
                fd = os.open(name, _FILE, dir_fd=directory)
            except OSError as error:
                raise _refusal(shown, name, directory, error, "a file") from None
            try:
                return read_regular(fd, shown, limit)
            finally:
                os.close(fd)
        finally:
            os.close(directory)

    def listing(self, max_depth: int, max_entries: int) -> dict[tuple[str, ...], tuple[str, int]]:
        """{relative path parts: (kind, size)} of the entries of the root and of its folders down to
        `max_depth` levels below it, where kind is "file", "folder", "link" or "special"; nothing is
        followed. Raises Refused past `max_entries` entries."""
        entries = {}
        pending = [()]
        while pending:
            parts = pending.pop()
            fd = self._open_folder(parts)
            try:
                with os.scandir(fd) as found:
                    for entry in found:
                        if len(entries) >= max_entries:
                            raise Refused(f"the folder holds more than {max_entries} files")
                        info = entry.stat(follow_symlinks=False)
                        if stat.S_ISREG(info.st_mode):
                            what = "file"
                        elif stat.S_ISDIR(info.st_mode):
                            what = "folder"
                        elif stat.S_ISLNK(info.st_mode):
                            what = "link"
                        else:
                            what = "special"
                        entries[(*parts, entry.name)] = (what, info.st_size)
                        if what == "folder" and len(parts) < max_depth:
                            pending.append((*parts, entry.name))
            finally:
                os.close(fd)
        return entries


def _check_name(name: str) -> None:
    if not name or name in (".", "..") or "/" in name or "\0" in name:
        raise Refused(f"{name!r} is not a file name: not graded")


def read_file(folder: Path | str, name: str, limit: int = MAX_MODULE_BYTES, follow_root: bool = True) -> bytes:
    """The bytes of the regular file `name` in `folder` (see `Folder.read`)."""
    with Folder(folder, follow_root) as root:
        return root.read((name,), limit)


def entry_kind(path: Path | str) -> str:
    """What `path` itself is ("a folder", "a regular file", "a symbolic link", ...), without following
    it; "" when there is nothing there."""
    try:
        return kind(os.lstat(path).st_mode)
    except OSError:
        return ""
