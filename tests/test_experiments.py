"""Experiments: their declaration (grids, overrides, validation, which cache each reads), the summary's arithmetic,
and the tiny grid run through the Snakefile (``snakemake experiments``) on the session's tiny cache."""
from __future__ import annotations

import csv
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config

from conftest import TINY_GRID, run_snakemake, with_experiments, workflow_clone
from pipeline.compare import ExperimentRow, RunRecord, compare, noise_threshold
from pipeline.config import load_config
from pipeline.experiments import ExperimentError, cache_layout, grid_points, load_experiments
from test_pipeline import documented_snakemake_commands, job_stats

PROJECT = Path(__file__).resolve().parent.parent
EXPERIMENT_FILES = sorted((PROJECT / "config" / "experiments").glob("*.yaml"))


def with_section(section: dict) -> dict:
    return load_config() | {"experiments": section}


# -- declaration ------------------------------------------------------------------------------------------------------


def test_a_grid_is_the_product_of_its_values_named_after_the_keys_that_vary():
    points = grid_points("g", {"train": {"units": [4, 6], "dropout": [0.0, 0.5], "max_epochs": [3]},
                               "subsample": [None, 100], "seeds": [1]})
    assert len(points) == 8
    assert points["g_units-4_dropout-0.5_subsample-100"] == {
        "seeds": [1], "train": {"units": 4, "dropout": 0.5, "max_epochs": 3}, "subsample": 100}
    assert "g_units-6_dropout-0.0_subsample-null" in points


def test_experiments_get_the_configuration_with_their_overrides_and_seeds():
    experiments = load_experiments(with_section({
        "seeds": [7, 8], "runs": {"base": {}, "small_no_bilm": {"subsample": 900, "train": {"use_elmo": False},
                                                                "seeds": [3]}, "pos": {"task": "pos"}}}))
    assert list(experiments) == ["base", "small_no_bilm", "pos"]
    small = experiments["small_no_bilm"]
    assert small.seeds == [3] and experiments["base"].seeds == [7, 8]
    assert small.train_settings(3) == load_config()["train"] | {"use_elmo": False, "max_train_sentences": 900,
                                                                  "seed": 3}
    assert experiments["pos"].settings["task"] == "pos"
    assert small.run_dir(3) == "results/experiments/small_no_bilm/seed3"


@pytest.mark.parametrize("section, message", [
    ({"runs": {"bad": {"train": {"unitz": 3}}}}, r"(?s)experiment bad: .*train: Additional properties.*'unitz'"),
    ({"runs": {"bad": {"train": {"units": "many"}}}}, r"(?s)experiment bad: .*train.units: 'many' is not of type"),
    ({"runs": {"a": {}}, "reference": "b"}, r"experiments.reference: 'b' is not one of the experiments \(a\)"),
    ({"runs": {"a b": {}}}, r"experiments: invalid configuration:\n  runs: 'a b' does not match"),
    ({"runs": {}}, r"no experiment declared"),
    ({"runs": {"g_units-4": {}}, "grids": {"g": {"train": {"units": [4, 6]}}}}, r"'g_units-4' is declared twice"),
    ({"runs": {"a": {"corpus": {"shard_size": 3}}}}, r"runs.a: Additional properties .*'corpus'"),
])
def test_a_bad_experiments_section_names_the_experiment_and_key(section, message):
    with pytest.raises(ExperimentError, match=message):
        load_experiments(with_section(section))


def test_the_cache_is_the_configurations_unless_the_embedder_or_bilm_changes():
    base = load_config()
    experiments = load_experiments(with_section({"runs": {
        "tagger_only": {"train": {"units": 64, "use_elmo": False}},
        "float32": {"embedder": {"dtype": "float32"}},
        "float32_again": {"embedder": {"dtype": "float32"}, "train": {"units": 64}},
        "wider_bilm": {"bilm": {"cell_dim": 1024}},
        "published": {"embedder": {"kind": "tfhub", "handle": "https://tfhub.dev/google/elmo/3"}}}}))
    layouts = {name: experiment.cache for name, experiment in experiments.items()}
    assert layouts["tagger_only"] == cache_layout(base, base)
    assert layouts["tagger_only"].shard("train-0000") == "cache/embeddings/train-0000.h5"
    # Another embedder setting: its own embeddings, built with the configuration's biLM, shared by both experiments.
    assert layouts["float32"].embeddings.startswith("cache/variants/embed-")
    assert layouts["float32"].bilm_hub == "cache/bilm/hub" and layouts["float32"] == layouts["float32_again"]
    # Another biLM: its own biLM and embeddings.
    assert layouts["wider_bilm"].bilm_hub.startswith("cache/variants/bilm-")
    assert layouts["wider_bilm"].embeddings not in (layouts["float32"].embeddings, "cache/embeddings")
    assert layouts["published"].embeddings not in (layouts["float32"].embeddings, "cache/embeddings")


