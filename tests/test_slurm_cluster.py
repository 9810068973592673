"""On a real one-node Slurm cluster: the tiny pipeline through ``--profile profiles/slurm`` (snakemake-executor-plugin-
slurm, genuine sbatch/srun/squeue) gives exactly what a local run gives, and every embed shard is its own Slurm job;
the tiny experiment grid (``snakemake experiments``) on the cluster's cache sends each training to Slurm and
summarises to the same numbers as the same grid run locally; and a further run tags a tiny document collection
with the model the cluster trained, one Slurm job per shard.

The fixture brings the cluster up with ``.ci/slurm-cluster.sh up`` (installs Debian's Slurm, writes slurm.conf, starts
the daemons) and always tears it down. Outside CI the test skips where that cannot work (not root, no apt); with
CI=true it fails instead, so that a CI runner that lost root or apt cannot silently drop the cluster check.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import csv

import h5py
import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import TINY_GRID, wait_for_background_apt, with_experiments, without_slurm_environment, workflow_clone
from conftest import workflow_copy
from conftest import skip_unless as shared_skip_unless
from test_tag_collection import write_collection

PROJECT = Path(__file__).resolve().parent.parent
CLUSTER_SCRIPT = PROJECT / ".ci" / "slurm-cluster.sh"
pytestmark = pytest.mark.cluster

# Bounds on the external steps: installing Slurm from apt on a fresh runner, and one whole pipeline run (each of the
# five cluster stages pays a Python + TensorFlow start inside its job); generous so that a hang fails, not a slow CI.
INSTALL_TIMEOUT_S = 600
RUN_TIMEOUT_S = 900
# The tiny models need well under 1 GB; asking for the rules' production memory would not fit a small CI runner's node.
TINY_MEM_MB = 1000
CLUSTER_RULES = ("pretrain_bilm", "export_bilm", "embed_shard", "train")
#: What an experiment grid on a finished cache sends to Slurm: its trainings (evaluations and summary stay local).
EXPERIMENT_CLUSTER_RULES = ("experiment_train",)
#: Summary columns that are timings, which differ between any two runs.
TIMING_COLUMNS = ("train_seconds_mean",)
TAG_CLUSTER_RULES = ("plan_tag_collection", "tag_shard")
#: The tiny collection (11 sentences) in shards of this many sentences: two tag_shard jobs.
TAG_SHARD_SENTENCES = 8
# One CPU per job: the test node has the machine's CPUs (2 on CI), so two shards embed side by side.
THREADS_PER_JOB = 1
# The plugin waits 40 s before its first squeue by default (sized for busy production clusters); a job of the tiny
# pipeline lasts about 15 s, so poll sooner. Snakemake's own interval between status rounds likewise.
FIRST_STATUS_CHECK_S = 2
STATUS_CHECK_INTERVAL_S = 2


def skip_unless(condition: bool, reason: str) -> None:
    """Skip locally when the cluster cannot be built here; fail in CI, where it must run."""
    shared_skip_unless(condition, reason, "the Slurm cluster test")


def cluster_script(action: str, timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(CLUSTER_SCRIPT), action], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def slurm_cluster(request, tmp_path_factory) -> None:
    """A running one-node Slurm cluster for this module; stopped afterwards whatever happened."""
    skip_unless(os.geteuid() == 0, "needs root to install and start Slurm (run as root, as CI does)")
    skip_unless(shutil.which("apt-get") is not None or shutil.which("slurmctld") is not None,
                "needs apt-get to install Debian's Slurm packages")
    skip_unless(importlib.util.find_spec("snakemake_executor_plugin_slurm") is not None,
                "snakemake-executor-plugin-slurm is not installed (pip install -e '.[cluster]')")
    # Registered before `up` so that daemons started by a failed `up` are stopped too.
    request.addfinalizer(lambda: cluster_script("down", timeout=120))
    wait_for_background_apt(tmp_path_factory)
    started = cluster_script("up", timeout=INSTALL_TIMEOUT_S)
    assert started.returncode == 0, f"cluster did not come up:\n{started.stdout}\n{started.stderr}"


def run_on_cluster(workdir: Path, *targets: str) -> subprocess.CompletedProcess:
    """The documented command, plus what this accounting-less test cluster and the tiny corpus need."""
    command = [
        sys.executable, "-m", "snakemake", *targets, "--profile", "profiles/slurm", "--configfile", "tiny.yaml",
        # No slurmdbd here: sacct knows no jobs and there are no accounts.
        "--slurm-status-command", "squeue", "--slurm-no-account",
        "--slurm-init-seconds-before-status-checks", str(FIRST_STATUS_CHECK_S),
        "--seconds-between-status-checks", str(STATUS_CHECK_INTERVAL_S),
        # Keep every job's Slurm log: the test maps each shard to its job id through them.
        "--slurm-keep-successful-logs",
        "--max-threads", str(THREADS_PER_JOB),
        "--set-resources", *[f"{rule}:mem_mb={TINY_MEM_MB}" for rule in CLUSTER_RULES + EXPERIMENT_CLUSTER_RULES
                                                                       + TAG_CLUSTER_RULES],
    ]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
                          env=without_slurm_environment())


def slurm_jobs() -> str:
    """Every job slurmctld still remembers (finished ones stay MinJobAge seconds): id, state, node, rule/wildcards."""
    return subprocess.run(["squeue", "--states=all", "--format=%.6i %.10T %.8N %k"], capture_output=True,
                          text=True).stdout


@pytest.fixture(scope="module")
def both_runs(slurm_cluster, request, tmp_path_factory) -> tuple[Path, Path]:
    """The tiny pipeline run on the Slurm cluster, and the same pipeline run locally (the session's end-to-end run,
    conftest.tiny_workflow, made with the same copy of the workflow and the same tiny configuration).

    The local run is asked for only once the cluster run is done: under xdist another worker may be making it
    meanwhile, and the two then overlap instead of one waiting for the other."""
    cluster_dir, config = workflow_copy(tmp_path_factory.mktemp("slurm") / "cluster")
    write_collection(cluster_dir)
    config["tag"] = {"input": "docs", "out": "tagged", "shard_sentences": TAG_SHARD_SENTENCES}
    (cluster_dir / "tiny.yaml").write_text(yaml.safe_dump(config))
    cluster = run_on_cluster(cluster_dir)
    listing = slurm_jobs()
    (cluster_dir / "squeue.txt").write_text(listing)
    print(f"\nSlurm jobs of the cluster run:\n{listing}")
    assert cluster.returncode == 0, cluster.stdout[-4000:] + cluster.stderr[-6000:]
    local_dir, _ = request.getfixturevalue("tiny_workflow")
    return cluster_dir, local_dir


def shard_files(workdir: Path) -> dict[str, Path]:
    return {path.stem: path for path in sorted((workdir / "cache" / "embeddings").glob("*.h5"))}


def test_each_embed_shard_ran_as_its_own_slurm_job(both_runs):
    cluster_dir, _ = both_runs
    shards = shard_files(cluster_dir)
    meta = json.loads((cluster_dir / "cache" / "corpus" / "meta.json").read_text())
    assert sorted(shards) == sorted(name for names in meta["shards"].values() for name in names)
    assert len(shards) > 1
    job_ids = {}
    for name, path in shards.items():
        with h5py.File(path, "r") as handle:
            job_ids[name] = str(handle.attrs["slurm_job_id"])
    assert all(job_ids.values()), f"a shard was embedded outside Slurm: {job_ids}"
    assert len(set(job_ids.values())) == len(shards), f"shards shared a Slurm job: {job_ids}"
    # The plugin writes each job's log as .snakemake/slurm_logs/rule_<rule>/<wildcards>/<job id>.log: the shard named
    # in the path is the one whose HDF5 file carries that id.
    logs = cluster_dir / ".snakemake" / "slurm_logs" / "rule_embed_shard"
    for name, job_id in job_ids.items():
        assert (logs / name / f"{job_id}.log").is_file(), f"no Slurm log of job {job_id} for shard {name}"


def test_the_rules_kept_local_did_not_go_to_slurm(both_runs):
    cluster_dir, _ = both_runs
    logged = {path.name for path in (cluster_dir / ".snakemake" / "slurm_logs").iterdir()}
    tagging = {f"rule_{rule}" for rule in TAG_CLUSTER_RULES}  # there once the tagging test below has run
    assert logged - tagging == {f"rule_{rule}" for rule in CLUSTER_RULES}


def test_cluster_cache_equals_the_local_cache(both_runs):
    """Same code, seeds and CPU on both sides, and the tiny models are trained with deterministic ops on one
    process: the cached activations must be bit-identical, not merely close."""
    cluster_dir, local_dir = both_runs
    cluster_shards, local_shards = shard_files(cluster_dir), shard_files(local_dir)
    assert sorted(cluster_shards) == sorted(local_shards)
    for name in cluster_shards:
        with h5py.File(cluster_shards[name], "r") as ours, h5py.File(local_shards[name], "r") as theirs:
            assert not theirs.attrs["slurm_job_id"]
            assert sorted(ours) == sorted(theirs)
            for dataset in ours:
                assert np.array_equal(ours[dataset][()], theirs[dataset][()]), f"{name}: {dataset} differs"
            assert ours.attrs["checksum"] == theirs.attrs["checksum"]


def test_cluster_metrics_equal_the_local_metrics(both_runs):
    cluster_dir, local_dir = both_runs
    metrics = [json.loads((d / "results" / "ner" / "test" / "metrics.json").read_text()) for d in both_runs]
    assert metrics[0] == metrics[1]
    assert (cluster_dir / "results" / "ner" / "test" / "predictions.conll").read_text() == (
        local_dir / "results" / "ner" / "test" / "predictions.conll").read_text()


@pytest.fixture(scope="module")
def both_grids(both_runs, request, tmp_path_factory) -> tuple[Path, Path]:
    """The tiny experiment grid run on the cluster, in a copy of the cluster run's finished workflow (its cache), and
    the same grid run locally on the local run's cache (conftest.tiny_experiments)."""
    cluster_dir, _ = both_runs
    grid_dir = workflow_clone(cluster_dir, tmp_path_factory.mktemp("slurm-grid") / "cluster")
    with_experiments(grid_dir, yaml.safe_load((cluster_dir / "tiny.yaml").read_text()), TINY_GRID)
    result = run_on_cluster(grid_dir, "experiments")
    print(f"\nSlurm jobs of the cluster grid:\n{slurm_jobs()}")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-6000:]
    local_dir, _, _ = request.getfixturevalue("tiny_experiments")
    return grid_dir, local_dir


