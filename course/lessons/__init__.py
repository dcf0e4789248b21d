"""The lessons: one runnable notebook per week, kept as jupytext percent scripts beside this file.

    course lessons                 # list the lessons and write notebooks/weekN_*.ipynb
    course lessons --execute       # ...and run them, outputs included

Every lesson starts with

    from course import lessons
    week = lessons.load_week("week3_convolutions")

which imports the week's module from `exercises/` (the student's code, the default) or from
`solutions/` (`COURSE_LESSON_TARGET=solutions`), and makes an unwritten exercise stop the lesson
with one clear line instead of a traceback:

    fill in `conv2d` in exercises/week3_convolutions.py (Task 3.1), then rerun this cell

Lessons run on small synthetic data by default (a minute or less on a laptop CPU) and on the
course's real datasets with `COURSE_LESSON_FULL=1` (read from `$COURSE_DATA_DIR`).
"""

import importlib
import io
import os
import re
import sys
import types
import warnings

import numpy as np

from course import weeks

TARGET_VARIABLE = "COURSE_LESSON_TARGET"
FULL_VARIABLE = "COURSE_LESSON_FULL"
TARGETS = ("exercises", "solutions")
LESSONS = weeks.MODULES  # one lesson per week, named as its module
# The stubs of `course publish` raise NotImplementedError("Task 3.1 (conv2d): not attempted").
TASK_MESSAGE = re.compile(r"Task (?P<week>\d+)\.(?P<number>\d+) \((?P<function>[^)]+)\)")


class LessonError(ValueError):
    """A lesson setting is wrong (an unknown target, a week module that does not exist)."""


def target() -> str:
    """Whose code the lessons run ($COURSE_LESSON_TARGET): "exercises" (default), "solutions", or a
    folder of week modules (as `course train --target`)."""
    chosen = os.environ.get(TARGET_VARIABLE, "exercises").strip() or "exercises"
    check_target(chosen, TARGET_VARIABLE)
    return chosen


def check_target(chosen: str, what: str) -> None:
    """Raises LessonError unless `chosen` is one of TARGETS or a folder holding week modules."""
    from course import registry

    if chosen in TARGETS:
        return
    try:
        registry.target_folder(chosen)
    except registry.TargetError:
        raise LessonError(f"{what} must be one of {', '.join(TARGETS)} or a folder of week modules, "
                          f"got {chosen!r}") from None


def full_data() -> bool:
    """True when $COURSE_LESSON_FULL asks for the real datasets instead of the small synthetic ones."""
    return os.environ.get(FULL_VARIABLE, "").strip().lower() in ("1", "true", "yes", "on")


def load_week(module_name: str, data_note: str | None = None) -> types.ModuleType:
    """Imports `module_name` (e.g. "week3_convolutions") from the target package and says which one,
    and on what data: `data_note`, else the small synthetic sets or the real ones ($COURSE_LESSON_FULL).

    Also installs `fill_in_handler`, so that calling an exercise that is not written yet prints
    which function to fill in, in which file, instead of a traceback.
    """
    if module_name not in LESSONS.values():
        raise LessonError(f"unknown week module {module_name!r}; valid: {', '.join(LESSONS.values())}")
    install_fill_in_handler()
    from course import registry

    module = importlib.import_module(f"{registry.package(target())}.{module_name}")
    if data_note is None:
        data_note = "the real datasets" if full_data() else f"small synthetic data (set {FULL_VARIABLE}=1 for the real datasets)"
    other = "solutions" if target() == "exercises" else "exercises"
    print(f"Running {target()}/{module_name}.py on {data_note}.\n"
          f"(Set {TARGET_VARIABLE}={other} and restart the kernel to run {other}/ instead.)")
    return module


# ---------------------------------------------------------------------------------------------
# Unwritten exercises: one clear line instead of a traceback


def fill_in_message(error: BaseException) -> str | None:
    """The "fill in ..." line for a stub's NotImplementedError, or None for any other error."""
    if not isinstance(error, NotImplementedError):
        return None
    match = TASK_MESSAGE.search(str(error))
    if match is None or int(match["week"]) not in LESSONS:
        return None
    week, task = int(match["week"]), f"{match['week']}.{match['number']}"
    return (f"fill in `{match['function']}` in exercises/{LESSONS[week]}.py (Task {task}), then rerun this cell.\n"
            f"Check your work with `course grade week{week}`.")


def fill_in_handler(shell, error_type, error, traceback, tb_offset=None):
    """IPython handler for NotImplementedError: the fill-in line for a stub, else the usual traceback."""
    message = fill_in_message(error)
    if message is None:
        shell.showtraceback((error_type, error, traceback), tb_offset=tb_offset)
    else:
        print(message)


def fill_in_excepthook(error_type, error, traceback):
    """`sys.excepthook` for lessons run as plain scripts: the fill-in line for a stub, else the default."""
    message = fill_in_message(error)
    if message is None:
        sys.__excepthook__(error_type, error, traceback)
    else:
        print(message, file=sys.stderr)


