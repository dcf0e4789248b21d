"""Layers whose fast formulation on the CPU differs from the plain one, behind a clear name.

Each function here computes the same values and gradients as the plain Flax/JAX formulation it
replaces; `tests/test_layers.py` checks that on random inputs.
"""

import jax
import jax.numpy as jnp
from flax import nnx


def max_pool(images: jax.Array, window: int, stride: int) -> jax.Array:
    """Max-pooling of `images` (N, H, W, C) with a square `window` and `stride`, no padding.

    Same values and gradients as `nnx.max_pool(images, (window, window), (stride, stride))`.
    When the windows tile the image exactly (window == stride, H and W divisible by it), the pool
    is a reshape and a max: XLA's CPU backend differentiates that far faster than the
    select-and-scatter that `nnx.max_pool`'s gradient needs.
    """
    batch, height, width, channels = images.shape
    if window == stride and height % window == 0 and width % window == 0:
        tiles = images.reshape(batch, height // window, window, width // window, window, channels)
        return tiles.max(axis=(2, 4))
    return nnx.max_pool(images, (window, window), strides=(stride, stride))
