"""Stage 4: entity-level evaluation on the test split with seqeval.

Writes ``metrics.json`` (precision, recall, F1 and support per entity type; micro, macro and weighted averages;
token accuracy over real tokens only), ``report.txt`` (seqeval's table) and ``predictions.conll`` (word, gold,
predicted: one token per line, a blank line between sentences).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

import keras
from seqeval.metrics import classification_report

from pipeline.cache import EmbeddingCache, check_shards_agree
from pipeline.decode import decode_all
from pipeline.logs import atomic_path, get_logger
from pipeline.model import uses_layers
from pipeline.tasks import get_task, token_accuracy
from pipeline.words import TokenFeatures
from pipeline.train import MODEL_FILE, predict_probabilities

log = get_logger(__name__)
REPORT_DIGITS = 4
AVERAGES = ("micro avg", "macro avg", "weighted avg")


def entity_metrics(gold: list[list[str]], predicted: list[list[str]]) -> dict:
    """seqeval's per-type and averaged scores plus token accuracy, as plain JSON-ready numbers."""
    report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    per_type = {k: {m: float(v) for m, v in values.items()} for k, values in report.items() if k not in AVERAGES}
    averages = {k.replace(" avg", ""): {m: float(v) for m, v in report[k].items()} for k in AVERAGES if k in report}
    correct = sum(g == p for gs, ps in zip(gold, predicted) for g, p in zip(gs, ps))
    total = sum(len(gs) for gs in gold)
    return {"per_type": per_type, "averages": averages, "token_accuracy": correct / max(total, 1),
            "sentences": len(gold), "tokens": total}


def write_predictions(path: Path, words, gold, predicted) -> None:
    """CoNLL columns: word, gold tag, predicted tag."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as out:
        for ws, gs, ps in zip(words, gold, predicted):
            for w, g, p in zip(ws, gs, ps):
                out.write(f"{w}\t{g}\t{p}\n")
            out.write("\n")


def token_level_metrics(gold: list[list[str]], predicted: list[list[str]]) -> dict:
    """For token-level tasks (POS): accuracy overall and per gold tag."""
    per_tag: dict[str, list[int]] = {}
    for gs, ps in zip(gold, predicted):
        for g, p in zip(gs, ps):
            counts = per_tag.setdefault(g, [0, 0])
            counts[0] += g == p
            counts[1] += 1
    return {"token_accuracy": token_accuracy(gold, predicted), "sentences": len(gold),
            "tokens": sum(len(g) for g in gold),
            "per_tag": {t: {"accuracy": c / n, "support": n} for t, (c, n) in sorted(per_tag.items())}}


def cached_split_probabilities(run_dir: Path, test_shards: Sequence[str]) -> tuple[list[str], list, EmbeddingCache]:
    """(tags, per-sentence [length, tags] probabilities, the cache) of the run's model on the cached test shards,
    after checking that the shards come from the embedder and corpus the run was trained on."""
    tags = json.loads((run_dir / "tags.json").read_text())
    embedder = json.loads((run_dir / "embedder.json").read_text())
    cache = EmbeddingCache(test_shards, in_memory=True)
    check_shards_agree(cache.infos, {k: embedder[k] for k in ("embedder_handle", "width", "corpus_sha256")})
    model = keras.models.load_model(run_dir / MODEL_FILE)
    cache.use_features(TokenFeatures.load(run_dir), uses_layers(model))
    return tags, predict_probabilities(model, cache), cache


def evaluate(run_dir: str | Path, test_shards: Sequence[str], decode_method: str, out_dir: str | Path) -> dict:
    """Tag the cached test split with the run's model and write metrics, report and predictions to ``out_dir``.

    The task (NER by default, or POS) comes from the run's training summary; token-level tasks decode by argmax and
    report token accuracy, since entity spans mean nothing for them.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary_file = run_dir / "training_summary.json"
    task = get_task(json.loads(summary_file.read_text()).get("task", "ner") if summary_file.is_file() else "ner")
    tags, probabilities, cache = cached_split_probabilities(run_dir, test_shards)
    decode_method = decode_method if task.decode == "bio_viterbi" else task.decode
    predicted = decode_all(probabilities, tags, decode_method)
    gold = cache.column(task.column)
    if task.score_name != "entity_f1":
        return write_token_level(task.name, gold, predicted, cache.column("words"), decode_method, run_dir, out_dir)
    metrics = entity_metrics(gold, predicted) | {"task": task.name, "decode": decode_method, "run_dir": str(run_dir)}
    with atomic_path(out_dir / "metrics.json") as tmp:
        Path(tmp).write_text(json.dumps(metrics, indent=1))
    text = classification_report(gold, predicted, digits=REPORT_DIGITS, zero_division=0)
    with atomic_path(out_dir / "report.txt") as tmp:
        Path(tmp).write_text(text + f"\ntoken accuracy (real tokens only): {metrics['token_accuracy']:.4f}\n")
    write_predictions(out_dir / "predictions.conll", cache.column("words"), gold, predicted)
    log.info("test entity F1 (micro) %.4f\n%s", metrics["averages"]["micro"]["f1-score"], text)
    return metrics


def write_token_level(task: str, gold, predicted, words, decode_method: str, run_dir: Path, out_dir: Path) -> dict:
    """metrics.json, report.txt and predictions.conll of a token-level task."""
    metrics = token_level_metrics(gold, predicted) | {"task": task, "decode": decode_method, "run_dir": str(run_dir)}
    with atomic_path(out_dir / "metrics.json") as tmp:
        Path(tmp).write_text(json.dumps(metrics, indent=1))
    lines = [f"{t:>8}  accuracy {v['accuracy']:.4f}  support {v['support']}" for t, v in metrics["per_tag"].items()]
    with atomic_path(out_dir / "report.txt") as tmp:
        Path(tmp).write_text("\n".join(lines) + f"\n\ntoken accuracy: {metrics['token_accuracy']:.4f}\n")
    write_predictions(out_dir / "predictions.conll", words, gold, predicted)
    log.info("%s test token accuracy %.4f", task, metrics["token_accuracy"])
    return metrics


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.evaluate``: the Snakemake entry point."""
    parser = argparse.ArgumentParser(description="Evaluate a trained tagger on the cached test split (seqeval).")
    parser.add_argument("--run", required=True, help="run directory written by pipeline.train")
    parser.add_argument("--test", nargs="+", required=True, help="test HDF5 shards")
    parser.add_argument("--decode", default="bio_viterbi", choices=["bio_viterbi", "argmax"])
    parser.add_argument("--out", required=True, help="directory for metrics.json, report.txt, predictions.conll")
    args = parser.parse_args(argv)
    evaluate(args.run, args.test, args.decode, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
