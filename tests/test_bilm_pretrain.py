"""Pretraining on streamed text: packed rows read each sentence as if alone, checkpoints resume exactly (also after
SIGKILL), and a released biLM is the starting point of a domain pass."""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from conftest import TINY_BILM
from pipeline.bilm.checkpoint import read_checkpoint_state
from pipeline.bilm.model import BiLM, ProjectedLSTM, SampledSoftmaxLM, lstmp_recurrence
from pipeline.bilm.pretrain import (char_width, direction_log_likelihoods, lm_batch, pack_rows, pretrain,
                                    target_log_likelihood)
from pipeline.bilm.vocab import WordVocabulary, batch_char_ids
from pipeline.config import PROJECT_ROOT

WORDS = ["the", "officials", "said", "talks", "in", "Paris", "London", "NATO", "on", "Monday", "were", "held"]
RESUME_TIMEOUT_SECONDS = 300
POLL_SECONDS = 0.01


def write_text(path: Path, sentences: int, seed: int = 0) -> Path:
    """Plain text, a sentence per line, from a small vocabulary (so a tiny biLM learns something quickly)."""
    rng = np.random.default_rng(seed)
    lines = [" ".join(rng.choice(WORDS, size=rng.integers(3, 12))) + " ." for _ in range(sentences)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_packing_fills_rows_and_keeps_every_sentence():
    sentences = [["w"] * n for n in (10, 7, 6, 5, 4, 3, 3, 2)]
    rows = pack_rows(sentences, row_tokens=12)
    assert sorted(map(len, sum(rows, []))) == sorted(map(len, sentences))
    assert all(sum(map(len, row)) <= 12 for row in rows) and len(rows) == 4  # 40 tokens in 4 rows of 12


def test_per_batch_character_width_gives_the_full_width_token_vectors():
    """Cutting the characters past char_width() (padding only) leaves every token vector as it is at full width."""
    options = TINY_BILM | {"max_chars_per_token": 30, "dropout": 0.0}
    bilm = BiLM(options)
    sentences = [["Toyota", "will", "build", "a", "plant"], ["in", "Texas", "."]]
    full = batch_char_ids(sentences, 30)
    width = char_width(sentences, options)
    assert width < 30
    np.testing.assert_allclose(bilm.encoder(full[:, :, :width]), bilm.encoder(full), atol=1e-6)


def test_a_packed_row_reads_each_sentence_as_if_alone():
    options = TINY_BILM | {"dropout": 0.0}
    vocab = WordVocabulary.from_sentences([WORDS], 1)
    bilm = BiLM(options)
    first, second = ["the", "talks", "in", "Paris"], ["NATO", "said", "."]
    packed = lm_batch([[first, second]], vocab, options, (1, 10))
    together = bilm(packed["char_ids"], starts=packed["starts"])
    for sentence, offset in ((first, 0), (second, len(first))):
        alone = bilm(lm_batch([[sentence]], vocab, options, (1, len(sentence)))["char_ids"])
        for direction in ("forward", "backward"):
            for layer in (0, 1):
                np.testing.assert_allclose(together[direction][layer][0, offset:offset + len(sentence)],
                                           alone[direction][layer][0], atol=1e-5)
    assert packed["next_ids"][0, len(first) - 1] == vocab.end_id
    assert packed["previous_ids"][0, len(first)] == vocab.begin_id


def test_encoding_each_distinct_token_once_gives_the_same_activations():
    options = TINY_BILM | {"dropout": 0.0}
    vocab = WordVocabulary.from_sentences([WORDS], 1)
    bilm = BiLM(options)
    rows = [[["the", "talks", "in", "Paris"], ["the", "talks", "."]], [["Paris", "said", "the"]]]
    batch = lm_batch(rows, vocab, options, (3, 8))
    assert len(batch["token_chars"]) >= 6 and batch["char_ids"][2].max() == 0
    each_position = bilm(batch["char_ids"], starts=batch["starts"])
    distinct = bilm(batch["char_ids"], starts=batch["starts"], token_chars=batch["token_chars"],
                    token_index=batch["token_index"])
    for direction in ("forward", "backward"):
        for layer in (0, 1):
            np.testing.assert_allclose(distinct[direction][layer], each_position[direction][layer], atol=1e-6)


def stepped_recurrence(cell, gates, keep):
    """The reference: the cell stepped one position at a time, its state zeroed where ``keep`` is 0."""
    hidden = np.zeros((gates.shape[1], cell.projection_dim), np.float32)
    states, outputs = [hidden, np.zeros((gates.shape[1], cell.cell_dim), np.float32)], []
    for t in range(gates.shape[0]):
        output, states = cell(gates[t], [state * keep[t] for state in states])
        outputs.append(output)
    return tf.stack(outputs)


def test_a_packed_batch_trains_as_its_sentences_would_one_by_one():
    """The whole model's loss gradient over a batch of packed rows (distinct-token encoding, resets, both directions,
    the sampled softmax with the same negatives) is the sum of the gradients of each sentence in a batch of its own."""
    options = TINY_BILM | {"dropout": 0.0}
    vocab = WordVocabulary.from_sentences([WORDS], 1)
    model = SampledSoftmaxLM(options, len(vocab), num_samples=8)
    negatives = tf.constant([0, 3, 5, 7, 9, 11, 2, 4], dtype=tf.int32)
    model.sample_negatives = lambda: negatives
    rng = np.random.default_rng(0)
    sentences = [list(rng.choice(WORDS, size=n)) for n in (3, 9, 5, 7, 4, 6)]
    model(lm_batch([[sentences[0]]], vocab, options, (1, 3)))

    def summed_loss_gradients(batch):
        with tf.GradientTape() as tape:
            outputs = model(batch, training=True)
            tokens = tf.reduce_sum(tf.cast(outputs["mask"], tf.float32))
            loss = model.compute_loss(x=batch, y_pred=outputs) * tokens  # the batch's mean loss times its tokens
        return [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, model.trainable_variables)]

    packed = summed_loss_gradients(lm_batch([sentences[:3], sentences[3:]], vocab, options, (2, 24)))
    alone = [summed_loss_gradients(lm_batch([[s]], vocab, options, (1, len(s)))) for s in sentences]
    for variable, together, *each in zip(model.trainable_variables, packed, *alone):
        np.testing.assert_allclose(together, np.sum(each, axis=0), atol=1e-5, err_msg=variable.path)


