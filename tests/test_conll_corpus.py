"""CoNLL-style corpora with their own train/dev/test files (CoNLL-2003 or a user's annotated data)."""
from __future__ import annotations

import json

import pytest

from pipeline.config import load_config
from pipeline.corpus import CorpusError, prepare, read_conll, read_conll_corpus

CONLL_2003_STYLE = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER

"""


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_docstart_is_skipped_and_sentences_split_on_blank_lines(tmp_path):
    sentences, report = read_conll_corpus(write(tmp_path / "a.conll", CONLL_2003_STYLE), pos_column=1)
    assert [s.words for s in sentences] == [["EU", "rejects", "German", "call", "."], ["Peter", "Blackburn"]]
    assert sentences[0].tags == ["B-ORG", "O", "B-MISC", "O", "O"] and sentences[0].pos[0] == "NNP"
    assert report.tokens == report.rows == 7


def test_the_tag_column_is_configurable(tmp_path):
    text = "Paris B-LOC NNP\nis O VBZ\n\n"
    sentences, _ = read_conll_corpus(write(tmp_path / "b.conll", text), tag_column=1)
    assert sentences[0].tags == ["B-LOC", "O"]


def test_a_wrong_tag_column_names_the_file_and_line(tmp_path):
    with pytest.raises(CorpusError, match=r"b.conll:1: tag 'NNP'"):
        read_conll_corpus(write(tmp_path / "b.conll", "Paris B-LOC NNP\n\n"), tag_column=2)


def test_a_line_with_too_few_columns_is_rejected_with_its_line(tmp_path):
    with pytest.raises(CorpusError, match=r"c.conll:2: expected at least 2 columns"):
        read_conll_corpus(write(tmp_path / "c.conll", "Paris B-LOC\nlonely\n\n"))


def test_prepare_uses_the_given_splits_and_their_tags(tmp_path):
    files = {split: str(write(tmp_path / f"{split}.txt", CONLL_2003_STYLE)) for split in ("train", "val", "test")}
    config = load_config()
    config["corpus"] |= {"format": "conll", "files": files, "pos_column": 1}
    meta = prepare(config, tmp_path / "out")
    assert meta["sizes"] == {"train": 2, "val": 2, "test": 2}
    assert "B-PER" in meta["tags"] and meta["tags"][0] == "O"
    assert len(read_conll(tmp_path / "out" / "test.conll")) == 2
    assert json.loads((tmp_path / "out" / "meta.json").read_text())["corpus_sha256"]
