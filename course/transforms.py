"""Jittable image transforms: scaling, normalisation, padding, resizing and augmentation.

All take and return NHWC batches. They run inside `jax.jit` on any device.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp


def to_unit_float(images: jax.Array) -> jax.Array:
    """uint8 images (N, H, W, C) in [0, 255] -> float32 in [0, 1]."""
    return jnp.asarray(images, jnp.float32) / 255.0


def normalize(images: jax.Array, mean: float | Sequence[float], std: float | Sequence[float]) -> jax.Array:
    """uint8 images (N, H, W, C) -> float32 `(images / 255 - mean) / std`, per channel."""
    mean = jnp.asarray(mean, jnp.float32)
    std = jnp.asarray(std, jnp.float32)
    return (to_unit_float(images) - mean) / std


def pad(images: jax.Array, amount: int, value: float = 0.0) -> jax.Array:
    """Pads height and width of `images` (N, H, W, C) by `amount` on each side with `value`."""
    return jnp.pad(images, ((0, 0), (amount, amount), (amount, amount), (0, 0)), constant_values=value)


def resize(images: jax.Array, size: int) -> jax.Array:
    """Bilinear resize of `images` (N, H, W, C) to (N, size, size, C), keeping the dtype's range."""
    batch, _, _, channels = images.shape
    resized = jax.image.resize(images.astype(jnp.float32), (batch, size, size, channels), "bilinear")
    return resized.astype(images.dtype) if jnp.issubdtype(images.dtype, jnp.floating) else resized


def random_flip(key: jax.Array, images: jax.Array) -> jax.Array:
    """Mirrors each image of `images` (N, H, W, C) left-right with probability 1/2."""
    flip = jax.random.bernoulli(key, 0.5, (images.shape[0], 1, 1, 1))
    return jnp.where(flip, images[:, :, ::-1, :], images)


def random_crop(key: jax.Array, images: jax.Array, padding: int) -> jax.Array:
    """Pads `images` (N, H, W, C) by `padding` with zeros, then crops each back to H x W at a random offset."""
    batch, height, width, _ = images.shape
    padded = pad(images, padding)
    offsets = jax.random.randint(key, (batch, 2), 0, 2 * padding + 1)

    def crop_one(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (height, width, image.shape[-1]))

    return jax.vmap(crop_one)(padded, offsets)


def random_crop_flip(key: jax.Array, images: jax.Array, padding: int = 4) -> jax.Array:
    """The standard CIFAR augmentation: a random crop after zero padding, then a random flip."""
    crop_key, flip_key = jax.random.split(key)
    return random_flip(flip_key, random_crop(crop_key, images, padding))
