"""``ner serve``: a trained run loaded once behind an HTTP API and a web page.

Why a server: every ``ner tag`` pays several seconds to load TensorFlow, the embedder and the model before it tags one
sentence. Here :func:`serve` loads the run once (the same checked :func:`pipeline.tagger.load` as ``ner tag``) and
answers, through FastAPI on uvicorn:

* ``POST /tag``: ``{"texts": [...]}`` or ``{"tokens": [[...], ...]}`` (plus ``"decode"``) -> one result per input, in
  order, each holding its sentences as the records of ``ner tag --format jsonl`` plus the sentence's ``offset`` in
  the input text;
* ``GET /health``: the run, its tags and embedder, the limits and the batching counters;
* ``GET /openapi.json``: the API description (FastAPI's own, from the request and response models below);
* ``GET /``: a self-contained page (``serve_page.html``, no external scripts, fonts or CDNs) that tags typed text and
  shows the entities highlighted by type with a legend, in the manner of displaCy.

**Batching across requests.** Requests do not call the model themselves: they queue a :class:`Job` with the
:class:`Batcher`, whose one worker thread takes every job waiting (up to ``max_batch_inputs`` inputs) and tags them in
one :meth:`Tagger.tag` call, which cuts them into length-bucketed model batches. The worker waits for company at most
``max_wait_s`` after the oldest waiting job arrived or the last model call ended, whichever is later, and only until it
holds as many requests as were outstanding when the last call ended: a lone client is not kept waiting, and a busy
server gathers both the requests that queued during the last call and the next requests of the clients it just
answered. The model runs in that thread, never on the event loop, so the server keeps accepting and answering
(``/health``, errors) while it tags.

**Bad requests** get a JSON body ``{"error": message, "status": code}``: 400 for a body that is not JSON, 413 for a
body over ``max_body_bytes`` (checked by :class:`BodyLimit` before anything is parsed) or more than ``max_texts``
inputs, 422 for wrong types, an empty list, text that is binary data, 503 when too many inputs are already queued.
A failure while tagging one job of a gathered batch fails that job alone: the batch is retried job by job.
"""
import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import socket
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Callable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

from pipeline.tagger import DECODE_METHODS, DEFAULT_DECODE, TaggedSentence, TaggerError

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
#: Large enough for a 50,000-token text (about 400 KB of JSON) with room to spare, small enough that one request
#: cannot make the server buffer an unbounded body.
DEFAULT_MAX_BODY_BYTES = 4 << 20
#: Inputs (texts or token lists) per request; a client with more sends several requests or uses ``ner tag --file``.
DEFAULT_MAX_TEXTS = 512
#: How long the batcher may wait for more requests after the oldest waiting one arrived (or the last model call
#: ended). Long enough for answered clients to send their next request on a busy 2-core machine (20 ms was not:
#: 32 clients then met in calls of 18.5 requests on average); the wait ends as soon as the expected requests are in,
#: so a lone client never pays it and steady clients pay only their own round trip.
DEFAULT_MAX_WAIT_MS = 50.0
#: Inputs tagged together in one gathered call at most (the tagger cuts them into length-bucketed model batches).
DEFAULT_MAX_BATCH_INPUTS = 256
#: Inputs waiting in the queue beyond which new requests get 503 instead of an ever longer wait.
DEFAULT_MAX_QUEUED_INPUTS = 8192
#: uvicorn's C HTTP parser and event loop (dependencies): against its pure-Python h11 and asyncio a lone client's
#: request took half the time (p50 108 -> 59 ms, bench/serve.py --quick). uvloop has no Windows build.
HTTP_PARSER = "httptools"
FAST_EVENT_LOOP, PLAIN_EVENT_LOOP = "uvloop", "asyncio"
#: Sent through the model once per decoding before the port opens, so the first request pays no tracing.
WARMUP_TEXT = "Mr. Smith flew to Paris on Monday."
PAGE_RESOURCE = "serve_page.html"
#: What real text does not contain and bytes of a binary file turn into once decoded or escaped into JSON: the ASCII
#: control characters other than whitespace (NUL above all) and lone surrogates. The C1 controls U+0080-U+009F are
#: let through: Windows-1252 text read as Latin-1 is full of them (the Kaggle corpus's quotes are U+0093/U+0094),
#: and `ner tag` tags such text. A regular expression, so a 50,000-token text is checked at C speed.
BINARY_CHARACTER = re.compile("[\x00-\x08\x0e-\x1f\x7f\ud800-\udfff]")
SURROGATES = range(0xD800, 0xE000)
#: A body over the limit is read and dropped up to this many times the limit before the 413 is sent.
DRAIN_FACTOR = 4
EXPECT_CONTINUE = b"100-continue"
TEXTS, TOKENS = "texts", "tokens"
JSON_MEDIA_TYPE = "application/json"
#: JSON exchanged over HTTP is UTF-8 (RFC 8259); a byte-order mark is tolerated.
JSON_ENCODING = "utf-8-sig"
STATUS_BAD_JSON, STATUS_TOO_LARGE, STATUS_INVALID, STATUS_BUSY, STATUS_INTERNAL = 400, 413, 422, 503, 500


