"""Stage 1, ``python -m pipeline.corpus``: read the corpus in its format, split it, write the splits, shards and meta.

The format's reader (``corpus.format``, :data:`READERS`) hands over sentences; a format without splits of its own
(the Kaggle CSV) is split as the original notebook did. Everything is written as CoNLL-style text under the output
directory, with ``meta.json`` recording the corpus's identity, tags, sizes, shards and the problems handled.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Callable

from pipeline.corpus.base import CorpusError, CorpusReader, tag_vocabulary
from pipeline.corpus.conll import ConllReader
from pipeline.corpus.kaggle_csv import KaggleCsvReader
from pipeline.corpus.split import split_corpus, write_splits
from pipeline.logs import atomic_path, exit_status

#: ``corpus.format`` -> the reader of that format, built from the ``corpus`` config section.
READERS: dict[str, Callable[[dict], CorpusReader]] = {
    "kaggle_csv": KaggleCsvReader.from_config,
    "conll": ConllReader.from_config,
}


def reader_for(cfg: dict) -> CorpusReader:
    """The reader of ``corpus.format`` (the Kaggle CSV when unset)."""
    return READERS[cfg.get("format") or "kaggle_csv"](cfg)


def prepare(config: dict, out_dir: str | Path) -> dict:
    """Read, validate, split and shard the corpus under ``out_dir``; return the metadata written to meta.json."""
    cfg = config["corpus"]
    out_dir = Path(out_dir)
    corpus = reader_for(cfg).read()
    splits = corpus.splits
    if splits is None:
        splits = split_corpus(corpus.sentences, cfg["test_size"], cfg["split_seed"], cfg["val_size"], cfg["val_seed"])
    shards = write_splits(splits, out_dir, cfg["shard_size"])
    meta = {
        "corpus_path": corpus.path,
        "corpus_sha256": corpus.sha256,
        "tags": tag_vocabulary(corpus.sentences),
        "pos_tags": sorted({p for s in corpus.sentences for p in s.pos}),
        "sizes": {split: len(members) for split, members in splits.items()},
        "shards": shards,
        "problems": corpus.report.warnings,
    }
    with atomic_path(out_dir / "meta.json") as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=1))
    return meta


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.corpus``: the Snakemake entry point of stage 1."""
    parser = argparse.ArgumentParser(description="Read, validate, split and shard the NER corpus.")
    parser.add_argument("--settings", default=None, help="JSON of the 'corpus' config section (default: config file)")
    parser.add_argument("--corpus", default=None, help="corpus file (overrides corpus.path)")
    parser.add_argument("--out", default="cache/corpus", help="output directory")
    args = parser.parse_args(argv)
    from pipeline.config import load_config, validate_config

    config = validate_config({"corpus": json.loads(args.settings)}) if args.settings else load_config()
    if args.corpus:
        config["corpus"]["path"] = args.corpus
    return exit_status(lambda: prepare(config, args.out), CorpusError)
