"""Jittable image transforms: scaling, normalisation, padding and resizing.

All take and return NHWC batches. They run inside `jax.jit` on any device. Random augmentation
with explicit keys is a week 4 exercise (`random_crop_flip`).
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
