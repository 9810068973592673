"""The Kaggle "Annotated Corpus for Named Entity Recognition" (``ner_dataset.csv``, plain or zipped).

Columns ``Sentence #``, ``Word``, ``POS``, ``Tag``; latin-1; the sentence id only on a sentence's first row. Words are
read verbatim: the corpus holds tokens such as ``NaN`` and ``NA`` that pandas would turn into missing values (and the
original notebook's forward-fill then overwrote with the previous word). The corpus has no splits of its own: the
stage splits it as the notebook did (:mod:`pipeline.corpus.split`).

The CSV is parsed with the standard ``csv`` module, not pandas, so that every problem names the physical line it is
on (pandas' ParserError counts records, not lines, and pads short rows with NaN without a word). A bad file is
rejected with a :class:`CorpusError` that reads ``path:LINE: problem and fix``; a quirk that loses nothing (a blank
line, an ``I-`` tag that starts an entity, a row without POS) is kept and listed in the :class:`CorpusReport`. Either
way every data row is accounted for: ``rows == tokens + blank_lines``. Values holding a tab or a line break are
refused, since the CoNLL files could not represent them; this also catches a quote left open across lines.
"""
from __future__ import annotations

import codecs
import csv
import io
import re
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Iterator, NamedTuple, Sequence


from pipeline.config import PROJECT_ROOT
from pipeline.corpus.base import (
    BIO_TAG_PATTERN, OUTSIDE_TAG, CorpusError, CorpusReport, ReadCorpus, Sentence, file_sha256, listed, shown,
    summarise,
)
from pipeline.corpus.conll import CONLL_SEPARATORS
from pipeline.logs import get_logger

CORPUS_FILENAMES = ("ner_dataset.csv", "ner_dataset.csv.zip")
CORPUS_SEARCH_DIRS = (PROJECT_ROOT / "data", PROJECT_ROOT.parent / "shared" / "data")
SENTENCE_COLUMN = "Sentence #"
WORD_COLUMN = "Word"
POS_COLUMN = "POS"
TAG_COLUMN = "Tag"
REQUIRED_COLUMNS = (SENTENCE_COLUMN, WORD_COLUMN, POS_COLUMN, TAG_COLUMN)

ZIP_SUFFIX = ".zip"
ZIP_MAGIC = b"PK\x03\x04"
GZIP_MAGIC = b"\x1f\x8b"
ZIP_METADATA_PREFIXES = ("__MACOSX/",)  # resource forks macOS adds to archives it creates
UTF8_CODECS = ("utf-8", "utf-8-sig")
#: A row made only of these (or of nothing) is a blank line. Not str.isspace: the corpus has the word '\x85' (NEL).
BLANK_CHARACTERS = " \t"
OTHER_DELIMITERS = (";", "\t", "|")

log = get_logger(__name__)

MISSING_CORPUS_HELP = (
    "The NER corpus was not found. Download the Kaggle 'Annotated Corpus for Named Entity Recognition' "
    "(ner_dataset.csv, https://www.kaggle.com/datasets/abhinavwalia95/entity-annotated-corpus) and put "
    "ner_dataset.csv or ner_dataset.csv.zip in data/ (or set corpus.path in config/config.yaml). Searched: {searched}"
)
EXPECTED_HEADER = ",".join(REQUIRED_COLUMNS)


class CsvRecord(NamedTuple):
    """One CSV record and the physical lines it spans (a quoted field may hold line breaks).

    A NamedTuple rather than a dataclass: the corpus has a million rows and this is built once per row.
    """

    first_line: int
    last_line: int
    fields: list[str]


def find_corpus(path: str | Path | None = None, search_dirs: Sequence[Path] = CORPUS_SEARCH_DIRS) -> Path:
    """Return the corpus path: the configured one, else the first ``ner_dataset.csv[.zip]`` in the search dirs."""
    if path:
        p = Path(path)
        if p.is_dir():
            raise CorpusError(f"{p}: is a directory; corpus.path must name the corpus file (ner_dataset.csv)")
        if not p.is_file():
            raise CorpusError(f"{p}: corpus file not found (corpus.path in the config)")
        return p
    candidates = [Path(d) / name for d in search_dirs for name in CORPUS_FILENAMES]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise CorpusError(MISSING_CORPUS_HELP.format(searched=", ".join(str(c) for c in candidates)))


def is_csv_member(name: str) -> bool:
    """Whether a zip member is a CSV file (not a folder, not macOS metadata such as ``__MACOSX/._x.csv``)."""
    return name.lower().endswith(".csv") and not name.startswith(ZIP_METADATA_PREFIXES)


