"""Tests of `course autograder` and `grader.instructor.gradescope`: the zip is built, unpacked into a root laid
out as Gradescope lays it out (source/, submission/, results/), set up by its own setup.sh in a fresh
virtual environment, and run on correct, buggy, hostile, empty and zipped uploads; every results.json
must validate against Gradescope's specification."""

import importlib.util
import json
import os
import secrets
import shutil
import stat
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

import jsonschema
import pytest

from grader import grading, sandbox
from grader.instructor import autograder, gradescope, publish, release

REPO = Path(__file__).resolve().parent.parent
WEEKS = (1, 3)
MODULES = {week: f"{grading.WEEKS[week]}.py" for week in WEEKS}
SOLUTIONS = {week: (REPO / "solutions" / MODULES[week]).read_text() for week in WEEKS}
_spec = importlib.util.spec_from_file_location("grader_cases", REPO / "tests" / "grader_cases" / "cases.py")
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)

TEST_RESULT = {
    "type": "object",
    "required": ["name", "number", "score", "max_score", "status", "output", "visibility"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "number": {"type": "string", "pattern": r"^\d+\.\d+$"},
        "score": {"type": "number", "minimum": 0},
        "max_score": {"type": "number", "exclusiveMinimum": 0},
        "status": {"enum": ["passed", "failed"]},
        "output": {"type": "string"},
        "visibility": {"enum": ["visible", "after_due_date"]},
        "tags": {"type": "array", "items": {"type": "string"}},
    },
}
RESULTS_SCHEMA = {  # Gradescope's results.json, as the course writes it
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["score", "execution_time", "output", "stdout_visibility", "tests", "extra_data"],
    "properties": {
        "score": {"type": "number", "minimum": 0},
        "execution_time": {"type": "number", "minimum": 0},
        "output": {"type": "string", "minLength": 1},
        "visibility": {"enum": ["visible", "hidden", "after_due_date", "after_published"]},
        "stdout_visibility": {"enum": ["visible", "hidden", "after_due_date", "after_published"]},
        "tests": {"type": "array", "items": TEST_RESULT},
        "extra_data": {"type": "object"},
    },
}
FINGERPRINT = {"type": "object", "required": ["python", "jax", "jaxlib", "flax", "optax", "numpy", "sandbox"],
               "properties": {key: {"type": "string"} for key in ("python", "jax", "flax", "sandbox")}}


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """The zip of weeks 1 and 3, built with the test session's cache of reference evidence."""
    out = tmp_path_factory.mktemp("autograder-zip") / "autograder.zip"
    environment = {**os.environ, "COURSE_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "course-cache")}
    made = subprocess.run([sys.executable, "-m", "course", "autograder", str(out), "--weeks", *map(str, WEEKS)],
                          cwd=REPO, env=environment, capture_output=True, text=True, timeout=600)
    assert made.returncode == 0, made.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def root(built, tmp_path_factory) -> Path:
    """/autograder as Gradescope lays it out, after the zip's setup.sh ran in it."""
    folder = tmp_path_factory.mktemp("gradescope")
    for name in ("source", "submission", "results"):
        (folder / name).mkdir()
    with zipfile.ZipFile(built) as archive:
        archive.extractall(folder / "source")
    for name in autograder.EXECUTABLE:  # extractall drops the mode bits the zip records; Gradescope keeps them
        (folder / "source" / name).chmod(0o755)
    setup = subprocess.run(["bash", str(folder / "source" / "setup.sh")], cwd=folder / "source",
                           env={**os.environ, "COURSE_AUTOGRADER_ROOT": str(folder)}, capture_output=True, text=True,
                           timeout=1200)
    assert setup.returncode == 0, (setup.stdout + setup.stderr)[-3000:]
    assert "the autograder is ready: weeks 1, 3" in setup.stdout
    return folder


def run_autograder(root: Path, files: dict[str, str | bytes], environment: dict | None = None) -> dict:
    """Uploads `files`, runs run_autograder as Gradescope does (in ROOT), returns the validated results.json."""
    for folder in ("submission", "results"):
        shutil.rmtree(root / folder)
        (root / folder).mkdir()
    for name, content in files.items():
        path = root / "submission" / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
    finished = subprocess.run([str(root / "source" / "run_autograder")], cwd=root, capture_output=True, text=True,
                              env={**os.environ, "COURSE_AUTOGRADER_ROOT": str(root), **(environment or {})},
                              timeout=600)
    assert finished.returncode == 0, finished.stderr[-3000:]
    results = json.loads((root / "results" / "results.json").read_text())
    jsonschema.validate(results, RESULTS_SCHEMA)
    return results


def lost_tasks(results: dict) -> set[str]:
    return {test["number"] for test in results["tests"] if test["score"] < test["max_score"]}


def maximum(weeks=WEEKS) -> float:
    return sum(check.points for week in weeks for check in grading.checks_module(week).CHECKS)


def patched(week: int, patches) -> str:
    source = SOLUTIONS[week]
    for old, new in patches:
        assert source.count(old) == 1, old
        source = source.replace(old, new)
    return source


def test_the_zip_holds_setup_run_and_evidence_but_no_solution_source(built, tmp_path):
    with zipfile.ZipFile(built) as archive:
        names = set(archive.namelist())
        modes = {info.filename: info.external_attr >> 16 for info in archive.infolist()}
        archive.extractall(tmp_path / "zip")
    assert {"setup.sh", "run_autograder", "README.md", "autograder.json", "requirements.txt"} <= names
    assert all(modes[name] & 0o111 for name in autograder.EXECUTABLE)
    config = json.loads((tmp_path / "zip" / "autograder.json").read_text())
    assert config["weeks"] == list(WEEKS)
    manifest = json.loads((tmp_path / "zip" / "reference_evidence" / grading.MANIFEST).read_text())
    assert isinstance(manifest["hidden_seed"], int)
    for week in WEEKS:
        public, hidden = grading.probe_names(week)
        recorded = {path.stem for path in (tmp_path / "zip" / "reference_evidence" / grading.WEEKS[week]).glob("*.npz")}
        assert set(public) | {f"hidden:{name}" for name in hidden} <= recorded
    pins = (tmp_path / "zip" / "requirements.txt").read_text().split()
    for package in ("jax", "jaxlib", "flax", "optax", "numpy", "orbax-checkpoint"):
        assert f"{package}=={metadata.version(package)}" in pins
    assert not any(pin.startswith(("torch", "hypothesis")) for pin in pins), "only runtime dependencies"
    wheels = list((tmp_path / "zip" / "wheels").glob("*.whl"))
    assert len(wheels) == 1
    with zipfile.ZipFile(wheels[0]) as archive:
        archive.extractall(tmp_path / "wheel")
        assert not [name for name in archive.namelist() if name.startswith("solutions/")]
    fingerprints = release.task_fingerprints(REPO / "solutions", publish.generated_files(REPO / "solutions"))
    for folder in (tmp_path / "zip", tmp_path / "wheel"):
        assert release.find_leaks(folder, fingerprints) == [] and release.forbidden_files(folder) == []


def test_a_correct_submission_gets_full_marks_with_hidden_checks_after_the_due_date(root):
    results = run_autograder(root, {MODULES[week]: SOLUTIONS[week] for week in WEEKS})
    assert results["score"] == maximum() == results["extra_data"]["max_score"]
    checks = {f"Week {week} / Task {check.task} / {check.name}": check
              for week in WEEKS for check in grading.checks_module(week).CHECKS}
    assert set(checks) == {test["name"] for test in results["tests"]}, "every check, the hidden ones too"
    assert any(check.hidden for check in checks.values())
    for test in results["tests"]:
        check = checks[test["name"]]
        assert test["visibility"] == check.visibility and test["status"] == "passed", test["name"]
        if check.hidden:
            assert test["visibility"] == "after_due_date", test["name"]
    jsonschema.validate(results["extra_data"]["environment"], FINGERPRINT)
    assert results["extra_data"]["environment"]["jax"] == results["extra_data"]["recorded_with"]["jax"]
    assert results["extra_data"]["environment"]["sandbox"] in ("bubblewrap", "user")
    assert results["stdout_visibility"] == "hidden"


def test_a_buggy_submission_loses_the_points_of_its_task_only(root):
    bug = next(case for case in cases.BUGS if case["name"] == "sigmoid branches swapped")
    results = run_autograder(root, {MODULES[1]: patched(1, bug["patches"]), MODULES[3]: SOLUTIONS[3]})
    assert lost_tasks(results) == {bug["task"]}
    lost = [test for test in results["tests"] if test["score"] < test["max_score"]]
    assert any(test["visibility"] == "after_due_date" for test in lost), "the hidden check of 1.5 fails too"
    assert all(test["status"] == "failed" for test in lost)
    assert results["score"] == maximum() - sum(test["max_score"] - test["score"] for test in lost)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
            for path in folder.rglob("*") if path.is_file() and not path.is_symlink()}


