"""Tests of README.md's layout table: it names every module of the project's folders."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def layout_rows() -> dict[str, str]:
    """The layout table of README.md: folder -> what it says is in it."""
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Layout"):readme.index("## How a student works")]
    return {match.group(1): match.group(2) for match in re.finditer(r"^\| `([\w/]+)/` \| (.*) \|$", table, re.M)}


@pytest.mark.parametrize("folder", ["course", "grader", "grader/instructor", "benchmarks"])
def test_the_layout_names_every_module_of_a_folder(folder):
    described = layout_rows()[folder]
    modules = sorted(path.stem for path in (REPO / folder).glob("*.py")
                     if path.stem != "__init__" and path.stem != "__main__" and not path.stem.startswith("test_week"))
    unnamed = [name for name in modules if f"`{name}`" not in described and f"`{name}.py`" not in described]
    assert len(modules) > 5 and unnamed == []


def test_the_layout_names_every_top_level_folder():
    folders = sorted(path.name for path in REPO.iterdir()
                     if path.is_dir() and not path.name.startswith(".") and (path / "__init__.py").exists()
                     or path.name in ("benchmarks", "docs"))
    assert set(folders) <= set(layout_rows()), folders
