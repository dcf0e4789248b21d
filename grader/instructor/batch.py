"""`course grade-batch SUBMISSIONS --out DIR [--jobs N] [--weeks N ...] [--due DATE --late-penalty RULE]
[--roster ROSTER] [--similarity]`: grades a whole class.

SUBMISSIONS is a folder holding one entry per student: a folder or a `.zip` of their week modules
(`week1_regression.py`, ...; a single folder wrapping them, as zips often have, is fine). Each
submission is graded like `course grade --target PATH`, by the same engine (`grader.runner.grade`):
its code runs only in time- and memory-limited sandboxed children, N submissions at a time. The weeks
graded are those named, else every week some submission holds. As each finishes,
`DIR/<submission>/results.json` (Gradescope's format, the score before any late penalty) is written
atomically and `DIR/gradebook.csv` (`grader.instructor.gradebook`) is rewritten, so a killed batch loses
only what was running: a rerun skips every submission whose results are there and still match its
files and the grader. At the end `DIR/summary.md`, `summary.json` and `summary.png`
(`grader.instructor.summary`) list the problems and the scores; with `--roster`, `DIR/canvas.csv` is
Canvas's import (`grader.instructor.canvas`); with `--similarity`, `DIR/similarity.html` and `.csv`
(`grader.instructor.similarity`). The late policy (`grader.instructor.late`) is applied to every output
but results.json, from each submission's time, read afresh at each run.

A malformed submission (no week module, wrong file names, files that do not compile, a zip that is
corrupt or unpacks to too much, symbolic links, files that are not week modules) gets a row saying
what is wrong and never stops the batch (`grader.instructor.submissions` reads them). A submission
of the untouched starter code is "graded: nothing attempted".
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
from grader.instructor import canvas, late, similarity
from grader.instructor.gradebook import (ERROR, GRADED, FAILURE, NOTHING, PROBLEMS, gradebook_row, test_names,
                                         weeks_of, write_gradebook)
from grader.instructor.submissions import Staged, Submission, find_submissions, stage
from grader.instructor.summary import summary, summary_figure, summary_markdown


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
    files = {course_weeks.week_number(Path(name).stem): name for name in staged.modules}  # {week: its file}
    submitted = sorted(files)
    if staged.fatal:
        reports, status, problems, untouched = error_reports(weeks, staged.fatal), ERROR, [staged.fatal], []
    else:
        with tempfile.TemporaryDirectory(prefix="course-batch-") as folder:
            for name, content in staged.modules.items():
                Path(folder, name).write_bytes(content)
            reports = runner.grade(weeks, Path(folder), settings)
        untouched = [graded.week for graded in reports if graded.week in submitted and graded.results
                     and all(result.status == "not attempted" for result in graded.results)]
        problems = staged.problems + [f"nothing attempted in {files[week]}: every task is still the starter code; "
                                      f"week {week} scores 0" for week in untouched]
        status = status_of(staged, submitted, untouched)
    results = report.gradescope(reports, time.perf_counter() - start)
    results["extra_data"]["batch"] = {"submission": submission.name, "status": status, "problems": problems,
                                      "weeks": weeks, "submitted_weeks": submitted,
                                      "attempted_weeks": [week for week in submitted if week not in untouched]}
    return results


def status_of(staged: Staged, submitted: list[int], untouched: list[int]) -> str:
    """A graded submission's status: nothing attempted when every week it holds is the untouched starter
    code; with problems when something was wrong (a missing week, odd files, a week left untouched)."""
    if submitted and set(submitted) <= set(untouched):
        return NOTHING
    return PROBLEMS if staged.problems or untouched else GRADED


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
    commands.add_argument("--weeks", nargs="+", metavar="WEEK",
                          help="weeks to grade (default: every week some submission holds)")
    commands.add_argument("--allow-unsandboxed", action="store_true",
                          help="grade even where no sandbox can run (the submitted code then runs as you)")
    commands.add_argument("--force", action="store_true", help="regrade submissions already graded")
    commands.add_argument("--quiet", action="store_true", help="no progress bar")
    policy = commands.add_argument_group("late policy (default: none)")
    policy.add_argument("--due", metavar="DATE", help="the due date, ISO 8601 with a time: 2025-03-07T23:59 (UTC), "
                        "2025-03-07T23:59-05:00")
    policy.add_argument("--late-penalty", metavar="RULE", default="none", help=late.RULE_HELP)
    lms = commands.add_argument_group("Canvas and similarity")
    lms.add_argument("--roster", metavar="ROSTER", help="CSV with the columns submission, student, id, sis_user_id, "
                     "sis_login_id, section (or Canvas's gradebook export plus a submission column): writes "
                     "DIR/canvas.csv, Canvas's gradebook import")
    lms.add_argument("--canvas-assignment", action="append", metavar="WEEK=NAME",
                     help="canvas.csv's column for a week, as Canvas's export names it, e.g. 1='Week 1 (12345)' "
                          "(default 'Week N', a new assignment)")
    lms.add_argument("--similarity", action="store_true",
                     help="compare the submissions' code too: DIR/similarity.html and similarity.csv")
    lms.add_argument("--similarity-threshold", type=float, default=similarity.DEFAULT_THRESHOLD, metavar="SHARE",
                     help="flag a pair when either one's share found in the other reaches this (default %(default)s)")
    return commands


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def chosen_weeks(texts: list[str] | None, submissions: list[Submission]) -> list[int]:
    """The weeks `--weeks` names, else every week some submission holds (staged to see), else all."""
    if texts:
        return course_weeks.chosen(texts)
    held = set()
    for submission in submissions:
        held |= {course_weeks.week_number(Path(name).stem) for name in stage(submission, list(grading.WEEKS)).modules}
    return sorted(held) or list(grading.WEEKS)


@dataclasses.dataclass
class Extras:
    """What the batch adds to grading: the late policy, the roster and its columns, similarity."""

    rules: late.Policy
    roster: list[canvas.Student] | None
    columns: dict[int, str]
    similarity: bool
    threshold: float


def extras(args: argparse.Namespace) -> Extras:
    """The options beyond grading, checked before any submission is read (the Canvas columns are set once
    the weeks are known); ValueError (canvas.RosterError among them) saying what is wrong."""
    if args.canvas_assignment and not args.roster:
        raise ValueError("--canvas-assignment names a column of canvas.csv, which needs --roster")
    if not 0 < args.similarity_threshold <= 1:
        raise ValueError(f"--similarity-threshold {args.similarity_threshold:g}: expected a share above 0 and at "
                         "most 1, e.g. 0.5")
    return Extras(late.policy(args.due, args.late_penalty),
                  canvas.read_roster(Path(args.roster).expanduser()) if args.roster else None,
                  {}, args.similarity, args.similarity_threshold)


def finish(out: Path, rows: list[dict], tests: list[tuple[str, float]], extra: Extras,
           modules: dict[str, dict[str, bytes]]) -> dict:
    """Writes what comes at the end (similarity.html and .csv, canvas.csv, summary.json, .md and .png);
    returns the summary's data. A file that cannot be written is said, not raised."""
    more = []
    if extra.similarity:
        comparison = similarity.compare(modules, list(weeks_of(tests)), extra.threshold)
        _write(out, lambda: similarity.write_report(out, comparison), "similarity.html and similarity.csv")
        more += similarity.problems(comparison)
    if extra.roster is not None:
        _write(out, lambda: canvas.write_canvas(out / "canvas.csv", extra.roster, rows, weeks_of(tests),
                                                extra.columns), "canvas.csv")
        more += canvas.roster_problems(extra.roster, rows)
    data = summary(rows, tests, extra.rules, more)
    write_atomically(out / "summary.json", json.dumps(data, indent=1) + "\n")
    write_atomically(out / "summary.md", summary_markdown(data))
    summary_figure(data, out / "summary.png")
    return data


