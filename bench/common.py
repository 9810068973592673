"""Helpers shared by the benchmarks in ``bench/``: timing, machine description, result files and data sources.

Every benchmark is one command (``python bench/<name>.py [--quick]``) that prints its figures and writes
``bench/results/<name>.json``. Data: the real pipeline outputs under ``cache/`` when they exist (embedding shards,
the exported biLM, the corpus splits), otherwise a small synthetic stand-in built in a temporary directory, so
``--quick`` works on any machine with the project installed. Which one was used is recorded in every result.

Timing: :func:`measure` runs warm-up calls first (graph tracing, first-touch allocation) and reports the median of
N repeats; :class:`Stopwatch` records both wall time and this process's CPU time. CPU time is the cross-check on a
shared machine: another job competing for the cores stretches wall time but not (much) the CPU time of the work.
This module imports neither TensorFlow nor Keras, so the cheap benchmarks and the tests stay fast.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import importlib.metadata
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # `python bench/x.py` puts bench/ on the path, not the repository root
    sys.path.insert(0, str(REPO_ROOT))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # must precede any TensorFlow import to take effect

from pipeline.logs import cpu_model  # noqa: E402  (the repository root is on the path from here on)

RESULTS_DIR = REPO_ROOT / "bench" / "results"
CACHE_DIR = REPO_ROOT / "cache"
EMBEDDINGS_DIR = CACHE_DIR / "embeddings"
HUB_DIR = CACHE_DIR / "bilm" / "hub"
CORPUS_DIR = CACHE_DIR / "corpus"

#: Training sentences of the full corpus split (README): epoch extrapolations are for this many sentences.
EPOCH_SENTENCES = 38_846
#: The original notebook padded (and truncated) every sentence to this length.
NOTEBOOK_MAX_LEN = 50
#: BIO tags of the corpus (meta.json lists the same 17); used for synthetic data only.
ENTITY_TYPES = ("art", "eve", "geo", "gpe", "nat", "org", "per", "tim")
SYNTHETIC_TAGS = ["O"] + [f"{prefix}-{kind}" for prefix in ("B", "I") for kind in ENTITY_TYPES]
VERSION_PACKAGES = ("tensorflow", "keras", "tensorflow-hub", "numpy", "h5py", "snakemake")
_STARTED = time.time()
#: Set by ``--synthetic``: ignore cache/ and use the synthetic stand-ins (what a fresh checkout would get).
SYNTHETIC_ONLY = {"on": False}


def say(message: str) -> None:
    """A progress line with the seconds since the benchmark started."""
    print(f"   [{time.time() - _STARTED:4.0f} s] {message}", flush=True)


# --------------------------------------------------------------------------------------------------------------------
# Timing
# --------------------------------------------------------------------------------------------------------------------


@dataclass
class Stopwatch:
    """Wall and process-CPU seconds of a ``with`` block."""

    wall: float = 0.0
    cpu: float = 0.0
    _wall0: float = field(default=0.0, repr=False)
    _cpu0: float = field(default=0.0, repr=False)

    def __enter__(self) -> "Stopwatch":
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc) -> None:
        self.wall = time.perf_counter() - self._wall0
        self.cpu = time.process_time() - self._cpu0


@dataclass
class Timing:
    """Seconds of each repeat (wall and CPU) with their medians."""

    wall: list[float]
    cpu: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.wall)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu)

    def to_dict(self) -> dict:
        return {"median_s": self.median, "min_s": min(self.wall), "max_s": max(self.wall),
                "median_cpu_s": self.median_cpu, "repeats": len(self.wall), "wall_s": self.wall, "cpu_s": self.cpu}


def measure(fn: Callable[[], Any], repeats: int = 5, warmup: int = 1) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then ``repeats`` times timed; wall and CPU seconds of each call."""
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, got {repeats}")
    for _ in range(warmup):
        fn()
    wall, cpu = [], []
    for _ in range(repeats):
        with Stopwatch() as watch:
            fn()
        wall.append(watch.wall)
        cpu.append(watch.cpu)
    return Timing(wall, cpu)


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def interleaved_steps(modes: dict[str, Callable[[int], Any]], steps: int, repeats: int,
                      expensive: Sequence[str] = (), expensive_repeats: int | None = None) -> dict:
    """Run every mode on every step, rotating the order per step and repeat, so that a change of load on a shared
    machine hits all modes alike; per mode and repeat the summed wall and CPU seconds.

    A mode returns None or the (wall, CPU) seconds of its embedder part, summed separately as ``embedder``. Modes
    named in ``expensive`` run only ``expensive_repeats`` times (an embedder that costs seconds per step).
    """
    names = list(modes)
    expensive_repeats = repeats if expensive_repeats is None else min(expensive_repeats, repeats)
    counts = {name: expensive_repeats if name in expensive else repeats for name in names}
    counts["embedder"] = max(counts[name] for name in names if name in expensive) if expensive else repeats
    totals = {name: {"wall": [0.0] * n, "cpu": [0.0] * n} for name, n in counts.items()}
    parts_seen = False
    for repeat in range(repeats):
        for step in range(steps):
            shift = (step + repeat) % len(names)
            for name in names[shift:] + names[:shift]:
                if repeat >= counts[name]:
                    continue
                with Stopwatch() as watch:
                    part = modes[name](step)
                totals[name]["wall"][repeat] += watch.wall
                totals[name]["cpu"][repeat] += watch.cpu
                if part is not None:
                    parts_seen = True
                    totals["embedder"]["wall"][repeat] += part[0]
                    totals["embedder"]["cpu"][repeat] += part[1]
    if not parts_seen:
        del totals["embedder"]
    return totals


