"""The tagger's own token features next to the ELMo layers: word ids, character ids, casing classes and the row
of each word in a pretrained vector table.

The ELMo paper's taggers feed ELMo *alongside* a token representation, not instead of it; a word embedding learned on
the training split gives the tagger word identity that a small offline biLM's character layer does not carry.
Words rarer than ``min_count`` share the ``<UNK>`` row, so the model learns what an unseen word looks like.
Characters and casing classes are what rare and unseen names look like (Lample et al. 2016, Ma & Hovy 2016: the
errors are in names the training split never showed); pretrained vectors (lowercased lookup) say what such a word
means. Everything is computed from the words stored in the cache: no re-embedding.
Saved in the run directory (``words.json``, ``features.json``): tagging maps tokens exactly as training did.
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
FEATURES_FILE = "features.json"
#: Casing classes of a token, as in Reimers & Gurevych's taggers: what the lowercased vector lookup loses.
CASING_CLASSES = ("padding", "numeric", "mainly_numeric", "lower", "upper", "initial_upper", "mixed",
                  "contains_digit", "other")


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


def casing_class(word: str) -> int:
    """Index in CASING_CLASSES of a token's shape (0 is reserved for padding)."""
    digits = sum(c.isdigit() for c in word)
    if word.isdigit():
        return CASING_CLASSES.index("numeric")
    if digits / max(1, len(word)) > 0.5:
        return CASING_CLASSES.index("mainly_numeric")
    if word.islower():
        return CASING_CLASSES.index("lower")
    if word.isupper():
        return CASING_CLASSES.index("upper")
    if word[:1].isupper():
        return CASING_CLASSES.index("initial_upper")
    if digits:
        return CASING_CLASSES.index("contains_digit")
    if any(c.isalpha() for c in word):
        return CASING_CLASSES.index("mixed")
    return CASING_CLASSES.index("other")


class CharVocabulary:
    """Character -> id (0 padding, 1 unknown) for the tagger's character CNN; tokens are cut to ``max_chars``."""

    def __init__(self, chars: Sequence[str], max_chars: int):
        self.chars = list(chars)
        self.max_chars = max_chars
        self.index = {c: i + FIRST_WORD_ID for i, c in enumerate(self.chars)}

    @classmethod
    def from_sentences(cls, sentences: Iterable[Sequence[str]], max_chars: int, min_count: int = 1) -> "CharVocabulary":
        counts = Counter(c for s in sentences for w in s for c in w)
        return cls(sorted(c for c, n in counts.items() if n >= min_count), max_chars)

    def __len__(self) -> int:
        return len(self.chars) + FIRST_WORD_ID

    def batch(self, sentences: Sequence[Sequence[str]], length: int) -> np.ndarray:
        """[b, length, max_chars] character ids, zero-padded.

        Always ``max_chars`` wide: a width that followed each batch's longest token would give the compiled training
        step a new input shape (a retrace) for most batches.
        """
        width = self.max_chars
        out = np.full((len(sentences), length, width), PADDING_ID, dtype=np.int32)
        for row, sentence in enumerate(sentences):
            for column, word in enumerate(sentence):
                ids = [self.index.get(c, UNKNOWN_ID) for c in word[:width]]
                out[row, column, : len(ids)] = ids
        return out


