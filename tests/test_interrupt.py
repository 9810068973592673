"""The embed stage killed with SIGKILL (a Slurm preemption, an OOM kill, a lost node) at random points.

A killed run must leave either no output or the complete one (never a partial file under the output's name, whatever
temporary file it leaves beside it), the readers must never open a ``.tmp-*`` file, and a rerun must produce exactly
the arrays of an uninterrupted run. Each trial starts ``python -m pipeline.embed`` as Snakemake does; starting
TensorFlow dominates a run, so the trials are few, sequential and killed as soon as their outcome is decided, and half
of them are aimed at the writing phase, measured on one uninterrupted run.
"""
from __future__ import annotations

import json
import math
import random
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator
from unittest import mock

import h5py
import numpy as np
import pytest

from pipeline.cache import (
    EMBEDDINGS, LENGTHS, OFFSETS, SENTENCE_IDS, TEXT_COLUMNS, CacheError, EmbeddingCache, read_shard_info,
    verify_checksum,
)
from pipeline.config import PROJECT_ROOT
from pipeline.corpus import Sentence, read_conll, write_conll

pytestmark = pytest.mark.slow

EMBED_SETTINGS = {"kind": "bilm", "batch_size": 4, "dtype": "float16", "handle": None}
TEMP_PREFIX = ".tmp-"
SHARD_COPIES = 32  # the train split 32 times over: ~1,000 sentences, so writing lasts long enough to be hit
KILL_SEED = 2018
TRIALS_ANYWHERE = 3  # kill delays uniform over the whole run (mostly during TensorFlow's start: few suffice)
TRIALS_WHILE_WRITING = 4  # kill delays counted from the moment writing starts (see kill_plans)
LATE_MARGIN = 1.2  # aim up to 20% past the typical end, so some kills come after the rename as well
POLL_SECONDS = 0.005
RUN_TIMEOUT_SECONDS = 300
COMPARED_DATASETS = (EMBEDDINGS, OFFSETS, LENGTHS, SENTENCE_IDS, *TEXT_COLUMNS)


@dataclass
class Timeline:
    """When, in seconds after the start, a run's temporary file and output appeared, and how it ended."""

    temp_appeared: float | None = None
    output_appeared: float | None = None
    writing_started: float | None = None  # the first new file of either kind (a non-atomic writer makes no temp)
    ended: float = 0.0
    returncode: int | None = None
    killed: bool = False


KillRule = Callable[[float, Timeline], bool]  # (seconds since the start, what appeared so far) -> kill now?


@dataclass
class Trial:
    """One killed run: what it aimed at and what it left behind."""

    label: str
    timeline: Timeline
    output_existed: bool = False
    temps_before: set[str] = field(default_factory=set)
    temps_after: set[str] = field(default_factory=set)
    problem: str | None = None  # why the output is unacceptable, None when absent or complete and identical
    opened: list[str] = field(default_factory=list)


def embed_command(shard: Path, handle: Path, meta: Path, out: Path) -> list[str]:
    """The embed stage's command line, as workflow/rules/embed.smk runs it."""
    return [sys.executable, "-m", "pipeline.embed", "--shard", str(shard), "--handle", str(handle), "--meta",
            str(meta), "--settings", json.dumps(EMBED_SETTINGS), "--out", str(out)]


def temp_files(folder: Path) -> set[str]:
    """Names of the temporary files in a folder (what ``pipeline.logs.atomic_path`` writes into)."""
    return {p.name for p in folder.iterdir() if p.name.startswith(TEMP_PREFIX)}


def run_embed(command: list[str], out: Path, kill_when: KillRule) -> Timeline:
    """Run the stage, polling for its temporary file and its output, and SIGKILL it when ``kill_when`` says so."""
    timeline = Timeline()
    before = temp_files(out.parent)
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while process.poll() is None:
            now = time.monotonic() - started
            if timeline.temp_appeared is None and temp_files(out.parent) - before:
                timeline.temp_appeared = now
            if timeline.output_appeared is None and out.exists():
                timeline.output_appeared = now
            if timeline.writing_started is None:
                seen = [t for t in (timeline.temp_appeared, timeline.output_appeared) if t is not None]
                timeline.writing_started = min(seen, default=None)
            if kill_when(now, timeline) or now > RUN_TIMEOUT_SECONDS:
                process.send_signal(signal.SIGKILL)
                timeline.killed = True
                break
            time.sleep(POLL_SECONDS)
    finally:
        timeline.returncode = process.wait()
        timeline.ended = time.monotonic() - started
    return timeline


