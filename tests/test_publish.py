"""Tests of `course publish`: exercises generated from the solutions' task markers."""

import ast
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grader.instructor import publish

REPO = Path(__file__).resolve().parent.parent

SOLUTION = '''"""A module."""

import jax.numpy as jnp


def double(x):
    """Twice x."""
    if x is None:
        raise ValueError("x is None")
    # BEGIN TASK 9.1: multiply by two
    y = 2 * x
    return y
    # END TASK


class Model:
    def __call__(self, x):
        """Calls."""
        # BEGIN TASK 9.2: return x plus one
        def helper(v):
            return v + 1

        return helper(x)
        # END TASK
'''


def test_exercises_are_up_to_date():
    stale = publish.out_of_date()
    assert not stale, f"exercises/ is out of date: {stale}; run `course publish`"


def test_check_mode_reports_out_of_date_files(tmp_path, capsys, monkeypatch):
    solutions, exercises = tmp_path / "solutions", tmp_path / "exercises"
    solutions.mkdir()
    (solutions / "week9.py").write_text(SOLUTION)
    assert publish.out_of_date(solutions, exercises) == ["week9.py"]
    assert publish.publish(solutions, exercises) == ["week9.py"]
    assert publish.out_of_date(solutions, exercises) == []
    (exercises / "week9.py").write_text("edited")
    assert publish.out_of_date(solutions, exercises) == ["week9.py"]
    monkeypatch.setattr(publish, "out_of_date", lambda *folders: ["week9.py"])
    assert publish.main(["--check"]) == 1
    assert "exercises/week9.py" in capsys.readouterr().out


def published_course(tmp_path):
    """A solutions/ holding week9.py and the exercises/ published from it; returns both folders."""
    solutions, exercises = tmp_path / "solutions", tmp_path / "exercises"
    solutions.mkdir()
    (solutions / "week9.py").write_text(SOLUTION)
    assert publish.main(["--solutions", str(solutions), "--exercises", str(exercises)]) == 0
    return solutions, exercises


STUDENT_ANSWER = SOLUTION.replace("y = 2 * x", "y = x + x  # my answer")


def test_publish_never_overwrites_a_students_edit(tmp_path, capsys):
    solutions, exercises = published_course(tmp_path)
    (exercises / "week9.py").write_text(STUDENT_ANSWER)
    (solutions / "week9.py").write_text(SOLUTION.replace("Twice x.", "Two times x."))  # the stub changes too
    capsys.readouterr()
    assert publish.main(["--solutions", str(solutions), "--exercises", str(exercises)]) == 1
    assert (exercises / "week9.py").read_text() == STUDENT_ANSWER
    error = capsys.readouterr().err
    assert "refusing to overwrite 1 edited file(s); nothing was written" in error
    assert publish.shown(exercises / "week9.py") in error and "--force" in error
    assert not (exercises / publish.BACKUPS).exists()


def test_publish_rewrites_a_stale_stub_that_nobody_edited(tmp_path, capsys):
    solutions, exercises = published_course(tmp_path)
    (solutions / "week9.py").write_text(SOLUTION.replace("Twice x.", "Two times x."))
    assert publish.edited(solutions, exercises) == []
    assert publish.main(["--solutions", str(solutions), "--exercises", str(exercises)]) == 0
    assert "Two times x." in (exercises / "week9.py").read_text()
    assert f"wrote {publish.shown(exercises / 'week9.py')}" in capsys.readouterr().out


def test_without_a_record_every_file_unlike_the_stub_counts_as_edited(tmp_path):
    solutions, exercises = published_course(tmp_path)
    (exercises / publish.RECORD).unlink()
    (solutions / "week9.py").write_text(SOLUTION.replace("Twice x.", "Two times x."))
    assert publish.edited(solutions, exercises) == ["week9.py"]
    with pytest.raises(publish.EditedError, match="week9.py"):
        publish.publish(solutions, exercises)


def test_publish_force_backs_up_what_it_replaces(tmp_path, capsys):
    solutions, exercises = published_course(tmp_path)
    (exercises / "week9.py").write_text(STUDENT_ANSWER)
    capsys.readouterr()
    assert publish.main(["--solutions", str(solutions), "--exercises", str(exercises), "--force"]) == 0
    assert (exercises / "week9.py").read_text() == publish.exercise_source(SOLUTION, "week9.py")
    backups = list((exercises / publish.BACKUPS).glob("*/week9.py"))
    assert len(backups) == 1 and backups[0].read_text() == STUDENT_ANSWER
    assert f"backed up edited {publish.shown(exercises / 'week9.py')} to {publish.shown(backups[0])}" in capsys.readouterr().out


