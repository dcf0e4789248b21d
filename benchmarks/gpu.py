"""GPU speed (issue 18): train-step images/s of each model, JAX float32 and bf16 against PyTorch
eager and `torch.compile`, and AlexNet's time to 89% with `course train`.

    python benchmarks/gpu.py --data-dir DIR [--models mlp simple_cnn lenet5 alexnet] [--json out.json]
    python benchmarks/gpu.py --device cpu --steps 3 --skip-training   # a smoke test of the script

Steps: each model's week `train_step` with plain SGD (learning rate 0.01, dropout on) on the same
random float batches at the model's input size (AlexNet 227x227, batch 128; the others batch 256).
JAX runs its steps as `course train` does, 50 to a call (`course.train.steps_program`), in float32
(XLA's default on NVIDIA GPUs: TF32 matrix products) and in `--precision bf16`
(`course.precision`). PyTorch runs the original network (`tests/torch_models.py`) with TF32 on,
eagerly and compiled (`torch.compile`). After a warm-up, chunks of the four alternate; each gets the
median over `--repeats`. `peak %` is the share of the GPU's dense peak (TF32 for float32, bf16 for
bf16) that the step's useful arithmetic reaches: 3x the forward pass's FLOPs (XLA's cost analysis).

Training: `python -m course train alexnet --data-dir DIR --out OUT [--precision bf16]`, the clock
started with the process; the time at which the test accuracy first reached 89%, and the numbers of
`metrics.json`. Needs PyTorch with CUDA (`torch` is already on the device machine).
"""

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from course import precision as precisions  # noqa: E402
from course import registry, train  # noqa: E402
from time_to_accuracy import parse_course, timed_epochs  # noqa: E402
from train_step import LEARNING_RATE, random_batches, torch_model_and_loss  # noqa: E402

# Dense tensor-core peaks in TFLOP/s (NVIDIA's data sheets, SXM parts, no sparsity).
PEAK_TFLOPS = {"H200": {"float32": 494.7, "bf16": 989.4}, "H100": {"float32": 494.7, "bf16": 989.4},
               "A100": {"float32": 156.0, "bf16": 312.0}}
INPUT_SHAPES = {"mlp": (28, 28, 1), "simple_cnn": (32, 32, 3), "lenet5": (32, 32, 1), "alexnet": (227, 227, 3)}
BATCH_SIZES = {"mlp": 256, "simple_cnn": 256, "lenet5": 256, "alexnet": 128}
TARGET = 0.89


def peak_tflops(device_kind: str) -> dict | None:
    return next((peak for name, peak in PEAK_TFLOPS.items() if name in device_kind), None)


class JaxSteps:
    """The model's week step with SGD, `train.STEPS_PER_CALL` steps to a call, in `precision`."""

    def __init__(self, name: str, precision: str, batches, steps: int):
        recipe = registry.recipes()[name]
        # The batches are already the model's input: no prepare or augmentation inside the step.
        self.recipe = dataclasses.replace(recipe, prepare=lambda images: images, augment=None, batches=None)
        self.model = precisions.set_precision(recipe.model(nnx.Rngs(0)), precision)
        self.optimizer = nnx.Optimizer(self.model, optax.sgd(LEARNING_RATE), wrt=nnx.Param)
        self.model.train()
        self.steps = steps
        chunk = [batches[step % len(batches)] for step in range(steps)]
        self.images = jnp.asarray(np.stack([images for images, _ in chunk]))
        self.labels = jnp.asarray(np.stack([labels for _, labels in chunk]))
        self.key_data = jax.random.key_data(jax.random.split(jax.random.key(0), steps))
        self.valid = jnp.ones(steps, bool)
        graphdef, self.state = nnx.split((self.model, self.optimizer))
        self.program = train.steps_program(self.recipe, graphdef)
        start = time.perf_counter()
        self.run()
        self.first_call_seconds = time.perf_counter() - start

    def run(self) -> None:
        self.state, metrics = self.program(self.state, self.images, self.labels, self.key_data, self.valid)
        jax.block_until_ready(metrics)

    def forward_flops_per_image(self) -> float:
        graphdef, state = nnx.split(self.model)
        forward = jax.jit(lambda state, images: nnx.merge(graphdef, state)(images))
        cost = forward.lower(state, self.images[0, :1]).compile().cost_analysis()
        return float((cost[0] if isinstance(cost, list) else cost)["flops"])


class TorchSteps:
    """The original PyTorch network with SGD, on `device`, eager or `torch.compile`d."""

    def __init__(self, name: str, compiled: bool, batches, steps: int, device: str):
        import torch

        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.manual_seed(0)
        self.torch, self.device, self.steps = torch, device, steps
        model, self.loss = torch_model_and_loss(name) if name != "alexnet" else self.full_size_alexnet()
        self.model = model.to(device).train()
        self.forward = torch.compile(self.model) if compiled else self.model
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LEARNING_RATE)
        self.batches = [(torch.from_numpy(images.transpose(0, 3, 1, 2).copy()).to(device),
                         torch.from_numpy(labels).long().to(device)) for images, labels in batches]
        start = time.perf_counter()
        self.run()
        self.first_call_seconds = time.perf_counter() - start

    @staticmethod
    def full_size_alexnet():
        from torch import nn

        from tests import torch_models

        return torch_models.AlexNet(), nn.CrossEntropyLoss()

    def run(self) -> None:
        for step in range(self.steps):
            images, labels = self.batches[step % len(self.batches)]
            self.optimizer.zero_grad(set_to_none=True)
            self.loss(self.forward(images), labels).backward()
            self.optimizer.step()
        if self.device == "cuda":
            self.torch.cuda.synchronize()


