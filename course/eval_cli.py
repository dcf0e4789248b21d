"""`course eval`: the test accuracy of a checkpoint, overall and per class.

    course eval runs/lenet5                        # checkpoint/best, on the dataset it was trained on
    course eval runs/ported --dataset cifar10 --max-examples 1000

The checkpoint is one that `course train --out` or `course port` wrote (`course.checkpoints`); the
model it is read into is the recipe of the model name it records, from the week modules of
`--target` (`course.registry`).
"""

import argparse
import sys
from pathlib import Path

import numpy as np
from flax import nnx

from course import checkpoints, data, registry
from course.recipe import Recipe
from course.state_dicts import first_line


class EvalError(ValueError):
    """A checkpoint that cannot be evaluated: of a model the target does not have, of other code
    than the target's, or on a dataset its model does not take."""


def parser() -> argparse.ArgumentParser:
    """The options of `course eval`."""
    parser = argparse.ArgumentParser(prog="course eval", description="Test accuracy of a checkpoint, overall and per class.")
    parser.add_argument("run", help="a run folder (OUT of `course train`/`course port`) or a checkpoint folder")
    parser.add_argument("--dataset", help="the test split to use (default: the one the checkpoint records)")
    parser.add_argument("--data-dir", help="folder holding the datasets' files (default: $COURSE_DATA_DIR)")
    parser.add_argument("--model", help="model name, when the checkpoint does not record it")
    parser.add_argument("--target", help=registry.TARGET_HELP)
    parser.add_argument("--max-examples", type=int,
                        help="evaluate N test images only, a fixed random subset (test splits may be sorted by class)")
    return parser


def model_and_dataset(folder: Path, args: argparse.Namespace) -> tuple[str, Recipe, str]:
    """(model name, its recipe, dataset) to evaluate the checkpoint in `folder` with: those it
    records, unless `args` names others. EvalError where the target or the model lacks them."""
    settings = checkpoints.read_checkpoint_info(folder)["settings"]
    recipes = registry.recipes(args.target)
    model_name = args.model or settings.get("model_name")
    if model_name not in recipes:
        raise EvalError(f"{folder} records model {model_name!r}, which is none of {', '.join(sorted(recipes))}; "
                        "pass --model")
    recipe = recipes[model_name]
    dataset = args.dataset or settings.get("dataset") or recipe.dataset
    if dataset not in recipe.datasets:
        raise EvalError(f"model {model_name!r} does not take {dataset!r}; valid datasets for it: "
                        f"{', '.join(recipe.datasets)}")
    return model_name, recipe, dataset


def restored_model(folder: Path, model_name: str, recipe: Recipe, target: str | None) -> nnx.Module:
    """The recipe's model holding the checkpoint's weights. A damaged file raises CheckpointError
    naming it; weights of another structure (trained from other code), EvalError."""
    model = recipe.model(nnx.Rngs(0))
    try:
        checkpoints.restore_checkpoint(folder, model)
    except checkpoints.CheckpointError:
        raise  # a damaged file: its message names it
    except Exception as error:  # orbax reports a structure mismatch deep inside
        raise EvalError(f"{folder} does not hold a {model_name!r} model of {registry.package(target)}/ "
                        f"({first_line(error)}); trained from other code? pass the --target it was trained "
                        "with") from None
    return model


def print_accuracy(model_name: str, dataset: str, matrix: np.ndarray) -> None:
    """Prints the accuracy overall, then one line per class, from the confusion `matrix` (C, C) of
    counts (row: true class, column: predicted class)."""
    correct, total = np.diag(matrix), matrix.sum(axis=1)
    print(f"{model_name} on {dataset} test ({total.sum()} images): accuracy {correct.sum() / total.sum():.2%}")
    width = max(len(name) for name in data.class_names(dataset))
    for name, right, count in zip(data.class_names(dataset), correct, total):
        share = f"{right / count:7.2%}" if count else "    n/a"
        print(f"  {name:<{width}}  {share}  ({right}/{count})")


def main(argv: list[str] | None = None) -> int:
    """`course eval DIR [--dataset NAME] [--data-dir D]`: test accuracy, overall and per class."""
    args = parser().parse_args(argv)
    try:
        folder = checkpoints.find_checkpoint(args.run)
        model_name, recipe, dataset = model_and_dataset(folder, args)
        model = restored_model(folder, model_name, recipe, args.target)
        images, labels = data.load(dataset, "test", data_dir=args.data_dir)
    except (EvalError, data.DataError, checkpoints.CheckpointError, registry.TargetError) as error:
        print(f"course eval: error: {error}", file=sys.stderr)
        return 2
    if args.max_examples and args.max_examples < len(labels):
        subset = np.sort(np.random.default_rng(0).permutation(len(labels))[:args.max_examples])
        images, labels = images[subset], labels[subset]
    from course import viz_predictions

    _, predictions = viz_predictions.predict(model, recipe.prepare, images)
    matrix = viz_predictions.confusion_matrix(labels, predictions, data.num_classes(dataset))
    print_accuracy(model_name, dataset, matrix)
    return 0