# --------------------------------------------------------------------------------------------------------------------
# Settings and the API's models (they are also the OpenAPI description)
# --------------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServeSettings:
    """The server's limits and batching knobs (``ner serve`` options)."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_texts: int = DEFAULT_MAX_TEXTS
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS
    max_batch_inputs: int = DEFAULT_MAX_BATCH_INPUTS
    max_queued_inputs: int = DEFAULT_MAX_QUEUED_INPUTS

    def to_dict(self) -> dict[str, Any]:
        return {"max_body_bytes": self.max_body_bytes, "max_texts": self.max_texts, "max_wait_ms": self.max_wait_ms,
                "max_batch_inputs": self.max_batch_inputs, "max_queued_inputs": self.max_queued_inputs}


class TagRequest(BaseModel):
    """Raw texts or pre-tokenized sentences to tag (exactly one of the two), and the decoding."""

    model_config = ConfigDict(extra="forbid", strict=True)

    texts: list[str] | None = Field(
        None, description="raw texts; each is split into sentences and tokens as `ner tag TEXT` does")
    tokens: list[list[str]] | None = Field(
        None, description="pre-tokenized sentences, one list of token strings each (as `ner tag --pretokenized`)")
    decode: Literal[DECODE_METHODS] = Field(  # type: ignore[valid-type]
        DEFAULT_DECODE, description="bio_viterbi: best valid BIO sequence; argmax: best tag per token")


class EntityRecord(BaseModel):
    text: str
    type: str
    start: int = Field(description="character offset into the sentence's text")
    end: int = Field(description="exclusive character offset into the sentence's text")
    token_start: int
    token_end: int = Field(description="exclusive token index")
    confidence: float = Field(description="mean probability of the span's chosen tags")


class SentenceRecord(BaseModel):
    """The record of `ner tag --format jsonl`, plus where the sentence starts in its input text."""

    text: str
    tokens: list[str]
    tags: list[str]
    entities: list[EntityRecord]
    offset: int = Field(description="character offset of the sentence in its input text (0 for token input)")


class TextResult(BaseModel):
    sentences: list[SentenceRecord]


class TagResponse(BaseModel):
    results: list[TextResult] = Field(description="one result per input, in input order")
    decode: str


class ErrorResponse(BaseModel):
    error: str
    status: int


class HealthResponse(BaseModel):
    status: str
    model_loaded: bool
    run_dir: str
    tags: list[str]
    entity_types: list[str]
    embedder: dict[str, Any]
    decode_methods: list[str]
    limits: dict[str, Any]
    batching: dict[str, Any]


class RequestProblem(Exception):
    """A request the server refuses, with its HTTP status; answered as ``{"error": message, "status": status}``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


