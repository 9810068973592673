"""Stage: compare the experiments' runs (``snakemake experiments``): one table, two figures, a seed-noise verdict.

For each experiment, from its runs' own files (``test/metrics.json`` and ``training_summary.json``): the test score
(entity micro F1 for NER, token accuracy for POS) as mean and sample standard deviation over the seeds, each seed's
value, the mean F1 per entity type, the best epoch and epochs run, and the training time. Optionally the seed ensemble
of the experiment's runs: their per-token tag probabilities on the cached test split, computed by the evaluate
stage's own code, averaged and decoded once (averaging before the BIO-constrained decoder keeps every answer a valid
tagging).

The seed-noise rule, stated in the summary: a difference between an experiment's mean and the reference's counts only
when it is at least ``max(noise_floor, 2 * sqrt(sd_a^2 / n_a + sd_b^2 / n_b))``: the project's floor (0.004 by
default, the spread seen between training seeds of one setting) or twice the standard error of the difference of the
two means, whichever is larger. With one seed the spread is unknown and only the floor applies.

Writes ``summary.md``, ``summary.csv``, ``summary.html`` (the table, for ``snakemake --report``), ``scores.png``
(each experiment's mean and spread with every seed's point) and ``per_type_f1.png`` (a heat map of the mean F1 per
entity type and experiment).
"""
from __future__ import annotations

import argparse
import csv
import html
import io
import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from pipeline.logs import atomic_path, exit_status, get_logger
from pipeline.report import plt, save_figure, write_html

log = get_logger(__name__)
SCORE_DIGITS = 4
TYPE_DIGITS = 3
#: Standard errors of the difference of two means a difference must reach to count (about 95% two-sided).
NOISE_STANDARD_ERRORS = 2.0
#: Figure sizes (inches): the heat map widens with the experiments' names, which label its rows.
HEATMAP_MIN_WIDTH = 5.0
HEATMAP_LABEL_INCHES_PER_CHAR = 0.075
METRIC_NAMES = {"entity_f1": "test entity F1 (micro)", "token_accuracy": "test token accuracy"}
MIXED_METRICS = "test score (entity F1 of NER experiments, token accuracy of POS ones)"


class CompareError(ValueError):
    """A run the summary cannot read; the message names the file."""


@dataclass
class RunRecord:
    """One run's numbers, as its own files give them."""

    seed: int
    score: float
    metric: str
    per_type: dict[str, float]
    best_epoch: int
    epochs_run: int
    train_seconds: float


@dataclass
class ExperimentRow:
    """One experiment's runs summarised."""

    name: str
    runs: list[RunRecord]
    ensemble: float | None = None
    is_reference: bool = False
    diff: float | None = None
    threshold: float | None = None
    per_type: dict[str, float] = field(default_factory=dict)

    @property
    def scores(self) -> list[float]:
        return [run.score for run in self.runs]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.scores)

    @property
    def sd(self) -> float:
        return statistics.stdev(self.scores) if len(self.runs) > 1 else 0.0

    @property
    def metric(self) -> str:
        return self.runs[0].metric

    @property
    def beyond_noise(self) -> bool | None:
        return None if self.diff is None else abs(self.diff) >= self.threshold


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CompareError(f"{path}: missing (has the run been trained and evaluated?)") from None
    except json.JSONDecodeError as exc:
        raise CompareError(f"{path}: not valid JSON: {exc}") from None


def read_run(run_dir: Path, seed: int) -> RunRecord:
    """A run's test score, per-type F1, epochs and training time from its metrics and training summary."""
    metrics = read_json(run_dir / "test" / "metrics.json")
    summary = read_json(run_dir / "training_summary.json")
    if "averages" in metrics:
        score, metric = metrics["averages"]["micro"]["f1-score"], "entity_f1"
        per_type = {kind: values["f1-score"] for kind, values in metrics["per_type"].items()}
    else:
        score, metric, per_type = metrics["token_accuracy"], "token_accuracy", {}
    return RunRecord(seed, score, metric, per_type, summary["best_epoch"], summary["epochs_run"],
                     summary["train_seconds"])


