"""Tagging a document collection: reading the formats (and reporting bad documents), planning shards, and the
tag_collection workflow through the Snakefile, killed with SIGKILL half-way and resumed, checked against `ner tag`."""
from __future__ import annotations

import bz2
import contextlib
import gzip
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from conftest import TINY_TRAIN, without_slurm_environment, workflow_copy
from pipeline.cli import main as ner_main
from pipeline.collection import pack_shards, plan
from pipeline.documents import Document, Problem, read_collection
from pipeline.tokenize import iter_sentences, paragraph_sentences

#: Plain text (one with a heading and paragraphs), JSON lines (an id, no id, a malformed line), gzip and bzip2
#: copies, CoNLL with two documents, and the bad ones: undecodable bytes, an empty file.
PLAIN = "Mr. Smith met officials in London on Monday.\n\nTalks\n\nThe talks were held in Paris on Friday. Obama said NaN."
JSONL = [{"id": "n-1", "text": "Mr. Putin was in Iraq on Tuesday."}, "{not json",
         {"text": "NATO officials met Mr. Merkel in Gaza on 2008."}]
GZIPPED = "Mr. Chavez said talks with Hamas in Kenya were held on Friday."
BZIPPED = [{"id": 3, "text": "Reuters said Mr. Annan was in Belgrade.\n\nCongress met on Monday."}]
CONLL = "-DOCSTART- -X- O\n\nMr.\nObama\nin\nParis\n.\n\n-DOCSTART- -X- O\n\nThe\ntalks\nin\nLondon\n.\n"
#: The undecodable file sits between good ones in sort order, so reading goes on after it.
BAD_NAME, EMPTY_NAME = "c-bad.txt", "f-empty.txt"
SHARD_SENTENCES = 4
RUN_TIMEOUT_S = 600
POLL_S = 0.05


def jsonl(items: list) -> str:
    return "".join((item if isinstance(item, str) else json.dumps(item)) + "\n" for item in items)


def write_collection(root: Path) -> Path:
    """The tiny collection under ``root/docs``."""
    docs = root / "docs"
    (docs / "nested").mkdir(parents=True)
    (docs / "a-plain.txt").write_text(PLAIN, encoding="utf-8")
    (docs / "b-news.jsonl").write_text(jsonl(JSONL), encoding="utf-8")
    (docs / BAD_NAME).write_bytes(b"Mr. Smith \xff\xfe went to Paris.\n")
    (docs / "nested" / "d-gzipped.txt.gz").write_bytes(gzip.compress(GZIPPED.encode()))
    (docs / "nested" / "e-bzipped.jsonl.bz2").write_bytes(bz2.compress(jsonl(BZIPPED).encode()))
    (docs / EMPTY_NAME).write_text("  \n", encoding="utf-8")
    (docs / "g-tokens.conll").write_text(CONLL, encoding="utf-8")
    (docs / ".hidden.txt").write_text("never read", encoding="utf-8")
    return docs


@pytest.fixture
def collection(tmp_path) -> Path:
    return write_collection(tmp_path)


# --- reading --------------------------------------------------------------------------------------------------------


def test_every_format_is_read_in_file_order_and_bad_documents_are_reported_with_file_and_line(collection):
    items = list(read_collection(str(collection)))
    documents = [item for item in items if isinstance(item, Document)]
    problems = [item for item in items if isinstance(item, Problem)]
    assert [d.id for d in documents] == [
        f"{collection}/a-plain.txt", "n-1", f"{collection}/b-news.jsonl:3",
        f"{collection}/g-tokens.conll#1", f"{collection}/g-tokens.conll#2",
        f"{collection}/nested/d-gzipped.txt.gz", "3"]
    assert documents[0].text == PLAIN and documents[5].text == GZIPPED
    assert documents[3].sentences == [["Mr.", "Obama", "in", "Paris", "."]] and documents[3].line == 3
    assert [(Path(p.file).name, p.line) for p in problems] == [("b-news.jsonl", 2), (BAD_NAME, 1), (EMPTY_NAME, None)]
    assert "not valid JSON" in problems[0].reason and "not valid utf-8" in problems[1].reason
    assert "empty" in problems[2].reason
    assert str(problems[0]).startswith(f"{collection}/b-news.jsonl:2: ")