# --------------------------------------------------------------------------------------------------------------------
# Machine description and result files
# --------------------------------------------------------------------------------------------------------------------


def keras_backend() -> str:
    """The Keras backend in use (without importing Keras when it is not loaded yet)."""
    if "keras" in sys.modules:
        with contextlib.suppress(Exception):
            return sys.modules["keras"].backend.backend()
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    with contextlib.suppress(OSError, ValueError, KeyError):
        return json.loads((Path.home() / ".keras" / "keras.json").read_text())["backend"]
    return "tensorflow"


def package_versions() -> dict:
    versions = {"python": platform.python_version()}
    for name in VERSION_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def machine_info() -> dict:
    """What the figures were measured on: CPU, cores, backend, versions, and how busy the machine was."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {
        "cpu_model": cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": affinity,
        "platform": platform.platform(),
        "backend": keras_backend(),
        "versions": package_versions(),
        "niceness": os.nice(0) if hasattr(os, "nice") else None,
    }
    with contextlib.suppress(OSError):
        info["memory_gib"] = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / (1 << 30), 1)
    with contextlib.suppress(OSError):
        info["load_average_1_5_15"] = [round(v, 2) for v in os.getloadavg()]
    return info


def contention_note(info: dict) -> str | None:
    """A warning when other work was competing for the CPUs as the benchmark started."""
    load = (info.get("load_average_1_5_15") or [0.0])[0]
    cores = info.get("usable_cores") or 1
    if load > 0.5 * cores:
        return (f"load average {load} on {cores} cores when the benchmark started: other jobs compete for the "
                f"CPUs, so wall times are inflated and noisier than on an idle machine (CPU-time figures are the "
                f"cross-check)")
    return None


def describe_machine(info: dict) -> str:
    versions = info["versions"]
    return (f"{info['cpu_model']}, {info['usable_cores']} cores, backend {info['backend']} "
            f"(TF {versions.get('tensorflow')}, Keras {versions.get('keras')}, Python {versions.get('python')}), "
            f"load {info.get('load_average_1_5_15')}")


def write_result(name: str, results: dict, args: argparse.Namespace | None = None, data: dict | None = None,
                 machine: dict | None = None, started: float | None = None, out_dir: Path | None = None) -> Path:
    """Write ``bench/results/<name>.json``: results plus the command, machine, data sources and timestamps."""
    out_dir = Path(out_dir or RESULTS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    machine = machine or machine_info()
    payload = {
        "benchmark": name,
        "command": " ".join([Path(sys.argv[0]).name if sys.argv and sys.argv[0] else name] + sys.argv[1:]),
        "quick": bool(getattr(args, "quick", False)),
        "finished": _dt.datetime.now().isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1) if started else None,
        "machine": machine,
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "contention": contention_note(machine),
        "data": data or {},
        "results": results,
    }
    path = out_dir / f"{name}.json"
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(payload, indent=1, default=_json_default))
    os.replace(tmp, path)
    return path


def _json_default(value):
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, (np.ndarray,)):
        return value.tolist()
    if isinstance(value, (Path,)):
        return str(value)
    if isinstance(value, (np.bool_,)):
        return bool(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def parser(description: str) -> argparse.ArgumentParser:
    """Argument parser with the options every benchmark has (``--quick``, ``--out-dir``)."""
    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="small sizes: finishes in about a minute or two")
    p.add_argument("--out-dir", type=Path, default=RESULTS_DIR, help="where <name>.json is written")
    p.add_argument("--synthetic", action="store_true",
                   help="ignore the pipeline outputs under cache/ and use the synthetic stand-ins")
    return p


def quiet_pipeline_output() -> None:
    """Keep the pipeline's INFO lines (per shard, per epoch progress) out of a benchmark's printed figures.

    Done when a benchmark starts, never at import: importing this module from the tests must not change the
    environment that later tests (and the Snakemake runs they start) inherit.
    """
    import logging

    os.environ["NER_LOG_LEVEL"] = "WARNING"  # for stages a benchmark runs as subprocesses
    logging.getLogger("pipeline").setLevel(logging.WARNING)  # for pipeline modules already imported here


def start(name: str, args: argparse.Namespace) -> tuple[dict, float]:
    """Print the header of a benchmark run (quieting the pipeline's own logs) and return (machine info, start time)."""
    quiet_pipeline_output()
    SYNTHETIC_ONLY["on"] = bool(getattr(args, "synthetic", False))
    info = machine_info()
    print(f"== {name}{' (--quick)' if getattr(args, 'quick', False) else ''} on {describe_machine(info)}")
    note = contention_note(info)
    if note:
        print(f"   note: {note}")
    return info, time.time()


def finish(name: str, results: dict, args, data: dict, machine: dict, started: float) -> Path:
    path = write_result(name, results, args, data, machine, started, getattr(args, "out_dir", None))
    print(f"-> {path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path} "
          f"({time.time() - started:.0f} s)")
    return path


def table(rows: Sequence[Sequence[Any]], header: Sequence[str] | None = None) -> str:
    """Plain aligned text table (numbers right-aligned)."""
    cells = [[_cell(v) for v in row] for row in ([header] if header else []) + list(rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(cells[0]))]
    lines = []
    for n, row in enumerate(cells):
        lines.append("  ".join(c.rjust(w) if _numeric(c) and n else c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if header and n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def _numeric(text: str) -> bool:
    return text.replace(",", "").replace(".", "").replace("-", "").replace("x", "").replace("%", "").isdigit()


def linear_fit(x: Sequence[float], y: Sequence[float]) -> dict:
    """Least-squares ``y = intercept + slope * x`` and its coefficient of determination R²."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) < 2 or np.ptp(x) == 0:
        raise ValueError("a linear fit needs at least two distinct x values")
    slope, intercept = np.polyfit(x, y, 1)
    residual = float(((y - (intercept + slope * x)) ** 2).sum())
    total = float(((y - y.mean()) ** 2).sum())
    return {"slope": float(slope), "intercept": float(intercept), "r2": 1.0 - residual / total if total > 0 else 1.0}


# --------------------------------------------------------------------------------------------------------------------
# Data: the real pipeline outputs when present, synthetic stand-ins otherwise
# --------------------------------------------------------------------------------------------------------------------


def real_shards(split: str = "train", root: Path = EMBEDDINGS_DIR) -> list[Path]:
    """Complete embedding shards of a split (temporary files of a running embed job start with a dot)."""
    if SYNTHETIC_ONLY["on"] or not root.is_dir():
        return []
    return sorted(p for p in root.glob(f"{split}-*.h5") if not p.name.startswith("."))


def real_hub(root: Path = HUB_DIR) -> Path | None:
    """The exported biLM (the default embedder) when the pipeline has produced it."""
    if SYNTHETIC_ONLY["on"]:
        return None
    return root if (root / "saved_model.pb").is_file() else None


def real_corpus(split: str, root: Path = CORPUS_DIR) -> Path | None:
    path = root / f"{split}.conll"
    return path if path.is_file() and not SYNTHETIC_ONLY["on"] else None


def corpus_tags(root: Path = CORPUS_DIR) -> list[str]:
    """The tag vocabulary of the corpus stage, else the corpus's 17 BIO tags."""
    if SYNTHETIC_ONLY["on"]:
        return list(SYNTHETIC_TAGS)
    with contextlib.suppress(OSError, ValueError, KeyError):
        return json.loads((root / "meta.json").read_text())["tags"]
    return list(SYNTHETIC_TAGS)


def synthetic_lengths(n: int, seed: int = 0) -> np.ndarray:
    """Sentence lengths shaped like the corpus's (mean about 22 tokens, long right tail, at most 104)."""
    rng = np.random.default_rng(seed)
    return np.clip(np.round(rng.gamma(7.0, 3.0, size=n)) + 1, 1, 104).astype(np.int64)


def synthetic_sentences(n: int, seed: int = 0) -> list:
    """``n`` Sentence objects with corpus-like lengths, made-up words and mostly-O BIO tags."""
    from pipeline.corpus import Sentence

    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocabulary = ["".join(rng.choice(letters, size=rng.integers(1, 11))) for _ in range(3000)]
    zipf = 1.0 / np.arange(1, len(vocabulary) + 1)
    zipf /= zipf.sum()
    sentences = []
    for number, length in enumerate(synthetic_lengths(n, seed)):
        words = [vocabulary[i] for i in rng.choice(len(vocabulary), size=int(length), p=zipf)]
        tags, position = ["O"] * len(words), 0
        while position < len(words):
            if rng.random() < 0.12:
                kind = ENTITY_TYPES[rng.integers(len(ENTITY_TYPES))]
                span = int(min(rng.integers(1, 4), len(words) - position))
                tags[position : position + span] = [f"B-{kind}"] + [f"I-{kind}"] * (span - 1)
                words[position] = words[position].capitalize()
                position += span
            else:
                position += 1
        sentences.append(Sentence(f"synthetic-{number}", words, ["NN"] * len(words), tags))
    return sentences


def read_sentences(split: str, limit: int | None = None, seed: int = 0) -> tuple[list, str]:
    """Sentences of a corpus split from cache/corpus, else synthetic ones; (sentences, description of the source)."""
    from pipeline.corpus import read_conll

    path = real_corpus(split)
    if path is not None:
        sentences = read_conll(path)
        return (sentences[:limit] if limit else sentences), f"real: {path.relative_to(REPO_ROOT)}"
    return synthetic_sentences(limit or 2000, seed), "synthetic (no cache/corpus)"


def epoch_lengths() -> tuple[np.ndarray, str]:
    """Lengths of the full training split (38,846 sentences), real when cache/corpus exists, else synthetic."""
    from pipeline.corpus import read_conll

    path = real_corpus("train")
    if path is not None:
        lengths = np.asarray([len(s) for s in read_conll(path)], dtype=np.int64)
        return lengths, f"real: {path.relative_to(REPO_ROOT)}"
    return synthetic_lengths(EPOCH_SENTENCES, seed=1), f"synthetic ({EPOCH_SENTENCES} corpus-like lengths)"


def bilm_options_from_config() -> dict:
    """The default biLM's graph options (config/config.yaml) as pipeline.bilm.pretrain records them."""
    from pipeline.bilm.pretrain import model_options
    from pipeline.config import load_config

    return model_options(load_config()["bilm"]) | {"dropout": 0.0}


def export_random_bilm(out_dir: Path, options: dict | None = None) -> Path:
    """A biLM of the configured architecture with random weights, exported with the ELMo signature.

    Speed does not depend on the weights, so this stands in for the trained export when cache/bilm/hub is absent.
    """
    from pipeline.bilm.export import save_signature_module
    from pipeline.bilm.model import BiLM
    from pipeline.bilm.vocab import batch_char_ids

    options = options or bilm_options_from_config()
    bilm = BiLM(options)
    bilm(batch_char_ids([["probe"]], options["max_chars_per_token"]))
    save_signature_module(bilm, options, out_dir, "bench (random weights)")
    return Path(out_dir)


def embedder_handle(tmp_dir: Path) -> tuple[str, str]:
    """(handle, description): cache/bilm/hub when present, else a random-weight export of the same architecture."""
    hub = real_hub()
    if hub is not None:
        return str(hub), f"real: {hub.relative_to(REPO_ROOT)}"
    print("   cache/bilm/hub not found: exporting a random-weight biLM of the configured size (same speed) ...")
    return str(export_random_bilm(Path(tmp_dir) / "hub")), "synthetic: random-weight export of the configured biLM"


def write_synthetic_shard(path: Path, sentences: Sequence, width: int, dtype: str = "float16", seed: int = 0,
                          attrs: dict | None = None) -> Path:
    """An embedding shard in the pipeline's exact layout with random activations (what the reads cost is the same)."""
    import h5py

    import pipeline
    from pipeline.cache import arrays_checksum
    from pipeline.embed import create_datasets

    rng = np.random.default_rng(seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as out:
        data = create_datasets(out, sentences, width, dtype)
        total = data.shape[0]
        block = max(1, (1 << 22) // (3 * width))
        for begin in range(0, total, block):
            stop = min(total, begin + block)
            data[begin:stop] = rng.standard_normal((stop - begin, 3, width), dtype=np.float32).astype(dtype)
        out.attrs.update({
            "embedder_handle": "synthetic", "embedder_kind": "synthetic", "width": int(width), "dtype": dtype,
            "corpus_sha256": "synthetic", "tokens": int(total), "sentences": len(sentences), "settings": "{}",
            "code_version": pipeline.__version__,
        } | (attrs or {}))
        out.attrs["checksum"] = arrays_checksum(out)
    return path


@contextlib.contextmanager
def scratch_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory removed afterwards."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix=f"bench-{prefix}-") as tmp:
        yield Path(tmp)


# --------------------------------------------------------------------------------------------------------------------
# Batches and the tagger's training step (shared by the training benchmarks)
# --------------------------------------------------------------------------------------------------------------------


def batch_shapes(lengths: Sequence[int], settings: dict) -> tuple[int, ...]:
    """The padded lengths pipeline.train gives bucketed batches over these sentence lengths."""
    from pipeline.batching import padding_minimal_lengths

    if not settings.get("bucket_by_length", True):
        return ()
    return padding_minimal_lengths(lengths, settings["max_batch_shapes"])


def representative_batches(lengths: Sequence[int], batch_size: int, count: int, seed: int = 0,
                           shapes: Sequence[int] | None = None) -> list[np.ndarray]:
    """``count`` length-bucketed training batches spread evenly over the range of batch lengths, in shuffled order.

    The training loop's own batches (pipeline.batching.shuffled_batches) are ranked by padded length and picked at
    evenly spaced ranks, so a handful of timed steps sees short, typical and long batches in the epoch's proportions.
    """
    from pipeline.batching import padded_length, shuffled_batches

    rng = np.random.default_rng(seed)
    lengths = np.asarray(lengths)
    batches = [b for b in shuffled_batches(lengths, batch_size, rng, bucket=True) if len(b) == batch_size] or \
        shuffled_batches(lengths, batch_size, rng, bucket=True)
    ranked = sorted(batches, key=lambda b: (padded_length(int(lengths[b].max()), shapes=shapes), int(b[0])))
    count = min(count, len(ranked))
    picks = [ranked[int(round(i))] for i in np.linspace(0, len(ranked) - 1, count + 2)[1:-1]] if count < len(ranked) \
        else ranked
    return [picks[i] for i in rng.permutation(len(picks))]


def padded_tokens(batches: Sequence[np.ndarray], lengths: Sequence[int], shapes: Sequence[int] | None = None) -> int:
    """Tokens the model computes over (sentences times each batch's padded length)."""
    from pipeline.batching import padded_length

    lengths = np.asarray(lengths)
    return int(sum(len(b) * padded_length(int(lengths[b].max()), shapes=shapes) for b in batches))


def epoch_padded_tokens(lengths: Sequence[int], batch_size: int, seed: int = 0,
                        shapes: Sequence[int] | None = None) -> tuple[int, int]:
    """(steps, padded tokens) of one bucketed training epoch over ``lengths``."""
    from pipeline.batching import shuffled_batches

    batches = shuffled_batches(np.asarray(lengths), batch_size, np.random.default_rng(seed), bucket=True)
    return len(batches), padded_tokens(batches, lengths, shapes)


def training_batches(cache, tags: Sequence[str], settings: dict, batches: Sequence[np.ndarray],
                     shapes: Sequence[int] | None):
    """The training loop's own feed (pipeline.train.TaggingBatches) over ``cache``, serving the given ``batches``
    padded to ``shapes`` instead of drawing an epoch: ``feed[i]`` is the (inputs, tag ids, padding weights) that a
    training step gets for ``batches[i]``, and ``feed.gold`` the sentences' tag ids."""
    from pipeline.train import TaggingBatches

    feed = TaggingBatches(cache, tags, settings["batch_size"], settings["seed"], settings["bucket_by_length"])
    feed.batches, feed.shapes = list(batches), tuple(shapes or ())
    return feed


def compiled_tagger(width: int, n_tags: int, settings: dict, layers_dtype: str = "float16"):
    """The pipeline's tagger (pipeline.model.build_tagger) compiled exactly as pipeline.train compiles it, taking
    layers in the cache's storage dtype (float16 by default) as training does."""
    from pipeline.model import build_tagger
    from pipeline.train import compile_tagger

    model = build_tagger(width, n_tags, settings["units"], settings["dropout"], settings["recurrent_dropout"],
                         layers_dtype=layers_dtype)
    compile_tagger(model, settings["learning_rate"])
    return model


def train_settings() -> dict:
    """The ``train`` section of config/config.yaml (validated, defaults filled)."""
    from pipeline.config import load_config

    return load_config()["train"]


@dataclass
class TrainingSetup:
    """What every training benchmark starts from: the seeded train settings, the tag set, and the full training
    epoch's sentence lengths with the padded batch lengths pipeline.train would use for them."""

    settings: dict
    tags: list
    lengths: np.ndarray
    lengths_source: str
    shapes: tuple


def training_setup() -> TrainingSetup:
    """Load the train settings, seed Keras/NumPy as pipeline.train does, and read the epoch's lengths and shapes."""
    from pipeline.train import set_determinism

    settings = train_settings()
    set_determinism(settings["seed"])
    lengths, source = epoch_lengths()
    return TrainingSetup(settings, corpus_tags(), lengths, source, batch_shapes(lengths, settings))