# --------------------------------------------------------------------------------------------------------------------
# Input checks
# --------------------------------------------------------------------------------------------------------------------


def binary_reason(text: str) -> str | None:
    """Why ``text`` looks like binary data rather than text (None when it looks like text).

    Why reject: bytes of a binary file decode to control characters and lone surrogates; tagging them would answer
    nonsense with no sign that anything was wrong (``ner tag`` rejects such input for the same reason).
    """
    found = BINARY_CHARACTER.search(text)
    if found is None:
        return None
    code = ord(found.group())
    kind = "lone surrogate" if code in SURROGATES else "control character"
    return f"contains the {kind} U+{code:04X} at offset {found.start()}"


def checked_inputs(request: TagRequest, settings: ServeSettings) -> tuple[str, list]:
    """(kind, inputs) of a request, or a RequestProblem saying what is wrong with it."""
    given = [kind for kind in (TEXTS, TOKENS) if getattr(request, kind) is not None]
    if len(given) != 1:
        raise RequestProblem(STATUS_INVALID, 'give exactly one of "texts" (raw texts) or "tokens" (lists of '
                                             f'tokens); got {" and ".join(given) or "neither"}')
    kind = given[0]
    inputs = getattr(request, kind)
    if not inputs:
        raise RequestProblem(STATUS_INVALID, f'"{kind}" is empty: give at least one input')
    if len(inputs) > settings.max_texts:
        raise RequestProblem(STATUS_TOO_LARGE, f'{len(inputs)} {kind} in one request, at most {settings.max_texts} '
                                               f'(--max-texts): split the request')
    for index, item in enumerate(inputs):
        pieces = [item] if kind == TEXTS else item
        if kind == TOKENS and not item:
            raise RequestProblem(STATUS_INVALID, f"tokens[{index}] is an empty sentence")
        for piece_index, piece in enumerate(pieces):
            where = f"texts[{index}]" if kind == TEXTS else f"tokens[{index}][{piece_index}]"
            reason = binary_reason(piece)
            if reason:
                raise RequestProblem(STATUS_INVALID, f"{where} {reason}: this looks like binary data, not text")
            if kind == TOKENS and not piece.strip():
                raise RequestProblem(STATUS_INVALID, f"{where} is an empty or whitespace-only token")
    return kind, inputs


def error_location(location: Sequence[Any]) -> str:
    """A pydantic error location as the client wrote it: ``("texts", 2)`` -> ``texts[2]``."""
    text = ""
    for part in location:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "the request body"


def parsed_request(body: bytes) -> TagRequest:
    """The request body as a TagRequest; a RequestProblem (400 not JSON, 422 wrong shape) says what is wrong."""
    from pydantic import ValidationError

    try:
        text = body.decode(JSON_ENCODING)
    except UnicodeDecodeError as exc:
        raise RequestProblem(STATUS_BAD_JSON, f"the request body is not JSON text: bytes that are not UTF-8 at offset "
                                              f"{exc.start} ({exc.reason}); this looks like binary data") from None
    try:
        document = json.loads(text)
    except ValueError as exc:
        raise RequestProblem(STATUS_BAD_JSON, f"the request body is not valid JSON: {exc}") from None
    try:
        return TagRequest.model_validate(document)
    except ValidationError as exc:
        raise RequestProblem(STATUS_INVALID, validation_message(exc.errors())) from None


def validation_message(errors: Sequence[dict]) -> str:
    """One readable message for pydantic's errors, each naming where in the body it is."""
    return "invalid request: " + "; ".join(f"{error_location(e.get('loc', ()))}: {e.get('msg')}" for e in errors)


# --------------------------------------------------------------------------------------------------------------------
# Batching across requests
# --------------------------------------------------------------------------------------------------------------------

#: (kind, decode, inputs) -> one list of sentence records per input; runs in the worker thread.
TagFunction = Callable[[str, str, list], list[list[dict]]]


