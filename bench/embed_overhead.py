"""Embed stage overhead: pipeline.embed.embed_shard on a shard vs the bare module calls on the same batches.

The stage reads the shard, sorts sentences into length buckets, calls the ELMo-signature module (embed_batch), writes
every sentence unpadded into HDF5, computes the checksum and renames the file into place. The bare figure is the sum of
the embed_batch times alone over the very same batches (pipeline.batching.length_buckets, embedder.batch_size), after
a warm-up call. Overhead = stage time (after the module is loaded) / bare time - 1; target <= 10%. Loading the
module (tensorflow_hub.load, once per shard job) is reported separately and as an overhead including it.

The stage's time splits into a fixed part (the first call of a freshly loaded module, which embed_shard makes as its
width probe) and a per-sentence part; both are measured, so a --quick run on a few hundred sentences also states the
overhead extrapolated to a full shard (corpus.shard_size sentences). The shards the pipeline itself wrote under
cache/embeddings record both times too (attributes ``module_seconds`` and ``seconds``): they are summarised as well,
the full-size figure from the real run.

    python bench/embed_overhead.py [--quick] [--sentences N] [--repeats R]
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common as c

NAME = "embed_overhead"
TARGET_OVERHEAD = 0.10
QUICK = {"sentences": 384, "repeats": 3}
FULL = {"sentences": None, "repeats": 2}  # None: the whole shard (4,000 sentences)


def shard_source(tmp: Path, limit: int | None) -> tuple[Path, str]:
    """A CoNLL shard: the first real one (cut to ``limit`` sentences), else synthetic sentences."""
    from pipeline.corpus import read_conll, write_conll

    shards = sorted((c.CORPUS_DIR / "shards").glob("train-*.conll")) if c.real_corpus("train") else []
    if shards:
        sentences = read_conll(shards[0])
        source = f"real: {shards[0].relative_to(c.REPO_ROOT)}"
    else:
        sentences = c.synthetic_sentences(limit or 4000)
        source = "synthetic sentences"
    if limit:
        sentences = sentences[:limit]
        source += f" (first {len(sentences)} sentences)"
    path = tmp / "shard.conll"
    write_conll(path, sentences)
    return path, source


def recorded_overheads(paths) -> dict | None:
    """Stage vs module seconds as recorded in the attributes of shards written by the pipeline (None if none)."""
    import h5py

    rows = []
    for path in paths:
        with h5py.File(path, "r") as handle:
            attrs = handle.attrs
            if "module_seconds" not in attrs or "seconds" not in attrs:
                continue
            rows.append({"shard": Path(path).name, "sentences": int(attrs.get("sentences", 0)),
                         "module_s": float(attrs["module_seconds"]), "stage_s": float(attrs["seconds"])})
    if not rows:
        return None
    module, stage = sum(r["module_s"] for r in rows), sum(r["stage_s"] for r in rows)
    for row in rows:
        row["overhead"] = row["stage_s"] / row["module_s"] - 1 if row["module_s"] else None
    return {"shards": rows, "module_s": module, "stage_s": stage, "overhead": stage / module - 1,
            "meets_target": stage / module - 1 <= TARGET_OVERHEAD}


def summarise(bare: list[float], stage_wall: list[float], stage_seconds: list[float], module_seconds: list[float],
              first_calls: list[float], sentences: int, tokens: int, shard_size: int) -> dict:
    """Medians, throughputs and overheads (stage after loading vs bare; including the load; stage-internal), and the
    overhead extrapolated to a ``shard_size``-sentence shard (fixed first-call cost plus per-sentence costs)."""
    bare_s, wall_s = c.median(bare), c.median(stage_wall)
    stage_s, module_s = c.median(stage_seconds), c.median(module_seconds)
    first_call = c.median(first_calls)
    overhead = stage_s / bare_s - 1
    per_sentence_stage = max(0.0, stage_s - first_call) / sentences
    extrapolated = (first_call + per_sentence_stage * shard_size) / (bare_s / sentences * shard_size) - 1
    return {
        "sentences": sentences, "tokens": tokens,
        "bare_module_s": bare_s, "stage_s": stage_s, "stage_with_load_s": wall_s, "load_s": wall_s - stage_s,
        "stage_module_s": module_s,
        "bare_sentences_per_s": sentences / bare_s, "stage_sentences_per_s": sentences / stage_s,
        "stage_with_load_sentences_per_s": sentences / wall_s,
        "bare_tokens_per_s": tokens / bare_s, "stage_tokens_per_s": tokens / stage_s,
        "overhead": overhead, "overhead_with_load": wall_s / bare_s - 1,
        "stage_internal_overhead": stage_s / module_s - 1,
        "first_call_s": first_call,
        "per_sentence_overhead_ms": 1000 * (per_sentence_stage - bare_s / sentences),
        "shard_size": shard_size, "overhead_extrapolated_to_shard": extrapolated,
        "target": TARGET_OVERHEAD, "meets_target": overhead <= TARGET_OVERHEAD,
        "meets_target_at_shard_size": extrapolated <= TARGET_OVERHEAD,
        "runs": {"bare_s": bare, "stage_with_load_s": stage_wall, "stage_s": stage_seconds,
                 "stage_module_s": module_seconds, "first_call_s": first_calls},
    }


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__)
    p.add_argument("--sentences", type=int, help="sentences of the shard to embed (default: quick 384, full all)")
    p.add_argument("--repeats", type=int)
    args = p.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    sizes.update({k: getattr(args, k) for k in ("sentences", "repeats") if getattr(args, k) is not None})
    machine, started = c.start(NAME, args)

    import h5py

    from pipeline.batching import length_buckets
    from pipeline.config import load_config
    from pipeline.corpus import read_conll
    from pipeline.embed import embed_batch, embed_shard, load_embedder

    config = load_config()
    settings, shard_size = config["embedder"], config["corpus"]["shard_size"]
    with c.scratch_dir(NAME) as tmp:
        handle, hub_source = c.embedder_handle(tmp)
        shard, source = shard_source(tmp, sizes["sentences"])
        sentences = read_conll(shard)
        lengths = [len(s) for s in sentences]
        batches = length_buckets(lengths, settings["batch_size"])
        c.say(f"{len(sentences)} sentences ({sum(lengths):,} tokens) in {len(batches)} batches of "
              f"{settings['batch_size']}; embedder {hub_source}")
        signature = load_embedder(handle)
        embed_batch(signature, [sentences[i].words for i in batches[0]])  # warm-up
        provenance = {"embedder_kind": settings["kind"], "corpus_sha256": "bench", "settings": "{}"}
        bare, wall, seconds, module, first_calls = [], [], [], [], []

        def run_first_call():
            fresh = load_embedder(handle)
            with c.Stopwatch() as watch:
                embed_batch(fresh, [sentences[0].words])  # what embed_shard's width probe pays
            first_calls.append(watch.wall)

        def run_bare():
            total = 0.0
            for batch in batches:
                with c.Stopwatch() as watch:
                    embed_batch(signature, [sentences[i].words for i in batch])
                total += watch.wall
            bare.append(total)

        def run_stage(repeat: int):
            out = tmp / f"shard-{repeat}.h5"
            with c.Stopwatch() as watch:
                embed_shard(shard, handle, out, settings["batch_size"], settings["dtype"], provenance)
            wall.append(watch.wall)
            with h5py.File(out, "r") as f:
                seconds.append(float(f.attrs["seconds"]))
                module.append(float(f.attrs["module_seconds"]))
            out.unlink()

        for repeat in range(sizes["repeats"]):
            c.say(f"repeat {repeat + 1}/{sizes['repeats']}: bare module calls, embed_shard, "
                  f"first call of a fresh load ...")
            run_first_call()
            if repeat % 2 == 0:
                run_bare()
                run_stage(repeat)
            else:
                run_stage(repeat)
                run_bare()
    s = summarise(bare, wall, seconds, module, first_calls, len(sentences), sum(lengths), shard_size)
    print()
    print(c.table([
        ["bare embed_batch calls (sum)", s["bare_module_s"], s["bare_sentences_per_s"], s["bare_tokens_per_s"]],
        ["embed_shard after loading", s["stage_s"], s["stage_sentences_per_s"], s["stage_tokens_per_s"]],
        ["embed_shard including load", s["stage_with_load_s"], s["stage_with_load_sentences_per_s"],
         s["tokens"] / s["stage_with_load_s"]],
    ], ["", "seconds", "sentences/s", "tokens/s"]))
    print(f"   overhead of the stage over the bare module calls: {100 * s['overhead']:+.1f}% "
          f"(target <= {100 * TARGET_OVERHEAD:.0f}%: {'met' if s['meets_target'] else 'NOT met'}); "
          f"including the {s['load_s']:.1f} s module load: {100 * s['overhead_with_load']:+.1f}%")
    print(f"   inside the stage: module {s['stage_module_s']:.2f} s of {s['stage_s']:.2f} s "
          f"({100 * s['stage_internal_overhead']:+.1f}% for the width probe, HDF5 writes and the checksum)")
    print(f"   fixed: first call of a freshly loaded module {s['first_call_s']:.2f} s; per sentence: "
          f"{s['per_sentence_overhead_ms']:+.2f} ms over the bare calls -> extrapolated to a {shard_size:,}-sentence "
          f"shard: {100 * s['overhead_extrapolated_to_shard']:+.1f}% "
          f"({'met' if s['meets_target_at_shard_size'] else 'NOT met'})")
    recorded = recorded_overheads(c.real_shards("*"))
    if recorded:
        s["recorded_by_pipeline"] = recorded
        overheads = [r["overhead"] for r in recorded["shards"] if r["overhead"] is not None]
        print(f"   recorded by the pipeline in {len(recorded['shards'])} shards under cache/embeddings: stage "
              f"{recorded['stage_s']:.0f} s vs module {recorded['module_s']:.0f} s -> "
              f"{100 * recorded['overhead']:+.0f}% "
              f"(per shard {100 * min(overheads):+.0f}% .. {100 * max(overheads):+.0f}%; target "
              f"{'met' if recorded['meets_target'] else 'NOT met'})")
    data = {"shard": source, "embedder": hub_source, "embedder_settings": settings, "sizes": sizes}
    c.finish(NAME, s, args, data, machine, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