@pytest.mark.parametrize("level", ["bubblewrap", "user"])
def test_a_hostile_submission_scores_0_where_it_attacks_and_changes_nothing_outside(root, level):
    token = secrets.token_hex(6)
    outside = [root / "results" / "forged.txt", root / "source" / "forged.txt", root / "forged.txt",
               root / "submission" / "forged.txt", root / "venv" / "forged.txt", Path(f"/tmp/course-hostile-{token}"),
               Path(f"/var/tmp/course-hostile-{token}"), Path(f"/dev/shm/course-hostile-{token}"),
               Path.home() / f"course-hostile-{token}"]
    attack = ("    import os\n"
              f"    for path in {[str(path) for path in outside] + [str(root / 'results' / 'results.json')]!r}:\n"
              "        try:\n            open(path, 'w').write('forged')\n        except OSError:\n            pass\n"
              f"    recorded = open({str(root / 'source' / 'reference_evidence' / grading.MANIFEST)!r}).read()\n"
              + cases.SCORE)
    source = patched(1, [(cases.LINEAR_PREDICT_BODY, attack)])
    before = snapshot(root)
    results = run_autograder(root, {MODULES[1]: source, MODULES[3]: SOLUTIONS[3]},
                             {"COURSE_SANDBOX": level})
    assert results["extra_data"]["environment"]["sandbox"] == level
    assert lost_tasks(results) == {"1.1"}
    attacked = [test for test in results["tests"] if test["number"] == "1.1"]
    assert all(test["score"] == 0 for test in attacked)
    blocked = "FileNotFoundError" if level == "bubblewrap" else "PermissionError"  # not there, or closed
    assert any(blocked in test["output"] for test in attacked), [test["output"] for test in attacked]
    assert not [path for path in outside if path.exists()]
    after = snapshot(root)
    changed = {path for path in before.keys() | after.keys() if before.get(path) != after.get(path)}
    assert changed <= {"results/results.json", f"submission/{MODULES[1]}", f"submission/{MODULES[3]}"}, changed


