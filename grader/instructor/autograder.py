"""`course autograder OUT.zip [--weeks ...]`: the course's autograder for Gradescope (instructors).

The zip holds, at its root (Gradescope unpacks it into /autograder/source):

  setup.sh           installs the course from wheels/ into /autograder/venv, its dependencies pinned
                     in requirements.txt, and bubblewrap (`grader/instructor/autograder_files/setup.sh`)
  run_autograder     grades /autograder/submission into /autograder/results/results.json
                     (`python -m grader.instructor.gradescope`)
  README.md          for the instructor: uploading, what students submit, what they see
  autograder.json    the weeks graded and the limits
  requirements.txt   every runtime dependency, pinned to the version installed here: the versions
                     that recorded the reference evidence
  wheels/            the course as a wheel, built from the student release's files (no solutions)
  reference_evidence/  the recorded reference evidence of the public and the hidden checks, and the
                     hidden inputs' seed

The zip is instructor-private: it holds the answers of the hidden checks, though no solution
source (every file, the wheel's included, is searched for the solutions' task bodies, as for a
release). So it is written readable by its owner only, and the grader's cache folder, where its
evidence is recorded and which keeps the same answers, is closed to other users; the wheel, which
setup.sh installs readable by everyone, is checked to hold no recorded evidence and not the hidden
seed; and setup.sh closes every file of source/ before anything else. Dry-run it on any Linux
machine by unpacking it into ROOT/source and running
`COURSE_AUTOGRADER_ROOT=ROOT bash ROOT/source/setup.sh`, then `.../run_autograder` (see README.md).

    course autograder week1.zip --weeks 1
    course autograder course.zip --force        # all six weeks, replacing course.zip
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from importlib import metadata
from pathlib import Path

from grader.instructor import release
from course import weeks as course_weeks

REPO = Path(__file__).resolve().parents[2]
FILES = Path(__file__).resolve().parent / "autograder_files"
DISTRIBUTION = "deep-into-cnn"
EXECUTABLE = ("setup.sh", "run_autograder")


class AutograderError(RuntimeError):
    """The zip cannot be built; the message says why."""


def pinned_requirements(distribution: str = DISTRIBUTION) -> list[str]:
    """`name==version` for every runtime dependency of `distribution`, direct or not, as installed here
    (extras like torch and dev are left out)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins, todo, seen = {}, [(distribution, "")], set()
    while todo:
        name, extra = todo.pop()
        for text in metadata.requires(name) or []:
            requirement = Requirement(text)
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
                continue
            key = canonicalize_name(requirement.name)
            try:
                pins[key] = metadata.version(requirement.name)
            except metadata.PackageNotFoundError:
                raise AutograderError(f"{requirement.name}, which {name} needs, is not installed here") from None
            for wanted in ("", *sorted(requirement.extras)):
                if (key, wanted) not in seen:
                    seen.add((key, wanted))
                    todo.append((requirement.name, wanted))
    return [f"{name}=={version}" for name, version in sorted(pins.items())]


def build_wheel(source: Path, out: Path) -> Path:
    """Builds the wheel of the course copy in `source` into `out`; returns its path."""
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "--disable-pip-version-check",
                            "--wheel-dir", str(out), str(source)], capture_output=True, text=True, check=False)
    wheels = sorted(out.glob("*.whl"))
    if built.returncode != 0 or len(wheels) != 1:
        raise AutograderError(f"building the course's wheel failed:\n{(built.stdout + built.stderr)[-2000:]}")
    return wheels[0]


def wheel_problems(wheel: Path, fingerprints: dict[str, list[str]], hidden_seed: int | None = None) -> list[str]:
    """Solution files or solution code inside the wheel, and recorded answers: the wheel is installed
    where the graded code can read it."""
    with tempfile.TemporaryDirectory(prefix="course-wheel-") as folder:
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(folder)
        return [f"{wheel.name}: {problem}" for problem in
                release.forbidden_files(Path(folder)) + release.find_leaks(Path(folder), fingerprints)
                + recorded_answers(Path(folder), hidden_seed)]


def recorded_answers(folder: Path, hidden_seed: int | None) -> list[str]:
    """Files under `folder` that are, or may hold, recorded reference evidence: evidence files (.npz),
    an evidence manifest, a reference_evidence folder, or any file that holds the hidden seed."""
    from grader import grading

    found = []
    for path in sorted(folder.rglob("*")):
        name = path.relative_to(folder).as_posix()
        if path.suffix == ".npz" or path.name in (grading.MANIFEST, "reference_evidence"):
            found.append(f"{name} is recorded evidence")
        elif hidden_seed is not None and path.is_file() and str(hidden_seed).encode() in path.read_bytes():
            found.append(f"{name} holds the hidden seed")
    return found


def write_zip(folder: Path, out: Path) -> None:
    """Zips the files of `folder` (at the zip's root) into `out`, whole or not at all, readable by its owner only."""
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # the hidden answers: the owner's only
    os.fchmod(descriptor, 0o600)  # a partial left by an earlier run keeps its mode through os.open
    with os.fdopen(descriptor, "wb") as file, zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                info = zipfile.ZipInfo.from_file(path, path.relative_to(folder).as_posix())
                mode = 0o755 if path.name in EXECUTABLE else 0o644
                info.external_attr = (0o100000 | mode) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                archive.writestr(info, path.read_bytes())
    os.replace(partial, out)


