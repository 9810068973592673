"""Pipeline stage times from Snakemake's own benchmark files: per-stage wall time and the total, vs 45 minutes.

Every rule has a ``benchmark:`` directive (benchmarks/<rule>.tsv, or benchmarks/<rule>/<wildcards>.tsv for rules run
once per shard); Snakemake writes one row per run with the wall seconds in column ``s``, plus peak memory and CPU
time. The total is the sum over all jobs (what one core-set running the jobs one after another would take); with
several jobs in parallel the elapsed time is shorter, so the span from the first job's start to the last job's end
(file modification times minus durations) is printed too. Stages the run has not reached yet are listed as missing.

    python bench/pipeline_stages.py [--root benchmarks] [--target-minutes 45]
"""
from __future__ import annotations

import csv
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common as c

NAME = "pipeline_stages"
TARGET_MINUTES = 45.0
#: Rules in pipeline order and the name of their benchmark file or folder (workflow/rules/*.smk).
STAGES = ("split_corpus", "pretrain_bilm", "export_bilm", "embed", "train", "evaluate")


def read_benchmarks(root: Path) -> list[dict]:
    """One record per benchmark file: stage (file stem, or folder for per-shard rules), job, seconds, memory, CPU.

    A file with several rows (``repeat()`` in the Snakefile) counts its mean, as Snakemake's reports do.
    """
    records = []
    for path in sorted(Path(root).rglob("*.tsv")):
        with open(path, newline="") as handle:
            rows = [r for r in csv.DictReader(handle, delimiter="\t") if r.get("s") not in (None, "", "NA")]
        if not rows:
            continue
        relative = path.relative_to(root)
        stage = relative.parts[0] if len(relative.parts) > 1 else path.stem
        seconds = sum(float(r["s"]) for r in rows) / len(rows)
        record = {"stage": stage, "job": path.stem if len(relative.parts) > 1 else "", "seconds": seconds,
                  "finished_at": path.stat().st_mtime, "repeats": len(rows)}
        for column in ("max_rss", "cpu_time", "mean_load"):
            values = [float(r[column]) for r in rows if r.get(column) not in (None, "", "NA", "-")]
            if values:
                record[column] = sum(values) / len(values)
        records.append(record)
    return records


def summarise(records: list[dict], target_minutes: float = TARGET_MINUTES) -> dict:
    """Per-stage sums (in pipeline order, unknown stages after), the total, the elapsed span and the target check."""
    order = {name: i for i, name in enumerate(STAGES)}
    stages: dict[str, dict] = {}
    for r in sorted(records, key=lambda r: (order.get(r["stage"], len(order)), r["stage"], r["job"])):
        s = stages.setdefault(r["stage"], {"jobs": 0, "seconds": 0.0, "longest_job_s": 0.0, "cpu_time_s": 0.0,
                                           "max_rss_mb": 0.0})
        s["jobs"] += 1
        s["seconds"] += r["seconds"]
        s["longest_job_s"] = max(s["longest_job_s"], r["seconds"])
        s["cpu_time_s"] += r.get("cpu_time", 0.0)
        s["max_rss_mb"] = max(s["max_rss_mb"], r.get("max_rss", 0.0))
    total = sum(s["seconds"] for s in stages.values())
    span = None
    if records:
        span = max(r["finished_at"] for r in records) - min(r["finished_at"] - r["seconds"] for r in records)
    missing = [name for name in STAGES if name not in stages]
    return {"stages": stages, "total_s": total, "total_minutes": total / 60, "elapsed_span_s": span,
            "target_minutes": target_minutes, "meets_target": total / 60 <= target_minutes and not missing,
            "missing_stages": missing, "complete": not missing}


def report(summary: dict) -> None:
    rows = [[name, s["jobs"], s["seconds"] / 60, s["longest_job_s"] / 60, s["cpu_time_s"] / 60, s["max_rss_mb"]]
            for name, s in summary["stages"].items()]
    jobs = sum(s["jobs"] for s in summary["stages"].values())
    rows.append(["total (sum)", jobs, summary["total_minutes"], "", "", ""])
    print(c.table(rows, ["stage", "jobs", "wall min", "longest job min", "CPU min", "peak RSS MB"]))
    verdict = "met" if summary["meets_target"] else "NOT met"
    if summary["missing_stages"]:
        verdict += f" (incomplete: no benchmark yet for {', '.join(summary['missing_stages'])})"
    print(f"   total {summary['total_minutes']:.1f} min vs target {summary['target_minutes']:.0f} min: {verdict}")
    if summary["elapsed_span_s"] is not None:
        print(f"   elapsed from first start to last finish (file times): {summary['elapsed_span_s'] / 60:.1f} min")


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__)
    p.add_argument("--root", type=Path, default=c.REPO_ROOT / "benchmarks", help="Snakemake's benchmark folder")
    p.add_argument("--target-minutes", type=float, default=TARGET_MINUTES)
    args = p.parse_args(argv)
    machine, started = c.start(NAME, args)
    records = read_benchmarks(args.root) if args.root.is_dir() else []
    if not records:
        print(f"   no Snakemake benchmark files under {args.root}: run the pipeline first (snakemake --cores all)")
        empty = {"records": [], "missing_stages": list(STAGES)}
        c.finish(NAME, empty, args, {"root": str(args.root)}, machine, started)
        return 0
    summary = summarise(records, args.target_minutes)
    report(summary)
    c.finish(NAME, summary | {"records": records}, args, {"root": str(args.root)}, machine, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
