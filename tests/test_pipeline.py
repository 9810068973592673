"""End to end: the Snakefile on a tiny corpus, and what a changed setting reruns (from Snakemake's dry run)."""
from __future__ import annotations

import gzip
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from snakemake.cli import parse_config
from snakemake.utils import update_config

from conftest import run_snakemake
from pipeline.config import coerce_overrides

PROJECT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


def job_stats(result: subprocess.CompletedProcess) -> dict[str, int]:
    """Rule name -> job count from Snakemake's job stats table (empty when there is nothing to do)."""
    table = result.stdout.split("Job stats:")[-1] if "Job stats:" in result.stdout else ""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, flags=re.M)
            if m.group(1) != "total"}


def planned_jobs(workdir: Path, config: dict) -> dict[str, int]:
    """Rule name -> job count of a dry run with ``config`` (Snakemake's job stats table)."""
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake(workdir, "--dry-run")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return job_stats(result)


def test_pipeline_writes_cache_model_and_metrics(tiny_workflow):
    workdir, _ = tiny_workflow
    assert list((workdir / "cache" / "embeddings").glob("*.h5"))
    assert (workdir / "cache" / "bilm" / "hub" / "saved_model.pb").is_file()
    assert (workdir / "results" / "ner" / "model.keras").is_file()
    metrics = json.loads((workdir / "results" / "ner" / "test" / "metrics.json").read_text())
    assert "micro" in metrics["averages"]
    assert all((workdir / "logs" / f"{rule}.log").is_file() for rule in ("split_corpus", "train", "evaluate"))
    assert (workdir / "benchmarks" / "train.tsv").is_file()


def test_long_stages_log_their_progress(tiny_workflow):
    """Periodic progress lines (rate, time left) reach the stage logs, which are files: no tqdm bar there."""
    workdir, _ = tiny_workflow
    pretrain = (workdir / "logs" / "pretrain_bilm.log").read_text()
    assert re.search(r"pretrain biLM pass 1/1: (\d+)/\1 tokens \(100%\), [\d.]+ (tokens/s|s/token), done in \d+:\d\d",
                     pretrain)
    embed = (workdir / "logs" / "embed" / "train-0000.log").read_text()
    assert re.search(r"embed train-0000: (\d+)/\1 tokens \(100%\), [\d.]+ tokens/s, done in \d+:\d\d", embed)
    assert "\r" not in pretrain + embed


def test_nothing_reruns_when_nothing_changed(tiny_workflow):
    workdir, config = tiny_workflow
    assert planned_jobs(workdir, config) == {}


def test_changing_a_training_setting_reruns_only_training_and_evaluation(tiny_workflow):
    workdir, config = tiny_workflow
    changed = json.loads(json.dumps(config))
    changed["train"]["units"] = 6
    assert planned_jobs(workdir, changed) == {"train": 1, "evaluate": 1, "report_figures": 1, "all": 1}


def test_changing_an_embedder_setting_re_embeds(tiny_workflow):
    workdir, config = tiny_workflow
    changed = json.loads(json.dumps(config))
    changed["embedder"]["dtype"] = "float32"
    jobs = planned_jobs(workdir, changed)
    assert jobs.get("embed_shard", 0) >= 3 and "train" in jobs and "pretrain_bilm" not in jobs


def test_adding_unlabelled_text_repretrains_the_bilm_and_what_follows(tiny_workflow):
    workdir, config = tiny_workflow
    text = workdir / "unlabelled" / "news.txt.gz"
    text.parent.mkdir(exist_ok=True)
    with gzip.open(text, "wt", encoding="utf-8") as handle:
        handle.write("Reuters said the talks in Paris were held on Monday.\n")
    changed = json.loads(json.dumps(config))
    changed["bilm"]["unlabelled_text"] = [str(text.parent)]
    jobs = planned_jobs(workdir, changed)
    assert jobs.get("pretrain_bilm") == 1 and jobs.get("export_bilm") == 1 and jobs.get("embed_shard", 0) >= 3
    changed["bilm"]["unlabelled_text"] = [str(workdir / "no-such-text" / "*.bz2")]
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(changed))
    result = run_snakemake(workdir, "--dry-run")
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    assert result.returncode != 0 and "no-such-text" in result.stdout + result.stderr


def test_a_pos_head_reuses_the_cache_without_re_embedding(tiny_workflow):
    workdir, config = tiny_workflow
    changed = json.loads(json.dumps(config)) | {"task": "pos"}
    assert planned_jobs(workdir, changed) == {"train": 1, "evaluate": 1, "all": 1}


def test_the_html_report_holds_every_part(tiny_workflow):
    workdir, config = tiny_workflow
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    result = run_snakemake(workdir, "--report", "report.html")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    report = (workdir / "report.html").read_text()
    for part in ("metrics.html", "learning_curves.png", "per_type_f1.png", "entity_confusion.png", "layer_weights.png",
                 "samples.html"):
        assert part in report, part


# -- every snakemake command the README (and the docs/ pages it links) shows -------------------------------------------

