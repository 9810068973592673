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

from pipeline.bilm.model import BiLM, CharCNNEncoder
from pipeline.bilm.vocab import BEGIN_OF_WORD, CHAR_PADDING, END_OF_WORD, ID_SHIFT
from pipeline.logs import atomic_path, exit_status, get_logger

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


def packed_recurrence(cell, gates: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """Run an LSTMP ``cell`` over input gates [b, t, 4C], at step t only on the rows whose sentence is longer than t.

    Why: Keras's RNN steps every row of a batch to its padded length. A batch of mixed lengths (a server's requests,
    ``ner tag`` on a few texts) then spends about half its LSTM time on padding. Here the rows are sorted longest
    first, so the live rows of step t are a prefix of the batch that a slice takes, and the cost follows the real
    tokens, as PyTorch's packed sequences do. Positions past a sentence's length get zeros (Keras's RNN carries the
    last output there; every caller masks them). ``mask`` [b, t] must be a prefix mask, as the biLM's is.
    """
    lengths = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    order = tf.argsort(lengths, direction="DESCENDING", stable=True)
    batch, steps = tf.shape(gates)[0], tf.shape(gates)[1]
    live = tf.reduce_sum(tf.cast(tf.gather(lengths, order)[None, :] > tf.range(steps)[:, None], tf.int32),
                         axis=1)                               # [t]: live rows per step (none on padding-only steps)
    by_time = tf.transpose(tf.gather(gates, order), [1, 0, 2])
    hidden = tf.zeros([batch, cell.projection_dim], gates.dtype)
    state = tf.zeros([batch, cell.cell_dim], gates.dtype)
    outputs = tf.TensorArray(gates.dtype, size=steps, element_shape=[None, cell.projection_dim])

    def step(t, hidden, state, outputs):
        n = live[t]
        new_hidden, (_, new_state) = cell.call(by_time[t, :n], [hidden[:n], state[:n]])
        hidden = tf.ensure_shape(tf.concat([new_hidden, hidden[n:]], axis=0), hidden.shape)
        state = tf.ensure_shape(tf.concat([new_state, state[n:]], axis=0), state.shape)
        return t + 1, hidden, state, outputs.write(t, tf.pad(new_hidden, [[0, batch - n], [0, 0]]))

    _, _, _, outputs = tf.while_loop(lambda t, *_: t < steps, step, (0, hidden, state, outputs))
    return tf.gather(tf.transpose(outputs.stack(), [1, 0, 2]), tf.argsort(order))


def live_tokens_only(encode, char_ids: tf.Tensor) -> tf.Tensor:
    """``encode`` ([n, c] character ids -> [n, P]) run on the rows of ``char_ids`` that hold a token (a padding
    position's ids are all zero); zeros elsewhere. Why: :class:`pipeline.bilm.model.CharCNNEncoder` otherwise
    convolves every padding position of a batch."""
    rows = tf.where(char_ids[:, 0] > 0)
    vectors = encode(tf.gather_nd(char_ids, rows))
    return tf.scatter_nd(rows, vectors, tf.concat([tf.shape(char_ids, out_type=tf.int64)[:1],
                                                   tf.shape(vectors, out_type=tf.int64)[1:]], 0))


def run_live_positions_only(bilm: tf.Module) -> None:
    """For inference: make ``bilm`` skip the padding of a batch, in its LSTM layers (:func:`packed_recurrence`) and,
    for our own biLM, in its character encoder (:func:`live_tokens_only`). Outputs inside each sentence stay the
    same (tests/test_bilm.py)."""
    for layer in [*bilm.forward_layers, *bilm.backward_layers]:
        layer.recurrence_runner = packed_recurrence
    if isinstance(bilm.encoder, CharCNNEncoder):
        bilm.encoder.token_runner = live_tokens_only


class ElmoSignatureModule(tf.Module):
    """A tf.Module wrapping the BiLM behind the TF-Hub ELMo signatures."""

    def __init__(self, bilm: BiLM, max_chars: int):
        super().__init__()
        self.bilm = bilm
        self.max_chars = max_chars
        run_live_positions_only(bilm)
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


def export_elmo_files(options_path: str | Path, weights_path: str | Path, out_dir: str | Path) -> None:
    """Load a bilm-tf ``options.json`` + ``weights.hdf5`` pair and write it as the ELMo-signature SavedModel, so the
    embed stage, training and ``ner tag`` use the published ELMo exactly as they use our own biLM."""
    from pipeline.bilm.elmo_files import load_elmo_files

    model = load_elmo_files(options_path, weights_path)
    save_signature_module(model, model.file_options.record(), out_dir, "pipeline.bilm.elmo_files",
                          options_file=str(options_path), weights_file=str(weights_path))
    log.info("exported %s + %s as an ELMo-signature SavedModel to %s", options_path, weights_path, out_dir)


def export_bilm_as_elmo_files(bilm_dir: str | Path, out_dir: str | Path) -> None:
    """Write the trained biLM of ``bilm_dir`` as bilm-tf's ``options.json`` + ``weights.hdf5`` into ``out_dir``."""
    from pipeline.bilm.elmo_files import write_bilm_as_elmo_files
    from pipeline.bilm.pretrain import load_trained_lm

    lm, options, _ = load_trained_lm(bilm_dir)
    write_bilm_as_elmo_files(lm.bilm, options, out_dir)
    log.info("wrote the biLM of %s as bilm-tf options + weights files to %s", bilm_dir, out_dir)


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.bilm.export``: the Snakemake entry point.

    ``--bilm DIR --out DIR``: our trained biLM as the SavedModel; ``--bilm DIR --elmo-files DIR``: the same biLM as
    bilm-tf's two files; ``--options FILE --weights FILE --out DIR``: a bilm-tf pair as the SavedModel.
    """
    from pipeline.bilm.elmo_files import ElmoFilesError

    parser = argparse.ArgumentParser(description="Export the trained biLM with the TF-Hub ELMo signature.")
    parser.add_argument("--bilm", help="directory written by pipeline.bilm.pretrain")
    parser.add_argument("--out", help="SavedModel directory to write")
    parser.add_argument("--elmo-files", help="with --bilm: write it as bilm-tf options.json + weights.hdf5 here")
    parser.add_argument("--options", help="bilm-tf options file (with --weights and --out)")
    parser.add_argument("--weights", help="bilm-tf weight file (with --options and --out)")
    args = parser.parse_args(argv)
    if bool(args.options) != bool(args.weights):
        parser.error("--options and --weights go together")
    if args.options and (args.bilm or args.elmo_files):
        parser.error("--options/--weights export a bilm-tf pair; --bilm/--elmo-files export our biLM: pick one")
    if not args.options and not args.bilm:
        parser.error("give --bilm (our trained biLM) or --options and --weights (a bilm-tf pair)")
    if not args.out and not args.elmo_files:
        parser.error("give --out (SavedModel directory) and/or --elmo-files (directory for the two files)")
    if args.options and not args.out:
        parser.error("--options and --weights need --out")

    def export() -> None:
        if args.options:
            export_elmo_files(args.options, args.weights, args.out)
            return
        if args.out:
            export_bilm(args.bilm, args.out)
        if args.elmo_files:
            export_bilm_as_elmo_files(args.bilm, args.elmo_files)

    return exit_status(export, ElmoFilesError)


if __name__ == "__main__":
    sys.exit(main())
