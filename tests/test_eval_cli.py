"""course.eval_cli: `course eval` of a ported or trained checkpoint, its accuracy overall and per class."""

import json

import numpy as np
import pytest
from flax import nnx

from course import data, eval_cli, port, registry, shapes, train
from course.state_dicts import read_state_dict
from tests.test_port import random_state_dict


def printed_accuracy(output: str) -> tuple[float, list[str]]:
    lines = output.strip().splitlines()
    return float(lines[0].split("accuracy ")[1].rstrip("%")) / 100, lines[1:]


def test_port_then_eval_then_resume_a_pytorch_lenet5(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    from tests.torch_models import LeNet5 as TorchLeNet5

    original = TorchLeNet5().eval()
    torch.save(original.state_dict(), tmp_path / "lenet5.pt")
    out = tmp_path / "ported"
    assert port.main_port([str(tmp_path / "lenet5.pt"), "--model", "lenet5", "--out", str(out), "--dataset",
                           "shapes_gray", "--epochs", "1", "--batch-size", "50", "--max-train-examples", "500"]) == 0
    assert "naming 'sequential'" in capsys.readouterr().out
    info = json.loads((out / "checkpoint" / "last" / "info.json").read_text())
    assert info["settings"]["dataset"] == "shapes_gray" and info["history"] == []

    assert eval_cli.main([str(out)]) == 0
    accuracy, class_lines = printed_accuracy(capsys.readouterr().out)
    images, labels = data.load("shapes_gray", "test")
    padded = np.pad(images[..., 0], ((0, 0), (2, 2), (2, 2))).astype(np.float32) / 255  # the original's input
    with torch.no_grad():
        predictions = original(torch.from_numpy(padded[:, None])).argmax(1).numpy()
    assert accuracy == pytest.approx(np.round(np.mean(predictions == labels), 4), abs=1e-4)
    assert [line.split()[0] for line in class_lines] == [name.split()[0] for name in shapes.SHAPE_CLASSES]

    history = train.fit(registry.recipes()["lenet5"], model_name="lenet5", dataset="shapes_gray", epochs=1,
                        batch_size=50, max_train_examples=500, out_dir=out, resume=True, progress=False)
    assert [record["epoch"] for record in history] == [1]


def test_port_an_npz_simple_cnn_and_eval_its_checkpoint_folder(tmp_path, capsys):
    np.savez(tmp_path / "cnn.npz", **random_state_dict("simple_cnn", "attributes", seed=3))
    out = tmp_path / "ported"
    assert port.main_port([str(tmp_path / "cnn.npz"), "--model", "simple_cnn", "--out", str(out)]) == 0
    capsys.readouterr()
    assert eval_cli.main([str(out / "checkpoint" / "best"), "--dataset", "shapes_rgb"]) == 0
    accuracy, class_lines = printed_accuracy(capsys.readouterr().out)
    assert len(class_lines) == 10

    recipe = registry.recipes()["simple_cnn"]
    model = recipe.model(nnx.Rngs(0))
    port.load_state_dict(model, "simple_cnn", read_state_dict(tmp_path / "cnn.npz"))
    images, labels = data.load("shapes_rgb", "test")
    assert accuracy == pytest.approx(train.evaluate(recipe, model, images, labels)["accuracy"], abs=1e-4)

    assert eval_cli.main([str(out), "--dataset", "shapes_rgb", "--max-examples", "300"]) == 0
    _, class_lines = printed_accuracy(capsys.readouterr().out)
    counts = [int(line.rsplit("/", 1)[1].rstrip(")")) for line in class_lines]
    assert sum(counts) == 300 and min(counts) > 0  # a random subset, not the first 300

    assert eval_cli.main([str(out), "--model", "lenet5_relu", "--dataset", "shapes_gray"]) == 2
    assert "does not hold a 'lenet5_relu' model" in capsys.readouterr().err


def test_eval_of_a_folder_without_checkpoint_says_what_it_expected(tmp_path, capsys):
    assert eval_cli.main([str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert f"course eval: error: {tmp_path} holds no checkpoint: expected {tmp_path}/checkpoint/best" in error
