"""course.layers: the fast max pool and the im2col convolution equal the plain Flax/lax ones in values and
gradients (ties, uneven padding, the course's shapes, the fallbacks), compute without a convolution on
the CPU and with XLA's elsewhere; `use_fast_convolutions` swaps every nnx.Conv and keeps parameters,
outputs, gradients and captured intermediates; the training loop applies it; `sublayers` lists a model's
layers in definition order."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings, strategies as st

from course import layers
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


def test_max_pool_gradient_shares_ties_like_jax_grad_of_a_max():
    images = jnp.array([[1.0, 1.0, 0.0, 2.0], [0.0, 1.0, 2.0, 2.0]]).reshape(1, 2, 4, 1)

    def plain(x):  # the reshape-and-max formula, differentiated by jax.grad
        return x.reshape(1, 1, 2, 2, 2, 1).max(axis=(2, 4))

    weights = jnp.array([3.0, 5.0]).reshape(1, 1, 2, 1)
    fast_grad = jax.grad(lambda x: jnp.sum(max_pool(x, 2, 2) * weights))(images)
    plain_grad = jax.grad(lambda x: jnp.sum(plain(x) * weights))(images)
    np.testing.assert_allclose(fast_grad, plain_grad, rtol=1e-6)
    np.testing.assert_allclose(fast_grad[0, :, :, 0], [[1, 1, 0, 5 / 3], [0, 1, 5 / 3, 5 / 3]], rtol=1e-6)


# Convolution: layers.im2col_conv, layers.conv_general_dilated and layers.use_fast_convolutions against lax / nnx.Conv.

NHWC = ("NHWC", "HWIO", "NHWC")


def lax_conv(images, kernel, strides, padding):
    return jax.lax.conv_general_dilated(images, kernel, strides, padding, dimension_numbers=NHWC,
                                        precision=jax.lax.Precision.HIGHEST)


def random_normal(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def assert_conv_matches(conv, images, kernel, strides, padding):
    """`conv` equals lax's convolution in values and in both gradients, for a random output weighting."""
    expected = lax_conv(images, kernel, strides, padding)
    actual = conv(images, kernel, strides, padding)
    assert actual.shape == expected.shape
    scale = float(jnp.max(jnp.abs(expected))) + 1.0
    np.testing.assert_allclose(actual, expected, rtol=1e-5, atol=1e-5 * scale)
    weights = random_normal(7, expected.shape)
    grads = jax.grad(lambda x, w: jnp.sum(conv(x, w, strides, padding) * weights), argnums=(0, 1))(images, kernel)
    plain = jax.grad(lambda x, w: jnp.sum(lax_conv(x, w, strides, padding) * weights), argnums=(0, 1))(images, kernel)
    for name, fast_grad, plain_grad in zip(("images", "kernel"), grads, plain):
        grad_scale = float(jnp.max(jnp.abs(plain_grad))) + 1.0
        np.testing.assert_allclose(fast_grad, plain_grad, rtol=1e-5, atol=2e-5 * grad_scale, err_msg=name)


@settings(max_examples=12, deadline=None)
@given(batch=st.sampled_from([1, 5, layers.CONV_CHUNK, layers.CONV_CHUNK + 3, 2 * layers.CONV_CHUNK]),
       size=st.integers(5, 12), in_channels=st.integers(1, 4), out_channels=st.integers(1, 5),
       kernel_size=st.integers(1, 5), stride=st.integers(1, 3), pad=st.integers(0, 2), seed=st.integers(0, 2**31 - 1))
def test_im2col_conv_equals_lax_conv_in_values_and_gradients(batch, size, in_channels, out_channels, kernel_size,
                                                             stride, pad, seed):
    kernel_size = min(kernel_size, size + 2 * pad)
    images = random_normal(seed, (batch, size, size + 1, in_channels))
    kernel = random_normal(seed + 1, (kernel_size, kernel_size, in_channels, out_channels))
    padding = ((pad, pad + 1), (pad, pad))  # uneven padding too
    assert_conv_matches(jax.jit(layers.im2col_conv, static_argnums=(2, 3)), images, kernel, (stride, stride), padding)


