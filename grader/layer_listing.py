"""A model's layer listing: the records `probing.describe` makes of a model's layers (path, kind,
settings, parameter shapes), carried as evidence in JSON, in a 0-d text array.

`layer_records` checks a listing before anything else reads it, so that a crafted one costs
milliseconds, not hours; `layer_counts` and `match_layers` summarise and pair two models' records,
for the grader's judge of a model's layers (`grader.judges.layers_match`) and for the child's
rebuilding of a model with the reference's layers (`grader.probing.grafted_model`).
"""

import json

import numpy as np

from grader.evidence import EvidenceError

MAX_LAYERS = 1000  # records in one model's layer listing; the course's largest model has 9
MAX_LISTING_CHARACTERS = 256 * 2**10  # the largest listing the course makes has about 2,000
MAX_TEXT_CHARACTERS = 200  # a layer's path or kind, a setting's or parameter's name, a setting's text
MAX_ENTRIES_PER_LAYER = 16  # settings, or parameters, of one layer
MAX_DIMENSIONS_OF_A_PARAMETER = 8
LAYER_KEYS = {"path", "kind", "settings", "params"}


def layer_records(listing, what: str = "the layer listing") -> list[dict]:
    """The records of a model's layer listing (the JSON of `probing.describe`, as a 0-d text array),
    checked before anything else reads them: at most MAX_LISTING_CHARACTERS characters decoded, at
    most MAX_LAYERS records, each {"path": text, "kind": text, "settings": {name: a number, a text
    or a short list of them}, "params": {name: a shape of at most 8 sizes}} with short texts and
    few entries. Raises EvidenceError otherwise. Whatever then compares listings handles a few
    thousand small records at most, so a crafted listing costs milliseconds, not hours."""
    if not isinstance(listing, np.ndarray) or listing.dtype.kind != "U" or listing.shape != ():
        raise EvidenceError(f"{what} is not a text")
    if listing.dtype.itemsize // 4 > MAX_LISTING_CHARACTERS:
        raise EvidenceError(f"{what} holds {listing.dtype.itemsize // 4:,} characters, more than "
                            f"{MAX_LISTING_CHARACTERS:,}")
    try:
        records = json.loads(str(listing))
    except (ValueError, RecursionError) as error:
        raise EvidenceError(f"{what} is not JSON ({str(error)[:100]})") from None
    if not isinstance(records, list) or len(records) > MAX_LAYERS:
        raise EvidenceError(f"{what} is not a list of at most {MAX_LAYERS} layers")
    for index, record in enumerate(records):
        if not (isinstance(record, dict) and set(record) == LAYER_KEYS and _is_text(record["path"])
                and _is_text(record["kind"]) and _is_table(record["settings"], _is_setting)
                and _is_table(record["params"], _is_shape)):
            raise EvidenceError(f"{what}: layer {index} is not a record of its path, kind, settings and "
                                "parameter shapes")
    return records


def _is_text(value) -> bool:
    return isinstance(value, str) and len(value) <= MAX_TEXT_CHARACTERS


def _is_table(value, is_entry) -> bool:
    return (isinstance(value, dict) and len(value) <= MAX_ENTRIES_PER_LAYER
            and all(_is_text(name) and is_entry(entry) for name, entry in value.items()))


def _is_setting(value, depth: int = 0) -> bool:
    """A layer setting as `probing.describe` writes it: a number, a text, nothing, or a short list of
    those, nested at most three deep (padding is a list of pairs)."""
    if value is None or isinstance(value, (bool, int, float)):
        return not isinstance(value, int) or abs(value) < 2**63
    if isinstance(value, str):
        return len(value) <= MAX_TEXT_CHARACTERS
    return (isinstance(value, list) and depth < 3 and len(value) <= MAX_ENTRIES_PER_LAYER
            and all(_is_setting(item, depth + 1) for item in value))


def _is_shape(value) -> bool:
    return (isinstance(value, list) and len(value) <= MAX_DIMENSIONS_OF_A_PARAMETER
            and all(isinstance(size, int) and not isinstance(size, bool) and 0 <= size < 2**40 for size in value))


def layer_counts(records: list[dict]) -> str:
    """How many layers of each kind the layer records hold: "1 Dropout, 4 Linear"."""
    counts = {}
    for record in records:
        counts[record["kind"]] = counts.get(record["kind"], 0) + 1
    return ", ".join(f"{count} {kind}" for kind, count in sorted(counts.items())) or "no layers"


def match_layers(mine: list[dict], theirs: list[dict]) -> list[tuple[dict, dict]]:
    """Pairs a model's layer records with the reference's, kind by kind: first layers whose
    parameter shapes agree (in definition order), then the rest in order. Dropout layers all pair
    with the reference's first dropout (one shared layer or one per use are both fine)."""
    pairs = []
    kinds = {record["kind"] for record in theirs}
    for kind in sorted(kinds):
        candidates = [record for record in mine if record["kind"] == kind]
        references = [record for record in theirs if record["kind"] == kind]
        if kind == "Dropout":
            pairs.extend((record, references[0]) for record in candidates)
            continue
        free = list(references)
        unmatched = []
        for record in candidates:
            same_shapes = next((ref for ref in free if ref["params"] == record["params"]), None)
            if same_shapes is None:
                unmatched.append(record)
            else:
                free.remove(same_shapes)
                pairs.append((record, same_shapes))
        pairs.extend(zip(unmatched, free))
    return pairs