def test_validation_perplexity_over_packed_rows_equals_scoring_each_sentence_alone():
    """The packed, compiled evaluation gives each direction's log-likelihood of every sentence read on its own."""
    options = TINY_BILM | {"dropout": 0.0}
    vocab = WordVocabulary.from_sentences([WORDS], 1)
    model = SampledSoftmaxLM(options, len(vocab), num_samples=4)
    rng = np.random.default_rng(0)
    sentences = [list(rng.choice(WORDS, size=n)) for n in (3, 9, 1, 30, 5, 12, 7)]  # 30: longer than a row
    model(lm_batch([[sentences[0]]], vocab, options, (1, 3)))
    weights, bias = (np.asarray(v, dtype=np.float32) for v in (model.softmax_weights, model.softmax_bias))
    expected = {"forward": 0.0, "backward": 0.0}
    for sentence in sentences:
        alone = lm_batch([[sentence]], vocab, options, (1, len(sentence)))
        outputs = model.bilm(alone["char_ids"])
        for direction, targets in (("forward", "next_ids"), ("backward", "previous_ids")):
            hidden = np.asarray(outputs[direction][1])[0]
            expected[direction] += target_log_likelihood(hidden, alone[targets][0], weights, bias)
    packed = direction_log_likelihoods(model, sentences, vocab, options, row_tokens=8)
    assert packed["tokens"] == sum(map(len, sentences))
    for direction in expected:
        assert packed["totals"][direction] == pytest.approx(expected[direction], rel=1e-5)


