"""The training engine: the one loop every model of every week trains with.

    history = fit(RECIPES["lenet5"], out_dir="runs/lenet5")

`fit` loads the data, builds the model and an `nnx.Optimizer`, and runs the recipe's jitted
`train_step` over shuffled minibatches, evaluating after each epoch. With `out_dir` it keeps
`metrics.json` (the history), `curves.png`, and orbax checkpoints of the last and the best epoch,
from which `fit(..., resume=True)` continues exactly where an interrupted run stopped.
With several local devices the batch is sharded over them and the state replicated; the model code
and the steps are the same.
"""

import dataclasses
import json
import os
import shutil
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from course import data
from course.recipe import Recipe

EVAL_BATCH_SIZE = 500


class SettingsError(ValueError):
    """Settings that cannot train (a dataset the model does not take, a batch larger than the data...)."""


@dataclasses.dataclass(frozen=True)
class Settings:
    """The hyperparameters of one run: the recipe's defaults with the caller's overrides."""

    model_name: str
    dataset: str
    epochs: int
    batch_size: int
    learning_rate: float
    seed: int
    max_train_examples: int | None = None


def learning_rate_schedule(recipe: Recipe, learning_rate: float, total_steps: int, steps_per_epoch: int):
    """The recipe's schedule as an optax schedule (or a constant float)."""
    if recipe.schedule == "cosine":
        return optax.cosine_decay_schedule(learning_rate, total_steps)
    if recipe.schedule == "warmup_cosine":
        warmup = min(steps_per_epoch, total_steps // 2)
        return optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup, total_steps)
    return learning_rate


def build(recipe: Recipe, settings: Settings, steps_per_epoch: int) -> tuple[nnx.Module, nnx.Optimizer]:
    """The recipe's model, seeded by `settings.seed`, and its optimizer over the model's `nnx.Param`s."""
    model = recipe.model(nnx.Rngs(settings.seed))
    total_steps = max(1, settings.epochs * steps_per_epoch)
    schedule = learning_rate_schedule(recipe, settings.learning_rate, total_steps, steps_per_epoch)
    optimizer = nnx.Optimizer(model, recipe.optimizer(schedule), wrt=nnx.Param)
    return model, optimizer


def use_compilation_cache(folder: Path | None = None) -> Path:
    """Keeps XLA's compiled programs in `folder` (default: `$COURSE_CACHE_DIR/jax-compilation`), so a
    second `course train` of the same model compiles nothing (LeNet-5: about 5 s less start-up on 2
    cores). A cache folder already set (`$JAX_COMPILATION_CACHE_DIR`) is kept. Returns the folder."""
    if jax.config.jax_compilation_cache_dir:
        return Path(jax.config.jax_compilation_cache_dir)
    folder = Path(folder) if folder is not None else data.cache_root() / "jax-compilation"
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)  # the steps compile in under a second
    return folder


# ---------------------------------------------------------------------------------------------
# Devices: data parallelism over every local device


def data_mesh(devices=None) -> jax.sharding.Mesh | None:
    """A one-axis mesh ("data") over `devices`, or None where there is only one.

    By default, the local accelerators (GPUs, TPUs). Host CPU devices (`XLA_FLAGS=
    --xla_force_host_platform_device_count=N`) are never split over by default: they share the same
    cores, so a batch split over them trains slower (0.6x for SimpleCNN on 2 cores), and a step
    whose devices wait on each other in a collective can stall when there are more devices than
    cores. Pass them explicitly to split over them anyway (the tests do)."""
    if devices is None:
        devices = [device for device in jax.local_devices() if device.platform != "cpu"]
    return jax.sharding.Mesh(np.array(devices), ("data",)) if len(devices) > 1 else None