@pytest.mark.parametrize("images_shape, kernel_shape, strides, padding", [
    ((64, 32, 32, 1), (5, 5, 1, 6), (1, 1), "VALID"),  # LeNet-5's C1, in pieces
    ((20, 32, 32, 3), (3, 3, 3, 16), (1, 1), "SAME"),  # SimpleCNN's conv1, a batch that does not divide
    ((17, 23, 23, 3), (11, 11, 3, 8), (4, 4), "VALID"),  # AlexNet's C1 shape, smaller
])
def test_conv_general_dilated_equals_lax_on_the_courses_shapes(images_shape, kernel_shape, strides, padding):
    def conv(images, kernel, strides, padding):
        dimension_numbers = jax.lax.conv_dimension_numbers(images.shape, kernel.shape, NHWC)
        return layers.conv_general_dilated(images, kernel, strides, padding, dimension_numbers=dimension_numbers)

    pads = jax.lax.padtype_to_pads(images_shape[1:3], kernel_shape[:2], strides, padding)
    assert_conv_matches(jax.jit(conv, static_argnums=(2, 3)), random_normal(0, images_shape),
                        random_normal(1, kernel_shape), strides, tuple(map(tuple, pads)))


def lowered_for(platform: str, function, *arguments) -> str:
    """The StableHLO program of `function` as jax.jit lowers it for `platform`, whatever device the tests
    run on (lowering for a platform needs no such device)."""
    return jax.jit(function).trace(*arguments).lower(lowering_platforms=(platform,)).as_text()


def test_conv_general_dilated_uses_matrix_products_on_the_cpu_and_xlas_convolution_elsewhere():
    images, kernel = random_normal(0, (4, 10, 10, 3)), random_normal(1, (3, 3, 3, 5))

    def loss(images, kernel):
        return jnp.sum(layers.conv_general_dilated(images, kernel, (1, 1), "SAME", dimension_numbers=NHWC) ** 2)

    gradient = jax.grad(loss, argnums=(0, 1))
    cpu = lowered_for("cpu", gradient, images, kernel)
    assert "convolution" not in cpu and "dot_general" in cpu
    for platform in ("cuda", "tpu"):
        assert "convolution" in lowered_for(platform, gradient, images, kernel), platform


