# Shared paths and helpers of the rules. Settings reach each rule as `params.settings` (JSON of its config section):
# Snakemake reruns a rule when its params change, so a training setting reruns training and what follows, only.
import json

from pipeline.corpus import CorpusError, find_corpus

CACHE = "cache"
RESULTS = "results"
CORPUS_DIR = f"{CACHE}/corpus"
SPLITS = ("train", "val", "test")
BILM_MODEL = f"{CACHE}/bilm/model"
BILM_HUB = f"{CACHE}/bilm/hub"
RUN_DIR = f"{RESULTS}/{config['task']}"


def section_json(name):
    """JSON of one config section, sorted so the same settings always give the same params string."""
    return json.dumps(config[name], sort_keys=True)


def corpus_file():
    """The corpus path (config, else data/, else ../shared/data/) or a clear error telling where to put it; for a
    CoNLL corpus, its three files."""
    if config["corpus"]["format"] == "conll":
        return [config["corpus"]["files"].get(split, "") for split in SPLITS]
    try:
        return str(find_corpus(config["corpus"]["path"]))
    except CorpusError as exc:
        raise WorkflowError(str(exc))


def embedder_handle():
    """What the embed stage loads with tensorflow_hub.load: our exported biLM, or the configured TF-Hub module."""
    if config["embedder"]["kind"] == "bilm":
        return BILM_HUB
    if not config["embedder"]["handle"]:
        raise WorkflowError("embedder.kind is tfhub but embedder.handle is empty: give a URL or a local directory")
    return config["embedder"]["handle"]


def embedder_inputs(wildcards):
    """The exported biLM is an input of every embed job when it is the embedder (so retraining it re-embeds)."""
    return [BILM_HUB] if config["embedder"]["kind"] == "bilm" else []


def shard_names(split):
    """Shard names of a split, known once the split_corpus checkpoint has run."""
    meta = checkpoints.split_corpus.get().output.meta
    with open(meta) as handle:
        return json.load(handle)["shards"][split]


def shard_embeddings(split):
    """Input function: the HDF5 cache files of every shard of a split."""
    return lambda wildcards: [f"{CACHE}/embeddings/{name}.h5" for name in shard_names(split)]
