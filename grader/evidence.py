"""Evidence: what a probe returns, as a flat dict of numpy arrays, in `.npz` form without pickle.

The child converts probe results with `to_evidence` (anything that is not a plain number, string or
numeric array is refused, so an object whose `__eq__` always returns True cannot get through) and
sends each probe's record over a pipe (`send`); the parent takes them in with a `Stream`, which
bounds every record and their sum and takes only the records the grader asked for, each once, and
parses them with `parse`, which never unpickles and bounds what the records decode to: a `Budget`
shared by every record of one grading run, checked against the sizes the zip declares and again
against each array's header before the array is made, so a record that is small on the pipe cannot
become large in the grader.
"""

import io
import json
import math
import os
import re
import struct
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from course.files import write_atomically

STATUS = "__status__"  # "ok", "not_attempted", "error", "timeout" or "untestable"
MESSAGE = "__message__"  # the error, one line
WHERE = "__where__"  # the student's frame: "week4_simple_cnn.py:52 in __call__: x = ..."
NONCE = "__nonce__"
PART_ERROR = "!error"  # suffix of the key holding one part's error, e.g. "jit_output!error"
NUMERIC_KINDS = "biuf"  # bool, signed and unsigned int, float


class EvidenceError(TypeError):
    """A probe produced something that is not evidence (e.g. an object instead of an array)."""


class PartFailure:
    """Stands in for one part of a probe's evidence when computing it raised; see `attempt`."""

    def __init__(self, status: str, message: str, where: str = ""):
        self.status, self.message, self.where = status, message, where


def to_array(value, key: str = "value") -> np.ndarray:
    """A plain numeric or string numpy array made from `value`, or EvidenceError."""
    if isinstance(value, str):
        return np.asarray(value, dtype=np.str_)
    if isinstance(value, (bool, int, float, np.generic)) or hasattr(value, "__array__"):
        try:
            array = np.array(value)  # a copy: later mutation of the source cannot change it
        except Exception as error:  # noqa: BLE001 - graded code may return anything
            raise EvidenceError(f"{key}: could not convert {type(value).__name__} to an array: {error}") from None
        if array.dtype.kind in NUMERIC_KINDS or array.dtype.kind == "U":
            if type(array) is not np.ndarray:
                array = np.asarray(array).view(np.ndarray)
            return array
        raise EvidenceError(f"{key}: expected numbers, got an array of {array.dtype} ({type(value).__name__})")
    raise EvidenceError(f"{key}: expected an array or a number, got {type(value).__name__}")


def to_evidence(results: dict) -> dict[str, np.ndarray]:
    """Flattens a probe's result dict into evidence arrays; PartFailure values become error strings."""
    evidence = {}
    for key, value in results.items():
        if not isinstance(key, str) or key.startswith("__"):
            raise EvidenceError(f"bad evidence key {key!r}")
        if isinstance(value, PartFailure):
            evidence[key + PART_ERROR] = np.asarray(f"{value.status}|{value.message}|{value.where}", np.str_)
            continue
        try:
            evidence[key] = to_array(value, key)
        except EvidenceError as error:
            evidence[key + PART_ERROR] = np.asarray(f"error|{error}|", np.str_)
    return evidence


def save(path: Path, evidence: dict[str, np.ndarray]) -> None:
    """Writes evidence atomically (a temporary file renamed into place)."""
    write_atomically(path, lambda file: np.savez(file, allow_pickle=False, **evidence))


def load(path: Path, max_bytes: int = 512 * 2**20) -> dict[str, np.ndarray]:
    """Reads a recorded evidence file (the reference's); see `parse`."""
    return parse(Path(path).read_bytes(), Path(path).name, max_bytes)


MAX_ARRAYS = 256  # in one record; the largest the grader makes holds 38 (week 6's AlexNet.call)
MAX_DIMENSIONS = 32
_DIRECTORY_BYTES_PER_ARRAY = 1024  # a zip's directory entry of one array: 46 bytes and its name
_END_OF_DIRECTORY, _ZIP64_LOCATOR = b"PK\x05\x06", b"PK\x06\x07"
_END_OF_DIRECTORY_BYTES, _LONGEST_COMMENT = 22, 65535
_READ_BYTES = 1 << 20  # what one read of a member may decompress


class Budget:
    """How many more bytes the evidence of one grading run may decode to. Every record of the run
    takes from the same budget, so many records, each small, cannot add up to much."""

    def __init__(self, total_bytes: int):
        self.total_bytes = total_bytes
        self.left = total_bytes

    def take(self, size: int, what: str) -> None:
        if size > self.left:
            raise EvidenceError(f"{what} would take the evidence of this run past {self.total_bytes:,} bytes "
                                "once decoded")
        self.left -= size


