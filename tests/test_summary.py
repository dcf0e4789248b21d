"""Tests of a batch's summary (`grader.instructor.summary`): summary.md lists the problems first (who,
what, why), pass rates count only the submissions that attempted a week, and summary.png is at most
1600x1200 pixels with integer count ticks and every label inside the figure, for a class of all six
weeks' long check names; the rows are made in memory, nothing is graded."""

import random
from pathlib import Path

import pytest
from PIL import Image

from grader.instructor import gradebook, late, similarity, summary
from grader.instructor.submissions import Submission

WEEKS = [1, 2, 3, 4, 5, 6]
TESTS = gradebook.test_names(WEEKS)


def results(name: str, scores: dict[str, float], status: str, problems: list[str], attempted: list[int],
            integrity: list[str] = ()) -> dict:
    return {"score": sum(scores.values()), "tests": [{"name": test, "score": score} for test, score in scores.items()],
            "extra_data": {"max_score": sum(points for _, points in TESTS), "integrity": list(integrity),
                           "batch": {"submission": name, "status": status, "problems": problems, "weeks": WEEKS,
                                     "submitted_weeks": attempted, "attempted_weeks": attempted}}}


def make_row(name: str, share: float, status: str = gradebook.GRADED, problems: list[str] = (),
             attempted: list[int] = (1, 2, 4, 5, 6), lateness: dict | None = None, integrity: list[str] = ()) -> dict:
    """A row whose tests of the attempted weeks score `share` of their points, at random per test."""
    chooser = random.Random(name)
    scores = {test: (points if chooser.random() < share else 0.0) if int(test.split()[1]) in attempted else 0.0
              for test, points in TESTS}
    return gradebook.gradebook_row(Submission(name, Path(name), name),
                                   results(name, scores, status, list(problems), list(attempted), integrity),
                                   lateness=lateness)


@pytest.fixture(scope="module")
def data() -> dict:
    rules = late.policy("2025-03-07T23:59Z", "10%/day")
    rows = [make_row(f"student_{index:02d}", index / 40) for index in range(40)]
    rows += [make_row("stubs", 0.0, gradebook.NOTHING, ["nothing attempted in week1_regression.py: every task is "
                                                        "still the starter code; week 1 scores 0"], attempted=[]),
             make_row("half", 0.9, gradebook.PROBLEMS, ["missing week2_neural_networks.py: week 2 scores 0"],
                      attempted=[1, 4, 5, 6]),
             make_row("late_one", 1.0, lateness={"submitted_at": "2025-03-09T10:00:00+00:00", "time_from": "file time",
                                                 "days_late": 2, "late_penalty": 0.2}),
             make_row("flagged", 1.0, integrity=["integrity: the code patches jax.jit at line 12 of week1_regression.py"]),
             make_row("broken|name", 0.0, gradebook.ERROR, ["no week module to grade in the top level"], attempted=[]),
             gradebook.gradebook_row(Submission("crashed", Path("x"), "x"), None, "the grader failed (OSError: x)")]
    comparison = similarity.Comparison({1: {}}, [similarity.Pair(1, "alice", "bob", 1.0, 0.98, 700)], {1: [1.0]}, 0.5)
    return summary.summary(rows, TESTS, rules, similarity.problems(comparison))


def test_summary_md_lists_the_problems_first_who_what_why(data):
    text = summary.summary_markdown(data)
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections[0] == "## Problems: who, what, why" and "## Weeks" in sections and "## Hardest checks" in sections
    problems = text[text.index("## Problems"):text.index("## Weeks")]
    expected = [("crashed", "grader failure", "the grader failed (OSError: x)"),
                ("broken\\|name", "not graded", "no week module to grade"),
                ("stubs", "nothing attempted", "every task is still the starter code"),
                ("half", "missing week", "missing week2_neural_networks.py"),
                ("late_one", "late (2 days)", "-20%, 184 points become 147.2"),
                ("flagged", "integrity flag", "patches jax.jit"),
                ("alice and bob", "similar code (week 1)", "100% of alice's week 1 code is found in bob's")]
    positions = []
    for who, what, why in expected:
        [line] = [line for line in problems.splitlines() if line.startswith(f"| {who} | {what} |")]
        assert why in line, line
        positions.append(problems.index(line))
    assert positions == sorted(positions)  # failures first, then errors, untouched work, problems, late, ...
    assert "5 submissions late" not in text and "1 submissions late" in text
    assert "after late penalties" in text and "| Week 1 / Task 1.2 / mse_loss: value |" in text


