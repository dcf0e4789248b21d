"""AlexNet on the CPU: a few full-size (227x227) SGD steps on one CIFAR-10 batch lower the loss.

    COURSE_DATA_DIR=../shared/data python benchmarks/alexnet_cpu_steps.py [--steps 5] [--batch-size 16]

Training AlexNet to its goal is a GPU job; this shows the recipe's step runs and learns on a CPU.
"""

import argparse
import time

import numpy as np
from flax import nnx

from course import data, runs, train
from solutions.week6_alexnet import RECIPES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    recipe = RECIPES["alexnet"]
    images, labels = data.load("cifar10", "train")
    batch = np.random.default_rng(0).choice(len(labels), args.batch_size, replace=False)
    settings = runs.RunSettings("alexnet", "cifar10", 1, args.batch_size, recipe.learning_rate, 0)
    model, optimizer = train.build(recipe, settings, steps_per_epoch=args.steps)
    inputs, batch_labels = train.prepare_fn(recipe)(images[batch]), labels[batch]
    print(f"AlexNet input {inputs.shape}; the recipe's {recipe.schedule} schedule (peak {recipe.learning_rate}) over {args.steps} steps")
    for step in range(args.steps):
        start = time.perf_counter()
        loss = float(recipe.train_step(model, optimizer, inputs, batch_labels)["loss"])
        print(f"step {step + 1}: loss {loss:.4f} ({time.perf_counter() - start:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
