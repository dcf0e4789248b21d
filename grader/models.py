"""Probes and checks shared by every week's models (an `__init__` task and a `__call__` task each).

`__init__` is graded on the layers it creates (kinds, settings, parameter count), at the default
arguments and at others (more or fewer classes, other hidden sizes, another dropout rate). `__call__`
is graded on the student's own model with each layer replaced by the reference's (see
`probing.grafted_model`): outputs (and, when they differ, the first layer whose input differs),
parameter gradients, dropout (off in eval mode, in the reference's places, a fresh mask per call)
and a short training run on synthetic data. Whether the outputs are the same under `nnx.jit` is
reported to the student, not scored: the graded process can make jit leave the model eager
(`grader.judges.jit_agrees`).
"""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from grader import probing
from grader.checks import Check, Part, reading
from grader.judges import (DEFAULT_ATOL, DEFAULT_RTOL, all_of, compare, flag, hidden, jit_agrees, layers_match,
                           parameters_match, values)
from grader.probing import attempt, block, describe, grafted_model, normal, reference_model, rng, stand_ins


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """How to probe one model class of a week module."""

    name: str  # the class name, e.g. "SimpleCNN"
    init_task: str
    call_task: str
    input_shape: tuple  # one example, e.g. (32, 32, 3)
    kwargs: dict = dataclasses.field(default_factory=dict)  # the arguments both tasks are graded at
    other_kwargs: dict = dataclasses.field(default_factory=dict)  # non-default ones `__init__` must follow
    loss: str = "cross_entropy"  # or "mse_pm1" (tanh outputs) or "nll" (log-probabilities)
    stand_ins: dict = dataclasses.field(default_factory=dict)
    points_init: float = 4
    points_call: float = 10

    def built(self, kwargs: dict) -> str:
        """How the model was built, for feedback: "AlexNet(input_size=99)"."""
        return f"{self.name}({', '.join(f'{key}={value!r}' for key, value in kwargs.items())})"

    def probed(self) -> str:
        return f"{self.built(self.kwargs)} on inputs of shape {(BATCH, *self.input_shape)}"


BATCH = 4
OTHER = "@other"  # evidence key suffix of the model built with `other_kwargs`


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
        results = {}
        for suffix, kwargs in (("", spec.kwargs), (OTHER, {**spec.kwargs, **spec.other_kwargs})):
            with stand_ins(week, spec.stand_ins):
                model = attempt(probing.abstract_model, getattr(week, spec.name), kwargs)
            if isinstance(model, probing.PartFailure):
                results["layers" + suffix] = results["parameter_count" + suffix] = model
                continue
            results["layers" + suffix] = json.dumps(describe(model))
            results["parameter_count" + suffix] = sum(
                int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))
        return results

    return probe


def _loss(kind: str, outputs, labels):
    if kind == "mse_pm1":
        targets = 2.0 * jax.nn.one_hot(labels, outputs.shape[-1]) - 1.0
        return optax.squared_error(outputs, targets).mean()
    if kind == "nll":
        return -jnp.take_along_axis(outputs, labels[:, None], axis=-1).mean()
    return optax.softmax_cross_entropy_with_integer_labels(outputs, labels).mean()


def _recording_inputs(function):
    """(function(), the layer inputs it recorded as evidence: "input:<order>:<kind>:<reference path>")."""
    probing.LAYER_INPUTS = []
    try:
        result = attempt(function)
        recorded = probing.LAYER_INPUTS
    finally:
        probing.LAYER_INPUTS = None
    evidence = {}
    for index, (path, kind, array) in enumerate(recorded[:100]):
        evidence[f"input:{index:02d}:{kind}:{path}"] = array
    return result, evidence


def _dropout_feeds(recorded: dict) -> str:
    """Where dropout sits, from recorded layer inputs: the layer after each dropout call, in order."""
    order = [key.split(":", 3)[2:] for key in sorted(recorded)]
    feeds = []
    for index, (kind, _) in enumerate(order):
        if kind == "Dropout":
            following = next((path for later_kind, path in order[index + 1:] if later_kind != "Dropout"), None)
            feeds.append(f"'{following}'" if following else "the outputs")
    return ", ".join(feeds)