def csv_from_zip(raw: bytes, path: Path) -> bytes:
    """The bytes of the one CSV inside a zip archive, or a CorpusError listing what the archive holds."""
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as archive:
            names = archive.namelist()
            members = [m for m in names if is_csv_member(m)]
            if len(members) != 1:
                listing = listed(names) if names else "nothing"
                raise CorpusError(
                    f"{path}: the zip archive must hold exactly one .csv file (the corpus), it holds "
                    f"{len(members)}: {listing}. (An Excel .xlsx file is a zip too: export the sheet as CSV.)"
                )
            return archive.read(members[0])
    except (zipfile.BadZipFile, zlib.error, EOFError, RuntimeError, NotImplementedError) as exc:
        raise CorpusError(f"{path}: not a readable zip archive ({exc}); download the corpus again") from None


def read_corpus_bytes(path: Path) -> bytes:
    """Bytes of a plain or zipped CSV (a zip must hold exactly one .csv member).

    A zip is recognised by its content as well as its suffix: a download renamed to ``.csv`` still opens.
    """
    raw = path.read_bytes()
    if path.suffix.lower() == ZIP_SUFFIX or raw.startswith(ZIP_MAGIC):
        return csv_from_zip(raw, path)
    return raw


def line_of(data: bytes | str, offset: int) -> int:
    """1-based line number of an offset into the file's bytes or text."""
    newline = b"\n" if isinstance(data, bytes) else "\n"
    return data.count(newline, 0, offset) + 1


def codec_name(encoding: str, path: Path) -> str:
    """The canonical codec name of ``corpus.encoding`` (``latin1`` and ``ISO-8859-1`` are one codec)."""
    try:
        return codecs.lookup(encoding).name
    except LookupError:
        raise CorpusError(f"{path}: unknown text encoding {encoding!r} (corpus.encoding)") from None


def reject_compressed(raw: bytes, path: Path) -> None:
    """Refuse a gzip file up front: decoded as latin-1 it would parse into garbage rather than fail."""
    if raw.startswith(GZIP_MAGIC):
        raise CorpusError(f"{path}:1: the file is gzip-compressed, not a CSV: unpack it (only .zip is read directly)")


def reject_binary(text: str, path: Path) -> None:
    """Refuse a binary file (a NUL never occurs in a text CSV; latin-1 decodes any bytes, so decoding cannot tell)."""
    nul = text.find("\x00")
    if nul >= 0:
        raise CorpusError(
            f"{path}:{line_of(text, nul)}: NUL character: this is a binary file (or text in another "
            f"encoding, e.g. UTF-16: set corpus.encoding), not a CSV; export the corpus as comma-separated text"
        )


def reject_misdeclared_utf8(raw: bytes, path: Path, encoding: str) -> None:
    """Refuse a UTF-8 file read with a single-byte encoding: latin-1 decodes any bytes, so it would not fail, it
    would silently turn ``Zürich`` into ``ZÃ¼rich``. A real latin-1 file with accents is (almost) never valid
    UTF-8, so this does not misfire on the Kaggle corpus."""
    if raw.isascii():
        return
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return
    first = re.search(rb"[\x80-\xff]", raw).start()
    line = line_of(raw, first)
    start, end = raw.rfind(b"\n", 0, first) + 1, raw.find(b"\n", first)
    text = raw[start : end if end >= 0 else len(raw)].rstrip(b"\r")
    raise CorpusError(
        f"{path}:{line}: the file is UTF-8 but corpus.encoding is {encoding!r}: this line would read "
        f"{shown(text.decode(encoding, 'replace'))} instead of {shown(text.decode('utf-8'))}; set corpus.encoding: "
        f"utf-8"
    )


def decode_text(raw: bytes, path: Path, encoding: str) -> str:
    """Decode the file, turning an encoding error (or an encoding that only seems to work) into a located one."""
    codec = codec_name(encoding, path)
    if codec in UTF8_CODECS:
        raw = raw.removeprefix(codecs.BOM_UTF8)  # Excel writes one; it would stick to the first column name
    else:
        reject_misdeclared_utf8(raw, path, encoding)
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        bad = raw[exc.start : exc.end]
        raise CorpusError(
            f"{path}:{line_of(raw, exc.start)}: bytes {bad!r} are not valid {encoding} ({exc.reason}); set "
            f"corpus.encoding to the file's encoding (the Kaggle corpus is latin-1)"
        ) from None


def csv_error_hint(exc: csv.Error) -> str:
    """What a csv module error usually means in this corpus, in words a user can act on."""
    message = str(exc)
    if "unexpected end of data" in message or "field larger than field limit" in message:
        return f"a quoted field that starts on this line is never closed (a stray '\"'?) ({message})"
    if "expected after" in message:
        return f"text follows a closing quote: a '\"' inside a quoted field must be doubled ({message})"
    return message