@dataclass
class Job:
    """One request's inputs waiting for the model."""

    kind: str
    decode: str
    inputs: list
    future: asyncio.Future
    arrived: float = field(default_factory=time.monotonic)


@dataclass
class BatchStats:
    """What the batcher did, for ``/health`` and the tests: gathered calls versus the requests they served."""

    requests: int = 0
    inputs: int = 0
    calls: int = 0
    largest_call_requests: int = 0
    failed_requests: int = 0
    #: Wall seconds the worker spent tagging: next to the elapsed time it says whether the model or the HTTP side
    #: limits the throughput.
    model_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"requests": self.requests, "inputs": self.inputs, "calls": self.calls,
                "largest_call_requests": self.largest_call_requests, "failed_requests": self.failed_requests,
                "model_seconds": round(self.model_seconds, 3)}


class Batcher:
    """Gathers concurrent jobs into shared tagging calls run in one worker thread.

    ``tag`` does the tagging of one group of inputs of one kind and decoding; the batcher owns the waiting, grouping,
    the thread and the isolation of failures, so it is tested with any function (tests/test_serve.py).
    """

    def __init__(self, tag: TagFunction, max_wait_s: float, max_batch_inputs: int, max_queued_inputs: int):
        self.tag = tag
        self.max_wait_s = max_wait_s
        self.max_batch_inputs = max_batch_inputs
        self.max_queued_inputs = max_queued_inputs
        self.stats = BatchStats()
        self._queue: asyncio.Queue[Job] = asyncio.Queue()
        self._queued_inputs = 0
        self._last_call_end = 0.0
        # Requests outstanding when the last call ended (its own and those queued meanwhile): how many the next
        # gathering waits for.
        self._expected_requests = 1
        # One thread: TensorFlow already spreads one model call over every core, and a single caller keeps
        # the model's calls in order.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ner-model")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        """Start the gathering loop on the running event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ner-batcher")

    async def stop(self) -> None:
        """Stop gathering, fail the jobs still queued, and let the worker finish its call."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        while not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(RequestProblem(STATUS_BUSY, "the server is shutting down"))
        self._executor.shutdown(wait=True)

    async def submit(self, kind: str, decode: str, inputs: list) -> list[list[dict]]:
        """Queue the inputs and wait for their sentence records (one list per input)."""
        if self._queued_inputs + len(inputs) > self.max_queued_inputs:
            raise RequestProblem(STATUS_BUSY, f"the server is busy ({self._queued_inputs} inputs queued, at most "
                                              f"{self.max_queued_inputs}); retry shortly")
        job = Job(kind, decode, inputs, asyncio.get_running_loop().create_future())
        self._queued_inputs += len(inputs)
        self._queue.put_nowait(job)
        return await job.future

    async def _run(self) -> None:
        while True:
            jobs = await self._gather()
            self._queued_inputs -= sum(len(job.inputs) for job in jobs)
            jobs = [job for job in jobs if not job.future.done()]  # a client that went away needs no tagging
            if not jobs:
                continue
            self.stats.calls += 1
            self.stats.requests += len(jobs)
            self.stats.inputs += sum(len(job.inputs) for job in jobs)
            self.stats.largest_call_requests = max(self.stats.largest_call_requests, len(jobs))
            began = time.perf_counter()
            outcomes = await asyncio.get_running_loop().run_in_executor(self._executor, self._tag_jobs, jobs)
            self.stats.model_seconds += time.perf_counter() - began
            self._last_call_end = time.monotonic()
            self._expected_requests = len(jobs) + self._queue.qsize()
            for job, outcome in zip(jobs, outcomes):
                if job.future.done():
                    continue
                if isinstance(outcome, BaseException):
                    self.stats.failed_requests += 1
                    job.future.set_exception(outcome)
                else:
                    job.future.set_result(outcome)

    async def _gather(self) -> list[Job]:
        """The oldest waiting job plus every job that arrives, until the gathering holds as many requests as were
        outstanding when the last call ended, or ``max_batch_inputs`` inputs, or ``max_wait_s`` has passed since
        the oldest job arrived or the last call ended (whichever is later).

        Why wait for the last call's count: the clients that call just answered send their next requests a few
        milliseconds later; taking only what queued during the call splits steady clients into two halves that take
        turns, each call half as large as it could be (measured: 15.5 requests a call with 32 clients). Why stop
        at that count: a lone client (one outstanding request) is then never kept waiting.
        """
        first = await self._queue.get()
        jobs, size = [first], len(first.inputs)
        deadline = max(first.arrived, self._last_call_end) + self.max_wait_s
        while size < self.max_batch_inputs:
            if self._queue.empty():
                remaining = deadline - time.monotonic()
                if len(jobs) >= self._expected_requests or remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self._queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            else:
                job = self._queue.get_nowait()
            jobs.append(job)
            size += len(job.inputs)
        return jobs

    def _tag_jobs(self, jobs: list[Job]) -> list[list[list[dict]] | BaseException]:
        """Worker thread: tag each (kind, decode) group in one call; a failed group is retried job by job, so only
        the job that fails gets the error."""
        outcomes: dict[int, list[list[dict]] | BaseException] = {}
        groups: dict[tuple[str, str], list[int]] = {}
        for index, job in enumerate(jobs):
            groups.setdefault((job.kind, job.decode), []).append(index)
        for (kind, decode), members in groups.items():
            inputs = [item for index in members for item in jobs[index].inputs]
            try:
                records = self.tag(kind, decode, inputs)
            except Exception:  # noqa: BLE001 - isolate below; the single-job retry reports the real error
                if len(members) == 1:
                    outcomes[members[0]] = self._single(jobs[members[0]])
                    continue
                for index in members:
                    outcomes[index] = self._single(jobs[index])
                continue
            start = 0
            for index in members:
                count = len(jobs[index].inputs)
                outcomes[index] = records[start : start + count]
                start += count
        return [outcomes[index] for index in range(len(jobs))]

    def _single(self, job: Job) -> list[list[dict]] | BaseException:
        try:
            return self.tag(job.kind, job.decode, job.inputs)
        except Exception as exc:  # noqa: BLE001 - handed to that request's handler
            log.exception("tagging a request failed")
            return exc


def sentence_records(sentences: Sequence[TaggedSentence], count: int) -> list[list[dict]]:
    """The jsonl records (plus ``offset``) of tagged sentences, grouped by their input index into ``count`` lists."""
    grouped: list[list[dict]] = [[] for _ in range(count)]
    for sentence in sentences:
        grouped[sentence.text_index].append(sentence.to_dict() | {"offset": sentence.offset})
    return grouped


def tagger_function(tagger: Any) -> TagFunction:
    """The batcher's tagging function for a loaded Tagger: one tagger per decoding, built once (no reloads)."""
    by_decode = {decode: tagger.with_options(decode=decode) for decode in DECODE_METHODS}

    def tag(kind: str, decode: str, inputs: list) -> list[list[dict]]:
        chosen = by_decode[decode]
        sentences = chosen.tag(inputs) if kind == TEXTS else chosen.tag_tokens(inputs)
        return sentence_records(sentences, len(inputs))

    return tag


