"""biLM pretraining throughput and perplexity: the code and settings of a baseline revision beside today's, in one run.

Both sides run ``python -m pipeline.bilm.pretrain`` as a subprocess on the same text (the first N sentences of the
training split), the same validation sentences and the same architecture, for one pass; the baseline from a copy of
its revision's ``pipeline/`` (``git archive``) with its revision's own ``bilm`` settings (batches of 64 sentences),
today's from this checkout with its config (packed rows; ``--new-settings`` overrides). Runs alternate (baseline, new, baseline,
new, ...) so that load from other jobs hits both alike. Reported per run: wall seconds of the whole command (reading,
vocabulary, compilation, training and the validation perplexity: nothing is left out of either side), training
tokens, tokens/s, and validation perplexity of each direction after the same tokens seen.

    python bench/pretrain_speed.py [--quick] [--sentences 4000] [--repeats 3] [--baseline-rev 886cd6c] [--new-settings JSON]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from common import CACHE_DIR, REPO_ROOT, describe_machine, machine_info, median, say, write_result

DEFAULT_BASELINE = "886cd6c"  # the last revision before streaming, XLA and per-batch character widths
CORPUS = CACHE_DIR / "corpus"


def first_sentences(source: Path, count: int, target: Path) -> int:
    """Copy the first ``count`` sentences of a CoNLL split to ``target``; return the tokens copied."""
    tokens = sentences = 0
    with open(source, encoding="utf-8") as src, open(target, "w", encoding="utf-8") as out:
        for line in src:
            if sentences >= count:
                break
            out.write(line)
            if not line.strip():
                sentences += 1
            elif not line.startswith("# "):
                tokens += 1
    return tokens


def baseline_checkout(revision: str, into: Path) -> Path:
    """The baseline revision's ``pipeline/`` package, extracted with git archive (no worktree is registered)."""
    archive = subprocess.run(["git", "-C", str(REPO_ROOT), "archive", revision, "pipeline"], check=True,
                             capture_output=True).stdout
    into.mkdir(parents=True, exist_ok=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def baseline_settings(revision: str) -> dict:
    """The baseline revision's own ``bilm`` settings, read from its ``config/config.yaml``: today's settings of the
    comparison (its batch of 64 sentences, not this checkout's batch of packed rows), so that the perplexity after
    one pass compares the two as a user of each would run them."""
    text = subprocess.run(["git", "-C", str(REPO_ROOT), "show", f"{revision}:config/config.yaml"], check=True,
                          capture_output=True, text=True).stdout
    return yaml.safe_load(text)["bilm"] | {"epochs": 1, "extra_text": []}


def children_cpu_seconds() -> float:
    """User + system CPU seconds of the finished child processes: a cross-check of wall time on a shared machine."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_pretrain(code_root: Path, train: Path, val: Path, settings: dict, out: Path) -> dict:
    """Time one ``pipeline.bilm.pretrain`` command; its perplexity report plus the wall seconds."""
    env = dict(os.environ, PYTHONPATH=str(code_root), TF_CPP_MIN_LOG_LEVEL="2")
    cpu_before = children_cpu_seconds()
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pipeline.bilm.pretrain", "--train", str(train), "--val", str(val),
                    "--settings", json.dumps(settings), "--out", str(out)],
                   cwd=code_root, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    cpu = children_cpu_seconds() - cpu_before
    report = json.loads((out / "perplexity.json").read_text())
    return {"wall_seconds": round(wall, 1), "cpu_seconds": round(cpu, 1), "perplexity_forward": round(report["perplexity_forward"], 2),
            "perplexity_backward": round(report["perplexity_backward"], 2),
            "perplexity_unigram": round(report["perplexity_unigram"], 2),
            "training_seconds": report.get("seconds"), "tokens_seen": report.get("tokens_seen")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1,000 sentences, one repeat")
    parser.add_argument("--sentences", type=int, default=4000, help="training sentences of each run (one pass)")
    parser.add_argument("--val-sentences", type=int, default=500, help="validation sentences for perplexity")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each side (alternating)")
    parser.add_argument("--baseline-rev", default=DEFAULT_BASELINE, help="git revision of the baseline code")
    parser.add_argument("--new-settings", default="{}", metavar="JSON",
                        help="bilm settings that replace this checkout's config values on the new side, e.g. "
                             "'{\"batch_size\": 32}' to compare steps of fewer tokens")
    args = parser.parse_args()
    if args.quick:
        args.sentences, args.repeats = 1000, 1
    from pipeline.config import load_config

    settings = load_config()["bilm"] | {"epochs": 1, "init": None, "unlabelled_text": []} | json.loads(args.new_settings)
    machine = machine_info()
    say(f"machine: {describe_machine(machine)}")
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        train, val = tmp / "train.conll", tmp / "val.conll"
        tokens = first_sentences(CORPUS / "train.conll", args.sentences, train)
        first_sentences(CORPUS / "val.conll", args.val_sentences, val)
        sides = {"baseline": (baseline_checkout(args.baseline_rev, tmp / "baseline"), baseline_settings(args.baseline_rev)),
                 "new": (REPO_ROOT, settings)}
        runs: dict[str, list[dict]] = {name: [] for name in sides}
        for repeat in range(args.repeats):
            for name, (root, side_settings) in sides.items():
                result = run_pretrain(root, train, val, side_settings, tmp / f"{name}-{repeat}")
                result["tokens_per_second"] = round(tokens / result["wall_seconds"], 1)
                result["tokens_per_cpu_second"] = round(tokens / result["cpu_seconds"], 1)
                runs[name].append(result)
                say(f"{name} run {repeat + 1}: {json.dumps(result)}")
    summary = {name: {"median_wall_seconds": median([r["wall_seconds"] for r in rs]),
                      "median_tokens_per_second": median([r["tokens_per_second"] for r in rs]),
                      "median_cpu_seconds": median([r["cpu_seconds"] for r in rs]),
                      "perplexity_forward": median([r["perplexity_forward"] for r in rs]),
                      "perplexity_backward": median([r["perplexity_backward"] for r in rs])}
               for name, rs in runs.items()}
    speedup = summary["baseline"]["median_wall_seconds"] / summary["new"]["median_wall_seconds"]
    cpu_speedup = summary["baseline"]["median_cpu_seconds"] / summary["new"]["median_cpu_seconds"]
    say(f"{tokens:,} training tokens, one pass: baseline {summary['baseline']} | new {summary['new']} | "
        f"speedup {speedup:.2f}x wall, {cpu_speedup:.2f}x CPU time (whole command, medians of {args.repeats})")
    write_result("pretrain_speed", {"runs": runs, "summary": summary, "speedup": round(speedup, 2), "cpu_speedup": round(cpu_speedup, 2),
                                    "training_tokens": tokens, "baseline_revision": args.baseline_rev,
                                    "settings": {"baseline": sides["baseline"][1], "new": settings}},
                 args, data={"train": f"first {args.sentences} sentences of {CORPUS / 'train.conll'}",
                             "val": f"first {args.val_sentences} sentences of {CORPUS / 'val.conll'}"},
                 machine=machine, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
