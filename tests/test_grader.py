"""Tests of the autograder: full marks for the solutions, zero for the exercises, a corpus of student
bugs that lose points exactly where they are, correct alternatives that keep full marks, and valid
Gradescope and JUnit reports. Hostile submissions are in test_sandbox.py.

The grading runs in child processes (one per week and submission), two at a time; up to three
bugs (or alternatives) of one week share a submission where their tasks are independent. The
reference evidence is computed once per test session.
"""

import dataclasses
import importlib.util
import json
import re
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jax
import numpy as np
import pytest

from grader import cli, grading, reference, report, runner

REPO = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("grader_cases", REPO / "tests" / "grader_cases" / "cases.py")
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)


@pytest.fixture(scope="session")
def settings(tmp_path_factory) -> grading.Settings:
    return grading.Settings(cache_dir=tmp_path_factory.getbasetemp() / "course-cache", probe_timeout_s=60,
                           week_timeout_s=120)


def submission(case: dict, folder: Path, placeholders: dict | None = None) -> Path:
    """A folder holding the case's week module: the solution with the case's patches applied, and
    "{NAME}" in them replaced by `placeholders[NAME]` (and {RESULTS_PATH} by a results file there)."""
    name = grading.WEEKS[case["week"]]
    source = (REPO / "solutions" / f"{name}.py").read_text()
    values = {"RESULTS_PATH": str(folder / "results.json"), **(placeholders or {})}
    for old, new in case["patches"]:
        assert source.count(old) == 1, f"{case['name']}: patch target found {source.count(old)} times: {old!r}"
        for key, value in values.items():
            new = new.replace("{" + key + "}", str(value))
        source = source.replace(old, new)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.py").write_text(source)
    return folder


def grade_cases(case_list, root: Path, settings, placeholders: dict | None = None
                ) -> dict[str, runner.WeekReport | AssertionError]:
    """Grades every case, two at a time; a case whose patch no longer applies maps to its error."""

    def one(case):
        try:
            folder = submission(case, root / case["name"].replace(" ", "_").replace("/", "_"), placeholders)
        except AssertionError as error:
            return case["name"], error
        return case["name"], runner.grade_week(case["week"], folder, settings)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(one, case_list))


def patched_source(week: int, patches) -> str | None:
    """The week's solution with `patches` applied in order, or None where one's target is not found once."""
    source = (REPO / "solutions" / f"{grading.WEEKS[week]}.py").read_text()
    for old, new in patches:
        if source.count(old) != 1:
            return None
        source = source.replace(old, new)
    return source


def combined(case_list, size: int, apart=()) -> list[list[dict]]:
    """The cases put together into submissions, one grading each instead of one per case: at most
    `size` cases of one week whose patches apply together; where cases name a task, in distinct
    tasks of which no two lie in one set of `apart` (tasks whose checks run each other's code)."""
    def fits(group, case):
        tasks = {member.get("task") for member in group}
        return (group[0]["week"] == case["week"] and len(group) < size
                and (case.get("task") is None or case["task"] not in tasks)
                and not any(case.get("task") in together and tasks & together for together in apart)
                and patched_source(case["week"], [patch for member in [*group, case]
                                                  for patch in member["patches"]]) is not None)

    groups = []
    for case in case_list:
        group = next((group for group in groups if fits(group, case)), None)
        if group is None:
            groups.append([case])
        else:
            group.append(case)
    return groups


def grade_combined(groups: list[list[dict]], root: Path, settings) -> dict[str, runner.WeekReport]:
    """Grades each group as one submission; maps every case's name to its group's report."""
    merged = [dict(name=f"submission {index}", week=group[0]["week"],
                   patches=[patch for case in group for patch in case["patches"]]) for index, group in enumerate(groups)]
    reports = grade_cases(merged, root, settings)
    return {case["name"]: reports[submission["name"]] for group, submission in zip(groups, merged) for case in group}


def by_task(week_report) -> dict[str, list]:
    if isinstance(week_report, AssertionError):
        raise week_report
    grouped = {}
    for result in week_report.results:
        grouped.setdefault(result.check.task, []).append(result)
    return grouped


@pytest.fixture(scope="session")
def solution_reports(settings) -> list[runner.WeekReport]:
    return runner.grade(sorted(grading.WEEKS), REPO / "solutions", settings)


# Up to three bugs of one week, in independent tasks, share one submission (a third of the gradings).
# Each bug's task must lose points; every task without a bug in that submission must keep them.
BUG_SUBMISSIONS = combined(cases.BUGS + cases.DELEGATING, 3, cases.DEPENDENT_TASKS)
BUGGED_TASKS = {case["name"]: {member["task"] for member in group} for group in BUG_SUBMISSIONS for case in group}


@pytest.fixture(scope="session")
def bug_reports(settings, tmp_path_factory):
    return grade_combined(BUG_SUBMISSIONS, tmp_path_factory.mktemp("bugs"), settings)


