"""`course release OUT`: writes the student copy of the course, without `solutions/` (instructors).

The copy holds the exercises (generated afresh from the solutions), the lessons, the `course` and
`grader` packages, and the *recorded reference evidence* in `reference_evidence/`: for every probe
of every week, the inputs, the reference parameters and the reference's outputs, as `.npz` files of
plain numbers and strings (no pickles, no code). In the copy, `course grade` reads that evidence
instead of running the solutions (`grader.grading.default_reference_dir`), so it works offline and
gives exactly the score it gives with the solutions present.

No solution source reaches the copy: files are copied from an allow-list, never `solutions/`,
bytecode or caches; and before the copy is put in place, every file in it is searched for the body
of every task of every solution (see `find_leaks`). A release that would leak is not written.

    course release ../deep-into-cnn-student            # all six weeks
    course release ../student --weeks 1 4 --force      # replace an existing copy

In the copy, the instructor tools (`grader/instructor/`: `course publish`, `release`, `autograder`,
`grade-batch`) are left out, and those commands only say so; `course train MODEL` trains the student's own model from `exercises/` (the reference models are not
included).
"""

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from course import weeks as course_weeks

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("course", "grader")
TOP_FILES = ("pyproject.toml", ".gitignore")
DOCS = "docs"
IGNORED = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo", ".*")
INSTRUCTOR_TOOLS = Path("grader") / "instructor"  # left out of a student release: its commands need solutions/
MIN_LINE_CHARACTERS = 12  # shorter task lines ("return x") are too common to count as a leak

SOLUTION_IMPORT = re.compile(r"^\s*(from\s+solutions\b|import\s+solutions\b)", re.MULTILINE)

STUDENT_README = """# Deep Into CNN: your copy of the course

Six weeks of deep learning in JAX and Flax: regression, neural networks, convolutions, a simple CNN
on CIFAR-10, LeNet-5 on MNIST, AlexNet. You write the exercises in `exercises/`; each task is
marked `# TASK N.k: what to compute` and raises "not attempted" until you fill it in. The lessons
(`course lessons`) explain each week and run your code.

This copy has no reference solutions. `course grade` compares your code with the reference
evidence recorded in `reference_evidence/` (inputs, reference parameters and expected outputs): it
works offline and gives the score the instructor's grader gives, less the hidden checks. Your code
runs in a sandbox while it is graded.

## Start

```bash
python3 -m venv .venv
. .venv/bin/activate
pip install -e .
course grade week1                                     # one week's scorecard: what to fix, task by task
course grade                                           # every week of this release
course train mlp --dataset shapes_gray --epochs 2 --out runs/mlp   # your week 2 MLP, a minute on a laptop
course eval runs/mlp                                   # its test accuracy, per class
course viz predictions --checkpoint runs/mlp --out figures         # test images, predicted and true
course lessons 2                                       # the week 2 lesson as notebooks/week2_neural_networks.ipynb
```

A command that reaches a task you have not written says so in one line ("Task 2.10 (train_step)
is not written yet: fill it in in exercises/week2_neural_networks.py"). Every command takes
`--help`.

Prefer Jupyter? Each week is also a notebook, `exercises/notebooks/weekN_*.ipynb`, with the same tasks:
its last cell (`notebook.check(week=N)`) grades the notebook as saved, and
`course grade week2 --target exercises/notebooks` grades it from a terminal.

## The real datasets

`shapes_gray` is a small synthetic dataset. The course trains on MNIST, Fashion-MNIST and CIFAR-10:
`course data download mnist --data-dir ~/data` (or set `COURSE_DATA_DIR` to a folder that holds
them), then, for example, `course train lenet5 --out runs/lenet5` and
`course viz filters --checkpoint runs/lenet5 --out figures`. `course lessons 3 --execute` runs a
lesson with your code and keeps its outputs; `COURSE_LESSON_FULL=1` gives it the real data.

## Submitting

Upload your week modules (`exercises/week1_regression.py`, ...), or your notebooks
(`week1_regression.ipynb`, ...), as your instructor asks (on Gradescope: the files, or a zip of them).
The grader reads only those files; a notebook's code cells are graded as its module would be.
"""


