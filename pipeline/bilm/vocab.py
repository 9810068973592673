"""Character ids and the word vocabulary of the biLM.

The character recipe is ELMo's: a token is its UTF-8 bytes, cut to ``max_chars - 2``, between a begin-of-word and an
end-of-word marker, padded to ``max_chars``; every id is shifted by one so that 0 means "no token here" (padding).
The constants live here once; the SavedModel export implements the same recipe with TensorFlow string ops and a test
asserts both agree.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

BYTE_VALUES = 256
BEGIN_OF_WORD = 256
END_OF_WORD = 257
CHAR_PADDING = 258
ID_SHIFT = 1  # so that 0 marks a padding position (no token)
CHAR_VOCAB_SIZE = CHAR_PADDING + ID_SHIFT + 1
BEGIN_OF_SENTENCE = "<S>"
END_OF_SENTENCE = "</S>"
UNKNOWN_WORD = "<UNK>"
SPECIAL_WORDS = (BEGIN_OF_SENTENCE, END_OF_SENTENCE, UNKNOWN_WORD)


def token_char_ids(token: str, max_chars: int) -> np.ndarray:
    """Character ids of one token, ``max_chars`` long (marker, bytes, marker, padding; all shifted by one)."""
    body = list(token.encode("utf-8")[: max_chars - 2])
    ids = [BEGIN_OF_WORD] + body + [END_OF_WORD] + [CHAR_PADDING] * (max_chars - 2 - len(body))
    return np.asarray(ids, dtype=np.int32) + ID_SHIFT


def batch_char_ids(sentences: Sequence[Sequence[str]], max_chars: int, length: int | None = None) -> np.ndarray:
    """[batch, length, max_chars] int32 character ids; positions past a sentence's end are all zero."""
    length = length or max((len(s) for s in sentences), default=0)
    out = np.zeros((len(sentences), length, max_chars), dtype=np.int32)
    for row, sentence in enumerate(sentences):
        for col, token in enumerate(sentence[:length]):
            out[row, col] = token_char_ids(token, max_chars)
    return out


class WordVocabulary:
    """Words the language models predict: specials first, then training words by falling frequency.

    Frequency order matters: the sampled softmax draws negatives from a log-uniform (Zipf-like) distribution over ids.
    """

    def __init__(self, words: Sequence[str]):
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}
        self.unknown_id = self.index[UNKNOWN_WORD]
        self.begin_id = self.index[BEGIN_OF_SENTENCE]
        self.end_id = self.index[END_OF_SENTENCE]

    @classmethod
    def from_sentences(cls, sentences: Iterable[Sequence[str]], min_count: int) -> "WordVocabulary":
        """Keep words seen at least ``min_count`` times; ties broken alphabetically so the order is reproducible."""
        return cls.from_counts(Counter(w for s in sentences for w in s), min_count)

    @classmethod
    def from_counts(cls, counts: Counter, min_count: int, max_size: int | None = None) -> "WordVocabulary":
        """The ``max_size`` most frequent words seen at least ``min_count`` times (specials included in the size):
        on a large text the softmax, not the biLM, would otherwise hold most of the parameters."""
        kept = sorted((w for w, n in counts.items() if n >= min_count and w not in SPECIAL_WORDS),
                      key=lambda w: (-counts[w], w))
        if max_size is not None:
            kept = kept[: max(0, max_size - len(SPECIAL_WORDS))]
        return cls(list(SPECIAL_WORDS) + kept)

    def __len__(self) -> int:
        return len(self.words)

    def ids(self, sentence: Sequence[str]) -> np.ndarray:
        """Word ids of a sentence, unknown words mapped to ``<UNK>``."""
        return np.asarray([self.index.get(w, self.unknown_id) for w in sentence], dtype=np.int32)

    def save(self, path: str | Path) -> None:
        """One word per line."""
        Path(path).write_text("\n".join(self.words) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> "WordVocabulary":
        """Read a file written by :meth:`save`."""
        return cls(Path(path).read_text(encoding="utf-8").split("\n")[:-1])
