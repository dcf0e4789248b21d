"""Tests of week 4: SimpleCNN's size, its forward pass against plain lax ops, dropout, the train and eval
steps, the augmentation and batches on their defining properties, and the recipe against the original course."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import given, settings, strategies as st

from course import data
from solutions.week4_simple_cnn import (
    RECIPES,
    SimpleCNN,
    augment,
    eval_step,
    prepare,
    random_crop_flip,
    shuffled_batches,
    train_step,
)

HIGHEST = jax.lax.Precision.HIGHEST


def random_images(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def parameter_count(model):
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


def reference_conv(images, conv, padding):
    outputs = jax.lax.conv_general_dilated(
        images, conv.kernel[...], (1, 1), [(padding, padding)] * 2,
        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=HIGHEST,
    )
    return outputs + conv.bias[...]


def reference_pool(images, window, stride):
    return jax.lax.reduce_window(images, -jnp.inf, jax.lax.max, (1, window, window, 1), (1, stride, stride, 1), "VALID")


def reference_forward(model, images, fc1=None):
    """SimpleCNN's eval-mode forward from plain lax ops; `fc1` replaces the first fully connected layer."""
    x = reference_pool(jax.nn.relu(reference_conv(images, model.conv1, 1)), 2, 2)
    x = reference_pool(jax.nn.relu(reference_conv(x, model.conv2, 1)), 2, 2)
    if fc1 is None:
        x = jnp.dot(x.reshape(len(x), -1), model.fc1.kernel[...], precision=HIGHEST) + model.fc1.bias[...]
    else:
        x = fc1(x)
    x = jax.nn.relu(x)
    x = jax.nn.relu(jnp.dot(x, model.fc2.kernel[...], precision=HIGHEST) + model.fc2.bias[...])
    return jnp.dot(x, model.fc3.kernel[...], precision=HIGHEST) + model.fc3.bias[...]


@pytest.fixture(scope="module")
def model():
    return SimpleCNN(rngs=nnx.Rngs(0))


def test_parameter_count_matches_the_original(model):
    assert parameter_count(model) == 217_907


def test_layer_shapes(model):
    assert model.conv1.kernel.shape == (3, 3, 3, 16)
    assert model.conv2.kernel.shape == (3, 3, 16, 25)
    assert model.fc1.kernel.shape == (1600, 128)
    assert model.fc2.kernel.shape == (128, 64)
    assert model.fc3.kernel.shape == (64, 10)
    assert model.dropout.rate == 0.4


def test_output_shape_and_num_classes():
    images = random_images(0, (3, 32, 32, 3))
    assert SimpleCNN(rngs=nnx.Rngs(0))(images).shape == (3, 10)
    assert SimpleCNN(num_classes=4, rngs=nnx.Rngs(0))(images).shape == (3, 4)


def test_forward_matches_lax_reference(model):
    model.eval()
    images = random_images(1, (4, 32, 32, 3))
    np.testing.assert_allclose(model(images), reference_forward(model, images), rtol=1e-5, atol=1e-5)


def test_flatten_order_is_hwc_and_pytorch_weights_port_by_permutation():
    """A PyTorch fc1 weight (128, 1600) reads (C, H, W)-flattened features; permuted, it reads ours."""
    model = SimpleCNN(rngs=nnx.Rngs(2))
    model.eval()
    rng = np.random.default_rng(3)
    torch_weight = jnp.asarray(rng.standard_normal((128, 1600)) * 0.03, jnp.float32)
    model.fc1.kernel[...] = torch_weight.reshape(128, 25, 8, 8).transpose(2, 3, 1, 0).reshape(1600, 128)

    def torch_fc1(features):  # features (N, 8, 8, 25) -> PyTorch's x.view(-1, 25 * 8 * 8) @ w.T + b
        flat = features.transpose(0, 3, 1, 2).reshape(len(features), -1)
        return jnp.dot(flat, torch_weight.T, precision=HIGHEST) + model.fc1.bias[...]

    images = random_images(4, (2, 32, 32, 3))
    np.testing.assert_allclose(model(images), reference_forward(model, images, fc1=torch_fc1), rtol=1e-5, atol=1e-5)


