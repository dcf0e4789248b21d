"""Figures of the course, each a function returning a matplotlib Figure.

    figure = viz.plot_feature_maps(image, viz.layer_feature_maps(model, inputs, "c1"))
    viz.save(figure, "feature_maps.png")

What a trained model computes is read with NNX's intermediate capture (`nnx.capture` with
`method_outputs=nnx.Intermediate`), which records the output of every sub-layer's `__call__`
during one ordinary forward pass. A convolution layer's module returns its pre-activation output;
the activation and pooling that follow it live in the model's own `__call__`, so `MODEL_STAGES`
names them for each course model and `layer_feature_maps` applies the same functions
(`nnx.relu`, `jnp.tanh`, `course.layers.max_pool`) to the captured output.
`tests/test_viz.py` checks that table against the models: a stage's output, fed to the next
layer, gives that layer's captured output.

`course viz ...` (`course/viz_cli.py`) writes every figure here as a PNG.
"""

import dataclasses
import json
import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are written to files; no display needed

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from course import layers, transforms  # noqa: E402

DPI = 100
CORRECT_COLOR, WRONG_COLOR = "tab:green", "tab:red"


class VizError(ValueError):
    """A figure cannot be drawn from what was given (an unknown layer, a wrong shape...)."""


def save(figure, path, dpi: int = DPI) -> Path:
    """Writes `figure` as a PNG of exactly figsize * dpi pixels to `path`, closes it, returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path


def plot_history(history: list[dict]):
    """Loss and accuracy per epoch (train, and validation/test when recorded) from `course.train.fit`."""
    epochs = [record["epoch"] for record in history]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    labels = {"train": "train", "validation": "validation (chooses the best checkpoint)",
              "test": "test (not used for selection)"}
    for split, label in labels.items():
        if history and f"{split}_loss" in history[0]:
            loss_axis.plot(epochs, [record[f"{split}_loss"] for record in history], marker="o", label=label)
            accuracy_axis.plot(epochs, [record[f"{split}_accuracy"] for record in history], marker="o", label=label)
    for axis, title in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend()
    return figure


# ---------------------------------------------------------------------------------------------
# What follows each layer of the course's models


@dataclasses.dataclass(frozen=True)
class Stage:
    """What a model's `__call__` applies to a layer's output: an activation, then maybe a max-pool."""

    activation: str | None = None  # a key of ACTIVATIONS
    pool: tuple[int, int] | None = None  # (window, stride) of course.layers.max_pool


ACTIVATIONS = {"relu": nnx.relu, "tanh": jnp.tanh}
ACTIVATION_TITLES = {"relu": "ReLU", "tanh": "tanh"}
RELU_POOL2, TANH_POOL2, RELU, TANH = Stage("relu", (2, 2)), Stage("tanh", (2, 2)), Stage("relu"), Stage("tanh")

# Keyed by class name, so that a student's model of the same name (exercises/) is read the same way.
MODEL_STAGES = {
    "SimpleCNN": {"conv1": RELU_POOL2, "conv2": RELU_POOL2, "fc1": RELU, "fc2": RELU},
    "LeNet5": {"c1": TANH_POOL2, "c3": TANH_POOL2, "c5": TANH, "f6": TANH, "output": TANH},
    "LeNet5ReLU": {"c1": RELU_POOL2, "c3": RELU_POOL2, "c5": RELU, "f6": RELU},
    "AlexNet": {"c1": Stage("relu", (3, 2)), "c2": Stage("relu", (3, 2)), "c3": RELU, "c4": RELU,
                "c5": Stage("relu", (3, 2)), "fc1": RELU, "fc2": RELU},
}
# How to read each model's outputs as class confidences (default: logits, through a softmax).
OUTPUT_KINDS = {"LeNet5": "tanh", "LeNet5ReLU": "log_probs"}
CONFIDENCE_TITLES = {"logits": "softmax(outputs)", "log_probs": "exp(outputs)", "tanh": "(outputs + 1) / 2"}
# The layers whose activations the training dashboard shows as histograms (LeNet's were C5 and F6).
HISTOGRAM_LAYERS = {"LeNet5": ("c5", "f6"), "LeNet5ReLU": ("c5", "f6"), "SimpleCNN": ("fc1", "fc2"),
                    "AlexNet": ("fc1", "fc2")}


def model_stages(model: nnx.Module) -> dict[str, Stage]:
    """The `Stage` after each layer of `model`, by layer name ({} for a model not in MODEL_STAGES)."""
    return MODEL_STAGES.get(type(model).__name__, {})


def apply_stage(outputs: jax.Array, stage: Stage | None) -> dict[str, jax.Array]:
    """A layer's outputs, its activation and its pooled activation, as the model computes them.

    Inputs:
    - outputs: (N, H, W, C) or (N, F) outputs of one layer.
    - stage: what the model applies next, or None when unknown.

    Returns an ordered dict title -> array: "conv" (or "output" for 2-D outputs), then "ReLU" or
    "tanh" when the stage has an activation, then "max-pool WxW/S" when it pools.
    """
    stages = {"conv" if outputs.ndim == 4 else "output": outputs}
    if stage is not None and stage.activation:
        outputs = ACTIVATIONS[stage.activation](outputs)
        stages[ACTIVATION_TITLES[stage.activation]] = outputs
    if stage is not None and stage.pool:
        window, stride = stage.pool
        stages[f"max-pool {window}x{window}/{stride}"] = layers.max_pool(outputs, window, stride)
    return stages


# ---------------------------------------------------------------------------------------------
# Reading a model: intermediate outputs, first-layer kernels, predictions


def evaluation_view(model: nnx.Module) -> nnx.Module:
    """A copy of `model` in eval mode (no dropout) sharing its weights; `model` keeps its own mode."""
    view = nnx.clone(model)
    view.eval()
    return view


def layer_names(model: nnx.Module) -> list[str]:
    """Names of `model`'s sub-layers in definition order, nested ones as "block.conv"."""
    return [".".join(map(str, path)) for path, _ in nnx.iter_modules(model) if path]


