"""Length-bucketed batching shared by the biLM pretraining, the embed stage, training and tagging.

Sorting sentences by length before cutting batches means a batch pads to its own longest sentence, not the corpus's,
so little compute goes into padding; rounding the padded length up to a small multiple bounds the number of distinct
tensor shapes (each new shape costs a graph trace).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

LENGTH_ROUNDING = 8


def padded_length(longest: int, rounding: int = LENGTH_ROUNDING) -> int:
    """``longest`` rounded up to a multiple of ``rounding`` (at least ``rounding``)."""
    return max(rounding, -(-longest // rounding) * rounding)


def length_buckets(lengths: Sequence[int], batch_size: int) -> list[np.ndarray]:
    """Index batches of sentences with similar lengths (stable sort, so the result is deterministic)."""
    order = np.argsort(np.asarray(lengths), kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def shuffled_batches(lengths: Sequence[int], batch_size: int, rng: np.random.Generator, bucket: bool = True) -> list[np.ndarray]:
    """Batches for one training epoch: bucketed by length (shuffled within equal lengths) in shuffled batch order."""
    if bucket:
        jitter = rng.permutation(len(lengths))
        order = np.lexsort((jitter, np.asarray(lengths)))
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    else:
        order = rng.permutation(len(lengths))
        batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def batch_shape(batch: np.ndarray, lengths: Sequence[int]) -> tuple[int, int]:
    """(sentences, padded length) of a batch of sentence indices."""
    return len(batch), padded_length(max(lengths[i] for i in batch))


def shape_probes_first(batches: list[np.ndarray], lengths: Sequence[int]) -> list[np.ndarray]:
    """Reorder so that the first two batches differ in every dimension that varies at all.

    Why: Keras' PyDataset adapter for TensorFlow infers the tensor signature from the first two batches; a dimension
    equal in both is frozen, and a later batch of another size would then fail.
    """
    if len(batches) < 3:
        return batches
    shapes = [batch_shape(b, lengths) for b in batches]
    varying = [d for d in range(2) if len({s[d] for s in shapes}) > 1]
    best, best_score = (0, 1), -1
    for first in {int(np.argmax([s[1] for s in shapes])), int(np.argmin([s[0] for s in shapes]))}:
        for second in range(len(batches)):
            score = sum(shapes[first][d] != shapes[second][d] for d in varying)
            if second != first and score > best_score:
                best, best_score = (first, second), score
    rest = [b for k, b in enumerate(batches) if k not in best]
    return [batches[best[0]], batches[best[1]]] + rest
