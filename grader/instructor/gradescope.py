"""What an autograder zip's `run_autograder` runs on Gradescope, once per submission (`course
autograder` builds the zip; see `grader/instructor/autograder_files/README.md`).

    python -m grader.instructor.gradescope [--root /autograder]

It reads what the student uploaded to ROOT/submission (week modules or notebooks named after the
week, or one zip of them; other files are ignored with a message), grades it like `course grade-batch` grades one submission (the submitted
code runs only in sandboxed children) against the reference evidence recorded in
ROOT/source/reference_evidence (hidden checks included), and writes ROOT/results/results.json in
Gradescope's format. It always writes that file: when grading itself fails, with score 0 and the
reason in `output`. ROOT is /autograder unless $COURSE_AUTOGRADER_ROOT moves it (a dry run).
"""

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from course.files import write_atomically
from grader import child_run, grading, intake, reference, report, sandbox
from grader.instructor import batch, submissions

ROOT_VARIABLE = "COURSE_AUTOGRADER_ROOT"
CONFIG = "autograder.json"  # in ROOT/source: the weeks graded and the limits, written by `course autograder`
EVIDENCE = "reference_evidence"
MAX_CONFIG_BYTES = 64 * 2**10


class Ungradable(RuntimeError):
    """The autograder cannot grade here at all (its set-up is broken, no sandbox can run)."""


def default_root() -> Path:
    return Path(os.environ.get(ROOT_VARIABLE) or "/autograder")


def read_config(source: Path) -> dict:
    """The zip's autograder.json, checked: {"weeks": [...], "week_timeout_s", "probe_timeout_s", "memory_gb"}."""
    try:
        with open(source / CONFIG, "rb") as file:
            config = json.loads(file.read(MAX_CONFIG_BYTES))
    except (OSError, ValueError) as error:
        raise Ungradable(f"cannot read {source / CONFIG} ({error}): is the autograder zip complete?") from None
    weeks = config.get("weeks") if isinstance(config, dict) else None
    if not isinstance(weeks, list) or not weeks or not all(week in grading.WEEKS for week in weeks):
        raise Ungradable(f"{source / CONFIG} names no weeks to grade (expected a list of 1 to {len(grading.WEEKS)})")
    for key in ("week_timeout_s", "probe_timeout_s", "memory_gb"):
        if not isinstance(config.get(key), (int, float)) or config[key] <= 0:
            raise Ungradable(f"{source / CONFIG}: {key} must be a positive number")
    return config


def settings_for(root: Path, config: dict) -> grading.Settings:
    """Grading settings: the zip's recorded evidence, and its folder and the results' closed to the graded code."""
    options = {"timeout": config["week_timeout_s"], "probe_timeout": config["probe_timeout_s"],
               "memory_gb": config["memory_gb"], "reference_dir": root / "source" / EVIDENCE}
    return grading.Settings.from_options(options, protected=(root / "source", root / "results"))


def find_upload(folder: Path) -> tuple[submissions.Submission, list[str]]:
    """The submission to stage: `folder` itself, or the one zip in it when no week module lies at its top;
    and the names of the other files that zip leaves out. An entry named like a zip counts as one
    whatever it is, without following it, so that a link is staged, and refused, by its own name."""
    modules = submissions.WEEK_FILES
    try:
        entries = sorted(entry.name for entry in folder.iterdir()
                         if not entry.name.startswith(".") and entry.name not in submissions.IGNORED_NAMES)
    except OSError as error:
        return submissions.Submission("submission", folder, "submission", f"the upload cannot be read ({error})"), []
    zips = [name for name in entries
            if name.lower().endswith(".zip") and intake.entry_kind(folder / name) != "a folder"]
    if modules & set(entries) or not zips:
        return submissions.Submission("submission", folder, "submission"), []
    if len(zips) > 1:
        return submissions.Submission("submission", folder, "submission",
                                f"{len(zips)} zip files were uploaded ({', '.join(map(submissions.shown_name, zips[:3]))}): "
                                "upload one zip, or the week modules themselves"), []
    return submissions.Submission("submission", folder / zips[0], "submission"), [name for name in entries if name != zips[0]]


