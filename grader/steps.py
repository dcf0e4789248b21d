"""Probes and checks of training code: a train step, an eval step, the data-parallel placement.

A step is graded on a small classifier of the grader's own (`StepModel`), never on the student's
week 2 MLP, so that a bug there costs points in its own task only. The model counts how often
its `__call__` runs: under `jax.jit` that is once per trace, so three calls of a compiled step
with batches of one shape run it during the first call only. An eager step, or one that builds
a new jitted function at every call, runs it at every call.

That count, like the placement of arrays on devices, is observed inside the graded process, which
can rewrite what reports it (the counter, `jax.jit`, `jax.Array.sharding`): both are self-reported
(`grader.judges.self_reported`), shown to the student and never scored. The points go to what the
graded code cannot fake without doing the work: the values after a step, on the grader's own model,
and the values `shard_batch` and `replicate` return, placed again by the grader for its own step.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from course.steps import make_train_step, softmax_cross_entropy
from grader.checks import Check, Judge, Part, reading
from grader.judges import all_of, flag, hidden, parameters_match, same, self_reported
from grader import evidence as ev
from grader.probing import PartFailure, attempt, block, normal, rng

NUM_CLASSES = 5
BATCH_SHAPE = (16, 2, 2, 3)


class StepModel(nnx.Module):
    """flatten -> Linear 12->16 -> ReLU -> Dropout(0.5) -> Linear 16->5, counting its calls."""

    calls = 0  # a class attribute: Python-side bookkeeping, invisible to nnx and jax

    def __init__(self, rngs: nnx.Rngs):
        self.hidden = nnx.Linear(12, 16, rngs=rngs)
        self.dropout = nnx.Dropout(0.5, rngs=rngs)
        self.output = nnx.Linear(16, NUM_CLASSES, rngs=rngs)

    def __call__(self, images):
        StepModel.calls += 1
        return self.output(self.dropout(nnx.relu(self.hidden(images.reshape(images.shape[0], -1)))))


def model_and_optimizer(transformation=optax.adam(0.05)) -> tuple[StepModel, nnx.Optimizer]:
    """The same model (in train mode) and optimizer (Adam: its state is more than a step count) at every call."""
    model = StepModel(nnx.Rngs(params=0, dropout=1))
    model.train()
    return model, nnx.Optimizer(model, transformation, wrt=nnx.Param)


def batch(seed: int) -> tuple[np.ndarray, np.ndarray]:
    return normal(seed, BATCH_SHAPE), rng(seed + 1).integers(0, NUM_CLASSES, size=BATCH_SHAPE[0]).astype(np.int32)


def flat_state(prefix: str, state) -> dict:
    """Evidence of a state: "<prefix><path>" -> array."""
    return {prefix + "/".join(str(part) for part in path): np.asarray(variable[...])
            for path, variable in nnx.to_flat_state(state)}


def state_evidence(model, optimizer) -> dict:
    """The parameters ("param:...") and the optax state ("opt:...") after a step; nnx's own step
    counter is left out, since the optax state alone decides the next update."""
    return {**flat_state("param:", nnx.state(model, nnx.Param)),
            **flat_state("opt:", nnx.state(optimizer)["opt_state"])}


def _metrics(result) -> dict:
    if not isinstance(result, dict):
        raise TypeError(f"the step must return a dict with 'loss' and 'accuracy', got {type(result).__name__}")
    return {"loss": np.asarray(result["loss"]), "accuracy": np.asarray(result["accuracy"])}


def _calls_during(function):
    before = StepModel.calls
    result = function()
    return result, StepModel.calls - before


def probe_train_step(train_step) -> dict:
    """One step's metrics and state; whether a repeat from the same state draws a new dropout mask;
    how many traces two more calls with same-shaped batches cost."""

    def run():
        model, optimizer = model_and_optimizer()
        images, labels = batch(200)
        first, _ = _calls_during(lambda: block(_metrics(train_step(model, optimizer, images, labels))))
        results = {"train:" + key: value for key, value in first.items()}
        results.update(state_evidence(model, optimizer))
        fresh_model, fresh_optimizer = model_and_optimizer()  # the starting state again, dropout keys moved on
        nnx.update(model, nnx.state(fresh_model, nnx.Param))
        nnx.update(optimizer, nnx.state(fresh_optimizer))
        second, second_calls = _calls_during(lambda: block(_metrics(train_step(model, optimizer, images, labels))))
        results["new_dropout_mask"] = bool(second["loss"] != first["loss"])
        _, third_calls = _calls_during(lambda: block(train_step(model, optimizer, *batch(202))))
        results["traced_once"] = second_calls + third_calls == 0
        return results

    found = attempt(run)
    if isinstance(found, PartFailure):
        return {key: found for key in ("train:loss", "train:accuracy", "param", "opt", "new_dropout_mask",
                                       "traced_once")}
    return found


def _snapshot(model) -> list[tuple[tuple, np.ndarray]]:
    """(path, value) of every variable of the model, random keys as their bits."""
    found = []
    for path, variable in nnx.to_flat_state(nnx.state(model)):
        value = variable[...]
        if jnp.issubdtype(value.dtype, jax.dtypes.prng_key):
            value = jax.random.key_data(value)
        found.append((path, np.asarray(value)))
    return found


def probe_eval_step(eval_step) -> dict:
    """Metrics of the model in eval mode, whether the model's state changed, and the traces."""

    def run():
        model, _ = model_and_optimizer()
        model.eval()
        before = _snapshot(model)
        images, labels = batch(204)
        first, _ = _calls_during(lambda: block(_metrics(eval_step(model, images, labels))))
        after = _snapshot(model)
        unchanged = len(before) == len(after) and all(
            path == other_path and np.array_equal(one, other) for (path, one), (other_path, other) in zip(before, after))
        _, later_calls = _calls_during(lambda: [block(eval_step(model, *batch(seed))) for seed in (206, 208)])
        return {"eval:loss": first["loss"], "eval:accuracy": first["accuracy"], "unchanged": unchanged,
                "traced_once": later_calls == 0}

    found = attempt(run)
    if isinstance(found, PartFailure):
        return {key: found for key in ("eval:loss", "eval:accuracy", "unchanged", "traced_once")}
    return found


