"""`course grade-batch SUBMISSIONS --out DIR [--jobs N] [--timeout S]`: grades a whole class.

SUBMISSIONS is a folder holding one entry per student: a folder or a `.zip` of their week modules
(`week1_regression.py`, ...; a single folder wrapping them, as zips often have, is fine). Each
submission is graded like `course grade --target PATH`: its code runs only in time- and
memory-limited child processes, N at a time. As each finishes, `DIR/<submission>/results.json`
(Gradescope's format) is written atomically and `DIR/gradebook.csv` (one row per submission, one
column per test, the total) is rewritten, so a killed batch loses only what was running: a rerun
skips every submission whose results are there and still match its files and the grader.
At the end `DIR/summary.md` and `DIR/summary.png` give each test's pass rate and the distribution
of scores.

A malformed submission (no week module, wrong file names, files that do not compile, a zip that is
corrupt or unpacks to too much, symbolic links, files that are not week modules) gets a row saying
what is wrong and never stops the batch. Files are read with size limits and never unpacked to disk
under names chosen by the student: only the expected week modules are copied out.
"""

import argparse
import ast
import collections
import csv
import dataclasses
import hashlib
import io
import json
import os
import re
import signal
import stat
import statistics
import sys
import tempfile
import threading
import time
import unicodedata
import zipfile
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

from course import weeks as course_weeks
from course.files import write_atomically
from grader import cli, intake, report, runner, sandbox, session
from grader.checks import Result

MAX_MODULE_BYTES = intake.MAX_MODULE_BYTES  # one week module
MAX_ZIP_BYTES = 64 * 2**20  # a submitted zip file
MAX_UNPACKED_BYTES = 32 * 2**20  # everything a zip holds, unpacked
MAX_ENTRIES = 2000  # files in a zip or a submission folder
NAMES_SHOWN = 5
NAME_CHARACTERS_SHOWN = 60
MESSAGE_CHARACTERS_SHOWN = 300
BATCH_FILES = {"gradebook.csv", "summary.md", "summary.json", "summary.png", "failure.txt"}  # never a folder name
FORMULA_STARTS = ("=", "+", "-", "@")  # a spreadsheet reads a cell starting so as a formula
QUOTED_STARTS = ("'", "\t", "\r")  # quoted too: a leading quote is doubled, so that quoting stays reversible
PRINTABLE_ESCAPE = re.compile(r"\\(?:x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})")  # as report.printable writes them
IGNORED_NAMES = {"__init__.py", "__pycache__", "__MACOSX", ".DS_Store", "Thumbs.db"}
LOOKS_LIKE_A_WEEK = re.compile(r"week[ _-]?(\d)", re.IGNORECASE)
GRADED, PROBLEMS, ERROR, FAILURE = "graded", "graded with problems", "error", "grader failure"


@dataclasses.dataclass
class Submission:
    """One entry of SUBMISSIONS: its name in the gradebook, its path, its folder in DIR, and why it cannot
    be graded whatever it holds (`fatal`, say another entry has the same name)."""

    name: str
    path: Path
    folder: str
    fatal: str = ""


@dataclasses.dataclass
class Staged:
    """What a submission gives the grader: week modules by file name, the problems found, or why
    nothing can be graded (`fatal`)."""

    modules: dict[str, bytes]
    problems: list[str]
    fatal: str = ""


class Malformed(ValueError):
    """The submission cannot be graded at all; the message says why."""


# ---------------------------------------------------------------------------------------------
# Finding and reading submissions


def safe_folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")[:100] or "submission"


