"""Does the cache pay off? The same tagger trained for the same steps on the same batches, fed three ways:

(a) in-loop: the embedder runs inside every training step (as the original notebook ran ELMo in its Keras model);
(b) cached: the step reads the layers from the HDF5 cache (pipeline.cache.EmbeddingCache, in memory and lazily);
(c) tagger alone: the layers are already tensors in memory (the floor any feeding method can reach).

Per step it reports E (embedder forward time) and T (tagger step time), the epoch times they extrapolate to for the
38,846 training sentences, the measured in-loop / tagger-alone ratio against its bound 1 + E/T, whether the cached
epoch is within 10% of tagger-alone, and the full-run saving: embed once + N cached epochs vs N in-loop epochs
(N = train.max_epochs). Done for the default embedder (the exported biLM, loaded with pipeline.embed.load_embedder and
called with embed_batch) and for an original-size ELMo (char CNN filters up to 1024 wide, 2 highway layers, 4096-cell
LSTMs projected to 512) built with random weights and run on character ids through its compiled predict_on_batch.

The modes are interleaved step by step (rotating their order), so a load change on a shared machine hits all of them
alike; a warm-up pass over the same batches comes first (every shape traced). The timed batches are the training
loop's own length-bucketed batches of one shard, picked evenly across their range of lengths; epoch times scale the
measured times by the full epoch's padded tokens. "Embed once" is estimated as one epoch's worth of E at the training
batch size; the embed stage's batches of embedder.batch_size sentences cost less per sentence, so the saving is, if
anything, understated.

    python bench/cached_vs_inloop.py [--quick] [--steps N] [--repeats R] [--elmo-steps N] [--skip-elmo | --elmo-only]

``--elmo-only`` needs no TensorFlow (the default embedder is a TF SavedModel), so with KERAS_BACKEND=jax the
original-size ELMo comparison also runs on a GPU machine that has JAX but no TensorFlow.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench import common as c

NAME = "cached_vs_inloop"
GIB = 1 << 30
#: The published ELMo's sizes (Peters et al. 2018; bilm-tf's elmo_2x4096_512_2048cnn_2xhighway options).
ORIGINAL_ELMO = {
    "char_embedding_dim": 16, "max_chars_per_token": 50,
    "filters": [[1, 32], [2, 32], [3, 64], [4, 128], [5, 256], [6, 512], [7, 1024]],
    "highway_layers": 2, "projection_dim": 512, "cell_dim": 4096, "cell_clip": 3.0, "projection_clip": 3.0,
    "dropout": 0.0,
}
MODES = ("tagger_alone", "cached_memory", "cached_lazy", "in_loop")
MODE_LABELS = {"tagger_alone": "tagger alone (T)", "cached_memory": "cached, in memory",
               "cached_lazy": "cached, lazy HDF5", "in_loop": "in-loop embedder", "embedder": "  of which embedder (E)"}
QUICK = {"steps": 6, "repeats": 3, "elmo_steps": 2, "elmo_repeats": 1, "synthetic_sentences": 600}
FULL = {"steps": 40, "repeats": 3, "elmo_steps": 8, "elmo_repeats": 2, "synthetic_sentences": 4000}
CACHED_TOLERANCE = 0.10


@dataclass
class Case:
    """One embedder's comparison: its batches, the text they hold, the cache of its layers and how to embed."""

    name: str
    description: str
    width: int
    batches: list[np.ndarray]
    lengths: np.ndarray
    words: Sequence[Sequence[str]]
    cache_memory: object
    cache_lazy: object
    embed: Callable[[list[list[str]], int], np.ndarray]