# --------------------------------------------------------------------------------------------------------------------
# ASGI: the body limit and the application
# --------------------------------------------------------------------------------------------------------------------


class BodyLimit:
    """ASGI middleware: read a request's body up to ``max_bytes`` and answer 413 beyond it, before the framework
    parses anything; the body read so far is handed on unchanged.

    Why here and not in the handler: a declared Content-Length over the limit is refused without reading a byte, and
    a chunked body stops being read at the limit, so no client can make the server buffer more than that.
    """

    def __init__(self, app: Callable, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_bytes:
            # A client that asked to hear first (Expect: 100-continue, as curl does) or whose body is absurdly large
            # is answered at once; any other has its body drained first, since most clients (Python's http.client,
            # requests) send the whole body before they read an answer and would see only a broken connection.
            waits = headers.get(b"expect", b"").lower() == EXPECT_CONTINUE
            if not waits and int(declared) <= DRAIN_FACTOR * self.max_bytes:
                await self._drain(receive, {"more_body": True})
            await self._refuse(send, int(declared), streamed=False)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await self._drain(receive, message)
                await self._refuse(send, self.max_bytes, streamed=True)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would report it

        await self.app(scope, replay, send)

    async def _drain(self, receive: Callable, message: dict) -> None:
        """Read and drop the rest of a body, at most DRAIN_FACTOR times the limit.

        Why: a client that is still sending when the connection closes gets a reset and may never read the 413
        that explains it; past the bound the client is simply cut off.
        """
        drained = 0
        while message.get("more_body", False) and drained <= DRAIN_FACTOR * self.max_bytes:
            message = await receive()
            if message["type"] != "http.request":
                return
            drained += len(message.get("body", b""))

    async def _refuse(self, send: Callable, size: int, streamed: bool) -> None:
        measured = "exceeds" if streamed else f"is {size} bytes, over"
        message = (f"the request body {measured} the limit of {self.max_bytes} bytes (--max-body-bytes): send "
                   f"fewer or shorter texts per request")
        payload = json.dumps({"error": message, "status": STATUS_TOO_LARGE}).encode()
        await send({"type": "http.response.start", "status": STATUS_TOO_LARGE,
                    "headers": [(b"content-type", JSON_MEDIA_TYPE.encode()),
                                (b"content-length", str(len(payload)).encode()), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": payload})


def page_html() -> str:
    """The web page, read from the package (so an installed wheel serves it too)."""
    return resources.files("pipeline").joinpath(PAGE_RESOURCE).read_text(encoding="utf-8")


def error_response(status: int, message: str) -> Any:
    from fastapi.responses import JSONResponse

    return JSONResponse({"error": message, "status": status}, status_code=status)


def create_app(tag: TagFunction, health: dict[str, Any], settings: ServeSettings) -> Any:
    """The ASGI application: FastAPI routes wrapped in :class:`BodyLimit`.

    ``tag`` tags a group of inputs (:func:`tagger_function` of the loaded run); ``health`` is the static part of
    ``GET /health`` (run, tags, embedder).
    """
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse
    from starlette.exceptions import HTTPException

    batcher = Batcher(tag, settings.max_wait_ms / 1000, settings.max_batch_inputs, settings.max_queued_inputs)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    # Swagger UI and ReDoc pages load their scripts from a CDN, which an offline server cannot reach: only the
    # OpenAPI description itself is served.
    app = FastAPI(title="ner serve", version=health.get("version", ""), lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url="/openapi.json",
                  description="Named-entity tagging with a trained run of the pipeline, loaded once. "
                              "Errors are JSON: {\"error\": message, \"status\": code}.")
    errors = {status: {"model": ErrorResponse} for status in
              (STATUS_BAD_JSON, STATUS_TOO_LARGE, STATUS_INVALID, STATUS_BUSY, STATUS_INTERNAL)}

    @app.exception_handler(RequestProblem)
    async def refused_request(_: Request, exc: RequestProblem) -> JSONResponse:
        return error_response(exc.status, exc.message)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    # The body is parsed here rather than by a declared model parameter, so that a body that is not JSON gets a 400
    # that says so whatever its Content-Type (FastAPI would read a body without the JSON type as form data and
    # answer a puzzling 422); the model still describes the body in the OpenAPI document.
    request_body = {"required": True, "content": {JSON_MEDIA_TYPE: {"schema": TagRequest.model_json_schema()}}}

    @app.post("/tag", response_model=None, responses={200: {"model": TagResponse}, **errors},
              openapi_extra={"requestBody": request_body}, summary="Tag texts or pre-tokenized sentences")
    async def tag_texts(http_request: Request) -> JSONResponse:
        """One result per input, in order: its sentences as `ner tag --format jsonl` records (plus `offset`)."""
        request = parsed_request(await http_request.body())
        kind, inputs = checked_inputs(request, settings)
        try:
            results = await batcher.submit(kind, request.decode, inputs)
        except RequestProblem:
            raise
        except TaggerError as exc:
            raise RequestProblem(STATUS_INVALID, str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - this request fails, the server goes on
            raise RequestProblem(STATUS_INTERNAL, f"tagging failed: {type(exc).__name__}: {exc}") from None
        return JSONResponse({"results": [{"sentences": sentences} for sentences in results],
                             "decode": request.decode})

    @app.get("/health", response_model=HealthResponse, summary="The loaded run, limits and batching counters")
    async def health_check() -> dict:
        return health | {"status": "ok", "model_loaded": True, "limits": settings.to_dict(),
                         "batching": batcher.stats.to_dict()}

    page = page_html()

    @app.get("/", response_class=HTMLResponse, response_model=None, summary="The tagging page")
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    app.state.batcher = batcher
    return BodyLimit(app, settings.max_body_bytes)


# --------------------------------------------------------------------------------------------------------------------
# `ner serve`
# --------------------------------------------------------------------------------------------------------------------


def health_info(tagger: Any) -> dict[str, Any]:
    """The static part of ``GET /health``: what was loaded."""
    import pipeline

    embedder = {key: tagger.record.get(key) for key in ("embedder_handle", "embedder_kind", "width", "dtype")}
    return {"run_dir": str(tagger.run_dir), "tags": list(tagger.tags), "entity_types": tagger.entity_types,
            "embedder": embedder, "decode_methods": list(DECODE_METHODS), "version": pipeline.__version__}


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, made before the slow model load so that a taken port fails at once."""
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise OSError(f"cannot resolve --host {host!r}: {exc.strerror}") from None
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(info[4])
    except OSError as exc:
        sock.close()
        raise OSError(f"cannot listen on {host}:{port}: {exc.strerror}; pass another --port (0 picks a free "
                      f"one)") from None
    return sock


def serve(args: argparse.Namespace, load_tagger: Callable[[], Any],
          quiet_loading: Callable[[], contextlib.AbstractContextManager]) -> int:
    """``ner serve``: bind, load and warm up the run, then serve until interrupted.

    ``load_tagger`` is ``ner tag``'s loader (same checks, same options); ``quiet_loading`` hides TensorFlow's native
    start-up logging while the model loads, as ``ner tag`` does.
    """
    import uvicorn

    settings = ServeSettings(args.max_body_bytes, args.max_texts, args.max_wait_ms, args.max_batch_inputs,
                             args.max_queued_inputs)
    sock = listening_socket(args.host, args.port)
    try:
        with quiet_loading():
            tagger = load_tagger()
            tag = tagger_function(tagger)
            for decode in DECODE_METHODS:
                tag(TEXTS, decode, [WARMUP_TEXT])
    except BaseException:
        sock.close()  # a run that cannot be used frees its port before `ner` reports the error
        raise
    app = create_app(tag, health_info(tagger), settings)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"serving {tagger.run_dir} on http://{shown}:{port}/ (POST /tag, GET /health, GET /openapi.json); "
          f"Ctrl-C stops", flush=True)
    loop = FAST_EVENT_LOOP if importlib.util.find_spec(FAST_EVENT_LOOP) else PLAIN_EVENT_LOOP
    config = uvicorn.Config(app, log_level=args.log_level, access_log=args.access_log, timeout_graceful_shutdown=5,
                            http=HTTP_PARSER, loop=loop)
    server = uvicorn.Server(config)
    server.run(sockets=[sock])
    return 0