@pytest.fixture(scope="session")
def alternative_reports(settings, tmp_path_factory):
    return grade_combined(combined(cases.ALTERNATIVES, 3), tmp_path_factory.mktemp("alternatives"), settings)


def test_solutions_score_full_marks(solution_reports):
    lost = [(r.week, r.check.name, r.status, r.feedback) for rep in solution_reports for r in rep.results
            if r.score != r.max_score]
    assert not lost
    score, maximum = report.totals(solution_reports)
    assert score == maximum > 0


def test_every_task_of_every_solution_is_graded(solution_reports):
    from grader.instructor.publish import find_tasks

    for week_report in solution_reports:
        source = (REPO / "solutions" / f"{grading.WEEKS[week_report.week]}.py").read_text()
        tasks = {task.id: task.function for task in find_tasks(source)}
        graded = {r.check.task: r.check.function for r in week_report.results}
        assert graded == tasks, f"week {week_report.week}: checks name tasks {graded}, the solution has {tasks}"


def test_exercises_score_zero_and_say_not_attempted(settings):
    reports = runner.grade(sorted(grading.WEEKS), REPO / "exercises", settings)
    for result in report.all_results(reports):
        assert result.score == 0
        assert result.status == "not attempted", (result.check.name, result.feedback)
        assert result.feedback == [f"Task {result.check.task} ({result.check.function}): not attempted"]


@pytest.mark.parametrize("case", cases.BUGS, ids=[case["name"] for case in cases.BUGS])
def test_bug_loses_points_in_its_task_only(case, bug_reports):
    tasks = by_task(bug_reports[case["name"]])
    lost_here = [r for r in tasks[case["task"]] if r.score < r.max_score]
    assert lost_here, f"no points lost in task {case['task']}"
    if "at_most" in case:
        kept = sum(r.score for r in tasks[case["task"]])
        assert kept <= case["at_most"], [(r.check.name, r.score, r.feedback) for r in tasks[case["task"]]]
    for result in lost_here:
        assert result.feedback, "lost points need feedback"
        assert result.status in ("partial", "failed", "error")
    elsewhere = [(r.check.name, r.feedback) for task, results in tasks.items() if task not in BUGGED_TASKS[case["name"]]
                 for r in results if r.score < r.max_score]
    assert not elsewhere


@pytest.mark.parametrize("case", cases.DELEGATING, ids=[case["name"] for case in cases.DELEGATING])
def test_a_task_handed_to_the_course_library_is_not_attempted(case, bug_reports):
    """The library's own train and eval steps (week 5's) and the training loop's placement do not
    earn the week 2 and week 6 tasks they would answer: 0 points, and the reason."""
    tasks = by_task(bug_reports[case["name"]])
    for result in tasks[case["task"]]:
        assert result.score == 0 and result.status == "not attempted", (result.check.name, result.feedback)
        assert any(case["feedback"] in line and "write it yourself" in line for line in result.feedback)
    elsewhere = [(r.check.name, r.feedback) for task, results in tasks.items() if task not in BUGGED_TASKS[case["name"]]
                 for r in results if r.score < r.max_score]
    assert not elsewhere


def task_blocks(source: str) -> dict[str, set[int]]:
    """The numbers (from 0) of the lines strictly inside each `# BEGIN TASK` ... `# END TASK` block."""
    blocks, opened = {}, None
    for number, line in enumerate(source.splitlines()):
        if begin := re.match(r"\s*# BEGIN TASK (\d+\.\d+):", line):
            opened = (begin[1], number)
        elif opened and re.match(r"\s*# END TASK", line):
            blocks[opened[0]] = set(range(opened[1] + 1, number))
            opened = None
    return blocks


def tasks_changed(case: dict) -> set[str]:
    """The tasks of the week's solution whose code `case`'s patches change; fails where a patch does
    not apply once, or where the patched module is not valid Python or differs in comments only."""
    import ast
    import difflib

    source = (REPO / "solutions" / f"{grading.WEEKS[case['week']]}.py").read_text()
    patched = patched_source(case["week"], case["patches"])
    assert patched is not None, f"{case['name']}: a patch does not apply exactly once"
    assert ast.dump(ast.parse(patched)) != ast.dump(ast.parse(source)), f"{case['name']}: changes no code"
    changed = set()
    matcher = difflib.SequenceMatcher(None, source.splitlines(), patched.splitlines(), autojunk=False)
    for tag, start, end, _, _ in matcher.get_opcodes():
        if tag != "equal":  # a pure insertion touches the lines on both sides of it
            changed |= set(range(start, end)) if end > start else {start - 1, start}
    return {task for task, lines in task_blocks(source).items() if lines & changed}


# Tasks no bug of the corpus breaks yet; the set may only shrink (a new task needs a bug).
TASKS_WITHOUT_A_BUG = {"2.3", "2.7", "5.3"}


