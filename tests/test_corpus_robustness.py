"""Bad and odd corpus files: each is either read with every row accounted for, or refused with ``path:LINE: problem``.

The files are written by the tests in the Kaggle format (header ``Sentence #,Word,POS,Tag``, latin-1, the sentence id
only on the first row of a sentence). "Accounted for" means: data rows written == tokens kept + blank lines reported.
"""
from __future__ import annotations

import gzip
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
from sklearn.model_selection import train_test_split

from pipeline.corpus import CorpusError, CorpusReport, Sentence, notebook_order, read_corpus, split_corpus

from conftest import write_tiny_corpus

HEADER = "Sentence #,Word,POS,Tag"
LONG_TOKEN_CHARS = 1000
LONG_SENTENCE_TOKENS = 2000
MISSING_VALUE_LOOKALIKES = ("NaN", "NA", "null", "None", "nan", "#N/A", "N/A", "NULL", "n/a", "-", "<NA>")


@dataclass(frozen=True)
class CorpusFile:
    """Bytes of a corpus file as a test writes it, how many data rows it holds, and the encoding to read it with."""

    content: bytes
    data_rows: int = 0
    name: str = "ner_dataset.csv"
    encoding: str = "latin-1"

    def write(self, folder: Path) -> Path:
        path = folder / self.name
        path.write_bytes(self.content)
        return path


def csv_file(*lines: str, newline: str = "\n", file_encoding: str = "latin-1", encoding: str = "latin-1",
             final_newline: bool = True, name: str = "ner_dataset.csv") -> CorpusFile:
    """A corpus file from its lines (the first is the header); every later line is one data row."""
    text = newline.join(lines) + (newline if final_newline else "")
    return CorpusFile(text.encode(file_encoding), len(lines) - 1, name, encoding)


def zipped(members: dict[str, bytes], name: str = "ner_dataset.csv.zip") -> bytes:
    """A zip archive holding the given members."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for member, content in members.items():
            archive.writestr(member, content)
    return buffer.getvalue()


def row(sentence: int | None, word: str, pos: str = "NN", tag: str = "O") -> str:
    """One CSV data row; ``sentence`` only on the first row of a sentence, as in the Kaggle file."""
    return f"{'' if sentence is None else f'Sentence: {sentence}'},{word},{pos},{tag}"


GOOD = (HEADER, row(1, "Thousands"), row(None, "marched"), row(2, "London", "NNP", "B-geo"), row(None, "."))
GOOD_BYTES = csv_file(*GOOD).content


def read(corpus: CorpusFile, folder: Path) -> tuple[Path, list[Sentence], CorpusReport]:
    """Write the file into ``folder`` (created) and read it with the file's configured encoding."""
    folder.mkdir(exist_ok=True)
    path = corpus.write(folder)
    sentences, report = read_corpus(path, corpus.encoding)
    return path, sentences, report


def words(sentences: list[Sentence]) -> list[list[str]]:
    return [s.words for s in sentences]


# --- odd but usable files: (file, tokens it must yield); blank lines are the other data rows ----------------------

