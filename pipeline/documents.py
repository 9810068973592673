"""Read a collection of documents to tag: plain text files, JSON lines and CoNLL files, plain or gzip/bzip2.

A collection is a directory (every file under it, hidden ones excepted) or a glob pattern. Each file's format comes
from its name unless one is forced: ``.jsonl``/``.ndjson`` are JSON lines (one document per line: a text field and an
optional id), ``.conll``/``.iob`` are CoNLL (one token per line in the first column, a blank line between sentences,
``-DOCSTART-`` lines between documents), anything else is plain text (the whole file is one document). A trailing
``.gz`` or ``.bz2`` is decompressed on the fly.

Why documents that cannot be read are *reported* rather than raised: a collection of a million files always holds a
few broken ones (a binary file, a truncated download, a malformed JSON line), and one of them must neither stop the
run nor vanish silently. :func:`read_collection` yields a :class:`Problem` (file, line, what was wrong) for each, and
the rest of the file (for JSON lines: the other lines) is still read.
"""
from __future__ import annotations

import bz2
import glob
import gzip
import json
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

from pipeline.tokenize import read_pretokenized

FORMATS = ("auto", "text", "jsonl", "conll")
FORMAT_BY_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".conll": "conll", ".iob": "conll"}
COMPRESSED_OPENERS: dict[str, Callable[[str], IO[bytes]]] = {
    ".gz": lambda path: gzip.open(path, "rb"),
    ".bz2": lambda path: bz2.open(path, "rb"),
}
#: What a damaged compressed file raises part-way through (bad CRC, truncated stream, not compressed at all).
DAMAGED_STREAM_ERRORS = (OSError, EOFError, zlib.error, gzip.BadGzipFile)
DOCSTART = "-DOCSTART-"
NUL = "\x00"
#: Longest piece of a bad line quoted in a problem report.
QUOTED_CHARS = 60


class CollectionError(ValueError):
    """A collection that cannot be read at all (nothing matches, an unusable encoding or format)."""


class DamagedFileError(CollectionError):
    """A compressed file whose stream breaks at ``line``: the documents before it are kept."""

    def __init__(self, line: int, message: str):
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Document:
    """One document to tag: raw ``text``, or pre-tokenized ``sentences`` (CoNLL input), never both.

    ``line`` is where the document starts in ``file`` (1-based), so any later report can point back at it.
    """

    id: str
    file: str
    line: int
    text: str | None = None
    sentences: list[list[str]] | None = None

    def to_dict(self) -> dict:
        """The JSON form written into a shard's input file."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, record: dict) -> "Document":
        return cls(**record)


@dataclass(frozen=True)
class Problem:
    """A document (or a whole file) that was skipped, and why."""

    file: str
    line: int | None
    reason: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else self.file
        return f"{where}: {self.reason}"

    def to_dict(self) -> dict:
        return asdict(self)


# --------------------------------------------------------------------------------------------------------------------
# Finding the files
# --------------------------------------------------------------------------------------------------------------------


def collection_files(spec: str) -> list[Path]:
    """The files of a collection, sorted: every non-hidden file under a directory, or what a glob matches
    (``**`` crosses directories). A CollectionError when there are none."""
    root = Path(spec)
    if root.is_dir():
        files = [p for p in root.rglob("*") if p.is_file() and not is_hidden(p.relative_to(root))]
    else:
        files = [Path(p) for p in glob.glob(spec, recursive=True) if Path(p).is_file()]
    if not files:
        what = "the directory holds no files" if root.is_dir() else "matches no files"
        raise CollectionError(f"tag.input {spec!r}: {what} (give a directory of documents or a glob such as "
                              f"'docs/**/*.txt')")
    return sorted(files)


def is_hidden(relative: Path) -> bool:
    """Whether a path inside the collection is hidden (``.git/``, editor swap files): never a document."""
    return any(part.startswith(".") for part in relative.parts)


def file_format(path: Path, forced: str = "auto") -> str:
    """``text``, ``jsonl`` or ``conll``: ``forced`` unless it is ``auto``, else by suffix (compression suffix
    ignored)."""
    if forced not in FORMATS:
        raise CollectionError(f"unknown document format {forced!r} (choose from {', '.join(FORMATS)})")
    if forced != "auto":
        return forced
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSED_OPENERS:
        suffixes.pop()
    return FORMAT_BY_SUFFIX.get(suffixes[-1], "text") if suffixes else "text"


def check_encoding(encoding: str) -> None:
    """Only encodings in which a newline is the byte ``\\n`` can be read a line at a time (UTF-8, Latin-1, cp1252;
    not UTF-16)."""
    try:
        newline = "\n".encode(encoding)
    except LookupError:
        raise CollectionError(f"unknown text encoding {encoding!r} (tag.encoding)") from None
    if newline != b"\n":
        raise CollectionError(f"tag.encoding {encoding!r}: only encodings that write a newline as one \\n byte "
                              f"(utf-8, latin-1, cp1252, ...) can be read line by line")


# --------------------------------------------------------------------------------------------------------------------
# Lines
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """One line of a file (1-based ``number``): its text, or why it could not be decoded."""

    number: int
    text: str
    problem: str | None = None


def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed when its name ends in .gz or .bz2."""
    opener = COMPRESSED_OPENERS.get(path.suffix.lower())
    return opener(str(path)) if opener else open(path, "rb")


