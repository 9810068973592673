"""Specification of the corpus-style tokenizer (pipeline/tokenize.py).

The tokens must look like those of the Kaggle GMB "Annotated Corpus for Named
Entity Recognition" (ner_dataset.csv) and must always slice back exactly out
of the original text.
"""

import itertools

import pytest

from pipeline.tokenize import (
    ABBREVIATIONS,
    MAX_PARAGRAPH_CHARS,
    Token,
    iter_sentences,
    read_pretokenized,
    split_sentences,
    tokenize,
)


def texts(text):
    return [token.text for token in tokenize(text)]


def sentence_texts(text):
    return [[token.text for token in sentence] for sentence in split_sentences(text)]


VARIED_TEXTS = [
    "Meanwhile, in Belgrade, Serbia's extreme nationalist Radical Party has filed a motion.",
    "He said: \"Don't go!\" -- then left... (quietly) [really] {yes}",
    "“Curly quotes” and ‘single ones’ and ``PTB quotes'' too.",
    "Kırklareli, São Paulo, Zürich, Ωmega, 北京 and हिन्दी.",
    "Emoji 😀👍🏽 and a family 👨‍👩‍👧 and flags 🇺🇸!",
    "Control\x00chars\x07 and\x1b[0m escapes\u200b zero-width.",
    "Prices: $100, €5.50, 10%, 1,000 troops at 10:30 on 2008-09-10.",
    "  \n\t leading and trailing whitespace \r\n ",
    "Decomposed cafe\u0301 and odd ~`^|\\@#&*+=<> symbols",
    "Mr. J. Smith of the U.S.-led Inc. said e.g. 24-year-old's parents' car.",
]


# --------------------------------------------------------------------------
# Token and offsets
# --------------------------------------------------------------------------


def test_token_is_immutable():
    token = Token("Serbia", 0, 6)
    with pytest.raises(AttributeError):
        token.text = "Iraq"


def test_token_offsets_point_into_the_original_text():
    text = "  Hello,\n world  "
    assert tokenize(text) == [
        Token("Hello", 2, 7),
        Token(",", 7, 8),
        Token("world", 10, 15),
    ]


@pytest.mark.parametrize("text", VARIED_TEXTS)
def test_every_token_slices_back_out_of_the_original_text(text):
    for token in tokenize(text):
        assert text[token.start : token.end] == token.text


@pytest.mark.parametrize("text", VARIED_TEXTS)
def test_nothing_but_whitespace_is_ever_dropped(text):
    without_whitespace = "".join(char for char in text if not char.isspace())
    assert "".join(texts(text)) == without_whitespace


@pytest.mark.parametrize("text", VARIED_TEXTS)
def test_no_token_contains_whitespace_or_is_empty(text):
    for token in tokenize(text):
        assert token.text
        assert not any(char.isspace() for char in token.text)


def test_empty_text_has_no_tokens():
    assert tokenize("") == []
    assert tokenize(" \n\t ") == []


# --------------------------------------------------------------------------
# Clitics
# --------------------------------------------------------------------------


def test_possessive_s_is_split_off():
    assert texts("Serbia's") == ["Serbia", "'s"]


def test_negation_nt_is_split_off_ptb_style():
    assert texts("don't") == ["do", "n't"]
    assert texts("can't") == ["ca", "n't"]


@pytest.mark.parametrize(
    "word, expected",
    [
        ("they're", ["they", "'re"]),
        ("we'll", ["we", "'ll"]),
        ("I've", ["I", "'ve"]),
        ("she'd", ["she", "'d"]),
        ("I'm", ["I", "'m"]),
    ],
)
def test_contraction_clitics_are_split_off(word, expected):
    assert texts(word) == expected


def test_clitics_are_recognised_in_any_case():
    assert texts("DON'T") == ["DO", "N'T"]
    assert texts("SERBIA'S") == ["SERBIA", "'S"]
    assert texts("They'RE") == ["They", "'RE"]


def test_plural_possessive_apostrophe_is_its_own_token():
    assert texts("parents' house") == ["parents", "'", "house"]