ACCEPTED = {
    "blank-lines-between-rows": (csv_file(HEADER, row(1, "a"), "", row(None, "b"), "", row(2, "c")), 3),
    "row-of-empty-fields": (csv_file(HEADER, row(1, "a"), ",,,", row(2, "c")), 2),
    "whitespace-only-line": (csv_file(HEADER, row(1, "a"), "   ", row(2, "c")), 2),
    "blank-lines-at-the-end": (csv_file(HEADER, row(1, "a"), "", ""), 1),
    "quoted-comma-word": (csv_file(HEADER, row(1, "Hello"), ',",",",",O', row(None, "world")), 3),
    "doubled-quote-word": (csv_file(HEADER, row(1, "said"), ',"""",``,O'), 2),
    "crlf-line-endings": (csv_file(*GOOD, newline="\r\n"), 4),
    "cr-line-endings": (csv_file(*GOOD, newline="\r"), 4),
    "no-final-newline": (csv_file(*GOOD, final_newline=False), 4),
    "extra-columns": (csv_file(HEADER + ",Source,Note", row(1, "a") + ",web,x", row(None, "b") + ",web,"), 2),
    "extra-column-value-absent": (csv_file(HEADER + ",Source", row(1, "a") + ",web", row(None, "b")), 2),
    "reordered-columns": (csv_file("Word,Tag,Sentence #,POS", "a,O,Sentence: 1,NN", "b,B-geo,,NNP"), 2),
    "spaces-around-column-names": (csv_file(" Sentence # , Word ,POS, Tag", row(1, "a")), 1),
    "long-token": (csv_file(HEADER, row(1, "x" * LONG_TOKEN_CHARS)), 1),
    "long-sentence": (csv_file(HEADER, row(1, "w0"), *(row(None, f"w{i}") for i in range(1, LONG_SENTENCE_TOKENS))),
                      LONG_SENTENCE_TOKENS),
    "missing-value-lookalike-words": (
        csv_file(HEADER, row(1, "start"), *(row(None, w) for w in MISSING_VALUE_LOOKALIKES)),
        1 + len(MISSING_VALUE_LOOKALIKES),
    ),
    "out-of-order-sentence-ids": (csv_file(HEADER, row(2, "b"), row(10, "c"), row(1, "a")), 3),
    "sentence-id-on-every-row": (csv_file(HEADER, row(1, "a"), row(1, "b"), row(2, "c"), row(2, "d")), 4),
    "i-tag-after-o": (csv_file(HEADER, row(1, "in"), row(None, "Paris", "NNP", "I-geo")), 2),
    "i-tag-after-another-type": (csv_file(HEADER, row(1, "Obama", "NNP", "B-per"), row(None, "Paris", "NNP", "I-geo")),
                                 2),
    "empty-pos": (csv_file(HEADER, row(1, "a", pos="")), 1),
    "latin-1-accents": (csv_file(HEADER, row(1, "Zürich", "NNP", "B-geo")), 1),
    "utf-8-configured-and-used": (csv_file(HEADER, row(1, "Zürich"), file_encoding="utf-8", encoding="utf-8"), 1),
    "utf-8-byte-order-mark": (csv_file("\ufeff" + HEADER, row(1, "a"), file_encoding="utf-8", encoding="utf-8"), 1),
    "next-line-character-word": (csv_file(HEADER, row(1, "said"), row(None, "\x85", '","')), 2),  # in the real corpus
    "zip-archive": (CorpusFile(zipped({"ner_dataset.csv": GOOD_BYTES}), 4, "ner_dataset.csv.zip"), 4),
    "zip-renamed-to-csv": (CorpusFile(zipped({"ner_dataset.csv": GOOD_BYTES}), 4, "ner_dataset.csv"), 4),
    "zip-with-macos-metadata": (CorpusFile(zipped({"ner_dataset.csv": GOOD_BYTES, "__MACOSX/._ner_dataset.csv": b"\0"}),
                                           4, "ner_dataset.csv.zip"), 4),
}