def _write(out: Path, write, what: str) -> None:
    try:
        write()
    except OSError as error:  # say, a submission's results folder has the file's name
        print(f"course grade-batch: could not write {what} in {out}: {error}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Runs `course grade-batch`; 0 when every submission has a row, 1 if the grader failed on some,
    2 on bad usage, 3 when the reference evidence cannot be produced, 130 when interrupted."""
    args = parser().parse_args(argv)
    try:
        if args.jobs < 1:
            raise ValueError("--jobs must be at least 1")
        extra = extras(args)
        submissions = find_submissions(Path(args.submissions).expanduser())
        weeks = chosen_weeks(args.weeks, submissions)
        extra.columns = canvas.assignment_columns(args.canvas_assignment, weeks)
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
    print(f"course grade-batch: week{'s' * (len(weeks) != 1)} {', '.join(map(str, weeks))}"
          + ("" if args.weeks else " (those the submissions hold; --weeks to choose)")
          + f"; late policy: {extra.rules.describe()}", file=sys.stderr)
    try:
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            folders = dict(zip(weeks, pool.map(lambda week: reference.reference_folder(week, settings), weeks)))
    except reference.ReferenceEvidenceError as error:
        print(f"course grade-batch: {error}", file=sys.stderr)
        return 3
    tests = test_names(weeks)
    rows, pending, modules = {}, [], {}
    lateness = {submission.folder: late.assess(submission, extra.rules) for submission in submissions}
    grader = grader_key(weeks, folders)
    for submission in submissions:
        staged = stage(submission, weeks)
        if staged.modules and not staged.fatal:
            modules[submission.name] = staged.modules
        key = grading_key(staged, grader)
        saved = None if args.force else load_results(out / submission.folder / "results.json", key)
        if saved is None:
            pending.append((submission, staged, key))
        else:
            rows[submission.folder] = gradebook_row(submission, saved, lateness=lateness[submission.folder])
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
            return submission, gradebook_row(submission, None, f"the grader failed ({reason}); rerun to retry",
                                             lateness[submission.folder])
        results["extra_data"]["batch"]["key"] = key
        write_atomically(folder / "results.json", json.dumps(results, indent=1) + "\n")
        (folder / "failure.txt").unlink(missing_ok=True)
        return submission, gradebook_row(submission, results, lateness=lateness[submission.folder])

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
    data = finish(out, list(rows.values()), tests, extra, modules)
    rate = 60 * len(pending) / elapsed if pending and elapsed > 0 else 0.0
    print("\n".join(summary_markdown(data).splitlines()[2:5]))
    print(f"{len(data['problems'])} problems to look at, listed first in {out / 'summary.md'}" if data["problems"]
          else "no problems to look at")
    written = ["gradebook.csv", "summary.md", "summary.png"] + ["canvas.csv"] * (extra.roster is not None) + (
        list(similarity.OUTPUTS) if extra.similarity else [])
    print(f"graded {len(pending)} submissions in {elapsed:.1f} s ({rate:.1f} per minute); wrote {', '.join(written)} "
          f"in {out}")
    return 1 if data["statuses"][FAILURE] else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
