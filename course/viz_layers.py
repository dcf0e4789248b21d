"""What each layer of a model computes: every sub-layer's output in one forward pass, and the
activation and pooling the model applies after each layer. The figures of `course.viz_filters` and
`course.viz_training` are drawn from these; nothing here draws.

    outputs = viz_layers.layer_outputs(model, inputs)  # layer name -> that layer's output (N, ...)

What a trained model computes is read with NNX's intermediate capture (`nnx.capture` with
`method_outputs=nnx.Intermediate`), which records the output of every sub-layer's `__call__`
during one ordinary forward pass. A convolution layer's module returns its pre-activation output;
the activation and pooling that follow it live in the model's own `__call__`, so `MODEL_STAGES`
names them for each course model and `apply_stage` applies the same functions (`nnx.relu`,
`jnp.tanh`, `course.layers.max_pool`) to the captured output.
`tests/test_viz_layers.py` checks that table against the models: a stage's output, fed to the next
layer, gives that layer's captured output.
"""

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from course import layers

# ---------------------------------------------------------------------------------------------
# What follows each layer of the course's models


@dataclasses.dataclass(frozen=True)
class Stage:
    """What a model's `__call__` applies to a layer's output: an activation, then maybe a max-pool."""

    activation: str | None = None  # a key of ACTIVATIONS
    pool: tuple[int, int] | None = None  # (window, stride) of course.layers.max_pool


ACTIVATIONS = {"relu": nnx.relu, "tanh": jnp.tanh}
ACTIVATION_TITLES = {"relu": "ReLU", "tanh": "tanh"}
RELU_POOL2, TANH_POOL2, RELU, TANH = Stage("relu", (2, 2)), Stage("tanh", (2, 2)), Stage("relu"), Stage("tanh")

# Keyed by class name, so that a student's model of the same name (exercises/) is read the same way.
MODEL_STAGES = {
    "SimpleCNN": {"conv1": RELU_POOL2, "conv2": RELU_POOL2, "fc1": RELU, "fc2": RELU},
    "LeNet5": {"c1": TANH_POOL2, "c3": TANH_POOL2, "c5": TANH, "f6": TANH, "output": TANH},
    "LeNet5ReLU": {"c1": RELU_POOL2, "c3": RELU_POOL2, "c5": RELU, "f6": RELU},
    "AlexNet": {"c1": Stage("relu", (3, 2)), "c2": Stage("relu", (3, 2)), "c3": RELU, "c4": RELU,
                "c5": Stage("relu", (3, 2)), "fc1": RELU, "fc2": RELU},
}


def model_stages(model: nnx.Module) -> dict[str, Stage]:
    """The `Stage` after each layer of `model`, by layer name ({} for a model not in MODEL_STAGES)."""
    return MODEL_STAGES.get(type(model).__name__, {})


def apply_stage(outputs: jax.Array, stage: Stage | None) -> dict[str, jax.Array]:
    """A layer's outputs, its activation and its pooled activation, as the model computes them.

    Inputs:
    - outputs: (N, H, W, C) or (N, F) outputs of one layer.
    - stage: what the model applies next, or None when unknown.

    Returns an ordered dict title -> array: "conv" (or "output" for 2-D outputs), then "ReLU" or
    "tanh" when the stage has an activation, then "max-pool WxW/S" when it pools.
    """
    stages = {"conv" if outputs.ndim == 4 else "output": outputs}
    if stage is not None and stage.activation:
        outputs = ACTIVATIONS[stage.activation](outputs)
        stages[ACTIVATION_TITLES[stage.activation]] = outputs
    if stage is not None and stage.pool:
        window, stride = stage.pool
        stages[f"max-pool {window}x{window}/{stride}"] = layers.max_pool(outputs, window, stride)
    return stages


# ---------------------------------------------------------------------------------------------
# Every layer's output in one forward pass


def evaluation_view(model: nnx.Module) -> nnx.Module:
    """A copy of `model` in eval mode (no dropout) sharing its weights; `model` keeps its own mode."""
    view = nnx.clone(model)
    view.eval()
    return view


def layer_names(model: nnx.Module) -> list[str]:
    """Names of `model`'s sub-layers in definition order, nested ones as "block.conv"."""
    return [".".join(map(str, path)) for path, _ in nnx.iter_modules(model) if path]


def forward_with_layers(model: nnx.Module, inputs: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
    """One forward pass of `model` (in eval mode) on `inputs`, every sub-layer's output captured.

    Inputs:
    - model: an nnx.Module; its own mode (train/eval) is left as it was.
    - inputs: (N, ...) a batch of model inputs (already prepared).

    Returns (the model's outputs (N, ...), a dict layer name -> that layer's output (N, ...)) with
    the layers in definition order (see `layer_names`); a layer called twice keeps its first output.
    """
    forward = nnx.capture(evaluation_view(model), nnx.Intermediate, method_outputs=nnx.Intermediate)
    outputs, captured = forward(inputs)
    by_name = {".".join(map(str, path[:-1])): variable.get_value()[0]
               for path, variable in nnx.to_flat_state(captured) if len(path) > 1 and path[-1] == "__call__"}
    return outputs, {name: by_name[name] for name in layer_names(model) if name in by_name}


def layer_outputs(model: nnx.Module, inputs: jax.Array) -> dict[str, jax.Array]:
    """The output of every sub-layer of `model` on `inputs`, by name (see `forward_with_layers`)."""
    return forward_with_layers(model, inputs)[1]


def conv_layer_names(outputs: dict[str, jax.Array]) -> list[str]:
    """The names among `layer_outputs(...)` whose outputs are feature maps (N, H, W, C)."""
    return [name for name, value in outputs.items() if value.ndim == 4]