def _traces_judge(function: str) -> Judge:
    """Self-reported: the trace count comes from the graded process (see the module docstring)."""
    return self_reported(flag(
        "traced_once", "compiled once for batches of one shape",
        failed=f"{function} ran its Python body (the model's __call__) again on the 2nd and 3rd "
               "batches of the same shape: it is not one compiled function",
        hint=f"decorate {function} itself with @nnx.jit and keep the batch an argument: a jitted function "
             "defined inside the step, or no jit at all, traces the whole step at every call"), "traced_once")


def train_step_checks(task: str) -> list[Check]:
    return [
        Check(name="train_step: loss, accuracy, parameters and optimizer state after one step", task=task,
              function="train_step", points=6, judge=all_of(
                  same("train:loss", "loss of the batch before the update", shape_weight=0.5, value_weight=1.0),
                  same("train:accuracy", "accuracy of the batch before the update", shape_weight=0.5, value_weight=0.5),
                  parameters_match("param:", "parameters after one Adam step", weight=2.0),
                  parameters_match("opt:", "optimizer state after one step"),
                  _traces_judge("train_step")),
              hint="take nnx.value_and_grad of cross_entropy(model(images), labels) with respect to the model, "
                   "then call optimizer.update(model, grads) once"),
        Check(name="train_step: a new dropout mask at every step", task=task, function="train_step", points=1,
              judge=flag("new_dropout_mask", "a second step from the same parameters draws another dropout mask",
                         failed="a second step from the same parameters and optimizer state gave the same loss: "
                                "the dropout keys did not move on",
                         hint="let nnx.jit carry the model (its Rngs included) in and out; with nnx.split/nnx.merge, "
                              "update the model with the whole new state, not the parameters alone")),
    ]


def eval_step_checks(task: str) -> list[Check]:
    return [
        Check(name="eval_step: loss and accuracy", task=task, function="eval_step", points=2,
              judge=all_of(same("eval:loss", "loss"), same("eval:accuracy", "accuracy")),
              hint="cross_entropy and accuracy of model(images): one forward pass"),
        Check(name="eval_step: changes nothing", task=task, function="eval_step", points=2, judge=all_of(
            flag("unchanged", "the model's state is the same after eval_step",
                 failed="eval_step changed the model's state", hint="no gradient and no update in eval_step"),
            _traces_judge("eval_step"))),
        hidden(task=task, function="eval_step", keys=("eval:loss", "eval:accuracy")),
    ]


