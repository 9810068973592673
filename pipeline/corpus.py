"""Stage 1: read the annotated corpus, validate it, split it as the original notebook did, and cut shards.

The corpus is the Kaggle "Annotated Corpus for Named Entity Recognition" (``ner_dataset.csv``: columns ``Sentence #``,
``Word``, ``POS``, ``Tag``; latin-1). Two details matter for honest results:

* words are read verbatim: the corpus holds tokens such as ``NaN`` and ``NA`` that pandas would turn into missing
  values (and the original notebook's forward-fill then overwrote with the previous word);
* the test split is ``train_test_split(test_size=0.1, random_state=2018)`` over the sentences in the order pandas'
  ``groupby("Sentence #")`` yields them (ids sorted as strings), so our test set is the notebook's test set.

Splits and shards are written as CoNLL-style text (``word<TAB>pos<TAB>tag``, a ``# sentence_id = ...`` line before
each sentence, a blank line after) so a person can read them and other tools can use them.
"""
from __future__ import annotations

import argparse
import hashlib
import io
import json
import re
import sys
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import pandas as pd
from sklearn.model_selection import train_test_split

from pipeline.config import PROJECT_ROOT
from pipeline.logs import get_logger, atomic_path

CORPUS_FILENAMES = ("ner_dataset.csv", "ner_dataset.csv.zip")
CORPUS_SEARCH_DIRS = (PROJECT_ROOT / "data", PROJECT_ROOT.parent / "shared" / "data")
SENTENCE_COLUMN = "Sentence #"
WORD_COLUMN = "Word"
POS_COLUMN = "POS"
TAG_COLUMN = "Tag"
REQUIRED_COLUMNS = (SENTENCE_COLUMN, WORD_COLUMN, POS_COLUMN, TAG_COLUMN)
OUTSIDE_TAG = "O"
BIO_TAG_PATTERN = re.compile(r"^(O|[BI]-[A-Za-z][A-Za-z0-9_]*)$")
SENTENCE_ID_PREFIX = "# sentence_id = "
SPLITS = ("train", "val", "test")
CSV_HEADER_LINES = 1

log = get_logger(__name__)

MISSING_CORPUS_HELP = (
    "The NER corpus was not found. Download the Kaggle 'Annotated Corpus for Named Entity Recognition' "
    "(ner_dataset.csv, https://www.kaggle.com/datasets/abhinavwalia95/entity-annotated-corpus) and put "
    "ner_dataset.csv or ner_dataset.csv.zip in data/ (or set corpus.path in config/config.yaml). Searched: {searched}"
)


class CorpusError(ValueError):
    """A corpus file that cannot be used as it is; the message names the file, the line and the problem."""


@dataclass
class Sentence:
    """One annotated sentence: parallel lists of words, part-of-speech tags and BIO entity tags."""

    sentence_id: str
    words: list[str]
    pos: list[str]
    tags: list[str]

    def __len__(self) -> int:
        return len(self.words)


@dataclass
class CorpusReport:
    """What reading a corpus found: counts and the problems that were handled rather than rejected."""

    path: str
    rows: int = 0
    tokens: int = 0
    sentences: int = 0
    blank_lines: int = 0
    extra_columns: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    tag_counts: dict[str, int] = field(default_factory=dict)
    length_quantiles: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """A human-readable summary, as ``ner check-corpus`` prints it."""
        lines = [
            f"corpus:     {self.path}",
            f"rows:       {self.rows} ({self.blank_lines} blank lines skipped)",
            f"tokens:     {self.tokens}",
            f"sentences:  {self.sentences}",
            "lengths:    " + ", ".join(f"{k}={v}" for k, v in self.length_quantiles.items()),
            "tags:       " + ", ".join(f"{t}={n}" for t, n in sorted(self.tag_counts.items())),
        ]
        if self.extra_columns:
            lines.append(f"ignored extra columns: {', '.join(self.extra_columns)}")
        lines.append(f"problems:   {len(self.warnings)} (handled, listed below)" if self.warnings else "problems:   none")
        shown = self.warnings[:20]
        lines += [f"  - {w}" for w in shown]
        if len(self.warnings) > len(shown):
            lines.append(f"  ... and {len(self.warnings) - len(shown)} more")
        return "\n".join(lines)


