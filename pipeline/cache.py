"""The HDF5 embedding cache: one file per shard, written by :mod:`pipeline.embed`, read by training and evaluation.

Layout (AllenNLP's writer keeps one dataset per sentence; we keep one flat token array per shard instead, so there is
no per-sentence overhead and no padding at all, and any sentence is still one contiguous slice):

* ``embeddings`` [tokens, 3, width] (float16 by default): layer activations of every token of every sentence, in
  shard order; chunked along tokens so a sentence-sized read touches one or two chunks;
* ``offsets`` [sentences] int64 and ``lengths`` [sentences] int32: where each sentence starts and how long it is;
* ``sentence_ids``, ``words``, ``pos``, ``tags``: the text the activations belong to (UTF-8 strings);
* attributes: what produced the file (embedder handle and kind, widths, dtype, corpus hash, settings, code version,
  Slurm job id when there is one) and ``checksum``, a SHA-256 of the arrays, so a stale or foreign shard is refused.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

EMBEDDINGS = "embeddings"
OFFSETS = "offsets"
LENGTHS = "lengths"
SENTENCE_IDS = "sentence_ids"
TEXT_COLUMNS = ("words", "pos", "tags")
STRING_DTYPE = h5py.string_dtype("utf-8")
CHECKSUM_BLOCK_TOKENS = 65536
CHECKED_ATTRIBUTES = ("embedder_handle", "embedder_kind", "width", "dtype", "corpus_sha256")


class CacheError(ValueError):
    """A cache file that must not be used; the message says which stage to rerun."""


def arrays_checksum(handle: h5py.File) -> str:
    """SHA-256 over the embeddings, offsets and lengths of an open shard, read block by block."""
    digest = hashlib.sha256()
    embeddings = handle[EMBEDDINGS]
    for start in range(0, embeddings.shape[0], CHECKSUM_BLOCK_TOKENS):
        digest.update(np.ascontiguousarray(embeddings[start : start + CHECKSUM_BLOCK_TOKENS]).tobytes())
    digest.update(handle[OFFSETS][()].tobytes())
    digest.update(handle[LENGTHS][()].tobytes())
    return digest.hexdigest()


@dataclass
class ShardInfo:
    """The attributes of one shard plus its sentence lengths (cheap to read: no activations)."""

    path: Path
    attrs: dict
    lengths: np.ndarray

    @property
    def width(self) -> int:
        return int(self.attrs["width"])


def read_shard_info(path: str | Path) -> ShardInfo:
    """Attributes and sentence lengths of a shard, or a CacheError naming the file."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as handle:
            attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in handle.attrs.items()}
            lengths = handle[LENGTHS][()]
    except (OSError, KeyError) as exc:
        raise CacheError(f"{path}: not a readable embedding shard ({exc}); rerun the embed stage") from None
    return ShardInfo(path, attrs, lengths)


def check_shards_agree(infos: Sequence[ShardInfo], expected: dict | None = None) -> dict:
    """All shards must come from the same embedder, widths and corpus (and match ``expected`` when given)."""
    if not infos:
        raise CacheError("no embedding shards given")
    reference = {k: infos[0].attrs.get(k) for k in CHECKED_ATTRIBUTES}
    for info in infos[1:]:
        for key in CHECKED_ATTRIBUTES:
            if info.attrs.get(key) != reference[key]:
                raise CacheError(
                    f"{info.path}: {key}={info.attrs.get(key)!r} but {infos[0].path} has {reference[key]!r}; "
                    f"the cache mixes embedders or corpora: rerun the embed stage (snakemake --forcerun embed_shard)"
                )
    for key, value in (expected or {}).items():
        if reference.get(key) != value:
            raise CacheError(
                f"{infos[0].path}: cache was built with {key}={reference.get(key)!r}, the current configuration "
                f"expects {value!r}: rerun the embed stage"
            )
    return reference


def verify_checksum(path: str | Path) -> None:
    """Recompute a shard's checksum and refuse the file when it differs from the recorded one."""
    with h5py.File(path, "r") as handle:
        recorded = handle.attrs.get("checksum")
        if recorded is None or arrays_checksum(handle) != recorded:
            raise CacheError(f"{path}: checksum mismatch (corrupted or partial shard): rerun the embed stage")