def summarise(totals: dict, steps: int, scale: float, epochs: int, memory_fits: bool,
              read_s: dict | None = None) -> dict:
    """Per-step medians, epoch extrapolations (``scale`` = epoch padded tokens / timed padded tokens), the ratio and
    its bound, the 10% check and the full-run saving. ``read_s``: seconds per step of the cache reads timed alone,
    giving the cached modes' bound 1 + R/T (steadier than the difference of two noisy step times)."""
    per_step = {m: c.median(v["wall"]) / steps for m, v in totals.items()}
    per_step_cpu = {m: c.median(v["cpu"]) / steps for m, v in totals.items()}
    epoch_minutes = {m: per_step[m] * steps * scale / 60 for m in per_step}
    E, T = per_step["embedder"], per_step["tagger_alone"]
    cached_mode = "cached_memory" if memory_fits else "cached_lazy"
    in_loop_total = epochs * epoch_minutes["in_loop"]
    cached_total = epoch_minutes["embedder"] + epochs * epoch_minutes[cached_mode]
    return {
        "per_step_s": per_step,
        "per_step_cpu_s": per_step_cpu,
        "E_s": E,
        "T_s": T,
        "epoch_minutes": epoch_minutes,
        "ratio_measured": per_step["in_loop"] / T,
        "ratio_bound": 1 + E / T,
        "ratio_measured_cpu": per_step_cpu["in_loop"] / per_step_cpu["tagger_alone"],
        "cached_memory_vs_alone": per_step["cached_memory"] / T,
        "cached_lazy_vs_alone": per_step["cached_lazy"] / T,
        "cached_memory_vs_alone_cpu": per_step_cpu["cached_memory"] / per_step_cpu["tagger_alone"],
        "cached_lazy_vs_alone_cpu": per_step_cpu["cached_lazy"] / per_step_cpu["tagger_alone"],
        "cached_memory_within_10pct": per_step["cached_memory"] / T <= 1 + CACHED_TOLERANCE,
        "cached_lazy_within_10pct": per_step["cached_lazy"] / T <= 1 + CACHED_TOLERANCE,
        "read_s": read_s or {},
        "cached_bound": {m: 1 + r / T for m, r in (read_s or {}).items()},
        "cached_within_10pct_by_bound": {m: 1 + r / T <= 1 + CACHED_TOLERANCE for m, r in (read_s or {}).items()},
        "full_run": {
            "epochs": epochs,
            "training_reads": cached_mode,
            "in_loop_minutes": in_loop_total,
            "embed_once_minutes": epoch_minutes["embedder"],
            "cached_minutes": cached_total,
            "saving_minutes": in_loop_total - cached_total,
            "speedup": in_loop_total / cached_total if cached_total else None,
        },
    }