def noise_threshold(row: ExperimentRow, reference: ExperimentRow, floor: float) -> float:
    """The smallest difference of means that is not seed noise (the rule in the module's docstring)."""
    variance = row.sd ** 2 / len(row.runs) + reference.sd ** 2 / len(reference.runs)
    return max(floor, NOISE_STANDARD_ERRORS * math.sqrt(variance))


def seed_ensemble(runs: Sequence[Path], test_shards: Sequence[str], decode: str) -> float:
    """Entity micro F1 of the runs' averaged tag probabilities on the cached test split, decoded once."""
    from pipeline.decode import decode_all
    from pipeline.evaluate import cached_split_probabilities, entity_metrics

    summed, reference = None, None
    for run in runs:
        tags, probabilities, cache = cached_split_probabilities(Path(run), test_shards)
        if reference is None:
            reference = (tags, cache.column("tags"))
        elif tags != reference[0]:
            raise CompareError(f"{run}: its tag set differs from {runs[0]}'s; an ensemble needs the same tags")
        summed = probabilities if summed is None else [a + b for a, b in zip(summed, probabilities)]
    tags, gold = reference
    predicted = decode_all([p / len(runs) for p in summed], list(tags), decode)
    return entity_metrics(gold, predicted)["averages"]["micro"]["f1-score"]


def build_rows(plan: dict, test_shard_names: Sequence[str]) -> list[ExperimentRow]:
    """Every experiment's row, compared with the reference; ensembles scored where the plan asks."""
    rows = []
    for name, spec in plan["experiments"].items():
        row = ExperimentRow(name, [read_run(Path(run), seed) for run, seed in zip(spec["runs"], spec["seeds"])])
        kinds = sorted({kind for run in row.runs for kind in run.per_type})
        row.per_type = {kind: statistics.fmean(run.per_type.get(kind, 0.0) for run in row.runs) for kind in kinds}
        if plan["ensemble"] and row.metric == "entity_f1" and len(row.runs) > 1:
            log.info("scoring the seed ensemble of %s (%d runs)", name, len(row.runs))
            shards = [f"{spec['embeddings']}/{shard}.h5" for shard in test_shard_names]
            row.ensemble = seed_ensemble(spec["runs"], shards, spec["decode"])
        rows.append(row)
    reference = next(row for row in rows if row.name == plan["reference"])
    reference.is_reference = True
    for row in rows:
        if row is not reference and row.metric == reference.metric:
            row.diff = row.mean - reference.mean
            row.threshold = noise_threshold(row, reference, plan["noise_floor"])
    return rows


def noise_rule(plan: dict) -> str:
    return (f"Seed noise: a difference from the reference `{plan['reference']}` counts only when |difference of "
            f"means| >= max({plan['noise_floor']}, {NOISE_STANDARD_ERRORS:g} x sqrt(sd_a^2/n_a + sd_b^2/n_b)), the "
            f"project's floor or twice the standard error of the difference, whichever is larger (sd: the sample "
            f"standard deviation over an experiment's seeds; with one seed only the floor applies). Rows marked "
            f"'noise' are within it.")


def verdict(row: ExperimentRow) -> str:
    """The row's difference from the reference and whether it is beyond seed noise ('' for another metric)."""
    if row.is_reference:
        return "reference"
    if row.diff is None:
        return ""
    return f"{row.diff:+.{SCORE_DIGITS}f} ({'beyond noise' if row.beyond_noise else 'noise'})"


def metric_name(rows: Sequence[ExperimentRow]) -> str:
    """What the score column holds: one metric, or both when NER and POS experiments are compared."""
    metrics = {row.metric for row in rows}
    return METRIC_NAMES[metrics.pop()] if len(metrics) == 1 else MIXED_METRICS