def probe_call(spec: ModelSpec):
    def probe(week, given):
        model_given = _subset(given, spec.name + "/")
        with stand_ins(week, spec.stand_ins):
            model = grafted_model(getattr(week, spec.name), model_given, spec.kwargs)
        images = normal(100, (BATCH, *spec.input_shape))
        labels = rng(101).integers(0, 10, size=BATCH).astype(np.int32)
        model.eval()
        eval_output, recorded = _recording_inputs(lambda: block(model(images)))
        results = {"eval_output": eval_output, **recorded}
        again = attempt(lambda: block(model(images)))
        results["eval_repeatable"] = _both_arrays(eval_output, again) or bool(
            eval_output.shape == again.shape and np.array_equal(eval_output, again, equal_nan=True))
        jitted = nnx.jit(lambda m, x: m(x))
        results["jit_output"] = attempt(lambda: block(jitted(model, images)))
        # one example alone, compiled (one compilation, not one per operation), eager if that fails
        results["first_row"] = attempt(lambda: block(jitted(model, images[:1])))
        if not isinstance(results["first_row"], np.ndarray):
            results["first_row"] = attempt(lambda: block(model(images[:1])))
        if results["eval_repeatable"] is False:
            results["grad"] = results["losses"] = probing.PartFailure(
                "untestable", "not graded: dropout is still on in eval mode (see the dropout check)")
        else:  # repeatable, or the call raised: then these raise the same error and say so
            results.update(_gradients_and_training(model, spec, images, labels))
        model.train()  # two compiled calls (eager ones if compiling fails): each must draw a fresh mask
        first, second = (attempt(lambda: block(jitted(model, images))) for _ in range(2))
        if not (isinstance(first, np.ndarray) and isinstance(second, np.ndarray)):
            first, second = (attempt(lambda: block(model(images))) for _ in range(2))
        results["train_calls_differ"] = _both_arrays(first, second) or bool(
            first.shape != second.shape or not np.allclose(first, second))
        probing.FIXED_DROPOUT_MASKS = True
        try:
            fixed, recorded = _recording_inputs(lambda: block(model(images)))
        finally:
            probing.FIXED_DROPOUT_MASKS = False
        results["fixed_mask_output"] = fixed
        results["dropout_feeds"] = _dropout_feeds(recorded)
        model.eval()
        return results

    return probe


def probe_outputs(spec: ModelSpec):
    """Eval-mode outputs alone: what the hidden check of the model reads, on the hidden inputs."""
    def probe(week, given):
        with stand_ins(week, spec.stand_ins):
            model = grafted_model(getattr(week, spec.name), _subset(given, spec.name + "/"), spec.kwargs)
        model.eval()
        return {"outputs": attempt(lambda: block(model(normal(103, (BATCH, *spec.input_shape)))))}

    return probe


def _both_arrays(first, second):
    """None when both are arrays; else the failure among them (the evidence of what went wrong)."""
    if isinstance(first, np.ndarray) and isinstance(second, np.ndarray):
        return None
    return next(value for value in (first, second) if not isinstance(value, np.ndarray))


def _gradients_and_training(model, spec: ModelSpec, images, labels) -> dict:
    """The gradient of the training loss with respect to every parameter, keyed by the reference's
    parameter paths, and the losses of 5 plain SGD steps (lr 0.05) from there, in eval mode.

    One compiled function serves both (`jax.jit`: one compilation instead of one per operation,
    seconds less per model); a model that cannot be jitted is differentiated without it, and the jit
    check reports it. The model itself is left unchanged."""
    graph, params, rest = nnx.split(model, nnx.Param, ...)

    def loss(params):
        return _loss(spec.loss, nnx.merge(graph, params, rest)(images), labels)

    def run(transform):
        loss_and_grads = transform(jax.value_and_grad(loss))
        value, grads = loss_and_grads(params)
        flat = {"/".join(str(part) for part in path): np.asarray(grad[...]) for path, grad in nnx.to_flat_state(grads)}
        losses, stepped = [float(value)], params
        for _ in range(4):
            stepped = jax.tree.map(lambda param, grad: param - 0.05 * grad, stepped, grads)
            value, grads = loss_and_grads(stepped)
            losses.append(float(value))
        return {**{f"grad:{path}": value for path, value in _rename_to_reference(model, flat).items()},
                "losses": np.array(losses, np.float32)}

    found = attempt(run, jax.jit)
    if not isinstance(found, dict):
        found = attempt(run, lambda function: function)
    if not isinstance(found, dict):
        return {"grad": found, "losses": found}
    return found