def test_any_bilm_key_is_part_of_the_cache_key_and_unused_ones_are_not():
    """The sections are hashed whole: a bilm key added later (say a starting checkpoint) keys the cache without a
    change here; with a TF-Hub embedder the bilm section does not matter to the embeddings."""
    base = load_config()
    changed = json.loads(json.dumps(base))
    changed["bilm"]["init"] = "checkpoints/news"
    assert cache_layout(changed, base).embeddings != cache_layout(base, base).embeddings
    tfhub = json.loads(json.dumps(base))
    tfhub["embedder"] |= {"kind": "tfhub", "handle": "elmo"}
    tfhub_other_bilm = json.loads(json.dumps(tfhub))
    tfhub_other_bilm["bilm"]["init"] = "checkpoints/news"
    assert cache_layout(tfhub, base).embeddings == cache_layout(tfhub_other_bilm, base).embeddings


@pytest.mark.parametrize("path", EXPERIMENT_FILES, ids=lambda p: p.name)
def test_the_shipped_experiment_files_are_valid(path):
    config = load_config() | yaml.safe_load(path.read_text())
    assert load_experiments(config)


# -- the summary's arithmetic -----------------------------------------------------------------------------------------


def write_run(run_dir: Path, f1: float, per_type: dict[str, float], epochs: int, seconds: float) -> None:
    (run_dir / "test").mkdir(parents=True)
    metrics = {"averages": {"micro": {"f1-score": f1}},
               "per_type": {kind: {"f1-score": value} for kind, value in per_type.items()}}
    (run_dir / "test" / "metrics.json").write_text(json.dumps(metrics))
    summary = {"best_epoch": epochs - 1, "epochs_run": epochs, "train_seconds": seconds}
    (run_dir / "training_summary.json").write_text(json.dumps(summary))


def test_the_summary_gives_mean_spread_per_type_and_a_stated_noise_verdict(tmp_path):
    scores = {"a": [0.80, 0.81, 0.82], "b": [0.85, 0.86, 0.84], "c": [0.805, 0.815]}
    plan = {"experiments": {}, "reference": "a", "noise_floor": 0.004, "ensemble": False, "command": "snakemake x"}
    for name, values in scores.items():
        runs = []
        for seed, value in enumerate(values):
            write_run(tmp_path / name / f"seed{seed}", value, {"geo": value + 0.1, "org": value - 0.1}, 3, 60.0)
            runs.append(str(tmp_path / name / f"seed{seed}"))
        plan["experiments"][name] = {"runs": runs, "seeds": list(range(len(values))), "task": "ner",
                                     "decode": "bio_viterbi", "embeddings": "unused"}
    compare(plan, [], tmp_path / "out")
    rows = {row["experiment"]: row for row in csv.DictReader(open(tmp_path / "out" / "summary.csv"))}
    assert float(rows["b"]["mean"]) == pytest.approx(0.85) and float(rows["b"]["sd"]) == pytest.approx(0.01)
    assert float(rows["b"]["diff_vs_reference"]) == pytest.approx(0.04) and rows["b"]["beyond_noise"] == "True"
    assert float(rows["c"]["diff_vs_reference"]) == pytest.approx(0.0) and rows["c"]["beyond_noise"] == "False"
    assert float(rows["a"]["f1_geo"]) == pytest.approx(0.91) and rows["a"]["diff_vs_reference"] == ""
    assert float(rows["a"]["train_seconds_mean"]) == 60.0 and rows["a"]["best_epochs"] == "2 2 2"
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "| b | 0 1 2 | 0.8500 ± 0.0100 | 0.8500 / 0.8600 / 0.8400 | +0.0400 (beyond noise) |" in text
    assert "max(0.004, 2 x sqrt(sd_a^2/n_a + sd_b^2/n_b))" in text and "Reproduce: `snakemake x`" in text
    assert (tmp_path / "out" / "scores.png").stat().st_size and (tmp_path / "out" / "per_type_f1.png").stat().st_size


