"""The trainable models of the course, by name: each week's `RECIPES`, gathered."""

import importlib

from course.recipe import Recipe

WEEK_MODULES = ("week1_regression", "week2_neural_networks", "week3_convolutions", "week4_simple_cnn",
                "week5_lenet", "week6_alexnet")


def recipes(package: str = "solutions") -> dict[str, Recipe]:
    """Every `RECIPES` entry of the week modules in `package`, by model name."""
    found = {}
    for module_name in WEEK_MODULES:
        module = importlib.import_module(f"{package}.{module_name}")
        found.update(getattr(module, "RECIPES", {}))
    return found
