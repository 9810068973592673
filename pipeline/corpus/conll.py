"""CoNLL-style text: the files the stage writes (and every later stage reads), and users' own CoNLL corpora.

The stage's files (:func:`write_conll`, :func:`read_conll`) are ``word<TAB>pos<TAB>tag`` rows, a
``# sentence_id = ...`` line before each sentence and a blank line after, so a person can read them and other tools
can use them.

Users' corpora (:class:`ConllReader`, CoNLL-2003 or their own annotated data) come with their own train/dev/test
files: one token per line, whitespace-separated columns (the word first), a blank line between sentences,
``-DOCSTART-`` lines skipped. ``tag_column`` picks the entity tag column (default: the last), ``pos_column`` an
optional part-of-speech column. Tags are checked against the BIO scheme like the Kaggle CSV; an ``I-`` tag that opens an
entity (IOB1, as CoNLL-2003 ships) is kept and reported, since seqeval reads it as the start of an entity.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from pipeline.corpus.base import (
    BIO_TAG_PATTERN, OUTSIDE_TAG, SPLITS, CorpusError, CorpusReport, ReadCorpus, Sentence, file_sha256, shown,
    summarise,
)
from pipeline.logs import atomic_path

SENTENCE_ID_PREFIX = "# sentence_id = "
#: Characters a CoNLL column cannot hold (they separate columns and rows), with how a message names them.
CONLL_SEPARATORS = {"\t": "a tab", "\n": "a line break", "\r": "a line break"}
DOCUMENT_START = "-DOCSTART-"
MISSING_POS = ""


# --- the stage's own files -----------------------------------------------------------------------------------------

def check_conll_value(value: str, sentence: Sentence) -> str:
    """A value as it goes into a CoNLL column; a tab or line break would silently break the file's structure."""
    if any(separator in value for separator in CONLL_SEPARATORS):
        raise CorpusError(f"sentence {sentence.sentence_id!r}: {shown(value)} holds a tab or line break")
    return value


def write_conll(path: str | Path, sentences: Iterable[Sentence]) -> None:
    """Write sentences as CoNLL-style columns, atomically (a killed run leaves the old file or none)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8", newline="\n") as out:
        for s in sentences:
            out.write(f"{SENTENCE_ID_PREFIX}{check_conll_value(s.sentence_id, s)}\n")
            for w, p, t in zip(s.words, s.pos, s.tags):
                out.write("\t".join(check_conll_value(v, s) for v in (w, p, t)) + "\n")
            out.write("\n")


def read_conll(path: str | Path) -> list[Sentence]:
    """Read a file written by :func:`write_conll`.

    An id line is only looked for between sentences: inside one, a row whose word happens to start with
    ``# sentence_id = `` is a token like any other.
    """
    sentences: list[Sentence] = []
    current: Sentence | None = None
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n")
            if current is None and line.startswith(SENTENCE_ID_PREFIX):
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


# --- users' CoNLL corpora ------------------------------------------------------------------------------------------

def conll_lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    """(line number, line without its newline), with decoding errors turned into a located CorpusError."""
    try:
        with open(path, encoding=encoding, newline=None) as handle:
            for number, line in enumerate(handle, start=1):
                yield number, line.rstrip("\n")
    except FileNotFoundError:
        raise CorpusError(f"{path}: CoNLL file not found (corpus.files in the config)") from None
    except UnicodeDecodeError as exc:
        raise CorpusError(f"{path}: bytes {exc.object[exc.start:exc.end]!r} are not valid {encoding}; set "
                          f"corpus.encoding to the file's encoding") from None


def read_conll_corpus(path: str | Path, encoding: str = "utf-8", tag_column: int = -1,
                      pos_column: int | None = None) -> tuple[list[Sentence], CorpusReport]:
    """Sentences of one CoNLL file; every token line lands in exactly one sentence or the file is rejected."""
    path = Path(path)
    report = CorpusReport(path=str(path))
    sentences: list[Sentence] = []
    current: Sentence | None = None
    for number, line in conll_lines(path, encoding):
        fields = line.split()
        if not fields or fields[0] == DOCUMENT_START:
            report.blank_lines += 1
            current = None
            continue
        report.rows += 1
        needed = max(tag_column if tag_column >= 0 else -tag_column - 1, pos_column or 0) + 1
        if len(fields) < max(needed, 2):
            raise CorpusError(f"{path}:{number}: expected at least {max(needed, 2)} columns (word ... tag), found "
                              f"{len(fields)}: {line!r}")
        tag = fields[tag_column]
        if not BIO_TAG_PATTERN.match(tag):
            raise CorpusError(f"{path}:{number}: tag {tag!r} in column {tag_column} is not in the BIO scheme "
                              f"(set corpus.tag_column to the entity column)")
        if current is None:
            current = Sentence(f"{path.name}:{number}", [], [], [])
            sentences.append(current)
        previous = current.tags[-1] if current.tags else OUTSIDE_TAG
        if tag.startswith("I-") and (previous == OUTSIDE_TAG or previous[2:] != tag[2:]):
            report.warnings.append(f"{path}:{number}: {tag} follows {previous} (kept)")
        current.words.append(fields[0])
        current.pos.append(fields[pos_column] if pos_column is not None else MISSING_POS)
        current.tags.append(tag)
    if not sentences:
        raise CorpusError(f"{path}:1: no sentences (expected one token per line, blank lines between sentences)")
    summarise(sentences, report)
    return sentences, report


def read_conll_splits(files: dict[str, str], encoding: str, tag_column: int, pos_column: int | None):
    """The user's own train/val/test files -> (splits, warnings, combined SHA-256 of the three files)."""
    splits, warnings, digest = {}, [], hashlib.sha256()
    for split in SPLITS:
        if not files.get(split):
            raise CorpusError(f"corpus.files.{split} is missing: a CoNLL corpus needs train, val and test files")
        splits[split], report = read_conll_corpus(files[split], encoding, tag_column, pos_column)
        warnings += report.warnings
        digest.update(file_sha256(files[split]).encode())
    return splits, warnings, digest.hexdigest()


@dataclass
class ConllReader:
    """``corpus.format: conll``: the user's train/val/test files, used as the splits they are."""

    files: dict[str, str]
    encoding: str = "utf-8"
    tag_column: int = -1
    pos_column: int | None = None

    @classmethod
    def from_config(cls, cfg: dict) -> ConllReader:
        return cls(cfg["files"], cfg["encoding"], cfg["tag_column"], cfg.get("pos_column"))

    def read(self) -> ReadCorpus:
        splits, warnings, digest = read_conll_splits(self.files, self.encoding, self.tag_column, self.pos_column)
        path = ", ".join(self.files.values())
        sentences = [s for members in splits.values() for s in members]
        return ReadCorpus(sentences, CorpusReport(path=path, warnings=warnings), path, digest, splits)
