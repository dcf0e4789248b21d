"""What one grading runs with: its `Settings` (limits and places), the table of weeks and their checks,
the hidden inputs' seed, and the manifest of recorded reference evidence. Every other part of the
engine (`grader.runner`) reads these; nothing here runs submitted code.
"""


import dataclasses
import functools
import hashlib
import importlib
import json
import os
import re
import secrets
import threading
from pathlib import Path

from course import weeks
from grader.checks import HIDDEN_PREFIX, validate


REPO = Path(__file__).resolve().parent.parent
WEEKS = weeks.MODULES  # the course's one table of weeks
RECORDED_DIR = REPO / "reference_evidence"  # recorded reference evidence of a student release (`course release`)


def user_cache_dir() -> Path:
    root = os.environ.get("COURSE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "deep-into-cnn"
    )
    return Path(root)


def default_reference_dir() -> Path | None:
    """The recorded reference evidence when there are no solutions (a student release), else None."""
    if RECORDED_DIR.is_dir() and not (REPO / "solutions").is_dir():
        return RECORDED_DIR
    return None


@dataclasses.dataclass
class Settings:
    """Limits and places for one grading run."""

    week_timeout_s: float = 120.0
    probe_timeout_s: float = 60.0
    memory_bytes: int = 6 * 2**30
    file_bytes: int = 256 * 2**20
    output_bytes: int = 16 * 2**10  # how much of a child's output is kept for diagnostics
    cache_dir: Path = dataclasses.field(default_factory=user_cache_dir)
    solutions_dir: Path = REPO / "solutions"
    # recorded reference evidence to use instead of running the solutions
    reference_dir: Path | None = dataclasses.field(default_factory=default_reference_dir)
    jobs: int = 2
    sandbox: str | None = None  # "auto", "bubblewrap", "user" or "none"; None: $COURSE_SANDBOX, else auto
    protected: tuple[Path, ...] = ()  # more paths the submitted code must not read
    public_only: bool = False  # skip the hidden checks even where the solutions run (a release's recording)
    progress: bool = False  # a line on stderr as each check's probe starts (course grade at a terminal)

    @classmethod
    def from_options(cls, options: dict, **fields) -> "Settings":
        """The settings of the grading options every front end takes (`grader.cli.add_grading_options`):
        `options` maps timeout, probe_timeout, memory_gb, reference_dir and sandbox to their values
        (a missing reference_dir or sandbox: the default); `fields` sets any other field."""
        reference = options.get("reference_dir")
        return cls(**{"week_timeout_s": float(options["timeout"]), "probe_timeout_s": float(options["probe_timeout"]),
                      "memory_bytes": int(options["memory_gb"] * 2**30),
                      "reference_dir": Path(reference) if reference else default_reference_dir(),
                      "sandbox": options.get("sandbox"), "progress": bool(options.get("progress")), **fields})


week_number = weeks.week_number


@functools.cache
def checks_module(week: int):
    """The grader's module of `week` (its PROBES and CHECKS), checked when first loaded (`checks.validate`)."""
    module = importlib.import_module(f"grader.{WEEKS[week]}")
    validate(week, module.CHECKS, module.PROBES)
    return module


def probe_names(week: int) -> tuple[list[str], list[str]]:
    """(the probes the public checks read, those the hidden checks read on the hidden inputs)."""
    module = checks_module(week)
    public = {check.probe for check in module.CHECKS if not check.hidden}
    hidden = {check.probe.removeprefix(HIDDEN_PREFIX) for check in module.CHECKS if check.hidden}
    return [name for name in module.PROBES if name in public], [name for name in module.PROBES if name in hidden]


# ---------------------------------------------------------------------------------------------
# Hidden checks

HIDDEN_SECRET_VARIABLE = "COURSE_HIDDEN_SECRET"


def hidden_seed(settings: Settings) -> int | None:
    """The seed of the hidden checks' inputs, or None where they are not graded.

    They are graded where the solutions run, and from recorded evidence only when it records them
    (an autograder zip, `course autograder`; never a student release). The seed comes from
    $COURSE_HIDDEN_SECRET, so that several graders of one class agree, or else from a secret made
    once in the grader's cache folder, which submitted code cannot read. Knowing the seed would not
    help a submission anyway: the answers on those inputs exist only where the solutions do, or in
    recorded evidence that the sandbox keeps from submitted code."""
    if settings.public_only:
        return None
    if settings.reference_dir is not None:
        return recorded_hidden_seed(settings.reference_dir)
    secret = os.environ.get(HIDDEN_SECRET_VARIABLE, "").encode()
    if not secret:
        path = settings.cache_dir / "hidden-inputs.secret"
        if not path.exists():  # made whole, then linked: two graders starting at once agree on one secret
            make_private(path.parent)
            partial = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}")
            descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(secrets.token_hex(32))
            try:
                os.link(partial, path)
            except FileExistsError:
                pass
            finally:
                partial.unlink()
        secret = path.read_bytes().strip()
    return int.from_bytes(hashlib.sha256(b"hidden inputs " + secret).digest()[:8], "big") >> 1


SEED_SHOWN_AS = "<the hidden inputs' seed>"


def without_seed(text: str, seed: int | None) -> str:
    """`text` with the hidden seed, written in decimal or hexadecimal, replaced by SEED_SHOWN_AS, also where
    up to 8 characters that are not letters or digits separate its digits ("4,611,686", "4 6 1 1").

    The grader itself never writes the seed in a message, but the graded code runs beside it (the child draws
    the hidden inputs from it) and could put it in an error message or an output: every feedback line is
    read through this. An encoding of the graded code's own choosing cannot be recognised; the seed alone
    does not give the hidden answers anyway (see `hidden_seed`)."""
    if seed is None or not text:
        return text
    for digits, flags in ((str(seed), 0), (f"{seed:x}", re.IGNORECASE)):
        text = re.sub("[^0-9A-Za-z]{0,8}".join(digits), SEED_SHOWN_AS, text, flags=flags)
    return text


MANIFEST = "MANIFEST.json"  # of recorded reference evidence: versions, files and, if recorded, the hidden seed


def make_private(folder: Path) -> None:
    """Makes the grader's cache folder (reference evidence, the hidden secret) if it is missing, and
    closes it to other users: it holds every check's answers."""
    folder.mkdir(parents=True, exist_ok=True)
    if folder.stat().st_uid == os.geteuid() and folder.stat().st_mode & 0o077:
        folder.chmod(0o700)


def _manifest(reference_dir: Path) -> dict:
    """The manifest of recorded evidence (at most 1 MiB read), or {} where there is none to read."""
    try:
        with open(reference_dir / MANIFEST, "rb") as file:
            manifest = json.loads(file.read(2**20))
    except (OSError, ValueError):
        return {}
    return manifest if isinstance(manifest, dict) else {}


def recorded_weeks(reference_dir: Path) -> list[int]:
    """The weeks whose evidence `reference_dir` records (a release's weeks), in order."""
    recorded = _manifest(reference_dir).get("weeks")
    return sorted(week for week, module in WEEKS.items() if isinstance(recorded, dict) and module in recorded)


def recorded_hidden_seed(reference_dir: Path) -> int | None:
    """The hidden seed that recorded evidence was made with, or None where it holds no hidden checks."""
    seed = _manifest(reference_dir).get("hidden_seed")
    return seed if isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed < 2**63 else None
