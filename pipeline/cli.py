"""``ner``: the command line of the pipeline's user-facing tools.

* ``ner tag``: tag new text with a trained run (raw or pre-tokenized; arguments, a file or stdin) and print a
  table, CoNLL columns or JSON lines;
* ``ner check-corpus``: read and validate corpus files (Kaggle CSV or CoNLL) and print what was found;
* ``ner serve``: load a trained run once and answer HTTP requests (``POST /tag``, ``GET /health``, a web page at
  ``/``), see :mod:`pipeline.serve`.

Every expected failure (no trained run, a missing file, input that is not text, a bad corpus) prints one
``error: ...`` line to stderr and exits with status 2, never a traceback. The heavy imports (TensorFlow, pandas)
happen inside the commands, so ``ner --help`` answers at once.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import stat
import sys
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TextIO

import pipeline
from pipeline.tagger import (DECODE_METHODS, DEFAULT_BATCH_SIZE, DEFAULT_DECODE, DEFAULT_RUN_DIR, OUTSIDE_TAG,
                             TaggedSentence, TaggerError)

ERROR_STATUS = 2
INTERRUPTED_STATUS = 130  # 128 + SIGINT, what shells report for Ctrl-C
BROKEN_PIPE_STATUS = 1
STDIN = "-"
FORMATS = ("table", "conll", "jsonl")
DEFAULT_ENCODING = "utf-8"
DEFAULT_CORPUS_ENCODING = "latin-1"
DEFAULT_CONLL_ENCODING = "utf-8"
#: ``ner check-corpus --format``: auto picks by the file name (KAGGLE_SUFFIXES: the Kaggle CSV, else CoNLL).
CORPUS_FORMATS = ("auto", "kaggle_csv", "conll")
KAGGLE_SUFFIXES = (".csv", ".zip")
#: Input at least this large shows a progress bar even when stderr is not a terminal (a log file then shows that a
#: long job is moving).
LARGE_INPUT_BYTES = 1 << 20
NUL = "\x00"
DEBUG_VARIABLE = "NER_DEBUG"
STDERR_FD = 2

TABLE_HEADER = ("Word", "Pred")
TABLE_WORD_WIDTH = 15  # the original notebook's "{:15}" column
TABLE_RULE = "=" * 30
ANSI_COLOURS = ("1;31", "1;32", "1;34", "1;35", "1;36", "1;33")  # bold red, green, blue, magenta, cyan, yellow
ANSI_RESET = "\033[0m"

TAG_EPILOG = f"""\
input (one of):
  TEXT ...          each argument is a text of its own (sentences never cross arguments)
  --file PATH       a text file (UTF-8 unless --encoding), read and tagged in chunks: any size
  -  or nothing     standard input, e.g. `cat news.txt | ner tag`

  Raw text is split into sentences and tokens the way the training corpus was. With --pretokenized, a file or stdin
  holds one token per line (first column; a blank line between sentences) and each TEXT argument is one sentence of
  space-separated tokens. Empty or whitespace-only input prints nothing and exits 0 (the model is not loaded).
  Input that is not text in --encoding (undecodable bytes, NUL bytes) is rejected with an error, not guessed at.

output (--format):
  table  `Word  Pred` columns per sentence, as in the original notebook; entity tokens are coloured when stdout is a
         terminal (set NO_COLOR to turn that off)
  conll  word<TAB>tag per line, a blank line after each sentence
  jsonl  one JSON object per sentence: text, tokens, tags, entities (text, type, start, end, token_start,
         token_end, confidence); start/end are character offsets into the sentence's text

exit status: 0 success, 2 error (one `error: ...` line on stderr), 130 interrupted. TensorFlow's own start-up
logging is hidden; NER_DEBUG=1 shows it, and the traceback of an unexpected error.

examples:
  ner tag "Mr. Smith flew to Paris on Monday ."
  ner tag --file news.txt --format jsonl > entities.jsonl
  ner tag --pretokenized --format conll < tokens.conll