def test_check_says_what_to_do_for_an_instructor_and_a_student(tmp_path, capsys):
    solutions, exercises = published_course(tmp_path)
    (solutions / "week9.py").write_text(SOLUTION.replace("Twice x.", "Two times x."))
    (solutions / "week8.py").write_text(SOLUTION.replace("9.", "8."))
    (exercises / "week9.py").write_text(STUDENT_ANSWER)
    capsys.readouterr()
    assert publish.main(["--check", "--solutions", str(solutions), "--exercises", str(exercises)]) == 1
    output = capsys.readouterr().out
    assert "out of date: exercises/week8.py" in output and "edited: exercises/week9.py" in output
    assert "Instructor: run `course publish`" in output and "`course publish --force`" in output
    assert "Student: your answers are in the edited files of exercises/" in output and "nothing to do" in output
    assert "copy your answers back from the exercises/.backup/<time>/" in output
    assert (exercises / "week9.py").read_text() == STUDENT_ANSWER


def test_generated_exercise_keeps_signatures_docstrings_and_checks():
    text = publish.exercise_source(SOLUTION, "week9.py")
    assert text.startswith("# GENERATED by `course publish` from solutions/week9.py")
    assert "y = 2 * x" not in text and "helper" not in text
    assert '    # TASK 9.1: multiply by two\n    raise NotImplementedError("Task 9.1 (double): not attempted")' in text
    assert 'raise NotImplementedError("Task 9.2 (Model.__call__): not attempted")' in text
    assert 'raise ValueError("x is None")' in text  # code before the block stays
    tree = ast.parse(text)
    assert ast.get_docstring(tree) == "A module."
    functions = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    assert ast.get_docstring(functions["double"]) == "Twice x."
    assert [arg.arg for arg in functions["__call__"].args.args] == ["self", "x"]


def test_tasks_are_found_with_their_functions():
    tasks = publish.find_tasks(SOLUTION)
    assert [(t.id, t.function, t.hint) for t in tasks] == [("9.1", "double", "multiply by two"),
                                                          ("9.2", "Model.__call__", "return x plus one")]


@pytest.mark.parametrize("broken, message", [
    (SOLUTION.replace("    # END TASK\n\n\nclass", "\n\nclass"), "BEGIN TASK inside task"),
    (SOLUTION.replace("        # END TASK\n", ""), "has no END TASK"),
    (SOLUTION.replace("    # BEGIN TASK 9.1: multiply by two\n", ""), "END TASK without a BEGIN TASK"),
    (SOLUTION.replace("    return y\n    # END TASK", "    # END TASK\n    return y"), "must run to the end"),
    (SOLUTION.replace("TASK 9.2", "TASK 9.1"), "task ids repeat"),
    ("# BEGIN TASK 1.1: top level\nx = 1\n# END TASK\n", "not inside a function"),
])
def test_malformed_markers_are_rejected(broken, message):
    with pytest.raises(publish.MarkerError, match=message):
        publish.exercise_source(broken, "week9.py")


def test_every_solution_has_tasks_numbered_in_order():
    from grader.grading import WEEKS

    for week, name in WEEKS.items():
        source = (publish.REPO / "solutions" / f"{name}.py").read_text()
        ids = [task.id for task in publish.find_tasks(source, name)]
        assert ids == [f"{week}.{n}" for n in range(1, len(ids) + 1)], (name, ids)


def filled_in(exercise: str, solution: str, task_ids: set[str]) -> str:
    """The exercise with the tasks `task_ids` written as the solution writes them."""
    solution_lines = solution.splitlines()
    blocks = {task.id: solution_lines[task.begin:task.end - 1] for task in publish.find_tasks(solution)}
    lines, skip_raise = [], False
    for line in exercise.splitlines():
        task = re.match(r"\s*# TASK (\d+\.\d+):", line)
        if task and task[1] in task_ids:
            lines += blocks[task[1]]
            skip_raise = True
        elif skip_raise:
            assert "raise NotImplementedError" in line
            skip_raise = False
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def train_mlp(root: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "course", "train", "mlp", "--dataset", "shapes_gray", "--epochs", "2", "--quiet"]
    environment = {**os.environ, "PYTHONPATH": str(root), "JAX_PLATFORMS": "cpu"}
    return subprocess.run(command, cwd=root, env=environment, capture_output=True, text=True, timeout=600)