def forward_with_layers(model: nnx.Module, inputs: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """One forward pass of `model` (in eval mode) on `inputs`, every sub-layer's output captured.

    Inputs:
    - model: an nnx.Module; its own mode (train/eval) is left as it was.
    - inputs: (N, ...) a batch of model inputs (already prepared).

    Returns (the model's outputs (N, ...), a dict layer name -> that layer's output (N, ...)) with
    the layers in definition order (see `layer_names`); a layer called twice keeps its first output.
    """
    forward = nnx.capture(evaluation_view(model), nnx.Intermediate, method_outputs=nnx.Intermediate)
    outputs, captured = forward(inputs)
    by_name = {".".join(map(str, path[:-1])): variable.get_value()[0]
               for path, variable in nnx.to_flat_state(captured) if len(path) > 1 and path[-1] == "__call__"}
    return outputs, {name: by_name[name] for name in layer_names(model) if name in by_name}


def layer_outputs(model: nnx.Module, inputs: jax.Array) -> dict[str, jax.Array]:
    """The output of every sub-layer of `model` on `inputs`, by name (see `forward_with_layers`)."""
    return forward_with_layers(model, inputs)[1]


def conv_layer_names(outputs: dict[str, jax.Array]) -> list[str]:
    """The names among `layer_outputs(...)` whose outputs are feature maps (N, H, W, C)."""
    return [name for name, value in outputs.items() if value.ndim == 4]


def filters_first(maps: jax.Array) -> np.ndarray:
    """Maps of one image (1, H, W, K) -> (K, H, W), one map per filter."""
    return np.transpose(np.asarray(maps[0]), (2, 0, 1))


def layer_feature_maps(model: nnx.Module, inputs: jax.Array, layer: str) -> dict[str, np.ndarray]:
    """The feature maps of one image at convolution layer `layer`: conv, activation and pooled.

    Inputs:
    - model: a course model (see MODEL_STAGES; other models give the conv maps only).
    - inputs: (1, H, W, C) one prepared model input.
    - layer: the name of a convolution layer, e.g. "conv1" or "c3".

    Returns an ordered dict title -> (K, H', W') maps, one per filter, filter first (see `apply_stage`).
    Raises VizError naming the valid layers when `layer` is not a convolution layer of `model`.
    """
    outputs = layer_outputs(model, inputs[:1])
    valid = conv_layer_names(outputs)
    if layer not in valid:
        raise VizError(f"{type(model).__name__} has no convolution layer {layer!r}; valid layers: {', '.join(valid)}")
    stages = apply_stage(outputs[layer], model_stages(model).get(layer))
    return {title: filters_first(maps) for title, maps in stages.items()}


def first_conv_kernels(model: nnx.Module) -> tuple[str, np.ndarray]:
    """The name and the kernels (KH, KW, C_in, C_out), HWIO, of `model`'s first `nnx.Conv` layer
    (the first defined: `course.layers.sublayers`, whatever the layers are named or held in)."""
    for path, module in layers.sublayers(model):
        if isinstance(module, nnx.Conv):
            return path.replace("/", "."), np.asarray(module.kernel.get_value())
    raise VizError(f"{type(model).__name__} has no convolution layer (nnx.Conv)")


def first_layer_filters(model: nnx.Module, image_shape: tuple[int, int, int]) -> tuple[str, np.ndarray]:
    """The name and the filters (KH, KW, C_in, C_out) of `model`'s first layer with weights: a
    convolution's kernels, or, for a first `nnx.Linear` on the flattened image (an MLP), its weights
    (H * W * C, units) as one image-sized filter per unit, (H, W, C, units)."""
    for path, module in layers.sublayers(model):
        if isinstance(module, nnx.Conv):
            return path.replace("/", "."), np.asarray(module.kernel.get_value())
        if isinstance(module, nnx.Linear):
            weights = np.asarray(module.kernel.get_value())
            if weights.shape[0] != math.prod(image_shape):
                raise VizError(f"the first layer {path.replace('/', '.')} takes {weights.shape[0]} inputs, not an "
                               f"image of {image_shape[0]}x{image_shape[1]}x{image_shape[2]}")
            return path.replace("/", "."), weights.reshape(*image_shape, weights.shape[1])
    raise VizError(f"{type(model).__name__} has no convolution (nnx.Conv) or dense (nnx.Linear) layer")


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
# Images for display


def display_image(image: np.ndarray) -> np.ndarray:
    """An image (H, W, C) or (H, W) of any range -> float in [0, 1] for imshow, (H, W) when C is 1.

    uint8 images are divided by 255; float images are min-max scaled (a constant one becomes 0.5).
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.dtype == np.uint8:
        return image / 255.0
    low, high = float(image.min()), float(image.max())
    return (image - low) / (high - low) if high > low else np.full(image.shape, 0.5)


def show_image(axis, image: np.ndarray, title: str | None = None, **title_options) -> None:
    """Draws `image` (see `display_image`) on `axis` without ticks; grayscale for one channel."""
    shown = display_image(image)
    axis.imshow(shown, cmap="gray" if shown.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    axis.set_xticks([])
    axis.set_yticks([])
    if title:
        axis.set_title(title, **title_options)


def kernel_mosaic(kernels: np.ndarray, columns: int | None = None, gap: int = 1) -> np.ndarray:
    """Learned kernels HWIO (KH, KW, C_in, K) -> one image tiling them, each min-max scaled to [0, 1].

    Kernels with 3 input channels are shown as colour, others as the mean over input channels.
    Returns (rows * (KH + gap) - gap, columns * (KW + gap) - gap[, 3]), gaps filled with 1 (white).
    """
    tiles = kernel_images(kernels)
    count, height, width = tiles.shape[:3]
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    mosaic = np.ones((rows * (height + gap) - gap, columns * (width + gap) - gap) + tiles.shape[3:])
    for index, tile in enumerate(tiles):
        row, column = divmod(index, columns)
        mosaic[row * (height + gap):row * (height + gap) + height,
               column * (width + gap):column * (width + gap) + width] = tile
    return mosaic


def kernel_images(kernels: np.ndarray) -> np.ndarray:
    """HWIO kernels (KH, KW, C_in, K) -> (K, KH, KW, 3) colour or (K, KH, KW) gray, each scaled to [0, 1]."""
    kernels = np.asarray(kernels, np.float32)
    if kernels.ndim != 4:
        raise VizError(f"kernels must have shape (KH, KW, C_in, C_out) (HWIO), got shape {kernels.shape}")
    tiles = np.moveaxis(kernels, 3, 0)  # (K, KH, KW, C_in)
    tiles = tiles if tiles.shape[-1] == 3 else tiles.mean(axis=-1)
    low = tiles.min(axis=tuple(range(1, tiles.ndim)), keepdims=True)
    high = tiles.max(axis=tuple(range(1, tiles.ndim)), keepdims=True)
    return (tiles - low) / np.where(high > low, high - low, 1.0)


# ---------------------------------------------------------------------------------------------
# Filters


def plot_kernels(kernels: Sequence[np.ndarray], titles: Sequence[str] | None = None, value_format: str = "{:g}"):
    """Hand-made kernels (each (KH, KW), sizes may differ) side by side, each cell's value written in.

    Cells are gray from the most negative (black) to the most positive (white) value of all kernels;
    the written value is black on light cells and white on dark ones.
    """
    kernels = [np.asarray(kernel, np.float32) for kernel in kernels]
    titles = list(titles) if titles is not None else [f"filter {index + 1}" for index in range(len(kernels))]
    limit = max(float(np.abs(kernel).max()) for kernel in kernels) or 1.0
    largest = max(max(kernel.shape) for kernel in kernels)
    cell = min(0.6, 2.4 / largest)  # inches per cell: 4x4 kernels get 0.6 in, larger ones less
    figure, axes = plt.subplots(1, len(kernels), figsize=(len(kernels) * (largest * cell + 0.3) + 0.2,
                                                           largest * cell + 0.7), squeeze=False)
    for axis, kernel, title in zip(axes[0], kernels, titles):
        axis.imshow(kernel, cmap="gray", vmin=-limit, vmax=limit)
        for (row, column), value in np.ndenumerate(kernel):
            axis.text(column, row, value_format.format(value), ha="center", va="center",
                      fontsize=max(7, 12 - largest // 2), color="black" if value > 0 else "white")
        axis.set_title(title)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.03, top=1 - 0.45 / figure.get_size_inches()[1],
                           wspace=0.15)
    return figure


def plot_learned_filters(kernels: np.ndarray, title: str = "first-layer filters", max_filters: int = 96):
    """Learned kernels HWIO (KH, KW, C_in, K) as a grid, each filter min-max scaled for display.

    Three input channels are shown as colour; any other count as the mean over input channels.
    At most `max_filters` filters are drawn (the first ones).
    """
    tiles = kernel_images(kernels)[:max_filters]
    count = len(tiles)
    columns = min(count, 12 if count > 32 else 8)
    rows = math.ceil(count / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(columns * 0.9 + 0.2, rows * 0.95 + 0.6), squeeze=False)
    shown = kernels.shape[3] if count == kernels.shape[3] else f"first {count} of {kernels.shape[3]}"
    how = "colour" if kernels.shape[2] == 3 else ("gray" if kernels.shape[2] == 1 else "mean over inputs")
    figure.suptitle(f"{title}: {shown} filters {kernels.shape[0]}x{kernels.shape[1]} ({how}, each scaled)")
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < count:
            axis.imshow(tiles[index], cmap="gray" if tiles.ndim == 3 else None, vmin=0, vmax=1,
                        interpolation="nearest")
            axis.set_title(str(index + 1), fontsize=8, pad=2)
    figure.subplots_adjust(left=0.02, right=0.98, bottom=0.02, top=1 - 0.5 / figure.get_size_inches()[1],
                           wspace=0.1, hspace=0.3)
    return figure


# ---------------------------------------------------------------------------------------------
# Feature maps


def plot_feature_maps(image: np.ndarray, maps: dict[str, np.ndarray], title: str = "", max_filters: int = 32,
                      rows_per_group: int = 8):
    """One image's feature maps, stages side by side for each filter (as the original notebook showed).

    Inputs:
    - image: (H, W[, C]) the input, shown on the left.
    - maps: ordered dict stage title -> (K, H', W') maps, e.g. from `layer_feature_maps` or
      `solutions.week3_convolutions.feature_maps`. Every stage must have the same K.
    - max_filters: at most this many filters are drawn (the first ones).

    Each map has its own gray scale, black at its lowest value and white at its highest (an
    all-zero map is black). Filters are stacked in up to `rows_per_group` rows, groups side by side.
    """
    titles = list(maps)
    counts = {len(stage_maps) for stage_maps in maps.values()}
    if len(counts) != 1:
        raise VizError(f"every stage needs the same number of maps, got { {t: len(m) for t, m in maps.items()} }")
    total = counts.pop()
    count = min(total, max_filters)
    groups = math.ceil(count / rows_per_group)
    rows = math.ceil(count / groups)
    stages = len(titles)
    cell = 1.7 if rows <= 4 else 1.35
    width_ratios = [1.6] + ([0.15] + [1] * stages) * groups
    figure = plt.figure(figsize=(cell * sum(width_ratios) + 0.3, cell * max(rows, 2) + 0.7))
    grid = figure.add_gridspec(max(rows, 2), len(width_ratios), width_ratios=width_ratios, left=0.02,
                               right=0.99, bottom=0.02, top=1 - 0.7 / figure.get_size_inches()[1],
                               wspace=0.08, hspace=0.25)
    show_image(figure.add_subplot(grid[0:2, 0]), image, "input")
    shown = f"{total}" if count == total else f"first {count} of {total}"
    figure.suptitle(f"{title} ({shown} filters)" if title else f"{shown} filters")
    for index in range(count):
        group, row = divmod(index, rows)
        for stage_index, stage in enumerate(titles):
            value = np.asarray(maps[stage][index])
            low, high = float(value.min()), float(value.max())
            axis = figure.add_subplot(grid[row, 2 + group * (stages + 1) + stage_index])
            axis.imshow(value, cmap="gray", vmin=low, vmax=high if high > low else low + 1, interpolation="nearest")
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(stage, fontsize=10)
            if stage_index == 0:
                axis.set_ylabel(f"filter {index + 1}", fontsize=9)
    return figure


# ---------------------------------------------------------------------------------------------
# The training dashboard


def smoothed(values: Sequence[float], weight: float = 0.9) -> np.ndarray:
    """Exponential moving average: s[0] = v[0], s[t] = weight * s[t-1] + (1 - weight) * v[t]."""
    values = np.asarray(values, np.float64)
    result = np.empty_like(values)
    for index, value in enumerate(values):
        result[index] = value if index == 0 else weight * result[index - 1] + (1 - weight) * value
    return result


def running_average(values: Sequence[float]) -> np.ndarray:
    """Mean of the values so far: r[t] = mean(v[0..t])."""
    values = np.asarray(values, np.float64)
    return np.cumsum(values) / np.arange(1, len(values) + 1)


def plot_curve(axis, values: Sequence[float], title: str, x_label: str, x_values=None) -> None:
    """Raw values, their exponential moving average and their running average on `axis`."""
    values = np.asarray(values, np.float64)
    x_values = np.arange(1, len(values) + 1) if x_values is None else np.asarray(x_values)
    marker = "o" if len(values) <= 20 else None
    axis.plot(x_values, values, color="tab:blue", alpha=0.35, linewidth=0.8, marker=marker, label="raw")
    axis.plot(x_values, smoothed(values), color="tab:blue", linewidth=1.8, label="smoothed")
    axis.plot(x_values, running_average(values), color="tab:orange", linestyle="--", label="running average")
    axis.set_title(title)
    axis.set_xlabel(x_label)
    if len(values) <= 10:
        axis.set_xticks(x_values)
    else:
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="upper right")


def histogram_layers(model: nnx.Module, outputs: dict[str, jax.Array]) -> list[str]:
    """The dashboard's default histogram layers: HISTOGRAM_LAYERS, else the last two hidden 2-D outputs."""
    named = HISTOGRAM_LAYERS.get(type(model).__name__)
    if named:
        return list(named)
    flat = [name for name, value in outputs.items() if value.ndim == 2]
    return flat[-3:-1]


def plot_dashboard(losses: Sequence[float], errors: Sequence[float], model: nnx.Module, inputs: jax.Array,
                   labels: np.ndarray | None = None, *, layers: Sequence[str] | None = None,
                   class_names: Sequence[str] | None = None, step: int | None = None, x_label: str = "step",
                   x_values: Sequence[int] | None = None):
    """The LeNet-style training dashboard.

    Panels: loss and error curves (raw, smoothed, running average); the input image of example 0
    of `inputs` and the model's class confidences for it (true class in green, a wrong prediction
    in red); histograms of the activations of `layers` over the batch; the first-layer kernels.

    Inputs:
    - losses, errors: (T,) one value per recorded step (error = 1 - accuracy).
    - model: the model being trained (drawn in eval mode; its own mode is kept).
    - inputs: (N, H, W, C) a prepared batch; example 0 is the one shown.
    - labels: (N,) true labels of `inputs`, or None.
    - layers: layer names for the histograms (default: `histogram_layers`); each is shown after
      its activation when MODEL_STAGES knows it.
    - step: the training step, shown in the title; x_label, x_values: the curves' x axis
      (default 1..T steps).
    """
    final_outputs, outputs = forward_with_layers(model, inputs)
    layers = list(layers) if layers is not None else histogram_layers(model, outputs)
    unknown = [name for name in layers if name not in outputs]
    if unknown:
        raise VizError(f"{type(model).__name__} has no layer {', '.join(map(repr, unknown))}; "
                       f"valid layers: {', '.join(outputs)}")
    figure = plt.figure(figsize=(13, 7.5))
    grid = figure.add_gridspec(2, 4, left=0.05, right=0.98, bottom=0.08, top=0.9, wspace=0.3, hspace=0.38)
    plot_curve(figure.add_subplot(grid[0, 0:2]), losses, "loss", x_label, x_values)
    plot_curve(figure.add_subplot(grid[0, 2:4]), errors, "error (1 - accuracy)", x_label, x_values)

    label = None if labels is None else int(np.asarray(labels)[0])
    names = list(class_names) if class_names else None
    label_text = "" if label is None else f": {names[label] if names else label}"
    show_image(figure.add_subplot(grid[1, 0]), np.asarray(inputs[0]), f"input{label_text}")

    kind = output_kind(model)
    confidences = class_confidences(final_outputs[0], kind)
    axis = figure.add_subplot(grid[1, 1])
    predicted = int(np.argmax(confidences))
    colors = ["lightgray"] * len(confidences)
    colors[predicted] = CORRECT_COLOR if predicted == label else (WRONG_COLOR if label is not None else "tab:blue")
    if label is not None and label != predicted:
        colors[label] = CORRECT_COLOR
    axis.barh(range(len(confidences)), confidences, color=colors)
    for index, name in enumerate(names or range(len(confidences))):
        axis.text(0.02, index, str(name), va="center", fontsize=8)  # inside the plot: long names fit
    axis.set_xlim(0, 1)
    axis.set_yticks([])
    axis.invert_yaxis()
    axis.set_title(f"confidences: {CONFIDENCE_TITLES[kind]}", fontsize=10)

    axis = figure.add_subplot(grid[1, 2])
    stages = model_stages(model)
    for name in layers:
        activation = stages[name].activation if name in stages else None
        values = ACTIVATIONS[activation](outputs[name]) if activation else outputs[name]
        axis.hist(np.asarray(values).ravel(), bins=40, alpha=0.55, density=True,
                  label=f"{name} ({ACTIVATION_TITLES[activation] if activation else 'output'})")
    axis.set_title(f"activations over {len(inputs)} images")
    axis.set_ylabel("density")
    axis.legend(fontsize=8)

    kernel_layer, kernels = first_layer_filters(model, tuple(inputs.shape[1:]))
    axis = figure.add_subplot(grid[1, 3])
    mosaic = kernel_mosaic(kernels)
    axis.imshow(mosaic, cmap="gray" if mosaic.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    axis.set_title(f"{kernel_layer} kernels (each scaled)")
    axis.axis("off")
    figure.suptitle(f"{type(model).__name__}" + ("" if step is None else f", step {step}"), fontsize=14)
    return figure


class DashboardWriter:
    """Writes the training dashboard to `out/dashboard.png` every `every` steps and at the end.

    The training loop calls `on_step(step, metrics, model, images, labels)` after every train
    step and `finish(model, images, labels)` once training ends. Metrics stay on the device until a
    dashboard is drawn, so the loop is not slowed by a sync each step. Each write also saves the
    recorded per-step losses and errors to `out/dashboard_steps.json`, which `course viz dashboard`
    reads back.
    """

    def __init__(self, every: int, out, *, layers: Sequence[str] | None = None,
                 class_names: Sequence[str] | None = None, dpi: int = 80):
        if every < 1:
            raise ValueError(f"DashboardWriter: every must be a positive number of steps, got {every}")
        self.every, self.out, self.layers, self.class_names, self.dpi = every, Path(out), layers, class_names, dpi
        self.steps: list[int] = []
        self.losses: list[float] = []
        self.errors: list[float] = []
        self.pending: list[tuple[int, dict]] = []

    def on_step(self, step: int, metrics: dict, model: nnx.Module, images: jax.Array, labels: jax.Array) -> None:
        """Records step `step`'s (0-based, counted over all epochs) metrics {"loss", "accuracy"}.

        `images` and `labels` are the step's prepared input batch (N, H, W, C) and labels (N,).
        Writes the dashboard when `step + 1` is a multiple of `every`.
        """
        self.pending.append((step, metrics))
        if (step + 1) % self.every == 0:
            self.write(model, images, labels)

    def finish(self, model: nnx.Module, images: jax.Array, labels: jax.Array) -> Path:
        """Writes the final dashboard; returns its path."""
        return self.write(model, images, labels)

    def write(self, model: nnx.Module, images: jax.Array, labels: jax.Array) -> Path:
        """Draws the dashboard from everything recorded so far; returns the PNG's path."""
        for step, metrics in jax.device_get(self.pending):
            self.steps.append(int(step) + 1)
            self.losses.append(float(metrics["loss"]))
            self.errors.append(1.0 - float(metrics["accuracy"]))
        self.pending = []
        figure = plot_dashboard(self.losses, self.errors, model, images, np.asarray(labels), layers=self.layers,
                                class_names=self.class_names, step=self.steps[-1] if self.steps else None,
                                x_values=self.steps)
        path = save(figure, self.out / "dashboard.png", dpi=self.dpi)
        (self.out / "dashboard_steps.json").write_text(
            json.dumps({"steps": self.steps, "losses": self.losses, "errors": self.errors}))
        return path


# ---------------------------------------------------------------------------------------------
# Results


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


def plot_channels(image: np.ndarray, title: str = ""):
    """An image's colour channels side by side, in their colour, with each pixel's value written in.

    Inputs: image (H, W, C) uint8, C = 1 or 3. Meant for small images (CIFAR-10's 32x32).
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise VizError(f"plot_channels: image must have shape (H, W, 1) or (H, W, 3), got shape {image.shape}")
    height, width, channels = image.shape
    names, colormaps = (["gray"], ["gray"]) if channels == 1 else (["red", "green", "blue"], ["Reds", "Greens", "Blues"])
    cell = 0.3
    figure, axes = plt.subplots(1, channels + 1, figsize=((channels + 0.5) * (width * cell + 0.2) + 0.2, height * cell + 0.8),
                                squeeze=False, width_ratios=[0.5] + [1] * channels)
    show_image(axes[0, 0], image, "image", fontsize=14)
    for channel, axis in enumerate(axes[0, 1:]):
        values = image[..., channel]
        axis.imshow(values, cmap=colormaps[channel], vmin=0, vmax=255)
        for (row, column), value in np.ndenumerate(values):
            axis.text(column, row, str(int(value)), ha="center", va="center", fontsize=5.5,
                      color="white" if value > 150 else "black")
        axis.set_title(f"{names[channel]} channel", fontsize=14)
        axis.set_xticks([])
        axis.set_yticks([])
    if title:
        figure.suptitle(title, fontsize=14)
    figure.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=1 - 0.7 / figure.get_size_inches()[1], wspace=0.05)
    return figure
