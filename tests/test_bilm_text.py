"""Unlabelled text for the biLM: sources, formats, bad lines, and the shuffled stream that a resumed run replays."""
from __future__ import annotations

import bz2
import gzip
import json
from collections import Counter
from pathlib import Path

import pytest

from pipeline.bilm.text import SentenceStream, TextProblems, TextSourceError, expand_text_sources, file_sentences
from pipeline.tokenize import split_sentences

ARTICLES = [
    {"id": "1", "title": "Toyota", "text": "Toyota.\nToyota will build a new plant in Texas. It opened in 2008."},
    {"id": "2", "title": "Paris", "text": "Paris is the capital of France.\n\nMr. Smith lives in Paris."},
]
PLAIN = "Reuters said the U.S. talks were held in Belgrade on Monday.\nThe officials didn't say more.\n"


def tokens_of(text: str) -> list[list[str]]:
    """What the project's tokenizer makes of ``text`` (the expected sentences)."""
    return [[token.text for token in sentence] for line in text.split("\n") for sentence in split_sentences(line)]


def write_wiki(path: Path, articles=ARTICLES, extra_lines: tuple[bytes, ...] = ()) -> Path:
    """A WikiExtractor ``--json --compress`` file (bzip2 JSON lines), with optional raw lines appended."""
    raw = b"".join(json.dumps(a).encode() + b"\n" for a in articles) + b"".join(extra_lines)
    path.write_bytes(bz2.compress(raw))
    return path


@pytest.fixture
def text_dir(tmp_path) -> Path:
    """A directory with a WikiExtractor file (bz2), a gzipped plain-text file and a plain one in a subdirectory."""
    root = tmp_path / "text"
    (root / "AA").mkdir(parents=True)
    write_wiki(root / "AA" / "wiki_00.bz2")
    with gzip.open(root / "news.txt.gz", "wt", encoding="utf-8") as handle:
        handle.write(PLAIN)
    (root / "AA" / "more.txt").write_text("Kenya and NATO met.\n", encoding="utf-8")
    return root


def test_sources_expand_directories_and_globs_and_reject_what_matches_nothing(text_dir):
    found = expand_text_sources([str(text_dir), str(text_dir / "AA" / "*.bz2")])
    assert [p.name for p in found] == ["more.txt", "wiki_00.bz2", "news.txt.gz"]
    with pytest.raises(TextSourceError, match="nothing.txt"):
        expand_text_sources([str(text_dir / "nothing.txt")])


def test_wikiextractor_and_compressed_plain_text_are_split_by_the_tagging_tokenizer(text_dir):
    problems = TextProblems()
    wiki = list(file_sentences(text_dir / "AA" / "wiki_00.bz2", problems, max_tokens=64))
    expected = [s for article in ARTICLES for s in tokens_of(article["text"])]
    assert wiki == expected
    assert ["Mr.", "Smith", "lives", "in", "Paris", "."] in wiki
    plain = list(file_sentences(text_dir / "news.txt.gz", problems, max_tokens=64))
    assert plain == tokens_of(PLAIN) and ["did", "n't"] == plain[1][2:4]
    assert problems.total() == 0


def test_long_sentences_come_as_pieces_not_dropped(tmp_path):
    path = tmp_path / "long.txt"
    words = [f"w{i}" for i in range(25)]
    path.write_text(" ".join(words) + "\n", encoding="utf-8")
    pieces = list(file_sentences(path, TextProblems(), max_tokens=10))
    assert [len(p) for p in pieces] == [10, 10, 5] and sum(pieces, []) == words


def test_undecodable_and_malformed_lines_are_counted_with_their_line_numbers(tmp_path, caplog):
    path = write_wiki(tmp_path / "wiki_01.bz2", extra_lines=(b'{"id": "3", "text": "Caf\xe9 opened."}\n',
                                                             b"{not json\n", b'{"id": "4"}\n'))
    problems = TextProblems()
    sentences = list(file_sentences(path, problems, max_tokens=64))
    assert len(sentences) == len([s for a in ARTICLES for s in tokens_of(a["text"])])
    described = "\n".join(problems.describe())
    assert problems.total() == 3
    assert "1 line(s) skipped, not UTF-8" in described and "line 3" in described
    assert "2 line(s) skipped, not a JSON object" in described and "line 4, 5" in described
    problems.warn()
    assert "wiki_01.bz2" in caplog.text


def test_a_pass_yields_every_sentence_once_in_a_seeded_order(text_dir):
    files = expand_text_sources([str(text_dir)])
    everything = [s for f in files for s in file_sentences(f, TextProblems(), 64)]
    stream = SentenceStream(files, seed=5, buffer_size=3, max_tokens=64)
    first = list(stream.epoch(0))
    assert Counter(map(tuple, first)) == Counter(map(tuple, everything))
    assert first != everything  # shuffled
    assert list(SentenceStream(files, seed=5, buffer_size=3, max_tokens=64).epoch(0)) == first
    assert list(stream.epoch(1)) != first  # each pass has its own order


def test_a_pass_resumed_after_k_sentences_continues_exactly_where_it_stopped(text_dir):
    stream = SentenceStream(expand_text_sources([str(text_dir)]), seed=1, buffer_size=4, max_tokens=64)
    whole = list(stream.epoch(0))
    for k in (0, 1, 5, len(whole)):
        assert list(stream.epoch(0, skip=k)) == whole[k:]


def test_held_out_sentences_never_enter_the_stream(text_dir):
    files = expand_text_sources([str(text_dir)])
    held_out = frozenset({("Kenya", "and", "NATO", "met", ".")})
    stream = SentenceStream(files, seed=0, buffer_size=2, max_tokens=64, excluded=held_out)
    seen = list(stream.epoch(0))
    assert ["Kenya", "and", "NATO", "met", "."] not in seen and stream.excluded_seen == 1
