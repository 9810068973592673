"""Pretrain the offline biLM on streamed text (the training split plus any unlabelled text), resumably, and measure it.

Text never enters memory whole: :class:`pipeline.bilm.text.SentenceStream` feeds pools of sentences that are sorted
by length and cut into batches (little padding), and the loop trains one batch at a time. Every
``checkpoint_minutes`` it writes a checkpoint at a pool boundary (variables, optimizer state, position in the stream),
so a run killed at any point resumes exactly after the last pool it finished: within a pass no sentence is seen twice
or skipped. With ``init`` set the run starts from a released biLM (its vocabulary and weights) instead of random
weights: one pass over the corpus's own text is then a domain adaptation of a biLM that has read far more.

The output directory holds ``weights.weights.h5``, ``options.json`` (everything needed to rebuild the graph without
this config), ``vocab.txt`` and ``perplexity.json``: validation perplexity of each direction next to a unigram model
over the same vocabulary, the number that says whether the LM learned anything.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import math
import shutil
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import keras
import numpy as np

from pipeline.batching import padded_length
from pipeline.bilm.checkpoint import (VARIABLES_FILE, load_variables, read_checkpoint_state, save_checkpoint)
from pipeline.bilm.model import SampledSoftmaxLM
from pipeline.bilm.text import SentenceStream, expand_text_sources
from pipeline.bilm.vocab import WordVocabulary, token_char_ids
from pipeline.corpus import read_conll
from pipeline.logs import atomic_path, get_logger
from pipeline.progress import Progress, progress

log = get_logger(__name__)
OPTION_KEYS = (
    "char_embedding_dim", "max_chars_per_token", "filters", "highway_layers", "projection_dim", "cell_dim",
    "cell_clip", "projection_clip",
)
#: Settings that change how a run goes but not what it computes: a checkpoint stays valid when only these change.
OPERATIONAL_KEYS = ("checkpoint_minutes", "jit_compile", "epochs", "max_tokens")
#: Rows of packed validation sentences per compiled forward pass.
PERPLEXITY_ROWS = 64
#: What the LM's forward pass reads of a batch (the targets stay on the host).
LM_INPUTS = ("char_ids", "starts", "token_chars", "token_index")
LOGIT_ROWS = 512  # tokens whose full-vocabulary logits are held at once (512 x 50,000 float32: 100 MB)
CHAR_WIDTH_ROUNDING = 16
#: A batch's distinct tokens are padded to a multiple of this (few compiled shapes); 48 x 32-token rows of Wikipedia
#: text hold 700 to 790 distinct tokens, so the character CNN encodes about half the positions.
DISTINCT_TOKEN_ROUNDING = 256
KERAS_WEIGHTS_FILE = "weights.weights.h5"
PAUSED_EXIT_STATUS = 3
STREAM_POSITION_FILE = "stream_position.json"


def char_width(sentences: Iterable[Sequence[str]], options: dict) -> int:
    """Characters per token a batch needs for the same token vectors as ``max_chars_per_token``: why it is exact.

    A token of L bytes is [begin, L bytes, end, padding...]. Max-pooling a width-w filter sees the same set of windows
    (token windows, windows straddling its end, an all-padding window) once at least w padding positions follow the
    end marker, so any width >= L + 2 + widest filter gives the token's full-width vector. Most batches hold no token
    longer than 21 bytes and need 32 of the 50 characters; rounding to 16 keeps the compiled shapes to three.
    """
    full = options["max_chars_per_token"]
    longest = max((len(token.encode("utf-8")) for sentence in sentences for token in sentence), default=0)
    needed = longest + 2 + max(width for width, _ in options["filters"])
    return min(full, -(-needed // CHAR_WIDTH_ROUNDING) * CHAR_WIDTH_ROUNDING)


def pack_rows(sentences: Sequence[list[str]], row_tokens: int) -> list[list[list[str]]]:
    """Sentences packed into rows of at most ``row_tokens`` tokens (best fit, longest first): rows are nearly full,
    so a fixed [rows, row_tokens] batch shape wastes little on padding and is compiled once."""
    rows: list[list[list[str]]] = []
    room: list[list[int]] = [[] for _ in range(row_tokens + 1)]  # room[r]: rows with exactly r tokens free
    for sentence in sorted(sentences, key=len, reverse=True):
        need = len(sentence)
        fits = next((r for r in range(need, row_tokens + 1) if room[r]), None)
        if fits is None:
            rows.append([])
            index, fits = len(rows) - 1, row_tokens
        else:
            index = room[fits].pop()
        rows[index].append(sentence)
        room[fits - need].append(index)
    return rows


def lm_batch(rows: Sequence[Sequence[Sequence[str]]], vocab: WordVocabulary, options: dict, shape: tuple[int, int]
             ) -> dict:
    """Model inputs of ``rows`` (each a list of sentences read one after another), padded to ``shape`` = (rows,
    tokens per row); empty rows carry no loss. ``starts`` marks each sentence's first token, where the LSTM state
    is reset; the targets are each sentence's own next and previous words (``</S>`` and ``<S>`` at its ends).
    ``token_chars`` holds each distinct token's characters once and ``token_index`` [rows, tokens] points into it: the
    character CNN then encodes each distinct token once per batch (``char_ids`` gives the same vectors, slower)."""
    height, length = shape
    full = options["max_chars_per_token"]
    width = char_width((sentence for row in rows for sentence in row), options)
    distinct: dict[str, int] = {}
    token_index = np.zeros((height, length), dtype=np.int32)
    next_ids = np.zeros((height, length), dtype=np.int32)
    previous_ids = np.zeros((height, length), dtype=np.int32)
    starts = np.zeros((height, length), dtype=np.float32)
    filled = np.zeros((height, length, 1), dtype=np.int32)
    for r, row in enumerate(rows):
        col = 0
        for sentence in row:
            ids = vocab.ids(sentence)
            n = len(ids)
            filled[r, col:col + n] = 1
            token_index[r, col:col + n] = [distinct.setdefault(token, len(distinct)) for token in sentence]
            next_ids[r, col:col + n] = np.append(ids[1:], vocab.end_id)
            previous_ids[r, col:col + n] = np.insert(ids[:-1], 0, vocab.begin_id)
            starts[r, col] = 1.0
            col += n
    # only padding is cut from each token (char_width); the padded rows past the distinct tokens encode nothing used
    rounded = -(-len(distinct) // DISTINCT_TOKEN_ROUNDING) * DISTINCT_TOKEN_ROUNDING
    token_chars = np.zeros((max(1, min(rounded, height * length)), width), dtype=np.int32)
    for token, index in distinct.items():
        token_chars[index] = token_char_ids(token, full)[:width]
    char_ids = token_chars[token_index] * filled  # padding positions all zero
    return {"char_ids": char_ids, "next_ids": next_ids, "previous_ids": previous_ids, "starts": starts,
            "token_chars": token_chars, "token_index": token_index}


def pools(sentences: Iterator[list[str]], size: int) -> Iterator[list[list[str]]]:
    """Consecutive lists of ``size`` sentences (the last one shorter)."""
    pool: list[list[str]] = []
    for sentence in sentences:
        pool.append(sentence)
        if len(pool) == size:
            yield pool
            pool = []
    if pool:
        yield pool


def pool_batches(pool: list[list[str]], settings: dict, rng: np.random.Generator) -> list[list[list[list[str]]]]:
    """The pool packed into rows, the rows shuffled and cut into batches of ``batch_size`` rows."""
    rows = pack_rows(pool, settings["row_tokens"])
    rows = [rows[i] for i in rng.permutation(len(rows))]
    size = settings["batch_size"]
    return [rows[start:start + size] for start in range(0, len(rows), size)]


def text_digest(previous: str, pool: Sequence[Sequence[str]]) -> str:
    """A running hash of the sentences a pass has consumed, in order: two runs that read the same text in the same
    order (a killed and resumed run against an uninterrupted one) end a pass with the same digest."""
    text = "\n".join(" ".join(sentence) for sentence in pool)
    return hashlib.sha256(f"{previous}\n{text}".encode("utf-8")).hexdigest()


def model_options(settings: dict) -> dict:
    """The subset of the bilm settings that defines the graph (saved as options.json)."""
    return {key: settings[key] for key in OPTION_KEYS}


def count_words(stream: SentenceStream) -> tuple[Counter, int, int]:
    """Word counts, sentences and tokens of one pass (in file order: counting needs no shuffle)."""
    counts: Counter = Counter()
    sentences = tokens = 0
    for sentence in progress(stream.unshuffled(stream.files), "counting words", unit="sentence"):
        counts.update(sentence)
        sentences += 1
        tokens += len(sentence)
    stream.problems.warn()
    return counts, sentences, tokens


def counts_file(checkpoint_dir: Path) -> Path:
    """Where a resumable run keeps its word counts: beside its checkpoint (whose directory is replaced whole)."""
    return checkpoint_dir.with_name(checkpoint_dir.name + "-word-counts.json.gz")


def counted_words(stream: SentenceStream, checkpoint_dir: Path | None, fingerprint: str) -> tuple[Counter, int, int]:
    """:func:`count_words`, kept beside the checkpoint: a resumed run (same fingerprint) skips the counting pass,
    which takes minutes on the Wikipedia text."""
    saved = counts_file(checkpoint_dir) if checkpoint_dir else None
    if saved is not None and saved.is_file():
        with gzip.open(saved, "rt", encoding="utf-8") as handle:
            record = json.load(handle)
        if record["fingerprint"] == fingerprint:
            log.info("word counts of this run read from %s", saved)
            return Counter(record["counts"]), record["sentences"], record["tokens"]
    counts, sentences, tokens = count_words(stream)
    if saved is not None:
        with atomic_path(saved) as tmp, gzip.open(tmp, "wt", encoding="utf-8") as handle:
            json.dump({"fingerprint": fingerprint, "sentences": sentences, "tokens": tokens, "counts": counts}, handle)
    return counts, sentences, tokens


def target_log_likelihood(hidden: np.ndarray, targets: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> float:
    """Summed full-softmax log-probability of ``targets`` given ``hidden`` [n, P], ``LOGIT_ROWS`` rows at a time:
    the logits of a whole batch over a 50,000-word vocabulary would take gigabytes."""
    total = 0.0
    for start in range(0, len(hidden), LOGIT_ROWS):
        logits = hidden[start:start + LOGIT_ROWS] @ weights.T + bias
        logits -= logits.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(logits).sum(axis=1))
        rows = np.arange(len(logits))
        total += float((logits[rows, targets[start:start + LOGIT_ROWS]] - log_norm).sum())
    return total


def evaluation_batches(sentences: Sequence[list[str]], row_tokens: int) -> tuple[list[list[list[list[str]]]], int]:
    """Whole sentences packed into rows (no sentence cut: each is scored as it is embedded), in batches of
    ``PERPLEXITY_ROWS`` rows, and the row width: ``row_tokens`` or the longest sentence's padded length. One batch
    shape for the whole split, so the compiled forward pass is built a few times (per character width and distinct
    token count) instead of once per sentence length."""
    width = max(row_tokens, padded_length(max((len(s) for s in sentences), default=1)))
    rows = pack_rows([s for s in sentences if s], width)
    return [rows[start:start + PERPLEXITY_ROWS] for start in range(0, len(rows), PERPLEXITY_ROWS)], width


def direction_log_likelihoods(model: SampledSoftmaxLM, sentences, vocab: WordVocabulary, options: dict,
                              row_tokens: int) -> dict:
    """Summed full-softmax log-likelihood of the true next/previous words, per direction, and the token count.

    The sentences are packed into rows with the LSTM state reset at each sentence's start (exact: each is read as if
    alone) and run through the model's compiled forward pass (``predict_on_batch``)."""
    weights = keras.ops.convert_to_numpy(model.softmax_weights).astype(np.float32)
    bias = keras.ops.convert_to_numpy(model.softmax_bias).astype(np.float32)
    totals = {"forward": 0.0, "backward": 0.0}
    count = 0
    batches, width = evaluation_batches(sentences, row_tokens)
    shown = Progress(sum(len(s) for s in sentences), "validation perplexity", unit="token")
    for rows in batches:
        inputs = lm_batch(rows, vocab, options, (PERPLEXITY_ROWS, width))
        outputs = model.predict_on_batch({key: inputs[key] for key in LM_INPUTS})
        mask = np.asarray(outputs["mask"], dtype=bool)
        for direction, targets in (("forward", inputs["next_ids"]), ("backward", inputs["previous_ids"])):
            hidden = np.asarray(outputs[direction])[mask].astype(np.float32)
            totals[direction] += target_log_likelihood(hidden, targets[mask], weights, bias)
        count += int(mask.sum())
        shown.update(int(mask.sum()))
    shown.close()
    return {"totals": totals, "tokens": count}


