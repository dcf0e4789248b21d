"""Wall time of grading all six weeks of the solutions: cold (an empty cache, so the reference
evidence, hidden checks included, is computed first) and with the reference evidence cached (what a
student's release does: it ships the recorded evidence).

    python benchmarks/grader_time.py --repeats 3

Prints each run and the medians. Timings on a shared machine are noisy: compare only numbers of
one run of this script.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def grade_seconds(cache_dir: str, sandbox: str) -> float:
    start = time.perf_counter()
    finished = subprocess.run([sys.executable, "-m", "course", "grade", "--target", "solutions", "--quiet",
                               "--sandbox", sandbox], env={**os.environ, "COURSE_CACHE_DIR": cache_dir},
                              capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    total = next((line.split()[1] for line in finished.stdout.splitlines() if line.startswith("TOTAL")), "0/1")
    if finished.returncode != 0 or total.split("/")[0] != total.split("/")[1]:
        raise SystemExit(f"grading failed:\n{finished.stdout[-2000:]}\n{finished.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sandbox", default="auto", choices=("auto", "bubblewrap", "user", "none"))
    args = parser.parse_args()
    cold, cached = [], []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="grader-time-") as cache_dir:
            cold.append(grade_seconds(cache_dir, args.sandbox))
            cached.append(grade_seconds(cache_dir, args.sandbox))
        print(f"run {repeat + 1}: cold {cold[-1]:.1f} s, reference cached {cached[-1]:.1f} s", flush=True)
    print(f"median of {args.repeats}: cold {statistics.median(cold):.1f} s, "
          f"reference cached {statistics.median(cached):.1f} s")


if __name__ == "__main__":
    main()
