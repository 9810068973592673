"""Pretrain the offline biLM on the training split's words (never validation or test text) and measure it.

Writes ``weights.weights.h5``, ``options.json`` (everything needed to rebuild the graph without this config) and
``vocab.txt`` to the output directory, plus ``perplexity.json``: validation perplexity of each direction next to a
unigram model over the same vocabulary, the number that says whether the LM learned anything.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Sequence

import keras
import numpy as np

from pipeline.batching import length_buckets, padded_length, shape_probes_first, shuffled_batches
from pipeline.bilm.model import BiLM, SampledSoftmaxLM
from pipeline.bilm.vocab import WordVocabulary, batch_char_ids
from pipeline.corpus import read_conll
from pipeline.logs import atomic_path, get_logger
from pipeline.progress import KerasProgress

log = get_logger(__name__)
OPTION_KEYS = (
    "char_embedding_dim", "max_chars_per_token", "filters", "highway_layers", "projection_dim", "cell_dim",
    "cell_clip", "projection_clip",
)
PERPLEXITY_BATCH = 256


def read_extra_text(paths: Sequence[str]) -> list[list[str]]:
    """Unlabelled sentences: one per line, tokens separated by whitespace; blank lines ignored."""
    sentences = []
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            sentences += [line.split() for line in handle if line.strip()]
    return sentences


def language_model_targets(sentences: Sequence[Sequence[str]], vocab: WordVocabulary, length: int):
    """Next-word and previous-word ids [b, length]; ``</S>`` after the last word and ``<S>`` before the first."""
    next_ids = np.zeros((len(sentences), length), dtype=np.int32)
    previous_ids = np.zeros((len(sentences), length), dtype=np.int32)
    for row, sentence in enumerate(sentences):
        ids = vocab.ids(sentence)
        n = len(ids)
        next_ids[row, :n] = np.append(ids[1:], vocab.end_id)
        previous_ids[row, :n] = np.insert(ids[:-1], 0, vocab.begin_id)
    return next_ids, previous_ids


class LanguageModelBatches(keras.utils.PyDataset):
    """Length-bucketed batches of character ids and LM targets, reshuffled every epoch."""

    def __init__(self, sentences, vocab: WordVocabulary, options: dict, batch_size: int, seed: int):
        super().__init__()
        self.sentences = sentences
        self.vocab = vocab
        self.max_chars = options["max_chars_per_token"]
        self.batch_size = batch_size
        self.rng = np.random.default_rng(seed)
        self.lengths = [len(s) for s in sentences]
        self.batches = shape_probes_first(shuffled_batches(self.lengths, batch_size, self.rng), self.lengths)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        members = [self.sentences[i] for i in self.batches[index]]
        length = padded_length(max(len(s) for s in members))
        next_ids, previous_ids = language_model_targets(members, self.vocab, length)
        return {
            "char_ids": batch_char_ids(members, self.max_chars, length),
            "next_ids": next_ids,
            "previous_ids": previous_ids,
        }

    def on_epoch_end(self) -> None:
        self.batches = shuffled_batches(self.lengths, self.batch_size, self.rng)


def model_options(settings: dict) -> dict:
    """The subset of the bilm settings that defines the graph (saved as options.json)."""
    return {key: settings[key] for key in OPTION_KEYS}


def direction_log_likelihoods(model: SampledSoftmaxLM, sentences, vocab: WordVocabulary, max_chars: int) -> dict:
    """Summed full-softmax log-likelihood of the true next/previous words, per direction, and the token count."""
    weights = keras.ops.convert_to_numpy(model.softmax_weights)
    bias = keras.ops.convert_to_numpy(model.softmax_bias)
    totals = {"forward": 0.0, "backward": 0.0}
    count = 0
    for batch in length_buckets([len(s) for s in sentences], PERPLEXITY_BATCH):
        members = [sentences[i] for i in batch]
        length = padded_length(max(len(s) for s in members))
        outputs = model.bilm(batch_char_ids(members, max_chars, length), training=False)
        mask = keras.ops.convert_to_numpy(outputs["mask"])
        next_ids, previous_ids = language_model_targets(members, vocab, length)
        for direction, targets in (("forward", next_ids), ("backward", previous_ids)):
            hidden = keras.ops.convert_to_numpy(outputs[direction][1])[mask]
            logits = hidden @ weights.T + bias
            logits -= logits.max(axis=1, keepdims=True)
            log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
            totals[direction] += float(log_probs[np.arange(len(hidden)), targets[mask]].sum())
        count += int(mask.sum())
    return {"totals": totals, "tokens": count}


def unigram_perplexity(train: Sequence[Sequence[str]], evaluation: Sequence[Sequence[str]], vocab: WordVocabulary) -> float:
    """Perplexity of an add-one unigram model over the same vocabulary (and the same targets incl. ``</S>``)."""
    counts = np.ones(len(vocab))
    for sentence in train:
        np.add.at(counts, vocab.ids(sentence), 1)
        counts[vocab.end_id] += 1
    log_probs = np.log(counts / counts.sum())
    total = sum(log_probs[vocab.ids(s)].sum() for s in evaluation)
    n = sum(len(s) for s in evaluation)
    return float(math.exp(-total / max(n, 1)))


def pretrain(train_path: str, val_path: str, settings: dict, out_dir: str) -> dict:
    """Train the biLM, save it with its options and vocabulary, and return the perplexity report."""
    keras.utils.set_random_seed(settings["seed"])
    started = time.time()
    train = [s.words for s in read_conll(train_path)] + read_extra_text(settings.get("extra_text", []))
    val = [s.words for s in read_conll(val_path)]
    vocab = WordVocabulary.from_sentences(train, settings["min_word_count"])
    options = model_options(settings) | {"dropout": settings["dropout"]}
    log.info("biLM: %d training sentences, vocabulary %d words", len(train), len(vocab))
    model = SampledSoftmaxLM(options, len(vocab), settings["num_samples"], seed=settings["seed"])
    model.compile(optimizer=keras.optimizers.Adam(settings["learning_rate"], clipnorm=5.0))
    batches = LanguageModelBatches(train, vocab, options, settings["batch_size"], settings["seed"])
    # Steps with rate and time left: a bar on a terminal, a line every tenth of an epoch in logs/pretrain_bilm.log.
    history = model.fit(batches, epochs=settings["epochs"], verbose=0, callbacks=[KerasProgress("pretrain biLM")])
    likelihood = direction_log_likelihoods(model, val, vocab, options["max_chars_per_token"])
    report = {
        "validation_tokens": likelihood["tokens"],
        "perplexity_forward": math.exp(-likelihood["totals"]["forward"] / likelihood["tokens"]),
        "perplexity_backward": math.exp(-likelihood["totals"]["backward"] / likelihood["tokens"]),
        "perplexity_unigram": unigram_perplexity(train, val, vocab),
        "train_loss": [float(v) for v in history.history["loss"]],
        "vocabulary_size": len(vocab),
        "seconds": round(time.time() - started, 1),
    }
    log.info("validation perplexity: %s", {k: v for k, v in report.items() if k.startswith("perplexity")})
    save_bilm(model, options, vocab, report, out_dir)
    return report


def save_bilm(model: SampledSoftmaxLM, options: dict, vocab: WordVocabulary, report: dict, out_dir: str) -> None:
    """Write weights, options, vocabulary and report into ``out_dir`` as one atomic directory."""
    with atomic_path(out_dir, directory=True) as tmp:
        tmp = Path(tmp)
        model.save_weights(tmp / "weights.weights.h5")
        (tmp / "options.json").write_text(json.dumps({"options": options, "vocabulary_size": len(vocab)}, indent=1))
        vocab.save(tmp / "vocab.txt")
        (tmp / "perplexity.json").write_text(json.dumps(report, indent=1))


def load_trained_lm(bilm_dir: str | Path) -> tuple[SampledSoftmaxLM, dict, WordVocabulary]:
    """Rebuild the trained LM from its directory alone (options.json, vocab.txt, weights)."""
    bilm_dir = Path(bilm_dir)
    meta = json.loads((bilm_dir / "options.json").read_text())
    vocab = WordVocabulary.load(bilm_dir / "vocab.txt")
    model = SampledSoftmaxLM(meta["options"], len(vocab), num_samples=1)
    max_chars = meta["options"]["max_chars_per_token"]
    model({"char_ids": batch_char_ids([["a"]], max_chars)})
    model.load_weights(bilm_dir / "weights.weights.h5")
    return model, meta["options"], vocab


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.bilm.pretrain``: the Snakemake entry point."""
    parser = argparse.ArgumentParser(description="Pretrain the offline ELMo-architecture biLM on the training split.")
    parser.add_argument("--train", required=True, help="training split (CoNLL file from the corpus stage)")
    parser.add_argument("--val", required=True, help="validation split, for perplexity only")
    parser.add_argument("--settings", required=True, help="JSON of the 'bilm' config section")
    parser.add_argument("--out", required=True, help="output directory")
    args = parser.parse_args(argv)
    pretrain(args.train, args.val, json.loads(args.settings), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
