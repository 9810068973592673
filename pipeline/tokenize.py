"""Tokenize raw English text the way the GMB-derived Kaggle NER corpus was tokenized.

The tagger is trained on ``ner_dataset.csv`` (Penn-Treebank-like tokens such as
``Serbia 's``, ``do n't``, ``U.S.``, ``1,000``, ``state-run``).  Text seen at
prediction time must be cut the same way, otherwise the tagger meets token shapes
it never saw.  Every token also keeps character offsets into the *original*
text, so a predicted entity span can always be sliced back exactly:
``text[token.start:token.end] == token.text``.

Design guarantees:

* nothing but whitespace is ever dropped; an unknown symbol becomes its own
  one-character token;
* sentence splitting works on tokens, so a period that belongs to an
  abbreviation ("Mr.", "U.S.", "J.") can never end a sentence;
* the streaming readers never hold more than one paragraph (bounded by
  ``MAX_PARAGRAPH_CHARS``) or one sentence in memory.

Only the standard library is used, so this module can run anywhere the
pipeline's preprocessing runs.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Generator, Iterable, Iterator, NamedTuple

# --------------------------------------------------------------------------
# Named constants
# --------------------------------------------------------------------------

#: A paragraph longer than this is cut at its last sentence boundary so the
#: streaming reader's memory stays bounded even for text without blank lines.
MAX_PARAGRAPH_CHARS = 100_000

#: When a paragraph is cut, the unfinished last sentence is carried over to be
#: completed by the following lines, unless it is already longer than this;
#: then it is emitted as a chunk too (keeps the work per input char constant).
MAX_CARRIED_SENTENCE_CHARS = MAX_PARAGRAPH_CHARS // 2

#: Tokens that may end a sentence.
SENTENCE_TERMINALS = frozenset({".", "!", "?"})

#: Tokens that stay with the sentence they close when they directly follow a
#: terminal, e.g. the quote in ``He said "no." Then ...``.
CLOSING_PUNCTUATION = frozenset({'"', "''", "\u201d", "\u2019", "'", ")", "]", "}"})

#: Tokens that may open a new sentence besides an uppercase letter or a digit.
OPENING_QUOTES = frozenset({'"', "``", "\u201c", "\u2018", "'"})

#: Words whose trailing period is part of the word: it is kept inside the token
#: and never ends a sentence.  Matched case-sensitively so that ordinary words
#: at the end of a sentence ("the mass.") are not mistaken for them.
#: Multi-period forms ("U.S.", "e.g.") are also recognised generically, see
#: ``_ACRONYM``; they are listed here for completeness.
ABBREVIATIONS = frozenset(
    {
        # titles and ranks
        "Mr.", "Mrs.", "Ms.", "Dr.", "Prof.", "Sr.", "Jr.", "St.", "Rev.",
        "Hon.", "Gen.", "Sen.", "Rep.", "Gov.", "Pres.", "Lt.", "Col.",
        "Maj.", "Capt.", "Cmdr.", "Sgt.", "Adm.", "Cpl.", "Pvt.", "Amb.",
        # months
        "Jan.", "Feb.", "Mar.", "Apr.", "Jun.", "Jul.", "Aug.", "Sep.",
        "Sept.", "Oct.", "Nov.", "Dec.",
        # companies and places
        "Inc.", "Corp.", "Co.", "Ltd.", "Bros.", "Mt.", "Ft.", "Ave.",
        "Blvd.", "Dept.", "Univ.",
        # U.S. states whose abbreviation is not also an ordinary word
        "Ala.", "Ariz.", "Calif.", "Colo.", "Conn.", "Fla.", "Ga.", "Kan.",
        "Ky.", "Md.", "Mich.", "Minn.", "Nev.", "Okla.", "Tenn.", "Tex.",
        "Va.", "Wis.",
        # Latin and other lowercase forms
        "etc.", "vs.", "e.g.", "i.e.", "a.m.", "p.m.",
        # multi-period country and organisation names
        "U.S.", "U.N.", "U.K.", "E.U.",
    }
)

#: Stand-in for combining marks while matching, so that decomposed letters
#: ("e" + U+0301) and Indic vowel signs stay inside their word.  Any ASCII
#: letter works; it is only ever seen by the regular expression.
WORD_CHAR_STANDIN = "a"

# --------------------------------------------------------------------------
# Regular expressions (built from small named parts)
# --------------------------------------------------------------------------

_APOSTROPHE = "['\u2019]"
#: What follows the apostrophe in a clitic that PTB splits off ('s 're 've ...).
_CLITIC_TAIL = r"(?:s|re|ve|ll|d|m)"
#: "'s", "'re", ..., "n't" glued to the end of a word (case-insensitive).
_CLITIC = rf"(?<=[\w.])(?i:n{_APOSTROPHE}t|{_APOSTROPHE}{_CLITIC_TAIL})(?!\w)"

#: Letters each followed by a period: "U.S.", "U.N.", "e.g.", "a.m.".
_ACRONYM = r"(?:[^\W\d_]\.){2,}"
_KNOWN_ABBREVIATION = "(?:{})".format(
    "|".join(re.escape(a) for a in sorted(ABBREVIATIONS, key=len, reverse=True))
)
#: A single capital initial as in "J. Smith".
_INITIAL = r"[A-Z]\."
#: Numbers with inner separators stay whole: 1,000  3.5  10:30  3.5bn.
_NUMBER = r"\d+(?:[.,:]\d+)+\w*"
#: The stem before "n't": "do" in "don't", "ca" in "can't" (PTB convention).
_NEGATED_STEM = rf"\w+?(?=(?i:n{_APOSTROPHE}t)(?!\w))"
#: A run of word characters; inner apostrophes are kept ("O'Neill",
#: "d'Estaing") unless they start a clitic that must be split off.
_PLAIN_WORD = rf"\w+(?:{_APOSTROPHE}(?!(?i:{_CLITIC_TAIL})(?!\w))\w+)*"
_WORD_PIECE = (
    f"(?:{_ACRONYM}|{_KNOWN_ABBREVIATION}|{_INITIAL}|{_NUMBER}"
    f"|{_NEGATED_STEM}|{_PLAIN_WORD})"
)
#: Hyphenated compounds stay whole: "state-run", "U.S.-led", "2008-09-10".
_WORD = rf"{_WORD_PIECE}(?:-{_WORD_PIECE})*"
#: Multi-character punctuation that is one token in the corpus.
_MULTI_CHAR_PUNCTUATION = r"``|''|--|\.\.\."
#: Anything else that is not whitespace is a token of its own.
_ANY_SYMBOL = r"\S"

_TOKEN_RE = re.compile(
    "|".join((_CLITIC, _MULTI_CHAR_PUNCTUATION, _WORD, _ANY_SYMBOL))
)

#: One line of a text, with its ``\n`` (only ``\n`` ends a line, as in a file read in text mode).
_LINE_RE = re.compile(r"[^\n]*\n|[^\n]+")

#: Characters that might be combining marks: not word, not space, not ASCII.
_POSSIBLE_COMBINING_MARK_RE = re.compile(r"[^\w\s\x00-\x7f]")


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


class Token(NamedTuple):
    """One token and where it sits in the original text.

    Offsets (not just strings) are kept so that entity spans predicted on
    tokens can be mapped back to the exact characters of the input. A named
    tuple, not a frozen dataclass: every token of a streamed input is built
    twice (found, then rebased to its sentence), and a tuple is built about
    three times faster.
    """

    text: str
    start: int  # char offset in the original text
    end: int  # exclusive


def tokenize(text: str) -> list[Token]:
    """Split one piece of text into corpus-style tokens, without sentence splitting.

    ``text[t.start:t.end] == t.text`` holds for every token, and the tokens
    concatenated equal ``text`` with its whitespace removed.
    """
    matchable = _with_combining_marks_as_letters(text)
    return [
        Token(text[start:end], start, end)
        for start, end in (match.span() for match in _TOKEN_RE.finditer(matchable))
    ]


def split_sentences(text: str) -> list[list[Token]]:
    """Tokenize ``text`` and group the tokens into sentences.

    Offsets refer to ``text``.  Empty or whitespace-only text gives ``[]``.
    Newlines inside the text are ordinary whitespace.
    """
    tokens = tokenize(text)
    sentences = []
    sentence_start = 0
    for sentence_end in _sentence_ends(tokens):
        sentences.append(tokens[sentence_start:sentence_end])
        sentence_start = sentence_end
    if sentence_start < len(tokens):
        sentences.append(tokens[sentence_start:])
    return sentences


def paragraph_sentences(text: str) -> list[list[Token]]:
    """Sentences of a whole document, cut as :func:`iter_sentences` cuts a file: no sentence crosses a blank line.

    Offsets refer to ``text``. Why not :func:`split_sentences`: it reads newlines as spaces, so a heading without a
    full stop would run into the paragraph below it; ``ner tag --file`` and a document tagged from its text must
    give the same sentences.
    """
    sentences: list[list[Token]] = []
    for start, end in _paragraph_spans(text):
        for sentence in split_sentences(text[start:end]):
            sentences.append([Token(t.text, t.start + start, t.end + start) for t in sentence])
    return sentences


def iter_sentences(lines: Iterable[str]) -> Iterator[tuple[str, list[Token]]]:
    """Stream sentences from raw text lines (an open file, ``sys.stdin``, ...).

    Yields ``(sentence_text, tokens)`` where the tokens' offsets are relative
    to ``sentence_text``.  Input is processed paragraph by paragraph (a blank
    line ends a paragraph, and no sentence crosses it) so the whole input is
    never held in memory.  A paragraph growing beyond ``MAX_PARAGRAPH_CHARS`` is
    cut at its last sentence boundary; a sentence that alone exceeds
    ``MAX_CARRIED_SENTENCE_CHARS`` is yielded in chunks cut at line ends.
    """
    pending_lines: list[str] = []
    pending_chars = 0
    for line in lines:
        if _is_blank(line):
            if pending_lines:
                yield from _sentences_with_text("".join(pending_lines))
                pending_lines, pending_chars = [], 0
            continue
        line = _ending_with_line_break(line)
        pending_lines.append(line)
        pending_chars += len(line)
        if pending_chars >= MAX_PARAGRAPH_CHARS:
            carried = yield from _emit_all_but_unfinished_sentence(
                "".join(pending_lines)
            )
            pending_lines = [carried] if carried else []
            pending_chars = len(carried)
    if pending_lines:
        yield from _sentences_with_text("".join(pending_lines))


def read_pretokenized(lines: Iterable[str]) -> Iterator[list[str]]:
    """Stream sentences from CoNLL-like input: one token per line, blank line between sentences.

    Only the first whitespace-separated column is the token (tags and other
    columns are ignored).  Runs of blank lines never produce empty sentences.
    """
    sentence: list[str] = []
    for line in lines:
        columns = line.split()
        if columns:
            sentence.append(columns[0])
        elif sentence:
            yield sentence
            sentence = []
    if sentence:
        yield sentence


# --------------------------------------------------------------------------
# Tokenization helpers
# --------------------------------------------------------------------------


def _with_combining_marks_as_letters(text: str) -> str:
    """Return ``text`` with combining marks replaced by a letter, same length.

    Python's ``\\w`` does not cover combining marks, which would cut words such
    as a decomposed "é" or Hindi words apart.  Matching on this view keeps
    them whole while offsets still point into the original text.
    """
    if text.isascii():
        return text
    return _POSSIBLE_COMBINING_MARK_RE.sub(_letter_if_combining_mark, text)


def _letter_if_combining_mark(match: re.Match[str]) -> str:
    char = match.group()
    return WORD_CHAR_STANDIN if unicodedata.category(char).startswith("M") else char


# --------------------------------------------------------------------------
# Sentence-splitting helpers
# --------------------------------------------------------------------------


def _sentence_ends(tokens: list[Token]) -> Iterator[int]:
    """Yield the exclusive token index at which each sentence (but the last) ends."""
    index = 0
    while index < len(tokens):
        if tokens[index].text not in SENTENCE_TERMINALS:
            index += 1
            continue
        end = _after_attached_closers(tokens, index + 1)
        if end < len(tokens) and _opens_new_sentence(tokens[end - 1], tokens[end]):
            yield end
        index = end


def _after_attached_closers(tokens: list[Token], index: int) -> int:
    """Skip closing quotes/brackets and extra terminals glued to a terminal ("?!", '."')."""
    while (
        index < len(tokens)
        and tokens[index].start == tokens[index - 1].end
        and (
            tokens[index].text in CLOSING_PUNCTUATION
            or tokens[index].text in SENTENCE_TERMINALS
        )
    ):
        index += 1
    return index


def _opens_new_sentence(previous: Token, candidate: Token) -> bool:
    """A sentence starts after whitespace with an uppercase letter, a digit or a quote."""
    separated_by_whitespace = candidate.start > previous.end
    first_char = candidate.text[0]
    looks_like_a_start = (
        first_char.isupper() or first_char.isdigit() or candidate.text in OPENING_QUOTES
    )
    return separated_by_whitespace and looks_like_a_start


# --------------------------------------------------------------------------
# Streaming helpers
# --------------------------------------------------------------------------


def _paragraph_spans(text: str) -> Iterator[tuple[int, int]]:
    """(start, end) of each run of non-blank lines of ``text`` (lines end at ``\\n``, as when a file is read)."""
    start = None
    position = 0
    for line in _LINE_RE.findall(text):
        if _is_blank(line):
            if start is not None:
                yield start, position
                start = None
        elif start is None:
            start = position
        position += len(line)
    if start is not None:
        yield start, position


def _is_blank(line: str) -> bool:
    return not line.strip()


def _ending_with_line_break(line: str) -> str:
    """Make sure consecutive lines never fuse into one word when joined."""
    return line if line.endswith(("\n", "\r")) else line + "\n"


def _sentences_with_text(text: str) -> Iterator[tuple[str, list[Token]]]:
    """Yield each sentence of ``text`` with its own text and rebased tokens."""
    for sentence in split_sentences(text):
        yield _cut_out(text, sentence)


def _emit_all_but_unfinished_sentence(
    text: str,
) -> Generator[tuple[str, list[Token]], None, str]:
    """Yield the complete sentences of an oversized paragraph; return the text to carry on.

    The last sentence may continue on the next lines, so it is carried over,
    unless it is too long to carry, in which case it is yielded as a chunk
    (``text`` always ends at a line break, so no token is ever cut).
    """
    sentences = split_sentences(text)
    if not sentences:
        return ""
    unfinished = sentences[-1]
    for sentence in sentences[:-1]:
        yield _cut_out(text, sentence)
    carried = text[unfinished[0].start :]
    if len(carried) > MAX_CARRIED_SENTENCE_CHARS:
        yield _cut_out(text, unfinished)
        return ""
    return carried


def _cut_out(text: str, sentence: list[Token]) -> tuple[str, list[Token]]:
    """Return the sentence's own text and its tokens with offsets relative to it."""
    offset = sentence[0].start
    sentence_text = text[offset : sentence[-1].end]
    rebased = [Token(t.text, t.start - offset, t.end - offset) for t in sentence]
    return sentence_text, rebased
