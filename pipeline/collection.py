"""Tag a document collection in shards: plan the shards, tag one shard per job, merge (``workflow/rules/
tag_collection.smk`` runs the three steps; ``docs/tag_collection.md`` shows how).

* ``plan``: read every document once (:mod:`pipeline.documents`), count its sentences as tagging will cut them, and
  pack whole documents into shards of about ``shard_sentences`` sentences (a longer document is a shard of its own).
  Each shard's documents are written to a JSON-lines file of their own, so a shard job reads only its shard (no
  seeking into compressed files), and ``manifest.json`` lists the shards and every document that was skipped, with
  file, line and reason. The shard list is what Snakemake needs to know before it can schedule the shard jobs.
* ``tag``: load the trained run once, tag one shard with the same code as ``ner tag`` (:mod:`pipeline.tagger`), and
  write its records (``ner tag --format jsonl``'s, plus document, file, line, sentence and offset) and its timings,
  each atomically: a killed job leaves no partial file, so a rerun tags exactly the shards that are missing.
* ``merge``: the entity table and the summary, see :mod:`pipeline.collection_report`.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

from pipeline.config import settings_json
from pipeline.documents import CollectionError, Document, Problem, collection_files, read_files
from pipeline.logs import atomic_path, get_logger
from pipeline.tagger import TaggerError
from pipeline.tokenize import paragraph_sentences

log = get_logger(__name__)

SHARD_PREFIX = "shard-"
SHARD_DIGITS = 5
SHARD_SUFFIX = ".jsonl"
ERROR_STATUS = 2
#: The settings that decide how the collection is cut into shards: changing any of them replans (and so retags);
#: the tagging settings (batch size, decoding) only retag.
PLAN_KEYS = ("input", "format", "encoding", "text_field", "id_field", "shard_sentences")
TAG_KEYS = ("batch_size", "decode")


def plan_settings(tag: dict) -> str:
    """The planning step's params: JSON of the keys in PLAN_KEYS."""
    return settings_json({key: tag[key] for key in PLAN_KEYS})


def tag_settings(tag: dict) -> str:
    """The shard jobs' params: JSON of the keys in TAG_KEYS."""
    return settings_json({key: tag[key] for key in TAG_KEYS})


# --------------------------------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------------------------------


def sentence_and_token_counts(document: Document) -> tuple[int, int]:
    """Sentences and tokens of a document, cut exactly as the shard job will cut it."""
    sentences = document.sentences if document.sentences is not None else paragraph_sentences(document.text)
    return len(sentences), sum(len(s) for s in sentences)


@dataclass
class ShardPlan:
    """Documents gathered for one shard, with their counts."""

    name: str
    documents: list[Document] = field(default_factory=list)
    sentences: int = 0
    tokens: int = 0

    def summary(self) -> dict:
        return {"name": self.name, "documents": len(self.documents), "sentences": self.sentences,
                "tokens": self.tokens}


def shard_name(index: int) -> str:
    return f"{SHARD_PREFIX}{index:0{SHARD_DIGITS}d}"


def pack_shards(items: Iterable[Document | Problem], shard_sentences: int,
                problems: list[Problem]) -> Iterator[ShardPlan]:
    """Whole documents, in order, packed into shards of at most ``shard_sentences`` sentences (a document with more
    is a shard of its own); the problems met on the way are appended to ``problems``."""
    index = 0
    current = ShardPlan(shard_name(index))
    for item in items:
        if isinstance(item, Problem):
            log.warning("skipped %s", item)
            problems.append(item)
            continue
        sentences, tokens = sentence_and_token_counts(item)
        if current.documents and current.sentences + sentences > shard_sentences:
            yield current
            index += 1
            current = ShardPlan(shard_name(index))
        current.documents.append(item)
        current.sentences += sentences
        current.tokens += tokens
    if current.documents:
        yield current


def write_shard(shard: ShardPlan, directory: Path) -> None:
    """The shard's documents as JSON lines, the input of its tagging job."""
    with open(directory / f"{shard.name}{SHARD_SUFFIX}", "w", encoding="utf-8") as handle:
        for document in shard.documents:
            handle.write(json.dumps(document.to_dict(), ensure_ascii=False) + "\n")