@pytest.mark.parametrize("options", [dict(rhs_dilation=(2, 2)), dict(lhs_dilation=(2, 1)), dict(feature_group_count=2)])
def test_conv_general_dilated_falls_back_to_lax_for_other_cases(options):
    groups = options.get("feature_group_count", 1)
    images, kernel = random_normal(0, (2, 9, 9, 4)), random_normal(1, (3, 3, 4 // groups, 6))
    arguments = dict(window_strides=(1, 1), padding=((1, 1), (1, 1)), dimension_numbers=NHWC, **options)
    np.testing.assert_allclose(layers.conv_general_dilated(images, kernel, **arguments),
                               jax.lax.conv_general_dilated(images, kernel, **arguments), rtol=1e-6, atol=1e-6)


class NestedConvolutions(nnx.Module):
    """Plain `nnx.Conv` layers, one of them inside a list, as a student writes them."""

    def __init__(self, conv_arguments: dict, rngs: nnx.Rngs):
        self.first = nnx.Conv(**conv_arguments, rngs=rngs)
        out = conv_arguments["out_features"]
        self.blocks = nnx.List([nnx.Conv(out, out, kernel_size=(3, 3), padding="SAME", rngs=rngs)])
        self.head = nnx.Linear(out, 2, rngs=rngs)

    def __call__(self, images):
        return self.head(self.blocks[0](nnx.relu(self.first(images))).mean(axis=(1, 2)))


@pytest.mark.parametrize("arguments", [
    dict(in_features=1, out_features=6, kernel_size=(5, 5), padding="VALID"),
    dict(in_features=3, out_features=16, kernel_size=(3, 3), padding=1),
    dict(in_features=3, out_features=4, kernel_size=(11, 11), strides=4, padding="VALID"),
])
def test_use_fast_convolutions_keeps_parameters_outputs_and_gradients(arguments):
    plain = NestedConvolutions(arguments, nnx.Rngs(3))
    fast = layers.use_fast_convolutions(NestedConvolutions(arguments, nnx.Rngs(3)))
    assert fast.first.conv_general_dilated is layers.conv_general_dilated
    assert fast.blocks[0].conv_general_dilated is layers.conv_general_dilated
    assert plain.first.conv_general_dilated is jax.lax.conv_general_dilated
    plain_state, fast_state = nnx.state(plain, nnx.Param), nnx.state(fast, nnx.Param)
    assert jax.tree.structure(plain_state) == jax.tree.structure(fast_state)
    jax.tree.map(np.testing.assert_array_equal, plain_state, fast_state)
    images = random_normal(4, (3, 27, 27, arguments["in_features"]))
    np.testing.assert_allclose(fast(images), plain(images), rtol=1e-5, atol=1e-5)

    def loss(model, images):
        return jnp.sum(jnp.tanh(model(images)))

    fast_grads = nnx.jit(nnx.grad(loss, argnums=(0, 1)))(fast, images)
    plain_grads = nnx.grad(loss, argnums=(0, 1))(plain, images)
    for fast_grad, plain_grad in zip(jax.tree.leaves(fast_grads), jax.tree.leaves(plain_grads), strict=True):
        np.testing.assert_allclose(fast_grad, plain_grad, rtol=1e-4, atol=1e-4 * (1 + float(jnp.max(jnp.abs(plain_grad)))))


def test_fast_convolutions_compile_without_a_convolution_and_keep_their_captured_outputs():
    model = layers.use_fast_convolutions(NestedConvolutions(dict(in_features=1, out_features=3, kernel_size=(3, 3)),
                                                            nnx.Rngs(0)))
    images = jax.random.normal(jax.random.key(0), (2, 6, 6, 1))
    graphdef, state = nnx.split(model)

    def forward(state, images):
        return nnx.merge(graphdef, state)(images)

    assert "convolution" not in lowered_for("cpu", forward, state, images)
    assert "convolution" in lowered_for("cuda", forward, state, images)  # a GPU keeps XLA's convolution
    _, captured = nnx.capture(model, nnx.Intermediate, method_outputs=nnx.Intermediate)(images)
    paths = {path for path, _ in nnx.to_flat_state(captured)}
    assert ("first", "__call__") in paths
    np.testing.assert_allclose(captured["first"]["__call__"][0], model.first(images), rtol=1e-6)


def test_the_training_loop_gives_the_recipes_that_ask_for_it_the_fast_convolution():
    import dataclasses

    from course import runs, train
    from solutions import week4_simple_cnn

    recipe = week4_simple_cnn.RECIPES["simple_cnn"]
    assert recipe.fast_cpu_convolution
    settings = runs.RunSettings(model_name="simple_cnn", dataset="cifar10", epochs=1, batch_size=8, learning_rate=1e-3,
                              seed=0)
    fast_model, _ = train.build(recipe, settings, steps_per_epoch=1)
    assert [layer.conv_general_dilated for layer in (fast_model.conv1, fast_model.conv2)] == [
        layers.conv_general_dilated] * 2
    plain_model, _ = train.build(dataclasses.replace(recipe, fast_cpu_convolution=False), settings, steps_per_epoch=1)
    assert plain_model.conv1.conv_general_dilated is jax.lax.conv_general_dilated


def test_sublayers_walks_a_model_in_definition_order_with_paths():
    class Block(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(1, 2, (3, 3), rngs=rngs)
            self.activation = nnx.relu  # a function, not a layer: skipped

    class Model(nnx.Module):  # defined out of alphabetical order, as nnx.iter_modules would list it
        def __init__(self, rngs):
            self.zeta = nnx.Linear(2, 2, rngs=rngs)
            self.blocks = nnx.List([Block(rngs), Block(rngs)])
            self.heads = nnx.data({"b": nnx.Linear(2, 3, rngs=rngs), "a": nnx.Dropout(0.5)})
            self.tail = nnx.Sequential(nnx.Linear(3, 3, rngs=rngs), nnx.relu)
            self.alpha = nnx.Linear(3, 1, rngs=rngs)
            self.width = 7

    model = Model(nnx.Rngs(0))
    found = layers.sublayers(model)
    assert [path for path, _ in found] == ["zeta", "blocks/0/conv", "blocks/1/conv", "heads/b", "heads/a",
                                           "tail/layers/0", "alpha"]
    expected = [model.zeta, model.blocks[0].conv, model.blocks[1].conv, model.heads["b"], model.heads["a"],
                model.tail.layers[0], model.alpha]
    assert all(layer is wanted for (_, layer), wanted in zip(found, expected, strict=True))
