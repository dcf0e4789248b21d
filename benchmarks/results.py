"""Reproduces docs/results.md: trains each reference solution on the real data and times it.

    COURSE_DATA_DIR=../shared/data python benchmarks/results.py [--only lenet5 ...] [--out runs/results]

Each image model is trained by its `course train` command in a fresh process, so the wall time
counts everything a student waits for: start-up, data loading, compilation and training.
Prints a markdown table (and writes it to OUT/results.md).
"""

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

RUNS = {
    # name: (command line after `course`, dataset)
    "mlp_mnist": (["train", "mlp", "--dataset", "mnist"], "mnist"),
    "mlp_fashion_mnist": (["train", "mlp", "--dataset", "fashion_mnist"], "fashion_mnist"),
    "lenet5": (["train", "lenet5", "--dataset", "mnist"], "mnist"),
    "lenet5_relu": (["train", "lenet5_relu", "--dataset", "mnist"], "mnist"),
    "simple_cnn": (["train", "simple_cnn", "--dataset", "cifar10"], "cifar10"),
}
LOGISTIC = [sys.executable, "-c", "from solutions.week1_regression import diabetes_experiment as run; "
            "import json; print(json.dumps(run()))"]


def timed(command: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return seconds, result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", choices=[*RUNS, "logistic"], help="run only these")
    parser.add_argument("--out", default="runs/results")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    chosen = args.only or ["logistic", *RUNS]
    rows = []
    for name in chosen:
        if name == "logistic":
            seconds, stdout = timed(LOGISTIC)
            accuracy = json.loads(stdout.strip().splitlines()[-1])["test_accuracy"]
            rows.append(("logistic regression", "diabetes", "python -c '...diabetes_experiment()'", seconds, accuracy, 0))
            continue
        arguments, dataset = RUNS[name]
        command = [sys.executable, "-m", "course", *arguments, "--out", str(out / name), "--quiet"]
        seconds, _ = timed(command)
        history = json.loads((out / name / "metrics.json").read_text())["history"]
        rows.append((name, dataset, "course " + " ".join(arguments), seconds, history[-1]["test_accuracy"],
                     len(history)))
        print(f"{name}: {history[-1]['test_accuracy']:.2%} in {seconds:.0f} s", flush=True)
    table = [f"Machine: {platform.processor() or platform.machine()}, {platform.python_version()}, "
             f"{__import__('os').cpu_count()} CPUs", "",
             "| run | dataset | command | epochs | wall time (s) | test accuracy |", "|---|---|---|---|---|---|"]
    table += [f"| {name} | {dataset} | `{command}` | {epochs or '-'} | {seconds:.0f} | {accuracy:.2%} |"
              for name, dataset, command, seconds, accuracy, epochs in rows]
    text = "\n".join(table)
    print(text)
    (out / "results.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
