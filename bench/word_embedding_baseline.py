"""Baseline for the README's feature table: the same residual biLSTM tagger fed only a word embedding trained from
scratch (no biLM features), same splits, same training loop, same early stopping and decoding.

Run after the corpus stage:  python bench/word_embedding_baseline.py [--quick] [--dim 256]
Prints and writes results/baselines/word_embedding.json (test entity F1 micro and per type).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from pipeline.config import load_config
from pipeline.corpus import read_conll
from pipeline.decode import decode_all
from pipeline.evaluate import entity_metrics
from pipeline.model import build_word_tagger
from pipeline.train import fit_with_early_stopping, predict_probabilities, set_determinism

UNKNOWN_ID = 1
FIRST_WORD_ID = 2
QUICK_SENTENCES = 2000


class WordIdFeatures:
    """Sentences as word ids, with the interface the training loop expects of a feature source."""

    def __init__(self, sentences, index: dict[str, int]):
        self.words = [s.words for s in sentences]
        self.tags = [s.tags for s in sentences]
        self.ids = [np.asarray([index.get(w, UNKNOWN_ID) for w in s.words], dtype=np.int32) for s in sentences]
        self.lengths = np.asarray([len(s) for s in sentences], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.ids)

    def inputs(self, indices, length: int) -> dict:
        word_ids = np.zeros((len(indices), length), dtype=np.int32)
        for row, i in enumerate(indices):
            word_ids[row, : self.lengths[i]] = self.ids[i]
        return {"word_ids": word_ids, "lengths": self.lengths[indices].astype(np.int32)}

    def column(self, name: str):
        return {"tags": self.tags, "words": self.words}[name]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus-dir", default="cache/corpus", help="output of the corpus stage")
    parser.add_argument("--dim", type=int, default=256, help="word embedding width (the biLM features are 256 wide)")
    parser.add_argument("--quick", action="store_true", help=f"first {QUICK_SENTENCES} sentences of each split")
    parser.add_argument("--out", default="results/baselines/word_embedding.json")
    args = parser.parse_args(argv)
    settings = load_config()["train"]
    set_determinism(settings["seed"])
    corpus = Path(args.corpus_dir)
    splits = {s: read_conll(corpus / f"{s}.conll") for s in ("train", "val", "test")}
    if args.quick:
        splits = {s: v[:QUICK_SENTENCES] for s, v in splits.items()}
        settings["max_epochs"] = 2
    tags = json.loads((corpus / "meta.json").read_text())["tags"]
    vocabulary = sorted({w for s in splits["train"] for w in s.words})
    index = {w: i + FIRST_WORD_ID for i, w in enumerate(vocabulary)}
    features = {s: WordIdFeatures(v, index) for s, v in splits.items()}
    out = Path(args.out)
    checkpoint = out.parent / "word_embedding_checkpoint"
    checkpoint.mkdir(parents=True, exist_ok=True)
    started = time.time()
    model, state, seconds = fit_with_early_stopping(
        lambda: build_word_tagger(len(index) + FIRST_WORD_ID, args.dim, len(tags), settings["units"], settings["dropout"]),
        features["train"], features["val"], tags, settings, checkpoint, fingerprint=f"word-{time.time()}",
    )
    predicted = decode_all(predict_probabilities(model, features["test"]), tags, "bio_viterbi")
    metrics = entity_metrics(features["test"].tags, predicted)
    result = {"features": f"word embedding from scratch ({args.dim} wide)", "quick": args.quick,
              "test_entity_f1_micro": metrics["averages"]["micro"]["f1-score"],
              "per_type_f1": {k: v["f1-score"] for k, v in metrics["per_type"].items()},
              "best_epoch": state["best_epoch"], "train_seconds": seconds, "total_seconds": round(time.time() - started)}
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
