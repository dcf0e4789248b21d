"""What every figure of the course shares: the Agg backend, `VizError`, `save`, showing an image.

The figures live in one module per topic, each figure a function returning a matplotlib Figure:

- `course.viz_layers`: what each layer of a model computes (no figures; the others read it).
- `course.viz_filters`: hand-made and learned filters, and the feature maps they produce.
- `course.viz_training`: the training curves and the LeNet-style training dashboard.
- `course.viz_predictions`: a model's predictions, its confusion matrix and per-class accuracy.

    figure = viz_filters.plot_feature_maps(image, viz_filters.layer_feature_maps(model, inputs, "c1"))
    viz.save(figure, "feature_maps.png")

Here too: the figure of an image's colour channels (`plot_channels`). Importing this module, as
every figure module does, selects matplotlib's Agg backend. `course viz ...` (`course/viz_cli.py`)
writes every figure as a PNG.
"""

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are written to files; no display needed

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

DPI = 100


class VizError(ValueError):
    """A figure cannot be drawn from what was given (an unknown layer, a wrong shape...)."""


def save(figure, path, dpi: int = DPI) -> Path:
    """Writes `figure` as a PNG of exactly figsize * dpi pixels to `path`, closes it, returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path


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