def unigram_perplexity(counts: Counter, sentences: int, evaluation: Sequence[Sequence[str]],
                       vocab: WordVocabulary) -> float:
    """Perplexity of an add-one unigram model over the same vocabulary (and the same targets incl. ``</S>``)."""
    frequencies = np.ones(len(vocab))
    for word, count in counts.items():
        frequencies[vocab.index.get(word, vocab.unknown_id)] += count
    frequencies[vocab.end_id] += sentences
    log_probs = np.log(frequencies / frequencies.sum())
    total = sum(log_probs[vocab.ids(s)].sum() for s in evaluation)
    n = sum(len(s) for s in evaluation)
    return float(math.exp(-total / max(n, 1)))


def run_fingerprint(settings: dict, files: Sequence[Path]) -> str:
    """What a checkpoint belongs to: the settings that shape the run and the text files (names and sizes)."""
    shaping = {k: v for k, v in settings.items() if k not in OPERATIONAL_KEYS}
    text = [(str(path), path.stat().st_size) for path in files]
    return hashlib.sha256(json.dumps([shaping, text], sort_keys=True).encode()).hexdigest()[:16]


def starting_point(settings: dict, counts: Counter) -> tuple[dict, WordVocabulary, Path | None, dict]:
    """Options, vocabulary and weights file to start from: the released biLM of ``init``, or random weights with a
    vocabulary of the counted text. The last item is the released model's record (tokens it has seen, ...)."""
    options = model_options(settings) | {"dropout": settings["dropout"]}
    if not settings.get("init"):
        vocab = WordVocabulary.from_counts(counts, settings["min_word_count"], settings.get("max_vocabulary"))
        return options, vocab, None, {}
    init = Path(settings["init"])
    meta_file = init / "options.json"
    if not meta_file.is_file():
        raise FileNotFoundError(f"bilm.init {init}: no options.json there (a released biLM directory, e.g. "
                                f"models/bilm-simplewiki-v2, or null to pretrain from random weights)")
    released = json.loads(meta_file.read_text())["options"]
    differing = [k for k in OPTION_KEYS if released[k] != settings[k]]
    if differing:
        log.warning("bilm.init %s fixes the architecture: its %s replace the configured values", init,
                    ", ".join(f"{k}={released[k]}" for k in differing))
    report_file = init / "perplexity.json"
    record = json.loads(report_file.read_text()) if report_file.is_file() else {}
    return released | {"dropout": settings["dropout"]}, WordVocabulary.load(init / "vocab.txt"), \
        weights_file(init), record


