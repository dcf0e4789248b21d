"""The one path from submitted week modules to their scores: the grader's pytest session.

`course grade` runs it in this process, `course grade-batch` in a fresh process per submission;
both read back what it judged (`--grade-json`) as `WeekReport`s for the scorecard, Gradescope's
results.json and the gradebook. Running `python -m pytest grader` by hand runs the same tests.
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from grader import runner
from grader.checks import Result

GRADER_DIR = Path(__file__).resolve().parent
QUIET = ["-p", "no:terminal", "-p", "no:cacheprovider", "-o", "addopts="]


class SessionError(RuntimeError):
    """The pytest session could not grade (bad usage, no sandbox, no reference evidence)."""


def arguments(weeks: list[int], target: Path, settings: runner.Settings, summary: Path) -> list[str]:
    """The pytest command line that grades `weeks` of `target` with `settings`."""
    options = [str(GRADER_DIR), "--target", str(target), "-m", " or ".join(f"week{week}" for week in weeks),
               "--week-timeout", str(settings.week_timeout_s), "--probe-timeout", str(settings.probe_timeout_s),
               "--memory-gb", repr(settings.memory_bytes / 2**30), "--grade-jobs", str(settings.jobs),
               "--grade-cache-dir", str(settings.cache_dir), "--grade-json", str(summary)]
    if settings.sandbox:
        options += ["--sandbox", settings.sandbox]
    if settings.progress:
        options += ["--grade-progress"]
    if settings.reference_dir is not None:
        options += ["--reference-dir", str(settings.reference_dir)]
    for path in settings.protected:
        options += ["--protect", str(path)]
    return options + QUIET


def grade(weeks: list[int], target: Path, settings: runner.Settings, in_process: bool = True
          ) -> list[runner.WeekReport]:
    """Grades `weeks` of `target` through the pytest session; the reports are in week order."""
    with tempfile.TemporaryDirectory(prefix="course-session-") as folder:
        summary = Path(folder) / "graded.json"
        command = arguments(weeks, target, settings, summary)
        if in_process:
            import pytest

            code = pytest.main(command)
            output = ""
        else:
            finished = subprocess.run([sys.executable, "-m", "pytest", *command], cwd=GRADER_DIR.parent,
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, check=False)
            code, output = finished.returncode, finished.stdout.decode("utf-8", "replace")[-2000:]
        if code not in (0, 1) or not summary.exists():
            raise SessionError(f"the grading session ended with pytest exit code {int(code)}{': ' + output if output else ''}")
        return reports(json.loads(summary.read_text()))


def reports(summary: dict) -> list[runner.WeekReport]:
    """WeekReports from the session's summary: the judged checks of each graded week."""
    graded = []
    for week_summary in summary["weeks"]:
        week = week_summary["week"]
        if "error" in week_summary:
            raise SessionError(week_summary["error"])
        checks = {check.name: check for check in runner.checks_module(week).CHECKS}
        results = [Result(checks[item["name"]], week, item["score"], item["status"], item["feedback"],
                          _strings(item.get("self_reported", [])))
                   for item in week_summary["results"]]
        results.sort(key=lambda result: list(checks).index(result.check.name))
        graded.append(runner.WeekReport(week, results, week_summary["seconds"], week_summary["output"],
                                        week_summary["environment"], week_summary["public_only"],
                                        _strings(week_summary.get("integrity", []))))
    return graded


def _strings(value) -> list[str]:
    """A list of strings from the summary (integrity flags, self-reported properties), else a clear error."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise SessionError(f"the grading session's summary holds {type(value).__name__} where a list of strings belongs")
    return value
