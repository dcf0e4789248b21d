"""The trainable models of the course, by name: each week's `RECIPES`, gathered from a target.

A target is where the week modules are: "solutions", "exercises" (the student's code) or a folder
holding week modules (a submission). `course train`, `eval` and `viz` take it as `--target`.
"""

import importlib
import importlib.machinery
import importlib.util
import sys
from pathlib import Path

from course import weeks
from course.recipe import Recipe

WEEK_MODULES = tuple(weeks.MODULES.values())
PACKAGES = ("solutions", "exercises")
FOLDER_PACKAGE = "course_target"  # the package a folder target is imported as
# `--target` of course train, eval and viz
TARGET_HELP = ("whose model code: solutions, exercises (yours) or a folder of week modules "
               "(default: solutions in a checkout, exercises in a student release)")


class TargetError(ValueError):
    """A target that is neither "solutions", "exercises" nor a folder holding week modules."""


def default_package() -> str:
    """"solutions" where they sit beside this `course` package, else "exercises" (a student release)."""
    return "solutions" if (Path(__file__).resolve().parent.parent / "solutions").is_dir() else "exercises"


def package(target: str | None = None) -> str:
    """The importable package of `target` (default: `default_package()`). A folder is imported as
    the package `course_target`, so that its week modules import each other as in `exercises/`."""
    if target in (None, ""):
        return default_package()
    if target in PACKAGES:
        return target
    folder = target_folder(target)
    loaded = sys.modules.get(FOLDER_PACKAGE)
    if loaded is not None and list(loaded.__path__) != [str(folder)]:
        raise TargetError(f"this process already imported week modules from {loaded.__path__[0]}, not {folder}")
    if loaded is None:
        spec = importlib.machinery.ModuleSpec(FOLDER_PACKAGE, None, is_package=True)
        module = importlib.util.module_from_spec(spec)
        module.__path__ = [str(folder)]
        sys.modules[FOLDER_PACKAGE] = module
    return FOLDER_PACKAGE


def target_folder(target: str) -> Path:
    """The folder `target` names, if it holds week modules; else TargetError, which says what a target is."""
    folder = Path(target).expanduser().resolve()
    if not folder.is_dir() or not any((folder / f"{name}.py").is_file() for name in WEEK_MODULES):
        raise TargetError(f"target {target!r} is neither {' nor '.join(PACKAGES)} nor a folder holding week "
                          f"modules ({WEEK_MODULES[0]}.py, ...)")
    return folder


def week_module(module_name: str, target: str | None = None):
    """The week module `module_name` (e.g. "week3_convolutions") of `target` (see `package`)."""
    return importlib.import_module(f"{package(target)}.{module_name}")


def recipes(target: str | None = None) -> dict[str, Recipe]:
    """Every `RECIPES` entry of the week modules of `target` (see `package`), by model name; a
    folder may hold some weeks only."""
    found, name = {}, package(target)
    for module_name in WEEK_MODULES:
        if name == FOLDER_PACKAGE and not (Path(sys.modules[name].__path__[0]) / f"{module_name}.py").is_file():
            continue
        found.update(getattr(week_module(module_name, target), "RECIPES", {}))
    return found