class ReleaseError(RuntimeError):
    """The release cannot be written; the message says why."""


# ---------------------------------------------------------------------------------------------
# Leak check


def _normal(text: str) -> str:
    return " ".join(text.split())


def task_fingerprints(solutions: Path, exercises: dict[str, str]) -> dict[str, list[str]]:
    """{"week3_convolutions.py 3.1": its distinctive lines} for every task of every solution.

    A task's distinctive lines are the code lines of its body (comments and short lines left out)
    that the week's exercise does not also hold (the exercise keeps everything outside the tasks).
    """
    from grader.instructor.publish import find_tasks

    found = {}
    for path in sorted(solutions.glob("week*.py")):
        source = path.read_text()
        kept = {_normal(line) for line in exercises.get(path.name, "").splitlines()}
        lines = source.splitlines()
        for task in find_tasks(source, path.name):
            body = [_normal(line) for line in lines[task.begin : task.end - 1]]
            found[f"{path.name} {task.id}"] = [line for line in body if len(line) >= MIN_LINE_CHARACTERS
                                              and not line.startswith("#") and line not in kept]
    return found


def readable_text(path: Path) -> str:
    """The text a file holds: its strings for evidence files, its cells' sources for notebooks (whose
    JSON escapes quotes), its decoded bytes otherwise."""
    if path.suffix == ".ipynb":
        return "\n".join(cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
                         for cell in json.loads(path.read_text())["cells"])
    if path.suffix == ".npz":
        from grader import evidence

        record = evidence.load(path)  # refuses pickles
        return "\n".join(str(value) for value in record.values() if value.dtype.kind == "U")
    data = path.read_bytes()
    if path.suffix in (".png", ".jpg", ".jpeg", ".gif", ".pdf"):
        return ""
    return data.decode("utf-8", "replace")


def find_leaks(folder: Path, fingerprints: dict[str, list[str]]) -> list[str]:
    """"FILE: task T" for every file under `folder` that holds at least half of a task's body."""
    leaks = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        text = _normal(readable_text(path))
        for task, lines in fingerprints.items():
            hits = sum(line in text for line in lines)
            if lines and hits >= max(1, math.ceil(len(lines) / 2)):
                leaks.append(f"{path.relative_to(folder)}: {hits} of the {len(lines)} lines of task {task}")
    return leaks


def forbidden_files(folder: Path) -> list[str]:
    """Files and folders a release must not hold: solutions, bytecode, imports of solutions."""
    found = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if "solutions" in relative.parts or path.suffix in (".pyc", ".pyo") or "__pycache__" in relative.parts:
            found.append(f"{relative}: solutions or bytecode")
        elif path.suffix == ".py" and SOLUTION_IMPORT.search(path.read_text(errors="replace")):
            found.append(f"{relative}: imports solutions")
    return found


# ---------------------------------------------------------------------------------------------
# Writing the copy


