# Named-entity recognition with cached ELMo-style embeddings: the table of contents.
# Stages: split the corpus -> (pretrain + export the offline biLM) -> embed each shard once into HDF5
#         -> train the residual biLSTM on the cache -> evaluate with seqeval.
from snakemake.utils import min_version, update_config, validate

from pipeline.config import ConfigError, coerce_overrides

min_version("9.0")


configfile: "config/config.yaml"


# Snakemake hands values nested in --config (train={"max_epochs": 8}) over as strings: read them back as the types
# the schema gives their keys, so the README's overrides validate. --configfile values are typed YAML already.
try:
    update_config(config, coerce_overrides(dict(workflow.config_settings.config)))
except ConfigError as exc:
    raise WorkflowError(str(exc))


validate(config, "config/schema.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/corpus.smk"
include: "workflow/rules/bilm.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/experiments.smk"
include: "workflow/rules/tag_collection.smk"


# Run on the submit host even with a cluster executor: these are short and a Slurm job would mostly wait in the queue.
localrules:
    all,
    split_corpus,
    evaluate,
    report_figures,
    merge_tag_collection,
    tag_collection,


rule all:
    input:
        rules.evaluate.output,
        # The entity report only means something for NER; other tasks stop at their evaluation.
        rules.report_figures.output if config["task"] == "ner" else [],
    default_target: True
