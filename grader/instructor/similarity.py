"""`course similarity SUBMISSIONS --out DIR [--weeks N ...] [--threshold 0.5]` (and `grade-batch
--similarity`): which submissions share code, week module by week module.

Each pair of submissions of a week is compared with copydetect (https://github.com/blingenf/copydetect,
MIT), MOSS's method: the code is tokenized (pygments) with every name replaced by one letter, so that
renaming variables changes nothing; its k-grams (25 characters of tokens) are hashed and winnowed
(a window of 6, so that every match of 30 or more is found); the k-grams of the week's starter code
(`exercises/weekN_*.py`) are boilerplate and never count. A pair's shares are the part of each
submission's own code (the starter code apart) found in the other's; a pair is flagged when either
share reaches the threshold (default 50%).

    DIR/similarity.html   the flagged pairs, each with both modules side by side, matches highlighted
    DIR/similarity.csv    week, both submissions, both shares and the matched length, one line a pair

Measured on week 1: a copy with renamed variables and changed comments shares 100% both ways; two
correct solutions written deliberately differently, and the reference, 17-37% (mostly k-grams where
the starter code meets the answers); honest work that follows the hints of one-line tasks closely
shares more. A flag asks for a look, it is not a finding. (copydetect hashes k-grams with Python's `hash`, salted anew in each process, so
the winnowed fingerprints, and a share, differ a little from one run to the next: one honest pair
measured 17% to 23% over five runs.) Submissions are read only through `grader.instructor.submissions`;
every text of a submission is escaped in the report (`report.printable`, then HTML), and the page may
run no script (its Content-Security-Policy).
"""

import argparse
import csv
import dataclasses
import html
import io
import statistics
import sys
from pathlib import Path

from course import weeks as course_weeks
from course.files import write_atomically
from grader import grading, notebook_source, report
from grader.instructor.gradebook import _cell
from grader.instructor.submissions import find_submissions, stage

NOISE, GUARANTEE = 25, 30  # copydetect's k (characters of tokens) and the match length always found
DEFAULT_THRESHOLD = 0.5
CONTEXT_LINES = 8  # lines kept around the highlighted matches in the report
MAX_PAIRS_SHOWN = 100  # pairs shown side by side in the report (the CSV lists them all)
OUTPUTS = ("similarity.html", "similarity.csv")


@dataclasses.dataclass
class Pair:
    """Two submissions' modules of one week: the share of each one's own code found in the other's,
    the matched length (characters of tokens) and where the matches lie in each text."""

    week: int
    first: str
    second: str
    first_share: float
    second_share: float
    matched: int
    slices: tuple = ()

    @property
    def share(self) -> float:
        return max(self.first_share, self.second_share)


@dataclasses.dataclass
class Comparison:
    """What was compared: the texts shown ({week: {submission: text}}), the flagged pairs (highest share
    first) and, per week, every pair's share (to choose a threshold by)."""

    texts: dict[int, dict[str, str]]
    flagged: list[Pair]
    shares: dict[int, list[float]]
    threshold: float


def shown_text(content: bytes | str) -> str:
    """A module as compared and shown: UTF-8 (bad bytes replaced), tabs expanded, every character that
    could hide or reorder text escaped (`report.printable`), newlines kept."""
    text = content.decode("utf-8", errors="replace") if isinstance(content, bytes) else content
    return report.printable(text.replace("\r\n", "\n").expandtabs(4), lines=True)


def fingerprint(text: str, boilerplate=None, window: int = GUARANTEE - NOISE + 1):
    """copydetect's fingerprint of a Python text held in memory (nothing is read from disk)."""
    from copydetect import CodeFingerprint

    return CodeFingerprint("module.py", NOISE, window, boilerplate=boilerplate, fp=io.StringIO(text))


def boilerplate_of(starter: str):
    """Every k-gram hash of the starter code (window 1: all of them, not a winnowed few)."""
    import numpy as np

    return np.unique(np.array(sorted(fingerprint(starter, window=1).hashes), dtype=np.int64)) if starter else None


def compare_week(week: int, texts: dict[str, str], starter: str, threshold: float) -> tuple[list[Pair], list[float]]:
    """(the pairs of `texts` ({submission: text}) whose larger share reaches `threshold`, every pair's
    larger share), the `starter` code excluded."""
    from copydetect import compare_files

    boilerplate = boilerplate_of(starter)
    prints = {name: fingerprint(text, boilerplate) for name, text in sorted(texts.items())}
    names, flagged, shares = list(prints), [], []
    for index, first in enumerate(names):
        for second in names[index + 1:]:
            matched, (first_share, second_share), slices = compare_files(prints[first], prints[second])
            pair = Pair(week, first, second, float(first_share), float(second_share), int(matched), slices)
            shares.append(pair.share)
            if matched and pair.share >= threshold:
                flagged.append(pair)
    return flagged, shares


