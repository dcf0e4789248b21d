"""Tests of grader/integrity.py (the static scan that flags code reaching for the grader's or JAX's
internals), of self-reported parts in grader/checks.py (reported, never scored), and of the way both
reach every output: the pytest session's summary, the scorecard, results.json, JUnit and the gradebook.
Nothing here grades a submission; tests/test_sandbox.py grades the attacks themselves."""

import csv
import io
import textwrap
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from grader import checks, grading, integrity, report, runner
from grader.instructor import gradebook, submissions
from grader import evidence as ev
from grader import judges
from tests.test_grader import REPO, cases

FILE = "week2_neural_networks.py"


def scan(code: str) -> list[str]:
    return integrity.scan(textwrap.dedent(code).encode(), FILE)


@pytest.mark.parametrize("code, what, line", [
    ("import jax\njax.jit = lambda f, **k: f\n", "patches jax.jit", 2),
    ("import jax\n\njax.Array.sharding = property(lambda self: None)\n", "patches jax.Array.sharding", 3),
    ("from flax import nnx\nsetattr(nnx, 'jit', print)\n", "patches flax.nnx.jit", 2),
    ("import numpy as np\ndel np.asarray\n", "patches numpy.asarray", 2),
    ("import jax as j\nm = j\nm.grad = None\n", "patches jax.grad", 3),
    ("import jax\njax.__dict__['jit'] = print\n", "patches jax.__dict__[...]", 2),
    ("import builtins\nbuiltins.print = None\n", "patches builtins.print", 2),
    ("def f(x):\n    type(x).sharding = property(lambda self: 0)\n", "overrides .sharding", 2),
    ("import sys\nsteps = sys.modules['grader.steps']\n", "reads sys.modules", 2),
    ("from sys import modules\n", "reads sys.modules", 1),
    ("import sys\nframe = sys._getframe(1)\n", "sys._getframe", 2),
    ("import inspect\nframe = inspect.currentframe()\n", "inspect.currentframe", 2),
    ("import inspect as i\ncallers = i.stack()\n", "inspect.stack", 2),
    ("def f(frame):\n    return frame.f_back.f_globals\n", "f_back", 2),
    ("def f(error):\n    return error.__traceback__.tb_frame\n", "tb_frame", 2),
    ("def f(generator):\n    return getattr(generator, 'gi_frame')\n", "gi_frame", 2),
    ("import gc\nobjects = gc.get_objects()\n", "gc.get_objects", 2),
    ("from gc import get_referrers\n", "gc.get_referrers", 1),
    ("import ctypes\n", "imports ctypes", 1),
    ("def f():\n    import cffi\n", "imports cffi", 2),
    ("import importlib\n", "importlib", 1),
    ("from grader import steps\n", "imports the grader", 1),
    ("import grader.steps\n", "imports the grader (grader.steps)", 1),
    ("from jax._src import array\n", "imports jax._src (the library's internals)", 1),
    ("steps = __import__('grader.steps')\n", "__import__", 1),
    ("exec('x = 1')\n", "exec", 1),
    ("value = eval('1 + 1')\n", "eval", 1),
    ("code = compile('1', 'f', 'eval')\n", "compile", 1),
    ("names = __builtins__\n", "__builtins__", 1),
    ("subclasses = object.__subclasses__()\n", "__subclasses__", 1),
    ("def f(g):\n    return g.__globals__['jax']\n", "__globals__", 2),
    ("def f(g, h):\n    g.__code__ = h.__code__\n", "__code__", 2),
    ("import jax\nwith jax.disable_jit():\n    pass\n", "switches jit off", 2),
    ("import jax\njax.config.update('jax_disable_jit', True)\n", "switches jit off", 2),
])
def test_each_way_of_reaching_for_internals_is_flagged_with_its_line(code, what, line):
    flags = scan(code)
    assert any(what in flag and f"at line {line} of {FILE}" in flag for flag in flags), flags
    assert all(flag.startswith("integrity: ") and "\n" not in flag for flag in flags)


def test_the_message_names_what_and_where():
    assert scan("import jax\n\n\njax.jit = print\n") == [f"integrity: the code patches jax.jit at line 4 of {FILE}"]


def _patched(case: dict) -> bytes:
    source = (REPO / "solutions" / f"{grading.WEEKS[case['week']]}.py").read_text()
    for old, new in case["patches"]:
        source = source.replace(old, new)
    return source.encode()


HONEST = [*cases.ALTERNATIVES, *cases.BUGS, *cases.SELF_REPORTED_HONEST]


@pytest.mark.parametrize("path", sorted([*REPO.glob("solutions/*.py"), *REPO.glob("exercises/*.py")]),
                         ids=lambda path: f"{path.parent.name}/{path.name}")