def decoded_line(number: int, raw: bytes, encoding: str) -> Line:
    """Decode one line on its own, so that one bad line spoils one document, not the rest of the file.

    Line ends are read as a file opened in text mode reads them (``\\r\\n`` and ``\\r`` become ``\\n``), so offsets
    agree with ``ner tag --file`` on the same file.
    """
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        return Line(number, "", f"not valid {encoding} text ({exc.reason}: {exc.object[exc.start:exc.end]!r}); "
                                f"set tag.encoding if the collection uses another encoding")
    if NUL in text:
        return Line(number, "", "contains NUL bytes; this looks like a binary file, not text")
    if text.endswith("\r\n"):
        text = text[:-2] + "\n"
    return Line(number, text.replace("\r", "\n"))


def read_lines(path: Path, encoding: str) -> Iterator[Line]:
    """Every line of a file, decoded one by one. A damaged compressed stream raises CollectionError naming the
    line where it broke (the lines before it have been yielded)."""
    number = 0
    try:
        with open_binary(path) as handle:
            for number, raw in enumerate(handle, start=1):
                yield decoded_line(number, raw, encoding)
    except DAMAGED_STREAM_ERRORS as exc:
        if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile) and exc.errno is not None:
            raise  # a real I/O error (permissions, a vanished file): not the file's content
        raise DamagedFileError(number + 1, f"damaged, or not a {path.suffix} file ({exc}); the documents before "
                                           f"this line were read") from None


# --------------------------------------------------------------------------------------------------------------------
# Documents of each format
# --------------------------------------------------------------------------------------------------------------------


def text_documents(lines: Iterable[Line], file: str) -> Iterator[Document | Problem]:
    """The whole file is one document, named after the file; any bad line makes it a Problem."""
    texts = []
    for line in lines:
        if line.problem:
            yield Problem(file, line.number, line.problem)
            return
        texts.append(line.text)
    text = "".join(texts)
    if not text.strip():
        yield Problem(file, None, "empty document (no text)")
        return
    yield Document(file, file, 1, text=text)


def jsonl_documents(lines: Iterable[Line], file: str, text_field: str, id_field: str) -> Iterator[Document | Problem]:
    """One document per non-blank line: an object with ``text_field`` (a string) and optionally ``id_field``
    (string or number; default ``file:line``). A bad line is a Problem and the next line is read."""
    seen_any = False
    for line in lines:
        if line.problem:
            seen_any = True
            yield Problem(file, line.number, line.problem)
            continue
        if not line.text.strip():
            continue
        seen_any = True
        yield jsonl_document(line, file, text_field, id_field)
    if not seen_any:
        yield Problem(file, None, "empty file (no JSON lines)")


