"""Where a pretraining step's time goes, and what the step's two speed-ups buy, on the same batches in one run.

Builds the pretraining model (today's settings, the shipped release's 50,000-word vocabulary) and packed batches of
48 x 32-token rows from the training split, then times, in CPU milliseconds per step (XLA-compiled, after warm-up):

- the whole training step (``train_on_batch``), with each batch's distinct tokens encoded once, and with every
  position encoded (the previous batches);
- the character CNN's forward + backward pass, over every position and over the distinct tokens only;
- one LSTMP layer's forward + backward pass: autodiff through Keras's RNN over the cell (the previous recurrence) and
  :func:`pipeline.bilm.model.lstmp_recurrence` with its hand-written gradient.

CPU time, not wall time, so that figures stay comparable on a shared machine; run with ``TF_NUM_INTRAOP_THREADS=1``
(and ``taskset -c N``) for one core's figures.

    python bench/pretrain_step.py [--batches 6] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np

from common import CACHE_DIR, REPO_ROOT, describe_machine, machine_info, median, say, write_result
from pretrain_speed import baseline_checkout

RELEASE = REPO_ROOT / "models" / "bilm-simplewiki-v2"  # its vocabulary: the softmax size of a real run
DEFAULT_BASELINE = "d137db7"  # before the hand-written LSTMP gradient and the distinct-token batches


def cpu_ms_per_call(fn: Callable, inputs: list, repeats: int) -> float:
    """CPU milliseconds per call of ``fn`` over ``inputs`` (each input called once first: compilation)."""
    for item in inputs:
        fn(item)
    started = time.process_time()
    for _ in range(repeats):
        for item in inputs:
            fn(item)
    return 1000 * (time.process_time() - started) / (repeats * len(inputs))


def packed_batches(count: int, options: dict, vocab, settings: dict) -> list[dict]:
    """``count`` training batches of packed training-split sentences, all of the most common character width."""
    from pipeline.bilm.pretrain import lm_batch, pack_rows
    from pipeline.corpus import read_conll

    rows_tokens = settings["row_tokens"]
    sentences = [s.words for s in read_conll(CACHE_DIR / "corpus" / "train.conll") if len(s.words) <= rows_tokens]
    rows = pack_rows(sentences[:8000], rows_tokens)
    size = settings["batch_size"]
    batches = [lm_batch(rows[i:i + size], vocab, options, (size, rows_tokens)) for i in range(0, len(rows), size)]
    width = 32
    return [b for b in batches if b["char_ids"].shape[2] == width][:count]


def step_timing(code_root: Path, settings: dict, count: int, repeats: int) -> float:
    """CPU-ms per training step of the code under ``code_root`` (a subprocess, its own ``lm_batch``)."""
    # the side's pipeline is imported first: bench/common.py then puts this checkout on the path, but the package
    # already loaded stays the one its submodules come from
    script = (f"import sys, json; sys.path.insert(0, {str(code_root)!r}); import pipeline.bilm.pretrain as p; "
              f"assert p.__file__.startswith({str(code_root)!r}), p.__file__; "
              f"sys.path.insert(1, {str(REPO_ROOT / 'bench')!r}); import pretrain_step as b; "
              f"print(json.dumps(b.train_step_ms(json.loads({json.dumps(settings)!r}), {count}, {repeats})))")
    env = dict(os.environ, PYTHONPATH=str(code_root), TF_CPP_MIN_LOG_LEVEL="2")
    done = subprocess.run([sys.executable, "-c", script], cwd=code_root, env=env, check=True, capture_output=True,
                          text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def train_step_ms(settings: dict, count: int, repeats: int) -> float:
    """CPU-ms per ``train_on_batch`` of the importable ``pipeline`` on ``count`` packed batches."""
    from pipeline.bilm.pretrain import build_lm, model_options
    from pipeline.bilm.vocab import WordVocabulary

    options = model_options(settings) | {"dropout": settings["dropout"]}
    vocab = WordVocabulary.load(RELEASE / "vocab.txt")
    model = build_lm(options, vocab, settings)
    return cpu_ms_per_call(model.train_on_batch, packed_batches(count, options, vocab, settings), repeats)


def lstmp_layer_ms(batches: list[dict], options: dict, repeats: int) -> float:
    """CPU-ms of one LSTMP layer's forward + backward pass over a batch (input transform and recurrence)."""
    import tensorflow as tf

    from pipeline.bilm.model import ProjectedLSTM

    layer = ProjectedLSTM(options["cell_dim"], options["projection_dim"], options["cell_clip"],
                          options["projection_clip"])
    height, length = batches[0]["starts"].shape
    inputs = tf.constant(np.random.default_rng(0).normal(size=(height, length, options["projection_dim"])),
                         dtype="float32")
    layer(inputs)

    @tf.function(jit_compile=True)
    def step(starts):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.reduce_sum(layer(inputs, resets=starts))
        return tape.gradient(loss, [inputs] + layer.trainable_variables)

    return cpu_ms_per_call(lambda batch: [g.numpy() for g in step(tf.constant(batch["starts"]))], batches, repeats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=6, help="distinct batches timed (each compiled shape once)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side (alternating), passes over the batches")
    parser.add_argument("--baseline-rev", default=DEFAULT_BASELINE, help="git revision of the baseline step")
    args = parser.parse_args()
    import tensorflow as tf

    from pipeline.bilm.pretrain import build_lm, model_options
    from pipeline.bilm.vocab import WordVocabulary
    from pipeline.config import load_config

    machine = machine_info()
    say(f"machine: {describe_machine(machine)}")
    started = time.time()
    settings = load_config()["bilm"] | {"init": None}
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        baseline = baseline_checkout(args.baseline_rev, Path(tmp) / "baseline")
        for repeat in range(args.repeats):  # alternating, so that other load hits both sides alike
            for name, root in (("baseline", baseline), ("new", REPO_ROOT)):
                ms = step_timing(root, settings, args.batches, 1)
                say(f"{name} run {repeat + 1}: {ms:.1f} CPU-ms per training step")
                results.setdefault(f"train_step_{name}_runs", []).append(round(ms, 1))
    results["train_step_baseline"] = median(results["train_step_baseline_runs"])
    results["train_step_new"] = median(results["train_step_new_runs"])

    options = model_options(settings) | {"dropout": settings["dropout"]}
    vocab = WordVocabulary.load(RELEASE / "vocab.txt")
    batches = packed_batches(args.batches, options, vocab, settings)
    model = build_lm(options, vocab, settings)
    encoder = model.bilm.encoder

    @tf.function(jit_compile=True)
    def encoder_pass(chars):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(encoder.encode_tokens(chars))
        return tape.gradient(loss, encoder.trainable_variables)

    def encode(chars):
        return [tf.convert_to_tensor(g).numpy() for g in encoder_pass(tf.constant(chars))]

    tokens = float(np.mean([(b["char_ids"][:, :, 0] > 0).sum() for b in batches]))
    results |= {
        "char_cnn_every_position": cpu_ms_per_call(
            encode, [b["char_ids"].reshape(-1, b["char_ids"].shape[-1]) for b in batches], args.repeats),
        "char_cnn_distinct_tokens": cpu_ms_per_call(encode, [b["token_chars"] for b in batches], args.repeats),
        "lstmp_layer": lstmp_layer_ms(batches, options, args.repeats),
    }
    results = {name: value if isinstance(value, list) else round(value, 1) for name, value in results.items()}
    for side in ("baseline", "new"):
        results[f"tokens_per_cpu_second_{side}"] = round(1000 * tokens / results[f"train_step_{side}"])
    results["speedup"] = round(results["train_step_baseline"] / results["train_step_new"], 2)
    for name, value in results.items():
        say(f"{name}: {value}")
    write_result("pretrain_step", results, args,
                 data={"batches": f"{len(batches)} batches of 48 x 32-token rows from the training split, "
                                  f"{tokens:.0f} tokens each on average"},
                 machine=machine, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
