"""Tests of week 3: from-scratch convolution and pooling against JAX/Flax (values, gradients, hand-computed
cases, bad input), Sobel on an edge, the original course's four filters, and the feature maps they give."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from solutions.week3_convolutions import (
    conv2d,
    feature_maps,
    four_filters,
    max_pool2d,
    sobel_kernels,
)

RTOL = 1e-5
ATOL = 1e-5

jitted_conv2d = jax.jit(conv2d, static_argnames=("stride", "padding"))


def reference_conv(images, kernels, bias=None, *, stride=1, padding=0):
    outputs = jax.lax.conv_general_dilated(
        images,
        kernels,
        window_strides=(stride, stride),
        padding=[(padding, padding), (padding, padding)],
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )
    return outputs if bias is None else outputs + bias


def random_arrays(seed, *shapes):
    """Fresh standard-normal float32 arrays (NumPy's generator: no JAX compilation per shape)."""
    rng = np.random.default_rng(seed)
    return [jnp.asarray(rng.standard_normal(shape), jnp.float32) for shape in shapes]


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 3),
    height=st.integers(3, 9),
    width=st.integers(3, 9),
    in_channels=st.integers(1, 4),
    out_channels=st.integers(1, 4),
    kernel_height=st.integers(1, 3),
    kernel_width=st.integers(1, 3),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    use_bias=st.booleans(),
    seed=st.integers(0, 2**31 - 1),
)
def test_conv2d_matches_lax_conv(
    batch, height, width, in_channels, out_channels, kernel_height, kernel_width, stride, padding, use_bias, seed
):
    images, kernels, bias = random_arrays(
        seed,
        (batch, height, width, in_channels),
        (kernel_height, kernel_width, in_channels, out_channels),
        (out_channels,),
    )
    bias = bias if use_bias else None
    outputs = jitted_conv2d(images, kernels, bias, stride=stride, padding=padding)
    expected = reference_conv(images, kernels, bias, stride=stride, padding=padding)
    out_height = (height + 2 * padding - kernel_height) // stride + 1
    assert outputs.shape == (batch, out_height, expected.shape[2], out_channels)
    np.testing.assert_allclose(outputs, expected, rtol=RTOL, atol=ATOL)


@pytest.mark.parametrize(
    "image_shape, kernel_shape, stride, padding",
    [
        ((2, 32, 32, 3), (3, 3, 3, 16), 1, 1),  # SimpleCNN conv1
        ((2, 32, 32, 1), (5, 5, 1, 6), 1, 0),  # LeNet-5 C1
        ((1, 27, 27, 3), (11, 11, 3, 8), 4, 0),  # AlexNet C1 on a smaller image
        ((1, 12, 12, 5), (5, 5, 5, 7), 2, 2),
    ],
)
def test_conv2d_matches_lax_conv_on_course_shapes(image_shape, kernel_shape, stride, padding):
    images, kernels, bias = random_arrays(0, image_shape, kernel_shape, kernel_shape[-1:])
    outputs = jitted_conv2d(images, kernels, bias, stride=stride, padding=padding)
    expected = reference_conv(images, kernels, bias, stride=stride, padding=padding)
    np.testing.assert_allclose(outputs, expected, rtol=RTOL, atol=1e-4)