def test_typographic_apostrophe_clitic_is_split_off_too():
    assert texts("Serbia\u2019s") == ["Serbia", "\u2019s"]


def test_apostrophe_inside_a_name_is_kept():
    assert texts("O'Neill's") == ["O'Neill", "'s"]


# --------------------------------------------------------------------------
# Abbreviations
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "abbreviation",
    ["U.S.", "U.N.", "Mr.", "Dr.", "Jan.", "St.", "Inc.", "Corp.", "Gen.",
     "Sen.", "Lt.", "e.g."],
)
def test_abbreviation_keeps_its_period_inside_the_middle_of_a_sentence(abbreviation):
    assert texts(f"the {abbreviation} word") == ["the", abbreviation, "word"]


def test_every_listed_abbreviation_stays_one_token():
    for abbreviation in ABBREVIATIONS:
        assert texts(f"x {abbreviation} y") == ["x", abbreviation, "y"], abbreviation


def test_single_capital_initial_keeps_its_period():
    assert texts("J. Smith") == ["J.", "Smith"]


def test_sentence_final_abbreviation_keeps_its_period_without_an_extra_dot_token():
    assert texts("He flew to the U.S.") == ["He", "flew", "to", "the", "U.S."]


def test_a_second_period_after_an_abbreviation_is_a_separate_token():
    assert texts("He flew to the U.S..") == ["He", "flew", "to", "the", "U.S.", "."]


def test_ordinary_word_before_a_period_is_not_an_abbreviation():
    assert texts("He went home.") == ["He", "went", "home", "."]


# --------------------------------------------------------------------------
# Punctuation
# --------------------------------------------------------------------------


@pytest.mark.parametrize("mark", list(",;:!?()[]{}\""))
def test_punctuation_mark_is_split_off_a_word(mark):
    assert texts(f"word{mark}word") == ["word", mark, "word"]


def test_sentence_final_period_is_split_off():
    assert texts("in Iraq.") == ["in", "Iraq", "."]


def test_ptb_style_quotes_are_single_tokens():
    assert texts("``Yes,'' he said") == ["``", "Yes", ",", "''", "he", "said"]


def test_curly_quotes_are_their_own_tokens():
    assert texts("“Yes”") == ["“", "Yes", "”"]


def test_double_dash_is_one_token():
    assert texts("wait--no") == ["wait", "--", "no"]


def test_ellipsis_is_one_token():
    assert texts("well... no") == ["well", "...", "no"]


def test_unknown_symbol_becomes_a_one_char_token():
    assert texts("a@b#c") == ["a", "@", "b", "#", "c"]
    assert texts("ok😀") == ["ok", "😀"]


# --------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["1,000", "3.5", "2008", "1,000,000", "10:30", "2008-09-10"])
def test_number_stays_one_token(number):
    assert texts(f"about {number} people") == ["about", number, "people"]


def test_currency_symbol_is_split_from_the_amount():
    assert texts("$100") == ["$", "100"]


def test_percent_sign_is_split_from_the_number():
    assert texts("10%") == ["10", "%"]


def test_number_before_a_comma_or_final_period_loses_the_punctuation():
    assert texts("In 2008, it cost 1,000.") == ["In", "2008", ",", "it", "cost", "1,000", "."]


# --------------------------------------------------------------------------
# Hyphenated words and non-ASCII letters
# --------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["state-run", "al-Qaida", "U.S.-led", "24-year-old"])
def test_hyphenated_word_stays_one_token(word):
    assert texts(f"a {word} group") == ["a", word, "group"]


def test_non_ascii_letters_are_word_characters():
    assert texts("Kırklareli and São Paulo") == ["Kırklareli", "and", "São", "Paulo"]


def test_combining_marks_stay_inside_their_word():
    assert texts("cafe\u0301 au lait") == ["cafe\u0301", "au", "lait"]


# --------------------------------------------------------------------------
# Size limits
# --------------------------------------------------------------------------


def test_very_long_word_stays_one_token():
    word = "a" * 1000
    assert texts(f"x {word} y") == ["x", word, "y"]


