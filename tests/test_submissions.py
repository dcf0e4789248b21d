"""grader.instructor.submissions with notebooks: a week may be submitted as `weekN_*.ipynb`, in a folder or a
zip, and `course grade-batch` grades its code cells like a module; a notebook beside its module, a
misnamed one and one that does not compile are each explained."""

import json
import zipfile
from pathlib import Path

from grader.instructor import batch, submissions
from tests.test_exercise_notebooks import solution_notebook

NOTEBOOK, MODULE = "week1_regression.ipynb", "week1_regression.py"
REPO = Path(__file__).resolve().parent.parent


def staged(folder: Path, files: dict[str, str]) -> submissions.Staged:
    folder.mkdir(parents=True)
    for name, text in files.items():
        (folder / name).write_text(text)
    (found,) = submissions.find_submissions(folder.parent)
    return submissions.stage(found, [1])


def test_a_notebook_is_staged_as_the_weeks_file(tmp_path):
    result = staged(tmp_path / "class" / "alice", {NOTEBOOK: solution_notebook(1)})
    assert list(result.modules) == [NOTEBOOK] and result.problems == [] and not result.fatal


def test_a_notebook_in_a_zip_is_staged(tmp_path):
    (tmp_path / "class").mkdir()
    with zipfile.ZipFile(tmp_path / "class" / "bob.zip", "w") as archive:
        archive.writestr(f"bob/{NOTEBOOK}", solution_notebook(1))
    (found,) = submissions.find_submissions(tmp_path / "class")
    result = submissions.stage(found, [1])
    assert list(result.modules) == [NOTEBOOK] and result.problems == []


def test_a_notebook_beside_its_module_is_not_graded_and_says_so(tmp_path):
    solution = (REPO / "solutions" / MODULE).read_text()
    result = staged(tmp_path / "class" / "carol", {NOTEBOOK: solution_notebook(1), MODULE: solution})
    assert list(result.modules) == [MODULE]
    assert result.problems == [f"both {MODULE} and {NOTEBOOK} were submitted: {MODULE} was graded"]


def test_misnamed_and_broken_notebooks_are_explained(tmp_path):
    misnamed = staged(tmp_path / "one" / "dan", {"Week1.ipynb": solution_notebook(1)})
    assert "wrong file name 'Week1.ipynb': week 1 must be in week1_regression.ipynb" in misnamed.fatal
    broken = json.loads(solution_notebook(1))
    cell = next(cell for cell in broken["cells"] if "def sigmoid" in cell["source"])
    cell["source"] = cell["source"].replace("def sigmoid(", "def sigmoid(:", 1)
    result = staged(tmp_path / "two" / "erin", {NOTEBOOK: json.dumps(broken)})
    number = broken["cells"].index(cell) + 1
    assert result.problems == [f"cell {number} of {NOTEBOOK} ('def sigmoid(:x: jax.Array) -> jax.Array:') does not "
                               "compile: invalid syntax (line 1: def sigmoid(:x: jax.Array) -> jax.Array:); its week "
                               "scores 0"]
    assert staged(tmp_path / "three" / "fay", {NOTEBOOK: "not json"}).problems == [
        f"{NOTEBOOK} is not a notebook: it is not JSON (NotJSONError); its week scores 0"]


def test_grade_batch_grades_a_notebook_like_a_module(tmp_path):
    root, out = tmp_path / "class", tmp_path / "out"
    for name, files in {"module": {MODULE: (REPO / "solutions" / MODULE).read_text()},
                        "notebook": {NOTEBOOK: solution_notebook(1)},
                        "stub_notebook": {NOTEBOOK: (REPO / "exercises" / "notebooks" / NOTEBOOK).read_text()}}.items():
        (root / name).mkdir(parents=True)
        for file_name, text in files.items():
            (root / name / file_name).write_text(text)
    assert batch.main([str(root), "--out", str(out), "--weeks", "1", "--jobs", "2", "--quiet"]) == 0
    results = {name: json.loads((out / name / "results.json").read_text()) for name in ("module", "notebook", "stub_notebook")}
    assert results["notebook"]["score"] == results["module"]["score"] == results["module"]["extra_data"]["max_score"] == 32
    assert [test["score"] for test in results["notebook"]["tests"]] == [test["score"] for test in results["module"]["tests"]]
    assert results["stub_notebook"]["score"] == 0
    assert {test["output"].splitlines()[0].rsplit(": ", 1)[1] for test in results["stub_notebook"]["tests"]} == {"not attempted"}
