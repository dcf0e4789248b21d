"""course.train and course.steps: the steps, the loop (build, epochs, evaluation, fit), its determinism,
and the validation split that chooses the best checkpoint."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from course import batching, runs, steps, train
from course.layers import max_pool
from course.recipe import Recipe
from solutions.week4_simple_cnn import shuffled_batches


class TinyCNN(nnx.Module):
    """A small CNN with dropout, for fast tests of the engine on `shapes_gray`."""

    def __init__(self, rngs: nnx.Rngs):
        self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.dropout = nnx.Dropout(0.3, rngs=rngs)
        self.linear = nnx.Linear(4 * 14 * 14, 10, rngs=rngs)

    def __call__(self, images):
        features = max_pool(nnx.relu(self.conv(images)), 2, 2)
        return self.linear(self.dropout(features.reshape(features.shape[0], -1)))


def tiny_recipe(**overrides) -> Recipe:
    settings = dict(model=TinyCNN, train_step=steps.make_train_step(steps.softmax_cross_entropy),
                    eval_step=steps.make_eval_step(steps.softmax_cross_entropy), dataset="shapes_gray",
                    datasets=("shapes_gray",), epochs=3, batch_size=50, learning_rate=3e-3,
                    optimizer=optax.adam, schedule="cosine", validation_fraction=0.2)
    settings.update(overrides)
    return Recipe(**settings)


FIT = dict(max_train_examples=1000, progress=False)
MEASURED = ("train_loss", "train_accuracy", "validation_loss", "validation_accuracy", "test_loss", "test_accuracy")


def measured(history):
    return [{name: record[name] for name in MEASURED} for record in history]


def test_train_step_matches_a_hand_written_sgd_step():
    model = TinyCNN(nnx.Rngs(0))
    model.eval()  # no dropout: the step is a pure function of the parameters
    images = jax.random.normal(jax.random.key(1), (8, 28, 28, 1))
    labels = jnp.arange(8) % 10
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)

    def loss_of(params):
        return steps.softmax_cross_entropy(nnx.merge(graphdef, params, rest)(images), labels)

    expected_loss, grads = jax.value_and_grad(loss_of)(params)
    expected = jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
    optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    metrics = steps.make_train_step(steps.softmax_cross_entropy)(model, optimizer, images, labels)
    assert float(metrics["loss"]) == pytest.approx(float(expected_loss), rel=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), nnx.state(model, nnx.Param), expected)


def test_accuracy_and_cross_entropy_against_references():
    logits = jax.random.normal(jax.random.key(2), (16, 10))
    labels = jax.random.randint(jax.random.key(3), (16,), 0, 10)
    assert float(steps.accuracy(logits, labels)) == pytest.approx(np.mean(np.argmax(logits, 1) == labels))
    log_probs = np.asarray(logits, np.float64) - np.log(np.exp(np.asarray(logits, np.float64)).sum(1, keepdims=True))
    expected = -log_probs[np.arange(16), labels].mean()
    assert float(steps.softmax_cross_entropy(logits, labels)) == pytest.approx(expected, rel=1e-5)


def test_fit_learns_and_writes_its_outputs(tmp_path):
    history = train.fit(tiny_recipe(), out_dir=tmp_path, **FIT)
    assert [record["epoch"] for record in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    assert history[-1]["test_accuracy"] > 0.5
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["history"] == history
    for name in ("epoch_seconds", "images_per_second", "test_loss", "validation_accuracy"):
        assert name in written["history"][0]
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    best = json.loads((tmp_path / "checkpoint" / "best" / "info.json").read_text())
    best_epoch = max(history, key=lambda record: record["validation_accuracy"])["epoch"]
    assert best["epoch"] == best_epoch
    assert not list(tmp_path.glob("checkpoint/*.partial"))


def test_fit_is_deterministic_for_a_seed():
    first = train.fit(tiny_recipe(epochs=2), seed=3, **FIT)
    second = train.fit(tiny_recipe(epochs=2), seed=3, **FIT)
    other_seed = train.fit(tiny_recipe(epochs=2), seed=4, **FIT)
    assert measured(first) == measured(second)
    assert measured(first) != measured(other_seed)


def jitter(key, images, training):
    return images + 0.01 * jax.random.normal(key, images.shape) if training else images


def test_augmentation_is_off_at_evaluation_and_batches_follow_the_recipe():
    shifted = tiny_recipe(epochs=1, augment=lambda key, images, training: images + 5.0 if training else images)
    model, optimizer = train.build(shifted, runs.RunSettings("tiny", "shapes_gray", 1, 50, 3e-3, 0), 10)
    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28, 1), dtype=np.uint8)
    labels = np.arange(20, dtype=np.int32) % 10
    np.testing.assert_allclose(train.evaluate(shifted, model, images, labels)["loss"],
                               train.evaluate(tiny_recipe(), model, images, labels)["loss"], rtol=1e-6)
    settings = runs.RunSettings("tiny", "shapes_gray", 1, 50, 3e-3, seed=7)
    batches, step_keys = train.epoch_batches(tiny_recipe(batches=shuffled_batches), 230, settings, epoch=2)
    again, _ = train.epoch_batches(tiny_recipe(batches=shuffled_batches), 230, settings, epoch=2)
    assert len(batches) == len(step_keys) == 4 and all(len(batch) == 50 for batch in batches)
    assert len(set(np.concatenate(batches).tolist())) == 200 and all(np.array_equal(a, b) for a, b in zip(batches, again))


def numbers(array):
    """`array`, or its key data where it holds PRNG keys (the dropout's `nnx.Rngs`)."""
    return jax.random.key_data(array) if jax.dtypes.issubdtype(array.dtype, jax.dtypes.prng_key) else array


class RecordSteps:
    """A callback that keeps each step's number and loss."""

    def __init__(self):
        self.steps, self.losses = [], []

    def on_step(self, step, metrics, model, inputs, labels):
        self.steps.append(step)
        self.losses.append(float(metrics["loss"]))


def test_train_epoch_runs_the_same_steps_as_a_plain_loop(monkeypatch):
    """The chunked epoch (`steps_program`: several steps per call, the last chunk padded) and the
    one-step-per-call path taken with callbacks both equal `train_step` called once per batch."""
    recipe = tiny_recipe(augment=jitter, batches=shuffled_batches)
    settings = runs.RunSettings("tiny", "shapes_gray", 2, 25, 3e-3, seed=5)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (210, 28, 28, 1), dtype=np.uint8)  # 8 steps of 25 a epoch
    labels = rng.integers(0, 10, 210).astype(np.int32)
    monkeypatch.setattr(train, "STEPS_PER_CALL", 3)  # chunks of 3, 3 and 2 (padded to 3) steps

    model, optimizer = train.build(recipe, settings, steps_per_epoch=8)
    model.train()
    plain_losses = []
    for epoch in range(2):
        batches, step_keys = train.epoch_batches(recipe, len(labels), settings, epoch)
        for indices, key in zip(batches, step_keys):
            inputs = train.training_inputs(recipe, jnp.asarray(images[indices]), key)
            metrics = recipe.train_step(model, optimizer, inputs, jnp.asarray(labels[indices]))
            plain_losses.append(float(metrics["loss"]))
    expected = nnx.state((model, optimizer))

    for callbacks in ((), (RecordSteps(),)):
        model, optimizer = train.build(recipe, settings, steps_per_epoch=8)
        records = [train.train_epoch(recipe, model, optimizer, images, labels, settings, epoch, progress=False,
                                     callbacks=callbacks) for epoch in range(2)]
        jax.tree.map(lambda a, b: np.testing.assert_allclose(numbers(a), numbers(b), rtol=2e-5, atol=1e-6),
                     nnx.state((model, optimizer)), expected)
        np.testing.assert_allclose([record["train_loss"] for record in records],
                                   [np.mean(plain_losses[:8]), np.mean(plain_losses[8:])], rtol=1e-5)
        if callbacks:
            assert callbacks[0].steps == list(range(16))
            np.testing.assert_allclose(callbacks[0].losses, plain_losses, rtol=1e-5)


