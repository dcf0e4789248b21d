"""Tests of week 6: AlexNet's size at 227x227 (shapes only), its forward pass at small sizes, the steps, the
resize and augmentation, the data-parallel step on eight CPU devices, and the recipe against the original course."""

import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from course import data
from solutions.week6_alexnet import (
    RECIPES,
    AlexNet,
    augment,
    eval_step,
    final_map_size,
    prepare,
    resize_227,
    train_step,
)
from solutions.week4_simple_cnn import random_crop_flip
from tests.conftest import run_on_eight_cpu_devices

HIGHEST = jax.lax.Precision.HIGHEST
FULL_SIZE_PARAMETERS = 43_553_542


def random_images(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def parameter_count(model):
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def reference_conv(images, conv, stride, padding):
    outputs = jax.lax.conv_general_dilated(
        images, conv.kernel[...], (stride, stride), [(padding, padding)] * 2,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=HIGHEST,
    )
    return outputs + conv.bias[...]


def reference_pool(images):
    return jax.lax.reduce_window(images, -jnp.inf, jax.lax.max, (1, 3, 3, 1), (1, 2, 2, 1), "VALID")


def reference_dense(x, linear):
    return jnp.dot(x, linear.kernel[...], precision=HIGHEST) + linear.bias[...]


def reference_forward(model, images, fc1=None):
    """AlexNet's eval-mode forward from plain lax ops; `fc1` replaces the first fully connected layer."""
    x = reference_pool(jax.nn.relu(reference_conv(images, model.c1, 4, 0)))
    x = reference_pool(jax.nn.relu(reference_conv(x, model.c2, 1, 2)))
    x = jax.nn.relu(reference_conv(x, model.c3, 1, 1))
    x = jax.nn.relu(reference_conv(x, model.c4, 1, 1))
    x = reference_pool(jax.nn.relu(reference_conv(x, model.c5, 1, 1)))
    x = reference_dense(x.reshape(len(x), -1), model.fc1) if fc1 is None else fc1(x)
    x = jax.nn.relu(reference_dense(jax.nn.relu(x), model.fc2))
    return reference_dense(x, model.fc3)


@pytest.fixture(scope="module")
def model_99():
    """A 99x99 AlexNet: a 2x2x256 final map, so the flatten order matters, and fast on a CPU."""
    return AlexNet(input_size=99, rngs=nnx.Rngs(0))


# --- full size: shapes only ---


def test_full_size_parameter_count_matches_the_original():
    abstract = nnx.eval_shape(lambda: AlexNet(rngs=nnx.Rngs(0)))
    assert parameter_count(abstract) == FULL_SIZE_PARAMETERS
    assert abstract.fc1.kernel.shape == (9216, 4096)
    assert abstract.c1.kernel.shape == (11, 11, 3, 96)


def test_full_size_output_shape():
    graphdef, state = nnx.split(nnx.eval_shape(lambda: AlexNet(rngs=nnx.Rngs(0))))
    images = jax.ShapeDtypeStruct((2, 227, 227, 3), jnp.float32)
    outputs = jax.eval_shape(lambda state, images: nnx.merge(graphdef, state)(images), state, images)
    assert outputs.shape == (2, 10)


@pytest.mark.parametrize("input_size, expected", [(227, 6), (224, 5), (99, 2), (67, 1), (131, 3)])
def test_final_map_size(input_size, expected):
    assert final_map_size(input_size) == expected


def test_too_small_input_size_is_rejected():
    with pytest.raises(ValueError, match="input_size.*67"):
        AlexNet(input_size=66, rngs=nnx.Rngs(0))


def test_smaller_input_size_changes_only_fc1():
    abstract = nnx.eval_shape(lambda: AlexNet(input_size=67, rngs=nnx.Rngs(0)))
    assert parameter_count(abstract) == FULL_SIZE_PARAMETERS - (9216 - 256) * 4096


# --- small size: values ---


def test_forward_matches_lax_reference(model_99):
    model_99.eval()
    images = random_images(1, (2, 99, 99, 3))
    outputs = model_99(images)
    assert outputs.shape == (2, 10)
    np.testing.assert_allclose(outputs, reference_forward(model_99, images), rtol=1e-4, atol=1e-5)


def test_flatten_order_is_hwc_and_pytorch_weights_port_by_permutation():
    """A PyTorch fc1 weight (4096, 1024) reads (C, H, W)-flattened features; permuted, it reads ours."""
    model = AlexNet(input_size=99, rngs=nnx.Rngs(1))
    model.eval()
    torch_weight = jnp.asarray(np.random.default_rng(2).standard_normal((4096, 1024)) * 0.03, jnp.float32)
    model.fc1.kernel[...] = torch_weight.reshape(4096, 256, 2, 2).transpose(2, 3, 1, 0).reshape(1024, 4096)

    def torch_fc1(features):  # (N, 2, 2, 256) -> PyTorch's x.view(-1, 256 * 2 * 2) @ w.T + b
        flat = features.transpose(0, 3, 1, 2).reshape(len(features), -1)
        return jnp.dot(flat, torch_weight.T, precision=HIGHEST) + model.fc1.bias[...]

    images = random_images(3, (2, 99, 99, 3))
    np.testing.assert_allclose(model(images), reference_forward(model, images, fc1=torch_fc1), rtol=1e-4, atol=1e-5)


def test_dropout_is_random_in_training_and_off_in_evaluation(model_99):
    images = random_images(4, (2, 99, 99, 3))
    model_99.train()
    assert not np.allclose(model_99(images), model_99(images))
    model_99.eval()
    np.testing.assert_array_equal(model_99(images), model_99(images))


def test_dropout_rate_is_configurable():
    assert nnx.eval_shape(lambda: AlexNet(rngs=nnx.Rngs(0))).dropout.rate == 0.5
    assert nnx.eval_shape(lambda: AlexNet(dropout_rate=0.2, rngs=nnx.Rngs(0))).dropout.rate == 0.2


def test_same_seed_gives_same_model():
    first, second, other = (nnx.state(AlexNet(input_size=67, rngs=nnx.Rngs(seed)), nnx.Param) for seed in (0, 0, 1))
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first["c1"]["kernel"][...], other["c1"]["kernel"][...])


