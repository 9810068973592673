"""The `ner` command line: `ner tag` (input sources, output formats, errors) and `ner check-corpus`."""
from __future__ import annotations

import argparse
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.cli import LARGE_INPUT_BYTES, build_parser, format_table, main, show_progress
from pipeline.tagger import TaggedSentence, tokens_from_words

from conftest import write_tiny_corpus
from test_tagger import stub_tagger

PROJECT = Path(__file__).resolve().parent.parent
NEWS = "Mr. Smith went to Paris on Monday. Officials met Angela Merkel in Berlin."
ANSI_ESCAPE = "\033["
ANSI_CODE = re.compile(r"\033\[[0-9;]*m")


@pytest.fixture(scope="module")
def run_dir(trained_run) -> Path:
    return trained_run


@pytest.fixture
def stub(monkeypatch):
    """Replace the trained run by the stand-in tagger of test_tagger (capitalised words are names, numbers nums),
    so output formats are checked against known entities."""
    monkeypatch.setattr("pipeline.cli.load_tagger",
                        lambda args: stub_tagger().with_options(batch_size=args.batch_size, decode=args.decode))


class Terminal(io.StringIO):
    """A stdout that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def ner(*args: str, stdin: str | None = None, monkeypatch=None) -> int:
    """Run `ner ARGS` in this process (stdin from ``stdin`` when given)."""
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    return main(list(args))


def run_ner(*args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run `python -m pipeline.cli ARGS` as a separate process, as a user would."""
    return subprocess.run([sys.executable, "-m", "pipeline.cli", *args], capture_output=True, text=True, cwd=PROJECT,
                          **kwargs)


# --- help -----------------------------------------------------------------------------------------------------------


def test_ner_help_lists_both_commands_and_answers_without_loading_tensorflow():
    result = run_ner("--help")
    assert result.returncode == 0
    assert "tag" in result.stdout and "check-corpus" in result.stdout
    probe = subprocess.run([sys.executable, "-c", "import sys, pipeline.cli; print('tensorflow' in sys.modules)"],
                           capture_output=True, text=True, cwd=PROJECT)
    assert probe.stdout.strip() == "False"


def test_ner_tag_help_explains_every_option(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["tag", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--file", "--run", "--pretokenized", "--format", "--batch-size", "--decode", "--encoding",
                   "--no-progress", "table", "conll", "jsonl", "bio_viterbi", "argmax", "results/ner"):
        assert option in text, option
    assert "Empty or whitespace-only input prints nothing and exits 0" in text
    tag_parser = build_parser()._subparsers._group_actions[0].choices["tag"]
    assert all(action.help for action in tag_parser._actions)


# --- tagging with the trained run -------------------------------------------------------------------------------------


def test_tagging_text_with_the_trained_run_as_a_separate_process(run_dir):
    result = run_ner("tag", "--run", str(run_dir), "--format", "jsonl", NEWS)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in records] == ["Mr. Smith went to Paris on Monday.",
                                            "Officials met Angela Merkel in Berlin."]
    tags = set(json.loads((run_dir / "tags.json").read_text()))
    assert all(len(r["tags"]) == len(r["tokens"]) and set(r["tags"]) <= tags for r in records)
    assert result.stderr == ""  # no progress bar for small piped input, TensorFlow's start-up logging hidden


def test_stdin_with_the_trained_run_prints_conll(run_dir, capsys, monkeypatch):
    assert ner("tag", "--run", str(run_dir), "--format", "conll", stdin=NEWS + "\n", monkeypatch=monkeypatch) == 0
    blocks = capsys.readouterr().out.split("\n\n")
    assert [line.split("\t")[0] for line in blocks[0].splitlines()] == ["Mr.", "Smith", "went", "to", "Paris", "on",
                                                                       "Monday", "."]


# --- output formats (stand-in tagger) -------------------------------------------------------------------------------


def test_jsonl_has_one_object_per_sentence_with_entities_that_slice_back(stub, capsys):
    assert ner("tag", "--format", "jsonl", NEWS) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(records) == 2 and set(records[0]) == {"text", "tokens", "tags", "entities"}
    entity = records[1]["entities"][1]
    assert set(entity) == {"text", "type", "start", "end", "token_start", "token_end", "confidence"}
    assert entity["confidence"] == round(entity["confidence"], 4)
    assert (entity["text"], entity["type"], entity["token_start"], entity["token_end"]) == ("Angela Merkel", "name",
                                                                                            2, 4)
    for record in records:
        assert all(record["text"][e["start"] : e["end"]] == e["text"] for e in record["entities"])