def _rename_to_reference(model, flat: dict) -> dict:
    """Gradients keyed by the reference's parameter paths (each grafted layer knows its own)."""
    layer_paths = probing.reference_paths(model)
    renamed = {}
    for path, value in flat.items():
        layer, name = path.rsplit("/", 1)
        renamed[f"{layer_paths.get(layer, layer)}/{name}"] = value
    return renamed


# ---------------------------------------------------------------------------------------------
# Judges


def _recorded(evidence: dict) -> list[tuple[str, np.ndarray]]:
    """The recorded (reference path, input) of every layer but dropout, in call order."""
    found = []
    for key in sorted(key for key in evidence if key.startswith("input:")):
        _, _, kind, path = key.split(":", 3)
        if kind != "Dropout":
            found.append((path, evidence[key]))
    return found


FLATTEN_HINT = ("the values are right but in another order: flatten in (N, H, W, C) order with "
                "x.reshape(x.shape[0], -1), without transposing to PyTorch's (N, C, H, W)")


def first_difference(got: dict, expected: dict) -> tuple[str, str]:
    """(where the student's forward pass first parts from the reference's, what to look at there),
    from the inputs each layer received."""
    mine, theirs = _recorded(got), _recorded(expected)
    previous = "the input images"
    for index, (path, wanted) in enumerate(theirs):
        if index >= len(mine):
            return (f"your __call__ uses no layer after {previous}; the reference's goes on to '{path}'",
                    "use every layer the docstring lists, in its order")
        my_path, mine_array = mine[index]
        if my_path != path:
            return (f"after {previous} the reference's __call__ uses '{path}', yours uses '{my_path}'",
                    "use the layers in the docstring's order, each once")
        shape_ok, values_ok, detail = compare(mine_array, wanted, DEFAULT_RTOL, DEFAULT_ATOL)
        if values_ok:
            previous = f"'{path}'"
            continue
        where = f"between {previous} and '{path}'" if index else f"before the first layer '{path}'"
        if (mine_array.shape == wanted.shape and mine_array.dtype.kind == "f"
                and np.allclose(np.sort(mine_array, axis=None), np.sort(wanted, axis=None), rtol=1e-4, atol=1e-5)):
            hint = FLATTEN_HINT
        elif not index:
            hint = f"pass the images to '{path}' as they are"
        elif not shape_ok:
            hint = f"the shape reaching '{path}' is wrong: check the pooling (window, stride) and the reshape {where}"
        else:
            hint = f"check the activation and the pooling {where}"
        return f"the first layer whose input differs is '{path}' ({detail})", hint
    if len(mine) > len(theirs):
        return (f"after {previous} your __call__ uses '{mine[len(theirs)][0]}' again",
                "use every layer once, in the docstring's order")
    return (f"every layer receives the right input: the difference comes after the last layer {previous}",
            "check what follows the last layer: its activation (or none)")


def outputs_judge(spec: ModelSpec):
    """Judge of eval-mode outputs: shape, values and one example alone; a value difference names
    the first layer whose input differs, at which arguments and input shape."""

    @reading("eval_output", "first_row", "input:*")
    def judge(got: dict, expected: dict) -> list[Part]:
        parts = []
        for key, what, weight in (("eval_output", "outputs in eval mode", 3.0), ("first_row", "one example alone", 1.0)):
            part = values(key, what, weight=weight)(got, expected)[0]
            if not part.passed and not part.not_attempted and key in got:
                where, hint = first_difference(got, expected) if key == "eval_output" else ("", "")
                detail = f"at {spec.probed()}: {part.detail}" + (f"; {where}" if where else "")
                part = dataclasses.replace(part, detail=detail, hint=hint or (
                    "each example's outputs must depend on that example alone: no mixing across the batch axis"))
            parts.append(part)
        return parts

    return judge


