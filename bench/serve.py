"""Serving throughput of ``ner serve`` under concurrent clients, next to the batch throughput of the same run.

First the figure of ``bench/tagging.py``, measured here in the same run: sentences per second when one large batch of
test-split sentences is tagged in one ``pipeline.load(run).tag(texts)`` call (TensorFlow's threads set as ``ner tag``
and ``ner serve`` set them), and the same texts tagged 32 at a time in-process (about what 32 clients can get: every
model call then holds 32 sentences). Then the real server is started as a subprocess (``ner serve --port 0``) and 1, 8
and 32 concurrent clients each send single sentences, one request at a time, the next as soon as the answer arrives:
sentences per second, the p50 and p99 latency of a request, and from the server's /health counters the requests per
model call and how busy the model was. Concurrent requests are gathered into shared model calls, so the throughput
should approach the batch figure as clients are added; the target is at least 70% of it at 32 clients. The clients
(one asyncio thread, raw HTTP/1.1 keep-alive) run on the same machine as the server and take some of its CPU, which
the batch figure does not pay.

The run directory is results/ner (or --run-dir); without a trained run, bench/tagging.py's stand-in (same
architecture and embedder, untrained) is timed and the output says so.

    python bench/serve.py [--quick] [--run-dir results/ner] [--clients 1 8 32] [--requests N] [--batch-sentences N]
                          [--max-wait-ms MS]
"""
from __future__ import annotations

import asyncio
import http.client
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np

from bench import common as c
from bench import tagging

NAME = "serve"
#: Requests per client at each concurrency (so every level runs long enough to reach its steady state), and at least
#: this many requests per level overall.
QUICK = {"batch_sentences": 256, "requests_per_client": 15, "min_requests": 60, "repeats": 2}
FULL = {"batch_sentences": 2000, "requests_per_client": 40, "min_requests": 300, "repeats": 3}
DEFAULT_CLIENTS = (1, 8, 32)
#: Requests each client sends before timing starts (connection set-up, the server's first gatherings).
WARMUP_REQUESTS = 2
TARGET_SHARE = 0.7
PERCENTILES = (50, 99)
START_TIMEOUT_S = 300
REQUEST_TIMEOUT_S = 120
SERVING_LINE = re.compile(r"serving .* on http://([^/\s]+):(\d+)/ ")


# --------------------------------------------------------------------------------------------------------------------
# Pure parts (tests/test_serve.py)
# --------------------------------------------------------------------------------------------------------------------


def latency_summary(seconds: Sequence[float]) -> dict:
    """p50 and p99 (and the mean and max) of request latencies, in milliseconds."""
    values = 1000 * np.asarray(seconds, dtype=float)
    if values.size == 0:
        raise ValueError("no latencies to summarise")
    summary = {f"p{p}_ms": float(np.percentile(values, p)) for p in PERCENTILES}
    return summary | {"mean_ms": float(values.mean()), "max_ms": float(values.max()), "count": int(values.size)}


def client_texts(texts: Sequence[str], clients: int, per_client: int) -> list[list[str]]:
    """The texts each client sends, dealt round-robin so that the clients send different sentences at once."""
    if not texts:
        raise ValueError("no texts to send")
    return [[texts[(client + clients * k) % len(texts)] for k in range(per_client)] for client in range(clients)]


def serving_address(log_text: str) -> tuple[str, int] | None:
    """(host, port) from the line ``ner serve`` prints once it has bound its port; None before that."""
    match = SERVING_LINE.search(log_text)
    return (match.group(1).strip("[]"), int(match.group(2))) if match else None


def requests_per_client(sizes: dict, clients: int) -> int:
    """Enough requests per client for ``min_requests`` in all, and never fewer than ``requests_per_client``."""
    return max(sizes["requests_per_client"], -(-sizes["min_requests"] // clients))


# --------------------------------------------------------------------------------------------------------------------
# The server and its clients
# --------------------------------------------------------------------------------------------------------------------


def start_server(run_dir: Path, log_path: Path,
                 options: Sequence[str] = ()) -> tuple[subprocess.Popen, tuple[str, int]]:
    """``ner serve`` on a free port, quiet (no access log), answering /health; ``options`` are more of its flags."""
    command = [sys.executable, "-m", "pipeline.cli", "serve", "--run", str(run_dir), "--port", "0",
               "--no-access-log", "--log-level", "warning", *options]
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, cwd=c.REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"ner serve exited:\n{log_path.read_text()[-3000:]}")
        address = serving_address(log_path.read_text())
        if address:
            try:
                connection = http.client.HTTPConnection(*address, timeout=REQUEST_TIMEOUT_S)
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    return process, address
            except OSError:
                pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"ner serve did not answer within {START_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def post_text(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, text: str) -> int:
    """One ``POST /tag`` of one text on a keep-alive connection; the number of sentences in the answer.

    Raw HTTP/1.1 on asyncio streams rather than an HTTP library in threads: 32 clients then cost one thread and
    little CPU, which matters when they share the machine's 2 cores with the server they measure.
    """
    body = json.dumps({"texts": [text]}).encode()
    writer.write(f"POST /tag HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\n"
                 f"content-length: {len(body)}\r\n\r\n".encode() + body)
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(":", 1) for line in header_lines if ":" in line)
    length = int({k.lower(): v for k, v in headers.items()}["content-length"])
    payload = await reader.readexactly(length)
    if status_line.split()[1] != "200":
        raise RuntimeError(f"{status_line}: {payload[:300]!r}")
    return len(json.loads(payload)["results"][0]["sentences"])


