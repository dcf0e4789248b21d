"""course.transforms against numpy references and their defining properties."""

import jax
import jax.numpy as jnp
import numpy as np

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
    np.testing.assert_allclose(scaled, [0.0, 128 / 255, 1.0], rtol=1e-6)


def test_pad_adds_a_border_of_the_value():
    images = jnp.ones((2, 3, 3, 1))
    padded = transforms.pad(images, 2, value=-1.0)
    assert padded.shape == (2, 7, 7, 1)
    np.testing.assert_array_equal(padded[:, 2:5, 2:5], images)
    assert float(padded[0, 0, 0, 0]) == -1.0 and float(padded[1, 6, 3, 0]) == -1.0


def test_resize_keeps_constant_images_constant_and_reaches_the_size():
    images = jnp.full((2, 8, 8, 3), 0.25)
    resized = transforms.resize(images, 227)
    assert resized.shape == (2, 227, 227, 3)
    np.testing.assert_allclose(resized, 0.25, atol=1e-6)
