"""Tests of the project's structure, read from the source files (nothing is run): the student library
`course` imports nothing of the grader, the grading engine imports nothing of the instructor tools,
every front end grades through the one engine (`grader.runner.grade`), and no module is over 400 lines
but the lessons."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_LINES = 400


def imported_modules(path: Path) -> set[str]:
    """The absolute names of the modules (and of the names imported from them) that `path` imports,
    at any depth of its code."""
    return imports_of(path.read_text(), ".".join(path.relative_to(REPO).parts[:-1]))


def imports_of(source: str, package: str) -> set[str]:
    """What `imported_modules` reads, for `source` in the package named `package`."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([node.module] if node.module else []))
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    return names


def modules_under(folder: str) -> list[Path]:
    return sorted((REPO / folder).rglob("*.py"))


def test_imports_are_read_at_every_depth_and_relative_ones_resolved():
    source = ("import os\nfrom course import weeks\ndef f():\n    import grader.runner\n"
              "    from . import gradebook\n    from ..checks import Result\n")
    assert imports_of(source, "grader.instructor") == {
        "os", "course", "course.weeks", "grader.runner", "grader.instructor", "grader.instructor.gradebook",
        "grader.checks", "grader.checks.Result"}


@pytest.mark.parametrize("path", modules_under("course"), ids=lambda path: ".".join(path.relative_to(REPO).parts))
def test_the_student_library_imports_nothing_of_the_grader(path):
    assert not [name for name in imported_modules(path) if name == "grader" or name.startswith("grader.")]


ENGINE = [path for path in modules_under("grader") if "instructor" not in path.parts]


@pytest.mark.parametrize("path", ENGINE, ids=lambda path: ".".join(path.relative_to(REPO).parts))
def test_the_engine_imports_nothing_of_the_instructor_tools(path):
    assert not [name for name in imported_modules(path) if name.startswith("grader.instructor")]


def test_every_front_end_grades_through_the_one_engine():
    """`course grade`, `grade-batch` (and Gradescope, through it) and the pytest session call
    `runner.grade` or `runner.start`; nothing else starts the grading of a week."""
    callers = {}
    for path in modules_under("grader"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "runner"
                    and node.attr in ("grade", "start", "grade_week")):
                callers.setdefault(str(path.relative_to(REPO)), set()).add(node.attr)
    assert callers == {"grader/cli.py": {"grade"}, "grader/instructor/batch.py": {"grade"},
                       "grader/conftest.py": {"start"}}
    gradescope = imported_modules(REPO / "grader" / "instructor" / "gradescope.py")
    assert "grader.instructor.batch" in gradescope and "subprocess" not in gradescope


@pytest.mark.parametrize("folder", ["course", "grader", "solutions"])
def test_no_module_is_over_400_lines_but_the_lessons(folder):
    long = {str(path.relative_to(REPO)): len(path.read_text().splitlines()) for path in modules_under(folder)
            if "lessons" not in path.parts}
    assert {name: lines for name, lines in long.items() if lines > MAX_LINES} == {}