"""


class InputError(ValueError):
    """Input that cannot be tagged as given (not text, conflicting sources)."""


# --------------------------------------------------------------------------------------------------------------------
# Argument parsing
# --------------------------------------------------------------------------------------------------------------------


def positive_int(value: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def build_parser() -> argparse.ArgumentParser:
    """The ``ner`` parser with its subcommands."""
    parser = argparse.ArgumentParser(
        prog="ner",
        description="Named-entity recognition with cached ELMo-style embeddings: tag new text with a trained run, "
                    "check a corpus file. Train a run first with `snakemake --cores all`.",
        epilog="Run `ner COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {pipeline.__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_tag_command(commands)
    add_check_corpus_command(commands)
    add_serve_command(commands)
    return parser


def add_tag_command(commands: argparse._SubParsersAction) -> None:
    """``ner tag``: options and help."""
    tag = commands.add_parser(
        "tag", help="tag text with a trained model and print the entities",
        description="Tag raw or pre-tokenized text with a trained run: the run's own embedder and model,\n"
                    "length-bucketed batches, no truncation, valid BIO tags by default.",
        epilog=TAG_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    tag.add_argument("texts", nargs="*", metavar="TEXT",
                     help="text(s) to tag; '-' or no TEXT and no --file reads standard input")
    tag.add_argument("--file", "-f", metavar="PATH", help="read the input from PATH ('-' for standard input)")
    tag.add_argument("--run", default=DEFAULT_RUN_DIR, metavar="DIR",
                     help="run directory written by training: model.keras, tags.json, embedder.json "
                          "(default: %(default)s, in the current directory, else in the project root)")
    tag.add_argument("--pretokenized", action="store_true",
                     help="input is already tokenized: one token per line, blank line between sentences "
                          "(TEXT arguments: one sentence each, tokens separated by spaces)")
    tag.add_argument("--format", choices=FORMATS, default="table",
                     help="output format: table, conll or jsonl (default: %(default)s; see below)")
    tag.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, metavar="N",
                     help="sentences per embedder and model call; lower it if memory is short "
                          "(default: %(default)s)")
    tag.add_argument("--decode", choices=DECODE_METHODS, default=DEFAULT_DECODE,
                     help="bio_viterbi: the most probable tag sequence that is valid BIO; argmax: the most probable "
                          "tag per token (may start an entity with I-) (default: %(default)s)")
    tag.add_argument("--encoding", default=DEFAULT_ENCODING,
                     help="text encoding of --file or stdin (default: %(default)s)")
    tag.add_argument("--no-progress", action="store_true",
                     help="never show the progress bar (otherwise shown on stderr when stderr is a terminal or the "
                          f"input is at least {LARGE_INPUT_BYTES >> 20} MiB)")
    tag.set_defaults(handler=run_tag)


def add_check_corpus_command(commands: argparse._SubParsersAction) -> None:
    """``ner check-corpus``: options and help."""
    check = commands.add_parser(
        "check-corpus", help="read and validate corpus files and summarise them",
        description="Read and validate NER corpus files exactly as the pipeline's corpus stage does, and print "
                    "counts, the tag histogram, sentence lengths and every problem that was handled. Two formats: "
                    "the Kaggle ner_dataset.csv (columns 'Sentence #', Word, POS, Tag; plain or zipped) and "
                    "CoNLL-style files (one token per line, whitespace-separated columns with the word first, a "
                    "blank line between sentences, -DOCSTART- skipped), as corpus.format conll reads them. A file "
                    "that cannot be used gives one error naming the line; the exit status is 2 if any file failed.",
    )
    check.add_argument("paths", nargs="+", metavar="PATH", help="corpus files (.csv, .csv.zip or CoNLL)")
    check.add_argument("--format", choices=CORPUS_FORMATS, default="auto",
                       help="auto (default): a .csv or .zip file is the Kaggle CSV, anything else CoNLL")
    check.add_argument("--encoding", default=None,
                       help=f"text encoding (default: {DEFAULT_CORPUS_ENCODING} for the Kaggle CSV, as the Kaggle "
                            f"file is; {DEFAULT_CONLL_ENCODING} for CoNLL)")
    check.add_argument("--tag-column", type=int, default=-1,
                       help="CoNLL: index of the entity tag column (default: -1, the last; as corpus.tag_column)")
    check.add_argument("--pos-column", type=int, default=None,
                       help="CoNLL: index of a part-of-speech column, if any (as corpus.pos_column)")
    check.set_defaults(handler=run_check_corpus)


def add_serve_command(commands: argparse._SubParsersAction) -> None:
    """``ner serve``: options and help (defaults from :mod:`pipeline.serve`, read without importing a web stack)."""
    from pipeline import serve as defaults

    serve = commands.add_parser(
        "serve", help="load a trained run once and serve it over HTTP (API and web page)",
        description="Load a trained run once (model, tags and its own embedder, checked as `ner tag` does) and serve "
                    "it: POST /tag with {\"texts\": [...]} or {\"tokens\": [[...]]} answers the records of `ner tag "
                    "--format jsonl`, GET /health describes the run, GET /openapi.json the API, and GET / is a "
                    "web page that highlights the entities of typed text. Concurrent requests are tagged together "
                    "in length-bucketed batches. Listens on localhost only unless --host says otherwise.",
    )
    serve.add_argument("--run", default=DEFAULT_RUN_DIR, metavar="DIR",
                       help="run directory written by training (default: %(default)s, as for `ner tag`)")
    serve.add_argument("--host", default=defaults.DEFAULT_HOST,
                       help="address to listen on (default: %(default)s, this machine only; 0.0.0.0 exposes the "
                            "server to the network, put a reverse proxy with TLS in front of it)")
    serve.add_argument("--port", type=int, default=defaults.DEFAULT_PORT,
                       help="port to listen on; 0 picks a free one (printed at start) (default: %(default)s)")
    serve.add_argument("--batch-size", type=positive_int, default=DEFAULT_BATCH_SIZE, metavar="N",
                       help="sentences per embedder and model call (default: %(default)s)")
    serve.add_argument("--max-body-bytes", type=positive_int, default=defaults.DEFAULT_MAX_BODY_BYTES, metavar="N",
                       help="larger request bodies are refused with 413 (default: %(default)s)")
    serve.add_argument("--max-texts", type=positive_int, default=defaults.DEFAULT_MAX_TEXTS, metavar="N",
                       help="texts (or token lists) per request; more are refused with 413 (default: %(default)s)")
    serve.add_argument("--max-wait-ms", type=float, default=defaults.DEFAULT_MAX_WAIT_MS, metavar="MS",
                       help="how long a request may wait for others to share its model call (default: %(default)s)")
    serve.add_argument("--max-batch-inputs", type=positive_int, default=defaults.DEFAULT_MAX_BATCH_INPUTS,
                       metavar="N", help="inputs gathered into one tagging call at most (default: %(default)s)")
    serve.add_argument("--max-queued-inputs", type=positive_int, default=defaults.DEFAULT_MAX_QUEUED_INPUTS,
                       metavar="N", help="beyond this many waiting inputs new requests get 503 (default: %(default)s)")
    serve.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                       help="log one line per request (default: on)")
    serve.add_argument("--log-level", default="info", choices=("critical", "error", "warning", "info", "debug"),
                       help="the server's log level (default: %(default)s)")
    serve.set_defaults(handler=run_serve, decode=DEFAULT_DECODE)


# --------------------------------------------------------------------------------------------------------------------
# Input
# --------------------------------------------------------------------------------------------------------------------


def checked_lines(stream: TextIO, name: str, encoding: str) -> Iterator[str]:
    """Lines of a text stream; undecodable bytes or NUL characters raise an InputError naming the source.

    Why reject rather than replace: binary input would be tagged as nonsense with no sign that anything was wrong.
    """
    number = 0
    try:
        for number, line in enumerate(stream, start=1):
            if NUL in line:
                raise InputError(f"{name}:{number}: contains NUL bytes; this looks like a binary file, not text")
            yield line
    except UnicodeDecodeError as exc:
        where = f" after line {number}" if number else ""
        if NUL.encode() in exc.object:
            raise InputError(f"{name}: not text{where} (undecodable and NUL bytes); this looks like a binary "
                             f"file") from None
        raise InputError(f"{name}: not valid {encoding} text{where} ({exc.reason}: "
                         f"{exc.object[exc.start:exc.end]!r}); pass --encoding if the file uses another "
                         f"encoding (e.g. --encoding latin-1)") from None


@contextlib.contextmanager
def open_input(path: str | None, encoding: str) -> Iterator[tuple[Iterator[str], int | None]]:
    """(checked lines, size in bytes or None when unknown) of a file or of stdin (``path`` None or '-')."""
    try:
        "".encode(encoding)
    except LookupError:
        raise InputError(f"unknown text encoding {encoding!r} (--encoding)") from None
    if path is None or path == STDIN:
        yield checked_lines(stdin_text(encoding), "<stdin>", encoding), stream_size(sys.stdin)
        return
    with open(path, encoding=encoding) as handle:
        yield checked_lines(handle, path, encoding), os.fstat(handle.fileno()).st_size


def stdin_text(encoding: str) -> TextIO:
    """Standard input decoded strictly with ``encoding`` (not the locale's choice)."""
    binary = getattr(sys.stdin, "buffer", None)
    if binary is None:  # already text (an embedding application or a test replaced it)
        return sys.stdin
    return io.TextIOWrapper(binary, encoding=encoding, errors="strict")


def stream_size(stream: TextIO) -> int | None:
    """Size of a stream redirected from a regular file; None for pipes, terminals and in-memory streams."""
    try:
        info = os.fstat(stream.fileno())
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def without_leading_blank_lines(lines: Iterable[str]) -> Iterator[str] | None:
    """The lines from the first non-blank one on, or None when every line is blank (so nothing needs loading)."""
    iterator = iter(lines)
    for line in iterator:
        if line.strip():
            return prepend(line, iterator)
    return None


def prepend(first: str, rest: Iterator[str]) -> Iterator[str]:
    """``first`` then everything in ``rest``."""
    yield first
    yield from rest


def interactive_stdin() -> bool:
    """Whether stdin is a terminal: waiting there for input nobody is typing would look like a hang."""
    isatty = getattr(sys.stdin, "isatty", None)
    return bool(isatty and isatty())


@contextlib.contextmanager
def native_logs_silenced() -> Iterator[None]:
    """Discard what native code writes straight to file descriptor 2 while Python's ``sys.stderr`` (our errors, the
    progress bar) keeps the real stderr.

    Why: TensorFlow's C++ start-up logging (oneDNN, CUDA probing) is printed before its log level is read, so
    TF_CPP_MIN_LOG_LEVEL cannot hide it, and it would bury the one line a user needs. Only done when ``sys.stderr``
    really is descriptor 2 (not when a caller or a test captured it) and not with NER_DEBUG set.
    """
    try:
        is_process_stderr = sys.stderr.fileno() == STDERR_FD
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        is_process_stderr = False
    if not is_process_stderr or os.environ.get(DEBUG_VARIABLE):
        yield
        return
    python_stderr = sys.stderr
    python_stderr.flush()
    saved = os.dup(STDERR_FD)
    sys.stderr = os.fdopen(os.dup(saved), "w", buffering=1, encoding=python_stderr.encoding,
                           errors="backslashreplace")
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, STDERR_FD)
    os.close(devnull)
    try:
        yield
    finally:
        sys.stderr.close()
        sys.stderr = python_stderr
        os.dup2(saved, STDERR_FD)
        os.close(saved)