def record_evidence(weeks: list[int], out: Path, jobs: int, hidden: bool = False) -> dict:
    """Copies the reference evidence of `weeks` (computed from the solutions, or cached) to `out`: the
    public checks' only (a student release), or with `hidden` the hidden checks' too, and their seed
    (an autograder zip, which students never see)."""
    from grader import evidence, grading, reference

    settings = grading.Settings(jobs=jobs, reference_dir=None, public_only=not hidden)

    def one(week):
        return week, reference.reference_folder(week, settings), reference.fingerprint_files(week, settings)

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        folders = list(pool.map(one, weeks))
    manifest = {"weeks": {}, "versions": {}, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "note": "reference evidence recorded from the solutions: inputs, reference parameters and "
                        "expected outputs; numbers and strings only"}
    for package in ("jax", "jaxlib", "flax", "optax", "numpy"):
        manifest["versions"][package] = reference.library_version(package)
    if hidden:
        manifest["hidden_seed"] = grading.hidden_seed(settings)
    for week, folder, fingerprint in folders:
        target = out / grading.WEEKS[week]
        target.mkdir(parents=True)
        files = {}
        for path in sorted(folder.glob("*.npz")):
            evidence.load(path)  # numbers and strings only: fails on anything else
            shutil.copyfile(path, target / path.name)
            files[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        shutil.copyfile(folder / "complete", target / "complete")
        manifest["weeks"][grading.WEEKS[week]] = {"fingerprint": fingerprint, "files": files}
    (out / grading.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def copy_sources(out: Path, exercises: dict[str, str], *, instructor_tools: bool = False) -> None:
    """Copies the course to `out` with `exercises` in place of the solutions; the instructor tools
    (grader/instructor/) only with `instructor_tools` (an autograder's wheel runs its Gradescope entry)."""
    for package in PACKAGES:
        shutil.copytree(REPO / package, out / package, ignore=IGNORED)
    if not instructor_tools:
        shutil.rmtree(out / INSTRUCTOR_TOOLS)
    for name in TOP_FILES:
        if (REPO / name).exists():
            shutil.copyfile(REPO / name, out / name)
    if (REPO / DOCS).is_dir():
        shutil.copytree(REPO / DOCS, out / DOCS, ignore=shutil.ignore_patterns("__pycache__", ".*"))
    (out / "README.md").write_text(STUDENT_README)
    (out / "exercises").mkdir()
    for name, text in exercises.items():  # the modules, and the notebooks in exercises/notebooks/
        (out / "exercises" / name).parent.mkdir(exist_ok=True)
        (out / "exercises" / name).write_text(text)


def release(out: Path, weeks: list[int], *, force: bool = False, jobs: int = 2) -> dict:
    """Writes the student release to `out` (replacing it with `force`); returns the evidence manifest."""
    from grader.instructor import publish

    out = out.expanduser().resolve()
    if not (REPO / "solutions").is_dir():
        raise ReleaseError("this copy of the course has no solutions/: releases are made from the instructors' copy")
    if out == REPO or REPO in out.parents or out in REPO.parents:
        raise ReleaseError(f"{out} must be outside the course repository {REPO}")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise ReleaseError(f"{out} exists and is not empty; pass --force to replace it")
        if not (out / "reference_evidence" / "MANIFEST.json").exists():
            raise ReleaseError(f"{out} is not a student release made by `course release`; --force replaces only those")
    try:
        exercises = publish.generated_files(REPO / "solutions")
    except publish.MarkerError as error:
        raise ReleaseError(f"the solutions' task markers are malformed: {error}") from None
    partial = out.with_name(f".{out.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        copy_sources(partial, exercises)
        manifest = record_evidence(weeks, partial / "reference_evidence", jobs)
        problems = forbidden_files(partial) + find_leaks(partial, task_fingerprints(REPO / "solutions", exercises))
        if problems:
            raise ReleaseError("the release would give away solution code; nothing was written:\n  "
                               + "\n  ".join(problems[:20]))
        if out.exists():
            shutil.rmtree(out)
        os.replace(partial, out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return manifest


def main(argv: list[str] | None = None) -> int:
    from grader import reference

    parser = argparse.ArgumentParser(prog="course release",
                                     description="Write the student copy of the course: no solutions, recorded "
                                                 "reference evidence for `course grade`.")
    parser.add_argument("out", metavar="OUT", help="folder to write (outside this repository)")
    parser.add_argument("--weeks", nargs="+", metavar="WEEK", help="weeks to include evidence for (default: all)")
    parser.add_argument("--force", action="store_true", help="replace OUT if it exists")
    parser.add_argument("--jobs", type=int, default=2, help="weeks whose evidence is computed at once")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        weeks = course_weeks.chosen(args.weeks)
        manifest = release(Path(args.out), weeks, force=args.force, jobs=args.jobs)
    except (ValueError, ReleaseError, reference.ReferenceEvidenceError) as error:
        print(f"course release: {error}", file=sys.stderr)
        return 2
    files = sum(len(week["files"]) for week in manifest["weeks"].values())
    print(f"wrote the student release to {Path(args.out).expanduser().resolve()}: weeks "
          f"{', '.join(str(week) for week in weeks)}, {files} evidence files "
          f"({time.perf_counter() - start:.1f} s)")
    print("in it, students grade themselves with `course grade`; the solutions are not included")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