def test_conll_prints_word_tab_tag_with_a_blank_line_after_each_sentence(stub, capsys):
    assert ner("tag", "--format", "conll", NEWS) == 0
    out = capsys.readouterr().out
    assert out.endswith("\n\n") and out.count("\n\n") == 2
    first = [line.split("\t") for line in out.split("\n\n")[0].splitlines()]
    assert first[:2] == [["Mr.", "B-name"], ["Smith", "I-name"]]


def test_table_shows_word_and_prediction_columns_without_colour_when_piped(stub, capsys):
    assert ner("tag", NEWS) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["Word", "Pred"] and set(lines[1]) == {"="}
    assert lines[2].split() == ["Mr.", "B-name"] and ANSI_ESCAPE not in "".join(lines)


def test_table_colours_entity_tokens_on_a_terminal_unless_no_color(stub, monkeypatch):
    terminal = Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    assert main(["tag", "Mr. Smith went to Paris"]) == 0
    coloured = [line for line in terminal.getvalue().splitlines() if ANSI_ESCAPE in line]
    assert [ANSI_CODE.sub("", line).split()[0] for line in coloured] == ["Mr.", "Smith", "Paris"]
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys, "stdout", terminal := Terminal())
    assert main(["tag", "Mr. Smith went to Paris"]) == 0
    assert ANSI_ESCAPE not in terminal.getvalue()


def test_table_column_widens_for_long_words():
    text, tokens = tokens_from_words(["Supercalifragilisticexpialidocious", "x"])
    table = format_table(TaggedSentence(text, tokens, ["B-name", "O"]), colours=None)
    rows = table.splitlines()[2:4]
    assert rows[0].index("B-name") == rows[1].index("O")


# --- input sources ----------------------------------------------------------------------------------------------------


def test_a_file_of_pretokenized_conll_is_tagged_sentence_by_sentence(stub, capsys, tmp_path):
    path = tmp_path / "tokens.conll"
    path.write_text("Mr.\tNNP\nSmith\tNNP\n\n\nmet\nNATO\n")
    assert ner("tag", "--pretokenized", "--format", "jsonl", "--file", str(path)) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["tokens"] for r in records] == [["Mr.", "Smith"], ["met", "NATO"]]


def test_pretokenized_text_arguments_are_one_sentence_each(stub, capsys):
    assert ner("tag", "--pretokenized", "--format", "conll", "Mr. Smith", "met NATO .") == 0
    blocks = capsys.readouterr().out.strip("\n").split("\n\n")
    assert [[line.split("\t")[0] for line in b.splitlines()] for b in blocks] == [["Mr.", "Smith"],
                                                                                  ["met", "NATO", "."]]


def test_dash_reads_standard_input(stub, capsys, monkeypatch):
    assert ner("tag", "--format", "jsonl", "-", stdin="Paris is big.\n\nBerlin too.\n", monkeypatch=monkeypatch) == 0
    assert [json.loads(line)["text"] for line in capsys.readouterr().out.splitlines()] == ["Paris is big.",
                                                                                          "Berlin too."]


def test_empty_or_whitespace_input_prints_nothing_and_exits_0_without_a_model(capsys, monkeypatch, tmp_path):
    missing = str(tmp_path / "no-run")
    assert ner("tag", "--run", missing, stdin=" \n\n\t\n", monkeypatch=monkeypatch) == 0
    assert ner("tag", "--run", missing, "   ") == 0
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert ner("tag", "--run", missing, "--file", str(empty)) == 0
    assert capsys.readouterr() == ("", "")


# --- errors: one line, exit status 2, no traceback -------------------------------------------------------------------


def assert_error(capsys, *fragments: str) -> None:
    out, err = capsys.readouterr()
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    for fragment in fragments:
        assert fragment in err, (fragment, err)


def test_a_missing_run_directory_is_an_error_that_says_to_train(capsys, tmp_path):
    assert ner("tag", "--run", str(tmp_path / "no-run"), "Mr. Smith went to Paris") == 2
    assert_error(capsys, "no-run", "snakemake --cores all")


def test_a_missing_input_file_is_an_error(capsys, tmp_path):
    assert ner("tag", "--file", str(tmp_path / "missing.txt")) == 2
    assert_error(capsys, "missing.txt")


def test_binary_input_is_rejected_not_guessed_at(stub, capsys, tmp_path):
    path = tmp_path / "image.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    assert ner("tag", "--file", str(path)) == 2
    assert_error(capsys, "binary")
    assert ner("tag", "--file", str(path), "--encoding", "latin-1") == 2  # decodable, but NUL bytes are not text
    assert_error(capsys, "binary")