def weights_file(bilm_dir: Path) -> Path:
    """The weights of a biLM directory: the released form (our float16 variables file) or Keras's own."""
    released = bilm_dir / VARIABLES_FILE
    return released if released.is_file() else bilm_dir / KERAS_WEIGHTS_FILE


def load_weights(path: Path, model: keras.Model) -> None:
    """Fill ``model`` from a weights file of either form that :func:`weights_file` finds."""
    if path.name == VARIABLES_FILE:
        load_variables(path, model)
    else:
        model.load_weights(path)


def build_lm(options: dict, vocab: WordVocabulary, settings: dict) -> SampledSoftmaxLM:
    """The training model, compiled, with its variables and the optimizer's created (so a checkpoint can fill them)."""
    model = SampledSoftmaxLM(options, len(vocab), settings["num_samples"], seed=settings["seed"])
    model.compile(optimizer=keras.optimizers.Adam(settings["learning_rate"], clipnorm=5.0),
                  jit_compile=settings.get("jit_compile", True))
    model({"char_ids": lm_batch([[["a"]]], vocab, options, (1, 1))["char_ids"]})
    model.optimizer.build(model.trainable_variables)
    return model


class PretrainingRun:
    """One pretraining run over a :class:`SentenceStream`: the loop, its checkpoints, and its budget."""

    def __init__(self, model: SampledSoftmaxLM, vocab: WordVocabulary, options: dict, settings: dict,
                 stream: SentenceStream, pass_size: tuple[int, int], checkpoint_dir: Path | None, fingerprint: str):
        self.model, self.vocab, self.options, self.settings = model, vocab, options, settings
        self.stream = stream
        self.sentences_per_pass, self.tokens_per_pass = pass_size
        self.checkpoint_dir = checkpoint_dir
        self.state = {"fingerprint": fingerprint, "epoch": 0, "sentences": 0, "tokens_seen": 0, "steps": 0,
                      "seconds": 0.0, "losses": [], "text_digest": "", "pass_digests": []}
        self.stopped_at: dict | None = None  # the stream position where max_tokens ended a pass (not checkpointed)

    def resume(self) -> None:
        """Continue from the checkpoint when one of this run (same fingerprint) exists; start fresh otherwise."""
        if self.checkpoint_dir is None:
            return
        state = read_checkpoint_state(self.checkpoint_dir)
        if state is None:
            return
        if state["fingerprint"] != self.state["fingerprint"]:
            log.warning("checkpoint %s belongs to other settings or text: starting afresh", self.checkpoint_dir)
            shutil.rmtree(self.checkpoint_dir)
            return
        load_variables(self.checkpoint_dir / VARIABLES_FILE, self.model, self.model.optimizer)
        self.state = state
        log.info("resuming from %s: pass %d, %d sentences into it, %s tokens seen", self.checkpoint_dir,
                 state["epoch"] + 1, state["sentences"], f"{state['tokens_seen']:,}")

    def checkpoint(self) -> None:
        """Save the run as it stands (only called between pools)."""
        if self.checkpoint_dir is not None:
            save_checkpoint(self.checkpoint_dir, self.model, self.state)

    def pool_size(self) -> int:
        """Sentences per pool: about ``POOL_BATCHES`` full batches at the text's mean sentence length."""
        mean_length = self.tokens_per_pass / max(self.sentences_per_pass, 1)
        rows_tokens = self.settings["batch_size"] * self.settings["row_tokens"]
        return max(1, int(self.settings["pool_batches"] * rows_tokens / max(mean_length, 1.0)))

    def out_of_tokens(self) -> bool:
        """Whether ``max_tokens`` (when set) has been reached."""
        limit = self.settings.get("max_tokens")
        return bool(limit) and self.state["tokens_seen"] >= limit

    def stream_position(self) -> dict:
        """Where the stream stands: a later run of the same settings can continue from here (``--continue-from``)."""
        return {"fingerprint": self.state["fingerprint"], "epoch": self.state["epoch"],
                "sentences": self.state["sentences"], "text_digest": self.state["text_digest"]}

    def continue_from(self, bilm_dir: Path) -> None:
        """Start at the stream position of an earlier run's output (``stream_position.json``), with its weights.

        For a run that ended by ``max_tokens`` and whose checkpoint is gone: the pass goes on where it stopped, no
        sentence read twice. Adam's moments are not in the output, so they start afresh."""
        position_file = bilm_dir / STREAM_POSITION_FILE
        if not position_file.is_file():
            raise FileNotFoundError(f"--continue-from {bilm_dir}: no {STREAM_POSITION_FILE} there (written by "
                                    f"pretraining runs and kept by releases)")
        position = json.loads(position_file.read_text())
        if position["fingerprint"] != self.state["fingerprint"]:
            raise ValueError(f"--continue-from {bilm_dir}: it was trained with other settings or text (fingerprint "
                             f"{position['fingerprint']}, this run's {self.state['fingerprint']}); only "
                             f"{', '.join(OPERATIONAL_KEYS)} may change")
        record = json.loads((bilm_dir / "perplexity.json").read_text())
        load_weights(weights_file(bilm_dir), self.model)
        done = position["epoch"]
        self.state.update(epoch=done, sentences=position["sentences"], text_digest=position["text_digest"],
                          tokens_seen=record["tokens_seen"], steps=record["steps"], seconds=record["seconds"],
                          losses=record["train_loss"][:done], pass_digests=record["pass_digests"][:done])
        log.info("continuing %s: pass %d, %d sentences into it, %s tokens seen", bilm_dir, done + 1,
                 position["sentences"], f"{record['tokens_seen']:,}")

    def train(self, max_minutes: float | None = None) -> bool:
        """Train to the end of the last pass (or ``max_tokens``); True when finished, False when stopped by
        ``max_minutes`` (after a checkpoint, so the next call resumes)."""
        shape = (self.settings["batch_size"], self.settings["row_tokens"])
        every = 60.0 * self.settings.get("checkpoint_minutes", 5.0)
        started = last_save = time.monotonic()
        self.stopped_at = None
        seconds_before = self.state["seconds"]
        for epoch in range(self.state["epoch"], self.settings["epochs"]):
            skip = self.state["sentences"]
            left = round(self.tokens_per_pass * (1 - skip / max(self.sentences_per_pass, 1)))
            losses = []
            bar = Progress(left, f"pretrain biLM pass {epoch + 1}/{self.settings['epochs']}", unit="token")
            pool_size = self.pool_size()
            for number, pool in enumerate(pools(self.stream.epoch(epoch, skip), pool_size), start=skip // pool_size):
                rng = np.random.default_rng([self.settings["seed"], epoch, number])
                for batch in pool_batches(pool, self.settings, rng):
                    loss = self.model.train_on_batch(lm_batch(batch, self.vocab, self.options, shape))
                    losses.append(float(loss))
                    tokens = sum(len(s) for row in batch for s in row)
                    self.state["tokens_seen"] += tokens
                    self.state["steps"] += 1
                    bar.update(tokens, loss=f"{np.mean(losses[-100:]):.3f}")
                self.state["epoch"] = epoch
                self.state["sentences"] += len(pool)
                self.state["text_digest"] = text_digest(self.state["text_digest"], pool)
                now = time.monotonic()
                self.state["seconds"] = seconds_before + now - started
                if self.out_of_tokens():
                    self.stopped_at = self.stream_position()
                    break
                if max_minutes is not None and now - started >= 60.0 * max_minutes:
                    bar.close()
                    self.checkpoint()
                    return False
                if now - last_save >= every:
                    self.checkpoint()
                    last_save = now
            bar.close()
            self.stream.problems.warn()
            if self.stream.excluded_seen:
                log.info("pass %d: %d sentences of the validation/test splits were found in the text and left out",
                         epoch + 1, self.stream.excluded_seen)
            self.state["losses"].append(float(np.mean(losses)) if losses else None)
            self.state["pass_digests"].append(self.state["text_digest"])
            self.state.update(epoch=epoch + 1, sentences=0, text_digest="")
            if self.out_of_tokens():
                break
        return True


def text_sources(train_path: str, settings: dict) -> list[Path]:
    """The training split first, then every file of ``unlabelled_text``."""
    return [Path(train_path)] + expand_text_sources(settings.get("unlabelled_text", []))


def held_out_sentences(paths: Sequence[str]) -> frozenset[tuple[str, ...]]:
    """Sentences of the validation and test splits: pretraining must never read them."""
    return frozenset(tuple(s.words) for path in paths for s in read_conll(path))


def pretrain(train_path: str, val_path: str, settings: dict, out_dir: str, test_path: str | None = None,
             checkpoint_dir: str | None = None, max_minutes: float | None = None,
             continue_from: str | None = None) -> dict | None:
    """Train the biLM (resuming from ``checkpoint_dir`` when it holds this run, else from ``continue_from``'s
    stream position when given), save it with its options and vocabulary, and return the perplexity report; None
    when ``max_minutes`` stopped it before the end."""
    keras.utils.set_random_seed(settings["seed"])
    files = text_sources(train_path, settings)
    val = [s.words for s in read_conll(val_path)]
    stream = SentenceStream(files, settings["seed"], settings["shuffle_buffer"], settings["row_tokens"],
                            held_out_sentences([val_path] + ([test_path] if test_path else [])))
    fingerprint = run_fingerprint(settings, files)
    checkpoint = Path(checkpoint_dir) if checkpoint_dir else None
    counts, sentences, tokens = counted_words(stream, checkpoint, fingerprint)
    options, vocab, init_weights, released = starting_point(settings, counts)
    log.info("biLM: %d files, %s sentences, %s tokens per pass; vocabulary %d words; starting from %s",
             len(files), f"{sentences:,}", f"{tokens:,}", len(vocab), settings.get("init") or "random weights")
    model = build_lm(options, vocab, settings)
    if init_weights is not None:
        load_weights(init_weights, model)
    run = PretrainingRun(model, vocab, options, settings, stream, (sentences, tokens), checkpoint, fingerprint)
    run.resume()
    if continue_from and not run.state["tokens_seen"]:
        if init_weights is not None:
            raise ValueError("--continue-from goes on with an earlier run of these settings; bilm.init must be null")
        run.continue_from(Path(continue_from))
    if not run.train(max_minutes):
        log.info("stopped after %.0f minutes as asked; run the same command again to resume", max_minutes)
        return None
    likelihood = direction_log_likelihoods(model, val, vocab, options, settings["row_tokens"])
    state = run.state
    report = {
        "validation_tokens": likelihood["tokens"],
        "perplexity_forward": math.exp(-likelihood["totals"]["forward"] / likelihood["tokens"]),
        "perplexity_backward": math.exp(-likelihood["totals"]["backward"] / likelihood["tokens"]),
        "perplexity_unigram": unigram_perplexity(counts, sentences, val, vocab),
        "train_loss": state["losses"],
        "vocabulary_size": len(vocab),
        "tokens_seen": state["tokens_seen"],
        "tokens_seen_before": released.get("tokens_seen_total", released.get("tokens_seen", 0)),
        "tokens_per_pass": tokens,
        "steps": state["steps"],
        "seconds": round(state["seconds"], 1),
        "tokens_per_second": round(state["tokens_seen"] / max(state["seconds"], 1e-9), 1),
        "init": settings.get("init"),
        "pass_digests": state["pass_digests"],
    }
    report["tokens_seen_total"] = report["tokens_seen"] + report["tokens_seen_before"]
    position = run.stopped_at or run.stream_position()
    log.info("validation perplexity: %s", {k: round(v, 2) for k, v in report.items() if k.startswith("perplexity")})
    save_bilm(model, options, vocab, report, position, out_dir)
    if checkpoint is not None:
        shutil.rmtree(checkpoint, ignore_errors=True)
        counts_file(checkpoint).unlink(missing_ok=True)
    return report


def save_bilm(model: SampledSoftmaxLM, options: dict, vocab: WordVocabulary, report: dict, position: dict,
              out_dir: str) -> None:
    """Write weights, options, vocabulary, report and stream position into ``out_dir`` as one atomic directory."""
    with atomic_path(out_dir, directory=True) as tmp:
        tmp = Path(tmp)
        model.save_weights(tmp / KERAS_WEIGHTS_FILE)
        (tmp / "options.json").write_text(json.dumps({"options": options, "vocabulary_size": len(vocab)}, indent=1))
        vocab.save(tmp / "vocab.txt")
        (tmp / "perplexity.json").write_text(json.dumps(report, indent=1))
        (tmp / STREAM_POSITION_FILE).write_text(json.dumps(position, indent=1))


def load_trained_lm(bilm_dir: str | Path) -> tuple[SampledSoftmaxLM, dict, WordVocabulary]:
    """Rebuild the trained LM from its directory alone (options.json, vocab.txt, weights in either form)."""
    bilm_dir = Path(bilm_dir)
    meta = json.loads((bilm_dir / "options.json").read_text())
    vocab = WordVocabulary.load(bilm_dir / "vocab.txt")
    model = SampledSoftmaxLM(meta["options"], len(vocab), num_samples=1)
    model({"char_ids": lm_batch([[["a"]]], vocab, meta["options"], (1, 1))["char_ids"]})
    load_weights(weights_file(bilm_dir), model)
    return model, meta["options"], vocab


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.bilm.pretrain``: the Snakemake entry point, and the command of long pretraining runs."""
    parser = argparse.ArgumentParser(
        description="Pretrain the offline ELMo-architecture biLM on the training split plus the unlabelled text of "
                    "the settings' 'unlabelled_text' (files, directories, globs; plain text or WikiExtractor JSON "
                    "lines, optionally .gz/.bz2). Resumable: with --checkpoint, a killed run continues where its last "
                    "checkpoint stands when the same command is run again.")
    parser.add_argument("--train", required=True, help="training split (CoNLL file from the corpus stage)")
    parser.add_argument("--val", required=True, help="validation split: perplexity, and never pretrained on")
    parser.add_argument("--test", help="test split: never pretrained on (its sentences are filtered from the text)")
    parser.add_argument("--settings", required=True, help="JSON of the 'bilm' config section")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--checkpoint", help="checkpoint directory (written every checkpoint_minutes; resumed from)")
    parser.add_argument("--max-minutes", type=float,
                        help=f"stop after this many minutes with a checkpoint (exit status {PAUSED_EXIT_STATUS})")
    parser.add_argument("--continue-from", metavar="DIR",
                        help="with no checkpoint to resume: start from the output (or release) of an earlier run of "
                             "the same settings and text, at the place in the stream where it stopped (its "
                             f"{STREAM_POSITION_FILE}); e.g. to read more of a pass that max_tokens ended")
    args = parser.parse_args(argv)
    report = pretrain(args.train, args.val, json.loads(args.settings), args.out, args.test, args.checkpoint,
                      args.max_minutes, args.continue_from)
    return 0 if report is not None else PAUSED_EXIT_STATUS


if __name__ == "__main__":
    sys.exit(main())
