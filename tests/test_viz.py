"""course.viz and `course viz`: the numbers behind each figure, and the PNG each command writes."""

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from course import data, layers, registry, train, viz, viz_cli
from solutions import week3_convolutions as week3
from solutions.week2_neural_networks import MLP
from solutions.week4_simple_cnn import SimpleCNN
from solutions.week5_lenet import LeNet5, LeNet5ReLU
from solutions.week6_alexnet import AlexNet


@pytest.fixture(scope="session")
def runs(tmp_path_factory):
    """Run folders of lenet5 (shapes_gray) and simple_cnn (shapes_rgb) trained one short epoch."""
    root = tmp_path_factory.mktemp("runs")
    recipes = registry.recipes()
    for name, dataset in (("lenet5", "shapes_gray"), ("simple_cnn", "shapes_rgb")):
        train.fit(recipes[name], model_name=name, dataset=dataset, epochs=1, max_train_examples=500,
                  out_dir=root / name, progress=False)
    return root


def random_model(build, seed: int = 0) -> nnx.Module:
    """`build(nnx.Rngs)`'s model with random normal weights, without compiling its initialisers (slow on CPU)."""
    model = nnx.eval_shape(lambda: build(nnx.Rngs(seed)))
    generator = np.random.default_rng(seed)

    def fill(leaf):
        if jax.dtypes.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            return jax.random.key(seed)
        scale = 1 / np.sqrt(np.prod(leaf.shape[:-1])) if len(leaf.shape) > 1 else 0.1
        return jnp.asarray(generator.normal(size=leaf.shape) * scale, leaf.dtype)

    nnx.update(model, jax.tree.map(fill, nnx.state(model)))
    return model


def png_size(path) -> tuple[int, int]:
    """(width, height) in pixels of a non-empty PNG file."""
    assert path.is_file() and path.stat().st_size > 1000, path
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def figure_pixels(figure, dpi: int = viz.DPI) -> tuple[int, int]:
    width, height = figure.get_size_inches() * dpi
    viz.plt.close(figure)
    return round(width), round(height)


def assert_size(path, expected) -> None:
    width, height = png_size(path)
    assert abs(width - expected[0]) <= 1 and abs(height - expected[1]) <= 1, (path, (width, height), expected)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = viz_cli.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------------------------------------
# Reading a model