# The graded code's search for recorded answers (issue 25): every place they were found in, or
# could be: the zip where `course autograder` wrote it, the evidence cache it was recorded from,
# every file of source/, the Python environment, the run's workspace and the grader's caches. It
# returns a recorded answer where one is readable, the right predictions where anything else
# recorded is (the manifest, the config, a file holding the hidden seed), else raises.
HUNT = """\
    import io, os, zipfile
    import numpy
    import grader.probing
    hidden = grader.probing.HIDDEN_SEED is not None
    wanted = ('hidden:' if hidden else '') + 'linear_predict.npz'
    seed, found, denied = '{reversed_seed}'[::-1].encode(), [], []  # not written as it is: this file is read too
    def read(path, data=None):
        try:
            if data is None:
                with open(path, 'rb') as file:
                    data = file.read(4 * 2**20)
        except OSError as error:
            denied.append(f'{{type(error).__name__}}: {{path}}')
            return
        name = os.path.basename(path)
        if name == wanted:
            found.insert(0, numpy.load(io.BytesIO(data))['predictions'])
        elif name.endswith('.npz') and b'__nonce__' in data or name in ('MANIFEST.json', 'autograder.json') \\
                or seed in data:
            found.append(path)
        if name.endswith('.zip'):
            try:
                archive = zipfile.ZipFile(io.BytesIO(data))
                for entry in archive.namelist():
                    read(f'{{path}}!{{entry}}', archive.read(entry))
            except zipfile.BadZipFile:
                pass
    for path in {files!r}:
        read(path)
    workspace = os.path.dirname(os.getcwd())  # the run's folder: the graded code's own folders, its lib copy
    lib = os.path.dirname(os.path.dirname(grader.probing.__file__))
    places = {folders!r} + [workspace, lib, os.getcwd()]
    places += [os.path.join(workspace, name) for name in ('submission', 'given.npz')]
    for top in places:
        if not os.path.isdir(top):
            read(top)
            continue
        for folder, folders, files in os.walk(top, onerror=lambda error: denied.append(f'walk: {{error.filename}}')):
            for name in files:
                read(os.path.join(folder, name))
    if found:
        return found[0] if not isinstance(found[0], str) else features @ weights + bias
    raise PermissionError(f'nothing recorded was readable; denied {{len(denied)}}: {{denied}}')
"""