def find_corpus(path: str | Path | None = None, search_dirs: Sequence[Path] = CORPUS_SEARCH_DIRS) -> Path:
    """Return the corpus path: the configured one, else the first ``ner_dataset.csv[.zip]`` in the search dirs."""
    if path:
        p = Path(path)
        if not p.is_file():
            raise CorpusError(f"{p}: corpus file not found (corpus.path in the config)")
        return p
    candidates = [Path(d) / name for d in search_dirs for name in CORPUS_FILENAMES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise CorpusError(MISSING_CORPUS_HELP.format(searched=", ".join(str(c) for c in candidates)))


def read_corpus_bytes(path: Path) -> bytes:
    """Bytes of a plain or zipped CSV (a zip must hold exactly one .csv member)."""
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.namelist() if m.lower().endswith(".csv")]
            if len(members) != 1:
                raise CorpusError(f"{path}: expected exactly one .csv file in the zip archive, found {members}")
            return archive.read(members[0])
    return path.read_bytes()


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file: recorded in every cache file so stale caches are recognised."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def decode_text(raw: bytes, path: Path, encoding: str) -> str:
    """Decode the file, turning an encoding error into one that names the line and the bytes."""
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        bad = raw[exc.start : exc.end]
        raise CorpusError(
            f"{path}:{line}: bytes {bad!r} are not valid {encoding} ({exc.reason}); set corpus.encoding to the "
            f"file's encoding"
        ) from None
    except LookupError:
        raise CorpusError(f"{path}: unknown text encoding {encoding!r} (corpus.encoding)") from None


def parse_csv_table(text: str, path: Path) -> pd.DataFrame:
    """Parse the CSV text with every field kept verbatim as a string (no NaN guessing, no blank-line skipping)."""
    if not text.strip():
        raise CorpusError(f"{path}:1: the file is empty (expected a header: {', '.join(REQUIRED_COLUMNS)})")
    try:
        table = pd.read_csv(
            io.StringIO(text), dtype=str, keep_default_na=False, na_filter=False, skip_blank_lines=False
        )
    except pd.errors.ParserError as exc:
        match = re.search(r"line (\d+)", str(exc))
        line = match.group(1) if match else "?"
        raise CorpusError(f"{path}:{line}: malformed CSV: {exc}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise CorpusError(
            f"{path}:1: missing column(s) {missing}; found {list(table.columns)}; the header must be "
            f"{','.join(REQUIRED_COLUMNS)}"
        )
    return table


