"""A batch's summary, for the instructor to read first: `summary.md` (the problems, who, what and why;
then each week's scores, the hardest checks, the distribution of totals and every test's pass rate),
`summary.json` (the same numbers) and `summary.png` (each week's scores and the hardest checks, at
most 1400x850 pixels, every label inside the figure).

Pass rates and week scores count the submissions that attempted the week (its module submitted and
not the untouched starter code), so that a class that did not hand in week 3 does not make week 3's
checks look hard.
"""

import io
import statistics
import textwrap
from pathlib import Path

from course.files import write_atomically
from grader.instructor.gradebook import ERROR, FAILURE, NOTHING, STATUSES, week_of, weeks_of
from grader.instructor.late import Policy

HARDEST = 10  # checks in the "hardest checks" table and figure (those not every submission passed)
FIGURE_INCHES, FIGURE_DPI = (14, 8.5), 100
LABEL_WIDTH, LABEL_LINES = 36, 2  # characters a line, lines, of a check's label in the figure
# What a problem is, from the words of `grader.instructor.submissions` and `batch`; first match wins
PROBLEM_KINDS = (("nothing attempted", "nothing attempted"), ("missing ", "missing week"),
                 ("wrong file name", "wrong file name"), ("does not compile", "does not compile"),
                 ("symbolic link", "symbolic link"), ("ignored files", "ignored files"),
                 ("graded the week modules found in", "modules in a sub-folder"), ("MiB", "file too large"))
SEVERITY = {FAILURE: 0, ERROR: 1, NOTHING: 2}


def kind_of(problem: str) -> str:
    """A problem's kind in a few words ("missing week", "does not compile", ...; else "problem")."""
    return next((kind for words, kind in PROBLEM_KINDS if words in problem), "problem")


def row_problems(row: dict, rules: Policy) -> list[tuple[int, dict]]:
    """(severity, {who, what, why}) of everything the instructor should look at in one row."""
    who, found = row["submission"], []
    if row["status"] == FAILURE:
        return [(0, {"who": who, "what": "grader failure", "why": row["problems"]})]
    if row["status"] == ERROR:
        return [(1, {"who": who, "what": "not graded", "why": row["problems"]})]
    severity = SEVERITY.get(row["status"], 3)
    found += [(severity, {"who": who, "what": kind_of(problem), "why": problem}) for problem in row["problem_list"]]
    if row.get("days_late"):
        days = row["days_late"]
        found.append((4, {"who": who, "what": f"late ({days} day{'s' * (days != 1)})",
                          "why": f"submitted {row['submitted_at']} ({row['time_from']}); {rules.describe()}: "
                                 f"-{100 * row['late_penalty']:g}%, {row['score']:g} points become "
                                 f"{row['final_score']:g}"}))
    elif rules.due is not None and not row.get("submitted_at"):
        found.append((4, {"who": who, "what": "no submission time", "why": row.get("time_from", "")}))
    found += [(5, {"who": who, "what": "integrity flag", "why": flag}) for flag in row.get("integrity_list", [])]
    return found


def _stats(percents: list[float]) -> dict:
    if not percents:
        return {"mean_percent": None, "median_percent": None, "min_percent": None, "max_percent": None}
    return {"mean_percent": statistics.fmean(percents), "median_percent": statistics.median(percents),
            "min_percent": min(percents), "max_percent": max(percents)}


def _mean_and_median(percents: list[float], prefix: str) -> dict:
    stats = _stats(percents)
    return {f"mean_{prefix}percent": stats["mean_percent"] or 0.0,
            f"median_{prefix}percent": stats["median_percent"] or 0.0}


def week_stats(rows: list[dict], week_points: dict[int, float]) -> list[dict]:
    """Per week: its points, how many of `rows` submitted and attempted it, and the percents of those
    that attempted it (with their mean, median, lowest and highest)."""
    weeks = []
    for week, points in week_points.items():
        percents = [100 * row["weeks"].get(week, 0.0) / points for row in rows
                    if week in row["attempted_weeks"] and points]
        weeks.append({"week": week, "points": points, "attempted": len(percents),
                      "submitted": sum(week in row["submitted_weeks"] for row in rows),
                      "percents": percents, **_stats(percents)})
    return weeks


def check_stats(rows: list[dict], tests: list[tuple[str, float]]) -> list[dict]:
    """Per test: how many of `rows` attempted its week, the share of those with full marks and their
    mean score (None when nobody attempted it)."""
    found = []
    for name, points in tests:
        scores = [row["tests"].get(name, 0.0) for row in rows if week_of(name) in row["attempted_weeks"]]
        found.append({"test": name, "max_score": points, "attempted": len(scores),
                      "pass_rate": sum(score >= points for score in scores) / len(scores) if scores else None,
                      "mean_score": statistics.fmean(scores) if scores else None})
    return found