def install_fill_in_handler() -> None:
    """Routes NotImplementedError to `fill_in_handler` in IPython/Jupyter, or to `fill_in_excepthook`.

    In a notebook the cell still fails (so "Run all" stops at the exercise to write) but shows the
    fill-in line, not a traceback.
    """
    shell = _ipython()
    if shell is None:
        sys.excepthook = fill_in_excepthook
    else:
        shell.set_custom_exc((NotImplementedError,), fill_in_handler)


def _ipython():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


# ---------------------------------------------------------------------------------------------
# Figures and data


def show(figure) -> None:
    """Shows a matplotlib figure as a PNG in the notebook (or says so in a script), then closes it.

    `course.viz` draws with the Agg backend, so figures are rendered here rather than by the
    notebook's matplotlib integration; the notebook then holds plain PNG outputs.
    """
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    if _ipython() is not None:
        from IPython.display import Image, display

        display(Image(data=buffer.getvalue(), format="png"))
    else:
        title = figure._suptitle.get_text() if figure._suptitle is not None else "figure"
        print(f"[{title}: {len(buffer.getvalue())} bytes of PNG; run the lesson as a notebook to see it]")


def image_dataset(full_name: str, small_name: str, train_examples: int, test_examples: int):
    """The lesson's image data: `full_name` (real) with COURSE_LESSON_FULL=1, else a slice of `small_name`.

    Returns (name, (train images, train labels), (test images, test labels)); in the small setting
    the first `train_examples` and `test_examples` images of the synthetic set.
    """
    from course import data

    if full_data():
        return full_name, data.load(full_name, "train"), data.load(full_name, "test")
    train_images, train_labels = data.load(small_name, "train")
    test_images, test_labels = data.load(small_name, "test")
    return (small_name, (train_images[:train_examples], train_labels[:train_examples]),
            (test_images[:test_examples], test_labels[:test_examples]))


def table(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """A course table from $COURSE_DATA_DIR, or a synthetic stand-in of the same columns when absent.

    The tables are small, so they are used in both settings whenever they can be found; the
    stand-in keeps the lesson runnable on a machine without the course data.
    """
    from course import data

    try:
        return data.load(name, split)
    except data.DataError as error:
        print(f"({error}\n Using a synthetic stand-in for {name!r} instead.)")
        return synthetic_table(name, split)


def synthetic_table(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Random rows shaped like table `name` (see `course.data.TABLES`), with learnable labels."""
    rng = np.random.default_rng(["train", "test", "all"].index(split))
    count = {"diabetes": 614, "student_admissions": 360, "gradient_descent_points": 100}[name]
    count = count if split != "test" else count // 4
    if name == "gradient_descent_points":
        labels = rng.integers(0, 2, count)
        features = rng.normal(0.35 + 0.3 * labels[:, None], 0.1, (count, 2))
    elif name == "diabetes":
        features = np.abs(rng.normal([3, 120, 70, 20, 80, 32, 0.5, 33], [3, 30, 19, 16, 115, 8, 0.3, 12], (count, 8)))
        score = 0.035 * (features[:, 1] - 120) + 0.09 * (features[:, 5] - 32) + rng.normal(0, 1, count)
        labels = (score > 0.7).astype(np.int64)
    else:
        features = np.stack([rng.uniform(220, 800, count), rng.uniform(2.3, 4.0, count),
                             rng.integers(1, 5, count)], axis=1)
        score = 0.004 * (features[:, 0] - 580) + 1.2 * (features[:, 1] - 3.4) - 0.5 * (features[:, 2] - 2.5)
        labels = (score + rng.normal(0, 1, count) > 0.6).astype(np.int64)
    return features.astype(np.float32), labels.astype(np.int32)


def fit_model(recipe, train_data, test_data, *, epochs: int, dataset: str, model_name: str = "model",
              batch_size: int | None = None, learning_rate: float | None = None, seed: int = 0):
    """Trains `recipe`'s model with `course.train`'s loop on arrays the lesson holds; returns it and its history.

    Inputs:
    - train_data, test_data: (uint8 images (N, H, W, C), int labels (N,)).
    - epochs, batch_size, learning_rate: as `course train`'s options (defaults: the recipe's).

    Returns (the model in eval mode, one dict of metrics per epoch as `fit` returns).
    """
    with warnings.catch_warnings():  # tqdm's "IProgress not found" in notebooks: no progress bars here
        warnings.simplefilter("ignore")
        from course import runs, train

    settings = runs.RunSettings(model_name, dataset, epochs, batch_size or recipe.batch_size,
                              learning_rate or recipe.learning_rate, seed)
    model, history = train.train_on_arrays(recipe, settings, train_data, test_data, progress=False)
    for record in history:
        print(runs.format_record(record), flush=True)
    model.eval()
    return model, history