# --------------------------------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------------------------------


def use_colour(stream: TextIO) -> bool:
    """ANSI colour only on a terminal, and never when NO_COLOR is set (https://no-color.org)."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and not os.environ.get("NO_COLOR")


def colour_table(entity_types: Sequence[str]) -> dict[str, str]:
    """Entity type -> ANSI colour code, stable for a given tag vocabulary."""
    return {kind: ANSI_COLOURS[i % len(ANSI_COLOURS)] for i, kind in enumerate(entity_types)}


def format_table(sentence: TaggedSentence, colours: dict[str, str] | None) -> str:
    """The notebook's two-column display of one sentence; entity rows coloured by type when ``colours`` is given."""
    width = max([TABLE_WORD_WIDTH] + [len(w) + 1 for w in sentence.words])
    lines = [f"{TABLE_HEADER[0]:{width}} {TABLE_HEADER[1]}", TABLE_RULE]
    for word, tag in zip(sentence.words, sentence.tags):
        row = f"{word:{width}} {tag}"
        code = colours.get(tag[2:]) if colours and tag != OUTSIDE_TAG else None
        lines.append(f"\033[{code}m{row}{ANSI_RESET}" if code else row)
    return "\n".join(lines) + "\n\n"


def format_conll(sentence: TaggedSentence) -> str:
    """word<TAB>tag lines and a blank line."""
    return "".join(f"{w}\t{t}\n" for w, t in zip(sentence.words, sentence.tags)) + "\n"


