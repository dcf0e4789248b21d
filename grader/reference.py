"""The reference evidence: the same probes run on `solutions/` in a trusted child, cached under a hash of
the source files that child imports (with the library versions, the environment that changes XLA's
results and the hidden seed), so it is computed once per change; a student release or an autograder
zip ships it recorded instead (`Settings.reference_dir`).
"""


import ast
import dataclasses
import hashlib
import json
import os
import shutil
import threading
from importlib import metadata
from pathlib import Path

from grader import evidence as ev
from grader import integrity
from grader.checks import HIDDEN_PREFIX
from grader.child_run import PACKAGES_FOR_CHILD, run_child
from grader.grading import REPO, Settings, WEEKS, checks_module, hidden_seed, make_private, probe_names, recorded_weeks


def imported_sources(start: list[Path]) -> list[Path]:
    """The project's source files that `start` imports, directly or through each other, `start`
    included: `course.*` and `grader.*` modules (and their packages' `__init__.py`), and the week
    modules beside a file that it imports relatively (`from .week2_neural_networks import ...`).
    Read from the syntax trees, imports inside functions included; nothing is run."""
    found, todo = set(), list(start)
    while todo:
        path = todo.pop()
        if path in found or not path.is_file():
            continue
        found.add(path)
        tree = integrity.parse(path.read_bytes(), str(path))  # under the grader's lock: release hashes in threads
        if tree is None:
            raise ReferenceEvidenceError(f"{path} could not be parsed to key its reference evidence")
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level:
                todo += [path.parent / f"{(node.module or alias.name).split('.')[0]}.py" for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            for name in names:
                parts = name.split(".")
                if parts[0] in PACKAGES_FOR_CHILD:
                    todo.append(REPO / parts[0] / "__init__.py")
                    todo += [REPO.joinpath(*parts[:depth]).with_suffix(".py") for depth in range(2, len(parts) + 1)]
    return sorted(found)


def reference_sources(week: int, settings: Settings) -> list[Path]:
    """The source files the child that records `week`'s reference evidence runs: its launcher and
    child, the week's grader module, the solution, the library modules it withholds, and what they import."""
    child = [REPO / "grader" / "launcher.py", REPO / "grader" / "child.py", REPO / "grader" / f"{WEEKS[week]}.py"]
    child += [REPO.joinpath(*answer.module.split(".")).with_suffix(".py")  # the child imports them to withhold them
              for answer in getattr(checks_module(week), "LIBRARY_ANSWERS", ())]
    return imported_sources(child + [settings.solutions_dir / f"{WEEKS[week]}.py"])


def fingerprint_files(week: int, settings: Settings) -> str:
    """Hash of everything the reference evidence of `week` depends on: `reference_sources`, the
    library versions, the environment that changes XLA's results, the hidden seed."""
    digest = hashlib.sha256()
    for path in reference_sources(week, settings):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    for package in ("jax", "jaxlib", "flax", "optax", "numpy"):
        digest.update(f"{package}={library_version(package)}".encode())
    for name in ("JAX_PLATFORMS", "XLA_FLAGS", "CUDA_VISIBLE_DEVICES"):
        digest.update(f"{name}={os.environ.get(name, '')}".encode())
    digest.update(f"hidden seed={hidden_seed(settings)}".encode())
    return digest.hexdigest()[:24]


def library_version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "absent"


class ReferenceEvidenceError(RuntimeError):
    """The reference evidence could not be produced (a bug in the solutions or the grader)."""


def reference_folder(week: int, settings: Settings) -> Path:
    """The folder holding the reference evidence of `week`, computing it if it is not cached."""
    if settings.reference_dir is not None:
        folder = settings.reference_dir / WEEKS[week]
        if not (folder / "complete").exists():
            released = ", ".join(map(str, recorded_weeks(settings.reference_dir))) or "none"
            raise ReferenceEvidenceError(f"no recorded reference evidence for week {week} in {settings.reference_dir} "
                                 f"(it records weeks: {released})")
        public, hidden = probe_names(week)
        expected = [*public, *([HIDDEN_PREFIX + name for name in hidden] if hidden_seed(settings) is not None else [])]
        if absent := [name for name in expected if not (folder / f"{name}.npz").exists()]:
            raise ReferenceEvidenceError(f"the recorded reference evidence of week {week} in {settings.reference_dir} lacks "
                                 f"{', '.join(absent[:5])}: record it again with the grader that reads it")
        return folder
    folder = settings.cache_dir / "reference" / fingerprint_files(week, settings) / WEEKS[week]
    if (folder / "complete").exists():
        return folder
    solution = settings.solutions_dir / f"{WEEKS[week]}.py"
    if not solution.exists():
        raise ReferenceEvidenceError(f"no reference solution {solution} and no recorded reference evidence")
    reference_settings = dataclasses.replace(settings, week_timeout_s=max(settings.week_timeout_s, 300.0),
                                             probe_timeout_s=max(settings.probe_timeout_s, 120.0))
    run = run_child(week, solution.read_bytes(), "reference", reference_settings)
    failed = [name for name, record in run.evidence.items() if ev.text(record, ev.STATUS) != "ok"]
    public, hidden = probe_names(week)
    expected = {"__module__", *public, *([HIDDEN_PREFIX + name for name in hidden] if hidden_seed(settings) else [])}
    if failed or not expected <= set(run.evidence):
        problems = [f"{name}: {ev.text(run.evidence[name], ev.MESSAGE)} {ev.text(run.evidence[name], ev.WHERE)}"
                    for name in failed] or [run.missing_reason]
        raise ReferenceEvidenceError(f"the reference solution of week {week} failed its probes: {problems[:3]}\n"
                             f"{run.output[-2000:]}")
    partial = folder.with_name(folder.name + f".partial-{os.getpid()}-{threading.get_ident()}")  # threads too
    shutil.rmtree(partial, ignore_errors=True)
    make_private(settings.cache_dir)
    partial.mkdir(parents=True)
    for name, record in run.evidence.items():
        ev.save(partial / f"{name}.npz", record)
    (partial / "complete").write_text(json.dumps({"seconds": run.seconds}))
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(partial, folder)
    for stale in folder.parent.parent.glob(f"*/{WEEKS[week]}"):  # evidence of older solutions or graders
        if stale != folder:
            shutil.rmtree(stale, ignore_errors=True)
    return folder


def load_folder(folder: Path) -> dict[str, dict]:
    return {path.stem: ev.load(path) for path in sorted(folder.glob("*.npz"))}