def find_submissions(root: Path) -> list[Submission]:
    """Every visible entry of `root`, sorted by name, each with a gradebook name (`gradebook_names`) and an
    output folder name distinct from the others' and from the batch's own files. Entries with the same name
    (`alice/` and `Alice.zip`) are ambiguous: each gets a `fatal` reason naming the others."""
    if not root.is_dir():
        raise ValueError(f"SUBMISSIONS must be a folder holding one folder or .zip per student; {root} is not a folder")
    try:
        paths = [path for path in sorted(root.iterdir(), key=lambda entry: entry.name)
                 if not path.name.startswith(".") and path.name not in IGNORED_NAMES]
    except OSError as error:
        raise ValueError(f"cannot list the submissions in {root}: {error}") from error
    names = gradebook_names(paths)
    namesakes = collections.defaultdict(list)
    for path in paths:
        namesakes[_raw_name(path).lower()].append(path)
    found, used = [], set(BATCH_FILES)
    for path, name in names.items():
        folder = safe_folder_name(name)
        while folder.lower() in used:
            folder += "_"
        used.add(folder.lower())
        others = [_entry_name(other) for other in namesakes[_raw_name(path).lower()] if other != path]
        fatal = (f"{_entry_name(path)} collides with {' and '.join(others)}: both are the submission "
                 f"'{submission_name(path)}' (names are compared ignoring case); keep only one") if others else ""
        found.append(Submission(name, path, folder, fatal))
    return found


def gradebook_names(paths: list[Path]) -> dict[Path, str]:
    """{entry: its name in the gradebook}, no two alike. The name is `submission_name`; where several entries
    would show the same text (`alice/` and `alice.zip`, or `a\\x01` and a name holding the control character
    \\x01, which both show as `a\\x01`) the first keeps it and the others get " (2)", " (3)", ...: first an entry
    whose name is shown as it is, then the others in the order of their raw names. A suffixed name is never
    another entry's own name."""
    shown = {path: submission_name(path) for path in paths}
    taken = set(shown.values())
    names, seen = {}, set()
    first_the_names_shown_as_they_are = sorted(paths, key=lambda path: (shown[path] != _raw_name(path), path.name))
    for path in first_the_names_shown_as_they_are:
        name = shown[path]
        if name in seen:
            number = 2
            while f"{name} ({number})" in taken:
                number += 1
            name = f"{name} ({number})"
            taken.add(name)
        seen.add(name)
        names[path] = name
    return {path: names[path] for path in paths}


def submission_name(path: Path) -> str:
    """The name an entry is shown with: its name without `.zip`, unprintable characters escaped
    (`report.printable`), so that no name can break a line of the gradebook or the summary."""
    return report.printable(_raw_name(path))


def _raw_name(path: Path) -> str:
    """The entry's own name without `.zip`: what tells two students apart."""
    return path.name[:-4] if path.name.lower().endswith(".zip") and path.is_file() else path.name


def _entry_name(path: Path) -> str:
    return report.printable(path.name) + ("/" if path.is_dir() else "")


def _listing_of_folder(folder: intake.Folder) -> dict[tuple[str, ...], tuple[str, int, object]]:
    """{relative path parts: (kind, size, how to read)} for the files of a submission folder, three
    folders deep at most; nothing is followed (see `grader.intake`)."""
    try:
        listing = folder.listing(max_depth=3, max_entries=MAX_ENTRIES)
    except intake.Refused as error:
        raise Malformed(str(error)) from None
    return {parts: (kind, size, parts) for parts, (kind, size) in listing.items()}


def _listing_of_zip(archive: zipfile.ZipFile, size: int) -> dict[tuple[str, ...], tuple[str, int, object]]:
    """{path parts: (kind, size, ZipInfo)} for the entries of a zip; raises Malformed when a file is in it twice."""
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        raise Malformed(f"the zip holds {len(infos)} entries, more than {MAX_ENTRIES}")
    unpacked = sum(info.file_size for info in infos)
    if unpacked > MAX_UNPACKED_BYTES:
        raise Malformed(f"the zip would unpack to {unpacked / 2**20:,.0f} MiB from {size / 2**20:,.1f} MiB, more than "
                        f"the limit of {MAX_UNPACKED_BYTES / 2**20:.0f} MiB (a zip bomb?)")
    entries = {}
    for info in infos:
        parts = tuple(part for part in info.filename.replace("\\", "/").split("/") if part not in ("", "."))
        if not parts or ".." in parts or info.filename.startswith("/"):
            entries[("unsafe path " + info.filename[:60],)] = ("special", 0, None)
            continue
        mode = info.external_attr >> 16
        if info.is_dir():
            kind = "folder"
        elif stat.S_ISLNK(mode):
            kind = "link"
        else:
            kind = "file"
        for depth in range(1, len(parts)):
            entries.setdefault(parts[:depth], ("folder", 0, None))
        if kind != "folder" and parts in entries and entries[parts][0] != "folder":
            raise Malformed(f"the zip holds {_shown('/'.join(parts))} twice: which one to grade is ambiguous")
        entries[parts] = (kind, info.file_size, info)
    return entries


