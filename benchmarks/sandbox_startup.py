"""The start-up cost of the grader's sandbox: how long a child takes to start, import what every
grading child imports (jax, flax, optax) and exit, at each sandbox level that runs here.

    python benchmarks/sandbox_startup.py [--repeats 7]

Prints the median of each level and its difference from `none`. Run it on an idle machine.
"""

import argparse
import statistics
import sys
import time

from grader import sandbox, uid_cleanup

COMMANDS = {
    "python -c pass": [sys.executable, "-I", "-c", "pass"],
    "import jax, flax, optax": [sys.executable, "-I", "-c", "import jax, flax.nnx, optax; jax.numpy.zeros(1).block_until_ready()"],
}


def seconds_to_run(level: str, command: list[str]) -> float:
    with sandbox.Workspace(level) as folders:
        start = time.perf_counter()
        process = sandbox.start(level, command, folders, {}, pass_fds=())
        output, _ = process.communicate(timeout=120)
        elapsed = time.perf_counter() - start
        uid_cleanup.kill_every_process_of(folders.uid) if folders.uid is not None else None
    if process.returncode != 0:
        raise RuntimeError(f"{level}: {output.decode(errors='replace')[-500:]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    levels = [level for level in sandbox.LEVELS if not sandbox.why_unavailable(level)]
    print(f"levels that run here: {', '.join(levels)}; median of {args.repeats} runs, levels interleaved")
    print(f"{'command':<26}" + "".join(f"{level:>14}" for level in levels))
    for name, command in COMMANDS.items():
        times = {level: [] for level in levels}
        for _ in range(args.repeats):
            for level in levels:
                times[level].append(seconds_to_run(level, command))
        medians = {level: statistics.median(values) for level, values in times.items()}
        print(f"{name:<26}" + "".join(f"{medians[level]:>13.3f}s" for level in levels))
        print(f"{'  minus none':<26}" + "".join(f"{medians[level] - medians['none']:>+13.3f}s" for level in levels))


if __name__ == "__main__":
    main()
