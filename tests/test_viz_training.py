"""course.viz_training: the smoothed training curves and the dashboard, drawn and written every N steps."""

import json

import jax.numpy as jnp
import numpy as np
import pytest

from course import data, viz, viz_cli, viz_training
from solutions.week5_lenet import LeNet5
from tests.viz_helpers import assert_size, random_model

pytest_plugins = ["tests.viz_runs"]  # the fixture `runs`: trained checkpoints


def test_smoothed_and_running_average():
    values = [4.0, 0.0, 2.0]
    np.testing.assert_allclose(viz_training.smoothed(values, weight=0.5), [4.0, 2.0, 2.0])
    np.testing.assert_allclose(viz_training.running_average(values), [4.0, 2.0, 2.0])
    np.testing.assert_allclose(viz_training.running_average([1.0, 3.0, 8.0]), [1.0, 2.0, 4.0])


def test_centered_smoothing_does_not_lag_a_trend():
    """On a ramp the plain moving average trails by weight / (1 - weight) steps; the centered one
    (forwards, then backwards) follows the ramp away from its ends; on noise both average it out."""
    ramp = np.arange(200.0)
    interior = slice(60, 140)
    np.testing.assert_allclose(ramp[interior] - viz_training.smoothed(ramp, 0.9)[interior], 9.0, atol=0.05)
    np.testing.assert_allclose(viz_training.smoothed(ramp, 0.9, centered=True)[interior], ramp[interior], atol=0.05)
    np.testing.assert_allclose(viz_training.smoothed([4.0, 0.0, 2.0], 0.5, centered=True), [3.0, 2.0, 2.0])
    noise = np.random.default_rng(0).normal(size=5000)
    assert np.std(viz_training.smoothed(noise, 0.9, centered=True)[100:-100]) < 0.4 * np.std(noise)


def test_dashboard_writer_records_steps_and_writes_every_n(runs, tmp_path):
    model, recipe, _ = viz_cli.load_checkpoint(runs / "lenet5")
    images, labels = data.load("shapes_gray", "test")
    inputs, batch_labels = recipe.prepare(jnp.asarray(images[:16])), jnp.asarray(labels[:16])
    writer = viz_training.DashboardWriter(every=2, out=tmp_path, class_names=data.class_names("shapes_gray"))
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
        viz_training.plot_dashboard([1.0], [0.5], model, jnp.zeros((2, 32, 32, 1)), layers=["f7"])
