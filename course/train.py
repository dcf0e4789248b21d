"""The training engine: the one loop every model of every week trains with.

    history = fit(RECIPES["lenet5"], out_dir="runs/lenet5")

`fit` loads the data, builds the model and an `nnx.Optimizer`, and runs the recipe's jitted
`train_step` over shuffled minibatches, evaluating after each epoch. The recipe's validation
share of the training split is held out (`course.batching.validation_split`, a fixed seed): it
chooses the best checkpoint. The test split is evaluated after every epoch for the curves only and
never chooses anything. With `out_dir` it keeps `metrics.json` (the history: `course.runs`),
`curves.png`, and orbax checkpoints of the last and the best epoch (`course.checkpoints`), from
which `fit(..., resume=True)` continues exactly where an interrupted run stopped, or extends a
finished run to more epochs.
With several local devices the batch is sharded over them and the state replicated
(`course.sharding`); the model code and the steps are the same.
"""

import dataclasses
import functools
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from tqdm.auto import tqdm

from course import batching, checkpoints, data, layers, runs, sharding
from course.precision import set_precision
from course.recipe import Recipe

EVAL_BATCH_SIZE = 500


def learning_rate_schedule(recipe: Recipe, learning_rate: float, total_steps: int, steps_per_epoch: int):
    """The recipe's schedule as an optax schedule (or a constant float)."""
    if recipe.schedule == "cosine":
        return optax.cosine_decay_schedule(learning_rate, total_steps)
    if recipe.schedule == "warmup_cosine":
        warmup = min(steps_per_epoch, total_steps // 2)
        return optax.warmup_cosine_decay_schedule(0.0, learning_rate, warmup, total_steps)
    return learning_rate


def build(recipe: Recipe, settings: runs.RunSettings, steps_per_epoch: int) -> tuple[nnx.Module, nnx.Optimizer]:
    """The recipe's model, seeded by `settings.seed`, in `settings.precision` (`course.precision`),
    with the fast CPU convolution where the recipe asks for it, and its optimizer over the model's
    `nnx.Param`s."""
    model = set_precision(recipe.model(nnx.Rngs(settings.seed)), settings.precision)
    if recipe.fast_cpu_convolution:
        layers.use_fast_convolutions(model)
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
# Epochs


def prepare_fn(recipe: Recipe):
    """Jitted uint8 batch -> the model's evaluation input: the recipe's `prepare` (default: scale to
    [0, 1]), then its `augment` with `training=False`."""
    if recipe.augment is None:
        return jax.jit(recipe.prepare)
    return jax.jit(lambda images: recipe.augment(None, recipe.prepare(images), False))


def training_inputs(recipe: Recipe, images: jax.Array, key: jax.Array) -> jax.Array:
    """uint8 batch (N, H, W, C) -> the model's input for a train step: `recipe.prepare`, then
    `recipe.augment` with the step's `key`."""
    inputs = recipe.prepare(images)
    return inputs if recipe.augment is None else recipe.augment(key, inputs, True)


def epoch_batches(recipe: Recipe, num_examples: int, settings: runs.RunSettings,
                  epoch: int) -> tuple[np.ndarray, jax.Array]:
    """(the epoch's batch indices (B, batch_size), a key per step (B,)), from the seed and the epoch
    alone, so that a resumed run draws what the uninterrupted one drew."""
    epoch_key = jax.random.fold_in(jax.random.key(settings.seed), epoch)
    if recipe.batches is not None:
        batches, step_keys = recipe.batches(epoch_key, num_examples, settings.batch_size)
        return np.asarray(batches), step_keys if isinstance(step_keys, jax.Array) else jnp.stack(step_keys)
    batches = batching.batch_indices(num_examples, settings.batch_size, seed=settings.seed, epoch=epoch,
                                     drop_last=True)
    step_keys = jax.vmap(lambda step: jax.random.fold_in(epoch_key, step))(jnp.arange(len(batches)))
    return np.stack(batches), step_keys


_training_inputs = jax.jit(training_inputs, static_argnums=0)


# Train steps run this many at a time, in one compiled call (see `steps_program`): on a 2-core CPU
# that is 5-8% faster than a call per step, whose fixed cost is a large share of a small step.
STEPS_PER_CALL = 50


@functools.lru_cache(maxsize=16)
def steps_program(recipe: Recipe, graphdef: nnx.GraphDef):
    """The jitted `run(state, images, labels, key_data, valid) -> (state, metrics)`: a `lax.scan` of
    `recipe.train_step` over a chunk of batches, the same steps as calling it once per batch.

    Inputs:
    - state: `nnx.state((model, optimizer))` of a (model, optimizer) pair whose structure is `graphdef`;
      its buffers are donated (reused for the result).
    - images: uint8 (S, N, H, W, C), S batches; labels: int32 (S, N).
    - key_data: (S, ...) `jax.random.key_data` of each step's key (for `training_inputs`).
    - valid: bool (S,); a step whose entry is False changes nothing (pads the epoch's last chunk).

    Returns the state after the valid steps and each step's metrics, stacked (S,) (zeros where not valid).
    """
    def step(state, batch):
        images, labels, key_data, valid = batch

        def take_step(state):
            model, optimizer = nnx.merge(graphdef, state)
            inputs = training_inputs(recipe, images, jax.random.wrap_key_data(key_data))
            metrics = recipe.train_step(model, optimizer, inputs, labels)
            return nnx.state((model, optimizer)), metrics

        def skip_step(state):
            metrics_shape = jax.eval_shape(take_step, state)[1]
            return state, jax.tree.map(lambda leaf: jnp.zeros(leaf.shape, leaf.dtype), metrics_shape)

        return jax.lax.cond(valid, take_step, skip_step, state)

    def run(state, images, labels, key_data, valid):
        return jax.lax.scan(step, state, (images, labels, key_data, valid))

    return jax.jit(run, donate_argnums=0)


def train_epoch(recipe, model, optimizer, images, labels, settings: runs.RunSettings, epoch: int, mesh=None,
                progress: bool = True, callbacks=()) -> dict:
    """One epoch of `recipe.train_step` over shuffled batches; returns mean loss, accuracy and speed.

    The steps run STEPS_PER_CALL at a time (`steps_program`). With callbacks they run one at a time,
    and each callback's `on_step(step, metrics, model, inputs, labels)` is called after every step,
    `step` counted from 0 over all epochs (see `course.viz_training.DashboardWriter`).
    """
    batches, step_keys = epoch_batches(recipe, len(labels), settings, epoch)
    key_data = np.asarray(jax.random.key_data(step_keys) if jax.dtypes.issubdtype(step_keys.dtype, jax.dtypes.prng_key)
                          else step_keys)  # raw uint32 keys (jax.random.PRNGKey) are their own data
    num_steps = len(batches)
    per_call = 1 if callbacks else min(STEPS_PER_CALL, num_steps)
    model.train()
    graphdef, state = nnx.split((model, optimizer))
    run_steps = steps_program(recipe, graphdef)
    totals = {"loss": 0.0, "accuracy": 0.0}
    pending = []
    start = time.perf_counter()
    bar = tqdm(total=num_steps, desc=f"epoch {epoch + 1}/{settings.epochs}", unit="batch", disable=not progress,
               leave=False, dynamic_ncols=True)
    try:
        for first in range(0, num_steps, per_call):
            # The last chunk repeats its last step to fill up, and `valid` tells the program to skip those.
            chunk = np.minimum(np.arange(first, first + per_call), num_steps - 1)
            valid = np.arange(first, first + per_call) < num_steps
            chunk_images = sharding.shard_steps(mesh, images[batches[chunk]])
            chunk_labels = sharding.shard_steps(mesh, labels[batches[chunk]])
            state, metrics = run_steps(state, chunk_images, chunk_labels, key_data[chunk], valid)
            pending.append((int(valid.sum()), metrics))
            if callbacks:
                nnx.update((model, optimizer), state)
                inputs = _training_inputs(recipe, chunk_images[0], jax.random.wrap_key_data(key_data[first]))
                step_metrics = jax.tree.map(lambda metric: metric[0], metrics)
                for callback in callbacks:
                    callback.on_step(epoch * num_steps + first, step_metrics, model, inputs, chunk_labels[0])
            done = min(first + per_call, num_steps)
            if len(pending) * per_call >= 100 or done == num_steps:
                for count, finished in jax.device_get(pending):  # one sync every 100 steps keeps the device busy
                    totals = {name: totals[name] + float(finished[name][:count].sum()) for name in totals}
                pending = []
                bar.set_postfix(loss=f"{totals['loss'] / done:.4f}",
                                img_per_s=f"{done * settings.batch_size / (time.perf_counter() - start):.0f}")
            bar.update(done - first)
    finally:
        nnx.update((model, optimizer), state)
        bar.close()
    seconds = time.perf_counter() - start
    return {"train_loss": totals["loss"] / max(1, num_steps), "train_accuracy": totals["accuracy"] / max(1, num_steps),
            "train_seconds": seconds, "images_per_second": num_steps * settings.batch_size / seconds}


def evaluate(recipe: Recipe, model: nnx.Module, images: np.ndarray, labels: np.ndarray, mesh=None,
             batch_size: int = EVAL_BATCH_SIZE) -> dict:
    """Mean loss and accuracy of `model` (in eval mode) over a whole split."""
    prepare = prepare_fn(recipe)
    model.eval()
    loss_sum = correct = 0.0
    for indices in batching.batch_indices(len(labels), batch_size):
        metrics = recipe.eval_step(model, prepare(sharding.shard_batch(mesh, images[indices])),
                                   sharding.shard_batch(mesh, labels[indices]))
        loss_sum += float(metrics["loss"]) * len(indices)
        correct += float(metrics["accuracy"]) * len(indices)
    return {"loss": loss_sum / len(labels), "accuracy": correct / len(labels)}


# ---------------------------------------------------------------------------------------------
# The loop


def fit(recipe: Recipe, *, model_name: str = "model", dataset: str | None = None, epochs: int | None = None,
        batch_size: int | None = None, learning_rate: float | None = None, seed: int = 0,
        data_dir=None, out_dir=None, resume: bool = False, max_train_examples: int | None = None,
        precision: str = "float32", progress: bool = True, callbacks=()) -> list[dict]:
    """Trains `recipe`'s model and returns the history: one dict of metrics per epoch.

    Each override (dataset, epochs, ...) replaces the recipe's default. With `out_dir`, writes
    `metrics.json`, `curves.png` and checkpoints `checkpoint/last` and `checkpoint/best` (the epoch
    of best accuracy on the validation split held out of the training split; the test split is
    evaluated every epoch for the curves only). With `resume=True`, continues from
    `out_dir/checkpoint/last`: an interrupted run reproduces the uninterrupted one, and a finished
    run of fewer epochs than `epochs` is extended (see `course.runs.resumed_history`).
    `callbacks` get `on_step(...)` after every train step (see `train_epoch`) and, if they have it,
    `finish(model, images, labels)` with the first test images after the last epoch.
    """
    settings = runs.RunSettings(model_name, dataset or recipe.dataset, epochs or recipe.epochs,
                                batch_size or recipe.batch_size, learning_rate or recipe.learning_rate, seed,
                                max_train_examples, precision)
    if settings.dataset not in recipe.datasets:
        raise runs.SettingsError(f"Model {model_name!r} does not train on {settings.dataset!r}; "
                                 f"its datasets: {', '.join(recipe.datasets)}")
    train_images, train_labels = data.load(settings.dataset, "train", data_dir=data_dir)
    test_images, test_labels = data.load(settings.dataset, "test", data_dir=data_dir)
    if max_train_examples:
        train_images, train_labels = train_images[:max_train_examples], train_labels[:max_train_examples]
    _, history = train_on_arrays(recipe, settings, (train_images, train_labels), (test_images, test_labels),
                                 out_dir=out_dir, resume=resume, progress=progress, callbacks=callbacks)
    return history


def train_on_arrays(recipe: Recipe, settings: runs.RunSettings, train_data, test_data, *, out_dir=None,
                    resume: bool = False, progress: bool = True, callbacks=()) -> tuple[nnx.Module, list[dict]]:
    """The loop of `fit` on arrays already in memory; returns (the trained model, the history).

    Inputs:
    - train_data, test_data: (uint8 images (N, H, W, C), int32 labels (N,)); the recipe's
      validation share is held out of train_data (`course.batching.validation_split`).
    - out_dir, resume, progress, callbacks: as `fit`.
    """
    (train_images, train_labels), (test_images, test_labels) = train_data, test_data
    if len(train_labels) < 2:
        raise runs.SettingsError(f"{len(train_labels)} training examples cannot spare a validation split")
    kept, held_out = batching.validation_split(len(train_labels), recipe.validation_fraction)
    validation = (train_images[held_out], train_labels[held_out])
    train_images, train_labels = train_images[kept], train_labels[kept]
    split = {"fraction": recipe.validation_fraction, "seed": batching.VALIDATION_SEED, "examples": len(held_out)}
    mesh = sharding.data_mesh()
    if mesh is None and len(jax.local_devices()) > 1 and progress:
        print(f"course train: {len(jax.local_devices())} host CPU devices are visible; training on one of them "
              "(they share the same cores, so splitting batches over them is slower)", file=sys.stderr)
    if mesh is not None and settings.batch_size % mesh.devices.size:
        raise runs.SettingsError(f"batch size {settings.batch_size} must divide over {mesh.devices.size} devices")
    if len(train_labels) < settings.batch_size:
        raise runs.SettingsError(f"{len(train_labels)} training examples are fewer than one batch of "
                                 f"{settings.batch_size}")

    model, optimizer = build(recipe, settings, len(train_labels) // settings.batch_size)
    history, best_accuracy, extensions = [], -1.0, []
    out = Path(out_dir) if out_dir is not None else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if resume and (out / "checkpoint" / "last").is_dir():
            history, best_accuracy, extensions = runs.resumed_history(out, model, optimizer, settings, split, progress)
    nnx.update((model, optimizer), sharding.replicate(mesh, nnx.state((model, optimizer))))

    for epoch in range(len(history), settings.epochs):
        epoch_start = time.perf_counter()
        record = {"epoch": epoch + 1}
        record.update(train_epoch(recipe, model, optimizer, train_images, train_labels, settings, epoch,
                                  mesh, progress, callbacks))
        record.update({f"validation_{k}": v for k, v in evaluate(recipe, model, *validation, mesh).items()})
        # For the curves only: nothing below (the best checkpoint) looks at the test split.
        record.update({f"test_{k}": v for k, v in evaluate(recipe, model, test_images, test_labels, mesh).items()})
        record["epoch_seconds"] = time.perf_counter() - epoch_start
        history.append(record)
        if progress:
            print(runs.format_record(record), flush=True)
        if out is not None:
            selected = record["validation_accuracy"]
            info = {"settings": dataclasses.asdict(settings), "history": history,
                    "best_accuracy": max(best_accuracy, selected), "validation": split, "extensions": extensions,
                    "epoch": epoch + 1}
            if selected > best_accuracy:
                best_accuracy = selected
                checkpoints.save_checkpoint(out / "checkpoint" / "best", model, optimizer, info)
            checkpoints.save_checkpoint(out / "checkpoint" / "last", model, optimizer, info)
            runs.write_json(out / "metrics.json", runs.run_summary(settings, history, split, extensions))
    for callback in callbacks:
        if hasattr(callback, "finish"):
            model.eval()
            sample = slice(0, settings.batch_size)
            callback.finish(model, prepare_fn(recipe)(test_images[sample]), jnp.asarray(test_labels[sample]))
    if out is not None:
        from course import viz_training

        viz_training.plot_history(history).savefig(out / "curves.png", dpi=100)
    return model, history