def csv_records(text: str, path: Path) -> Iterator[CsvRecord]:
    """The records of a CSV text, each with the physical lines it spans.

    ``strict`` makes the parser refuse what it would otherwise guess at (text after a closing quote, a quote left
    open to the end of the file); the line named is where the faulty record starts, not where the parser gave up.
    """
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    while True:
        first_line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise CorpusError(f"{path}:{first_line}: malformed CSV: {csv_error_hint(exc)}") from None
        yield CsvRecord(first_line, reader.line_num, fields)


def is_blank(fields: Sequence[str]) -> bool:
    """A blank line, or a row of empty fields (``,,,``): skipped and counted, never a token."""
    return not "".join(fields).strip(BLANK_CHARACTERS)


def header_problem_hint(names: Sequence[str], missing: Sequence[str]) -> str:
    """Why the required columns may be missing: another delimiter, the wrong case, or not the corpus at all."""
    if len(names) == 1:
        for delimiter in OTHER_DELIMITERS:
            if delimiter in names[0]:
                return f"the header has no commas but {delimiter!r}: save the file as comma-separated CSV"
    lowered = {name.lower(): name for name in names}
    wrong_case = [f"{lowered[m.lower()]!r} should be {m!r}" for m in missing if m.lower() in lowered]
    if wrong_case:
        return "column names are case-sensitive: " + ", ".join(wrong_case)
    return "is this the Kaggle ner_dataset.csv?"


def header_names(header: CsvRecord, path: Path) -> list[str]:
    """The column names (stripped of surrounding spaces), checking that each required column is there once."""
    line = header.first_line
    if is_blank(header.fields):
        raise CorpusError(f"{path}:{line}: blank line where the header belongs (expected {EXPECTED_HEADER})")
    names = [name.strip() for name in header.fields]
    for name, count in Counter(names).items():
        if count > 1 and name in REQUIRED_COLUMNS:
            raise CorpusError(f"{path}:{line}: column {name!r} appears {count} times in the header")
    missing = [c for c in REQUIRED_COLUMNS if c not in names]
    if missing:
        found = listed([shown(n) for n in names])
        raise CorpusError(
            f"{path}:{line}: missing column(s) {', '.join(missing)}; the header has {found}; it must have "
            f"{EXPECTED_HEADER} ({header_problem_hint(names, missing)})"
        )
    return names


def check_field_count(record: CsvRecord, header: Sequence[str], required: Sequence[int], path: Path) -> None:
    """A row must give a value for every required column and no more values than the header has columns.

    A row that stops short only of extra (ignored) columns is accepted: nothing the pipeline uses is missing.
    """
    count = len(record.fields)
    if count > len(header):
        raise CorpusError(
            f"{path}:{record.first_line}: row has {count} fields but the header has {len(header)}: a word that "
            f"contains a comma must be quoted (the word , is written \",\")"
        )
    absent = [header[i] for i in required if i >= count]
    if absent:
        raise CorpusError(
            f"{path}:{record.first_line}: row has {count} fields but the header has {len(header)}: no value for "
            f"{', '.join(absent)}"
        )


def check_conll_safe(record: CsvRecord, values: Sequence[str], path: Path) -> None:
    """Refuse a tab or line break inside a value: CoNLL shards could not hold it, and a line break inside a quoted
    field usually means a quote left open that swallowed the next row(s)."""
    for column, value in zip(REQUIRED_COLUMNS, values):
        for separator, name in CONLL_SEPARATORS.items():
            if separator in value:
                spans = (
                    f" (one quoted field spans lines {record.first_line}-{record.last_line}: a quote that is not "
                    f"closed on its line?)"
                    if record.last_line > record.first_line
                    else ""
                )
                raise CorpusError(
                    f"{path}:{record.first_line}: the {column} field {shown(value)} holds {name}, which a token "
                    f"cannot hold{spans}"
                )


