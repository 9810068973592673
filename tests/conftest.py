"""Shared fixtures: a tiny corpus in the Kaggle CSV format, a tiny trained biLM exported with the ELMo signature,
and the HDF5 shards it produces. Everything is written by the tests themselves, so they run offline and fast."""
from __future__ import annotations

import csv
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

#: Settings one test may change and no later test may inherit: the benchmarks quiet the pipeline's logs, and the
#: Snakemake runs of the end-to-end test check those logs (CI once failed only in the full suite because of it).
LEAKY_VARIABLES = ("NER_LOG_LEVEL", "TQDM_DISABLE")


@pytest.fixture(autouse=True)
def isolated_log_settings(monkeypatch):
    """Restore the log-level variables and the ``pipeline`` logger's level after every test."""
    import logging

    for name in LEAKY_VARIABLES:
        monkeypatch.setenv(name, "unset-by-test")  # records the original value (or absence) for undo
        monkeypatch.delenv(name)
    logger = logging.getLogger("pipeline")
    level = logger.level
    yield
    logger.setLevel(level)

def in_ci() -> bool:
    """Whether the tests run in CI (the CI variable set), where tests that build their own environment must run."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def skip_unless(condition: bool, reason: str, test: str) -> None:
    """Skip ``test`` locally when what it installs cannot be had here; fail in CI, where it must run."""
    if condition:
        return
    if in_ci():
        pytest.fail(f"{test} must run in CI: {reason}")
    pytest.skip(reason)


#: Debian packages that tests install with apt-get where missing, by the test file that needs them, with a program
#: that shows they are there: Slurm for the cluster test (.ci/slurm-cluster.sh), chromium for the page test.
APT_NEEDS = {
    "test_slurm_cluster.py": (("munge", "slurmctld", "slurmd", "slurm-client"), "slurmctld"),
    "test_serve.py": (("chromium", "fonts-dejavu-core"), "chromium"),
}
APT_WAIT_TIMEOUT_S = 900
APT_POLL_S = 1.0


def _session_shared_dir(tmp_path_factory) -> Path:
    """A directory that every xdist worker of this session shares (the session's own base directory without xdist)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def _apt_markers(tmp_path_factory) -> tuple[Path, Path]:
    shared = _session_shared_dir(tmp_path_factory)
    return shared / "background-apt.started", shared / "background-apt.done"


def pytest_collection_finish(session) -> None:
    """Start installing, in the background, the Debian packages the selected tests will install anyway.

    Why: on a fresh CI machine downloading and unpacking Slurm and chromium takes minutes of mostly waiting; started
    here it overlaps the CPU-bound tests that run first instead of adding to the suite's time. The tests still do
    their own checked install (:func:`wait_for_background_apt` first), so a failed background install only costs
    the overlap. Every xdist worker collects every test, so the first one to get here starts the install for all
    (apt allows one at a time); a marker file says it has finished, whichever worker waits for it.
    """
    selected = {Path(str(item.fspath)).name for item in session.items}
    packages = [package for name, (names, program) in APT_NEEDS.items()
                if name in selected and shutil.which(program) is None for package in names]
    if not packages or not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return
    started, done = _apt_markers(session.config._tmp_path_factory)  # the fixture's factory
    try:
        started.touch(exist_ok=False)  # atomic: exactly one worker wins
    except FileExistsError:
        return
    log = Path(tempfile.gettempdir()) / "ner-tests-apt.log"
    command = (f"apt-get update -q && apt-get install -y -q --no-install-recommends {' '.join(packages)}"
               f" >{log} 2>&1; touch {done}")
    subprocess.Popen(["bash", "-c", command], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     env=os.environ | {"DEBIAN_FRONTEND": "noninteractive"}, start_new_session=True)


#: Test files that take minutes, in the order they should start. Under xdist's --dist loadscope each file goes whole
#: to one worker, in collection order: the long ones go first so that no worker is left with one at the end. The
#: Slurm test comes after two CPU-bound files: by then the background apt install it waits for has finished, and
#: while its jobs run on the cluster the other worker goes on with the rest.
LONG_TEST_FILES = ("test_pipeline.py", "test_interrupt.py", "test_train_evaluate.py", "test_experiments.py",
                   "test_slurm_cluster.py", "test_serve.py", "test_tag_collection.py", "test_tagger.py", "test_bilm.py",
                   "test_features.py")


def pytest_collection_modifyitems(items) -> None:
    """Run the long test files first (see LONG_TEST_FILES); the others keep their order after them."""
    def rank(item) -> int:
        name = Path(str(item.fspath)).name
        return LONG_TEST_FILES.index(name) if name in LONG_TEST_FILES else len(LONG_TEST_FILES)

    items.sort(key=rank)  # stable: tests within a file keep their order


def wait_for_background_apt(tmp_path_factory) -> None:
    """Let the install started at collection finish (apt allows one at a time) before a test installs or looks."""
    started, done = _apt_markers(tmp_path_factory)
    deadline = time.monotonic() + APT_WAIT_TIMEOUT_S
    while started.exists() and not done.exists() and time.monotonic() < deadline:
        time.sleep(APT_POLL_S)


def built_once(tmp_path_factory, name: str, build: Callable[[Path], Any]) -> Any:
    """``build(directory)``'s JSON-able result, built once per test session even when xdist runs several workers.

    Why: the expensive session fixtures (the tiny biLM, its shards, the tiny pipeline run) would otherwise be built
    again by every worker that needs them. The first worker builds under a file lock; the others wait for it and
    read the recorded result. A failed build records nothing, so the next worker tries again and fails as loudly.
    """
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return build(tmp_path_factory.mktemp(name))
    from filelock import FileLock

    shared = _session_shared_dir(tmp_path_factory)
    record = shared / f"{name}.json"
    with FileLock(str(shared / f"{name}.lock")):
        if record.is_file():
            return json.loads(record.read_text())
        directory = shared / name
        directory.mkdir()
        result = build(directory)
        record.write_text(json.dumps(result))
        return result


PEOPLE = ["Smith", "Obama", "Putin", "Merkel", "Chavez", "Annan"]
PLACES = ["London", "Iraq", "Belgrade", "Paris", "Kenya", "Gaza"]
ORGS = ["NATO", "Hamas", "Reuters", "Congress"]
DAYS = ["Monday", "Tuesday", "2008", "Friday"]
FILLER = ["the", "officials", "said", "NaN", "NA", "talks", "were", "held", "in", "with"]

TINY_BILM = {
    "char_embedding_dim": 4, "max_chars_per_token": 12, "filters": [[1, 4], [2, 4], [3, 8]], "highway_layers": 1,
    "projection_dim": 8, "cell_dim": 16, "cell_clip": 3.0, "projection_clip": 3.0, "min_word_count": 1,
    "num_samples": 16, "batch_size": 4, "epochs": 1, "learning_rate": 0.01, "dropout": 0.0, "seed": 1,
    "unlabelled_text": [], "init": None, "max_vocabulary": None, "row_tokens": 24, "shuffle_buffer": 64,
    "pool_batches": 4, "checkpoint_minutes": 5, "max_tokens": None, "jit_compile": False,
}
#: Epochs of the session's tiny biLM: enough steps for its loss to fall (test_bilm checks that on its report), and
#: more epochs of a 32-sentence corpus cost little next to tracing the model once.
FIXTURE_BILM_EPOCHS = 6
TINY_TRAIN = {
    "units": 8, "dropout": 0.0, "recurrent_dropout": 0.0, "batch_size": 5, "learning_rate": 0.01, "max_epochs": 2,
    "patience": 1, "seed": 3, "cache_in_memory_gb": 1.0, "bucket_by_length": True, "word_embedding_dim": 4,
    "min_word_count": 1, "max_batch_shapes": 3, "use_elmo": True, "word_dropout": 0.1, "char_embedding_dim": 4,
    "char_filters": 4, "char_kernel": 3, "max_chars_per_token": 8, "casing_dim": 2, "vectors": None,
    "max_vectors": None, "max_train_sentences": None, "subsample_seed": 0, "output": "softmax",
    # A tiny run takes a few dozen steps: an average over ~500 steps would still be the first step's weights.
    "weight_averaging": None,
}


def tiny_sentence(rng: random.Random) -> list[tuple[str, str, str]]:
    """One sentence of (word, pos, tag) with a person, a place, an organisation and a time, in random order."""
    rows = [("Mr.", "NNP", "B-per"), (rng.choice(PEOPLE), "NNP", "I-per")]
    rows += [(w, "NN", "O") for w in rng.sample(FILLER, rng.randint(1, 4))]
    rows += [(rng.choice(PLACES), "NNP", "B-geo")]
    if rng.random() < 0.5:
        rows += [("of", "IN", "O"), (rng.choice(ORGS), "NNP", "B-org")]
    rows += [("on", "IN", "O"), (rng.choice(DAYS), "NNP", "B-tim"), (".", ".", "O")]
    return rows


def write_tiny_corpus(path: Path, sentences: int = 40, seed: int = 0) -> Path:
    """A corpus CSV in the Kaggle format (latin-1, sentence id on the first row of each sentence)."""
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="latin-1") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Sentence #", "Word", "POS", "Tag"])
        for number in range(1, sentences + 1):
            for position, (word, pos, tag) in enumerate(tiny_sentence(rng)):
                writer.writerow([f"Sentence: {number}" if position == 0 else "", word, pos, tag])
    return path