def test_settings_errors_name_the_problem():
    with pytest.raises(runs.SettingsError, match="does not train on 'mnist'.*shapes_gray"):
        train.fit(tiny_recipe(), dataset="mnist", **FIT)
    with pytest.raises(runs.SettingsError, match="fewer than one batch"):
        train.fit(tiny_recipe(), batch_size=5000, **FIT)


def test_schedules():
    recipe = tiny_recipe(schedule="warmup_cosine")
    schedule = train.learning_rate_schedule(recipe, 1.0, total_steps=100, steps_per_epoch=10)
    assert float(schedule(0)) == 0.0 and float(schedule(10)) == pytest.approx(1.0)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-6)
    assert train.learning_rate_schedule(tiny_recipe(schedule="constant"), 0.3, 100, 10) == 0.3


# ---------------------------------------------------------------------------------------------
# The validation split chooses the best checkpoint (issue 26)


def test_every_recipe_holds_out_a_validation_split_with_a_fixed_seed(monkeypatch):
    default = tiny_recipe()
    assert dataclasses.replace(default, validation_fraction=Recipe.validation_fraction).validation_fraction == 0.1
    with pytest.raises(ValueError, match="never on the test split"):
        tiny_recipe(validation_fraction=0.0)
    kept, held_out = batching.validation_split(1000, 0.1)
    assert len(held_out) == 100 and not set(kept) & set(held_out) and len(kept) + len(held_out) == 1000
    assert len(batching.validation_split(5, 0.1)[1]) == 1  # never empty
    validated = {}

    def record_validation(recipe, model, images, labels, mesh=None, batch_size=500):
        if len(labels) != 37:  # not the test split
            validated[seed] = images
        return {"loss": 1.0, "accuracy": 0.5}

    monkeypatch.setattr(train, "evaluate", record_validation)
    for seed in (1, 2):  # runs of any seed choose their best checkpoint on the same images
        settings = runs.RunSettings("tiny", "shapes_gray", 1, 30, 3e-3, seed=seed)
        train.train_on_arrays(tiny_recipe(), settings, small_arrays(100, 0), small_arrays(37, 1), progress=False)
    np.testing.assert_array_equal(validated[1], validated[2])
    np.testing.assert_array_equal(validated[1], small_arrays(100, 0)[0][batching.validation_split(100, 0.2)[1]])