def ready(root: Path) -> tuple[list[int], grading.Settings, str]:
    """(the weeks, the settings, the sandbox level) of grading here; raises Ungradable where it cannot run."""
    config = read_config(root / "source")
    weeks = sorted(config["weeks"])
    settings = settings_for(root, config)
    try:
        level = child_run.sandbox_level(settings)
    except sandbox.Unavailable as error:
        raise Ungradable(str(error)) from None
    if level == "none" and (os.environ.get(sandbox.ENVIRONMENT_VARIABLE) or "").lower() != "none":
        raise Ungradable("no sandbox can run in this container, and submitted code is never run without one "
                         f"(bubblewrap: {sandbox.why_unavailable('bubblewrap')}; unprivileged user: "
                         f"{sandbox.why_unavailable('user')})")
    for week in weeks:
        try:
            reference.reference_folder(week, settings)
        except reference.ReferenceEvidenceError as error:
            raise Ungradable(str(error)) from None
    return weeks, settings, level


def grade_upload(root: Path) -> dict:
    """results.json for what ROOT/submission holds. Raises Ungradable where grading cannot run at all."""
    weeks, settings, _ = ready(root)
    upload, left_out = find_upload(root / "submission")
    staged = submissions.stage(upload, weeks)
    if left_out and not staged.fatal:
        shown = ", ".join(map(submissions.shown_name, left_out[:5]))
        staged.problems.append(report.printable(f"ignored files beside the zip: {shown}"))
    results = batch.grade_submission(upload, staged, weeks, settings)
    graded = results["extra_data"].pop("batch")
    results["extra_data"]["upload"] = {"status": graded["status"], "problems": graded["problems"], "weeks": weeks}
    results["extra_data"]["recorded_with"] = recorded_versions(settings.reference_dir)
    results["output"] = "\n".join([results["output"], *graded["problems"]])
    return results


def recorded_versions(reference_dir: Path) -> dict:
    """The library versions that recorded the reference evidence (from its manifest)."""
    try:
        with open(reference_dir / grading.MANIFEST, "rb") as file:
            versions = json.loads(file.read(2**20)).get("versions", {})
    except (OSError, ValueError, AttributeError):
        return {}
    return {str(name): str(version) for name, version in versions.items()} if isinstance(versions, dict) else {}


def failure_results(reason: str, seconds: float) -> dict:
    """results.json when nothing could be graded: score 0, and why."""
    return {"score": 0.0, "execution_time": round(seconds, 3), "visibility": "visible", "stdout_visibility": "hidden",
            "output": f"Not graded: {reason}\nThis is a problem of the autograder, not of your code: "
                      "tell your instructor.",
            "tests": [], "extra_data": {"error": reason, "environment": report.environment([])}}


def write_results(path: Path, results: dict) -> None:
    """Writes results.json whole (a partial file, then a rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomically(path, json.dumps(results, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grader.instructor.gradescope", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=default_root(),
                        help=f"the autograder's folder (default: ${ROOT_VARIABLE}, else /autograder)")
    parser.add_argument("--check", action="store_true",
                        help="only check that grading can run here (setup.sh's last step); grade nothing")
    args = parser.parse_args(argv)
    if args.check:
        try:
            weeks, _, level = ready(args.root)
        except Ungradable as error:
            print(f"the autograder cannot grade here: {error}", file=sys.stderr)
            return 1
        print(f"the autograder is ready: weeks {', '.join(map(str, weeks))}; sandbox: {sandbox.describe(level)}")
        return 0
    start = time.perf_counter()
    results_path = args.root / "results" / "results.json"
    try:
        results = grade_upload(args.root)
    except Ungradable as error:
        results = failure_results(report.printable(str(error)), time.perf_counter() - start)
    except Exception as error:  # noqa: BLE001 - whatever fails, Gradescope gets a results.json saying so
        traceback.print_exc()
        results = failure_results(report.printable(f"the grader failed ({type(error).__name__}: {error})"),
                                  time.perf_counter() - start)
    write_results(results_path, results)
    maximum = results["extra_data"].get("max_score", 0)
    print(f"score {results['score']:g}/{maximum:g} in {time.perf_counter() - start:.1f} s; "
          f"results: {results_path}\n{results['output']}")
    recorded, running = results["extra_data"].get("recorded_with", {}), results["extra_data"].get("environment", {})
    for package, version in recorded.items():
        if running.get(package) not in (None, version):
            print(f"warning: {package} {running[package]} runs here, but {version} recorded the reference evidence: "
                  "rebuild the zip with `course autograder` where these versions match", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