@pytest.fixture(scope="session")
def tiny_config() -> dict:
    """The default configuration, shrunk to sizes that train in seconds."""
    from pipeline.config import load_config

    config = load_config()
    config["corpus"]["shard_size"] = 16
    config["bilm"] = dict(TINY_BILM)
    config["train"] = dict(TINY_TRAIN)
    config["embedder"]["batch_size"] = 8
    return config


@pytest.fixture(scope="session")
def prepared_corpus(tmp_path_factory, tiny_config) -> tuple[Path, dict]:
    """Corpus stage output (splits, shards, meta.json) for a 40-sentence corpus."""
    from pipeline.corpus import prepare

    def build(root: Path) -> tuple[str, dict]:
        config = json.loads(json.dumps(tiny_config))
        config["corpus"]["path"] = str(write_tiny_corpus(root / "ner_dataset.csv"))
        return str(root / "out"), prepare(config, root / "out")

    out, meta = built_once(tmp_path_factory, "corpus", build)
    return Path(out), meta


@pytest.fixture(scope="session")
def exported_bilm(tmp_path_factory, prepared_corpus) -> Path:
    """A tiny biLM, trained for ``FIXTURE_BILM_EPOCHS`` and exported as an ELMo-signature SavedModel; its trained
    directory (``model``, with ``perplexity.json``) sits beside the export."""
    from pipeline.bilm.export import export_bilm
    from pipeline.bilm.pretrain import pretrain

    corpus_dir, _ = prepared_corpus

    def build(root: Path) -> str:
        pretrain(str(corpus_dir / "train.conll"), str(corpus_dir / "val.conll"),
                 TINY_BILM | {"epochs": FIXTURE_BILM_EPOCHS}, str(root / "model"))
        export_bilm(root / "model", root / "hub")
        return str(root / "hub")

    return Path(built_once(tmp_path_factory, "bilm", build))