def format_jsonl(sentence: TaggedSentence) -> str:
    """One JSON object (UTF-8, not escaped) on one line."""
    return json.dumps(sentence.to_dict(), ensure_ascii=False) + "\n"


def formatter(name: str, colours: dict[str, str] | None) -> Callable[[TaggedSentence], str]:
    """The function that renders one sentence in format ``name``."""
    if name == "table":
        return lambda sentence: format_table(sentence, colours)
    return {"conll": format_conll, "jsonl": format_jsonl}[name]


def show_progress(args: argparse.Namespace, input_bytes: int | None) -> bool:
    """Progress on stderr when someone watches it (a terminal) or the job is long (large input)."""
    if args.no_progress:
        return False
    isatty = getattr(sys.stderr, "isatty", None)
    return bool(isatty and isatty()) or (input_bytes or 0) >= LARGE_INPUT_BYTES


def write_sentences(sentences: Iterable[TaggedSentence], render: Callable[[TaggedSentence], str], out: TextIO,
                    progress: bool) -> None:
    """Render and write each sentence as soon as it is tagged, with a tqdm bar on stderr when ``progress``."""
    from tqdm import tqdm

    with tqdm(sentences, desc="tagging", unit="sentence", file=sys.stderr, disable=not progress) as bar:
        for sentence in bar:
            text = render(sentence)
            if progress and use_colour(out):  # both on one terminal: let tqdm keep the bar below the output
                tqdm.write(text, file=out, end="")
            else:
                out.write(text)
    out.flush()


