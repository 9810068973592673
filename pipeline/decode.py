"""Turn per-token tag probabilities into tags that always form valid BIO spans.

Per-token argmax can emit ``I-org`` after ``O`` or after ``B-per``, which seqeval then reads as a spurious entity.
``bio_viterbi`` instead returns the most probable tag sequence among those where every ``I-X`` continues a ``B-X``
or ``I-X``: exact dynamic programming over the softmax's log probabilities with forbidden transitions set to -inf.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np

FORBIDDEN = -np.inf
PROBABILITY_FLOOR = 1e-12


def is_valid_bio(tags: Sequence[str]) -> bool:
    """True when every ``I-X`` continues a ``B-X`` or ``I-X`` (what ``bio_viterbi`` guarantees)."""
    previous = "O"
    for tag in tags:
        if tag.startswith("I-") and (previous == "O" or previous[2:] != tag[2:]):
            return False
        previous = tag
    return True


def allowed_transitions(tags: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(start [tags], transition [from, to]) scores: 0 where allowed by BIO, -inf where not."""
    n = len(tags)
    start = np.zeros(n)
    transition = np.zeros((n, n))
    for j, tag in enumerate(tags):
        if tag.startswith("I-"):
            start[j] = FORBIDDEN
            for i, previous in enumerate(tags):
                if previous[2:] != tag[2:] or previous == "O":
                    transition[i, j] = FORBIDDEN
    return start, transition


def bio_viterbi(probabilities: np.ndarray, start: np.ndarray, transition: np.ndarray) -> np.ndarray:
    """Best valid tag-id path for one sentence's [length, tags] probabilities."""
    scores = np.log(np.maximum(probabilities, PROBABILITY_FLOOR))
    length = len(scores)
    if length == 0:
        return np.zeros(0, dtype=np.int64)
    best = start + scores[0]
    backpointers = np.zeros((length, scores.shape[1]), dtype=np.int64)
    for t in range(1, length):
        candidates = best[:, None] + transition
        backpointers[t] = np.argmax(candidates, axis=0)
        best = candidates[backpointers[t], np.arange(scores.shape[1])] + scores[t]
    path = [int(np.argmax(best))]
    for t in range(length - 1, 0, -1):
        path.append(int(backpointers[t, path[-1]]))
    return np.asarray(path[::-1])


@lru_cache(maxsize=8)
def cached_transitions(tags: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`allowed_transitions`, built once per tag set rather than once per sentence."""
    return allowed_transitions(tags)


def decode(probabilities: np.ndarray, tags: Sequence[str], method: str = "bio_viterbi") -> list[str]:
    """Tags of one sentence from its [length, tags] probabilities, by ``bio_viterbi`` or ``argmax``."""
    tags = tuple(tags)
    if method == "argmax":
        ids = np.argmax(probabilities, axis=-1)
    elif method == "bio_viterbi":
        ids = bio_viterbi(probabilities, *cached_transitions(tags))
    else:
        raise ValueError(f"unknown decode method {method!r} (bio_viterbi or argmax)")
    return [tags[i] for i in ids]


def decode_all(probabilities: Sequence[np.ndarray], tags: Sequence[str], method: str) -> list[list[str]]:
    """Tags for every sentence of a batch of per-sentence probabilities."""
    return [decode(p, tags, method) for p in probabilities]
