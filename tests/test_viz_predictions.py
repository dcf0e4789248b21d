"""course.viz_predictions: class confidences, predictions over a test set, the confusion matrix."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from course import data, train, viz_cli, viz_predictions

pytest_plugins = ["tests.viz_runs"]  # the fixture `runs`: trained checkpoints


def test_class_confidences():
    outputs = jax.random.normal(jax.random.key(3), (4, 10))
    softmax = np.exp(outputs) / np.exp(outputs).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(viz_predictions.class_confidences(outputs, "logits"), softmax, rtol=1e-5)
    np.testing.assert_allclose(viz_predictions.class_confidences(jax.nn.log_softmax(outputs), "log_probs"), softmax, rtol=1e-5)
    np.testing.assert_allclose(viz_predictions.class_confidences(jnp.array([[-1.0, 0.0, 1.0]]), "tanh"), [[0, 0.5, 1]])


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=1, max_size=60))
def test_confusion_matrix_counts_every_pair(pairs):
    labels, predictions = map(np.array, zip(*pairs))
    matrix = viz_predictions.confusion_matrix(labels, predictions, 5)
    assert matrix.sum() == len(pairs)
    for true, predicted in set(pairs):
        assert matrix[true, predicted] == pairs.count((true, predicted))
    accuracy = viz_predictions.per_class_accuracy(matrix)
    for true in range(5):
        chosen = labels == true
        if chosen.any():
            assert accuracy[true] == pytest.approx(np.mean(predictions[chosen] == true))
        else:
            assert np.isnan(accuracy[true])


def test_confusion_matrix_of_a_checkpoint_matches_its_test_accuracy(runs):
    model, recipe, settings_ = viz_cli.load_checkpoint(runs / "simple_cnn")
    images, labels = data.load("shapes_rgb", "test")
    outputs, predictions = viz_predictions.predict(model, recipe.prepare, images)
    model.eval()
    np.testing.assert_allclose(outputs[:8], model(recipe.prepare(jnp.asarray(images[:8]))), rtol=1e-4, atol=1e-5)
    matrix = viz_predictions.confusion_matrix(labels, predictions, 10)
    assert matrix.sum() == len(labels) == 1000
    accuracy = train.evaluate(recipe, model, images, labels)["accuracy"]
    assert np.trace(matrix) / matrix.sum() == pytest.approx(accuracy, abs=1e-6)
    info = json.loads((runs / "simple_cnn/checkpoint/best/info.json").read_text())
    assert np.trace(matrix) / matrix.sum() == pytest.approx(info["history"][-1]["test_accuracy"], abs=1e-6)
    per_class = viz_predictions.per_class_accuracy(matrix)
    for label in range(10):
        assert per_class[label] == pytest.approx(np.mean(predictions[labels == label] == label))
