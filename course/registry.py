"""The trainable models of the course, by name: each week's `RECIPES`, gathered."""

import importlib
from pathlib import Path

from course.recipe import Recipe

WEEK_MODULES = ("week1_regression", "week2_neural_networks", "week3_convolutions", "week4_simple_cnn",
                "week5_lenet", "week6_alexnet")


def default_package() -> str:
    """"solutions" where they sit beside this `course` package, else "exercises" (a student release)."""
    return "solutions" if (Path(__file__).resolve().parent.parent / "solutions").is_dir() else "exercises"


def week_module(module_name: str, package: str | None = None):
    """The week module `module_name` (e.g. "week3_convolutions") of `package` (default: `default_package()`)."""
    return importlib.import_module(f"{package or default_package()}.{module_name}")


def recipes(package: str | None = None) -> dict[str, Recipe]:
    """Every `RECIPES` entry of the week modules in `package` (default: `default_package()`), by model name."""
    found = {}
    for module_name in WEEK_MODULES:
        found.update(getattr(week_module(module_name, package), "RECIPES", {}))
    return found
