"""The corpus stage: where the corpus is looked for, the CoNLL files it writes, the shards and meta.json."""
from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

from pipeline.config import PROJECT_ROOT
from pipeline.corpus import (
    CORPUS_SEARCH_DIRS, CorpusError, Sentence, find_corpus, main, prepare, read_conll, read_corpus, write_conll,
)

from conftest import write_tiny_corpus

SHARD_SIZE = 7
TINY_SENTENCES = 40
ODD_WORDS = ["NaN", "NA", "null", '"', ",", "\x85", "Zürich", " ", "#", "# sentence_id = 9", "x" * 1000]


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("Sentence #,Word,POS,Tag\n")
    return path


# --- find_corpus ---------------------------------------------------------------------------------------------------

def test_default_search_looks_in_data_then_shared_data():
    assert CORPUS_SEARCH_DIRS == (PROJECT_ROOT / "data", PROJECT_ROOT.parent / "shared" / "data")


def test_configured_path_wins_over_the_search_dirs(tmp_path):
    configured = touch(tmp_path / "elsewhere" / "my.csv")
    touch(tmp_path / "data" / "ner_dataset.csv")
    assert find_corpus(configured, [tmp_path / "data"]) == configured


def test_configured_path_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(CorpusError, match=r"nowhere\.csv: corpus file not found \(corpus\.path"):
        find_corpus(tmp_path / "nowhere.csv", [])


def test_configured_directory_is_refused(tmp_path):
    with pytest.raises(CorpusError, match="is a directory"):
        find_corpus(tmp_path, [])


def test_first_search_dir_holding_a_corpus_wins(tmp_path):
    touch(tmp_path / "shared" / "ner_dataset.csv")
    first = touch(tmp_path / "data" / "ner_dataset.csv.zip")
    assert find_corpus(None, [tmp_path / "data", tmp_path / "shared"]) == first


def test_plain_csv_wins_over_zip_in_the_same_dir(tmp_path):
    touch(tmp_path / "data" / "ner_dataset.csv.zip")
    plain = touch(tmp_path / "data" / "ner_dataset.csv")
    assert find_corpus(None, [tmp_path / "data"]) == plain


def test_zip_is_found_when_there_is_no_csv(tmp_path):
    zipped = touch(tmp_path / "shared" / "ner_dataset.csv.zip")
    assert find_corpus(None, [tmp_path / "data", tmp_path / "shared"]) == zipped


def test_missing_corpus_message_names_the_kaggle_corpus_data_dir_and_every_place_searched(tmp_path):
    with pytest.raises(CorpusError) as caught:
        find_corpus(None, [tmp_path / "data", tmp_path / "shared"])
    message = str(caught.value)
    assert "Kaggle 'Annotated Corpus for Named Entity Recognition'" in message and "in data/" in message
    for place in ("data/ner_dataset.csv", "data/ner_dataset.csv.zip", "shared/ner_dataset.csv.zip"):
        assert str(tmp_path / place) in message


# --- CoNLL files ---------------------------------------------------------------------------------------------------

def odd_sentences() -> list[Sentence]:
    return [
        Sentence("Sentence: 1", ODD_WORDS, ["NN"] * len(ODD_WORDS), ["O"] * len(ODD_WORDS)),
        Sentence("Sentence: 10", ["Paris"], [""], ["B-geo"]),
    ]


def test_conll_round_trip_keeps_every_word_pos_tag_and_id(tmp_path):
    write_conll(tmp_path / "x.conll", odd_sentences())
    assert read_conll(tmp_path / "x.conll") == odd_sentences()


def test_conll_file_has_an_id_line_tab_separated_rows_and_a_blank_line_per_sentence(tmp_path):
    write_conll(tmp_path / "x.conll", [Sentence("Sentence: 3", ["In", "Paris"], ["IN", "NNP"], ["O", "B-geo"])])
    assert (tmp_path / "x.conll").read_text(encoding="utf-8") == (
        "# sentence_id = Sentence: 3\nIn\tIN\tO\nParis\tNNP\tB-geo\n\n"
    )


def test_writing_a_tab_inside_a_word_is_refused_and_leaves_no_file(tmp_path):
    with pytest.raises(CorpusError, match="tab or line break"):
        write_conll(tmp_path / "x.conll", [Sentence("s", ["a\tb"], ["NN"], ["O"])])
    assert list(tmp_path.iterdir()) == []


