"""Tagging speed of a trained run: ``pipeline.load(run_dir).tag(texts)``.

Reports the load time (model + embedder, with its width check), sentences per second when a large batch of texts is
tagged in one call (length-bucketed through the embedder and the model, BIO-Viterbi decoding, entity spans), and the
median latency of tagging a single sentence. Texts are the test split's sentences (cache/corpus/test.conll), else
synthetic ones.

The run directory is results/ner (or --run-dir). When it does not exist yet, a stand-in run is written to a temporary
directory: the same tagger architecture, untrained, saved with the embedder the pipeline would use (cache/bilm/hub,
else a random-weight export of the configured biLM); speed does not depend on the weights, and the output says so.

TensorFlow's threads are set as ``ner tag`` sets them (one thread per op, ``pipeline.tagger.use_inference_threads``);
``--default-threads`` keeps TensorFlow's own defaults instead, to compare the two.

    python bench/tagging.py [--quick] [--run-dir results/ner] [--sentences N] [--single N] [--default-threads]
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench import common as c

NAME = "tagging"
QUICK = {"sentences": 256, "single": 15, "repeats": 2}
FULL = {"sentences": 2000, "single": 60, "repeats": 3}
RUN_FILES = ("model.keras", "tags.json", "embedder.json")


def stand_in_run(tmp: Path) -> tuple[Path, str]:
    """An untrained tagger of the pipeline's architecture saved as a run directory, with the default embedder."""
    from pipeline.config import load_config
    from pipeline.embed import embed_batch, load_embedder
    from pipeline.model import build_tagger

    handle, hub_source = c.embedder_handle(tmp)
    width = embed_batch(load_embedder(handle), [["probe"]]).shape[-1]
    config = load_config()
    tags = c.corpus_tags()
    train = config["train"]
    model = build_tagger(width, len(tags), train["units"], train["dropout"], train["recurrent_dropout"])
    run = tmp / "run"
    run.mkdir()
    model.save(run / "model.keras")
    (run / "tags.json").write_text(json.dumps(tags))
    record = {"embedder_handle": str(Path(handle).resolve()), "embedder_kind": config["embedder"]["kind"],
              "width": int(width), "dtype": config["embedder"]["dtype"]}
    (run / "embedder.json").write_text(json.dumps(record))
    return run, f"stand-in: untrained tagger of the same architecture (no trained run yet), embedder {hub_source}"


def latency_stats(seconds: list[float]) -> dict:
    values = np.asarray(seconds)
    return {"median_ms": 1000 * float(np.median(values)), "p90_ms": 1000 * float(np.percentile(values, 90)),
            "min_ms": 1000 * float(values.min()), "max_ms": 1000 * float(values.max()), "count": len(values)}


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__)
    p.add_argument("--run-dir", type=Path, default=c.REPO_ROOT / "results" / "ner")
    p.add_argument("--sentences", type=int, help="sentences in the large batch")
    p.add_argument("--single", type=int, help="single-sentence calls timed for the latency")
    p.add_argument("--repeats", type=int)
    p.add_argument("--default-threads", action="store_true",
                   help="keep TensorFlow's default threads instead of those ner tag sets")
    args = p.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    sizes.update({k: getattr(args, k) for k in ("sentences", "single", "repeats") if getattr(args, k) is not None})
    machine, started = c.start(NAME, args)

    import pipeline
    from pipeline.tagger import use_inference_threads

    threads = "tensorflow defaults" if args.default_threads else "ner tag's (one per op)"
    if not args.default_threads:
        use_inference_threads()
    with c.scratch_dir(NAME) as tmp:
        if all((args.run_dir / f).is_file() for f in RUN_FILES) and not args.synthetic:
            run_dir, run_source = args.run_dir, f"real: {args.run_dir}"
        else:
            print(f"   {args.run_dir} holds no trained run yet: timing a stand-in (untrained weights, same "
                  f"architecture and embedder; speed does not depend on the weights)")
            run_dir, run_source = stand_in_run(tmp)
        sentences, text_source = c.read_sentences("test", limit=sizes["sentences"] + sizes["single"] + 8)
        texts = [" ".join(s.words) for s in sentences]
        batch_texts, single_texts = texts[: sizes["sentences"]], texts[sizes["sentences"]:][: sizes["single"]]
        c.say(f"loading {run_source} ...")
        with c.Stopwatch() as load_watch:
            tagger = pipeline.load(run_dir)
        c.say(f"loaded in {load_watch.wall:.1f} s; warming up on {len(batch_texts)} texts ...")
        tagged = tagger.tag(batch_texts)
        out_sentences = len(tagged)
        out_tokens = sum(len(s.tokens) for s in tagged)
        for text in texts[-8:]:
            tagger.tag([text])
        c.say(f"timing the large batch ({sizes['repeats']} repeats) and {len(single_texts)} single sentences ...")
        batch = c.measure(lambda: tagger.tag(batch_texts), repeats=sizes["repeats"], warmup=0)
        single = []
        for text in single_texts:
            with c.Stopwatch() as watch:
                tagger.tag([text])
            single.append(watch.wall)
    latency = latency_stats(single)
    result = {
        "run": run_source, "load_s": load_watch.wall,
        "batch": {"texts": len(batch_texts), "sentences": out_sentences, "tokens": out_tokens,
                  "seconds": batch.to_dict(), "sentences_per_s": out_sentences / batch.median,
                  "tokens_per_s": out_tokens / batch.median, "sentences_per_cpu_s": out_sentences / batch.median_cpu},
        "single_sentence_latency": latency, "tagger_batch_size": tagger.batch_size, "decode": tagger.decode,
        "tensorflow_threads": threads,
    }
    print()
    print(c.table([
        ["load (model + embedder + width check)", f"{load_watch.wall:.2f} s", ""],
        [f"large batch: {len(batch_texts)} texts -> {out_sentences} sentences, {out_tokens:,} tokens",
         f"{batch.median:.2f} s", f"{result['batch']['sentences_per_s']:.1f} sentences/s "
                                  f"({result['batch']['tokens_per_s']:,.0f} tokens/s)"],
        [f"single sentence ({latency['count']} calls)", f"median {latency['median_ms']:.0f} ms",
         f"p90 {latency['p90_ms']:.0f} ms, min {latency['min_ms']:.0f} ms"],
    ], ["", "time", "rate"]))
    c.finish(NAME, result, args, {"texts": text_source, "run": run_source, "sizes": sizes}, machine, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
