"""Tools the probes use inside the child process: catching a student's error, stand-ins for the
functions a task depends on, and rebuilding a student's model with the reference's layers.

Nothing here judges; it only gathers evidence. It runs next to the graded code, which may change it
at will: that can only spoil the evidence of the graded week itself.
"""

import contextlib
import json
import os
import traceback

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from grader.evidence import PartFailure, match_layers

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
    else:
        status = "error"
    if isinstance(error, SystemExit):
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


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


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


def _children(module):
    """(name, child) pairs of a module's sub-modules, in definition order."""
    if isinstance(module, nnx.List):
        return [(str(index), item) for index, item in enumerate(module)]
    pairs = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if isinstance(value, nnx.Module):
            pairs.append((name, value))
    return pairs


def layers(module, prefix: str = "") -> list[tuple[str, nnx.Module]]:
    """The leaf layers (modules without sub-modules) of `module`, depth first, with '/'-joined paths."""
    found = []
    for name, child in _children(module):
        path = f"{prefix}{name}"
        if _children(child) or isinstance(child, nnx.List):
            found.extend(layers(child, path + "/"))
        else:
            found.append((path, child))
    return found


def describe(module) -> list[dict]:
    """One record per leaf layer: path, kind (class name), settings, and its parameters' shapes."""
    records = []
    for path, layer in layers(module):
        kind = type(layer).__name__
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


def reference_model(model_class, kwargs: dict, seed: int = 0) -> dict:
    """Setup evidence of a reference model: its layer list and its parameters, biases made random.

    Flax starts biases at zero, which would hide a student's mistake with biases; random biases
    make every parameter matter in the outputs.
    """
    model = model_class(**kwargs, rngs=nnx.Rngs(seed))
    generator = rng(seed + 1)
    for _, layer in layers(model):
        for name, value in vars(layer).items():
            if isinstance(value, nnx.Param) and name == "bias":
                value[...] = jnp.asarray(0.1 * generator.standard_normal(value.shape), value.dtype)
    spec = {"layers": describe(model), "attributes": plain_attributes(model)}
    evidence = {"spec": json.dumps(spec)}
    evidence.update({"param:" + path: array for path, array in parameter_arrays(model).items()})
    return evidence


def build_layer(record: dict, given: dict, dropout_seed: int):
    """A new layer with the settings of `record` and the reference parameters in `given`."""
    kind, settings = record["kind"], record["settings"]
    if kind == "Conv":
        layer = nnx.Conv(
            settings["in_features"], settings["out_features"], tuple(settings["kernel_size"]),
            strides=_tuple_or_int(settings["strides"]), padding=_padding(settings["padding"]),
            use_bias=settings["use_bias"], input_dilation=_tuple_or_int(settings["input_dilation"]),
            kernel_dilation=_tuple_or_int(settings["kernel_dilation"]),
            feature_group_count=settings["feature_group_count"], rngs=nnx.Rngs(0),
        )
    elif kind == "Linear":
        layer = nnx.Linear(settings["in_features"], settings["out_features"], use_bias=settings["use_bias"],
                           rngs=nnx.Rngs(0))
    elif kind == "Dropout":
        return nnx.Dropout(settings["rate"], broadcast_dims=tuple(settings["broadcast_dims"]),
                           rngs=nnx.Rngs(dropout_seed))
    else:
        raise ValueError(f"the grader cannot rebuild a {kind} layer")
    for name in record["params"]:
        getattr(layer, name)[...] = jnp.asarray(given["param:" + record["path"] + "/" + name])
    return layer


def _tuple_or_int(value):
    return tuple(value) if isinstance(value, list) else value


def _padding(value):
    if isinstance(value, list):
        return [tuple(item) if isinstance(item, list) else item for item in value]
    return value


def _set_child(module, path: str, layer) -> None:
    *parents, last = path.split("/")
    for name in parents:
        module = module[int(name)] if isinstance(module, nnx.List) else getattr(module, name)
    if isinstance(module, nnx.List):
        module[int(last)] = layer
    else:
        setattr(module, last, layer)


class _Container(nnx.Module):
    """Holds the sub-layers of a nested path when a reference model is rebuilt from its records."""


def grafted_model(model_class, given: dict, kwargs: dict, dropout_seed: int = 1):
    """The student's model class with the reference's layers and parameters (`given` from setup).

    The student's `__init__` runs first; if its layers match the reference's in kind and number,
    each is replaced by the reference layer in the same place, so the student's `__call__` sees
    their own attribute names. Otherwise (the `__init__` raised, or its layers differ) the model is
    built with the reference's attribute names. Either way `__call__` is graded on its own, apart
    from mistakes in `__init__`, which its own check grades.

    Returns (model, how) with `how` "student layout" or "reference layout".
    """
    spec = json.loads(str(given["spec"]))
    reference = spec["layers"]
    try:
        model = model_class(**kwargs, rngs=nnx.Rngs(0))
        student = describe(model)
    except BaseException:  # noqa: BLE001 - a broken __init__ is graded elsewhere
        model, student = None, None
    if student is not None and _same_layer_kinds(student, reference):
        for record, source in match_layers(student, reference):
            _set_child(model, record["path"], build_layer(source, given, dropout_seed + len(record["path"])))
        return model, "student layout"

    def rebuild(self):
        for name, value in spec["attributes"].items():
            setattr(self, name, value)
        tree = {}
        for index, record in enumerate(reference):
            *parents, last = record["path"].split("/")
            node = tree
            for name in parents:
                node = node.setdefault(name, {})
            node[last] = build_layer(record, given, dropout_seed + index)
        for name, value in tree.items():
            setattr(self, name, _as_module(value))

    grafted = type(model_class.__name__, (model_class,), {"__init__": rebuild})
    return grafted(), "reference layout"


def _as_module(node):
    if not isinstance(node, dict):
        return node
    if all(key.isdigit() for key in node):
        return nnx.List([_as_module(node[key]) for key in sorted(node, key=int)])
    container = _Container()
    for key, value in node.items():
        setattr(container, key, _as_module(value))
    return container


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


def student_parameters_as_reference(model, given: dict) -> dict:
    """{grafted layer path: the reference layer path it was built from}."""
    reference = json.loads(str(given["spec"]))["layers"]
    return {record["path"]: source["path"] for record, source in match_layers(describe(model), reference)}


