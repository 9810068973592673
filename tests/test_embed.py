"""The embed stage: HDF5 layout, provenance, no padding or truncation, atomic writes, clear loader errors."""
from __future__ import annotations

import h5py
import numpy as np
import pytest

from pipeline.cache import EmbeddingCache, CacheError, check_shards_agree, read_shard_info, verify_checksum
from pipeline.corpus import read_conll
from pipeline.embed import EmbedderError, embed_shard, load_embedder

from conftest import TINY_BILM


def test_shard_holds_every_token_unpadded_with_three_layers(cached_shards, prepared_corpus):
    corpus_dir, meta = prepared_corpus
    path = cached_shards["train"][0]
    sentences = read_conll(corpus_dir / "shards" / f"{path.stem}.conll")
    with h5py.File(path) as f:
        assert f["embeddings"].shape == (sum(len(s) for s in sentences), 3, 2 * TINY_BILM["projection_dim"])
        assert f["embeddings"].dtype == np.float16
        assert f["lengths"][()].tolist() == [len(s) for s in sentences]
        assert [v.decode() for v in f["sentence_ids"][()]] == [s.sentence_id for s in sentences]


def test_layer_zero_is_word_emb_repeated_to_lstm_width(cached_shards):
    cache = EmbeddingCache(cached_shards["val"], in_memory=True)
    first = cache.sentence(0).astype(np.float32)
    half = first.shape[-1] // 2
    np.testing.assert_array_equal(first[:, 0, :half], first[:, 0, half:])


def test_shard_records_its_provenance(cached_shards, prepared_corpus):
    _, meta = prepared_corpus
    info = read_shard_info(cached_shards["test"][0])
    assert info.attrs["corpus_sha256"] == meta["corpus_sha256"]
    assert info.attrs["embedder_kind"] == "bilm"
    for key in ("embedder_handle", "width", "dtype", "code_version", "checksum"):
        assert key in info.attrs
    verify_checksum(cached_shards["test"][0])


def test_a_tampered_shard_fails_its_checksum(cached_shards, tmp_path):
    import shutil

    copy = tmp_path / "copy.h5"
    shutil.copy(cached_shards["test"][0], copy)
    with h5py.File(copy, "r+") as f:
        f["embeddings"][0] = 0
    with pytest.raises(CacheError, match="checksum"):
        verify_checksum(copy)


def test_shards_from_different_corpora_are_refused(cached_shards):
    infos = [read_shard_info(p) for p in cached_shards["train"]]
    with pytest.raises(CacheError, match="corpus_sha256"):
        check_shards_agree(infos, {"corpus_sha256": "something else"})


def test_embedding_leaves_no_temporary_files(cached_shards):
    folder = cached_shards["train"][0].parent
    assert not [p for p in folder.iterdir() if p.name.startswith(".tmp-")]


def test_failed_embedding_leaves_no_output(prepared_corpus, tmp_path):
    corpus_dir, _ = prepared_corpus
    out = tmp_path / "x.h5"
    with pytest.raises(EmbedderError):
        embed_shard(corpus_dir / "shards" / "train-0000.conll", str(tmp_path / "missing"), out, 8, "float16", {})
    assert not out.exists() and not list(tmp_path.glob(".tmp-*"))


def test_loading_a_missing_module_names_the_handle_and_the_fix(tmp_path):
    with pytest.raises(EmbedderError, match="local SavedModel directory"):
        load_embedder(str(tmp_path / "nowhere"))


def test_embedding_is_deterministic(cached_shards, prepared_corpus, exported_bilm, tmp_path):
    corpus_dir, meta = prepared_corpus
    name = cached_shards["val"][0].stem
    out = tmp_path / "again.h5"
    embed_shard(corpus_dir / "shards" / f"{name}.conll", str(exported_bilm), out, 3, "float16", {})
    with h5py.File(out) as a, h5py.File(cached_shards["val"][0]) as b:
        np.testing.assert_allclose(a["embeddings"][()].astype(np.float32), b["embeddings"][()].astype(np.float32),
                                   atol=2e-3)
