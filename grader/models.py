"""Probes and checks shared by every week's models (an `__init__` task and a `__call__` task each).

`__init__` is graded on the layers it creates (kinds, settings, parameter count). `__call__` is graded
on the student's class with the reference's layers and parameters grafted in (see
`probing.grafted_model`): outputs, outputs under `nnx.jit`, parameter gradients, one-example
consistency, dropout in train but not eval mode, and a short training run on synthetic data.
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from grader.checks import Check, all_of, flag, layers_match, parameters_match, same, values
from grader.probing import (attempt, block, describe, grafted_model, normal, reference_model, rng, stand_ins,
                             student_parameters_as_reference)


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to probe one model class of a week module."""

    name: str  # the class name, e.g. "SimpleCNN"
    init_task: str
    call_task: str
    input_shape: tuple  # one example, e.g. (32, 32, 3)
    kwargs: dict = dataclasses.field(default_factory=dict)
    loss: str = "cross_entropy"  # or "mse_pm1" (tanh outputs) or "nll" (log-probabilities)
    stand_ins: dict = dataclasses.field(default_factory=dict)
    points_init: float = 4
    points_call: float = 10


def _subset(given: dict, prefix: str) -> dict:
    return {key[len(prefix):]: value for key, value in given.items() if key.startswith(prefix)}


def setup(week, specs: list[ModelSpec]) -> dict:
    """Reference-only: each model's layer list and (random-bias) parameters, keys prefixed by its name."""
    evidence = {}
    for spec in specs:
        with stand_ins(week, spec.stand_ins):
            model_evidence = reference_model(getattr(week, spec.name), spec.kwargs)
        evidence.update({f"{spec.name}/{key}": value for key, value in model_evidence.items()})
    return evidence


def probe_init(spec: ModelSpec):
    def probe(week, given):
        with stand_ins(week, spec.stand_ins):
            model = getattr(week, spec.name)(**spec.kwargs, rngs=nnx.Rngs(0))
        records = describe(model)
        count = sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))
        return {"layers": json.dumps(records), "parameter_count": count}

    return probe


def _loss(kind: str, outputs, labels):
    if kind == "mse_pm1":
        targets = 2.0 * jax.nn.one_hot(labels, outputs.shape[-1]) - 1.0
        return optax.squared_error(outputs, targets).mean()
    if kind == "nll":
        return -jnp.take_along_axis(outputs, labels[:, None], axis=-1).mean()
    return optax.softmax_cross_entropy_with_integer_labels(outputs, labels).mean()


def probe_call(spec: ModelSpec):
    def probe(week, given):
        model_given = _subset(given, spec.name + "/")
        with stand_ins(week, spec.stand_ins):
            model, _ = grafted_model(getattr(week, spec.name), model_given, spec.kwargs)
        images = normal(100, (4, *spec.input_shape))
        labels = rng(101).integers(0, 10, size=4).astype(np.int32)
        model.eval()
        results = {"eval_output": attempt(lambda: block(model(images)))}
        results["first_row"] = attempt(lambda: block(model(images[:1])))
        results["jit_output"] = attempt(lambda: block(nnx.jit(lambda m, x: m(x))(model, images)))
        results.update(_gradients(model, images, model_given))
        model.train()
        first = attempt(lambda: block(model(images)))
        second = attempt(lambda: block(model(images)))
        if isinstance(first, np.ndarray) and isinstance(second, np.ndarray) and isinstance(results["eval_output"], np.ndarray):
            results["train_differs_from_eval"] = bool(first.shape != results["eval_output"].shape
                                                      or not np.allclose(first, results["eval_output"]))
            results["train_calls_differ"] = bool(first.shape != second.shape or not np.allclose(first, second))
        else:
            failed = next(value for value in (first, second, results["eval_output"]) if not isinstance(value, np.ndarray))
            results["train_differs_from_eval"] = results["train_calls_differ"] = failed
        model.eval()
        results["losses"] = attempt(lambda: _short_training(model, spec, images, labels))
        return results

    return probe