def test_pass_rates_count_only_the_submissions_that_attempted_the_week(data):
    weeks = {week["week"]: week for week in data["weeks"]}
    assert weeks[3]["attempted"] == 0 and weeks[3]["mean_percent"] is None  # nobody handed in week 3
    assert weeks[2]["attempted"] == weeks[1]["attempted"] - 1  # "half" did not submit week 2
    week3 = [test for test in data["tests"] if test["test"].startswith("Week 3 ")]
    assert week3 and all(test["attempted"] == 0 and test["pass_rate"] is None for test in week3)
    assert data["hardest"] and all(not test["test"].startswith("Week 3 ") for test in data["hardest"])
    assert [test["pass_rate"] for test in data["hardest"]] == sorted(test["pass_rate"] for test in data["hardest"])
    assert len(data["hardest"]) == summary.HARDEST and all(test["pass_rate"] < 1 for test in data["hardest"])


def drawn_tick_labels(axis) -> list:
    """The tick labels matplotlib draws: those of the ticks inside the axis's view."""
    low, high = sorted(axis.get_view_interval())
    return [label for location, label in zip(axis.get_majorticklocs(), axis.get_majorticklabels())
            if low <= location <= high]


def test_summary_png_is_small_with_integer_counts_and_every_label_inside(data, tmp_path):
    summary.summary_figure(data, tmp_path / "summary.png")
    with Image.open(tmp_path / "summary.png") as image:
        width, height = image.size
    assert width <= 1600 and height <= 1200
    figure = summary.build_figure(data)
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    box = figure.bbox
    texts = list(figure.texts)
    for axes in figure.axes:
        texts += [axes.title, axes.xaxis.label, axes.yaxis.label, *axes.texts,
                  *drawn_tick_labels(axes.xaxis), *drawn_tick_labels(axes.yaxis)]
    shown = [text for text in texts if text.get_visible() and text.get_text().strip()]
    assert len(shown) > 30
    outside = [text.get_text() for text in shown
               if not (box.x0 - 1 <= (extent := text.get_window_extent(renderer)).x0 and extent.x1 <= box.x1 + 1
                       and box.y0 - 1 <= extent.y0 and extent.y1 <= box.y1 + 1)]
    assert outside == []
    for axes in figure.axes:  # no two tick labels of an axis overlap
        for axis in (axes.xaxis, axes.yaxis):
            extents = [label.get_window_extent(renderer) for label in drawn_tick_labels(axis) if label.get_text()]
            assert not [(a, b) for index, a in enumerate(extents) for b in extents[index + 1:] if a.overlaps(b)]
    totals = figure.axes[0]
    assert all(float(tick).is_integer() for tick in totals.get_yticks())
    labels = [label.get_text() for label in figure.axes[2].get_yticklabels()]
    assert len(labels) == summary.HARDEST and all(len(line) <= summary.LABEL_WIDTH for label in labels
                                                   for line in label.splitlines())


def test_an_empty_or_perfect_class_still_draws(tmp_path):
    perfect = [make_row(f"s{index}", 1.0) for index in range(3)]
    for rows in ([], perfect):
        data = summary.summary(rows, TESTS)
        assert data["hardest"] == []
        summary.summary_figure(data, tmp_path / "summary.png")
        assert "None: every submission that attempted a week got full marks" in summary.summary_markdown(data)
    assert "None: every submission was graded, with nothing to look at." in summary.summary_markdown(
        summary.summary(perfect, TESTS))


def test_markdown_cells_cannot_break_the_table():
    assert summary._md("a|b <script> `x` [link](y) *") == "a\\|b \\<script\\> \\`x\\` \\[link\\](y) \\*"
