"""A recipe: the one visible place where a week states how its model is trained."""

import dataclasses
from collections.abc import Callable

import jax
import optax
from flax import nnx

from course import transforms


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How to train one model with `course.train.fit` (and `course train MODEL`).

    Attributes:
      model: builds the model from `nnx.Rngs`; the model maps a float batch (N, H, W, C) to
        outputs (N, classes).
      train_step, eval_step: the week's jitted steps (week 2's, or built by `course.steps`).
      dataset: the dataset trained on by default (a name for `course.data.load`).
      datasets: every dataset this model accepts.
      epochs, batch_size, learning_rate: the defaults that `course train` can override.
      optimizer: maps a learning rate (a float or an optax schedule) to an optax transformation.
      schedule: "constant", or "cosine" (decays to zero over the whole run), or "warmup_cosine"
        (linear warm-up over the first epoch, then cosine decay).
      prepare: maps a uint8 batch (N, H, W, C) to the model's float input; jittable (default: scale
        to [0, 1]).
      augment: maps `(key, prepared_batch, training)` to the model's input: random changes when
        `training` is True, the batch as it is (key None) at evaluation; jittable with `training`
        static; or None.
      batches: maps `(key, num_examples, batch_size)` to an epoch's `(batch indices (B, batch_size),
        step keys (B,))`, as week 4's `shuffled_batches`; or None for a numpy permutation.
      validation_fraction: share of the training split held out (`course.batching.validation_split`,
        a fixed seed) to choose the best checkpoint; the test split is never used for that, so every
        recipe holds one out (default: a tenth).
      fast_cpu_convolution: the training loop computes the model's `nnx.Conv` layers as patches
        times kernel on the CPU (`course.layers.use_fast_convolutions`: same values and gradients),
        which trains small images faster there (docs/performance.md); no change on GPUs and TPUs.
    """

    model: Callable[[nnx.Rngs], nnx.Module]
    train_step: Callable
    eval_step: Callable
    dataset: str
    datasets: tuple[str, ...]
    epochs: int
    batch_size: int
    learning_rate: float
    optimizer: Callable[..., optax.GradientTransformation] = optax.sgd
    schedule: str = "constant"
    prepare: Callable[[jax.Array], jax.Array] = transforms.to_unit_float
    augment: Callable[[jax.Array | None, jax.Array, bool], jax.Array] | None = None
    batches: Callable[[jax.Array, int, int], tuple[jax.Array, jax.Array]] | None = None
    validation_fraction: float = 0.1
    fast_cpu_convolution: bool = False

    def __post_init__(self):
        if self.dataset not in self.datasets:
            raise ValueError(f"Recipe dataset {self.dataset!r} is not among its datasets {self.datasets}")
        if self.schedule not in ("constant", "cosine", "warmup_cosine"):
            raise ValueError(f"Recipe schedule must be 'constant', 'cosine' or 'warmup_cosine', got {self.schedule!r}")
        if not 0.0 < self.validation_fraction < 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1): the best checkpoint is chosen on a "
                             f"validation split, never on the test split; got {self.validation_fraction}")
