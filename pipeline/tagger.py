"""Tag new text with a trained run: raw text (or tokens) in, entity spans with character offsets out.

A run directory written by :mod:`pipeline.train` holds everything needed: ``model.keras``, ``tags.json`` and
``embedder.json`` (which embedder produced the training features). Tagging must feed the model features from that
*same* embedder, so :func:`load` loads it from the recorded handle and checks its width before anything is tagged; a
run that cannot be used fails at once with a :class:`TaggerError` that says what to rerun.

Text is cut exactly as the training corpus was (:mod:`pipeline.tokenize`), sentences are embedded and tagged in
length-bucketed batches (never truncated), and tags are decoded to valid BIO (``bio_viterbi``) by default, so every
``I-X`` continues an entity. Entities keep character offsets into their sentence's text, so
``sentence.text[entity.start:entity.end] == entity.text`` always holds; :meth:`Tagger.tag` also records where each
sentence sits in its input text. Input is processed in chunks of sentences, so :meth:`Tagger.tag_stream` tags a file
of any size in bounded memory.
"""
from __future__ import annotations

import itertools
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from pipeline.batching import length_buckets, padded_length
from pipeline.config import PROJECT_ROOT
from pipeline.words import TokenFeatures
from pipeline.tokenize import Token, iter_sentences, paragraph_sentences, read_pretokenized, split_sentences

log = logging.getLogger(__name__)

DEFAULT_RUN_DIR = "results/ner"
DEFAULT_BATCH_SIZE = 64
DEFAULT_DECODE = "bio_viterbi"
DECODE_METHODS = ("bio_viterbi", "argmax")
#: Sentences read, tagged and handed back at a time by the streaming API: bounds memory whatever the input size,
#: while still giving the length bucketing enough sentences to batch well.
DEFAULT_CHUNK_SENTENCES = 1024
#: Upper bound on padded tokens per model call. Bucketing keeps batches of ``batch_size`` sentences, but a batch of
#: very long sentences (a 10,000-token "sentence" from a text without punctuation) would need gigabytes of features;
#: such batches are cut smaller instead of truncating any sentence.
MAX_BATCH_TOKENS = DEFAULT_BATCH_SIZE * 256
#: Threads one TensorFlow op may use while tagging. A tagging call is hundreds of small ops (LSTM steps over a few
#: dozen rows); handing each op's pieces to other cores costs more than it saves, while ops that do not wait on each
#: other (the two directions of a biLSTM) still run side by side on the inter-op threads.
#: Measured on 2 cores (docs/serving.md): calls of 32 test sentences 107 against 91 sentences/s with TensorFlow's
#: default, one large batch 160 against 117.
INFERENCE_INTRA_OP_THREADS = 1
#: What the width check sends through the embedder once at load time.
PROBE_SENTENCE = ("probe",)
OUTSIDE_TAG = "O"
BEGIN_PREFIX, INSIDE_PREFIX = "B-", "I-"
URL_SCHEMES = ("http://", "https://", "gs://")

MODEL_FILE = "model.keras"
TAGS_FILE = "tags.json"
EMBEDDER_FILE = "embedder.json"
TRAIN_HINT = "run `snakemake --cores all` to train a model (or pass the run directory that holds one)"
EXPORT_HINT = (
    "rerun the export_bilm rule (`snakemake --cores all --forcerun export_bilm`) or, for a TF-Hub module, put it "
    "back at that path; if the embedder changed on purpose, retrain with `snakemake --cores all`"
)


class TaggerError(RuntimeError):
    """A run directory or embedder that cannot be used for tagging; the message says what to rerun."""


#: Decimal places of an entity's confidence in JSON output.
CONFIDENCE_DIGITS = 4


