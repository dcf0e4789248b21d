"""Tests of week 5: padding, +1/-1 targets and losses, both LeNet-5 variants against plain lax ops, their
steps, and both recipes against the original course (its input, size and losses)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from course import data
from solutions.week5_lenet import (
    RECIPES,
    LeNet5,
    LeNet5ReLU,
    eval_step,
    mse_pm1_loss,
    nll_loss,
    pad_to_32,
    pm1_targets,
    prepare,
    relu_eval_step,
    relu_train_step,
    train_step,
)

HIGHEST = jax.lax.Precision.HIGHEST


def random_images(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def parameter_count(model):
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def reference_conv(images, conv):
    outputs = jax.lax.conv_general_dilated(
        images, conv.kernel[...], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=HIGHEST
    )
    return outputs + conv.bias[...]


def reference_pool(images):
    return jax.lax.reduce_window(images, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def reference_dense(x, linear):
    return jnp.dot(x, linear.kernel[...], precision=HIGHEST) + linear.bias[...]


def reference_lenet5(model, images):
    x = reference_pool(jnp.tanh(reference_conv(images, model.c1)))
    x = reference_pool(jnp.tanh(reference_conv(x, model.c3)))
    x = jnp.tanh(reference_conv(x, model.c5)).reshape(len(x), 120)
    return jnp.tanh(reference_dense(jnp.tanh(reference_dense(x, model.f6)), model.output))


def reference_lenet5_relu(model, images, c5=None):
    """The ReLU variant's forward from plain lax ops; `c5` replaces its first fully connected layer."""
    x = reference_pool(jax.nn.relu(reference_conv(images, model.c1)))
    x = reference_pool(jax.nn.relu(reference_conv(x, model.c3)))
    x = reference_dense(x.reshape(len(x), 400), model.c5) if c5 is None else c5(x)
    x = jax.nn.relu(reference_dense(jax.nn.relu(x), model.f6))
    return jax.nn.log_softmax(reference_dense(x, model.output))


# --- padding, targets, losses ---


@settings(max_examples=10, deadline=None)
@given(batch=st.integers(1, 3), channels=st.integers(1, 3), dtype=st.sampled_from([np.uint8, np.float32]),
       seed=st.integers(0, 2**31 - 1))
def test_pad_to_32_adds_two_zeros_on_each_side(batch, channels, dtype, seed):
    images = np.random.default_rng(seed).integers(1, 256, (batch, 28, 28, channels)).astype(dtype)
    padded = np.asarray(pad_to_32(jnp.asarray(images)))
    assert padded.shape == (batch, 32, 32, channels) and padded.dtype == dtype
    np.testing.assert_array_equal(padded[:, 2:30, 2:30], images)
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert np.all(padded[:, border] == 0)


def test_pad_to_32_rejects_other_sizes():
    with pytest.raises(ValueError, match="pad_to_32.*28, 28"):
        pad_to_32(jnp.zeros((2, 32, 32, 1)))


def test_pm1_targets_of_a_known_batch():
    targets = pm1_targets(jnp.array([2, 0]), num_classes=3)
    assert targets.dtype == jnp.float32
    np.testing.assert_array_equal(targets, [[-1, -1, 1], [1, -1, -1]])


def test_mse_pm1_loss_is_the_mean_over_all_elements():
    rng = np.random.default_rng(0)
    outputs = rng.uniform(-1, 1, (7, 10))
    labels = rng.integers(0, 10, 7)
    targets = -np.ones((7, 10))
    targets[np.arange(7), labels] = 1
    expected = np.mean((outputs - targets) ** 2)  # nn.MSELoss(): sum / (7 * 10), in float64
    loss = mse_pm1_loss(jnp.asarray(outputs, jnp.float32), jnp.asarray(labels))
    np.testing.assert_allclose(loss, expected, rtol=1e-6)
    assert mse_pm1_loss(jnp.zeros((4, 10)), jnp.arange(4)) == pytest.approx(1.0)


def test_mse_pm1_loss_gradient():
    outputs = random_images(1, (5, 10))
    labels = jnp.array([0, 3, 9, 3, 1])
    expected = 2 * (outputs - pm1_targets(labels)) / outputs.size
    np.testing.assert_allclose(jax.grad(mse_pm1_loss)(outputs, labels), expected, rtol=1e-5, atol=1e-7)


