"""What one Gradescope grading costs: builds the autograder zip of all six weeks, sets it up in a
temporary root laid out as Gradescope lays it out, grades the reference solutions with
`run_autograder` and prints its wall time and the peak memory of its whole process tree (the grader
and its sandboxed children, summed), to choose the Gradescope machine size.

    python benchmarks/autograder_run.py [--repeats 3]
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from grader import grading  # noqa: E402


def tree_rss_bytes(pid: int) -> int:
    """Resident memory of `pid` and every descendant, summed."""
    children, rss = {}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
            rss[int(stat.parent.name)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += rss.get(current, 0)
        todo += children.get(current, [])
    return total


def run_measured(command: list[str], environment: dict) -> tuple[float, int]:
    """(wall seconds, peak summed RSS of the process tree, sampled every 50 ms)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_rss_bytes(process.pid))
        time.sleep(0.05)
    return time.perf_counter() - start, peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="autograder-run-") as scratch:
        root, built = Path(scratch) / "autograder", Path(scratch) / "autograder.zip"
        subprocess.run([sys.executable, "-m", "course", "autograder", str(built)], cwd=REPO, check=True)
        for name in ("source", "submission", "results"):
            (root / name).mkdir(parents=True)
        with zipfile.ZipFile(built) as archive:
            archive.extractall(root / "source")
        environment = {**os.environ, "COURSE_AUTOGRADER_ROOT": str(root)}
        subprocess.run(["bash", str(root / "source" / "setup.sh")], env=environment, check=True,
                       stdout=subprocess.DEVNULL)
        for name in grading.WEEKS.values():
            shutil.copyfile(REPO / "solutions" / f"{name}.py", root / "submission" / f"{name}.py")
        seconds, peaks = [], []
        for repeat in range(args.repeats):
            wall, peak = run_measured(["bash", str(root / "source" / "run_autograder")], environment)
            results = json.loads((root / "results" / "results.json").read_text())
            assert results["score"] == results["extra_data"]["max_score"], results["output"]
            seconds.append(wall)
            peaks.append(peak)
            print(f"run {repeat + 1}: {wall:.1f} s, peak memory {peak / 2**30:.2f} GiB, score {results['score']:g}, "
                  f"sandbox {results['extra_data']['environment']['sandbox']}", flush=True)
        load = os.getloadavg()[0]
        print(f"median of {args.repeats}: {statistics.median(seconds):.1f} s, peak memory "
              f"{max(peaks) / 2**30:.2f} GiB (max); load average {load:.2f}; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
