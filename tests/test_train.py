"""course.train and course.steps: the loop, determinism, checkpoints and exact resume, data parallelism."""

import json
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from course import steps, train
from tests.conftest import run_on_cpu_devices, run_on_eight_cpu_devices
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
    model, optimizer = train.build(shifted, train.Settings("tiny", "shapes_gray", 1, 50, 3e-3, 0), 10)
    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28, 1), dtype=np.uint8)
    labels = np.arange(20, dtype=np.int32) % 10
    np.testing.assert_allclose(train.evaluate(shifted, model, images, labels)["loss"],
                               train.evaluate(tiny_recipe(), model, images, labels)["loss"], rtol=1e-6)
    settings = train.Settings("tiny", "shapes_gray", 1, 50, 3e-3, seed=7)
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
    settings = train.Settings("tiny", "shapes_gray", 2, 25, 3e-3, seed=5)
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


def test_resume_reproduces_the_uninterrupted_run_exactly(tmp_path, monkeypatch):
    recipe = tiny_recipe(augment=jitter, batches=shuffled_batches)
    uninterrupted = train.fit(recipe, out_dir=tmp_path / "whole", **FIT)

    save = train.save_checkpoint

    def save_then_die_after_epoch_2(path, model, optimizer, info):
        save(path, model, optimizer, info)
        if path.name == "last" and info["epoch"] == 2:
            raise KeyboardInterrupt  # the run is killed right after its second epoch

    monkeypatch.setattr(train, "save_checkpoint", save_then_die_after_epoch_2)
    with pytest.raises(KeyboardInterrupt):
        train.fit(recipe, out_dir=tmp_path / "killed", **FIT)
    monkeypatch.setattr(train, "save_checkpoint", save)
    resumed = train.fit(recipe, out_dir=tmp_path / "killed", resume=True, **FIT)
    assert measured(resumed) == measured(uninterrupted)
    assert json.loads((tmp_path / "killed" / "metrics.json").read_text())["history"] == resumed


def test_resume_refuses_other_settings(tmp_path):
    train.fit(tiny_recipe(epochs=1), out_dir=tmp_path, **FIT)
    with pytest.raises(train.SettingsError, match="Cannot resume"):
        train.fit(tiny_recipe(epochs=1), out_dir=tmp_path, resume=True, learning_rate=0.5, **FIT)


def test_restore_checkpoint_gives_the_saved_model(tmp_path):
    train.fit(tiny_recipe(epochs=1), out_dir=tmp_path, **FIT)
    model = TinyCNN(nnx.Rngs(99))
    info = train.restore_checkpoint(tmp_path / "checkpoint" / "last", model)
    assert info["epoch"] == 1
    model.eval()
    images = jax.random.normal(jax.random.key(0), (4, 28, 28, 1))
    again = TinyCNN(nnx.Rngs(5))
    train.restore_checkpoint(tmp_path / "checkpoint" / "last", again)
    again.eval()
    np.testing.assert_array_equal(model(images), again(images))
    with pytest.raises(FileNotFoundError, match="not a checkpoint written by `course train`"):
        train.restore_checkpoint(tmp_path, model)


def test_settings_errors_name_the_problem():
    with pytest.raises(train.SettingsError, match="does not train on 'mnist'.*shapes_gray"):
        train.fit(tiny_recipe(), dataset="mnist", **FIT)
    with pytest.raises(train.SettingsError, match="fewer than one batch"):
        train.fit(tiny_recipe(), batch_size=5000, **FIT)


def test_schedules():
    recipe = tiny_recipe(schedule="warmup_cosine")
    schedule = train.learning_rate_schedule(recipe, 1.0, total_steps=100, steps_per_epoch=10)
    assert float(schedule(0)) == 0.0 and float(schedule(10)) == pytest.approx(1.0)
    assert float(schedule(100)) == pytest.approx(0.0, abs=1e-6)
    assert train.learning_rate_schedule(tiny_recipe(schedule="constant"), 0.3, 100, 10) == 0.3


