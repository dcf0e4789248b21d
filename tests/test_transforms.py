"""course.transforms against numpy references and their defining properties: per-channel normalisation,
scaling to [0, 1], padding with a value, and a bilinear resize that keeps constants, stretches each axis
and channel on its own and runs under jax.jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from course import transforms


def random_uint8(seed, shape):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def test_normalize_matches_numpy_per_channel():
    images = random_uint8(0, (4, 5, 6, 3))
    mean, std = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
    expected = (images.astype(np.float64) / 255 - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(transforms.normalize(images, mean, std), expected, rtol=1e-5, atol=1e-5)
    assert transforms.normalize(images, 0.5, 0.5).dtype == jnp.float32


def test_to_unit_float_range():
    scaled = transforms.to_unit_float(np.array([0, 128, 255], np.uint8))
    assert scaled.dtype == jnp.float32
    np.testing.assert_allclose(scaled, [0.0, 128 / 255, 1.0], rtol=1e-6)


def test_pad_adds_a_border_of_the_value():
    images = jnp.asarray(np.random.default_rng(1).standard_normal((2, 3, 4, 2)), jnp.float32)
    padded = np.asarray(jax.jit(transforms.pad, static_argnums=(1, 2))(images, 2, -1.0))
    assert padded.shape == (2, 7, 8, 2)
    np.testing.assert_array_equal(padded[:, 2:5, 2:6], images)
    border = np.ones((7, 8), bool)
    border[2:5, 2:6] = False
    assert np.all(padded[:, border] == -1.0)


def test_resize_keeps_constant_images_constant_and_reaches_the_size():
    images = jnp.full((2, 8, 8, 3), 0.25)
    resized = transforms.resize(images, 227)
    assert resized.shape == (2, 227, 227, 3)
    np.testing.assert_allclose(resized, 0.25, atol=1e-6)


def test_resize_stretches_each_axis_and_channel_on_its_own():
    """A ramp along the width of a non-square image stays a ramp along the width (every row the same,
    rising from its first value to its last); another channel, constant, stays constant."""
    images = np.zeros((1, 8, 12, 2), np.float32)
    images[..., 0] = np.linspace(0.0, 1.0, 12)
    images[..., 1] = 0.75
    resized = np.asarray(jax.jit(transforms.resize, static_argnums=1)(images, 30))
    assert resized.shape == (1, 30, 30, 2)
    ramp = resized[0, :, :, 0]
    np.testing.assert_allclose(ramp, np.broadcast_to(ramp[0], (30, 30)), atol=1e-6)
    assert np.all(np.diff(ramp[0]) > 0) and ramp[0, 0] == pytest.approx(0.0, abs=1e-6)
    assert ramp[0, -1] == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(resized[..., 1], 0.75, atol=1e-6)


def test_resize_to_the_same_size_changes_nothing_and_takes_uint8():
    images = np.random.default_rng(2).standard_normal((2, 9, 9, 3)).astype(np.float32)
    np.testing.assert_allclose(transforms.resize(images, 9), images, atol=1e-6)
    as_bytes = transforms.resize(jnp.full((1, 4, 4, 1), 200, jnp.uint8), 8)
    assert as_bytes.dtype == jnp.float32 and as_bytes.shape == (1, 8, 8, 1)
    np.testing.assert_allclose(as_bytes, 200.0, rtol=1e-6)  # the uint8 levels, not rescaled