def test_json_lines_without_the_text_field_or_with_a_bad_id_are_reported(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(jsonl([{"body": "a"}, {"text": 5}, {"text": "ok", "id": [1]}, {"text": "fine", "id": 7}, [1]]))
    items = list(read_collection(str(path)))
    assert [(type(i).__name__, i.line) for i in items] == [("Problem", 1), ("Problem", 2), ("Problem", 3),
                                                          ("Document", 4), ("Problem", 5)]
    assert "tag.text_field" in items[0].reason and "an integer is needed" in items[2].reason


def test_a_damaged_compressed_file_keeps_the_documents_before_the_damage(tmp_path):
    good = gzip.compress(jsonl([{"text": "one"}, {"text": "two"}]).encode())
    (tmp_path / "cut.jsonl.gz").write_bytes(good[:-12])  # the CRC and size trailer cut off
    (tmp_path / "fake.txt.gz").write_text("not gzip at all")
    items = list(read_collection(str(tmp_path)))
    kept = [i.text for i in items if isinstance(i, Document)]
    assert kept == ["one"]  # the last block is lost with the trailer: gzip notices the cut only at its end
    problems = [i for i in items if isinstance(i, Problem)]
    assert [(Path(p.file).name, p.line) for p in problems] == [("cut.jsonl.gz", 2), ("fake.txt.gz", 1)]
    assert all("damaged" in p.reason for p in problems)


def test_a_glob_selects_files_and_no_match_is_a_clear_error(collection):
    from pipeline.documents import CollectionError

    found = [i.file for i in read_collection(f"{collection}/**/*.txt*")]
    assert sorted({Path(f).name for f in found}) == ["a-plain.txt", BAD_NAME, "d-gzipped.txt.gz", EMPTY_NAME]
    with pytest.raises(CollectionError, match="matches no files"):
        list(read_collection(f"{collection}/*.pdf"))


def test_paragraph_sentences_cut_a_document_as_ner_tag_cuts_a_file():
    cut = paragraph_sentences(PLAIN)
    streamed = list(iter_sentences(io.StringIO(PLAIN)))
    assert [PLAIN[s[0].start:s[-1].end] for s in cut] == [text for text, _ in streamed]
    assert "Talks" in [PLAIN[s[0].start:s[-1].end] for s in cut]  # the heading stays a sentence of its own
    assert all(PLAIN[t.start:t.end] == t.text for s in cut for t in s)


# --- planning -------------------------------------------------------------------------------------------------------


def test_shards_hold_whole_documents_of_about_n_sentences(collection):
    problems: list[Problem] = []
    shards = list(pack_shards(read_collection(str(collection)), 3, problems))
    assert [d.id for s in shards for d in s.documents] == [
        d.id for d in read_collection(str(collection)) if isinstance(d, Document)]
    assert all(s.sentences <= 3 or len(s.documents) == 1 for s in shards)
    assert len(problems) == 3 and [s.name for s in shards][:2] == ["shard-00000", "shard-00001"]


def test_plan_writes_the_shard_inputs_and_a_manifest_with_the_skipped_documents(collection, tmp_path):
    settings = {"input": str(collection), "format": "auto", "encoding": "utf-8", "text_field": "text",
                "id_field": "id", "shard_sentences": SHARD_SENTENCES}
    manifest = plan(settings, tmp_path / "plan" / "manifest.json", tmp_path / "plan" / "shards")
    written = sorted(p.name for p in (tmp_path / "plan" / "shards").iterdir())
    assert written == [f"{s['name']}.jsonl" for s in manifest["shards"]]
    assert manifest["documents"] == 7 and manifest["files"] == 7
    assert [Path(p["file"]).name for p in manifest["skipped"]] == ["b-news.jsonl", BAD_NAME, EMPTY_NAME]
    assert json.loads((tmp_path / "plan" / "manifest.json").read_text()) == manifest


def test_a_collection_with_no_readable_document_is_one_clear_error(tmp_path, caplog):
    from pipeline.collection import main

    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "empty.txt").write_text("")
    settings = {"input": str(tmp_path / "docs"), "format": "auto", "encoding": "utf-8", "text_field": "text",
                "id_field": "id", "shard_sentences": 10}
    status = main(["plan", "--settings", json.dumps(settings), "--manifest", str(tmp_path / "m.json"), "--shards",
                   str(tmp_path / "shards")])
    assert status == 2 and not (tmp_path / "m.json").exists() and not (tmp_path / "shards").exists()
    assert "no document could be read (1 skipped; the first: " in caplog.text and "empty.txt" in caplog.text