EIGHT_DEVICES = textwrap.dedent("""
    import jax, numpy as np, optax
    from flax import nnx
    from course import steps, train
    from tests.test_train import TinyCNN
    assert jax.local_device_count() == 8, jax.devices()
    images = np.random.default_rng(0).normal(size=(32, 28, 28, 1)).astype(np.float32)
    labels = (np.arange(32) % 10).astype(np.int32)
    train_step = steps.make_train_step(steps.softmax_cross_entropy)
    results = []
    for mesh in (None, train.data_mesh(jax.local_devices())):
        model = TinyCNN(nnx.Rngs(0))
        optimizer = nnx.Optimizer(model, optax.sgd(0.1, momentum=0.9), wrt=nnx.Param)
        nnx.update((model, optimizer), train.replicate(nnx.state((model, optimizer)), mesh))
        batch_images, batch_labels = train.shard_batch(images, mesh), train.shard_batch(labels, mesh)
        if mesh is not None:
            assert len(batch_images.sharding.device_set) == 8
        for _ in range(2):
            metrics = train_step(model, optimizer, batch_images, batch_labels)
        results.append((float(metrics["loss"]), jax.device_get(nnx.state(model, nnx.Param))))
    (single_loss, single), (sharded_loss, sharded) = results
    np.testing.assert_allclose(sharded_loss, single_loss, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), sharded, single)
    from tests.test_train import tiny_recipe
    recipe, settings = tiny_recipe(), train.Settings("tiny", "shapes_gray", 1, 16, 3e-3, 0)
    epochs = []
    for mesh in (None, train.data_mesh(jax.local_devices())):  # an epoch of chunked steps, split over 8
        model, optimizer = train.build(recipe, settings, steps_per_epoch=4)
        nnx.update((model, optimizer), train.replicate(nnx.state((model, optimizer)), mesh))
        uint8_images = (np.arange(64 * 28 * 28) % 256).astype(np.uint8).reshape(64, 28, 28, 1)
        record = train.train_epoch(recipe, model, optimizer, uint8_images, (np.arange(64) % 10).astype(np.int32),
                                   settings, 0, mesh=mesh, progress=False)
        epochs.append((record["train_loss"], jax.device_get(nnx.state(model, nnx.Param))))
    np.testing.assert_allclose(epochs[1][0], epochs[0][0], rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), epochs[1][1], epochs[0][1])
    print("EIGHT DEVICES MATCH", single_loss)
""")


def test_data_parallel_step_on_eight_devices_matches_one_device():
    assert "EIGHT DEVICES MATCH" in run_on_eight_cpu_devices(EIGHT_DEVICES)


EVERY_MODEL = textwrap.dedent("""
    import jax, numpy as np
    from flax import nnx
    from course import data, registry, train
    devices = jax.local_devices()
    assert train.data_mesh() is None, "host CPU devices are not split over by default"
    for name, recipe in registry.recipes().items():
        height, width, channels, _ = data.IMAGE_DATASETS[recipe.dataset]
        raw = np.random.default_rng(0).integers(0, 256, (16, height, width, channels), dtype=np.uint8)
        images, labels = np.asarray(recipe.prepare(raw)), (np.arange(16) % 10).astype(np.int32)
        settings = train.Settings(name, recipe.dataset, 1, 16, recipe.learning_rate, 0, None)
        results = []
        for mesh in (None, train.data_mesh(devices)):
            model, optimizer = train.build(recipe, settings, steps_per_epoch=10)
            nnx.update((model, optimizer), train.replicate(nnx.state((model, optimizer)), mesh))
            model.train()
            for _ in range(2):
                metrics = recipe.train_step(model, optimizer, train.shard_batch(images, mesh),
                                            train.shard_batch(labels, mesh))
            results.append((float(metrics["loss"]), jax.device_get(nnx.state(model, nnx.Param))))
        (single_loss, single), (split_loss, split) = results
        np.testing.assert_allclose(split_loss, single_loss, rtol=1e-4)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5), split, single)
        print(name, "MATCHES ON", len(devices), "DEVICES", flush=True)
""")


@pytest.mark.parametrize("count", [2, 8])
def test_every_models_train_step_on_several_cpu_devices_matches_one_device(count):
    """No model's step blocks on 2 or 8 host devices, and each equals the one-device step; `course
    train` itself never splits over host CPU devices (`data_mesh()` is None)."""
    output = run_on_cpu_devices(EVERY_MODEL, count, timeout=600)
    for name in ("mlp", "simple_cnn", "lenet5", "lenet5_relu", "alexnet"):
        assert f"{name} MATCHES ON {count} DEVICES" in output, output
