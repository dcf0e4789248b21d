"""course.viz_layers: every layer's captured output, and MODEL_STAGES checked against each model."""

import jax
import numpy as np
import pytest
from flax import nnx

from course import viz_layers
from solutions.week4_simple_cnn import SimpleCNN
from solutions.week5_lenet import LeNet5, LeNet5ReLU
from solutions.week6_alexnet import AlexNet
from tests.viz_helpers import random_model


def test_forward_with_layers_gives_the_models_outputs_and_each_layers_in_order():
    model = random_model(lambda rngs: LeNet5(rngs=rngs))
    inputs = jax.random.uniform(jax.random.key(4), (2, 32, 32, 1))
    outputs, by_layer = viz_layers.forward_with_layers(model, inputs)
    assert list(by_layer) == viz_layers.layer_names(model) == ["c1", "c3", "c5", "f6", "output"]
    np.testing.assert_allclose(outputs, model(inputs), rtol=1e-5, atol=1e-6)
    assert viz_layers.conv_layer_names(by_layer) == ["c1", "c3", "c5"]


@pytest.mark.parametrize("build, input_shape", [
    (lambda rngs: SimpleCNN(rngs=rngs), (2, 32, 32, 3)),
    (lambda rngs: LeNet5(rngs=rngs), (2, 32, 32, 1)),
    (lambda rngs: LeNet5ReLU(rngs=rngs), (2, 32, 32, 1)),
    (lambda rngs: AlexNet(input_size=67, rngs=rngs), (2, 67, 67, 3)),
], ids=["SimpleCNN", "LeNet5", "LeNet5ReLU", "AlexNet"])
def test_model_stages_reproduce_each_models_forward_pass(build, input_shape):
    """Each layer's stage (activation, pool) from MODEL_STAGES, fed to the next layer, gives its captured output."""
    model = random_model(build)
    model.eval()
    outputs = viz_layers.layer_outputs(model, jax.random.uniform(jax.random.key(2), input_shape))
    stages = viz_layers.model_stages(model)
    chain = [name for name in outputs if not isinstance(getattr(model, name), nnx.Dropout)]
    assert set(stages) <= set(chain)
    for previous, following in zip(chain, chain[1:]):
        activated = list(viz_layers.apply_stage(outputs[previous], stages.get(previous)).values())[-1]
        if isinstance(getattr(model, following), nnx.Linear):
            activated = activated.reshape(activated.shape[0], -1)
        np.testing.assert_allclose(getattr(model, following)(activated), outputs[following], rtol=1e-4, atol=1e-5)