class VectorVocabulary:
    """Lowercased word -> row of a pretrained vector table (0 padding, 1 unknown); the table itself lives in the
    model's frozen embedding, the word list in the run directory."""

    def __init__(self, words: Sequence[str], source: str, rows: Sequence[int] | None = None,
                 table_rows: int | None = None):
        """``rows[i]`` is the table row of ``words[i]`` where words share rows (``table_rows`` of them); without
        ``rows`` word i has row i."""
        self.words = list(words)
        self.source = source
        self.rows = None if rows is None else [int(r) for r in rows]
        if self.rows is not None and (len(self.rows) != len(self.words) or table_rows is None):
            raise ValueError("shared rows need one row per word and the table's number of rows")
        self.table_rows = len(self.words) if self.rows is None else table_rows
        row_of_word = range(len(self.words)) if self.rows is None else self.rows
        self.index = {w: r + FIRST_WORD_ID for w, r in zip(self.words, row_of_word)}

    def __len__(self) -> int:
        return self.table_rows + FIRST_WORD_ID

    def record(self) -> dict:
        """What features.json keeps to rebuild the lookup."""
        record = {"source": self.source, "words": self.words}
        if self.rows is not None:
            record |= {"rows": self.rows, "table_rows": self.table_rows}
        return record

    def batch(self, sentences: Sequence[Sequence[str]], length: int) -> np.ndarray:
        out = np.full((len(sentences), length), PADDING_ID, dtype=np.int32)
        for row, sentence in enumerate(sentences):
            out[row, : len(sentence)] = [self.index.get(w.lower(), UNKNOWN_ID) for w in sentence]
        return out

    def coverage(self, sentences: Iterable[Sequence[str]]) -> float:
        """Fraction of tokens found in the table: logged, since a table that misses most words is a wrong table."""
        found = total = 0
        for sentence in sentences:
            total += len(sentence)
            found += sum(w.lower() in self.index for w in sentence)
        return found / max(1, total)


def casing_batch(sentences: Sequence[Sequence[str]], length: int) -> np.ndarray:
    """[b, length] casing classes, zero-padded."""
    out = np.zeros((len(sentences), length), dtype=np.int32)
    for row, sentence in enumerate(sentences):
        out[row, : len(sentence)] = [casing_class(w) for w in sentence]
    return out


class TokenFeatures:
    """Which token inputs a tagger takes besides the ELMo layers, and how to compute them from words.

    Each part is optional: ``words`` (trainable word embedding), ``chars`` (character CNN), ``casing`` (casing
    classes), ``vectors`` (frozen pretrained vectors).
    """

    def __init__(self, words: TaggerVocabulary | None = None, chars: CharVocabulary | None = None,
                 casing: bool = False, vectors: VectorVocabulary | None = None):
        self.words, self.chars, self.casing, self.vectors = words, chars, casing, vectors

    def inputs(self, sentences: Sequence[Sequence[str]], length: int) -> dict:
        """The model inputs of a batch other than ``layers`` and ``lengths``.

        The keys come in :func:`pipeline.model.build_tagger`'s input order: Keras matches a dict of inputs to a
        loaded model's inputs by position, so the order must be the model's.
        """
        inputs = {}
        if self.words is not None:
            inputs["word_ids"] = self.words.batch(sentences, length)
        if self.vectors is not None:
            inputs["vector_ids"] = self.vectors.batch(sentences, length)
        if self.chars is not None:
            inputs["char_ids"] = self.chars.batch(sentences, length)
        if self.casing:
            inputs["casing"] = casing_batch(sentences, length)
        return inputs

    def save(self, run_dir: str | Path) -> None:
        if self.words is not None:
            self.words.save(run_dir)
        record = {
            "chars": None if self.chars is None else {"chars": self.chars.chars, "max_chars": self.chars.max_chars},
            "casing": self.casing,
            "vectors": None if self.vectors is None else self.vectors.record(),
        }
        Path(run_dir, FEATURES_FILE).write_text(json.dumps(record), encoding="utf-8")

    @classmethod
    def load(cls, run_dir: str | Path) -> "TokenFeatures":
        """The features a run was trained with (a run of before features.json had word ids at most)."""
        path = Path(run_dir, FEATURES_FILE)
        record = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        chars = record.get("chars")
        vectors = record.get("vectors")
        return cls(
            TaggerVocabulary.load(run_dir),
            CharVocabulary(chars["chars"], chars["max_chars"]) if chars else None,
            bool(record.get("casing")),
            VectorVocabulary(vectors["words"], vectors["source"], vectors.get("rows"), vectors.get("table_rows"))
            if vectors else None,
        )
