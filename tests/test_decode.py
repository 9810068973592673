"""Decoding: predictions always form valid BIO spans."""
from __future__ import annotations

import numpy as np

from pipeline.decode import decode, is_valid_bio

TAGS = ["O", "B-geo", "B-per", "I-geo", "I-per"]


def test_argmax_can_open_an_entity_with_an_inside_tag():
    probabilities = np.array([[0.4, 0.1, 0.0, 0.5, 0.0], [0.9, 0.0, 0.0, 0.1, 0.0]])
    assert decode(probabilities, TAGS, "argmax") == ["I-geo", "O"]


def test_viterbi_repairs_an_inside_tag_that_opens_an_entity():
    probabilities = np.array([[0.4, 0.1, 0.0, 0.5, 0.0], [0.9, 0.0, 0.0, 0.1, 0.0]])
    assert decode(probabilities, TAGS, "bio_viterbi") == ["O", "O"]


def test_viterbi_keeps_a_likely_entity_whole():
    probabilities = np.array([[0.1, 0.45, 0.0, 0.45, 0.0], [0.1, 0.0, 0.0, 0.9, 0.0]])
    assert decode(probabilities, TAGS, "bio_viterbi") == ["B-geo", "I-geo"]


def test_viterbi_never_continues_an_entity_of_another_type():
    rng = np.random.default_rng(0)
    for _ in range(200):
        probabilities = rng.dirichlet(np.ones(len(TAGS)) * 0.3, size=rng.integers(1, 12))
        assert is_valid_bio(decode(probabilities, TAGS, "bio_viterbi"))


def test_empty_sentence_decodes_to_nothing():
    assert decode(np.zeros((0, len(TAGS))), TAGS) == []


def test_batched_viterbi_finds_the_same_paths_as_one_sentence_at_a_time():
    """Sentences of mixed lengths (0, 1 and up to 30 tokens) decoded together equal decoding each alone."""
    from pipeline.decode import decode_all

    rng = np.random.default_rng(4)
    tags = ("O", "B-per", "I-per", "B-geo", "I-geo")
    sentences = [rng.dirichlet(np.full(len(tags), 0.3), size=n) for n in [0, 1, 30, 2, 7, 30, 1, 12] * 40]
    together = decode_all(sentences, tags, "bio_viterbi")
    assert together == [decode(p, tags, "bio_viterbi") for p in sentences]
    assert all(len(t) == len(p) and is_valid_bio(t) for t, p in zip(together, sentences))
