"""What every corpus format shares: the sentence, the reading report, the error, and the reader interface.

Each format (:mod:`pipeline.corpus.kaggle_csv`, :mod:`pipeline.corpus.conll`) reads its files into :class:`Sentence`
objects behind :class:`CorpusReader`; the stage (:mod:`pipeline.corpus.stage`) only talks to that interface. This
module imports no other module of the package, so nothing in it imports in a circle.
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Protocol, Sequence

import numpy as np

OUTSIDE_TAG = "O"
BIO_TAG_PATTERN = re.compile(r"^(O|[BI]-[A-Za-z][A-Za-z0-9_]*)$")
SPLITS = ("train", "val", "test")
SHOWN_CHARACTERS = 60  # how much of a bad value a message quotes
SHOWN_NAMES = 10  # how many column names or archive members a message lists


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


def summarise(sentences: Sequence[Sentence], report: CorpusReport) -> None:
    """Fill the report's counts, tag histogram and sentence-length quantiles."""
    lengths = np.asarray([len(s) for s in sentences])
    report.sentences = len(sentences)
    report.tokens = int(lengths.sum())
    report.tag_counts = dict(Counter(t for s in sentences for t in s.tags))
    report.length_quantiles = {
        "min": int(lengths.min()),
        "median": int(np.median(lengths)),
        "p99": int(np.quantile(lengths, 0.99)),
        "max": int(lengths.max()),
    }



@dataclass
class ReadCorpus:
    """What a reader hands the stage.

    ``splits`` is None when the format has no splits of its own (the Kaggle CSV): the stage then splits
    ``sentences`` as the notebook did. ``path`` and ``sha256`` are what meta.json records as the corpus's identity.
    """

    sentences: list[Sentence]
    report: CorpusReport
    path: str
    sha256: str
    splits: dict[str, list[Sentence]] | None = None


class CorpusReader(Protocol):
    """One corpus format, configured from the ``corpus`` config section."""

    def read(self) -> ReadCorpus:
        """Read and validate the corpus; every token ends up in exactly one sentence or a CorpusError is raised."""
        ...


def shown(value: str) -> str:
    """``repr`` of a value cut to a readable length, for error messages (a bad field may be megabytes long)."""
    return repr(value if len(value) <= SHOWN_CHARACTERS else value[:SHOWN_CHARACTERS] + "...")


def listed(names: Sequence[str]) -> str:
    """The first few names, comma-separated (a page of HTML mistaken for a header has hundreds)."""
    return ", ".join(names[:SHOWN_NAMES]) + (" ..." if len(names) > SHOWN_NAMES else "")


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file: recorded in every cache file so stale caches are recognised."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tag_vocabulary(sentences: Iterable[Sentence]) -> list[str]:
    """Tags of the corpus, ``O`` first then sorted, so tag ids are stable across runs."""
    tags = {t for s in sentences for t in s.tags}
    return [OUTSIDE_TAG] + sorted(tags - {OUTSIDE_TAG})