@pytest.fixture(scope="session")
def cached_shards(tmp_path_factory, prepared_corpus, exported_bilm) -> dict[str, list[Path]]:
    """HDF5 embedding shards of every split, produced through tensorflow_hub.load of the tiny export."""
    from pipeline.embed import embed_shard

    corpus_dir, meta = prepared_corpus
    provenance = {"embedder_kind": "bilm", "corpus_sha256": meta["corpus_sha256"], "settings": "{}"}

    def build(root: Path) -> dict[str, list[str]]:
        shards = {}
        for split, names in meta["shards"].items():
            shards[split] = []
            for name in names:
                out = root / f"{name}.h5"
                embed_shard(corpus_dir / "shards" / f"{name}.conll", str(exported_bilm), out, 8, "float16",
                            provenance)
                shards[split].append(str(out))
        return shards

    return {split: [Path(p) for p in paths] for split, paths in built_once(tmp_path_factory, "shards", build).items()}


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, cached_shards, prepared_corpus) -> Path:
    """The tiny tagger trained once per session with ``TINY_TRAIN`` on the cached shards; the tests that only read a
    run directory (train_evaluate, tagger, cli) share it instead of each training their own."""
    from pipeline.train import train

    _, meta = prepared_corpus

    def build(run_dir: Path) -> str:
        train(cached_shards["train"], cached_shards["val"], meta["tags"], TINY_TRAIN, "ner", run_dir)
        return str(run_dir)

    return Path(built_once(tmp_path_factory, "tiny-run", build))


PROJECT_ROOT = Path(__file__).resolve().parent.parent
#: What a copy of the workflow needs, and the tiny run's configuration: 40 sentences (32 train, 4 val, 4 test) in
#: shards of 16 give 2 train shards plus one val and one test shard, so several embed jobs exist (each one pays a
#: Python and TensorFlow start, locally and again on the Slurm cluster, so no more than that).
WORKFLOW_ITEMS = ("Snakefile", "workflow", "config", "profiles")
TINY_WORKFLOW_SENTENCES = 40
TINY_WORKFLOW_SHARD_SIZE = 16