def test_the_noise_threshold_is_the_floor_or_twice_the_standard_error():
    def row(*scores):
        return ExperimentRow("x", [RunRecord(i, s, "entity_f1", {}, 1, 1, 1.0) for i, s in enumerate(scores)])

    assert noise_threshold(row(0.85, 0.851), row(0.84, 0.841), 0.004) == 0.004
    spread = row(0.80, 0.84)  # sd 0.0283 over 2 seeds
    assert noise_threshold(spread, spread, 0.004) == pytest.approx(2 * (2 * 0.02 ** 2 * 2 / 2) ** 0.5)
    assert noise_threshold(row(0.8), row(0.9), 0.004) == 0.004  # one seed each: only the floor


# -- through the Snakefile --------------------------------------------------------------------------------------------

slow = pytest.mark.slow


def experiment_run_dirs(workdir: Path, config: dict) -> dict[str, list[Path]]:
    """Each experiment's run directories, as the Snakefile sees the configuration (config.yaml, then tiny.yaml)."""
    full = load_config()
    update_config(full, config)
    return {name: [workdir / e.run_dir(seed) for seed in e.seeds] for name, e in load_experiments(full).items()}


@slow
def test_the_dry_run_plans_one_training_per_experiment_and_seed_and_no_embedding(tiny_experiments):
    _, _, planned = tiny_experiments
    assert job_stats(subprocess.CompletedProcess([], 0, planned, "")) == {
        "experiment_train": 4, "experiment_evaluate": 4, "experiments_summary": 1, "experiments": 1}


@slow
def test_the_summary_numbers_are_the_runs_own(tiny_experiments):
    workdir, config, _ = tiny_experiments
    rows = {row["experiment"]: row for row in csv.DictReader(open(workdir / "results/experiments/summary.csv"))}
    runs = experiment_run_dirs(workdir, config)
    assert list(rows) == list(runs) == ["tiny_learning_rate-0.03", "tiny_learning_rate-0.1"]
    for name, run_dirs in runs.items():
        metrics = [json.loads((run / "test" / "metrics.json").read_text()) for run in run_dirs]
        summaries = [json.loads((run / "training_summary.json").read_text()) for run in run_dirs]
        f1 = [m["averages"]["micro"]["f1-score"] for m in metrics]
        row = rows[name]
        assert [float(v) for v in row["per_seed"].split()] == f1
        assert float(row["mean"]) == pytest.approx(statistics.fmean(f1))
        assert float(row["sd"]) == pytest.approx(statistics.stdev(f1))
        assert row["best_epochs"] == " ".join(str(s["best_epoch"]) for s in summaries)
        assert float(row["train_seconds_mean"]) == pytest.approx(statistics.fmean(s["train_seconds"] for s in summaries))
        for kind in metrics[0]["per_type"]:
            assert float(row[f"f1_{kind}"]) == pytest.approx(statistics.fmean(m["per_type"][kind]["f1-score"]
                                                                                for m in metrics))
        assert 0.0 <= float(row["ensemble"]) <= 1.0
        assert json.loads((run_dirs[0] / "settings.json").read_text())["max_epochs"] == 3
    assert max(float(row["mean"]) for row in rows.values()) > 0  # the tiny runs learned something to compare
    text = (workdir / "results/experiments/summary.md").read_text()
    assert "Seed noise:" in text and "snakemake --cores all experiments --configfile tiny.yaml" in text


def changed_grid_plan(workdir: Path, config: dict, target: Path, experiments: dict) -> dict[str, int]:
    """The jobs a dry run of ``experiments`` plans in a copy of the finished grid with another experiments section."""
    clone = workflow_clone(workdir, target)
    shutil.copytree(workdir / "results", clone / "results")  # the finished runs, to tell what is stale
    with_experiments(clone, {k: v for k, v in config.items() if k != "experiments"}, experiments)
    result = run_snakemake(clone, "--dry-run", targets=("experiments",))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return job_stats(result)


