"""`course grade-batch SUBMISSIONS --out DIR [--jobs N] [--timeout S]`: grades a whole class.

SUBMISSIONS is a folder holding one entry per student: a folder or a `.zip` of their week modules
(`week1_regression.py`, ...; a single folder wrapping them, as zips often have, is fine). Each
submission is graded like `course grade --target PATH`, by the same engine (`grader.runner.grade`):
its code runs only in time- and memory-limited sandboxed children, N submissions at a time. As each finishes, `DIR/<submission>/results.json`
(Gradescope's format) is written atomically and `DIR/gradebook.csv` (one row per submission, one
column per test, the total) is rewritten, so a killed batch loses only what was running: a rerun
skips every submission whose results are there and still match its files and the grader.
At the end `DIR/summary.md` and `DIR/summary.png` give each test's pass rate and the distribution
of scores.

A malformed submission (no week module, wrong file names, files that do not compile, a zip that is
corrupt or unpacks to too much, symbolic links, files that are not week modules) gets a row saying
what is wrong and never stops the batch (`grader.instructor.submissions` reads them; the gradebook and
summary are `grader.instructor.gradebook`'s).
"""

import argparse
import dataclasses
import hashlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from course import weeks as course_weeks
from course.files import write_atomically
from grader import child_run, cli, grading, reference, report, runner, sandbox
from grader.checks import Result
from grader.instructor.gradebook import (ERROR, FAILURE, GRADED, PROBLEMS, gradebook_row, summary, summary_figure,
                                         summary_markdown, test_names, write_gradebook)
from grader.instructor.submissions import Staged, Submission, find_submissions, stage


# ---------------------------------------------------------------------------------------------
# Grading


def grader_key(weeks: list[int], reference_folders: dict[int, Path]) -> str:
    """Hash of the grader's code, the weeks graded and their reference evidence."""
    digest = hashlib.sha256(json.dumps(weeks).encode())
    for path in sorted((grading.REPO / "grader").rglob("*.py")):
        digest.update(str(path.relative_to(grading.REPO)).encode() + path.read_bytes())
    for week in weeks:
        for path in sorted(reference_folders[week].glob("*.npz")):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def grading_key(staged: Staged, grader: str) -> str:
    """Hash of everything a submission's results depend on: its files and `grader_key`. A rerun
    regrades a submission only when its key changed."""
    digest = hashlib.sha256(grader.encode())
    for name, content in sorted(staged.modules.items()):
        digest.update(f"{name}:{len(content)}:".encode() + content)
    digest.update(json.dumps([staged.problems, staged.fatal]).encode())
    return digest.hexdigest()[:32]


def error_reports(weeks: list[int], reason: str) -> list[runner.WeekReport]:
    """Reports scoring every check 0 with `reason`, for a submission that cannot be graded."""
    return [runner.WeekReport(week, [Result(check, week, 0.0, "error", [f"not graded: {reason}"])
                                     for check in grading.checks_module(week).CHECKS], 0.0, "", {})
            for week in weeks]


def grade_submission(submission: Submission, staged: Staged, weeks: list[int], settings: grading.Settings) -> dict:
    """results.json of one submission (Gradescope's format, with a `batch` entry in extra_data), its weeks
    graded `settings.jobs` at a time."""
    start = time.perf_counter()
    if staged.fatal:
        reports, status = error_reports(weeks, staged.fatal), ERROR
    else:
        with tempfile.TemporaryDirectory(prefix="course-batch-") as folder:
            for name, content in staged.modules.items():
                Path(folder, name).write_bytes(content)
            reports = runner.grade(weeks, Path(folder), settings)
        status = PROBLEMS if staged.problems else GRADED
    results = report.gradescope(reports, time.perf_counter() - start)
    results["extra_data"]["batch"] = {"submission": submission.name, "status": status,
                                      "problems": [staged.fatal] if staged.fatal else staged.problems,
                                      "weeks": weeks}
    return results




def load_results(path: Path, key: str) -> dict | None:
    """The saved results of a submission, if they are complete and graded with the same key."""
    try:
        results = json.loads(path.read_text())
        return results if results["extra_data"]["batch"]["key"] == key else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


# ---------------------------------------------------------------------------------------------
# The command


