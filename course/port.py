"""Weights from the PyTorch original: load its `state_dict`s into the JAX models.

    course port simple_cnn.pt --model simple_cnn --out runs/ported
    course eval runs/ported --dataset cifar10      # its test accuracy (`course.eval_cli`)

`load_state_dict(model, "simple_cnn", state_dict)` copies a PyTorch `state_dict` (a mapping from
parameter names to torch tensors or numpy arrays) into an NNX model of the course. PyTorch and Flax
store the same numbers in different layouts:
  * convolution kernels: PyTorch (out, in, kh, kw) -> Flax (kh, kw, in, out);
  * linear weights: PyTorch (out, in) -> Flax (in, out); biases are the same;
  * the first linear layer after a convolution reads a flattened feature map: PyTorch flattens
    (C, H, W), the JAX models flatten (H, W, C), so that layer's input rows are reordered.

The names a checkpoint may use, per model (each `NAME` stands for `NAME.weight` and `NAME.bias`; a
leading `module.` from `nn.DataParallel` is ignored):

  mlp          fc: fc1 fc2 fc3 fc4 (the Fashion-MNIST `Classifier`)
               network: hidden_layers.0 hidden_layers.1 hidden_layers.2 output (`fc_model.Network`)
               jax: hidden_layers.0 hidden_layers.1 hidden_layers.2 output_layer
               sequential: 0 2 4 6 (nn.Sequential of Linear, ReLU, ...)
               sequential_dropout: 0 3 6 9 (nn.Sequential of Linear, ReLU, Dropout, ...)
  simple_cnn   attributes: conv1 conv2 fc1 fc2 fc3
  lenet5       jax: c1 c3 c5 f6 output
               numbered: conv1 conv2 conv3 fc1 fc2
               sequential: feature_extractor.0 .3 .6, classifier.0 .2
  lenet5_relu  jax: c1 c3 c5 f6 output
               numbered: conv1 conv2 fc1 fc2 fc3
  alexnet      jax: c1 c2 c3 c4 c5 fc1 fc2 fc3
               numbered: conv1 conv2 conv3 conv4 conv5 fc1 fc2 fc3
               sequential: features.0 .3 .6 .8 .10, classifier.1 .4 .6 (torchvision's layout)

A checkpoint file (`.pt`, `.pth` or `.npz`) is read by `course.state_dicts.read_state_dict`.
Names or shapes that do not fit raise `PortError` saying what is missing, unexpected or
mis-shaped, and which model the checkpoint looks like when it fits another one.
"""

import argparse
import dataclasses
import json
import math
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from course import registry
from course.layers import sublayers
from course.state_dicts import PortError, read_state_dict, to_arrays

# The trainable layers of each reference model, in the order data flows through them (and defined): the
# "jax" naming. A model of other names or structure is matched by `trainable_layers`, in definition order.
MODEL_LAYERS = {
    "mlp": ("hidden_layers.0", "hidden_layers.1", "hidden_layers.2", "output_layer"),
    "simple_cnn": ("conv1", "conv2", "fc1", "fc2", "fc3"),
    "lenet5": ("c1", "c3", "c5", "f6", "output"),
    "lenet5_relu": ("c1", "c3", "c5", "f6", "output"),
    "alexnet": ("c1", "c2", "c3", "c4", "c5", "fc1", "fc2", "fc3"),
}

# The PyTorch module names each model's checkpoints may use: one name per entry of MODEL_LAYERS.
NAMINGS = {
    "mlp": {
        "fc": ("fc1", "fc2", "fc3", "fc4"),
        "network": ("hidden_layers.0", "hidden_layers.1", "hidden_layers.2", "output"),
        "jax": MODEL_LAYERS["mlp"],
        "sequential": ("0", "2", "4", "6"),
        "sequential_dropout": ("0", "3", "6", "9"),
    },
    "simple_cnn": {"attributes": MODEL_LAYERS["simple_cnn"]},
    "lenet5": {
        "jax": MODEL_LAYERS["lenet5"],
        "numbered": ("conv1", "conv2", "conv3", "fc1", "fc2"),
        "sequential": ("feature_extractor.0", "feature_extractor.3", "feature_extractor.6",
                       "classifier.0", "classifier.2"),
    },
    "lenet5_relu": {
        "jax": MODEL_LAYERS["lenet5_relu"],
        "numbered": ("conv1", "conv2", "fc1", "fc2", "fc3"),
    },
    "alexnet": {
        "jax": MODEL_LAYERS["alexnet"],
        "numbered": ("conv1", "conv2", "conv3", "conv4", "conv5", "fc1", "fc2", "fc3"),
        "sequential": ("features.0", "features.3", "features.6", "features.8", "features.10",
                       "classifier.1", "classifier.4", "classifier.6"),
    },
}
MAX_LISTED = 8


