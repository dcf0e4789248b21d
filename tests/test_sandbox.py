"""Tests of the sandbox (grader/sandbox.py): hostile submissions graded at each sandbox level gain
nothing and leave nothing behind; the evidence pipe is bounded; a batch beside hostile classmates
keeps the honest ones' scores; instructor commands refuse to grade unsandboxed.

Where a level cannot run the tests skip, unless $COURSE_REQUIRE_SANDBOXES names it (CI sets
"bubblewrap,user"): then they fail.
"""

import dataclasses
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest

from grader import child_run, cli, evidence, grading, intake, reference, report, resource_limits, runner, sandbox
from grader import bubblewrap, layer_listing, permissions, uid_cleanup
from grader.instructor import batch, gradebook, gradescope, submissions, summary
from grader.checks import judge_check
from tests.test_grader import REPO, by_task, cases, grade_cases, submission

REQUIRED = {name for name in os.environ.get("COURSE_REQUIRE_SANDBOXES", "").split(",") if name}
SANDBOXED = ("bubblewrap", "user")


def require(level: str) -> None:
    problem = sandbox.why_unavailable(level)
    if problem and level in REQUIRED:
        pytest.fail(f"the {level} sandbox is required here but cannot run: {problem}")
    if problem:
        pytest.skip(f"the {level} sandbox cannot run here: {problem}")


@pytest.fixture(scope="session")
def markers():
    """A folder every user may write to, outside any sandbox: what appears in it escaped. It holds
    two setuid-root programs (copies of `id` and `sleep`, as root) for the attacks to try."""
    folder = Path(tempfile.mkdtemp(prefix="course-hostile-markers-", dir="/tmp"))
    folder.chmod(0o777)
    tools = folder / "tools"
    tools.mkdir()
    for name in ("id", "sleep"):
        program = tools / f"setuid-{name}"
        shutil.copy(shutil.which(name), program)
        program.chmod(0o4755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def marks_left(markers: Path) -> list[str]:
    """What the attacks wrote in the markers folder (its setuid programs aside)."""
    return sorted(path.name for path in markers.iterdir() if path.name != "tools")


@pytest.fixture(scope="session")
def listener():
    """A TCP and a UDP server on the host's loopback; returns their ports and what they received."""
    server = socket.create_server(("127.0.0.1", 0))
    datagrams = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    datagrams.bind(("127.0.0.1", 0))
    received = []

    def receive():
        while True:
            try:
                received.append(datagrams.recv(100))
            except OSError:
                return

    threading.Thread(target=receive, daemon=True).start()

    def serve():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            received.append(connection.recv(100))
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], received, datagrams.getsockname()[1]
    server.close()
    datagrams.close()


HOSTILE_MEMORY_BYTES = 2 * 2**30  # for all the processes of one grading together
TEMP_FOLDERS = ("/tmp", "/var/tmp", "/dev/shm", "/run/lock", "/var/lock")


def hostile_settings(level: str, tmp_path_factory) -> grading.Settings:
    return grading.Settings(cache_dir=tmp_path_factory.getbasetemp() / "course-cache", probe_timeout_s=10,
                           week_timeout_s=120, sandbox=level, memory_bytes=HOSTILE_MEMORY_BYTES)


def system_v_objects_of_graded_uids() -> list[str]:
    """The System V IPC objects of any uid the sandbox gives a child, as the grader's namespace sees them."""
    return [f"{kind} {identifier}" for kind in ("shm", "msg", "sem") for uid in sorted(uids_seen())
            for identifier in uid_cleanup.system_v_objects_of(uid, kind)]


def uids_seen() -> set[int]:
    """The uids in the grader's System V IPC tables that lie in the sandbox's range."""
    found = set()
    for kind in ("shm", "msg", "sem"):
        try:
            lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            found.update(int(field) for field in line.split()
                         if field.isdigit() and int(field) in permissions.CHILD_UIDS)
    return found


def control_groups_left() -> list[str]:
    root = Path("/sys/fs/cgroup")
    return sorted(str(path) for pattern in ("*/course-grade-*", "*/*/*/course-grade-*", "course-grade-*")
                  for path in root.glob(pattern) if f"-{os.getpid()}-" in path.name)


