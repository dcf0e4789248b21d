"""Which examples go where: the minibatches of an epoch, and the validation split held out of training.

    kept, held_out = validation_split(len(labels), 0.1)      # index arrays (N - V,) and (V,)
    for indices in batch_indices(len(kept), 64, seed=0, epoch=3, drop_last=True):
        batch = images[kept[indices]]                        # (64, H, W, C)

Each function returns index arrays. The random ones are drawn from a seed (and an epoch) alone:
the same on every machine, and an epoch's batches the same whether or not the run was interrupted
before it.
"""

import numpy as np

# The validation split is drawn with this seed whatever a run's --seed, so that runs of different
# seeds choose their best checkpoint on the same images.
VALIDATION_SEED = 0


def validation_split(num_examples: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) of a training split: `fraction` of its examples, at least one,
    held out at random with the fixed `VALIDATION_SEED` (the rest is what trains).

    The validation examples choose the best checkpoint; the test split is never used for that."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"validation fraction must be in (0, 1), got {fraction}")
    if num_examples < 2:
        raise ValueError(f"a validation split needs at least 2 training examples, got {num_examples}")
    held_out = min(num_examples - 1, max(1, int(round(fraction * num_examples))))
    return holdout_split(num_examples, held_out / num_examples, VALIDATION_SEED)


def holdout_split(num_examples: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, validation) with `fraction` of `num_examples` held out at random."""
    order = np.random.default_rng(seed).permutation(num_examples)
    num_held_out = int(round(fraction * num_examples))
    return np.sort(order[num_held_out:]), np.sort(order[:num_held_out])


def batch_indices(num_examples: int, batch_size: int, *, seed: int | None = None, epoch: int = 0,
                  drop_last: bool = False) -> list[np.ndarray]:
    """Index arrays of the minibatches of one epoch.

    With a `seed`, the order is a permutation drawn from (seed, epoch) alone, so an epoch's batches
    are the same whether or not training was interrupted before it; without, the natural order.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size}")
    order = np.arange(num_examples) if seed is None else np.random.default_rng([seed, epoch]).permutation(num_examples)
    stop = num_examples - num_examples % batch_size if drop_last else num_examples
    return [order[start:start + batch_size] for start in range(0, stop, batch_size)]
