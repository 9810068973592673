"""The tagged collection's entity table and summary: the last step of the tag_collection workflow.

The table (Parquet, one row per entity) is written one shard at a time, so merging needs memory for one shard, not
the collection; its columns are the document id, file and line where the document starts, the sentence's index in
the document and character ``offset`` in the document text (null for CoNLL input), the entity's ``start``/``end``
in the sentence text (as ``ner tag`` gives them; ``offset + start`` is its place in the document), its text, type
and confidence. The summary (JSON, an HTML page and a figure) gives entities per type, the most frequent entities of
each type, documents, sentences and tokens tagged, throughput with the per-shard model load set against the tagging
time, and every document that was skipped with file, line and reason.
"""
from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.documents import CollectionError, Problem
from pipeline.logs import atomic_path, get_logger
from pipeline.report import plt, save_figure, write_html

log = get_logger(__name__)

TABLE_SCHEMA = pa.schema([
    ("document", pa.string()), ("file", pa.string()), ("line", pa.int64()), ("sentence", pa.int64()),
    ("offset", pa.int64()), ("start", pa.int64()), ("end", pa.int64()), ("text", pa.string()),
    ("type", pa.string()), ("confidence", pa.float64()),
])
RECORD_FIELDS = ("document", "file", "line", "sentence", "offset")
ENTITY_FIELDS = ("start", "end", "text", "type", "confidence")
#: Most frequent entities listed per type.
TOP_ENTITIES = 10
#: Skipped documents listed on the page (all of them are in the summary JSON).
SHOWN_PROBLEMS = 100


class MergeError(CollectionError):
    """Shard outputs that do not match the plan (a shard missing, or from another plan)."""


