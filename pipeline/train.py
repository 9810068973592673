"""Stage 3: train the residual biLSTM tagger on the cached layer activations (the embedder never runs here).

Batches are bucketed by length and padding is masked out of the loss and every metric. Early stopping watches the
validation *entity* F1 (seqeval), the number we report, not token accuracy. Every epoch leaves a checkpoint, so a
killed run resumes from its last complete epoch. The run directory holds everything a later tagging run needs:
``model.keras``, ``tags.json``, ``embedder.json`` and ``settings.json``, plus ``history.csv``,
``learning_curves.png`` and ``layer_weights.json``.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import json
import shutil
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import keras
import numpy as np

from pipeline.batching import (length_buckets, padded_length, padding_minimal_lengths, shape_probes_first,
                               shuffled_batches)
from pipeline.cache import TEXT_COLUMNS, EmbeddingCache, estimated_bytes
from pipeline.config import settings_json
from pipeline.corpus import Sentence, write_conll
from pipeline.crf import PADDING_LABEL, CRFLoss
from pipeline.decode import decode_all
from pipeline.logs import atomic_path, get_logger
from pipeline.model import build_tagger, has_layer, set_pretrained_vectors
from pipeline.progress import KerasProgress
from pipeline.tasks import TASKS, Task, get_task
from pipeline.vectors import PretrainedVectors, load_vectors
from pipeline.words import CharVocabulary, TaggerVocabulary, TokenFeatures, VectorVocabulary

log = get_logger(__name__)
GIB = 1 << 30
PREDICT_BATCH = 128
CHECKPOINT_DIR = "checkpoint"
MODEL_FILE = "model.keras"
LOSS_FLOOR = 1e-9
SUBSAMPLE_IDS_FILE = "train_sentence_ids.txt"
SUBSAMPLE_CONLL_FILE = "train_subsample.conll"
#: layer_weights.json of a run trained without the ELMo layers (there is no mix to report).
NO_MIX = {"layer_weights": [], "gamma": None}
SCORE_LABELS = {"val_entity_f1": "validation entity F1 (seqeval, micro)", "val_token_accuracy": "validation token accuracy"}


class TaggingBatches(keras.utils.PyDataset):
    """(inputs, tag ids, padding weights) batches, reshuffled each epoch.

    ``cache`` is an :class:`EmbeddingCache` or anything with the same ``lengths``, ``inputs(indices, length)`` and
    ``column("tags")`` (the word-embedding baseline feeds word ids through the same loop).
    """

    def __init__(self, cache: EmbeddingCache, tags: Sequence[str], batch_size: int, seed: int, bucket: bool = True,
                 column: str = "tags", max_shapes: int | None = None, padding_label: int = 0):
        super().__init__()
        self.padding_label = padding_label  # a CRF's loss reads the sentence lengths from it (see pipeline.crf)
        self.cache = cache
        self.column = column
        self.tag_index = {t: i for i, t in enumerate(tags)}
        self.gold = [np.asarray([self.tag_index[t] for t in s], dtype=np.int32) for s in cache.column(column)]
        self.batch_size = batch_size
        self.bucket = bucket
        self.rng = np.random.default_rng(seed)
        self.shapes = padding_minimal_lengths(cache.lengths, max_shapes) if bucket and max_shapes else ()
        self.batches = self.epoch_batches()

    def epoch_batches(self) -> list[np.ndarray]:
        batches = shuffled_batches(self.cache.lengths, self.batch_size, self.rng, self.bucket)
        return shape_probes_first(batches, self.cache.lengths, self.shapes)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        members = self.batches[index]
        lengths = self.cache.lengths[members]
        length = padded_length(int(lengths.max()), shapes=self.shapes)
        targets = np.full((len(members), length), self.padding_label, dtype=np.int32)
        for row, i in enumerate(members):
            targets[row, : lengths[row]] = self.gold[i]
        weights = (np.arange(length)[None, :] < lengths[:, None]).astype(np.float32)
        return self.cache.inputs(members, length), targets, weights

    def on_epoch_end(self) -> None:
        self.batches = self.epoch_batches()


def predict_probabilities(model: keras.Model, cache: EmbeddingCache, batch_size: int = PREDICT_BATCH) -> list[np.ndarray]:
    """Per-sentence [length, tags] probabilities for every sentence of the cache, in cache order."""
    result: list[np.ndarray | None] = [None] * len(cache)
    for members in length_buckets(cache.lengths, batch_size):
        lengths = cache.lengths[members]
        length = padded_length(int(lengths.max()))
        probabilities = np.asarray(model.predict_on_batch(cache.inputs(members, length)))
        for row, i in enumerate(members):
            result[i] = probabilities[row, : lengths[row]]
    return result


def masked_cross_entropy(probabilities: Sequence[np.ndarray], gold: Sequence[np.ndarray]) -> float:
    """Mean negative log-likelihood of the gold tags over real tokens only."""
    total = sum(-np.log(np.maximum(p[np.arange(len(g)), g], LOSS_FLOOR)).sum() for p, g in zip(probabilities, gold))
    return float(total / max(1, sum(len(g) for g in gold)))


class EntityF1EarlyStopping(keras.callbacks.Callback):
    """After each epoch: the task's validation score (entity F1 for NER) and loss, best weights kept, stop after
    ``patience`` epochs without improvement, checkpoint."""

    def __init__(self, val: TaggingBatches, tags: Sequence[str], task: Task, patience: int, checkpoint: Path,
                 state: dict | None = None):
        super().__init__()
        self.val = val
        self.tags = list(tags)
        self.gold_tags = val.cache.column(task.column)
        self.task = task
        self.decode_method = task.decode
        self.patience = patience
        self.checkpoint = checkpoint
        self.state = state or {"best_f1": -1.0, "best_epoch": -1, "wait": 0, "rows": []}
        self.epoch_started = time.time()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch_started = time.time()

    def on_epoch_end(self, epoch, logs=None):
        with averaged_weights(self.model):  # scored, kept and saved as the averaged weights when averaging is on
            self.score_epoch(epoch, logs if logs is not None else {})
        self.save_checkpoint(epoch + 1)  # the raw weights, to resume from (the optimizer holds the averages)

    def score_epoch(self, epoch: int, logs: dict) -> None:
        """Validation score and loss of the current weights; keep them when they are the best so far."""
        probabilities = predict_probabilities(self.model, self.val.cache)
        predicted = decode_all(probabilities, self.tags, self.decode_method)
        f1 = self.task.score(self.gold_tags, predicted)
        logs[f"val_{self.task.score_name}"] = f1
        logs["val_loss"] = masked_cross_entropy(probabilities, self.val.gold)
        row = {"epoch": epoch + 1, "seconds": round(time.time() - self.epoch_started, 1)}
        row |= {k: float(v) for k, v in logs.items()}
        self.state["rows"].append(row)
        log.info("epoch %d: %s", epoch + 1, {k: round(v, 4) for k, v in row.items()})
        if f1 > self.state["best_f1"]:
            self.state.update(best_f1=f1, best_epoch=epoch + 1, wait=0)
            self.model.save_weights(self.checkpoint / "best.weights.h5")
        else:
            self.state["wait"] += 1
            if self.state["wait"] >= self.patience:
                log.info("no better validation entity F1 for %d epochs: stopping", self.state["wait"])
                self.model.stop_training = True

    def save_checkpoint(self, epochs_done: int) -> None:
        """Model with optimizer state and the callback state; the state file is written last, atomically."""
        with atomic_path(self.checkpoint / MODEL_FILE) as tmp:
            self.model.save(tmp + ".keras")
            shutil.move(tmp + ".keras", tmp)
        with atomic_path(self.checkpoint / "state.json") as tmp:
            Path(tmp).write_text(json.dumps(self.state | {"epochs_done": epochs_done}))


@contextmanager
def averaged_weights(model: keras.Model) -> Iterator[None]:
    """Inside the block the model holds the optimizer's moving average of its trainable weights (when the optimizer
    keeps one: ``train.weight_averaging``), outside it the weights training goes on from.

    Why: an average of the weights over the last few hundred steps sits nearer the middle of the region the noisy
    steps circle in than the last step does (Polyak averaging), like a cheap ensemble of checkpoints.
    """
    optimizer = model.optimizer
    if optimizer is None or not optimizer.use_ema or not optimizer.built:
        yield
        return
    weights = list(model.trainable_variables)
    averages = optimizer._model_variables_moving_average  # Keras keeps them aligned with the trainable variables
    current = [keras.ops.convert_to_numpy(w) for w in weights]
    for weight, average in zip(weights, averages):
        weight.assign(average)
    try:
        yield
    finally:
        for weight, value in zip(weights, current):
            weight.assign(value)


def settings_fingerprint(settings: dict, caches: Sequence[EmbeddingCache]) -> str:
    """Hash of the training settings and the cache checksums: a checkpoint is only resumed when both match."""
    checksums = [info.attrs.get("checksum", "") for cache in caches for info in cache.infos]
    return hashlib.sha256((settings_json(settings) + "".join(checksums)).encode()).hexdigest()


def resume_state(checkpoint: Path, fingerprint: str) -> dict | None:
    """The saved state of an interrupted run with the same fingerprint, or None to start afresh."""
    state_file = checkpoint / "state.json"
    if not state_file.is_file() or not (checkpoint / MODEL_FILE).is_file():
        return None
    state = json.loads(state_file.read_text())
    if state.get("fingerprint") != fingerprint:
        log.info("checkpoint in %s belongs to other settings or another cache: starting afresh", checkpoint)
        return None
    return state


def write_history(rows: list[dict], run_dir: Path) -> None:
    """history.csv and learning_curves.png (loss, validation loss, validation entity F1 by epoch)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_path(run_dir / "history.csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    epochs = [r["epoch"] for r in rows]
    figure, (loss_axis, f1_axis) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axis.plot(epochs, [r.get("loss") for r in rows], marker="o", label="training loss")
    loss_axis.plot(epochs, [r.get("val_loss") for r in rows], marker="o", label="validation loss")
    loss_axis.set_xlabel("epoch")
    loss_axis.set_ylabel("masked cross-entropy")
    loss_axis.legend()
    score = next((k for k in rows[0] if k.startswith("val_") and k != "val_loss"), "val_entity_f1") if rows else ""
    f1_axis.plot(epochs, [r.get(score) for r in rows], marker="o", color="tab:green")
    f1_axis.set_xlabel("epoch")
    f1_axis.set_ylabel(SCORE_LABELS.get(score, score))
    figure.suptitle("Residual biLSTM tagger on cached ELMo layers")
    figure.tight_layout()
    with atomic_path(run_dir / "learning_curves.png") as tmp:
        figure.savefig(tmp, format="png", dpi=100)
    plt.close(figure)


def embedder_record(cache: EmbeddingCache) -> dict:
    """What produced the features: a tagging run loads this same embedder and checks it matches."""
    keys = ("embedder_handle", "embedder_kind", "width", "dtype", "corpus_sha256", "code_version", "settings")
    return {k: cache.attrs.get(k) if k in cache.attrs else cache.infos[0].attrs.get(k) for k in keys}


def set_determinism(seed: int) -> None:
    """Seed every generator; on TensorFlow also request deterministic kernels (same seed, same metrics)."""
    keras.utils.set_random_seed(seed)
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def train(train_shards: Sequence[str], val_shards: Sequence[str], tags: Sequence[str], settings: dict,
          task: str | Task, run_dir: str | Path) -> dict:
    """Train on the cached shards and write the run directory; return the training summary."""
    run_dir = Path(run_dir)
    checkpoint = run_dir / CHECKPOINT_DIR
    checkpoint.mkdir(parents=True, exist_ok=True)
    task = task if isinstance(task, Task) else get_task(task)
    set_determinism(settings["seed"])
    in_memory = estimated_bytes(list(train_shards) + list(val_shards)) < settings["cache_in_memory_gb"] * GIB
    log.info("reading the cache %s", "into memory" if in_memory else "lazily from HDF5 (larger than the budget)")
    train_cache, val_cache = EmbeddingCache(train_shards, in_memory), EmbeddingCache(val_shards, in_memory)
    if embedder_record(train_cache) != embedder_record(val_cache):
        raise ValueError("training and validation shards come from different embedders: rerun the embed stage")
    fingerprint = settings_fingerprint(settings, [train_cache, val_cache])

    train_cache = subsample(train_cache, settings, run_dir)
    vectors = load_vectors(settings["vectors"], settings.get("max_vectors")) if settings.get("vectors") else None
    features = build_token_features(train_cache.column("words"), settings, vectors)
    use_layers = settings.get("use_elmo", True)
    train_cache.use_features(features, use_layers)
    val_cache.use_features(features, use_layers)
    if vectors is not None:
        log.info("pretrained vectors %s: %d x %d; %.1f%% of training and %.1f%% of validation tokens found",
                 vectors.source, len(vectors), vectors.dim, 100 * features.vectors.coverage(train_cache.column("words")),
                 100 * features.vectors.coverage(val_cache.column("words")))

    def new_model() -> keras.Model:
        model = build_tagger(train_cache.width, len(tags), settings["units"], settings["dropout"],
                             settings["recurrent_dropout"], len(features.words or []), settings["word_embedding_dim"],
                             train_cache.dtype, use_layers=use_layers, seed=settings["seed"],
                             output=settings.get("output", "softmax"), tags=tags,
                             locked_dropout=settings.get("locked_dropout", False),
                             layers_at_output=settings.get("layers_at_output", False),
                             **feature_model_options(features, settings, vectors))
        if vectors is not None:
            set_pretrained_vectors(model, vectors.matrix)
        return model

    model, state, seconds = fit_with_early_stopping(new_model, train_cache, val_cache, tags, settings, checkpoint,
                                                    fingerprint, task)
    summary = {"task": task.name, "best_epoch": state["best_epoch"], f"best_val_{task.score_name}": state["best_f1"],
               "epochs_run": len(state["rows"]), "train_seconds": seconds,
               "cache_in_memory": in_memory, "train_sentences": len(train_cache), "val_sentences": len(val_cache)}
    save_run(model, tags, embedder_record(train_cache), settings, state["rows"], summary, run_dir)
    features.save(run_dir)
    return summary


def subsample(cache: EmbeddingCache, settings: dict, run_dir: Path):
    """The whole training cache, or (``max_train_sentences``) a seeded random draw of that many sentences, whose
    ids go to ``train_sentence_ids.txt`` and whose text goes to ``train_subsample.conll`` (word, POS, tag columns),
    so peer taggers can be trained on exactly the same subsample."""
    wanted = settings.get("max_train_sentences")
    if not wanted or wanted >= len(cache):
        return cache
    subset = cache.subset(draw_subsample(len(cache), wanted, settings.get("subsample_seed", 0)))
    ids = subset.column("sentence_ids")
    with atomic_path(run_dir / SUBSAMPLE_IDS_FILE) as tmp:
        Path(tmp).write_text("".join(f"{i}\n" for i in ids), encoding="utf-8")
    write_conll(run_dir / SUBSAMPLE_CONLL_FILE, map(Sentence, ids, *(subset.column(c) for c in TEXT_COLUMNS)))
    log.info("training on a random subsample of %d of %d sentences (%d tokens); ids in %s", wanted, len(cache),
             int(subset.lengths.sum()), run_dir / SUBSAMPLE_IDS_FILE)
    return subset


def draw_subsample(total: int, wanted: int, seed: int) -> np.ndarray:
    """Sorted indices of ``wanted`` of ``total`` sentences, drawn uniformly without replacement with ``seed``."""
    return np.sort(np.random.default_rng(seed).choice(total, size=min(wanted, total), replace=False))


def build_token_features(sentences: Sequence[Sequence[str]], settings: dict,
                         vectors: PretrainedVectors | None = None) -> TokenFeatures:
    """The tagger's token features as the settings ask for them, built from the training sentences' words.

    Settings written before a feature existed lack its key and get it switched off, so old runs keep their meaning.
    """
    words = chars = None
    if settings.get("word_embedding_dim"):
        words = TaggerVocabulary.from_sentences(sentences, settings["min_word_count"])
    if settings.get("char_embedding_dim"):
        chars = CharVocabulary.from_sentences(sentences, settings["max_chars_per_token"])
    lookup = None if vectors is None else VectorVocabulary(vectors.words, vectors.source, vectors.rows,
                                                             len(vectors.matrix))
    return TokenFeatures(words, chars, bool(settings.get("casing_dim")), lookup)


def feature_model_options(features: TokenFeatures, settings: dict, vectors: PretrainedVectors | None = None) -> dict:
    """build_tagger's keyword arguments for the token features."""
    options = {"word_dropout": settings.get("word_dropout", 0.0), "casing_dim": settings.get("casing_dim", 0)}
    if features.chars is not None:
        options |= {"char_vocabulary_size": len(features.chars), "char_dim": settings["char_embedding_dim"],
                    "char_filters": settings["char_filters"], "char_kernel": settings["char_kernel"]}
    if features.vectors is not None:
        options["vectors_shape"] = (len(features.vectors), vectors.dim)
    return options


def fit_with_early_stopping(new_model, train_features, val_features, tags: Sequence[str], settings: dict,
                            checkpoint: Path, fingerprint: str, task: Task = TASKS["ner"]):
    """Fit (or resume) a tagger with early stopping on the task's validation score; return (model, state, seconds)."""
    state = resume_state(checkpoint, fingerprint)
    padding = PADDING_LABEL if settings.get("output") == "crf" else 0
    batches = TaggingBatches(train_features, tags, settings["batch_size"], settings["seed"],
                             settings["bucket_by_length"], task.column, settings["max_batch_shapes"], padding)
    val_batches = TaggingBatches(val_features, tags, PREDICT_BATCH, settings["seed"], column=task.column)
    if state:
        model = keras.models.load_model(checkpoint / MODEL_FILE)
        if has_layer(model, "crf"):
            model.loss.crf = model.get_layer("crf")  # a loss's config cannot hold the layer it scores with
        log.info("resuming after epoch %d (best validation entity F1 %.4f)", state["epochs_done"], state["best_f1"])
        for _ in range(state["epochs_done"]):
            batches.on_epoch_end()  # replay the batch order of the epochs already done
    else:
        model = new_model()
        compile_tagger(model, settings["learning_rate"], settings.get("weight_averaging"))
        state = {"best_f1": -1.0, "best_epoch": -1, "wait": 0, "rows": [], "epochs_done": 0}
    state["fingerprint"] = fingerprint
    stopper = EntityF1EarlyStopping(val_batches, tags, task, settings["patience"], checkpoint, state)
    started = time.time()
    if state["epochs_done"] < settings["max_epochs"] and state["wait"] < settings["patience"]:
        model.fit(batches, epochs=settings["max_epochs"], initial_epoch=state["epochs_done"],
                  callbacks=[stopper, KerasProgress("train")], verbose=0)
    model.load_weights(checkpoint / "best.weights.h5")
    return model, state, round(time.time() - started, 1)


def compile_tagger(model: keras.Model, learning_rate: float, weight_averaging: float | None = None) -> None:
    """Adam with the loss the output layer needs: the CRF's sequence likelihood, or the softmax's cross-entropy
    (both averaged over real tokens: padding carries zero weight). With ``weight_averaging`` (a momentum such as
    0.998) Adam also keeps an exponential moving average of the weights, updated inside the compiled step."""
    if weight_averaging:
        optimizer = keras.optimizers.Adam(learning_rate, use_ema=True, ema_momentum=weight_averaging)
    else:
        optimizer = keras.optimizers.Adam(learning_rate)
    if has_layer(model, "crf"):  # no token accuracy: in training a CRF outputs scores, whose argmax is not its answer
        model.compile(optimizer=optimizer, loss=CRFLoss(model.get_layer("crf")))
    else:
        model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", weighted_metrics=["accuracy"])


def save_run(model: keras.Model, tags: Sequence[str], embedder: dict, settings: dict, rows: list[dict],
             summary: dict, run_dir: Path) -> None:
    """Everything a later evaluation or tagging run needs, each file written atomically."""
    with atomic_path(run_dir / MODEL_FILE) as tmp:
        model.save(tmp + ".keras")
        shutil.move(tmp + ".keras", tmp)
    mix = model.get_layer("scalar_mix").mixing_weights() if has_layer(model, "scalar_mix") else NO_MIX
    if has_layer(model, "output_scalar_mix"):
        mix = mix | {"at_output": model.get_layer("output_scalar_mix").mixing_weights()}
    files = {"tags.json": list(tags), "embedder.json": embedder, "settings.json": settings,
             "layer_weights.json": mix, "training_summary.json": summary}
    for name, content in files.items():
        with atomic_path(run_dir / name) as tmp:
            Path(tmp).write_text(json.dumps(content, indent=1))
    write_history(rows, run_dir)
    log.info("learned scalar mix: %s; training summary %s", mix, summary)


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.train``: the Snakemake entry point."""
    parser = argparse.ArgumentParser(description="Train the residual biLSTM tagger on cached embedding shards.")
    parser.add_argument("--train", nargs="+", required=True, help="training HDF5 shards")
    parser.add_argument("--val", nargs="+", required=True, help="validation HDF5 shards")
    parser.add_argument("--meta", required=True, help="meta.json of the corpus stage (tag vocabulary)")
    parser.add_argument("--settings", required=True, help="JSON of the 'train' config section")
    parser.add_argument("--task", default="ner", choices=sorted(TASKS), help="which cache column to learn")
    parser.add_argument("--out", required=True, help="run directory")
    args = parser.parse_args(argv)
    task = get_task(args.task)
    tags = json.loads(Path(args.meta).read_text())[task.vocabulary_key]
    train(args.train, args.val, tags, json.loads(args.settings), task, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