def test_course_train_from_exercises_trains_with_the_students_step(tmp_path):
    """A student release (course/ and exercises/, no solutions/) trains with the student's own
    week 2 code: with the tasks filled in, to the reference's accuracy; with train_step left, not at all."""
    release = tmp_path / "release"
    shutil.copytree(REPO / "course", release / "course", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(REPO / "exercises", release / "exercises", ignore=shutil.ignore_patterns("__pycache__"))
    exercise = (REPO / "exercises" / "week2_neural_networks.py").read_text()
    solution = (REPO / "solutions" / "week2_neural_networks.py").read_text()
    week2 = release / "exercises" / "week2_neural_networks.py"

    week2.write_text(filled_in(exercise, solution, {"2.6", "2.7", "2.8", "2.9", "2.11"}))
    stopped = train_mlp(release)
    assert stopped.returncode == 2 and "Task 2.10 (train_step) is not written yet" in stopped.stderr

    week2.write_text(filled_in(exercise, solution, {"2.6", "2.7", "2.8", "2.9", "2.10", "2.11"}))
    student, reference = train_mlp(release), train_mlp(REPO)
    assert student.returncode == 0, student.stderr[-2000:]
    accuracy = re.compile(r"mlp on shapes_gray: test accuracy (\d+\.\d+)%")
    assert accuracy.search(student.stdout) and accuracy.search(reference.stdout), (student.stdout, reference.stdout)
    assert float(accuracy.search(student.stdout)[1]) == pytest.approx(float(accuracy.search(reference.stdout)[1]), abs=0.5)


def test_the_readmes_student_path_runs_as_written(tmp_path):
    """README, "How a student works": weeks 1 and 2 written in a copy of the repository, the block of
    commands (grade, train your MLP, evaluate it, draw its filters, run its lesson) succeeds line by
    line, each on the student's own code."""
    copy = tmp_path / "checkout"
    for folder in ("course", "grader", "exercises", "solutions"):
        shutil.copytree(REPO / folder, copy / folder, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copyfile(REPO / "pyproject.toml", copy / "pyproject.toml")
    for module, weeks in (("week1_regression", 1), ("week2_neural_networks", 2)):
        exercise = copy / "exercises" / f"{module}.py"
        solution = (REPO / "solutions" / f"{module}.py").read_text()
        exercise.write_text(filled_in(exercise.read_text(), solution, {task.id for task in publish.find_tasks(solution)}))
    readme = (REPO / "README.md").read_text()
    block = re.search(r"your own code end to end.*?```bash\n(.*?)```", readme, re.S)[1]
    commands = [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    assert [command.split()[1] for command in commands] == ["grade", "train", "eval", "viz", "lessons"]
    # `course` as this copy's: `python -m course` run in it
    script = f'course() {{ "{sys.executable}" -m course "$@"; }}\nset -e\n'
    script += "\n".join(f"echo '+ {command}'\n{command}" for command in commands)
    environment = {**os.environ, "JAX_PLATFORMS": "cpu", "COURSE_CACHE_DIR": str(tmp_path / "cache")}
    environment.pop("PYTHONPATH", None)
    done = subprocess.run(["bash", "-c", script], cwd=copy, env=environment, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    graded = done.stdout.split("+ course train")[0]
    assert re.search(r"week 1 total +32/32", graded) and re.search(r"week 2 total +52/52", graded), graded[-1500:]
    assert re.search(r"mlp on shapes_gray: test accuracy \d+\.\d+%", done.stdout)
    assert "accuracy" in done.stdout.split("+ course eval")[1].split("+ course viz")[0]
    assert (copy / "figures" / "filters.png").is_file() and (copy / "notebooks" / "week2_neural_networks.ipynb").is_file()
    assert "Running exercises/week2_neural_networks.py" in (copy / "notebooks" / "week2_neural_networks.ipynb").read_text()