def test_nll_loss_of_log_softmax_is_cross_entropy():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((6, 10)) * 3
    labels = rng.integers(0, 10, 6)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    expected = -log_probs[np.arange(6), labels].mean()
    np.testing.assert_allclose(nll_loss(jnp.asarray(log_probs, jnp.float32), jnp.asarray(labels)), expected, rtol=1e-5)
    logits = jnp.asarray(logits, jnp.float32)
    cross_entropy = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    np.testing.assert_allclose(nll_loss(jax.nn.log_softmax(logits), labels), cross_entropy, rtol=1e-5)


def test_prepare_pads_and_scales_to_unit_range():
    images = jnp.full((2, 28, 28, 1), 255, jnp.uint8).at[0, 0, 0, 0].set(51)
    prepared = prepare(images)
    assert prepared.shape == (2, 32, 32, 1) and prepared.dtype == jnp.float32
    assert prepared[0, 2, 2, 0] == pytest.approx(0.2)
    assert prepared[1, 2, 2, 0] == 1.0 and prepared[1, 0, 0, 0] == 0.0


# --- the two models ---


@pytest.mark.parametrize("model_class", [LeNet5, LeNet5ReLU])
def test_parameter_count_matches_the_original(model_class):
    assert parameter_count(model_class(rngs=nnx.Rngs(0))) == 61_706


def test_layer_shapes():
    tanh_model, relu_model = LeNet5(rngs=nnx.Rngs(0)), LeNet5ReLU(rngs=nnx.Rngs(0))
    assert tanh_model.c1.kernel.shape == relu_model.c1.kernel.shape == (5, 5, 1, 6)
    assert tanh_model.c3.kernel.shape == relu_model.c3.kernel.shape == (5, 5, 6, 16)
    assert tanh_model.c5.kernel.shape == (5, 5, 16, 120)
    assert relu_model.c5.kernel.shape == (400, 120)


def test_lenet5_forward_matches_lax_reference_and_lies_in_minus_one_one():
    model = LeNet5(rngs=nnx.Rngs(0))
    images = random_images(3, (4, 32, 32, 1))
    outputs = model(images)
    assert outputs.shape == (4, 10)
    assert np.all(np.abs(outputs) < 1)
    np.testing.assert_allclose(outputs, reference_lenet5(model, images), rtol=1e-5, atol=1e-5)