def counted(items: Iterable[Document | Problem], progress) -> Iterator[Document | Problem]:  # noqa: ANN001
    """Pass the items on, counting the files they come from (a new file name is one more file done)."""
    last = None
    for item in items:
        if item.file != last:
            if last is not None:
                progress.update()
            last = item.file
        yield item
    if last is not None:
        progress.update()


def plan(settings: dict, manifest_path: Path, shards_dir: Path) -> dict:
    """Read the collection, write one input file per shard into ``shards_dir`` and the manifest; return it.

    Both outputs are written atomically (the shard directory complete before the manifest appears).
    """
    from pipeline.progress import Progress  # imports Keras: not at module level, which the Snakefile imports

    files = collection_files(settings["input"])
    log.info("planning %d file(s) of %s into shards of about %d sentences", len(files), settings["input"],
             settings["shard_sentences"])
    items = read_files(files, settings["format"], settings["encoding"], settings["text_field"], settings["id_field"])
    problems: list[Problem] = []
    shards = []
    with atomic_path(shards_dir, directory=True) as tmp, Progress(len(files), "plan", "file") as progress:
        for shard in pack_shards(counted(items, progress), settings["shard_sentences"], problems):
            write_shard(shard, Path(tmp))
            shards.append(shard.summary())
        if not shards:  # inside the block: the empty shard directory is removed, not renamed into place
            raise CollectionError(f"tag.input {settings['input']!r}: no document could be read ({len(problems)} "
                                  f"skipped; the first: {problems[0] if problems else 'none'})")
    manifest = {
        "input": settings["input"], "files": len(files), "shard_sentences": settings["shard_sentences"],
        "documents": sum(s["documents"] for s in shards), "sentences": sum(s["sentences"] for s in shards),
        "tokens": sum(s["tokens"] for s in shards), "shards": shards, "skipped": [p.to_dict() for p in problems],
    }
    with atomic_path(manifest_path) as tmp:
        Path(tmp).write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    log.info("%d document(s), %d sentences, %d tokens in %d shard(s); %d document(s) skipped",
             manifest["documents"], manifest["sentences"], manifest["tokens"], len(shards), len(problems))
    return manifest


def shard_names(manifest_path: str | Path) -> list[str]:
    """The shard names a manifest lists (what the Snakemake rules fan out over)."""
    return [shard["name"] for shard in json.loads(Path(manifest_path).read_text(encoding="utf-8"))["shards"]]


# --------------------------------------------------------------------------------------------------------------------
# Tagging one shard
# --------------------------------------------------------------------------------------------------------------------


def read_shard(path: Path) -> list[Document]:
    """The documents of a shard input file written by :func:`plan`."""
    with open(path, encoding="utf-8") as handle:
        return [Document.from_dict(json.loads(line)) for line in handle if line.strip()]


def document_records(documents: list[Document], tagger) -> Iterator[dict]:  # noqa: ANN001 - a pipeline Tagger
    """One record per sentence, in document order: ``ner tag --format jsonl``'s fields plus where it came from.

    Raw-text documents are tagged together in one call and pre-tokenized ones in another (so length bucketing
    batches across documents); ``offset`` is the sentence's character offset in the document text (None for
    pre-tokenized input, whose sentence text is its tokens joined by spaces).
    """
    per_document: list[list[tuple]] = [[] for _ in documents]
    raw = [index for index, document in enumerate(documents) if document.text is not None]
    for sentence in tagger.tag([documents[index].text for index in raw], paragraphs=True):
        per_document[raw[sentence.text_index]].append((sentence, sentence.offset))
    owners = [index for index, document in enumerate(documents) if document.text is None
              for _ in document.sentences]
    flat = [sentence for document in documents if document.text is None for sentence in document.sentences]
    for sentence in tagger.tag_tokens(flat):
        per_document[owners[sentence.text_index]].append((sentence, None))
    for document, sentences in zip(documents, per_document):
        for number, (sentence, offset) in enumerate(sentences):
            yield {"document": document.id, "file": document.file, "line": document.line, "sentence": number,
                   "offset": offset} | sentence.to_dict()


