"""Training-step speed: the project's jitted JAX steps against the same networks in PyTorch eager.

    python benchmarks/train_step.py [--models lenet5 simple_cnn] [--batch-sizes 64 256] [--json out.json]

For each model and batch size, one SGD step (learning rate 0.01, float32, dropout on) of the
week's own `train_step` (nnx.jit) and of the original PyTorch network (`tests/torch_models.py`)
runs on the same random batches. After a warm-up, chunks of steps of the two frameworks alternate
(JAX, PyTorch, JAX, ...), so both see the same load on a shared machine; each framework's
images/s is the median over the repeats. The float32 matrix-product speed measured in the same
run (the best of XLA's and PyTorch's on 1024x1024 matrices) is the roofline: `roofline %` is the
share of it that the step's useful arithmetic reaches (3x the forward pass's FLOPs, as counted by
XLA's cost analysis of one image's forward pass). `compile s` is the first call of the JAX step (trace,
compile, run), minus nothing. Needs PyTorch: `pip install torch==2.13.0` (the `torch` extra).
"""

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LEARNING_RATE = 0.01
ALEXNET_SIZE = 67  # the smallest input AlexNet takes: a 1x1x256 final map


def jax_models():
    """name -> (model factory, the week's train_step, input shape (H, W, C))."""
    from course import layers
    from solutions import week2_neural_networks as week2
    from solutions import week4_simple_cnn as week4
    from solutions import week5_lenet as week5
    from solutions import week6_alexnet as week6

    return {
        "mlp": (lambda: week2.MLP(rngs=nnx.Rngs(0)), week2.train_step, (28, 28, 1)),
        # with the fast CPU convolution, as the training loop gives them (their recipes ask for it)
        "simple_cnn": (lambda: layers.use_fast_convolutions(week4.SimpleCNN(rngs=nnx.Rngs(0))), week4.train_step,
                       (32, 32, 3)),
        "lenet5": (lambda: layers.use_fast_convolutions(week5.LeNet5(rngs=nnx.Rngs(0))), week5.train_step,
                   (32, 32, 1)),
        "alexnet": (lambda: week6.AlexNet(input_size=ALEXNET_SIZE, rngs=nnx.Rngs(0)), week6.train_step,
                    (ALEXNET_SIZE, ALEXNET_SIZE, 3)),
    }


def torch_model_and_loss(name: str):
    """The original PyTorch network and its loss (the same function as the JAX week's loss)."""
    import torch
    from torch import nn

    from tests import torch_models

    if name == "mlp":
        return torch_models.MLP(), nn.NLLLoss()  # log-softmax outputs: NLL = cross-entropy of logits
    if name == "simple_cnn":
        return torch_models.SimpleCNN(), nn.CrossEntropyLoss()
    if name == "lenet5":
        mse = nn.MSELoss()
        return torch_models.LeNet5(), lambda outputs, labels: mse(outputs, 2.0 * nn.functional.one_hot(labels, 10).float() - 1.0)
    if name == "alexnet":
        model = torch_models.AlexNet()
        side = 1  # ALEXNET_SIZE's final map is 1x1
        model.classifier[1] = nn.Linear(256 * side * side, 4096)
        return model, nn.CrossEntropyLoss()
    raise ValueError(f"unknown model {name!r}")


def random_batches(shape, batch_size, count=4, seed=0):
    """`count` batches of float32 images (batch, *shape) in [0, 1) and int labels in [0, 10)."""
    rng = np.random.default_rng(seed)
    return [(rng.random((batch_size, *shape), dtype=np.float32), rng.integers(0, 10, batch_size).astype(np.int32))
            for _ in range(count)]


