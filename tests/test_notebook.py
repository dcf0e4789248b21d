"""grader.notebook: `notebook.check(week=N)` in a cell grades the notebook's saved code in a new process,
behind the sandbox, and shows the scorecard as a table; nothing the kernel holds (live functions, a
patched grader) changes the score, and inside a grading the call does nothing."""

import json
from pathlib import Path

import nbformat
import pytest

from grader import notebook
from grader import week1_regression as week1_checks
from tests.test_exercise_notebooks import run_headless, solution_notebook

REPO = Path(__file__).resolve().parent.parent
NAME = "week1_regression.ipynb"


def last_output(executed) -> dict:
    (result,) = [output for output in executed.cells[-1].outputs if output["output_type"] == "execute_result"]
    return result["data"]


def test_the_grading_cell_shows_the_scorecard_of_the_saved_notebook(tmp_path):
    path = tmp_path / NAME
    path.write_text(solution_notebook(1))
    executed = run_headless(path.read_text(), tmp_path, {"JPY_SESSION_NAME": str(path)}, skip_grading=False)
    shown = last_output(executed)
    assert "<b>Week 1: 32/32 points</b>" in shown["text/html"] and "<table>" in shown["text/html"]
    assert shown["text/html"].count("<tr") == 1 + len(week1_checks.CHECKS)  # the header, then a row per check
    assert shown["text/plain"].startswith(f"Week 1 ({NAME}): 32/32 points")
    assert "sandbox: bubblewrap" in shown["text/plain"] or "sandbox: user" in shown["text/plain"]


def test_the_kernels_state_does_not_change_the_score(tmp_path):
    """The saved notebook holds the stubs; the kernel first defines the solutions and patches the grading
    engine it imported. The check grades the file, in another process: 0 points, not attempted. (What the
    kernel displays is the student's own process: the score that counts is graded elsewhere.)"""
    path = tmp_path / NAME
    path.write_text((REPO / "exercises" / "notebooks" / NAME).read_text())
    live = nbformat.reads(path.read_text(), as_version=4)
    cheat = ("exec(open(%r).read())\n"
             "import grader.report, grader.runner\n"
             "grader.report.totals = lambda reports: (32.0, 32.0)\n"
             "grader.runner.grade_week = None\n"
             % str(REPO / "solutions" / "week1_regression.py"))
    live.cells.insert(2, nbformat.v4.new_code_cell(cheat))
    executed = run_headless(nbformat.writes(live), tmp_path, {"JPY_SESSION_NAME": str(path)}, skip_grading=False)
    shown = last_output(executed)
    assert shown["text/plain"].startswith(f"Week 1 ({NAME}): 0/32 points")
    assert "not attempted" in shown["text/html"]


def test_inside_a_grading_the_call_does_nothing(tmp_path, monkeypatch):
    """A notebook whose graded code calls check() itself is graded once, not again from inside."""
    monkeypatch.setenv(notebook.IN_GRADED_CHILD, "1")
    assert notebook.check(week=1, notebook=tmp_path / "absent.ipynb") is None
    monkeypatch.delenv(notebook.IN_GRADED_CHILD)
    cells = json.loads(solution_notebook(1))
    cells["cells"][-1]["metadata"] = {}  # the grading cell is now graded code, run when the module is imported
    (tmp_path / NAME).write_text(json.dumps(cells))
    card = notebook.check(notebook=tmp_path / NAME)
    assert (card.week, card.score, card.max_score) == (1, 32, 32)


def test_feedback_of_lost_points_is_shown_and_escaped(tmp_path):
    path = tmp_path / NAME
    text = solution_notebook(1).replace("    z = jnp.exp(-jnp.abs(x))", "    raise ValueError('<b>bold</b>')", 1)
    assert "<b>bold</b>" in text
    path.write_text(text)
    card = notebook.check(week=1, notebook=path)
    lost = [row for row in card.rows if row.score < row.max_score]
    assert lost and {row.name.split(" / ")[0] for row in lost} == {"Task 1.5"}
    html = card._repr_html_()
    assert "&lt;b&gt;bold&lt;/b&gt;" in html and "<b>bold</b>" not in html
    assert f"{NAME} cell " in html, "the location is the notebook's cell"
    assert "raised ValueError" in str(card)


def test_which_notebook_and_week_are_told_or_asked_for(tmp_path, monkeypatch):
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    with pytest.raises(notebook.NotebookCheckError, match="pass its path"):
        notebook.check(week=1)
    (tmp_path / "my work.ipynb").write_text(solution_notebook(1))
    with pytest.raises(notebook.NotebookCheckError, match="cannot tell the week"):
        notebook.check(notebook=tmp_path / "my work.ipynb")
    with pytest.raises(notebook.NotebookCheckError, match="week must be one of"):
        notebook.check(week=9, notebook=tmp_path / "my work.ipynb")
    with pytest.raises(notebook.NotebookCheckError, match="cannot read the notebook"):
        notebook.check(week=1, notebook=tmp_path / "absent.ipynb")
    assert notebook._week_of("Copy of week2_neural_networks.ipynb") == 2


def test_jupyters_session_name_may_be_relative_to_the_servers_folder(tmp_path, monkeypatch):
    """JupyterLab names the notebook relative to the folder it serves; the kernel runs in the notebook's."""
    (tmp_path / NAME).write_text("{}")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("JPY_SESSION_NAME", f"course/exercises/notebooks/{NAME}")
    assert notebook._jupyter_notebook() == tmp_path / NAME
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / NAME))
    assert notebook._jupyter_notebook() == tmp_path / NAME


def test_in_colab_the_notebook_comes_from_the_editor(monkeypatch):
    """Colab's kernel has no notebook file: the check asks the editor for the notebook (`get_ipynb`),
    as Colab's own module does, and grades that."""
    import sys
    import types

    asked = []

    def blocking_request(request, timeout_sec):
        asked.append(request)
        return {"ipynb": json.loads(solution_notebook(1))}

    colab = types.ModuleType("google.colab")
    colab._message = types.SimpleNamespace(blocking_request=blocking_request)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    monkeypatch.setitem(sys.modules, "google.colab._message", colab._message)
    card = notebook.check(week=1)
    assert asked == ["get_ipynb"] and (card.score, card.max_score) == (32, 32)
    assert "as the editor holds it" in card.summary