DOCUMENTS = [PROJECT / "README.md", *sorted((PROJECT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", flags=re.M | re.S)


def documented_snakemake_commands(documents=DOCUMENTS) -> dict[str, list[str]]:
    """Each ``snakemake ...`` command in the documents' code blocks and inline code -> its arguments.

    Code blocks are read line by line (shell comments dropped, ``a && b`` split); inline code spans may wrap lines.
    """
    commands: dict[str, list[str]] = {}
    for document in documents:
        text = document.read_text()
        lines = [line for block in FENCE.findall(text) for line in block.splitlines()]
        lines += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", FENCE.sub("", text))]
        for line in lines:
            try:
                words = shlex.split(line.removeprefix("$ "), comments=True)
            except ValueError:  # not shell (unbalanced quotes in prose or output)
                continue
            command: list[str] = []
            for word in [*words, "&&"]:
                if word in ("&&", ";", "|"):
                    if command[:1] == ["snakemake"]:
                        commands[shlex.join(command)] = command[1:]
                    command = []
                else:
                    command.append(word)
    return commands


def config_overrides(arguments: list[str]) -> dict:
    """The ``--config`` entries of a command line, as the Snakefile sees them after coercion."""
    entries: list[str] = []
    taking = False
    for word in arguments:
        if word.startswith("-"):
            taking = word == "--config"
        elif taking:
            entries.append(word)
    return coerce_overrides(parse_config(entries))


# What a finished workflow reruns when a config section changes: the rule whose params hold the section, and every
# rule downstream of it (Snakefile: each rule gets its section as params).
FIRST_RULE = {"corpus": "split_corpus", "bilm": "pretrain_bilm", "embedder": "embed_shard", "train": "train",
              "task": "train", "evaluate": "evaluate", "tag": "plan_tag_collection"}
# The tag_collection target's shard jobs are known only once its plan (a checkpoint) has run: a dry run lists these.
DOWNSTREAM = {"split_corpus": ["pretrain_bilm", "embed_shard"], "pretrain_bilm": ["export_bilm"],
              "export_bilm": ["embed_shard"], "embed_shard": ["train"], "train": ["evaluate"],
              "evaluate": ["report_figures", "all"], "report_figures": ["all"], "all": [],
              "plan_tag_collection": ["merge_tag_collection"], "merge_tag_collection": ["tag_collection"],
              "tag_collection": []}
#: The collection the documented tag_collection commands name, written into the workflow for them.
DOCUMENTED_COLLECTION = "articles"


def expected_jobs(config: dict, overrides: dict) -> set[str]:
    """The rules a dry run should plan after ``overrides`` on a workflow finished with ``config``."""
    changed_config = json.loads(json.dumps(config))
    update_config(changed_config, overrides)
    changed = {key for key in overrides if changed_config.get(key) != config.get(key)}
    unknown = changed - FIRST_RULE.keys()
    assert not unknown, f"a documented command overrides {unknown}: add the rules it reruns to FIRST_RULE"
    jobs, todo = set(), [FIRST_RULE[key] for key in changed]
    while todo:
        rule = todo.pop()
        if rule not in jobs:
            jobs.add(rule)
            todo += DOWNSTREAM[rule]
    if changed_config.get("task", "ner") != "ner":
        jobs.discard("report_figures")  # the entity report is drawn for NER only
    return jobs


def test_the_documents_show_the_pipeline_commands():
    commands = documented_snakemake_commands()
    assert "snakemake --cores all" in commands
    assert any("--config" in arguments for arguments in commands.values())
    assert documented_snakemake_commands([PROJECT / "README.md"])  # the README itself shows at least one


def test_config_overrides_of_a_command_line_are_typed():
    arguments = shlex.split("--cores all --config 'train={\"max_epochs\": 8}' task=pos --dry-run")
    assert config_overrides(arguments) == {"train": {"max_epochs": 8}, "task": "pos"}


def test_every_documented_snakemake_command_plans_the_expected_jobs(tiny_workflow):
    """Each command as a user types it (plus the tiny config and --dry-run) validates and plans exactly the jobs its
    settings change; ``--report`` commands (which run no job) write their report."""
    workdir, config = tiny_workflow
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    defaults = yaml.safe_load((workdir / "config" / "config.yaml").read_text())
    update_config(defaults, config)
    (workdir / DOCUMENTED_COLLECTION).mkdir(exist_ok=True)
    (workdir / DOCUMENTED_COLLECTION / "news.txt").write_text("Mr. Smith went to Paris on Monday.\n")
    for command, arguments in documented_snakemake_commands().items():
        if "experiments" in arguments:  # the experiments target: tests/test_experiments.py runs those
            continue
        extra = ["--configfile", "tiny.yaml"]
        report = next((arguments[i + 1] for i, word in enumerate(arguments) if word == "--report"), None)
        if report is None:
            extra.append("--dry-run")
        result = subprocess.run([sys.executable, "-m", "snakemake", *arguments, *extra], cwd=workdir,
                                capture_output=True, text=True)
        assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}{result.stderr[-3000:]}"
        if report is not None:
            assert (workdir / report).is_file(), command
            continue
        planned = job_stats(result)
        assert set(planned) == expected_jobs(defaults, config_overrides(arguments)), f"{command}: {planned}"