def test_train_step_lowers_the_loss_on_a_small_batch():
    model = AlexNet(input_size=67, dropout_rate=0.0, rngs=nnx.Rngs(0))  # no dropout noise: a clear trend
    optimizer = nnx.Optimizer(model, optax.adam(1e-4), wrt=nnx.Param)
    images = random_images(5, (8, 67, 67, 3))
    labels = jnp.arange(8)
    before = eval_step(model, images, labels)
    for _ in range(8):
        metrics = train_step(model, optimizer, images, labels)
    after = eval_step(model, images, labels)
    assert set(metrics) == {"loss", "accuracy"}
    np.testing.assert_allclose(before["loss"], np.log(10), rtol=0.1)  # near-uniform logits at the start
    assert after["loss"] < 0.7 * before["loss"]


# --- data transforms and recipe ---


def test_resize_227():
    constant = jnp.full((2, 32, 32, 3), 0.25, jnp.float32)
    resized = resize_227(constant)
    assert resized.shape == (2, 227, 227, 3) and resized.dtype == jnp.float32
    np.testing.assert_allclose(resized, 0.25, rtol=1e-6)
    assert resize_227(jnp.full((1, 32, 32, 1), 200, jnp.uint8)).shape == (1, 227, 227, 1)
    with pytest.raises(ValueError, match="resize_227"):
        resize_227(jnp.zeros((32, 32, 3)))


def test_resize_227_keeps_a_left_right_ramp_increasing():
    ramp = jnp.broadcast_to(jnp.linspace(0.0, 1.0, 32)[None, None, :, None], (1, 32, 32, 1))
    resized = np.asarray(resize_227(ramp))[0, 100, :, 0]
    assert np.all(np.diff(resized) >= 0) and resized[0] == pytest.approx(0.0) and resized[-1] == pytest.approx(1.0)


def test_prepare_normalises_then_resizes():
    images = jnp.stack([jnp.zeros((32, 32, 3), jnp.uint8), jnp.full((32, 32, 3), 255, jnp.uint8)])
    prepared = prepare(images)
    assert prepared.shape == (2, 227, 227, 3) and prepared.dtype == jnp.float32
    np.testing.assert_allclose(prepared[0], -1.0, atol=1e-6)
    np.testing.assert_allclose(prepared[1], 1.0, atol=1e-6)


