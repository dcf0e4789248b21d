"""course.viz_filters: a model's feature maps and first-layer filters, and kernels as images."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from course import viz, viz_filters
from solutions.week2_neural_networks import MLP
from solutions.week4_simple_cnn import SimpleCNN
from solutions.week5_lenet import LeNet5
from tests.viz_helpers import random_model


def test_feature_maps_equal_the_models_own_layers():
    model = random_model(lambda rngs: SimpleCNN(rngs=rngs))
    model.train()
    inputs = jax.random.normal(jax.random.key(1), (1, 32, 32, 3))
    first = viz_filters.layer_feature_maps(model, inputs, "conv1")
    second = viz_filters.layer_feature_maps(model, inputs, "conv2")
    assert list(first) == ["conv", "ReLU", "max-pool 2x2/2"]
    conv1 = model.conv1(inputs)  # the layers called directly, not through the capture
    pooled1 = nnx.max_pool(jnp.maximum(conv1, 0), (2, 2), strides=(2, 2))
    conv2 = model.conv2(pooled1)
    for maps, conv in ((first, conv1), (second, conv2)):
        expected = np.transpose(np.asarray(conv[0]), (2, 0, 1))
        np.testing.assert_allclose(maps["conv"], expected, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(maps["ReLU"], np.maximum(expected, 0), rtol=1e-5, atol=1e-5)
        pooled = np.maximum(expected, 0).reshape(len(expected), expected.shape[1] // 2, 2, -1, 2).max(axis=(2, 4))
        np.testing.assert_allclose(maps["max-pool 2x2/2"], pooled, rtol=1e-5, atol=1e-5)
    assert first["conv"].shape == (16, 32, 32) and second["max-pool 2x2/2"].shape == (25, 8, 8)
    assert model.dropout.deterministic is False  # the model's own mode is kept


def test_layer_feature_maps_rejects_an_unknown_layer_listing_the_valid_ones():
    model = random_model(lambda rngs: LeNet5(rngs=rngs))
    with pytest.raises(viz.VizError, match="valid layers: c1, c3, c5"):
        viz_filters.layer_feature_maps(model, jnp.zeros((1, 32, 32, 1)), "f6")


def test_first_conv_kernels_are_the_first_layers_weights():
    model = random_model(lambda rngs: LeNet5(rngs=rngs))
    name, kernels = viz_filters.first_conv_kernels(model)
    assert name == "c1"
    np.testing.assert_array_equal(kernels, model.c1.kernel.get_value())


def test_an_mlps_first_layer_filters_are_its_weights_as_images():
    model = random_model(lambda rngs: MLP(hidden=(12,), rngs=rngs))
    name, filters = viz_filters.first_layer_filters(model, (28, 28, 1))
    weights = np.asarray(model.hidden_layers[0].kernel.get_value())  # (784, 12)
    assert name == "hidden_layers.0" and filters.shape == (28, 28, 1, 12)
    np.testing.assert_array_equal(filters[3, 5, 0], weights[3 * 28 + 5])  # row-major flattening (N, H*W*C)
    with pytest.raises(viz.VizError, match="takes 784 inputs, not an image of 32x32x3"):
        viz_filters.first_layer_filters(model, (32, 32, 3))
    lenet = random_model(lambda rngs: LeNet5(rngs=rngs))
    assert viz_filters.first_layer_filters(lenet, (32, 32, 1))[0] == "c1"


def test_kernel_images_scale_each_filter_to_unit_range():
    kernels = np.random.default_rng(0).normal(size=(5, 5, 3, 7)).astype(np.float32)
    tiles = viz_filters.kernel_images(kernels)
    assert tiles.shape == (7, 5, 5, 3)
    np.testing.assert_allclose(tiles.min(axis=(1, 2, 3)), 0, atol=1e-6)
    np.testing.assert_allclose(tiles.max(axis=(1, 2, 3)), 1, atol=1e-6)
    first = kernels[..., 0]
    np.testing.assert_allclose(tiles[0], (first - first.min()) / (first.max() - first.min()), atol=1e-6)
    assert viz_filters.kernel_images(kernels[:, :, :1]).shape == (7, 5, 5)
    assert viz_filters.kernel_mosaic(kernels).shape == (3 * 6 - 1, 3 * 6 - 1, 3)
