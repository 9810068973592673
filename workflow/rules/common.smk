# Shared paths and helpers of the rules. Settings reach each rule as `params.settings` (JSON of its config section):
# Snakemake reruns a rule when its params change, so a training setting reruns training and what follows, only.
import json
from pathlib import Path

from pipeline.config import ConfigError
from pipeline.corpus import CorpusError, find_corpus
from pipeline.experiments import CACHE, cache_layout, embedder_settings
from pipeline.experiments import embedder_handle as layout_embedder_handle
from pipeline.experiments import embedder_inputs as layout_embedder_inputs

RESULTS = "results"
CORPUS_DIR = f"{CACHE}/corpus"
SPLITS = ("train", "val", "test")
# The configuration's own cache (pipeline.experiments.cache_layout: experiments that change the embedder get theirs).
BASE_CACHE = cache_layout(config, config)
BILM_MODEL = BASE_CACHE.bilm_model
BILM_HUB = BASE_CACHE.bilm_hub
BILM_CHECKPOINT = f"{Path(BILM_MODEL).parent}/checkpoint"  # pretraining resumes from here after a kill
ELMO_FILES_HUB = BASE_CACHE.elmo_files_hub  # embedder.kind elmo_files: the bilm-tf files exported as a SavedModel
RUN_DIR = f"{RESULTS}/{config['task']}"


def section_json(name):
    """JSON of one config section, sorted so the same settings always give the same params string."""
    return json.dumps(config[name], sort_keys=True)


def bilm_text_files(bilm):
    """Every file a bilm section's unlabelled_text names, or a clear error naming what matched nothing."""
    from pipeline.bilm.text import TextSourceError, expand_text_sources

    try:
        return [str(path) for path in expand_text_sources(bilm["unlabelled_text"])]
    except TextSourceError as exc:
        raise WorkflowError(str(exc))


def embedder_settings_json(embedder=None):
    """The embedder section (the configuration's by default) as the embed jobs' params, without the elmo_files paths
    unless that kind is in use: a workspace embedded before those keys existed keeps its cache instead of
    re-embedding the corpus."""
    return json.dumps(embedder_settings(config["embedder"] if embedder is None else embedder), sort_keys=True)


def corpus_file():
    """The corpus path (config, else data/, else ../shared/data/) or a clear error telling where to put it; for a
    CoNLL corpus, its three files."""
    if config["corpus"]["format"] == "conll":
        return [config["corpus"]["files"].get(split, "") for split in SPLITS]
    try:
        return str(find_corpus(config["corpus"]["path"]))
    except CorpusError as exc:
        raise WorkflowError(str(exc))


def embedder_handle(embedder=None, layout=BASE_CACHE):
    """What the embed stage loads with tensorflow_hub.load: our exported biLM, the exported bilm-tf files, or the
    configured TF-Hub module (the configuration's embedder and cache by default)."""
    try:
        return layout_embedder_handle(config["embedder"] if embedder is None else embedder, layout)
    except ConfigError as exc:
        raise WorkflowError(str(exc))


def embedder_inputs(wildcards):
    """The exported biLM (or bilm-tf files) is an input of every embed job when it is the embedder (so retraining it,
    or new files, re-embeds)."""
    return layout_embedder_inputs(config["embedder"], BASE_CACHE)


def shard_conll(wildcards):
    """Input function: the CoNLL file of the shard an embed job embeds."""
    return f"{checkpoints.split_corpus.get().output.shards}/{wildcards.shard}.conll"


def shard_names(split):
    """Shard names of a split, known once the split_corpus checkpoint has run."""
    meta = checkpoints.split_corpus.get().output.meta
    with open(meta) as handle:
        return json.load(handle)["shards"][split]


def shard_embeddings(split, layout=lambda wildcards: BASE_CACHE):
    """Input function: the HDF5 cache files of every shard of a split, in the cache ``layout(wildcards)`` gives."""
    return lambda wildcards: [layout(wildcards).shard(name) for name in shard_names(split)]