# ---------------------------------------------------------------------------------------------
# Data parallelism

DEVICES = 8
reference_step = make_train_step(softmax_cross_entropy)
PARALLEL_BATCH_SEED = 210


def sgd_model_and_optimizer():
    return model_and_optimizer(optax.sgd(0.1))  # compiles faster than Adam: here only the placement is graded


def one_device_step() -> dict:
    """Reference-only (a week's `setup`): the parameters after one step on one device, "one_device:<path>"."""
    model, optimizer = sgd_model_and_optimizer()
    reference_step(model, optimizer, *batch(PARALLEL_BATCH_SEED))
    return flat_state("one_device:", nnx.state(model, nnx.Param))


def host_mesh() -> jax.sharding.Mesh:
    """A one-axis mesh "data" over 8 CPU devices (the grading child asks XLA for 8)."""
    devices = jax.devices("cpu")
    if len(devices) < DEVICES:
        raise RuntimeError(f"the grader needs {DEVICES} CPU devices, found {len(devices)}: "
                           "XLA_FLAGS lacks --xla_force_host_platform_device_count")
    return jax.sharding.Mesh(np.array(devices[:DEVICES]), ("data",))


def _split_over_devices(array) -> bool:
    """Whether `array` lives on 8 devices, each holding its own 1/8 of the rows."""
    if not isinstance(array, jax.Array) or len(array.sharding.device_set) != DEVICES:
        return False
    shards = sorted(array.addressable_shards, key=lambda shard: shard.index[0].start or 0)
    rows = array.shape[0] // DEVICES
    return len(shards) == DEVICES and all(
        shard.data.shape[0] == rows and (shard.index[0].start or 0) == number * rows
        for number, shard in enumerate(shards))


def _replicated(tree) -> bool:
    leaves = jax.tree.leaves(tree)
    return bool(leaves) and all(isinstance(leaf, jax.Array) and len(leaf.sharding.device_set) == DEVICES
                                and leaf.sharding.is_fully_replicated for leaf in leaves)


def _leaf_values(leaf) -> np.ndarray:
    """What one leaf holds, read through numpy wherever it is said to be; a random key as its bits."""
    if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(leaf))
    return np.asarray(leaf)


def _same_values(tree, structure, wanted: list[np.ndarray]) -> bool:
    """Whether `tree` has the tree structure `structure` and, leaf by leaf, the arrays `wanted`."""
    if jax.tree.structure(tree) != structure:
        return False
    found = [_leaf_values(leaf) for leaf in jax.tree.leaves(tree)]
    return len(found) == len(wanted) and all(
        mine.dtype == theirs.dtype and mine.shape == theirs.shape and np.array_equal(mine, theirs)
        for mine, theirs in zip(found, wanted))


def _placed_by_the_grader(tree, sharding):
    """`tree` with every leaf copied through the host and put on `sharding` by the grader: whatever
    the graded code says about where its arrays are, the step then runs where the grader put them."""

    def place(leaf):
        if isinstance(leaf, jax.Array) and jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            fresh = jax.random.wrap_key_data(np.asarray(jax.random.key_data(leaf)), impl=jax.random.key_impl(leaf))
        else:
            fresh = np.asarray(leaf)
        return jax.device_put(fresh, sharding)

    return jax.tree.map(place, tree)