def sentences_from_table(table: pd.DataFrame, report: CorpusReport) -> list[Sentence]:
    """Group rows into sentences by the forward-filled sentence id, validating every row.

    Why row by row: every rejected row must name its line, and every accepted row must land in exactly one sentence.
    """
    path = report.path
    ids = table[SENTENCE_COLUMN].tolist()
    words = table[WORD_COLUMN].tolist()
    pos = table[POS_COLUMN].tolist()
    tags = table[TAG_COLUMN].tolist()
    report.extra_columns = [c for c in table.columns if c not in REQUIRED_COLUMNS]
    report.rows = len(table)
    sentences: dict[str, Sentence] = {}
    first_line: dict[str, int] = {}
    current: Sentence | None = None
    for index in range(len(table)):
        line = index + 1 + CSV_HEADER_LINES
        sid, word, p, tag = ids[index].strip(), words[index], pos[index], tags[index].strip()
        if not (sid or word or p or tag):
            report.blank_lines += 1
            continue
        if sid:
            if sid in sentences:
                raise CorpusError(
                    f"{path}:{line}: sentence id {sid!r} was already used at line {first_line[sid]}; sentence ids "
                    f"must be unique (rows of one sentence are contiguous, the id only on its first row)"
                )
            current = Sentence(sid, [], [], [])
            sentences[sid] = current
            first_line[sid] = line
        elif current is None:
            raise CorpusError(f"{path}:{line}: the first data row has no sentence id ('{SENTENCE_COLUMN}' is empty)")
        if word == "":
            raise CorpusError(f"{path}:{line}: empty word in sentence {current.sentence_id!r}")
        if tag == "":
            raise CorpusError(f"{path}:{line}: row has no tag (word {word!r})")
        if not BIO_TAG_PATTERN.match(tag):
            raise CorpusError(f"{path}:{line}: tag {tag!r} is not in the BIO scheme (O, B-type or I-type)")
        if tag.startswith("I-"):
            previous = current.tags[-1] if current.tags else OUTSIDE_TAG
            if previous == OUTSIDE_TAG or previous[2:] != tag[2:]:
                report.warnings.append(
                    f"{path}:{line}: {tag} follows {previous} (kept; evaluation reads it as the start of an entity)"
                )
        current.words.append(word)
        current.pos.append(p)
        current.tags.append(tag)
    if not sentences:
        raise CorpusError(f"{path}:2: no data rows after the header")
    return list(sentences.values())


def summarise(sentences: Sequence[Sentence], report: CorpusReport) -> None:
    """Fill the report's counts, tag histogram and sentence-length quantiles."""
    lengths = pd.Series([len(s) for s in sentences])
    report.sentences = len(sentences)
    report.tokens = int(lengths.sum())
    report.tag_counts = dict(Counter(t for s in sentences for t in s.tags))
    report.length_quantiles = {
        "min": int(lengths.min()),
        "median": int(lengths.median()),
        "p99": int(lengths.quantile(0.99)),
        "max": int(lengths.max()),
    }


def read_corpus(path: str | Path, encoding: str = "latin-1") -> tuple[list[Sentence], CorpusReport]:
    """Read and validate ``ner_dataset.csv`` (plain or zipped); every data row ends up in exactly one sentence."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: corpus file not found")
    text = decode_text(read_corpus_bytes(path), path, encoding)
    report = CorpusReport(path=str(path))
    table = parse_csv_table(text, path)
    sentences = sentences_from_table(table, report)
    summarise(sentences, report)
    if report.tokens + report.blank_lines != report.rows:  # the promise: nothing silently dropped
        raise CorpusError(f"{path}: internal error: {report.rows} rows read but {report.tokens} tokens kept")
    return sentences, report


def tag_vocabulary(sentences: Iterable[Sentence]) -> list[str]:
    """Tags of the corpus, ``O`` first then sorted, so tag ids are stable across runs."""
    tags = {t for s in sentences for t in s.tags}
    return [OUTSIDE_TAG] + sorted(tags - {OUTSIDE_TAG})


def notebook_order(sentences: Sequence[Sentence]) -> list[Sentence]:
    """Sentences in the order of pandas ``groupby("Sentence #")``: ids sorted as strings ("1" < "10" < "100")."""
    return sorted(sentences, key=lambda s: s.sentence_id)


def split_corpus(
    sentences: Sequence[Sentence], test_size: float, split_seed: int, val_size: float, val_seed: int
) -> dict[str, list[Sentence]]:
    """Train/val/test as the original notebook (test) plus a seeded validation split carved from the rest."""
    ordered = notebook_order(sentences)
    if len(ordered) < 3:
        raise CorpusError(f"need at least 3 sentences to make train/val/test splits, got {len(ordered)}")
    rest, test = train_test_split(ordered, test_size=test_size, random_state=split_seed)
    train, val = train_test_split(rest, test_size=val_size, random_state=val_seed)
    return {"train": train, "val": val, "test": test}


def write_conll(path: str | Path, sentences: Iterable[Sentence]) -> None:
    """Write sentences as CoNLL-style columns, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as out:
        for s in sentences:
            out.write(f"{SENTENCE_ID_PREFIX}{s.sentence_id}\n")
            for w, p, t in zip(s.words, s.pos, s.tags):
                out.write(f"{w}\t{p}\t{t}\n")
            out.write("\n")


