"""Time to accuracy on this machine's CPU: `course train` against the same network and recipe in PyTorch.

    COURSE_DATA_DIR=../shared/data python benchmarks/time_to_accuracy.py [--models lenet5 simple_cnn] [--repeats 1]

For each model, alternating the two frameworks (JAX first in odd repeats, PyTorch first in even
ones), each run is a fresh process: `python -m course train MODEL` with the week's recipe, and a
PyTorch process (this file, `--worker`) training the original network (`tests/torch_models.py`)
with the same recipe: the same data and validation split, batch size, epochs, optimizer (Adam),
learning-rate schedule (the recipe's optax schedule, evaluated here and set step by step),
augmentation (zero padding, random crop, left-right flip, after normalisation) and loss, and an
evaluation of the validation and test sets after every epoch. Each framework keeps its own weight
initialisation and its default threads.

The clock starts when the process is started: start-up, data loading and compilation count. The
time of each epoch is when its line reaches this process. The table gives the time at which the test
accuracy first reached the target, that epoch, the final accuracy, JAX/PyTorch, and the load average
(1 minute) before each run. Needs PyTorch: `pip install torch==2.13.0` (the `torch` extra).
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"lenet5": 0.990, "simple_cnn": 0.72, "lenet5_relu": 0.990}
EPOCH_LINE = re.compile(r"^epoch (\d+) \|.*test acc ([\d.]+)%")


# ---------------------------------------------------------------------------------------------
# The PyTorch side (run as a fresh process: `--worker MODEL SPEC.json`)


def torch_worker(model_name: str, spec_path: str) -> None:
    """Trains the PyTorch network by the spec the parent wrote; prints one JSON line per epoch."""
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(REPO))
    from course import batching, data
    from tests import torch_models

    spec = json.loads(Path(spec_path).read_text())
    learning_rates = np.load(spec["learning_rates"])
    torch.manual_seed(spec["seed"])
    network = {"lenet5": torch_models.LeNet5, "lenet5_relu": torch_models.LeNet5ReLU,
               "simple_cnn": torch_models.SimpleCNN}[model_name]()
    optimizer = torch.optim.Adam(network.parameters(), lr=float(learning_rates[0]))

    def prepared(images: np.ndarray) -> torch.Tensor:
        batch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous().float() / 255.0
        if spec["pad_to"]:
            margin = (spec["pad_to"] - batch.shape[-1]) // 2
            batch = F.pad(batch, (margin, margin, margin, margin))
        return (batch - spec["mean"]) / spec["std"]

    def augmented(batch: torch.Tensor) -> torch.Tensor:
        padding, (count, _, height, width) = spec["crop_padding"], batch.shape
        padded = F.pad(batch, (padding,) * 4)
        top = torch.randint(0, 2 * padding + 1, (count, 1, 1))
        left = torch.randint(0, 2 * padding + 1, (count, 1, 1))
        rows = top + torch.arange(height).view(1, height, 1)
        columns = left + torch.arange(width).view(1, 1, width)
        flip = torch.rand(count, 1, 1) < 0.5
        columns = torch.where(flip, left + (width - 1 - torch.arange(width)).view(1, 1, width), columns)
        index = torch.arange(count).view(count, 1, 1)
        return padded.permute(0, 2, 3, 1)[index, rows, columns].permute(0, 3, 1, 2).contiguous()

    def loss_of(outputs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if spec["loss"] == "mse_pm1":
            return F.mse_loss(outputs, 2.0 * F.one_hot(labels, outputs.shape[-1]).float() - 1.0)
        if spec["loss"] == "nll":
            return F.nll_loss(outputs, labels)
        return F.cross_entropy(outputs, labels)

    def accuracy(images: np.ndarray, labels: np.ndarray) -> float:
        network.eval()
        correct = 0
        with torch.no_grad():
            for start in range(0, len(labels), 1000):
                outputs = network(prepared(images[start:start + 1000]))
                correct += int((outputs.argmax(1) == torch.from_numpy(labels[start:start + 1000]).long()).sum())
        return correct / len(labels)

    train_images, train_labels = data.load(spec["dataset"], "train")
    test_images, test_labels = data.load(spec["dataset"], "test")
    validation = None
    if spec["validation_fraction"]:
        kept, held_out = batching.holdout_split(len(train_labels), spec["validation_fraction"], spec["seed"])
        validation = (train_images[held_out], train_labels[held_out])
        train_images, train_labels = train_images[kept], train_labels[kept]
    step = 0
    for epoch in range(spec["epochs"]):
        network.train()
        for indices in batching.batch_indices(len(train_labels), spec["batch_size"], seed=spec["seed"], epoch=epoch,
                                              drop_last=True):
            for group in optimizer.param_groups:
                group["lr"] = float(learning_rates[min(step, len(learning_rates) - 1)])
            inputs = prepared(train_images[indices])
            if spec["crop_padding"]:
                inputs = augmented(inputs)
            loss = loss_of(network(inputs), torch.from_numpy(train_labels[indices]).long())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        record = {"epoch": epoch + 1, "test_accuracy": accuracy(test_images, test_labels)}
        if validation is not None:
            record["validation_accuracy"] = accuracy(*validation)
        print(json.dumps(record), flush=True)


# ---------------------------------------------------------------------------------------------
# The race


def torch_spec(model_name: str, folder: Path) -> Path:
    """The recipe of `model_name` as the PyTorch worker reads it, written into `folder`."""
    sys.path.insert(0, str(REPO))
    from course import data, registry, train

    recipe = registry.recipes()[model_name]
    height = data.IMAGE_DATASETS[recipe.dataset][0]
    train_count = {"mnist": 60000, "cifar10": 50000}[recipe.dataset]
    kept = train_count - int(round(recipe.validation_fraction * train_count))
    steps_per_epoch = kept // recipe.batch_size
    total = recipe.epochs * steps_per_epoch
    schedule = train.learning_rate_schedule(recipe, recipe.learning_rate, total, steps_per_epoch)
    rates = np.array([float(schedule(step)) if callable(schedule) else schedule for step in range(total)], np.float64)
    np.save(folder / "learning_rates.npy", rates)
    mnist = recipe.dataset == "mnist"
    spec = {"dataset": recipe.dataset, "epochs": recipe.epochs, "batch_size": recipe.batch_size, "seed": 0,
            "validation_fraction": recipe.validation_fraction, "learning_rates": str(folder / "learning_rates.npy"),
            "pad_to": 32 if mnist and height == 28 else 0, "mean": 0.0 if mnist else 0.5, "std": 1.0 if mnist else 0.5,
            "crop_padding": 2 if recipe.augment is not None else 0,
            "loss": {"lenet5": "mse_pm1", "lenet5_relu": "nll"}.get(model_name, "cross_entropy")}
    path = folder / f"{model_name}.json"
    path.write_text(json.dumps(spec))
    return path


def timed_epochs(command: list[str], parse) -> tuple[list[tuple[float, int, float]], float]:
    """Runs `command`; returns [(seconds since start, epoch, test accuracy)] as epoch lines arrive, and
    the total wall time."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    epochs = []
    for line in process.stdout:
        found = parse(line)
        if found is not None:
            epochs.append((time.perf_counter() - start, *found))
    if process.wait() != 0:
        raise SystemExit(f"{' '.join(command)} failed (exit code {process.returncode})")
    return epochs, time.perf_counter() - start