def replicate(tree, mesh: jax.sharding.Mesh | None):
    """Places every array of `tree` (for instance `nnx.state(model)`) on all devices of `mesh`."""
    return tree if mesh is None else jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(batch: np.ndarray, mesh: jax.sharding.Mesh | None) -> jax.Array:
    """Splits `batch` along its first axis over the mesh's devices (replicated if it does not divide)."""
    if mesh is None:
        return jnp.asarray(batch)
    divides = batch.shape[0] % mesh.devices.size == 0
    spec = PartitionSpec("data") if divides else PartitionSpec()
    return jax.device_put(batch, NamedSharding(mesh, spec))


# ---------------------------------------------------------------------------------------------
# Epochs


def prepare_fn(recipe: Recipe):
    """Jitted uint8 batch -> the model's evaluation input: the recipe's `prepare` (default: scale to
    [0, 1]), then its `augment` with `training=False`."""
    if recipe.augment is None:
        return jax.jit(recipe.prepare)
    return jax.jit(lambda images: recipe.augment(None, recipe.prepare(images), False))


def epoch_batches(recipe: Recipe, num_examples: int, settings: Settings, epoch: int) -> tuple[list, list]:
    """(the epoch's batch index arrays, a key per step), from the seed and the epoch alone, so that a
    resumed run draws what the uninterrupted one drew."""
    epoch_key = jax.random.fold_in(jax.random.key(settings.seed), epoch)
    if recipe.batches is not None:
        batches, step_keys = recipe.batches(epoch_key, num_examples, settings.batch_size)
        return list(np.asarray(batches)), list(step_keys)
    batches = data.batch_indices(num_examples, settings.batch_size, seed=settings.seed, epoch=epoch, drop_last=True)
    return batches, [jax.random.fold_in(epoch_key, step) for step in range(len(batches))]


def train_epoch(recipe, model, optimizer, images, labels, settings: Settings, epoch: int, mesh=None,
                progress: bool = True, callbacks=()) -> dict:
    """One epoch of `recipe.train_step` over shuffled batches; returns mean loss, accuracy and speed.

    Each callback's `on_step(step, metrics, model, inputs, labels)` is called after every step,
    `step` counted from 0 over all epochs (see `course.viz.DashboardWriter`).
    """
    prepare = jax.jit(recipe.prepare)
    augment = jax.jit(recipe.augment, static_argnums=2) if recipe.augment else None
    batches, step_keys = epoch_batches(recipe, len(labels), settings, epoch)
    model.train()
    # The model and optimizer are the same every step: caching their traversal saves ~1 ms of Python a step.
    step_fn = nnx.cached_partial(recipe.train_step, model, optimizer)
    totals = {"loss": 0.0, "accuracy": 0.0}
    pending = []
    start = time.perf_counter()
    bar = tqdm(batches, desc=f"epoch {epoch + 1}/{settings.epochs}", unit="batch", disable=not progress,
               leave=False, dynamic_ncols=True)
    for step, indices in enumerate(bar):
        inputs = prepare(shard_batch(images[indices], mesh))
        if augment is not None:
            inputs = augment(step_keys[step], inputs, True)
        batch_labels = shard_batch(labels[indices], mesh)
        metrics = step_fn(inputs, batch_labels)
        pending.append(metrics)
        for callback in callbacks:
            callback.on_step(epoch * len(batches) + step, metrics, model, inputs, batch_labels)
        if step % 50 == 49 or step == len(batches) - 1:
            for finished in jax.device_get(pending):  # one sync every 50 steps keeps the device busy
                totals = {name: totals[name] + float(finished[name]) for name in totals}
            pending = []
            seen = (step + 1) * settings.batch_size
            bar.set_postfix(loss=f"{totals['loss'] / (step + 1):.4f}",
                            img_per_s=f"{seen / (time.perf_counter() - start):.0f}")
    seconds = time.perf_counter() - start
    num_steps = max(1, len(batches))
    return {"train_loss": totals["loss"] / num_steps, "train_accuracy": totals["accuracy"] / num_steps,
            "train_seconds": seconds, "images_per_second": len(batches) * settings.batch_size / seconds}


