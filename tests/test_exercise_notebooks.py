"""grader.instructor.exercise_notebooks: each week's exercise notebook asks for exactly the code its
`.py` stub asks for, runs headless top to bottom (as stubs, and filled in with the solutions), grades
like the module (100% filled in, 0 "not attempted" as published), is kept up to date and safe from
overwriting by `course publish`, and its set-up cell installs the course into a fresh environment."""

import ast
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import nbformat
import pytest

from course import weeks as course_weeks
from grader import notebook_source
from grader.instructor import autograder, exercise_notebooks, publish, release

REPO = Path(__file__).resolve().parent.parent
WEEKS = course_weeks.MODULES


def solution_notebook(week: int) -> str:
    """The week's notebook filled in with the solutions: built from the solution's text, as the
    exercise notebook is from the stub's."""
    name = WEEKS[week]
    return exercise_notebooks.notebook_text((REPO / "solutions" / f"{name}.py").read_text(), name, week, "owner/repo")


def statements(source: str | bytes) -> list[str]:
    """The module's top-level statements (its docstring left out), as syntax trees."""
    body = ast.parse(source).body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    return [ast.dump(statement) for statement in body]


def graded(text: str, week: int) -> bytes:
    return notebook_source.program(text.encode(), f"{WEEKS[week]}.ipynb", f"{WEEKS[week]}.py").source


@pytest.mark.parametrize("week", sorted(WEEKS))
def test_the_notebook_grades_the_same_code_as_the_module(week):
    name = WEEKS[week]
    exercise = (REPO / "exercises" / f"{name}.py").read_text()
    notebook = (REPO / "exercises" / "notebooks" / f"{name}.ipynb").read_text()
    assert statements(graded(notebook, week)) == statements(exercise)
    solution = (REPO / "solutions" / f"{name}.py").read_text()
    assert statements(graded(solution_notebook(week), week)) == statements(solution)


@pytest.mark.parametrize("week", sorted(WEEKS))
def test_a_notebook_has_set_up_tasks_and_grading_in_order(week):
    cells = json.loads((REPO / "exercises" / "notebooks" / f"{WEEKS[week]}.ipynb").read_text())["cells"]
    not_graded = [index for index, cell in enumerate(cells)
                  if notebook_source.NOT_GRADED_TAG in cell["metadata"].get("tags", [])]
    assert not_graded == [1, len(cells) - 1], "the set-up cell second, the grading cell last"
    assert "accelerator.report()" in cells[1]["source"] and "pip" in cells[1]["source"]
    assert cells[-1]["source"].endswith(f"notebook.check(week={week})")
    assert cells[0]["cell_type"] == "markdown" and cells[0]["source"].startswith(f"# Week {week}:")
    assert f"colab.research.google.com/github/deep-into-cnn/deep-into-cnn/blob/main/exercises/notebooks/{WEEKS[week]}.ipynb" \
        in cells[0]["source"]
    tasks = publish.find_tasks((REPO / "solutions" / f"{WEEKS[week]}.py").read_text())
    headings = [cell["source"] for cell in cells if cell["source"].startswith("**Task ")]
    assert headings == [f"**Task {task.id}**: {task.hint}" for task in tasks]
    for index, cell in enumerate(cells):  # each task's cell right after its heading, holding the stub
        if cell["source"].startswith("**Task "):
            task = cell["source"].split("**")[1].removeprefix("Task ")
            following = next(later for later in cells[index:] if later["cell_type"] == "code")
            assert f"# TASK {task}:" in following["source"]


def test_notebooks_are_written_by_publish_and_a_students_notebook_is_never_overwritten(tmp_path, capsys):
    solutions, exercises = tmp_path / "solutions", tmp_path / "exercises"
    solutions.mkdir()
    shutil.copy(REPO / "solutions" / "week1_regression.py", solutions)
    assert publish.main(["--solutions", str(solutions), "--exercises", str(exercises)]) == 0
    notebook = exercises / "notebooks" / "week1_regression.ipynb"
    assert notebook.read_text() == (REPO / "exercises" / "notebooks" / "week1_regression.ipynb").read_text()
    answered = notebook.read_text().replace("raise NotImplementedError(\\\"Task 1.1", "return 0  # mine\\n    #", 1)
    notebook.write_text(answered)
    (solutions / "week1_regression.py").write_text((solutions / "week1_regression.py").read_text()
                                                   .replace("Predictions of a linear model.", "A linear model's predictions."))
    capsys.readouterr()
    assert publish.main(["--solutions", str(solutions), "--exercises", str(exercises)]) == 1
    assert "exercises/notebooks/week1_regression.ipynb" in capsys.readouterr().err.replace(str(tmp_path) + "/", "")
    assert notebook.read_text() == answered
    assert publish.main(["--solutions", str(solutions), "--exercises", str(exercises), "--force"]) == 0
    backups = list((exercises / publish.BACKUPS).glob("*/notebooks/week1_regression.ipynb"))
    assert [backup.read_text() for backup in backups] == [answered]
    assert "A linear model's predictions." in notebook.read_text()


