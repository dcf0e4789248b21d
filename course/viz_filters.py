"""Figures of filters and the feature maps they produce: week 3's hand-made kernels with their
values, a trained model's first-layer filters, and one image's maps at a convolution layer.

    maps = viz_filters.layer_feature_maps(model, inputs, "c1")  # "conv", "tanh", "max-pool 2x2/2"
    figure = viz_filters.plot_feature_maps(image, maps, title="C1")

The maps are read by `course.viz_layers` (NNX's intermediate capture, then the model's own
activation and pooling).
"""

import math
from collections.abc import Sequence

import jax
import matplotlib.pyplot as plt
import numpy as np
from flax import nnx

from course import layers
from course.viz import VizError, show_image
from course.viz_layers import apply_stage, conv_layer_names, layer_outputs, model_stages

# ---------------------------------------------------------------------------------------------
# Reading a model: feature maps and first-layer filters


def filters_first(maps: jax.Array) -> np.ndarray:
    """Maps of one image (1, H, W, K) -> (K, H, W), one map per filter."""
    return np.transpose(np.asarray(maps[0]), (2, 0, 1))


def layer_feature_maps(model: nnx.Module, inputs: jax.Array, layer: str) -> dict[str, np.ndarray]:
    """The feature maps of one image at convolution layer `layer`: conv, activation and pooled.

    Inputs:
    - model: a course model (see `course.viz_layers.MODEL_STAGES`; other models give the conv maps only).
    - inputs: (1, H, W, C) one prepared model input.
    - layer: the name of a convolution layer, e.g. "conv1" or "c3".

    Returns an ordered dict title -> (K, H', W') maps, one per filter, filter first (see
    `course.viz_layers.apply_stage`).
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


# ---------------------------------------------------------------------------------------------
# Kernels as images


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