def test_augment_is_week_4s_crop_flip_with_an_eighth_of_the_side_in_training_only():
    images = random_images(6, (4, 16, 16, 2))  # padding 16 // 8 = 2
    key = jax.random.key(0)
    augmented = jax.jit(augment, static_argnums=2)(key, images, True)
    np.testing.assert_array_equal(augmented, random_crop_flip(key, images, 2))
    np.testing.assert_array_equal(augment(None, images, False), images)


EIGHT_DEVICES = textwrap.dedent("""
    import jax, numpy as np, optax
    from flax import nnx
    from jax.sharding import PartitionSpec
    from solutions import week2_neural_networks as week2, week6_alexnet as week6
    assert jax.device_count() == 8, jax.devices()
    mesh = jax.sharding.Mesh(np.array(jax.devices()), ("data",))
    images = np.random.default_rng(0).normal(size=(32, 28, 28, 1)).astype(np.float32)
    labels = (np.arange(32) % 10).astype(np.int32)
    sharded = week6.shard_batch(mesh, images)
    assert sharded.sharding.spec == PartitionSpec("data") and len(sharded.addressable_shards) == 8
    assert {shard.data.shape for shard in sharded.addressable_shards} == {(4, 28, 28, 1)}
    results = []
    for parallel in (False, True):
        model = week2.MLP(hidden=(32,), rngs=nnx.Rngs(0))
        optimizer = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
        for _ in range(2):
            metrics = (week6.data_parallel_step(mesh, model, optimizer, images, labels) if parallel
                       else week2.train_step(model, optimizer, images, labels))
        state = nnx.state(model, nnx.Param)
        if parallel:
            assert all(leaf.sharding.is_fully_replicated and len(leaf.sharding.device_set) == 8
                       for leaf in jax.tree.leaves(state))
        results.append((float(metrics["loss"]), jax.device_get(state)))
    (single_loss, single), (sharded_loss, sharded) = results
    np.testing.assert_allclose(sharded_loss, single_loss, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6), sharded, single)
    print("EIGHT DEVICES MATCH", single_loss)
""")


def test_data_parallel_step_on_eight_devices_equals_the_one_device_step():
    assert "EIGHT DEVICES MATCH" in run_on_eight_cpu_devices(EIGHT_DEVICES)


# The original course (ORIGINAL_COURSE.md, "AlexNet on CIFAR-10"): images resized to 227x227 and normalised
# with mean 0.5, std 0.5; 43,553,542 parameters; CIFAR-10's ten classes; 20% validation split.
ORIGINAL = dict(dataset="cifar10", size=227, mean=0.5, std=0.5, parameters=FULL_SIZE_PARAMETERS,
                validation_fraction=0.2)


def test_recipe_trains_the_original_courses_alexnet_on_its_inputs():
    """Shapes only at 227x227 (jax.eval_shape), values on constant images, one level per channel: the
    normalisation is per channel and the bilinear resize keeps a constant."""
    recipe = RECIPES["alexnet"]
    assert recipe.dataset == ORIGINAL["dataset"]
    height, width, channels, classes = data.IMAGE_DATASETS[recipe.dataset]
    levels = np.array([[0, 51, 255], [200, 128, 7]], np.uint8)
    images = np.broadcast_to(levels[:, None, None, :], (2, height, width, channels))
    prepared = jax.jit(recipe.prepare)(jnp.asarray(images))
    size = ORIGINAL["size"]
    assert prepared.shape == (2, size, size, channels) and prepared.dtype == jnp.float32
    expected = (levels / 255 - ORIGINAL["mean"]) / ORIGINAL["std"]
    np.testing.assert_allclose(prepared, np.broadcast_to(expected[:, None, None, :], prepared.shape), atol=1e-5)
    model = nnx.eval_shape(lambda: recipe.model(nnx.Rngs(0)))
    assert parameter_count(model) == ORIGINAL["parameters"]
    graphdef, state = nnx.split(model)
    outputs = jax.eval_shape(lambda state, x: nnx.merge(graphdef, state)(x), state, prepared)
    assert outputs.shape == (2, len(classes))
    assert recipe.validation_fraction == ORIGINAL["validation_fraction"]