def test_malformed_conll_row_is_named_by_line(tmp_path):
    (tmp_path / "x.conll").write_text("# sentence_id = s\na\tNN\tO\nb\tNN\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"x\.conll:3: expected 'word<TAB>pos<TAB>tag'"):
        read_conll(tmp_path / "x.conll")


# --- prepare: splits, shards, meta.json ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prepared(tmp_path_factory, tiny_config) -> tuple[Path, Path, dict]:
    """The corpus stage run on the 40-sentence tiny corpus with small shards: (corpus file, out dir, meta)."""
    root = tmp_path_factory.mktemp("prepare")
    config = json.loads(json.dumps(tiny_config))
    config["corpus"]["path"] = str(write_tiny_corpus(root / "ner_dataset.csv", sentences=TINY_SENTENCES))
    config["corpus"]["shard_size"] = SHARD_SIZE
    meta = prepare(config, root / "out")
    return Path(config["corpus"]["path"]), root / "out", meta


def test_splits_hold_every_sentence_once(prepared):
    corpus, out, meta = prepared
    sentences, _ = read_corpus(corpus)
    split_ids = [s.sentence_id for split in meta["sizes"] for s in read_conll(out / f"{split}.conll")]
    assert sorted(split_ids) == sorted(s.sentence_id for s in sentences)
    assert sum(meta["sizes"].values()) == TINY_SENTENCES


@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_shards_cut_the_split_in_order_into_groups_of_shard_size(prepared, split):
    _, out, meta = prepared
    whole = read_conll(out / f"{split}.conll")
    shards = [read_conll(out / "shards" / f"{name}.conll") for name in meta["shards"][split]]
    assert len(shards) == math.ceil(len(whole) / SHARD_SIZE)
    assert all(len(shard) == SHARD_SIZE for shard in shards[:-1]) and 0 < len(shards[-1]) <= SHARD_SIZE
    assert [s for shard in shards for s in shard] == whole


def test_shard_names_are_split_and_four_digit_index(prepared):
    _, out, meta = prepared
    assert meta["shards"]["train"][:2] == ["train-0000", "train-0001"]
    assert sorted(p.stem for p in (out / "shards").iterdir()) == sorted(n for ns in meta["shards"].values() for n in ns)


def test_meta_json_on_disk_is_what_prepare_returns(prepared):
    _, out, meta = prepared
    assert json.loads((out / "meta.json").read_text()) == meta


def test_meta_records_the_corpus_path_and_hash(prepared):
    corpus, _, meta = prepared
    assert meta["corpus_path"] == str(corpus)
    assert meta["corpus_sha256"] == hashlib.sha256(corpus.read_bytes()).hexdigest()


def test_meta_tags_start_with_o_then_sorted_and_cover_the_corpus(prepared):
    corpus, _, meta = prepared
    sentences, _ = read_corpus(corpus)
    assert meta["tags"][0] == "O" and meta["tags"][1:] == sorted(meta["tags"][1:])
    assert set(meta["tags"]) == {t for s in sentences for t in s.tags}
    assert meta["pos_tags"] == sorted({p for s in sentences for p in s.pos})


def test_meta_sizes_match_the_split_files(prepared):
    _, out, meta = prepared
    assert meta["sizes"] == {split: len(read_conll(out / f"{split}.conll")) for split in ("train", "val", "test")}


def test_meta_lists_the_problems_handled(tmp_path, tiny_config):
    corpus = tmp_path / "odd.csv"
    corpus.write_text("Sentence #,Word,POS,Tag\n" + "".join(
        f"Sentence: {n},in,IN,O\n,Paris,NNP,I-geo\n" for n in range(1, 6)), encoding="latin-1")
    config = json.loads(json.dumps(tiny_config))
    config["corpus"]["path"] = str(corpus)
    meta = prepare(config, tmp_path / "out")
    assert len(meta["problems"]) == 5 and meta["problems"][0].startswith(f"{corpus}:3: I-geo follows O")


def test_prepare_leaves_no_temporary_files(prepared):
    _, out, _ = prepared
    assert not [p for p in out.rglob(".tmp-*")]


def test_command_line_prints_the_located_error_and_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("Sentence #,Word,POS,Tag\nSentence: 1,Paris,NNP,GEO\n", encoding="latin-1")
    assert main(["--corpus", str(bad), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.startswith(f"error: {bad}:2: tag 'GEO' is not in the BIO scheme")
    assert not (tmp_path / "out" / "meta.json").exists()


def test_report_summary_counts_rows_blank_lines_and_problems(tmp_path):
    corpus = tmp_path / "c.csv"
    corpus.write_text("Sentence #,Word,POS,Tag\nSentence: 1,in,IN,O\n\n,Paris,NNP,I-geo\n", encoding="latin-1")
    _, report = read_corpus(corpus)
    summary = report.summary()
    assert "rows:       3 (1 blank lines skipped)" in summary and "tokens:     2" in summary
    assert f"problems:   1 (handled, listed below)\n  - {corpus}:4: I-geo follows O" in summary