def run_case(case: Case, settings: dict, tags: Sequence[str], repeats: int, epoch: dict,
             in_loop_repeats: int | None = None) -> dict:
    """Time the four modes of one case and return its summary.

    The cached modes get each step's batch from the training loop's own feed (pipeline.train.TaggingBatches: cache
    read, tag ids and padding weights), as model.fit does; tagger-alone gets the same batches prepared beforehand."""
    model = c.compiled_tagger(case.width, len(tags), settings, case.cache_memory.dtype)
    feeds = {name: c.training_batches(cache, tags, settings, case.batches, epoch["shapes"])
             for name, cache in (("cached_memory", case.cache_memory), ("cached_lazy", case.cache_lazy))}
    prepared = [feeds["cached_memory"][step] for step in range(len(case.batches))]  # (c): tensors in memory
    shapes = [targets.shape[1] for _, targets, _ in prepared]

    def train(step: int, inputs: dict) -> None:
        _, targets, weights = prepared[step]
        model.train_on_batch(inputs, targets, sample_weight=weights)

    def in_loop(step: int):
        batch = case.batches[step]
        with c.Stopwatch() as watch:
            layers = case.embed([list(case.words[i]) for i in batch], shapes[step])
        train(step, {"layers": layers, "lengths": case.lengths[batch].astype(np.int32)})
        return watch.wall, watch.cpu

    modes = {
        "tagger_alone": lambda s: train(s, prepared[s][0]),
        "cached_memory": lambda s: train(s, feeds["cached_memory"][s][0]),
        "cached_lazy": lambda s: train(s, feeds["cached_lazy"][s][0]),
        "in_loop": in_loop,
    }
    c.say(f"{case.name}: warming up (tracing the train step for {len(set(shapes))} batch shapes) ...")
    for step in range(len(case.batches)):
        train(step, prepared[step][0])
    for step, batch in enumerate(case.batches):  # the embedder's first-call costs and traces, one per batch shape
        case.embed([list(case.words[i]) for i in batch], shapes[step])
    case.cache_lazy.inputs(case.batches[0], shapes[0])
    in_loop_repeats = repeats if in_loop_repeats is None else min(in_loop_repeats, repeats)
    c.say(f"{case.name}: timing {len(case.batches)} steps x {repeats} repeats x {len(modes)} modes "
          f"(in-loop: {in_loop_repeats} repeats) ...")
    totals = c.interleaved_steps(modes, len(case.batches), repeats, ("in_loop",), in_loop_repeats)
    c.say(f"{case.name}: timing the training feed's batches (cache reads) alone ...")
    reads = {name: c.measure(lambda feed=feed: [feed[step] for step in range(len(feed))], repeats=max(5, repeats),
                             warmup=1)
             for name, feed in feeds.items()}
    timed_padded = c.padded_tokens(case.batches, case.lengths, epoch["shapes"])
    scale = epoch["padded_tokens"] / timed_padded
    cache_gib = epoch["tokens"] * 3 * case.width * 2 / GIB  # float16, unpadded: what training would hold in RAM
    summary = summarise(totals, len(case.batches), scale, settings["max_epochs"],
                        cache_gib < settings["cache_in_memory_gb"],
                        {name: t.median / len(case.batches) for name, t in reads.items()})
    summary |= {
        "embedder": case.description, "width": case.width, "steps": len(case.batches), "repeats": repeats,
        "in_loop_repeats": in_loop_repeats,
        "batch_size": settings["batch_size"], "timed_padded_tokens": timed_padded,
        "mean_padded_length": timed_padded / sum(len(b) for b in case.batches),
        "epoch_steps": epoch["steps"], "epoch_padded_tokens": epoch["padded_tokens"], "epoch_scale": scale,
        "epoch_cache_gib": cache_gib, "totals": totals,
    }
    report(case, summary, epoch)
    return summary


def report(case: Case, s: dict, epoch: dict) -> None:
    print(f"\n{case.name}: {case.description}, width {case.width}")
    print(f"   {s['steps']} steps x {s['repeats']} repeats (in-loop {s['in_loop_repeats']}), batch {s['batch_size']}, "
          f"mean padded length {s['mean_padded_length']:.1f} (full epoch: {epoch['steps']} steps, mean padded length "
          f"{epoch['padded_tokens'] / epoch['sentences']:.1f}; times scaled by padded tokens)")
    rows = [[MODE_LABELS[m], s["per_step_s"][m], s["per_step_cpu_s"][m], s["epoch_minutes"][m]]
            for m in MODES + ("embedder",)]
    print(c.table(rows, ["mode", "s/step", "CPU s/step", f"epoch min ({epoch['sentences']:,} sent.)"]))
    print(f"   in-loop / tagger alone: {s['ratio_measured']:.2f}x measured (CPU time: {s['ratio_measured_cpu']:.2f}x); "
          f"bound 1 + E/T = 1 + {s['E_s']:.3g}/{s['T_s']:.3g} = {s['ratio_bound']:.2f}x")
    for mode, label in (("memory", "in memory"), ("lazy", "lazy HDF5")):
        key = f"cached_{mode}"
        ratio, ok = s[f"{key}_vs_alone"], s[f"{key}_within_10pct"]
        line = (f"   cached ({label}) / tagger alone: {ratio:.3f} measured (CPU time: {s[f'{key}_vs_alone_cpu']:.3f})"
                f" -> {'within' if ok else 'NOT within'} 10%")
        if key in s["read_s"]:
            bound_ok = s["cached_within_10pct_by_bound"][key]
            line += (f"; reads alone {1000 * s['read_s'][key]:.1f} ms/step -> bound 1 + R/T = "
                     f"{s['cached_bound'][key]:.3f}: {'within' if bound_ok else 'NOT within'} 10%")
        print(line)
    run = s["full_run"]
    print(f"   full run, {run['epochs']} epochs: in-loop {run['epochs']} x {s['epoch_minutes']['in_loop']:.1f} = "
          f"{run['in_loop_minutes']:.0f} min; embed once {run['embed_once_minutes']:.1f} + {run['epochs']} x "
          f"{s['epoch_minutes'][run['training_reads']]:.1f} ({run['training_reads'].replace('_', ', ')}) = "
          f"{run['cached_minutes']:.0f} min -> saves {run['saving_minutes']:.0f} min ({run['speedup']:.1f}x)")


