"""Tests of week 2: the perceptron against the original's Python loop, hand backprop against jax.grad
and a float64 per-record loop, softmax and cross-entropy against numpy and optax, the MLP and its train
and eval steps, the MLP recipe against the original course, and the admissions experiment on real data."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from course import data, layers
from solutions import week2_neural_networks as week2

# ---------------------------------------------------------------------------------------------
# Perceptron


def original_perceptron_step(features, labels, weights, bias, learning_rate):
    """The original Udacity `perceptronStep`, a plain Python loop (weights as a (D,) vector)."""
    weights, bias = weights.copy(), np.float32(bias)
    for point, label in zip(features, labels):
        prediction = 1 if point @ weights + bias >= 0 else 0
        if label - prediction == 1:
            weights += point * np.float32(learning_rate)
            bias += np.float32(learning_rate)
        elif label - prediction == -1:
            weights -= point * np.float32(learning_rate)
            bias -= np.float32(learning_rate)
    return weights, bias


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_perceptron_step_equals_the_original_sequential_loop(seed):
    rng = np.random.default_rng(seed)
    features = rng.uniform(-1, 1, size=(60, 2)).astype(np.float32)
    labels = (features @ np.array([1.0, -2.0]) + 0.2 > 0).astype(np.int32)
    weights, bias = rng.normal(size=2).astype(np.float32), np.float32(rng.normal())
    for _ in range(3):  # several passes, each starting from the previous line
        expected = original_perceptron_step(features, labels, weights, bias, 0.1)
        weights, bias = week2.perceptron_step(jnp.asarray(weights), jnp.asarray(bias), jnp.asarray(features),
                                              jnp.asarray(labels), 0.1)
        np.testing.assert_allclose(weights, expected[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(bias, expected[1], rtol=1e-6, atol=1e-6)
        weights, bias = np.asarray(weights), np.float32(bias)


def test_perceptron_step_is_sequential_not_one_batch_update():
    # Both points are misclassified by the starting line, but after the first point's update the
    # second one is classified correctly, so only one update happens.
    features = jnp.array([[1.0, 0.0], [1.0, 0.0]])
    labels = jnp.array([1, 1])
    weights, bias = week2.perceptron_step(jnp.array([-1.0, 0.0]), jnp.array(0.0), features, labels, 1.0)
    np.testing.assert_allclose(weights, [0.0, 0.0])
    np.testing.assert_allclose(bias, 1.0)


def test_perceptron_step_leaves_a_separating_line_unchanged():
    features = jnp.array([[1.0, 1.0], [-1.0, -1.0], [2.0, 0.5]])
    labels = jnp.array([1, 0, 1])
    weights, bias = week2.perceptron_step(jnp.array([1.0, 1.0]), jnp.array(0.0), features, labels, 0.5)
    np.testing.assert_array_equal(weights, [1.0, 1.0])
    assert float(bias) == 0.0


# ---------------------------------------------------------------------------------------------
# Two-layer network


def test_admissions_features_by_hand():
    raw = np.array([[400.0, 3.0, 1.0], [800.0, 4.0, 4.0], [600.0, 2.0, 3.0]], np.float32)
    expected = [[0.5, 0.75, 1, 0, 0, 0], [1.0, 1.0, 0, 0, 0, 1], [0.75, 0.5, 0, 0, 1, 0]]
    np.testing.assert_allclose(week2.admissions_features(raw), expected)


def test_admissions_features_rejects_bad_input():
    with pytest.raises(ValueError, match="gre, gpa, rank"):
        week2.admissions_features(np.zeros((4, 2)))
    with pytest.raises(ValueError, match="rank must be 1, 2, 3 or 4"):
        week2.admissions_features(np.array([[500.0, 3.0, 5.0]]))


def random_two_layer(seed, num_examples=20, num_features=6, num_hidden=3):
    key, features_key, targets_key = jax.random.split(jax.random.key(seed), 3)
    params = week2.init_two_layer(key, num_features, num_hidden)
    params = jax.tree.map(lambda p: 3.0 * p, params)  # larger weights: sigmoids away from their linear part
    features = jax.random.normal(features_key, (num_examples, num_features))
    targets = jax.random.bernoulli(targets_key, 0.5, (num_examples,)).astype(jnp.float32)
    return params, features, targets


def test_init_two_layer_shapes_and_scale():
    params = week2.init_two_layer(jax.random.key(0), 400, 50)
    assert params["hidden_weights"].shape == (400, 50) and params["output_weights"].shape == (50,)
    assert float(jnp.std(params["hidden_weights"])) == pytest.approx(400 ** -0.5, rel=0.05)


def test_two_layer_forward_matches_numpy():
    params, features, _ = random_two_layer(0)
    hidden, output = week2.two_layer_forward(params, features)
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    expected_hidden = sigmoid(np.asarray(features, np.float64) @ np.asarray(params["hidden_weights"], np.float64))
    expected_output = sigmoid(expected_hidden @ np.asarray(params["output_weights"], np.float64))
    assert hidden.shape == (20, 3) and output.shape == (20,)
    np.testing.assert_allclose(hidden, expected_hidden, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(output, expected_output, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_two_layer_backward_equals_jax_grad(seed):
    params, features, targets = random_two_layer(seed)
    by_hand = week2.two_layer_backward(params, features, targets)
    by_jax = jax.grad(week2.two_layer_loss)(params, features, targets)
    assert jax.tree.structure(by_hand) == jax.tree.structure(params)
    for name in params:
        assert by_hand[name].shape == params[name].shape
        np.testing.assert_allclose(by_hand[name], by_jax[name], rtol=1e-4, atol=1e-6)


def test_two_layer_backward_equals_the_original_per_record_loop_in_float64():
    params, features, targets = random_two_layer(4)
    weights_input_hidden = np.asarray(params["hidden_weights"], np.float64)
    weights_hidden_output = np.asarray(params["output_weights"], np.float64)
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    del_w_input_hidden = np.zeros_like(weights_input_hidden)
    del_w_hidden_output = np.zeros_like(weights_hidden_output)
    for x, y in zip(np.asarray(features, np.float64), np.asarray(targets, np.float64)):
        hidden_output = sigmoid(x @ weights_input_hidden)
        output = sigmoid(hidden_output @ weights_hidden_output)
        output_error_term = (y - output) * output * (1 - output)
        hidden_error_term = output_error_term * weights_hidden_output * hidden_output * (1 - hidden_output)
        del_w_hidden_output += output_error_term * hidden_output
        del_w_input_hidden += hidden_error_term * x[:, None]
    grads = week2.two_layer_backward(params, features, targets)
    # The original's del_w / n_records is minus the gradient.
    np.testing.assert_allclose(grads["output_weights"], -del_w_hidden_output / len(features), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(grads["hidden_weights"], -del_w_input_hidden / len(features), rtol=1e-4, atol=1e-7)


def test_train_two_layer_lowers_the_loss():
    params, features, _ = random_two_layer(5, num_examples=64)
    targets = (features[:, 0] + features[:, 1] > 0).astype(jnp.float32)
    trained = week2.train_two_layer(params, features, targets, 2.0, 300)
    before = week2.two_layer_loss(params, features, targets)
    after = week2.two_layer_loss(trained, features, targets)
    assert float(after) < 0.5 * float(before)


# ---------------------------------------------------------------------------------------------
# Softmax, cross-entropy, accuracy


def softmax64(logits, axis=-1):
    logits = np.asarray(logits, np.float64)
    exponentials = np.exp(logits - logits.max(axis=axis, keepdims=True))
    return exponentials / exponentials.sum(axis=axis, keepdims=True)


finite_logits = hnp.arrays(np.float32, (4, 7), elements=st.floats(-80, 80, width=32))


@settings(max_examples=40, deadline=None)
@given(finite_logits, st.sampled_from([0, 1, -1]))
def test_softmax_matches_float64_numpy(logits, axis):
    probabilities = week2.softmax(jnp.asarray(logits), axis=axis)
    np.testing.assert_allclose(probabilities, softmax64(logits, axis), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(np.sum(probabilities, axis=axis), 1.0, rtol=1e-5)


@settings(max_examples=40, deadline=None)
@given(finite_logits, st.floats(-1e3, 1e3, width=32))
def test_softmax_is_invariant_to_shifts(logits, shift):
    shifted = week2.softmax(jnp.asarray(logits) + shift)
    np.testing.assert_allclose(shifted, week2.softmax(jnp.asarray(logits)), atol=1e-4)


def test_softmax_does_not_overflow():
    probabilities = week2.softmax(jnp.array([[1000.0, 0.0, -1000.0], [1e4, 1e4, 1e4]]))
    assert np.all(np.isfinite(probabilities))
    np.testing.assert_allclose(probabilities, [[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]], atol=1e-6)


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(np.float32, (6, 5), elements=st.floats(-1000, 1000, width=32)),
    hnp.arrays(np.int32, (6,), elements=st.integers(0, 4)),
)
def test_cross_entropy_matches_optax(logits, labels):
    loss = week2.cross_entropy(jnp.asarray(logits), jnp.asarray(labels))
    expected = optax.softmax_cross_entropy_with_integer_labels(jnp.asarray(logits), jnp.asarray(labels)).mean()
    assert np.isfinite(float(loss))
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-4)


def test_cross_entropy_matches_float64_numpy_and_its_gradient_is_softmax_minus_one_hot():
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=3.0, size=(16, 10)).astype(np.float32)
    labels = rng.integers(0, 10, size=16).astype(np.int32)
    expected = -np.mean(np.log(softmax64(logits))[np.arange(16), labels])
    np.testing.assert_allclose(week2.cross_entropy(jnp.asarray(logits), jnp.asarray(labels)), expected, rtol=1e-5)
    gradient = jax.grad(week2.cross_entropy)(jnp.asarray(logits), jnp.asarray(labels))
    np.testing.assert_allclose(gradient, (softmax64(logits) - np.eye(10)[labels]) / 16, atol=1e-6)


def test_accuracy_by_hand():
    logits = jnp.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])
    assert float(week2.accuracy(logits, jnp.array([1, 0, 0, 1]))) == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------
# MLP


def test_mlp_output_shape_and_parameter_count():
    model = week2.MLP(rngs=nnx.Rngs(0))
    logits = model(jnp.zeros((3, 28, 28, 1)))
    assert logits.shape == (3, 10)
    num_params = sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert num_params == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10 == 242_762


def test_mlp_layer_sizes_follow_the_constructor():
    model = week2.MLP(in_features=12, hidden=(5,), num_classes=3, rngs=nnx.Rngs(0))
    assert model(jnp.ones((2, 2, 2, 3))).shape == (2, 3)
    assert sum(p.size for p in jax.tree.leaves(nnx.state(model, nnx.Param))) == 12 * 5 + 5 + 5 * 3 + 3


def test_mlp_dropout_is_active_in_train_mode_and_off_in_eval_mode():
    model = week2.MLP(rngs=nnx.Rngs(0))
    images = jax.random.normal(jax.random.key(1), (8, 28, 28, 1))
    model.train()
    first, second = model(images), model(images)
    assert not np.allclose(first, second)
    model.eval()
    evaluated = model(images)
    np.testing.assert_array_equal(evaluated, model(images))
    assert not np.allclose(first, evaluated)


def test_mlp_without_dropout_is_relu_layers_on_the_flattened_image():
    model = week2.MLP(in_features=12, hidden=(5, 4), num_classes=3, dropout_rate=0.0, rngs=nnx.Rngs(2))
    images = jax.random.normal(jax.random.key(3), (2, 2, 2, 3))
    x = np.asarray(images, np.float64).reshape(2, 12)
    for layer in model.hidden_layers:
        x = np.maximum(x @ np.asarray(layer.kernel[...], np.float64) + np.asarray(layer.bias[...], np.float64), 0)
    expected = x @ np.asarray(model.output_layer.kernel[...]) + np.asarray(model.output_layer.bias[...])
    np.testing.assert_allclose(model(images), expected, rtol=1e-5, atol=1e-5)


def test_mlp_is_deterministic_for_a_fixed_seed():
    images = jax.random.normal(jax.random.key(1), (4, 28, 28, 1))
    first, second = week2.MLP(rngs=nnx.Rngs(7)), week2.MLP(rngs=nnx.Rngs(7))
    jax.tree.map(np.testing.assert_array_equal, nnx.state(first, nnx.Param), nnx.state(second, nnx.Param))
    np.testing.assert_array_equal(first(images), second(images))  # train mode: the same dropout masks
    other = week2.MLP(rngs=nnx.Rngs(8))
    assert not np.allclose(nnx.state(first, nnx.Param)["output_layer"]["kernel"][...],
                           nnx.state(other, nnx.Param)["output_layer"]["kernel"][...])


def test_train_step_lowers_the_loss_on_a_small_batch():
    model = week2.MLP(in_features=16, hidden=(32, 16), num_classes=4, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    images = jax.random.normal(jax.random.key(1), (32, 4, 4, 1))
    labels = jax.random.randint(jax.random.key(2), (32,), 0, 4)
    model.eval()
    before = week2.eval_step(model, images, labels)
    np.testing.assert_allclose(before["loss"], week2.cross_entropy(model(images), labels), rtol=1e-6)
    model.train()
    for _ in range(30):
        metrics = week2.train_step(model, optimizer, images, labels)
    assert set(metrics) == {"loss", "accuracy"}
    model.eval()
    after = week2.eval_step(model, images, labels)
    assert float(after["loss"]) < 0.5 * float(before["loss"])
    assert float(after["accuracy"]) > float(before["accuracy"])


# The original course (ORIGINAL_COURSE.md, weeks 2-3): fully connected networks on MNIST, 784-256-128-64-10
# with ReLU, and a Fashion-MNIST classifier with dropout.
ORIGINAL_MLP_KERNELS = [(784, 256), (256, 128), (128, 64), (64, 10)]


def test_mlp_recipe_trains_the_original_courses_mlp_on_standardised_mnist(real_data_dir):
    """The recipe's model is the original's 784-256-128-64-10 MLP with dropout, trained on MNIST (and
    Fashion-MNIST); its `prepare` standardises MNIST: the training pixels come out with mean 0, std 1."""
    recipe = week2.RECIPES["mlp"]
    assert recipe.dataset == "mnist" and "fashion_mnist" in recipe.datasets
    model = nnx.eval_shape(lambda: recipe.model(nnx.Rngs(0)))
    found = [layer for _, layer in layers.sublayers(model)]
    assert [layer.kernel.shape for layer in found if isinstance(layer, nnx.Linear)] == ORIGINAL_MLP_KERNELS
    assert any(isinstance(layer, nnx.Dropout) and 0 < layer.rate < 1 for layer in found)
    images, _ = data.load("mnist", "train", data_dir=real_data_dir)
    prepared = np.asarray(jax.jit(recipe.prepare)(images[:20_000]), np.float64)
    assert prepared.shape == (20_000, 28, 28, 1)
    assert abs(prepared.mean()) < 0.01 and abs(prepared.std() - 1) < 0.01


def test_admissions_experiment_runs(real_data_dir):
    result = week2.admissions_experiment(real_data_dir)
    assert result["test_accuracy"] >= 0.7 and result["train_accuracy"] >= 0.65
