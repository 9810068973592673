"""Cache size: bytes on disk of the HDF5 embedding cache vs the naive layout. Target: <= 25%.

The naive layout is what caching the notebook's tensors would store: float32, every sentence padded to 50 tokens,
[sentences, 50, 3, width] (and longer sentences truncated, so it even holds less). The cache stores float16, unpadded
and untruncated, plus the words, POS, tags, offsets and attributes. Cheap: read from the h5 files, naive size by
arithmetic. The ratio splits into (storage dtype / float32) x (real tokens / (sentences x 50)) x (file overhead).

    python bench/cache_size.py [--quick] [--files PATH ...]
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench import common as c

NAME = "cache_size"
TARGET_RATIO = 0.25
NAIVE_ITEMSIZE = 4  # float32
QUICK_SYNTHETIC, FULL_SYNTHETIC = 500, 4000


def shard_size(path: Path, naive_length: int = c.NOTEBOOK_MAX_LEN) -> dict:
    """Sizes of one shard: file bytes, activations, text/index datasets, and the naive layout's bytes."""
    import h5py

    from pipeline.cache import EMBEDDINGS, LENGTHS

    with h5py.File(path, "r") as handle:
        data = handle[EMBEDDINGS]
        tokens, layers, width = data.shape
        lengths = handle[LENGTHS][()]
        activations = int(data.id.get_storage_size())
        other = sum(int(handle[name].id.get_storage_size()) for name in handle if name != EMBEDDINGS)
        dtype = str(data.dtype)
        itemsize = data.dtype.itemsize
    on_disk = os.path.getsize(path)
    sentences = len(lengths)
    return {
        "file": str(path), "bytes_on_disk": on_disk, "activation_bytes": activations, "text_and_index_bytes": other,
        "metadata_bytes": on_disk - activations - other, "sentences": sentences, "tokens": int(tokens),
        "layers": int(layers), "width": int(width), "dtype": dtype, "itemsize": int(itemsize),
        "longest": int(lengths.max()) if sentences else 0,
        "tokens_truncated_by_naive": int(np.maximum(lengths - naive_length, 0).sum()),
        "naive_bytes": sentences * naive_length * layers * width * NAIVE_ITEMSIZE,
    }


def cache_size(paths: Iterable[Path], naive_length: int = c.NOTEBOOK_MAX_LEN) -> dict:
    """Totals over shards: the ratio to the naive layout and its decomposition."""
    shards = [shard_size(Path(p), naive_length) for p in paths]
    if not shards:
        raise ValueError("no shards to measure")
    total = {k: sum(s[k] for s in shards) for k in ("bytes_on_disk", "activation_bytes", "text_and_index_bytes",
                                                    "metadata_bytes", "sentences", "tokens", "naive_bytes",
                                                    "tokens_truncated_by_naive")}
    dense = sum(s["tokens"] * s["layers"] * s["width"] * s["itemsize"] for s in shards)
    naive_slots = sum(s["sentences"] * naive_length for s in shards)
    ratio = total["bytes_on_disk"] / total["naive_bytes"]
    return total | {
        "files": len(shards), "widths": sorted({s["width"] for s in shards}),
        "dtypes": sorted({s["dtype"] for s in shards}),
        "longest": max(s["longest"] for s in shards), "ratio": ratio, "target": TARGET_RATIO,
        "meets_target": ratio <= TARGET_RATIO,
        "dtype_factor": dense / sum(s["tokens"] * s["layers"] * s["width"] * NAIVE_ITEMSIZE for s in shards),
        "fill_factor": total["tokens"] / naive_slots,
        "overhead_factor": total["bytes_on_disk"] / dense,
        "bytes_per_token_on_disk": total["bytes_on_disk"] / total["tokens"],
        "shards": shards,
    }


def report(result: dict) -> None:
    rows = [[Path(s["file"]).name, s["sentences"], s["tokens"], s["bytes_on_disk"] / 1e6, s["naive_bytes"] / 1e6,
             f"{100 * s['bytes_on_disk'] / s['naive_bytes']:.1f}%"] for s in result["shards"]]
    rows.append(["total", result["sentences"], result["tokens"], result["bytes_on_disk"] / 1e6,
                 result["naive_bytes"] / 1e6, f"{100 * result['ratio']:.1f}%"])
    print(c.table(rows, ["shard", "sentences", "tokens", "MB on disk", "MB naive", "ratio"]))
    print(f"   cache / naive (float32, padded to {c.NOTEBOOK_MAX_LEN}): {100 * result['ratio']:.1f}% "
          f"(target <= {100 * TARGET_RATIO:.0f}%: {'met' if result['meets_target'] else 'NOT met'})")
    print(f"   = dtype {result['dtype_factor']:.2f} ({', '.join(result['dtypes'])} vs float32) x fill "
          f"{result['fill_factor']:.3f} (real tokens / sentences x {c.NOTEBOOK_MAX_LEN}) x file overhead "
          f"{result['overhead_factor']:.3f} (words, tags, index, attributes: "
          f"{(result['text_and_index_bytes'] + result['metadata_bytes']) / 1e6:.1f} MB)")
    print(f"   the naive layout would also drop {result['tokens_truncated_by_naive']:,} tokens of sentences "
          f"longer than {c.NOTEBOOK_MAX_LEN} (longest: {result['longest']}); the cache keeps them")


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__)
    p.add_argument("--files", nargs="+", type=Path, help="shards to measure (default: cache/embeddings/*.h5)")
    args = p.parse_args(argv)
    machine, started = c.start(NAME, args)
    with c.scratch_dir(NAME) as tmp:
        paths = args.files or c.real_shards("*")
        if args.files:
            source = f"given: {len(paths)} files"
        elif paths:
            source = f"real: {len(paths)} shards under cache/embeddings"
        else:
            sentences, text = c.read_sentences("train", limit=QUICK_SYNTHETIC if args.quick else FULL_SYNTHETIC)
            width = 2 * c.bilm_options_from_config()["projection_dim"]
            paths = [c.write_synthetic_shard(tmp / "synthetic-0000.h5", sentences, width)]
            source = f"synthetic shard written in the pipeline's layout ({len(sentences)} sentences, {text})"
        c.say(source)
        result = cache_size(paths)
        report(result)
        for shard in result["shards"]:
            shard["file"] = Path(shard["file"]).name
    c.finish(NAME, result, args, {"source": source}, machine, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
