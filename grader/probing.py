"""Tools the probes use inside the child process: catching a student's error, stand-ins for the
functions a task depends on, the course library's own answers withheld, and rebuilding a student's model with the reference's layers.

Nothing here judges; it only gathers evidence. It runs next to the graded code, which may change it
at will: that can only spoil the evidence of the graded week itself.
"""

import contextlib
import dataclasses
import importlib
import json
import os
import traceback
import zlib

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from course.layers import sublayers
from grader.evidence import PartFailure
from grader.layer_listing import layer_counts, match_layers

SUBMISSION_DIR = ""  # set by the child: the folder of the graded module, to find the student's frames


class ProbeTimeout(BaseException):
    """Raised in the child when one probe runs past its time limit."""


def failure(error: BaseException) -> PartFailure:
    """A PartFailure describing `error`, pointing at the deepest frame in the graded code."""
    where = ""
    for entry in traceback.extract_tb(error.__traceback__):
        if SUBMISSION_DIR and os.path.abspath(entry.filename).startswith(SUBMISSION_DIR):
            source = (entry.line or "").strip()
            where = f"{os.path.basename(entry.filename)}:{entry.lineno} in {entry.name}: {source}"[:300]
    if isinstance(error, NotImplementedError):
        status = "not_attempted"
    elif isinstance(error, ProbeTimeout):
        status = "timeout"
    elif isinstance(error, StructureError):
        status = "untestable"  # the grader could not test this: the message says why
    else:
        status = "error"
    if isinstance(error, StructureError):
        message = str(error)
    elif isinstance(error, SystemExit):
        message = f"the code called sys.exit({error.code!r})"
    else:
        message = f"{type(error).__name__}: {error}"
    message = " ".join(message.split())[:500].replace("|", "/")
    return PartFailure(status, message, where.replace("|", "/"))


def attempt(function, *args, **kwargs):
    """`function(*args, **kwargs)`, or a PartFailure if it raised (the rest of the probe goes on)."""
    try:
        return function(*args, **kwargs)
    except BaseException as error:  # noqa: BLE001 - graded code may raise anything, even SystemExit
        if isinstance(error, ProbeTimeout):
            raise
        return failure(error)


def block(value):
    """Waits for a JAX computation, so that its errors surface inside `attempt`."""
    return jax.tree.map(lambda leaf: np.asarray(leaf) if isinstance(leaf, jax.Array) else leaf, value)


@contextlib.contextmanager
def stand_ins(module, replacements: dict):
    """Temporarily rebinds other tasks' functions in `module` to library equivalents.

    A task that calls another task (say `two_layer_backward` calling `two_layer_forward`) is then
    graded on its own: a bug in the function it calls costs points in that function only.
    """
    saved = {name: module.__dict__.get(name) for name in replacements}
    module.__dict__.update(replacements)
    try:
        yield
    finally:
        module.__dict__.update(saved)


# Set by the child for the hidden checks: every probe input drawn with `rng` or `normal` then comes
# from this seed as well, one that no student release contains (see grader.grading.hidden_seed).
HIDDEN_SEED: int | None = None


@dataclasses.dataclass(frozen=True)
class LibraryAnswer:
    """A function of the course library that answers a graded task: `module.name` does the work of
    `task` (e.g. "2.10 (train_step)"); `builds` when it returns that answer (a step builder)."""

    module: str
    name: str
    task: str
    builds: bool = False


def withhold(answers) -> None:
    """Replaces each of the course library's own answers, for the graded code, by one that raises
    NotImplementedError when used: a task handed to it is graded as not attempted and told why. A
    builder still builds (a module that builds its step at import stays importable); its step raises.
    The grader's probes bound what they use of the library by name before this."""
    for answer in answers:
        message = (f"Task {answer.task} hands its work to {answer.module}.{answer.name}, "
                   "the course's own code for it: write it yourself")

        def refuse(*args, _message=message, **kwargs):
            raise NotImplementedError(_message)

        stand_in = (lambda *args, _refuse=refuse, **kwargs: _refuse) if answer.builds else refuse
        setattr(importlib.import_module(answer.module), answer.name, stand_in)


def rng(seed: int) -> np.random.Generator:
    """The generator of a probe's inputs: `seed` alone for the public checks, with the hidden seed
    for the hidden ones."""
    return np.random.default_rng(seed if HIDDEN_SEED is None else [seed, HIDDEN_SEED])