def run_headless(text: str, folder: Path, environment: dict | None = None, skip_grading: bool = True):
    """Executes the notebook `text` as saved in `folder`, in a fresh python3 kernel; returns it run."""
    import nbclient

    notebook = nbformat.reads(text, as_version=4)
    if skip_grading:
        notebook.cells = notebook.cells[:-1]
    client = nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}})
    client.execute(env={**os.environ, "MPLBACKEND": "Agg", **(environment or {})})
    return notebook


@pytest.mark.parametrize("week", sorted(WEEKS))
def test_every_notebook_runs_headless_as_published_and_filled_in(week, tmp_path):
    for text in ((REPO / "exercises" / "notebooks" / f"{WEEKS[week]}.ipynb").read_text(), solution_notebook(week)):
        notebook = run_headless(text, tmp_path)
        setup = "".join(output.get("text", "") for output in notebook.cells[1].outputs)
        assert "runs on CPU" in setup, setup


def test_filled_in_it_grades_100_and_as_published_0_not_attempted(tmp_path):
    filled, published = tmp_path / "filled", REPO / "exercises" / "notebooks"
    filled.mkdir()
    (filled / "week1_regression.ipynb").write_text(solution_notebook(1))
    for target, total, statuses in ((filled, "TOTAL 32/32", {"passed"}), (published, "TOTAL 0/32", {"not attempted"})):
        finished = subprocess.run([sys.executable, "-m", "course", "grade", "1", "--target", str(target)],
                                  capture_output=True, text=True, timeout=600)
        assert finished.returncode == 0, finished.stderr
        assert total in finished.stdout, finished.stdout
        rows = [line.split()[-1] for line in finished.stdout.splitlines() if line.startswith("1 ")]
        found = {"not attempted" if status == "attempted" else status for status in rows}
        assert rows and found == statuses, finished.stdout


def test_course_grade_names_the_cell_that_does_not_compile(tmp_path):
    notebook = json.loads(solution_notebook(1))
    number, cell = next((number, cell) for number, cell in enumerate(notebook["cells"], start=1)
                        if cell["source"].startswith("def mse_loss("))
    cell["source"] = cell["source"].replace("def mse_loss(", "def mse_loss((", 1)
    (tmp_path / "week1_regression.ipynb").write_text(json.dumps(notebook))
    finished = subprocess.run([sys.executable, "-m", "course", "grade", "1", "--target", str(tmp_path)],
                              capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0 and "TOTAL 0/32" in finished.stdout, finished.stdout + finished.stderr
    shown = " ".join(finished.stdout.split())
    assert f"not graded: cell {number} of week1_regression.ipynb ('def mse_loss((predictions: jax.Array, " in shown
    assert "does not compile: Function parameters cannot be parenthesized (line 1:" in shown


def test_the_set_up_cell_installs_the_course_into_a_fresh_environment(tmp_path):
    """The set-up cell, run by a fresh virtual environment's python that lacks the course, installs it
    from COURSE_SOURCE (here the student release's wheel, offline) and reports the CPU. The course's
    dependencies are lent to the environment from this one (a path file), so nothing is downloaded."""
    course_copy, wheels = tmp_path / "course-copy", tmp_path / "wheels"
    release.copy_sources(course_copy, {name: text for name, text in publish.generated_files().items()})
    wheel = autograder.build_wheel(course_copy, wheels)
    fresh = tmp_path / "fresh"
    venv.create(fresh, with_pip=True)
    site_packages = next(fresh.glob("lib/python*/site-packages"))
    lent = tmp_path / "dependencies"
    lent.mkdir()
    ours = next(Path(path) for path in sys.path if path.endswith("site-packages") and Path(path, "jax").is_dir())
    for entry in ours.iterdir():
        if not entry.name.startswith(("__editable__", "deep_into_cnn", "pip", "setuptools", "_distutils_hack",
                                      "distutils-precedence", "pkg_resources")):
            (lent / entry.name).symlink_to(entry)
    (site_packages / "lent-dependencies.pth").write_text(f"{lent}\n")
    python = fresh / "bin" / "python"
    cells = json.loads((REPO / "exercises" / "notebooks" / "week1_regression.ipynb").read_text())["cells"]
    environment = {"PATH": f"{fresh / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "COURSE_SOURCE": str(wheel),
                   "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1", "JAX_PLATFORMS": "cpu"}
    before = subprocess.run([str(python), "-c", "import course"], env=environment, cwd=tmp_path, capture_output=True,
                            text=True)
    assert before.returncode != 0 and "No module named 'course'" in before.stderr
    ran = subprocess.run([str(python), "-c", cells[1]["source"]], env=environment, cwd=tmp_path,
                         capture_output=True, text=True, timeout=600)
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"installing the course from {wheel}" in ran.stdout
    assert "runs on CPU: 1 device(s)" in ran.stdout and "Change runtime type" in ran.stdout
    where = subprocess.run([str(python), "-c", "import course, grader; print(course.__file__, grader.__file__)"],
                           env=environment, cwd=tmp_path, capture_output=True, text=True)
    assert where.stdout.split() == [str(next(site_packages.glob(f"{package}/__init__.py"))) for package in ("course", "grader")]
    again = subprocess.run([str(python), "-c", cells[1]["source"]], env=environment, cwd=tmp_path,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "installing" not in again.stdout  # once installed, it only reports
