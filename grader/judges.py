"""Judges: the (got, expected) evidence -> parts functions a week's checks are made of
(`grader.checks` says what a check, a judge and a part are, and how parts become points).

Judges of arrays (`same`, `values`, `finite`, `flag`, and `all_of` to combine them), of the
self-reported properties (`jit_agrees`, `self_reported`), of a model's layers and parameters
(`layers_match`, `parameters_match`), and the hidden check made of them (`hidden`).
"""

import dataclasses

import numpy as np

from grader import evidence as ev
from grader.checks import HIDDEN_PREFIX, Check, Judge, Part, reading, reads
from grader.layer_listing import layer_counts, layer_records, match_layers


# ---------------------------------------------------------------------------------------------
# Comparing arrays

DEFAULT_RTOL = 1e-3
DEFAULT_ATOL = 1e-4  # times the largest magnitude of the expected array (at least 1)


def describe_array(array: np.ndarray) -> str:
    return f"shape {tuple(array.shape)} {array.dtype}"


def compare(got: np.ndarray, expected: np.ndarray, rtol: float, atol: float) -> tuple[bool, bool, str]:
    """(shape and kind agree, values agree, explanation) for two evidence arrays."""
    if got.dtype.kind == "U" or expected.dtype.kind == "U":
        same = got.dtype.kind == expected.dtype.kind and got.shape == expected.shape and bool(np.all(got == expected))
        return same, same, "" if same else f"expected {expected!s:.200}, got {got!s:.200}"
    kinds = {"b": "bool", "i": "int", "u": "int", "f": "float"}
    if got.shape != expected.shape:
        return False, False, f"expected {describe_array(expected)}, got {describe_array(got)}"
    same_kind = kinds[got.dtype.kind] == kinds[expected.dtype.kind]
    kind_note = "" if same_kind else f"expected dtype {expected.dtype}, got {got.dtype}; "
    got_values, expected_values = got.astype(np.float64), expected.astype(np.float64)
    scale = max(1.0, float(np.max(np.abs(expected_values), initial=0.0, where=np.isfinite(expected_values))))
    nan_mismatch = np.isnan(got_values) != np.isnan(expected_values)
    with np.errstate(invalid="ignore", over="ignore"):
        error = np.abs(got_values - expected_values)
        bad = nan_mismatch | (
            ~np.isnan(expected_values) & ~(error <= atol * scale + rtol * np.abs(expected_values))
        )
        bad &= ~(np.isinf(expected_values) & (got_values == expected_values))
    if not bad.any():
        return same_kind, True, kind_note.rstrip("; ")
    first = np.unravel_index(int(np.argmax(bad)), bad.shape) if bad.shape else ()
    counted = bad & ~np.isnan(error)  # an inf where a number belongs is an error of inf, not of 0
    max_abs = float(np.max(error[counted], initial=0.0))
    with np.errstate(divide="ignore", invalid="ignore"):
        relative = error / np.maximum(np.abs(expected_values), 1e-12)
    max_rel = float(np.max(relative[counted], initial=0.0))
    index = f" at index {tuple(int(i) for i in first)}" if first else ""
    errors = f"max abs error {max_abs:.3g}, max rel error {max_rel:.3g}; " if counted.any() else ""
    detail = (f"{kind_note}{int(bad.sum())} of {bad.size} values differ; {errors}"
              f"first{index}: expected {expected[first]!s:.40}, got {got[first]!s:.40}")
    if np.isnan(got_values).any() and not np.isnan(expected_values).any():
        detail += " (your output contains NaN)"
    if np.isinf(got_values).any() and not np.isinf(expected_values).any():
        detail += " (your output contains inf)"
    return same_kind, False, detail


def absent(got: dict, key: str, what: str, weight: float) -> Part | None:
    """A failed Part when `key` is absent from the evidence, explaining why."""
    if key in got:
        return None
    failure = ev.part_failure(got, key)
    if failure is None:
        return Part(what, weight, False, "no output recorded")
    detail = failure.message if failure.status != "error" else f"your code raised {failure.message}"
    if failure.where:
        detail += f" (at {failure.where})"
    return Part(what, weight, False, detail, not_attempted=failure.status == "not_attempted")


def same(key: str, what: str | None = None, *, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL,
         shape_weight: float = 1.0, value_weight: float = 3.0, hint: str = "") -> Judge:
    """Judge: the array under `key` has the reference's shape and dtype kind (one part) and values
    (another part, within `rtol` and `atol` times the expected array's largest magnitude)."""
    what = what or key

    @reading(key)
    def judge(got: dict, expected: dict) -> list[Part]:
        if key not in expected:
            raise KeyError(f"reference evidence lacks {key}")
        missing = absent(got, key, what, shape_weight + value_weight)
        if missing:
            return [missing]
        shape_ok, values_ok, detail = compare(got[key], expected[key], rtol, atol)
        parts = [Part(f"{what} (shape and dtype)", shape_weight, shape_ok, detail if not shape_ok else "", hint=hint)]
        if value_weight:
            parts.append(Part(f"{what} (values)", value_weight, values_ok, detail, hint=hint))
        return parts

    return judge