def table_rows(rows: Sequence[ExperimentRow], ensemble: bool) -> tuple[list[str], list[list[str]]]:
    """Header and cells of the main table, shared by the Markdown and HTML summaries."""
    header = ["experiment", "seeds", f"{metric_name(rows)}: mean ± sd", "per seed",
              "vs reference", "best epoch per seed", "epochs run (mean)", "train min (mean)"]
    if ensemble:
        header.append("seed ensemble")
    cells = []
    for row in rows:
        line = [row.name, " ".join(str(run.seed) for run in row.runs),
                f"{row.mean:.{SCORE_DIGITS}f} ± {row.sd:.{SCORE_DIGITS}f}",
                " / ".join(f"{s:.{SCORE_DIGITS}f}" for s in row.scores), verdict(row),
                " / ".join(str(run.best_epoch) for run in row.runs),
                f"{statistics.fmean(run.epochs_run for run in row.runs):.1f}",
                f"{statistics.fmean(run.train_seconds for run in row.runs) / 60:.1f}"]
        if ensemble:
            line.append("" if row.ensemble is None else f"{row.ensemble:.{SCORE_DIGITS}f}")
        cells.append(line)
    return header, cells


def per_type_rows(rows: Sequence[ExperimentRow]) -> tuple[list[str], list[list[str]]]:
    kinds = sorted({kind for row in rows for kind in row.per_type})
    return (["experiment", *kinds],
            [[row.name, *(f"{row.per_type.get(k, 0.0):.{TYPE_DIGITS}f}" for k in kinds)] for row in rows if row.per_type])


def markdown_table(header: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(line) + " |" for line in cells])


def html_table(header: Sequence[str], cells: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in line) + "</tr>" for line in cells)
    return f"<table border='1' cellpadding='4'><tr>{head}</tr>{body}</table>"


def summary_markdown(rows: Sequence[ExperimentRow], plan: dict) -> str:
    header, cells = table_rows(rows, plan["ensemble"])
    metric = metric_name(rows)
    text = [f"# Experiments\n\n{metric[0].upper()}{metric[1:]} on the test split, per experiment over its seeds. "
            f"Reproduce: `{plan['command']}`.\n", markdown_table(header, cells), "", noise_rule(plan)]
    if plan["ensemble"]:
        text.append("Seed ensemble: the runs' tag probabilities averaged, then decoded once.")
    type_header, type_cells = per_type_rows(rows)
    if type_cells:
        text += ["", "Mean test F1 per entity type:", "", markdown_table(type_header, type_cells)]
    return "\n".join(text) + "\n"


def summary_csv(rows: Sequence[ExperimentRow]) -> str:
    """One line per experiment, numbers unrounded, so other tools (and the tests) can check them."""
    kinds = sorted({kind for row in rows for kind in row.per_type})
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["experiment", "metric", "seeds", "mean", "sd", "per_seed", "diff_vs_reference",
                     "noise_threshold", "beyond_noise", "best_epochs", "epochs_run_mean", "train_seconds_mean",
                     "ensemble", *(f"f1_{kind}" for kind in kinds)])
    for row in rows:
        writer.writerow([row.name, row.metric, " ".join(str(run.seed) for run in row.runs), row.mean, row.sd,
                         " ".join(repr(s) for s in row.scores), "" if row.diff is None else row.diff,
                         "" if row.threshold is None else row.threshold,
                         "" if row.beyond_noise is None else row.beyond_noise,
                         " ".join(str(run.best_epoch) for run in row.runs),
                         statistics.fmean(run.epochs_run for run in row.runs),
                         statistics.fmean(run.train_seconds for run in row.runs),
                         "" if row.ensemble is None else row.ensemble,
                         *(row.per_type.get(kind, "") for kind in kinds)])
    return out.getvalue()


