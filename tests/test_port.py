"""Tests of `course.port` and `course port`: PyTorch checkpoints of the original give the original's
outputs in JAX.

Tolerance of the parity tests: outputs agree elementwise to rtol 1e-5, with an absolute floor of
1e-6 times the largest output (float32 convolutions summed in another order differ by a few ulps,
and an output near 0 has no meaningful relative error). Tests that need torch skip without it.
"""

import secrets

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from course import port, registry
from course.state_dicts import PortError
from solutions.week2_neural_networks import MLP
from solutions.week4_simple_cnn import SimpleCNN
from solutions.week5_lenet import LeNet5, LeNet5ReLU
from solutions.week6_alexnet import AlexNet

JAX_MODELS = {"mlp": MLP, "simple_cnn": SimpleCNN, "lenet5": LeNet5, "lenet5_relu": LeNet5ReLU, "alexnet": AlexNet}
# Parameter counts stated by the original course (ORIGINAL_COURSE.md) and week 2's docstring.
ORIGINAL_PARAMETER_COUNTS = {"mlp": 242_762, "simple_cnn": 217_907, "lenet5": 61_706, "lenet5_relu": 61_706,
                             "alexnet": 43_553_542}


def assert_outputs_equal(actual, expected, seed):
    expected = np.asarray(expected)
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max(),
                               err_msg=f"seed {seed}")


def abstract_model(model_name):
    """The model with shapes instead of weights: `load_state_dict` fills in every parameter, no random init."""
    return nnx.eval_shape(lambda: JAX_MODELS[model_name](rngs=nnx.Rngs(0)))


def random_state_dict(model_name, naming, seed=0):
    """Random float32 arrays in PyTorch's layout for `model_name`, named as `naming`."""
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32) * 0.1
            for name, shape in port.torch_shapes(abstract_model(model_name), model_name, naming).items()}


def port_message(model_name, state_dict):
    model = abstract_model(model_name)
    with pytest.raises(PortError) as error:
        port.load_state_dict(model, model_name, state_dict)
    return str(error.value)


# ---------------------------------------------------------------------------------------------
# Layout conversions against independent references (no torch needed)


@settings(max_examples=25, deadline=None)
@given(channels=st.integers(1, 4), height=st.integers(1, 4), width=st.integers(1, 4), outputs=st.integers(1, 3),
       seed=st.integers(0, 2**31))
def test_linear_kernel_reads_channels_last_features_as_pytorch_reads_channels_first(channels, height, width,
                                                                                     outputs, seed):
    rng = np.random.default_rng(seed)
    weight = rng.standard_normal((outputs, channels * height * width))
    feature_map = rng.standard_normal((channels, height, width))
    pytorch = weight @ feature_map.reshape(-1)  # x.view(N, -1) of an NCHW map
    kernel = port.convert_linear_kernel(weight, (channels, height, width))
    jax_order = feature_map.transpose(1, 2, 0).reshape(-1)  # the JAX models' (H, W, C) flatten
    np.testing.assert_allclose(jax_order @ kernel, pytorch, rtol=1e-12)


def test_conv_kernel_is_hwio():
    weight = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # (out, in, kh, kw)
    kernel = port.convert_conv_kernel(weight)
    assert kernel.shape == (4, 5, 3, 2)
    assert kernel[1, 2, 0, 1] == weight[1, 0, 1, 2]


@pytest.mark.parametrize("model_name", sorted(ORIGINAL_PARAMETER_COUNTS))
def test_expected_pytorch_shapes_add_up_to_the_original_parameter_counts(model_name):
    for naming in port.NAMINGS[model_name]:
        shapes = port.torch_shapes(abstract_model(model_name), model_name, naming)
        assert sum(int(np.prod(shape)) for shape in shapes.values()) == ORIGINAL_PARAMETER_COUNTS[model_name]