def test_the_recurrence_with_its_own_gradient_equals_stepping_the_cell():
    """The hand-written backward pass of :func:`lstmp_recurrence` gives autodiff's gradients of the stepped cell,
    clipping and state resets included (large inputs make the clips bite)."""
    rng = np.random.default_rng(0)
    time_steps, batch = 7, 3
    layer = ProjectedLSTM(cell_dim=8, projection_dim=4, cell_clip=0.5, projection_clip=0.3)
    layer(np.zeros((batch, time_steps, 4), np.float32))
    cell = layer.recurrence.cell
    gates = tf.constant(rng.normal(scale=2.0, size=(time_steps, batch, 32)).astype(np.float32))
    keep = (rng.random((time_steps, batch, 1)) > 0.3).astype(np.float32)
    weights = tf.constant(rng.normal(size=(time_steps, batch, 4)).astype(np.float32))
    results = []
    for run in (lambda: stepped_recurrence(cell, gates, keep),
                lambda: lstmp_recurrence(gates, keep, cell.recurrent_kernel, cell.projection_kernel, 0.5, 0.3)):
        with tf.GradientTape() as tape:
            tape.watch(gates)
            outputs = run()
            loss = tf.reduce_sum(outputs * weights)
        results.append([outputs] + tape.gradient(loss, [gates, cell.recurrent_kernel, cell.projection_kernel]))
    clipped = np.mean(np.abs(results[0][0].numpy()) >= 0.3 - 1e-6)
    assert 0.05 < clipped < 0.95, "the test should exercise both sides of the projection clip"
    for reference, ours in zip(*results):
        np.testing.assert_allclose(ours, reference, atol=1e-5)


@pytest.fixture(scope="module")
def text_run(tmp_path_factory, prepared_corpus):
    """Paths and settings of a tiny pretraining on the tiny corpus plus 600 sentences of plain text."""
    root = tmp_path_factory.mktemp("pretrain")
    corpus_dir, _ = prepared_corpus
    settings = TINY_BILM | {"unlabelled_text": [str(write_text(root / "text.txt", 600))], "epochs": 2,
                            "pool_batches": 1, "checkpoint_minutes": 1e-6, "shuffle_buffer": 50}
    return {"root": root, "train": str(corpus_dir / "train.conll"), "val": str(corpus_dir / "val.conll"),
            "test": str(corpus_dir / "test.conll"), "settings": settings}


@pytest.fixture(scope="module")
def uninterrupted(text_run):
    """The report of the run that nothing stopped."""
    return pretrain(text_run["train"], text_run["val"], text_run["settings"], str(text_run["root"] / "whole"),
                    text_run["test"])


def test_a_run_stopped_between_checkpoints_resumes_on_the_same_text(text_run, uninterrupted):
    root, settings = text_run["root"], text_run["settings"]
    args = (text_run["train"], text_run["val"], settings, str(root / "stopped"), text_run["test"],
            str(root / "stopped.checkpoint"))
    assert pretrain(*args, max_minutes=1e-9) is None
    state = read_checkpoint_state(root / "stopped.checkpoint")
    assert state["epoch"] == 0 and 0 < state["sentences"]
    counts = root / "stopped.checkpoint-word-counts.json.gz"
    assert counts.is_file(), "a resumed run reads its word counts instead of counting the text again"
    report = pretrain(*args)
    assert report["pass_digests"] == uninterrupted["pass_digests"]
    assert report["tokens_seen"] == uninterrupted["tokens_seen"] == 2 * report["tokens_per_pass"]
    assert report["perplexity_unigram"] == uninterrupted["perplexity_unigram"]
    assert not (root / "stopped.checkpoint").exists() and not counts.exists()