def evaluate(recipe: Recipe, model: nnx.Module, images: np.ndarray, labels: np.ndarray, mesh=None,
             batch_size: int = EVAL_BATCH_SIZE) -> dict:
    """Mean loss and accuracy of `model` (in eval mode) over a whole split."""
    prepare = prepare_fn(recipe)
    model.eval()
    loss_sum = correct = 0.0
    for indices in data.batch_indices(len(labels), batch_size):
        metrics = recipe.eval_step(model, prepare(shard_batch(images[indices], mesh)),
                                   shard_batch(labels[indices], mesh))
        loss_sum += float(metrics["loss"]) * len(indices)
        correct += float(metrics["accuracy"]) * len(indices)
    return {"loss": loss_sum / len(labels), "accuracy": correct / len(labels)}


# ---------------------------------------------------------------------------------------------
# Checkpoints and history


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


def restore_checkpoint(path: Path, model: nnx.Module, optimizer: nnx.Optimizer | None = None) -> dict:
    """Loads a checkpoint written by `save_checkpoint` into `model` (and `optimizer`); returns its info."""
    path = Path(path)
    if not (path / "model").is_dir() or not (path / "info.json").is_file():
        raise FileNotFoundError(f"{path} is not a checkpoint written by `course train` (no model/ and info.json)")
    checkpointer = ocp.StandardCheckpointer()
    nnx.update(model, checkpointer.restore(path.resolve() / "model", nnx.state(model)))
    if optimizer is not None:
        nnx.update(optimizer, checkpointer.restore(path.resolve() / "optimizer", nnx.state(optimizer)))
    return json.loads((path / "info.json").read_text())


