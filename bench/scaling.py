"""Scaling: embed time and one-epoch training time for 1/8, 1/4, 1/2 and all of the training corpus.

Each fraction is a random subset (nested: every larger fraction contains the smaller ones) of the training split
(cache/corpus/train.conll, else synthetic sentences). It is embedded with pipeline.embed.embed_shard (the stage's time
after loading the module, from the shard's own ``seconds`` attribute) and the tagger trains on it for exactly one
epoch with the pipeline's own loop (pipeline.train.TaggingBatches, length-bucketed, in-memory cache; model.fit, after
an untimed warm-up epoch on the smallest fraction that traces the train step). Both times are fitted linearly
against the tokens and against sentences x longest sentence (what a padded-to-longest layout would cost); the R² of
each fit says which one the stage scales with. Wall and CPU seconds are both fitted: on a machine shared with other
jobs, CPU time is the steadier measure. --quick uses tiny fractions of a 512-sentence subset.

    python bench/scaling.py [--quick] [--subset N] [--fractions 0.125 0.25 0.5 1]
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench import common as c

NAME = "scaling"
FRACTIONS = (0.125, 0.25, 0.5, 1.0)
QUICK_SUBSET = 512
#: Below this spread of (sentences x longest) / tokens across fractions, the two fits cannot be told apart.
SEPARABLE_SPREAD = 1.25


def nested_fractions(count: int, fractions: Sequence[float], seed: int = 0) -> list[np.ndarray]:
    """Index sets of each fraction of ``count`` items, each a prefix of one random permutation (so nested)."""
    order = np.random.default_rng(seed).permutation(count)
    return [np.sort(order[: max(1, int(round(f * count)))]) for f in fractions]


def size_measures(lengths: Sequence[int], batch_size: int, seed: int = 0, shapes: Sequence[int] | None = None) -> dict:
    """What a fraction's cost could scale with: tokens, sentences x longest, and bucketed padded tokens."""
    lengths = np.asarray(lengths)
    steps, padded = c.epoch_padded_tokens(lengths, batch_size, seed, shapes)
    return {"sentences": len(lengths), "tokens": int(lengths.sum()), "longest": int(lengths.max()),
            "sentences_x_longest": int(len(lengths) * lengths.max()), "bucketed_padded_tokens": padded,
            "steps": steps}