@pytest.fixture(scope="session", params=SANDBOXED)
def hostile_run(request, tmp_path_factory, markers, listener):
    """Every hostile case graded at one level, then what was left behind once the grading ended."""
    level = request.param
    require(level)
    settings = hostile_settings(level, tmp_path_factory)
    chosen = [case for case in cases.HOSTILE if level in case["levels"]]
    for week in sorted({case["week"] for case in chosen}):  # made before the cache is looked at
        reference.reference_folder(week, settings)
    folders_before = set(Path(tempfile.gettempdir()).glob("course-grade-*"))
    temp_before = {str(path) for base in TEMP_FOLDERS for path in Path(base).glob("course-hostile-*")}
    cache_before = sorted(path.relative_to(settings.cache_dir) for path in settings.cache_dir.rglob("*"))
    root = tmp_path_factory.mktemp(f"hostile-{level}")
    placeholders = {"REPO": REPO, "CACHE": settings.cache_dir, "GRADER_PID": os.getpid(), "MARKERS": markers,
                    "PORT": listener[0], "UDP_PORT": listener[2],
                    "MEMORY_HOGS": HOSTILE_MEMORY_BYTES // (700 * 2**20) + 2}
    reports = grade_cases([case for case in chosen if "settings" not in case], root, settings, placeholders)
    # cases of a later week (a model to compile, not one linear_predict) may ask for more time
    for overrides in {tuple(sorted(case["settings"].items())) for case in chosen if "settings" in case}:
        reports.update(grade_cases([case for case in chosen if tuple(sorted(case.get("settings", {}).items())) == overrides],
                                   root, dataclasses.replace(settings, **dict(overrides)), placeholders))
    time.sleep(4)  # the daemons' time to act, had they survived
    after = runner.grade_week(1, REPO / "solutions", settings)
    left = {
        "files in the markers folder": marks_left(markers),
        "forged results files": sorted(str(path) for path in root.rglob("results.json")),
        "files in the temp folders": sorted(path for base in TEMP_FOLDERS
                                            for path in map(str, Path(base).glob("course-hostile-*"))
                                            if not path.startswith(str(markers)) and path not in temp_before),
        "run folders": sorted(map(str, set(Path(tempfile.gettempdir()).glob("course-grade-*")) - folders_before)),
        "processes": [(pid, _cmdline(pid)[:200]) for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                      if (str(markers).encode() in _cmdline(pid) or _uid(pid) in permissions.CHILD_UIDS)
                      and not uid_cleanup.is_zombie(str(pid))],
        "new files in the cache": sorted(str(path) for path in settings.cache_dir.rglob("*")
                                         if path.relative_to(settings.cache_dir) not in cache_before),
        "network connections": list(listener[1]),
        "System V IPC objects": system_v_objects_of_graded_uids(),
        "control groups": control_groups_left(),
        "points a correct submission lost after them": [(r.check.name, r.feedback) for r in after.results
                                                        if r.score < r.max_score],
    }
    return level, reports, left


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _uid(pid: int) -> int:
    try:
        return os.stat(f"/proc/{pid}").st_uid
    except OSError:
        return -1


def test_there_are_enough_hostile_cases():
    assert len(cases.HOSTILE) >= 25


@pytest.mark.parametrize("case", cases.HOSTILE, ids=[case["name"] for case in cases.HOSTILE])
def test_hostile_code_gains_nothing(case, hostile_run):
    level, reports, _ = hostile_run
    if level not in case["levels"]:
        pytest.skip(f"not promised at the {level} level (README)")
    week_report = reports[case["name"]]
    by_task(week_report)
    checks = grading.checks_module(case["week"]).CHECKS
    assert [r.check.name for r in week_report.results] == [c.name for c in checks], "every check has a result"
    assert week_report.environment["sandbox"] == level
    for result in week_report.results:
        assert 0 <= result.score <= result.max_score
        if case["task"] is None and not case["correct_elsewhere"]:
            assert result.score == 0 and result.feedback
        elif result.check.task == case["task"]:
            assert result.score == 0, (result.check.name, result.status, result.feedback)
            assert result.feedback
        elif case["correct_elsewhere"]:
            assert result.score == result.max_score, (result.check.name, result.status, result.feedback)
    assert len(week_report.output) < 4 * grading.Settings.output_bytes + 10_000, "a child's output is capped"


def test_hostile_code_leaves_nothing_behind(hostile_run):
    _, _, left = hostile_run
    assert left == {key: [] for key in left}


def feedback_of(reports, name: str, task: str = "1.1") -> str:
    return " ".join(line for r in reports[name].results if r.check.task == task for line in r.feedback)


def test_hostile_feedback_says_what_happened(hostile_run):
    _, reports, _ = hostile_run
    assert "time limit" in feedback_of(reports, "infinite loop")
    assert "ended during this check" in feedback_of(reports, "os._exit(0)")
    assert "sys.exit(0)" in feedback_of(reports, "sys.exit(0)")
    assert "MemoryError" in feedback_of(reports, "huge allocation")
    # The process limit stops the fork bomb, or the memory limit over all its processes does first.
    fork_bomb = feedback_of(reports, "fork bomb")
    assert "stopped after" in fork_bomb or ("its processes together" in fork_bomb and "memory limit" in fork_bomb)
    assert "more than" in " ".join(line for r in reports["floods the evidence pipe with a frame of 2**62 bytes"].results
                                   for line in r.feedback)
    whole_week = " ".join(line for r in reports["sys.exit at import"].results for line in r.feedback)
    assert "importing week1_regression.py failed" in whole_week


def test_escape_codes_and_xml_breakers_stay_inert(hostile_run):
    _, reports, _ = hostile_run
    tricky = [reports["terminal escape codes in its error"], reports["XML breakers in its error"]]
    card = report.scorecard(tricky)
    assert "\x1b" not in card and "\r" not in card
    assert [line for line in card.splitlines() if line.startswith("TOTAL")] == [card.splitlines()[-1]]
    suites = ET.fromstring(report.junit(tricky))
    assert len(suites.findall(".//testcase")) == sum(len(week.results) for week in tricky)
    json.dumps(report.gradescope(tricky, 1.0), ensure_ascii=False).encode("utf-8")


# ---------------------------------------------------------------------------------------------
# The evidence pipe


def frames(*parts: tuple[bytes, str, bytes]) -> bytes:
    read_end, write_end = os.pipe()
    for kind, name, payload in parts:
        evidence.send(write_end, kind, name, payload)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        return pipe.read()


def take(data: bytes, record_bytes: int = 1000, total_bytes: int = 10_000, names=None) -> evidence.Stream:
    read_end, write_end = os.pipe()
    stream = evidence.Stream(record_bytes, total_bytes, names)
    reader = threading.Thread(target=stream.read_from, args=(read_end,))
    reader.start()
    with os.fdopen(write_end, "wb") as pipe:
        pipe.write(data)
    reader.join(timeout=10)
    os.close(read_end)
    return stream


def test_stream_takes_records_and_the_running_probe():
    payload = evidence.dumps({"x": evidence.to_array(np.array([1.0, 2.0]))})
    stream = take(frames((evidence.RUNNING, "probe_a", b""), (evidence.RECORD, "probe_a", payload),
                         (evidence.RUNNING, "probe_b", b"")), record_bytes=10_000)
    assert stream.problem == ""
    assert stream.running == "probe_b"
    assert list(evidence.parse(stream.records["probe_a"])["x"]) == [1.0, 2.0]


@pytest.mark.parametrize("data, reason", [
    (b"not a frame at all", "not a frame"),
    (evidence.MAGIC + b"E" + bytes([3]) + b"../" + (1).to_bytes(8, "big") + b"x", "names a record"),
    (evidence.MAGIC + b"E" + bytes([1]) + b"a" + (2**62).to_bytes(8, "big"), "more than 1,000"),
])
def test_stream_refuses_bad_frames(data, reason):
    good = frames((evidence.RECORD, "first", b"ok"))
    stream = take(good + data + frames((evidence.RECORD, "after", b"ok")))
    assert reason in stream.problem
    assert list(stream.records) == ["first"], "nothing after a bad frame is taken"


def test_stream_keeps_a_bounded_record_of_probe_starts():
    """A child flipping between two probe names, frame after frame, cannot grow the grader's memory
    (nor the work of `Stream.overrun`) past `MAX_STARTS` entries; a repeated name adds none."""
    def running(name: str) -> bytes:  # one RUNNING frame, as evidence.send writes it
        return evidence.MAGIC + evidence.RUNNING + bytes([len(name)]) + name.encode() + (0).to_bytes(8, "big")

    stream = take(b"".join(running("ab"[index % 2]) for index in range(50_000)), total_bytes=10**7, names={"a", "b"})
    assert stream.problem == "" and stream.running == "b"
    assert len(stream.started) == evidence.MAX_STARTS
    repeated = take(running("a") * 1000, total_bytes=10**7, names={"a"})
    assert len(repeated.started) == 1 and repeated.overrun(3600.0) == 0.0


def test_stream_bounds_the_total():
    stream = take(frames(*[(evidence.RECORD, f"r{index}", b"x" * 900) for index in range(20)]))
    assert "more than 10,000 bytes" in stream.problem
    assert len(stream.records) < 11


def test_parse_refuses_pickles_and_bombs():
    with pytest.raises(Exception):
        evidence.parse(b"PK\x03\x04 truncated")
    buffer = io.BytesIO()
    np.savez(buffer, objects=np.array([object()], dtype=object))
    with pytest.raises(evidence.EvidenceError, match="dtype object"):
        evidence.parse(buffer.getvalue())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("zeros.npy", b"\0" * 2**21)
    with pytest.raises(evidence.EvidenceError, match="more than"):
        evidence.parse(buffer.getvalue(), max_bytes=2**20)


# ---------------------------------------------------------------------------------------------
# Levels and instructor commands


def test_unknown_or_unavailable_levels_are_refused(monkeypatch):
    with pytest.raises(sandbox.Unavailable, match="unknown sandbox level"):
        sandbox.choose("docker")
    monkeypatch.setattr(sandbox, "why_unavailable", lambda level, protected=(): "no such thing here")
    with pytest.raises(sandbox.Unavailable, match="bubblewrap sandbox cannot run here: .*no such thing"):
        sandbox.choose("bubblewrap")
    assert sandbox.choose("auto") == "none"
    assert sandbox.choose("none") == "none"


def test_protected_folder_inside_the_python_environment_is_refused():
    inside = Path(bubblewrap.python_folders()[0]) / "course-cache"
    problem = sandbox.why_unavailable("bubblewrap", (str(inside),))
    if shutil.which("bwrap"):
        assert "lies inside a folder the sandbox must show" in problem


def test_grade_batch_refuses_to_grade_unsandboxed(tmp_path, capsys):
    (tmp_path / "subs" / "alice").mkdir(parents=True)
    code = batch.main([str(tmp_path / "subs"), "--out", str(tmp_path / "out"), "--weeks", "1", "--sandbox", "none",
                       "--quiet"])
    assert code == 2
    assert "--allow-unsandboxed" in capsys.readouterr().err
    assert not (tmp_path / "out" / "gradebook.csv").exists()


def test_unsandboxed_grading_says_so(tmp_path, capsys, monkeypatch):
    from grader import cli

    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    assert cli.main(["1", "--target", "exercises", "--sandbox", "none", "--json", str(tmp_path / "r.json")]) == 0
    assert "NOT SANDBOXED" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["extra_data"]["environment"]["sandbox"] == "none"


def test_a_sandbox_that_cannot_start_is_not_the_submission_s_fault(tmp_path, monkeypatch):
    require("bubblewrap")
    settings = grading.Settings(cache_dir=tmp_path / "cache", sandbox="bubblewrap")
    reference.reference_folder(1, settings)
    monkeypatch.setattr(bubblewrap, "arguments", lambda *args: ["bwrap", "--no-such-option", "--"])
    with pytest.raises(child_run.InfrastructureError, match="did not start"):
        runner.grade_week(1, REPO / "solutions", settings)


# ---------------------------------------------------------------------------------------------
# A batch with hostile classmates


CLASSMATE_ATTACKS = {
    "mallory_kills": "    import os\n    os.kill(-1, 9)\n    raise RuntimeError('killed what it could')\n",
    "mallory_reads": (
        "    import glob, os\n    found = []\n"
        "    for pattern in ('/tmp/course-grade-*/submission/*.py', '/tmp/course-batch-*/*.py', '{SUBMISSIONS}/*/*.py',\n"
        "                    '{OUT}/*/results.json'):\n"
        "        for path in glob.glob(pattern):\n            try:\n"
        "                found.append(open(path).read(200))\n            except OSError:\n                pass\n"
        "    raise RuntimeError('found: ' + ' | '.join(found))\n"),
    "mallory_rewrites": (
        "    import os\n    if os.fork() == 0:\n        os.setsid()\n        os.execv('/bin/sh', ['sh', '-c', "
        "'sleep 6; echo mallory,graded,23,23,100 >> {OUT}/gradebook.csv; echo x > {OUT}/alice/results.json'])\n"
        "    return features @ weights + bias\n"),
}


def test_batch_beside_hostile_classmates(tmp_path):
    level = sandbox.choose(None)
    if level == "none":
        require("bubblewrap")
    subs, out = tmp_path / "subs", tmp_path / "out"
    source = (REPO / "solutions" / "week1_regression.py").read_text()
    for honest in ("alice", "bob"):
        (subs / honest).mkdir(parents=True)
        (subs / honest / "week1_regression.py").write_text(source + f"\n# {honest}'s own work\n")
    placeholders = {"SUBMISSIONS": subs, "OUT": out}
    for name, attack in CLASSMATE_ATTACKS.items():
        case = cases.hostile(name, attack)
        submission(case, subs / name, placeholders)
        (subs / name / "results.json").unlink(missing_ok=True)
    with zipfile.ZipFile(subs / "gradebook.csv.zip", "w") as archive:
        archive.writestr("week1_regression.py", source)
    corrupt = subs / "corrupt.zip"
    with zipfile.ZipFile(corrupt, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("week1_regression.py", source)
    data = bytearray(corrupt.read_bytes())
    data[60:90] = b"\xff" * 30  # inside the deflate stream
    corrupt.write_bytes(bytes(data))
    (subs / "\tcmd").mkdir()
    (subs / "\tcmd" / "week1_regression.py").write_text(source)

    code = batch.main([str(subs), "--out", str(out), "--weeks", "1", "--jobs", "2", "--quiet", "--timeout", "90",
                       "--probe-timeout", "20"])
    time.sleep(8)  # the rewriting daemon's time to act, had it survived
    rows = {row["submission"]: row for row in _csv(out / "gradebook.csv")}
    assert code == 0
    assert len(rows) == 8, sorted(rows)
    week_1 = f"{sum(check.points for check in grading.checks_module(1).CHECKS):g}"  # hidden checks included
    for honest in ("alice", "bob", "gradebook.csv", "mallory_rewrites"):
        assert (rows[honest]["score"], rows[honest]["max_score"]) == (week_1, week_1), rows[honest]
    assert rows["corrupt"]["status"] == gradebook.ERROR
    task_1_1 = sum(check.points for check in grading.checks_module(1).CHECKS if check.task == "1.1")
    for attacker in ("mallory_kills", "mallory_reads"):
        assert float(rows[attacker]["score"]) == float(week_1) - task_1_1, rows[attacker]
    feedback = json.dumps(json.loads((out / "mallory_reads" / "results.json").read_text()))
    assert "own work" not in feedback and "Task 1.1" in feedback
    assert "mallory,graded" not in (out / "gradebook.csv").read_text()
    assert json.loads((out / "alice" / "results.json").read_text())["score"] == float(week_1)
    tab_row = next(row for name, row in rows.items() if "cmd" in name)
    assert not tab_row["submission"].startswith(("\t", "=")), "the CSV guard covers TAB"


def _csv(path: Path) -> list[dict]:
    import csv

    with open(path, newline="") as file:
        return list(csv.DictReader(file))


# ---------------------------------------------------------------------------------------------
# Round 2 (issue 25): outputs

NEVER_WRITTEN = cases.LINE_BREAKERS + cases.BIDI_AND_INVISIBLE + "\x1b\r"


def everything_written(reports: list[runner.WeekReport], tmp_path: Path) -> dict[str, str]:
    """What the instructor's and the student's commands print or write of these reports: the scorecard,
    JUnit, results.json (as Gradescope shows it, not \\u-escaped), the pytest failure messages, and
    grade-batch's gradebook.csv and summary.md."""
    from grader.conftest import failure_message

    results = report.gradescope(reports, 1.0)
    results["extra_data"]["batch"] = {"status": gradebook.GRADED, "problems": []}
    row = gradebook.gradebook_row(submissions.Submission("hostile", tmp_path, "hostile"), results)
    tests = gradebook.test_names([week_report.week for week_report in reports])
    gradebook.write_gradebook(tmp_path / "gradebook.csv", [row], tests)
    return {"scorecard": report.scorecard(reports), "junit": report.junit(reports),
            "results.json": json.dumps(results, ensure_ascii=False, indent=1),
            "pytest": "\n".join(failure_message(result) for result in report.all_results(reports)),
            "gradebook.csv": (tmp_path / "gradebook.csv").read_bytes().decode().replace("\r\n", "\n"),
            "summary.md": summary.summary_markdown(summary.summary([row], tests))}


def test_unicode_separators_and_bidirectional_controls_stay_inert(hostile_run, tmp_path):
    _, reports, _ = hostile_run
    tricky = [reports["Unicode line separators and bidirectional controls in its error"]]
    feedback = feedback_of(reports, "Unicode line separators and bidirectional controls in its error")
    assert "\u2028TOTAL 23/23 (100%)\u2029" in feedback and "\u202e" in feedback, "the attack reached the feedback"
    written = everything_written(tricky, tmp_path)
    assert "\\u2028TOTAL 23/23 (100%)\\u2029" in written["scorecard"] and "\\u202edessap" in written["junit"]
    for name, text in written.items():
        assert not set(text) & set(NEVER_WRITTEN), (name, sorted(set(text) & set(NEVER_WRITTEN)))
        lines = text.splitlines()
        assert lines == text.removesuffix("\n").split("\n"), name  # only newlines end its lines
        forged = [line for line in lines if line.startswith("TOTAL")]
        assert forged == (lines[-1:] if name == "scorecard" else []), (name, forged)
    assert written["scorecard"].splitlines()[-1].startswith("TOTAL ")


def test_the_hidden_seed_appears_in_no_report(hostile_run, tmp_path, tmp_path_factory):
    level, reports, _ = hostile_run
    seed = grading.hidden_seed(hostile_settings(level, tmp_path_factory))
    assert seed is not None, "the hostile run grades the hidden checks"
    forms = [str(seed), f"{seed:x}", f"{seed:X}", f"{seed:,}"]
    hidden_feedback = " ".join(line for result in reports["prints the hidden seed in its error"].results
                               if result.check.hidden and result.check.task == "1.1" for line in result.feedback)
    assert grading.SEED_SHOWN_AS in hidden_feedback, "the attack found the seed, and it was taken out"
    graded = [week_report for week_report in reports.values() if isinstance(week_report, runner.WeekReport)]
    for name, text in everything_written(graded, tmp_path).items():
        assert not [form for form in forms if form in text], name
    for week_report in graded:
        assert not [form for form in forms if form in week_report.output]


def test_the_hidden_seed_is_taken_out_of_any_text():
    seed = 4_611_686_018_427_387_000
    text = f"seed {seed}, {seed:#x}, {seed:X}, {seed:_}, {' '.join(str(seed))}; {seed + 1} and 0.25 stay"
    assert grading.without_seed(text, seed) == ("seed <the hidden inputs' seed>, 0x<the hidden inputs' seed>, "
                                               "<the hidden inputs' seed>, <the hidden inputs' seed>, "
                                               f"<the hidden inputs' seed>; {seed + 1} and 0.25 stay")
    assert grading.without_seed(text, None) == text


def test_a_submission_right_on_the_public_inputs_only_is_told_nothing_of_the_seed(tmp_path, tmp_path_factory):
    """The hidden checks fail with the grader's own feedback (values that differ, the hint): no seed in it."""
    settings = hostile_settings(sandbox.choose(None), tmp_path_factory)
    public_only = ("    import numpy\n    public = numpy.random.default_rng(2).standard_normal((7, 5)).astype(numpy.float32)\n"
                   "    return features @ weights + bias * jnp.all(features == public)\n")  # the bias on public inputs only
    folder = submission(cases.hostile("right on the public inputs only", public_only), tmp_path / "public_only")
    week_report = runner.grade_week(1, folder, settings)
    task = {result.check.name: result for result in week_report.results if result.check.task == "1.1"}
    assert task["linear_predict: predictions"].score == task["linear_predict: predictions"].max_score
    assert task["linear_predict (hidden inputs)"].score == 0 and task["linear_predict (hidden inputs)"].feedback
    seed = grading.hidden_seed(settings)
    for name, text in everything_written([week_report], tmp_path).items():
        assert str(seed) not in text and f"{seed:x}" not in text.lower(), name


# ---------------------------------------------------------------------------------------------
# Round 2 (issue 25): intake of submitted files, and evidence bounded by what it decodes to

MODULE = "week1_regression.py"
NOT_REGULAR_FILES = {  # how to make the week module something else, and what the grader must say it is
    "a link to the solution": (lambda path: path.symlink_to(REPO / "solutions" / MODULE), "a symbolic link"),
    "a link to /dev/zero": (lambda path: path.symlink_to("/dev/zero"), "a symbolic link"),
    "a FIFO": (os.mkfifo, "a FIFO"),
    "a folder": (lambda path: path.mkdir(), "a folder"),
}


def unblocker(fifo: Path, seconds: float, blocked: list) -> threading.Timer:
    """A timer that, after `seconds`, opens `fifo` (with O_RDWR, which never blocks) so that a grader
    blocked opening it goes on, and notes it in `blocked`: the test then fails instead of hanging."""

    def unblock():
        if fifo.is_fifo():
            blocked.append(fifo.name)
            os.close(os.open(fifo, os.O_RDWR))

    return threading.Timer(seconds, unblock)


@pytest.mark.parametrize("level", SANDBOXED)
@pytest.mark.parametrize("kind", NOT_REGULAR_FILES)
def test_course_grade_refuses_a_week_module_that_is_not_a_regular_file(kind, level, tmp_path, tmp_path_factory,
                                                                      monkeypatch, capsys):
    require(level)
    settings = hostile_settings(level, tmp_path_factory)
    reference.reference_folder(1, settings)
    make, what = NOT_REGULAR_FILES[kind]
    target = tmp_path / "target"
    target.mkdir()
    make(target / MODULE)
    blocked = []
    timer = unblocker(target / MODULE, 60, blocked)
    timer.start()
    monkeypatch.setenv("COURSE_CACHE_DIR", str(settings.cache_dir))
    monkeypatch.setattr(runner, "run_child", lambda *args, **kwargs: pytest.fail("a grading child was started"))
    start = time.perf_counter()
    code = cli.main(["1", "--target", str(target), "--sandbox", level, "--json", str(tmp_path / "results.json")])
    seconds = time.perf_counter() - start
    timer.cancel()
    assert not blocked, "the grader blocked opening the FIFO"
    assert code == 0, capsys.readouterr()
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["score"] == 0 and results["tests"]
    for test in results["tests"]:
        assert test["score"] == 0 and f"{MODULE} is {what}: not graded" in test["output"], test
    assert seconds < 60, "nothing is read or copied: the week is scored at once"


def test_intake_reads_regular_files_only_and_bounds_them(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / MODULE).write_text("x = 1\n")
    (tmp_path / "big.py").write_bytes(b"#" * (intake.MAX_MODULE_BYTES + 1))
    (tmp_path / "via").symlink_to(tmp_path / "sub")
    assert intake.read_file(tmp_path / "sub", MODULE) == b"x = 1\n"
    with intake.Folder(tmp_path) as folder:
        assert folder.read(("sub", MODULE)) == b"x = 1\n"
        with pytest.raises(intake.Refused, match=r"^via is a symbolic link: not graded$"):
            folder.read(("via", MODULE))  # a link anywhere on the way is not followed
        with pytest.raises(intake.Refused, match=r"^big.py is larger than 1 MiB: not graded$"):
            folder.read(("big.py",))
        with pytest.raises(FileNotFoundError):
            folder.read(("absent.py",))
        assert folder.listing(max_depth=3, max_entries=10)[("via",)][0] == "link"
    with pytest.raises(intake.Refused, match=r"^via is a symbolic link: not graded$"):
        intake.Folder(tmp_path / "via", follow_root=False)


def linked_class(subs: Path, source: str, elsewhere: Path) -> None:
    """alice's own work, and classmates whose entries are links to it (or to a zip of it)."""
    (subs / "alice").mkdir(parents=True)
    (subs / "alice" / MODULE).write_text(source + "\n# alice's own work\n")
    (subs / "mallory").symlink_to(subs / "alice")  # the whole entry is a link to alice's folder
    (subs / "trudy").mkdir()
    (subs / "trudy" / MODULE).symlink_to(subs / "alice" / MODULE)  # the module is a link to alice's
    with zipfile.ZipFile(subs / "zipped.zip", "w") as archive:  # a zip whose module is a link to alice's
        entry = zipfile.ZipInfo(MODULE)
        entry.external_attr = (0o120777 << 16)
        archive.writestr(entry, str(subs / "alice" / MODULE))
    elsewhere.mkdir()
    with zipfile.ZipFile(elsewhere / "alice.zip", "w") as archive:
        archive.writestr(MODULE, source)
    (subs / "eve.zip").symlink_to(elsewhere / "alice.zip")  # a zip that is a link to a zip elsewhere


@pytest.mark.parametrize("level", SANDBOXED)
def test_batch_refuses_links_to_a_classmate_s_work(level, tmp_path):
    require(level)
    subs, out = tmp_path / "subs", tmp_path / "out"
    source = (REPO / "solutions" / MODULE).read_text()
    linked_class(subs, source, tmp_path / "elsewhere")
    code = batch.main([str(subs), "--out", str(out), "--weeks", "1", "--jobs", "2", "--quiet", "--sandbox", level,
                       "--timeout", "90", "--probe-timeout", "20"])
    assert code == 0
    rows = {row["submission"]: row for row in _csv(out / "gradebook.csv")}
    assert set(rows) == {"alice", "mallory", "trudy", "zipped", "eve"}, "the batch writes every row"
    week_1 = f"{sum(check.points for check in grading.checks_module(1).CHECKS):g}"
    assert (rows["alice"]["status"], rows["alice"]["score"]) == (gradebook.GRADED, week_1), rows["alice"]
    for name, link in (("mallory", "mallory"), ("trudy", MODULE), ("zipped", MODULE), ("eve", "eve.zip")):
        row = rows[name]
        assert (row["status"], float(row["score"])) == (gradebook.ERROR, 0.0), row
        assert f"{link} is a symbolic link: not graded" in row["problems"], row


def test_gradescope_refuses_a_linked_upload(tmp_path):
    source = (REPO / "solutions" / MODULE).read_text()
    elsewhere = tmp_path / "classmate"
    elsewhere.mkdir()
    with zipfile.ZipFile(elsewhere / "homework.zip", "w") as archive:
        archive.writestr(MODULE, source)
    (elsewhere / MODULE).write_text(source)
    for index, (name, problem) in enumerate((("homework.zip", "homework.zip is a symbolic link"),
                                             (MODULE, f"{MODULE} is a symbolic link"))):
        upload = tmp_path / f"upload-{index}"
        upload.mkdir()
        (upload / name).symlink_to(elsewhere / name)
        submission, _ = gradescope.find_upload(upload)
        staged = submissions.stage(submission, [1])
        assert staged.modules == {} and f"{problem}: not graded" in staged.fatal, staged
        results = batch.grade_submission(submission, staged, [1], grading.Settings())  # no child: an error row
        assert results["score"] == 0 and problem in results["extra_data"]["batch"]["problems"][0]


# Evidence bounded by what it decodes to


def zeros_npz(*sizes: int, method: int = zipfile.ZIP_DEFLATED) -> bytes:
    """An evidence record of zero arrays of `sizes` bytes, deflated: small on the pipe, large decoded."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for index, size in enumerate(sizes):
            with archive.open(f"zeros{index}.npy", "w") as member:
                np.lib.format.write_array_header_1_0(member, {"descr": "|u1", "fortran_order": False, "shape": (size,)})
                member.write(bytes(size))
    return buffer.getvalue()


def test_one_budget_bounds_what_all_records_of_a_run_decode_to():
    budget = evidence.Budget(3 * 2**20)
    record = zeros_npz(2**20, 2**20)
    assert len(record) < 10_000
    assert evidence.parse(record, "first", budget=budget)["zeros0"].nbytes == 2**20
    with pytest.raises(evidence.EvidenceError, match="second holds more than 1,048,576 bytes"):
        evidence.parse(record, "second", budget=budget)  # each alone fits, not both
    assert budget.left == 2**20
    with pytest.raises(evidence.EvidenceError, match="more than 3 arrays"):
        evidence.parse(zeros_npz(1, 1, 1, 1), max_arrays=3)
    with pytest.raises(evidence.EvidenceError, match="compressed with method 12"):
        evidence.parse(zeros_npz(8, method=zipfile.ZIP_BZIP2))


def test_arrays_are_checked_against_the_budget_before_they_are_made():
    header_only = io.BytesIO()
    with zipfile.ZipFile(header_only, "w") as archive:
        with archive.open("huge.npy", "w") as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f8", "fortran_order": False, "shape": (2**31,)})
    with pytest.raises(evidence.EvidenceError, match="header says 17,179,869,184 bytes, more than the record holds"):
        evidence.parse(header_only.getvalue())
    text = evidence.dumps({"text": np.asarray("x" * 1000)})  # text counts 4 bytes a character
    with pytest.raises(evidence.EvidenceError, match="holds more than 3,999 bytes"):
        evidence.parse(text, budget=evidence.Budget(3999))
    budget = evidence.Budget(5000)
    assert str(evidence.parse(text, budget=budget)["text"]) == "x" * 1000 and budget.left == 1000
    many = io.BytesIO()
    with zipfile.ZipFile(many, "w") as archive:
        for index in range(5000):
            archive.writestr(f"a{index}.npy", b"")
    start = time.perf_counter()
    with pytest.raises(evidence.EvidenceError, match="zip directory lists 5000 arrays"):
        evidence.parse(many.getvalue())
    assert time.perf_counter() - start < 0.1, "refused from the directory's size, before zipfile reads it"


def test_the_stream_takes_only_the_records_asked_for_each_once():
    payload = evidence.dumps({"x": evidence.to_array(1.0)})
    names = ["__module__", "probe_a"]
    taken = take(frames((evidence.RUNNING, "probe_a", b""), (evidence.RECORD, "probe_a", payload),
                        (evidence.RUNNING, evidence.DONE, b"")), record_bytes=10_000, names=names)
    assert (taken.problem, list(taken.records), taken.running) == ("", ["probe_a"], evidence.DONE)
    stranger = take(frames((evidence.RECORD, "probe_a", payload), (evidence.RECORD, "r0", payload),
                           (evidence.RECORD, "__module__", payload)), record_bytes=10_000, names=names)
    assert "sends 'r0', which the grader did not ask for" in stranger.problem
    assert list(stranger.records) == ["probe_a"], "nothing after a record not asked for is taken"
    twice = take(frames((evidence.RECORD, "probe_a", payload), (evidence.RECORD, "probe_a", b"other")),
                 record_bytes=10_000, names=names)
    assert "sends the record probe_a twice" in twice.problem and twice.records["probe_a"] == payload


def crafted_listing(kinds: int) -> np.ndarray:
    """A layer listing of `kinds` layers, each of a kind of its own (quadratic for a naive comparison)."""
    return np.asarray(evidence.dumps_json([{"path": f"p{index}", "kind": f"K{index}", "settings": {}, "params": {}}
                                           for index in range(kinds)]))


LENET_LISTING = np.asarray(evidence.dumps_json([
    {"path": "c1", "kind": "Conv", "params": {"bias": [6], "kernel": [5, 5, 1, 6]},
     "settings": {"in_features": 1, "out_features": 6, "kernel_size": [5, 5], "strides": 1, "padding": "VALID",
                  "use_bias": True, "input_dilation": 1, "kernel_dilation": 1, "feature_group_count": 1}},
    {"path": "f1", "kind": "Linear", "params": {"bias": [10], "kernel": [6, 10]},
     "settings": {"in_features": 6, "out_features": 10, "use_bias": True}}]))


@pytest.mark.parametrize("listing, problem", [
    (crafted_listing(100_000), "holds 5,"),  # 5.5 million characters
    (crafted_listing(layer_listing.MAX_LAYERS + 1), f"at most {layer_listing.MAX_LAYERS} layers"),
    (np.asarray("[" * 60_000 + "]" * 60_000), "not JSON"),
    (np.asarray('[{"path": "p", "kind": "K", "settings": {"padding": [[[[1]]]]}, "params": {}}]'), "layer 0"),
    (np.asarray('[{"path": "p", "kind": "K", "settings": {}, "params": {"kernel": [3.5]}}]'), "layer 0"),
    (np.asarray('[{"path": "p", "kind": "' + "K" * 300 + '", "settings": {}, "params": {}}]'), "layer 0"),
    (np.asarray([1.0, 2.0]), "not a text"),
])
def test_a_crafted_layer_listing_is_refused_at_once_and_scores_0(listing, problem):
    check = next(check for check in grading.checks_module(5).CHECKS if check.probe == "LeNet5.init")
    expected = {"layers": LENET_LISTING, "parameter_count": np.asarray(200), evidence.STATUS: np.asarray("ok")}
    got = {**expected, "layers": listing}
    assert judge_check(check, 5, expected, expected, "").score == check.points
    start = time.perf_counter()
    result = judge_check(check, 5, got, expected, "")
    assert time.perf_counter() - start < 1.0
    assert result.score == 0 and problem in " ".join(result.feedback), result.feedback


def test_the_largest_listing_allowed_is_compared_in_milliseconds():
    listing = crafted_listing(layer_listing.MAX_LAYERS)
    start = time.perf_counter()
    records = layer_listing.layer_records(listing)
    layer_listing.match_layers(records, layer_listing.layer_records(LENET_LISTING))
    layer_listing.layer_counts(records)
    assert time.perf_counter() - start < 0.5


def test_a_crafted_layer_listing_in_a_reply_says_why_it_scores_0(hostile_run):
    _, reports, _ = hostile_run  # test_hostile_code_gains_nothing: 0 in task 4.1, the rest full marks
    feedback = feedback_of(reports, "sends a layer listing of 100,000 kinds of layers", task="4.1")
    assert "the layer listing holds" in feedback and "characters, more than" in feedback, feedback


def test_hostile_evidence_is_refused_with_the_reason(hostile_run):
    _, reports, _ = hostile_run
    for name, reason in (("sends 6 records small on the pipe that decode to 320 MiB each", "holds more than"),
                         ("sends records that together decode past the budget", "holds more than"),
                         ("sends an array whose header claims 16 GiB", "more than the record holds"),
                         ("sends a record of 50,000 tiny arrays", "zip directory lists 50000 arrays"),
                         ("sends 100,000 tiny records under names of its own", "which the grader did not ask for")):
        week = " ".join(line for result in reports[name].results for line in result.feedback)
        assert "not graded: the grader refused this check's output: " in feedback_of(reports, name), name
        assert reason in week, (name, week)


PEAK_MEMORY_SCRIPT = """
import json, resource, sys
from pathlib import Path
from grader import grading, reference, runner
from tests.grader_cases import cases
from tests.test_grader import submission

cache, root, level = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
settings = grading.Settings(cache_dir=cache, probe_timeout_s=20, week_timeout_s=120, sandbox=level)
reference.reference_folder(1, settings)
peaks = {}
for name in ["clean", *sys.argv[4:]]:
    case = cases.hostile("clean", cases.SCORE) if name == "clean" else next(c for c in cases.HOSTILE if c["name"] == name)
    folder = submission(case, root / str(len(peaks)))
    report = runner.grade_week(1, folder, settings)
    score = sum(result.score for result in report.results if result.check.task == "1.1")
    peaks[name] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, score)
print(json.dumps(peaks))
"""
DECODED_BOMBS = ["sends records that together decode past the budget",
                 "sends 6 records small on the pipe that decode to 320 MiB each"]
PEAK_MEMORY_BOUND = 300 * 2**20  # over a clean run: the evidence budget (256 MiB) and what parsing needs


def test_the_grader_s_memory_for_a_decoded_bomb_stays_within_the_budget(tmp_path, tmp_path_factory):
    level = sandbox.choose(None)
    if level == "none":
        require("bubblewrap")
    cache = hostile_settings(level, tmp_path_factory).cache_dir
    measured = subprocess.run([sys.executable, "-c", PEAK_MEMORY_SCRIPT, str(cache), str(tmp_path), level,
                               *DECODED_BOMBS], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert measured.returncode == 0, measured.stderr[-3000:]
    peaks = json.loads(measured.stdout.strip().splitlines()[-1])
    clean_peak, clean_score = peaks["clean"]
    assert clean_score > 0
    for name in DECODED_BOMBS:
        peak, score = peaks[name]
        assert score == 0, name
        assert peak - clean_peak <= PEAK_MEMORY_BOUND, (name, f"{(peak - clean_peak) / 2**20:.0f} MiB over a clean run")


# ---------------------------------------------------------------------------------------------
# Round 2 (issue 25): self-reported properties and integrity flags

SELF_REPORTED_ATTACKS = [case for case in cases.HOSTILE if "honest" in case]


@pytest.fixture(scope="session")
def honest_without_the_property(tmp_path_factory):
    """The honest submissions that lack a self-reported property (`cases.SELF_REPORTED_HONEST`), graded
    once, at the first sandbox level that runs here: what the attacks must not beat."""
    level = next((level for level in SANDBOXED if not sandbox.why_unavailable(level)), SANDBOXED[0])
    require(level)
    return grade_cases(cases.SELF_REPORTED_HONEST, tmp_path_factory.mktemp("self-reported-honest"),
                       dataclasses.replace(hostile_settings(level, tmp_path_factory), **cases.LATER_WEEK_SETTINGS))


def _task_scores(week_report) -> dict[str, float]:
    return {task: round(sum(result.score for result in results), 4) for task, results in by_task(week_report).items()}


@pytest.mark.parametrize("case", SELF_REPORTED_ATTACKS, ids=[case["name"] for case in SELF_REPORTED_ATTACKS])
def test_faking_a_self_reported_property_gains_nothing_and_is_flagged(case, hostile_run, honest_without_the_property):
    _, reports, _ = hostile_run
    attack, honest = reports[case["name"]], honest_without_the_property[case["honest"]]
    honest_case = next(one for one in cases.SELF_REPORTED_HONEST if one["name"] == case["honest"])
    by_task(honest)  # raises where the case's patches no longer apply
    assert all(result.score == result.max_score for result in honest.results), \
        [(r.check.name, r.feedback) for r in honest.results if r.score < r.max_score]
    mine, theirs = _task_scores(attack), _task_scores(honest)
    assert mine.keys() == theirs.keys() and all(mine[task] <= theirs[task] for task in theirs), (mine, theirs)
    # inside its process the fake worked: the attack's code reported every property; the honest code did not,
    # and its student still reads the advice, marked as not scored
    attack_claims = [claim for result in attack.results for claim in result.self_reported]
    assert attack_claims and all(claim.endswith("reported yes") for claim in attack_claims), attack_claims
    for task, words in honest_case["advice"].items():
        lines = [line for result in by_task(honest)[task] for line in result.feedback]
        assert any(line.startswith("reported by your code, not scored") for line in lines), lines
        assert any(words in line for line in lines), (words, lines)
        assert any(claim.endswith("reported no") for result in by_task(honest)[task] for claim in result.self_reported)
    # flagged for the instructor, in every output; the honest submission is not
    assert any(case["flag"] in flag for flag in attack.integrity), attack.integrity
    assert honest.integrity == []
    flag = next(flag for flag in attack.integrity if case["flag"] in flag)
    card = report.scorecard([attack])
    assert "Integrity (for your instructor)" in card and flag in card
    results = report.gradescope([attack], 1.0)
    assert flag in results["extra_data"]["integrity"] and flag in results["output"]
    assert results["extra_data"]["self_reported"] == [f"week {attack.week} / {result.check.name}: {claim}"
                                                      for result in attack.results for claim in result.self_reported]
    suite = ET.fromstring(report.junit([attack])).find("testsuite")
    assert flag in suite.find("properties/property[@name='integrity']").get("value")
    assert "Integrity" not in report.scorecard([honest]) and report.gradescope([honest], 1.0)["extra_data"]["integrity"] == []


# ---------------------------------------------------------------------------------------------
# Round 2 (issue 25): resources over all processes of a grading, and the user level


def test_hostile_resource_attacks_say_what_stopped_them(hostile_run):
    level, reports, _ = hostile_run
    assert "memory limit of 2 GiB" in feedback_of(reports, "holds memory over several processes")
    assert "No space left on device" in feedback_of(reports, "holds RAM-backed files in /dev/shm")
    assert "the setuid program ran as '0'" not in feedback_of(reports, "runs a setuid program to become root")
    assert "the limits held: ['2147483648', " in feedback_of(reports, "starts a process without the grader's limits")


def spawn(code: str) -> "subprocess.Popen":
    import subprocess
    import sys

    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def watch(process, memory_bytes: int, cpu_seconds: float, seconds: float = 20.0) -> resource_limits.Usage:
    """Watches `process` and its descendants (no control group, as on a laptop) until it ends or
    `seconds` pass; then kills what is left of them."""

    def kill():
        try:
            os.killpg(process.pid, 9)
        except ProcessLookupError:
            pass

    watchdog = resource_limits.Watchdog(process.pid, None, None, memory_bytes, cpu_seconds, kill=kill).start()
    try:
        process.wait(timeout=seconds)
    except Exception:  # noqa: BLE001 - the assertions below say what went wrong
        pass
    usage = watchdog.stop()
    kill()
    process.wait()
    return usage


def test_the_watchdog_sums_memory_over_a_process_and_its_children():
    hog = "import time; block = bytearray(120 * 2**20); time.sleep(30)"
    parent = spawn(f"import subprocess, sys, time\nkids = [subprocess.Popen([sys.executable, '-c', {hog!r}]) "
                   "for _ in range(3)]\ntime.sleep(30)")
    usage = watch(parent, memory_bytes=250 * 2**20, cpu_seconds=1000)
    assert "memory limit" in usage.stopped_for, usage
    assert parent.returncode is not None


def test_the_watchdog_counts_cpu_time_over_processes():
    spinners = "import subprocess, sys\n[subprocess.Popen([sys.executable, '-c', 'while True: pass']) for _ in range(3)]\nwhile True: pass"
    started = time.perf_counter()
    usage = watch(spawn(spinners), memory_bytes=2**40, cpu_seconds=3)
    assert "CPU time" in usage.stopped_for and usage.cpu_seconds >= 3
    assert time.perf_counter() - started < 15


def test_an_honest_child_is_not_stopped():
    # it holds its array past a few of the watchdog's samples, so that a peak is seen
    honest = "import numpy, time; values = numpy.ones(10**7); values.sum(); time.sleep(1)"
    usage = watch(spawn(honest), memory_bytes=2**30, cpu_seconds=30)
    assert usage.stopped_for == "" and 8 * 10**7 <= usage.peak_memory_bytes < 2**30


def test_a_control_group_bounds_memory_and_processes_and_is_removed():
    group = resource_limits.ControlGroup.create(200 * 2**20, processes=20)
    if group is None:
        if os.geteuid() == 0 and REQUIRED:
            pytest.fail("root could not make a control group here (the user level relies on one in CI)")
        pytest.skip("no control group can be made here")
    try:
        import subprocess
        import sys

        join = "; ".join(f"open({path!r}, 'w').write(str(os.getpid()))" for path in group.procs_files)
        hog = subprocess.run([sys.executable, "-c", f"import os; {join}; block = bytearray(600 * 2**20); block[::4096] = b'x' * len(block[::4096])"],
                             capture_output=True, timeout=60)
        assert hog.returncode == -9, hog
        forks = subprocess.run([sys.executable, "-c", f"import os, time; {join}\nmade = 0\ntry:\n"
                                "    for _ in range(100):\n        if os.fork() == 0:\n            os.close(1)\n            os.close(2)\n"
                                "            time.sleep(30)\n            os._exit(0)\n        made += 1\n"
                                "except OSError:\n    pass\nprint(made)"],
                               capture_output=True, text=True, timeout=60)
        assert 0 < int(forks.stdout) < 20, forks
        assert group.pids(), "the sleeping forks are in the group"
    finally:
        group.remove()
    assert not any(folder.exists() for folder in group.folders.values())


def test_without_a_control_group_the_watchdog_still_bounds_a_grading(tmp_path_factory, monkeypatch, markers):
    level = "user" if not sandbox.why_unavailable("user") else "bubblewrap"
    require(level)
    monkeypatch.setattr(resource_limits.ControlGroup, "create", classmethod(lambda cls, *args: None))
    settings = hostile_settings(level, tmp_path_factory)
    case = next(case for case in cases.HOSTILE if case["name"] == "holds memory over several processes")
    reports = grade_cases([case], tmp_path_factory.mktemp("no-control-group"), settings,
                          {"MEMORY_HOGS": HOSTILE_MEMORY_BYTES // (700 * 2**20) + 2})
    week_report = reports[case["name"]]
    task = [result for result in week_report.results if result.check.task == "1.1"]
    assert all(result.score == 0 for result in task)
    assert "memory limit of 2 GiB" in " ".join(line for result in task for line in result.feedback)
    assert all(result.score == result.max_score for result in week_report.results if result.check.task != "1.1"), [
        (result.check.name, result.feedback) for result in week_report.results if result.score < result.max_score]


SPINNER = ("    import subprocess, sys\n"
           "    for _ in range(8):\n"
           "        subprocess.Popen([sys.executable, '-c', 'while True: pass'], start_new_session=True)\n"
           "    return features @ weights + bias\n")


@pytest.mark.parametrize("level", SANDBOXED)
def test_a_classmate_that_spins_every_core_costs_the_others_nothing(level, tmp_path):
    require(level)
    subs, out = tmp_path / "subs", tmp_path / "out"
    source = (REPO / "solutions" / "week1_regression.py").read_text()
    for honest in ("alice", "bob", "carol"):
        (subs / honest).mkdir(parents=True)
        (subs / honest / "week1_regression.py").write_text(source)
    submission(cases.hostile("spinner", SPINNER), subs / "mallory_spins")
    code = batch.main([str(subs), "--out", str(out), "--weeks", "1", "--jobs", "2", "--quiet", "--sandbox", level,
                       "--timeout", "90", "--probe-timeout", "10"])
    rows = {row["submission"]: row for row in _csv(out / "gradebook.csv")}
    assert code == 0 and len(rows) == 4
    for honest in ("alice", "bob", "carol"):
        assert rows[honest]["score"] == rows[honest]["max_score"], rows[honest]
    assert not [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                if b"while True: pass" in _cmdline(pid) and not uid_cleanup.is_zombie(str(pid))]

# close_to_others (autograder source)
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="closing paths to other users is root's (the user level)")


@as_root
def test_close_to_others_closes_a_root_folder_in_a_sticky_world_writable_folder(tmp_path):
    """Like /tmp/ag/source in the README's dry run: nobody but root can move a root entry of a sticky folder."""
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)
    source = sticky / "source"
    (source / "reference_evidence").mkdir(parents=True)
    source.chmod(0o755)
    missing = tmp_path / "missing"  # in a folder only root can write: skipped
    assert sandbox.close_to_others([source, missing]) == [str(source)]
    assert source.stat().st_mode & 0o777 == 0o700
    assert sandbox.close_to_others([source]) == [], "closed already"


