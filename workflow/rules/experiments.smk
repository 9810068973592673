# Experiments (`snakemake --cores all experiments --configfile config/experiments/ablation.yaml`): one train and one
# evaluate job per experiment and seed under results/experiments/<name>/seed<N>/, then one summary. The rules are the
# pipeline's own train / evaluate / biLM / embed rules (`use rule`), pointed at the experiment's run directory and
# cache: pipeline.experiments says which cache that is (the configuration's own unless the experiment changes the
# embedder or the biLM, then cache/variants/<kind>-<hash of those settings>/, built once for all its seeds).
import os

from pipeline.experiments import EXPERIMENTS_DIR, VARIANTS, cache_variants, load_experiments, summary_plan

try:
    EXPERIMENTS = load_experiments(config)
except ConfigError as exc:
    raise WorkflowError(str(exc))
CACHE_VARIANTS = cache_variants(EXPERIMENTS)
EXPERIMENT_RUN = EXPERIMENTS_DIR + r"/{experiment,[^/]+}/seed{seed,\d+}"
EXPERIMENT_LOGS = "experiments/{experiment}/seed{seed}"


def experiment(wildcards):
    return EXPERIMENTS[wildcards.experiment]


def experiment_cache(wildcards):
    return experiment(wildcards).cache


def experiment_run_dir(wildcards):
    return experiment(wildcards).run_dir(int(wildcards.seed))


def variant(kind):
    """The experiment whose settings build the cache variant of ``kind`` named by the job's ``key`` wildcard."""
    return lambda wildcards: CACHE_VARIANTS[kind][wildcards.key]


def experiments_command():
    """The command that reproduces the summary, as the summary states it: the configfiles this run was given."""
    files = [os.path.relpath(path) for path in workflow.config_settings.configfiles]
    return " ".join(["snakemake --cores all experiments", *(f"--configfile {path}" for path in files)])


def experiment_outputs():
    """Every run's metrics, or a clear error when the configuration declares no experiment."""
    if not EXPERIMENTS:
        raise WorkflowError("the experiments target needs an experiments section: pass one with --configfile, e.g. "
                            "--configfile config/experiments/ablation.yaml (config/experiments.schema.yaml)")
    return [f"{e.run_dir(seed)}/test/metrics.json" for e in EXPERIMENTS.values() for seed in e.seeds]


use rule train as experiment_train with:
    message:
        "Training experiment {wildcards.experiment}, seed {wildcards.seed}, on its cache"
    input:
        train=shard_embeddings("train", experiment_cache),
        val=shard_embeddings("val", experiment_cache),
        meta=f"{CORPUS_DIR}/meta.json",
    output:
        model=f"{EXPERIMENT_RUN}/model.keras",
        tags=f"{EXPERIMENT_RUN}/tags.json",
        embedder=f"{EXPERIMENT_RUN}/embedder.json",
        history=f"{EXPERIMENT_RUN}/history.csv",
        curves=f"{EXPERIMENT_RUN}/learning_curves.png",
        layer_weights=f"{EXPERIMENT_RUN}/layer_weights.json",
    params:
        settings=lambda wildcards: json.dumps(experiment(wildcards).train_settings(int(wildcards.seed)), sort_keys=True),
        task=lambda wildcards: experiment(wildcards).settings["task"],
        run_dir=experiment_run_dir,
    log:
        f"logs/{EXPERIMENT_LOGS}/train.log",
    benchmark:
        f"benchmarks/{EXPERIMENT_LOGS}/train.tsv"


use rule evaluate as experiment_evaluate with:
    message:
        "Evaluating experiment {wildcards.experiment}, seed {wildcards.seed}, on the test split"
    input:
        model=rules.experiment_train.output.model,
        test=shard_embeddings("test", experiment_cache),
    output:
        metrics=f"{EXPERIMENT_RUN}/test/metrics.json",
        report=f"{EXPERIMENT_RUN}/test/report.txt",
        predictions=f"{EXPERIMENT_RUN}/test/predictions.conll",
    params:
        decode=lambda wildcards: experiment(wildcards).settings["evaluate"]["decode"],
        run_dir=experiment_run_dir,
    log:
        f"logs/{EXPERIMENT_LOGS}/evaluate.log",
    benchmark:
        f"benchmarks/{EXPERIMENT_LOGS}/evaluate.tsv"


