"""course.layers: fast formulations equal the plain ones, in values and gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings, strategies as st

from course.layers import max_pool


@settings(max_examples=15, deadline=None)
@given(window=st.sampled_from([(2, 2), (3, 2), (3, 3), (2, 1)]), size=st.integers(6, 13),
       channels=st.integers(1, 4), seed=st.integers(0, 2**31 - 1))
def test_max_pool_equals_nnx_max_pool(window, size, channels, seed):
    window_size, stride = window
    images = jax.random.normal(jax.random.key(seed), (2, size, size + 2, channels))
    plain = nnx.max_pool(images, (window_size, window_size), strides=(stride, stride))
    np.testing.assert_array_equal(max_pool(images, window_size, stride), plain)


@pytest.mark.parametrize("shape", [(3, 8, 8, 5), (2, 32, 32, 3), (4, 10, 14, 1)])
def test_max_pool_gradient_equals_nnx_max_pool_gradient(shape):
    images = jax.random.normal(jax.random.key(1), shape)  # continuous values: no ties in a window
    weights = jax.random.normal(jax.random.key(2), (shape[0], shape[1] // 2, shape[2] // 2, shape[3]))

    def loss(pool):
        return lambda x: jnp.sum(pool(x) * weights)

    fast = jax.grad(loss(lambda x: max_pool(x, 2, 2)))(images)
    plain = jax.grad(loss(lambda x: nnx.max_pool(x, (2, 2), strides=(2, 2))))(images)
    np.testing.assert_allclose(fast, plain, rtol=1e-6, atol=1e-6)


def test_max_pool_of_a_known_array():
    images = jnp.arange(16.0).reshape(1, 4, 4, 1)
    np.testing.assert_array_equal(max_pool(images, 2, 2)[0, :, :, 0], [[5, 7], [13, 15]])