def normal(seed: int, shape, scale: float = 1.0) -> np.ndarray:
    """Deterministic float32 normal samples."""
    return (scale * rng(seed).standard_normal(shape)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Models: layer lists, reference parameters and grafting

LAYER_SETTINGS = {
    "Conv": ("in_features", "out_features", "kernel_size", "strides", "padding", "use_bias",
             "input_dilation", "kernel_dilation", "feature_group_count"),
    "Linear": ("in_features", "out_features", "use_bias"),
    "Dropout": ("rate", "broadcast_dims"),
}


def _plain(value):
    """JSON-friendly copy of a layer setting (tuples become lists)."""
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    return repr(value)


def kind_of(layer) -> str:
    """The Flax class a layer is, or derives from ("Conv" for a subclass of nnx.Conv); else its own class name."""
    for cls in type(layer).__mro__:
        if cls.__module__.startswith("flax.") and cls.__name__ in LAYER_SETTINGS:
            return cls.__name__
    return type(layer).__name__


def describe(module) -> list[dict]:
    """One record per layer: path, kind, settings, and its parameters' shapes."""
    records = []
    for path, layer in sublayers(module):
        kind = kind_of(layer)
        settings = {name: _plain(getattr(layer, name, None)) for name in LAYER_SETTINGS.get(kind, ())}
        params = {
            name: list(value.shape)
            for name, value in vars(layer).items()
            if isinstance(value, nnx.Param)
        }
        records.append({"path": path, "kind": kind, "settings": settings, "params": params})
    return records


def plain_attributes(module) -> dict:
    """The module's own non-module attributes that are plain numbers or strings (e.g. num_classes)."""
    return {
        name: value
        for name, value in vars(module).items()
        if not name.startswith("_") and isinstance(value, (bool, int, float, str))
    }


def parameter_arrays(module) -> dict[str, np.ndarray]:
    """{"path/name": array} of every nnx.Param of the module."""
    return {
        "/".join(str(part) for part in path): np.asarray(variable[...])
        for path, variable in nnx.to_flat_state(nnx.state(module, nnx.Param))
    }


def abstract_model(model_class, kwargs: dict):
    """`model_class(**kwargs, rngs=...)` with the shapes of its parameters but not their values
    (`nnx.eval_shape`): its layers at a fraction of the cost of initialising them. When the
    constructor cannot be traced that way, it is simply run."""
    try:
        return nnx.eval_shape(lambda: model_class(**kwargs, rngs=nnx.Rngs(0)))
    except NotImplementedError:
        raise
    except Exception:  # noqa: BLE001 - a constructor that only works eagerly is still a constructor
        return model_class(**kwargs, rngs=nnx.Rngs(0))


def reference_model(model_class, kwargs: dict, seed: int = 0) -> dict:
    """Setup evidence of a reference model: its layer list and random parameters.

    Kernels are drawn with a variance of 1 / fan-in (as LeCun's initialiser) and biases too are
    random, not zero as Flax starts them, so that a mistake with biases shows in the outputs.
    """
    generator = rng(seed)
    records = describe(abstract_model(model_class, kwargs))
    evidence = {"spec": json.dumps({"layers": records})}
    for record in records:
        for name, shape in record["params"].items():
            scale = 0.1 if name == "bias" else 1.0 / np.sqrt(max(1, int(np.prod(shape[:-1]))))
            evidence["param:" + record["path"] + "/" + name] = (scale * generator.standard_normal(shape)).astype(np.float32)
    return evidence


# While a list, every grafted layer called outside a trace appends (the reference's path of the
# layer, its input): the order in which a model uses its layers and what reaches each of them.
LAYER_INPUTS: list | None = None
# While True, grafted dropout layers in training mode apply a mask that depends only on the shape
# of their input, so that where dropout sits shows in the outputs, whatever the random streams.
FIXED_DROPOUT_MASKS = False


class _Recorded:
    """Mixed into the grafted layers: records each eager call's input in LAYER_INPUTS."""

    reference_path = ""

    def __call__(self, inputs, *args, **kwargs):
        if LAYER_INPUTS is not None and not isinstance(inputs, jax.core.Tracer):
            LAYER_INPUTS.append((self.reference_path, kind_of(self), np.asarray(inputs)))
        return super().__call__(inputs, *args, **kwargs)


class GraftedConv(_Recorded, nnx.Conv):
    pass


class GraftedLinear(_Recorded, nnx.Linear):
    pass


class GraftedDropout(_Recorded, nnx.Dropout):
    def __call__(self, inputs, *, deterministic=None, rngs=None):
        if not FIXED_DROPOUT_MASKS:
            return super().__call__(inputs, deterministic=deterministic, rngs=rngs)
        if LAYER_INPUTS is not None and not isinstance(inputs, jax.core.Tracer):
            LAYER_INPUTS.append((self.reference_path, "Dropout", np.asarray(inputs)))
        off = self.deterministic if deterministic is None else deterministic
        if off or self.rate == 0.0:
            return inputs
        return inputs * jnp.asarray(fixed_mask(inputs.shape, self.rate), inputs.dtype)


def fixed_mask(shape, rate: float) -> np.ndarray:
    """A dropout mask (kept entries scaled by 1 / (1 - rate)) drawn from the shape alone."""
    generator = np.random.default_rng(zlib.crc32(repr(tuple(int(size) for size in shape)).encode()))
    kept = generator.random(shape) >= rate
    return kept.astype(np.float32) / np.float32(1.0 - rate)


def build_layer(record: dict, given: dict, dropout_seed: int):
    """A new layer with the settings of `record` and the reference parameters in `given`."""
    kind, settings = record["kind"], record["settings"]
    if kind == "Dropout":
        layer = GraftedDropout(settings["rate"], broadcast_dims=tuple(settings["broadcast_dims"]),
                               rngs=nnx.Rngs(dropout_seed))
    elif kind == "Conv":
        layer = nnx.eval_shape(lambda: GraftedConv(
            settings["in_features"], settings["out_features"], tuple(settings["kernel_size"]),
            strides=_tuple_or_int(settings["strides"]), padding=_padding(settings["padding"]),
            use_bias=settings["use_bias"], input_dilation=_tuple_or_int(settings["input_dilation"]),
            kernel_dilation=_tuple_or_int(settings["kernel_dilation"]),
            feature_group_count=settings["feature_group_count"], rngs=nnx.Rngs(0),
        ))
    elif kind == "Linear":
        layer = nnx.eval_shape(lambda: GraftedLinear(settings["in_features"], settings["out_features"],
                                                     use_bias=settings["use_bias"], rngs=nnx.Rngs(0)))
    else:
        raise ValueError(f"the grader cannot rebuild a {kind} layer")
    for name in record["params"]:  # the values, in place of the shapes eval_shape left
        setattr(layer, name, nnx.Param(jnp.asarray(given["param:" + record["path"] + "/" + name])))
    layer.reference_path = record["path"]
    return layer


def _tuple_or_int(value):
    return tuple(value) if isinstance(value, list) else value


def _padding(value):
    if isinstance(value, list):
        return [tuple(item) if isinstance(item, list) else item for item in value]
    return value


def _set_child(module, path: str, layer) -> None:
    """Puts `layer` where `path` (from `sublayers`) points, through attributes, lists and dicts."""
    *parents, last = path.split("/")
    node = module
    for name in parents:
        node = _child(node, name)
    if isinstance(node, tuple):
        raise StructureError(f"the grader cannot replace a layer inside a tuple ('{path}'); use a list or nnx.List")
    if isinstance(node, (list, nnx.List)):
        node[int(last)] = layer
    elif isinstance(node, dict):
        node[next(key for key in node if str(key) == last)] = layer
    else:
        setattr(node, last, layer)


def _child(node, name: str):
    if isinstance(node, (list, tuple, nnx.List)):
        return node[int(name)]
    if isinstance(node, dict):
        return node[next(key for key in node if str(key) == name)]
    return getattr(node, name)


class StructureError(Exception):
    """The student's layers cannot take the reference's place: `__call__` is not graded on them."""


def grafted_model(model_class, given: dict, kwargs: dict, dropout_seed: int = 1):
    """The student's own model, built by their `__init__`, with each layer replaced by the reference's
    layer (settings and parameters from `given`, the setup evidence) that it matches.

    Layers are matched kind by kind: first by parameter shapes, then in definition order, wherever
    they sit (attributes, lists, dicts, nnx.List, nnx.Sequential). The student's `__call__` then
    runs on exactly the reference's layers, so it is graded apart from any mistake in `__init__`.
    Dropout may be one layer or one per use. Raises StructureError, saying why, when the layers
    differ in kind or number (the `__init__` check reports the difference itself).
    """
    reference = json.loads(str(given["spec"]))["layers"]
    for build in (abstract_model, lambda model_class, kwargs: model_class(**kwargs, rngs=nnx.Rngs(0))):
        try:
            model = build(model_class, kwargs)
        except NotImplementedError:
            raise
        except Exception as error:  # noqa: BLE001 - a broken __init__ is graded by its own check
            raise StructureError(f"__init__ raised {type(error).__name__}: {error}") from error
        student = describe(model)
        if not _same_layer_kinds(student, reference):
            raise StructureError(
                f"__init__ makes {layer_counts(student)} where the reference makes {layer_counts(reference)}, so "
                "__call__ could not be run on the reference's layers; fix __init__ first")
        for record, source in match_layers(student, reference):
            _set_child(model, record["path"], build_layer(source, given, dropout_seed + len(record["path"])))
        if not any(isinstance(leaf, jax.ShapeDtypeStruct) for leaf in jax.tree.leaves(nnx.state(model))):
            return model
    # the student's model keeps state of its own (say, an nnx.Rngs) that only an eager build fills in
    return model


def _same_layer_kinds(mine: list[dict], theirs: list[dict]) -> bool:
    """Same kinds of layers, and the same number of each (dropout layers may differ in number)."""
    def counts(records):
        found = {}
        for record in records:
            found[record["kind"]] = found.get(record["kind"], 0) + 1
        if "Dropout" in found:
            found["Dropout"] = 1
        return found

    return counts(mine) == counts(theirs)


def reference_paths(model) -> dict[str, str]:
    """{path of a grafted layer in the student's model: the reference path it was built from}."""
    return {path: layer.reference_path for path, layer in sublayers(model) if isinstance(layer, _Recorded)}