def _root(entries: dict) -> tuple[str, ...]:
    """The folder holding the week modules: the one folder deeper down that holds week modules when
    the top holds none (say, a zip of the whole course), else the top, or the one folder that wraps
    everything."""
    modules = {f"{name}.py" for name in runner.WEEKS.values()}
    holders = {parts[:-1] for parts, (kind, _, _) in entries.items() if parts[-1] in modules and kind == "file"}
    if len(holders) == 1 and () not in holders:
        return holders.pop()
    return _wrapper(entries)


def _wrapper(entries: dict) -> tuple[str, ...]:
    """The top folder, or the one folder that wraps everything (as zips often have)."""
    root = ()
    for _ in range(3):
        children = {parts[len(root)]: entries[parts] for parts in entries
                    if len(parts) == len(root) + 1 and parts[:len(root)] == root
                    and parts[-1] not in IGNORED_NAMES and not parts[-1].startswith(".")}
        folders = [name for name, (kind, _, _) in children.items() if kind == "folder"]
        if len(children) == 1 and folders:
            root = (*root, folders[0])
        else:
            break
    return root


def _read(parts: tuple[str, ...], kind_size_source, archive: zipfile.ZipFile | intake.Folder) -> bytes:
    """The bytes of one regular file, at most MAX_MODULE_BYTES of them whatever its header says;
    raises intake.Refused, naming it, for anything else. From a folder the file is opened without
    following links and checked once open, so it cannot be swapped for a link after the listing."""
    kind, _, source = kind_size_source
    shown = "/".join(parts)
    if isinstance(archive, intake.Folder):
        return archive.read(source, MAX_MODULE_BYTES)
    if kind != "file":
        raise intake.Refused(f"{shown} is {'a symbolic link' if kind == 'link' else 'a ' + kind}: not graded")
    with archive.open(source) as file:
        content = file.read(MAX_MODULE_BYTES + 1)
    if len(content) > MAX_MODULE_BYTES:
        raise intake.Refused(f"{shown} is larger than {MAX_MODULE_BYTES // 2**20} MiB: not graded")
    return content


def stage(submission: Submission, weeks: list[int]) -> Staged:
    """Reads a submission's week modules for `weeks`. Never raises: whatever is wrong (a corrupt or truncated
    zip, odd names, ...) is in the result, as printable one-line problems or as the reason it is `fatal`."""
    if submission.fatal:
        return Staged({}, [], submission.fatal)
    try:
        staged = _stage(submission, weeks)
    except Malformed as error:
        staged = Staged({}, [], str(error))
    except Exception as error:  # noqa: BLE001 - an unreadable submission costs its own row, never the batch
        staged = Staged({}, [], _unreadable(submission, error))
    return Staged(staged.modules, [report.printable(problem) for problem in staged.problems],
                  report.printable(staged.fatal))


def _unreadable(submission: Submission, error: Exception) -> str:
    """Why reading a submission failed, e.g. "not a readable zip file (zlib.error: Error -3 ...)"."""
    kind = type(error).__name__
    if type(error).__module__ != "builtins":
        kind = f"{type(error).__module__.lstrip('_')}.{kind}"  # zlib.error, lzma.LZMAError, zipfile.BadZipFile
    is_zip = submission.path.name.lower().endswith(".zip") and not submission.path.is_dir()
    message = str(error)[:MESSAGE_CHARACTERS_SHOWN]
    return f"{'not a readable zip file' if is_zip else 'could not be read'} ({kind}: {message})"