def test_the_experiment_grid_sends_each_training_to_slurm_and_nothing_else(both_grids):
    grid_dir, _ = both_grids
    logs = grid_dir / ".snakemake" / "slurm_logs"
    assert {path.name for path in logs.iterdir()} == {f"rule_{rule}" for rule in EXPERIMENT_CLUSTER_RULES}
    runs = len(TINY_GRID["grids"]["tiny"]["train"]["learning_rate"]) * len(TINY_GRID["seeds"])
    assert len(list((logs / "rule_experiment_train").rglob("*.log"))) == runs


def summary_without_timings(workdir: Path) -> list[dict]:
    with open(workdir / "results" / "experiments" / "summary.csv") as handle:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(handle)]


def test_the_cluster_grid_summary_equals_the_local_one(both_grids):
    cluster, local = (summary_without_timings(directory) for directory in both_grids)
    assert cluster == local and len(cluster) == len(TINY_GRID["grids"]["tiny"]["train"]["learning_rate"])


@pytest.fixture(scope="module")
def tagged_on_cluster(both_runs) -> Path:
    """The tiny collection tagged on the cluster with the model the cluster run trained (a run of its own, so that
    the pipeline's run keeps its whole time limit)."""
    cluster_dir, _ = both_runs
    tagging = run_on_cluster(cluster_dir, "tag_collection")
    assert tagging.returncode == 0, tagging.stdout[-4000:] + tagging.stderr[-6000:]
    return cluster_dir