def test_feature_maps_equal_the_models_own_layers():
    model = random_model(lambda rngs: SimpleCNN(rngs=rngs))
    model.train()
    inputs = jax.random.normal(jax.random.key(1), (1, 32, 32, 3))
    first = viz.layer_feature_maps(model, inputs, "conv1")
    second = viz.layer_feature_maps(model, inputs, "conv2")
    assert list(first) == ["conv", "ReLU", "max-pool 2x2/2"]
    conv1 = model.conv1(inputs)  # the layers called directly, not through the capture
    pooled1 = nnx.max_pool(jnp.maximum(conv1, 0), (2, 2), strides=(2, 2))
    conv2 = model.conv2(pooled1)
    for maps, conv in ((first, conv1), (second, conv2)):
        expected = np.transpose(np.asarray(conv[0]), (2, 0, 1))
        np.testing.assert_allclose(maps["conv"], expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(maps["ReLU"], np.maximum(expected, 0), rtol=1e-5, atol=1e-5)
        pooled = np.maximum(expected, 0).reshape(len(expected), expected.shape[1] // 2, 2, -1, 2).max(axis=(2, 4))
        np.testing.assert_allclose(maps["max-pool 2x2/2"], pooled, rtol=1e-5, atol=1e-5)
    assert first["conv"].shape == (16, 32, 32) and second["max-pool 2x2/2"].shape == (25, 8, 8)
    assert model.dropout.deterministic is False  # the model's own mode is kept


@pytest.mark.parametrize("build, input_shape", [
    (lambda rngs: SimpleCNN(rngs=rngs), (2, 32, 32, 3)),
    (lambda rngs: LeNet5(rngs=rngs), (2, 32, 32, 1)),
    (lambda rngs: LeNet5ReLU(rngs=rngs), (2, 32, 32, 1)),
    (lambda rngs: AlexNet(input_size=67, rngs=rngs), (2, 67, 67, 3)),
], ids=["SimpleCNN", "LeNet5", "LeNet5ReLU", "AlexNet"])
def test_model_stages_reproduce_each_models_forward_pass(build, input_shape):
    """Each layer's stage (activation, pool) from MODEL_STAGES, fed to the next layer, gives its captured output."""
    model = random_model(build)
    model.eval()
    outputs = viz.layer_outputs(model, jax.random.uniform(jax.random.key(2), input_shape))
    stages = viz.model_stages(model)
    chain = [name for name in outputs if not isinstance(getattr(model, name), nnx.Dropout)]
    assert set(stages) <= set(chain)
    for previous, following in zip(chain, chain[1:]):
        activated = list(viz.apply_stage(outputs[previous], stages.get(previous)).values())[-1]
        if isinstance(getattr(model, following), nnx.Linear):
            activated = activated.reshape(activated.shape[0], -1)
        np.testing.assert_allclose(getattr(model, following)(activated), outputs[following], rtol=1e-4, atol=1e-5)


def test_layer_feature_maps_rejects_an_unknown_layer_listing_the_valid_ones():
    model = random_model(lambda rngs: LeNet5(rngs=rngs))
    with pytest.raises(viz.VizError, match="valid layers: c1, c3, c5"):
        viz.layer_feature_maps(model, jnp.zeros((1, 32, 32, 1)), "f6")


def test_first_conv_kernels_are_the_first_layers_weights():
    model = random_model(lambda rngs: LeNet5(rngs=rngs))
    name, kernels = viz.first_conv_kernels(model)
    assert name == "c1"
    np.testing.assert_array_equal(kernels, model.c1.kernel.get_value())


def test_an_mlps_first_layer_filters_are_its_weights_as_images():
    model = random_model(lambda rngs: MLP(hidden=(12,), rngs=rngs))
    name, filters = viz.first_layer_filters(model, (28, 28, 1))
    weights = np.asarray(model.hidden_layers[0].kernel.get_value())  # (784, 12)
    assert name == "hidden_layers.0" and filters.shape == (28, 28, 1, 12)
    np.testing.assert_array_equal(filters[3, 5, 0], weights[3 * 28 + 5])  # row-major flattening (N, H*W*C)
    with pytest.raises(viz.VizError, match="takes 784 inputs, not an image of 32x32x3"):
        viz.first_layer_filters(model, (32, 32, 3))
    lenet = random_model(lambda rngs: LeNet5(rngs=rngs))
    assert viz.first_layer_filters(lenet, (32, 32, 1))[0] == "c1"


def test_kernel_images_scale_each_filter_to_unit_range():
    kernels = np.random.default_rng(0).normal(size=(5, 5, 3, 7)).astype(np.float32)
    tiles = viz.kernel_images(kernels)
    assert tiles.shape == (7, 5, 5, 3)
    np.testing.assert_allclose(tiles.min(axis=(1, 2, 3)), 0, atol=1e-6)
    np.testing.assert_allclose(tiles.max(axis=(1, 2, 3)), 1, atol=1e-6)
    first = kernels[..., 0]
    np.testing.assert_allclose(tiles[0], (first - first.min()) / (first.max() - first.min()), atol=1e-6)
    assert viz.kernel_images(kernels[:, :, :1]).shape == (7, 5, 5)
    assert viz.kernel_mosaic(kernels).shape == (3 * 6 - 1, 3 * 6 - 1, 3)


def test_class_confidences():
    outputs = jax.random.normal(jax.random.key(3), (4, 10))
    softmax = np.exp(outputs) / np.exp(outputs).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(viz.class_confidences(outputs, "logits"), softmax, rtol=1e-5)
    np.testing.assert_allclose(viz.class_confidences(jax.nn.log_softmax(outputs), "log_probs"), softmax, rtol=1e-5)
    np.testing.assert_allclose(viz.class_confidences(jnp.array([[-1.0, 0.0, 1.0]]), "tanh"), [[0, 0.5, 1]])


def test_smoothed_and_running_average():
    values = [4.0, 0.0, 2.0]
    np.testing.assert_allclose(viz.smoothed(values, weight=0.5), [4.0, 2.0, 2.0])
    np.testing.assert_allclose(viz.running_average(values), [4.0, 2.0, 2.0])
    np.testing.assert_allclose(viz.running_average([1.0, 3.0, 8.0]), [1.0, 2.0, 4.0])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=60))
def test_confusion_matrix_counts_every_pair(pairs):
    labels, predictions = map(np.array, zip(*pairs))
    matrix = viz.confusion_matrix(labels, predictions, 5)
    assert matrix.sum() == len(pairs)
    for true, predicted in set(pairs):
        assert matrix[true, predicted] == pairs.count((true, predicted))
    accuracy = viz.per_class_accuracy(matrix)
    for true in range(5):
        chosen = labels == true
        if chosen.any():
            assert accuracy[true] == pytest.approx(np.mean(predictions[chosen] == true))
        else:
            assert np.isnan(accuracy[true])


# ---------------------------------------------------------------------------------------------
# Trained checkpoints


def test_confusion_matrix_of_a_checkpoint_matches_its_test_accuracy(runs):
    model, recipe, settings_ = viz_cli.load_checkpoint(runs / "simple_cnn")
    images, labels = data.load("shapes_rgb", "test")
    outputs, predictions = viz.predict(model, recipe.prepare, images)
    model.eval()
    np.testing.assert_allclose(outputs[:8], model(recipe.prepare(jnp.asarray(images[:8]))), rtol=1e-4, atol=1e-5)
    matrix = viz.confusion_matrix(labels, predictions, 10)
    assert matrix.sum() == len(labels) == 1000
    accuracy = train.evaluate(recipe, model, images, labels)["accuracy"]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(accuracy, abs=1e-6)
    info = json.loads((runs / "simple_cnn/checkpoint/best/info.json").read_text())
    assert np.trace(matrix) / matrix.sum() == pytest.approx(info["history"][-1]["test_accuracy"], abs=1e-6)
    per_class = viz.per_class_accuracy(matrix)
    for label in range(10):
        assert per_class[label] == pytest.approx(np.mean(predictions[labels == label] == label))