def test_each_bug_breaks_the_code_of_its_own_task_and_the_corpus_covers_the_tasks():
    """A bug is a code change inside its named task's block and no other task's (helpers outside
    every task may change too): a bug whose patch lands in another task, misses, or only edits a
    comment would make `test_bug_loses_points_in_its_task_only` judge the wrong thing."""
    every_task = {task for week in grading.WEEKS
                  for task in task_blocks((REPO / "solutions" / f"{grading.WEEKS[week]}.py").read_text())}
    named = [*cases.BUGS, *cases.DELEGATING, *cases.KEY_REUSE]
    for case in named:
        assert case["task"] in every_task and case["task"].startswith(f"{case['week']}."), case["name"]
        assert tasks_changed(case) == {case["task"]}, case["name"]
    assert len({case["name"] for case in named}) == len(named), "two cases share a name"
    assert len({patched_source(case["week"], case["patches"]) for case in cases.BUGS}) == len(cases.BUGS), \
        "two bugs make the same submission"
    assert every_task - {case["task"] for case in cases.BUGS} <= TASKS_WITHOUT_A_BUG
    assert len(cases.BUGS) >= 60


def test_bugs_share_a_submission_only_in_independent_tasks():
    assert sorted(case["name"] for group in BUG_SUBMISSIONS for case in group) == sorted(
        case["name"] for case in cases.BUGS + cases.DELEGATING)
    for group in BUG_SUBMISSIONS:
        tasks = [case["task"] for case in group]
        assert len(group) <= 3 and len(set(tasks)) == len(tasks) and len({case["week"] for case in group}) == 1
        assert not any(len(together & set(tasks)) > 1 for together in cases.DEPENDENT_TASKS)


@pytest.mark.parametrize("case", [case for case in cases.BUGS if "feedback" in case],
                         ids=[case["name"] for case in cases.BUGS if "feedback" in case])
def test_feedback_points_at_the_cause(case, bug_reports):
    lines = [line for r in by_task(bug_reports[case["name"]])[case["task"]] if r.score < r.max_score
             for line in r.feedback]
    assert any(case["feedback"] in line for line in lines), lines
    assert not any(case.get("not_feedback", "\0") in line for line in lines), lines


def feedback_of(week_report, check_name: str) -> list[str]:
    return next(r.feedback for r in week_report.results if r.check.name == check_name)


def test_model_feedback_says_where_and_at_what(bug_reports):
    flatten = feedback_of(bug_reports["AlexNet flattens in (C, H, W) order"], "AlexNet: outputs with reference parameters")
    assert any("AlexNet(input_size=99) on inputs of shape (4, 99, 99, 3)" in line for line in flatten), flatten
    assert any("the first layer whose input differs is 'fc1'" in line for line in flatten), flatten
    # a plain value bug says nothing about nnx.jit (reported, not scored): the eager result is already wrong
    for name, model in (("SimpleCNN sigmoid instead of ReLU", "SimpleCNN"), ("AlexNet flattens in (C, H, W) order", "AlexNet")):
        outputs = next(r for r in bug_reports[name].results if r.check.name == f"{model}: outputs with reference parameters")
        assert not any("under nnx.jit" in line for line in outputs.feedback), outputs.feedback
    # dropout left on in eval mode: said by the dropout check, not a cryptic error elsewhere
    eval_dropout = bug_reports["MLP dropout left on at eval"]
    assert any("dropout is still on after model.eval()" in line
               for line in feedback_of(eval_dropout, "MLP: dropout only in training, in its places"))
    assert any("not graded: dropout is still on in eval mode" in line
               for line in feedback_of(eval_dropout, "MLP: parameter gradients"))
    assert not any("TraceContextError" in line for r in eval_dropout.results for line in r.feedback)


def test_dropout_feedback_never_names_the_same_places_on_both_sides(bug_reports):
    """A value bug in a forward pass also changes the fixed-mask output: the dropout part then says that
    dropout sits in the right places (and to fix the forward pass first), not "feeds 'fc3' in the
    reference, 'fc3' in yours"; a model without dropout (LeNet-5) never gets empty lists."""
    for name, model in (("SimpleCNN sigmoid instead of ReLU", "SimpleCNN"), ("LeNet5 output without tanh", "LeNet5")):
        lines = feedback_of(bug_reports[name], f"{model}: dropout only in training, in its places")
        placed = [line for line in lines if line.startswith("dropout in the reference's places")]
        assert placed and all("sits where the reference's does" in line for line in placed), lines
        assert "look at the forward pass first" in placed[0], lines
        assert not any(re.search(r"feeds (\S*) in the reference, \1 in yours", line) or "feeds  in" in line
                       or ", in yours" in line for line in lines), lines
    assert "no dropout in either" in " ".join(feedback_of(bug_reports["LeNet5 output without tanh"],
                                                          "LeNet5: dropout only in training, in its places"))


def test_a_wrong_but_finite_loss_is_not_called_infinite(bug_reports):
    lines = feedback_of(bug_reports["logistic loss summed"], "logistic_loss: stable for large logits")
    assert any("(value)" in line for line in lines) and not any("is finite" in line for line in lines), lines
    lines = feedback_of(bug_reports["logistic loss overflows for large logits"], "logistic_loss: stable for large logits")
    assert any("is finite" in line for line in lines), lines
    assert any("jnp.logaddexp" in line for line in lines)


