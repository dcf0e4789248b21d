"""The lessons: each is its week's notebook, runs headless top to bottom against the solutions (and a
student's own model structure) showing its figures, and a stub stops one with a clear line; `course
lessons` writes them as notebooks and refuses an unknown one.

Each lesson (`course/lessons/weekN_*.py`, a jupytext percent script) is turned into a notebook with
jupytext and executed with nbclient in a "python3" kernel, exactly as `course lessons --execute`
does. jupyter_client starts that kernel with the interpreter running the tests (the kernelspec's
"python" is replaced by `sys.executable`); an extra first cell checks it, so a stray system kernel
cannot run the lessons with other packages.
"""

import json
import sys

import nbformat
import pytest

from course import lessons
from course.lessons import build

nbclient = pytest.importorskip("nbclient")

# Figures each lesson must show (image/png outputs) when run against the solutions.
MINIMUM_FIGURES = {
    "week1_regression": 3,
    "week2_neural_networks": 5,
    "week3_convolutions": 4,
    "week4_simple_cnn": 7,
    "week5_lenet": 4,
    "week6_alexnet": 5,
}
INTERPRETER_CHECK = "import sys\nprint(sys.executable)"


def outputs(notebook, output_type: str | None = None) -> list[dict]:
    return [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.get("outputs", [])
            if output_type is None or output["output_type"] == output_type]


def run_lesson(module_name: str, target: str):
    """The executed notebook of lesson `module_name` and the CellExecutionError it raised, if any."""
    notebook = build.read_notebook(module_name)
    notebook.cells.insert(0, nbformat.v4.new_code_cell(INTERPRETER_CHECK))
    try:
        build.execute(notebook, target=target, timeout=600)  # a cell; generous: CI machines are shared
    except nbclient.exceptions.CellExecutionError as error:
        return notebook, error
    return notebook, None


def kernel_interpreter(notebook) -> str:
    return "".join(output["text"] for output in notebook.cells[0].outputs).strip()


@pytest.mark.parametrize("number, module_name", list(lessons.LESSONS.items()))
def test_every_lesson_is_its_weeks_notebook(number, module_name):
    """Each lesson reads as a notebook titled with its week that loads its own week module (the code that
    the run below executes) and ends by naming `course grade weekN`."""
    notebook = build.read_notebook(module_name)
    assert notebook.cells[0].cell_type == "markdown" and notebook.cells[0].source.startswith(f"# Week {number}: ")
    loads = [cell.source for cell in notebook.cells if cell.cell_type == "code" and "lessons.load_week(" in cell.source]
    assert loads and all(f'lessons.load_week("{module_name}"' in source for source in loads), loads
    assert f"course grade week{number}" in notebook.cells[-1].source
    assert MINIMUM_FIGURES[module_name] > 0


@pytest.mark.parametrize("module_name", list(lessons.LESSONS.values()))
def test_lesson_runs_against_solutions(module_name):
    notebook, error = run_lesson(module_name, "solutions")
    assert error is None, f"{module_name} failed:\n{error}"
    assert kernel_interpreter(notebook) == sys.executable
    assert not outputs(notebook, "error")
    figures = [output for output in outputs(notebook, "display_data") if "image/png" in output.get("data", {})]
    assert len(figures) >= MINIMUM_FIGURES[module_name], f"{module_name} showed {len(figures)} figures"
    text = "".join(output.get("text", "") for output in outputs(notebook, "stream"))
    assert "Running solutions/" in text
    assert "fill in `" not in text
    assert f"course grade week{module_name[4]}" in notebook.cells[-1].source


RECORD_LEGENDS = """
import json
import course.lessons
_show = course.lessons.show
LEGENDS = []

def _recording_show(figure):
    for axis in figure.axes:
        labelled = [artist.get_label() for artist in [*axis.lines, *axis.collections]
                    if artist.get_label() and not artist.get_label().startswith("_")]
        legend = axis.get_legend()
        LEGENDS.append({"title": axis.get_title(), "labelled": labelled,
                        "legend": [text.get_text() for text in legend.get_texts()] if legend else []})
    _show(figure)

course.lessons.show = _recording_show
"""