def numpy_conv_nchw(images, weight, bias, padding=0):
    """PyTorch's Conv2d (stride 1) in float64 numpy: images (N, C, H, W), weight (O, C, kh, kw)."""
    images = np.pad(images, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = np.lib.stride_tricks.sliding_window_view(images, weight.shape[2:], axis=(2, 3))
    return np.einsum("nchwij,ocij->nohw", windows, weight, optimize=True) + bias[:, None, None]


def numpy_pool_nchw(images):
    n, c, h, w = images.shape
    return images.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def numpy_simple_cnn(sd, images):
    """The original SimpleCNN's eval-mode forward pass in float64 numpy, NCHW, (C, H, W) flatten."""
    relu = lambda x: np.maximum(x, 0)  # noqa: E731
    x = numpy_pool_nchw(relu(numpy_conv_nchw(images, sd["conv1.weight"], sd["conv1.bias"], 1)))
    x = numpy_pool_nchw(relu(numpy_conv_nchw(x, sd["conv2.weight"], sd["conv2.bias"], 1)))
    x = x.reshape(len(x), -1)
    x = relu(x @ sd["fc1.weight"].T + sd["fc1.bias"])
    x = relu(x @ sd["fc2.weight"].T + sd["fc2.bias"])
    return x @ sd["fc3.weight"].T + sd["fc3.bias"]


def test_simple_cnn_matches_a_numpy_nchw_forward_pass():
    seed = secrets.randbits(32)
    state_dict = random_state_dict("simple_cnn", "attributes", seed)
    images = np.random.default_rng(seed).standard_normal((2, 3, 32, 32))
    model = abstract_model("simple_cnn")
    assert port.load_state_dict(model, "simple_cnn", state_dict) == "attributes"
    model.eval()
    outputs = model(jnp.asarray(images.transpose(0, 2, 3, 1), jnp.float32))
    expected = numpy_simple_cnn({k: v.astype(np.float64) for k, v in state_dict.items()}, images)
    assert_outputs_equal(outputs, expected, seed)


@pytest.mark.parametrize("model_name", ["mlp", "lenet5", "lenet5_relu"])
def test_every_naming_of_a_model_loads_the_same_weights(model_name):
    namings = list(port.NAMINGS[model_name])
    first = random_state_dict(model_name, namings[0], seed=1)
    loaded = []
    for naming in namings:
        model = abstract_model(model_name)
        renamed = dict(zip(port.torch_shapes(model, model_name, naming), first.values()))
        assert port.load_state_dict(model, model_name, renamed) == naming
        loaded.append(nnx.state(model, nnx.Param))
    for state in loaded[1:]:
        jax.tree.map(np.testing.assert_array_equal, state, loaded[0])


@pytest.mark.parametrize("model_name", sorted(JAX_MODELS))
def test_the_reference_layers_in_definition_order_are_the_jax_naming(model_name):
    assert port.trainable_layers(abstract_model(model_name)) == port.MODEL_LAYERS[model_name]


def test_a_student_model_of_other_names_takes_the_original_weights(alternative_mlp):
    """Ported by definition order, not by names: an MLP of `blocks` and `head` gets the same
    weights, so the same outputs, as the reference MLP."""
    student_mlp = registry.week_module("week2_neural_networks", str(alternative_mlp)).MLP
    state_dict = random_state_dict("mlp", "fc", seed=2)
    reference, student = MLP(rngs=nnx.Rngs(0)), student_mlp(rngs=nnx.Rngs(0))
    assert port.trainable_layers(student) == ("blocks.0", "blocks.1", "blocks.2", "head")
    for model in (reference, student):
        assert port.load_state_dict(model, "mlp", state_dict) == "fc"
        model.eval()
    images = jax.random.normal(jax.random.key(3), (4, 28, 28, 1))
    assert_outputs_equal(student(images), reference(images), seed=2)


def test_ported_model_is_the_seeded_model_with_the_checkpoint_weights():
    state_dict = random_state_dict("mlp", "fc", seed=2)
    ported, naming = port.ported_model("mlp", state_dict, seed=5)
    loaded = MLP(rngs=nnx.Rngs(5))
    assert port.load_state_dict(loaded, "mlp", state_dict) == naming == "fc"
    same_key = jax.random.key_data(ported.dropout.rngs.key[...]) == jax.random.key_data(loaded.dropout.rngs.key[...])
    assert np.all(same_key)
    jax.tree.map(np.testing.assert_array_equal, nnx.state(ported, nnx.Param), nnx.state(loaded, nnx.Param))


def test_data_parallel_prefix_and_float64_arrays_are_accepted():
    state_dict = {f"module.{name}": value.astype(np.float64)
                  for name, value in random_state_dict("lenet5_relu", "numbered").items()}
    model = abstract_model("lenet5_relu")
    assert port.load_state_dict(model, "lenet5_relu", state_dict) == "numbered"
    assert model.f6.kernel[...].dtype == jnp.float32


# ---------------------------------------------------------------------------------------------
# Malformed checkpoints: each says what does not fit


def test_missing_key_is_named():
    state_dict = random_state_dict("simple_cnn", "attributes")
    del state_dict["fc3.bias"]
    message = port_message("simple_cnn", state_dict)
    assert "checkpoint does not fit model 'simple_cnn' (naming 'attributes'): missing fc3.bias" in message
    assert "unexpected" not in message and "looks like" not in message


def test_extra_key_is_named():
    state_dict = random_state_dict("lenet5", "numbered")
    state_dict["fc3.weight"] = np.zeros((10, 84), np.float32)
    message = port_message("lenet5", state_dict)
    assert "(naming 'numbered'): unexpected fc3.weight" in message
    assert "missing" not in message


def test_wrong_shape_is_named_with_both_shapes():
    state_dict = random_state_dict("simple_cnn", "attributes")
    state_dict["fc1.weight"] = np.zeros((128, 1024), np.float32)
    message = port_message("simple_cnn", state_dict)
    assert "wrong shapes: fc1.weight is (128, 1024), expected (128, 1600)" in message


def test_checkpoint_of_another_model_with_the_same_names_says_which_model():
    message = port_message("simple_cnn", random_state_dict("lenet5_relu", "numbered"))
    assert "conv1.weight is (6, 1, 5, 5), expected (16, 3, 3, 3)" in message
    assert message.endswith("It looks like a checkpoint of 'lenet5_relu': use --model lenet5_relu")


def test_checkpoint_of_another_model_with_other_names_says_which_model():
    message = port_message("simple_cnn", random_state_dict("lenet5", "sequential"))
    assert "none of its names fit; expected conv1.bias, conv1.weight" in message
    assert "got classifier.0.bias" in message
    assert "It looks like a checkpoint of 'lenet5'" in message


def test_tanh_lenet_given_for_the_relu_variant_says_so():
    message = port_message("lenet5_relu", random_state_dict("lenet5", "jax"))
    assert "wrong shapes: c5.weight is (120, 16, 5, 5), expected (120, 400)" in message
    assert "It looks like a checkpoint of 'lenet5'" in message


def test_renamed_checkpoint_is_recognised_by_its_shapes():
    shapes = port.torch_shapes(abstract_model("alexnet"), "alexnet", "jax").values()
    state_dict = {f"layer{i}": np.zeros(shape, np.float32) for i, shape in enumerate(shapes)}
    message = port_message("mlp", state_dict)
    assert "none of its names fit" in message and "It looks like a checkpoint of 'alexnet'" in message


def test_integer_tensor_and_non_mapping_are_refused():
    state_dict = random_state_dict("mlp", "fc")
    state_dict["fc1.bias"] = np.zeros(256, np.int64)
    assert "'fc1.bias' holds int64 values, not floating-point weights" in port_message("mlp", state_dict)
    assert "holds a list, not a state_dict" in port_message("mlp", [np.zeros(3)])
    assert "is an empty state_dict" in port_message("mlp", {})


def test_unknown_model_name_lists_the_portable_models():
    with pytest.raises(PortError, match="unknown model 'resnet'; models with a PyTorch original: mlp"):
        port.load_state_dict(abstract_model("simple_cnn"), "resnet", {})


# ---------------------------------------------------------------------------------------------
# Parity with PyTorch


def torch_and_jax_outputs(model_name, input_shape):
    torch = pytest.importorskip("torch")
    import tests.torch_models as torch_models

    seed = secrets.randbits(32)
    torch.manual_seed(seed)
    original = {"mlp": torch_models.MLP, "simple_cnn": torch_models.SimpleCNN, "lenet5": torch_models.LeNet5,
                "lenet5_relu": torch_models.LeNet5ReLU, "alexnet": torch_models.AlexNet}[model_name]().eval()
    images = torch.randn(*input_shape)
    with torch.no_grad():
        expected = original(images).numpy()
    model, _ = port.ported_model(model_name, original.state_dict(),
                                 factory=lambda rngs: JAX_MODELS[model_name](rngs=rngs))
    model.eval()
    outputs = model(jnp.asarray(images.permute(0, 2, 3, 1).numpy()))  # NCHW -> NHWC
    return outputs, expected, seed


@pytest.mark.parametrize("model_name, input_shape", [
    ("simple_cnn", (8, 3, 32, 32)), ("lenet5", (8, 1, 32, 32)), ("lenet5_relu", (8, 1, 32, 32)),
    ("alexnet", (2, 3, 227, 227))])
def test_ported_model_gives_the_pytorch_outputs(model_name, input_shape):
    outputs, expected, seed = torch_and_jax_outputs(model_name, input_shape)
    assert_outputs_equal(outputs, expected, seed)


def test_ported_mlp_gives_the_pytorch_log_probabilities():
    logits, expected_log_probs, seed = torch_and_jax_outputs("mlp", (8, 1, 28, 28))
    assert_outputs_equal(jax.nn.log_softmax(logits), expected_log_probs, seed)


# ---------------------------------------------------------------------------------------------
# `course port`


def test_port_command_prints_a_bad_checkpoint_on_one_line(tmp_path, capsys):
    state_dict = random_state_dict("lenet5_relu", "numbered")
    np.savez(tmp_path / "lenet.npz", **state_dict)
    assert port.main_port([str(tmp_path / "lenet.npz"), "--model", "simple_cnn", "--out", str(tmp_path / "o")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("course port: error: checkpoint does not fit model 'simple_cnn'")
    assert error.count("\n") == 1 and "use --model lenet5_relu" in error
    assert not (tmp_path / "o").exists()


def test_port_refuses_a_dataset_the_model_does_not_take(tmp_path, capsys):
    np.savez(tmp_path / "cnn.npz", **random_state_dict("simple_cnn", "attributes"))
    assert port.main_port([str(tmp_path / "cnn.npz"), "--model", "simple_cnn", "--out", str(tmp_path / "o"),
                           "--dataset", "mnist"]) == 2
    assert "does not train on 'mnist'; valid datasets for it: cifar10, shapes_rgb" in capsys.readouterr().err
