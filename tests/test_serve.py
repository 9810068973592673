"""`ner serve`: the real server in a subprocess on a free port, spoken to over HTTP, and its page driven in a real
headless Chromium.

One server per module (a tiny run trained on the session's tiny corpus, small limits so that the limit checks are
cheap); the batcher's gathering and failure isolation are also checked in-process with plain functions, where a
failure can be provoked on purpose. The browser test installs Debian's chromium with apt-get when it is missing, as
tests/test_slurm_cluster.py installs Slurm: it skips where that cannot work outside CI and fails in CI.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import os
import re
import select
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import pytest

PROJECT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT))  # for bench/, as tests/test_bench.py does

from bench import serve as bench_serve  # noqa: E402
from pipeline.cli import main  # noqa: E402
from pipeline.serve import Batcher, RequestProblem, binary_reason, error_location  # noqa: E402

from conftest import TINY_TRAIN, wait_for_background_apt, skip_unless as shared_skip_unless  # noqa: E402

# Limits of the test server: small enough that refusing costs little, large enough for the 50,000-token text.
MAX_BODY_BYTES = 600_000
MAX_TEXTS = 8
# A generous gathering wait, so that concurrent test requests meet even on a loaded machine.
MAX_WAIT_MS = 50
START_TIMEOUT_S = 180
REQUEST_TIMEOUT_S = 300
LONG_TEXT_TOKENS = 50_000
CONCURRENT_CLIENTS = 12
#: Enough training for the tiny corpus's patterns (persons, places, organisations, days) to come out as entities.
ENTITY_TRAINING = {"learning_rate": 0.05, "max_epochs": 4, "patience": 4}
#: How fast /health must answer while the model is busy with a long text: it runs on the event loop, the model not.
BUSY_HEALTH_S = 5.0
SERVING_LINE = re.compile(r"serving .* on (http://\S+?)/ ")
TEXTS = [
    "Mr. Smith said the talks were held in London on Monday. Reuters reported that officials met Mr. Obama "
    "in Paris on Friday.",
    "NATO officials met Mr. Putin in Belgrade on Tuesday.",
    "Hamas said the talks in Gaza were held with Mr. Annan in 2008.",
    "Reuters quoted Mr. Obama : \x93 the talks in Iraq were held on Friday . \x94",  # corpus quotes (cp1252 as Latin-1)
]
# Browser: where apt puts Debian's chromium, and bounds on its install and on the page's work.
CHROMIUM = "chromium"
INSTALL_TIMEOUT_S = 600
PAGE_TIMEOUT_S = 60
TYPED_SENTENCE = "Officials met Mr. Merkel in Kenya on Friday. Congress said talks with Mr. Chavez were held in Iraq."


# --- the server ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, cached_shards, prepared_corpus) -> Path:
    """The tiny run, trained a few epochs more than test_tagger's (whose model tags everything O), so that the
    answers compared here and the page's highlights have entities in them."""
    from pipeline.train import train

    _, meta = prepared_corpus
    run = tmp_path_factory.mktemp("serve-run")
    train(cached_shards["train"], cached_shards["val"], meta["tags"], TINY_TRAIN | ENTITY_TRAINING, "ner", run)
    return run


@pytest.fixture(scope="module")
def server(run_dir, tmp_path_factory) -> Iterator[str]:
    """Base URL of `ner serve` on a port the OS picked (--port 0), stopped after the module."""
    log_path = tmp_path_factory.mktemp("serve") / "serve.log"
    command = [sys.executable, "-m", "pipeline.cli", "serve", "--run", str(run_dir), "--port", "0",
               "--max-body-bytes", str(MAX_BODY_BYTES), "--max-texts", str(MAX_TEXTS),
               "--max-wait-ms", str(MAX_WAIT_MS), "--no-access-log"]
    with open(log_path, "w") as log:  # a file, not a pipe: a full pipe would block the server
        process = subprocess.Popen(command, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT)
    try:
        base = wait_until_serving(process, log_path)
        yield base
    finally:
        bench_serve.stop_server(process)
    assert process.returncode in (0, -15), log_path.read_text()[-3000:]


