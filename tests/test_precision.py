"""course.precision: bfloat16 products with float32 parameters, for every model of the course."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from course import data, precision, registry, steps, train

RECIPES = registry.recipes()

# bfloat16 keeps 8 bits of mantissa: each operand is rounded by up to 2**-9 (0.2%) of itself, and
# the errors of a few layers add up. Measured on these models: outputs within 1.4% of the output
# scale (LeNet-5, whose tanh output layer is steep). A gradient sums many per-example terms that
# largely cancel, so its relative error is larger: 1-10% of its norm (measured on 3 seeds), while its
# direction stays the same (cosine similarity with float32's at least 0.995).
OUTPUT_TOLERANCE = 3e-2
GRADIENT_TOLERANCE = 0.15
GRADIENT_COSINE = 0.99


def random_batch(recipe, count, seed=0):
    height, width, channels, _ = data.IMAGE_DATASETS[recipe.dataset]
    rng = np.random.default_rng(seed)
    raw = rng.integers(0, 256, (count, height, width, channels), dtype=np.uint8)
    return recipe.prepare(raw), jnp.asarray(rng.integers(0, 10, count), jnp.int32)


def model_pair(recipe, seed=0):
    """The same model twice, from the same seed: in float32 and in bf16, both in eval mode."""
    float32, bf16 = recipe.model(nnx.Rngs(seed)), precision.set_precision(recipe.model(nnx.Rngs(seed)), "bf16")
    float32.eval(), bf16.eval()
    return float32, bf16


def relative_error(actual, expected):
    return float(jnp.max(jnp.abs(actual - expected)) / jnp.max(jnp.abs(expected)))


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_bf16_keeps_float32_parameters_and_outputs_close_to_float32(name):
    recipe = RECIPES[name]
    images, _ = random_batch(recipe, 2 if name == "alexnet" else 16)
    float32, bf16 = model_pair(recipe)
    assert all(param.dtype == jnp.float32 for param in jax.tree.leaves(nnx.state(bf16, nnx.Param)))
    expected, actual = float32(images), bf16(images)
    assert actual.dtype == jnp.float32
    assert relative_error(actual, expected) < OUTPUT_TOLERANCE
    assert relative_error(actual, expected) > 0  # bf16 is really in use: the outputs are not float32's


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_every_product_takes_bfloat16_operands_and_gives_float32(name):
    recipe = RECIPES[name]
    images, _ = random_batch(recipe, 2)
    _, bf16 = model_pair(recipe)
    products = [equation for equation in jax.make_jaxpr(bf16)(images).eqns
                if equation.primitive.name in ("dot_general", "conv_general_dilated")]
    layers = [module for _, module in nnx.iter_modules(bf16) if isinstance(module, (nnx.Linear, nnx.Conv))]
    assert len(products) == len(layers)
    for equation in products:
        assert [operand.aval.dtype for operand in equation.invars] == [jnp.bfloat16, jnp.bfloat16]
        assert equation.outvars[0].aval.dtype == jnp.float32


@pytest.mark.parametrize("name", ["mlp", "simple_cnn", "lenet5", "lenet5_relu"])
def test_bf16_gradients_are_float32_and_close_to_float32s(name):
    recipe = RECIPES[name]
    images, labels = random_batch(recipe, 32, seed=1)
    gradients = []
    for model in model_pair(recipe, seed=2):
        grads = jax.tree.leaves(nnx.grad(lambda model: steps.softmax_cross_entropy(model(images), labels))(model))
        assert all(grad.dtype == jnp.float32 for grad in grads)
        gradients.append(jnp.concatenate([grad.ravel() for grad in grads]))
    expected, actual = gradients
    assert float(jnp.linalg.norm(actual - expected) / jnp.linalg.norm(expected)) < GRADIENT_TOLERANCE
    assert float(actual @ expected / jnp.linalg.norm(actual) / jnp.linalg.norm(expected)) > GRADIENT_COSINE


def test_a_bf16_train_step_keeps_the_optimizer_state_in_float32():
    recipe = RECIPES["lenet5_relu"]
    settings = train.Settings("lenet5_relu", recipe.dataset, 1, 16, recipe.learning_rate, 0, precision="bf16")
    model, optimizer = train.build(recipe, settings, steps_per_epoch=10)
    metrics = recipe.train_step(model, optimizer, *random_batch(recipe, 16))
    assert metrics["loss"].dtype == jnp.float32 and np.isfinite(float(metrics["loss"]))
    floats = [leaf for leaf in jax.tree.leaves(nnx.state((model, optimizer))) if jnp.issubdtype(leaf.dtype, jnp.floating)]
    assert floats and all(leaf.dtype == jnp.float32 for leaf in floats)


def test_training_in_bf16_converges_like_float32(tmp_path):
    """LeNet-5 (ReLU) on the synthetic shapes, 3 epochs: bf16 learns as float32 does (both about 93%)."""
    recipe = RECIPES["lenet5_relu"]
    runs = {}
    for name in precision.PRECISIONS:
        runs[name] = train.fit(recipe, model_name="lenet5_relu", dataset="shapes_gray", epochs=3, precision=name,
                               max_train_examples=3000, out_dir=tmp_path / name, progress=False)
    for history in runs.values():
        assert history[-1]["train_loss"] < 0.5 * history[0]["train_loss"]
        assert history[-1]["test_accuracy"] > 0.85
    assert abs(runs["bf16"][-1]["test_accuracy"] - runs["float32"][-1]["test_accuracy"]) < 0.05
    assert runs["bf16"][-1]["test_loss"] != runs["float32"][-1]["test_loss"]
    assert json.loads((tmp_path / "bf16" / "metrics.json").read_text())["settings"]["precision"] == "bf16"


def test_float32_restores_the_exact_outputs_and_bad_precisions_are_refused():
    recipe = RECIPES["lenet5"]
    images, _ = random_batch(recipe, 8)
    float32, model = model_pair(recipe)
    precision.set_precision(model, "float32")
    np.testing.assert_array_equal(model(images), float32(images))
    with pytest.raises(ValueError, match="precision must be one of float32, bf16; got 'fp16'"):
        precision.set_precision(model, "fp16")

    class NoLayers(nnx.Module):
        def __call__(self, images):
            return images

    with pytest.raises(ValueError, match="NoLayers has no nnx.Linear or nnx.Conv layer"):
        precision.set_precision(NoLayers(), "bf16")