def jsonl_document(line: Line, file: str, text_field: str, id_field: str) -> Document | Problem:
    """The document of one JSON line, or the Problem with it."""
    try:
        record = json.loads(line.text)
    except json.JSONDecodeError as exc:
        return Problem(file, line.number, f"not valid JSON ({exc.msg} at column {exc.colno}): "
                                          f"{line.text.strip()[:QUOTED_CHARS]!r}")
    if not isinstance(record, dict):
        return Problem(file, line.number, f"a JSON {type(record).__name__}, not an object with a {text_field!r} "
                                          f"field")
    text = record.get(text_field)
    if not isinstance(text, str):
        found = "no" if text is None else f"a {type(text).__name__} as its"
        return Problem(file, line.number, f"{found} {text_field!r} field (a string is needed; set tag.text_field "
                                          f"if the text is under another name)")
    if not text.strip():
        return Problem(file, line.number, f"empty document (the {text_field!r} field holds no text)")
    identifier = record.get(id_field)
    if identifier is not None and (isinstance(identifier, bool) or not isinstance(identifier, (str, int))):
        return Problem(file, line.number, f"the {id_field!r} field is a {type(identifier).__name__}; a string or "
                                          f"an integer is needed")
    return Document(str(identifier) if identifier is not None else f"{file}:{line.number}", file, line.number,
                    text=text)


def conll_documents(lines: Iterable[Line], file: str) -> Iterator[Document | Problem]:
    """Documents of a CoNLL file, read as they come: separated by ``-DOCSTART-`` lines (the whole file when there
    are none) and named ``file#1``, ``file#2``, ... A bad line makes its document a Problem."""
    index = 0
    current: list[Line] = []
    for line in lines:
        if line.text.split()[:1] != [DOCSTART]:
            current.append(line)
            continue
        if has_content(current):
            index += 1
            yield conll_document(current, file, index)
        current = []
    if has_content(current):
        yield conll_document(current, file, index + 1)
    elif index == 0:
        yield Problem(file, None, "empty file (no tokens)")


def has_content(lines: list[Line]) -> bool:
    """Whether any line holds a token (or could not be read)."""
    return any(line.text.strip() or line.problem for line in lines)


def conll_document(lines: list[Line], file: str, index: int) -> Document | Problem:
    """The ``index``-th document of a CoNLL file from its lines."""
    bad = next((line for line in lines if line.problem), None)
    if bad is not None:
        return Problem(file, bad.number, bad.problem)
    first = next(line for line in lines if line.text.strip())
    return Document(f"{file}#{index}", file, first.number,
                    sentences=list(read_pretokenized(line.text for line in lines)))


def read_file(path: Path, fmt: str, encoding: str, text_field: str = "text",
              id_field: str = "id") -> Iterator[Document | Problem]:
    """The documents of one file and the problems found in it, in file order; never raises for bad content."""
    file = str(path)
    lines = read_lines(path, encoding)
    try:
        if fmt == "jsonl":
            yield from jsonl_documents(lines, file, text_field, id_field)
        elif fmt == "conll":
            yield from conll_documents(lines, file)
        else:
            yield from text_documents(lines, file)
    except DamagedFileError as exc:
        yield Problem(file, exc.line, str(exc))
    except OSError as exc:
        yield Problem(file, None, f"cannot be read ({exc.strerror or exc})")


def read_files(files: Iterable[Path], fmt: str = "auto", encoding: str = "utf-8", text_field: str = "text",
               id_field: str = "id") -> Iterator[Document | Problem]:
    """Every document of the files, and every problem, file by file."""
    check_encoding(encoding)
    for path in files:
        yield from read_file(path, file_format(path, fmt), encoding, text_field, id_field)


def read_collection(spec: str, fmt: str = "auto", encoding: str = "utf-8", text_field: str = "text",
                    id_field: str = "id") -> Iterator[Document | Problem]:
    """Every document of a collection, and every problem, file by file in sorted order."""
    return read_files(collection_files(spec), fmt, encoding, text_field, id_field)