def fits(rows: list[dict], key: str) -> dict:
    """Linear fits of ``key`` seconds against tokens and against sentences x longest, and which fits better."""
    y = [r[key] for r in rows]
    by_tokens = c.linear_fit([r["tokens"] for r in rows], y)
    by_padded = c.linear_fit([r["sentences_x_longest"] for r in rows], y)
    return {"vs_tokens": by_tokens, "vs_sentences_x_longest": by_padded,
            "linear_in": "tokens" if by_tokens["r2"] >= by_padded["r2"] else "sentences x longest"}


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__)
    p.add_argument("--subset", type=int, help=f"sentences of the training split to use (quick: {QUICK_SUBSET}; "
                                              f"full: all)")
    p.add_argument("--fractions", type=float, nargs="+", default=list(FRACTIONS))
    args = p.parse_args(argv)
    subset = args.subset or (QUICK_SUBSET if args.quick else None)
    machine, started = c.start(NAME, args)

    import h5py

    from pipeline.cache import EmbeddingCache
    from pipeline.config import load_config
    from pipeline.corpus import write_conll
    from pipeline.embed import embed_shard
    from pipeline.train import TaggingBatches, set_determinism

    config = load_config()
    settings, embedder = config["train"], config["embedder"]
    set_determinism(settings["seed"])
    tags = c.corpus_tags()
    sentences, source = c.read_sentences("train", limit=subset or c.EPOCH_SENTENCES)
    fractions = sorted(args.fractions)
    rows = []
    with c.scratch_dir(NAME) as tmp:
        handle, hub_source = c.embedder_handle(tmp)
        model, model_width, warmed = None, None, False
        provenance = {"embedder_kind": embedder["kind"], "corpus_sha256": "bench", "settings": "{}"}
        for fraction, members in zip(fractions, nested_fractions(len(sentences), fractions, settings["seed"])):
            chosen = [sentences[i] for i in members]
            chosen_lengths = [len(s) for s in chosen]
            row = {"fraction": fraction} | size_measures(chosen_lengths, settings["batch_size"], settings["seed"],
                                                         c.batch_shapes(chosen_lengths, settings))
            conll, shard = tmp / f"fraction-{fraction}.conll", tmp / f"fraction-{fraction}.h5"
            write_conll(conll, chosen)
            c.say(f"fraction {fraction:g}: {row['sentences']:,} sentences, {row['tokens']:,} tokens: embedding ...")
            with c.Stopwatch() as watch:
                embed_shard(conll, handle, shard, embedder["batch_size"], embedder["dtype"], provenance)
            with h5py.File(shard, "r") as handle_h5:
                row["embed_s"] = float(handle_h5.attrs["seconds"])
                row["embed_module_s"] = float(handle_h5.attrs["module_seconds"])
            row["embed_with_load_s"], row["embed_cpu_s"] = watch.wall, watch.cpu
            cache = EmbeddingCache([shard], in_memory=True)
            if cache.width != model_width:
                model, model_width, warmed = c.compiled_tagger(cache.width, len(tags), settings, cache.dtype), cache.width, False
            batches = TaggingBatches(cache, tags, settings["batch_size"], settings["seed"],
                                     settings["bucket_by_length"], max_shapes=settings["max_batch_shapes"])
            if not warmed:
                c.say(f"fraction {fraction:g}: untimed warm-up epoch (traces the train step) ...")
                model.fit(batches, epochs=1, verbose=0)
                batches.on_epoch_end()
                warmed = True
            c.say(f"fraction {fraction:g}: training one epoch ({len(batches)} steps) ...")
            with c.Stopwatch() as watch:
                model.fit(batches, epochs=1, verbose=0)
            row["train_s"], row["train_cpu_s"] = watch.wall, watch.cpu
            cache.close()
            conll.unlink()
            shard.unlink()
            rows.append(row)
    print()
    print(c.table([[r["fraction"], r["sentences"], r["tokens"], r["longest"], r["sentences_x_longest"], r["embed_s"],
                    r["embed_cpu_s"], r["train_s"], r["train_cpu_s"]] for r in rows],
                  ["fraction", "sentences", "tokens", "longest", "sent. x longest", "embed s", "embed CPU s",
                   "train 1 epoch s", "train CPU s"]))
    result = {"rows": rows}
    if len(rows) >= 3:
        for key, label in (("embed_s", "embed"), ("embed_cpu_s", "embed CPU"), ("train_s", "train"),
                           ("train_cpu_s", "train CPU")):
            f = fits(rows, key)
            result[f"{key.replace('_s', '')}_fit"] = f
            print(f"   {label + ':':11s} R² vs tokens {f['vs_tokens']['r2']:.4f} "
                  f"({1e3 * f['vs_tokens']['slope']:.3g} ms/token), vs sentences x longest "
                  f"{f['vs_sentences_x_longest']['r2']:.4f} -> linear in {f['linear_in']}")
        ratios = [r["sentences_x_longest"] / r["tokens"] for r in rows]
        result["padding_ratio_spread"] = max(ratios) / min(ratios)
        if result["padding_ratio_spread"] < SEPARABLE_SPREAD:
            print(f"   caveat: sentences x longest / tokens varies only {result['padding_ratio_spread']:.2f}x across "
                  f"these fractions (longest {rows[0]['longest']} .. {rows[-1]['longest']}), so the two measures are "
                  f"nearly proportional and the R² difference is within noise; bench/bucketing.py separates them "
                  f"directly")
    else:
        print("   fewer than 3 fractions: no fit")
    data = {"sentences": source, "subset": len(sentences), "embedder": hub_source, "fractions": fractions,
            "train_settings": settings, "embedder_settings": embedder}
    c.finish(NAME, result, args, data, machine, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
