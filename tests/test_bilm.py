"""The offline biLM: character ids, learning, the exported TF-Hub signature, and direction independence."""
from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow as tf

from pipeline.bilm.export import char_ids_from_strings
from pipeline.bilm.vocab import WordVocabulary, batch_char_ids, token_char_ids

from conftest import FIXTURE_BILM_EPOCHS, TINY_BILM


def test_char_ids_follow_the_elmo_recipe():
    ids = token_char_ids("ab", 6)
    assert ids.tolist() == [257, 98, 99, 258, 259, 259]  # bow, a, b, eow, pad, pad (all +1)


def test_char_ids_truncate_long_tokens_but_keep_end_marker():
    ids = token_char_ids("x" * 100, 6)
    assert ids[-1] == 258 and len(ids) == 6


def test_tensorflow_char_ids_match_numpy_recipe():
    sentences = [["Serbia", "'s", "Kırklareli", "x" * 60], ["U.S.", "", "", ""]]
    expected = batch_char_ids([["Serbia", "'s", "Kırklareli", "x" * 60], ["U.S."]], 50, 4)
    actual = char_ids_from_strings(tf.constant(sentences), 50).numpy()
    np.testing.assert_array_equal(actual, expected)


def test_vocabulary_orders_by_frequency_and_maps_unknown_words():
    vocab = WordVocabulary.from_sentences([["a", "b", "a"], ["c", "a", "b"]], min_count=2)
    assert vocab.words[3:] == ["a", "b"]
    assert vocab.ids(["a", "zzz"]).tolist() == [3, vocab.unknown_id]


def test_pretraining_lowers_the_loss(exported_bilm):
    """Read from the session's tiny biLM (conftest.exported_bilm), pretrained for FIXTURE_BILM_EPOCHS epochs."""
    trained = exported_bilm.parent / "model"
    report = json.loads((trained / "perplexity.json").read_text())
    assert len(report["train_loss"]) == FIXTURE_BILM_EPOCHS
    assert report["train_loss"][-1] < report["train_loss"][0]
    assert report["perplexity_forward"] > 0 and report["perplexity_backward"] > 0
    assert (trained / "options.json").is_file() and (trained / "vocab.txt").is_file()


@pytest.fixture(scope="module")
def elmo(exported_bilm):
    import tensorflow_hub as hub

    return hub.load(str(exported_bilm)).signatures["tokens"]


def run_tokens(elmo, sentences, lengths):
    return {k: v.numpy() for k, v in elmo(tokens=tf.constant(sentences), sequence_len=tf.constant(lengths, tf.int32)).items()}


def test_export_has_the_tf_hub_elmo_outputs_and_shapes(elmo):
    out = run_tokens(elmo, [["the", "cat", "sat"], ["a", "dog", ""]], [3, 2])
    p = TINY_BILM["projection_dim"]
    assert out["word_emb"].shape == (2, 3, p)
    for name in ("lstm_outputs1", "lstm_outputs2", "elmo"):
        assert out[name].shape == (2, 3, 2 * p)
    assert out["default"].shape == (2, 2 * p)


def test_positions_past_sequence_len_are_zero(elmo):
    out = run_tokens(elmo, [["the", "cat", "sat", "down"]], [2])
    for name in ("word_emb", "lstm_outputs1", "lstm_outputs2", "elmo"):
        assert not out[name][0, 2:].any()
        assert out[name][0, :2].any()


def test_forward_outputs_ignore_later_tokens_and_backward_outputs_ignore_earlier_ones(elmo):
    p = TINY_BILM["projection_dim"]
    a = run_tokens(elmo, [["Mr.", "Smith", "visited", "London"]], [4])
    b = run_tokens(elmo, [["Mr.", "Smith", "left", "Paris"]], [4])
    for name in ("lstm_outputs1", "lstm_outputs2"):
        np.testing.assert_allclose(a[name][0, :2, :p], b[name][0, :2, :p], atol=1e-6)  # forward at t <= 1
        assert not np.allclose(a[name][0, :2, p:], b[name][0, :2, p:])  # backward sees the change
    c = run_tokens(elmo, [["Yesterday", "Smith", "visited", "London"]], [4])
    for name in ("lstm_outputs1", "lstm_outputs2"):
        np.testing.assert_allclose(a[name][0, 1:, p:], c[name][0, 1:, p:], atol=1e-6)  # backward at t >= 1


def test_export_loads_in_a_process_that_never_imports_the_project(exported_bilm):
    import subprocess
    import sys

    code = (
        "import sys, tensorflow as tf, tensorflow_hub as hub\n"
        f"m = hub.load({str(exported_bilm)!r})\n"
        "out = m.signatures['tokens'](tokens=tf.constant([['a','b']]), sequence_len=tf.constant([2]))\n"
        "assert not any(k.startswith('pipeline') for k in sys.modules)\n"
        "print(sorted(out))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "lstm_outputs2" in result.stdout


def test_export_skipping_padding_matches_the_keras_biLM_on_mixed_lengths(exported_bilm, elmo):
    """The export steps only live rows and encodes only real tokens (pipeline.bilm.export.run_live_positions_only);
    inside each sentence that must equal the trained Keras graph, which computes every padded position."""
    from pipeline.bilm.pretrain import load_trained_lm

    lm, options, _ = load_trained_lm(exported_bilm.parent / "model")
    sentences = [["Mr.", "Smith", "flew", "to", "Paris", "on", "Monday", "."], ["Hi", "", "", "", "", "", "", ""],
                 ["The", "U.N.", "met", "", "", "", "", ""], ["x" * 70, "y", "", "", "", "", "", ""]]
    lengths = [8, 1, 3, 2]
    exported = run_tokens(elmo, sentences, lengths)
    keras_out = lm.bilm(char_ids_from_strings(tf.constant(sentences), options["max_chars_per_token"]), training=False)
    assert all(layer.recurrence_runner is None for layer in lm.bilm.forward_layers)  # the plain Keras path
    np.testing.assert_allclose(exported["word_emb"], keras_out["word_emb"].numpy(), atol=1e-5)
    for k, name in ((0, "lstm_outputs1"), (1, "lstm_outputs2")):
        both = np.concatenate([keras_out["forward"][k].numpy(), keras_out["backward"][k].numpy()], axis=-1)
        np.testing.assert_allclose(exported[name], both, atol=1e-5)
    assert exported["lstm_outputs2"][0].any() and not exported["lstm_outputs2"][1, 1:].any()
