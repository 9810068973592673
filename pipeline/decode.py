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
    """Best valid tag-id path for one sentence's [length, tags] probabilities (:func:`batched_bio_viterbi` of one)."""
    return batched_bio_viterbi([probabilities], start, transition)[0]


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


def batched_bio_viterbi(probabilities: Sequence[np.ndarray], start: np.ndarray,
                        transition: np.ndarray) -> list[np.ndarray]:
    """Best valid tag-id paths of many sentences at once (exact Viterbi over log probabilities, forbidden transitions
    at -inf): one Python step per time step of the longest sentence instead of one per token of every sentence
    (tagging a 10 MB stream spent most of its time in a per-sentence loop).

    Shorter sentences are padded; on their padding steps the scores stay put and the back-pointers point to the
    same tag, so backtracking from the last step walks straight back to each sentence's own last token.
    """
    lengths = np.asarray([len(p) for p in probabilities])
    if len(lengths) == 0 or lengths.max() == 0:
        return [np.zeros(n, dtype=np.int64) for n in lengths]
    count, longest, n_tags = len(lengths), int(lengths.max()), len(start)
    scores = np.zeros((count, longest, n_tags))
    for row, p in enumerate(probabilities):
        scores[row, : len(p)] = np.log(np.maximum(p, PROBABILITY_FLOOR))
    best = start[None, :] + scores[:, 0]
    stay = np.broadcast_to(np.arange(n_tags), (count, n_tags))
    backpointers = np.zeros((count, longest, n_tags), dtype=np.int64)
    for t in range(1, longest):
        candidates = best[:, :, None] + transition[None, :, :]
        pointers = np.argmax(candidates, axis=1)
        moved = np.take_along_axis(candidates, pointers[:, None, :], axis=1)[:, 0] + scores[:, t]
        real = (t < lengths)[:, None]
        best = np.where(real, moved, best)
        backpointers[:, t] = np.where(real, pointers, stay)
    paths = np.zeros((count, longest), dtype=np.int64)
    paths[:, -1] = np.argmax(best, axis=1)
    for t in range(longest - 1, 0, -1):
        paths[:, t - 1] = backpointers[np.arange(count), t, paths[:, t]]
    return [paths[row, : n] for row, n in enumerate(lengths)]


#: Sentences decoded together by :func:`decode_all` (bounds the [sentences, longest, tags] back-pointer array).
DECODE_BATCH = 256


def decode_all(probabilities: Sequence[np.ndarray], tags: Sequence[str], method: str) -> list[list[str]]:
    """Tags for every sentence of a batch of per-sentence probabilities (Viterbi batched over sentences of similar
    length, so a long sentence does not make a batch of short ones pay for its padding)."""
    tags = tuple(tags)
    if method != "bio_viterbi":
        return [decode(p, tags, method) for p in probabilities]
    start, transition = cached_transitions(tags)
    order = sorted(range(len(probabilities)), key=lambda i: len(probabilities[i]))
    decoded: list[list[str] | None] = [None] * len(probabilities)
    for first in range(0, len(order), DECODE_BATCH):
        members = order[first : first + DECODE_BATCH]
        paths = batched_bio_viterbi([probabilities[i] for i in members], start, transition)
        for i, path in zip(members, paths):
            decoded[i] = [tags[j] for j in path]
    return decoded
