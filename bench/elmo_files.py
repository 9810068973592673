"""Embedding with the published ELMo's files: an original-size bilm-tf model (elmo_2x4096_512_2048cnn_2xhighway, 93.6 M
parameters) exported from options.json + weights.hdf5 and run by the embed stage's own calls.

What a user of ``embedder.kind: elmo_files`` waits for: the one-off export (read the files, build, write the
SavedModel), loading the SavedModel (once per embed job), and the embedding itself, in sentences and tokens per second
on this machine, extrapolated to the whole corpus (47,959 sentences). The sentences are a random sample of the real
corpus splits under cache/corpus when present (else synthetic corpus-like sentences), embedded in the stage's
length-sorted batches of ``embedder.batch_size`` through ``pipeline.embed.embed_batch``, after one warm-up batch.
Speed does not depend on the weights, so without ``--options/--weights`` the script writes random-weight files of the
original size (the test suite checks the numbers themselves against a numpy forward pass).

    python bench/elmo_files.py [--quick] [--sentences N] [--options FILE --weights FILE]
"""
from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common as c

NAME = "elmo_files"
#: Sentences of the whole corpus (ner_dataset.csv: train + validation + test).
CORPUS_SENTENCES = 47_959
QUICK = {"sentences": 48}
FULL = {"sentences": 384}
RANDOM_WEIGHT_SCALE = 0.02


def write_random_files(directory: Path, seed: int = 0) -> tuple[Path, Path, int]:
    """Original-size options + weights files with random weights; returns (options, weights, parameter count)."""
    import json

    import h5py
    import numpy as np

    from pipeline.bilm.elmo_files import ORIGINAL_ELMO_OPTIONS, ElmoFileOptions, expected_shapes

    directory.mkdir(parents=True, exist_ok=True)
    options = ElmoFileOptions.from_json(ORIGINAL_ELMO_OPTIONS, "bench")
    rng = np.random.default_rng(seed)
    parameters = 0
    (directory / "options.json").write_text(json.dumps(ORIGINAL_ELMO_OPTIONS))
    with h5py.File(directory / "weights.hdf5", "w") as handle:
        for name, shape in expected_shapes(options).items():
            values = rng.standard_normal(shape, dtype=np.float32) * np.float32(RANDOM_WEIGHT_SCALE)
            handle.create_dataset(name, data=values)
            parameters += values.size
    return directory / "options.json", directory / "weights.hdf5", parameters


def sample_sentences(count: int, seed: int = 0) -> tuple[list[list[str]], str, int | None]:
    """A random sample of the corpus's sentences (all splits), else synthetic ones; plus the corpus's token count."""
    import numpy as np

    from pipeline.corpus import read_conll

    paths = [c.real_corpus(split) for split in ("train", "val", "test")]
    if all(paths):
        sentences = [s.words for path in paths for s in read_conll(path)]
        picked = np.random.default_rng(seed).choice(len(sentences), size=min(count, len(sentences)), replace=False)
        return ([sentences[i] for i in picked], f"real: random sample of {len(sentences):,} sentences in cache/corpus",
                sum(len(s) for s in sentences))
    return [s.words for s in c.synthetic_sentences(count, seed)], "synthetic corpus-like sentences", None