def test_dashboard_writer_records_steps_and_writes_every_n(runs, tmp_path):
    model, recipe, _ = viz_cli.load_checkpoint(runs / "lenet5")
    images, labels = data.load("shapes_gray", "test")
    inputs, batch_labels = recipe.prepare(jnp.asarray(images[:16])), jnp.asarray(labels[:16])
    writer = viz.DashboardWriter(every=2, out=tmp_path, class_names=data.class_names("shapes_gray"))
    accuracies = [0.1, 0.3, 0.5, 0.6, 0.9]
    for step, accuracy in enumerate(accuracies[:2]):
        writer.on_step(step, {"loss": jnp.float32(1 - accuracy), "accuracy": jnp.float32(accuracy)},
                       model, inputs, batch_labels)
    assert (tmp_path / "dashboard.png").is_file()  # step 2 = every
    for step, accuracy in enumerate(accuracies[2:], start=2):
        writer.on_step(step, {"loss": jnp.float32(1 - accuracy), "accuracy": jnp.float32(accuracy)},
                       model, inputs, batch_labels)
    path = writer.finish(model, inputs, batch_labels)
    assert_size(path, (13 * 80, 7.5 * 80))
    records = json.loads((tmp_path / "dashboard_steps.json").read_text())
    assert records["steps"] == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(records["errors"], [1 - a for a in accuracies], atol=1e-6)
    np.testing.assert_allclose(records["losses"], [1 - a for a in accuracies], atol=1e-6)


def test_plot_dashboard_names_valid_layers_for_an_unknown_one():
    model = random_model(lambda rngs: LeNet5(rngs=rngs))
    with pytest.raises(viz.VizError, match="valid layers: c1, c3, c5, f6, output"):
        viz.plot_dashboard([1.0], [0.5], model, jnp.zeros((2, 32, 32, 1)), layers=["f7"])


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
# The CLI: each command writes a PNG of the expected size


def test_cli_fixed_filters_and_feature_maps(tmp_path, capsys):
    assert run_cli(capsys, "filters", "--fixed", "--out", tmp_path)[0] == 0
    assert_size(tmp_path / "filters_four.png", figure_pixels(viz.plot_kernels(list(week3.four_filters()))))
    assert run_cli(capsys, "filters", "--fixed", "sobel", "--out", tmp_path)[0] == 0
    assert_size(tmp_path / "filters_sobel.png", figure_pixels(viz.plot_kernels(list(week3.sobel_kernels()))))
    code, out, _ = run_cli(capsys, "feature-maps", "--fixed", "--size", "64", "--out", tmp_path)
    assert code == 0 and "600x512x3 -> 64x55x1" in out
    maps = week3.feature_maps(jnp.zeros((64, 55)), week3.four_filters())
    assert_size(tmp_path / "feature_maps_four.png", figure_pixels(viz.plot_feature_maps(np.zeros((64, 55)), maps)))


def test_cli_checkpoint_figures(runs, tmp_path, capsys):
    lenet, cnn = runs / "lenet5", runs / "simple_cnn/checkpoint/best"
    assert run_cli(capsys, "filters", "--checkpoint", lenet, "--out", tmp_path)[0] == 0
    assert_size(tmp_path / "filters.png", figure_pixels(viz.plot_learned_filters(np.zeros((5, 5, 1, 6)))))
    code, out, _ = run_cli(capsys, "feature-maps", "--checkpoint", cnn, "--layer", "conv2", "--image",
                           "grace_hopper", "--out", tmp_path)
    assert code == 0 and "600x512x3 -> 32x32x3" in out
    maps = {title: np.zeros((25, 8, 8)) for title in ("conv", "ReLU", "pool")}
    assert_size(tmp_path / "feature_maps_conv2.png", figure_pixels(viz.plot_feature_maps(np.zeros((32, 32)), maps)))
    assert run_cli(capsys, "dashboard", "--checkpoint", lenet, "--image", "5", "--out", tmp_path)[0] == 0
    assert_size(tmp_path / "dashboard.png", (1300, 750))
    assert run_cli(capsys, "predictions", "--checkpoint", cnn, "--out", tmp_path)[0] == 0
    assert_size(tmp_path / "predictions.png", (1470, 350))
    assert run_cli(capsys, "confusion", "--checkpoint", cnn, "--limit", "200", "--out", tmp_path)[0] == 0
    assert_size(tmp_path / "confusion.png", (750, 650))
    assert_size(tmp_path / "class_accuracy.png", (800, 450))
    assert run_cli(capsys, "channels", "--checkpoint", cnn, "--image", "2", "--out", tmp_path)[0] == 0
    assert_size(tmp_path / "channels.png", (3450, 1040))  # (3.5 * (32 * 0.3 + 0.2) + 0.2) in by 10.4 in


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