@as_root
def test_close_to_others_refuses_a_symbolic_link(tmp_path):
    target = tmp_path / "evidence"
    target.mkdir(mode=0o755)
    target.chmod(0o755)
    link = tmp_path / "source"
    link.symlink_to(target)
    with pytest.raises(sandbox.Unavailable, match=r"source is a symbolic link \(to .*evidence\).*real path"):
        sandbox.close_to_others([link])
    assert target.stat().st_mode & 0o777 == 0o755, "refused, not half done"
    (tmp_path / "dangling").symlink_to(tmp_path / "nothing")
    with pytest.raises(sandbox.Unavailable, match="dangling is a symbolic link"):
        sandbox.close_to_others([tmp_path / "dangling"])


@as_root
def test_close_to_others_refuses_a_path_under_a_folder_others_can_write(tmp_path):
    open_folder = tmp_path / "shared"
    (open_folder / "source").mkdir(parents=True)
    open_folder.chmod(0o777)  # not sticky: anyone can rename source away and put their own there
    with pytest.raises(sandbox.Unavailable, match=r"source lies under .*shared, which other users can write"):
        sandbox.close_to_others([open_folder / "source"])
    with pytest.raises(sandbox.Unavailable, match="which other users can write"):
        sandbox.close_to_others([open_folder / "source" / "reference_evidence"])  # a folder on the way
    sticky = tmp_path / "tmp"
    sticky.mkdir()
    sticky.chmod(0o1777)  # sticky: anyone can make a name that is not there yet
    with pytest.raises(sandbox.Unavailable, match=r"cache lies under .*tmp, which other users can write"):
        sandbox.close_to_others([sticky / "cache"])
    graded_uid = permissions.CHILD_UIDS[0]
    (sticky / "made-by-a-graded-uid").mkdir()
    os.chown(sticky / "made-by-a-graded-uid", graded_uid, graded_uid)
    with pytest.raises(sandbox.Unavailable, match="which other users can write"):
        sandbox.close_to_others([sticky / "made-by-a-graded-uid" / "results"])
    with pytest.raises(sandbox.Unavailable, match="which other users can write"):  # reached through a link
        (tmp_path / "way").symlink_to(open_folder)
        sandbox.close_to_others([tmp_path / "way" / "source"])


@as_root
def test_close_to_others_refuses_a_path_root_does_not_own(tmp_path):
    folder = tmp_path / "source"
    folder.mkdir()
    os.chown(folder, 12345, 12345)
    with pytest.raises(sandbox.Unavailable, match="belongs to uid 12345, not root"):
        sandbox.close_to_others([folder])