use rule pretrain_bilm as variant_pretrain_bilm with:
    message:
        "Pretraining the biLM of cache variant bilm-{wildcards.key} (an experiment's bilm settings)"
    input:
        unpack(lambda wildcards: bilm_inputs(variant("bilm")(wildcards).settings["bilm"])),
    output:
        directory(VARIANTS + r"/bilm-{key,[0-9a-f]+}/model"),
    params:
        settings=lambda wildcards: json.dumps(variant("bilm")(wildcards).settings["bilm"], sort_keys=True),
        checkpoint=VARIANTS + "/bilm-{key}/checkpoint",
    log:
        "logs/variants/bilm-{key}/pretrain_bilm.log",
    benchmark:
        "benchmarks/variants/bilm-{key}/pretrain_bilm.tsv"


use rule export_bilm as variant_export_bilm with:
    input:
        VARIANTS + "/bilm-{key}/model",
    output:
        directory(VARIANTS + r"/bilm-{key,[0-9a-f]+}/hub"),
    log:
        "logs/variants/bilm-{key}/export_bilm.log",
    benchmark:
        "benchmarks/variants/bilm-{key}/export_bilm.tsv"


use rule export_elmo_files as variant_export_elmo_files with:
    input:
        options=lambda wildcards: variant("elmo_files")(wildcards).settings["embedder"]["options"],
        weights=lambda wildcards: variant("elmo_files")(wildcards).settings["embedder"]["weights"],
    output:
        directory(VARIANTS + r"/elmo_files-{key,[0-9a-f]+}/hub"),
    log:
        "logs/variants/elmo_files-{key}/export_elmo_files.log",
    benchmark:
        "benchmarks/variants/elmo_files-{key}/export_elmo_files.tsv"


use rule embed_shard as variant_embed_shard with:
    message:
        "Embedding shard {wildcards.shard} once into cache variant embed-{wildcards.key} (an experiment's embedder)"
    input:
        shard=shard_conll,
        meta=f"{CORPUS_DIR}/meta.json",
        embedder=lambda wildcards: layout_embedder_inputs(variant("embed")(wildcards).settings["embedder"],
                                                          variant("embed")(wildcards).cache),
    output:
        VARIANTS + r"/embed-{key,[0-9a-f]+}/{shard,[^/]+}.h5",
    params:
        settings=lambda wildcards: embedder_settings_json(variant("embed")(wildcards).settings["embedder"]),
        handle=lambda wildcards: embedder_handle(variant("embed")(wildcards).settings["embedder"],
                                                 variant("embed")(wildcards).cache),
    log:
        "logs/variants/embed-{key}/{shard}.log",
    benchmark:
        "benchmarks/variants/embed-{key}/{shard}.tsv"


rule experiments_summary:
    message:
        "Comparing the experiments: test scores over seeds, per type, within or beyond seed noise, figures"
    input:
        metrics=lambda wildcards: experiment_outputs(),
        meta=f"{CORPUS_DIR}/meta.json",
    output:
        markdown=f"{EXPERIMENTS_DIR}/summary.md",
        csv=f"{EXPERIMENTS_DIR}/summary.csv",
        table=report(f"{EXPERIMENTS_DIR}/summary.html", caption="../report/experiments.rst", category="4. Experiments"),
        scores=report(
            f"{EXPERIMENTS_DIR}/scores.png", caption="../report/experiment_scores.rst", category="4. Experiments"
        ),
        per_type=report(
            f"{EXPERIMENTS_DIR}/per_type_f1.png", caption="../report/experiment_per_type.rst", category="4. Experiments"
        ),
    params:
        plan=lambda wildcards: json.dumps(summary_plan(config, experiments_command()), sort_keys=True),
    resources:
        mem_mb=4000,
        runtime=30,
    log:
        "logs/experiments/summary.log",
    benchmark:
        "benchmarks/experiments/summary.tsv"
    shell:
        "python -m pipeline.compare --plan {params.plan:q} --meta {input.meta} --out {EXPERIMENTS_DIR} > {log} 2>&1"


rule experiments:
    input:
        rules.experiments_summary.output,


# Short, or reading the test split only: on the submit host, as the pipeline's evaluate.
localrules:
    experiment_evaluate,
    experiments_summary,
    experiments,