def dropout_judge(spec: ModelSpec):
    """Judge of dropout: off in eval mode, in the reference's places (a fixed mask shows them), and a
    fresh random mask at every training call."""

    @reading("eval_repeatable", "fixed_mask_output", "dropout_feeds", "train_calls_differ")
    def judge(got: dict, expected: dict) -> list[Part]:
        parts = flag("eval_repeatable", "no dropout in eval mode",
                     failed="two calls in eval mode gave different outputs: dropout is still on after model.eval()",
                     hint="call the nnx.Dropout made in __init__ without deterministic=False or rngs=...: "
                          "model.train() and model.eval() switch it on and off")(got, expected)
        placed = values("fixed_mask_output", "dropout in the reference's places")(got, expected)[0]
        if not placed.passed and not placed.not_attempted and "dropout_feeds" in got:
            mine, theirs = str(got["dropout_feeds"]), str(expected["dropout_feeds"])
            eval_right = "eval_output" in got and compare(got["eval_output"], expected["eval_output"],
                                                          DEFAULT_RTOL, DEFAULT_ATOL)[1]
            if mine == theirs:  # dropout sits where it should: the difference is elsewhere
                detail = (f"at {spec.probed()} in train mode with a fixed mask the outputs differ, though dropout "
                          f"sits where the reference's does ({theirs or 'no dropout in either'})"
                          + ("" if eval_right else ": the eval-mode outputs differ too, so look at the forward pass "
                             "first ('outputs with reference parameters')"))
                hint = "" if eval_right else "the forward pass differs in eval mode as well: fix that first"
            else:
                detail = (f"at {spec.probed()} in train mode with a fixed mask: dropout feeds "
                          f"{theirs or 'no layer (the reference has no dropout)'} in the reference, "
                          f"{mine or 'no layer (no dropout in train mode)'} in yours")
                hint = (f"apply dropout exactly where the docstring says: before {theirs}" if theirs
                        else "this model has no dropout")
            placed = dataclasses.replace(placed, detail=detail, hint=hint)
        parts.append(placed)
        parts += flag("train_calls_differ", "two train-mode calls draw different dropout masks",
                      hint="let the nnx.Dropout layer draw from the Rngs it was made with; do not pass rngs= "
                           "or a fixed key to it")(got, expected)
        return parts

    return judge


def checks(spec: ModelSpec) -> list[Check]:
    init = f"{spec.name}.__init__"
    call = f"{spec.name}.__call__"
    other = {**spec.kwargs, **spec.other_kwargs}
    p = spec.points_call
    return [
        Check(name=f"{spec.name}: layers and parameter count", task=spec.init_task, function=init,
              points=spec.points_init * 0.6, probe=f"{spec.name}.init",
              judge=layers_match(context=f"built as {spec.built(spec.kwargs)}"),
              hint="compare each layer's sizes, kernel, stride and padding with the docstring"),
        Check(name=f"{spec.name}: layers follow the constructor's arguments", task=spec.init_task, function=init,
              points=spec.points_init * 0.4, probe=f"{spec.name}.init",
              judge=layers_match("layers" + OTHER, "parameter_count" + OTHER,
                                  context=f"built as {spec.built(other)}"),
              hint=f"use the arguments ({', '.join(spec.other_kwargs)}) instead of the default numbers"),
        Check(name=f"{spec.name}: outputs with reference parameters", task=spec.call_task, function=call,
              points=p * 0.5, probe=f"{spec.name}.call",
              judge=all_of(outputs_judge(spec), jit_agrees("jit_output", "eval_output", "outputs under nnx.jit")),
              hint="check the order of layers, each activation, the pooling and the flatten order"),
        Check(name=f"{spec.name}: parameter gradients", task=spec.call_task, function=call, points=p * 0.2,
              probe=f"{spec.name}.call",
              judge=parameters_match("grad:", "gradient of the training loss for every parameter"),
              hint="every layer must be used once, in order; no jax.lax.stop_gradient, no numpy conversions"),
        Check(name=f"{spec.name}: dropout only in training, in its places", task=spec.call_task, function=call,
              points=p * 0.15, probe=f"{spec.name}.call", judge=dropout_judge(spec)),
        Check(name=f"{spec.name}: short training on synthetic data", task=spec.call_task, function=call,
              points=p * 0.15, probe=f"{spec.name}.call",
              judge=values("losses", "losses of 5 SGD steps (lr 0.05) from the reference parameters", rtol=2e-2, atol=2e-3),
              hint="the loss must fall as the reference's does: check the gradients first", visibility="after_due_date"),
        hidden(name=f"{spec.name}: outputs", task=spec.call_task, function=call, probe=f"{spec.name}.outputs",
               keys=("outputs",), points=2),
    ]


def probes(spec: ModelSpec) -> dict:
    """The probes of one model, by the names its checks read."""
    return {f"{spec.name}.init": probe_init(spec), f"{spec.name}.call": probe_call(spec),
            f"{spec.name}.outputs": probe_outputs(spec)}