def _stage(submission: Submission, weeks: list[int]) -> Staged:
    """A folder is read through its directory descriptor, a zip from its bytes, read once; an entry
    that is a symbolic link (to a classmate's folder, say) is not followed but refused."""
    path = submission.path
    kind = intake.entry_kind(path)
    try:
        if kind == "a folder":
            with intake.Folder(path, follow_root=False) as folder:
                return _select(_listing_of_folder(folder), folder, weeks)
        if kind and path.name.lower().endswith(".zip"):  # a link, a FIFO, a device: refused, naming it
            data = intake.read_file(path.parent, path.name, MAX_ZIP_BYTES)
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                return _select(_listing_of_zip(archive, len(data)), archive, weeks)
    except intake.Refused as error:
        raise Malformed(str(error)) from None
    if kind == "a symbolic link":
        raise Malformed(f"{path.name} is a symbolic link: not graded")
    raise Malformed(f"{path.name} is neither a folder nor a .zip file")


def _select(entries: dict, archive, weeks: list[int]) -> Staged:
    root = _root(entries)
    expected = {f"{runner.WEEKS[week]}.py": week for week in weeks}
    known = {f"{name}.py" for name in runner.WEEKS.values()}
    modules, problems, unexpected = {}, [], []
    for parts, entry in sorted(entries.items()):
        kind, size, _ = entry
        name = parts[-1]
        if parts[:-1] != root or name.startswith(".") or name in IGNORED_NAMES:
            continue  # files in sub-folders are not graded: the sub-folder is reported as unexpected
        if name in expected:
            if kind == "file" and size > MAX_MODULE_BYTES:
                problems.append(f"{name} is {size / 2**20:,.1f} MiB, more than {MAX_MODULE_BYTES // 2**20} MiB: "
                                "not graded")
            else:
                try:
                    modules[name] = _read(parts, entry, archive)
                except intake.Refused as error:
                    problems.append(str(error))
        elif name in known:
            continue  # a week not graded in this run
        elif (name.lower().endswith(".py") and (match := LOOKS_LIKE_A_WEEK.search(name))
              and int(match[1]) in runner.WEEKS):
            right = f"{runner.WEEKS[int(match[1])]}.py"
            problems.append(f"wrong file name {_shown(name)!r}: week {match[1]} must be in {right}; not graded")
        else:
            unexpected.append(_shown(name) + ("/" if kind == "folder" else ""))
    for name, week in expected.items():
        if name not in modules and not any(name in problem for problem in problems):
            problems.append(f"missing {name}: week {week} scores 0")
    for name, content in modules.items():
        if problem := compile_problem(name, content):
            problems.append(problem)
    if unexpected:
        shown = ", ".join(unexpected[:NAMES_SHOWN]) + (f" and {len(unexpected) - NAMES_SHOWN} more"
                                                         if len(unexpected) > NAMES_SHOWN else "")
        problems.append(f"ignored files that are not week modules: {shown}")
    if root != _wrapper(entries) and modules:
        problems.insert(0, f"graded the week modules found in {'/'.join(root)}/")
    if not modules:
        where = "/".join(root) + "/" if root else "the top level"
        problems = [problem for problem in problems if not problem.startswith("missing ")]
        raise Malformed(f"no week module to grade in {where} (expected {', '.join(expected)})"
                        + (f"; {'; '.join(problems)}" if problems else ""))
    return Staged(modules, problems)


def _shown(name: str) -> str:
    """A file name as problems show it: at most NAME_CHARACTERS_SHOWN characters."""
    return name if len(name) <= NAME_CHARACTERS_SHOWN else name[:NAME_CHARACTERS_SHOWN - 3] + "..."