def workflow_copy(root: Path) -> tuple[Path, dict]:
    """The workflow, its configuration and profiles in a fresh directory with a tiny corpus and ``tiny.yaml``."""
    root.mkdir(parents=True, exist_ok=True)
    for item in WORKFLOW_ITEMS:
        source = PROJECT_ROOT / item
        (shutil.copytree if source.is_dir() else shutil.copy)(source, root / item)
    corpus = write_tiny_corpus(root / "tiny.csv", sentences=TINY_WORKFLOW_SENTENCES)
    config = {"corpus": {"path": str(corpus), "shard_size": TINY_WORKFLOW_SHARD_SIZE}, "bilm": TINY_BILM,
              "train": TINY_TRAIN, "embedder": {"batch_size": 8}}
    (root / "tiny.yaml").write_text(yaml.safe_dump(config))
    return root, config


def run_snakemake(workdir: Path, *args: str, env: dict | None = None, targets: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """``snakemake TARGETS --cores 2 --configfile tiny.yaml ARGS`` in ``workdir``, as a user would type it (targets
    first: --configfile takes every word after it up to the next option)."""
    command = [sys.executable, "-m", "snakemake", *targets, "--cores", "2", "--configfile", "tiny.yaml", *args]
    return subprocess.run(command, cwd=workdir, capture_output=True, text=True, env=env)


def without_slurm_environment() -> dict:
    """This process's environment less any SLURM_* variables (pytest itself may run inside a Slurm job, and a local
    run must not think it is one)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}


@pytest.fixture(scope="session")
def tiny_workflow(tmp_path_factory) -> tuple[Path, dict]:
    """The whole Snakefile run locally on the tiny corpus, once per session: the end-to-end tests read it, and the
    Slurm test compares its cluster run with it (one local run instead of two)."""
    def build(root: Path) -> tuple[str, dict]:
        workdir, config = workflow_copy(root / "local")
        result = run_snakemake(workdir, env=without_slurm_environment())
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        return str(workdir), config

    workdir, config = built_once(tmp_path_factory, "workflow", build)
    return Path(workdir), config


#: The tiny experiment grid: two learning rates (a grid of two points; one epoch count for both) x two seeds, on the
#: tiny workflow's cache. Rates this high give the 2-epoch-tiny tagger non-zero, seed-dependent scores in 3 epochs.
TINY_GRID = {"seeds": [1, 2], "ensemble": True,
             "grids": {"tiny": {"train": {"learning_rate": [0.03, 0.1], "max_epochs": [3]}}}}
#: What a finished workflow's copy leaves behind: its results and reports (the copy makes its own), Snakemake's lock
#: and job logs (another run's).
NOT_CLONED = ("results", "report*.html", "locks", "slurm_logs", "incomplete", "log")


def workflow_clone(source: Path, target: Path) -> Path:
    """A finished workflow directory copied with its cache and Snakemake's records of it, file times kept, so that
    Snakemake finds the cache up to date in the copy (the copy's runs cannot disturb the tests reading the source)."""
    shutil.copytree(source, target, symlinks=True, ignore=shutil.ignore_patterns(*NOT_CLONED))
    return target


def with_experiments(workdir: Path, config: dict, experiments: dict) -> dict:
    """Write ``tiny.yaml`` in ``workdir``: the tiny configuration plus an experiments section; returns it."""
    config = json.loads(json.dumps(config)) | {"experiments": experiments}
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    return config


@pytest.fixture(scope="session")
def tiny_experiments(tmp_path_factory, tiny_workflow) -> tuple[Path, dict, str]:
    """The tiny experiment grid (TINY_GRID) run locally with ``snakemake experiments`` on a copy of the session's
    finished tiny workflow, once per session: (directory, its configuration, the dry run's output before the run).
    The experiments tests read it; the Slurm test compares its own grid run with it."""
    source, config = tiny_workflow

    def build(root: Path) -> tuple[str, dict, str]:
        workdir = workflow_clone(source, root / "experiments")
        config_with_grid = with_experiments(workdir, config, TINY_GRID)
        planned = run_snakemake(workdir, "--dry-run", targets=("experiments",), env=without_slurm_environment())
        assert planned.returncode == 0, planned.stdout[-4000:] + planned.stderr[-4000:]
        result = run_snakemake(workdir, targets=("experiments",), env=without_slurm_environment())
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        return str(workdir), config_with_grid, planned.stdout

    workdir, config_with_grid, planned = built_once(tmp_path_factory, "experiments", build)
    return Path(workdir), config_with_grid, planned