def parse(data: bytes, name: str = "evidence", max_bytes: int = 512 * 2**20, budget: Budget | None = None,
          max_arrays: int = MAX_ARRAYS) -> dict[str, np.ndarray]:
    """The arrays of an `.npz` record, decoding at most what `budget` has left (or `max_bytes`).

    Refuses, with EvidenceError: anything but a zip of at most `max_arrays` `.npy` members, stored or
    deflated, each once; pickled, object or structured arrays; and a record whose members' declared
    sizes, or whose arrays' shapes times item sizes, exceed the budget. The zip's directory is bounded
    before the zip is opened, and each array is made only after its header fits, so the work and the
    memory are linear in what the record may decode to."""
    budget = budget if budget is not None else Budget(max_bytes)
    _check_directory(data, name, max_arrays)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:  # the unpacked size, before anything is unpacked
        members = archive.infolist()
        if len(members) > max_arrays:
            raise EvidenceError(f"{name} holds {len(members)} arrays, more than {max_arrays}")
        declared = sum(member.file_size for member in members)
        if declared > budget.left:
            raise EvidenceError(f"{name} holds more than {budget.left:,} bytes, what the evidence of this run "
                                f"may still decode to (of {budget.total_bytes:,})")
        evidence = {}
        for member in members:
            key = member.filename.removesuffix(".npy")
            if key == member.filename or key in evidence:
                raise EvidenceError(f"{name}: {member.filename[:60]!r} is not one array of an evidence record")
            if member.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise EvidenceError(f"{name}: {key[:60]} is compressed with method {member.compress_type}")
            with archive.open(member) as file:
                evidence[key] = _read_array(file, f"{name}: {key[:60]}", member.file_size, budget)
    return evidence


def _check_directory(data: bytes, name: str, max_arrays: int) -> None:
    """Refuses a record whose zip directory could describe more than `max_arrays` members, before
    `zipfile` turns each of its entries into an object."""
    end = data.rfind(_END_OF_DIRECTORY, max(0, len(data) - _END_OF_DIRECTORY_BYTES - _LONGEST_COMMENT))
    if end < 0 or end + _END_OF_DIRECTORY_BYTES > len(data):
        raise EvidenceError(f"{name} is not an evidence record (no zip directory)")
    if end >= 20 and data[end - 20:end - 16] == _ZIP64_LOCATOR:
        raise EvidenceError(f"{name} is a zip64 archive, which no evidence record needs")
    entries, directory_bytes = struct.unpack_from("<HI", data, end + 10)
    if entries > max_arrays or directory_bytes > max_arrays * _DIRECTORY_BYTES_PER_ARRAY:
        raise EvidenceError(f"{name}: its zip directory lists {entries} arrays in {directory_bytes:,} bytes, "
                            f"more than {max_arrays} arrays can need")


def _read_array(file, what: str, declared_bytes: int, budget: Budget) -> np.ndarray:
    """One `.npy` member: its header read and checked (a numeric or text dtype, a shape whose size
    fits both the member's declared size and the budget), then exactly that many bytes, read a chunk
    at a time into the array's own buffer."""
    try:
        version = npy.read_magic(file)
        if version == (1, 0):
            shape, fortran_order, dtype = npy.read_array_header_1_0(file)
        elif version == (2, 0):
            shape, fortran_order, dtype = npy.read_array_header_2_0(file)
        else:
            raise EvidenceError(f"{what}: .npy format {version} is not one the grader reads")
    except ValueError as error:
        raise EvidenceError(f"{what}: not an array ({str(error)[:100]})") from None
    if dtype.kind not in NUMERIC_KINDS + "U" or dtype.hasobject or dtype.fields is not None or dtype.subdtype:
        raise EvidenceError(f"{what} has dtype {dtype}")
    if dtype.itemsize == 0 or len(shape) > MAX_DIMENSIONS or any(size < 0 for size in shape):
        raise EvidenceError(f"{what} has shape {shape[:MAX_DIMENSIONS + 1]} of {dtype}")
    size = math.prod(shape) * dtype.itemsize
    if size > declared_bytes:
        raise EvidenceError(f"{what}: its header says {size:,} bytes, more than the record holds")
    budget.take(size, f"{what} (shape {shape[:8]} of {dtype})")
    buffer = bytearray(size)
    view, filled = memoryview(buffer), 0
    while filled < size:
        count = file.readinto(view[filled:filled + _READ_BYTES])
        if not count:
            raise EvidenceError(f"{what}: the record ends before the array does")
        filled += count
    if file.read(1):
        raise EvidenceError(f"{what}: more bytes than its header says")
    return np.frombuffer(buffer, dtype).reshape(shape, order="F" if fortran_order else "C")


def dumps(evidence: dict[str, np.ndarray]) -> bytes:
    """The `.npz` bytes of an evidence record."""
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **evidence)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# The pipe from the child to the grader: frames of MAGIC, kind, name and payload.

MAGIC = b"GRADE1"
RECORD, RUNNING = b"E", b"R"  # an evidence record; the name of the probe starting now
NAME = re.compile(r"[A-Za-z0-9_.:-]{1,100}")


