"""Experiments declared in configuration: named overrides of the settings, each trained once per seed on one cache.

Why here and not in a script loop: Snakemake then schedules the runs (in parallel, or one Slurm job each), knows which
are finished, and reruns an experiment whose overrides changed, and only that one. This module turns the
``experiments`` section (``config/experiments.schema.yaml``) into :class:`Experiment` objects, each with its full
validated settings, and says which cache each reads (:class:`CacheLayout`):

* the configuration's own cache (``cache/embeddings``) whenever an experiment leaves what the embeddings depend on
  alone (the embedder section, and the bilm section when the embedder is our biLM): an ablation of the tagger
  re-embeds nothing;
* otherwise a cache of its own under ``cache/variants/``, keyed by a hash of those settings, so it is built once for
  all its seeds and shared by every experiment with the same embedder. The biLM is keyed by the bilm section alone
  (an experiment that changes only the embedder's batch size or dtype re-embeds with the same biLM).

The sections are hashed whole, so a key added to ``bilm`` or ``embedder`` later is part of the key without a change
here.
"""
from __future__ import annotations

import copy
import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import EXPERIMENTS_SCHEMA_PATH, ConfigError, load_schema, settings_json, validate_config

CACHE = "cache"
VARIANTS = f"{CACHE}/variants"
EXPERIMENTS_DIR = "results/experiments"
#: Sections an experiment may override: what the tagger trains on (task, train), how it is scored (evaluate), and
#: what the cache is built with (embedder, bilm). The corpus and its split stay the configuration's: every experiment
#: is scored on the same test sentences.
OVERRIDABLE = ("train", "task", "embedder", "bilm", "evaluate")
#: embedder keys that only mean something with kind elmo_files (left out of the cache key otherwise, so a workspace
#: embedded before they existed keeps its cache).
ELMO_FILES_KEYS = ("options", "weights")
KEY_LENGTH = 12


class ExperimentError(ConfigError):
    """An experiments section that cannot be run as it is; the message names the experiment and the key."""


@dataclass(frozen=True)
class CacheLayout:
    """Where one embedder's files live: the shard HDF5 files, and the biLM or exported ELMo files they come from."""

    embeddings: str
    bilm_model: str
    bilm_hub: str
    elmo_files_hub: str

    def shard(self, name: str) -> str:
        return f"{self.embeddings}/{name}.h5"


@dataclass
class Experiment:
    """One named experiment: its validated settings (the configuration with its overrides), its seeds, its cache."""

    name: str
    settings: dict
    seeds: list[int]
    cache: CacheLayout

    def train_settings(self, seed: int) -> dict:
        """The train section of one run: the experiment's, with the run's seed."""
        return self.settings["train"] | {"seed": seed}

    def run_dir(self, seed: int) -> str:
        return f"{EXPERIMENTS_DIR}/{self.name}/seed{seed}"


def settings_key(settings: Any) -> str:
    """A short stable hash of settings: the name of the cache directory built with them."""
    return hashlib.sha256(settings_json(settings).encode()).hexdigest()[:KEY_LENGTH]


def embedder_settings(embedder: dict) -> dict:
    """The embedder section as the embed jobs see it: without the elmo_files paths unless that kind is in use."""
    settings = dict(embedder)
    if settings["kind"] != "elmo_files":
        for key in ELMO_FILES_KEYS:
            if settings.get(key) is None:
                settings.pop(key, None)
    return settings


def embeddings_identity(config: dict) -> dict:
    """Everything the cached activations depend on besides the corpus: the embedder, and our biLM's settings when it
    is the embedder."""
    identity = {"embedder": embedder_settings(config["embedder"])}
    if config["embedder"]["kind"] == "bilm":
        identity["bilm"] = config["bilm"]
    return identity


def cache_layout(config: dict, base: dict) -> CacheLayout:
    """The cache ``config`` reads: the base configuration's own directories where its settings are the base's, a
    directory under ``cache/variants/`` keyed by its settings otherwise."""
    if config["bilm"] == base["bilm"]:
        bilm = f"{CACHE}/bilm"
    else:
        bilm = f"{VARIANTS}/bilm-{settings_key(config['bilm'])}"
    elmo_files = {key: config["embedder"].get(key) for key in ELMO_FILES_KEYS}
    if elmo_files == {key: base["embedder"].get(key) for key in ELMO_FILES_KEYS}:
        elmo_files_hub = f"{CACHE}/elmo_files/hub"
    else:
        elmo_files_hub = f"{VARIANTS}/elmo_files-{settings_key(elmo_files)}/hub"
    identity = embeddings_identity(config)
    if identity == embeddings_identity(base):
        embeddings = f"{CACHE}/embeddings"
    else:
        embeddings = f"{VARIANTS}/embed-{settings_key(identity)}"
    return CacheLayout(embeddings, f"{bilm}/model", f"{bilm}/hub", elmo_files_hub)


def embedder_handle(embedder: dict, layout: CacheLayout) -> str:
    """What the embed stage loads with tensorflow_hub.load: our exported biLM, the exported bilm-tf files, or the
    configured TF-Hub module; ConfigError when the section does not say enough."""
    if embedder["kind"] == "bilm":
        return layout.bilm_hub
    if embedder["kind"] == "elmo_files":
        missing = [key for key in ELMO_FILES_KEYS if not embedder.get(key)]
        if missing:
            raise ConfigError(f"embedder.kind is elmo_files but embedder.{' and embedder.'.join(missing)} is empty: "
                              f"give the paths of the bilm-tf options JSON and weights HDF5 files")
        return layout.elmo_files_hub
    if not embedder["handle"]:
        raise ConfigError("embedder.kind is tfhub but embedder.handle is empty: give a URL or a local directory")
    return embedder["handle"]