# ---------------------------------------------------------------------------------------------
# Matching names and shapes


def trainable_layers(model: nnx.Module) -> tuple[str, ...]:
    """The paths ("conv1", "blocks.0") of `model`'s layers that hold a kernel, in definition order
    (`course.layers.sublayers`): matched one to one, in order, with the original's layers, so that a
    model keeps whatever names and containers its author gave it."""
    return tuple(path.replace("/", ".") for path, layer in sublayers(model) if hasattr(layer, "kernel"))


def layer_pairs(model: nnx.Module, model_name: str, naming: str) -> list[tuple[str, str]]:
    """(layer path in `model`, PyTorch module name) pairs; PortError when their numbers differ."""
    layers, torch_names = trainable_layers(model), NAMINGS[model_name][naming]
    if len(layers) != len(torch_names):
        raise PortError(f"the {model_name!r} model has {len(layers)} layers with weights ({', '.join(layers)}); "
                        f"the original has {len(torch_names)}")
    return list(zip(layers, torch_names))


def torch_shapes(model: nnx.Module, model_name: str, naming: str) -> dict[str, tuple[int, ...]]:
    """{PyTorch name: PyTorch shape} that `model`'s parameters have in the checkpoint naming `naming`."""
    params = nnx.state(model, nnx.Param)
    shapes = {}
    for layer, torch_name in layer_pairs(model, model_name, naming):
        kernel_shape = tuple(_layer(params, layer)["kernel"].shape)
        if len(kernel_shape) == 4:  # (kh, kw, in, out) -> (out, in, kh, kw)
            kernel_shape = (kernel_shape[3], kernel_shape[2], kernel_shape[0], kernel_shape[1])
        else:  # (in, out) -> (out, in)
            kernel_shape = kernel_shape[::-1]
        shapes[f"{torch_name}.weight"] = kernel_shape
        shapes[f"{torch_name}.bias"] = (kernel_shape[0],)
    return shapes


def _layer(params, layer: str):
    node = params
    for part in layer.split("."):
        node = node[int(part) if part.isdigit() else part]
    return node


def _listed(names) -> str:
    names = sorted(names)
    shown = ", ".join(names[:MAX_LISTED])
    return shown + (f" ... ({len(names) - MAX_LISTED} more)" if len(names) > MAX_LISTED else "")


def choose_naming(arrays: dict[str, np.ndarray], model: nnx.Module, model_name: str) -> str:
    """The naming of NAMINGS[model_name] that `arrays` uses, checked name by name and shape by shape.

    Raises PortError listing missing, unexpected and mis-shaped entries (for the naming that shares
    the most names with `arrays`), and the model the checkpoint looks like, if any.
    """
    given = set(arrays)
    candidates = {naming: torch_shapes(model, model_name, naming) for naming in NAMINGS[model_name]}
    naming = max(candidates, key=lambda name: len(given & set(candidates[name])))
    expected = candidates[naming]
    problems = []
    if not given & set(expected):
        problems.append(f"none of its names fit; expected {_listed(expected)} "
                        f"(namings accepted: {', '.join(NAMINGS[model_name])}), got {_listed(given)}")
    else:
        if missing := set(expected) - given:
            problems.append(f"missing {_listed(missing)}")
        if unexpected := given - set(expected):
            problems.append(f"unexpected {_listed(unexpected)}")
        wrong = [f"{name} is {tuple(arrays[name].shape)}, expected {shape}"
                 for name, shape in expected.items() if name in given and arrays[name].shape != shape]
        if wrong:
            more = f" ... ({len(wrong) - MAX_LISTED} more)" if len(wrong) > MAX_LISTED else ""
            problems.append("wrong shapes: " + "; ".join(wrong[:MAX_LISTED]) + more)
    if not problems:
        return naming
    message = f"checkpoint does not fit model {model_name!r} (naming {naming!r}): " + "; ".join(problems)
    if (other := look_alike(arrays, exclude=model_name)) is not None:
        message += f". It looks like a checkpoint of {other!r}: use --model {other}"
    raise PortError(message)