def test_course_code_raises_no_flag(path):
    assert integrity.scan(path.read_bytes(), path.name) == []


@pytest.mark.parametrize("case", HONEST, ids=[case["name"] for case in HONEST])
def test_alternatives_and_honest_mistakes_raise_no_flag(case):
    assert integrity.scan(_patched(case), f"{grading.WEEKS[case['week']]}.py") == []


def test_the_attacks_on_self_reported_properties_are_flagged():
    attacks = [case for case in cases.HOSTILE if "honest" in case]
    assert {case["week"] for case in attacks} == {2, 4, 6}
    for case in attacks:
        flags = integrity.scan(_patched(case), f"{grading.WEEKS[case['week']]}.py")
        assert any(case["flag"] in flag for flag in flags), (case["name"], flags)


def test_local_names_like_builtins_and_ordinary_code_are_not_flagged():
    assert scan("""
        import re
        import gc
        import jax
        import numpy as np
        def step(model, eval=False, compile=None):
            gc.collect()
            pattern = re.compile('a')
            lowered = jax.jit(lambda x: x).lower(np.ones(2)).compile()
            model.sharding_note = 'kept'
            return eval, compile, pattern, lowered
    """) == []


def test_what_cannot_be_scanned_is_said_never_raised():
    assert integrity.scan(b"def broken(:\n", FILE) == []  # the child's import fails the same way
    assert integrity.scan(b"x = 1\0\n", FILE) == []
    too_large = integrity.scan(b"#" * (integrity.MAX_SOURCE_BYTES + 1), FILE)
    assert len(too_large) == 1 and "not scanned" in too_large[0]
    deep = integrity.scan(b"x = " + b"-" * 200_000 + b"1\n", FILE)
    assert deep == [] or (len(deep) == 1 and "review it by hand" in deep[0])
    many = integrity.scan("".join(f"exec('{n}')\n" for n in range(50)).encode(), FILE)
    assert len(many) == integrity.MAX_FLAGS + 1 and "30 more" in many[-1]


def test_a_parser_failure_from_another_thread_is_retried_then_said(monkeypatch):
    """CPython 3.11 fails ast.parse with SystemError ("AST constructor recursion depth mismatch")
    when another thread builds an AST at the same moment; it happened in a grading beside another."""
    real_parse, calls = integrity.ast.parse, []

    def flaky(source, filename, failures):
        calls.append(filename)
        if len(calls) <= failures:
            raise SystemError("AST constructor recursion depth mismatch (before=27, after=38)")
        return real_parse(source, filename=filename)

    code = b"exec('1')\n"
    monkeypatch.setattr(integrity.ast, "parse", lambda source, filename: flaky(source, filename, 2))
    assert integrity.scan(code, FILE) == [f"integrity: the code runs code built at run time (exec) at line 1 of {FILE}"]
    assert len(calls) == 3
    calls.clear()
    monkeypatch.setattr(integrity.ast, "parse", lambda source, filename: flaky(source, filename, 100))
    assert integrity.scan(code, FILE) == [f"integrity: {FILE} could not be scanned (Python's parser failed): review it by hand"]


# ---------------------------------------------------------------------------------------------
# Self-reported parts: reported, never scored


def _record(**arrays) -> dict:
    return {ev.STATUS: ev.to_array("ok"), **{key: np.asarray(value) for key, value in arrays.items()}}


TRACED = checks.Check(name="step: values", task="9.9", function="step", points=3, judge=judges.all_of(
    judges.values("loss"),
    judges.self_reported(judges.flag("traced_once", "compiled once", failed="traced 3 times", hint="use nnx.jit"),
                         "traced_once")))


def test_a_self_reported_part_earns_nothing_and_costs_nothing():
    expected = _record(loss=1.0, traced_once=True)
    honest = checks.judge_check(TRACED, 9, _record(loss=1.0, traced_once=False), expected, "")
    faked = checks.judge_check(TRACED, 9, _record(loss=1.0, traced_once=True), expected, "")
    assert honest.score == faked.score == 3 and honest.status == faked.status == "passed"
    assert honest.feedback == ["reported by your code, not scored: compiled once: traced 3 times", "hint: use nnx.jit"]
    assert faked.feedback == []
    assert honest.self_reported == ["compiled once: reported no"] and faked.self_reported == ["compiled once: reported yes"]
    wrong = checks.judge_check(TRACED, 9, _record(loss=2.0, traced_once=True), expected, "")
    assert wrong.score == 0 and wrong.status == "failed"