def parse_course(line: str):
    match = EPOCH_LINE.match(line.strip())
    return (int(match[1]), float(match[2]) / 100) if match else None


def parse_torch(line: str):
    try:
        record = json.loads(line)
    except ValueError:
        return None
    return record["epoch"], record["test_accuracy"]


def race(model_name: str, framework: str, spec: Path, out: Path) -> dict:
    load = os.getloadavg()[0]
    if framework == "jax":
        command = [sys.executable, "-m", "course", "train", model_name, "--out", str(out / "jax")]
        epochs, wall = timed_epochs(command, parse_course)
    else:
        epochs, wall = timed_epochs([sys.executable, __file__, "--worker", model_name, str(spec)], parse_torch)
    reached = next(((seconds, epoch) for seconds, epoch, accuracy in epochs if accuracy >= TARGETS[model_name]),
                   (None, None))
    return {"model": model_name, "framework": framework, "seconds_to_target": reached[0], "epoch": reached[1],
            "final_accuracy": epochs[-1][2], "epochs": len(epochs), "wall_seconds": wall, "load": load}


def table(rows: list[dict]) -> str:
    lines = ["| model | target | framework | time to target | epoch | final accuracy | total wall | load | JAX/PyTorch |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for model_name in dict.fromkeys(row["model"] for row in rows):
        medians = {}
        for framework in ("jax", "torch"):
            runs = [row for row in rows if row["model"] == model_name and row["framework"] == framework]
            times = [row["seconds_to_target"] for row in runs]
            medians[framework] = statistics.median(times) if None not in times else None
            shown = " / ".join("not reached" if seconds is None else f"{seconds:.1f} s" for seconds in times)
            ratio = ""
            if framework == "torch" and None not in medians.values():
                ratio = f"{medians['jax'] / medians['torch']:.2f}"
            cells = [model_name, f"{TARGETS[model_name]:.1%}", "JAX" if framework == "jax" else "PyTorch", shown,
                     " / ".join(str(row["epoch"]) for row in runs),
                     " / ".join(f"{row['final_accuracy']:.2%}" for row in runs),
                     " / ".join(f"{row['wall_seconds']:.0f} s" for row in runs),
                     " / ".join(f"{row['load']:.2f}" for row in runs), ratio]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["lenet5", "simple_cnn"], choices=sorted(TARGETS))
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", help="also write the rows here")
    parser.add_argument("--worker", nargs=2, metavar=("MODEL", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        torch_worker(*args.worker)
        return
    if not os.environ.get("COURSE_DATA_DIR"):
        raise SystemExit("set COURSE_DATA_DIR to the folder of the real datasets (../shared/data)")
    rows = []
    with tempfile.TemporaryDirectory(prefix="time-to-accuracy-") as scratch:
        for model_name in args.models:
            spec = torch_spec(model_name, Path(scratch))
            for repeat in range(args.repeats):
                order = ("jax", "torch") if repeat % 2 == 0 else ("torch", "jax")
                for framework in order:
                    rows.append(race(model_name, framework, spec, Path(scratch) / f"{model_name}-{repeat}"))
                    print(json.dumps(rows[-1]), flush=True)
    print(table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