def read_conll(path: str | Path) -> list[Sentence]:
    """Read a file written by :func:`write_conll`."""
    sentences: list[Sentence] = []
    current: Sentence | None = None
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n")
            if line.startswith(SENTENCE_ID_PREFIX):
                current = Sentence(line[len(SENTENCE_ID_PREFIX) :], [], [], [])
                sentences.append(current)
            elif line == "":
                current = None
            else:
                fields = line.split("\t")
                if current is None or len(fields) != 3:
                    raise CorpusError(f"{path}:{number}: expected 'word<TAB>pos<TAB>tag' inside a sentence")
                current.words.append(fields[0])
                current.pos.append(fields[1])
                current.tags.append(fields[2])
    return sentences


def shard_name(split: str, index: int) -> str:
    """File stem of one shard: ``train-0003``."""
    return f"{split}-{index:04d}"


def cut_shards(sentences: Sequence[Sentence], shard_size: int) -> list[list[Sentence]]:
    """Consecutive groups of at most ``shard_size`` sentences."""
    return [list(sentences[i : i + shard_size]) for i in range(0, len(sentences), shard_size)]


def prepare(config: dict, out_dir: str | Path) -> dict:
    """Read, validate, split and shard the corpus under ``out_dir``; return the metadata written to meta.json."""
    cfg = config["corpus"]
    out_dir = Path(out_dir)
    path = find_corpus(cfg.get("path"))
    log.info("reading corpus %s", path)
    sentences, report = read_corpus(path, cfg["encoding"])
    log.info("%d sentences, %d tokens, %d problems handled", report.sentences, report.tokens, len(report.warnings))
    splits = split_corpus(sentences, cfg["test_size"], cfg["split_seed"], cfg["val_size"], cfg["val_seed"])
    shards: dict[str, list[str]] = {}
    (out_dir / "shards").mkdir(parents=True, exist_ok=True)
    for split, members in splits.items():
        write_conll(out_dir / f"{split}.conll", members)
        shards[split] = []
        for index, group in enumerate(cut_shards(members, cfg["shard_size"])):
            name = shard_name(split, index)
            write_conll(out_dir / "shards" / f"{name}.conll", group)
            shards[split].append(name)
        log.info("%s: %d sentences in %d shards", split, len(members), len(shards[split]))
    meta = {
        "corpus_path": str(path),
        "corpus_sha256": file_sha256(path),
        "tags": tag_vocabulary(sentences),
        "pos_tags": sorted({p for s in sentences for p in s.pos}),
        "sizes": {split: len(members) for split, members in splits.items()},
        "shards": shards,
        "problems": report.warnings,
    }
    with atomic_path(out_dir / "meta.json") as tmp:
        Path(tmp).write_text(json.dumps(meta, indent=1))
    return meta


def main(argv: list[str] | None = None) -> int:
    """``python -m pipeline.corpus``: the Snakemake entry point of stage 1."""
    parser = argparse.ArgumentParser(description="Read, validate, split and shard the NER corpus.")
    parser.add_argument("--settings", default=None, help="JSON of the 'corpus' config section (default: config file)")
    parser.add_argument("--corpus", default=None, help="corpus file (overrides corpus.path)")
    parser.add_argument("--out", default="cache/corpus", help="output directory")
    args = parser.parse_args(argv)
    from pipeline.config import load_config, validate_config

    config = validate_config({"corpus": json.loads(args.settings)}) if args.settings else load_config()
    if args.corpus:
        config["corpus"]["path"] = args.corpus
    try:
        prepare(config, args.out)
    except CorpusError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
