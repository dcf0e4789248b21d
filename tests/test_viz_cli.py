"""`course viz` (course.viz_cli): image conversion, the PNG each command writes, one-line errors."""

import json
import shutil

import jax.numpy as jnp
import numpy as np

from course import viz_cli, viz_filters
from solutions import week3_convolutions as week3
from tests.viz_helpers import assert_size, figure_pixels

pytest_plugins = ["tests.viz_runs"]  # the fixture `runs`: trained checkpoints


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = viz_cli.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------------------------------------
# Images


def test_conform_image_crops_resizes_and_converts():
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    gray, note = viz_cli.conform_image(rgb[:10, :10], 10, 10, 1)
    expected = np.round(rgb[:10, :10].astype(np.float64) @ [0.299, 0.587, 0.114])
    np.testing.assert_allclose(gray[..., 0], expected, atol=1)
    assert note == "10x10x3 -> 10x10x1 (converted to grayscale)"
    resized, note = viz_cli.conform_image(rgb, 8, 8, 3)
    assert resized.shape == (8, 8, 3) and resized.dtype == np.uint8 and "centre-cropped" in note
    repeated, _ = viz_cli.conform_image(gray, 10, 10, 3)
    np.testing.assert_array_equal(repeated, np.repeat(gray, 3, axis=-1))
    same, note = viz_cli.conform_image(rgb, 20, 30, 3)
    assert note is None and same is rgb


# ---------------------------------------------------------------------------------------------
# Each command writes a PNG of the expected size


def test_cli_fixed_filters_and_feature_maps(tmp_path, capsys):
    assert run_cli(capsys, "filters", "--fixed", "--out", tmp_path)[0] == 0
    assert_size(tmp_path / "filters_four.png", figure_pixels(viz_filters.plot_kernels(list(week3.four_filters()))))
    assert run_cli(capsys, "filters", "--fixed", "sobel", "--out", tmp_path)[0] == 0
    assert_size(tmp_path / "filters_sobel.png", figure_pixels(viz_filters.plot_kernels(list(week3.sobel_kernels()))))
    code, out, _ = run_cli(capsys, "feature-maps", "--fixed", "--size", "64", "--out", tmp_path)
    assert code == 0 and "600x512x3 -> 64x55x1" in out
    maps = week3.feature_maps(jnp.zeros((64, 55)), week3.four_filters())
    assert_size(tmp_path / "feature_maps_four.png", figure_pixels(viz_filters.plot_feature_maps(np.zeros((64, 55)), maps)))


def test_cli_checkpoint_figures(runs, tmp_path, capsys):
    lenet, cnn = runs / "lenet5", runs / "simple_cnn/checkpoint/best"
    assert run_cli(capsys, "filters", "--checkpoint", lenet, "--out", tmp_path)[0] == 0
    assert_size(tmp_path / "filters.png", figure_pixels(viz_filters.plot_learned_filters(np.zeros((5, 5, 1, 6)))))
    code, out, _ = run_cli(capsys, "feature-maps", "--checkpoint", cnn, "--layer", "conv2", "--image",
                           "grace_hopper", "--out", tmp_path)
    assert code == 0 and "600x512x3 -> 32x32x3" in out
    maps = {title: np.zeros((25, 8, 8)) for title in ("conv", "ReLU", "pool")}
    assert_size(tmp_path / "feature_maps_conv2.png", figure_pixels(viz_filters.plot_feature_maps(np.zeros((32, 32)), maps)))
    assert run_cli(capsys, "dashboard", "--checkpoint", lenet, "--image", "5", "--out", tmp_path)[0] == 0
    assert_size(tmp_path / "dashboard.png", (1300, 750))
    assert run_cli(capsys, "predictions", "--checkpoint", cnn, "--out", tmp_path)[0] == 0
    assert_size(tmp_path / "predictions.png", (1470, 350))
    assert run_cli(capsys, "confusion", "--checkpoint", cnn, "--limit", "200", "--out", tmp_path)[0] == 0
    assert_size(tmp_path / "confusion.png", (750, 650))
    assert_size(tmp_path / "class_accuracy.png", (800, 450))
    assert run_cli(capsys, "channels", "--checkpoint", cnn, "--image", "2", "--out", tmp_path)[0] == 0
    assert_size(tmp_path / "channels.png", (3450, 1040))  # (3.5 * (32 * 0.3 + 0.2) + 0.2) in by 10.4 in


# ---------------------------------------------------------------------------------------------
# Bad input


def bad_input_message(capsys, *argv) -> str:
    code, _, err = run_cli(capsys, *argv)
    assert code == 2 and "Traceback" not in err and err.count("\n") == 1, err
    return err


def test_cli_bad_inputs_get_one_line_messages(runs, tmp_path, capsys):
    lenet = runs / "lenet5"
    out = ("--out", tmp_path)
    assert "does not exist" in bad_input_message(capsys, "filters", "--checkpoint", tmp_path / "missing", *out)
    assert "holds no checkpoint" in bad_input_message(capsys, "filters", "--checkpoint", tmp_path, *out)
    foreign = tmp_path / "foreign"
    shutil.copytree(lenet / "checkpoint/best", foreign)
    info = json.loads((foreign / "info.json").read_text())
    (foreign / "info.json").write_text(json.dumps({**info, "settings": {**info["settings"], "model_name": "net"}}))
    assert "pass --model" in bad_input_message(capsys, "filters", "--checkpoint", foreign, *out)
    message = bad_input_message(capsys, "filters", "--checkpoint", foreign, "--model", "simple_cnn", *out)
    assert "does not hold the weights of a 'simple_cnn' model" in message
    message = bad_input_message(capsys, "feature-maps", "--checkpoint", lenet, "--layer", "f6", *out)
    assert "valid layers: c1, c3, c5" in message
    message = bad_input_message(capsys, "feature-maps", "--checkpoint", lenet, "--image", "grace_hopper",
                                "--strict", *out)
    assert "600x512x3, not 28x28x1" in message
    assert "past the end" in bad_input_message(capsys, "dashboard", "--checkpoint", lenet, "--image", "99999", *out)
    not_an_image = tmp_path / "notes.txt"
    not_an_image.write_text("hello")
    assert "cannot read" in bad_input_message(capsys, "feature-maps", "--checkpoint", lenet, "--image",
                                              not_an_image, *out)
    assert "no test image" in bad_input_message(capsys, "predictions", "--checkpoint", lenet, "--start", "5000", *out)
    assert run_cli(capsys, "filters", *out)[0] == 2  # argparse: neither --checkpoint nor --fixed
