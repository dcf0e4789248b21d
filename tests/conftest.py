"""Shared fixtures: the real data folder (../shared/data on development and CI machines), a correct
alternative week module as a target folder."""

import os
import sys
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory, monkeypatch):
    """Each test session caches decoded datasets in its own folder, never in the user's cache."""
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "course-cache"))


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The folder of real datasets: $COURSE_DATA_DIR, else ../shared/data beside the repository."""
    folder = Path(os.environ.get("COURSE_DATA_DIR", SHARED_DATA))
    if not (folder / "mnist").is_dir():
        pytest.skip(f"real datasets not found in {folder}; set COURSE_DATA_DIR")
    return folder


def run_on_cpu_devices(script: str, count: int, timeout: float = 300) -> str:
    """Runs `script` in a fresh Python whose jax sees `count` CPU devices; returns its standard output.
    A script that blocks (say, devices waiting on each other in a collective) fails after `timeout` s."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    environment = {**os.environ, "XLA_FLAGS": f"--xla_force_host_platform_device_count={count}",
                   "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(root)}
    try:
        result = subprocess.run([sys.executable, "-c", script], cwd=root, env=environment,
                                capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as expired:
        output = expired.stdout.decode(errors="replace") if isinstance(expired.stdout, bytes) else expired.stdout or ""
        raise AssertionError(f"still running after {timeout:.0f} s on {count} CPU devices (blocked?); "
                             f"output so far: {output[-2000:]}") from None
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def run_on_eight_cpu_devices(script: str) -> str:
    return run_on_cpu_devices(script, 8)


def alternative_folder(name: str, folder: Path) -> Path:
    """`folder` holding the six solution modules, one of them patched as the grader's correct
    alternative `name` (tests/grader_cases): a target of other structure than the reference's."""
    from tests.grader_cases import cases

    case = next(case for case in cases.ALTERNATIVES if case["name"] == name)
    folder.mkdir(parents=True)
    for module in sorted((Path(__file__).resolve().parent.parent / "solutions").glob("week*.py")):
        source = module.read_text()
        if module.name.startswith(f"week{case['week']}_"):
            for old, new in case["patches"]:
                assert source.count(old) == 1, (name, old)
                source = source.replace(old, new)
        (folder / module.name).write_text(source)
    return folder


@pytest.fixture
def forget_targets():
    """Forgets the folder targets imported as `course_target` after the test."""
    yield
    for name in [name for name in sys.modules if name.split(".")[0] == "course_target"]:
        del sys.modules[name]


@pytest.fixture
def alternative_mlp(tmp_path, forget_targets):
    """A folder whose correct week 2 MLP the grader accepts under other names (a list of dropouts,
    `blocks`, `head`)."""
    return alternative_folder("MLP with other attribute names and one dropout per layer", tmp_path / "my_work")