def test_at_the_user_level_no_recorded_answer_reaches_the_graded_code(built, root, tmp_path, tmp_path_factory):
    """Issue 25: in a dry run the graded uid read the recorded hidden answers (32/32). The answers are
    closed where they are made: the zip and the evidence cache it is recorded from are their owner's
    only, setup.sh closes every file of source/, and the installed wheel holds none; the grading closes
    its own folders too, refusing links and folders others can write."""
    if sandbox.why_unavailable("user"):
        pytest.skip(f"the user sandbox cannot run here: {sandbox.why_unavailable('user')}")
    build_cache = tmp_path_factory.getbasetemp() / "course-cache"  # the `built` fixture's COURSE_CACHE_DIR
    instructor = tmp_path / "instructor"  # a folder others can open, where `course autograder` wrote the zip
    instructor.mkdir()
    for folder, mode in ((tmp_path, 0o711), (instructor, 0o755)):
        folder.chmod(mode)
    shutil.copy2(built, instructor / "autograder.zip")  # with the mode the build gave it
    assert stat.S_IMODE(built.stat().st_mode) == 0o600 and stat.S_IMODE(build_cache.stat().st_mode) == 0o700
    source_files = sorted(path for path in (root / "source").rglob("*"))
    open_to_others = [path for path in [root / "source", *source_files] if path.stat().st_mode & 0o077]
    assert not open_to_others, f"setup.sh closes every file of source/: {open_to_others[:3]}"
    site_packages = Path(next((root / "venv" / "lib").glob("python3*/site-packages")))
    with zipfile.ZipFile(built) as archive:
        seed = json.loads(archive.read(f"reference_evidence/{grading.MANIFEST}"))["hidden_seed"]
        wheel = next(name for name in archive.namelist() if name.endswith(".whl"))
        archive.extract(wheel, tmp_path / "wheel")
    assert autograder.recorded_answers(tmp_path / "wheel", seed) == []
    with zipfile.ZipFile(tmp_path / "wheel" / wheel) as archive:
        archive.extractall(tmp_path / "wheel" / "files")
    assert autograder.recorded_answers(tmp_path / "wheel" / "files", seed) == []
    installed = [site_packages / name for name in ("course", "grader", "exercises")]
    installed += site_packages.glob("deep_into_cnn-*.dist-info")
    run_cache = tmp_path / "run-cache"  # the grading's own cache is not the build's (Gradescope, or another user)
    files = [str(path) for path in [built, instructor / "autograder.zip", *source_files]]
    folders = [str(path) for path in [root / "source", root / "results", build_cache, run_cache, *installed]]
    attack = HUNT.format(reversed_seed=str(seed)[::-1], files=files, folders=folders)
    hunt = patched(1, [(cases.LINEAR_PREDICT_BODY, attack)])
    results = run_autograder(root, {MODULES[1]: hunt, MODULES[3]: SOLUTIONS[3]},
                             {"COURSE_SANDBOX": "user", "COURSE_CACHE_DIR": str(run_cache)})
    assert results["extra_data"]["environment"]["sandbox"] == "user"
    assert lost_tasks(results) == {"1.1"}
    attacked = [test for test in results["tests"] if test["number"] == "1.1"]
    assert attacked and all(test["score"] == 0 for test in attacked)
    assert all("nothing recorded was readable" in test["output"] for test in attacked), [t["output"] for t in attacked]
    honest = run_autograder(root, {MODULES[week]: SOLUTIONS[week] for week in WEEKS},
                            {"COURSE_SANDBOX": "user", "COURSE_CACHE_DIR": str(run_cache)})
    assert honest["score"] == maximum(), honest["output"][-3000:]


