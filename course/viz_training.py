"""Figures of training: the per-epoch curves of `course.train.fit`, and the LeNet-style training
dashboard, redrawn during training by `DashboardWriter` (`course train --dashboard-every N`).

    figure = viz_training.plot_history(history)  # loss and accuracy per epoch
    train.fit(recipe, out_dir=run, callbacks=[viz_training.DashboardWriter(every=100, out=run)])

The dashboard puts on one page the loss and error curves, one input image with the model's class
confidences for it (`course.viz_predictions`), histograms of layer activations (`course.viz_layers`)
and the first-layer kernels (`course.viz_filters`).
"""

import json
from collections.abc import Sequence
from pathlib import Path

import jax
import matplotlib.pyplot as plt
import matplotlib.ticker
import numpy as np
from flax import nnx

from course.viz import VizError, save, show_image
from course.viz_filters import first_layer_filters, kernel_mosaic
from course.viz_layers import ACTIVATION_TITLES, ACTIVATIONS, forward_with_layers, model_stages
from course.viz_predictions import CONFIDENCE_TITLES, CORRECT_COLOR, WRONG_COLOR, class_confidences, output_kind

# The layers whose activations the training dashboard shows as histograms (LeNet's were C5 and F6).
HISTOGRAM_LAYERS = {"LeNet5": ("c5", "f6"), "LeNet5ReLU": ("c5", "f6"), "SimpleCNN": ("fc1", "fc2"),
                    "AlexNet": ("fc1", "fc2")}


# ---------------------------------------------------------------------------------------------
# Training curves


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


def smoothed(values: Sequence[float], weight: float = 0.9, centered: bool = False) -> np.ndarray:
    """Exponential moving average: s[0] = v[0], s[t] = weight * s[t-1] + (1 - weight) * v[t].

    It lags: on a steady trend it trails by weight / (1 - weight) steps (9 for 0.9). `centered` runs
    it forwards and then backwards over the result, which cancels the lag (a zero-phase filter):
    what a finished curve is drawn with."""
    values = np.asarray(values, np.float64)
    result = np.empty_like(values)
    for index, value in enumerate(values):
        result[index] = value if index == 0 else weight * result[index - 1] + (1 - weight) * value
    return smoothed(result[::-1], weight)[::-1] if centered else result


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
    axis.plot(x_values, smoothed(values, centered=True), color="tab:blue", linewidth=1.8, label="smoothed")
    axis.plot(x_values, running_average(values), color="tab:orange", linestyle="--", label="running average")
    axis.set_title(title)
    axis.set_xlabel(x_label)
    if len(values) <= 10:
        axis.set_xticks(x_values)
    else:
        axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, loc="upper right")


# ---------------------------------------------------------------------------------------------
# The training dashboard


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
      its activation when `course.viz_layers.MODEL_STAGES` knows it.
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
