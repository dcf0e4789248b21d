"""`course grade [WEEK ...] [--target exercises|solutions|PATH] [--json FILE] [--junit FILE]`.

Grades through the engine (`grader.runner.grade`) and prints the scorecard: the same checks, and the
same scores, as `python -m pytest grader` (the engine seen through pytest)."""

import argparse
import sys
import time
from pathlib import Path

from course import weeks as course_weeks
from grader import child_run, grading, reference, report, runner, sandbox


def parser() -> argparse.ArgumentParser:
    commands = argparse.ArgumentParser(
        prog="course grade",
        description="Grade your exercises (or a submission folder) against the reference solutions.",
    )
    commands.add_argument("weeks", nargs="*", metavar="WEEK", help="weeks to grade, e.g. 3 or week3 (default: all; in a student release, its weeks)")
    commands.add_argument("--target", default="exercises",
                          help="'exercises' (default), 'solutions', or a folder holding week modules")
    commands.add_argument("--json", metavar="FILE", help="write Gradescope's results.json here")
    commands.add_argument("--junit", metavar="FILE", help="write JUnit XML here")
    commands.add_argument("--jobs", type=int, default=grading.Settings.jobs, help="weeks graded at once")
    add_grading_options(commands.add_argument)
    commands.add_argument("--quiet", action="store_true", help="print only the total")
    return commands


def add_grading_options(add, timeout_flag: str = "--timeout") -> None:
    """The limits, the reference and the sandbox of a grading, for `course grade`, `grade-batch` and the
    grader's pytest options; `add` is `ArgumentParser.add_argument` or pytest's `addoption`."""
    add(timeout_flag, type=float, default=grading.Settings.week_timeout_s,
        help="seconds allowed per week (default %(default)s)")
    add("--probe-timeout", type=float, default=grading.Settings.probe_timeout_s,
        help="seconds allowed per check (default %(default)s)")
    add("--memory-gb", type=float, default=grading.Settings.memory_bytes / 2**30,
        help="memory limit of the graded code, in GiB (default %(default)s)")
    add("--reference-dir", default=None, help="recorded reference evidence (instead of running the solutions)")
    add("--sandbox", choices=[sandbox.AUTO, *sandbox.LEVELS], default=None,
        help="where the submitted code runs: auto (default, or $COURSE_SANDBOX) picks bubblewrap, "
             "else an unprivileged user when run as root, else none (not sandboxed)")


def main(argv: list[str] | None = None) -> int:
    """Runs `course grade`: the engine (`grader.runner.grade`) on the chosen weeks, then the scorecard;
    returns 0 when grading finished (whatever the score), 2 on bad usage, 3 when it could not grade."""
    args = parser().parse_args(argv)
    start = time.perf_counter()
    settings = grading.Settings.from_options(vars(args), jobs=args.jobs, progress=not args.quiet and sys.stderr.isatty())
    recorded = settings.reference_dir
    try:
        released = grading.recorded_weeks(recorded) if recorded is not None else []  # a student release's weeks
        weeks = course_weeks.chosen(args.weeks, default=released or None)
        target = runner.resolve_target(args.target)
    except ValueError as error:
        print(f"course grade: {error}", file=sys.stderr)
        return 2
    try:
        level = child_run.sandbox_level(settings)
        reports = runner.grade(weeks, target, settings)
    except sandbox.Unavailable as error:
        print(f"course grade: {error}", file=sys.stderr)
        return 2
    except (reference.ReferenceEvidenceError, child_run.InfrastructureError) as error:
        print(f"course grade: grading did not run: {report.printable(str(error), lines=True)}", file=sys.stderr)
        return 3
    elapsed = time.perf_counter() - start
    if args.json:
        report.write_json(args.json, report.gradescope(reports, elapsed))
    if args.junit:
        Path(args.junit).write_text(report.junit(reports))
    if args.quiet:
        score, maximum = report.totals(reports)
        unsandboxed = " (not sandboxed)" if level == "none" else ""
        print(f"TOTAL {score:g}/{maximum:g}{unsandboxed}")
    else:
        print(report.scorecard(reports))
        print(f"graded {target} in {elapsed:.1f} s; sandbox: {sandbox.describe(level)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