def test_text_in_another_encoding_is_an_error_naming_the_fix_and_tagged_with_encoding(stub, capsys, tmp_path):
    path = tmp_path / "latin1.txt"
    path.write_bytes("Paris est un café.\n".encode("latin-1"))
    assert ner("tag", "--file", str(path)) == 2
    assert_error(capsys, "utf-8", "--encoding latin-1")
    assert ner("tag", "--format", "conll", "--file", str(path), "--encoding", "latin-1") == 0
    assert "café\tO" in capsys.readouterr().out


def test_conflicting_input_sources_are_an_error(capsys, tmp_path):
    assert ner("tag", "--file", str(tmp_path / "a.txt"), "some text") == 2
    assert_error(capsys, "either")


def test_an_unexpected_failure_is_still_one_error_line(capsys, monkeypatch):
    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setattr("pipeline.cli.load_tagger", broken)
    assert ner("tag", "Mr. Smith") == 2
    assert_error(capsys, "unexpected RuntimeError: boom", "NER_DEBUG")


def test_bad_option_values_exit_2_with_usage(capsys):
    for args in (["tag", "--batch-size", "0", "x"], ["tag", "--format", "xml", "x"], ["tag", "--decode", "beam"]):
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 2
        assert "usage: ner tag" in capsys.readouterr().err


def test_progress_bar_shows_for_large_input_and_never_with_no_progress():
    options = argparse.Namespace(no_progress=False)
    assert show_progress(options, LARGE_INPUT_BYTES) is True
    assert show_progress(options, 10) is False  # pytest's stderr is not a terminal
    assert show_progress(argparse.Namespace(no_progress=True), LARGE_INPUT_BYTES) is False


# --- check-corpus ---------------------------------------------------------------------------------------------------


def test_check_corpus_summarises_a_good_file(capsys, tmp_path):
    path = write_tiny_corpus(tmp_path / "ner_dataset.csv", sentences=12)
    assert main(["check-corpus", str(path)]) == 0
    out = capsys.readouterr().out
    assert "sentences:  12" in out and "problems:   none" in out


def test_check_corpus_reports_a_bad_file_with_its_line(capsys, tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("Sentence #,Word,POS,Tag\nSentence: 1,Paris,NNP,B-geo\n,is,VBZ,X-bad\n", encoding="latin-1")
    assert main(["check-corpus", str(path)]) == 2
    assert_error(capsys, "bad.csv:3", "BIO")
    assert main(["check-corpus", str(tmp_path / "missing.csv")]) == 2
    assert_error(capsys, "not found")


CONLL_TEXT = "-DOCSTART- -X- O\n\nEU NNP B-ORG\nrejects VBZ O\n\nPeter NNP B-PER\nBlackburn NNP I-PER\n\n"


def test_check_corpus_reads_conll_files_by_their_name(capsys, tmp_path):
    train, test = tmp_path / "eng.train", tmp_path / "eng.testb"
    train.write_text(CONLL_TEXT, encoding="utf-8")
    test.write_text("Paris NNP B-LOC\n\n", encoding="utf-8")
    assert main(["check-corpus", str(train), str(test), "--pos-column", "1"]) == 0
    out = capsys.readouterr().out
    assert "sentences:  2" in out and "tags:       B-ORG=1, B-PER=1, I-PER=1, O=1" in out
    assert "sentences:  1" in out and "eng.testb" in out and "max=2" in out


def test_check_corpus_reports_a_bad_conll_line_and_goes_on(capsys, tmp_path):
    bad, good = tmp_path / "bad.txt", tmp_path / "good.txt"
    bad.write_text("Paris NNP B-LOC\nis VBZ X-bad\n\n", encoding="utf-8")
    good.write_text(CONLL_TEXT, encoding="utf-8")
    assert main(["check-corpus", str(bad), str(good)]) == 2
    captured = capsys.readouterr()
    assert "bad.txt:2: tag 'X-bad'" in captured.err and "sentences:  2" in captured.out
    assert main(["check-corpus", "--format", "conll", "--tag-column", "1", str(good)]) == 2  # NNP is no BIO tag
    assert_error(capsys, "good.txt:3", "corpus.tag_column")


def test_check_corpus_format_can_be_forced(capsys, tmp_path):
    path = write_tiny_corpus(tmp_path / "corpus.data", sentences=5)  # a Kaggle CSV under another name
    assert main(["check-corpus", "--format", "kaggle_csv", str(path)]) == 0
    assert "sentences:  5" in capsys.readouterr().out