def test_each_tag_shard_ran_as_its_own_slurm_job_and_the_collection_was_merged(tagged_on_cluster):
    cluster_dir = tagged_on_cluster
    tagged = cluster_dir / "tagged"
    planned = [shard["name"] for shard in json.loads((tagged / "plan" / "manifest.json").read_text())["shards"]]
    assert len(planned) > 1
    job_ids = {name: json.loads((tagged / "records" / f"{name}.stats.json").read_text())["slurm_job_id"]
               for name in planned}
    assert all(job_ids.values()), f"a shard was tagged outside Slurm: {job_ids}"
    assert len(set(job_ids.values())) == len(planned), f"shards shared a Slurm job: {job_ids}"
    logs = cluster_dir / ".snakemake" / "slurm_logs" / "rule_tag_shard"
    for name, job_id in job_ids.items():
        assert (logs / name / f"{job_id}.log").is_file(), f"no Slurm log of job {job_id} for shard {name}"
    logged = {path.name for path in (cluster_dir / ".snakemake" / "slurm_logs").iterdir()}
    assert {f"rule_{rule}" for rule in TAG_CLUSTER_RULES} <= logged and "rule_merge_tag_collection" not in logged
    summary = json.loads((tagged / "summary.json").read_text())
    assert summary["documents"] == 7 and summary["skipped_documents"] == 3
    records = [json.loads(line) for name in planned for line in (tagged / "records" / f"{name}.jsonl").open()]
    table = pq.read_table(tagged / "entities.parquet")
    assert table.num_rows == sum(len(r["entities"]) for r in records) == summary["entities"]