def plot_scores(rows: Sequence[ExperimentRow], path: Path) -> None:
    """Each experiment's mean ± sd (bar), every seed's score (dots) and its ensemble (cross), on one axis."""
    figure, axis = plt.subplots(figsize=(8, 1.2 + 0.45 * len(rows)))
    positions = np.arange(len(rows))[::-1]
    for position, row in zip(positions, rows):
        axis.errorbar(row.mean, position, xerr=row.sd, fmt="D", color="tab:blue", capsize=4,
                      label="mean ± sd" if position == positions[0] else None)
        axis.scatter(row.scores, [position] * len(row.scores), color="tab:gray", s=18, zorder=3,
                     label="one seed" if position == positions[0] else None)
        if row.ensemble is not None:
            axis.scatter([row.ensemble], [position], marker="x", color="tab:red", s=40, zorder=4,
                         label="seed ensemble" if position == positions[0] else None)
    axis.set_yticks(positions, [row.name for row in rows])
    axis.set_xlabel(metric_name(rows))
    axis.legend(loc="best", fontsize=8)
    axis.set_title("Test score per experiment, every seed shown")
    save_figure(figure, path)


def plot_per_type(rows: Sequence[ExperimentRow], path: Path) -> None:
    """A heat map of mean F1 per entity type (columns) and experiment (rows)."""
    header, cells = per_type_rows(rows)
    names = max((len(line[0]) for line in cells), default=0)
    width = max(HEATMAP_MIN_WIDTH, HEATMAP_LABEL_INCHES_PER_CHAR * names + 0.8 * (len(header) - 1) + 1.0)
    figure, axis = plt.subplots(figsize=(width, 1.2 + 0.45 * max(len(cells), 1)))
    if cells:
        values = np.array([[float(c) for c in line[1:]] for line in cells])
        axis.imshow(values, cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
        axis.set_xticks(range(len(header) - 1), header[1:])
        axis.set_yticks(range(len(cells)), [line[0] for line in cells])
        for i, line in enumerate(cells):
            for j, text in enumerate(line[1:]):
                axis.text(j, i, text, ha="center", va="center", fontsize=8,
                          color="black" if values[i, j] > 0.6 else "white")
        axis.set_title("Mean test F1 per entity type")
    else:  # token-level tasks have no entity types
        axis.text(0.5, 0.5, "no entity types (token-level task)", ha="center", va="center")
        axis.set_axis_off()
    save_figure(figure, path)


def write_text(path: Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def compare(plan: dict, test_shard_names: Sequence[str], out_dir: str | Path) -> list[ExperimentRow]:
    """Read every run of the plan and write the summary files and figures into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = build_rows(plan, test_shard_names)
    text = summary_markdown(rows, plan)
    write_text(out_dir / "summary.md", text)
    write_text(out_dir / "summary.csv", summary_csv(rows))
    header, cells = table_rows(rows, plan["ensemble"])
    write_html(out_dir / "summary.html", "Experiments", html_table(header, cells)
               + f"<p>{html.escape(noise_rule(plan))}</p>" + html_table(*per_type_rows(rows)))
    plot_scores(rows, out_dir / "scores.png")
    plot_per_type(rows, out_dir / "per_type_f1.png")
    log.info("summary of %d experiments written to %s\n%s", len(rows), out_dir, text)
    return rows


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.compare``: the Snakemake entry point of the experiments' summary."""
    parser = argparse.ArgumentParser(description="Summarise the experiments' runs: test score mean and spread over "
                                                 "seeds, per entity type, seed noise, figures (see the module doc).")
    parser.add_argument("--plan", required=True, help="JSON from pipeline.experiments.summary_plan")
    parser.add_argument("--meta", required=True, help="meta.json of the corpus stage (the test shards' names)")
    parser.add_argument("--out", required=True, help="directory for summary.md/.csv/.html and the figures")
    args = parser.parse_args(argv)
    meta = json.loads(Path(args.meta).read_text())
    return exit_status(lambda: compare(json.loads(args.plan), meta["shards"]["test"], args.out), CompareError)


if __name__ == "__main__":
    sys.exit(main())
