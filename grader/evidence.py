"""Evidence: what a probe returns, as a flat dict of numpy arrays, in `.npz` form without pickle.

The child converts probe results with `to_evidence` (anything that is not a plain number, string or
numeric array is refused, so an object whose `__eq__` always returns True cannot get through) and
sends each probe's record over a pipe (`send`); the parent takes them in with a `Stream`, which
bounds every record and their sum, and parses them with `parse`, which never unpickles.
"""

import io
import json
import os
import re
import threading
import zipfile
from pathlib import Path

import numpy as np

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
    temporary = path.with_name(path.name + ".partial.npz")
    np.savez(temporary, allow_pickle=False, **evidence)
    os.replace(temporary, path)


def load(path: Path, max_bytes: int = 512 * 2**20) -> dict[str, np.ndarray]:
    """Reads a recorded evidence file (the reference's); see `parse`."""
    return parse(Path(path).read_bytes(), Path(path).name, max_bytes)


def parse(data: bytes, name: str = "evidence", max_bytes: int = 512 * 2**20) -> dict[str, np.ndarray]:
    """The arrays of an `.npz` record; refuses pickled or non-numeric arrays and zip bombs."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:  # the unpacked size, before anything is unpacked
        if sum(info.file_size for info in archive.infolist()) > max_bytes:
            raise EvidenceError(f"{name} holds more than {max_bytes} bytes")
    evidence = {}
    with np.load(io.BytesIO(data), allow_pickle=False) as archive:
        for key in archive.files:
            array = archive[key]
            if array.dtype.kind not in NUMERIC_KINDS + "U":
                raise EvidenceError(f"{name}: {key} has dtype {array.dtype}")
            evidence[key] = array
    return evidence


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


class Stream:
    """What the grader takes from a child's pipe: records by name, the probe last started, and the
    first problem with the stream. Every frame is checked as it arrives: a bad frame, a name that
    is not a probe's, a record over `record_bytes` or a stream over `total_bytes` ends the intake
    (the rest is read and dropped, so that the child never blocks)."""

    def __init__(self, record_bytes: int, total_bytes: int):
        self.record_bytes, self.total_bytes = record_bytes, total_bytes
        self.records: dict[str, bytes] = {}
        self.running = ""
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
            size = int.from_bytes(buffer[name_end:name_end + 8], "big")
            if size > self.record_bytes:
                return self._refuse(f"the record {name} is {size:,} bytes, more than {self.record_bytes:,}")
            if len(buffer) < name_end + 8 + size:
                return
            kind = bytes(buffer[len(MAGIC):len(MAGIC) + 1])
            if kind == RECORD:
                self.records[name] = bytes(buffer[name_end + 8:name_end + 8 + size])
            else:
                self.running = name
            del buffer[:name_end + 8 + size]


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


def layer_counts(records: list[dict]) -> str:
    """How many layers of each kind the layer records hold: "1 Dropout, 4 Linear"."""
    counts = {}
    for record in records:
        counts[record["kind"]] = counts.get(record["kind"], 0) + 1
    return ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items())) or "no layers"


def match_layers(mine: list[dict], theirs: list[dict]) -> list[tuple[dict, dict]]:
    """Pairs a model's layer records with the reference's, kind by kind: first layers whose
    parameter shapes agree (in definition order), then the rest in order. Dropout layers all pair
    with the reference's first dropout (one shared layer or one per use are both fine)."""
    pairs = []
    kinds = {record["kind"] for record in theirs}
    for kind in sorted(kinds):
        candidates = [record for record in mine if record["kind"] == kind]
        references = [record for record in theirs if record["kind"] == kind]
        if kind == "Dropout":
            pairs.extend((record, references[0]) for record in candidates)
            continue
        free = list(references)
        unmatched = []
        for record in candidates:
            same_shapes = next((ref for ref in free if ref["params"] == record["params"]), None)
            if same_shapes is None:
                unmatched.append(record)
            else:
                free.remove(same_shapes)
                pairs.append((record, same_shapes))
        pairs.extend(zip(unmatched, free))
    return pairs