def small_arrays(count: int, seed: int):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (count, 28, 28, 1), dtype=np.uint8), rng.integers(0, 10, count).astype(np.int32)


def test_the_best_checkpoint_is_chosen_on_validation_never_on_test(tmp_path, monkeypatch, capsys):
    """Validation accuracy rises and test accuracy falls epoch after epoch: the best checkpoint is the
    last epoch's, which the test split would never have chosen; every report says what test is for."""
    train_data, test_data = small_arrays(110, 0), small_arrays(37, 1)  # 88 train, 22 validation, 37 test
    evaluated = []

    def scripted_evaluate(recipe, model, images, labels, mesh=None, batch_size=500):
        split = "test" if len(labels) == 37 else "validation"
        evaluated.append(split)
        epoch = evaluated.count(split)
        return {"loss": 1.0, "accuracy": 0.25 * epoch if split == "validation" else 1.0 - 0.25 * epoch}

    monkeypatch.setattr(train, "evaluate", scripted_evaluate)
    settings = runs.RunSettings("tiny", "shapes_gray", 3, 33, 3e-3, seed=0)
    _, history = train.train_on_arrays(tiny_recipe(), settings, train_data, test_data, out_dir=tmp_path)
    assert evaluated == ["validation", "test"] * 3
    best = json.loads((tmp_path / "checkpoint" / "best" / "info.json").read_text())
    assert best["epoch"] == 3 and runs.best_record(history)["epoch"] == 3
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["best_checkpoint"] == {"chosen_on": "validation_accuracy", "epoch": 3, "validation_accuracy": 0.75}
    assert metrics["validation"]["examples"] == 22 and "not used for selection" in metrics["test"]
    line = capsys.readouterr().out.splitlines()[-1]
    assert "val loss 1.0000, acc 75.00%" in line and "test (not used for selection) loss 1.0000, acc 25.00%" in line