def tag_shard(shard: Path, tagger, records_path: Path) -> dict:  # noqa: ANN001 - a pipeline Tagger
    """Tag one shard into ``records_path`` (atomically); return its counts and tagging seconds."""
    started = time.monotonic()
    documents = read_shard(shard)
    counts = {"documents": len(documents), "sentences": 0, "tokens": 0, "entities": 0}
    with atomic_path(records_path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        for record in document_records(documents, tagger):
            counts["sentences"] += 1
            counts["tokens"] += len(record["tokens"])
            counts["entities"] += len(record["entities"])
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return counts | {"tag_seconds": round(time.monotonic() - started, 3)}


def run_tag(args: argparse.Namespace) -> None:
    """``tag``: load the run once, tag the shard, write records then stats."""
    started_wall, started = time.time(), time.monotonic()
    settings = json.loads(args.settings)
    from pipeline.tagger import load, use_inference_threads

    use_inference_threads(args.threads)
    tagger = load(args.run, batch_size=settings["batch_size"], decode=settings["decode"])
    load_seconds = round(time.monotonic() - started, 3)
    log.info("loaded %s in %.1f s (TensorFlow start included); tagging %s", args.run, load_seconds, args.shard)
    counts = tag_shard(Path(args.shard), tagger, Path(args.records))
    stats = {"shard": Path(args.shard).name.removesuffix(SHARD_SUFFIX), **counts, "load_seconds": load_seconds,
             "started": started_wall, "finished": time.time(), "threads": args.threads,
             "host": socket.gethostname(), "slurm_job_id": os.environ.get("SLURM_JOB_ID", "")}
    with atomic_path(args.stats) as tmp:
        Path(tmp).write_text(json.dumps(stats, indent=1), encoding="utf-8")
    log.info("tagged %d documents, %d sentences, %d tokens (%d entities) in %.1f s", counts["documents"],
             counts["sentences"], counts["tokens"], counts["entities"], counts["tag_seconds"])


# --------------------------------------------------------------------------------------------------------------------
# Command line (the rules' entry points)
# --------------------------------------------------------------------------------------------------------------------


def run_plan(args: argparse.Namespace) -> None:
    plan(json.loads(args.settings), Path(args.manifest), Path(args.shards))


def run_merge(args: argparse.Namespace) -> None:
    from pipeline.collection_report import merge  # pyarrow and matplotlib: only this step needs them

    merge(Path(args.manifest), [Path(p) for p in args.records], [Path(p) for p in args.stats], Path(args.table),
          Path(args.summary), Path(args.page), Path(args.figure))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Tag a document collection in shards (the steps of the "
                                                 "tag_collection workflow; see docs/tag_collection.md).")
    steps = parser.add_subparsers(dest="step", required=True)
    planning = steps.add_parser("plan", help="read the collection and write the shard inputs and manifest.json")
    planning.add_argument("--settings", required=True, help="JSON of the tag config section (its planning keys)")
    planning.add_argument("--manifest", required=True, help="manifest.json to write")
    planning.add_argument("--shards", required=True, help="directory to write the shard input files into")
    planning.set_defaults(handler=run_plan)
    tagging = steps.add_parser("tag", help="tag one shard with a trained run")
    tagging.add_argument("--shard", required=True, help="shard input file written by plan")
    tagging.add_argument("--run", required=True, help="trained run directory (model.keras, tags.json, embedder.json)")
    tagging.add_argument("--settings", required=True, help="JSON with batch_size and decode")
    tagging.add_argument("--threads", type=int, default=1, help="TensorFlow ops run at a time (default: 1)")
    tagging.add_argument("--records", required=True, help="JSON-lines records to write")
    tagging.add_argument("--stats", required=True, help="the shard's counts and timings (JSON) to write")
    tagging.set_defaults(handler=run_tag)
    merging = steps.add_parser("merge", help="the entity table and the summary of all shards")
    merging.add_argument("--manifest", required=True)
    merging.add_argument("--records", nargs="+", required=True)
    merging.add_argument("--stats", nargs="+", required=True)
    merging.add_argument("--table", required=True, help="entity table to write (Parquet)")
    merging.add_argument("--summary", required=True, help="summary JSON to write")
    merging.add_argument("--page", required=True, help="summary HTML page to write")
    merging.add_argument("--figure", required=True, help="summary figure (PNG) to write")
    merging.set_defaults(handler=run_merge)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except (CollectionError, TaggerError) as exc:
        log.error("%s", exc)
        return ERROR_STATUS
    return 0


if __name__ == "__main__":
    sys.exit(main())
