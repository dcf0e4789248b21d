"""course.checkpoints: a saved checkpoint restores the model; a broken file of one gives one line naming it."""

import jax
import numpy as np
import pytest
from flax import nnx

from course import checkpoints, train
from tests.test_train import FIT, TinyCNN, tiny_recipe


def test_restore_checkpoint_gives_the_saved_model(tmp_path):
    train.fit(tiny_recipe(epochs=1), out_dir=tmp_path, **FIT)
    model = TinyCNN(nnx.Rngs(99))
    info = checkpoints.restore_checkpoint(tmp_path / "checkpoint" / "last", model)
    assert info["epoch"] == 1
    model.eval()
    images = jax.random.normal(jax.random.key(0), (4, 28, 28, 1))
    again = TinyCNN(nnx.Rngs(5))
    checkpoints.restore_checkpoint(tmp_path / "checkpoint" / "last", again)
    again.eval()
    np.testing.assert_array_equal(model(images), again(images))
    with pytest.raises(FileNotFoundError, match="not a checkpoint written by `course train`"):
        checkpoints.restore_checkpoint(tmp_path, model)


# ---------------------------------------------------------------------------------------------
# Broken checkpoints (issue 26)


@pytest.fixture(scope="module")
def mlp_run(tmp_path_factory):
    """A one-epoch `course train mlp` run folder on shapes_gray, written once for the tests below."""
    from course.cli import main

    out = tmp_path_factory.mktemp("mlp") / "run"
    assert main(["train", "mlp", "--dataset", "shapes_gray", "--epochs", "1", "--batch-size", "50",
                 "--max-train-examples", "300", "--out", str(out), "--quiet"]) == 0
    return out


def largest_file(folder):
    return max((path for path in folder.rglob("*") if path.is_file()), key=lambda path: path.stat().st_size)


BROKEN = {
    # name: (the broken file in a checkpoint folder, how it is broken, what the error line says)
    "info not JSON": (lambda folder: folder / "info.json", lambda path: path.write_text('{"settings": {'),
                      "info.json: corrupt, not valid JSON"),
    "info not text": (lambda folder: folder / "info.json", lambda path: path.write_bytes(b"\xff\xfe\x00garbage"),
                      "info.json: corrupt, not text"),
    "history not numbers": (lambda folder: folder / "info.json",
                            lambda path: path.write_text(path.read_text().replace('"train_loss": ', '"train_loss": "x", "_": ', 1)),
                            "history entry 1: train_loss is 'x', not a number"),
    "array data garbage": (lambda folder: largest_file(folder / "model" / "ocdbt.process_0"),
                           lambda path: path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size)),
                           "the array data of "),
    "array metadata cut": (lambda folder: folder / "model" / "_METADATA",
                           lambda path: path.write_text(path.read_text()[:40]), "_METADATA: corrupt (not JSON)"),
}


@pytest.mark.parametrize("broken", BROKEN, ids=list(BROKEN))
def test_a_broken_checkpoint_file_gives_one_line_naming_it(mlp_run, tmp_path, capsys, broken):
    """`course eval` (reads checkpoint/best) and `course train --resume` (reads checkpoint/last)."""
    import shutil

    from course.cli import main

    which_file, break_it, expected = BROKEN[broken]
    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    files = [which_file(run / "checkpoint" / name) for name in ("best", "last")]
    for path in files:
        break_it(path)
    capsys.readouterr()
    commands = {"eval": ["eval", str(run)],
                "train": ["train", "mlp", "--dataset", "shapes_gray", "--epochs", "2", "--batch-size", "50",
                          "--max-train-examples", "300", "--out", str(run), "--resume", "--quiet"]}
    for (command, argv), path in zip(commands.items(), files):
        # orbax names no file of its array database, only its folder (model/) and the array
        named = path.parents[2] if broken == "array data garbage" else path
        assert main(argv) == 2, command
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith(f"course {command}: error:")]
        assert len(errors) == 1 and f"{named}:" in errors[0] and expected in errors[0], (command, errors)
        assert "Traceback" not in errors[0]