def entity_rows(records_path: Path) -> Iterator[dict]:
    """One row per entity of a shard's records."""
    with open(records_path, encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            where = {name: record[name] for name in RECORD_FIELDS}
            for entity in record["entities"]:
                yield where | {name: entity[name] for name in ENTITY_FIELDS}


def shard_of(path: Path) -> str:
    """The shard name of a records or stats file (``shard-00003.jsonl`` -> ``shard-00003``)."""
    return path.name.split(".", 1)[0]


def check_shards(manifest: dict, records: list[Path], stats: list[Path]) -> None:
    """Every shard of the plan has its records and stats, and nothing else is there."""
    planned = [shard["name"] for shard in manifest["shards"]]
    for kind, paths in (("records", records), ("stats", stats)):
        if sorted(shard_of(p) for p in paths) != planned:
            raise MergeError(f"the {kind} files ({len(paths)}) do not match the {len(planned)} planned shards")


def write_table(records: list[Path], table_path: Path) -> tuple[Counter, dict[str, Counter]]:
    """The Parquet entity table, one row group per shard; returns entities per type and texts per type."""
    per_type: Counter = Counter()
    texts: dict[str, Counter] = {}
    with atomic_path(table_path) as tmp, pq.ParquetWriter(tmp, TABLE_SCHEMA) as writer:
        for path in sorted(records, key=shard_of):
            rows = list(entity_rows(path))
            writer.write_table(pa.Table.from_pylist(rows, schema=TABLE_SCHEMA))
            for row in rows:
                per_type[row["type"]] += 1
                texts.setdefault(row["type"], Counter())[row["text"]] += 1
    return per_type, texts


def throughput(shard_stats: list[dict]) -> dict:
    """Rates per job (tagging time only, and with the model load) and over the wall-clock span of the shards."""
    documents = sum(s["documents"] for s in shard_stats)
    tokens = sum(s["tokens"] for s in shard_stats)
    tagging = sum(s["tag_seconds"] for s in shard_stats)
    loading = sum(s["load_seconds"] for s in shard_stats)
    span = max(s["finished"] for s in shard_stats) - min(s["started"] for s in shard_stats)
    return {
        "shards": len(shard_stats), "load_seconds": round(loading, 2), "tag_seconds": round(tagging, 2),
        "load_share": round(loading / (loading + tagging), 3) if loading + tagging else None,
        "tokens_per_job_second": round(tokens / tagging, 1) if tagging else None,
        "tokens_per_job_second_with_load": round(tokens / (tagging + loading), 1) if tagging + loading else None,
        "wall_seconds": round(span, 2),
        "documents_per_second": round(documents / span, 2) if span else None,
        "tokens_per_second": round(tokens / span, 1) if span else None,
        "hosts": sorted({s["host"] for s in shard_stats}),
    }


def summarise(manifest: dict, shard_stats: list[dict], per_type: Counter, texts: dict[str, Counter]) -> dict:
    """Everything the page and figure show, as JSON."""
    return {
        "input": manifest["input"], "files": manifest["files"],
        "documents": sum(s["documents"] for s in shard_stats), "sentences": sum(s["sentences"] for s in shard_stats),
        "tokens": sum(s["tokens"] for s in shard_stats), "entities": sum(per_type.values()),
        "entities_per_type": dict(per_type.most_common()),
        "top_entities": {kind: texts[kind].most_common(TOP_ENTITIES) for kind in sorted(texts)},
        "throughput": throughput(shard_stats),
        "shards": sorted(shard_stats, key=lambda s: s["shard"]),
        "skipped_documents": len(manifest["skipped"]), "skipped": manifest["skipped"],
    }


def plot_summary(summary: dict, path: Path) -> None:
    """Entities per type, and each shard's model load against its tagging time."""
    figure, (types_axis, shards_axis) = plt.subplots(1, 2, figsize=(11, 4))
    kinds = list(summary["entities_per_type"])
    types_axis.bar(kinds, [summary["entities_per_type"][k] for k in kinds], color="tab:blue")
    types_axis.set_ylabel("entities")
    types_axis.set_title(f"{summary['entities']} entities in {summary['documents']} documents")
    shards = summary["shards"]
    positions = range(len(shards))
    loads = [s["load_seconds"] for s in shards]
    shards_axis.bar(positions, loads, color="tab:gray", label="model load (TensorFlow start included)")
    shards_axis.bar(positions, [s["tag_seconds"] for s in shards], bottom=loads, color="tab:orange",
                    label="tagging")
    shards_axis.set_xlabel("shard")
    shards_axis.set_ylabel("seconds")
    shards_axis.legend(loc="upper right", fontsize=8)
    rate = summary["throughput"]["tokens_per_job_second"]
    shards_axis.set_title(f"per shard job: {rate} tokens/s while tagging")
    save_figure(figure, path)


def summary_html(summary: dict, figure_name: str) -> str:
    """The summary page's body."""
    rate = summary["throughput"]
    facts = [("input", summary["input"]), ("files", summary["files"]), ("documents tagged", summary["documents"]),
             ("sentences", summary["sentences"]), ("tokens", summary["tokens"]), ("entities", summary["entities"]),
             ("documents skipped", summary["skipped_documents"]), ("shards", rate["shards"]),
             ("wall clock, first shard start to last shard end (s)", rate["wall_seconds"]),
             ("documents/s over that span", rate["documents_per_second"]),
             ("tokens/s over that span", rate["tokens_per_second"]),
             ("tokens/s per job while tagging", rate["tokens_per_job_second"]),
             ("model load, share of job time", rate["load_share"]), ("hosts", ", ".join(rate["hosts"]))]
    rows = "".join(f"<tr><td>{html.escape(name)}</td><td>{html.escape(str(value))}</td></tr>" for name, value in facts)
    top = "".join(
        f"<tr><td>{html.escape(kind)}</td><td>{summary['entities_per_type'][kind]}</td><td>"
        + ", ".join(f"{html.escape(text)} ({count})" for text, count in entities) + "</td></tr>"
        for kind, entities in sorted(summary["top_entities"].items(), key=lambda item: -len(item[1])))
    skipped = "".join(f"<li><code>{html.escape(str(Problem(**p)))}</code></li>"
                      for p in summary["skipped"][:SHOWN_PROBLEMS])
    more = len(summary["skipped"]) - SHOWN_PROBLEMS
    skipped += f"<li>... and {more} more (summary.json lists them all)</li>" if more > 0 else ""
    return (f"<table border='1' cellpadding='4'>{rows}</table><p><img src='{html.escape(figure_name)}'></p>"
            f"<h3>Most frequent entities per type</h3><table border='1' cellpadding='4'><tr><th>type</th>"
            f"<th>entities</th><th>most frequent ({TOP_ENTITIES})</th></tr>{top}</table>"
            f"<h3>Skipped documents ({summary['skipped_documents']})</h3><ul>{skipped or '<li>none</li>'}</ul>")


def merge(manifest_path: Path, records: list[Path], stats: list[Path], table_path: Path, summary_path: Path,
          page_path: Path, figure_path: Path) -> dict:
    """Write the entity table, the summary JSON, its page and its figure; return the summary."""
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    check_shards(manifest, records, stats)
    shard_stats = [json.loads(p.read_text(encoding="utf-8")) for p in stats]
    per_type, texts = write_table(records, table_path)
    summary = summarise(manifest, shard_stats, per_type, texts)
    with atomic_path(summary_path) as tmp:
        Path(tmp).write_text(json.dumps(summary, indent=1, ensure_ascii=False), encoding="utf-8")
    plot_summary(summary, figure_path)
    write_html(page_path, "Tagged collection", summary_html(summary, figure_path.name))
    log.info("%d entities of %d documents in %s; %d documents skipped", summary["entities"], summary["documents"],
             table_path, summary["skipped_documents"])
    return summary
