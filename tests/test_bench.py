"""The benchmarks' cores on tiny inputs, so the scripts in bench/ cannot silently rot. No TensorFlow is imported:
the whole module runs in a few seconds (the timed benchmarks themselves are run by hand, see bench/README.md)."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (bucketing, cache_size, cached_vs_inloop, embed_overhead, pipeline_stages,  # noqa: E402
                   scaling, tag_collection, tagging)
from bench import common as c  # noqa: E402

TSV_HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


@pytest.fixture
def tiny_shard(tmp_path) -> Path:
    """A 6-sentence shard in the pipeline's layout (one sentence longer than the notebook's 50 tokens)."""
    from pipeline.corpus import Sentence

    lengths = [3, 5, 60, 1, 8, 2]
    sentences = [Sentence(str(i), [f"w{k}" for k in range(n)], ["NN"] * n, ["O"] * (n - 1) + ["B-geo"])
                 for i, n in enumerate(lengths)]
    return c.write_synthetic_shard(tmp_path / "train-0000.h5", sentences, width=4,
                                   attrs={"module_seconds": 2.0, "seconds": 2.5})


def test_measure_takes_the_median_after_warmup():
    calls = []
    timing = c.measure(lambda: calls.append(time.perf_counter()), repeats=3, warmup=2)
    assert len(calls) == 5 and len(timing.wall) == 3
    assert timing.median == sorted(timing.wall)[1]
    assert set(timing.to_dict()) >= {"median_s", "median_cpu_s", "repeats"}
    with pytest.raises(ValueError):
        c.measure(lambda: None, repeats=0)


def test_interleaved_steps_rotates_modes_and_sums_embedder_parts():
    order = []
    modes = {"a": lambda s: order.append(("a", s)), "b": lambda s: order.append(("b", s)) or (0.5, 0.25)}
    totals = c.interleaved_steps(modes, steps=2, repeats=3, expensive=("b",), expensive_repeats=1)
    assert order[:4] == [("a", 0), ("b", 0), ("b", 1), ("a", 1)]  # rotated per step
    assert len(totals["a"]["wall"]) == 3 and len(totals["b"]["wall"]) == 1
    assert totals["embedder"]["wall"] == [1.0] and totals["embedder"]["cpu"] == [0.5]
    assert "embedder" not in c.interleaved_steps({"a": lambda s: None}, steps=1, repeats=1)


def test_machine_info_and_result_file(tmp_path):
    info = c.machine_info()
    assert {"cpu_model", "usable_cores", "backend", "versions"} <= set(info)
    path = c.write_result("demo", {"x": np.float32(1.5), "n": np.int64(3)}, machine=info, out_dir=tmp_path)
    payload = json.loads(path.read_text())
    assert payload["benchmark"] == "demo" and payload["results"] == {"x": 1.5, "n": 3}
    assert "machine" in payload and "load_average_at_end" in payload


def test_linear_fit_and_table():
    fit = c.linear_fit([1, 2, 3, 4], [3, 5, 7, 9])
    assert fit["slope"] == pytest.approx(2) and fit["intercept"] == pytest.approx(1) and fit["r2"] == pytest.approx(1)
    with pytest.raises(ValueError):
        c.linear_fit([1, 1], [2, 3])
    text = c.table([["a", 1.5, 1000]], ["name", "x", "n"])
    assert "name" in text and "1,000" in text


def test_batches_and_extrapolation_helpers():
    lengths = np.asarray(c.synthetic_lengths(300, seed=3))
    assert lengths.min() >= 1 and lengths.max() <= 104 and 15 < lengths.mean() < 30
    batches = c.representative_batches(lengths, 32, 4, seed=0)
    assert len(batches) == 4 and all(len(b) == 32 for b in batches)
    assert len({int(lengths[b].max()) for b in batches}) > 1  # spread over short and long batches
    steps, padded = c.epoch_padded_tokens(lengths, 32)
    assert steps == 10 and lengths.sum() <= padded < lengths.sum() * 1.5


def test_cache_size_against_arithmetic(tiny_shard, tmp_path):
    result = cache_size.cache_size([tiny_shard])
    naive = 6 * 50 * 3 * 4 * 4  # sentences x 50 x layers x width x float32
    assert result["naive_bytes"] == naive
    assert result["bytes_on_disk"] == tiny_shard.stat().st_size
    assert result["ratio"] == pytest.approx(result["bytes_on_disk"] / naive)
    assert result["tokens"] == 79 and result["tokens_truncated_by_naive"] == 10 and result["longest"] == 60
    assert result["dtype_factor"] == pytest.approx(0.5)
    assert result["fill_factor"] == pytest.approx(79 / 300)
    assert cache_size.main(["--files", str(tiny_shard), "--out-dir", str(tmp_path)]) == 0
    assert json.loads((tmp_path / "cache_size.json").read_text())["results"]["files"] == 1


def test_pipeline_stages_from_fake_benchmark_files(tmp_path, capsys):
    root = tmp_path / "benchmarks"
    (root / "embed").mkdir(parents=True)
    (root / "split_corpus.tsv").write_text(TSV_HEADER + "60.0\t0:01:00\t300\t1\t1\t1\t0\t0\t50\t55\n")
    (root / "train.tsv").write_text(TSV_HEADER + "1200\t0:20:00\t4000\t1\t1\t1\t0\t0\t90\t2000\n")
    for shard, seconds in (("train-0000", 100), ("train-0001", 140)):
        (root / "embed" / f"{shard}.tsv").write_text(TSV_HEADER + f"{seconds}\t-\t900\t1\t1\t1\t0\t0\t80\t90\n")
    records = pipeline_stages.read_benchmarks(root)
    summary = pipeline_stages.summarise(records, target_minutes=45)
    assert list(summary["stages"]) == ["split_corpus", "embed", "train"]  # pipeline order
    assert summary["stages"]["embed"] == pytest.approx(
        {"jobs": 2, "seconds": 240.0, "longest_job_s": 140.0, "cpu_time_s": 180.0, "max_rss_mb": 900.0})
    assert summary["total_s"] == pytest.approx(1500)
    assert summary["missing_stages"] == ["pretrain_bilm", "export_bilm", "evaluate"]
    assert not summary["meets_target"]  # incomplete runs never pass
    assert pipeline_stages.main(["--root", str(root), "--out-dir", str(tmp_path)]) == 0
    assert "total (sum)" in capsys.readouterr().out
    assert json.loads((tmp_path / "pipeline_stages.json").read_text())["results"]["total_s"] == pytest.approx(1500)


def test_cached_vs_inloop_summary_arithmetic():
    totals = {"tagger_alone": {"wall": [1.0, 1.2, 1.1], "cpu": [1.0] * 3},
              "cached_memory": {"wall": [1.05] * 3, "cpu": [1.0] * 3},
              "cached_lazy": {"wall": [1.3] * 3, "cpu": [1.2] * 3},
              "in_loop": {"wall": [3.2] * 3, "cpu": [3.0] * 3},
              "embedder": {"wall": [2.0] * 3, "cpu": [2.0] * 3}}
    s = cached_vs_inloop.summarise(totals, steps=10, scale=60.0, epochs=8, memory_fits=True,
                                   read_s={"cached_memory": 0.0022, "cached_lazy": 0.022})
    assert s["cached_bound"]["cached_memory"] == pytest.approx(1.02)
    assert s["cached_within_10pct_by_bound"] == {"cached_memory": True, "cached_lazy": False}
    assert s["T_s"] == pytest.approx(0.11) and s["E_s"] == pytest.approx(0.2)
    assert s["ratio_bound"] == pytest.approx(1 + 0.2 / 0.11)
    assert s["ratio_measured"] == pytest.approx(0.32 / 0.11)
    assert s["cached_memory_within_10pct"] and not s["cached_lazy_within_10pct"]
    assert s["epoch_minutes"]["in_loop"] == pytest.approx(3.2)  # 10 steps x 0.32 s x 60 / 60
    run = s["full_run"]
    assert run["in_loop_minutes"] == pytest.approx(8 * 3.2)
    assert run["cached_minutes"] == pytest.approx(2.0 + 8 * 1.05)
    assert run["saving_minutes"] == pytest.approx(8 * 3.2 - 2.0 - 8 * 1.05)


def test_bucketing_batches_inputs_and_summary(tiny_shard):
    from pipeline.cache import EmbeddingCache

    cache = EmbeddingCache([tiny_shard], in_memory=True)
    inputs = bucketing.truncated_inputs(cache, [2, 0], 50)
    assert inputs["layers"].shape == (2, 50, 3, 4) and inputs["lengths"].tolist() == [50, 3]
    assert np.array_equal(inputs["layers"][0], cache.sentence(2)[:50].astype(np.float32))
    gold = [np.arange(n) % 3 for n in cache.lengths]
    _, targets, weights = bucketing.notebook_batch(cache, gold, [2, 0], 50)  # the notebook's truncation
    assert targets.shape == weights.shape == (2, 50) and weights.sum() == 53
    assert targets[0].tolist() == (np.arange(50) % 3).tolist() and targets[1, :4].tolist() == [0, 1, 2, 0]
    plan = bucketing.mode_batches(cache.lengths, batch_size=2, steps=2, seed=0)
    assert plan["padded_50"][1] == 50 and plan["bucketed"][1] is None and len(plan["bucketed"][0]) == 2
    assert bucketing.real_tokens(plan["padded_50"][0], cache.lengths, 50) <= cache.lengths.sum()
    cache.close()
    totals = {m: {"wall": [1.0], "cpu": [1.0]} for m in ("bucketed", "unbucketed")}
    totals["padded_50"] = {"wall": [2.5], "cpu": [2.0]}
    tokens = {"bucketed": 100, "unbucketed": 100, "padded_50": 100}
    summary = bucketing.summarise(totals, tokens, {m: 200 for m in tokens}, {m: 6000 for m in tokens})
    assert summary["speedup"] == pytest.approx(2.5) and summary["meets_target"]
    assert summary["modes"]["bucketed"]["epoch_minutes"] == pytest.approx(1.0)


def test_embed_overhead_summary_and_recorded_attributes(tiny_shard):
    s = embed_overhead.summarise(bare=[10.0, 12.0], stage_wall=[14.0, 14.0], stage_seconds=[11.5, 12.5],
                                 module_seconds=[10.5, 11.5], first_calls=[0.5, 0.5], sentences=100, tokens=2000,
                                 shard_size=4000)
    assert s["overhead"] == pytest.approx(12 / 11 - 1) and s["meets_target"]
    assert s["overhead_with_load"] == pytest.approx(14 / 11 - 1)
    assert s["overhead_extrapolated_to_shard"] == pytest.approx((0.5 + 0.115 * 4000) / (0.11 * 4000) - 1)
    recorded = embed_overhead.recorded_overheads([tiny_shard])
    assert recorded["overhead"] == pytest.approx(0.25) and not recorded["meets_target"]


def test_scaling_fractions_and_fits():
    parts = scaling.nested_fractions(80, [0.125, 0.5, 1.0], seed=1)
    assert [len(p) for p in parts] == [10, 40, 80]
    assert set(parts[0]) <= set(parts[1]) <= set(parts[2])
    measures = scaling.size_measures([3, 7, 5], batch_size=2)
    assert measures["tokens"] == 15 and measures["sentences_x_longest"] == 21
    rows = [{"tokens": t, "sentences_x_longest": p, "train_s": 0.01 * t} for t, p in ((10, 30), (20, 50), (40, 200))]
    fits = scaling.fits(rows, "train_s")
    assert fits["vs_tokens"]["r2"] == pytest.approx(1) and fits["linear_in"] == "tokens"


def test_tagging_latency_stats():
    stats = tagging.latency_stats([0.010, 0.020, 0.030])
    assert stats["median_ms"] == pytest.approx(20) and stats["count"] == 3 and stats["min_ms"] == pytest.approx(10)


def test_tag_collection_bench_writes_documents_the_workflow_reads_sentence_for_sentence(tmp_path):
    from pipeline.documents import Document, read_collection
    from pipeline.tokenize import paragraph_sentences

    documents = tag_collection.write_collection(tmp_path / "docs", c.synthetic_sentences(25), per_document=10)
    read = [d for d in read_collection(str(tmp_path / "docs")) if isinstance(d, Document)]
    assert documents == len(read) == 3
    assert sorted(p.name for p in (tmp_path / "docs").iterdir()) == ["doc-00000.txt", "more.jsonl.gz"]
    assert sum(len(paragraph_sentences(d.text)) for d in read) == 25


def test_embedder_layers_are_fitted_to_the_training_batch_length():
    layers = np.ones((2, 16, 3, 4), np.float32)
    assert cached_vs_inloop.to_length(layers, 13).shape == (2, 13, 3, 4)
    padded = cached_vs_inloop.to_length(layers, 19)
    assert padded.shape == (2, 19, 3, 4) and padded[:, 16:].sum() == 0 and padded[:, :16].all()


def test_importing_the_benchmarks_leaves_the_log_settings_alone():
    """Quieting the pipeline is what a benchmark run does, not what importing its helpers does (the tests import them
    and then run Snakemake, whose stage logs must keep their INFO lines)."""
    import importlib
    import os

    importlib.reload(c)
    assert "NER_LOG_LEVEL" not in os.environ


def test_a_started_benchmark_quiets_the_pipeline_logs(capsys):
    import argparse
    import logging
    import os

    c.start("demo", argparse.Namespace(quick=True))
    assert os.environ["NER_LOG_LEVEL"] == "WARNING"
    assert logging.getLogger("pipeline").getEffectiveLevel() == logging.WARNING