def test_each_feature_map_has_its_own_hint(bug_reports):
    relu = feedback_of(bug_reports["feature_maps without the ReLU"], "feature_maps: conv, relu and pooled maps")
    pooled = feedback_of(bug_reports["feature_maps pools the map before the ReLU"], "feature_maps: conv, relu and pooled maps")
    assert [line for line in relu if line.startswith("hint")] != [line for line in pooled if line.startswith("hint")]
    assert not any("HWIO" in line for line in relu + pooled)


def test_unmatched_structure_is_said_plainly(settings, tmp_path):
    case = dict(name="MLP with an extra hidden layer", week=2, patches=[
        ("sizes = (in_features, *hidden)", "sizes = (in_features, *hidden, 32)")])
    week_report = runner.grade_week(2, submission(case, tmp_path), settings)
    call = [r for r in week_report.results if r.check.task == "2.9"]
    assert all(r.score == 0 for r in call)
    lines = [line for r in call for line in r.feedback]
    assert any("5 Linear" in line and "4 Linear" in line and "fix __init__ first" in line for line in lines), lines
    assert not any("AttributeError" in line or "your code raised" in line for line in lines), lines


def test_feedback_names_expected_and_got(bug_reports):
    lines = [line for r in bug_reports["mse summed instead of averaged"].results for line in r.feedback]
    assert any("max abs error" in line and "expected" in line and "got" in line for line in lines), lines
    lines = [line for r in bug_reports["conv2d pads the batch axis instead of the width"].results for line in r.feedback]
    assert any("expected shape" in line for line in lines), lines
    lines = [line for r in bug_reports["SimpleCNN missing bias"].results for line in r.feedback]
    assert any("parameter count" in line for line in lines), lines
    assert any("use_bias expected True, got False" in line for line in lines), lines


def test_partial_credit_inside_a_check(bug_reports):
    results = [r for r in bug_reports["mse summed instead of averaged"].results if r.check.task == "1.2"]
    public = [r for r in results if not r.check.hidden]
    assert public and all(0 < r.score < r.max_score for r in public)  # right shape and jit, wrong values
    assert all(r.score == 0 for r in results if r.check.hidden)  # hidden checks judge the values alone


@pytest.mark.parametrize("case", cases.ALTERNATIVES, ids=[case["name"] for case in cases.ALTERNATIVES])
def test_correct_alternatives_score_full_marks(case, alternative_reports):
    week_report = alternative_reports[case["name"]]
    by_task(week_report)
    lost = [(r.check.name, r.feedback) for r in week_report.results if r.score < r.max_score]
    assert not lost


def test_each_alternative_rewrites_graded_code_and_every_week_has_some():
    """An alternative rewrites the code of at least one task (valid Python, not a comment, not only
    code outside every task), no two are the same submission, and every week has one: otherwise
    `test_correct_alternatives_score_full_marks` would grade the solution itself again."""
    for case in cases.ALTERNATIVES:
        assert tasks_changed(case), f"{case['name']}: changes the code of no task"
    sources = {(case["week"], patched_source(case["week"], case["patches"])) for case in cases.ALTERNATIVES}
    assert len(sources) == len(cases.ALTERNATIVES), "two alternatives make the same submission"
    assert {case["week"] for case in cases.ALTERNATIVES} == set(grading.WEEKS)
    assert len(cases.ALTERNATIVES) >= 15


def test_week_time_limit_stops_an_endless_import(settings, tmp_path):
    case = dict(name="endless import", week=1, patches=[("\n\nimport functools\n", "\n\nwhile True:\n    pass\n")])
    quick = dataclasses.replace(settings, week_timeout_s=8)
    week_report = runner.grade_week(1, submission(case, tmp_path), quick)
    assert all(r.score == 0 and r.status == "timeout" for r in week_report.results)
    assert "time limit" in week_report.results[0].feedback[0]
    assert week_report.seconds < 60


def validate_gradescope(data: dict) -> None:
    """The parts of Gradescope's results.json specification that a grader must respect."""
    assert set(data) <= {"score", "execution_time", "output", "output_format", "test_output_format",
                         "test_name_format", "visibility", "stdout_visibility", "extra_data", "tests", "leaderboard"}
    assert isinstance(data["score"], (int, float)) and isinstance(data["execution_time"], (int, float))
    assert data.get("visibility", "visible") in ("visible", "hidden", "after_due_date", "after_published")
    assert isinstance(data["tests"], list) and data["tests"]
    allowed = {"score", "max_score", "status", "name", "name_format", "number", "output", "output_format",
               "tags", "visibility", "extra_data"}
    for test in data["tests"]:
        assert set(test) <= allowed, set(test) - allowed
        assert isinstance(test["name"], str) and isinstance(test["output"], str)
        assert isinstance(test["score"], (int, float)) and isinstance(test["max_score"], (int, float))
        assert 0 <= test["score"] <= test["max_score"]
        assert test["status"] in ("passed", "failed")
        assert test["visibility"] in ("visible", "hidden", "after_due_date", "after_published")
        assert all(isinstance(tag, str) for tag in test["tags"])
    assert abs(data["score"] - sum(test["score"] for test in data["tests"])) < 1e-6
    environment = data["extra_data"]["environment"]
    for key in ("jax", "jaxlib", "flax", "backend", "device_count", "xla_flags"):
        assert key in environment