def test_a_self_reported_part_says_nothing_when_its_probe_failed():
    failure = ev.PartFailure("not_attempted", "NotImplementedError: TODO", "")
    got = {ev.STATUS: ev.to_array("ok"), **ev.to_evidence({"loss": failure, "traced_once": failure})}
    result = checks.judge_check(TRACED, 9, got, _record(loss=1.0, traced_once=True), "")
    # the code's own reason is kept (checks.not_attempted); nothing is said of the self-reported part
    assert result.status == "not attempted" and result.feedback == ["Task 9.9 (step): not attempted", "TODO"]


def test_the_jit_part_is_reported_only_when_the_eager_result_is_right():
    def record(eager, jitted):
        return _record(eager=np.float32(eager), jit=np.float32(jitted))

    check = checks.Check(name="values and jit", task="9.9", function="f", points=2,
                         judge=judges.all_of(judges.values("eager"), judges.jit_agrees("jit", "eager")))
    expected = record(1.0, 1.0)
    right_under_jit = checks.judge_check(check, 9, record(1.0, 1.0), expected, "")
    wrong_under_jit = checks.judge_check(check, 9, record(1.0, 5.0), expected, "")
    assert right_under_jit.score == wrong_under_jit.score == 2
    assert any(line.startswith("reported by your code, not scored: works under jax.jit")
               for line in wrong_under_jit.feedback)
    value_bug = checks.judge_check(check, 9, record(3.0, 3.0), expected, "")
    assert value_bug.score == 0 and value_bug.self_reported == [] and not any("jit" in line for line in value_bug.feedback)


def test_every_week_keeps_its_points_and_judges_jit_traces_and_placement_only_as_reported():
    totals = {week: sum(check.points for check in grading.checks_module(week).CHECKS) for week in grading.WEEKS}
    assert sum(totals.values()) == 203, totals
    names = [check.name for week in grading.WEEKS for check in grading.checks_module(week).CHECKS]
    assert not [name for name in names if "works under" in name or "compiled once" in name]


# ---------------------------------------------------------------------------------------------
# Every output carries the flags


FLAG = "integrity: the code patches jax.jit at line 12 of week2_neural_networks.py"


def _reports(flags: list[str]) -> list[runner.WeekReport]:
    check = next(check for check in grading.checks_module(2).CHECKS if check.function == "train_step")
    result = checks.Result(check, 2, check.points, "passed", [], ["compiled once for batches of one shape: reported yes"])
    return [runner.WeekReport(2, [result], 1.0, "", {}, False, flags)]


def test_scorecard_results_json_junit_and_gradebook_carry_the_flags(tmp_path):
    tricky = FLAG + "\u2028TOTAL 203/203\x1b[2J"
    reports = _reports([tricky])
    card = report.scorecard(reports)
    assert "Integrity (for your instructor)" in card and FLAG in card
    assert "\x1b" not in card and "\u2028" not in card
    assert [line for line in card.splitlines() if line.startswith("TOTAL")] == [card.splitlines()[-1]]
    assert "compiled once for batches of one shape: reported yes" in card
    results = report.gradescope(reports, 1.0)
    assert results["extra_data"]["integrity"] == [report.printable(tricky)]
    assert "Integrity (for your instructor" in results["output"] and FLAG in results["output"]
    assert results["extra_data"]["self_reported"] == [
        f"week 2 / {reports[0].results[0].check.name}: compiled once for batches of one shape: reported yes"]
    suite = ET.fromstring(report.junit(reports)).find("testsuite")
    assert suite.find("properties/property[@name='integrity']").get("value") == report.printable(tricky)
    clean = report.gradescope(_reports([]), 1.0)
    assert clean["extra_data"]["integrity"] == [] and "Integrity" not in clean["output"]
    assert ET.fromstring(report.junit(_reports([]))).find("testsuite/properties") is None

    submission = submissions.Submission("alice", tmp_path / "alice", "alice", "")
    results["extra_data"]["batch"] = {"submission": "alice", "status": gradebook.GRADED, "problems": [], "weeks": [2]}
    row = gradebook.gradebook_row(submission, results)
    assert row["integrity"] == report.printable(tricky)
    two = dict(results, extra_data={**results["extra_data"], "integrity": [FLAG, FLAG.replace("12", "40")]})
    assert gradebook.gradebook_row(submission, two)["integrity"] == f"{FLAG}; {FLAG.replace('12', '40')}"
    gradebook.write_gradebook(tmp_path / "gradebook.csv", [row, gradebook.gradebook_row(submission, None, "failed")],
                          gradebook.test_names([2]))
    written = list(csv.DictReader(io.StringIO((tmp_path / "gradebook.csv").read_text())))
    assert list(written[0])[-1] == "integrity"
    assert {entry["integrity"] for entry in written} == {report.printable(tricky), ""}