# --------------------------------------------------------------------------------------------------------------------
# The two cases
# --------------------------------------------------------------------------------------------------------------------


def training_source(tmp: Path, width: int, sentences: int) -> tuple[list[Path], str]:
    """The first real training shard, else a synthetic one of ``width`` (real sentences when the corpus exists)."""
    shards = c.real_shards("train")
    if shards:
        return [shards[0]], f"real: {shards[0].relative_to(c.REPO_ROOT)}"
    corpus, source = c.read_sentences("train", limit=sentences)
    path = c.write_synthetic_shard(tmp / "train-synthetic.h5", corpus, width)
    return [path], f"synthetic shard (random activations) over {len(corpus)} sentences, {source}"


def default_case(tmp: Path, settings: dict, tags: Sequence[str], sizes: dict, data: dict) -> Case:
    from pipeline.cache import EmbeddingCache
    from pipeline.embed import embed_batch, load_embedder

    handle, hub_source = c.embedder_handle(tmp)
    signature = load_embedder(handle)
    width = embed_batch(signature, [["probe"]]).shape[-1]
    shards, shard_source = training_source(tmp, width, sizes["synthetic_sentences"])
    memory, lazy = EmbeddingCache(shards, in_memory=True), EmbeddingCache(shards, in_memory=False)
    if memory.width != width:
        raise SystemExit(f"{shards[0]} has width {memory.width} but {handle} embeds to {width}: rerun the embed stage")
    data |= {"embedder": hub_source, "shard": shard_source}
    batches = c.representative_batches(memory.lengths, settings["batch_size"], sizes["steps"], settings["seed"],
                                       data["epoch"]["shapes"])
    return Case("default embedder", f"exported biLM via load_embedder + embed_batch ({hub_source})", width, batches,
                memory.lengths, memory.column("words"), memory, lazy,
                lambda words, length: to_length(embed_batch(signature, words), length))


def to_length(layers: np.ndarray, length: int) -> np.ndarray:
    """[b, t, 3, w] embedder layers cut or zero-padded to ``length`` time steps (the training batch's padded length;
    the embed stage pads its own batches to multiples of 8)."""
    if layers.shape[1] >= length:
        return layers[:, :length]
    return np.pad(layers, ((0, 0), (0, length - layers.shape[1]), (0, 0), (0, 0)))


def elmo_embedder(options: dict):
    """An original-size ELMo with random weights, called on character ids; returns (embed(words, length), model).

    It runs through Keras' compiled inference step (``predict_on_batch``: a tf.function on TensorFlow, jax.jit on
    JAX), as an embedder inside a training loop would be run, not op by op.
    """
    from pipeline.bilm.model import BiLM
    from pipeline.bilm.vocab import batch_char_ids
    from pipeline.embed import layer_stack

    bilm = BiLM(options, name="original_size_elmo")

    def embed(words: list[list[str]], length: int) -> np.ndarray:
        out = bilm.predict_on_batch(batch_char_ids(words, options["max_chars_per_token"], length))
        forward, backward = [np.asarray(x) for x in out["forward"]], [np.asarray(x) for x in out["backward"]]
        return layer_stack({"word_emb": np.asarray(out["word_emb"]),
                            "lstm_outputs1": np.concatenate([forward[0], backward[0]], -1),
                            "lstm_outputs2": np.concatenate([forward[1], backward[1]], -1)})

    return embed, bilm