def never(now: float, timeline: Timeline) -> bool:
    """The rule of an uninterrupted run."""
    return False


def kill_after(delay: float) -> KillRule:
    """Kill ``delay`` seconds after the start, or as soon as the output exists (the outcome is decided then)."""
    return lambda now, timeline: now >= delay or timeline.output_appeared is not None


def kill_while_writing(delay: float) -> KillRule:
    """Kill ``delay`` seconds after writing started, or as soon as the output exists."""
    return lambda now, timeline: timeline.output_appeared is not None or (
        timeline.writing_started is not None and now >= timeline.writing_started + delay
    )


def writing_seconds(timeline: Timeline) -> float:
    """How long an uninterrupted run writes: until the output appears or, if it appeared at once, until the end."""
    if timeline.output_appeared > timeline.writing_started:
        return timeline.output_appeared - timeline.writing_started
    return timeline.ended - timeline.writing_started


@contextmanager
def recording_opens() -> Iterator[list[str]]:
    """Record every file h5py opens in this process (the readers go through ``h5py.File``)."""
    opened: list[str] = []
    original = h5py.File

    def recording(name, *args, **kwargs):
        opened.append(str(name))
        return original(name, *args, **kwargs)

    with mock.patch.object(h5py, "File", recording):
        yield opened


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    """The datasets and checksum that must be identical between an interrupted-then-rerun and a clean run."""
    with h5py.File(path, "r") as handle:
        return {name: handle[name][()] for name in COMPARED_DATASETS} | {"checksum": handle.attrs["checksum"]}


def output_problem(out: Path, reference: dict[str, np.ndarray]) -> str | None:
    """Why a shard that exists after a kill is unacceptable (None: complete, verified, identical to the reference)."""
    try:
        verify_checksum(out)
        info = read_shard_info(out)
        cache = EmbeddingCache([out], in_memory=True)
        cache.close()
    except Exception as exc:  # any failure to read is the finding itself
        return f"unreadable: {exc}"
    if info.attrs["tokens"] != len(reference[EMBEDDINGS]):
        return f"{info.attrs['tokens']} tokens, expected {len(reference[EMBEDDINGS])}"
    arrays = read_arrays(out)
    different = [name for name, value in reference.items() if not np.array_equal(arrays[name], value)]
    return f"differs from the uninterrupted run in {different}" if different else None


def missing_output_problem(out: Path) -> str | None:
    """A reader asked for a shard that a killed run never finished must refuse it, not find something else."""
    try:
        read_shard_info(out)
    except CacheError:
        return None
    return "a shard that does not exist was read"


def kill_plans(reference: Timeline, rng: random.Random) -> list[tuple[str, KillRule]]:
    """Seeded kill points: some anywhere in a typical run, the rest inside its writing phase.

    Two of the writing-phase points are fixed because they are the edges that matter and random draws may miss them
    under a loaded machine: the moment writing starts (a partial file is certain) and the moment the output appears
    (the complete file must then be there); the others are drawn between and a little past.
    """
    whole_run = reference.output_appeared * LATE_MARGIN
    writing = writing_seconds(reference) * LATE_MARGIN
    anywhere = [rng.uniform(0, whole_run) for _ in range(TRIALS_ANYWHERE)]
    while_writing = [0.0, math.inf] + [rng.uniform(0, writing) for _ in range(TRIALS_WHILE_WRITING - 2)]
    return [(f"{d:.2f}s after start", kill_after(d)) for d in anywhere] + [
        ("when the output appeared" if d == math.inf else f"{d:.2f}s after writing started", kill_while_writing(d))
        for d in while_writing
    ]