def write_json(path: Path, content) -> None:
    """Writes JSON to `path` through a temporary file, so `path` is always complete."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(content, indent=2))
    os.replace(partial, path)


# ---------------------------------------------------------------------------------------------
# The loop


def fit(recipe: Recipe, *, model_name: str = "model", dataset: str | None = None, epochs: int | None = None,
        batch_size: int | None = None, learning_rate: float | None = None, seed: int = 0,
        data_dir=None, out_dir=None, resume: bool = False, max_train_examples: int | None = None,
        progress: bool = True, callbacks=()) -> list[dict]:
    """Trains `recipe`'s model and returns the history: one dict of metrics per epoch.

    Each override (dataset, epochs, ...) replaces the recipe's default. With `out_dir`, writes
    `metrics.json`, `curves.png` and checkpoints `checkpoint/last` and `checkpoint/best` (best
    validation accuracy, or test accuracy when the recipe holds out no validation set). With
    `resume=True`, continues from `out_dir/checkpoint/last` and reproduces the uninterrupted run.
    `callbacks` get `on_step(...)` after every train step (see `train_epoch`) and, if they have it,
    `finish(model, images, labels)` with the first test images after the last epoch.
    """
    settings = Settings(model_name, dataset or recipe.dataset, epochs or recipe.epochs,
                        batch_size or recipe.batch_size, learning_rate or recipe.learning_rate, seed,
                        max_train_examples)
    if settings.dataset not in recipe.datasets:
        raise SettingsError(f"Model {model_name!r} does not train on {settings.dataset!r}; "
                         f"its datasets: {', '.join(recipe.datasets)}")
    train_images, train_labels = data.load(settings.dataset, "train", data_dir=data_dir)
    test_images, test_labels = data.load(settings.dataset, "test", data_dir=data_dir)
    if max_train_examples:
        train_images, train_labels = train_images[:max_train_examples], train_labels[:max_train_examples]
    _, history = train_on_arrays(recipe, settings, (train_images, train_labels), (test_images, test_labels),
                                 out_dir=out_dir, resume=resume, progress=progress, callbacks=callbacks)
    return history


def train_on_arrays(recipe: Recipe, settings: Settings, train_data, test_data, *, out_dir=None,
                    resume: bool = False, progress: bool = True, callbacks=()) -> tuple[nnx.Module, list[dict]]:
    """The loop of `fit` on arrays already in memory; returns (the trained model, the history).

    Inputs:
    - train_data, test_data: (uint8 images (N, H, W, C), int32 labels (N,)); the recipe's
      validation share is held out of train_data.
    - out_dir, resume, progress, callbacks: as `fit`.
    """
    (train_images, train_labels), (test_images, test_labels) = train_data, test_data
    validation = None
    if recipe.validation_fraction:
        kept, held_out = data.holdout_split(len(train_labels), recipe.validation_fraction, settings.seed)
        validation = (train_images[held_out], train_labels[held_out])
        train_images, train_labels = train_images[kept], train_labels[kept]
    mesh = data_mesh()
    if mesh is None and len(jax.local_devices()) > 1 and progress:
        print(f"course train: {len(jax.local_devices())} host CPU devices are visible; training on one of them "
              "(they share the same cores, so splitting batches over them is slower)", file=sys.stderr)
    if mesh is not None and settings.batch_size % mesh.devices.size:
        raise SettingsError(f"batch size {settings.batch_size} must divide over {mesh.devices.size} devices")
    if len(train_labels) < settings.batch_size:
        raise SettingsError(f"{len(train_labels)} training examples are fewer than one batch of {settings.batch_size}")

    model, optimizer = build(recipe, settings, len(train_labels) // settings.batch_size)
    history, best_accuracy = [], -1.0
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if resume and (out / "checkpoint" / "last").is_dir():
            info = restore_checkpoint(out / "checkpoint" / "last", model, optimizer)
            if info["settings"] != dataclasses.asdict(settings):
                raise SettingsError(f"Cannot resume {out}: it was trained with {info['settings']}, "
                                 f"not {dataclasses.asdict(settings)}")
            history, best_accuracy = info["history"], info["best_accuracy"]
    nnx.update((model, optimizer), replicate(nnx.state((model, optimizer)), mesh))

    for epoch in range(len(history), settings.epochs):
        epoch_start = time.perf_counter()
        record = {"epoch": epoch + 1}
        record.update(train_epoch(recipe, model, optimizer, train_images, train_labels, settings, epoch,
                                  mesh, progress, callbacks))
        if validation is not None:
            record.update({f"validation_{k}": v for k, v in evaluate(recipe, model, *validation, mesh).items()})
        record.update({f"test_{k}": v for k, v in evaluate(recipe, model, test_images, test_labels, mesh).items()})
        record["epoch_seconds"] = time.perf_counter() - epoch_start
        history.append(record)
        if progress:
            print(format_record(record), flush=True)
        if out is not None:
            selected = record.get("validation_accuracy", record["test_accuracy"])
            info = {"settings": dataclasses.asdict(settings), "history": history,
                    "best_accuracy": max(best_accuracy, selected)}
            if selected > best_accuracy:
                best_accuracy = selected
                save_checkpoint(out / "checkpoint" / "best", model, optimizer, {**info, "epoch": epoch + 1})
            save_checkpoint(out / "checkpoint" / "last", model, optimizer, {**info, "epoch": epoch + 1})
            write_json(out / "metrics.json", {"settings": dataclasses.asdict(settings), "history": history})
    for callback in callbacks:
        if hasattr(callback, "finish"):
            model.eval()
            sample = slice(0, settings.batch_size)
            callback.finish(model, prepare_fn(recipe)(test_images[sample]), jnp.asarray(test_labels[sample]))
    if out is not None:
        from course import viz

        viz.plot_history(history).savefig(out / "curves.png", dpi=100)
    return model, history


def format_record(record: dict) -> str:
    """One line summing up an epoch's record."""
    parts = [f"epoch {record['epoch']}", f"train loss {record['train_loss']:.4f}",
             f"train acc {record['train_accuracy']:.2%}"]
    if "validation_accuracy" in record:
        parts.append(f"val acc {record['validation_accuracy']:.2%}")
    parts += [f"test loss {record['test_loss']:.4f}", f"test acc {record['test_accuracy']:.2%}",
              f"{record['train_seconds']:.1f}s", f"{record['images_per_second']:.0f} img/s"]
    return " | ".join(parts)
