"""Week 4 checks: SimpleCNN's layers (`__init__`) and forward pass (`__call__`), and randomness with
explicit keys: `random_crop_flip`, `shuffled_batches` and the recipe's `augment`.

The random functions are judged on properties, not on the reference's exact draws, since any correct
way of drawing is right: each augmented image must be one of the (2p + 1)^2 shifts of its original,
maybe mirrored (the identity is worth nothing), with about half mirrored and the (row, column) shifts
spread over nearly all (2p + 1)^2; an epoch's batches (12 of 8: not a square) must hold each example
at most once, in a shuffled order, with a different key for every step; `augment` must hand
random_crop_flip its images, padding 2 and a key that follows its own. Whether a key is used twice
is read from the traced program (`keys.keys_used_twice`): advice, never scored.
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from grader import evidence as ev
from grader import models
from grader.checks import HIDDEN_PREFIX, Check, Part, reading
from grader.judges import absent, all_of, flag, hidden, jit_agrees, same, values
from grader.keys import keys_used_twice
from grader.probing import PartFailure, attempt, block, normal, rng, stand_ins

SIMPLE_CNN = models.ModelSpec("SimpleCNN", "4.1", "4.2", input_shape=(32, 32, 3), other_kwargs={"num_classes": 7})
PADDING = 2
IMAGES_SHAPE = (256, 5, 6, 2)  # many small images: the share flipped is then close to 1/2
NUM_EXAMPLES, BATCH_SIZE = 103, 8  # 12 batches of 8: a (batch_size, num_batches) reshape has another shape


def setup(week):
    return models.setup(week, [SIMPLE_CNN])


def probe_random_crop_flip(week, given):
    images = normal(300, IMAGES_SHAPE)
    key = jax.random.key(int(rng(301).integers(2**31)))
    other_key = jax.random.key(int(rng(302).integers(2**31)))
    jitted = jax.jit(week.random_crop_flip, static_argnums=2)
    compiled = attempt(lambda: block(jitted(key, images, PADDING)))
    results = {"inputs": images, "compiles": isinstance(compiled, np.ndarray) or compiled}

    def augmented(key, images, padding=PADDING):  # compiled; eager (slower) where it cannot be compiled
        found = attempt(lambda: block(jitted(key, images, padding))) if results["compiles"] is True else None
        return found if isinstance(found, np.ndarray) else attempt(lambda: block(week.random_crop_flip(key, images, padding)))

    reused = attempt(lambda: "; ".join(keys_used_twice(lambda key, images: week.random_crop_flip(key, images, PADDING),
                                                          key, images)))
    return {**results, "augmented": augmented(key, images), "again": augmented(key, images),
            "other_key": augmented(other_key, images), "uint8": augmented(key, np.full((3, 4, 4, 1), 7, np.uint8), 1),
            "keys_reused": reused}


def _key_bits(keys) -> np.ndarray:
    keys = jnp.asarray(keys)
    return np.asarray(jax.random.key_data(keys) if jnp.issubdtype(keys.dtype, jax.dtypes.prng_key) else keys)


def probe_shuffled_batches(week, given):
    key, other_key = (jax.random.key(int(seed)) for seed in rng(310).integers(2**31, size=2))

    def batches_and_keys(key):
        batches, step_keys = week.shuffled_batches(key, NUM_EXAMPLES, BATCH_SIZE)
        return np.asarray(batches), _key_bits(step_keys)

    first, again, other = (attempt(batches_and_keys, chosen) for chosen in (key, key, other_key))
    results = {}
    for name, found in (("batches", first), ("again", again), ("other_key", other)):
        results[name] = found[0] if isinstance(found, tuple) else found
    results["step_keys"] = first[1] if isinstance(first, tuple) else first
    results["keys_reused"] = attempt(lambda: "; ".join(keys_used_twice(
        lambda key: week.shuffled_batches(key, NUM_EXAMPLES, BATCH_SIZE), key)))
    return results


# stands in for the week's random_crop_flip while `augment` is graded: its output shows the images
# and the padding augment passes on, and it records the key, whatever key scheme augment uses
def _crop_flip_stand_in(key, images, padding):
    return images + padding


def probe_augment(week, given):
    images = normal(320, (4, 6, 6, 3))
    key, other_key = (jax.random.key(int(seed)) for seed in rng(321).integers(2**31, size=2))
    passed_keys = []

    def recording_stand_in(key, images, padding):  # records the key's bits, also where augment jits
        bits = jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key
        jax.debug.callback(lambda bits: passed_keys.append(np.asarray(bits)), bits)
        return _crop_flip_stand_in(key, images, padding)

    def key_passed(key):
        passed_keys.clear()
        with stand_ins(week, {"random_crop_flip": recording_stand_in}):
            output = attempt(lambda: block(week.augment(key, images, True)))
            attempt(jax.effects_barrier)
        return output, (passed_keys[0] if len(passed_keys) == 1 else None)

    training, passed = key_passed(key)
    _, passed_again = key_passed(key)
    _, passed_other = key_passed(other_key)
    called_once = all(isinstance(bits, np.ndarray) for bits in (passed, passed_again, passed_other))
    follows = np.bool_(called_once and np.array_equal(passed, passed_again) and not np.array_equal(passed, passed_other))
    # where augment itself failed (a stub, an error), that failure is also why the key cannot be judged
    results = {"training": training, "key_follows": training if isinstance(training, PartFailure) else follows}
    with stand_ins(week, {"random_crop_flip": _crop_flip_stand_in}):
        return {
            **results,
            "jit": attempt(lambda: block(jax.jit(week.augment, static_argnums=2)(key, images, True))),
            "evaluation": attempt(lambda: block(week.augment(None, images, False))),
            "evaluation_with_key": attempt(lambda: block(week.augment(key, images, False))),
        }


PROBES = {
    **models.probes(SIMPLE_CNN),
    "random_crop_flip": probe_random_crop_flip,
    "shuffled_batches": probe_shuffled_batches,
    "augment": probe_augment,
}


# ---------------------------------------------------------------------------------------------
# Judges of the random functions


def shifts_and_flips(inputs: np.ndarray, augmented: np.ndarray, padding: int) -> list[tuple[int, int, bool] | None]:
    """For each augmented image, the (row shift, column shift, mirrored) that makes it from its
    original (zero padding), or None when no shift within `padding` does."""
    height, width = inputs.shape[1:3]
    padded = np.pad(inputs, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    found = [None] * len(inputs)
    for top in range(2 * padding + 1):
        for left in range(2 * padding + 1):
            crops = padded[:, top:top + height, left:left + width]
            for mirrored, candidates in ((False, crops), (True, crops[:, :, ::-1])):
                matches = np.all(candidates == augmented, axis=(1, 2, 3))
                for index in np.flatnonzero(matches):
                    found[index] = found[index] or (top - padding, left - padding, mirrored)
    return found


UNCHANGED = "every image came back as it was (no shift, no mirror): nothing was augmented"


def _unchanged(found: list) -> bool:
    """Every image matched as itself, unshifted and not mirrored: the identity, worth nothing."""
    return bool(found) and all(match == (0, 0, False) for match in found)


def _is_array_like(got, key, reference) -> Part | None:
    array = got.get(key)
    if array is None or array.shape != reference.shape or array.dtype != reference.dtype:
        shape = "nothing" if array is None else f"{array.dtype}{list(array.shape)}"
        return Part("shape and dtype kept", 1.0, False, f"expected {reference.dtype}{list(reference.shape)}, got {shape}")
    return None


@reading("augmented", "inputs", "uint8")
def crop_flip_geometry(got: dict, expected: dict) -> list[Part]:
    missing = absent(got, "augmented", "augmented images", 3.0)
    if missing is not None:
        return [missing]
    inputs, augmented = expected["inputs"], got["augmented"]
    wrong_shape = _is_array_like(got, "augmented", inputs)
    uint8 = got.get("uint8")
    dtype_kept = uint8 is not None and uint8.dtype == np.uint8 and uint8.shape == (3, 4, 4, 1)
    if wrong_shape:
        return [wrong_shape, Part("each image shifted within the padding, maybe mirrored", 2.0, False, "not judged")]
    found = shifts_and_flips(inputs, augmented, PADDING)
    if _unchanged(found):
        return [Part("shape and dtype kept", 1.0, False, "not judged: " + UNCHANGED),
                Part("each image shifted within the padding, maybe mirrored", 2.0, False, UNCHANGED)]
    unmatched = [index for index, match in enumerate(found) if match is None]
    return [
        Part("shape and dtype kept", 1.0, dtype_kept, "" if dtype_kept else "uint8 images did not stay uint8 (3, 4, 4, 1)"),
        Part(f"each image is its original shifted by at most {PADDING} pixels (zeros fill in) and maybe mirrored "
             "left-right", 2.0, not unmatched,
             f"{len(unmatched)} of {len(found)} images are no such shift, e.g. image {unmatched[0]}" if unmatched else "",
             hint="pad H and W with zeros, crop back at an offset in 0..2*padding, mirror along the width axis "
                  "(axis 1 of one image (H, W, C), axis 2 of the batch)"),
    ]


@reading("augmented", "inputs", "again", "other_key")
def crop_flip_randomness(got: dict, expected: dict) -> list[Part]:
    missing = absent(got, "augmented", "augmented images", 1.0)
    if missing is not None:
        return [missing]
    inputs = expected["inputs"]
    found = (shifts_and_flips(inputs, got["augmented"], PADDING)
             if "augmented" in got and got["augmented"].shape == inputs.shape else [])
    if _unchanged(found):
        return [Part("driven by the key", 2.0, False, UNCHANGED,
                     hint="draw each image's offset and flip from the key passed in")]
    parts = []
    for key, what, should_equal in (("again", "the same key gives the same images", True),
                                    ("other_key", "another key gives other images", False)):
        ok = all(name in got and got[name].shape == inputs.shape for name in ("augmented", key)) and (
            np.array_equal(got["augmented"], got[key]) == should_equal)
        parts.append(Part(what, 1.0, ok, "" if ok else f"{'different' if should_equal else 'the same'} images",
                          hint="draw everything from the key passed in: no global state, no fixed key"))
    matched = [match for match in found if match is not None]
    share = np.mean([mirrored for _, _, mirrored in matched]) if matched else 0.0
    parts.append(Part("about half of the images mirrored", 1.0, bool(matched) and 0.35 <= share <= 0.65,
                      f"{share:.0%} of {len(matched)} recognisable images mirrored",
                      hint="jax.random.bernoulli(key, 0.5) per image"))
    # (2p + 1)^2 = 25 (row, column) offsets over 256 images: a right draw shows nearly all of them
    # (each is missing with probability 3e-5); one offset for both axes shows only the 5 diagonal ones
    offsets = {(row, column) for row, column, _ in matched}
    every_offset = (2 * PADDING + 1) ** 2
    diagonal = bool(matched) and all(row == column for row, column in offsets)
    parts.append(Part(f"shifts spread over the {every_offset} (row, column) offsets of -{PADDING}..{PADDING}", 1.0,
                      len(offsets) >= every_offset - 5,
                      f"{len(offsets)} of the {every_offset} offsets occur over {len(matched)} images"
                      + ("; the row and the column shift are always equal" if diagonal else ""),
                      hint="draw the row and the column offset apart: jax.random.randint(key, (2,), 0, 2 * padding + 1)"))
    return parts


def keys_used_once(hint: str):
    """Self-reported judge (never scored: read from the program the graded code traces, which it can
    change, see `grader.checks`): every PRNG key used once (`keys.keys_used_twice`)."""

    @reading("keys_reused")
    def judge(got: dict, expected: dict) -> list[Part]:
        if "keys_reused" not in got:
            return []
        reused = ev.text(got, "keys_reused")
        return [Part("each key used once (read from the traced code)", 0.0, not reused, reused, hint=hint,
                     self_reported=True)]

    return judge


@reading("augmented", "compiles")
def crop_flip_jit(got: dict, expected: dict) -> list[Part]:
    """Self-reported (never scored: the graded process can make `jax.jit` leave the function eager, see
    `grader.checks`): whether random_crop_flip compiled, said only when the plain call worked."""
    if "augmented" not in got:
        return []
    what = "works under jax.jit (padding static)"
    missing = absent(got, "compiles", what, 0.0)
    if missing is not None:
        return [dataclasses.replace(missing, not_attempted=False, self_reported=True,
                                    hint="padding sets a shape, so it is static; nothing may branch in "
                                         "Python on a traced value or call numpy on it")]
    return [Part(what, 0.0, bool(got["compiles"]), "", self_reported=True)]


NOT_JUDGED_SHAPE = "not judged: the batches have another shape (see above)"


@reading("batches")
def batches_order(got: dict, expected: dict) -> list[Part]:
    missing = absent(got, "batches", "batches", 3.0)
    if missing is not None:
        return [missing]
    batches = got["batches"]
    wanted = (NUM_EXAMPLES // BATCH_SIZE, BATCH_SIZE)
    shape_ok = batches.shape == wanted and batches.dtype.kind in "iu"
    flat = batches.reshape(-1) if shape_ok else np.zeros(0)
    distinct = shape_ok and len(set(flat.tolist())) == flat.size and 0 <= flat.min() and flat.max() < NUM_EXAMPLES
    shuffled = distinct and not np.array_equal(np.sort(flat), flat)
    return [
        Part("shape (num_examples // batch_size, batch_size) of integers", 1.0, shape_ok,
             f"expected int{list(wanted)} for {NUM_EXAMPLES} examples in batches of {BATCH_SIZE}, got "
             f"{batches.dtype}{list(batches.shape)}", hint="drop the last, incomplete batch"),
        Part(f"each example (0..{NUM_EXAMPLES - 1}) at most once", 1.0, bool(distinct),
             "an example repeats or is out of range" if shape_ok else NOT_JUDGED_SHAPE,
             hint="a permutation, not independent random indices"),
        Part("a shuffled order", 1.0, bool(shuffled),
             "the examples come in their natural order" if distinct else NOT_JUDGED_SHAPE if not shape_ok
             else "not judged: the batches are no ordering of distinct examples (see above)",
             hint="jax.random.permutation(order_key, num_examples)"),
    ]


@reading("batches", "again", "other_key")
def batches_keys(got: dict, expected: dict) -> list[Part]:
    missing = absent(got, "batches", "batches", 2.0)
    if missing is not None:
        return [missing]
    parts = []
    for key, what, should_equal in (("again", "the same key gives the same batches", True),
                                    ("other_key", "another key gives another order", False)):
        ok = "batches" in got and key in got and got[key].shape == got["batches"].shape and (
            np.array_equal(got["batches"], got[key]) == should_equal)
        parts.append(Part(what, 1.0, bool(ok), "" if ok else f"{'different' if should_equal else 'the same'} batches"))
    return parts


@reading("step_keys")
def step_keys_differ(got: dict, expected: dict) -> list[Part]:
    missing = absent(got, "step_keys", "step keys", 1.0)
    if missing is not None:
        return [missing]
    keys = got["step_keys"]
    count = NUM_EXAMPLES // BATCH_SIZE
    rows = keys.reshape(keys.shape[0], -1) if keys.ndim else keys.reshape(1, 1)
    ok = keys.shape[0:1] == (count,) and len({row.tobytes() for row in rows}) == count
    return [Part("a different key for every step", 1.0, bool(ok),
                 f"expected {count} different keys, got {len({row.tobytes() for row in rows})} different "
                 f"among {keys.shape[0] if keys.ndim else 1}",
                 hint="jax.random.split(steps_key, num_batches): one key per step, none used twice")]


CHECKS = [
    *models.checks(SIMPLE_CNN),
    Check(name="random_crop_flip: shifted within the padding, maybe mirrored", task="4.3", function="random_crop_flip",
          points=4, judge=all_of(crop_flip_geometry, crop_flip_jit)),
    Check(name="random_crop_flip: driven by the key", task="4.3", function="random_crop_flip", points=2,
          judge=all_of(crop_flip_randomness, keys_used_once(
              "a key drawn from twice gives related draws: split each image's key into a shift key and a flip key"))),
    Check(name="shuffled_batches: each example at most once, shuffled", task="4.4", function="shuffled_batches",
          points=2, judge=batches_order),
    Check(name="shuffled_batches: the order follows the key", task="4.4", function="shuffled_batches", points=1,
          judge=batches_keys, hint="draw the order from (a key split from) the key passed in"),
    Check(name="shuffled_batches: a new key for every step", task="4.4", function="shuffled_batches", points=1,
          judge=all_of(step_keys_differ, keys_used_once(
              "split the epoch's key in two first: one key for the order, one to split into the step keys"))),
    Check(name="augment: random_crop_flip with padding 2 in training", task="4.5", function="augment", points=1.5,
          judge=all_of(same("training", "training batch (random_crop_flip's output, padding 2)"),
                       flag("key_follows", "random_crop_flip gets a key that follows augment's own (any key "
                            "derived from it)", failed="random_crop_flip was not called once with a key that "
                            "changes with augment's key"),
                       jit_agrees("jit", "training", "works under jax.jit")),
          hint="random_crop_flip(key, images, padding=2) when training is True"),
    Check(name="augment: the images as they are at evaluation", task="4.5", function="augment", points=1.5,
          judge=all_of(values("evaluation", "evaluation batch (key None)"),
                       values("evaluation_with_key", "evaluation batch (with a key)")),
          hint="evaluation must see the real images: no random change when training is False"),
    Check(name="random_crop_flip: shifted within the padding, maybe mirrored (hidden inputs)", task="4.3",
          function="random_crop_flip", points=1, probe=HIDDEN_PREFIX + "random_crop_flip", judge=crop_flip_geometry,
          visibility="after_due_date", hidden=True),
    hidden(task="4.5", function="augment", keys=("training", "evaluation")),
]