class JaxRunner:
    """Runs the week's nnx.jit train_step with plain SGD over the given batches."""

    def __init__(self, make_model, train_step, batches):
        self.model = make_model()
        self.optimizer = nnx.Optimizer(self.model, optax.sgd(LEARNING_RATE), wrt=nnx.Param)
        self.train_step = train_step
        self.batches = [(jnp.asarray(x), jnp.asarray(y)) for x, y in batches]
        self.model.train()
        start = time.perf_counter()
        jax.block_until_ready(self.run(1))
        self.first_call_seconds = time.perf_counter() - start

    def run(self, steps):
        metrics = None
        for step in range(steps):
            images, labels = self.batches[step % len(self.batches)]
            metrics = self.train_step(self.model, self.optimizer, images, labels)
        jax.block_until_ready(metrics)
        return metrics

    def forward_flops_per_image(self, images) -> float:
        """XLA's count of one image's forward FLOPs (one image: no loop over pieces of the batch)."""
        graphdef, state = nnx.split(self.model)
        forward = jax.jit(lambda state, x: nnx.merge(graphdef, state)(x))
        cost = forward.lower(state, images[:1]).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        return float(cost["flops"])


class TorchRunner:
    """Runs the PyTorch network eagerly: zero_grad, forward, loss, backward, SGD step."""

    def __init__(self, name, batches):
        import torch

        torch.manual_seed(0)
        self.torch = torch
        self.model, self.loss = torch_model_and_loss(name)
        self.model.train()
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LEARNING_RATE)
        self.batches = [(torch.from_numpy(x.transpose(0, 3, 1, 2).copy()), torch.from_numpy(y).long())
                        for x, y in batches]
        self.run(1)

    def run(self, steps):
        loss = None
        for step in range(steps):
            images, labels = self.batches[step % len(self.batches)]
            self.optimizer.zero_grad(set_to_none=True)
            loss = self.loss(self.model(images), labels)
            loss.backward()
            self.optimizer.step()
        return loss.detach()


