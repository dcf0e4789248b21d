"""Tests of week 1: each function against numpy in float64, jax.grad or optax, on fresh random inputs, and
the diabetes experiment on the real table against the original course's accuracy."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from solutions import week1_regression as week1


def random_regression(seed, num_examples=50, num_features=4):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(num_examples, num_features)).astype(np.float32)
    weights = rng.normal(size=num_features).astype(np.float32)
    bias = np.float32(rng.normal())
    return features, weights, bias, rng


def sigmoid64(x):
    return 0.5 * (1.0 + np.tanh(0.5 * np.asarray(x, np.float64)))


def test_linear_predict_and_mse_match_numpy():
    features, weights, bias, rng = random_regression(0)
    targets = rng.normal(size=len(features)).astype(np.float32)
    predictions = week1.linear_predict(jnp.asarray(weights), jnp.asarray(bias), jnp.asarray(features))
    expected = features.astype(np.float64) @ weights + bias
    np.testing.assert_allclose(predictions, expected, rtol=1e-5, atol=1e-5)
    loss = week1.mse_loss(predictions, jnp.asarray(targets))
    np.testing.assert_allclose(loss, np.mean((expected - targets) ** 2), rtol=1e-5)


def test_mse_loss_by_hand():
    assert float(week1.mse_loss(jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 0.0, 6.0]))) == pytest.approx(13 / 3)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_linear_closed_form_recovers_exact_linear_data(seed):
    features, weights, bias, _ = random_regression(seed)
    targets = features @ weights + bias
    fitted_weights, fitted_bias = week1.fit_linear_closed_form(jnp.asarray(features), jnp.asarray(targets))
    assert fitted_weights.shape == weights.shape and fitted_bias.shape == ()
    np.testing.assert_allclose(fitted_weights, weights, atol=1e-4)
    np.testing.assert_allclose(fitted_bias, bias, atol=1e-4)


def test_fit_linear_closed_form_matches_numpy_least_squares_on_noisy_data():
    features, weights, bias, rng = random_regression(3, num_examples=80)
    targets = (features @ weights + bias + rng.normal(size=80)).astype(np.float32)
    augmented = np.hstack([features, np.ones((80, 1))]).astype(np.float64)
    expected, *_ = np.linalg.lstsq(augmented, targets.astype(np.float64), rcond=None)
    fitted_weights, fitted_bias = week1.fit_linear_closed_form(jnp.asarray(features), jnp.asarray(targets))
    np.testing.assert_allclose(fitted_weights, expected[:-1], atol=1e-4)
    np.testing.assert_allclose(fitted_bias, expected[-1], atol=1e-4)


@pytest.mark.parametrize("seed", [0, 1])
def test_gradient_descent_step_matches_float64_gradient(seed):
    features, _, _, rng = random_regression(seed)
    targets = rng.normal(size=len(features)).astype(np.float32)
    weights = rng.normal(size=features.shape[1]).astype(np.float32)
    bias = np.float32(rng.normal())
    learning_rate = 0.1

    residual = features.astype(np.float64) @ weights + bias - targets
    expected_weights = weights - learning_rate * 2.0 * features.T.astype(np.float64) @ residual / len(features)
    expected_bias = bias - learning_rate * 2.0 * residual.mean()

    new_weights, new_bias = week1.gradient_descent_step(
        (jnp.asarray(weights), jnp.asarray(bias)), jnp.asarray(features), jnp.asarray(targets), learning_rate
    )
    np.testing.assert_allclose(new_weights, expected_weights, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(new_bias, expected_bias, rtol=1e-5, atol=1e-5)


def test_gradient_descent_steps_converge_to_closed_form():
    features, weights, bias, _ = random_regression(4)
    targets = jnp.asarray(features @ weights + bias)
    params = (jnp.zeros(features.shape[1]), jnp.zeros(()))
    step = jax.jit(week1.gradient_descent_step)
    for _ in range(300):
        params = step(params, jnp.asarray(features), targets, 0.1)
    np.testing.assert_allclose(params[0], weights, atol=1e-3)
    np.testing.assert_allclose(params[1], bias, atol=1e-3)


@settings(max_examples=50, deadline=None)
@given(hnp.arrays(np.float32, (16,), elements=st.floats(-1000, 1000, width=32)))
def test_sigmoid_matches_float64_reference(x):
    result = np.asarray(week1.sigmoid(jnp.asarray(x)))
    assert np.all(np.isfinite(result))
    np.testing.assert_allclose(result, sigmoid64(x), rtol=1e-6, atol=1e-7)


def test_sigmoid_extreme_inputs_and_gradient():
    x = jnp.array([-1000.0, -100.0, -20.0, 0.0, 20.0, 100.0, 1000.0])
    result = week1.sigmoid(x)
    assert np.all(np.isfinite(result))
    np.testing.assert_allclose(result, sigmoid64(x), rtol=1e-6, atol=1e-30)
    assert float(result[0]) == 0.0 and float(result[-1]) == 1.0 and float(result[3]) == 0.5
    gradient = jax.vmap(jax.grad(week1.sigmoid))(x)
    assert np.all(np.isfinite(gradient))
    np.testing.assert_allclose(gradient, sigmoid64(x) * (1 - sigmoid64(x)), rtol=1e-5, atol=1e-30)


def test_logistic_loss_matches_float64_binary_cross_entropy():
    rng = np.random.default_rng(5)
    logits = rng.normal(scale=4.0, size=64).astype(np.float32)
    labels = rng.integers(0, 2, size=64)
    probabilities = sigmoid64(logits)
    expected = -np.mean(labels * np.log(probabilities) + (1 - labels) * np.log(1 - probabilities))
    np.testing.assert_allclose(week1.logistic_loss(jnp.asarray(logits), jnp.asarray(labels)), expected, rtol=1e-5)


@settings(max_examples=30, deadline=None)
@given(
    hnp.arrays(np.float32, (12,), elements=st.floats(-1000, 1000, width=32)),
    hnp.arrays(np.int32, (12,), elements=st.integers(0, 1)),
)
def test_logistic_loss_matches_optax_for_any_logits(logits, labels):
    loss = week1.logistic_loss(jnp.asarray(logits), jnp.asarray(labels))
    expected = optax.sigmoid_binary_cross_entropy(jnp.asarray(logits), jnp.asarray(labels, jnp.float32)).mean()
    assert np.isfinite(float(loss))
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)


def test_logistic_loss_gradient_is_finite_at_extreme_logits():
    logits = jnp.array([-1000.0, 1000.0, -1000.0, 1000.0])
    labels = jnp.array([1, 0, 0, 1])
    gradient = jax.grad(week1.logistic_loss)(logits, labels)
    # d/dx of the mean BCE is (sigmoid(x) - y) / N.
    np.testing.assert_allclose(gradient, np.array([-1.0, 1.0, 0.0, 0.0]) / 4, atol=1e-7)


def test_logistic_predict_thresholds_at_half():
    weights, bias = jnp.array([1.0, -1.0]), jnp.array(0.5)
    features = jnp.array([[0.0, 0.0], [0.0, 1.0], [2.0, 0.0], [0.0, 0.5]])
    predictions = week1.logistic_predict(weights, bias, features)
    assert predictions.dtype == jnp.int32
    np.testing.assert_array_equal(predictions, [1, 0, 1, 0])  # logit 0 gives probability 0.5: predicted 0


def linearly_separable_labels(seed):
    features, weights, _, rng = random_regression(seed, num_examples=100)
    labels = (features @ weights + 0.3 * rng.normal(size=100) > 0).astype(np.int32)
    return jnp.asarray(features), jnp.asarray(labels)


def test_train_logistic_first_step_matches_hand_gradient():
    features, labels = linearly_separable_labels(6)
    weights, bias = week1.train_logistic(features, labels, learning_rate=0.3, steps=1)
    # From zero weights every probability is 1/2, so the gradient is X^T (1/2 - y) / N.
    residual = 0.5 - np.asarray(labels, np.float64)
    np.testing.assert_allclose(weights, -0.3 * np.asarray(features, np.float64).T @ residual / 100, atol=1e-6)
    np.testing.assert_allclose(bias, -0.3 * residual.mean(), atol=1e-6)


def test_train_logistic_lowers_loss_and_fits_separable_data():
    features, labels = linearly_separable_labels(7)
    weights, bias = week1.train_logistic(features, labels, learning_rate=0.5, steps=200)
    loss = week1.logistic_loss(week1.linear_predict(weights, bias, features), labels)
    assert float(loss) < 0.5 * np.log(2.0)
    assert float(jnp.mean(week1.logistic_predict(weights, bias, features) == labels)) > 0.85


def test_standardize_uses_training_statistics_only():
    rng = np.random.default_rng(8)
    train = rng.normal(loc=3.0, scale=2.0, size=(40, 3)).astype(np.float32)
    other = rng.normal(loc=-5.0, scale=7.0, size=(10, 3)).astype(np.float32)
    train_standardized, other_standardized = week1.standardize(jnp.asarray(train), jnp.asarray(other))
    mean, std = train.astype(np.float64).mean(axis=0), train.astype(np.float64).std(axis=0)
    np.testing.assert_allclose(train_standardized, (train - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(other_standardized, (other - mean) / std, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.mean(train_standardized, axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(np.std(train_standardized, axis=0), 1.0, atol=1e-5)
    # The held-out rows do not influence the training rows' transform.
    alone = week1.standardize(jnp.asarray(train))
    np.testing.assert_allclose(alone, train_standardized, atol=0)


def test_standardize_centres_a_constant_column_without_dividing_by_zero():
    train = jnp.array([[1.0, 5.0], [3.0, 5.0], [5.0, 5.0]])
    train_standardized, other_standardized = week1.standardize(train, jnp.array([[3.0, 6.0]]))
    assert np.all(np.isfinite(train_standardized)) and np.all(np.isfinite(other_standardized))
    np.testing.assert_allclose(train_standardized[:, 1], 0.0)
    np.testing.assert_allclose(other_standardized, [[0.0, 1.0]], atol=1e-6)


def test_diabetes_experiment_beats_the_original(real_data_dir):
    result = week1.diabetes_experiment(real_data_dir)
    assert result["test_accuracy"] >= 0.75  # the original reached 68.18% (ORIGINAL_COURSE.md, week 1)
    assert 0.7 <= result["train_accuracy"] <= 1.0


def test_logistic_loss_gradient_at_zero_logits_is_sigmoid_minus_label():
    # Training starts from zero weights, where every logit is exactly 0.
    labels = jnp.array([0, 1, 1, 0, 1])
    gradient = jax.grad(week1.logistic_loss)(jnp.zeros(5), labels)
    np.testing.assert_allclose(gradient, (0.5 - np.asarray(labels)) / 5, atol=1e-7)