def _gradients(model, images, model_given) -> dict:
    """Gradients of a fixed random projection of the outputs, keyed by the reference's parameter paths.

    Computed under `jax.jit` (one compilation instead of one per operation: seconds less per model),
    and again without it when the model cannot be jitted, which its own check reports."""
    def gradients(transform):
        graph, params, rest = nnx.split(model, nnx.Param, ...)
        shape = jax.eval_shape(lambda: model(images)).shape if transform is jax.jit else model(images).shape
        weights = normal(102, shape)

        def projected(params):
            return jnp.sum(nnx.merge(graph, params, rest)(images) * weights)

        grads = transform(jax.grad(projected))(params)
        flat = {"/".join(str(part) for part in path): np.asarray(value[...]) for path, value in nnx.to_flat_state(grads)}
        return _rename_to_reference(model, flat, model_given)

    found = attempt(gradients, jax.jit)
    if not isinstance(found, dict):
        found = attempt(gradients, lambda function: function)
    if not isinstance(found, dict):
        return {"grad": found}
    return {f"grad:{path}": value for path, value in found.items()}


def _rename_to_reference(model, flat: dict, model_given: dict) -> dict:
    """Gradients keyed by the reference's parameter paths (grafted layers matched kind by kind)."""
    layer_paths = student_parameters_as_reference(model, model_given)
    renamed = {}
    for path, value in flat.items():
        layer, name = path.rsplit("/", 1)
        renamed[f"{layer_paths.get(layer, layer)}/{name}"] = value
    return renamed


def _short_training(model, spec: ModelSpec, images, labels) -> np.ndarray:
    """Losses of 5 plain SGD steps (eval mode: no dropout) on one synthetic batch."""
    optimizer = nnx.Optimizer(model, optax.sgd(0.05), wrt=nnx.Param)

    @nnx.jit
    def step(model, optimizer):
        loss, grads = nnx.value_and_grad(lambda m: _loss(spec.loss, m(images), labels))(model)
        optimizer.update(model, grads)
        return loss

    return np.array([float(step(model, optimizer)) for _ in range(5)], np.float32)



def checks(spec: ModelSpec) -> list[Check]:
    init = f"{spec.name}.__init__"
    call = f"{spec.name}.__call__"
    p = spec.points_call
    return [
        Check(f"{spec.name}: layers and parameter count", spec.init_task, init, spec.points_init, f"{spec.name}.init",
              layers_match(), hint="compare each layer's sizes, kernel, stride and padding with the docstring"),
        Check(f"{spec.name}: outputs with reference parameters", spec.call_task, call, p * 0.4, f"{spec.name}.call",
              all_of(same("eval_output", "outputs in eval mode"), values("first_row", "one example alone")),
              hint="check the order of layers, each activation, the pooling, and the flatten order (N, H*W*C)"),
        Check(f"{spec.name}: works under nnx.jit", spec.call_task, call, p * 0.1, f"{spec.name}.call",
              values("jit_output", "outputs under nnx.jit"),
              hint="no Python branching on array values, no numpy calls on traced arrays"),
        Check(f"{spec.name}: parameter gradients", spec.call_task, call, p * 0.2, f"{spec.name}.call",
              parameters_match("grad:", "gradient of every parameter"),
              hint="every layer must be used once, in order; no jax.lax.stop_gradient, no numpy conversions"),
        Check(f"{spec.name}: dropout only in training", spec.call_task, call, p * 0.15, f"{spec.name}.call",
              all_of(flag("train_differs_from_eval", "train mode differs from eval mode"),
                     flag("train_calls_differ", "two train-mode calls draw different dropout masks")),
              hint="use the nnx.Dropout layer made in __init__; model.train()/model.eval() switch it"),
        Check(f"{spec.name}: short training on synthetic data", spec.call_task, call, p * 0.15, f"{spec.name}.call",
              values("losses", "losses of 5 SGD steps from the reference parameters", rtol=2e-2, atol=2e-3),
              hint="the loss must fall as the reference's does: check the gradients first",
              visibility="after_due_date"),
    ]