# --------------------------------------------------------------------------------------------------------------------
# Commands
# --------------------------------------------------------------------------------------------------------------------


def run_tag(args: argparse.Namespace) -> int:
    """``ner tag``: read the input, tag it, print it."""
    if args.texts and args.file is not None:
        raise InputError("give either TEXT arguments or --file, not both")
    if args.texts and args.texts != [STDIN]:
        if STDIN in args.texts:
            raise InputError("'-' (standard input) cannot be mixed with TEXT arguments")
        return tag_arguments(args)
    path = args.file if args.file is not None else STDIN
    if args.file is None and not args.texts and interactive_stdin():
        raise InputError("no input: give TEXT, --file PATH, or pipe text into standard input (see ner tag --help)")
    with open_input(path, args.encoding) as (lines, size):
        lines = without_leading_blank_lines(lines)
        if lines is None:
            return 0
        with native_logs_silenced():
            tagger = load_tagger(args)
            sentences = tagger.tag_stream(lines, pretokenized=args.pretokenized)
            write_sentences(sentences, output_renderer(args, tagger), sys.stdout, show_progress(args, size))
    return 0


def tag_arguments(args: argparse.Namespace) -> int:
    """Tag TEXT arguments: raw texts, or (``--pretokenized``) one sentence of space-separated tokens each."""
    if not any(text.strip() for text in args.texts):
        return 0
    with native_logs_silenced():
        tagger = load_tagger(args)
        if args.pretokenized:
            sentences = tagger.tag_tokens([text.split() for text in args.texts if text.strip()])
        else:
            sentences = tagger.tag(args.texts)
        write_sentences(sentences, output_renderer(args, tagger), sys.stdout, progress=False)
    return 0