def close_evidence_cache() -> None:
    """Makes the grader's cache folder, where the zip's evidence is recorded and kept (the hidden
    checks' answers and the secret of their seed among it), its owner's alone: made that way, or closed
    if it is open. What is inside needs no closing of its own once its folder is closed."""
    from grader import grading

    cache = grading.user_cache_dir()
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    cache.chmod(0o700)


def build(out: Path, weeks: list[int], *, force: bool = False, jobs: int = 2, week_timeout_s: float = 120.0,
          probe_timeout_s: float = 60.0, memory_gb: float = 6.0) -> dict:
    """Writes the autograder zip to `out`; returns its autograder.json."""
    from grader.instructor import publish

    out = out.expanduser().resolve()
    if not (REPO / "solutions").is_dir():
        raise AutograderError("this copy of the course has no solutions/: the autograder is built from the "
                              "instructors' copy")
    if out.suffix.lower() != ".zip":
        raise AutograderError(f"{out.name}: the autograder is a .zip file (e.g. autograder.zip)")
    if out.exists() and not force:
        raise AutograderError(f"{out} exists; pass --force to replace it")
    try:
        exercises = publish.generated_files(REPO / "solutions")
    except publish.MarkerError as error:
        raise AutograderError(f"the solutions' task markers are malformed: {error}") from None
    fingerprints = release.task_fingerprints(REPO / "solutions", exercises)
    config = {"weeks": weeks, "week_timeout_s": week_timeout_s, "probe_timeout_s": probe_timeout_s,
              "memory_gb": memory_gb, "course_version": metadata.version(DISTRIBUTION),
              "built": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    with tempfile.TemporaryDirectory(prefix="course-autograder-") as scratch:
        course_copy, content = Path(scratch) / "course", Path(scratch) / "zip"
        release.copy_sources(course_copy, exercises, instructor_tools=True)
        for name in ("setup.sh", "run_autograder", "README.md"):
            (content / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(FILES / name, content / name)
        (content / "autograder.json").write_text(json.dumps(config, indent=2) + "\n")
        (content / "requirements.txt").write_text("\n".join(pinned_requirements()) + "\n")
        wheel = build_wheel(course_copy, content / "wheels")
        close_evidence_cache()
        manifest = release.record_evidence(weeks, content / "reference_evidence", jobs, hidden=True)
        problems = (release.forbidden_files(course_copy) + release.find_leaks(course_copy, fingerprints)
                    + release.forbidden_files(content) + release.find_leaks(content, fingerprints)
                    + wheel_problems(wheel, fingerprints, manifest.get("hidden_seed")))
        if problems:
            raise AutograderError("the zip would give away solution code or recorded answers; nothing was written:\n  "
                                  + "\n  ".join(problems[:20]))
        out.parent.mkdir(parents=True, exist_ok=True)
        write_zip(content, out)
    return config


def main(argv: list[str] | None = None) -> int:
    from grader import grading, reference

    parser = argparse.ArgumentParser(prog="course autograder",
                                     description="Build the Gradescope autograder zip of the course (instructors).")
    parser.add_argument("out", metavar="OUT.zip", help="the zip to write")
    parser.add_argument("--weeks", nargs="+", metavar="WEEK", help="weeks it grades (default: all six)")
    parser.add_argument("--force", action="store_true", help="replace OUT.zip if it exists")
    parser.add_argument("--jobs", type=int, default=2, help="weeks whose reference evidence is computed at once")
    parser.add_argument("--timeout", type=float, default=grading.Settings.week_timeout_s,
                        help="seconds allowed per week (default %(default)s)")
    parser.add_argument("--probe-timeout", type=float, default=grading.Settings.probe_timeout_s,
                        help="seconds allowed per check (default %(default)s)")
    parser.add_argument("--memory-gb", type=float, default=grading.Settings.memory_bytes / 2**30,
                        help="memory limit of the graded code, in GiB (default %(default)s)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        weeks = course_weeks.chosen(args.weeks)
        if min(args.timeout, args.probe_timeout, args.memory_gb) <= 0:
            raise ValueError("--timeout, --probe-timeout and --memory-gb must be positive")
        build(Path(args.out), weeks, force=args.force, jobs=args.jobs, week_timeout_s=args.timeout,
              probe_timeout_s=args.probe_timeout, memory_gb=args.memory_gb)
    except (ValueError, AutograderError, release.ReleaseError, reference.ReferenceEvidenceError) as error:
        print(f"course autograder: {error}", file=sys.stderr)
        return 2
    out = Path(args.out).expanduser().resolve()
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MiB): weeks {', '.join(map(str, weeks))}, public and "
          f"hidden checks ({time.perf_counter() - start:.1f} s)")
    print("upload it as the autograder of a Gradescope programming assignment; its README.md says how. "
          "It holds the hidden checks' answers: do not share it with students.")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
