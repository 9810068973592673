"""Length bucketing: padding-minimal batch shapes, padded lengths and the first-two-batches shape probe."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from pipeline.batching import (padded_length, padding_minimal_lengths, shape_probes_first, shuffled_batches,
                               batch_shape)


def padding_of(lengths, shapes) -> int:
    return sum(padded_length(n, shapes=shapes) - n for n in lengths)


def brute_force_padding(lengths, max_shapes: int) -> int:
    """The least padding of any set of at most ``max_shapes`` lengths that includes the longest sentence."""
    longest = max(lengths)
    best = None
    for k in range(0, max_shapes):
        for others in itertools.combinations(range(1, longest), k):
            cost = padding_of(lengths, tuple(others) + (longest,))
            best = cost if best is None else min(best, cost)
    return best


@pytest.mark.parametrize("seed", range(6))
def test_padding_minimal_lengths_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 13, size=int(rng.integers(1, 40))).tolist()
    for max_shapes in (1, 2, 3, 4):
        shapes = padding_minimal_lengths(lengths, max_shapes)
        assert len(shapes) <= max_shapes
        assert list(shapes) == sorted(set(shapes))
        assert shapes[-1] == max(lengths)
        assert padding_of(lengths, shapes) == brute_force_padding(lengths, max_shapes)


def test_padding_minimal_lengths_beats_rounding_on_a_peaked_distribution():
    rng = np.random.default_rng(0)
    lengths = np.clip(rng.normal(22, 7, 5000).round().astype(int), 1, 104)
    rounded = sum(padded_length(int(n)) - int(n) for n in lengths)
    shapes = padding_minimal_lengths(lengths, 13)  # rounding to 8 up to 104 also gives 13 shapes
    assert padding_of(lengths, shapes) < 0.6 * rounded


def test_padding_minimal_lengths_edge_cases():
    assert padding_minimal_lengths([], 4) == ()
    assert padding_minimal_lengths([5, 5, 5], 4) == (5,)
    assert padding_minimal_lengths([1, 2, 3], 10) == (1, 2, 3)
    assert padding_minimal_lengths([4, 9], 0) == ()


def test_padded_length_uses_the_smallest_shape_that_holds_the_batch_and_rounds_beyond_them():
    shapes = (11, 14, 20)
    assert padded_length(3, shapes=shapes) == 11
    assert padded_length(11, shapes=shapes) == 11
    assert padded_length(12, shapes=shapes) == 14
    assert padded_length(20, shapes=shapes) == 20
    assert padded_length(21, shapes=shapes) == 24  # a validation sentence longer than any training one
    assert padded_length(21) == 24
    assert padded_length(1) == 8


def test_shape_probes_first_puts_two_batches_of_different_shapes_first():
    lengths = np.array([3] * 40 + [30] * 9)
    batches = shuffled_batches(lengths, 10, np.random.default_rng(1))
    shapes = padding_minimal_lengths(lengths, 2)
    ordered = shape_probes_first(batches, lengths, shapes)
    first, second = (batch_shape(b, lengths, shapes) for b in ordered[:2])
    assert first[0] != second[0] and first[1] != second[1]
    assert sorted(map(tuple, ordered)) == sorted(map(tuple, batches))


class LengthsOnlyCache:
    """Just what TaggingBatches reads: lengths, tag columns and model inputs of a given padded length."""

    def __init__(self, lengths):
        self.lengths = np.asarray(lengths)

    def column(self, name):
        return [["O"] * int(n) for n in self.lengths]

    def inputs(self, members, length):
        return {"lengths": self.lengths[members].astype(np.int32), "padded": np.zeros((len(members), length))}


def test_training_batches_pad_to_the_padding_minimal_shapes_of_the_training_lengths():
    from pipeline.train import TaggingBatches

    lengths = np.random.default_rng(2).integers(1, 40, size=300)
    batches = TaggingBatches(LengthsOnlyCache(lengths), ["O"], batch_size=16, seed=0, max_shapes=5)
    assert batches.shapes == padding_minimal_lengths(lengths, 5)
    seen = {batches[i][0]["padded"].shape[1] for i in range(len(batches))}
    assert seen <= set(batches.shapes) and len(seen) > 1
    for i in range(len(batches)):
        inputs, targets, weights = batches[i]
        assert weights.sum() == inputs["lengths"].sum()  # every real token weighted, no padding
    unbucketed = TaggingBatches(LengthsOnlyCache(lengths), ["O"], batch_size=16, seed=0, bucket=False, max_shapes=5)
    assert unbucketed.shapes == ()