def hardest_checks(tests: list[dict]) -> list[dict]:
    """The HARDEST tests with the lowest full-marks rates (then mean scores), among those attempted and
    not passed by everyone."""
    return sorted((test for test in tests if test["attempted"] and test["pass_rate"] < 1),
                  key=lambda test: (test["pass_rate"], test["mean_score"] / (test["max_score"] or 1)))[:HARDEST]


def distribution(percents: list[float]) -> list[dict]:
    """How many `percents` fall in 0-10%, 10-20%, ..., 90-100% (100% included)."""
    bins = [0] * 10
    for percent in percents:
        bins[min(int(percent // 10), 9)] += 1
    return [{"range": f"{10 * index}-{10 * index + 10}%", "count": count} for index, count in enumerate(bins)]


def summary(rows: list[dict], tests: list[tuple[str, float]], rules: Policy | None = None,
            more_problems: list[dict] = ()) -> dict:
    """Everything summary.md, summary.json and summary.png show, from the gradebook's rows. Totals count
    every row but grader failures; week and test figures the rows that could be graded. `more_problems`
    ({who, what, why}: similar code, the roster) come after the rows' own."""
    rules = rules or Policy()
    graded = [row for row in rows if row["status"] != FAILURE]
    gradable = [row for row in graded if row["status"] != ERROR]
    problems = sorted((entry for row in rows for entry in row_problems(row, rules)),
                      key=lambda entry: (entry[0], entry[1]["who"]))
    week_points, per_test = weeks_of(tests), check_stats(gradable, tests)
    totals = [float(row["final_percent"]) for row in graded]
    return {"submissions": len(rows), "graded": len(graded), "weeks_graded": list(week_points),
            "points": sum(week_points.values()),
            "statuses": {status: sum(row["status"] == status for row in rows) for status in STATUSES},
            "late_policy": rules.describe(), "penalties": rules.due is not None and rules.rule.lower() != "none",
            "late": sum(bool(row.get("days_late")) for row in rows),
            **_mean_and_median([float(row["percent"]) for row in graded], ""), **_mean_and_median(totals, "final_"),
            "problems": [entry for _, entry in problems] + list(more_problems),
            "weeks": week_stats(gradable, week_points), "hardest": hardest_checks(per_test),
            "distribution": distribution(totals), "tests": per_test}


# ---------------------------------------------------------------------------------------------
# summary.md


def _md(text) -> str:
    """Text safe in a Markdown table cell: `|`, HTML and the characters that start links or code are
    escaped (names and problems are already one printable line, `report.printable`)."""
    text = str(text)
    for character in "\\|<>`[]*":
        text = text.replace(character, "\\" + character)
    return text


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}%"


def summary_markdown(data: dict) -> str:
    """summary.md: the problems first (who, what, why), then the tables."""
    counts = ", ".join(f"{count} {status}" for status, count in data["statuses"].items() if count)
    weeks = ", ".join(map(str, data["weeks_graded"]))
    lines = ["# Batch grading summary", "",
             f"{data['submissions']} submissions, week{'s' * (len(data['weeks_graded']) != 1)} {weeks} "
             f"({data['points']:g} points): {counts or 'none'}.",
             f"Totals: mean {data['mean_percent']:.1f}%, median {data['median_percent']:.1f}%"
             + (f"; after late penalties mean {data['mean_final_percent']:.1f}%, "
                f"median {data['median_final_percent']:.1f}%"
                if data["penalties"] else "") + ".",
             f"Late policy: {data['late_policy']}"
             + (f"; {data['late']} submissions late." if data["late"] else "."), "",
             "## Problems: who, what, why", ""]
    if data["problems"]:
        lines += ["| who | what | why |", "|---|---|---|"]
        lines += [f"| {_md(entry['who'])} | {_md(entry['what'])} | {_md(entry['why'])} |" for entry in data["problems"]]
    else:
        lines.append("None: every submission was graded, with nothing to look at.")
    lines += ["", "## Weeks", "", "Percent of the week's points, over the submissions that attempted the week "
              "(submitted it, and not as the untouched starter code).", "",
              "| week | points | submitted | attempted | mean | median | lowest | highest |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for week in data["weeks"]:
        lines.append(f"| {week['week']} | {week['points']:g} | {week['submitted']} | {week['attempted']} | "
                     + " | ".join(_pct(week[key]) for key in ("mean_percent", "median_percent", "min_percent",
                                                               "max_percent")) + " |")
    lines += ["", "## Hardest checks", ""]
    if data["hardest"]:
        lines += [f"The {len(data['hardest'])} checks the fewest submissions got full marks on (of those that "
                  "attempted the week).", "", "| check | points | full marks | mean score | of |",
                  "|---|---:|---:|---:|---:|"]
        lines += [_test_line(test) + f" {test['attempted']} |" for test in data["hardest"]]
    else:
        lines.append("None: every submission that attempted a week got full marks on all its checks.")
    lines += ["", "## Score distribution", "", "| total | submissions | |", "|---|---:|---|"]
    lines += [f"| {entry['range']} | {entry['count']} | {'#' * entry['count']} |" for entry in data["distribution"]]
    lines += ["", "## Tests", "", "| test | points | full marks | mean score |", "|---|---:|---:|---:|"]
    lines += [_test_line(test) for test in data["tests"]]
    return "\n".join(lines) + "\n"


def _test_line(test: dict) -> str:
    rate = "-" if test["pass_rate"] is None else f"{test['pass_rate']:.0%}"
    mean = "-" if test["mean_score"] is None else f"{test['mean_score']:.2f}"
    return f"| {_md(test['test'])} | {test['max_score']:g} | {rate} | {mean} |"


# ---------------------------------------------------------------------------------------------
# summary.png


def check_label(test: str) -> str:
    """A check's label in the figure: "2.10 train_step: loss, accuracy, ..." on at most LABEL_LINES
    lines of LABEL_WIDTH characters."""
    short = test.split(" / Task ", 1)[-1].replace(" / ", " ", 1)
    return "\n".join(textwrap.wrap(short, LABEL_WIDTH, max_lines=LABEL_LINES, placeholder="..."))


def build_figure(data: dict):
    """The summary figure (a matplotlib Figure on an Agg canvas, not drawn yet): the totals' distribution,
    each week's scores (a box and every submission's dot), the hardest checks' full-marks rates."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=FIGURE_INCHES, dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(2, 2, width_ratios=[1, 1.15])
    totals, weeks = figure.add_subplot(grid[0, 0]), figure.add_subplot(grid[1, 0])
    hardest = figure.add_subplot(grid[:, 1])
    counts = [entry["count"] for entry in data["distribution"]]
    totals.bar([10 * index + 5 for index in range(10)], counts, width=9, color="tab:blue")
    totals.yaxis.set_major_locator(MaxNLocator(integer=True))
    totals.set(xlim=(0, 100), ylim=(0, max(counts + [1]) * 1.1), ylabel="submissions",
               xlabel="total score (%)" + (" after late penalties" if data["penalties"] else ""),
               title=f"Totals of {data['graded']} graded submissions (of {data['submissions']})")
    _draw_weeks(weeks, data["weeks"])
    _draw_hardest(hardest, data["hardest"])
    return figure


def _draw_weeks(axes, weeks: list[dict]) -> None:
    positions = list(range(1, len(weeks) + 1))
    filled = [(position, week["percents"]) for position, week in zip(positions, weeks) if week["percents"]]
    if filled:
        axes.boxplot([percents for _, percents in filled], positions=[position for position, _ in filled], widths=0.5,
                     showfliers=False)
        for position, percents in filled:
            offsets = [0.15 * ((index * 0.618) % 1 - 0.5) for index in range(len(percents))]  # spread, not random
            axes.plot([position + offset for offset in offsets], percents, "o", color="tab:orange", alpha=0.6, ms=4)
    axes.set_xticks(positions, [f"week {week['week']}\nn={week['attempted']}" for week in weeks])
    axes.set_yticks(range(0, 101, 20))
    axes.set(xlim=(0.4, len(weeks) + 0.6), ylim=(-5, 105), ylabel="% of the week's points",
             title="Scores per week, of the n submissions that attempted it")


def _draw_hardest(axes, hardest: list[dict]) -> None:
    if not hardest:
        axes.text(0.5, 0.5, "every check: full marks\nfrom every submission that attempted it", ha="center",
                  va="center", transform=axes.transAxes)
        axes.set_axis_off()
        return
    rates = [100 * test["pass_rate"] for test in hardest]
    axes.barh(range(len(hardest)), rates, color="tab:red")
    axes.set_yticks(range(len(hardest)), [check_label(test["test"]) for test in hardest], fontsize=9)
    axes.invert_yaxis()
    for index, (rate, test) in enumerate(zip(rates, hardest)):
        passed = round(test["pass_rate"] * test["attempted"])
        axes.text(min(rate + 1, 80), index, f"{rate:.0f}% ({passed}/{test['attempted']})", va="center", fontsize=9)
    axes.set(xlim=(0, 100), xlabel="submissions with full marks (%)",
             title=f"The {len(hardest)} checks with the fewest full marks")


def summary_figure(data: dict, path: Path) -> None:
    """Writes summary.png whole (`write_atomically`)."""
    buffer = io.BytesIO()
    build_figure(data).savefig(buffer, format="png")
    write_atomically(path, buffer.getvalue())
