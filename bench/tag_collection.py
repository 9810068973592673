"""Tagging a document collection through the Snakefile (``snakemake tag_collection``): documents/s and tokens/s with
one job at a time and with two jobs side by side, and what each shard job spends loading the model (Python and
TensorFlow start included) against tagging.

The collection is written to a scratch directory: documents of corpus sentences (the test split when cache/corpus
exists, else synthetic ones), one sentence per paragraph, half as plain text files and half as one gzipped JSON-lines
file. The run is results/ner when it has been trained, else the stand-in of bench/tagging.py (same architecture and
embedder, untrained: speed does not depend on the weights). Each mode runs the whole target from an empty output
directory: plan, the shard jobs, merge. Modes, on the cores this machine has:

* ``1 job x 1 thread``  : ``--cores 1``, shards one after another;
* ``1 job x 2 threads`` : ``--cores 2 --set-threads tag_shard=2``, one job at a time using both cores;
* ``2 jobs x 1 thread`` : ``--cores 2``, two shards side by side (the rule's default threads: 1).

    python bench/tag_collection.py [--quick] [--documents N] [--sentences-per-document N] [--shard-sentences N]
"""
from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from bench import common as c
from bench.tagging import RUN_FILES, stand_in_run

NAME = "tag_collection"
QUICK = {"documents": 48, "sentences_per_document": 10, "shard_sentences": 120}
FULL = {"documents": 400, "sentences_per_document": 10, "shard_sentences": 1000}
#: (label, snakemake options) of each mode.
MODES = (
    ("1 job x 1 thread", ["--cores", "1"]),
    ("1 job x 2 threads", ["--cores", "2", "--set-threads", "tag_shard=2"]),
    ("2 jobs x 1 thread", ["--cores", "2"]),
)
WORKFLOW_ITEMS = ("Snakefile", "workflow", "config", "profiles")


def write_collection(directory: Path, sentences: list, per_document: int) -> int:
    """Documents of ``per_document`` sentences (one per paragraph): the first half as .txt files, the rest as one
    .jsonl.gz; returns the number of documents."""
    directory.mkdir(parents=True)
    texts = ["\n\n".join(" ".join(s.words) for s in sentences[i:i + per_document])
             for i in range(0, len(sentences), per_document)]
    half = len(texts) // 2
    for number, text in enumerate(texts[:half]):
        (directory / f"doc-{number:05d}.txt").write_text(text + "\n", encoding="utf-8")
    lines = "".join(json.dumps({"id": f"json-{n}", "text": text}) + "\n" for n, text in enumerate(texts[half:]))
    (directory / "more.jsonl.gz").write_bytes(gzip.compress(lines.encode()))
    return len(texts)


def workflow_directory(root: Path) -> Path:
    """The Snakefile, rules, config and profiles in a scratch directory (its .snakemake/ stays out of the project)."""
    root.mkdir(parents=True)
    for item in WORKFLOW_ITEMS:
        source = c.REPO_ROOT / item
        (shutil.copytree if source.is_dir() else shutil.copy)(source, root / item)
    return root


def run_mode(workdir: Path, label: str, options: list[str], tag: dict) -> dict:
    """One full ``snakemake tag_collection`` from an empty output directory; its wall time and summary."""
    out = f"out-{label.replace(' ', '')}"
    config = workdir / f"{out}.yaml"
    config.write_text(yaml.safe_dump({"tag": tag | {"out": out}}))
    command = [sys.executable, "-m", "snakemake", "tag_collection", *options, "--configfile", str(config)]
    with c.Stopwatch() as watch:
        result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"snakemake failed ({label}):\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
    summary = json.loads((workdir / out / "summary.json").read_text())
    shards = summary["shards"]
    rate = summary["throughput"]
    return {
        "wall_s": round(watch.wall, 1), "documents": summary["documents"], "tokens": summary["tokens"],
        "sentences": summary["sentences"], "shards": len(shards),
        "documents_per_s": round(summary["documents"] / watch.wall, 2),
        "tokens_per_s": round(summary["tokens"] / watch.wall, 1),
        "shard_span_s": rate["wall_seconds"], "tokens_per_s_over_shards": rate["tokens_per_second"],
        "load_s_per_shard": round(rate["load_seconds"] / len(shards), 2),
        "tag_s_per_shard": round(rate["tag_seconds"] / len(shards), 2),
        "load_share": rate["load_share"], "tokens_per_job_second": rate["tokens_per_job_second"],
    }


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__)
    p.add_argument("--run-dir", type=Path, default=c.REPO_ROOT / "results" / "ner")
    p.add_argument("--documents", type=int, help="documents in the collection")
    p.add_argument("--sentences-per-document", type=int)
    p.add_argument("--shard-sentences", type=int, help="tag.shard_sentences of the runs")
    args = p.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    sizes.update({k: getattr(args, k) for k in sizes if getattr(args, k) is not None})
    machine, started = c.start(NAME, args)
    with c.scratch_dir(NAME) as tmp:
        if all((args.run_dir / f).is_file() for f in RUN_FILES) and not args.synthetic:
            run_dir, run_source = args.run_dir, f"real: {args.run_dir}"
        else:
            c.say(f"{args.run_dir} holds no trained run: timing the stand-in of bench/tagging.py")
            run_dir, run_source = stand_in_run(tmp)
        sentences, text_source = c.read_sentences("test", limit=sizes["documents"] * sizes["sentences_per_document"])
        workdir = workflow_directory(tmp / "work")
        documents = write_collection(workdir / "docs", sentences, sizes["sentences_per_document"])
        tag = {"input": "docs", "run": str(Path(run_dir).resolve()), "shard_sentences": sizes["shard_sentences"]}
        results = {}
        for label, options in MODES:
            c.say(f"{label}: tagging {documents} documents ...")
            results[label] = run_mode(workdir, label, options, tag)
            c.say(f"{label}: {results[label]['wall_s']} s")
    print()
    print(c.table([[label, r["wall_s"], r["documents_per_s"], r["tokens_per_s"], r["shards"], r["load_s_per_shard"],
                    r["tag_s_per_shard"], r["load_share"]] for label, r in results.items()],
                  ["mode", "wall s", "docs/s", "tokens/s", "shards", "load s/shard", "tag s/shard", "load share"]))
    c.finish(NAME, {"modes": results}, args, {"texts": text_source, "run": run_source, "sizes": sizes,
                                              "documents": documents}, machine, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
