"""Seconds each probe of one week takes on the reference solution, in one process (no sandbox, no
child start-up): where a week's grading time goes.

    PYTHONPATH=. python benchmarks/probe_time.py 6

The hidden probes run last, on the hidden inputs of an arbitrary seed.
"""

import importlib
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "solutions"))

from grader import child, evidence, grading, probing  # noqa: E402


def timed(label: str, function, *args):
    start = time.perf_counter()
    result = function(*args)
    print(f"{label:28s} {time.perf_counter() - start:6.2f} s", flush=True)
    return result


def main() -> None:
    week = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    child.configure_jax()
    module = timed("import", importlib.import_module, grading.WEEKS[week])
    checks = grading.checks_module(week)
    given = {}
    if hasattr(checks, "setup"):
        setup = timed("setup", checks.setup, module)
        given = {key: evidence.to_array(value, key) for key, value in evidence.to_evidence(setup).items()}
    public, hidden = grading.probe_names(week)
    for name in public:
        timed(name, checks.PROBES[name], module, given)
    probing.HIDDEN_SEED = 12345
    for name in hidden:
        timed("hidden:" + name, checks.PROBES[name], module, given)


if __name__ == "__main__":
    main()
