"""Figures and tables people look at rather than read, for ``snakemake --report report.html``.

From a run directory and its test evaluation: the metrics table (per type and averaged P/R/F1), a per-type F1 chart,
a confusion matrix of entity types (exact-span matches; gold entities with no exact prediction are "missed",
predictions with no exact gold entity are "spurious"), the learned scalar-mix weights per layer, and sample test
sentences with gold and predicted entities highlighted. Learning curves are written by the training stage.
"""
from __future__ import annotations

import argparse
import html
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from seqeval.metrics.sequence_labeling import get_entities  # noqa: E402

from pipeline.logs import atomic_path, get_logger  # noqa: E402

log = get_logger(__name__)
MISSED = "missed"
SPURIOUS = "spurious"
LAYER_NAMES = ("word_emb (char CNN)", "lstm_outputs1", "lstm_outputs2")
SAMPLE_SENTENCES = 25
SAMPLE_SEED = 0
FIGURE_DPI = 100
GOLD_COLOUR = "#c6e5ff"
PREDICTED_COLOUR = "#ffe0b3"


def read_predictions(path: str | Path) -> list[tuple[list[str], list[str], list[str]]]:
    """Sentences of (words, gold, predicted) from a predictions.conll file."""
    sentences, current = [], ([], [], [])
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line:
            if current[0]:
                sentences.append(current)
            current = ([], [], [])
            continue
        word, gold, predicted = line.split("\t")
        for column, value in zip(current, (word, gold, predicted)):
            column.append(value)
    if current[0]:
        sentences.append(current)
    return sentences


def entity_confusion(sentences) -> tuple[list[str], list[str], np.ndarray]:
    """Counts of (gold type or spurious) x (predicted type or missed) over exact entity spans."""
    pairs: Counter = Counter()
    for _, gold, predicted in sentences:
        gold_spans = {(s, e): t for t, s, e in get_entities(gold)}
        predicted_spans = {(s, e): t for t, s, e in get_entities(predicted)}
        for span, kind in gold_spans.items():
            pairs[(kind, predicted_spans.get(span, MISSED))] += 1
        for span, kind in predicted_spans.items():
            if span not in gold_spans:
                pairs[(SPURIOUS, kind)] += 1
    types = sorted({k for pair in pairs for k in pair} - {MISSED, SPURIOUS})
    rows, columns = types + [SPURIOUS], types + [MISSED]
    matrix = np.zeros((len(rows), len(columns)), dtype=np.int64)
    for (gold, predicted), count in pairs.items():
        matrix[rows.index(gold), columns.index(predicted)] = count
    return rows, columns, matrix


def plot_confusion(rows: Sequence[str], columns: Sequence[str], matrix: np.ndarray, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(8, 6.5))
    shown = np.log1p(matrix)
    axis.imshow(shown, cmap="Blues")
    axis.set_xticks(range(len(columns)), columns, rotation=45, ha="right")
    axis.set_yticks(range(len(rows)), rows)
    axis.set_xlabel("predicted entity type")
    axis.set_ylabel("gold entity type")
    for i in range(len(rows)):
        for j in range(len(columns)):
            if matrix[i, j]:
                colour = "white" if shown[i, j] > shown.max() * 0.6 else "black"
                axis.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=8, color=colour)
    axis.set_title("Entity confusion on the test split (exact spans)")
    save_figure(figure, path)


def plot_per_type_f1(metrics: dict, path: Path) -> None:
    per_type = metrics["per_type"]
    kinds = sorted(per_type, key=lambda k: -per_type[k]["support"])
    figure, axis = plt.subplots(figsize=(8, 4))
    bars = axis.bar(kinds, [per_type[k]["f1-score"] for k in kinds], color="tab:blue")
    for bar, kind in zip(bars, kinds):
        axis.text(bar.get_x() + bar.get_width() / 2, bar.get_height() + 0.01, f"n={int(per_type[kind]['support'])}",
                  ha="center", fontsize=8)
    axis.axhline(metrics["averages"]["micro"]["f1-score"], color="tab:red", linestyle="--", label="micro F1")
    axis.set_ylim(0, 1.08)
    axis.set_ylabel("entity F1 (test)")
    axis.legend(loc="lower left")
    axis.set_title("F1 per entity type (sorted by frequency)")
    save_figure(figure, path)


