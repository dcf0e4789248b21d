"""grader.notebook_source: a notebook's code cells as the module the grader grades, IPython's own lines
and the not-graded cells left out, every cell compiled on its own, locations named by cell; whatever
a notebook file holds, the grader gets a module or one clear reason."""

import ast
import json

import nbformat
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grader import notebook_source

NOTEBOOK, MODULE = "week1_regression.ipynb", "week1_regression.py"


def notebook_bytes(*cells, tags: dict[int, list[str]] | None = None) -> bytes:
    """A version-4 notebook of `cells`: ("md" | "code", source) pairs; `tags` by cell index."""
    notebook = nbformat.v4.new_notebook()
    for index, (kind, source) in enumerate(cells):
        cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
        if tags and index in tags:
            cell.metadata["tags"] = tags[index]
        notebook.cells.append(cell)
    return nbformat.writes(notebook).encode()


def program(data: bytes) -> notebook_source.Program:
    return notebook_source.program(data, NOTEBOOK, MODULE)


def test_code_cells_in_order_make_the_module_and_markdown_is_left_out():
    graded = program(notebook_bytes(("md", "# Week 1\nx = 'not code'"), ("code", "import math\nA = 1"),
                                    ("md", "text"), ("code", "def f():\n    return A + math.pi")))
    namespace = {}
    exec(compile(graded.source, MODULE, "exec"), namespace)
    assert namespace["A"] == 1 and namespace["f"]() == pytest.approx(1 + 3.141592653589793)
    assert [cell.number for cell in graded.cells] == [2, 4]  # counted among all cells, as Jupyter shows them
    assert "not code" not in graded.source.decode()


def test_ipython_lines_and_not_graded_cells_do_not_run():
    graded = program(notebook_bytes(
        ("code", "%pip install nothing\n!rm -rf /\nX = 2\n    %time X"),
        ("code", "%%bash\necho hi"),
        ("code", "raise SystemExit('the set-up cell')"),
        ("code", "Y = X * 3"), tags={2: [notebook_source.NOT_GRADED_TAG]}))
    namespace = {}
    exec(compile(graded.source, MODULE, "exec"), namespace)
    assert namespace["Y"] == 6
    assert "SystemExit" not in graded.source.decode()
    assert "# (IPython, not graded) !rm -rf /" in graded.source.decode()


def test_a_syntax_error_names_its_cell_and_line():
    data = notebook_bytes(("md", "intro"), ("code", "A = 1"), ("code", "def broken(:\n    pass"))
    with pytest.raises(notebook_source.NotebookError) as raised:
        program(data)
    message = str(raised.value)
    assert message.startswith(f"cell 3 of {NOTEBOOK} ('def broken(:') does not compile: ")
    assert "(line 1: def broken(:)" in message


def test_each_cell_compiles_on_its_own_as_in_jupyter():
    """A statement cut across two cells is an error in Jupyter, so it is one here too."""
    with pytest.raises(notebook_source.NotebookError, match="cell 1 of"):
        program(notebook_bytes(("code", "values = [1,\n2,"), ("code", "3]")))


def test_locations_in_feedback_become_cells_and_lines():
    graded = program(notebook_bytes(("code", "import math"), ("md", "m"), ("code", "def f():\n    return 1 / 0")))
    namespace = {}
    exec(compile(graded.source, MODULE, "exec"), namespace)
    try:
        namespace["f"]()
    except ZeroDivisionError as error:
        line = error.__traceback__.tb_next.tb_lineno
    text = f"your code raised ZeroDivisionError (at {MODULE}:{line} in f: return 1 / 0)"
    assert graded.located(text, MODULE, NOTEBOOK) == \
        f"your code raised ZeroDivisionError (at {NOTEBOOK} cell 3 line 2 in f: return 1 / 0)"
    assert graded.located(f"{MODULE}:1", MODULE, NOTEBOOK) == f"{MODULE}:1"  # the header line lies in no cell


@pytest.mark.parametrize("data, reason", [
    (b"{", "is not a notebook: it is not JSON"),
    (b"[]", "is not a notebook: its JSON is not a notebook's"),
    (b'{"nbformat": 4}', "does not follow the notebook format"),
    (json.dumps({"nbformat": 3, "nbformat_minor": 0, "worksheets": [], "metadata": {}}).encode(), "version-4"),
    (b"\xff\xfe", "is not UTF-8 text"),
    (b"[" * 100_000 + b"]" * 100_000, "is not a notebook"),
    (notebook_bytes(("md", "only text")), "has no code cell to grade"),
])
def test_what_is_not_a_gradable_notebook_gets_one_clear_reason(data, reason):
    with pytest.raises(notebook_source.NotebookError, match=reason):
        program(data)


def test_code_is_bounded_by_what_the_cells_hold_not_by_the_file_size():
    """A notebook may be large with outputs; its code may not be larger than a module may be."""
    line = "x = 1  # " + "a" * 90 + "\n"
    cells = [("code", line * (notebook_source.MAX_CODE_BYTES // len(line) // 4 + 1)) for _ in range(5)]
    with pytest.raises(notebook_source.NotebookError, match=r"hold more than 1 MiB \(by cell 4\)"):
        program(notebook_bytes(*cells))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["md", "code"]),
                          st.lists(st.sampled_from(["a = 1", "b = 2", "%time a", "!ls", "# note", ""]), max_size=5)
                          .map("\n".join)), min_size=1, max_size=8))
def test_every_code_line_lies_in_its_cell(cells):
    """Each graded line of a cell is at the module line that `cell_at` maps back to that cell and line."""
    data = notebook_bytes(*cells)
    if not any(kind == "code" for kind, _ in cells):
        with pytest.raises(notebook_source.NotebookError):
            program(data)
        return
    graded = program(data)
    module_lines = graded.source.decode().splitlines()
    ast.parse(graded.source)
    for cell in graded.cells:
        source_lines = cells[cell.number - 1][1].splitlines()
        for offset, text in enumerate(source_lines, start=1):
            module_line = cell.begin + offset - 1
            assert graded.cell_at(module_line) == (cell, offset)
            assert module_lines[module_line - 1].endswith(text.lstrip())
