"""The `course` command: `course train` end to end (metrics, curves, the best checkpoint that `course eval`
reads back, precision, the dashboard, the compilation cache), the structures the grader accepts through
train, eval and viz, the commands it hands to other modules, `python -m course`, and its one-line
messages for bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from course import registry
from course.cli import main

REPO = Path(__file__).resolve().parent.parent


def test_train_writes_metrics_curves_and_the_best_checkpoint(tmp_path, capsys):
    """Two epochs of the MLP on 1000 synthetic shapes: the loss falls and the accuracy beats chance; the
    recipe's tenth is held out for validation; the best checkpoint is the epoch of best validation
    accuracy, and `course eval` of it gives back that epoch's test accuracy."""
    out = tmp_path / "run"
    code = main(["train", "mlp", "--dataset", "shapes_gray", "--epochs", "2", "--batch-size", "50",
                 "--max-train-examples", "1000", "--out", str(out), "--quiet"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    history = metrics["history"]
    assert [record["epoch"] for record in history] == [1, 2]
    for name in ("train_loss", "train_accuracy", "test_loss", "test_accuracy", "epoch_seconds", "images_per_second"):
        assert isinstance(history[0][name], float)
    assert history[1]["train_loss"] < history[0]["train_loss"]
    assert history[1]["test_accuracy"] > 0.2  # ten classes: chance is 0.1
    assert metrics["validation"]["examples"] == round(1000 * registry.recipes("solutions")["mlp"].validation_fraction)
    printed = capsys.readouterr().out
    assert f"mlp on shapes_gray: test accuracy {history[1]['test_accuracy']:.2%} after 2 epochs" in printed
    assert (out / "curves.png").stat().st_size > 10_000
    chosen = history[json.loads((out / "checkpoint" / "best" / "info.json").read_text())["epoch"] - 1]
    assert chosen["validation_accuracy"] == max(record["validation_accuracy"] for record in history)
    assert main(["eval", str(out)]) == 0
    assert f"test (1000 images): accuracy {chosen['test_accuracy']:.2%}" in capsys.readouterr().out


def test_train_takes_a_precision(tmp_path, capsys):
    """bf16 trains the same run to other but close numbers (bfloat16 is really in use); fp16 is refused."""
    losses = {}
    for precision in ("float32", "bf16"):
        out = tmp_path / precision
        assert main(["train", "mlp", "--dataset", "shapes_gray", "--epochs", "1", "--batch-size", "50",
                     "--max-train-examples", "500", "--precision", precision, "--out", str(out), "--quiet"]) == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["settings"]["precision"] == precision
        losses[precision] = metrics["history"][0]["test_loss"]
    assert losses["bf16"] != losses["float32"] and abs(losses["bf16"] / losses["float32"] - 1) < 0.01, losses
    with pytest.raises(SystemExit):
        main(["train", "mlp", "--precision", "fp16"])
    assert "invalid choice: 'fp16'" in capsys.readouterr().err


def test_unknown_model_lists_the_valid_ones(capsys):
    assert main(["train", "lenet6"]) == 2
    error = capsys.readouterr().err
    assert "unknown model 'lenet6'" in error
    for name in ("mlp", "simple_cnn", "lenet5", "alexnet"):
        assert name in error


def test_dataset_the_model_does_not_take_lists_the_valid_ones(capsys):
    assert main(["train", "simple_cnn", "--dataset", "mnist"]) == 2
    assert "does not train on 'mnist'; valid datasets for it: cifar10" in capsys.readouterr().err


def test_data_folder_without_the_files_says_where_it_looked(tmp_path, capsys):
    assert main(["train", "lenet5", "--dataset", "mnist", "--data-dir", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert f"No files for dataset 'mnist' in {tmp_path}" in error
    assert "train-images-idx3-ubyte.gz" in error


def test_python_dash_m_course_runs_the_command_and_exits_with_its_status(tmp_path):
    """`python -m course` is `course`: it does what the command does, and exits with its status."""
    def course(*args):
        return subprocess.run([sys.executable, "-m", "course", *args], cwd=REPO, capture_output=True, text=True,
                              timeout=120)

    written = course("lessons", "week3", "--out", str(tmp_path))
    assert written.returncode == 0, written.stderr[-2000:]
    assert sorted(path.name for path in tmp_path.iterdir()) == ["week3_convolutions.ipynb"]
    first_cell = json.loads((tmp_path / "week3_convolutions.ipynb").read_text())["cells"][0]
    assert "".join(first_cell["source"]).startswith("# Week 3: ")
    refused = course("train", "simple_cnn", "--dataset", "mnist")
    assert refused.returncode == 2
    assert refused.stderr.strip() == ("course train: error: model 'simple_cnn' does not train on 'mnist'; "
                                      "valid datasets for it: cifar10, shapes_rgb")


def test_unknown_command_is_refused_naming_the_commands(capsys):
    from course.cli import DELEGATED

    with pytest.raises(SystemExit) as exit_info:
        main(["fly"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "invalid choice: 'fly'" in error
    assert all(f"'{command}'" in error or f" {command}" in error for command in ("train", "data", *DELEGATED)), error


def test_train_writes_the_dashboard_every_n_steps(tmp_path):
    out = tmp_path / "lenet"
    code = main(["train", "lenet5", "--dataset", "shapes_gray", "--epochs", "1", "--batch-size", "50",
                 "--max-train-examples", "556", "--dashboard-every", "4", "--out", str(out), "--quiet"])
    assert code == 0
    recorded = json.loads((out / "dashboard_steps.json").read_text())
    assert recorded["steps"] == list(range(1, 11))  # 10 steps of the 500 left after validation, all recorded
    assert len(recorded["losses"]) == 10 and all(0 <= error <= 1 for error in recorded["errors"])
    assert (out / "dashboard.png").stat().st_size > 20_000


def test_dashboard_needs_an_output_folder(capsys):
    assert main(["train", "lenet5", "--dataset", "shapes_gray", "--dashboard-every", "4"]) == 2
    assert "--dashboard-every needs --out" in capsys.readouterr().err


def test_each_delegated_command_runs_its_function_with_its_options_and_status(monkeypatch):
    """`course grade ...`, `course publish ...` and the others import their module and call its function
    with the rest of the command line, and `course` exits with what it returns."""
    import importlib

    from course.cli import DELEGATED

    received = {}

    def recorder(name):
        def function(argv):
            received[name] = argv
            return 3

        return function

    for name, (module_name, function_name, _) in DELEGATED.items():
        monkeypatch.setattr(importlib.import_module(module_name), function_name, recorder(name))
    for name in DELEGATED:
        assert main([name, "--target", "solutions", name]) == 3
    assert received == {name: ["--target", "solutions", name] for name in DELEGATED}


def test_a_second_course_train_compiles_nothing(tmp_path):
    """`course train` keeps XLA's compiled programs in the cache folder: the second run of the same
    command adds none (every compilation is read back) and trains to the same accuracy."""
    command = [sys.executable, "-m", "course", "train", "lenet5", "--dataset", "shapes_gray", "--epochs", "1",
               "--batch-size", "50", "--max-train-examples", "200", "--quiet"]
    environment = {**os.environ, "COURSE_CACHE_DIR": str(tmp_path)}
    environment.pop("JAX_COMPILATION_CACHE_DIR", None)
    outputs, entries = [], []
    for _ in range(2):
        finished = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=300)
        assert finished.returncode == 0, finished.stderr[-2000:]
        outputs.append(finished.stdout)
        entries.append(sorted(path.name for path in (tmp_path / "jax-compilation").iterdir()))
    assert entries[0] and entries[1] == entries[0]
    assert outputs[1] == outputs[0]


def test_a_stub_a_command_reaches_is_one_line_naming_the_task(monkeypatch, capsys):
    from course import cli

    def stub(args):
        raise NotImplementedError("Task 5.2 (pm1_targets): not attempted")

    monkeypatch.setattr(cli, "train_command", stub)
    assert main(["train", "lenet5"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "course train: Task 5.2 (pm1_targets) is not written yet: fill it in in exercises/week5_lenet.py, "
        "then check it with `course grade week5`"]

    def missing_feature(args):
        raise NotImplementedError("a library's own missing feature")

    monkeypatch.setattr(cli, "train_command", missing_feature)
    with pytest.raises(NotImplementedError, match="missing feature"):  # not a stub: the traceback stays
        main(["train", "lenet5"])


ALTERNATIVE_MODELS = {  # a correct alternative the grader accepts -> (model, dataset)
    "MLP with other attribute names and one dropout per layer": ("mlp", "shapes_gray"),
    "SimpleCNN with its layers in dicts and lax.reduce_window pooling": ("simple_cnn", "shapes_rgb"),
}


@pytest.mark.parametrize("name", list(ALTERNATIVE_MODELS))
def test_train_eval_and_viz_run_the_targets_own_model(name, tmp_path, capsys, forget_targets):
    """The structures the grader accepts train, evaluate, draw and restore as themselves."""
    from tests.conftest import alternative_folder

    model, dataset = ALTERNATIVE_MODELS[name]
    target = str(alternative_folder(name, tmp_path / "my_work"))
    out, figures = tmp_path / "run", tmp_path / "figures"
    assert main(["train", model, "--target", target, "--dataset", dataset, "--epochs", "1", "--batch-size",
                 "50", "--max-train-examples", "1000", "--out", str(out), "--quiet", "--dashboard-every", "20"]) == 0
    assert f"{model} on {dataset}: test accuracy" in capsys.readouterr().out
    assert main(["eval", str(out), "--target", target, "--max-examples", "200"]) == 0
    assert f"{model} on {dataset} test (200 images): accuracy" in capsys.readouterr().out
    for figure in ("predictions", "filters"):
        assert main(["viz", figure, "--checkpoint", str(out), "--target", target, "--out", str(figures)]) == 0
        assert (figures / f"{figure}.png").stat().st_size > 10_000
    assert (out / "dashboard.png").stat().st_size > 10_000


def test_a_checkpoint_of_other_names_says_which_target_to_pass(alternative_mlp, tmp_path, capsys):
    out, target = tmp_path / "run", str(alternative_mlp)
    assert main(["train", "mlp", "--target", target, "--dataset", "shapes_gray", "--epochs", "1", "--batch-size",
                 "50", "--max-train-examples", "500", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    # the reference's MLP has other names: the checkpoint does not fit it, and the message says what to pass
    assert main(["eval", str(out), "--target", "solutions", "--max-examples", "200"]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "pass the --target it was trained with" in error


def test_a_target_that_holds_no_week_module_is_refused(tmp_path, capsys):
    assert main(["train", "mlp", "--target", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "nor a folder holding week modules" in error
