"""Checkpoints of a run: model and optimizer state (orbax) with an info.json, saved, found and restored.

    save_checkpoint(Path("runs/lenet5/checkpoint/last"), model, optimizer, info)
    folder = find_checkpoint("runs/lenet5")              # runs/lenet5/checkpoint/best
    info = restore_checkpoint(folder, model)             # settings, history, best accuracy, epoch

A checkpoint folder holds `model/` and `optimizer/` (orbax arrays) and `info.json` (written by
`course train` through `course.train.train_on_arrays`, or by `course port`). A folder that cannot be
read raises `CheckpointError` naming the damaged file; one that holds no checkpoint at all,
`CheckpointMissing`.
"""

import json
import os
import re
import shutil
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be read; the message names the file and what is wrong with it."""


class CheckpointMissing(CheckpointError, FileNotFoundError):
    """A folder that holds no checkpoint at all (also a FileNotFoundError, for callers that expect one)."""


def save_checkpoint(path: Path, model: nnx.Module, optimizer: nnx.Optimizer, info: dict) -> None:
    """Writes model state, optimizer state (orbax) and `info` (JSON) to `path`, replacing it whole."""
    partial = path.with_name(path.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(partial.resolve() / "model", nnx.state(model))
    checkpointer.save(partial.resolve() / "optimizer", nnx.state(optimizer))
    checkpointer.wait_until_finished()
    (partial / "info.json").write_text(json.dumps(info, indent=2))
    shutil.rmtree(path, ignore_errors=True)
    os.replace(partial, path)


SETTINGS_TYPES = {"model_name": str, "dataset": str, "epochs": int, "batch_size": int,
                  "learning_rate": (int, float), "seed": int, "max_train_examples": (int, type(None)),
                  "precision": str}


def info_problem(info) -> str | None:
    """What is wrong with the content of a checkpoint's info.json (written by `save_checkpoint` from
    `train_on_arrays` or `course port`), or None if nothing is."""
    if not isinstance(info, dict):
        return f"expected a JSON object, found {type(info).__name__}"
    settings = info.get("settings")
    if not isinstance(settings, dict):
        return "'settings' is missing or not an object"
    for name, kind in SETTINGS_TYPES.items():
        if name == "precision" and name not in settings:
            continue  # runs from before --precision were float32
        if not isinstance(settings.get(name), kind) or isinstance(settings.get(name), bool):
            return f"settings.{name} is {settings.get(name)!r}, expected {getattr(kind, '__name__', 'a number')}"
    history = info.get("history")
    if not isinstance(history, list):
        return "'history' is missing or not a list"
    for number, record in enumerate(history, start=1):
        if not isinstance(record, dict) or record.get("epoch") != number:
            return f"history entry {number} is not the record of epoch {number}"
        for name, value in record.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool):
                return f"history entry {number}: {name} is {value!r}, not a number"
    if not isinstance(info.get("best_accuracy"), (int, float)):
        return f"best_accuracy is {info.get('best_accuracy')!r}, not a number"
    if info.get("epoch") != len(history):
        return f"epoch is {info.get('epoch')!r}, but the history holds {len(history)} epochs"
    if not isinstance(info.get("validation", {}), dict):
        return f"validation is {info['validation']!r}, not an object"
    if not isinstance(info.get("extensions", []), list) or not all(isinstance(e, dict) for e in info.get("extensions", [])):
        return f"extensions is {info['extensions']!r}, not a list of objects"
    return None


def find_checkpoint(path) -> Path:
    """The checkpoint folder (holding info.json and model/) that `path` names: `path` itself, or the
    best checkpoint of a run folder (`path/checkpoint/best`, or `path/best`). CheckpointMissing,
    saying what was expected, where there is none."""
    path = Path(path)
    for candidate in (path, path / "checkpoint" / "best", path / "best"):
        if (candidate / "info.json").is_file() and (candidate / "model").is_dir():
            return candidate
    if not path.exists():
        raise CheckpointMissing(f"{path} does not exist; pass a run folder written by `course train --out` "
                                "(or `course port`) or its checkpoint/best")
    raise CheckpointMissing(f"{path} holds no checkpoint: expected {path}/checkpoint/best or a folder with model/ "
                            "and info.json (written by `course train --out` or `course port`)")


def read_checkpoint_info(path: Path) -> dict:
    """The checkpoint's info.json (settings, history, best accuracy, epoch), checked; raises
    CheckpointError naming the file when it is missing, not JSON, or not what `course train` writes."""
    file = Path(path) / "info.json"
    try:
        info = json.loads(file.read_text())
    except FileNotFoundError:
        raise CheckpointMissing(f"{path} is not a checkpoint written by `course train` (no info.json)") from None
    except UnicodeDecodeError:
        raise CheckpointError(f"{file}: corrupt, not text") from None
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{file}: corrupt, not valid JSON ({error})") from None
    if problem := info_problem(info):
        raise CheckpointError(f"{file}: not the info file of a `course train` checkpoint: {problem}")
    return info


def damaged_arrays(folder: Path) -> str | None:
    """What is wrong with the files of an orbax array folder (model/ or optimizer/) on their own,
    whatever model they are read into, as "FILE: problem"; None if every array reads back."""
    for file in [folder / "_METADATA", *sorted((folder / "array_metadatas").glob("*"))]:
        try:
            json.loads(file.read_text())
        except FileNotFoundError:
            return f"{file}: missing"
        except (UnicodeDecodeError, json.JSONDecodeError):
            return f"{file}: corrupt (not JSON)"
    try:  # every array read back as numpy: no model, no devices, only the files
        tree = ocp.StandardCheckpointer().metadata(folder.resolve()).item_metadata.tree
        as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
        ocp.PyTreeCheckpointer().restore(folder.resolve(), args=ocp.args.PyTreeRestore(restore_args=as_numpy))
    except Exception as error:  # noqa: BLE001  # tensorstore and orbax raise plain Exception/ValueError
        while error.__cause__ is not None:  # the innermost error names the file and the array
            error = error.__cause__
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        files = [name for name in re.findall(r'local file "([^"]+)"', message) if not name.endswith("/")]
        array = re.search(r'Error reading "([^"/]+)\.value/', message)
        reason = message.rsplit('": ', 1)[-1][:160]
        where = files[-1] if files else str(folder)
        return f"{where}: the array data{f' of {array[1]}' if array else ''} is corrupt ({reason})"
    return None


def restore_checkpoint(path: Path, model: nnx.Module, optimizer: nnx.Optimizer | None = None) -> dict:
    """Loads a checkpoint written by `save_checkpoint` into `model` (and `optimizer`); returns its info.

    A damaged file (info.json, or the array data under model/ or optimizer/) raises CheckpointError
    naming it; arrays that are intact but do not fit `model` raise orbax's own error.
    """
    path = Path(path)
    if not (path / "model").is_dir() or not (path / "info.json").is_file():
        raise CheckpointMissing(f"{path} is not a checkpoint written by `course train` (no model/ and info.json)")
    info = read_checkpoint_info(path)
    checkpointer = ocp.StandardCheckpointer()
    for part, target in (("model", model), ("optimizer", optimizer)):
        if target is None:
            continue
        try:
            nnx.update(target, checkpointer.restore(path.resolve() / part, nnx.state(target)))
        except Exception:
            if damage := damaged_arrays(path / part):
                raise CheckpointError(damage) from None
            raise
    return info