def load_tagger(args: argparse.Namespace):  # noqa: ANN201 - Tagger, imported lazily with TensorFlow
    """The run's tagger with the command's batch size and decoding, TensorFlow's threads set for tagging first."""
    from pipeline.tagger import load, use_inference_threads

    use_inference_threads()
    return load(args.run, batch_size=args.batch_size, decode=args.decode)


def output_renderer(args: argparse.Namespace, tagger) -> Callable[[TaggedSentence], str]:  # noqa: ANN001
    """The renderer for ``--format``, coloured by entity type when stdout is a terminal."""
    colours = colour_table(tagger.entity_types) if use_colour(sys.stdout) else None
    return formatter(args.format, colours)


def run_serve(args: argparse.Namespace) -> int:
    """``ner serve``: load the run as ``ner tag`` does, then serve it until interrupted."""
    from pipeline.serve import serve

    return serve(args, lambda: load_tagger(args), native_logs_silenced)


def corpus_format(path: Path, requested: str) -> str:
    """The format to read ``path`` as: the one asked for, or by its name (a .csv or .zip is the Kaggle CSV)."""
    if requested != "auto":
        return requested
    return "kaggle_csv" if path.suffix.lower() in KAGGLE_SUFFIXES else "conll"


def check_one_corpus(path: Path, args: argparse.Namespace):
    """Read one corpus file with its format's reader; returns the reader's CorpusReport (raises CorpusError)."""
    from pipeline.corpus import read_conll_corpus, read_corpus

    if corpus_format(path, args.format) == "kaggle_csv":
        return read_corpus(path, args.encoding or DEFAULT_CORPUS_ENCODING)[1]
    return read_conll_corpus(path, args.encoding or DEFAULT_CONLL_ENCODING, args.tag_column, args.pos_column)[1]


def run_check_corpus(args: argparse.Namespace) -> int:
    """``ner check-corpus``: validate each corpus file and print its summary; status 2 when any file failed."""
    from pipeline.corpus import CorpusError

    status = 0
    for number, path in enumerate(Path(p) for p in args.paths):
        if number:
            print()
        try:
            print(check_one_corpus(path, args).summary())
        except CorpusError as exc:
            status = report_error(str(exc))
    return status


def report_error(message: str) -> int:
    """Print ``error: message`` to stderr; return the error exit status."""
    print(f"error: {message}", file=sys.stderr)
    return ERROR_STATUS


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``ner`` console script; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except BrokenPipeError:  # `ner tag ... | head`: the reader has gone, stop quietly
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return BROKEN_PIPE_STATUS
    except (TaggerError, InputError) as exc:
        return report_error(str(exc))
    except OSError as exc:  # missing or unreadable input file, a directory given as a file, ...
        where = f"{exc.filename}: " if exc.filename else ""
        return report_error(f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return INTERRUPTED_STATUS
    except Exception as exc:  # a bug or a library failure: still one line, the traceback only on request
        if os.environ.get(DEBUG_VARIABLE):
            raise
        return report_error(f"unexpected {type(exc).__name__}: {exc} (set {DEBUG_VARIABLE}=1 for the traceback)")


if __name__ == "__main__":
    sys.exit(main())
