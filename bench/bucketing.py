"""Length bucketing: training tokens per second with length-bucketed batches vs every sentence padded to 50.

The same tagger (pipeline.model.build_tagger, compiled as pipeline.train compiles it) trains on batches of the same
size drawn from the same cached sentences, fed three ways:

* bucketed: the training loop's batches (pipeline.batching.shuffled_batches), each padded to the smallest of the
  training split's padding-minimal lengths that holds its longest sentence (what pipeline.train does);
* padded to 50: random batches with every sentence padded to 50 tokens and longer ones truncated, as the original
  notebook did (the truncation applies to this baseline only);
* unbucketed, padded to each batch's longest (for reference): random batches without the sort.

The bucketed and unbucketed batches are assembled by the training loop's own feed (pipeline.train.TaggingBatches).
Tokens per second count real (unpadded) tokens only, so padding shows up as lost throughput. Inputs are tensors in
memory (the cache read is measured by cached_vs_inloop.py); the modes are interleaved step by step. Target: >= 2x.

    python bench/bucketing.py [--quick] [--steps N] [--repeats R]
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench import common as c

NAME = "bucketing"
TARGET_SPEEDUP = 2.0
QUICK = {"steps": 6, "repeats": 3, "synthetic_sentences": 800}
FULL = {"steps": 40, "repeats": 3, "synthetic_sentences": 4000}
MODES = {"bucketed": "bucketed (pipeline)", "padded_50": "padded to 50 (notebook)",
         "unbucketed": "unbucketed, batch longest"}


def truncated_inputs(cache, members: Sequence[int], length: int) -> dict:
    """Model inputs with every sentence padded or truncated to ``length`` tokens (the notebook's fixed shape)."""
    layers = np.zeros((len(members), length, 3, cache.width), dtype=cache.dtype)
    lengths = np.zeros(len(members), dtype=np.int32)
    for row, index in enumerate(members):
        values = cache.sentence(int(index))[:length]
        layers[row, : len(values)] = values
        lengths[row] = len(values)
    return {"layers": layers, "lengths": lengths}


def notebook_batch(cache, gold: Sequence[np.ndarray], members: Sequence[int], length: int) -> tuple:
    """(inputs, tag ids, padding weights) of the notebook's fixed shape: every sentence padded or truncated to
    ``length`` tokens. Only this baseline truncates, so only it needs its own batch; the other modes get theirs from
    the training loop's feed."""
    inputs = truncated_inputs(cache, members, length)
    kept = inputs["lengths"]
    targets = np.zeros((len(members), length), dtype=np.int32)
    for row, index in enumerate(members):
        targets[row, : kept[row]] = gold[index][: kept[row]]
    return inputs, targets, (np.arange(length)[None, :] < kept[:, None]).astype(np.float32)


def mode_batches(lengths: np.ndarray, batch_size: int, steps: int, seed: int,
                 shapes: Sequence[int] | None = None) -> dict[str, tuple[list, int | None]]:
    """Per mode: (index batches, fixed length or None for the batch's own padded length)."""
    from pipeline.batching import shuffled_batches

    random_batches = [b for b in shuffled_batches(lengths, batch_size, np.random.default_rng(seed + 1), bucket=False)
                      if len(b) == batch_size][:steps]
    return {
        "bucketed": (c.representative_batches(lengths, batch_size, steps, seed, shapes), None),
        "padded_50": (random_batches, c.NOTEBOOK_MAX_LEN),
        "unbucketed": (random_batches, None),
    }


def real_tokens(batches: Sequence[np.ndarray], lengths: np.ndarray, fixed: int | None) -> int:
    """Tokens the loss sees (truncated at ``fixed`` when given)."""
    return int(sum(np.minimum(lengths[b], fixed or 10**9).sum() for b in batches))


def summarise(totals: dict, tokens: dict, padded: dict, epoch_tokens: dict | None = None) -> dict:
    """Tokens per second per mode (median over repeats), padding share and the speedups over padded-to-50; with
    ``epoch_tokens`` (real tokens of a full training epoch per mode) also the epoch minutes they extrapolate to."""
    out = {}
    for mode, t in totals.items():
        wall, cpu = c.median(t["wall"]), c.median(t["cpu"])
        out[mode] = {"tokens": tokens[mode], "padded_tokens": padded[mode],
                     "padding_share": 1 - tokens[mode] / padded[mode],
                     "seconds": wall, "cpu_seconds": cpu, "tokens_per_s": tokens[mode] / wall,
                     "tokens_per_cpu_s": tokens[mode] / cpu}
        if epoch_tokens:
            out[mode]["epoch_minutes"] = epoch_tokens[mode] / out[mode]["tokens_per_s"] / 60
    base = out["padded_50"]
    speedup = out["bucketed"]["tokens_per_s"] / base["tokens_per_s"]
    return {"modes": out, "speedup": speedup,
            "speedup_cpu": out["bucketed"]["tokens_per_cpu_s"] / base["tokens_per_cpu_s"],
            "unbucketed_speedup": out["unbucketed"]["tokens_per_s"] / base["tokens_per_s"],
            "target": TARGET_SPEEDUP, "meets_target": speedup >= TARGET_SPEEDUP}


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__)
    p.add_argument("--steps", type=int, help="batches per mode")
    p.add_argument("--repeats", type=int)
    args = p.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    sizes.update({k: getattr(args, k) for k in ("steps", "repeats") if getattr(args, k) is not None})
    machine, started = c.start(NAME, args)

    from pipeline.cache import EmbeddingCache

    setup = c.training_setup()
    settings, tags, lengths, lengths_source, epoch_shapes = (setup.settings, setup.tags, setup.lengths,
                                                             setup.lengths_source, setup.shapes)
    with c.scratch_dir(NAME) as tmp:
        shards = c.real_shards("train")[:1]
        if shards:
            source = f"real: {shards[0].relative_to(c.REPO_ROOT)}"
        else:
            sentences, text = c.read_sentences("train", limit=sizes["synthetic_sentences"])
            width = 2 * c.bilm_options_from_config()["projection_dim"]
            shards = [c.write_synthetic_shard(tmp / "train-synthetic.h5", sentences, width)]
            source = f"synthetic shard (random activations, width {width}) over {len(sentences)} sentences, {text}"
        c.say(f"reading {source} ...")
        cache = EmbeddingCache(shards, in_memory=True)
        plan = mode_batches(cache.lengths, settings["batch_size"], sizes["steps"], settings["seed"], epoch_shapes)
        prepared, lengths_of = {}, {}
        for mode, (batches, fixed) in plan.items():
            feed = c.training_batches(cache, tags, settings, batches, epoch_shapes if mode == "bucketed" else None)
            prepared[mode] = [notebook_batch(cache, feed.gold, b, fixed) if fixed else feed[step]
                              for step, b in enumerate(batches)]
            lengths_of[mode] = [targets.shape[1] for _, targets, _ in prepared[mode]]
        steps = min(len(v) for v in prepared.values())
        tokens = {m: real_tokens(plan[m][0][:steps], cache.lengths, plan[m][1]) for m in plan}
        padded = {m: int(sum(len(b) * n for b, n in zip(plan[m][0][:steps], lengths_of[m]))) for m in plan}
        model = c.compiled_tagger(cache.width, len(tags), settings, cache.dtype)

        def step_fn(mode):
            def run(step):
                inputs, targets, weights = prepared[mode][step]
                model.train_on_batch(inputs, targets, sample_weight=weights)
            return run

        modes = {m: step_fn(m) for m in plan}
        c.say(f"warming up ({len({n for v in lengths_of.values() for n in v})} batch shapes) ...")
        for mode in modes:
            for step in range(steps):
                modes[mode](step)
        c.say(f"timing {steps} steps x {sizes['repeats']} repeats x {len(modes)} modes ...")
        totals = c.interleaved_steps(modes, steps, sizes["repeats"])
        cache.close()
    epoch_tokens = {"bucketed": int(lengths.sum()), "unbucketed": int(lengths.sum()),
                    "padded_50": int(np.minimum(lengths, c.NOTEBOOK_MAX_LEN).sum())}
    summary = summarise(totals, tokens, padded, epoch_tokens)
    _, epoch_padded = c.epoch_padded_tokens(lengths, settings["batch_size"], settings["seed"], epoch_shapes)
    summary["padding_bound"] = (len(lengths) * c.NOTEBOOK_MAX_LEN / epoch_tokens["padded_50"]) / (
        epoch_padded / epoch_tokens["bucketed"])
    summary["batch_shapes"] = list(epoch_shapes)
    summary |= {"steps": steps, "repeats": sizes["repeats"], "batch_size": settings["batch_size"],
                "width": cache.width, "shapes": lengths_of}
    rows = [[MODES[m], v["tokens"], f"{100 * v['padding_share']:.0f}%", v["seconds"], v["tokens_per_s"],
             v["tokens_per_cpu_s"], v["epoch_minutes"]] for m, v in summary["modes"].items()]
    print()
    print(c.table(rows, ["batches", "real tokens", "padding", "seconds", "tokens/s", "tokens/CPU s",
                         f"epoch min ({len(lengths):,} sent.)"]))
    print(f"   bucketed vs padded to 50: {summary['speedup']:.2f}x tokens/s (CPU time: {summary['speedup_cpu']:.2f}x); "
          f"target >= {TARGET_SPEEDUP:.0f}x: {'met' if summary['meets_target'] else 'NOT met'}")
    print(f"   unbucketed (random batches padded to their longest) vs padded to 50: "
          f"{summary['unbucketed_speedup']:.2f}x")
    print(f"   padding alone bounds the speedup at {summary['padding_bound']:.2f}x over a full epoch (padded tokens "
          f"per real token, padded to 50 vs bucketed with the {len(epoch_shapes)} padded lengths "
          f"{', '.join(map(str, epoch_shapes))}), if step time is proportional to padded tokens")
    data = {"source": source, "epoch_lengths": lengths_source, "sizes": sizes, "train_settings": settings}
    c.finish(NAME, summary, args, data, machine, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