def plot_layer_weights(mix: dict, path: Path) -> None:
    figure, axis = plt.subplots(figsize=(6, 3.5))
    if mix["layer_weights"]:
        axis.bar(LAYER_NAMES, mix["layer_weights"], color="tab:purple")
        axis.set_ylabel("softmax-normalised weight")
        axis.set_title(f"Learned scalar mix (gamma = {mix['gamma']:.3f})")
    else:  # a run trained with train.use_elmo false: there is no mix, and the report says so instead of failing
        axis.text(0.5, 0.5, "trained without the ELMo layers (train.use_elmo: false)", ha="center", va="center")
        axis.set_axis_off()
    save_figure(figure, path)


def save_figure(figure, path: Path) -> None:
    figure.tight_layout()
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format=path.suffix.lstrip("."), dpi=FIGURE_DPI)
    plt.close(figure)


def metrics_table_html(metrics: dict) -> str:
    """An HTML table of P/R/F1/support per type and averaged."""
    rows = [(k, v) for k, v in sorted(metrics["per_type"].items())] + list(metrics["averages"].items())
    cells = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{v['precision']:.4f}</td><td>{v['recall']:.4f}</td>"
        f"<td><b>{v['f1-score']:.4f}</b></td><td>{int(v['support'])}</td></tr>"
        for name, v in rows
    )
    return ("<table border='1' cellpadding='4'><tr><th>entity type</th><th>precision</th><th>recall</th><th>F1</th>"
            f"<th>support</th></tr>{cells}</table><p>token accuracy (real tokens only): "
            f"{metrics['token_accuracy']:.4f}; decoding: {html.escape(metrics.get('decode', ''))}</p>")


def highlighted(words: Sequence[str], tags: Sequence[str], colour: str) -> str:
    """Words with entity spans shaded and labelled by type."""
    out, spans = [], {s: (e, t) for t, s, e in get_entities(list(tags))}
    i = 0
    while i < len(words):
        if i in spans:
            end, kind = spans[i]
            text = html.escape(" ".join(words[i : end + 1]))
            out.append(f"<span style='background:{colour};padding:1px'>{text} <sub>{kind}</sub></span>")
            i = end + 1
        else:
            out.append(html.escape(words[i]))
            i += 1
    return " ".join(out)


def samples_html(sentences, count: int = SAMPLE_SENTENCES, seed: int = SAMPLE_SEED) -> str:
    """Random test sentences with entities, gold above predicted; mismatches listed first."""
    with_entities = [s for s in sentences if any(t != "O" for t in s[1])]
    rng = np.random.default_rng(seed)
    chosen = [with_entities[i] for i in rng.permutation(len(with_entities))[:count]]
    chosen.sort(key=lambda s: s[1] == s[2])
    blocks = []
    for words, gold, predicted in chosen:
        status = "exact" if gold == predicted else "<b style='color:#b00'>differs</b>"
        blocks.append(f"<p>{status}<br>gold: {highlighted(words, gold, GOLD_COLOUR)}<br>"
                      f"pred: {highlighted(words, predicted, PREDICTED_COLOUR)}</p>")
    return "\n".join(blocks)


def write_html(path: Path, title: str, body: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
                             f"<h2>{html.escape(title)}</h2>{body}", encoding="utf-8")


def build_report(run_dir: str | Path, out_dir: str | Path) -> None:
    """Write every report part for ``run_dir`` (and its ``test/`` evaluation) into ``out_dir``."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = json.loads((run_dir / "test" / "metrics.json").read_text())
    sentences = read_predictions(run_dir / "test" / "predictions.conll")
    write_html(out_dir / "metrics.html", "Test-split entity metrics (seqeval)", metrics_table_html(metrics))
    plot_per_type_f1(metrics, out_dir / "per_type_f1.png")
    plot_confusion(*entity_confusion(sentences), out_dir / "entity_confusion.png")
    plot_layer_weights(json.loads((run_dir / "layer_weights.json").read_text()), out_dir / "layer_weights.png")
    write_html(out_dir / "samples.html", "Sample test sentences: gold (blue) and predicted (orange) entities",
               samples_html(sentences))
    log.info("report parts written to %s", out_dir)


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.report``: the Snakemake entry point."""
    parser = argparse.ArgumentParser(description="Build the report figures and tables of a trained, evaluated run.")
    parser.add_argument("--run", required=True, help="run directory (with test/ written by pipeline.evaluate)")
    parser.add_argument("--out", required=True, help="directory for the report parts")
    args = parser.parse_args(argv)
    build_report(args.run, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