def training_text(limit: int) -> tuple[list, str]:
    """Sentences of the first training shard's size (the real training split's head when the corpus exists)."""
    return c.read_sentences("train", limit=limit)


def elmo_case(tmp: Path, text: Sequence, settings: dict, tags: Sequence[str], steps: int,
              shapes: Sequence[int]) -> Case:
    """``steps`` training batches of ``text`` picked across its range of lengths, an original-size ELMo with random
    weights, and a width-1024 cache of those sentences."""
    from pipeline.cache import EmbeddingCache

    embed, bilm = elmo_embedder(ORIGINAL_ELMO)
    embed([["build", "the", "weights"]], 8)
    width = 2 * ORIGINAL_ELMO["projection_dim"]  # lstm_outputs: both directions; word_emb is repeated to match
    lengths = np.asarray([len(s.words) for s in text])
    chosen = c.representative_batches(lengths, settings["batch_size"], steps, settings["seed"], shapes)
    sentences = [text[i] for i in np.concatenate(chosen)]
    path = c.write_synthetic_shard(tmp / "elmo-1024.h5", sentences, width)
    memory, lazy = EmbeddingCache([path], in_memory=True), EmbeddingCache([path], in_memory=False)
    remapped, start = [], 0
    for batch in chosen:
        remapped.append(np.arange(start, start + len(batch)))
        start += len(batch)
    params = bilm.count_params()
    return Case("original-size ELMo", f"BiLM 2x4096 cells, projection 512, 2048-filter char CNN, 2 highway "
                f"({params / 1e6:.1f} M parameters, random weights, compiled predict_on_batch)", width, remapped,
                memory.lengths, [s.words for s in sentences], memory, lazy, embed)


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__)
    p.add_argument("--steps", type=int, help="training steps timed with the default embedder")
    p.add_argument("--repeats", type=int, help="repeats of the default embedder's steps (median reported)")
    p.add_argument("--elmo-steps", type=int, help="steps timed with the original-size ELMo (about 7 s each on 2 cores)")
    p.add_argument("--elmo-repeats", type=int)
    which = p.add_mutually_exclusive_group()
    which.add_argument("--skip-elmo", action="store_true", help="only the default embedder")
    which.add_argument("--elmo-only", action="store_true",
                       help="only the original-size ELMo (no TensorFlow needed: runs under KERAS_BACKEND=jax)")
    args = p.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    for key in ("steps", "repeats", "elmo_steps", "elmo_repeats"):
        if getattr(args, key) is not None:
            sizes[key] = getattr(args, key)
    machine, started = c.start(NAME, args)

    setup = c.training_setup()
    settings, tags, lengths, lengths_source, epoch_shapes = (setup.settings, setup.tags, setup.lengths,
                                                             setup.lengths_source, setup.shapes)
    steps, padded = c.epoch_padded_tokens(lengths, settings["batch_size"], settings["seed"], epoch_shapes)
    epoch = {"sentences": len(lengths), "tokens": int(lengths.sum()), "steps": steps, "padded_tokens": padded,
             "shapes": list(epoch_shapes)}
    data = {"epoch_lengths": lengths_source, "epoch": epoch, "sizes": sizes,
            "train_settings": settings}
    results, cases = {}, []
    with c.scratch_dir(NAME) as tmp:
        if not args.elmo_only:
            c.say("loading the embedder and the cache ...")
            cases.append(default_case(tmp, settings, tags, sizes, data))
            results["default"] = run_case(cases[-1], settings, tags, sizes["repeats"], epoch)
        if not args.skip_elmo:
            c.say("building the original-size ELMo (random weights) and its width-1024 cache ...")
            text, data["elmo_text"] = training_text(sizes["synthetic_sentences"])
            cases.append(elmo_case(tmp, text, settings, tags, sizes["elmo_steps"], epoch_shapes))
            results["original_elmo"] = run_case(cases[-1], settings, tags, sizes["repeats"], epoch,
                                                sizes["elmo_repeats"])
        for case in cases:
            case.cache_memory.close()
            case.cache_lazy.close()
    c.finish(NAME, results, args, data, machine, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
