"""Jit-compiled train and eval steps, built once from a loss function.

Students write a train and an eval step themselves in week 2 (cross-entropy), and weeks 4 and 6
train with those. Week 5's models have other losses and train through steps built here:

    train_step = make_train_step(mse_pm1_loss)
    eval_step = make_eval_step(mse_pm1_loss)

The steps are plain `nnx.jit` functions: they run unchanged on CPU, GPU or TPU, and on a batch
sharded over several devices (see `course.sharding.shard_batch`) with no change at all.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from flax import nnx

LossFn = Callable[[jax.Array, jax.Array], jax.Array]


def accuracy(outputs: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of rows of `outputs` (batch, classes) whose argmax equals `labels` (batch,)."""
    return jnp.mean(jnp.argmax(outputs, axis=-1) == labels)


def softmax_cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Mean cross-entropy of integer `labels` (batch,) under `logits` (batch, classes)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def make_train_step(loss_fn: LossFn, accuracy_fn: LossFn = accuracy):
    """Returns `train_step(model, optimizer, images, labels) -> {"loss", "accuracy"}`.

    The step computes `loss_fn(model(images), labels)`, its gradient with respect to the model's
    `nnx.Param`s, and applies one optimizer update in place. The metrics are those of the batch
    before the update.
    """

    @nnx.jit
    def train_step(model: nnx.Module, optimizer: nnx.Optimizer, images, labels):
        def loss_of(model):
            outputs = model(images)
            return loss_fn(outputs, labels), outputs

        (loss, outputs), grads = nnx.value_and_grad(loss_of, has_aux=True)(model)
        optimizer.update(model, grads)
        return {"loss": loss, "accuracy": accuracy_fn(outputs, labels)}

    return train_step


def make_eval_step(loss_fn: LossFn, accuracy_fn: LossFn = accuracy):
    """Returns `eval_step(model, images, labels) -> {"loss", "accuracy"}`; the model is not changed.

    Call `model.eval()` first so that dropout is off.
    """

    @nnx.jit
    def eval_step(model: nnx.Module, images, labels):
        outputs = model(images)
        return {"loss": loss_fn(outputs, labels), "accuracy": accuracy_fn(outputs, labels)}

    return eval_step