async def client(address: tuple[str, int], texts: list[str], warmup: list[str], start: asyncio.Barrier,
                 latencies: list[float]) -> int:
    """One client: warm up, wait for every other client, then send its texts one request at a time; sentences
    tagged."""
    reader, writer = await asyncio.open_connection(*address)
    host = f"{address[0]}:{address[1]}"
    try:
        for text in warmup:
            await post_text(reader, writer, host, text)
        await start.wait()
        sentences = 0
        for text in texts:
            began = time.perf_counter()
            sentences += await post_text(reader, writer, host, text)
            latencies.append(time.perf_counter() - began)
        return sentences
    finally:
        writer.close()


def run_level(address: tuple[str, int], texts: Sequence[str], clients: int, per_client: int) -> dict:
    """``clients`` concurrent clients of ``per_client`` single-sentence requests each: rate and latencies."""
    dealt = client_texts(texts, clients, per_client + WARMUP_REQUESTS)
    latencies: list[float] = []

    async def level() -> tuple[int, float, dict]:
        start = asyncio.Barrier(clients + 1)
        tasks = [asyncio.create_task(client(address, mine[WARMUP_REQUESTS:], mine[:WARMUP_REQUESTS], start,
                                            latencies)) for mine in dealt]
        await start.wait()  # every client connected and warmed up
        before = health(address)["batching"]  # as the timed requests start (this call holds the loop a moment)
        began = time.perf_counter()
        counts = await asyncio.gather(*tasks)
        return sum(counts), time.perf_counter() - began, before

    sentences, seconds, before = asyncio.run(level())
    after = health(address)["batching"]
    server = {key: after[key] - before[key] for key in ("requests", "calls", "model_seconds")}
    return {"clients": clients, "requests": len(latencies), "sentences": sentences, "seconds": seconds,
            "sentences_per_s": sentences / seconds, "requests_per_s": len(latencies) / seconds,
            "latency": latency_summary(latencies),
            "server": server | {"model_busy_share": server["model_seconds"] / seconds}}


def health(address: tuple[str, int]) -> dict:
    connection = http.client.HTTPConnection(*address, timeout=REQUEST_TIMEOUT_S)
    connection.request("GET", "/health")
    return json.loads(connection.getresponse().read())


# --------------------------------------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------------------------------------


def batch_throughput(run_dir: Path, texts: list[str], repeats: int, group: int) -> dict:
    """bench/tagging.py's large-batch figure (one ``tag`` call over every text, median of ``repeats``), and the same
    texts tagged ``group`` at a time in this process: the most a server can reach when ``group`` clients meet in
    every model call, so the served figure splits into the cost of small calls and the cost of serving."""
    import pipeline
    from pipeline.tagger import use_inference_threads

    use_inference_threads()  # as `ner tag` and `ner serve` do
    tagger = pipeline.load(run_dir)
    tagged = tagger.tag(texts)  # warm-up: graph tracing for the batch shapes
    timing = c.measure(lambda: tagger.tag(texts), repeats=repeats, warmup=0)
    groups = [texts[i : i + group] for i in range(0, len(texts), group)]
    for members in groups:  # warm-up: the padded shapes of small calls differ from the batch's
        tagger.tag(members)
    with c.Stopwatch() as grouped:
        grouped_sentences = sum(len(tagger.tag(members)) for members in groups)
    return {"texts": len(texts), "sentences": len(tagged), "seconds": timing.to_dict(),
            "sentences_per_s": len(tagged) / timing.median, "sentences_per_cpu_s": len(tagged) / timing.median_cpu,
            "tagger_batch_size": tagger.batch_size,
            "in_groups": {"group": group, "sentences": grouped_sentences, "seconds": grouped.wall,
                          "sentences_per_s": grouped_sentences / grouped.wall,
                          "sentences_per_cpu_s": grouped_sentences / grouped.cpu}}


