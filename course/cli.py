"""The `course` command: train and evaluate models, fetch data, draw figures, grade and publish exercises.

    course train lenet5 --dataset mnist --epochs 3 --out runs/lenet5
    course grade week3 --target exercises
    course data download mnist --data-dir ~/data
"""

import argparse
import sys

from course import data, registry
from course.checkpoints import CheckpointError
from course.runs import SettingsError, best_record


class CommandError(Exception):
    """A user mistake on the command line; printed as one line, without a traceback."""


def train_command(args: argparse.Namespace) -> int:
    from course import train

    recipes = registry.recipes(args.target)
    if args.model not in recipes:
        raise CommandError(f"unknown model {args.model!r}; valid models: {', '.join(sorted(recipes))}")
    recipe = recipes[args.model]
    dataset = args.dataset or recipe.dataset
    if dataset not in recipe.datasets:
        raise CommandError(f"model {args.model!r} does not train on {dataset!r}; "
                           f"valid datasets for it: {', '.join(recipe.datasets)}")
    callbacks = []
    if args.dashboard_every:
        if not args.out:
            raise CommandError("--dashboard-every needs --out, the folder the dashboard is written to")
        from course import viz_training

        callbacks.append(viz_training.DashboardWriter(args.dashboard_every, args.out, class_names=data.class_names(dataset)))
    train.use_compilation_cache()
    history = train.fit(recipe, model_name=args.model, dataset=dataset, epochs=args.epochs,
                        batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed,
                        data_dir=args.data_dir, out_dir=args.out, resume=args.resume,
                        max_train_examples=args.max_train_examples, precision=args.precision, progress=not args.quiet,
                        callbacks=callbacks)
    final, best = history[-1], best_record(history)
    print(f"{args.model} on {dataset}: test accuracy {final['test_accuracy']:.2%} after {final['epoch']} epochs "
          f"(the last epoch; the test split is not used for selection); best validation accuracy "
          f"{best['validation_accuracy']:.2%} at epoch {best['epoch']}"
          + (f", kept in {args.out}/checkpoint/best; metrics in {args.out}/metrics.json" if args.out else ""))
    return 0


def data_command(args: argparse.Namespace) -> int:
    from course import download

    root = data.data_root(args.data_dir)
    if root is None:
        raise CommandError("no data folder: pass --data-dir or set COURSE_DATA_DIR")
    for name in args.names:
        print(f"{name}: {download.download(name, root)}")
    return 0


# Commands implemented elsewhere: `course NAME ARGS...` calls `module.function(ARGS)`.
DELEGATED = {
    "grade": ("grader.cli", "main", "grade exercises (or a submission folder) against the reference"),
    "publish": ("grader.instructor.publish", "main", "regenerate exercises/ from solutions/ (instructors)"),
    "viz": ("course.viz_cli", "main", "draw filters, feature maps, dashboards, predictions (PNG)"),
    "port": ("course.port", "main_port", "convert a PyTorch checkpoint of the original course"),
    "eval": ("course.eval_cli", "main", "test accuracy (overall and per class) of a checkpoint"),
    "lessons": ("course.lessons.build", "main", "list the weekly lessons and write them as notebooks"),
    "release": ("grader.instructor.release", "main", "write the student copy: no solutions, recorded reference evidence"),
    "grade-batch": ("grader.instructor.batch", "main", "grade a folder of submissions into DIR/gradebook.csv (instructors)"),
    "similarity": ("grader.instructor.similarity", "main",
                   "which submissions share code: DIR/similarity.html and .csv (instructors)"),
    "autograder": ("grader.instructor.autograder", "main", "build the Gradescope autograder zip of the course (instructors)"),
}


INSTRUCTOR_TOOLS = "grader.instructor"  # not in a student release (`course release` leaves it out)


def run_delegated(name: str, argv: list[str]) -> int:
    import importlib
    from pathlib import Path

    module_name, function_name, _ = DELEGATED[name]
    this_copy = Path(__file__).resolve().parents[1]
    if module_name.startswith(INSTRUCTOR_TOOLS + ".") and not this_copy.joinpath(*INSTRUCTOR_TOOLS.split(".")).is_dir():
        print(f"course {name}: an instructor command; this is the student release of the course, which has "
              "no solutions/ and no instructor tools", file=sys.stderr)
        return 2
    module = importlib.import_module(module_name)
    return getattr(module, function_name)(argv)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="course", description="Deep Into CNN: the JAX/Flax course.")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model and write its metrics, curves and checkpoints")
    train.add_argument("model", help="a model name, e.g. mlp, simple_cnn, lenet5, lenet5_relu, alexnet")
    train.add_argument("--dataset", help=f"one of: {', '.join(data.IMAGE_DATASETS)} (default: the recipe's)")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--lr", type=float, help="peak learning rate")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--data-dir", help="folder holding the datasets' files (default: $COURSE_DATA_DIR)")
    train.add_argument("--out", help="folder for metrics.json, curves.png and checkpoints")
    train.add_argument("--resume", action="store_true",
                       help="continue from OUT/checkpoint/last: an interrupted run, or a finished one to more --epochs")
    train.add_argument("--max-train-examples", type=int, help="train on the first N examples only")
    train.add_argument("--dashboard-every", type=int, metavar="N",
                       help="write OUT/dashboard.png (curves, confidences, activations, kernels) every N steps")
    train.add_argument("--precision", choices=["float32", "bf16"], default="float32",
                       help="bf16: matrix products, convolutions and activations in bfloat16; outputs, "
                            "parameters and optimizer state in float32 (for GPUs and TPUs; default: float32)")
    train.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    train.add_argument("--target", help=registry.TARGET_HELP)
    train.set_defaults(run=train_command)

    data_parser = commands.add_parser("data", help="fetch datasets into the data folder")
    data_parser.add_argument("action", choices=["download"])
    data_parser.add_argument("names", nargs="+", choices=["mnist", "fashion_mnist", "cifar10"])
    data_parser.add_argument("--data-dir", help="where to put them (default: $COURSE_DATA_DIR)")
    data_parser.set_defaults(run=data_command)

    for name, (_, _, help_text) in DELEGATED.items():
        commands.add_parser(name, help=help_text, add_help=False)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in DELEGATED:
        return run_delegated(argv[0], argv[1:])
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except (CommandError, data.DataError, SettingsError, CheckpointError, registry.TargetError) as error:
        print(f"course {args.command}: error: {error}", file=sys.stderr)
        return 2
    except NotImplementedError as error:  # a stub the command reached: one line, not a traceback
        from course.lessons import TASK_MESSAGE, LESSONS

        task = TASK_MESSAGE.search(str(error))
        if task is None or int(task["week"]) not in LESSONS:
            raise
        week, folder = int(task["week"]), getattr(args, "target", None) or "exercises"
        print(f"course {args.command}: Task {week}.{task['number']} ({task['function']}) is not written yet: "
              f"fill it in in {folder.rstrip('/')}/{LESSONS[week]}.py, then check it with "
              f"`course grade week{week}`" + ("" if folder == "exercises" else f" --target {folder}"),
              file=sys.stderr)
        return 2
