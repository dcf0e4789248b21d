"""course.sharding: a step and an epoch of the loop split over several CPU devices equal them on one."""

import textwrap

import pytest

from tests.conftest import run_on_cpu_devices, run_on_eight_cpu_devices


EIGHT_DEVICES = textwrap.dedent("""
    import jax, numpy as np, optax
    from flax import nnx
    from course import runs, sharding, steps, train
    from tests.test_train import TinyCNN
    assert jax.local_device_count() == 8, jax.devices()
    images = np.random.default_rng(0).normal(size=(32, 28, 28, 1)).astype(np.float32)
    labels = (np.arange(32) % 10).astype(np.int32)
    train_step = steps.make_train_step(steps.softmax_cross_entropy)
    results = []
    for mesh in (None, sharding.data_mesh(jax.local_devices())):
        model = TinyCNN(nnx.Rngs(0))
        optimizer = nnx.Optimizer(model, optax.sgd(0.1, momentum=0.9), wrt=nnx.Param)
        nnx.update((model, optimizer), sharding.replicate(mesh, nnx.state((model, optimizer))))
        batch_images, batch_labels = sharding.shard_batch(mesh, images), sharding.shard_batch(mesh, labels)
        if mesh is not None:
            assert len(batch_images.sharding.device_set) == 8
        for _ in range(2):
            metrics = train_step(model, optimizer, batch_images, batch_labels)
        results.append((float(metrics["loss"]), jax.device_get(nnx.state(model, nnx.Param))))
    (single_loss, single), (sharded_loss, sharded) = results
    np.testing.assert_allclose(sharded_loss, single_loss, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), sharded, single)
    from tests.test_train import tiny_recipe
    recipe, settings = tiny_recipe(), runs.RunSettings("tiny", "shapes_gray", 1, 16, 3e-3, 0)
    epochs = []
    for mesh in (None, sharding.data_mesh(jax.local_devices())):  # an epoch of chunked steps, split over 8
        model, optimizer = train.build(recipe, settings, steps_per_epoch=4)
        nnx.update((model, optimizer), sharding.replicate(mesh, nnx.state((model, optimizer))))
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
    from course import data, registry, runs, sharding, train
    devices = jax.local_devices()
    assert sharding.data_mesh() is None, "host CPU devices are not split over by default"
    for name, recipe in registry.recipes().items():
        height, width, channels, _ = data.IMAGE_DATASETS[recipe.dataset]
        raw = np.random.default_rng(0).integers(0, 256, (16, height, width, channels), dtype=np.uint8)
        images, labels = np.asarray(recipe.prepare(raw)), (np.arange(16) % 10).astype(np.int32)
        settings = runs.RunSettings(name, recipe.dataset, 1, 16, recipe.learning_rate, 0, None)
        results = []
        for mesh in (None, sharding.data_mesh(devices)):
            model, optimizer = train.build(recipe, settings, steps_per_epoch=10)
            nnx.update((model, optimizer), sharding.replicate(mesh, nnx.state((model, optimizer))))
            model.train()
            for _ in range(2):
                metrics = recipe.train_step(model, optimizer, sharding.shard_batch(mesh, images),
                                               sharding.shard_batch(mesh, labels))
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
