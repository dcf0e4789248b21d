"""A week submitted as a Jupyter notebook: the module the grader grades is the notebook's code cells.

A notebook (`week2_neural_networks.ipynb`) is read by `nbformat` from bytes the grader already holds
(`grader.intake` read them as a regular file, at most MAX_NOTEBOOK_BYTES) and checked against the
notebook schema; its code cells, in order, become the source of `week2_neural_networks.py`, which is
graded exactly like a submitted `.py` module. What is a notebook's and not Python is left out:

  * a cell tagged `not-graded` (the set-up cell that installs the course, the cell that calls
    `grader.notebook.check`): the exercise notebooks tag theirs;
  * IPython's own lines, `%magic`, `!shell` and `%%cell magics`, which are commented out.

Each cell must compile on its own, as Jupyter compiles it: a syntax error is reported naming the
cell ("cell 7"), counted among all the notebook's cells as Jupyter's interface shows them, with its
first line. `Program.located` turns the module's `file.py:LINE` locations in the grader's feedback
into cells and lines of the notebook.
"""

import ast
import dataclasses
import re

MAX_NOTEBOOK_BYTES = 16 * 2**20  # a notebook file, outputs and images included
MAX_CODE_BYTES = 1 * 2**20  # its code cells together, the same bound as a submitted module
NOT_GRADED_TAG = "not-graded"
CELL_HEADER = "# %% cell {number}"
FIRST_LINE_SHOWN = 60


class NotebookError(ValueError):
    """The notebook cannot be graded; the message names the notebook (and the cell) and says why."""


@dataclasses.dataclass(frozen=True)
class Cell:
    """A code cell as it lies in the graded module: its number among all the notebook's cells (from 1),
    its first line, and the module lines it spans (1-based, header line excluded)."""

    number: int
    first_line: str
    begin: int
    end: int


@dataclasses.dataclass(frozen=True)
class Program:
    """The graded module made of a notebook's code cells, and where each cell lies in it."""

    source: bytes
    cells: tuple[Cell, ...]

    def cell_at(self, line: int) -> tuple[Cell, int] | None:
        """(the cell, the line within it, from 1) of the module's line `line`; None outside every cell."""
        for cell in self.cells:
            if cell.begin <= line <= cell.end:
                return cell, line - cell.begin + 1
        return None

    def located(self, text: str, module_name: str, notebook_name: str) -> str:
        """`text` with each "MODULE.py:LINE" replaced by "NOTEBOOK cell N line L"."""

        def replace(match: re.Match) -> str:
            found = self.cell_at(int(match[1]))
            return f"{notebook_name} cell {found[0].number} line {found[1]}" if found else match[0]

        return re.sub(re.escape(module_name) + r":(\d+)", replace, text)


def _shown(line: str) -> str:
    line = line.strip()
    return line if len(line) <= FIRST_LINE_SHOWN else line[:FIRST_LINE_SHOWN - 3] + "..."


def _python_lines(source: str) -> list[str]:
    """A cell's lines with IPython's own syntax commented out: a `%%` cell magic makes the whole cell
    IPython's, a line starting `%` or `!` is one magic or shell command."""
    lines = source.splitlines()
    if lines and lines[0].lstrip().startswith("%%"):
        return ["# (IPython, not graded) " + line for line in lines]
    return [f"{line[:len(line) - len(line.lstrip())]}# (IPython, not graded) {line.lstrip()}"
            if line.lstrip().startswith(("%", "!")) else line for line in lines]


def _read(data: bytes, notebook_name: str):
    import nbformat  # noqa: PLC0415 - only a notebook needs it

    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise NotebookError(f"{notebook_name} is not a notebook: it is not UTF-8 text ({error.reason} at byte {error.start})") from None
    try:
        notebook = nbformat.reads(text, as_version=nbformat.NO_CONVERT)
    except nbformat.ValidationError as error:
        raise NotebookError(f"{notebook_name} does not follow the notebook format: {str(error.message)[:200]}") from None
    except (ValueError, RecursionError, TypeError, KeyError, AttributeError) as error:
        reason = "it is not JSON" if isinstance(error, ValueError) else "its JSON is not a notebook's"
        raise NotebookError(f"{notebook_name} is not a notebook: {reason} ({type(error).__name__})") from None
    if not isinstance(notebook, dict) or notebook.get("nbformat") != 4:
        raise NotebookError(f"{notebook_name} is not a version-4 Jupyter notebook (save it from Jupyter or Colab)")
    try:
        nbformat.validate(notebook)
    except nbformat.ValidationError as error:
        raise NotebookError(f"{notebook_name} does not follow the notebook format: {str(error.message)[:200]}") from None
    return notebook


def program(data: bytes, notebook_name: str, module_name: str) -> Program:
    """The module graded for the notebook `data` (the bytes of `notebook_name`); `module_name` is the
    week module's file name. Raises NotebookError, naming the notebook or the cell, where it cannot be
    graded: not a notebook, code too large, or a cell that does not compile."""
    notebook = _read(data, notebook_name)
    lines, cells, size = [f"# The code cells of {notebook_name}, graded as {module_name}."], [], 0
    for number, cell in enumerate(notebook["cells"], start=1):
        if cell["cell_type"] != "code" or NOT_GRADED_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        python = _python_lines(source)
        size += sum(len(line.encode()) + 1 for line in python)
        if size > MAX_CODE_BYTES:
            raise NotebookError(f"the code cells of {notebook_name} hold more than {MAX_CODE_BYTES // 2**20} MiB "
                                f"(by cell {number}): not graded")
        first = _shown(next((line for line in source.splitlines() if line.strip()), ""))
        _check_compiles(python, number, first, notebook_name)
        lines.append(CELL_HEADER.format(number=number))
        cells.append(Cell(number, first, len(lines) + 1, len(lines) + len(python)))
        lines.extend([*python, ""])
    if not cells:
        raise NotebookError(f"{notebook_name} has no code cell to grade")
    return Program(("\n".join(lines) + "\n").encode(), tuple(cells))


def _check_compiles(python: list[str], number: int, first: str, notebook_name: str) -> None:
    """Raises NotebookError, naming cell `number`, unless its lines parse (nothing of them runs here)."""
    try:
        ast.parse("\n".join(python) + "\n", f"{notebook_name} cell {number}")
    except SyntaxError as error:
        where = f"line {error.lineno}" + (f": {_shown(error.text)}" if error.text else "")
        raise NotebookError(f"cell {number} of {notebook_name} ({first!r}) does not compile: {error.msg} ({where})") from None
    except (ValueError, RecursionError, MemoryError) as error:
        raise NotebookError(f"cell {number} of {notebook_name} does not compile: {type(error).__name__}: {error}") from None