# --- the workflow ---------------------------------------------------------------------------------------------------


def snakemake(workdir: Path, *args: str) -> subprocess.Popen:
    """``snakemake ARGS tag_collection`` in its own process group (so a kill takes its jobs too)."""
    command = [sys.executable, "-m", "snakemake", "--configfile", "tiny.yaml", *args, "tag_collection"]
    return subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=without_slurm_environment(), start_new_session=True)


def finished_shards(records: Path) -> dict[str, tuple[int, int]]:
    """Shard -> (inode, mtime) of the records of every shard whose job has finished (its stats are written last)."""
    finished = {}
    for stats in records.glob("*.stats.json") if records.is_dir() else []:
        shard = stats.name.removesuffix(".stats.json")
        info = os.stat(records / f"{shard}.jsonl")
        finished[shard] = (info.st_ino, info.st_mtime_ns)
    return finished


def kill_after_first_shard(workdir: Path) -> dict[str, tuple[int, int]]:
    """Start the workflow one job at a time and SIGKILL it, jobs and all, once a shard has finished."""
    process = snakemake(workdir, "--cores", "1")
    records = workdir / "tagged" / "records"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not finished_shards(records) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(POLL_S)
    assert process.poll() is None, f"the run ended before it could be killed:\n{process.stdout.read()[-3000:]}"
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    process.stdout.close()
    return finished_shards(records)


#: The session's tiny tagger trains 2 epochs and may find no entity at all; 6 give it entities to compare (about a
#: second more on the tiny shards).
TAGGER_EPOCHS = 6


@pytest.fixture(scope="module")
def tagging_run(tmp_path_factory, cached_shards, prepared_corpus) -> Path:
    """A tiny tagger trained long enough to find entities in the collection, so the comparison with `ner tag`
    compares entities, not only empty lists."""
    from pipeline.train import train

    _, meta = prepared_corpus
    run_dir = tmp_path_factory.mktemp("tagging-run")
    train(cached_shards["train"], cached_shards["val"], meta["tags"],
          TINY_TRAIN | {"max_epochs": TAGGER_EPOCHS, "patience": TAGGER_EPOCHS}, "ner", run_dir)
    return run_dir


@pytest.fixture(scope="module")
def resumed(tmp_path_factory, tagging_run) -> dict:
    """The workflow on the tiny collection: killed once a shard is done, unlocked and resumed as documented."""
    workdir, config = workflow_copy(tmp_path_factory.mktemp("tag_collection") / "work")
    write_collection(workdir)
    config["tag"] = {"input": "docs", "run": str(tagging_run), "out": "tagged", "shard_sentences": SHARD_SENTENCES}
    (workdir / "tiny.yaml").write_text(yaml.safe_dump(config))
    before = kill_after_first_shard(workdir)
    unlocked = snakemake(workdir, "--unlock")
    assert unlocked.communicate(timeout=RUN_TIMEOUT_S) and unlocked.returncode == 0
    resume = snakemake(workdir, "--cores", "2", "--rerun-incomplete")
    output, _ = resume.communicate(timeout=RUN_TIMEOUT_S)
    assert resume.returncode == 0, output[-6000:]
    again = snakemake(workdir, "--cores", "2", "--dry-run")
    again_output, _ = again.communicate(timeout=RUN_TIMEOUT_S)
    return {"workdir": workdir, "run": tagging_run, "before": before, "resume_log": output,
            "again_log": again_output, "manifest": json.loads((workdir / "tagged/plan/manifest.json").read_text())}


