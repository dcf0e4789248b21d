"""Figures of what a model predicts: its outputs read as class confidences, its predictions over
an image set, the confusion matrix and the accuracy of each class.

    outputs, predicted = viz_predictions.predict(model, recipe.prepare, test_images)
    matrix = viz_predictions.confusion_matrix(test_labels, predicted, num_classes=10)
    figure = viz_predictions.plot_confusion(matrix, class_names)

Right predictions are drawn in CORRECT_COLOR (green), wrong ones in WRONG_COLOR (red).
"""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from course import transforms
from course.viz import VizError, show_image
from course.viz_layers import evaluation_view

CORRECT_COLOR, WRONG_COLOR = "tab:green", "tab:red"

# How to read each model's outputs as class confidences (default: logits, through a softmax).
OUTPUT_KINDS = {"LeNet5": "tanh", "LeNet5ReLU": "log_probs"}
CONFIDENCE_TITLES = {"logits": "softmax(outputs)", "log_probs": "exp(outputs)", "tanh": "(outputs + 1) / 2"}


# ---------------------------------------------------------------------------------------------
# Predictions


def class_confidences(outputs: jax.Array, kind: str = "logits") -> np.ndarray:
    """Model outputs (..., C) -> confidences in [0, 1] per class.

    kind: "logits" (softmax), "log_probs" (exp), or "tanh" (outputs in (-1, 1) trained towards
    +1/-1, mapped linearly to (0, 1); they do not sum to 1).
    """
    outputs = jnp.asarray(outputs, jnp.float32)
    if kind == "logits":
        return np.asarray(jax.nn.softmax(outputs, axis=-1))
    if kind == "log_probs":
        return np.asarray(jnp.exp(outputs))
    if kind == "tanh":
        return np.asarray((outputs + 1.0) / 2.0)
    raise VizError(f"unknown output kind {kind!r}; valid kinds: logits, log_probs, tanh")


def output_kind(model: nnx.Module) -> str:
    """How `class_confidences` reads `model`'s outputs: "logits", "log_probs" or "tanh"."""
    return OUTPUT_KINDS.get(type(model).__name__, "logits")


def predict(model: nnx.Module, prepare, images: np.ndarray, batch_size: int = 500) -> tuple[np.ndarray, np.ndarray]:
    """The model's outputs and predicted classes over a whole image set.

    Inputs:
    - model: maps prepared batches to (N, C) outputs; used in eval mode (its own mode is kept).
    - prepare: maps a uint8 batch (N, H, W, C) to model inputs (a recipe's `prepare`), or None for [0, 1].
    - images: (N, H, W, C) uint8 images.

    Returns (outputs float32 (N, C), predictions int32 (N,): the argmax of each row).
    """
    prepare = prepare or transforms.to_unit_float
    forward = nnx.jit(lambda model, batch: model(prepare(batch)))
    view = evaluation_view(model)
    outputs = np.concatenate([np.asarray(forward(view, jnp.asarray(images[start:start + batch_size])))
                              for start in range(0, len(images), batch_size)])
    return outputs, outputs.argmax(axis=1).astype(np.int32)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (num_classes, num_classes): row = true class, column = predicted class."""
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(labels), np.asarray(predictions)), 1)
    return matrix


def per_class_accuracy(matrix: np.ndarray) -> np.ndarray:
    """Accuracy of each true class (num_classes,) from a confusion matrix; NaN for absent classes."""
    totals = matrix.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, np.diag(matrix) / totals, np.nan)


# ---------------------------------------------------------------------------------------------
# Figures


def plot_predictions(images: np.ndarray, labels: np.ndarray, predictions: np.ndarray,
                     class_names: Sequence[str] | None = None, columns: int = 10):
    """A grid of images titled "predicted (true)", green when right and red when wrong.

    Inputs: images (N, H, W, C) uint8 or float; labels, predictions (N,) class indices.
    """
    count = len(images)
    columns = min(columns, count)
    rows = math.ceil(count / columns)
    names = list(class_names) if class_names else [str(index) for index in range(int(max(labels.max(), predictions.max())) + 1)]
    long_names = max(map(len, names)) > 6
    figure, axes = plt.subplots(rows, columns, figsize=(columns * (1.45 if long_names else 1.1) + 0.2, rows * 1.35 + 0.8),
                                squeeze=False)
    correct = int(np.sum(np.asarray(labels) == np.asarray(predictions)))
    figure.suptitle(f"predicted (true): {correct} of {count} right")
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < count:
            right = predictions[index] == labels[index]
            show_image(axis, images[index], f"{names[predictions[index]]}\n({names[labels[index]]})",
                       color=CORRECT_COLOR if right else WRONG_COLOR, fontsize=8)
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.75 / figure.get_size_inches()[1],
                           wspace=0.1, hspace=0.55)
    return figure


def plot_confusion(matrix: np.ndarray, class_names: Sequence[str] | None = None):
    """A confusion matrix (true rows, predicted columns), each cell's count written in."""
    classes = len(matrix)
    names = list(class_names) if class_names else [str(index) for index in range(classes)]
    figure, axis = plt.subplots(figsize=(7.5, 6.5), layout="constrained")
    image = axis.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axis, shrink=0.8, label="images")
    threshold = matrix.max() / 2
    for (row, column), count in np.ndenumerate(matrix):
        axis.text(column, row, str(count), ha="center", va="center", fontsize=8,
                  color="white" if count > threshold else "black")
    axis.set_xticks(range(classes), names, rotation=45, ha="right")
    axis.set_yticks(range(classes), names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    total = int(matrix.sum())
    axis.set_title(f"confusion matrix: {int(np.trace(matrix))} of {total} right ({np.trace(matrix) / total:.1%})")
    return figure


def plot_class_accuracy(accuracies: np.ndarray, class_names: Sequence[str] | None = None,
                        overall: float | None = None):
    """Per-class accuracy bars (in %), each labelled, with the overall accuracy as a dashed line."""
    names = list(class_names) if class_names else [str(index) for index in range(len(accuracies))]
    figure, axis = plt.subplots(figsize=(8, 4.5), layout="constrained")
    percent = np.nan_to_num(np.asarray(accuracies) * 100)
    bars = axis.bar(range(len(names)), percent, color="tab:blue")
    axis.bar_label(bars, [f"{value:.0f}%" for value in percent], fontsize=8)
    if overall is not None:
        axis.axhline(overall * 100, color="tab:red", linestyle="--", label=f"overall {overall:.1%}")
        axis.legend(loc="upper right")
    axis.set_xticks(range(len(names)), names, rotation=45 if max(map(len, names)) > 3 else 0, ha="right" if max(map(len, names)) > 3 else "center")
    axis.set_ylim(0, 118)
    axis.set_ylabel("test accuracy (%)")
    axis.set_title("accuracy per class")
    return figure