def run_trial(label: str, kill_when: KillRule, command: list[str], out: Path, reference: dict) -> Trial:
    """One killed run, then the readers pointed at its output, as the next stage would be."""
    out.unlink(missing_ok=True)  # each trial's outcome must be its own; leftover temporary files stay
    before = temp_files(out.parent)
    trial = Trial(label, run_embed(command, out, kill_when), temps_before=before)
    trial.output_existed = out.exists()
    with recording_opens() as opened:
        trial.problem = output_problem(out, reference) if trial.output_existed else missing_output_problem(out)
    trial.opened = opened
    trial.temps_after = temp_files(out.parent)
    return trial


@pytest.fixture(scope="module")
def big_shard(tmp_path_factory, prepared_corpus) -> Path:
    """A shard of ~1,000 sentences (the train split repeated), so the writing phase is long enough to be hit."""
    corpus_dir, _ = prepared_corpus
    train = read_conll(corpus_dir / "train.conll")
    copies = [Sentence(f"{s.sentence_id} (copy {k})", s.words, s.pos, s.tags) for k in range(SHARD_COPIES)
              for s in train]
    path = tmp_path_factory.mktemp("big_shard") / "big-0000.conll"
    write_conll(path, copies)
    return path


@pytest.fixture(scope="module")
def command_for(big_shard, prepared_corpus, exported_bilm) -> Callable[[Path], list[str]]:
    """The embed command for the big shard and the tiny exported biLM, given where it writes."""
    corpus_dir, _ = prepared_corpus
    return lambda out: embed_command(big_shard, exported_bilm, corpus_dir / "meta.json", out)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, command_for) -> tuple[Path, Timeline]:
    """One run left alone: the reference output and the timeline the kill delays are drawn from."""
    out = tmp_path_factory.mktemp("uninterrupted") / "big-0000.h5"
    timeline = run_embed(command_for(out), out, never)
    assert timeline.returncode == 0 and timeline.output_appeared is not None
    return out, timeline


@pytest.fixture(scope="module")
def trials(tmp_path_factory, command_for, uninterrupted) -> tuple[Path, list[Trial]]:
    """The kill trials, one after another in one folder (leftover temporary files accumulate as they would)."""
    reference_path, reference_timeline = uninterrupted
    reference = read_arrays(reference_path)
    plans = kill_plans(reference_timeline, random.Random(KILL_SEED))
    folder = tmp_path_factory.mktemp("killed")
    out = folder / "big-0000.h5"
    return folder, [run_trial(label, kill_when, command_for(out), out, reference) for label, kill_when in plans]


def test_uninterrupted_run_writes_a_verified_shard_and_no_temporary_file(uninterrupted):
    out, _ = uninterrupted
    verify_checksum(out)
    assert temp_files(out.parent) == set()


def test_killed_run_leaves_no_output_or_the_complete_identical_one(trials):
    _, results = trials
    assert all(t.timeline.killed for t in results), [t.label for t in results if not t.timeline.killed]
    assert [(t.label, t.problem) for t in results if t.problem] == []


def test_kills_hit_a_partial_write(trials):
    _, results = trials
    partial = [t for t in results if not t.output_existed and t.temps_after - t.temps_before]
    assert partial, [(t.label, t.timeline) for t in results]


def test_kills_hit_a_complete_output(trials):
    _, results = trials
    assert [t for t in results if t.output_existed], [(t.label, t.timeline) for t in results]


def test_a_killed_run_leaves_at_most_one_temporary_file(trials):
    _, results = trials
    assert all(len(t.temps_after - t.temps_before) <= 1 for t in results)


def test_readers_never_open_a_temporary_file(trials):
    _, results = trials
    opened = [name for t in results for name in t.opened]
    assert len(opened) >= len(results)  # every trial's output was asked for, present or not
    assert not [name for name in opened if Path(name).name.startswith(TEMP_PREFIX)]


def test_rerun_after_kills_ignores_leftovers_and_matches_the_uninterrupted_run(trials, command_for, uninterrupted):
    folder, _ = trials
    reference_path, _ = uninterrupted
    out = folder / "big-0000.h5"
    out.unlink(missing_ok=True)
    leftovers = temp_files(folder)
    timeline = run_embed(command_for(out), out, never)
    assert timeline.returncode == 0
    with recording_opens() as opened:
        assert output_problem(out, read_arrays(reference_path)) is None
    assert not [name for name in opened if Path(name).name.startswith(TEMP_PREFIX)]
    assert temp_files(folder) <= leftovers  # the rerun adds none (it may clean some up)