def test_conv2d_hand_computed():
    image = jnp.arange(16, dtype=jnp.float32).reshape(1, 4, 4, 1)  # rows [0 1 2 3], [4 5 6 7], ...
    kernel = jnp.array([[1.0, 2.0], [3.0, 4.0]]).reshape(2, 2, 1, 1)
    # Top-left window [[0, 1], [4, 5]] -> 0*1 + 1*2 + 4*3 + 5*4 = 34; each step right adds 1+2+3+4 = 10,
    # each step down adds 4 * 10 = 40. No kernel flip: a true convolution would give 0*4 + 1*3 + 4*2 + 5*1 = 16.
    expected = jnp.array([[34.0, 44.0, 54.0], [74.0, 84.0, 94.0], [114.0, 124.0, 134.0]])
    np.testing.assert_allclose(conv2d(image, kernel)[0, :, :, 0], expected)
    np.testing.assert_allclose(conv2d(image, kernel, jnp.array([0.5]), stride=2)[0, :, :, 0], expected[::2, ::2] + 0.5)
    # With padding 1 the top-left window is [[0, 0], [0, 0]] above/left of pixel 0: only 0 * 4.
    padded_outputs = conv2d(image, kernel, padding=1)[0, :, :, 0]
    assert padded_outputs.shape == (5, 5)
    assert padded_outputs[0, 0] == 0.0
    assert padded_outputs[0, 1] == 0.0 * 3 + 1.0 * 4
    assert padded_outputs[4, 4] == 15.0 * 1


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1)])
def test_conv2d_gradient_matches_lax(stride, padding):
    images, kernels, bias = random_arrays(1, (2, 7, 6, 3), (3, 2, 3, 4), (4,))

    def loss(conv_fn, images, kernels, bias):
        outputs = conv_fn(images, kernels, bias, stride=stride, padding=padding)
        return jnp.sum(jnp.sin(outputs))  # a non-linear loss so the cotangent varies per output

    grads = jax.grad(lambda *args: loss(conv2d, *args), argnums=(0, 1, 2))(images, kernels, bias)
    expected = jax.grad(lambda *args: loss(reference_conv, *args), argnums=(0, 1, 2))(images, kernels, bias)
    for grad, expected_grad in zip(grads, expected):
        np.testing.assert_allclose(grad, expected_grad, rtol=1e-4, atol=1e-4)


def test_conv2d_rejects_mismatched_channels():
    images = jnp.zeros((1, 8, 8, 3))
    kernels = jnp.zeros((3, 3, 1, 4))
    with pytest.raises(ValueError, match=r"3 channels.*1 input channels"):
        conv2d(images, kernels)


def test_conv2d_rejects_kernel_bigger_than_padded_image():
    with pytest.raises(ValueError, match=r"kernel 5x5 is bigger than the padded image 4x4"):
        conv2d(jnp.zeros((1, 4, 4, 1)), jnp.zeros((5, 5, 1, 1)))
    assert conv2d(jnp.zeros((1, 4, 4, 1)), jnp.zeros((5, 5, 1, 1)), padding=1).shape == (1, 2, 2, 1)


def test_conv2d_rejects_wrong_ranks():
    with pytest.raises(ValueError, match=r"images must have shape \(N, H, W, C_in\)"):
        conv2d(jnp.zeros((8, 8, 1)), jnp.zeros((3, 3, 1, 1)))
    with pytest.raises(ValueError, match=r"kernels must have shape \(KH, KW, C_in, C_out\)"):
        conv2d(jnp.zeros((1, 8, 8, 1)), jnp.zeros((3, 3)))


@pytest.mark.parametrize(
    "shape, window, stride",
    [((2, 8, 8, 3), 2, 2), ((2, 9, 7, 3), 2, 2), ((1, 13, 13, 4), 3, 2), ((2, 10, 10, 2), 3, 1), ((1, 6, 6, 1), 2, 3)],
)
def test_max_pool2d_matches_nnx_max_pool(shape, window, stride):
    (images,) = random_arrays(2, shape)
    outputs = max_pool2d(images, window, stride)
    expected = nnx.max_pool(images, (window, window), strides=(stride, stride))
    assert outputs.shape == expected.shape
    np.testing.assert_array_equal(outputs, expected)
    grad = jax.grad(lambda x: jnp.sum(jnp.sin(max_pool2d(x, window, stride))))(images)
    expected_grad = jax.grad(lambda x: jnp.sum(jnp.sin(nnx.max_pool(x, (window, window), (stride, stride)))))(images)
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-6, atol=1e-6)


def test_max_pool2d_hand_computed():
    image = jnp.array(
        [
            [1.0, 3.0, 2.0, 0.0, 9.0],
            [4.0, 2.0, 1.0, 5.0, 9.0],
            [0.0, -1.0, 7.0, 6.0, 9.0],
            [-2.0, -3.0, 8.0, 0.0, 9.0],
        ]
    ).reshape(1, 4, 5, 1)
    # 2x2/2 drops the last column (valid padding); 3x3/2 on 4x5 gives one row of two windows.
    np.testing.assert_array_equal(max_pool2d(image)[0, :, :, 0], [[4.0, 5.0], [0.0, 8.0]])
    np.testing.assert_array_equal(max_pool2d(image, 3, 2)[0, :, :, 0], [[7.0, 9.0]])