def main(argv: list[str] | None = None) -> int:
    p = c.parser(__doc__)
    p.add_argument("--run-dir", type=Path, default=c.REPO_ROOT / "results" / "ner")
    p.add_argument("--clients", type=int, nargs="+", default=list(DEFAULT_CLIENTS), help="concurrency levels")
    p.add_argument("--requests", type=int, dest="requests_per_client", help="requests per client and level")
    p.add_argument("--batch-sentences", type=int, help="sentences in the batch-throughput call")
    p.add_argument("--repeats", type=int, help="repeats of the batch-throughput call")
    p.add_argument("--max-wait-ms", type=float, help="the server's --max-wait-ms (default: its own default)")
    args = p.parse_args(argv)
    sizes = dict(QUICK if args.quick else FULL)
    sizes.update({k: getattr(args, k) for k in ("batch_sentences", "requests_per_client", "repeats")
                  if getattr(args, k) is not None})
    machine, started = c.start(NAME, args)

    with c.scratch_dir(NAME) as tmp:
        if all((args.run_dir / f).is_file() for f in tagging.RUN_FILES) and not args.synthetic:
            run_dir, run_source = args.run_dir, f"real: {args.run_dir}"
        else:
            print(f"   {args.run_dir} holds no trained run yet: timing a stand-in (untrained weights, same "
                  f"architecture and embedder; speed does not depend on the weights)")
            run_dir, run_source = tagging.stand_in_run(tmp)
        sentences, text_source = c.read_sentences("test", limit=sizes["batch_sentences"])
        texts = [" ".join(s.words) for s in sentences]
        c.say(f"batch throughput of {run_source} on {len(texts)} texts ({sizes['repeats']} repeats) ...")
        batch = batch_throughput(run_dir, texts, sizes["repeats"], max(args.clients))
        c.say(f"{batch['sentences_per_s']:.1f} sentences/s in one batch; starting ner serve ...")
        options = ["--max-wait-ms", str(args.max_wait_ms)] if args.max_wait_ms is not None else []
        process, address = start_server(run_dir, tmp / "serve.log", options)
        levels = []
        try:
            for clients in args.clients:
                per_client = requests_per_client(sizes, clients)
                c.say(f"{clients} client(s) x {per_client} single-sentence requests ...")
                level = run_level(address, texts, clients, per_client)
                level["share_of_batch"] = level["sentences_per_s"] / batch["sentences_per_s"]
                levels.append(level)
            server_counts = health(address)["batching"]
        finally:
            stop_server(process)

    most = max(levels, key=lambda level: level["clients"])
    result = {"run": run_source, "server_options": options, "batch": batch, "levels": levels,
              "server_batching": server_counts,
              "target": {"clients": most["clients"], "share_of_batch": most["share_of_batch"],
                         "required": TARGET_SHARE, "met": most["share_of_batch"] >= TARGET_SHARE}}
    print()
    grouped = batch["in_groups"]
    rows = [["batch: one tag() call", batch["sentences"], f"{batch['sentences_per_s']:.1f}", "", "", "100%"],
            [f"in-process tag() calls of {grouped['group']} texts", grouped["sentences"],
             f"{grouped['sentences_per_s']:.1f}", "", "",
             f"{100 * grouped['sentences_per_s'] / batch['sentences_per_s']:.0f}%"]]
    rows += [[f"{level['clients']} concurrent client(s)", level["sentences"], f"{level['sentences_per_s']:.1f}",
              f"{level['latency']['p50_ms']:.0f}", f"{level['latency']['p99_ms']:.0f}",
              f"{100 * level['share_of_batch']:.0f}%"] for level in levels]
    print(c.table(rows, ["", "sentences", "sentences/s", "p50 ms", "p99 ms", "of batch"]))
    for level in levels:
        server = level["server"]
        print(f"   {level['clients']} client(s): {server['requests']} requests in {server['calls']} model calls "
              f"({server['requests'] / max(1, server['calls']):.1f} a call), model busy "
              f"{100 * server['model_busy_share']:.0f}% of the time")
    print(f"   server: {server_counts['requests']} requests in {server_counts['calls']} gathered model calls "
          f"(largest {server_counts['largest_call_requests']} requests)")
    verdict = "met" if result["target"]["met"] else "NOT met"
    print(f"   target ({most['clients']} clients >= {TARGET_SHARE:.0%} of batch): {verdict} "
          f"({most['share_of_batch']:.0%})")
    c.finish(NAME, result, args, {"texts": text_source, "run": run_source, "sizes": sizes}, machine, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
