"""Is it the batches or the model? This checkout's biLM and training step, fed the batches of the revision before
packing: one sentence per row, ``--sentences-per-batch`` length-bucketed sentences per step, shuffled. One pass over
the training split, then validation perplexity, to set beside ``bench/pretrain_speed.py``'s packed run of the same
text: if the two perplexities agree, packing is not what makes a pass worse than the baseline's.

``--autodiff-recurrence`` runs each LSTMP layer as the baseline did (Keras's RNN over the stepped cell, gradients by
autodiff) instead of ``lstmp_recurrence`` and its hand-written gradient: exact here, where each row is one sentence
and needs no state resets.

    python bench/pretrain_unpacked.py [--sentences-per-batch 64] [--val-sentences 500] [--settings JSON]
                                      [--autodiff-recurrence]
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
from typing import Iterator

from common import CACHE_DIR, describe_machine, machine_info, say, write_result

CORPUS = CACHE_DIR / "corpus"
PROGRESS_STEPS = 100


@contextlib.contextmanager
def autodiff_recurrence(active: bool) -> Iterator[None]:
    """While active, every ProjectedLSTM runs Keras's RNN over its cell, as the baseline revision did. Only for the
    training batches: each of their rows is one sentence, whose state starts at zero anyway. Validation packs
    sentences into rows and needs the state resets of ``lstmp_recurrence``, so the patch ends before it."""
    from pipeline.bilm.model import ProjectedLSTM

    def call(self, inputs, mask=None, resets=None):
        return self.recurrence(self.input_gates(inputs), mask=mask)

    original = ProjectedLSTM.call
    if active:
        ProjectedLSTM.call = call
    try:
        yield
    finally:
        ProjectedLSTM.call = original


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sentences-per-batch", type=int, default=64, help="the baseline revision's batch size")
    parser.add_argument("--val-sentences", type=int, default=500, help="validation sentences for perplexity")
    parser.add_argument("--settings", default="{}", metavar="JSON", help="bilm settings replacing the config's")
    parser.add_argument("--autodiff-recurrence", action="store_true",
                        help="Keras's RNN over the stepped cell instead of lstmp_recurrence (the baseline's way)")
    args = parser.parse_args()
    import keras
    import numpy as np

    from pipeline.batching import padded_length, shuffled_batches
    from pipeline.bilm.pretrain import build_lm, direction_log_likelihoods, lm_batch, model_options
    from pipeline.bilm.vocab import WordVocabulary
    from pipeline.config import load_config
    from pipeline.corpus import read_conll

    settings = load_config()["bilm"] | {"init": None, "unlabelled_text": []} | json.loads(args.settings)
    machine = machine_info()
    say(f"machine: {describe_machine(machine)}")
    started = time.time()
    keras.utils.set_random_seed(settings["seed"])
    train = [s.words for s in read_conll(CORPUS / "train.conll")]
    val = [s.words for s in read_conll(CORPUS / "val.conll")][: args.val_sentences]
    vocab = WordVocabulary.from_sentences(train, settings["min_word_count"])
    options = model_options(settings) | {"dropout": settings["dropout"]}
    model = build_lm(options, vocab, settings)
    batches = shuffled_batches([len(s) for s in train], args.sentences_per_batch, np.random.default_rng(settings["seed"]))
    losses = []
    with autodiff_recurrence(args.autodiff_recurrence):
        for step, index in enumerate(batches):
            members = [train[i] for i in index]
            shape = (len(members), padded_length(max(map(len, members))))
            losses.append(float(model.train_on_batch(lm_batch([[s] for s in members], vocab, options, shape))))
            if step % PROGRESS_STEPS == 0:
                say(f"step {step}/{len(batches)}, loss {np.mean(losses[-PROGRESS_STEPS:]):.3f}")
    training_seconds = time.time() - started
    likelihood = direction_log_likelihoods(model, val, vocab, options, settings["row_tokens"])
    perplexity = {d: round(math.exp(-t / likelihood["tokens"]), 2) for d, t in likelihood["totals"].items()}
    say(f"{len(batches)} steps of {args.sentences_per_batch} sentences in {training_seconds:.0f} s; vocabulary "
        f"{len(vocab)}; validation perplexity forward {perplexity['forward']}, backward {perplexity['backward']}")
    write_result("pretrain_unpacked", {"steps": len(batches), "training_seconds": round(training_seconds, 1),
                                       "vocabulary_size": len(vocab), "perplexity": perplexity, "settings": settings,
                                       "recurrence": "autodiff" if args.autodiff_recurrence else "lstmp_recurrence"},
                 args, data={"train": str(CORPUS / "train.conll"),
                             "val": f"first {args.val_sentences} sentences of {CORPUS / 'val.conll'}"},
                 machine=machine, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
