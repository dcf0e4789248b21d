"""course.runs: resuming a run from its checkpoint/last, exactly, with more epochs, or not at all."""

import json

import pytest

from course import checkpoints, runs, train
from solutions.week4_simple_cnn import shuffled_batches
from tests.test_train import FIT, jitter, measured, tiny_recipe


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path, monkeypatch):
    recipe = tiny_recipe(augment=jitter, batches=shuffled_batches)
    uninterrupted = train.fit(recipe, out_dir=tmp_path / "whole", **FIT)

    save = checkpoints.save_checkpoint

    def save_then_die_after_epoch_2(path, model, optimizer, info):
        save(path, model, optimizer, info)
        if path.name == "last" and info["epoch"] == 2:
            raise KeyboardInterrupt  # the run is killed right after its second epoch

    monkeypatch.setattr(checkpoints, "save_checkpoint", save_then_die_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train.fit(recipe, out_dir=tmp_path / "killed", **FIT)
    monkeypatch.setattr(checkpoints, "save_checkpoint", save)
    resumed = train.fit(recipe, out_dir=tmp_path / "killed", resume=True, **FIT)
    assert measured(resumed) == measured(uninterrupted)
    assert json.loads((tmp_path / "killed" / "metrics.json").read_text())["history"] == resumed


def test_resume_refuses_other_settings(tmp_path):
    train.fit(tiny_recipe(epochs=1), out_dir=tmp_path, **FIT)
    with pytest.raises(runs.SettingsError, match="Cannot resume"):
        train.fit(tiny_recipe(epochs=1), out_dir=tmp_path, resume=True, learning_rate=0.5, **FIT)


def test_resume_with_more_epochs_extends_a_finished_run(tmp_path):
    recipe = tiny_recipe(epochs=1)
    small = {**FIT, "max_train_examples": 400}
    finished = train.fit(recipe, out_dir=tmp_path, **small)
    extended = train.fit(recipe, out_dir=tmp_path, resume=True, epochs=2, **small)
    assert [record["epoch"] for record in extended] == [1, 2]
    assert measured(extended[:1]) == measured(finished)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["settings"]["epochs"] == 2 and len(metrics["history"]) == 2
    assert metrics["extensions"] == [{"after_epoch": 1, "from_epochs": 1, "to_epochs": 2}]
    assert json.loads((tmp_path / "checkpoint" / "last" / "info.json").read_text())["epoch"] == 2
    with pytest.raises(runs.SettingsError, match="it has trained 2 already; pass --epochs 3 or more"):
        train.fit(recipe, out_dir=tmp_path, resume=True, epochs=1, **small)
    assert measured(train.fit(recipe, out_dir=tmp_path, resume=True, epochs=2, **small)) == measured(extended)