def compile_problem(name: str, content: bytes) -> str:
    """"" when the module parses (nothing of it runs here), else a one-line reason."""
    try:
        ast.parse(content, name)
    except SyntaxError as error:
        return f"{name} does not compile: {error.msg} (line {error.lineno}); its week scores 0"
    except (ValueError, RecursionError, MemoryError) as error:
        return f"{name} does not compile: {type(error).__name__}: {error}; its week scores 0"
    return ""


# ---------------------------------------------------------------------------------------------
# Grading


def grader_key(weeks: list[int], reference_folders: dict[int, Path]) -> str:
    """Hash of the grader's code, the weeks graded and their reference evidence."""
    digest = hashlib.sha256(json.dumps(weeks).encode())
    for path in sorted((runner.REPO / "grader").glob("*.py")):
        digest.update(path.name.encode() + path.read_bytes())
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
                                     for check in runner.checks_module(week).CHECKS], 0.0, "", {})
            for week in weeks]


def grade_submission(submission: Submission, staged: Staged, weeks: list[int], settings: runner.Settings) -> dict:
    """results.json of one submission (Gradescope's format, with a `batch` entry in extra_data), its weeks
    graded `settings.jobs` at a time."""
    start = time.perf_counter()
    if staged.fatal:
        reports, status = error_reports(weeks, staged.fatal), ERROR
    else:
        with tempfile.TemporaryDirectory(prefix="course-batch-") as folder:
            for name, content in staged.modules.items():
                Path(folder, name).write_bytes(content)
            reports = session.grade(weeks, Path(folder), settings, in_process=False)
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
# Gradebook and summary


def test_names(weeks: list[int]) -> list[tuple[str, float]]:
    """(column name, max score) of every test of `weeks`, as results.json names them."""
    return [(f"Week {week} / Task {check.task} / {check.name}", check.points)
            for week in weeks for check in runner.checks_module(week).CHECKS]


def gradebook_row(submission: Submission, results: dict | None, failure: str = "") -> dict:
    if results is None:
        return {"submission": submission.name, "status": FAILURE, "score": "", "max_score": "", "percent": "",
                "problems": failure, "tests": {}, "integrity": ""}
    batch = results["extra_data"]["batch"]
    score, maximum = results["score"], results["extra_data"]["max_score"]
    return {"submission": submission.name, "status": batch["status"], "score": score, "max_score": maximum,
            "percent": round(100 * score / maximum, 1) if maximum else 0.0, "problems": "; ".join(batch["problems"]),
            "tests": {test["name"]: test["score"] for test in results["tests"]},
            "integrity": "; ".join(map(str, results["extra_data"].get("integrity", [])))}  # flags for review


def _cell(value) -> str:
    """A CSV cell that a spreadsheet shows as text: a leading quote on any text whose first visible character
    could start a formula (`FORMULA_STARTS`, after any blanks, control or invisible characters or their
    escapes: see `_first_visible`), or that starts with a quote, a tab or a carriage return. No formula can
    come from a submission's name or problems, and two different texts never give the same cell. Numbers
    are written as they are."""
    if isinstance(value, (int, float)):
        return f"{value:g}" if isinstance(value, float) else str(value)
    text = str(value)
    return "'" + text if text.startswith(QUOTED_STARTS) or _first_visible(text) in FORMULA_STARTS else text


def _first_visible(text: str) -> str:
    """The first character of `text` that is not a blank, a control or an invisible character (a Unicode
    space, a line separator, a zero-width or bidirectional character, a byte order mark), nor the escape
    of one that `report.printable` writes (`\\x09`, `\\u200b`); "" when there is none."""
    index = 0
    while index < len(text):
        escape = PRINTABLE_ESCAPE.match(text, index)
        if _is_invisible(text[index]):
            index += 1
        elif escape and (code := int(escape[0][2:], 16)) <= sys.maxunicode and _is_invisible(chr(code)):
            index = escape.end()
        else:
            return text[index]
    return ""


def _is_invisible(character: str) -> bool:
    """Unicode categories Z (spaces, line and paragraph separators) and C (control, format, surrogate,
    private-use and unassigned characters)."""
    return unicodedata.category(character)[0] in "ZC"