def embedder_inputs(embedder: dict, layout: CacheLayout) -> list[str]:
    """The exported biLM (or bilm-tf files) is an input of every embed job when it is the embedder, so retraining it
    re-embeds."""
    return {"bilm": [layout.bilm_hub], "elmo_files": [layout.elmo_files_hub]}.get(embedder["kind"], [])


def grid_value_name(value: Any) -> str:
    """A value as it appears in an experiment's name (a directory name): null, true, false, numbers, words."""
    text = json.dumps(value) if not isinstance(value, str) else value
    return "".join(c if c.isalnum() or c in "._+-" else "-" for c in text)


def grid_points(name: str, grid: dict) -> dict[str, dict]:
    """A grid's experiments: one per combination of the listed values, named ``<grid>_<key>-<value>_...`` after the
    keys that take more than one value (a key with one value is the same for every point, so it names none)."""
    axes = []  # (section or None, key, values)
    for section, values in grid.items():
        if section == "seeds":
            continue
        if isinstance(values, dict):
            axes += [(section, key, choices) for key, choices in values.items()]
        else:
            axes.append((None, section, values))
    points = {}
    for combination in itertools.product(*(choices for _, _, choices in axes)):
        experiment: dict = {"seeds": grid["seeds"]} if "seeds" in grid else {}
        parts = [name]
        for (section, key, choices), value in zip(axes, combination):
            if section is None:
                experiment[key] = value
            else:
                experiment.setdefault(section, {})[key] = value
            if len(choices) > 1:
                parts.append(f"{key}-{grid_value_name(value)}")
        points["_".join(parts)] = experiment
    return points


def declared_experiments(section: dict) -> dict[str, dict]:
    """Every experiment of the section by name, the grids expanded; a name given twice is an error."""
    declared = dict(section["runs"])
    for grid_name, grid in section["grids"].items():
        for name, experiment in grid_points(grid_name, grid).items():
            if name in declared:
                raise ExperimentError(f"experiments: {name!r} is declared twice (grid {grid_name!r} makes it too)")
            declared[name] = experiment
    if not declared:
        raise ExperimentError("experiments: no experiment declared (give experiments.runs or experiments.grids)")
    return declared


def experiment_settings(name: str, overrides: dict, base: dict) -> dict:
    """The base configuration with an experiment's overrides, validated like any configuration."""
    settings = copy.deepcopy({key: value for key, value in base.items() if key != "experiments"})
    for section in OVERRIDABLE:
        if section not in overrides:
            continue
        if isinstance(overrides[section], dict):
            settings[section] = settings[section] | copy.deepcopy(overrides[section])
        else:
            settings[section] = overrides[section]
    if overrides.get("subsample") is not None:
        settings["train"]["max_train_sentences"] = overrides["subsample"]
    try:
        return validate_config(settings, f"experiment {name}")
    except ConfigError as exc:
        raise ExperimentError(str(exc)) from None


def experiments_section(config: dict) -> dict:
    """The configuration's experiments section, validated, with its defaults; empty when there is none."""
    if not config.get("experiments"):
        return {}
    try:
        return validate_config(config["experiments"], "experiments", load_schema(EXPERIMENTS_SCHEMA_PATH))
    except ConfigError as exc:
        raise ExperimentError(str(exc)) from None


def load_experiments(config: dict) -> dict[str, Experiment]:
    """The configuration's experiments (in declared order), each with its settings, seeds and cache; {} when the
    configuration declares none."""
    section = experiments_section(config)
    if not section:
        return {}
    base = {key: value for key, value in config.items() if key != "experiments"}
    experiments = {}
    for name, overrides in declared_experiments(section).items():
        settings = experiment_settings(name, overrides, base)
        experiments[name] = Experiment(name, settings, list(overrides.get("seeds", section["seeds"])),
                                       cache_layout(settings, base))
    reference = section["reference"]
    if reference is not None and reference not in experiments:
        raise ExperimentError(f"experiments.reference: {reference!r} is not one of the experiments "
                              f"({', '.join(experiments)})")
    return experiments


def summary_plan(config: dict, command: str) -> dict:
    """What the summary stage (pipeline.compare) needs, as JSON-ready data: each experiment's runs, seeds, task,
    decoding and cache directory (for its seed ensemble), the reference, the noise floor, whether to score ensembles,
    and the command that reproduces it all."""
    section = experiments_section(config)
    experiments = load_experiments(config)
    return {
        "experiments": {name: {"runs": [e.run_dir(seed) for seed in e.seeds], "seeds": e.seeds,
                               "task": e.settings["task"], "decode": e.settings["evaluate"]["decode"],
                               "embeddings": e.cache.embeddings}
                        for name, e in experiments.items()},
        "reference": section["reference"] or next(iter(experiments)),
        "noise_floor": section["noise_floor"],
        "ensemble": section["ensemble"],
        "command": command,
    }


def cache_variants(experiments: dict[str, Experiment]) -> dict[str, dict[str, Experiment]]:
    """Each variant cache directory the experiments read, by kind (``bilm``, ``elmo_files``, ``embed``) and key, with
    the first experiment that reads it: its settings and layout are what the rules build that directory from (every
    experiment with the same key has the same settings there)."""
    variants: dict[str, dict[str, Experiment]] = {"bilm": {}, "elmo_files": {}, "embed": {}}
    for experiment in experiments.values():
        layout = experiment.cache
        for kind, directory in (("bilm", layout.bilm_model), ("elmo_files", layout.elmo_files_hub),
                                ("embed", layout.embeddings)):
            if directory.startswith(f"{VARIANTS}/"):
                key = Path(directory.removeprefix(f"{VARIANTS}/")).parts[0].split("-", 1)[1]
                variants[kind].setdefault(key, experiment)
    return variants
