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
