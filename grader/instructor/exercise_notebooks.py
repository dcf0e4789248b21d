"""The exercise notebooks (`exercises/notebooks/weekN_*.ipynb`), written by `course publish` beside the
`.py` stubs and from the same text, so that a notebook and its module always ask for the same code.

A week module becomes cells in order: its docstring a Markdown introduction, its imports one cell,
each section banner (`# ----` then `# Title`) a Markdown heading, each top-level definition its own
code cell, with a Markdown line naming the task before every cell that holds one. Two cells are
added and tagged `not-graded` (grader.notebook_source leaves them out of what is graded): the
set-up cell first, which installs the course where it is missing (Colab) and says which accelerator
JAX uses, and the grading cell last (`grader.notebook.check`).

The text is deterministic (cell ids from the week and the cell's place), so `course publish --check`
tells a stale notebook from a fresh one.
"""

import ast
import itertools
import json
import re

from grader.notebook_source import NOT_GRADED_TAG

BANNER = re.compile(r"^# -{20,}$")
TASK = re.compile(r"# (?:BEGIN )?TASK (\d+\.\d+): (.+)$", re.MULTILINE)
COLAB = "https://colab.research.google.com/github/{repository}/blob/main/exercises/notebooks/{name}.ipynb"
SETUP = '''\
# Set-up: run this cell first. Where the course is not installed (Colab, a fresh Jupyter) it installs
# it from COURSE_SOURCE, and nothing else; then it says which accelerator JAX will use. Not graded.
COURSE_SOURCE = "{source}"  # or the path or URL of the course's release wheel
import importlib, importlib.util, os, subprocess, sys
if importlib.util.find_spec("course") is None:
    source = os.environ.get("COURSE_SOURCE", COURSE_SOURCE)
    print(f"installing the course from {{source}} ...")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", source], check=True)
    importlib.invalidate_caches()
from course import accelerator
PLATFORM = accelerator.report()  # "cpu", "gpu" or "tpu"'''
CHECK = "from grader import notebook\n\nnotebook.check(week={week})"
INTRODUCTION = """\

**How to work here.** Run the set-up cell, then fill in every cell marked `TASK` (keep each function's
name and signature) and run it. The last cell grades this notebook's saved code, as `course grade`
does, and shows what lost points. Save (Ctrl-S) before grading: it grades the file, not the kernel.
The week's lesson, with its figures: `course lessons week{week}`. Data, where it is not on disk (Colab),
only when you ask: `%env COURSE_DATA_DIR=/content/data`, then
`!course data download mnist fashion_mnist cifar10` in a cell.

[Open in Colab]({colab})
"""


def _cell(kind: str, text: str, cell_id: str, tags: list[str] | None = None) -> dict:
    cell = {"cell_type": kind, "id": cell_id, "metadata": {"tags": tags} if tags else {}, "source": text}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def _split_gap(gap: list[str]) -> tuple[str, list[str]]:
    """(the title of a section banner among the lines `gap` between two statements, or "";
    the comment lines after it, which belong to the next statement)."""
    heading = ""
    for index, line in enumerate(gap):
        if BANNER.match(line):
            title = list(itertools.takewhile(lambda text: text.startswith("# "), gap[index + 1:]))
            heading = " ".join(text[2:].strip() for text in title)
            gap = gap[index + 1 + len(title):]
            break
    return heading, [line for line in gap if line.strip()]  # only comments lie between statements


def _end_of_body(blocks: list[tuple[str, str]], gap: list[str]) -> list[str]:
    """Moves the indented comments that open `gap` (a "# END TASK" after a body) to the last block,
    whose body they end; returns the rest of `gap`."""
    trailing = list(itertools.takewhile(lambda line: line[:1] in (" ", "\t") and line.lstrip().startswith("#"), gap))
    if trailing and blocks:
        blocks[-1] = (blocks[-1][0], "\n".join([blocks[-1][1], *trailing]))
    return gap[len(trailing):]


def _blocks(source: str) -> list[tuple[str, str]]:
    """(kind, text) in order: "docstring", "imports", "heading" or "code" blocks of a module's source."""
    tree = ast.parse(source)
    lines = source.splitlines()
    blocks, cursor = [], 1
    for statement in tree.body:
        start = min([statement.lineno, *(node.lineno for node in getattr(statement, "decorator_list", []))])
        gap = _end_of_body(blocks, lines[cursor - 1 : start - 1])
        code = lines[start - 1 : statement.end_lineno]
        cursor = statement.end_lineno + 1
        heading, attached = _split_gap(gap)
        if heading:
            blocks.append(("heading", heading))
        if statement is tree.body[0] and ast.get_docstring(tree) is not None:
            blocks.append(("docstring", ast.get_docstring(tree)))
        elif isinstance(statement, (ast.Import, ast.ImportFrom)):
            if blocks and blocks[-1][0] == "imports":
                blocks[-1] = ("imports", blocks[-1][1] + "\n" + "\n".join([*attached, *code]))
            else:
                blocks.append(("imports", "\n".join([*attached, *code])))
        else:
            blocks.append(("code", "\n".join([*attached, *code]).strip("\n")))
    _end_of_body(blocks, lines[cursor - 1:])
    return blocks


def notebook_text(module_source: str, name: str, week: int, repository: str) -> str:
    """The notebook of week `week`'s module `name` (its file name without .py) made of `module_source`
    (the exercise's text, or a solution's); `repository` is "owner/repo" on GitHub, for the Colab link
    and the set-up cell."""
    cells = []

    def add(kind: str, text: str, tags: list[str] | None = None) -> None:
        cells.append(_cell(kind, text, f"week{week}-{len(cells) + 1:02d}", tags))

    for kind, text in _blocks(module_source):
        if kind == "docstring":
            title, _, rest = text.partition("\n")
            add("markdown", f"# {title}\n\n{rest.strip()}\n" + INTRODUCTION.format(
                week=week, colab=COLAB.format(repository=repository, name=name)))
            add("code", SETUP.format(source=f"git+https://github.com/{repository}"), [NOT_GRADED_TAG])
        elif kind == "heading":
            add("markdown", f"## {text}")
        else:
            for task, hint in TASK.findall(text):
                add("markdown", f"**Task {task}**: {hint.strip()}")
            add("code", text)
    add("markdown", "## Grade your work\n\nThe checks of `course grade`, on this notebook's saved code.")
    add("code", CHECK.format(week=week), [NOT_GRADED_TAG])
    notebook = {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
                "metadata": {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                             "language_info": {"name": "python"},
                             "course": {"generated_from": f"solutions/{name}.py", "week": week}}}
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