def probe_data_parallel(week, given) -> dict:
    """`week.shard_batch` and `week.replicate` placing a batch and a model over 8 CPU devices: where
    they say the arrays are (self-reported), the values they return, and one step of the grader's own
    train step from the state `replicate` returned, placed again by the grader with a batch the grader
    splits itself. The one-device step comes from the week's setup (`one_device_step`, in `given`),
    for the judge to compare with."""
    mesh = attempt(host_mesh)
    if isinstance(mesh, PartFailure):
        return {key: mesh for key in ("sharded", "sharded_values", "replicated", "replicated_values", "param")}
    images, labels = batch(PARALLEL_BATCH_SEED)
    results = {key: value for key, value in given.items() if key.startswith("one_device:")}
    placed = attempt(lambda: (week.shard_batch(mesh, jnp.asarray(images)), week.shard_batch(mesh, jnp.asarray(labels))))
    if isinstance(placed, PartFailure):
        results["sharded"] = results["sharded_values"] = placed
    else:
        results["sharded"] = attempt(lambda: all(_split_over_devices(array) for array in placed))
        results["sharded_values"] = attempt(lambda: all(
            isinstance(array, jax.Array) and np.array_equal(np.asarray(array), wanted)
            for array, wanted in zip(placed, (images, labels))))
        results["sharded_shapes"] = attempt(lambda: str([tuple(np.shape(array)) for array in placed]))
    model, optimizer = sgd_model_and_optimizer()
    before = nnx.state((model, optimizer))
    structure, wanted = jax.tree.structure(before), [_leaf_values(leaf) for leaf in jax.tree.leaves(before)]
    state = attempt(lambda: week.replicate(mesh, before))
    if isinstance(state, PartFailure):
        results["replicated"] = results["replicated_values"] = results["param"] = state
        return results
    results["replicated"] = attempt(lambda: _replicated(state))
    results["replicated_values"] = attempt(lambda: _same_values(state, structure, wanted))

    def step():
        nnx.update((model, optimizer), _placed_by_the_grader(state, NamedSharding(mesh, PartitionSpec())))
        split = NamedSharding(mesh, PartitionSpec("data"))
        block(reference_step(model, optimizer, jax.device_put(images, split), jax.device_put(labels, split)))
        return flat_state("param:", nnx.state(model, nnx.Param))

    stepped = attempt(step)
    results.update(stepped if isinstance(stepped, dict) else {"param": stepped})
    return results


@reading("param:*", "one_device:*")
def _equals_one_device_step(got: dict, expected: dict) -> list[Part]:
    """The parameters after the sharded step against the reference's one-device step."""
    one_device = {"param:" + key[len("one_device:"):]: value for key, value in expected.items()
                  if key.startswith("one_device:")}
    return parameters_match("param:", "parameters after one step on 8 devices, against the one-device step",
                            rtol=1e-4, atol=1e-5)(got, one_device)


@reading("sharded_values", "sharded_shapes")
def _sharded_values(got: dict, expected: dict) -> list[Part]:
    """The placed batch holds the batch's own values; where its shape differs, the feedback says so."""
    part = flag("sharded_values", "the values are the batch's own", failed="the placed batch has other values")(
        got, expected)[0]
    mine, theirs = ev.text(got, "sharded_shapes"), ev.text(expected, "sharded_shapes")
    if not part.passed and not part.not_attempted and mine and mine != theirs:
        part = dataclasses.replace(
            part, detail=f"the placed images and labels have shapes {mine}, the batch's are {theirs}",
            hint="place the batch as it is, without a reshape: the sharding splits its first axis over the devices, "
                 "jax.device_put(batch, NamedSharding(mesh, PartitionSpec('data')))")
    return [part]


def data_parallel_checks(shard_task: str, replicate_task: str) -> list[Check]:
    return [
        Check(name="shard_batch: the batch split over 8 devices", task=shard_task, function="shard_batch", points=2,
              probe="data_parallel", judge=all_of(
            self_reported(flag("sharded", "each of 8 devices holds its own 1/8 of the rows, in order",
                               failed="the batch is not split along its first axis over the mesh's 8 devices",
                               hint="jax.device_put(batch, NamedSharding(mesh, PartitionSpec('data')))"), "sharded"),
            _sharded_values)),
        Check(name="replicate: every array on every device", task=replicate_task, function="replicate", points=2,
              probe="data_parallel", judge=all_of(
            self_reported(flag("replicated", "each array of the state whole on all 8 devices",
                               failed="some array of the state is not a full copy on each of the mesh's 8 devices",
                               hint="jax.device_put(tree, NamedSharding(mesh, PartitionSpec())): an empty spec "
                                    "splits nothing"), "replicated"),
            flag("replicated_values", "the same tree of arrays, with the state's own values",
                 failed="the returned state differs from the one passed in (its structure, or some array's values)",
                 hint="place the whole tree as it is: jax.device_put(tree, sharding) keeps every value"))),
        Check(name="the sharded step equals the one-device step", task=replicate_task, function="replicate", points=1,
              probe="data_parallel", judge=_equals_one_device_step),
    ]