@dataclass(frozen=True)
class Entity:
    """One predicted entity span.

    ``start``/``end`` are character offsets into the sentence's text (``end`` exclusive), ``token_start``/
    ``token_end`` token indices (``token_end`` exclusive), and ``confidence`` the mean probability the model gave the
    chosen tags over the span: a cheap signal for ranking or filtering predictions.
    """

    text: str
    type: str
    start: int
    end: int
    token_start: int
    token_end: int
    confidence: float

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready fields; the confidence rounded to CONFIDENCE_DIGITS (float32 softmax outputs carry no
        more meaning than that, and 17-digit floats bury the output)."""
        return asdict(self) | {"confidence": round(self.confidence, CONFIDENCE_DIGITS)}


@dataclass(frozen=True)
class TaggedSentence:
    """One tagged sentence: its text, tokens (with offsets into ``text``), one tag per token and the entities.

    ``text_index`` and ``offset`` say where the sentence came from when that is known: for :meth:`Tagger.tag` the
    index of the input text and the character offset of the sentence in it (so
    ``texts[s.text_index][s.offset + e.start : s.offset + e.end] == e.text``); for :meth:`Tagger.tag_tokens` the
    index of the input sentence (offset 0); for streamed input both are None.
    """

    text: str
    tokens: list[Token]
    tags: list[str]
    entities: list[Entity] = field(default_factory=list)
    text_index: int | None = None
    offset: int | None = None

    @property
    def words(self) -> list[str]:
        """The token strings."""
        return [t.text for t in self.tokens]

    def to_dict(self) -> dict[str, Any]:
        """The ``--format jsonl`` record: text, tokens, tags and entities."""
        return {
            "text": self.text,
            "tokens": self.words,
            "tags": list(self.tags),
            "entities": [e.to_dict() for e in self.entities],
        }


@dataclass(frozen=True)
class _Pending:
    """A sentence waiting to be tagged, with where it came from."""

    text: str
    tokens: list[Token]
    text_index: int | None = None
    offset: int | None = None


# --------------------------------------------------------------------------------------------------------------------
# Pure helpers: spans, tokens from words, batches
# --------------------------------------------------------------------------------------------------------------------


def entity_spans(tags: Sequence[str]) -> list[tuple[str, int, int]]:
    """(type, token_start, token_end) of every entity in a BIO tag sequence.

    An ``I-X`` that does not continue an ``X`` entity starts a new one (seqeval's reading), so ``argmax`` decoding,
    which can produce such tags, never loses a predicted entity.
    """
    spans: list[tuple[str, int, int]] = []
    current: tuple[str, int] | None = None
    for index, tag in enumerate(list(tags) + [OUTSIDE_TAG]):
        kind = tag[len(BEGIN_PREFIX):] if tag != OUTSIDE_TAG else None
        continues = current is not None and tag.startswith(INSIDE_PREFIX) and kind == current[0]
        if current is not None and not continues:
            spans.append((current[0], current[1], index))
            current = None
        if kind is not None and not continues:
            current = (kind, index)
    return spans


def entities_from_tags(text: str, tokens: Sequence[Token], tags: Sequence[str],
                       tag_probabilities: Sequence[float]) -> list[Entity]:
    """Entities of one sentence; ``tag_probabilities[i]`` is the probability of the tag chosen for token ``i``."""
    entities = []
    chosen = np.asarray(tag_probabilities, dtype=float).tolist()  # plain floats: np.mean per entity cost more than tagging
    for kind, first, last in entity_spans(tags):
        start, end = tokens[first].start, tokens[last - 1].end
        confidence = sum(chosen[first:last]) / (last - first)
        entities.append(Entity(text[start:end], kind, start, end, first, last, confidence))
    return entities


def tokens_from_words(words: Sequence[str]) -> tuple[str, list[Token]]:
    """Sentence text (words joined by single spaces) and tokens with offsets into it, for pre-tokenized input."""
    if isinstance(words, str):
        raise TypeError(f"a pre-tokenized sentence is a list of token strings, not the string {words!r}")
    tokens, position = [], 0
    for word in words:
        if not word.strip():
            raise TaggerError(f"empty or whitespace-only token in pre-tokenized sentence {list(words)!r}")
        tokens.append(Token(word, position, position + len(word)))
        position += len(word) + 1
    return " ".join(words), tokens


def bounded_batches(lengths: Sequence[int], batch_size: int, max_tokens: int = MAX_BATCH_TOKENS) -> list[np.ndarray]:
    """Length-bucketed index batches of at most ``batch_size`` sentences and (where possible) ``max_tokens``
    padded tokens; a single sentence longer than ``max_tokens`` still gets a batch of its own, whole."""
    batches = []
    for bucket in length_buckets(lengths, batch_size):
        per_batch = max(1, max_tokens // padded_length(max(lengths[i] for i in bucket)))
        batches += [bucket[i : i + per_batch] for i in range(0, len(bucket), per_batch)]
    return batches


def chunked(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive lists of at most ``size`` items, pulled lazily from ``items``."""
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


# --------------------------------------------------------------------------------------------------------------------
# The tagger
# --------------------------------------------------------------------------------------------------------------------


class Tagger:
    """A trained model plus the embedder it was trained on; build one with :func:`load`.

    ``batch_size`` sentences go through the embedder and the model per call (length-bucketed); ``decode`` is
    ``bio_viterbi`` (the best valid BIO sequence) or ``argmax`` (per token).
    """

    def __init__(self, model: Any, embedder: Any, tags: Sequence[str], record: dict, run_dir: Path,
                 batch_size: int = DEFAULT_BATCH_SIZE, decode: str = DEFAULT_DECODE):
        check_options(batch_size, decode)
        self.model = model
        self.embedder = embedder
        self.tags = list(tags)
        self.tag_index = {t: i for i, t in enumerate(self.tags)}
        self.record = record
        self.run_dir = run_dir
        self.batch_size = batch_size
        self.decode = decode
        self.feature_dtype = np.dtype(record.get("dtype") or np.float32)
        # Word, character, casing and vector ids, as the model was trained with them.
        self.token_features = TokenFeatures.load(run_dir) if run_dir is not None else TokenFeatures()
        self.uses_layers = model_uses_layers(model)

    def with_options(self, batch_size: int | None = None, decode: str | None = None) -> "Tagger":
        """The same model and embedder with other options: changing them needs no reload."""
        return Tagger(self.model, self.embedder, self.tags, self.record, self.run_dir,
                      self.batch_size if batch_size is None else batch_size, decode or self.decode)

    @property
    def entity_types(self) -> list[str]:
        """Entity types the model knows, in tag-vocabulary order."""
        return list(dict.fromkeys(t[len(BEGIN_PREFIX):] for t in self.tags if t != OUTSIDE_TAG))

    def tag(self, texts: Iterable[str], paragraphs: bool = False) -> list[TaggedSentence]:
        """Split each raw text into sentences and tokens and tag them; sentences keep ``text_index`` and ``offset``.

        Empty or whitespace-only texts give no sentences. With ``paragraphs`` a blank line also ends a sentence, as
        in :meth:`tag_stream` (whole documents: a heading without a full stop stays a sentence of its own).
        """
        split = paragraph_sentences if paragraphs else split_sentences
        return list(self._tag_pending(_pending_from_texts(texts, split)))

    def tag_tokens(self, sentences: Iterable[Sequence[str]]) -> list[TaggedSentence]:
        """Tag pre-tokenized sentences (lists of token strings), one result per input sentence, in order.

        The sentence text is the tokens joined by single spaces; entity offsets refer to it.
        """
        pending = (_Pending(*tokens_from_words(words), text_index=i, offset=0) for i, words in enumerate(sentences))
        return list(self._tag_pending(pending))

    def tag_stream(self, lines: Iterable[str], pretokenized: bool = False,
                   chunk_sentences: int = DEFAULT_CHUNK_SENTENCES) -> Iterator[TaggedSentence]:
        """Tag lines of text (an open file, ``sys.stdin``) lazily, ``chunk_sentences`` sentences at a time.

        Raw text: a blank line ends a paragraph and sentences are split as in :meth:`tag`. Pre-tokenized: one token
        per line (first column), a blank line between sentences. Only one chunk is in memory at a time.
        """
        if chunk_sentences < 1:
            raise TaggerError(f"chunk_sentences must be at least 1, got {chunk_sentences}")
        if pretokenized:
            pending = (_Pending(*tokens_from_words(words)) for words in read_pretokenized(lines))
        else:
            pending = (_Pending(text, tokens) for text, tokens in iter_sentences(lines))
        return self._tag_pending(pending, chunk_sentences)

    def probabilities(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Per-sentence [length, tags] probabilities, in input order, for non-empty token lists."""
        lengths = [len(s) for s in sentences]
        result: list[np.ndarray | None] = [None] * len(sentences)
        for batch in bounded_batches(lengths, self.batch_size):
            batch_lengths = np.asarray([lengths[i] for i in batch], dtype=np.int32)
            members = [sentences[i] for i in batch]
            length = padded_length(int(batch_lengths.max()))
            inputs = {"lengths": batch_lengths}
            if self.uses_layers:
                inputs["layers"] = self.features(members)
                length = inputs["layers"].shape[1]
            inputs |= self.token_features.inputs(members, length)
            predicted = np.asarray(self.model.predict_on_batch(inputs))
            for row, index in enumerate(batch):
                result[index] = predicted[row, : lengths[index]]
        return result

    def features(self, sentences: Sequence[Sequence[str]]) -> np.ndarray:
        """[batch, padded_time, 3, width] float32 embedder layers, rounded through the cache's storage dtype.

        Why the rounding: the model was trained on features stored as ``embedder.json``'s dtype (float16 by
        default); rounding the same way makes tagging see what training saw.
        """
        from pipeline.embed import embed_batch

        layers = embed_batch(self.embedder, [list(s) for s in sentences])
        return layers.astype(self.feature_dtype).astype(np.float32)

    def _tag_pending(self, pending: Iterable[_Pending],
                     chunk_sentences: int = DEFAULT_CHUNK_SENTENCES) -> Iterator[TaggedSentence]:
        for chunk in chunked(pending, chunk_sentences):
            yield from self._tag_chunk(chunk)

    def _tag_chunk(self, chunk: list[_Pending]) -> list[TaggedSentence]:
        from pipeline.decode import decode_all

        filled = [p for p in chunk if p.tokens]
        probabilities = self.probabilities([[t.text for t in p.tokens] for p in filled])
        decoded = decode_all(probabilities, self.tags, self.decode)
        results = iter([self._tagged(p, tags, _chosen_probabilities(probs, self.tag_index, tags))
                        for p, probs, tags in zip(filled, probabilities, decoded)])
        return [next(results) if p.tokens else self._tagged(p, [], []) for p in chunk]

    @staticmethod
    def _tagged(pending: _Pending, tags: list[str], tag_probabilities: Sequence[float]) -> TaggedSentence:
        entities = entities_from_tags(pending.text, pending.tokens, tags, tag_probabilities)
        return TaggedSentence(pending.text, pending.tokens, tags, entities, pending.text_index, pending.offset)


def _chosen_probabilities(probabilities: np.ndarray, tag_index: dict[str, int], chosen: list[str]) -> np.ndarray:
    """Probability of the chosen tag at each token."""
    return probabilities[np.arange(len(chosen)), [tag_index[t] for t in chosen]]


def _pending_from_texts(texts: Iterable[str],
                        split: Callable[[str], list[list[Token]]] = split_sentences) -> Iterator[_Pending]:
    """Sentences of each raw text (cut by ``split``) with their own text, tokens rebased to it, and where they sit
    in the input."""
    if isinstance(texts, str):
        raise TypeError("Tagger.tag takes an iterable of texts; wrap a single text in a list")
    for text_index, text in enumerate(texts):
        for sentence in split(text):
            offset = sentence[0].start
            tokens = [Token(t.text, t.start - offset, t.end - offset) for t in sentence]
            yield _Pending(text[offset : sentence[-1].end], tokens, text_index, offset)


def model_uses_layers(model: Any) -> bool:
    """Whether the model takes ELMo layers (imported here so that importing this module does not load Keras).

    Anything with only ``predict_on_batch`` (no Keras layer list) is taken to follow the original contract, layers in.
    """
    if not hasattr(model, "layers"):
        return True
    from pipeline.model import uses_layers

    return uses_layers(model)


def check_options(batch_size: int, decode: str) -> None:
    """Reject options that would otherwise fail deep inside a batch."""
    if batch_size < 1:
        raise TaggerError(f"batch size must be at least 1, got {batch_size}")
    if decode not in DECODE_METHODS:
        raise TaggerError(f"unknown decode method {decode!r} (choose from {', '.join(DECODE_METHODS)})")


# --------------------------------------------------------------------------------------------------------------------
# Loading a run directory
# --------------------------------------------------------------------------------------------------------------------


def use_inference_threads(inter_op_threads: int | None = None) -> bool:
    """Set TensorFlow's threads for tagging: one thread per op, ``inter_op_threads`` ops at a time (default: one per
    core). Call it before TensorFlow runs anything in the process (``ner tag`` and ``ner serve`` do, before loading).

    Returns False, changing nothing, when TensorFlow has already started in this process (its thread pools are fixed
    by then), e.g. a notebook that trained first: tagging works the same, only slower on small batches.
    """
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(INFERENCE_INTRA_OP_THREADS)
        tf.config.threading.set_inter_op_parallelism_threads(inter_op_threads or os.cpu_count() or 1)
    except RuntimeError:
        log.debug("TensorFlow already started in this process: its thread settings stay as they are")
        return False
    return True


def load(run_dir: str | Path = DEFAULT_RUN_DIR, batch_size: int = DEFAULT_BATCH_SIZE,
         decode: str = DEFAULT_DECODE) -> Tagger:
    """Load the trained model of ``run_dir`` and the embedder recorded in its ``embedder.json``, checked to match."""
    check_options(batch_size, decode)
    run_dir = resolve_run_dir(run_dir)
    tags = read_run_json(run_dir, TAGS_FILE)
    record = read_run_json(run_dir, EMBEDDER_FILE)
    handle = recorded_handle(record, run_dir)  # before the slow loads, so a missing embedder fails at once
    model = load_model(run_dir)
    check_model(model, tags, record, run_dir)
    embedder = load_checked_embedder(handle, record, run_dir)
    return Tagger(model, embedder, tags, record, run_dir, batch_size, decode)


def resolve_run_dir(run_dir: str | Path) -> Path:
    """``run_dir`` as given if it exists, else a relative one under the project root (like the embedder handle), so
    the default ``results/ner`` works from any directory; a TaggerError when neither exists."""
    path = Path(run_dir)
    for candidate in (path, PROJECT_ROOT / path):
        if candidate.is_dir():
            return candidate
    searched = ", ".join(dict.fromkeys(str(p) for p in (path.absolute(), PROJECT_ROOT / path)))
    raise TaggerError(f"{run_dir}: no such run directory (looked in {searched}); {TRAIN_HINT}")


def read_run_json(run_dir: Path, name: str) -> Any:
    """One JSON file of the run directory, or a TaggerError saying how to produce it."""
    path = run_dir / name
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TaggerError(f"{path} is missing, so {run_dir} is not a complete trained run; {TRAIN_HINT}") from None
    except (OSError, ValueError) as exc:
        raise TaggerError(f"{path}: unreadable ({exc}); {TRAIN_HINT}") from None


def load_model(run_dir: Path) -> Any:
    """The trained Keras model (importing :mod:`pipeline.model` registers its custom layers first)."""
    import keras

    import pipeline.model  # noqa: F401 - registers ScalarMix and LengthMask for deserialisation

    path = run_dir / MODEL_FILE
    if not path.is_file():
        raise TaggerError(f"{path} is missing, so {run_dir} is not a complete trained run; {TRAIN_HINT}")
    try:
        return keras.models.load_model(path)
    except Exception as exc:  # Keras raises many types for a damaged or foreign file
        raise TaggerError(f"{path}: cannot load the model ({exc}); {TRAIN_HINT}") from None


def check_model(model: Any, tags: Sequence[str], record: dict, run_dir: Path) -> None:
    """The model's input width and tag count must match embedder.json and tags.json."""
    outputs = model.outputs[0].shape[-1]
    if outputs != len(tags):
        raise TaggerError(f"{run_dir}: the model predicts {outputs} tags but {TAGS_FILE} lists {len(tags)}; the run "
                          f"directory mixes files of different runs: {TRAIN_HINT}")
    widths = {t.shape[-1] for t in model.inputs if len(t.shape) == 4}
    if model_uses_layers(model) and widths != {record.get("width")}:
        raise TaggerError(f"{run_dir}: the model takes features of width {sorted(widths)} but {EMBEDDER_FILE} records "
                          f"width {record.get('width')}; {TRAIN_HINT}")