def look_alike(arrays: dict[str, np.ndarray], exclude: str | None = None) -> str | None:
    """The course model whose parameters `arrays` has, by names and shapes, or by shapes alone; or None."""
    recipes = registry.recipes()
    shape_matches = []
    given_shapes = sorted(array.shape for array in arrays.values())
    for model_name in MODEL_LAYERS:
        if model_name == exclude:
            continue
        abstract = nnx.eval_shape(lambda: recipes[model_name].model(nnx.Rngs(0)))
        for naming in NAMINGS[model_name]:
            expected = torch_shapes(abstract, model_name, naming)
            if expected == {name: array.shape for name, array in arrays.items()}:
                return model_name
            if sorted(expected.values()) == given_shapes and model_name not in shape_matches:
                shape_matches.append(model_name)
    return shape_matches[0] if shape_matches else None


# ---------------------------------------------------------------------------------------------
# Converting


def convert_conv_kernel(weight: np.ndarray) -> np.ndarray:
    """PyTorch Conv2d weight (out, in, kh, kw) -> Flax Conv kernel (kh, kw, in, out)."""
    return weight.transpose(2, 3, 1, 0)


def convert_linear_kernel(weight: np.ndarray, feature_map: tuple[int, int, int] | None = None) -> np.ndarray:
    """PyTorch Linear weight (out, in) -> Flax Linear kernel (in, out).

    Inputs:
      weight: (out, in).
      feature_map: (C, H, W) when the layer reads a flattened convolutional feature map, with
        C * H * W = in; PyTorch flattened it (C, H, W), the JAX models flatten it (H, W, C).

    Returns:
      (in, out); with a feature map, row h * W * C + w * C + c holds PyTorch's column c * H * W + h * W + w.
    """
    if feature_map is None:
        return weight.T
    channels, height, width = feature_map
    outputs = weight.shape[0]
    return weight.reshape(outputs, channels, height, width).transpose(2, 3, 1, 0).reshape(-1, outputs)