def wait_until_serving(process: subprocess.Popen, log_path: Path) -> str:
    """The URL the server printed, once /health answers there."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        assert process.poll() is None, f"ner serve exited early:\n{log_path.read_text()[-3000:]}"
        match = SERVING_LINE.search(log_path.read_text())
        if match:
            try:
                if request(match.group(1), "GET", "/health")[0] == 200:
                    return match.group(1)
            except OSError:  # printed before uvicorn listens: not yet
                pass
        time.sleep(0.2)
    raise AssertionError(f"ner serve did not answer within {START_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")


def request(base: str, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """(status, decoded JSON or text) of one HTTP request on a fresh connection."""
    address = urlsplit(base)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=REQUEST_TIMEOUT_S)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        payload = response.read()
        kind = response.getheader("content-type", "")
        return response.status, json.loads(payload) if kind.startswith("application/json") else payload.decode()
    finally:
        connection.close()


def post_tag(base: str, document: Any) -> tuple[int, Any]:
    return request(base, "POST", "/tag", json.dumps(document).encode(), {"content-type": "application/json"})


def ner_tag_jsonl(capsys, run_dir: Path, *args: str) -> list[dict]:
    """`ner tag --format jsonl` records for the same input: the command's own entry point, in this process (a
    subprocess would pay TensorFlow's start-up again)."""
    capsys.readouterr()
    assert main(["tag", "--run", str(run_dir), "--format", "jsonl", *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def without_offsets(results: list[dict]) -> list[dict]:
    """The sentence records of every result in order, less the ``offset`` that `ner tag` does not print."""
    return [{k: v for k, v in sentence.items() if k != "offset"}
            for result in results for sentence in result["sentences"]]


# --- results ---------------------------------------------------------------------------------------------------------


def test_tagged_texts_equal_ner_tag_jsonl_and_offsets_index_the_input(server, run_dir, capsys):
    status, body = post_tag(server, {"texts": TEXTS})
    assert status == 200, body
    assert len(body["results"]) == len(TEXTS) and body["decode"] == "bio_viterbi"
    assert without_offsets(body["results"]) == ner_tag_jsonl(capsys, run_dir, *TEXTS)
    assert sum(len(s["entities"]) for result in body["results"] for s in result["sentences"]) >= len(TEXTS)
    assert len(body["results"][0]["sentences"]) == 2  # two sentences of the first text, in order
    for text, result in zip(TEXTS, body["results"]):
        for sentence in result["sentences"]:
            assert text[sentence["offset"]:].startswith(sentence["text"])
            for entity in sentence["entities"]:
                assert sentence["text"][entity["start"]:entity["end"]] == entity["text"]


def test_pretokenized_sentences_with_argmax_equal_ner_tag_pretokenized(server, run_dir, capsys):
    sentences = [text.split() for text in TEXTS]
    status, body = post_tag(server, {"tokens": sentences, "decode": "argmax"})
    assert status == 200, body
    assert [len(result["sentences"]) for result in body["results"]] == [1] * len(TEXTS)
    expected = ner_tag_jsonl(capsys, run_dir, "--pretokenized", "--decode", "argmax", *TEXTS)
    assert without_offsets(body["results"]) == expected


def test_concurrent_requests_share_model_calls_and_get_their_own_results(server):
    singles = {text: post_tag(server, {"texts": [text]})[1]["results"] for text in TEXTS}
    before = request(server, "GET", "/health")[1]["batching"]
    answers: list[tuple[str, int, Any]] = []
    barrier = threading.Barrier(CONCURRENT_CLIENTS)

    def client(index: int) -> None:
        text = TEXTS[index % len(TEXTS)]
        barrier.wait()
        status, body = post_tag(server, {"texts": [text]})
        answers.append((text, status, body))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CONCURRENT_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(REQUEST_TIMEOUT_S)
    after = request(server, "GET", "/health")[1]["batching"]
    assert len(answers) == CONCURRENT_CLIENTS
    for text, status, body in answers:
        assert status == 200 and body["results"] == singles[text]
    assert after["requests"] - before["requests"] == CONCURRENT_CLIENTS
    assert after["calls"] - before["calls"] < CONCURRENT_CLIENTS  # some requests shared a model call
    assert after["largest_call_requests"] > 1


def test_a_long_text_without_punctuation_is_tagged_whole_while_the_server_keeps_answering(server):
    words = [f"w{i % 50}" if i % 7 else "Paris" for i in range(LONG_TEXT_TOKENS)]
    answer: list[tuple[int, Any]] = []
    long_request = threading.Thread(target=lambda: answer.append(post_tag(server, {"texts": [" ".join(words)]})))
    long_request.start()
    time.sleep(1.0)  # let the long text reach the model
    began = time.monotonic()
    assert request(server, "GET", "/health")[0] == 200
    assert time.monotonic() - began < BUSY_HEALTH_S and long_request.is_alive()
    long_request.join(REQUEST_TIMEOUT_S)
    [(status, body)] = answer
    assert status == 200, body
    [sentence] = body["results"][0]["sentences"]
    assert sentence["tokens"] == words and len(sentence["tags"]) == LONG_TEXT_TOKENS
    assert post_tag(server, {"texts": ["Mr. Smith left Paris."]})[0] == 200


# --- bad requests ----------------------------------------------------------------------------------------------------

JSON_HEADERS = {"content-type": "application/json"}
BAD_REQUESTS = {
    "invalid JSON": (b'{"texts": [', JSON_HEADERS, 400, "not valid JSON"),
    "binary body": (bytes(range(256)) * 4, JSON_HEADERS, 400, "not UTF-8 at offset 128"),
    "texts not a list": (b'{"texts": "Paris"}', JSON_HEADERS, 422, "texts: Input should be a valid list"),
    "numbers as texts": (b'{"texts": ["Paris", 7]}', JSON_HEADERS, 422, "texts[1]: Input should be a valid string"),
    "a list as the body": (b'["Paris"]', JSON_HEADERS, 422, "Input should be a valid dictionary"),
    "empty list": (b'{"texts": []}', JSON_HEADERS, 422, '"texts" is empty'),
    "neither texts nor tokens": (b'{"decode": "argmax"}', JSON_HEADERS, 422, "got neither"),
    "both texts and tokens": (b'{"texts": ["a"], "tokens": [["a"]]}', JSON_HEADERS, 422, "got texts and tokens"),
    "a misspelt field": (b'{"text": ["Paris"]}', JSON_HEADERS, 422, "text: Extra inputs are not permitted"),
    "unknown decoding": (b'{"texts": ["Paris"], "decode": "beam"}', JSON_HEADERS, 422, "'bio_viterbi' or 'argmax'"),
    "binary garbage text": (json.dumps({"texts": ["ok", "\x00\x01\x02\x7f\x89PNG"]}).encode(), JSON_HEADERS, 422,
                            "texts[1] contains the control character U+0000 at offset 0: this looks like binary"),
    "lone surrogate": (b'{"texts": ["caf\\udce9"]}', JSON_HEADERS, 422, "U+DCE9 at offset 3"),
    "whitespace token": (b'{"tokens": [["Paris", " "]]}', JSON_HEADERS, 422, "tokens[0][1] is an empty"),
    "empty sentence": (b'{"tokens": [["Paris"], []]}', JSON_HEADERS, 422, "tokens[1] is an empty sentence"),
    "too many texts": (json.dumps({"texts": ["Paris"] * (MAX_TEXTS + 1)}).encode(), JSON_HEADERS, 413,
                       f"{MAX_TEXTS + 1} texts in one request, at most {MAX_TEXTS} (--max-texts)"),
    "body over the limit": (json.dumps({"texts": ["word " * (MAX_BODY_BYTES // 5)]}).encode(), JSON_HEADERS, 413,
                            f"over the limit of {MAX_BODY_BYTES} bytes (--max-body-bytes)"),
}


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_a_bad_request_gets_its_status_and_message_and_the_server_goes_on(server, name):
    body, headers, status, message = BAD_REQUESTS[name]
    answer_status, answer = request(server, "POST", "/tag", body, headers)
    assert (answer_status, answer["status"]) == (status, status), answer
    assert message in answer["error"]
    assert post_tag(server, {"texts": ["Mr. Smith left Paris."]})[0] == 200


def test_a_streamed_body_over_the_limit_is_refused_with_413(server):
    address = urlsplit(server)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=REQUEST_TIMEOUT_S)
    chunk = b" " * (MAX_BODY_BYTES // 4)
    connection.request("POST", "/tag", body=iter([b'{"texts": ["'] + [chunk] * 6 + [b'"]}']),
                       headers=JSON_HEADERS, encode_chunked=True)
    response = connection.getresponse()
    answer = json.loads(response.read())
    connection.close()
    assert response.status == 413 and "exceeds the limit" in answer["error"]
    assert request(server, "GET", "/health")[0] == 200


def test_a_body_without_json_content_type_is_still_read_as_json(server):
    status, body = request(server, "POST", "/tag", b'{"texts": ["Mr. Smith left Paris."]}',
                           {"content-type": "application/x-www-form-urlencoded"})  # curl -d's default
    assert status == 200 and body["results"][0]["sentences"][0]["tokens"][-1] == "."


def test_unknown_paths_and_methods_answer_json_errors(server):
    assert request(server, "GET", "/nowhere") == (404, {"error": "Not Found", "status": 404})
    assert request(server, "GET", "/tag") == (405, {"error": "Method Not Allowed", "status": 405})


# --- description and page -----------------------------------------------------------------------------------------


def test_health_describes_the_run_and_openapi_the_api(server, run_dir):
    status, health = request(server, "GET", "/health")
    assert status == 200 and health["status"] == "ok" and health["model_loaded"] is True
    assert health["run_dir"] == str(run_dir)
    assert health["tags"] == json.loads((run_dir / "tags.json").read_text())
    assert health["embedder"]["width"] == json.loads((run_dir / "embedder.json").read_text())["width"]
    assert health["limits"]["max_texts"] == MAX_TEXTS and health["limits"]["max_body_bytes"] == MAX_BODY_BYTES
    status, api = request(server, "GET", "/openapi.json")
    assert status == 200 and {"/tag", "/health", "/"} <= set(api["paths"])
    body_schema = api["paths"]["/tag"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"texts", "tokens", "decode"} <= set(body_schema["properties"])
    assert {"200", "400", "413", "422"} <= set(api["paths"]["/tag"]["post"]["responses"])


def test_the_page_loads_nothing_from_elsewhere(server):
    status, page = request(server, "GET", "/")
    assert status == 200 and "<textarea" in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|@import|url\(""", page)


# --- the batcher in-process -------------------------------------------------------------------------------------------


def echo_or_fail(kind: str, decode: str, inputs: list) -> list[list[dict]]:
    """A tagging function that fails on the input "boom" and otherwise echoes its inputs."""
    if "boom" in inputs:
        raise ValueError("boom cannot be tagged")
    return [[{"input": item, "decode": decode}] for item in inputs]


def run_jobs(batcher_kwargs: dict, jobs: list[tuple[str, str, list]]) -> list[Any]:
    """Submit ``jobs`` concurrently to a fresh Batcher; each job's result or exception, and the batcher's stats."""

    async def main() -> tuple[list[Any], dict]:
        batcher = Batcher(echo_or_fail, **batcher_kwargs)
        batcher.start()
        try:
            outcomes = await asyncio.gather(*(batcher.submit(*job) for job in jobs), return_exceptions=True)
        finally:
            await batcher.stop()
        return outcomes, batcher.stats.to_dict()

    return asyncio.run(main())


GATHERING = {"max_wait_s": 0.05, "max_batch_inputs": 100, "max_queued_inputs": 100}


def test_a_failing_input_fails_its_own_request_only():
    jobs = [("texts", "bio_viterbi", ["a"]), ("texts", "bio_viterbi", ["boom"]), ("texts", "bio_viterbi", ["b", "c"])]
    outcomes, stats = run_jobs(GATHERING, jobs)
    assert outcomes[0] == [[{"input": "a", "decode": "bio_viterbi"}]]
    assert isinstance(outcomes[1], ValueError) and "boom" in str(outcomes[1])
    assert [r[0]["input"] for r in outcomes[2]] == ["b", "c"]
    assert stats["calls"] == 1 and stats["failed_requests"] == 1


def test_jobs_of_one_gathering_are_grouped_by_kind_and_decoding_and_keep_their_order():
    jobs = [("texts", "argmax", ["a"]), ("tokens", "argmax", [["t"]]), ("texts", "bio_viterbi", ["b"]),
            ("texts", "argmax", ["c", "d"])]
    outcomes, stats = run_jobs(GATHERING, jobs)
    assert [[r[0]["input"] for r in outcome] for outcome in outcomes] == [["a"], [["t"]], ["b"], ["c", "d"]]
    assert [outcome[0][0]["decode"] for outcome in outcomes] == ["argmax", "argmax", "bio_viterbi", "argmax"]
    assert stats | {"model_seconds": 0} == {"requests": 4, "inputs": 5, "calls": 1, "largest_call_requests": 4,
                                            "failed_requests": 0, "model_seconds": 0}


def test_a_gathering_stops_at_the_input_limit_and_a_full_queue_refuses_with_503():
    jobs = [("texts", "argmax", ["a", "b"])] * 3
    _, stats = run_jobs(GATHERING | {"max_batch_inputs": 2}, jobs)
    assert stats["calls"] == 3 and stats["largest_call_requests"] == 1
    outcomes, _ = run_jobs(GATHERING | {"max_queued_inputs": 3}, jobs)
    refused = [o for o in outcomes if isinstance(o, RequestProblem)]
    assert len(refused) == 2 and refused[0].status == 503 and "busy" in refused[0].message


def closed_loop_clients(clients: int, requests: int, max_wait_s: float, model_s: float) -> tuple[float, dict]:
    """``clients`` clients each sending ``requests`` one-input jobs one after another to a Batcher whose tagging
    takes ``model_s``: (seconds taken, the batcher's stats)."""

    def slow_echo(kind: str, decode: str, inputs: list) -> list[list[dict]]:
        time.sleep(model_s)
        return echo_or_fail(kind, decode, inputs)

    async def client(batcher: Batcher, name: str) -> None:
        for number in range(requests):
            assert await batcher.submit("texts", "argmax", [f"{name}-{number}"]) == [
                [{"input": f"{name}-{number}", "decode": "argmax"}]]

    async def main() -> tuple[float, dict]:
        batcher = Batcher(slow_echo, max_wait_s=max_wait_s, max_batch_inputs=100, max_queued_inputs=100)
        batcher.start()
        began = time.monotonic()
        try:
            await asyncio.gather(*(client(batcher, f"c{i}") for i in range(clients)))
        finally:
            await batcher.stop()
        return time.monotonic() - began, batcher.stats.to_dict()

    return asyncio.run(main())


def test_a_lone_client_is_never_kept_waiting_for_company():
    seconds, stats = closed_loop_clients(clients=1, requests=3, max_wait_s=1.0, model_s=0.0)
    assert stats["calls"] == 3 and seconds < 1.0  # three requests, not one of them waited out the second


def test_steady_clients_meet_in_every_call_instead_of_taking_turns():
    _, stats = closed_loop_clients(clients=4, requests=3, max_wait_s=1.0, model_s=0.02)
    assert stats["calls"] == 3 and stats["largest_call_requests"] == 4


def test_binary_text_is_told_from_text():
    assert binary_reason("Tab\tnew line\nand café, Zürich — «quotes» \x93read as Latin-1\x94") is None
    assert binary_reason("ok\x00") == "contains the control character U+0000 at offset 2"
    assert binary_reason("caf\udce9") == "contains the lone surrogate U+DCE9 at offset 3"
    assert binary_reason("\x0b\x0c\x1c") == "contains the control character U+001C at offset 2"
    assert binary_reason("\x1b[31m") is not None
    assert error_location(("tokens", 2, 0)) == "tokens[2][0]" and error_location(()) == "the request body"


# --- the page in a real browser ---------------------------------------------------------------------------------------


def skip_unless(condition: bool, reason: str) -> None:
    """Skip locally when the browser cannot be installed here; fail in CI, where it must run."""
    shared_skip_unless(condition, reason, "the browser test")


@pytest.fixture(scope="module")
def chromium(tmp_path_factory) -> str:
    """Debian's chromium, installed with apt-get when missing (as .ci/slurm-cluster.sh installs Slurm)."""
    wait_for_background_apt(tmp_path_factory)
    found = shutil.which(CHROMIUM)
    if found:
        return found
    skip_unless(hasattr(os, "geteuid") and os.geteuid() == 0, "needs root to install chromium with apt-get")
    skip_unless(shutil.which("apt-get") is not None, "needs apt-get to install Debian's chromium")
    environment = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"],
                    ["apt-get", "install", "-y", "-q", "--no-install-recommends", CHROMIUM, "fonts-dejavu-core"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, env=environment)
        assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
    found = shutil.which(CHROMIUM)
    assert found, "apt-get installed chromium but it is not on PATH"
    return found


class DevTools:
    """Chromium driven over the DevTools protocol on a pipe (--remote-debugging-pipe: JSON messages ended by NUL on
    file descriptors 3 and 4), so no WebDriver or websocket package is needed."""

    def __init__(self, executable: str, profile: Path):
        to_browser_read, self._to_browser = os.pipe()
        self._from_browser, from_browser_write = os.pipe()
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
                 f"--user-data-dir={profile}", "--window-size=1000,800", "about:blank"]
        shell = f'exec "$0" "$@" 3<&{to_browser_read} 4>&{from_browser_write}'
        self.process = subprocess.Popen(["bash", "-c", shell, executable, *flags], stdin=subprocess.DEVNULL,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        pass_fds=(to_browser_read, from_browser_write))
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._buffer = b""
        self._next_id = 0
        self.session: str | None = None
        self.events: list[dict] = []

    def send(self, method: str, params: dict | None = None, timeout: float = PAGE_TIMEOUT_S) -> dict:
        """Send one command (to the attached page once there is one) and return its result."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if self.session:
            message["sessionId"] = self.session
        os.write(self._to_browser, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._read(deadline)
            if reply.get("id") == self._next_id:
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply.get("result", {})
            self.events.append(reply)

    def _read(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "chromium did not answer in time"
            ready, _, _ = select.select([self._from_browser], [], [], remaining)
            if ready:
                chunk = os.read(self._from_browser, 1 << 16)
                assert chunk, "chromium closed the DevTools pipe"
                self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def open(self, url: str) -> None:
        """A new page attached to this connection, with network events on, then navigated to ``url``."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        self.send("Network.enable")
        self.send("Page.navigate", {"url": url})

    def evaluate(self, expression: str) -> Any:
        result = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str) -> None:
        deadline = time.monotonic() + PAGE_TIMEOUT_S
        while not self.evaluate(expression):
            assert time.monotonic() < deadline, f"the page never reached {expression}"
            time.sleep(0.1)

    def click(self, selector: str) -> None:
        """A real mouse click in the middle of the element."""
        box = self.evaluate(f"JSON.stringify(document.querySelector({json.dumps(selector)}).getBoundingClientRect())")
        rect = json.loads(box)
        x, y = rect["x"] + rect["width"] / 2, rect["y"] + rect["height"] / 2
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._to_browser)
        os.close(self._from_browser)


MARKS = """JSON.stringify(Array.from(document.querySelectorAll('#output mark.entity')).map(mark => [
    mark.firstChild.textContent, mark.dataset.type, getComputedStyle(mark).backgroundColor]))"""
LEGEND = """JSON.stringify(Array.from(document.querySelectorAll('#legend span')).map(item => [
    item.textContent, getComputedStyle(item).backgroundColor]))"""
SHOWN_TEXT = """(() => { const copy = document.getElementById('output').cloneNode(true);
    copy.querySelectorAll('.label').forEach(label => label.remove()); return copy.textContent; })()"""


def test_the_page_highlights_the_entities_of_typed_text_in_a_real_browser(server, chromium, tmp_path):
    status, body = post_tag(server, {"texts": [TYPED_SENTENCE]})
    expected = [(e["text"], e["type"]) for s in body["results"][0]["sentences"] for e in s["entities"]]
    assert status == 200 and expected, "the tiny model should find entities in this sentence"
    entity_types = request(server, "GET", "/health")[1]["entity_types"]
    browser = DevTools(chromium, tmp_path / "profile")
    try:
        browser.open(server + "/")
        browser.wait_for("document.body?.dataset.runs === '1'")  # the example text, tagged on load
        browser.evaluate("const box = document.getElementById('text'); box.focus(); box.select(); true")
        browser.send("Input.insertText", {"text": TYPED_SENTENCE})  # typed, replacing the selected example
        browser.click("#tag")
        browser.wait_for("document.body?.dataset.runs === '2'")
        marks = json.loads(browser.evaluate(MARKS))
        legend = json.loads(browser.evaluate(LEGEND))
        shown = browser.evaluate(SHOWN_TEXT)
        error = browser.evaluate("document.getElementById('error').textContent")
    finally:
        browser.close()
    assert error == ""
    assert [(text, kind) for text, kind, _ in marks] == expected
    assert shown == TYPED_SENTENCE  # the text itself is shown unchanged around the marks
    assert [name for name, _ in legend] == entity_types
    colour_of = dict(legend)
    assert all(colour == colour_of[kind] for _, kind, colour in marks)  # each entity in its legend colour
    assert len(set(colour_of.values())) == len(entity_types)
    requested = [event["params"]["request"]["url"] for event in browser.events
                 if event.get("method") == "Network.requestWillBeSent"]
    assert requested and all(url.startswith(server) for url in requested), requested  # nothing from elsewhere


# --- the command line ----------------------------------------------------------------------------------------------


def test_ner_serve_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["serve", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--run", "--host", "--port", "--batch-size", "--max-body-bytes", "--max-texts", "--max-wait-ms",
                   "--max-batch-inputs", "--max-queued-inputs", "--access-log", "--log-level", "127.0.0.1",
                   "0.0.0.0", "results/ner"):
        assert option in text, option


def test_a_taken_port_or_a_missing_run_fails_at_once_with_one_error_line(capsys, tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--run", str(tmp_path), "--port", str(port)]) == 2
        assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err
    assert main(["serve", "--run", str(tmp_path / "nowhere"), "--port", "0"]) == 2
    assert "no such run directory" in capsys.readouterr().err


# --- bench/serve.py's pure parts --------------------------------------------------------------------------------------


def test_bench_latency_summary_and_dealing_of_texts():
    summary = bench_serve.latency_summary([0.010] * 98 + [0.020, 1.0])
    assert summary["p50_ms"] == pytest.approx(10) and 20 < summary["p99_ms"] < 1000 and summary["count"] == 100
    with pytest.raises(ValueError):
        bench_serve.latency_summary([])
    dealt = bench_serve.client_texts(["a", "b", "c", "d", "e"], clients=2, per_client=3)
    assert dealt == [["a", "c", "e"], ["b", "d", "a"]]  # different sentences at once, round-robin
    assert bench_serve.requests_per_client({"requests_per_client": 10, "min_requests": 100}, 1) == 100
    assert bench_serve.requests_per_client({"requests_per_client": 10, "min_requests": 100}, 32) == 10
    assert bench_serve.serving_address("x\nserving r on http://127.0.0.1:4242/ (POST /tag") == ("127.0.0.1", 4242)
    assert bench_serve.serving_address("INFO: starting") is None