def test_same_seed_gives_same_model_and_different_seed_does_not():
    first, second, other = (nnx.state(SimpleCNN(rngs=nnx.Rngs(seed)), nnx.Param) for seed in (0, 0, 1))
    for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first["conv1"]["kernel"][...], other["conv1"]["kernel"][...])


def test_dropout_is_random_in_training_and_off_in_evaluation():
    model = SimpleCNN(rngs=nnx.Rngs(0))
    images = random_images(5, (8, 32, 32, 3))
    model.train()
    assert not np.allclose(model(images), model(images))
    model.eval()
    np.testing.assert_array_equal(model(images), model(images))
    np.testing.assert_allclose(model(images), reference_forward(model, images), rtol=1e-5, atol=1e-5)


def test_train_step_lowers_the_loss_on_a_small_batch():
    model = SimpleCNN(rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, optax.adam(1e-3), wrt=nnx.Param)
    images = random_images(6, (16, 32, 32, 3))
    labels = jnp.arange(16) % 10
    model.eval()
    before = eval_step(model, images, labels)
    model.train()
    for _ in range(15):
        metrics = train_step(model, optimizer, images, labels)
    model.eval()
    after = eval_step(model, images, labels)
    assert set(metrics) == {"loss", "accuracy"}
    assert after["loss"] < 0.7 * before["loss"]