def timed(run, steps) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) for `run(steps)`."""
    wall, cpu = time.perf_counter(), time.process_time()
    run(steps)
    return time.perf_counter() - wall, time.process_time() - cpu


def matmul_gflops(repeats: int, size: int = 1024) -> dict:
    """Median float32 GFLOP/s of a (size x size) @ (size x size) product in XLA and in PyTorch."""
    import torch

    a = np.random.default_rng(0).random((size, size), dtype=np.float32)
    xla_a = jnp.asarray(a)
    xla_dot = jax.jit(lambda x: x @ x)
    torch_a = torch.from_numpy(a)
    runs = {"xla": lambda: jax.block_until_ready(xla_dot(xla_a)), "torch": lambda: torch_a @ torch_a}
    for run in runs.values():
        run()
    seconds = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            for _ in range(4):
                run()
            seconds[name].append((time.perf_counter() - start) / 4)
    return {name: 2 * size**3 / float(np.median(values)) / 1e9 for name, values in seconds.items()}


def steps_for(seconds_per_step: float, target_seconds: float) -> int:
    return max(1, int(round(target_seconds / max(seconds_per_step, 1e-6))))


def benchmark(name, batch_size, repeats, chunk_seconds, roofline_gflops) -> dict:
    make_model, train_step, shape = jax_models()[name]
    batches = random_batches(shape, batch_size)
    jax_runner = JaxRunner(make_model, train_step, batches)
    torch_runner = TorchRunner(name, batches)
    # Warm-up, and the number of steps that makes one chunk last about chunk_seconds.
    jax_steps = steps_for(timed(jax_runner.run, 3)[0] / 3, chunk_seconds)
    torch_steps = steps_for(timed(torch_runner.run, 3)[0] / 3, chunk_seconds)
    results = {"jax": [], "torch": []}
    for _ in range(repeats):
        for framework, runner, steps in (("jax", jax_runner, jax_steps), ("torch", torch_runner, torch_steps)):
            wall, cpu = timed(runner.run, steps)
            results[framework].append((steps * batch_size / wall, steps * batch_size / max(cpu, 1e-9)))
    jax_ips = float(np.median([wall for wall, _ in results["jax"]]))
    torch_ips = float(np.median([wall for wall, _ in results["torch"]]))
    step_flops = 3 * jax_runner.forward_flops_per_image(jax_runner.batches[0][0])
    return {
        "model": name, "batch_size": batch_size,
        "jax_images_per_s": jax_ips, "torch_images_per_s": torch_ips, "ratio": jax_ips / torch_ips,
        "jax_images_per_cpu_s": float(np.median([cpu for _, cpu in results["jax"]])),
        "torch_images_per_cpu_s": float(np.median([cpu for _, cpu in results["torch"]])),
        "jax_first_call_s": jax_runner.first_call_seconds,
        "train_flops_per_image": step_flops,
        "jax_roofline_fraction": jax_ips * step_flops / (roofline_gflops * 1e9),
        "torch_roofline_fraction": torch_ips * step_flops / (roofline_gflops * 1e9),
        "repeats": repeats, "jax_steps_per_chunk": jax_steps, "torch_steps_per_chunk": torch_steps,
    }


def table(rows, roofline) -> str:
    lines = [f"float32 matmul 1024^3: XLA {roofline['xla']:.0f} GFLOP/s, PyTorch {roofline['torch']:.0f} GFLOP/s "
             f"(roofline = the larger)", "",
             "| model | batch | JAX img/s | PyTorch img/s | JAX/PyTorch | JAX roofline % | PyTorch roofline % "
             "| JAX img/CPU-s | PyTorch img/CPU-s | JAX compile s |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['batch_size']} | {r['jax_images_per_s']:.0f} | {r['torch_images_per_s']:.0f} "
                     f"| {r['ratio']:.2f} | {100 * r['jax_roofline_fraction']:.1f} "
                     f"| {100 * r['torch_roofline_fraction']:.1f} | {r['jax_images_per_cpu_s']:.0f} "
                     f"| {r['torch_images_per_cpu_s']:.0f} | {r['jax_first_call_s']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["mlp", "simple_cnn", "lenet5", "alexnet"],
                        choices=["mlp", "simple_cnn", "lenet5", "alexnet"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--repeats", type=int, default=7, help="chunks per framework (the median is kept)")
    parser.add_argument("--chunk-seconds", type=float, default=0.5, help="about how long one chunk runs")
    parser.add_argument("--cpus", type=int, help="pin the process to this many CPUs (both frameworks then use "
                        "that many threads); default: all CPUs, each framework's default threads")
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args()
    if args.cpus:  # before XLA's and PyTorch's thread pools exist: both size them from the affinity
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cpus])
        import torch

        torch.set_num_threads(args.cpus)

    load = os.getloadavg()
    roofline = matmul_gflops(repeats=5)
    rows = []
    for name in args.models:
        for batch_size in args.batch_sizes:
            rows.append(benchmark(name, batch_size, args.repeats, args.chunk_seconds, max(roofline.values())))
            print(f"{name} batch {batch_size}: JAX/PyTorch {rows[-1]['ratio']:.2f}", file=sys.stderr, flush=True)
    roofline_after = matmul_gflops(repeats=5)
    import torch

    machine = {"processor": platform.processor() or platform.machine(), "cpus": os.cpu_count(),
               "cpus_used": len(os.sched_getaffinity(0)),
               "load_average_before": load, "load_average_after": os.getloadavg(),
               "jax": jax.__version__, "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
               "xla_flags": os.environ.get("XLA_FLAGS", "")}
    print(f"{machine['cpus']} CPUs ({machine['cpus_used']} used), load average {load[0]:.1f} before and {machine['load_average_after'][0]:.1f} "
          f"after; jax {jax.__version__}, torch {torch.__version__} ({machine['torch_threads']} threads)")
    print(table(rows, roofline))
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "matmul_gflops": roofline,
                                               "matmul_gflops_after": roofline_after, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