@pytest.mark.slow
def test_the_kill_left_shards_to_do_and_the_resume_did_not_redo_finished_ones(resumed):
    planned = [s["name"] for s in resumed["manifest"]["shards"]]
    before = resumed["before"]
    assert 1 <= len(before) < len(planned), (before, planned)
    after = finished_shards(resumed["workdir"] / "tagged" / "records")
    assert sorted(after) == planned
    assert {name: after[name] for name in before} == before  # the same files, never rewritten
    retagged = resumed["resume_log"].count("Tagging shard-")
    assert retagged == len(planned) - len(before), resumed["resume_log"][-3000:]
    assert "Nothing to be done" in resumed["again_log"]


def ner_tag_records(run: Path, *args: str) -> list[dict]:
    """`ner tag --format jsonl ARGS` in this process: its records."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert ner_main(["tag", "--format", "jsonl", "--run", str(run), *args]) == 0
    return [json.loads(line) for line in out.getvalue().splitlines()]


def without_confidence(records: list[dict]) -> list[dict]:
    return [r | {"entities": [{k: v for k, v in e.items() if k != "confidence"} for e in r["entities"]]}
            for r in records]


@pytest.mark.slow
def test_records_and_entity_table_match_ner_tag_on_the_same_texts(resumed, tmp_path):
    workdir, run = resumed["workdir"], resumed["run"]
    records = [json.loads(line) for name in sorted((workdir / "tagged" / "records").glob("*.jsonl"))
               for line in name.read_text().splitlines()]
    texts = [PLAIN, JSONL[0]["text"], JSONL[2]["text"], GZIPPED, BZIPPED[0]["text"]]
    joined = tmp_path / "texts.txt"
    joined.write_text("\n\n".join(texts))  # a blank line ends every sentence, so these are the same sentences
    conll = tmp_path / "tokens.conll"
    conll.write_text(CONLL.replace("-DOCSTART- -X- O\n", ""))
    expected = ner_tag_records(run, "--file", str(joined)) + ner_tag_records(run, "--pretokenized", "--file",
                                                                             str(conll))
    ner_fields = ("text", "tokens", "tags", "entities")
    in_text_order = [r for r in records if r["offset"] is not None] + [r for r in records if r["offset"] is None]
    got = [{k: r[k] for k in ner_fields} for r in in_text_order]
    assert without_confidence(got) == without_confidence(expected)
    confidences = [e["confidence"] for r in got for e in r["entities"]]
    assert confidences == pytest.approx([e["confidence"] for r in expected for e in r["entities"]], abs=2e-3)
    table = pq.read_table(workdir / "tagged" / "entities.parquet").to_pylist()
    assert [(t["document"], t["sentence"], t["start"], t["end"], t["text"], t["type"]) for t in table] == [
        (r["document"], r["sentence"], e["start"], e["end"], e["text"], e["type"]) for r in records
        for e in r["entities"]]
    assert table, "the tiny tagger found no entity at all: the comparison would prove little"
    documents = {r["document"]: t for r, t in zip([r for r in records if r["offset"] is not None and r["sentence"] == 0],
                                                  texts)}
    for row in table:
        if row["offset"] is not None:
            text = documents[row["document"]]
            assert text[row["offset"] + row["start"]:row["offset"] + row["end"]] == row["text"]


@pytest.mark.slow
def test_summary_counts_what_was_tagged_and_lists_what_was_skipped(resumed):
    workdir = resumed["workdir"]
    summary = json.loads((workdir / "tagged" / "summary.json").read_text())
    assert summary["documents"] == 7 and summary["skipped_documents"] == 3
    assert summary["sentences"] == resumed["manifest"]["sentences"] and summary["tokens"] > 0
    assert sum(summary["entities_per_type"].values()) == summary["entities"]
    assert summary["throughput"]["shards"] == len(resumed["manifest"]["shards"])
    assert summary["throughput"]["load_seconds"] > 0 and summary["throughput"]["tokens_per_job_second"] > 0
    page = (workdir / "tagged" / "summary.html").read_text()
    assert f"docs/{BAD_NAME}:1: not valid utf-8" in page and "docs/b-news.jsonl:2: not valid JSON" in page
    assert (workdir / "tagged" / "summary.png").stat().st_size > 0
    assert (workdir / "logs" / "tag_collection" / "plan.log").read_text().count("skipped") >= 3