def starter_code(week: int) -> str:
    """The week's exercise module, the starter code every student was given ("" when there is none)."""
    path = grading.REPO / "exercises" / f"{grading.WEEKS[week]}.py"
    return shown_text(path.read_bytes()) if path.is_file() else ""


def week_text(files: dict[str, bytes], week: int) -> str | None:
    """The text of a week as graded: its module, else its notebook's code cells (`grader.notebook_source`);
    None when the submission has neither, or a notebook that cannot be read."""
    module, notebook = f"{grading.WEEKS[week]}.py", f"{grading.WEEKS[week]}.ipynb"
    if module in files:
        return shown_text(files[module])
    if notebook not in files:
        return None
    try:
        return shown_text(notebook_source.program(files[notebook], notebook, module).source)
    except notebook_source.NotebookError:
        return None


def compare(modules: dict[str, dict[str, bytes]], weeks: list[int],
            threshold: float = DEFAULT_THRESHOLD) -> Comparison:
    """Compares, week by week, the submissions' modules ({submission: {file name: bytes}}, as
    `submissions.stage` reads them)."""
    texts, flagged, shares = {}, [], {}
    for week in weeks:
        held = {submission: week_text(files, week) for submission, files in modules.items()}
        texts[week] = {submission: text for submission, text in held.items() if text is not None}
        pairs, shares[week] = compare_week(week, texts[week], starter_code(week), threshold)
        flagged += pairs
    flagged.sort(key=lambda pair: (-pair.share, pair.week, pair.first, pair.second))
    return Comparison(texts, flagged, shares, threshold)


def problems(comparison: Comparison) -> list[dict]:
    """The flagged pairs as summary.md's problems: {who, what, why}."""
    return [{"who": f"{pair.first} and {pair.second}", "what": f"similar code (week {pair.week})",
             "why": f"{pair.first_share:.0%} of {pair.first}'s week {pair.week} code is found in {pair.second}'s, "
                    f"{pair.second_share:.0%} of {pair.second}'s in {pair.first}'s; see similarity.html"}
            for pair in comparison.flagged]


# ---------------------------------------------------------------------------------------------
# The report

STYLE = """body{font-family:sans-serif;margin:1.5em}table{border-collapse:collapse}td,th{border:1px solid #ccc;
padding:2px 8px;text-align:left}.side{display:grid;grid-template-columns:1fr 1fr;gap:1em}
pre{background:#f6f6f6;padding:.5em;overflow-x:auto;font-size:12px}mark{background:#ffd27f}"""


def highlighted(text: str, slices) -> str:
    """`text` HTML-escaped, its matched regions in <mark>, far from any match shortened to '...'."""
    from copydetect.utils import highlight_overlap

    shown, _ = highlight_overlap(text, slices, "<mark>", "</mark>", truncate=CONTEXT_LINES, escape_html=True)
    return shown