def values(key: str, what: str | None = None, *, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL,
           weight: float = 1.0, hint: str = "") -> Judge:
    """Judge: one part, passed when the array under `key` matches the reference's in shape and values."""
    what = what or key

    @reading(key)
    def judge(got: dict, expected: dict) -> list[Part]:
        missing = absent(got, key, what, weight)
        if missing:
            return [missing]
        shape_ok, values_ok, detail = compare(got[key], expected[key], rtol, atol)
        return [Part(what, weight, shape_ok and values_ok, detail, hint=hint)]

    return judge


def finite(key: str, what: str, weight: float = 1.0, hint: str = "") -> Judge:
    """Judge: the array under `key` is all finite (no inf, no NaN), whatever its values."""

    @reading(key)
    def judge(got: dict, expected: dict) -> list[Part]:
        missing = absent(got, key, what, weight)
        if missing:
            return [missing]
        array = got[key]
        ok = array.dtype.kind in "biuf" and bool(np.all(np.isfinite(array.astype(np.float64))))
        return [Part(what, weight, ok, f"got {array!s:.80}", hint=hint)]

    return judge


def jit_agrees(jit_key: str, eager_key: str, what: str = "works under jax.jit",
               hint: str = "no Python branching on array values, no numpy calls on traced arrays") -> Judge:
    """Self-reported judge of the same call under jit (see `grader.checks`: the graded code can make
    `jax.jit` leave it eager, so it is reported, never scored). It is judged only when the eager
    result (`eager_key`) is right, and fails when the jitted one (`jit_key`) then is not; with a wrong
    or missing eager result there is nothing to say about jit (no part)."""

    @reading(jit_key, eager_key)
    def judge(got: dict, expected: dict) -> list[Part]:
        if eager_key not in got:
            return []
        _, eager_right, _ = compare(got[eager_key], expected[eager_key], DEFAULT_RTOL, DEFAULT_ATOL)
        if not eager_right:
            return []
        missing = absent(got, jit_key, what, 0.0)
        if missing:
            return [dataclasses.replace(missing, hint=hint, not_attempted=False, self_reported=True)]
        shape_ok, values_ok, detail = compare(got[jit_key], expected[jit_key], DEFAULT_RTOL, DEFAULT_ATOL)
        return [Part(what, 0.0, shape_ok and values_ok, f"right without jit, but under jit {detail}", hint=hint,
                     self_reported=True)]

    return judge


def self_reported(judge: Judge, *keys: str) -> Judge:
    """`judge` with every part self-reported: reported in the feedback, never scored (see
    `grader.checks`), for properties that only the graded process can observe. Judged only where the
    evidence holds every one of `keys`: when the probe failed, the scored parts already say why."""

    @reading(*reads(judge))
    def reported(got: dict, expected: dict) -> list[Part]:
        if not all(key in got for key in keys):
            return []
        return [dataclasses.replace(part, weight=0.0, not_attempted=False, self_reported=True)
                for part in judge(got, expected)]

    return reported


def flag(key: str, what: str, weight: float = 1.0, failed: str = "", hint: str = "") -> Judge:
    """Judge: the graded code's boolean `key` equals the reference's (e.g. 'two train-mode calls differ')."""

    @reading(key)
    def judge(got: dict, expected: dict) -> list[Part]:
        missing = absent(got, key, what, weight)
        if missing:
            return [missing]
        ok = got[key].shape == () and got[key].dtype.kind == "b" and bool(got[key]) == bool(expected[key])
        return [Part(what, weight, ok, failed or f"expected {bool(expected[key])}, got {got[key]!s:.40}", hint=hint)]

    return judge


def all_of(*judges: Judge) -> Judge:
    """Judge made of several judges' parts."""

    @reading(*[key for one in judges for key in reads(one)])
    def judge(got: dict, expected: dict) -> list[Part]:
        return [part for one in judges for part in one(got, expected)]

    return judge


# ---------------------------------------------------------------------------------------------
# Comparing models' layers and parameters


def _layer_label(record: dict) -> str:
    return f"{record['kind']} '{record['path']}'"