def test_a_run_ended_by_max_tokens_continues_from_its_output_where_it_stopped(text_run, uninterrupted):
    """The shipped biLM's case: its run ended by ``max_tokens`` mid-pass and its checkpoint is gone; a later run of
    the same settings continues the pass from the output's stream position, no sentence read twice or skipped."""
    root, settings = text_run["root"], text_run["settings"]
    first = pretrain(text_run["train"], text_run["val"], settings | {"max_tokens": 900}, str(root / "short"),
                     text_run["test"])
    assert 900 <= first["tokens_seen"] < first["tokens_per_pass"]
    position = json.loads((root / "short" / "stream_position.json").read_text())
    assert position["epoch"] == 0 and position["sentences"] > 0
    report = pretrain(text_run["train"], text_run["val"], settings, str(root / "continued"), text_run["test"],
                      continue_from=str(root / "short"))
    assert report["pass_digests"] == uninterrupted["pass_digests"]
    assert report["tokens_seen"] == uninterrupted["tokens_seen"]
    with pytest.raises(ValueError, match="other settings"):
        pretrain(text_run["train"], text_run["val"], settings | {"seed": 2}, str(root / "other"), text_run["test"],
                 continue_from=str(root / "short"))


def pretrain_command(text_run, out: Path, checkpoint: Path) -> list[str]:
    """The pretraining command as the Snakefile runs it."""
    return [sys.executable, "-m", "pipeline.bilm.pretrain", "--train", text_run["train"], "--val", text_run["val"],
            "--test", text_run["test"], "--settings", json.dumps(text_run["settings"]), "--out", str(out),
            "--checkpoint", str(checkpoint)]


def kill_after_checkpoints(command: list[str], checkpoint: Path, checkpoints: int) -> bool:
    """Run ``command`` and SIGKILL it once its checkpoint has been rewritten ``checkpoints`` times; True if killed."""
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seen, last = 0, None
    deadline = time.monotonic() + RESUME_TIMEOUT_SECONDS
    while process.poll() is None and time.monotonic() < deadline:
        state = read_checkpoint_state(checkpoint) if checkpoint.exists() else None
        position = state and (state["epoch"], state["sentences"])
        if position and position != last:
            seen, last = seen + 1, position
        if seen >= checkpoints:
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(POLL_SECONDS)
    process.wait()
    return False


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_without_seeing_text_twice_or_skipping_it(text_run, uninterrupted):
    root = text_run["root"]
    out, checkpoint = root / "killed", root / "killed.checkpoint"
    command = pretrain_command(text_run, out, checkpoint)
    assert kill_after_checkpoints(command, checkpoint, checkpoints=3), "the run ended before it could be killed"
    assert not out.exists() and read_checkpoint_state(checkpoint)["tokens_seen"] > 0
    subprocess.run(command, cwd=PROJECT_ROOT, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    report = json.loads((out / "perplexity.json").read_text())
    assert report["pass_digests"] == uninterrupted["pass_digests"]
    assert report["tokens_seen"] == uninterrupted["tokens_seen"]


def test_a_released_biLM_is_the_starting_point_of_the_domain_pass(text_run, uninterrupted, tmp_path):
    from pipeline.bilm.release import release_bilm

    released = release_bilm(text_run["root"] / "whole", tmp_path / "bilm-tiny-v1", source="tiny plain text")
    card = (released / "README.md").read_text()
    assert "tiny plain text" in card and str(uninterrupted["tokens_seen"]) in card.replace(",", "")
    domain = TINY_BILM | {"init": str(released), "epochs": 1, "cell_dim": 7}  # the release fixes the architecture
    report = pretrain(text_run["train"], text_run["val"], domain, str(tmp_path / "adapted"), text_run["test"])
    assert report["tokens_seen_before"] == uninterrupted["tokens_seen"]
    assert report["vocabulary_size"] == uninterrupted["vocabulary_size"]
    options = json.loads((tmp_path / "adapted" / "options.json").read_text())["options"]
    assert options["cell_dim"] == TINY_BILM["cell_dim"]
    # Starting from the released weights, one pass over the corpus beats the released model's own perplexity
    # on the corpus's validation text by a wide margin over a random start's single pass.
    scratch = pretrain(text_run["train"], text_run["val"], TINY_BILM | {"epochs": 1}, str(tmp_path / "scratch"))
    assert report["perplexity_forward"] < scratch["perplexity_forward"]
