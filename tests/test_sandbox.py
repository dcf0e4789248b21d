"""Tests of the sandbox (grader/sandbox.py): hostile submissions graded at each sandbox level gain
nothing and leave nothing behind; the evidence pipe is bounded; a batch beside hostile classmates
keeps the honest ones' scores; instructor commands refuse to grade unsandboxed.

Where a level cannot run the tests skip, unless $COURSE_REQUIRE_SANDBOXES names it (CI sets
"bubblewrap,user"): then they fail.
"""

import io
import json
import os
import shutil
import socket
import tempfile
import threading
import time
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import numpy as np
import pytest

from grader import batch, evidence, report, runner, sandbox
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
    """A folder every user may write to, outside any sandbox: what appears in it escaped."""
    folder = Path(tempfile.mkdtemp(prefix="course-hostile-markers-", dir="/tmp"))
    folder.chmod(0o777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def listener():
    """A TCP server on the host's loopback; returns its port and what it received."""
    server = socket.create_server(("127.0.0.1", 0))
    received = []

    def serve():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            received.append(connection.recv(100))
            connection.close()

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], received
    server.close()


def hostile_settings(level: str, tmp_path_factory) -> runner.Settings:
    return runner.Settings(cache_dir=tmp_path_factory.getbasetemp() / "course-cache", probe_timeout_s=10,
                           week_timeout_s=120, sandbox=level)


@pytest.fixture(scope="session", params=SANDBOXED)
def hostile_run(request, tmp_path_factory, markers, listener):
    """Every hostile case graded at one level, then what was left behind once the grading ended."""
    level = request.param
    require(level)
    settings = hostile_settings(level, tmp_path_factory)
    runner.reference_folder(1, settings)
    folders_before = set(Path(tempfile.gettempdir()).glob("course-grade-*"))
    temp_before = {str(path) for base in ("/tmp", "/var/tmp", "/dev/shm") for path in Path(base).glob("course-hostile-*")}
    cache_before = sorted(path.relative_to(settings.cache_dir) for path in settings.cache_dir.rglob("*"))
    root = tmp_path_factory.mktemp(f"hostile-{level}")
    placeholders = {"REPO": REPO, "CACHE": settings.cache_dir, "GRADER_PID": os.getpid(), "MARKERS": markers,
                    "PORT": listener[0]}
    chosen = [case for case in cases.HOSTILE if level in case["levels"]]
    reports = grade_cases(chosen, root, settings, placeholders)
    time.sleep(4)  # the daemons' time to act, had they survived
    after = runner.grade_week(1, REPO / "solutions", settings)
    left = {
        "files in the markers folder": sorted(path.name for path in markers.iterdir()),
        "forged results files": sorted(str(path) for path in root.rglob("results.json")),
        "files in the temp folders": sorted(path for base in ("/tmp", "/var/tmp", "/dev/shm")
                                            for path in map(str, Path(base).glob("course-hostile-*"))
                                            if not path.startswith(str(markers)) and path not in temp_before),
        "run folders": sorted(map(str, set(Path(tempfile.gettempdir()).glob("course-grade-*")) - folders_before)),
        "processes": [(pid, _cmdline(pid)[:200]) for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                      if (str(markers).encode() in _cmdline(pid) or _uid(pid) in sandbox.CHILD_UIDS)
                      and not sandbox._is_zombie(str(pid))],
        "new files in the cache": sorted(str(path) for path in settings.cache_dir.rglob("*")
                                         if path.relative_to(settings.cache_dir) not in cache_before),
        "network connections": list(listener[1]),
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
    checks = runner.checks_module(case["week"]).CHECKS
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
    assert len(week_report.output) < 4 * runner.Settings.output_bytes + 10_000, "a child's output is capped"


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
    assert "stopped after" in feedback_of(reports, "fork bomb")
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


def take(data: bytes, record_bytes: int = 1000, total_bytes: int = 10_000) -> evidence.Stream:
    read_end, write_end = os.pipe()
    stream = evidence.Stream(record_bytes, total_bytes)
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


def test_stream_bounds_the_total():
    stream = take(frames(*[(evidence.RECORD, f"r{index}", b"x" * 900) for index in range(20)]))
    assert "more than 10,000 bytes" in stream.problem
    assert len(stream.records) < 11


def test_parse_refuses_pickles_and_bombs():
    with pytest.raises(Exception):
        evidence.parse(b"PK\x03\x04 truncated")
    buffer = io.BytesIO()
    np.savez(buffer, objects=np.array([object()], dtype=object))
    with pytest.raises(ValueError):
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
    inside = Path(sandbox._bound_folders()[0]) / "course-cache"
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
    settings = runner.Settings(cache_dir=tmp_path / "cache", sandbox="bubblewrap")
    runner.reference_folder(1, settings)
    monkeypatch.setattr(sandbox, "_bubblewrap_arguments", lambda *args: ["bwrap", "--no-such-option", "--"])
    with pytest.raises(runner.InfrastructureError, match="did not start"):
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
    week_1 = f"{sum(check.points for check in runner.checks_module(1).CHECKS):g}"  # hidden checks included
    for honest in ("alice", "bob", "gradebook.csv", "mallory_rewrites"):
        assert (rows[honest]["score"], rows[honest]["max_score"]) == (week_1, week_1), rows[honest]
    assert rows["corrupt"]["status"] == batch.ERROR
    task_1_1 = sum(check.points for check in runner.checks_module(1).CHECKS if check.task == "1.1")
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


# ---------------------------------------------------------------------------------------------
# Round 2 (issue 25): intake of submitted files, and evidence bounded by what it decodes to


# ---------------------------------------------------------------------------------------------
# Round 2 (issue 25): self-reported properties and integrity flags


# ---------------------------------------------------------------------------------------------
# Round 2 (issue 25): resources over all processes of a grading, and the user level