def summarise(sentences: int, tokens: int, seconds: float, corpus_tokens: int | None, cpu_seconds: float,
              cores: int) -> dict:
    """Throughput and the whole corpus's embedding time, extrapolated by sentences and (when known) by tokens.

    On a machine shared with other jobs the wall time measures the share of the cores this process got, so the CPU
    time is extrapolated too: ``corpus_cpu_hours`` of work, and that divided by the usable cores as the time on the
    same cores idle (a lower bound: it assumes the work spreads perfectly over them).
    """
    result = {
        "sentences": sentences, "tokens": tokens, "embed_s": seconds, "embed_cpu_s": cpu_seconds,
        "sentences_per_s": sentences / seconds, "tokens_per_s": tokens / seconds,
        "cores_busy": cpu_seconds / seconds, "usable_cores": cores,
        "corpus_sentences": CORPUS_SENTENCES,
        "corpus_hours_by_sentences": CORPUS_SENTENCES / (sentences / seconds) / 3600,
        "corpus_cpu_hours": CORPUS_SENTENCES * cpu_seconds / sentences / 3600,
    }
    result["corpus_hours_on_idle_cores"] = result["corpus_cpu_hours"] / cores
    if corpus_tokens:
        result["corpus_tokens"] = corpus_tokens
        result["corpus_hours_by_tokens"] = corpus_tokens / (tokens / seconds) / 3600
    return result


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__)
    p.add_argument("--sentences", type=int, help="sentences to embed (default: quick 48, full 384)")
    p.add_argument("--options", type=Path, help="a real bilm-tf options file (with --weights)")
    p.add_argument("--weights", type=Path, help="a real bilm-tf weights file (with --options)")
    args = p.parse_args(argv)
    if bool(args.options) != bool(args.weights):
        p.error("--options and --weights go together")
    sizes = dict(QUICK if args.quick else FULL)
    if args.sentences:
        sizes["sentences"] = args.sentences
    machine, started = c.start(NAME, args)

    from pipeline.batching import length_buckets
    from pipeline.bilm.export import export_elmo_files
    from pipeline.config import load_config
    from pipeline.embed import embed_batch, load_embedder

    batch_size = load_config()["embedder"]["batch_size"]
    sentences, source, corpus_tokens = sample_sentences(sizes["sentences"])
    lengths = [len(s) for s in sentences]
    results: dict = {"batch_size": batch_size}
    with c.scratch_dir(NAME) as tmp:
        if args.options:
            options_path, weights_path, files = args.options, args.weights, f"given: {args.options}, {args.weights}"
        else:
            c.say("writing original-size options + weights files with random weights ...")
            with c.Stopwatch() as watch:
                options_path, weights_path, parameters = write_random_files(tmp / "files")
            results |= {"parameters": parameters, "write_random_files_s": watch.wall}
            files = f"random weights, elmo_2x4096_512_2048cnn_2xhighway sizes ({parameters / 1e6:.1f} M parameters)"
        c.say("exporting the files as the ELMo-signature SavedModel (python -m pipeline.bilm.export --options ...) ...")
        with c.Stopwatch() as watch:
            export_elmo_files(options_path, weights_path, tmp / "hub")
        results["export_s"] = watch.wall
        with c.Stopwatch() as watch:
            signature = load_embedder(str(tmp / "hub"))
        results["load_s"] = watch.wall
        batches = length_buckets(lengths, batch_size)
        c.say(f"{len(sentences)} sentences ({sum(lengths):,} tokens) in {len(batches)} batches of {batch_size}; "
              f"one warm-up batch first")
        with c.Stopwatch() as watch:
            embed_batch(signature, [sentences[i] for i in batches[0]])
        results["warm_up_batch_s"] = watch.wall
        with c.Stopwatch() as watch:
            for batch in batches:
                embed_batch(signature, [sentences[i] for i in batch])
    results |= summarise(len(sentences), sum(lengths), watch.wall, corpus_tokens, watch.cpu, machine["usable_cores"])
    rows = [["export (read files, build, write SavedModel)", results["export_s"]],
            ["load the SavedModel (each embed job)", results["load_s"]],
            [f"embed {len(sentences)} sentences ({sum(lengths):,} tokens)", results["embed_s"]]]
    print()
    print(c.table(rows, ["", "seconds"]))
    print(f"   {results['sentences_per_s']:.2f} sentences/s, {results['tokens_per_s']:.1f} tokens/s "
          f"({results['cores_busy']:.2f} of {results['usable_cores']} cores busy); the whole corpus "
          f"({CORPUS_SENTENCES:,} sentences): {results['corpus_hours_by_sentences']:.1f} h"
          + (f" ({results['corpus_hours_by_tokens']:.1f} h by its {corpus_tokens:,} tokens)" if corpus_tokens else ""))
    print(f"   CPU time: {results['corpus_cpu_hours']:.2f} core-hours for the corpus, so at least "
          f"{results['corpus_hours_on_idle_cores']:.2f} h on {results['usable_cores']} idle cores")
    data = {"sentences": source, "files": files, "sizes": sizes}
    c.finish(NAME, results, args, data, machine, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