def test_lenet5_relu_forward_matches_lax_reference_and_gives_log_probabilities():
    model = LeNet5ReLU(rngs=nnx.Rngs(0))
    images = random_images(4, (4, 32, 32, 1))
    outputs = model(images)
    assert outputs.shape == (4, 10)
    np.testing.assert_allclose(jax.nn.logsumexp(outputs, axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(outputs, reference_lenet5_relu(model, images), rtol=1e-5, atol=1e-5)


def test_lenet5_relu_flatten_order_is_hwc_and_pytorch_weights_port_by_permutation():
    """A PyTorch C5 weight (120, 400) reads (C, H, W)-flattened features; permuted, it reads ours."""
    model = LeNet5ReLU(rngs=nnx.Rngs(1))
    torch_weight = jnp.asarray(np.random.default_rng(5).standard_normal((120, 400)) * 0.05, jnp.float32)
    model.c5.kernel[...] = torch_weight.reshape(120, 16, 5, 5).transpose(2, 3, 1, 0).reshape(400, 120)

    def torch_c5(features):  # (N, 5, 5, 16) -> PyTorch's x.view(-1, 16 * 5 * 5) @ w.T + b
        flat = features.transpose(0, 3, 1, 2).reshape(len(features), -1)
        return jnp.dot(flat, torch_weight.T, precision=HIGHEST) + model.c5.bias[...]

    images = random_images(6, (3, 32, 32, 1))
    np.testing.assert_allclose(model(images), reference_lenet5_relu(model, images, c5=torch_c5), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("model_class", [LeNet5, LeNet5ReLU])
def test_same_seed_gives_same_model(model_class):
    first, second = (nnx.state(model_class(rngs=nnx.Rngs(0)), nnx.Param) for _ in range(2))
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)):
        np.testing.assert_array_equal(a, b)
    other = nnx.state(model_class(rngs=nnx.Rngs(1)), nnx.Param)
    assert not np.array_equal(first["c1"]["kernel"][...], other["c1"]["kernel"][...])


@pytest.mark.parametrize(
    "model_class, step, evaluate",
    [(LeNet5, train_step, eval_step), (LeNet5ReLU, relu_train_step, relu_eval_step)],
)
def test_train_step_lowers_the_loss_on_a_small_batch(model_class, step, evaluate):
    model = model_class(rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)
    images = random_images(7, (16, 32, 32, 1))
    labels = jnp.arange(16) % 10
    before = evaluate(model, images, labels)
    for _ in range(15):
        metrics = step(model, optimizer, images, labels)
    after = evaluate(model, images, labels)
    assert set(metrics) == {"loss", "accuracy"}
    assert after["loss"] < 0.7 * before["loss"]
    assert after["accuracy"] > before["accuracy"]


def test_eval_step_uses_mse_and_argmax_accuracy():
    model = LeNet5(rngs=nnx.Rngs(0))
    images = random_images(8, (5, 32, 32, 1))
    labels = jnp.array([1, 2, 3, 4, 5])
    outputs = reference_lenet5(model, images)
    metrics = eval_step(model, images, labels)
    np.testing.assert_allclose(metrics["loss"], mse_pm1_loss(outputs, labels), rtol=1e-5)
    np.testing.assert_allclose(metrics["accuracy"], np.mean(np.argmax(outputs, 1) == np.asarray(labels)))


# The original course (ORIGINAL_COURSE.md, "LeNet-5 on MNIST"): 28x28 digits padded by 2 to 32x32 and
# scaled to [0, 1]; 61,706 parameters; the tanh model trained with MSE against +1/-1 targets (+1 for the
# true digit); the ReLU variant with a softmax output and the NLL loss.
ORIGINAL = dict(dataset="mnist", padding=2, parameters=61_706)


def original_loss(name, outputs, labels):
    """The original's loss in float64: MSE against +1/-1 targets, or the NLL of log-probabilities."""
    outputs = np.asarray(outputs, np.float64)
    if name == "lenet5":
        targets = np.where(np.arange(outputs.shape[1]) == np.asarray(labels)[:, None], 1.0, -1.0)
        return np.mean((outputs - targets) ** 2)
    return -np.mean(outputs[np.arange(len(outputs)), labels])


@pytest.mark.parametrize("name", ["lenet5", "lenet5_relu"])
def test_recipes_train_the_original_courses_models_with_its_losses(name):
    """Each recipe pads and scales MNIST as the original did, builds a model of the original's size,
    and both its steps compute the original's loss of that model's outputs (the train step's loss is
    that of the batch before its update)."""
    recipe = RECIPES[name]
    assert recipe.dataset == ORIGINAL["dataset"]
    height, width, channels, classes = data.IMAGE_DATASETS[recipe.dataset]
    images = np.random.default_rng(9).integers(0, 256, (6, height, width, channels), dtype=np.uint8)
    prepared = jax.jit(recipe.prepare)(jnp.asarray(images))
    pad = ORIGINAL["padding"]
    np.testing.assert_allclose(prepared, np.pad(images / 255, ((0, 0), (pad, pad), (pad, pad), (0, 0))), atol=1e-6)
    model = recipe.model(nnx.Rngs(0))
    assert parameter_count(model) == ORIGINAL["parameters"]
    labels = jnp.array([0, 3, 9, 3, 1, 7])
    outputs = model(prepared)
    assert outputs.shape == (6, len(classes))
    if name == "lenet5":
        assert np.all(np.abs(outputs) < 1)  # a tanh output, as the +1/-1 targets need
    else:
        np.testing.assert_allclose(jax.nn.logsumexp(outputs, axis=1), 0.0, atol=1e-5)  # log-probabilities
    expected = original_loss(name, outputs, labels)
    np.testing.assert_allclose(recipe.eval_step(model, prepared, labels)["loss"], expected, rtol=1e-5)
    optimizer = nnx.Optimizer(model, recipe.optimizer(recipe.learning_rate), wrt=nnx.Param)
    np.testing.assert_allclose(recipe.train_step(model, optimizer, prepared, labels)["loss"], expected, rtol=1e-5)
    assert original_loss(name, model(prepared), labels) < expected  # and the step lowered it
