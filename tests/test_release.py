"""Tests of `course release`: the student copy grades exactly like the instructor's copy, and holds no
solution source. Only weeks 1 and 4 are released, to keep the tests short."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from grader.instructor import publish, release
from grader import grading, runner

REPO = Path(__file__).resolve().parent.parent
WEEKS = (1, 4)
_spec = importlib.util.spec_from_file_location("grader_cases", REPO / "tests" / "grader_cases" / "cases.py")
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)
BUGS = ("mse summed instead of averaged", "SimpleCNN missing bias")


def write_submission(folder: Path, bugs: tuple[str, ...] = ()) -> Path:
    """A submission of weeks 1 and 4: the solutions, with the named bug cases' patches applied."""
    folder.mkdir(parents=True)
    for week in WEEKS:
        source = (REPO / "solutions" / f"{grading.WEEKS[week]}.py").read_text()
        for case in cases.BUGS:
            if case["name"] in bugs and case["week"] == week:
                for old, new in case["patches"]:
                    assert source.count(old) == 1
                    source = source.replace(old, new)
        (folder / f"{grading.WEEKS[week]}.py").write_text(source)
    return folder


@pytest.fixture(scope="module")
def student_copy(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("release") / "student"
    with pytest.MonkeyPatch.context() as patch:  # the session's cache, as tests/conftest.py sets it
        patch.setenv("COURSE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "course-cache"))
        assert release.main([str(out), "--weeks", *map(str, WEEKS)]) == 0
    return out


def run_in(copy: Path, code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Runs Python `code` in the student copy, its packages first on sys.path, with a fresh cache."""
    env = dict(os.environ, COURSE_CACHE_DIR=str(tmp_path / "student-cache"))
    boot = f"import sys; sys.path.insert(0, {str(copy)!r}); " + code
    return subprocess.run([sys.executable, "-c", boot], cwd=copy, env=env, capture_output=True, text=True, timeout=300)


def scores(results: dict) -> dict[str, tuple]:
    return {test["name"]: (test["score"], test["max_score"], test["status"], test["output"]) for test in results["tests"]}


def test_student_copy_grades_exactly_like_the_solutions(student_copy, tmp_path):
    from grader import report

    settings = grading.Settings(jobs=2)
    for name, bugs in (("solutions", ()), ("buggy", BUGS)):
        submission = write_submission(tmp_path / name, bugs)
        with_solutions = report.gradescope(runner.grade(list(WEEKS), submission, settings), 0.0)
        results = tmp_path / f"{name}.json"
        done = run_in(student_copy, "import grader; from grader import cli; "
                      f"assert grader.__file__.startswith({str(student_copy)!r}); "
                      f"sys.exit(cli.main(['1', '4', '--target', {str(submission)!r}, '--json', {str(results)!r}]))",
                      tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        in_copy = json.loads(results.read_text())
        # the release grades the public checks, exactly as the instructor does; the hidden ones only here
        public = {name: result for name, result in scores(with_solutions).items() if "(hidden inputs)" not in name}
        assert len(public) < len(scores(with_solutions))
        assert scores(in_copy) == public
        assert in_copy["score"] == round(sum(score for score, *_ in public.values()), 4)
        if bugs:
            lost = {name.split(" / ")[1] for name, (score, maximum, *_) in scores(in_copy).items() if score < maximum}
            assert lost == {"Task 1.2", "Task 4.1"}
        else:
            assert in_copy["score"] == in_copy["extra_data"]["max_score"] > 0


def test_student_copy_holds_no_solution_source(student_copy):
    files = [path for path in student_copy.rglob("*") if path.is_file()]
    relative = [path.relative_to(student_copy) for path in files]
    assert not [path for path in relative if "solutions" in path.parts or "__pycache__" in path.parts
                or path.suffix in (".pyc", ".pyo", ".pkl", ".pickle", ".so")]
    assert {path.suffix for path in relative} <= {".py", ".ipynb", ".md", ".toml", ".npz", ".json", ".png", "", ".gitignore"}
    solution_bytes = {path.read_bytes() for path in (REPO / "solutions").glob("*.py")}
    assert not [path for path in files if path.read_bytes() in solution_bytes]
    texts = {}
    for path in files:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:  # fails on pickled objects
                arrays = [archive[key] for key in archive.files]
            assert all(array.dtype.kind in "biufU" for array in arrays), path
            texts[path] = "\n".join(str(array) for array in arrays if array.dtype.kind == "U")
        elif path.suffix != ".png":
            texts[path] = path.read_text()
    normal = {path: "\n".join(line.strip() for line in text.splitlines() if line.strip()) for path, text in texts.items()}
    for solution in sorted((REPO / "solutions").glob("week*.py")):
        lines = solution.read_text().splitlines()
        for task in publish.find_tasks(solution.read_text(), solution.name):
            body = "\n".join(line.strip() for line in lines[task.begin:task.end - 1] if line.strip())
            assert body
            holders = [str(path.relative_to(student_copy)) for path, text in normal.items() if body in text]
            assert not holders, f"task {task.id} of {solution.name} is in {holders}"
    exercises = {path.name: path.read_text() for path in (REPO / "exercises").glob("*.py")}
    assert release.find_leaks(student_copy, release.task_fingerprints(REPO / "solutions", exercises)) == []


def test_student_copy_commands_without_solutions(student_copy, tmp_path):
    exercise = (student_copy / "exercises" / "week1_regression.py").read_text()
    done = run_in(student_copy, "import json; from course import cli, registry; "
                  "codes = [cli.main(['publish']), cli.main(['release', 'elsewhere']), "
                  "cli.main(['autograder', 'x.zip']), cli.main(['grade-batch', '.', '--out', 'x']), "
                  "cli.main(['similarity', '.', '--out', 'x'])]; "
                  "default = registry.default_package(); "
                  "print(json.dumps({'codes': codes, 'default': default}))", tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"codes": [2, 2, 2, 2, 2], "default": "exercises"}
    assert done.stderr.count("an instructor command; this is the student release") == 5
    assert not (student_copy / "grader" / "instructor").exists() and not (student_copy / "x").exists()
    assert (student_copy / "exercises" / "week1_regression.py").read_text() == exercise
    manifest = json.loads((student_copy / "reference_evidence" / "MANIFEST.json").read_text())
    assert sorted(manifest["weeks"]) == [grading.WEEKS[week] for week in WEEKS]


def test_release_refuses_unsafe_targets(tmp_path, capsys):
    assert release.main([str(REPO / "build" / "student")]) == 2
    (tmp_path / "notes.txt").write_text("mine")
    assert release.main([str(tmp_path), "--force"]) == 2  # not a release: never deleted
    assert (tmp_path / "notes.txt").exists()
    assert release.main([str(tmp_path / "x"), "--weeks", "9"]) == 2
    assert "course release" in capsys.readouterr().err


def test_leak_check_finds_a_copied_task(tmp_path):
    solution = (REPO / "solutions" / "week4_simple_cnn.py").read_text()
    task = publish.find_tasks(solution)[1]
    body = "\n".join(solution.splitlines()[task.begin:task.end - 1])
    (tmp_path / "notes.md").write_text(f"# my notes\n```\n{body}\n```\n")
    exercises = {path.name: path.read_text() for path in (REPO / "exercises").glob("*.py")}
    leaks = release.find_leaks(tmp_path, release.task_fingerprints(REPO / "solutions", exercises))
    assert leaks and leaks[0].startswith("notes.md") and task.id in leaks[0]


def test_leak_check_reads_a_notebooks_cells(tmp_path):
    """A notebook's JSON escapes the quotes of its code: the check reads the cells, not the JSON."""
    from tests.test_exercise_notebooks import solution_notebook

    (tmp_path / "week2_neural_networks.ipynb").write_text(solution_notebook(2))
    exercises = {path.name: path.read_text() for path in (REPO / "exercises").glob("*.py")}
    leaks = release.find_leaks(tmp_path, release.task_fingerprints(REPO / "solutions", exercises))
    tasks = {leak.rsplit(" ", 1)[-1] for leak in leaks}
    assert tasks == {task.id for task in publish.find_tasks((REPO / "solutions" / "week2_neural_networks.py").read_text())
                     if release.task_fingerprints(REPO / "solutions", exercises)[f"week2_neural_networks.py {task.id}"]}


def test_the_student_readme_commands_work_as_written(student_copy, tmp_path):
    """The release's own README: its "Start" commands, run as written in a fresh virtual environment
    in a copy of the release, with week 2 written, all succeed. The fresh environment sees this
    test's installed packages through a path file (no download), but neither this repository nor
    its editable install, so every `course` command runs the release's own code."""
    import re
    import shutil
    import sysconfig

    from tests.test_publish import filled_in

    copy = tmp_path / "student"
    shutil.copytree(student_copy, copy)
    readme = (copy / "README.md").read_text()
    assert "course publish" not in readme and "solutions/" not in readme.replace("reference solutions", "")
    commands = [line.split("  #")[0].strip() for line in re.search(r"```bash\n(.*?)```", readme, re.S)[1].splitlines()]
    assert commands[:3] == ["python3 -m venv .venv", ". .venv/bin/activate", "pip install -e ."]
    week2 = copy / "exercises" / "week2_neural_networks.py"
    solution = (REPO / "solutions" / "week2_neural_networks.py").read_text()
    week2.write_text(filled_in(week2.read_text(), solution, {f"2.{task}" for task in range(1, 12)}))

    subprocess.run([sys.executable, "-m", "venv", str(copy / ".venv")], check=True)  # commands[0], this Python
    site_packages = next((copy / ".venv" / "lib").glob("python3*/site-packages"))
    (site_packages / "installed_for_the_test.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    for folder in [copy, *copy.parents]:  # the graded children run as other users: they must reach the venv
        folder.chmod(folder.stat().st_mode | 0o001)
    environment = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environment.update(COURSE_CACHE_DIR=str(tmp_path / "cache"), JAX_PLATFORMS="cpu")
    script = "set -e\n" + "\n".join(f"echo '+ {command}'\n{command}" for command in commands[1:])
    done = subprocess.run(["bash", "-c", script], cwd=copy, env=environment, capture_output=True, text=True,
                          timeout=1200)
    assert done.returncode == 0, (done.stdout[-3000:], done.stderr[-3000:])
    output = done.stdout
    assert re.search(r"mlp on shapes_gray: test accuracy \d+\.\d+%", output), output[-2000:]
    assert "accuracy" in output.split("+ course eval runs/mlp")[1]
    assert (copy / "figures" / "predictions.png").is_file() and (copy / "runs" / "mlp" / "metrics.json").is_file()
    graded = output.split("+ course grade\n")[1].split("+ course train")[0]
    assert re.search(r"week 1 total", graded) and re.search(r"week 4 total", graded) and "week 2 total" not in graded
    assert str(copy) in subprocess.run([str(copy / ".venv" / "bin" / "python"), "-c", "import course; print(course.__file__)"],
                                       cwd=tmp_path, env=environment, capture_output=True, text=True).stdout