def step_speeds(name: str, repeats: int, steps: int, device: str, peak: dict | None) -> dict:
    batch_size = BATCH_SIZES[name]
    batches = random_batches(INPUT_SHAPES[name], batch_size)
    runners = {"jax float32": JaxSteps(name, "float32", batches, steps),
               "jax bf16": JaxSteps(name, "bf16", batches, steps),
               "torch eager": TorchSteps(name, False, batches, steps, device)}
    if device == "cuda":
        runners["torch compile"] = TorchSteps(name, True, batches, steps, device)
    seconds = {label: [] for label in runners}
    for runner in runners.values():
        runner.run()  # warm-up
    for _ in range(repeats):
        for label, runner in runners.items():
            start = time.perf_counter()
            runner.run()
            seconds[label].append(time.perf_counter() - start)
    flops = 3 * runners["jax float32"].forward_flops_per_image()
    row = {"model": name, "batch_size": batch_size, "train_flops_per_image": flops}
    for label, runner in runners.items():
        images_per_second = steps * batch_size / float(np.median(seconds[label]))
        row[label] = {"images_per_second": images_per_second, "first_call_seconds": runner.first_call_seconds}
        if peak is not None:
            dtype = "bf16" if label.endswith("bf16") else "float32"
            row[label]["peak_fraction"] = images_per_second * flops / (peak[dtype] * 1e12)
    return row


def time_to_target(data_dir: str, out: Path, precision: str) -> dict:
    command = [sys.executable, "-m", "course", "train", "alexnet", "--data-dir", data_dir, "--out", str(out),
               "--precision", precision]
    epochs, wall = timed_epochs(command, parse_course)
    history = json.loads((out / "metrics.json").read_text())["history"]
    best = max(history, key=lambda record: record["validation_accuracy"])
    reached = next(((seconds, epoch) for seconds, epoch, accuracy in epochs if accuracy >= TARGET), (None, None))
    return {"precision": precision, "seconds_to_89": reached[0], "epoch_reached": reached[1], "wall_seconds": wall,
            "final_test_accuracy": history[-1]["test_accuracy"], "epochs": len(history),
            "best_validation_epoch": best["epoch"], "best_validation_accuracy": best["validation_accuracy"],
            "test_accuracy_at_best_validation": best["test_accuracy"],
            "train_accuracy_final": history[-1]["train_accuracy"],
            "epoch_seconds_median": float(np.median([record["epoch_seconds"] for record in history]))}


def table(rows: list[dict]) -> str:
    labels = ["jax float32", "jax bf16", "torch eager", "torch compile"]
    lines = ["| model | batch | " + " | ".join(f"{label} img/s (peak %)" for label in labels) + " |",
             "|---|---:|" + "---:|" * len(labels)]
    for row in rows:
        cells = []
        for label in labels:
            result = row.get(label)
            if result is None:
                cells.append("-")
            else:
                share = f" ({100 * result['peak_fraction']:.1f})" if "peak_fraction" in result else ""
                cells.append(f"{result['images_per_second']:,.0f}{share}")
        lines.append(f"| {row['model']} | {row['batch_size']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(INPUT_SHAPES), choices=list(INPUT_SHAPES))
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"], help="PyTorch's device (JAX uses its default)")
    parser.add_argument("--steps", type=int, default=train.STEPS_PER_CALL, help="steps per timed chunk")
    parser.add_argument("--repeats", type=int, default=5, help="timed chunks per framework (the median is kept)")
    parser.add_argument("--data-dir", default=os.environ.get("COURSE_DATA_DIR"), help="for AlexNet's training runs")
    parser.add_argument("--precisions", nargs="+", default=["float32", "bf16"], choices=list(precisions.PRECISIONS),
                        help="AlexNet training runs to make")
    parser.add_argument("--out", default="gpu-runs", help="folder for the training runs' outputs")
    parser.add_argument("--skip-training", action="store_true", help="only the step speeds")
    parser.add_argument("--json", help="also write everything to this JSON file")
    args = parser.parse_args()

    device = jax.devices()[0]
    peak = peak_tflops(device.device_kind)
    machine = {"jax_device": device.device_kind, "platform": device.platform, "python": platform.python_version(),
               "jax": jax.__version__, "peak_tflops": peak}
    try:
        import flax
        import torch

        machine.update(flax=flax.__version__, optax=optax.__version__, torch=torch.__version__,
                       cuda=torch.version.cuda)
        if args.device == "cuda":
            machine["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                                               capture_output=True, text=True).stdout.strip()
    except (ImportError, OSError) as error:
        machine["versions_error"] = str(error)
    print(json.dumps(machine), flush=True)

    rows = []
    for name in args.models:
        rows.append(step_speeds(name, args.repeats, args.steps, args.device, peak))
        print(json.dumps(rows[-1]), flush=True)
    print(table(rows), flush=True)
    training = []
    if not args.skip_training:
        if not args.data_dir:
            raise SystemExit("AlexNet's training runs need --data-dir (or $COURSE_DATA_DIR), or pass --skip-training")
        for precision in args.precisions:
            training.append(time_to_target(args.data_dir, Path(args.out) / precision, precision))
            print(json.dumps(training[-1]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "steps": rows, "training": training}, indent=2))


if __name__ == "__main__":
    main()