def test_eval_step_matches_cross_entropy_and_accuracy(model):
    model.eval()
    images = random_images(7, (6, 32, 32, 3))
    labels = jnp.array([0, 1, 2, 3, 4, 5])
    logits = np.asarray(reference_forward(model, images), np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    metrics = eval_step(model, images, labels)
    np.testing.assert_allclose(metrics["loss"], -log_probs[np.arange(6), labels].mean(), rtol=1e-5)
    np.testing.assert_allclose(metrics["accuracy"], np.mean(logits.argmax(1) == np.asarray(labels)))


def test_prepare_maps_uint8_to_minus_one_one():
    images = jnp.array([0, 51, 255], jnp.uint8).reshape(1, 1, 1, 3)
    prepared = prepare(images)
    assert prepared.dtype == jnp.float32
    np.testing.assert_allclose(prepared.ravel(), [-1.0, 51 / 255 * 2 - 1, 1.0], rtol=1e-6, atol=1e-6)


def shift_and_flip_of(original, result, padding):
    """(row shift, column shift, mirrored) that makes `result` from `original` with zero padding, or None."""
    height, width = original.shape[:2]
    padded = np.pad(np.asarray(original), ((padding, padding), (padding, padding), (0, 0)))
    for top, left, mirrored in itertools.product(range(2 * padding + 1), range(2 * padding + 1), (False, True)):
        crop = padded[top:top + height, left:left + width]
        if np.array_equal(result, crop[:, ::-1] if mirrored else crop):
            return top - padding, left - padding, mirrored
    return None


@pytest.mark.parametrize("padding", [0, 1, 3])
def test_random_crop_flip_shifts_within_the_padding_and_mirrors_about_half(padding):
    images = random_images(8, (300, 5, 7, 2))
    augmented = np.asarray(random_crop_flip(jax.random.key(1), images, padding))
    assert augmented.shape == images.shape and augmented.dtype == np.float32
    found = [shift_and_flip_of(image, result, padding) for image, result in zip(np.asarray(images), augmented)]
    assert None not in found
    assert 0.4 < np.mean([mirrored for _, _, mirrored in found]) < 0.6
    assert {row for row, _, _ in found} == set(range(-padding, padding + 1))
    assert {column for _, column, _ in found} == set(range(-padding, padding + 1))


def test_random_crop_flip_follows_its_key_and_jits():
    images = random_images(9, (16, 8, 8, 3))
    key = jax.random.key(2)
    first = random_crop_flip(key, images, 2)
    np.testing.assert_array_equal(first, random_crop_flip(key, images, 2))
    assert not np.array_equal(first, random_crop_flip(jax.random.key(3), images, 2))
    np.testing.assert_array_equal(jax.jit(random_crop_flip, static_argnums=2)(key, images, 2), first)
    as_bytes = random_crop_flip(key, jnp.full((3, 4, 4, 1), 9, jnp.uint8), 1)
    assert as_bytes.dtype == jnp.uint8 and set(np.unique(as_bytes)) <= {0, 9}


@settings(max_examples=25, deadline=None)
@given(num_examples=st.integers(1, 200), batch_size=st.integers(1, 64), seed=st.integers(0, 2**31 - 1))
def test_shuffled_batches_visit_each_example_at_most_once_with_a_key_per_step(num_examples, batch_size, seed):
    batches, step_keys = shuffled_batches(jax.random.key(seed), num_examples, batch_size)
    num_batches = num_examples // batch_size
    assert batches.shape == (num_batches, batch_size) and batches.dtype == jnp.int32
    visited = np.asarray(batches).ravel()
    assert len(set(visited.tolist())) == visited.size and (visited.size == 0 or 0 <= visited.min() <= visited.max() < num_examples)
    assert step_keys.shape == (num_batches,)
    assert len({bits.tobytes() for bits in np.asarray(jax.random.key_data(step_keys))}) == num_batches


def test_shuffled_batches_follow_the_key():
    first, keys = shuffled_batches(jax.random.key(0), 1000, 100)
    again, keys_again = shuffled_batches(jax.random.key(0), 1000, 100)
    other, _ = shuffled_batches(jax.random.key(1), 1000, 100)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(jax.random.key_data(keys), jax.random.key_data(keys_again))
    assert not np.array_equal(first, other)
    assert not np.array_equal(np.sort(first.ravel()), first.ravel())  # shuffled, not in order


def test_augment_crops_and_flips_in_training_only():
    images = random_images(8, (6, 32, 32, 3))
    key = jax.random.key(0)
    augmented = jax.jit(augment, static_argnums=2)(key, images, True)
    np.testing.assert_array_equal(augmented, random_crop_flip(key, images, 2))
    np.testing.assert_array_equal(augment(None, images, False), images)
    np.testing.assert_array_equal(augment(key, images, False), images)


# The original course (ORIGINAL_COURSE.md, "SimpleCNN on CIFAR-10"): 217,907 parameters, CIFAR-10's ten
# classes, inputs normalised with mean 0.5 and std 0.5 per channel, 20% of the training set held out for
# validation.
ORIGINAL = dict(dataset="cifar10", parameters=217_907, mean=0.5, std=0.5, validation_fraction=0.2)


def test_recipe_trains_the_original_courses_model_on_its_inputs():
    recipe = RECIPES["simple_cnn"]
    assert recipe.dataset == ORIGINAL["dataset"]
    height, width, channels, classes = data.IMAGE_DATASETS[recipe.dataset]
    images = np.random.default_rng(10).integers(0, 256, (4, height, width, channels), dtype=np.uint8)
    prepared = jax.jit(recipe.prepare)(jnp.asarray(images))
    assert prepared.dtype == jnp.float32
    np.testing.assert_allclose(prepared, (images / 255 - ORIGINAL["mean"]) / ORIGINAL["std"], rtol=1e-5, atol=1e-6)
    model = nnx.eval_shape(lambda: recipe.model(nnx.Rngs(0)))
    assert parameter_count(model) == ORIGINAL["parameters"]
    graphdef, state = nnx.split(model)
    outputs = jax.eval_shape(lambda state, x: nnx.merge(graphdef, state)(x), state, prepared)
    assert outputs.shape == (4, len(classes))
    assert recipe.validation_fraction == ORIGINAL["validation_fraction"]