def resolve_handle(handle: str) -> str:
    """A local handle as given if it exists, else relative to the current directory, else to the project root.

    Why: runs record the handle the embed stage used (``cache/bilm/hub``, relative to the project), but tagging may
    start from anywhere. URLs are returned unchanged.
    """
    if handle.startswith(URL_SCHEMES):
        return handle
    path = Path(handle)
    for candidate in (path, PROJECT_ROOT / path):  # a relative path is tried against the current dir first
        if candidate.is_dir():
            return str(candidate)
    searched = ", ".join(dict.fromkeys(str(p) for p in (path.absolute(), PROJECT_ROOT / path)))
    raise TaggerError(f"the embedder {handle!r} recorded in {EMBEDDER_FILE} was not found (looked in {searched}); "
                      f"{EXPORT_HINT}")


def recorded_handle(record: dict, run_dir: Path) -> str:
    """The embedder handle of ``embedder.json``, resolved to where it is now."""
    handle = record.get("embedder_handle")
    if not handle:
        raise TaggerError(f"{run_dir / EMBEDDER_FILE} records no embedder_handle; {TRAIN_HINT}")
    return resolve_handle(str(handle))


def load_checked_embedder(handle: str, record: dict, run_dir: Path) -> Any:
    """The embedder at ``handle``, loaded and probed: its width must be the one the model was trained on."""
    from pipeline.embed import EmbedderError, embed_batch, load_embedder

    try:
        embedder = load_embedder(handle)
        width = embed_batch(embedder, [list(PROBE_SENTENCE)]).shape[-1]
    except EmbedderError as exc:
        raise TaggerError(str(exc)) from None
    if width != record.get("width"):
        raise TaggerError(f"the embedder at {handle!r} produces features of width {width}, but the model in {run_dir} "
                          f"was trained on width {record.get('width')} ({EMBEDDER_FILE}); {EXPORT_HINT}")
    return embedder