def write_gradebook(path: Path, rows: list[dict], tests: list[tuple[str, float]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["submission", "status", "score", "max_score", "percent"] + [name for name, _ in tests]
                    + ["problems", "integrity"])
    for row in sorted(rows, key=lambda row: row["submission"]):
        writer.writerow([_cell(row[key]) for key in ("submission", "status", "score", "max_score", "percent")]
                        + [_cell(row["tests"].get(name, "")) for name, _ in tests] + [_cell(row["problems"])]
                        + [_cell(row.get("integrity", ""))])
    write_atomically(path, buffer.getvalue())


def summary(rows: list[dict], tests: list[tuple[str, float]]) -> dict:
    """Per-test pass rates (full marks) and mean scores, and the distribution of total scores."""
    graded = [row for row in rows if row["status"] != FAILURE]
    per_test = []
    for name, points in tests:
        scores = [row["tests"].get(name, 0.0) for row in graded]
        per_test.append({"test": name, "max_score": points,
                         "pass_rate": sum(score >= points for score in scores) / len(scores) if scores else 0.0,
                         "mean_score": sum(scores) / len(scores) if scores else 0.0})
    percents = sorted(float(row["percent"]) for row in graded)
    bins = [0] * 10
    for percent in percents:
        bins[min(int(percent // 10), 9)] += 1
    median = statistics.median(percents) if percents else 0.0
    return {"submissions": len(rows), "graded": len(graded),
            "statuses": {status: sum(row["status"] == status for row in rows)
                         for status in (GRADED, PROBLEMS, ERROR, FAILURE)},
            "mean_percent": sum(percents) / len(percents) if percents else 0.0, "median_percent": median,
            "distribution": [{"range": f"{10 * index}-{10 * index + 10}%", "count": count}
                             for index, count in enumerate(bins)],
            "tests": per_test}


def summary_markdown(data: dict) -> str:
    lines = ["# Batch grading summary", "",
             f"{data['submissions']} submissions: "
             + ", ".join(f"{count} {status}" for status, count in data["statuses"].items() if count),
             f"mean {data['mean_percent']:.1f}%, median {data['median_percent']:.1f}%", "",
             "## Score distribution", "", "| total | submissions | |", "|---|---:|---|"]
    for entry in data["distribution"]:
        lines.append(f"| {entry['range']} | {entry['count']} | {'#' * entry['count']} |")
    lines += ["", "## Tests", "", "| test | points | full marks | mean score |", "|---|---:|---:|---:|"]
    for test in data["tests"]:
        lines.append(f"| {test['test']} | {test['max_score']:g} | {test['pass_rate']:.0%} | {test['mean_score']:.2f} |")
    return "\n".join(lines) + "\n"


def summary_figure(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tests = data["tests"]
    figure, (scores, rates) = plt.subplots(1, 2, figsize=(13, max(3.5, 0.22 * len(tests) + 1.2)),
                                           gridspec_kw={"width_ratios": [1, 1.6]})
    counts = [entry["count"] for entry in data["distribution"]]
    scores.bar([10 * index + 5 for index in range(10)], counts, width=9)
    scores.set(xlabel="total score (%)", ylabel="submissions", xlim=(0, 100),
               title=f"Scores of {data['submissions']} submissions")
    rates.barh(range(len(tests)), [100 * test["pass_rate"] for test in tests])
    rates.set_yticks(range(len(tests)), [test["test"].replace("Week ", "W").replace(" / Task ", " ")[:50]
                                         for test in tests], fontsize=7)
    rates.invert_yaxis()
    rates.set(xlabel="submissions with full marks (%)", xlim=(0, 100), title="Pass rate per test")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


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
    settings = runner.Settings.from_options(
        vars(args), jobs=args.jobs, protected=(Path(args.submissions).expanduser().resolve(), out.resolve()))
    try:
        level = runner.sandbox_level(settings)
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
            folders = dict(zip(weeks, pool.map(lambda week: runner.reference_folder(week, settings), weeks)))
    except runner.ReferenceEvidenceError as error:
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
