"""Unlabelled text for the biLM, streamed: files, directories and globs of plain text or WikiExtractor JSON lines
(each optionally ``.gz`` / ``.bz2``), cut into sentences by the tokenizer that ``ner tag`` uses.

Why a stream: the Simple English Wikipedia is 28 M tokens and a user's own text may be far larger, so nothing here
holds more than one line plus a bounded shuffle buffer. Why determinism: a pretraining run killed at any point must
resume at the same place in the stream (:class:`SentenceStream` replays pass ``p`` identically from its seed and
skips what was already consumed), so that within a pass no sentence is seen twice or skipped.

Formats, told apart per file by its first non-blank line:

- WikiExtractor JSON lines (``{"id": ..., "text": "..."}``): each line one article; its ``text`` holds paragraphs
  separated by newlines.
- Plain text: a paragraph or a sentence per line.
- CoNLL (the corpus stage's ``*.conll`` splits): already tokenized, one sentence per block.

Bad input never stops a run and is never dropped silently: undecodable lines and malformed JSON lines are counted
per file and reported with the first line numbers where they occur (:class:`TextProblems`).
"""
from __future__ import annotations

import bz2
import glob
import gzip
import json
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from pipeline.logs import get_logger
from pipeline.tokenize import split_sentences

log = get_logger(__name__)

COMPRESSED_OPENERS = {".gz": gzip.open, ".bz2": bz2.open}
CONLL_SUFFIX = ".conll"
#: Line numbers kept per file and kind of problem for the warning; the count is always exact.
PROBLEM_EXAMPLES = 5


class TextSourceError(ValueError):
    """A text setting names nothing readable (no such file, an empty glob or directory)."""


def expand_text_sources(patterns: Sequence[str]) -> list[Path]:
    """Files named by ``patterns`` (files, directories searched recursively, globs), sorted, each once.

    Raises :class:`TextSourceError` for a pattern that matches no file: a typo would otherwise pretrain on less
    text than asked without a word.
    """
    files: dict[Path, None] = {}
    for pattern in patterns:
        path = Path(pattern)
        if path.is_file():
            matches = [path]
        elif path.is_dir():
            matches = sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        else:
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not matches:
            raise TextSourceError(f"bilm text source {pattern!r} matches no file (a file, a directory or a glob)")
        files.update(dict.fromkeys(matches))
    return list(files)


@dataclass
class TextProblems:
    """Lines that could not be read, per file: counted exactly, the first few line numbers kept for the message."""

    counts: dict[tuple[str, str], int] = field(default_factory=dict)
    examples: dict[tuple[str, str], list[int]] = field(default_factory=dict)

    def add(self, path: Path, line: int, kind: str) -> None:
        """Record one unreadable line of ``path`` (1-based ``line``); ``kind`` says what was wrong."""
        key = (str(path), kind)
        self.counts[key] = self.counts.get(key, 0) + 1
        shown = self.examples.setdefault(key, [])
        if len(shown) < PROBLEM_EXAMPLES:
            shown.append(line)

    def total(self) -> int:
        """All skipped lines."""
        return sum(self.counts.values())

    def describe(self) -> list[str]:
        """One line per file and kind: how many lines were skipped, and where the first ones are."""
        return [
            f"{path}: {count} line(s) skipped, {kind} (first at line {', '.join(map(str, self.examples[(path, kind)]))})"
            for (path, kind), count in sorted(self.counts.items())
        ]

    def warn(self) -> None:
        """Log the problems as warnings (nothing when there were none)."""
        for line in self.describe():
            log.warning("%s", line)


