# Tag a document collection with a trained run: snakemake --cores all tag_collection --config 'tag={"input": "articles/"}'
# plan (a checkpoint: the shard list is known once it has read the collection) -> one tag_shard job per shard, which
# loads the model once and writes its records atomically -> merge into the entity table and the summary.
# Finished shards are never tagged again; after a kill, `snakemake --unlock` and the same command resume.
from pipeline.collection import plan_settings, shard_names as planned_shards, tag_settings
from pipeline.documents import CollectionError, collection_files

TAG = config["tag"]
TAG_DIR = TAG["out"]
TAG_PLAN = f"{TAG_DIR}/plan"
TAG_RECORDS = f"{TAG_DIR}/records"
TAG_RUN_FILES = [f"{TAG['run']}/{name}" for name in ("model.keras", "tags.json", "embedder.json")]


wildcard_constraints:
    tag_shard=r"shard-\d+",


def tag_collection_documents(wildcards):
    """The collection's files (their changes replan), or a clear error when tag.input is missing or matches none."""
    if not TAG["input"]:
        raise WorkflowError("tag.input is not set: give the documents to tag, e.g. --config 'tag={\"input\": \"articles/\"}'")
    try:
        return [str(path) for path in collection_files(TAG["input"])]
    except CollectionError as exc:
        raise WorkflowError(str(exc))


def tagged_shard_files(suffix):
    """Input function: one file per planned shard (known once the plan checkpoint has run)."""
    def inputs(wildcards):
        manifest = checkpoints.plan_tag_collection.get().output.manifest
        return [f"{TAG_RECORDS}/{name}{suffix}" for name in planned_shards(manifest)]

    return inputs


checkpoint plan_tag_collection:
    message:
        "Reading the collection {params.input} and cutting it into shards of about {params.sentences} sentences"
    input:
        documents=tag_collection_documents,
    output:
        manifest=f"{TAG_PLAN}/manifest.json",
        shards=directory(f"{TAG_PLAN}/shards"),
    params:
        settings=plan_settings(TAG),
        input=TAG["input"],
        sentences=TAG["shard_sentences"],
    threads: 1
    resources:
        mem_mb=2000,
        runtime=60,
    log:
        "logs/tag_collection/plan.log",
    benchmark:
        "benchmarks/tag_collection/plan.tsv"
    shell:
        "python -m pipeline.collection plan --settings {params.settings:q} --manifest {output.manifest} --shards {output.shards} > {log} 2>&1"


rule tag_shard:
    message:
        "Tagging {wildcards.tag_shard} of the collection with {params.run}"
    input:
        shard=lambda wildcards: f"{checkpoints.plan_tag_collection.get().output.shards}/{wildcards.tag_shard}.jsonl",
        run=TAG_RUN_FILES,
    output:
        records=f"{TAG_RECORDS}/{{tag_shard}}.jsonl",
        stats=f"{TAG_RECORDS}/{{tag_shard}}.stats.json",
    params:
        settings=tag_settings(TAG),
        run=TAG["run"],
    threads: 1  # one core per job, shards fan out over cores and nodes; --set-threads tag_shard=2 gives each two
    resources:
        mem_mb=4000,
        runtime=60,
    log:
        "logs/tag_collection/{tag_shard}.log",
    benchmark:
        "benchmarks/tag_collection/{tag_shard}.tsv"
    shell:
        "python -m pipeline.collection tag --shard {input.shard} --run {params.run:q} --settings {params.settings:q} --threads {threads} --records {output.records} --stats {output.stats} > {log} 2>&1"


rule merge_tag_collection:
    message:
        "Merging the tagged shards into the entity table and the summary"
    input:
        manifest=f"{TAG_PLAN}/manifest.json",
        records=tagged_shard_files(".jsonl"),
        stats=tagged_shard_files(".stats.json"),
    output:
        table=f"{TAG_DIR}/entities.parquet",
        summary=f"{TAG_DIR}/summary.json",
        page=f"{TAG_DIR}/summary.html",
        figure=f"{TAG_DIR}/summary.png",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=30,
    log:
        "logs/tag_collection/merge.log",
    benchmark:
        "benchmarks/tag_collection/merge.tsv"
    shell:
        "python -m pipeline.collection merge --manifest {input.manifest} --records {input.records} --stats {input.stats} --table {output.table} --summary {output.summary} --page {output.page} --figure {output.figure} > {log} 2>&1"


rule tag_collection:
    input:
        rules.merge_tag_collection.output,
