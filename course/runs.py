"""A run of `course train`: its settings, and the records its folder keeps of it.

    settings = RunSettings("lenet5", "mnist", epochs=4, batch_size=64, learning_rate=3e-3, seed=0)

`course.train.fit` trains with `RunSettings` (settings that cannot train raise `SettingsError`);
each epoch adds a record (a dict of metrics) to the run's history, printed as one line
(`format_record`). With an `out_dir` the run keeps `metrics.json` (`run_summary`: the history and
how the best checkpoint was chosen), and `resumed_history` continues it from `checkpoint/last`.
"""

import dataclasses
import json
import sys
from pathlib import Path

from course.checkpoints import CheckpointError, restore_checkpoint
from course.files import write_atomically


class SettingsError(ValueError):
    """Settings that cannot train (a dataset the model does not take, a batch larger than the data...)."""


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """The hyperparameters of one run: the recipe's defaults with the caller's overrides."""

    model_name: str
    dataset: str
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    max_train_examples: int | None = None
    precision: str = "float32"


def format_record(record: dict) -> str:
    """One line summing up an epoch's record."""
    parts = [f"epoch {record['epoch']}", f"train loss {record['train_loss']:.4f}",
             f"train acc {record['train_accuracy']:.2%}"]
    if "validation_accuracy" in record:
        parts.append(f"val loss {record['validation_loss']:.4f}, acc {record['validation_accuracy']:.2%}")
    parts += [f"test (not used for selection) loss {record['test_loss']:.4f}, acc {record['test_accuracy']:.2%}",
              f"{record['train_seconds']:.1f}s", f"{record['images_per_second']:.0f} img/s"]
    return " | ".join(parts)


def best_record(history: list[dict]) -> dict | None:
    """The record of the epoch `checkpoint/best` holds: the first of highest validation accuracy."""
    scored = [record for record in history if "validation_accuracy" in record]
    return max(scored, key=lambda record: record["validation_accuracy"]) if scored else None


def run_summary(settings: RunSettings, history: list[dict], split: dict, extensions: list[dict]) -> dict:
    """The content of metrics.json: settings, history, and how the best checkpoint was chosen."""
    best = best_record(history)
    return {"settings": dataclasses.asdict(settings), "history": history,
            "best_checkpoint": {"chosen_on": "validation_accuracy", "epoch": best["epoch"],
                                "validation_accuracy": best["validation_accuracy"]},
            "validation": {**split, "held_out_of": "the training split"},
            "test": "evaluated after every epoch for the curves only; not used for selection",
            "extensions": extensions}


def write_json(path: Path, content) -> None:
    """Writes JSON to `path` whole (`course.files.write_atomically`)."""
    write_atomically(path, json.dumps(content, indent=2))


def resumed_history(out: Path, model, optimizer, settings: RunSettings, split: dict,
                    progress: bool) -> tuple[list[dict], float, list[dict]]:
    """Restores `out/checkpoint/last` into `model` and `optimizer` for `--resume`; returns (history,
    best validation accuracy, extensions).

    The run must have the same settings except `epochs`: with as many epochs, an interrupted run
    continues exactly as the uninterrupted one would have; with more, a finished (or interrupted)
    run is extended. An extension continues the optimizer where it stopped, but its learning-rate
    schedule is the one of a run of the new length (a cosine decay would otherwise stay at zero),
    so it differs from a run trained that long from the start: `extensions` records each one.
    """
    last = out / "checkpoint" / "last"
    try:
        info = restore_checkpoint(last, model, optimizer)
    except CheckpointError as error:
        raise CheckpointError(f"Cannot resume {out}: {error}") from None
    except Exception as error:  # noqa: BLE001  # orbax reports a tree that does not fit in many ways
        reason = str(error).strip().splitlines()[0][:200] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"Cannot resume {out}: {last} does not hold a {settings.model_name!r} model "
                              f"and its optimizer ({reason})") from None
    history = info["history"]
    saved = {"precision": "float32", **info["settings"]}  # runs from before --precision were float32
    wanted = dataclasses.asdict(settings)
    if {**saved, "epochs": 0} != {**wanted, "epochs": 0}:
        raise SettingsError(f"Cannot resume {out}: it was trained with {info['settings']}, not {wanted} "
                            "(only --epochs may change)")
    if any("validation_accuracy" not in record for record in history):
        raise SettingsError(f"Cannot resume {out}: its best checkpoint was chosen on the test split (a run from "
                            "before validation splits); train it again without --resume")
    if info.get("validation", split) != split:
        raise SettingsError(f"Cannot resume {out}: it held out the validation split {info['validation']}, "
                            f"not {split}")
    if settings.epochs < len(history):
        raise SettingsError(f"Cannot resume {out} for {settings.epochs} epochs: it has trained {len(history)} "
                            f"already; pass --epochs {len(history) + 1} or more to extend it")
    extensions = list(info.get("extensions", []))
    if settings.epochs != saved["epochs"]:
        extensions.append({"after_epoch": len(history), "from_epochs": saved["epochs"], "to_epochs": settings.epochs})
        if progress:
            print(f"course train: extending {out} from {saved['epochs']} to {settings.epochs} epochs, after epoch "
                  f"{len(history)}; the learning-rate schedule is now that of a {settings.epochs}-epoch run",
                  file=sys.stderr)
    return history, info["best_accuracy"], extensions