def report_html(comparison: Comparison) -> str:
    """similarity.html: the settings, each week's shares, the flagged pairs side by side."""
    from copydetect import __version__

    escape = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'>",
             "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; style-src 'unsafe-inline'\">",
             f"<title>Similar submissions</title><style>{STYLE}</style></head><body><h1>Similar submissions</h1>",
             f"<p>copydetect {escape(__version__)}: names tokenized away, k-grams of {NOISE}, every match of "
             f"{GUARANTEE} or more found; the starter code (exercises/) excluded. A pair is flagged when the part "
             f"of either one's own code found in the other's reaches {comparison.threshold:.0%}. "
             "A flag asks for a look; it is not a finding.</p>",
             "<table><tr><th>week</th><th>submissions</th><th>pairs</th><th>flagged</th><th>highest share</th>"
             "<th>median share</th></tr>"]
    for week, shares in comparison.shares.items():
        flagged = sum(pair.week == week for pair in comparison.flagged)
        high, median = (f"{max(shares):.0%}", f"{statistics.median(shares):.0%}") if shares else ("-", "-")
        parts.append(f"<tr><td>{week}</td><td>{len(comparison.texts[week])}</td><td>{len(shares)}</td>"
                     f"<td>{flagged}</td><td>{high}</td><td>{median}</td></tr>")
    parts += ["</table>", f"<h2>{len(comparison.flagged)} flagged pairs</h2>"]
    if comparison.flagged:
        parts.append("<table><tr><th>#</th><th>week</th><th>first</th><th>second</th><th>share of first</th>"
                     "<th>share of second</th><th>matched</th></tr>")
        for number, pair in enumerate(comparison.flagged, 1):
            link = f"<a href='#pair-{number}'>{number}</a>" if number <= MAX_PAIRS_SHOWN else str(number)
            parts.append(f"<tr><td>{link}</td><td>{pair.week}</td><td>{escape(pair.first)}</td>"
                         f"<td>{escape(pair.second)}</td><td>{pair.first_share:.0%}</td>"
                         f"<td>{pair.second_share:.0%}</td><td>{pair.matched}</td></tr>")
        parts.append("</table>")
    for number, pair in enumerate(comparison.flagged[:MAX_PAIRS_SHOWN], 1):
        texts = comparison.texts[pair.week]
        parts.append(f"<h3 id='pair-{number}'>{number}. week {pair.week}: {escape(pair.first)} and "
                     f"{escape(pair.second)}</h3><div class='side'>")
        for name, share, slices in ((pair.first, pair.first_share, pair.slices[0]),
                                    (pair.second, pair.second_share, pair.slices[1])):
            parts.append(f"<div><h4>{escape(name)}: {share:.0%} found in the other</h4>"
                         f"<pre>{highlighted(texts[name], slices)}</pre></div>")
        parts.append("</div>")
    return "\n".join(parts + ["</body></html>\n"])


def report_csv(comparison: Comparison) -> str:
    """similarity.csv: one line per flagged pair, highest share first."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["week", "first", "second", "first_share_percent", "second_share_percent", "matched"])
    for pair in comparison.flagged:
        writer.writerow([pair.week, _cell(pair.first), _cell(pair.second), round(100 * pair.first_share, 1),
                         round(100 * pair.second_share, 1), pair.matched])
    return buffer.getvalue()


def write_report(out: Path, comparison: Comparison) -> None:
    """Writes DIR/similarity.html and DIR/similarity.csv, each whole."""
    write_atomically(out / "similarity.html", report_html(comparison))
    write_atomically(out / "similarity.csv", report_csv(comparison))


def describe(comparison: Comparison) -> str:
    """One line per week: how many submissions, pairs and flags."""
    return "\n".join(f"week {week}: {len(comparison.texts[week])} submissions, {len(shares)} pairs, "
                     f"{sum(pair.week == week for pair in comparison.flagged)} at {comparison.threshold:.0%} or more"
                     for week, shares in comparison.shares.items())


# ---------------------------------------------------------------------------------------------
# The command


def parser() -> argparse.ArgumentParser:
    commands = argparse.ArgumentParser(prog="course similarity", description="Which submissions share code: each "
                                       "week's modules compared pair by pair (copydetect), the starter code excluded.")
    commands.add_argument("submissions", metavar="SUBMISSIONS", help="folder holding one folder or .zip per student")
    commands.add_argument("--out", required=True, metavar="DIR", help="where similarity.html and similarity.csv go")
    commands.add_argument("--weeks", nargs="+", metavar="WEEK", help="weeks to compare (default: all they contain)")
    commands.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                          help="flag a pair when either one's share found in the other reaches this (default 0.5)")
    return commands


def main(argv: list[str] | None = None) -> int:
    """Runs `course similarity`; 0 when the report is written, 2 on bad usage."""
    args = parser().parse_args(argv)
    try:
        weeks = course_weeks.chosen(args.weeks)
        found = find_submissions(Path(args.submissions).expanduser())
        if not 0 < args.threshold <= 1:
            raise ValueError(f"--threshold {args.threshold:g}: expected a share above 0 and at most 1, e.g. 0.5")
    except ValueError as error:
        print(f"course similarity: {error}", file=sys.stderr)
        return 2
    modules = {}
    for submission in found:
        staged = stage(submission, weeks)
        if staged.fatal:
            print(f"course similarity: {submission.name}: {staged.fatal}", file=sys.stderr)
        elif staged.modules:
            modules[submission.name] = staged.modules
    held = [week for week in weeks if any(week_text(files, week) is not None for files in modules.values())]
    comparison = compare(modules, held, args.threshold)
    out = Path(args.out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    write_report(out, comparison)
    print(describe(comparison) or "no week module to compare")
    print(f"report: {out / 'similarity.html'}; flagged pairs: {out / 'similarity.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