def layers_match(key: str = "layers", count_key: str = "parameter_count", *, context: str = "",
                 weight_layers: float = 2.0, weight_settings: float = 2.0, weight_count: float = 1.0) -> Judge:
    """Judge of a model's `__init__`: the same layers (kinds and number), their settings, and the
    parameter count (under `count_key`). Layers are matched kind by kind in definition order; names
    may differ, and dropout may be one shared layer or one per use, as long as the rates agree.
    `context` (how the model was built) starts every detail."""
    start = f"{context}: " if context else ""

    @reading(key, count_key)
    def judge(got: dict, expected: dict) -> list[Part]:
        missing = absent(got, key, "model layers", weight_layers + weight_settings + weight_count)
        if missing:
            return [missing]
        mine, theirs = layer_records(got[key]), layer_records(expected[key], "the reference's layer listing")
        parts = []
        by_kind = lambda records: {k: [r for r in records if r["kind"] == k] for k in {r["kind"] for r in records}}  # noqa: E731
        my_kinds, their_kinds = by_kind(mine), by_kind(theirs)
        counts = lambda kinds: {k: (len(v) if k != "Dropout" else "some") for k, v in kinds.items()}  # noqa: E731
        same_layers = counts(my_kinds) == counts(their_kinds)
        parts.append(Part("layers (kinds and number)", weight_layers, same_layers,
                          f"{start}expected {layer_counts(theirs)}, got {layer_counts(mine)}"))
        problems = []
        want = sorted({r["settings"]["rate"] for r in their_kinds.get("Dropout", [])})
        have = sorted({r["settings"]["rate"] for r in my_kinds.get("Dropout", [])})
        if want != have:
            problems.append(f"dropout rates: expected {want or 'no dropout'}, got {have or 'no dropout'}")
        for record, source in match_layers(mine, theirs):
            if record["kind"] == "Dropout":
                continue
            for setting, value in source["settings"].items():
                mine_value = record["settings"].get(setting)
                if _normal_setting(setting, mine_value, source) != _normal_setting(setting, value, source):
                    problems.append(f"{_layer_label(record)} (matched to the reference's '{source['path']}'): "
                                    f"{setting} expected {value}, got {mine_value}")
            if record["params"] != source["params"]:
                problems.append(f"{_layer_label(record)}: parameter shapes expected {source['params']}, "
                                f"got {record['params']}")
        parts.append(Part("layer settings", weight_settings, not problems, start + "; ".join(problems[:3])))
        count_ok, count_detail = _parameter_count(got, expected, count_key)
        parts.append(Part("parameter count", weight_count, count_ok, start + count_detail))
        return parts

    return judge


def _normal_setting(name: str, value, record: dict):
    """Settings that mean the same compare equal: padding 1 == ((1, 1), (1, 1)) == 'SAME' for a 3x3
    stride-1 kernel; kernel_size 3 == (3, 3); strides 1 == (1, 1)."""
    if name in ("strides", "input_dilation", "kernel_dilation", "kernel_size"):
        return tuple(value) if isinstance(value, list) else (value, value)
    if name == "padding":
        kernel = record["settings"].get("kernel_size", [1, 1])
        strides = record["settings"].get("strides", 1)
        strides = tuple(strides) if isinstance(strides, list) else (strides, strides)
        if isinstance(value, str):
            if value.upper() == "VALID":
                return ((0, 0), (0, 0))
            if value.upper() == "SAME" and strides == (1, 1):
                return tuple(((k - 1) // 2, k // 2) for k in kernel)
            return value.upper()
        if isinstance(value, int):
            return ((value, value), (value, value))
        if isinstance(value, list):
            return tuple(tuple(item) if isinstance(item, list) else (item, item) for item in value)
    return value


def _parameter_count(got: dict, expected: dict, key: str) -> tuple[bool, str]:
    mine, theirs = got.get(key), expected.get(key)
    if mine is None or theirs is None:
        return False, "no parameter count recorded"
    return int(mine) == int(theirs), f"expected {int(theirs):,} parameters, got {int(mine):,}"


def parameters_match(prefix: str, what: str, *, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL,
                     weight: float = 1.0) -> Judge:
    """Judge: every array whose key starts with `prefix` (e.g. "grad:") matches the reference's;
    the feedback names the first differing parameter path."""

    @reading(prefix + "*")
    def judge(got: dict, expected: dict) -> list[Part]:
        keys = sorted(key for key in expected if key.startswith(prefix))
        failure_key = prefix.rstrip(":")
        missing = absent(got, failure_key, what, weight) if not any(k.startswith(prefix) for k in got) else None
        if missing:
            return [missing]
        for key in keys:
            if key not in got:
                return [Part(what, weight, False, f"no value for parameter '{key[len(prefix):]}'")]
            shape_ok, values_ok, detail = compare(got[key], expected[key], rtol, atol)
            if not (shape_ok and values_ok):
                return [Part(what, weight, False, f"first differing parameter '{key[len(prefix):]}': {detail}")]
        return [Part(what, weight, True)]

    return judge


# ---------------------------------------------------------------------------------------------
# Hidden checks


def hidden(*, task: str, function: str, keys: tuple[str, ...], name: str = "", probe: str = "",
           points: float = 1.0, rtol: float = DEFAULT_RTOL, atol: float = DEFAULT_ATOL) -> Check:
    """A hidden check: `probe` (default: `function`) run again on inputs from the instructor's secret
    seed, the arrays under `keys` judged on their values alone (a right shape earns nothing: replayed
    answers score 0). Named `name` (default: `function`) plus " (hidden inputs)"."""
    name, probe = name or function, probe or function
    return Check(name=f"{name} (hidden inputs)", task=task, function=function, points=points,
                 probe=HIDDEN_PREFIX + probe, judge=all_of(*[values(key, rtol=rtol, atol=atol) for key in keys]),
                 hint="the same computation as the public checks on other inputs: when those pass and this fails, "
                      "something is fixed to the public inputs' shapes or values", visibility="after_due_date",
                 hidden=True)