@slow
def test_finished_runs_are_not_redone_and_a_changed_override_reruns_its_experiment_only(tiny_experiments, tmp_path):
    workdir, config, _ = tiny_experiments
    result = run_snakemake(workdir, "--dry-run", targets=("experiments",))
    assert result.returncode == 0 and job_stats(result) == {}, result.stdout[-3000:]
    # The grid written out as two runs is the same two experiments: nothing to do. Change one of them: its two seeds
    # retrain, then the summary.
    same = {"seeds": [1, 2], "ensemble": True, "runs": {
        "tiny_learning_rate-0.03": {"train": {"learning_rate": 0.03, "max_epochs": 3}},
        "tiny_learning_rate-0.1": {"train": {"learning_rate": 0.1, "max_epochs": 3}}}}
    assert changed_grid_plan(workdir, config, tmp_path / "same", same) == {}
    changed = json.loads(json.dumps(same))
    changed["runs"]["tiny_learning_rate-0.1"]["train"]["units"] = 6
    assert changed_grid_plan(workdir, config, tmp_path / "changed", changed) == {
        "experiment_train": 2, "experiment_evaluate": 2, "experiments_summary": 1, "experiments": 1}


@slow
def test_an_experiment_with_another_embedder_or_bilm_gets_one_cache_for_all_its_seeds(tiny_experiments, tmp_path):
    workdir, config, _ = tiny_experiments
    shards = len(list((workdir / "cache" / "embeddings").glob("*.h5")))
    grid = {"seeds": [1, 2], "runs": {"f32": {"embedder": {"dtype": "float32"}},
                                      "f32_b": {"embedder": {"dtype": "float32"}, "train": {"units": 6}},
                                      "other_bilm": {"bilm": {"seed": 2}}}}
    assert changed_grid_plan(workdir, config, tmp_path / "caches", grid) == {
        "variant_embed_shard": 2 * shards, "variant_pretrain_bilm": 1, "variant_export_bilm": 1,
        "experiment_train": 6, "experiment_evaluate": 6, "experiments_summary": 1, "experiments": 1}


@slow
def test_the_report_shows_the_comparison(tiny_experiments):
    workdir, _, _ = tiny_experiments
    result = run_snakemake(workdir, "--report", "experiments.html", targets=("experiments",))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (workdir / "experiments.html").read_text()
    for part in ("summary.html", "scores.png", "per_type_f1.png"):
        assert part in report, part


def documented_experiment_commands() -> dict[str, list[str]]:
    """The documents' ``snakemake ... experiments --configfile FILE`` commands that run jobs (a ``--report`` one
    writes a report of runs already made, as test_the_report_shows_the_comparison does; prose naming the target
    alone, `snakemake experiments`, is no command to run)."""
    return {command: arguments for command, arguments in documented_snakemake_commands().items()
            if "experiments" in arguments and "--configfile" in arguments and "--report" not in arguments}


def test_the_documents_show_the_experiments_command():
    assert any("config/experiments/ablation.yaml" in command for command in documented_experiment_commands())


@slow
def test_every_documented_experiments_command_plans_trainings_on_the_one_cache(tiny_experiments, tmp_path):
    """Each documented ``snakemake ... experiments`` command, with the tiny configuration added, plans one training
    and evaluation per experiment and seed of its file and nothing that embeds."""
    workdir, config, _ = tiny_experiments
    clone = workflow_clone(workdir, tmp_path / "documented")
    (clone / "tiny.yaml").write_text(yaml.safe_dump({k: v for k, v in config.items() if k != "experiments"}))
    for command, arguments in documented_experiment_commands().items():
        files = [arguments[i + 1] for i, word in enumerate(arguments) if word == "--configfile"]
        experiments = {}
        for path in files:
            experiments |= load_experiments(load_config() | yaml.safe_load((clone / path).read_text()))
        runs = sum(len(e.seeds) for e in experiments.values())
        extra = ["--configfile", *files, "tiny.yaml", "--dry-run"]  # the tiny sizes last: they win
        arguments = [word for i, word in enumerate(arguments)
                     if word != "--configfile" and (i == 0 or arguments[i - 1] != "--configfile")]
        result = subprocess.run([sys.executable, "-m", "snakemake", *arguments, *extra], cwd=clone,
                                capture_output=True, text=True)
        assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        planned = job_stats(result)
        # Experiments that change the biLM or embedder build their own caches (variant_* jobs), never the base one.
        own_caches = {e.cache.embeddings for e in experiments.values()} - {"cache/embeddings"}
        variant_jobs = {rule for rule in planned if rule.startswith("variant_")}
        assert bool(variant_jobs) == bool(own_caches), f"{command}: {planned}"
        assert {rule: n for rule, n in planned.items() if rule not in variant_jobs} == {
            "experiment_train": runs, "experiment_evaluate": runs, "experiments_summary": 1, "experiments": 1}, command
