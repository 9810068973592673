"""The tagger's own word vocabulary, for the trainable word embedding concatenated with the ELMo mix.

The ELMo paper's taggers feed ELMo *alongside* a token representation, not instead of it; a word embedding learned on
the training split gives the tagger word identity that a small offline biLM's character layer does not carry.
Words rarer than ``min_count`` share the ``<UNK>`` row, so the model learns what an unseen word looks like.
Saved as ``words.json`` in the run directory: tagging maps words exactly as training did.
"""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

PADDING_ID = 0
UNKNOWN_ID = 1
FIRST_WORD_ID = 2
WORDS_FILE = "words.json"


class TaggerVocabulary:
    """Word -> id, with 0 for padding and 1 for unknown words."""

    def __init__(self, words: Sequence[str]):
        self.words = list(words)
        self.index = {w: i + FIRST_WORD_ID for i, w in enumerate(self.words)}

    @classmethod
    def from_sentences(cls, sentences: Iterable[Sequence[str]], min_count: int) -> "TaggerVocabulary":
        counts = Counter(w for s in sentences for w in s)
        return cls(sorted(w for w, n in counts.items() if n >= min_count))

    def __len__(self) -> int:
        """Rows of the embedding table (padding and unknown included)."""
        return len(self.words) + FIRST_WORD_ID

    def ids(self, sentence: Sequence[str]) -> np.ndarray:
        return np.asarray([self.index.get(w, UNKNOWN_ID) for w in sentence], dtype=np.int32)

    def batch(self, sentences: Sequence[Sequence[str]], length: int) -> np.ndarray:
        """[b, length] word ids, zero-padded."""
        out = np.full((len(sentences), length), PADDING_ID, dtype=np.int32)
        for row, sentence in enumerate(sentences):
            out[row, : len(sentence)] = self.ids(sentence)
        return out

    def save(self, run_dir: str | Path) -> None:
        Path(run_dir, WORDS_FILE).write_text(json.dumps(self.words), encoding="utf-8")

    @classmethod
    def load(cls, run_dir: str | Path) -> "TaggerVocabulary | None":
        """The run's vocabulary, or None for a run trained without a word embedding."""
        path = Path(run_dir, WORDS_FILE)
        return cls(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None