def test_five_hundred_token_sentence_stays_one_sentence():
    text = " ".join(["word"] * 499) + "."
    sentences = split_sentences(text)
    assert len(sentences) == 1
    assert len(sentences[0]) == 500


# --------------------------------------------------------------------------
# Corpus examples
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, corpus",
    [
        (
            "Meanwhile, in Belgrade, Serbia's extreme nationalist Radical Party has filed a motion.",
            "Meanwhile , in Belgrade , Serbia 's extreme nationalist Radical Party has filed a motion .",
        ),
        (
            "Thousands of demonstrators have marched through London to protest the war in Iraq "
            "and demand the withdrawal of British troops from that country.",
            "Thousands of demonstrators have marched through London to protest the war in Iraq "
            "and demand the withdrawal of British troops from that country .",
        ),
        (
            "Iranian officials say they expect to get access to sealed sensitive parts of the "
            "plant Wednesday, after an IAEA surveillance system begins functioning.",
            "Iranian officials say they expect to get access to sealed sensitive parts of the "
            "plant Wednesday , after an IAEA surveillance system begins functioning .",
        ),
        (
            "The U.S.-led coalition says a 24-year-old soldier didn't survive the attack.",
            "The U.S.-led coalition says a 24-year-old soldier did n't survive the attack .",
        ),
    ],
)
def test_raw_sentence_tokenizes_like_the_corpus(raw, corpus):
    assert texts(raw) == corpus.split()


def test_demonstrators_sentence_has_24_tokens():
    raw = (
        "Thousands of demonstrators have marched through London to protest the war in Iraq "
        "and demand the withdrawal of British troops from that country."
    )
    assert len(tokenize(raw)) == 24


# --------------------------------------------------------------------------
# Sentence splitting
# --------------------------------------------------------------------------


def test_empty_or_whitespace_only_text_has_no_sentences():
    assert split_sentences("") == []
    assert split_sentences("  \n\t ") == []


def test_text_splits_after_a_period_before_an_uppercase_word():
    assert sentence_texts("It rained. We stayed.") == [["It", "rained", "."], ["We", "stayed", "."]]


def test_text_splits_after_question_and_exclamation_marks():
    assert sentence_texts("Why? Because! Fine.") == [["Why", "?"], ["Because", "!"], ["Fine", "."]]


def test_text_splits_before_a_digit_or_an_opening_quote():
    assert sentence_texts('It ended. 2008 was bad. "Yes," he said.') == [
        ["It", "ended", "."],
        ["2008", "was", "bad", "."],
        ['"', "Yes", ",", '"', "he", "said", "."],
    ]


def test_closing_quote_after_the_period_stays_in_the_sentence():
    assert sentence_texts('He said "no." Then he left.') == [
        ["He", "said", '"', "no", ".", '"'],
        ["Then", "he", "left", "."],
    ]


def test_closing_bracket_after_the_period_stays_in_the_sentence():
    assert sentence_texts("(It rained.) We stayed.") == [
        ["(", "It", "rained", ".", ")"],
        ["We", "stayed", "."],
    ]


def test_no_split_before_a_lowercase_word():
    assert len(split_sentences("It rained. we stayed.")) == 1


def test_no_split_without_whitespace_after_the_period():
    assert len(split_sentences("It rained.We stayed.")) == 1


def test_no_split_after_a_title_abbreviation():
    assert len(split_sentences("Mr. Smith met Dr. Jones.")) == 1


def test_no_split_after_an_initial():
    assert len(split_sentences("George W. Bush spoke.")) == 1


def test_no_split_after_a_multi_period_abbreviation():
    assert len(split_sentences("The U.S. Army left.")) == 1


def test_newlines_inside_a_paragraph_are_ordinary_whitespace():
    assert sentence_texts("The war in\nIraq ended.\nPeace came.") == [
        ["The", "war", "in", "Iraq", "ended", "."],
        ["Peace", "came", "."],
    ]


def test_sentence_tokens_keep_offsets_into_the_whole_text():
    text = "It rained. We stayed."
    second = split_sentences(text)[1]
    assert second[0] == Token("We", 11, 13)


