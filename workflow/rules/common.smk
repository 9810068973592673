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
BILM_CHECKPOINT = f"{CACHE}/bilm/checkpoint"
ELMO_FILES_HUB = f"{CACHE}/elmo_files/hub"  # embedder.kind elmo_files: the bilm-tf files exported as a SavedModel
RUN_DIR = f"{RESULTS}/{config['task']}"


def section_json(name):
    """JSON of one config section, sorted so the same settings always give the same params string."""
    return json.dumps(config[name], sort_keys=True)


def bilm_text_files():
    """Every file bilm.unlabelled_text names (so a changed or added text file reruns pretraining), or a clear error."""
    from pipeline.bilm.text import TextSourceError, expand_text_sources

    try:
        return [str(path) for path in expand_text_sources(config["bilm"]["unlabelled_text"])]
    except TextSourceError as exc:
        raise WorkflowError(str(exc))


def embedder_settings_json():
    """The embedder section as the embed jobs' params, without the elmo_files paths unless that kind is in use: a
    workspace embedded before those keys existed keeps its cache instead of re-embedding the corpus."""
    settings = dict(config["embedder"])
    if settings["kind"] != "elmo_files":
        for key in ("options", "weights"):
            if settings.get(key) is None:
                settings.pop(key, None)
    return json.dumps(settings, sort_keys=True)


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
    """What the embed stage loads with tensorflow_hub.load: our exported biLM, the exported bilm-tf files, or the
    configured TF-Hub module."""
    if config["embedder"]["kind"] == "bilm":
        return BILM_HUB
    if config["embedder"]["kind"] == "elmo_files":
        missing = [key for key in ("options", "weights") if not config["embedder"].get(key)]
        if missing:
            raise WorkflowError(f"embedder.kind is elmo_files but embedder.{' and embedder.'.join(missing)} is empty: "
                                f"give the paths of the bilm-tf options JSON and weights HDF5 files")
        return ELMO_FILES_HUB
    if not config["embedder"]["handle"]:
        raise WorkflowError("embedder.kind is tfhub but embedder.handle is empty: give a URL or a local directory")
    return config["embedder"]["handle"]


def embedder_inputs(wildcards):
    """The exported biLM (or bilm-tf files) is an input of every embed job when it is the embedder (so retraining it,
    or new files, re-embeds)."""
    return {"bilm": [BILM_HUB], "elmo_files": [ELMO_FILES_HUB]}.get(config["embedder"]["kind"], [])


def shard_names(split):
    """Shard names of a split, known once the split_corpus checkpoint has run."""
    meta = checkpoints.split_corpus.get().output.meta
    with open(meta) as handle:
        return json.load(handle)["shards"][split]


def shard_embeddings(split):
    """Input function: the HDF5 cache files of every shard of a split."""
    return lambda wildcards: [f"{CACHE}/embeddings/{name}.h5" for name in shard_names(split)]
