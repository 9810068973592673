"""Stage 2: run an ELMo-signature module once over a shard and cache its three layer activations in HDF5.

The embedder contract is the TF-Hub ELMo module's: anything ``tensorflow_hub.load(handle)`` loads (a URL or a local
directory) with the signature ``tokens`` (inputs ``tokens`` [batch, time] string and ``sequence_len`` [batch] int32;
outputs ``word_emb``, ``lstm_outputs1``, ``lstm_outputs2``). Layer 0 is ``word_emb``, repeated to the LSTM width when
it is half of it, as ELMo does. Sentences are embedded in length-sorted batches (little padding) and written
unpadded, untruncated, into a temporary file that is renamed into place only when complete.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np

import pipeline
from pipeline.batching import length_buckets, padded_length
from pipeline.cache import EMBEDDINGS, LENGTHS, OFFSETS, SENTENCE_IDS, STRING_DTYPE, arrays_checksum
from pipeline.corpus import Sentence, read_conll
from pipeline.logs import atomic_path, exit_status, get_logger
from pipeline.progress import Progress

log = get_logger(__name__)
SIGNATURE = "tokens"
LAYER_OUTPUTS = ("word_emb", "lstm_outputs1", "lstm_outputs2")
TARGET_CHUNK_BYTES = 1 << 18
PADDING_TOKEN = ""


class EmbedderError(RuntimeError):
    """An embedder that cannot be loaded or does not honour the ELMo signature."""


def load_embedder(handle: str):
    """Load an ELMo-signature module by URL or local directory and return its ``tokens`` signature function."""
    import tensorflow_hub as hub

    try:
        module = hub.load(handle)
    except Exception as exc:  # hub raises many types (OSError, ValueError, URLError...)
        where = "a local SavedModel directory" if not handle.startswith(("http://", "https://", "gs://")) else "a URL"
        raise EmbedderError(
            f"could not load the embedder {handle!r} ({where}): {exc}. With embedder.kind: bilm the pipeline builds "
            f"its own (rerun the export_bilm rule); with tfhub, download the module on a connected machine and set "
            f"embedder.handle to its directory."
        ) from None
    signatures = getattr(module, "signatures", {})
    if SIGNATURE not in signatures:
        raise EmbedderError(f"{handle}: the module has no {SIGNATURE!r} signature (found {list(signatures)})")
    return signatures[SIGNATURE]


def padded_tokens(sentences: Sequence[Sequence[str]], length: int) -> np.ndarray:
    """[batch, length] object array of tokens, padded with empty strings."""
    tokens = np.full((len(sentences), length), PADDING_TOKEN, dtype=object)
    for row, words in enumerate(sentences):
        tokens[row, : len(words)] = words
    return tokens


def layer_stack(outputs: dict) -> np.ndarray:
    """[batch, time, 3, width] from the signature outputs; ``word_emb`` repeated when half the LSTM width."""
    word, first, second = (np.asarray(outputs[name]) for name in LAYER_OUTPUTS)
    width = first.shape[-1]
    if word.shape[-1] * 2 == width:
        word = np.concatenate([word, word], axis=-1)
    elif word.shape[-1] != width:
        raise EmbedderError(f"word_emb width {word.shape[-1]} fits neither {width} nor {width // 2}")
    return np.stack([word, first, second], axis=2)


def embed_batch(signature, sentences: Sequence[Sequence[str]]) -> np.ndarray:
    """Run the module on one batch: [batch, padded_time, 3, width] float32."""
    import tensorflow as tf

    length = padded_length(max(len(s) for s in sentences))
    outputs = signature(
        tokens=tf.constant(padded_tokens(sentences, length).astype(str)),
        sequence_len=tf.constant([len(s) for s in sentences], dtype=tf.int32),
    )
    return layer_stack({name: outputs[name].numpy() for name in LAYER_OUTPUTS})


def create_datasets(handle: h5py.File, sentences: Sequence[Sentence], width: int, dtype: str) -> h5py.Dataset:
    """Write the index and text datasets and create the (still empty) activations dataset."""
    lengths = np.asarray([len(s) for s in sentences], dtype=np.int32)
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    total = int(lengths.sum())
    chunk_tokens = max(1, min(total, TARGET_CHUNK_BYTES // (3 * width * np.dtype(dtype).itemsize)))
    handle.create_dataset(OFFSETS, data=offsets)
    handle.create_dataset(LENGTHS, data=lengths)
    handle.create_dataset(SENTENCE_IDS, data=[s.sentence_id for s in sentences], dtype=STRING_DTYPE)
    for column in ("words", "pos", "tags"):
        handle.create_dataset(column, data=[v for s in sentences for v in getattr(s, column)], dtype=STRING_DTYPE)
    return handle.create_dataset(EMBEDDINGS, shape=(total, 3, width), dtype=dtype, chunks=(chunk_tokens, 3, width))


def embed_shard(
    shard_path: str | Path, handle: str, out_path: str | Path, batch_size: int, dtype: str, provenance: dict
) -> dict:
    """Embed every sentence of a CoNLL shard and write the HDF5 cache file atomically; return its attributes."""
    sentences = read_conll(shard_path)
    if not sentences:
        raise EmbedderError(f"{shard_path}: shard has no sentences")
    signature = load_embedder(handle)
    started = time.time()
    probe = embed_batch(signature, [sentences[0].words])
    width = probe.shape[-1]
    lengths = [len(s) for s in sentences]
    with atomic_path(out_path) as tmp:
        with h5py.File(tmp, "w") as out:
            data = create_datasets(out, sentences, width, dtype)
            offsets = out[OFFSETS][()]
            module_seconds = 0.0
            # Collected in memory (storage dtype) and written once: per-sentence HDF5 writes with float32->float16
            # conversion cost more than the embedder itself on small models (bench/embed_overhead.py).
            buffer = np.empty(data.shape, dtype=data.dtype)
            # Counted in tokens (batches differ in length): a bar on a terminal, a line every tenth in the log.
            with Progress(int(sum(lengths)), f"embed {Path(shard_path).stem}", unit="token") as shown:
                for batch in length_buckets(lengths, batch_size):
                    tick = time.time()
                    layers = embed_batch(signature, [sentences[i].words for i in batch])
                    module_seconds += time.time() - tick
                    for row, index in enumerate(batch):
                        buffer[offsets[index] : offsets[index] + lengths[index]] = layers[row, : lengths[index]]
                    shown.update(sum(lengths[i] for i in batch))
            data[...] = buffer
            del buffer
            attrs = {
                "embedder_handle": str(handle),
                "width": int(width),
                "dtype": dtype,
                "tokens": int(sum(lengths)),
                "sentences": len(sentences),
                "code_version": pipeline.__version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                "slurm_job_id": os.environ.get("SLURM_JOB_ID", ""),
                "module_seconds": round(module_seconds, 3),
                "seconds": round(time.time() - started, 3),
            } | provenance
            out.attrs.update(attrs)
            out.attrs["checksum"] = arrays_checksum(out)
    log.info("%s: %d sentences, %d tokens, width %d -> %s", shard_path, len(sentences), sum(lengths), width, out_path)
    return attrs


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.embed``: the Snakemake entry point (one shard per call)."""
    parser = argparse.ArgumentParser(description="Embed one corpus shard with an ELMo-signature module into HDF5.")
    parser.add_argument("--shard", required=True, help="CoNLL shard written by the corpus stage")
    parser.add_argument("--handle", required=True, help="TF-Hub handle: URL or local SavedModel directory")
    parser.add_argument("--meta", required=True, help="meta.json of the corpus stage (for the corpus hash)")
    parser.add_argument("--settings", required=True, help="JSON of the 'embedder' config section")
    parser.add_argument("--out", required=True, help="HDF5 file to write")
    args = parser.parse_args(argv)
    settings = json.loads(args.settings)
    meta = json.loads(Path(args.meta).read_text())
    provenance = {
        "embedder_kind": settings["kind"],
        "corpus_sha256": meta["corpus_sha256"],
        "settings": json.dumps(settings, sort_keys=True),
    }
    return exit_status(lambda: embed_shard(args.shard, args.handle, args.out, settings["batch_size"],
                                           settings["dtype"], provenance), EmbedderError)


if __name__ == "__main__":
    sys.exit(main())
