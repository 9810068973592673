"""Seed ensembles (issue 12, lever 5): the averaged tag probabilities of several trained runs, decoded once.

Each run's per-token tag probabilities on the cached test split are computed exactly as ``pipeline.evaluate`` does
(the CRF's forward-backward marginals, or the softmax), averaged over the runs, and decoded with the same
BIO-constrained Viterbi; seqeval scores the result. Every member is scored alone too, which checks the script against
its ``test/metrics.json``. Nothing is retrained: the runs are those ``bench/ablation.py`` wrote.

Why average probabilities and not vote on spans: the decoder already turns probabilities into the best valid BIO
sequence, so averaging before it keeps every answer a valid tagging.

    python bench/ensemble.py --runs bench/results/ablation/full/crf-seed{7,8,9}
    python bench/ensemble.py --group crf=bench/results/ablation/full/crf-seed{7,8,9} \\
                             --group crf_no_bilm=bench/results/ablation/full/crf_no_bilm-seed{7,8,9}
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench import common as c

NAME = "ensemble"
DECODE = "bio_viterbi"


def run_probabilities(run_dir: Path, test_shards: Sequence[str]) -> tuple[list[str], list[np.ndarray], list]:
    """(tags, per-sentence [length, tags] probabilities, gold tags) of one run on the cached test split, computed by
    the evaluate stage's own code (which also checks the shards against the run's embedder)."""
    from pipeline.evaluate import cached_split_probabilities

    tags, probabilities, cache = cached_split_probabilities(Path(run_dir), test_shards)
    return tags, probabilities, cache.column("tags")


def entity_f1(gold: list, probabilities: Sequence[np.ndarray], tags: Sequence[str]) -> dict:
    """seqeval micro F1 and per-type F1 of the decoded probabilities."""
    from pipeline.decode import decode_all
    from pipeline.evaluate import entity_metrics

    metrics = entity_metrics(gold, decode_all(list(probabilities), list(tags), DECODE))
    per_type = {name: round(values["f1-score"], 4) for name, values in metrics["per_type"].items()}
    return {"f1": metrics["averages"]["micro"]["f1-score"], "per_type": per_type}


def score_group(runs: Sequence[Path], test_shards: Sequence[str]) -> dict:
    """Each member alone and the average of all of them."""
    members, summed, reference = [], None, None
    for run in runs:
        c.say(f"tagging the test split with {run} ...")
        tags, probabilities, gold = run_probabilities(run, test_shards)
        if reference is None:
            reference = (tags, gold)
        elif tags != reference[0]:
            raise SystemExit(f"{run}: its tag set differs from {runs[0]}'s; an ensemble needs the same tags")
        members.append({"run": str(run)} | entity_f1(gold, probabilities, tags))
        summed = probabilities if summed is None else [a + b for a, b in zip(summed, probabilities)]
    tags, gold = reference
    ensemble = entity_f1(gold, [p / len(runs) for p in summed], tags)
    member_f1 = [m["f1"] for m in members]
    return {"members": members, "member_mean": float(np.mean(member_f1)),
            "member_sd": float(np.std(member_f1, ddof=1)) if len(member_f1) > 1 else 0.0,
            "ensemble": ensemble, "gain": ensemble["f1"] - float(np.mean(member_f1))}


def parse_groups(args: argparse.Namespace) -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = {}
    if args.runs:
        groups["runs"] = [Path(r) for r in args.runs]
    for name, first in args.group or []:
        groups.setdefault(name, []).append(Path(first))
    for name, runs in groups.items():
        missing = [str(r) for r in runs if not (r / "model.keras").is_file()]
        if missing:
            raise SystemExit(f"group {name}: no trained run (model.keras) in {', '.join(missing)}")
    return groups


def group_argument(text: str) -> tuple[str, str]:
    name, sep, run = text.partition("=")
    if not sep or not name or not run:
        raise argparse.ArgumentTypeError(f"expected NAME=RUN_DIR, got {text!r}")
    return name, run


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__)
    p.add_argument("--runs", nargs="+", metavar="RUN_DIR", help="run directories of one ensemble")
    p.add_argument("--group", nargs="+", type=group_argument, action="extend", metavar="NAME=RUN_DIR",
                   help="a run of a named ensemble; repeat the name for each member")
    p.add_argument("--test", nargs="+", metavar="SHARD", help="test shards (default: cache/embeddings/test-*.h5)")
    args = p.parse_args(argv)
    groups = parse_groups(args)
    if not groups:
        p.error("give --runs or --group")
    shards = args.test or sorted(str(s) for s in (c.REPO_ROOT / "cache" / "embeddings").glob("test-*.h5"))
    if not shards:
        p.error("no test shards: run `snakemake --cores all` first or pass --test")
    machine, started = c.start(NAME, args)
    result = {name: score_group(runs, shards) for name, runs in groups.items()}
    rows = [[name, len(g["members"]), f"{g['member_mean']:.4f} +- {g['member_sd']:.4f}",
             f"{g['ensemble']['f1']:.4f}", f"{g['gain']:+.4f}"] for name, g in result.items()]
    print(c.table(rows, ["group", "runs", "members: mean +- sd", "ensemble", "gain"]))
    c.finish(NAME, result, args, {"test_shards": shards}, machine, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
