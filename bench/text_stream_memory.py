"""Resident memory while the biLM's text stream reads a whole corpus: it must stay flat, whatever the text's size.

Streams one pass of :class:`pipeline.bilm.text.SentenceStream` (the reader, tokenizer and shuffle buffer that
pretraining uses, without the model) over the given sources and samples this process's resident set size every
``--every`` sentences. Reported: RSS once the shuffle buffer is full, the largest RSS after that, and the growth
between them, with the sentences and tokens read and the time taken.

    python bench/text_stream_memory.py [--quick] [--text ../shared/data/simplewiki] [--shuffle-buffer 100000]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

from common import REPO_ROOT, describe_machine, machine_info, say, write_result

DEFAULT_TEXT = str(REPO_ROOT.parent / "shared" / "data" / "simplewiki")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
MIB = 2**20


def resident_mib() -> float:
    """This process's resident set size in MiB (Linux /proc)."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * PAGE_BYTES / MIB


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", nargs="+", default=[DEFAULT_TEXT], help="files, directories or globs of text")
    parser.add_argument("--shuffle-buffer", type=int, default=None, help="default: the config's bilm.shuffle_buffer")
    parser.add_argument("--every", type=int, default=50_000, help="sentences between RSS samples")
    parser.add_argument("--quick", action="store_true", help="stop after 300,000 sentences")
    args = parser.parse_args()
    from pipeline.bilm.text import SentenceStream, expand_text_sources
    from pipeline.config import load_config

    settings = load_config()["bilm"]
    buffer = args.shuffle_buffer or settings["shuffle_buffer"]
    machine = machine_info()
    say(f"machine: {describe_machine(machine)}")
    started = time.time()
    files = expand_text_sources(args.text)
    stream = SentenceStream(files, settings["seed"], buffer, settings["row_tokens"])
    samples, sentences, tokens = [(0, resident_mib())], 0, 0
    limit = 300_000 if args.quick else None
    for sentence in stream.epoch(0):
        sentences += 1
        tokens += len(sentence)
        if sentences % args.every == 0:
            samples.append((sentences, resident_mib()))
            say(f"{sentences:,} sentences, {tokens:,} tokens: RSS {samples[-1][1]:.0f} MiB")
        if limit and sentences >= limit:
            break
    samples.append((sentences, resident_mib()))
    after_fill = [mib for count, mib in samples if count >= buffer]
    full = after_fill[0] if after_fill else samples[-1][1]
    results = {"files": len(files), "sentences": sentences, "tokens": tokens, "shuffle_buffer": buffer,
               "rss_start_mib": round(samples[0][1], 1), "rss_buffer_full_mib": round(full, 1),
               "rss_max_mib": round(max(mib for _, mib in samples), 1),
               "rss_growth_after_buffer_full_mib": round(max(after_fill or [full]) - full, 1),
               "seconds": round(time.time() - started, 1), "samples": samples,
               "problems": stream.problems.describe()}
    say(f"{sentences:,} sentences / {tokens:,} tokens from {len(files)} files in {results['seconds']} s; RSS "
        f"{results['rss_buffer_full_mib']} MiB once the buffer of {buffer:,} sentences is full, max "
        f"{results['rss_max_mib']} MiB (growth {results['rss_growth_after_buffer_full_mib']} MiB)")
    write_result("text_stream_memory", results, args, data={"text": args.text}, machine=machine, started=started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
