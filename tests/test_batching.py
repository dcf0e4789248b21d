"""course.batching: an epoch's minibatches and a held-out split, drawn from a seed alone."""

import numpy as np

from course import batching


def test_batches_are_a_deterministic_permutation_per_epoch():
    first = batching.batch_indices(103, 10, seed=7, epoch=2)
    assert [len(batch) for batch in first] == [10] * 10 + [3]
    assert sorted(np.concatenate(first).tolist()) == list(range(103))
    again = batching.batch_indices(103, 10, seed=7, epoch=2)
    np.testing.assert_array_equal(np.concatenate(first), np.concatenate(again))
    assert not np.array_equal(np.concatenate(first), np.concatenate(batching.batch_indices(103, 10, seed=7, epoch=3)))
    assert len(batching.batch_indices(103, 10, seed=7, drop_last=True)) == 10
    np.testing.assert_array_equal(np.concatenate(batching.batch_indices(5, 2)), np.arange(5))


def test_holdout_split_partitions_the_examples():
    kept, held_out = batching.holdout_split(100, 0.2, seed=0)
    assert len(held_out) == 20 and len(kept) == 80
    assert sorted(np.concatenate([kept, held_out]).tolist()) == list(range(100))