def numbered_lines(path: Path, problems: TextProblems) -> Iterator[tuple[int, str]]:
    """(line number, text) of a possibly compressed UTF-8 file; a line that is not UTF-8 is reported and skipped."""
    opener = COMPRESSED_OPENERS.get(path.suffix, open)
    with opener(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                yield number, raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                problems.add(path, number, f"not UTF-8 ({exc.reason} at byte {exc.start})")


def is_conll(path: Path) -> bool:
    """CoNLL files are recognised by name (``train.conll``, ``x.conll.gz``): their lines look like plain text."""
    return CONLL_SUFFIX in path.suffixes


def looks_like_json_lines(path: Path) -> bool:
    """Whether the first non-blank line of ``path`` is a JSON object (WikiExtractor's ``--json`` output)."""
    for _, line in numbered_lines(path, TextProblems()):
        if line.strip():
            return line.lstrip().startswith("{")
    return False


def file_paragraphs(path: Path, problems: TextProblems) -> Iterator[str]:
    """Paragraphs of one plain-text or JSON-lines file, in file order."""
    if not looks_like_json_lines(path):
        yield from (line for _, line in numbered_lines(path, problems) if line.strip())
        return
    for number, line in numbered_lines(path, problems):
        if not line.strip():
            continue
        try:
            text = json.loads(line)["text"]
            if not isinstance(text, str):
                raise TypeError
        except (json.JSONDecodeError, KeyError, TypeError):
            problems.add(path, number, "not a JSON object with a string 'text' field")
            continue
        yield from (paragraph for paragraph in text.split("\n") if paragraph.strip())


def conll_sentences(path: Path, problems: TextProblems) -> Iterator[list[str]]:
    """Word column of a CoNLL file (comments and ``-DOCSTART-`` skipped): the corpus stage's pretokenized splits."""
    words: list[str] = []
    for _, line in numbered_lines(path, problems):
        fields = line.split()
        if not fields:
            if words:
                yield words
            words = []
        elif not line.startswith("# ") and fields[0] != "-DOCSTART-":
            words.append(fields[0])
    if words:
        yield words


def file_sentences(path: Path, problems: TextProblems, max_tokens: int) -> Iterator[list[str]]:
    """Token lists of one file; a sentence longer than ``max_tokens`` comes as consecutive pieces (never dropped)."""
    if is_conll(path):
        sentences: Iterable[list[str]] = conll_sentences(path, problems)
    else:
        sentences = ([token.text for token in sentence] for paragraph in file_paragraphs(path, problems)
                     for sentence in split_sentences(paragraph))
    for sentence in sentences:
        for start in range(0, len(sentence), max_tokens):
            yield sentence[start:start + max_tokens]


@dataclass(frozen=True)
class StreamPosition:
    """Where a pretraining run stands in its text: the pass, and the sentences already consumed within it."""

    epoch: int = 0
    sentences: int = 0


class SentenceStream:
    """Sentences of ``files`` in a shuffled order that depends only on ``seed`` and the pass, in bounded memory.

    Each pass visits the files in its own random order and passes their sentences through a shuffle buffer of
    ``buffer_size`` sentences (a sentence leaves the buffer at a random point after up to ``buffer_size`` newer ones
    arrived): consecutive batches mix articles and files while memory stays at one buffer. Sentences listed in
    ``excluded`` (the validation and test splits) are skipped and counted in ``excluded_seen``.
    """

    def __init__(self, files: Sequence[Path], seed: int, buffer_size: int, max_tokens: int,
                 excluded: frozenset[tuple[str, ...]] = frozenset()):
        self.files = list(files)
        self.seed = seed
        self.buffer_size = max(1, buffer_size)
        self.max_tokens = max_tokens
        self.excluded = excluded
        self.excluded_seen = 0
        self.problems = TextProblems()

    def unshuffled(self, order: Sequence[Path]) -> Iterator[list[str]]:
        """Every sentence of the files in ``order``, minus the excluded ones."""
        for path in order:
            for sentence in file_sentences(path, self.problems, self.max_tokens):
                if self.excluded and tuple(sentence) in self.excluded:
                    self.excluded_seen += 1
                    continue
                yield sentence

    def epoch(self, epoch: int, skip: int = 0) -> Iterator[list[str]]:
        """The sentences of pass ``epoch`` (0-based), in its shuffled order, after the first ``skip`` of them."""
        rng = random.Random(f"{self.seed}/{epoch}")
        order = list(self.files)
        rng.shuffle(order)
        self.problems = TextProblems()
        self.excluded_seen = 0
        buffer: list[list[str]] = []
        produced = 0
        for sentence in self.unshuffled(order):
            if len(buffer) < self.buffer_size:
                buffer.append(sentence)
                continue
            at = rng.randrange(self.buffer_size)
            sentence, buffer[at] = buffer[at], sentence
            produced += 1
            if produced > skip:
                yield sentence
        rng.shuffle(buffer)
        for sentence in buffer:
            produced += 1
            if produced > skip:
                yield sentence
