"""End to end: the Snakefile on a tiny corpus, and what a changed setting reruns (from Snakemake's dry run)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import TINY_BILM, TINY_TRAIN, write_tiny_corpus

PROJECT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "snakemake", "--cores", "2", "--configfile", "tiny.yaml", *args]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True)


def planned_jobs(workdir: Path, config: dict) -> dict[str, int]:
    """Rule name -> job count of a dry run with ``config`` (Snakemake's job stats table)."""
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--dry-run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    table = result.stdout.split("Job stats:")[-1] if "Job stats:" in result.stdout else ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, flags=re.M)
            if m.group(1) != "total"}


@pytest.fixture(scope="module")
def finished_workflow(tmp_path_factory) -> tuple[Path, dict]:
    workdir = tmp_path_factory.mktemp("workflow")
    for item in ("Snakefile", "workflow", "config"):
        source = PROJECT / item
        (shutil.copytree if source.is_dir() else shutil.copy)(source, workdir / item)
    config = {
        "corpus": {"path": str(write_tiny_corpus(workdir / "tiny.csv", sentences=40)), "shard_size": 12},
        "bilm": TINY_BILM,
        "train": TINY_TRAIN,
        "embedder": {"batch_size": 8},
    }
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return workdir, config


def test_pipeline_writes_cache_model_and_metrics(finished_workflow):
    workdir, _ = finished_workflow
    assert list((workdir / "cache" / "embeddings").glob("*.h5"))
    assert (workdir / "cache" / "bilm" / "hub" / "saved_model.pb").is_file()
    assert (workdir / "results" / "ner" / "model.keras").is_file()
    metrics = json.loads((workdir / "results" / "ner" / "test" / "metrics.json").read_text())
    assert "micro" in metrics["averages"]
    assert all((workdir / "logs" / f"{rule}.log").is_file() for rule in ("split_corpus", "train", "evaluate"))
    assert (workdir / "benchmarks" / "train.tsv").is_file()


def test_nothing_reruns_when_nothing_changed(finished_workflow):
    workdir, config = finished_workflow
    assert planned_jobs(workdir, config) == {}


def test_changing_a_training_setting_reruns_only_training_and_evaluation(finished_workflow):
    workdir, config = finished_workflow
    changed = json.loads(json.dumps(config))
    changed["train"]["units"] = 6
    assert planned_jobs(workdir, changed) == {"train": 1, "evaluate": 1, "report_figures": 1, "all": 1}


def test_changing_an_embedder_setting_re_embeds(finished_workflow):
    workdir, config = finished_workflow
    changed = json.loads(json.dumps(config))
    changed["embedder"]["dtype"] = "float32"
    jobs = planned_jobs(workdir, changed)
    assert jobs.get("embed_shard", 0) >= 3 and "train" in jobs and "pretrain_bilm" not in jobs


def test_a_pos_head_reuses_the_cache_without_re_embedding(finished_workflow):
    workdir, config = finished_workflow
    changed = json.loads(json.dumps(config)) | {"task": "pos"}
    assert planned_jobs(workdir, changed) == {"train": 1, "evaluate": 1, "all": 1}


def test_the_html_report_holds_every_part(finished_workflow):
    workdir, config = finished_workflow
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    result = snakemake(workdir, "--report", "report.html")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (workdir / "report.html").read_text()
    for part in ("metrics.html", "learning_curves.png", "per_type_f1.png", "entity_confusion.png", "layer_weights.png",
                 "samples.html"):
        assert part in report, part