def send(fd: int, kind: bytes, name: str, payload: bytes = b"") -> None:
    """Writes one frame to the pipe `fd` (in the child)."""
    encoded = name.encode()
    frame = MAGIC + kind + bytes([len(encoded)]) + encoded + len(payload).to_bytes(8, "big") + payload
    view = memoryview(frame)
    while view:
        view = view[os.write(fd, view):]


DONE = "__done__"  # the name of the last RUNNING frame: the child finished every probe
MAX_STARTS = 1024  # probe starts a Stream keeps the time of (a week has a few dozen probes)


class Stream:
    """What the grader takes from a child's pipe: records by name, the probe last started, and the
    first problem with the stream. Every frame is checked as it arrives: a bad frame, a name that
    is not one of `names` (the records the grader asked for, when given), a second record of one
    name, a record over `record_bytes` or a stream over `total_bytes` ends the intake (the rest is
    read and dropped, so that the child never blocks)."""

    def __init__(self, record_bytes: int, total_bytes: int, names=None):
        self.record_bytes, self.total_bytes = record_bytes, total_bytes
        self.names = None if names is None else frozenset(names)
        self.records: dict[str, bytes] = {}
        self.running = ""
        self.started: list[float] = []  # time.monotonic() at each probe's start, in order
        self.problem = ""
        self.received = 0
        self._buffer = bytearray()
        self._closed = False
        self._lock = threading.Lock()

    def read_from(self, fd: int) -> None:
        """Reads `fd` to its end (run in a thread)."""
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            with self._lock:
                if self._closed:
                    return
                self.received += len(chunk)
                if self.problem:
                    continue
                if self.received > self.total_bytes:
                    self._refuse(f"the child sent more than {self.total_bytes:,} bytes of evidence")
                    continue
                self._buffer += chunk
                self._take_frames()

    def close(self) -> None:
        """Stops taking frames (what arrives later is ignored) and drops an unfinished one."""
        with self._lock:
            self._closed = True
            self._buffer = bytearray()

    def _refuse(self, reason: str) -> None:
        self.problem = reason
        self._buffer = bytearray()

    def _take_frames(self) -> None:
        buffer = self._buffer
        while len(buffer) >= len(MAGIC) + 2:
            if buffer[:len(MAGIC)] != MAGIC or buffer[len(MAGIC):len(MAGIC) + 1] not in (RECORD, RUNNING):
                return self._refuse("the evidence stream holds bytes that are not a frame")
            name_start = len(MAGIC) + 2
            name_end = name_start + buffer[len(MAGIC) + 1]
            if len(buffer) < name_end + 8:
                return
            name = bytes(buffer[name_start:name_end]).decode("ascii", "replace")
            if not NAME.fullmatch(name):
                return self._refuse(f"the evidence stream names a record {name[:40]!r}")
            kind = bytes(buffer[len(MAGIC):len(MAGIC) + 1])
            if self.names is not None and name not in self.names and not (kind == RUNNING and name == DONE):
                return self._refuse(f"the evidence stream sends {name!r}, which the grader did not ask for")
            if kind == RECORD and name in self.records:
                return self._refuse(f"the evidence stream sends the record {name} twice")
            size = int.from_bytes(buffer[name_end:name_end + 8], "big")
            if size > self.record_bytes:
                return self._refuse(f"the record {name} is {size:,} bytes, more than {self.record_bytes:,}")
            if len(buffer) < name_end + 8 + size:
                return
            if kind == RECORD:
                self.records[name] = bytes(buffer[name_end + 8:name_end + 8 + size])
            elif name != self.running:
                self.running = name
                if len(self.started) < MAX_STARTS:  # a child that flips between names gains nothing more
                    self.started.append(time.monotonic())
            del buffer[:name_end + 8 + size]

    def overrun(self, check_seconds: float) -> float:
        """Seconds taken by the probes that ran `check_seconds` or longer (each at its own time limit:
        an endless loop): the week's time limit does not count them, so one function that never ends
        costs its own checks, not the ones probed after it."""
        with self._lock:
            starts = [*self.started, time.monotonic()]
        durations = [end - start for start, end in zip(starts, starts[1:])]
        return sum(duration for duration in durations if duration >= check_seconds)


def text(evidence: dict[str, np.ndarray], key: str, default: str = "") -> str:
    """The string stored under `key`, or `default`."""
    value = evidence.get(key)
    if value is None or value.dtype.kind != "U" or value.shape != ():
        return default
    return str(value)


def part_failure(evidence: dict[str, np.ndarray], key: str) -> PartFailure | None:
    """The failure recorded for part `key` of a probe, if computing it raised."""
    raw = text(evidence, key + PART_ERROR, None)
    if raw is None:
        return None
    status, message, where = (raw.split("|", 2) + ["", ""])[:3]
    return PartFailure(status, message, where)


def dumps_json(value) -> str:
    """A compact JSON string (used to carry small structures, e.g. a model's layer list, as evidence)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))