def test_notebooks_named_after_their_weeks_are_graded_like_modules(root):
    from tests.test_exercise_notebooks import solution_notebook

    results = run_autograder(root, {f"{grading.WEEKS[week]}.ipynb": solution_notebook(week) for week in WEEKS})
    assert results["score"] == maximum() and all(test["status"] == "passed" for test in results["tests"])
    assert results["extra_data"]["upload"]["problems"] == []


def test_an_empty_upload_scores_0_and_says_what_to_upload(root):
    results = run_autograder(root, {})
    assert results["score"] == 0 and results["tests"]
    assert all(test["score"] == 0 for test in results["tests"])
    assert "no week module to grade" in results["output"] and MODULES[1] in results["output"]


def test_a_zip_upload_is_graded_and_other_files_are_named(root, tmp_path):
    archive_path = tmp_path / "homework.zip"
    with zipfile.ZipFile(archive_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for week in WEEKS:
            archive.writestr(f"my-homework/{MODULES[week]}", SOLUTIONS[week])
        archive.writestr("my-homework/notes.txt", "my notes")
    results = run_autograder(root, {"homework.zip": archive_path.read_bytes(), "README.txt": "hi"})
    assert results["score"] == maximum()
    assert "notes.txt" in results["output"] and "README.txt" in results["output"]


def test_results_are_written_even_when_grading_cannot_run(root, tmp_path):
    config = root / "source" / gradescope.CONFIG
    saved = config.read_bytes()
    try:
        config.write_text("{not json")
        results = run_autograder(root, {MODULES[1]: SOLUTIONS[1]})
    finally:
        config.write_bytes(saved)
    assert results["score"] == 0 and "autograder.json" in results["output"]
    broken = tmp_path / "no-setup"  # setup.sh never ran here: no Python environment at all
    for name in ("source", "submission", "results"):
        (broken / name).mkdir(parents=True)
    shutil.copy(root / "source" / "run_autograder", broken / "source" / "run_autograder")
    results = run_autograder(broken, {MODULES[1]: SOLUTIONS[1]})
    assert results["score"] == 0 and "could not start" in results["output"]


def test_bad_usage_is_refused_with_a_reason(tmp_path, capsys):
    (tmp_path / "exists.zip").write_bytes(b"")
    assert autograder.main([str(tmp_path / "exists.zip")]) == 2
    assert "--force" in capsys.readouterr().err
    assert autograder.main([str(tmp_path / "autograder.tar")]) == 2
    assert ".zip" in capsys.readouterr().err
    assert autograder.main([str(tmp_path / "a.zip"), "--weeks", "9"]) == 2
    assert "unknown week" in capsys.readouterr().err
    assert not (tmp_path / "a.zip").exists()


def test_pinned_requirements_follow_the_installed_dependency_tree():
    pins = dict(pin.split("==") for pin in autograder.pinned_requirements())
    assert pins["jax"] == metadata.version("jax") and pins["jaxlib"] == metadata.version("jaxlib")
    assert "ml-dtypes" in pins, "dependencies of dependencies are pinned too"