def parser() -> argparse.ArgumentParser:
    commands = argparse.ArgumentParser(prog="course grade-batch", description="Grade a whole class: one folder "
                                       "or .zip of week modules per student, each graded like `course grade`.")
    commands.add_argument("submissions", metavar="SUBMISSIONS", help="folder holding one folder or .zip per student")
    commands.add_argument("--out", required=True, metavar="DIR", help="where results, gradebook.csv and the summary go")
    commands.add_argument("--jobs", type=int, default=2, help="submissions graded at once (default %(default)s)")
    cli.add_grading_options(commands.add_argument)
    commands.add_argument("--weeks", nargs="+", metavar="WEEK", help="weeks to grade (default: all)")
    commands.add_argument("--allow-unsandboxed", action="store_true",
                          help="grade even where no sandbox can run (the submitted code then runs as you)")
    commands.add_argument("--force", action="store_true", help="regrade submissions already graded")
    commands.add_argument("--quiet", action="store_true", help="no progress bar")
    return commands


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Runs `course grade-batch`; 0 when every submission has a row, 1 if the grader failed on some,
    2 on bad usage, 3 when the reference evidence cannot be produced, 130 when interrupted."""
    args = parser().parse_args(argv)
    try:
        weeks = course_weeks.chosen(args.weeks)
        submissions = find_submissions(Path(args.submissions).expanduser())
        if args.jobs < 1:
            raise ValueError("--jobs must be at least 1")
    except ValueError as error:
        print(f"course grade-batch: {error}", file=sys.stderr)
        return 2
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    settings = grading.Settings.from_options(
        vars(args), jobs=args.jobs, protected=(Path(args.submissions).expanduser().resolve(), out.resolve()))
    try:
        level = child_run.sandbox_level(settings)
    except sandbox.Unavailable as error:
        print(f"course grade-batch: {error}", file=sys.stderr)
        return 2
    if level == "none" and not args.allow_unsandboxed:
        print("course grade-batch: no sandbox can run here, and without one a submission could read the solutions "
              "and change other students' grades. Install bubblewrap (apt-get install bubblewrap), or run as root "
              f"for the unprivileged-user sandbox ({sandbox.why_unavailable('bubblewrap')}). To grade anyway, "
              "knowing the grades cannot be trusted, add --allow-unsandboxed.", file=sys.stderr)
        return 2
    print(f"course grade-batch: sandbox: {sandbox.describe(level)}", file=sys.stderr)
    try:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            folders = dict(zip(weeks, pool.map(lambda week: reference.reference_folder(week, settings), weeks)))
    except reference.ReferenceEvidenceError as error:
        print(f"course grade-batch: {error}", file=sys.stderr)
        return 3
    tests = test_names(weeks)
    rows, pending = {}, []
    grader = grader_key(weeks, folders)
    for submission in submissions:
        staged = stage(submission, weeks)
        key = grading_key(staged, grader)
        saved = None if args.force else load_results(out / submission.folder / "results.json", key)
        if saved is None:
            pending.append((submission, staged, key))
        else:
            rows[submission.folder] = gradebook_row(submission, saved)
    print(f"{len(submissions)} submissions in {args.submissions}: {len(rows)} already graded, "
          f"{len(pending)} to grade, {args.jobs} at a time", file=sys.stderr)
    write_gradebook(out / "gradebook.csv", list(rows.values()), tests)

    def one(submission, staged, key):
        folder = out / submission.folder
        folder.mkdir(exist_ok=True)
        try:
            results = grade_submission(submission, staged, weeks, dataclasses.replace(settings, jobs=1))
        except Exception as error:  # noqa: BLE001 - a grader bug costs this row, not the batch
            reason = report.printable(f"{type(error).__name__}: {error}")
            write_atomically(folder / "failure.txt", reason + "\n")
            return submission, gradebook_row(submission, None, f"the grader failed ({reason}); rerun to retry")
        results["extra_data"]["batch"]["key"] = key
        write_atomically(folder / "results.json", json.dumps(results, indent=1) + "\n")
        (folder / "failure.txt").unlink(missing_ok=True)
        return submission, gradebook_row(submission, results)

    from tqdm.auto import tqdm

    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = {signum: signal.signal(signum, _interrupted) for signum in (signal.SIGTERM, signal.SIGINT)
                if in_main_thread}
    bar = tqdm(total=len(submissions), initial=len(rows), unit="submission", desc="grading", file=sys.stderr,
               disable=args.quiet, dynamic_ncols=True)
    start = time.perf_counter()  # throughput counts grading only, not the reference evidence
    pool = ThreadPoolExecutor(max_workers=args.jobs)
    try:
        futures = [pool.submit(one, *job) for job in pending]
        for future in as_completed(futures):
            submission, row = future.result()
            rows[submission.folder] = row
            write_gradebook(out / "gradebook.csv", list(rows.values()), tests)
            bar.set_postfix_str(f"{submission.name}: {row['percent']}%" if row["percent"] != "" else submission.name)
            bar.update()
    except KeyboardInterrupt:
        bar.close()
        print(f"\ncourse grade-batch: interrupted; {len(rows)} of {len(submissions)} submissions are graded in {out}. "
              "Run the same command again to grade the rest.", file=sys.stderr)
        sys.stderr.flush()
        os._exit(130)  # the running children die with this process (grader.child.die_with_parent)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    pool.shutdown()
    bar.close()
    elapsed = time.perf_counter() - start
    data = summary(list(rows.values()), tests)
    write_atomically(out / "summary.json", json.dumps(data, indent=1) + "\n")
    write_atomically(out / "summary.md", summary_markdown(data))
    summary_figure(data, out / "summary.png")
    rate = 60 * len(pending) / elapsed if pending and elapsed > 0 else 0.0
    print("\n".join(summary_markdown(data).splitlines()[2:4]))
    print(f"graded {len(pending)} submissions in {elapsed:.1f} s ({rate:.1f} per minute); "
          f"gradebook: {out / 'gradebook.csv'}, summary: {out / 'summary.md'}, {out / 'summary.png'}")
    return 1 if data["statuses"][FAILURE] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