def test_max_pool2d_rejects_bad_input():
    with pytest.raises(ValueError, match=r"window 3x3 is bigger than the image 2x2"):
        max_pool2d(jnp.zeros((1, 2, 2, 1)), 3, 1)
    with pytest.raises(ValueError, match=r"images must have shape \(N, H, W, C\)"):
        max_pool2d(jnp.zeros((4, 4)))


def test_sobel_kernels_values():
    sobel_x, sobel_y = sobel_kernels()
    np.testing.assert_array_equal(sobel_x, [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    np.testing.assert_array_equal(sobel_y, np.transpose(sobel_x))


def test_sobel_on_vertical_step_edge():
    image = jnp.zeros((6, 8)).at[:, 4:].set(1.0)  # dark left half, bright right half
    images = image[None, :, :, None]
    sobel_x, sobel_y = sobel_kernels()
    edges_x = conv2d(images, sobel_x[:, :, None, None])[0, :, :, 0]  # (4, 6)
    # Output column x covers image columns x..x+2: the windows at x = 2 and 3 straddle the edge,
    # seeing (0, 0, 1) and (0, 1, 1) in each row: response (1 + 2 + 1) * 1 = 4; flat windows give 0.
    expected_row = jnp.array([0.0, 0.0, 4.0, 4.0, 0.0, 0.0])
    np.testing.assert_array_equal(edges_x, jnp.tile(expected_row, (4, 1)))
    np.testing.assert_array_equal(conv2d(images, sobel_y[:, :, None, None]), jnp.zeros((1, 4, 6, 1)))


def test_four_filters_values():
    f1 = np.array([[-1, -1, 1, 1]] * 4, dtype=np.float32)
    filters = four_filters()
    assert filters.shape == (4, 4, 4)
    assert filters.dtype == jnp.float32
    np.testing.assert_array_equal(filters, np.stack([f1, -f1, f1.T, -f1.T]))


def grayscale_image(seed=3, size=28):
    return jnp.asarray(np.random.default_rng(seed).uniform(size=(size, size)), jnp.float32)


def test_feature_maps_shapes_and_stages():
    maps = feature_maps(grayscale_image(), four_filters())
    assert set(maps) == {"conv", "relu", "pooled"}
    assert maps["conv"].shape == (4, 25, 25)
    assert maps["relu"].shape == (4, 25, 25)
    assert maps["pooled"].shape == (4, 12, 12)
    np.testing.assert_array_equal(maps["relu"], np.maximum(maps["conv"], 0.0))
    relu_nhwc = jnp.transpose(maps["relu"], (1, 2, 0))[None]
    expected_pooled = nnx.max_pool(relu_nhwc, (2, 2), strides=(2, 2))[0]
    np.testing.assert_array_equal(maps["pooled"], jnp.transpose(expected_pooled, (2, 0, 1)))


def test_feature_maps_match_nnx_conv_with_the_four_filters():
    filters = four_filters()
    layer = nnx.Conv(1, 4, (4, 4), padding="VALID", use_bias=False, rngs=nnx.Rngs(0))
    layer.kernel[...] = jnp.transpose(filters, (1, 2, 0))[:, :, None, :]  # HWIO (4, 4, 1, 4)
    image = grayscale_image(seed=4)
    maps = feature_maps(image, filters)
    expected_conv = jnp.transpose(layer(image[None, :, :, None])[0], (2, 0, 1))
    np.testing.assert_allclose(maps["conv"], expected_conv, rtol=RTOL, atol=ATOL)


def test_feature_maps_conv_matches_float64_numpy_loop():
    image = np.asarray(grayscale_image(seed=5, size=9), dtype=np.float64)
    filters = np.asarray(four_filters(), dtype=np.float64)
    expected = np.zeros((4, 6, 6))
    for k in range(4):
        for y in range(6):
            for x in range(6):
                expected[k, y, x] = np.sum(image[y : y + 4, x : x + 4] * filters[k])
    maps = feature_maps(jnp.asarray(image, jnp.float32), jnp.asarray(filters, jnp.float32))
    np.testing.assert_allclose(maps["conv"], expected, rtol=RTOL, atol=ATOL)


def test_feature_maps_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"image must have shape \(H, W\)"):
        feature_maps(jnp.zeros((28, 28, 1)), four_filters())
    with pytest.raises(ValueError, match=r"kernels must have shape \(K, KH, KW\)"):
        feature_maps(jnp.zeros((28, 28)), four_filters()[0])