def test_week1_lesson_names_its_data_and_every_line_in_its_legends():
    """Week 1 reads made-up points and the real diabetes table (not "small synthetic data"), and every
    labelled line of its figures, the closed form's included, is in its axis's legend."""
    notebook = build.read_notebook("week1_regression")
    notebook.cells.insert(0, nbformat.v4.new_code_cell(RECORD_LEGENDS))
    notebook.cells.append(nbformat.v4.new_code_cell("print(json.dumps(LEGENDS))"))
    build.execute(notebook, target="solutions", timeout=600)
    text = "".join(output.get("text", "") for output in outputs(notebook, "stream"))
    assert "made-up points, then the Pima diabetes table" in text and "small synthetic data" not in text
    axes = json.loads(notebook.cells[-1].outputs[0]["text"])
    with_legends = [axis for axis in axes if axis["labelled"]]
    assert len(with_legends) >= 4
    for axis in with_legends:
        assert sorted(axis["legend"]) == sorted(axis["labelled"]), axis
    assert sum("closed form" in axis["legend"] for axis in axes) == 2  # the loss curve and the fitted lines


def test_stub_stops_the_lesson_with_a_fill_in_line_not_a_traceback():
    notebook, error = run_lesson("week3_convolutions", "exercises")
    assert error is not None and error.ename == "NotImplementedError"
    assert kernel_interpreter(notebook) == sys.executable
    assert not outputs(notebook, "error"), "a traceback was shown"
    messages = build.fill_in_lines(notebook)
    assert messages == ["fill in `conv2d` in exercises/week3_convolutions.py (Task 3.1), then rerun this cell.\n"
                        "Check your work with `course grade week3`.\n"]


def test_fill_in_message_names_function_file_and_task():
    error = NotImplementedError("Task 4.2 (SimpleCNN.__call__): not attempted")
    assert lessons.fill_in_message(error).splitlines()[0] == (
        "fill in `SimpleCNN.__call__` in exercises/week4_simple_cnn.py (Task 4.2), then rerun this cell.")
    assert lessons.fill_in_message(NotImplementedError("something else")) is None
    assert lessons.fill_in_message(ValueError("Task 4.2 (SimpleCNN.__call__)")) is None


def test_target_must_be_exercises_or_solutions(monkeypatch):
    monkeypatch.setenv(lessons.TARGET_VARIABLE, "answers")
    with pytest.raises(lessons.LessonError, match="exercises, solutions or a folder of week modules"):
        lessons.target()
    monkeypatch.delenv(lessons.TARGET_VARIABLE)
    assert lessons.target() == "exercises"


def test_command_lists_and_writes_notebooks(tmp_path, capsys):
    assert build.main(["3", "week5", "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "week3_convolutions" in printed and "Week 3: convolution and pooling by hand" in printed
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == ["week3_convolutions.ipynb", "week5_lenet.ipynb"]
    for module_name in written:
        notebook = nbformat.read(tmp_path / module_name, as_version=4)
        nbformat.validate(notebook)
        lesson = build.read_notebook(module_name.removesuffix(".ipynb"))
        assert [(cell.cell_type, cell.source) for cell in notebook.cells] == [
            (cell.cell_type, cell.source) for cell in lesson.cells]
        assert not any(cell.get("outputs") for cell in notebook.cells)  # written, not run


def test_command_rejects_an_unknown_lesson(tmp_path, capsys):
    assert build.main(["week9", "--out", str(tmp_path)]) == 2
    assert "unknown lesson 'week9'" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["MLP as one nnx.Sequential"])  # test_cli runs the other structures
def test_a_lesson_runs_the_students_own_structure(name, tmp_path):
    """Lesson 2 with a correct MLP the grader accepts in another structure (other names, a list of
    dropouts; one nnx.Sequential): the lesson uses the model's own `__call__` and its state, never
    the reference's names."""
    from tests.conftest import alternative_folder

    folder = alternative_folder(name, tmp_path / "my_work")
    notebook, error = run_lesson("week2_neural_networks", str(folder))
    assert error is None, f"the lesson failed:\n{error}"
    text = "".join(output.get("text", "") for output in outputs(notebook, "stream"))
    assert f"Running {folder}/week2_neural_networks.py" in text
    assert "largest parameter change" in text