# --------------------------------------------------------------------------
# Streaming raw text
# --------------------------------------------------------------------------


def test_iter_sentences_yields_each_sentence_with_its_text():
    lines = ["It rained. We\n", "stayed home.\n"]
    assert [text for text, _ in iter_sentences(lines)] == ["It rained.", "We\nstayed home."]


def test_iter_sentences_offsets_are_relative_to_the_yielded_text():
    for text, tokens in iter_sentences(["Intro.\n", "Then Serbia's  party   won.\n"]):
        for token in tokens:
            assert text[token.start : token.end] == token.text
        assert tokens[0].start == 0
        assert tokens[-1].end == len(text)


def test_blank_line_ends_a_sentence_even_without_a_period():
    lines = ["a heading without period\n", "\n", "the body text.\n"]
    assert [text for text, _ in iter_sentences(lines)] == [
        "a heading without period",
        "the body text.",
    ]


def test_repeated_blank_lines_produce_no_empty_sentences():
    lines = ["\n", "One.\n", "\n", "   \n", "\n", "Two.\n", "\n"]
    assert [text for text, _ in iter_sentences(lines)] == ["One.", "Two."]


def test_lines_without_line_breaks_do_not_fuse_into_one_word():
    assert [t.text for _, tokens in iter_sentences(["New", "York"]) for t in tokens] == [
        "New",
        "York",
    ]


def test_iter_sentences_does_not_read_the_whole_input_first():
    endless_paragraphs = itertools.cycle(["It rained.\n", "\n"])
    text, _ = next(iter_sentences(endless_paragraphs))
    assert text == "It rained."


def test_endless_paragraph_is_cut_at_a_sentence_boundary():
    endless_lines = itertools.repeat("It rained in Belgrade. We stayed\n")
    sentences = iter_sentences(endless_lines)
    first_texts = [text for text, _ in itertools.islice(sentences, 5)]
    assert first_texts[:2] == ["It rained in Belgrade.", "We stayed\nIt rained in Belgrade."]


def test_cutting_a_long_paragraph_never_breaks_a_sentence():
    line = "It rained in Belgrade. We stayed\n"
    repeats = 3 * MAX_PARAGRAPH_CHARS // len(line)
    texts_ = [text for text, _ in iter_sentences([line] * repeats)]
    assert len(texts_) == repeats + 1
    assert set(texts_[1:-1]) == {"We stayed\nIt rained in Belgrade."}


def test_endless_paragraph_without_sentence_boundary_is_yielded_in_bounded_chunks():
    endless_lines = itertools.repeat("no boundary in this line\n")
    chunks = list(itertools.islice(iter_sentences(endless_lines), 3))
    assert len(chunks) == 3
    for text, tokens in chunks:
        assert len(text) <= 2 * MAX_PARAGRAPH_CHARS
        assert [t.text for t in tokens][:4] == ["no", "boundary", "in", "this"]


def test_iter_sentences_of_empty_input_yields_nothing():
    assert list(iter_sentences([])) == []
    assert list(iter_sentences(["\n", "  \n"])) == []


# --------------------------------------------------------------------------
# Pre-tokenized input
# --------------------------------------------------------------------------


def test_pretokenized_sentences_are_separated_by_blank_lines():
    lines = ["Serbia\n", "'s\n", "\n", "U.S.\n", ".\n"]
    assert list(read_pretokenized(lines)) == [["Serbia", "'s"], ["U.S.", "."]]


def test_only_the_first_column_of_a_pretokenized_line_is_the_token():
    lines = ["London B-geo\n", "protest\tO\textra\n"]
    assert list(read_pretokenized(lines)) == [["London", "protest"]]


def test_consecutive_blank_lines_do_not_create_empty_sentences():
    lines = ["\n", "a\n", "\n", "\n", "  \n", "b\n", "\n", "\n"]
    assert list(read_pretokenized(lines)) == [["a"], ["b"]]


def test_read_pretokenized_streams_its_input():
    endless = itertools.cycle(["a\n", "b\n", "\n"])
    assert next(read_pretokenized(endless)) == ["a", "b"]