def test_cli_writes_gradescope_json_and_junit(settings, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(settings.cache_dir))
    json_path, junit_path = tmp_path / "results.json", tmp_path / "junit.xml"
    code = cli.main(["1", "week3", "--target", "solutions", "--json", str(json_path), "--junit", str(junit_path)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "TOTAL" in printed and "100%" in printed
    data = json.loads(json_path.read_text())
    validate_gradescope(data)
    assert data["score"] == data["extra_data"]["max_score"]
    suites = ET.parse(junit_path).getroot()
    assert [suite.get("name") for suite in suites] == ["week1", "week3"]
    assert sum(int(suite.get("failures")) for suite in suites) == 0


def test_reports_of_a_buggy_submission(bug_reports):
    name = "softmax normalised over the wrong axis"
    reports = [bug_reports[name]]
    data = report.gradescope(reports, 1.0)
    validate_gradescope(data)
    failed = [test for test in data["tests"] if test["status"] == "failed"]
    assert any(test["number"] == "2.5" for test in failed)
    assert {test["number"] for test in failed} <= BUGGED_TASKS[name]  # the bugs graded in that submission
    suites = ET.fromstring(report.junit(reports))
    assert len(suites.findall(".//failure")) == len(failed)
    assert "softmax" in report.scorecard(reports)


def test_cli_rejects_bad_usage(capsys):
    assert cli.main(["9"]) == 2
    assert cli.main(["--target", "/no/such/folder"]) == 2
    assert "course grade" in capsys.readouterr().err


def test_missing_week_module_is_reported(settings, tmp_path):
    week_report = runner.grade_week(1, tmp_path, settings)
    assert all(r.score == 0 and "there is no week1_regression.py" in r.feedback[0] for r in week_report.results)
    assert {r.status for r in week_report.results} == {"missing file"}
    (tmp_path / "Week1_Regression.py").write_text("")  # a misnamed module: the reason names it
    misnamed = runner.grade_week(1, tmp_path, settings)
    assert all(r.feedback[0].endswith("(found Week1_Regression.py)") for r in misnamed.results)


def test_an_endless_function_costs_its_own_checks_not_the_weeks_later_ones(settings, tmp_path):
    """linear_predict never returns: its probe (and its hidden probe) stop at the check's own time
    limit, and the week's limit, though shorter than the whole run, does not count their time, so
    every other check, the hidden ones probed last included, is graded."""
    endless = dict(name="linear_predict loops forever", week=1,
                   patches=[("    return features @ weights + bias\n", "    while True:\n        pass\n")])
    strict = dataclasses.replace(settings, week_timeout_s=25.0, probe_timeout_s=15.0)
    week_report = runner.grade_week(1, submission(endless, tmp_path / "endless"), strict)
    tasks = by_task(week_report)
    assert all(r.score == 0 and r.status == "timeout" for r in tasks["1.1"]), [(r.check.name, r.feedback) for r in tasks["1.1"]]
    others = [(r.check.name, r.status, r.feedback) for task, results in tasks.items() if task != "1.1"
              for r in results if r.score < r.max_score]
    assert others == [] and week_report.seconds > strict.week_timeout_s


def test_keys_used_twice_finds_a_reused_key_and_nothing_else():
    from grader.keys import keys_used_twice

    key, legacy = jax.random.key(0), jax.random.PRNGKey(0)
    normal, uniform, split = jax.random.normal, jax.random.uniform, jax.random.split
    right = [
        (lambda k: normal(split(k)[0], (3,)) + normal(split(k)[1], (3,)), legacy),  # one split, taken twice
        (lambda k: (lambda a, b: normal(a, (3,)) + uniform(b, (3,)))(*split(k)), key),
        (lambda k: normal(jax.random.fold_in(k, 0), (3,)) + normal(jax.random.fold_in(k, 1), (3,)), key),
        (lambda k: jax.vmap(lambda k: normal(split(k)[0], ()) + uniform(split(k)[1], ()))(split(k, 4)), key),
        (lambda k: jax.lax.cond(k is None, lambda: normal(k, ()), lambda: uniform(k, ())), key),  # one branch runs
        (lambda k: jax.random.permutation(k, 10), key),
    ]
    for function, argument in right:
        assert keys_used_twice(function, argument) == []
    reused = [
        (lambda k: normal(k, (3,)) + uniform(k, (3,)), legacy),
        (lambda k: normal(split(k)[0], (3,)) + uniform(split(k)[0], (3,)), key),
        (lambda k: jax.vmap(lambda k: jax.random.randint(k, (2,), 0, 5).sum() + jax.random.bernoulli(k))(split(k, 4)),
         key),
        (lambda k: (jax.random.permutation(k, 10), split(k, 3)), key),
    ]
    for function, argument in reused:
        found = keys_used_twice(function, argument)
        assert len(found) == 1 and found[0].startswith("one key is used twice: by random_"), found


@pytest.fixture(scope="session")
def key_reuse_reports(settings, tmp_path_factory):
    return grade_combined(combined(cases.KEY_REUSE, 3), tmp_path_factory.mktemp("key-reuse"), settings)


@pytest.mark.parametrize("case", cases.KEY_REUSE, ids=[case["name"] for case in cases.KEY_REUSE])
def test_a_key_used_twice_is_said_and_not_scored(case, key_reuse_reports):
    tasks = by_task(key_reuse_reports[case["name"]])
    lines = [line for result in tasks[case["task"]] for line in result.feedback]
    assert any(line.startswith("reported by your code, not scored: each key used once") and case["advice"] in line
               for line in lines), lines
    claims = [claim for result in tasks[case["task"]] for claim in result.self_reported]
    assert "each key used once (read from the traced code): reported no" in claims, claims


def test_progress_names_the_checks_as_they_start(settings, capsys):
    runner.grade_week(3, REPO / "solutions", dataclasses.replace(settings, progress=True))
    shown = re.findall(r"^  week 3: (.+) \.\.\.$", capsys.readouterr().err, re.M)
    probes = {"importing the module", *grading.checks_module(3).PROBES,
              *(f"hidden inputs: {name}" for name in grading.checks_module(3).PROBES)}
    assert "conv2d" in shown and set(shown) <= probes, shown


def test_an_inf_where_a_number_belongs_is_an_error_of_inf():
    from grader import judges

    _, right, detail = judges.compare(np.array([np.inf, 1.0], np.float32), np.array([1000.0, 1.0], np.float32),
                                      1e-5, 1e-6)
    assert not right and "max abs error inf" in detail and "(your output contains inf)" in detail
    _, right, detail = judges.compare(np.array([np.nan, 1.0], np.float32), np.array([1000.0, 1.0], np.float32),
                                      1e-5, 1e-6)
    assert not right and "max abs error" not in detail and "(your output contains NaN)" in detail


def test_the_hidden_inputs_hint_is_given_only_where_the_public_checks_passed():
    from grader import checks, judges

    public = checks.Check(name="f: values", task="9.1", function="f", points=1, judge=judges.values("out"))
    hidden = judges.hidden(task="9.1", function="f", keys=("out",))
    hint = f"hint: {hidden.hint}"
    lost_hidden = checks.Result(hidden, 9, 0.0, "failed", ["out: 3 of 4 values differ", hint])
    both_lost = runner.without_misleading_hidden_hints([checks.Result(public, 9, 0.0, "failed", ["out: wrong"]),
                                                        lost_hidden])
    assert both_lost[1].feedback == ["out: 3 of 4 values differ"]
    public_passed = runner.without_misleading_hidden_hints([checks.Result(public, 9, 1.0, "passed", []), lost_hidden])
    assert public_passed[1].feedback == lost_hidden.feedback and "fixed to the public inputs" in hint


# ---------------------------------------------------------------------------------------------
# Hidden checks

LOOKUP_TABLE_MODULE = """
import numpy as np

TABLE = {table!r}


def answer(name, *args):
    shapes = tuple(tuple(np.shape(arg)) for arg in args)
    found = TABLE[name].get(repr(shapes))
    if found is None:
        raise ValueError("no recorded answer")
    return tuple(np.asarray(part, np.float32) if kind == "f" else np.asarray(part, np.int32)
                 for kind, part in found) if isinstance(found, list) else np.asarray(found[1], found[0])


def linear_predict(weights, bias, features):
    return answer("linear_predict", weights, bias, features)


def mse_loss(predictions, targets):
    return answer("mse_loss", predictions, targets)


def fit_linear_closed_form(features, targets):
    return answer("fit_linear_closed_form", features, targets)


def gradient_descent_step(params, features, targets, learning_rate):
    return answer("gradient_descent_step", features, targets)


def sigmoid(x):
    return answer("sigmoid", x)


def logistic_loss(logits, labels):
    return answer("logistic_loss", logits, labels)


def logistic_predict(weights, bias, features):
    return answer("logistic_predict", weights, bias, features)


def train_logistic(features, labels, learning_rate=0.1, steps=100):
    return answer("train_logistic", features, labels)


def standardize(train_features, other_features=None):
    if other_features is None:
        return answer("standardize", train_features)
    return answer("standardize", train_features, other_features)
"""


def lookup_table(recorded: dict[str, dict]) -> dict:
    """Answers keyed by the shapes of the public inputs, from a release's recorded evidence: what a
    student could build from a release without writing any of the week's code."""
    def one(record, key):
        array = record[key]
        return (array.dtype.str, array.tolist())

    def pair(record, first, second):
        return [("f", record[first].tolist()), ("f", record[second].tolist())]

    shapes = lambda *arrays: repr(tuple(tuple(shape) for shape in arrays))  # noqa: E731
    return {
        "linear_predict": {shapes((5,), (), (7, 5)): one(recorded["linear_predict"], "predictions")},
        "mse_loss": {shapes((9,), (9,)): one(recorded["mse_loss"], "loss")},
        "fit_linear_closed_form": {shapes((20, 3), (20,)): pair(recorded["fit_linear_closed_form"], "noisy_weights", "noisy_bias")},
        "gradient_descent_step": {shapes((16, 4), (16,)): pair(recorded["gradient_descent_step"], "weights", "bias")},
        "sigmoid": {shapes((3, 11)): one(recorded["sigmoid"], "moderate"), shapes((7,)): one(recorded["sigmoid"], "extreme")},
        "logistic_loss": {shapes((12,), (12,)): one(recorded["logistic_loss"], "loss"),
                          shapes((4,), (4,)): one(recorded["logistic_loss"], "extreme")},
        "logistic_predict": {shapes((4,), (), (25, 4)): one(recorded["logistic_predict"], "labels"),
                             shapes((4,), (), (3, 4)): one(recorded["logistic_predict"], "at_0")},
        "train_logistic": {shapes((30, 4), (30,)): pair(recorded["train_logistic"], "weights", "bias")},
        "standardize": {shapes((12, 4)): one(recorded["standardize"], "train_only"),
                        shapes((12, 4), (5, 4)): pair(recorded["standardize"], "train", "other")},
    }


def test_replaying_a_release_scores_zero_on_hidden_checks(settings, tmp_path):
    from grader.instructor import release
    from grader import evidence

    recorded_dir = tmp_path / "reference_evidence"
    release.record_evidence([1], recorded_dir, jobs=1)
    assert not list(recorded_dir.rglob("hidden:*")), "a release must not hold the hidden checks' evidence"
    recorded = {path.stem: evidence.load(path) for path in (recorded_dir / "week1_regression").glob("*.npz")}
    folder = tmp_path / "lookup"
    folder.mkdir()
    (folder / "week1_regression.py").write_text(LOOKUP_TABLE_MODULE.format(table=lookup_table(recorded)))

    instructor = runner.grade_week(1, folder, settings)
    hidden = [r for r in instructor.results if r.check.hidden]
    public = [r for r in instructor.results if not r.check.hidden]
    assert len(hidden) == 9 and all(r.check.visibility == "after_due_date" for r in hidden)
    assert all(r.score == 0 for r in hidden), [(r.check.name, r.score) for r in hidden if r.score]
    replayed = [r.check.name for r in public if r.score == r.max_score]
    assert {"linear_predict: predictions", "mse_loss: value", "sigmoid: values"} <= set(replayed), replayed

    student = runner.grade_week(1, folder, dataclasses.replace(settings, reference_dir=recorded_dir))
    assert student.public_only and not any(r.check.hidden for r in student.results)
    assert [(r.check.name, r.score) for r in student.results] == [(r.check.name, r.score) for r in public]
    card = report.scorecard([student])
    assert "Public checks only: 9 hidden checks" in card
    data = report.gradescope([instructor], 1.0)
    validate_gradescope(data)
    assert {t["visibility"] for t in data["tests"] if "(hidden inputs)" in t["name"]} == {"after_due_date"}


def test_hidden_inputs_come_from_the_instructors_secret(settings, monkeypatch):
    first = grading.hidden_seed(settings)
    assert first is not None and first == grading.hidden_seed(settings)
    assert grading.hidden_seed(dataclasses.replace(settings, public_only=True)) is None
    assert grading.hidden_seed(dataclasses.replace(settings, reference_dir=settings.cache_dir)) is None
    monkeypatch.setenv(grading.HIDDEN_SECRET_VARIABLE, "a class's shared secret")
    assert grading.hidden_seed(settings) not in (None, first)


def test_the_jit_part_is_reported_not_scored_and_only_when_the_eager_result_is_right():
    from grader import checks, judges
    from grader import evidence as ev

    def record(eager, jitted):
        return {ev.STATUS: ev.to_array("ok"), "eager": np.float32(eager), "jit": np.float32(jitted)}

    expected = record(1.0, 1.0)
    alone = checks.Check(name="jit alone", task="9.9", function="f", points=2, judge=judges.jit_agrees("jit", "eager"))
    with_values = checks.Check(name="values and jit", task="9.9", function="f", points=2,
                               judge=judges.all_of(judges.values("eager"), judges.jit_agrees("jit", "eager")))
    # a check whose only part is reported carries no points, right or wrong
    assert checks.judge_check(alone, 9, record(1.0, 1.0), expected, "").score == 0
    jit_bug = checks.judge_check(alone, 9, record(1.0, 5.0), expected, "")  # right eagerly, wrong jitted: reported
    assert jit_bug.score == 0 and any(line.startswith("reported by your code, not scored: works under")
                                      for line in jit_bug.feedback)
    value_bug = checks.judge_check(alone, 9, record(3.0, 5.0), expected, "")  # a value bug is not a jit bug
    assert value_bug.score == 0 and not any("jit" in line for line in value_bug.feedback)
    assert value_bug.feedback[0].startswith("not judged: nothing of this check could be judged")
    assert checks.judge_check(with_values, 9, record(3.0, 3.0), expected, "").score == 0  # and earns nothing
    assert checks.judge_check(with_values, 9, record(1.0, 5.0), expected, "").score == 2


def test_not_attempted_says_a_reason_other_than_the_stubs_own():
    from grader import checks, judges

    check = checks.Check(name="f: values", task="9.1", function="f", points=2, judge=judges.values("out"))
    stub = "NotImplementedError: Task 9.1 (f): not attempted"
    reason = "NotImplementedError: Task 9.1 (f) hands its work to course.x.f, the course's own code for it"
    assert checks.not_attempted(check, 9, [stub]).feedback == ["Task 9.1 (f): not attempted"]
    told = checks.not_attempted(check, 9, [stub, reason, reason])
    assert told.score == 0 and told.status == "not attempted"
    assert told.feedback == ["Task 9.1 (f): not attempted", reason.removeprefix("NotImplementedError: ")]


def test_every_judge_reads_evidence_that_its_probe_records(settings, solution_reports):
    """The evidence keys each judge reads (`checks.reads`) against its probe's record on the
    solutions: a mistyped key fails here instead of costing every student the check's points."""
    from grader import checks, judges

    judged = 0
    for week in grading.WEEKS:
        recorded = reference.load_folder(reference.reference_folder(week, settings))
        for check in grading.checks_module(week).CHECKS:
            assert checks.reads(check.judge), f"week {week}: {check.name!r} does not say what it reads"
            assert checks.missing_keys(check.judge, recorded[check.probe]) == [], (week, check.name)
            judged += 1
    assert judged == sum(len(grading.checks_module(week).CHECKS) for week in grading.WEEKS) > 100
    week1 = reference.load_folder(reference.reference_folder(1, settings))["mse_loss"]
    typo = judges.all_of(judges.same("loss"), judges.jit_agrees("jitted", "loss"), judges.parameters_match("grad:", "x"))
    assert checks.missing_keys(typo, week1) == ["jitted", "grad:*"]


def test_a_week_whose_checks_do_not_fit_its_probes_is_refused_when_it_loads():
    from grader import checks, judges

    for week in grading.WEEKS:  # the real weeks load (grading.checks_module validates them)
        assert grading.checks_module(week).CHECKS
    probes = {"conv2d": None}
    good = checks.Check(name="conv2d: values", task="3.1", function="conv2d", points=2, judge=judges.same("out"))
    assert good.probe == "conv2d"  # a probe named after its function need not be named again
    with pytest.raises(TypeError):  # a check is declared with keywords only
        checks.Check("conv2d: values", "3.1", "conv2d", 2, judges.same("out"))
    checks.validate(3, [good, judges.hidden(task="3.1", function="conv2d", keys=("out",))], probes)
    typo = dataclasses.replace(good, name="conv2d: bias", probe="conv2D")
    with pytest.raises(ValueError, match="check 'conv2d: bias' reads probe 'conv2D', which is not in PROBES"):
        checks.validate(3, [good, typo], probes)
    with pytest.raises(ValueError, match="check names used twice: conv2d: values"):
        checks.validate(3, [good, good], probes)
    with pytest.raises(ValueError, match="names task '4.1'"):
        checks.validate(3, [dataclasses.replace(good, task="4.1")], probes)


def test_the_reference_evidence_key_covers_what_the_child_imports_and_nothing_else(tmp_path):
    """Editing a figure (course/viz.py) keeps every week's recorded reference evidence; editing what a
    week's child imports (its solution, a course module it uses, the grader's week module) changes it."""
    settings = grading.Settings(cache_dir=tmp_path)

    def sources(week):
        return {str(path.relative_to(grading.REPO)) for path in reference.reference_sources(week, settings)}

    week1, week4, week6 = sources(1), sources(4), sources(6)
    assert {"solutions/week4_simple_cnn.py", "solutions/week2_neural_networks.py", "course/layers.py",
            "course/transforms.py", "grader/week4_simple_cnn.py", "grader/models.py", "grader/child.py",
            "grader/launcher.py"} <= week4
    assert not {"course/viz.py", "course/cli.py", "grader/instructor/batch.py", "grader/week2_neural_networks.py"} & (week4 | week1)
    assert "solutions/week2_neural_networks.py" not in week1
    assert "course/sharding.py" in week6 and "course/sharding.py" not in week4  # week 6's child withholds its answers