@pytest.mark.parametrize("corpus, tokens", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_odd_file_accounts_for_every_row_as_a_token_or_a_blank_line(corpus, tokens, tmp_path):
    _, sentences, report = read(corpus, tmp_path)
    assert report.rows == corpus.data_rows
    assert sum(len(s) for s in sentences) == report.tokens == tokens
    assert report.blank_lines == corpus.data_rows - tokens


def test_missing_value_lookalike_words_are_kept_verbatim(tmp_path):
    _, sentences, _ = read(ACCEPTED["missing-value-lookalike-words"][0], tmp_path)
    assert sentences[0].words == ["start", *MISSING_VALUE_LOOKALIKES]


def test_only_the_sentence_column_is_carried_down_to_the_rows_below(tmp_path):
    corpus = csv_file(HEADER, row(1, "Mr.", "NNP", "B-per"), row(None, "NaN", ""), row(None, "NA", "NNP", "I-per"))
    _, sentences, _ = read(corpus, tmp_path)
    assert [(s.sentence_id, s.words, s.pos) for s in sentences] == [("Sentence: 1", ["Mr.", "NaN", "NA"],
                                                                     ["NNP", "", "NNP"])]


def test_tiny_corpus_keeps_nan_and_na_words_that_pandas_would_drop(tmp_path):
    path = write_tiny_corpus(tmp_path / "ner_dataset.csv")
    sentences, _ = read_corpus(path)
    kept = {w for s in sentences for w in s.words}
    pandas_words = set(pd.read_csv(path, encoding="latin-1")["Word"].dropna())
    assert {"NaN", "NA"} <= kept and not {"NaN", "NA"} <= pandas_words


def test_quoted_comma_is_one_word(tmp_path):
    _, sentences, _ = read(ACCEPTED["quoted-comma-word"][0], tmp_path)
    assert sentences[0].words == ["Hello", ",", "world"] and sentences[0].pos[1] == ","


def test_doubled_quote_is_a_quote_word(tmp_path):
    _, sentences, _ = read(ACCEPTED["doubled-quote-word"][0], tmp_path)
    assert sentences[0].words == ["said", '"']


@pytest.mark.parametrize("newline", ["\r\n", "\r"], ids=["crlf", "cr"])
def test_line_endings_do_not_change_what_is_read(newline, tmp_path):
    _, expected, _ = read(csv_file(*GOOD), tmp_path / "lf")
    _, sentences, _ = read(csv_file(*GOOD, newline=newline), tmp_path / "other")
    assert sentences == expected and all("\r" not in w for s in sentences for w in s.words + s.tags)


def test_sentence_id_repeated_on_every_row_reads_like_the_id_on_first_rows_only(tmp_path):
    _, sparse, _ = read(csv_file(HEADER, row(1, "a"), row(None, "b"), row(2, "c"), row(None, "d")), tmp_path / "sparse")
    _, filled, _ = read(ACCEPTED["sentence-id-on-every-row"][0], tmp_path / "filled")
    assert filled == sparse


def test_out_of_order_sentence_ids_keep_their_rows(tmp_path):
    _, sentences, _ = read(ACCEPTED["out-of-order-sentence-ids"][0], tmp_path)
    assert {s.sentence_id: s.words for s in sentences} == {"Sentence: 2": ["b"], "Sentence: 10": ["c"],
                                                           "Sentence: 1": ["a"]}


@pytest.mark.parametrize("case", ["i-tag-after-o", "i-tag-after-another-type"])
def test_i_tag_that_starts_an_entity_is_kept_and_reported_with_its_line(case, tmp_path):
    path, sentences, report = read(ACCEPTED[case][0], tmp_path)
    assert sentences[0].tags[-1] == "I-geo"
    assert len(report.warnings) == 1 and report.warnings[0].startswith(f"{path}:3: I-geo follows ")


def test_row_without_pos_is_kept_and_reported(tmp_path):
    path, sentences, report = read(ACCEPTED["empty-pos"][0], tmp_path)
    assert sentences[0].pos == [""] and report.warnings == [f"{path}:2: word 'a' has no POS tag (kept, empty)"]


def test_long_token_and_long_sentence_are_kept_whole(tmp_path):
    _, token, _ = read(ACCEPTED["long-token"][0], tmp_path / "token")
    _, sentence, report = read(ACCEPTED["long-sentence"][0], tmp_path / "sentence")
    assert len(token[0].words[0]) == LONG_TOKEN_CHARS
    assert len(sentence[0]) == LONG_SENTENCE_TOKENS and report.length_quantiles["max"] == LONG_SENTENCE_TOKENS


def test_extra_columns_are_ignored_and_reported(tmp_path):
    _, sentences, report = read(ACCEPTED["extra-columns"][0], tmp_path)
    assert report.extra_columns == ["Source", "Note"] and sentences[0].words == ["a", "b"]


def test_utf8_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    _, sentences, _ = read(ACCEPTED["utf-8-byte-order-mark"][0], tmp_path)
    assert sentences[0].sentence_id == "Sentence: 1"


def test_configured_encoding_is_honoured(tmp_path):
    _, latin, _ = read(ACCEPTED["latin-1-accents"][0], tmp_path / "latin")
    _, utf, _ = read(ACCEPTED["utf-8-configured-and-used"][0], tmp_path / "utf")
    assert latin[0].words == utf[0].words == ["Zürich"]


# --- unusable files: (file, line the message must name or None for a whole-file problem, what it must say) ------

def bad_zip() -> bytes:
    return zipped({"ner_dataset.csv": GOOD_BYTES})[:-30]


REJECTED = {
    "empty-file": (CorpusFile(b""), 1, "the file is empty"),
    "only-blank-lines": (CorpusFile(b"\n \n\r\n"), 1, "the file is empty"),
    "header-only": (csv_file(HEADER), 2, "no data rows after the header"),
    "header-and-blank-lines": (csv_file(HEADER, "", ""), 2, "no data rows after the header (only 2 blank lines)"),
    "blank-line-before-header": (csv_file("", HEADER, row(1, "a")), 1, "blank line where the header belongs"),
    "missing-column": (csv_file("Sentence #,Word,Tag", "Sentence: 1,a,O"), 1, "missing column(s) POS"),
    "renamed-column": (csv_file("Sentence,Word,POS,Tag", "Sentence: 1,a,NN,O"), 1, "missing column(s) Sentence #"),
    "column-name-in-other-case": (csv_file("Sentence #,word,POS,Tag", row(1, "a")), 1, "'word' should be 'Word'"),
    "semicolon-delimiter": (csv_file(HEADER.replace(",", ";"), "Sentence: 1;a;NN;O"), 1, "no commas but ';'"),
    "duplicated-column": (csv_file(HEADER + ",Word", row(1, "a") + ",b"), 1, "column 'Word' appears 2 times"),
    "not-a-csv": (csv_file("<!DOCTYPE html>", "<html><body>Sign in to Kaggle</body></html>"), 1,
                  "is this the Kaggle ner_dataset.csv?"),
    "row-without-tag-field": (
        csv_file(HEADER, row(1, "a"), ",b,NN"), 3, "row has 3 fields but the header has 4: no value for Tag"
    ),
    "row-with-empty-tag": (csv_file(HEADER, row(1, "a"), ",b,NN,"), 3, "row has no tag (word 'b')"),
    "tag-outside-bio": (csv_file(HEADER, row(1, "Paris", "NNP", "GEO")), 2, "tag 'GEO' is not in the BIO scheme"),
    "lowercase-bio-tag": (csv_file(HEADER, row(1, "Paris", "NNP", "b-geo")), 2, "tag 'b-geo' is not in the BIO"),
    "tag-without-type": (csv_file(HEADER, row(1, "Paris", "NNP", "B-")), 2, "tag 'B-' is not in the BIO scheme"),
    "unquoted-comma-in-word": (
        csv_file(HEADER, row(1, "a"), ",1,000,CD,O"), 3,
        "row has 5 fields but the header has 4: a word that contains a comma must be quoted",
    ),
    "duplicated-sentence-id": (csv_file(HEADER, row(1, "a"), row(2, "b"), row(1, "c")), 4,
                               "sentence id 'Sentence: 1' was already used at line 2"),
    "first-row-without-sentence-id": (csv_file(HEADER, row(None, "a")), 2, "the first data row has no sentence id"),
    "empty-word": (csv_file(HEADER, row(1, "a"), ",,NN,O"), 3, "empty word in sentence 'Sentence: 1'"),
    "quoted-empty-word": (csv_file(HEADER, row(1, "a"), ',"",NN,O'), 3, "empty word in sentence 'Sentence: 1'"),
    "quote-never-closed": (csv_file(HEADER, row(1, "a"), ',"b,NN,O', row(None, "c"), row(2, "d")), 3,
                           "a quoted field that starts on this line is never closed"),
    "text-after-closing-quote": (csv_file(HEADER, row(1, "a"), ',"b"c,NN,O'), 3,
                                 "a '\"' inside a quoted field must be doubled"),
    "line-break-inside-quoted-word": (
        csv_file(HEADER, row(1, "a"), ',"b', 'c",NN,O', row(2, "d")), 3,
        "holds a line break, which a token cannot hold (one quoted field spans lines 3-4",
    ),
    "tab-inside-word": (csv_file(HEADER, row(1, "a\tb")), 2, "the Word field 'a\\tb' holds a tab"),
    "latin-1-bytes-with-utf-8-configured": (csv_file(HEADER, row(1, "a"), row(None, "Zürich"), encoding="utf-8"), 3,
                                            "bytes b'\\xfc' are not valid utf-8"),
    "utf-8-file-with-latin-1-configured": (csv_file(HEADER, row(1, "a"), row(None, "Zürich"), file_encoding="utf-8"),
                                           3, "the file is UTF-8 but corpus.encoding is 'latin-1'"),
    "unknown-encoding": (csv_file(*GOOD, encoding="latin-42"), None, "unknown text encoding 'latin-42'"),
    "binary-file": (CorpusFile(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), 3, "NUL character"),
    "gzip-file": (CorpusFile(gzip.compress(GOOD_BYTES)), 1, "the file is gzip-compressed"),
    "bad-tag-after-blank-lines-in-crlf-file": (
        csv_file(HEADER, row(1, "a"), "", row(2, "b"), "", row(None, "c", tag="X"), newline="\r\n"), 6,
        "tag 'X' is not in the BIO scheme",
    ),
    "zip-without-csv": (CorpusFile(zipped({"README.txt": b"hello"}), name="ner_dataset.csv.zip"), None,
                        "holds 0: README.txt"),
    "zip-with-two-csvs": (CorpusFile(zipped({"a.csv": GOOD_BYTES, "b.csv": GOOD_BYTES}), name="ner_dataset.csv.zip"),
                          None, "holds 2: a.csv, b.csv"),
    "corrupt-zip": (CorpusFile(bad_zip(), name="ner_dataset.csv.zip"), None, "not a readable zip archive"),
}


@pytest.mark.parametrize("corpus, line, problem", REJECTED.values(), ids=REJECTED.keys())
def test_bad_file_is_refused_naming_the_file_the_line_and_the_problem(corpus, line, problem, tmp_path):
    path = corpus.write(tmp_path)
    with pytest.raises(CorpusError) as caught:
        read_corpus(path, corpus.encoding)
    location = f"{path}: " if line is None else f"{path}:{line}: "
    assert str(caught.value).startswith(location)
    assert problem in str(caught.value)


def test_message_quotes_a_huge_bad_value_only_in_part(tmp_path):
    corpus = csv_file(HEADER, row(1, "a", tag="Z" * 100_000))
    with pytest.raises(CorpusError) as caught:
        read_corpus(corpus.write(tmp_path))
    assert len(str(caught.value)) < 500


# --- the split ---------------------------------------------------------------------------------------------------

def numbered(count: int) -> list[Sentence]:
    return [Sentence(f"Sentence: {n}", [f"w{n}"], ["NN"], ["O"]) for n in range(1, count + 1)]


def test_notebook_order_sorts_sentence_ids_as_strings():
    ordered = [s.sentence_id for s in notebook_order(numbered(10))]
    assert ordered.index("Sentence: 1") < ordered.index("Sentence: 10") < ordered.index("Sentence: 2")


def test_notebook_order_is_pandas_groupby_order():
    sentences = numbered(25)
    frame = pd.DataFrame({"Sentence #": [s.sentence_id for s in sentences]})
    assert [s.sentence_id for s in notebook_order(sentences)] == list(frame.groupby("Sentence #").groups)


def test_test_split_is_the_notebooks_split():
    sentences = numbered(100)
    _, expected = train_test_split(notebook_order(sentences), test_size=0.1, random_state=2018)
    assert split_corpus(sentences, 0.1, 2018, 0.1, 42)["test"] == expected


def test_split_sizes_sum_to_the_total_and_splits_do_not_overlap():
    splits = split_corpus(numbered(97), 0.1, 2018, 0.1, 42)
    ids = [s.sentence_id for members in splits.values() for s in members]
    assert sum(len(m) for m in splits.values()) == len(ids) == len(set(ids)) == 97


def test_too_few_sentences_to_split_is_refused():
    with pytest.raises(CorpusError, match="at least 3 sentences"):
        split_corpus(numbered(2), 0.1, 2018, 0.1, 42)
