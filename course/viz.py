"""Figures of the course, each a function returning a matplotlib Figure."""

import matplotlib

matplotlib.use("Agg")  # figures are written to files; no display needed

import matplotlib.pyplot as plt  # noqa: E402


def plot_history(history: list[dict]):
    """Loss and accuracy per epoch (train, and validation/test when recorded) from `course.train.fit`."""
    epochs = [record["epoch"] for record in history]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    for split in ("train", "validation", "test"):
        if history and f"{split}_loss" in history[0]:
            loss_axis.plot(epochs, [record[f"{split}_loss"] for record in history], marker="o", label=split)
            accuracy_axis.plot(epochs, [record[f"{split}_accuracy"] for record in history], marker="o", label=split)
    for axis, title in ((loss_axis, "loss"), (accuracy_axis, "accuracy")):
        axis.set_xlabel("epoch")
        axis.set_title(title)
        axis.grid(alpha=0.3)
        axis.legend()
    return figure