def convert(arrays: dict[str, np.ndarray], model: nnx.Module, model_name: str, naming: str) -> dict:
    """Checked PyTorch arrays -> the nested {layer: {"kernel", "bias"}} dict of `model`'s `nnx.Param`s."""
    params = nnx.state(model, nnx.Param)
    converted = {}
    channels = None  # output channels of the last convolution met, until a linear layer reads them
    for layer, torch_name in layer_pairs(model, model_name, naming):
        weight, bias = arrays[f"{torch_name}.weight"], arrays[f"{torch_name}.bias"]
        if weight.ndim == 4:
            kernel, channels = convert_conv_kernel(weight), weight.shape[0]
        else:
            feature_map = None
            if channels is not None:
                side = math.isqrt(weight.shape[1] // channels)
                feature_map, channels = (channels, side, side), None
            kernel = convert_linear_kernel(weight, feature_map)
        node = converted
        *parents, last = [int(part) if part.isdigit() else part for part in layer.split(".")]
        for part in parents:
            node = node.setdefault(part, {})
        dtype = _layer(params, layer)["kernel"].dtype
        node[last] = {"kernel": jnp.asarray(kernel, dtype), "bias": jnp.asarray(bias, dtype)}
    return converted


def load_state_dict(model: nnx.Module, model_name: str, state_dict) -> str:
    """Copies a PyTorch state_dict of the original `model_name` into `model`, in place.

    Inputs:
      model: the JAX model, e.g. `SimpleCNN(rngs=nnx.Rngs(0))`.
      model_name: its course name, one of MODEL_LAYERS.
      state_dict: {name: torch tensor or numpy array} in PyTorch's layout, named as in NAMINGS.

    Returns:
      the naming the checkpoint used. Raises PortError when it does not fit the model.
    """
    if model_name not in MODEL_LAYERS:
        raise PortError(f"unknown model {model_name!r}; models with a PyTorch original: {', '.join(MODEL_LAYERS)}")
    arrays = to_arrays(state_dict)
    naming = choose_naming(arrays, model, model_name)
    params = nnx.state(model, nnx.Param)
    nnx.replace_by_pure_dict(params, convert(arrays, model, model_name, naming))
    nnx.update(model, params)
    return naming


def ported_model(model_name: str, state_dict, *, seed: int = 0, factory=None) -> tuple[nnx.Module, str]:
    """A new model holding a PyTorch state_dict's weights, without drawing random initial weights.

    Drawing AlexNet's 43.5M initial weights takes seconds on a CPU only to overwrite them; here the
    model is built abstractly (`nnx.eval_shape`), its parameters come from `state_dict`, and only its
    other state (dropout's random key) is computed, by a jitted build whose unused weights XLA drops.

    Inputs:
      model_name: one of MODEL_LAYERS.
      state_dict: as `load_state_dict`.
      seed: seeds the model's `nnx.Rngs` (dropout), as `recipe.model(nnx.Rngs(seed))` would.
      factory: builds the model from `nnx.Rngs`; default: the course recipe's.

    Returns:
      (model, naming). Raises PortError when the checkpoint does not fit.
    """
    if model_name not in MODEL_LAYERS:
        raise PortError(f"unknown model {model_name!r}; models with a PyTorch original: {', '.join(MODEL_LAYERS)}")
    if factory is None:
        factory = registry.recipes()[model_name].model
    abstract = nnx.eval_shape(lambda: factory(nnx.Rngs(seed)))
    graphdef, abstract_params, _ = nnx.split(abstract, nnx.Param, ...)
    other_state = jax.jit(lambda: nnx.split(factory(nnx.Rngs(seed)), nnx.Param, ...)[2])()
    model = nnx.merge(graphdef, abstract_params, other_state)
    naming = load_state_dict(model, model_name, state_dict)
    if any(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree.leaves(nnx.state(model))):
        raise RuntimeError(f"MODEL_LAYERS[{model_name!r}] does not cover every parameter of the model")
    return model, naming


# ---------------------------------------------------------------------------------------------
# `course port`


def port(checkpoint: str | Path, model_name: str, out_dir: str | Path, *, dataset: str | None = None,
         epochs: int | None = None, batch_size: int | None = None, learning_rate: float | None = None,
         seed: int = 0, max_train_examples: int | None = None, target: str | None = None) -> Path:
    """Writes a PyTorch checkpoint as a course checkpoint, `out_dir/checkpoint/{best,last}`.

    The settings (dataset, epochs, ...) default to the recipe's, like `course train`, so that
    `course train MODEL --out OUT_DIR --resume` with the same options fine-tunes the ported weights
    from epoch 1 with a fresh optimizer. Returns the path of `best`.
    """
    from course import checkpoints, runs, train

    recipes = registry.recipes(target)
    if model_name not in MODEL_LAYERS:
        raise PortError(f"unknown model {model_name!r}; models with a PyTorch original: {', '.join(MODEL_LAYERS)}")
    recipe = recipes[model_name]
    settings = runs.RunSettings(model_name, dataset or recipe.dataset, epochs or recipe.epochs,
                                batch_size or recipe.batch_size, learning_rate or recipe.learning_rate, seed,
                                max_train_examples)
    if settings.dataset not in recipe.datasets:
        raise PortError(f"model {model_name!r} does not train on {settings.dataset!r}; "
                        f"valid datasets for it: {', '.join(recipe.datasets)}")
    model, naming = ported_model(model_name, read_state_dict(checkpoint), seed=seed, factory=recipe.model)
    # As `train.build` makes it: a schedule's optimizer state differs from a constant rate's.
    schedule = train.learning_rate_schedule(recipe, settings.learning_rate, settings.epochs, steps_per_epoch=1)
    optimizer = nnx.Optimizer(model, recipe.optimizer(schedule), wrt=nnx.Param)
    info = {"settings": dataclasses.asdict(settings), "history": [], "best_accuracy": -1.0, "epoch": 0,
            "ported_from": {"checkpoint": str(Path(checkpoint).resolve()), "naming": naming}}
    folder = Path(out_dir) / "checkpoint"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("best", "last"):
        checkpoints.save_checkpoint(folder / name, model, optimizer, info)
    return folder / "best"


def main_port(argv: list[str] | None = None) -> int:
    """`course port CHECKPOINT --model NAME --out DIR [...]`; returns the exit code (2 for a bad checkpoint)."""
    parser = argparse.ArgumentParser(prog="course port",
                                     description="Convert a PyTorch state_dict of the original course to a course checkpoint.")
    parser.add_argument("checkpoint", help="a torch.save'd state_dict (.pt/.pth) or an .npz of the same names")
    parser.add_argument("--model", required=True, choices=sorted(MODEL_LAYERS))
    parser.add_argument("--out", required=True, help="run folder; the checkpoint goes to OUT/checkpoint/{best,last}")
    parser.add_argument("--dataset", help="recorded for `course train --resume` and `course eval` (default: the recipe's)")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-train-examples", type=int)
    parser.add_argument("--target", help=registry.TARGET_HELP)
    args = parser.parse_args(argv)
    try:
        path = port(args.checkpoint, args.model, args.out, dataset=args.dataset, epochs=args.epochs,
                    batch_size=args.batch_size, learning_rate=args.lr, seed=args.seed,
                    max_train_examples=args.max_train_examples, target=args.target)
    except (PortError, registry.TargetError) as error:
        print(f"course port: error: {error}", file=sys.stderr)
        return 2
    naming = json.loads((path / "info.json").read_text())["ported_from"]["naming"]
    print(f"{args.model}: ported {args.checkpoint} (naming {naming!r}) to {path} and {path.with_name('last')}")
    return 0
