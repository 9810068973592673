"""Export the trained biLM as a SavedModel with the TF-Hub ELMo module's signatures.

The embed stage only ever sees ``tensorflow_hub.load(handle)``: this export makes our offline biLM and the published
google/elmo/3 module interchangeable. Signature ``tokens``: inputs ``tokens`` [batch, time] string and
``sequence_len`` [batch] int32; outputs ``word_emb`` [b,t,P], ``lstm_outputs1`` and ``lstm_outputs2`` [b,t,2P],
``elmo`` [b,t,2P] (the module's own weighted sum of the three layers), ``default`` [b,2P] (mean over tokens) and
``sequence_len``. Signature ``default``: a [batch] string of whitespace-tokenized sentences. Every position at or past
``sequence_len`` is zero. TensorFlow ops are used here (not in the model): this is the serving wrapper.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import tensorflow as tf

from pipeline.bilm.model import BiLM
from pipeline.bilm.vocab import BEGIN_OF_WORD, CHAR_PADDING, END_OF_WORD, ID_SHIFT
from pipeline.logs import atomic_path, get_logger

log = get_logger(__name__)
ELMO_LAYERS = 3
EXPORT_INFO_FILE = "elmo_module.json"


def char_ids_from_strings(tokens: tf.Tensor, max_chars: int) -> tf.Tensor:
    """TensorFlow twin of :func:`pipeline.bilm.vocab.token_char_ids` for a [b, t] string tensor; "" -> all zeros."""
    body_len = max_chars - 2
    raw = tf.cast(tf.io.decode_raw(tokens, tf.uint8, fixed_length=body_len), tf.int32)
    raw = tf.pad(raw, [[0, 0], [0, 0], [0, 1]])
    byte_count = tf.strings.length(tokens, unit="BYTE")
    lengths = tf.expand_dims(tf.minimum(byte_count, body_len), -1)
    positions = tf.range(body_len + 1)
    body = tf.where(positions < lengths, raw, tf.where(positions == lengths, END_OF_WORD, CHAR_PADDING))
    begin = tf.fill(tf.concat([tf.shape(tokens), [1]], 0), BEGIN_OF_WORD)
    ids = tf.concat([begin, body], axis=-1) + ID_SHIFT
    present = tf.cast(byte_count > 0, tf.int32)
    return ids * tf.expand_dims(present, -1)


class ElmoSignatureModule(tf.Module):
    """A tf.Module wrapping the BiLM behind the TF-Hub ELMo signatures."""

    def __init__(self, bilm: BiLM, max_chars: int):
        super().__init__()
        self.bilm = bilm
        self.max_chars = max_chars
        # The published module's own scalar mix; equal weights here (taggers learn their own mix).
        self.elmo_layer_weights = tf.Variable(tf.zeros([ELMO_LAYERS]), trainable=False, name="elmo_layer_weights")
        self.elmo_gamma = tf.Variable(1.0, trainable=False, name="elmo_gamma")

    def outputs(self, tokens: tf.Tensor, sequence_len: tf.Tensor) -> dict:
        """All signature outputs for padded tokens and their lengths."""
        time = tf.shape(tokens)[1]
        inside = tf.sequence_mask(sequence_len, time)
        tokens = tf.where(inside, tokens, "")
        result = self.bilm(char_ids_from_strings(tokens, self.max_chars), training=False)
        keep = tf.expand_dims(tf.cast(inside, tf.float32), -1)
        word_emb = result["word_emb"] * keep
        lstm1 = tf.concat([result["forward"][0], result["backward"][0]], -1) * keep
        lstm2 = tf.concat([result["forward"][1], result["backward"][1]], -1) * keep
        weights = tf.nn.softmax(self.elmo_layer_weights)
        elmo = self.elmo_gamma * (
            weights[0] * tf.concat([word_emb, word_emb], -1) + weights[1] * lstm1 + weights[2] * lstm2
        )
        counts = tf.maximum(tf.cast(sequence_len, tf.float32), 1.0)[:, None]
        return {
            "word_emb": word_emb,
            "lstm_outputs1": lstm1,
            "lstm_outputs2": lstm2,
            "elmo": elmo,
            "default": tf.reduce_sum(elmo, axis=1) / counts,
            "sequence_len": sequence_len,
        }

    @tf.function(
        input_signature=[
            tf.TensorSpec([None, None], tf.string, name="tokens"),
            tf.TensorSpec([None], tf.int32, name="sequence_len"),
        ]
    )
    def tokens_signature(self, tokens, sequence_len):
        return self.outputs(tokens, sequence_len)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="default")])
    def default_signature(self, default):
        ragged = tf.strings.split(tf.strings.strip(default))
        return self.outputs(ragged.to_tensor(""), tf.cast(ragged.row_lengths(), tf.int32))


def export_bilm(bilm_dir: str | Path, out_dir: str | Path) -> None:
    """Rebuild the trained biLM from ``bilm_dir`` and write the SavedModel to ``out_dir`` (atomically)."""
    from pipeline.bilm.pretrain import load_trained_lm

    lm, options, _ = load_trained_lm(bilm_dir)
    save_signature_module(lm.bilm, options, out_dir, "pipeline.bilm", source=str(bilm_dir))
    log.info("exported ELMo-signature SavedModel to %s", out_dir)


def save_signature_module(bilm: BiLM, options: dict, out_dir: str | Path, producer: str, **info) -> None:
    """Write ``bilm`` (built with ``options``) to ``out_dir`` as the ELMo-signature SavedModel, with its
    ``elmo_module.json`` (producer, options and ``info``), atomically. The benchmarks export a random-weight biLM
    through here, so they time the very module the pipeline exports."""
    module = ElmoSignatureModule(bilm, options["max_chars_per_token"])
    with atomic_path(out_dir, directory=True) as tmp:
        tf.saved_model.save(
            module, tmp, signatures={"tokens": module.tokens_signature, "default": module.default_signature}
        )
        record = {"producer": producer, "options": options} | info
        (Path(tmp) / EXPORT_INFO_FILE).write_text(json.dumps(record, indent=1))


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.bilm.export``: the Snakemake entry point."""
    parser = argparse.ArgumentParser(description="Export the trained biLM with the TF-Hub ELMo signature.")
    parser.add_argument("--bilm", required=True, help="directory written by pipeline.bilm.pretrain")
    parser.add_argument("--out", required=True, help="SavedModel directory to write")
    args = parser.parse_args(argv)
    export_bilm(args.bilm, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