class SentenceBuilder:
    """Groups validated rows into sentences by their sentence id, which only the first row of a sentence carries.

    Why row by row: every rejected row must name its line, and every accepted row must land in exactly one sentence.
    A row repeating the id of the sentence just before it continues that sentence, so a file saved after the
    notebook's forward-fill (the id on every row) reads the same as the original.
    """

    def __init__(self, report: CorpusReport, path: Path):
        self.report = report
        self.path = path
        self.sentences: dict[str, Sentence] = {}
        self.first_line: dict[str, int] = {}
        self.current: Sentence | None = None

    def sentence_for(self, sentence_id: str, line: int) -> Sentence:
        """The sentence a row belongs to, starting a new one when the row carries a new id."""
        if not sentence_id or (self.current is not None and sentence_id == self.current.sentence_id):
            if self.current is None:
                raise CorpusError(
                    f"{self.path}:{line}: the first data row has no sentence id ('{SENTENCE_COLUMN}' is empty)"
                )
            return self.current
        if sentence_id in self.sentences:
            raise CorpusError(
                f"{self.path}:{line}: sentence id {sentence_id!r} was already used at line "
                f"{self.first_line[sentence_id]}; sentence ids must be unique (rows of one sentence are contiguous, "
                f"the id only on its first row)"
            )
        self.current = Sentence(sentence_id, [], [], [])
        self.sentences[sentence_id] = self.current
        self.first_line[sentence_id] = line
        return self.current

    def add(self, line: int, sentence_id: str, word: str, pos: str, tag: str) -> None:
        """Validate one data row and append it to its sentence."""
        path = self.path
        sentence = self.sentence_for(sentence_id, line)
        if word == "":
            raise CorpusError(
                f"{path}:{line}: empty word in sentence {sentence.sentence_id!r} (a missing value? words such as "
                f"NaN or NA are kept as written; an empty one cannot be a token)"
            )
        if tag == "":
            raise CorpusError(f"{path}:{line}: row has no tag (word {shown(word)})")
        if not BIO_TAG_PATTERN.match(tag):
            raise CorpusError(
                f"{path}:{line}: tag {shown(tag)} is not in the BIO scheme (O, B-type or I-type, case-sensitive)"
            )
        if pos == "":
            self.report.warnings.append(f"{path}:{line}: word {shown(word)} has no POS tag (kept, empty)")
        if tag.startswith("I-"):
            previous = sentence.tags[-1] if sentence.tags else OUTSIDE_TAG
            if previous == OUTSIDE_TAG or previous[2:] != tag[2:]:
                self.report.warnings.append(
                    f"{path}:{line}: {tag} follows {previous} (kept; evaluation reads it as the start of an entity)"
                )
        sentence.words.append(word)
        sentence.pos.append(pos)
        sentence.tags.append(tag)


def sentences_from_text(text: str, report: CorpusReport, path: Path) -> list[Sentence]:
    """Validate the header and every data row, counting each row as a token or a blank line."""
    records = csv_records(text, path)
    header = next(records)
    names = header_names(header, path)
    required = [names.index(c) for c in REQUIRED_COLUMNS]
    required_values = itemgetter(*required)
    may_hold_tabs = "\t" in text
    report.extra_columns = [n for n in names if n not in REQUIRED_COLUMNS]
    builder = SentenceBuilder(report, path)
    for record in records:
        report.rows += 1
        if is_blank(record.fields):
            report.blank_lines += 1
            continue
        if len(record.fields) != len(names):
            check_field_count(record, names, required, path)
        values = required_values(record.fields)
        if may_hold_tabs or record.last_line > record.first_line:  # the only ways a separator gets into a value
            check_conll_safe(record, values, path)
        sentence_id, word, pos, tag = values
        builder.add(record.first_line, sentence_id.strip(), word, pos, tag.strip())  # words verbatim: ' ', '\x85'
    if not builder.sentences:
        only_blank = f" (only {report.blank_lines} blank lines)" if report.blank_lines else ""
        raise CorpusError(f"{path}:{header.last_line + 1}: no data rows after the header{only_blank}")
    return list(builder.sentences.values())


def read_corpus(path: str | Path, encoding: str = "latin-1") -> tuple[list[Sentence], CorpusReport]:
    """Read and validate ``ner_dataset.csv`` (plain or zipped); every data row ends up in exactly one sentence."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"{path}: corpus file not found")
    raw = read_corpus_bytes(path)
    if not raw.strip():
        raise CorpusError(f"{path}:1: the file is empty (expected the header {EXPECTED_HEADER})")
    reject_compressed(raw, path)
    text = decode_text(raw, path, encoding)
    reject_binary(text, path)
    report = CorpusReport(path=str(path))
    sentences = sentences_from_text(text, report, path)
    summarise(sentences, report)
    if report.tokens + report.blank_lines != report.rows:  # the promise: nothing silently dropped
        raise CorpusError(f"{path}: internal error: {report.rows} rows read but {report.tokens} tokens kept")
    return sentences, report


@dataclass
class KaggleCsvReader:
    """``corpus.format: kaggle_csv``: ``ner_dataset.csv`` from ``corpus.path``, else the search dirs; no splits."""

    path: str | Path | None = None
    encoding: str = "latin-1"

    @classmethod
    def from_config(cls, cfg: dict) -> KaggleCsvReader:
        return cls(cfg.get("path"), cfg["encoding"])

    def read(self) -> ReadCorpus:
        path = find_corpus(self.path)
        log.info("reading corpus %s", path)
        sentences, report = read_corpus(path, self.encoding)
        log.info("%d sentences, %d tokens, %d problems handled", report.sentences, report.tokens, len(report.warnings))
        return ReadCorpus(sentences, report, str(path), file_sha256(path))