class EmbeddingCache:
    """Sentences of several shards behind one index, loaded into memory or read lazily from HDF5.

    ``in_memory`` decides the trade-off: a cache that fits in RAM is read once (each epoch then costs only the
    tagger's compute); a larger one is streamed, one contiguous slice per sentence.
    """

    def __init__(self, paths: Sequence[str | Path], in_memory: bool):
        self.paths = [Path(p) for p in paths]
        self.infos = [read_shard_info(p) for p in self.paths]
        self.attrs = check_shards_agree(self.infos)
        self.in_memory = in_memory
        self.shard_of, self.row_of = [], []
        for shard, info in enumerate(self.infos):
            self.shard_of += [shard] * len(info.lengths)
            self.row_of += list(range(len(info.lengths)))
        self.lengths = np.concatenate([info.lengths for info in self.infos]).astype(np.int64)
        self._files = [h5py.File(p, "r") for p in self.paths]
        self._offsets = [f[OFFSETS][()] for f in self._files]
        self._memory = [f[EMBEDDINGS][()] for f in self._files] if in_memory else None
        self._text = {col: self._read_text(col) for col in TEXT_COLUMNS + (SENTENCE_IDS,)}

    def _read_text(self, column: str) -> list:
        values = []
        for f, offsets, info in zip(self._files, self._offsets, self.infos):
            flat = [v.decode("utf-8") if isinstance(v, bytes) else v for v in f[column][()]]
            if column == SENTENCE_IDS:
                values += flat
            else:
                values += [flat[o : o + n] for o, n in zip(offsets, info.lengths)]
        return values

    @property
    def width(self) -> int:
        return int(self.attrs["width"])

    @property
    def dtype(self) -> str:
        """Storage dtype of the activations; batches keep it (the model casts to float32 on the device)."""
        return str(self.attrs["dtype"])

    def __len__(self) -> int:
        return len(self.lengths)

    def sentence(self, index: int) -> np.ndarray:
        """[length, 3, width] activations of one sentence (storage dtype)."""
        shard, row = self.shard_of[index], self.row_of[index]
        start = self._offsets[shard][row]
        stop = start + self.lengths[index]
        source = self._memory[shard] if self._memory is not None else self._files[shard][EMBEDDINGS]
        return source[start:stop]

    def batch(self, indices: Sequence[int], length: int) -> np.ndarray:
        """[len(indices), length, 3, width] zero-padded activations in the storage dtype."""
        out = np.zeros((len(indices), length, 3, self.width), dtype=self.dtype)
        for row, index in enumerate(indices):
            values = self.sentence(int(index))
            out[row, : len(values)] = values
        return out

    #: Token features other than the layers (word, character, casing, vector ids), set by :meth:`use_features`.
    features = None
    #: Whether batches carry the ``layers`` activations (false for a tagger trained without the biLM).
    use_layers = True

    def use_features(self, features, use_layers: bool = True) -> None:
        """Give the model the token inputs of ``features`` (a :class:`pipeline.words.TokenFeatures`, or None) and,
        when ``use_layers``, the cached activations."""
        self.features, self.use_layers = features, use_layers

    def inputs(self, indices: Sequence[int], length: int) -> dict:
        """Model inputs of a batch: ``lengths`` [b], ``layers`` [b, length, 3, width] (unless switched off) and the
        token features' inputs (``word_ids``, ``char_ids``, ``casing``, ``vector_ids``) computed from the words."""
        inputs = {"lengths": self.lengths[indices].astype(np.int32)}
        if self.use_layers:
            inputs["layers"] = self.batch(indices, length)
        if self.features is not None:
            words = self.column("words")
            inputs |= self.features.inputs([words[int(i)] for i in indices], length)
        return inputs

    def subset(self, indices: Sequence[int]) -> "CacheSubset":
        """The sentences at ``indices`` behind their own index (the small-data subsample), sharing this cache."""
        return CacheSubset(self, np.asarray(indices, dtype=np.int64))

    def column(self, name: str) -> list:
        """Per-sentence lists of ``words``, ``pos`` or ``tags``, or the ``sentence_ids``."""
        return self._text[name]

    def close(self) -> None:
        for f in self._files:
            f.close()


class CacheSubset:
    """Some sentences of an :class:`EmbeddingCache`, indexed 0..n-1: what training needs of a cache (lengths,
    inputs, text columns, attributes) without copying any activations."""

    def __init__(self, cache: EmbeddingCache, indices: np.ndarray):
        self.cache, self.indices = cache, indices
        self.lengths = cache.lengths[indices]
        self.attrs, self.infos = cache.attrs, cache.infos

    width = property(lambda self: self.cache.width)
    dtype = property(lambda self: self.cache.dtype)

    def __len__(self) -> int:
        return len(self.indices)

    def use_features(self, features, use_layers: bool = True) -> None:
        self.cache.use_features(features, use_layers)

    def inputs(self, indices: Sequence[int], length: int) -> dict:
        return self.cache.inputs(self.indices[np.asarray(indices, dtype=np.int64)], length)

    def column(self, name: str) -> list:
        values = self.cache.column(name)
        return [values[int(i)] for i in self.indices]


def estimated_bytes(paths: Sequence[str | Path]) -> int:
    """Bytes the activations of these shards take in memory (their storage dtype)."""
    total = 0
    for path in paths:
        with h5py.File(path, "r") as handle:
            data = handle[EMBEDDINGS]
            total += int(np.prod(data.shape)) * data.dtype.itemsize
    return total


def attrs_json(value) -> str:
    """Attributes that are dicts are stored as JSON strings (HDF5 attributes hold scalars and arrays)."""
    return json.dumps(value, sort_keys=True)
