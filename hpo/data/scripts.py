"""How a language's text splits into words and sentences, and joins back, for augmentation.

A `Script` says how words are found: ``whitespace`` (Latin, Cyrillic, Greek, Hangul, Arabic...:
words between spaces, re-joined with single spaces, as hpo always did), ``jieba`` (Chinese: words
from the jieba segmenter, an optional package: ``pip install jieba`` or ``hpo[zh]``) or
``characters`` (Japanese, Thai, Lao, Khmer, Myanmar, Tibetan, and Chinese without jieba: each
character with its combining marks is a word). In text without spaces a run of ASCII letters and
digits ("GPT4", "1,000", "don't"), a link and an @-mention each stay one word; punctuation sticks
to the word before it (an opening bracket or quote to the word after) and whitespace to a
neighbouring word, so tokens re-join with "" and no space is ever inserted.

``[augment] language = "auto"`` (`script_for`) counts the letters of a sample of the training
texts by Unicode script (`detect`): mostly Han ideographs is Chinese, Han with a real share of
kana is Japanese, Thai/Lao/Khmer/Myanmar/Tibetan letters are those languages, anything else is
spaced.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
import unicodedata
from array import array
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from hpo.errors import DependencyError

CHINESE = frozenset({"zh", "cmn", "yue", "wuu", "lzh"})  # written in Han without spaces
UNSPACED = frozenset({"ja", "th", "lo", "km", "my", "bo"})  # segmented into characters
DETECT_SAMPLE = 2000  # texts `detect` looks at, spread over the corpus
_DETECT_CHARS = 1000  # characters looked at per text

# Code-point ranges of the scripts detection tells apart; any other letter counts as spaced.
_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0E00, 0x0E7F, "th"),
    (0x0E80, 0x0EFF, "lo"),
    (0x0F00, 0x0FFF, "bo"),
    (0x1000, 0x109F, "my"),
    (0x1780, 0x17FF, "km"),
    (0x19E0, 0x19FF, "km"),
    (0x3040, 0x30FF, "kana"),  # Hiragana and Katakana
    (0x31F0, 0x31FF, "kana"),
    (0x3400, 0x4DBF, "han"),
    (0x4E00, 0x9FFF, "han"),
    (0xA9E0, 0xA9FF, "my"),
    (0xAA60, 0xAA7F, "my"),
    (0xF900, 0xFAFF, "han"),
    (0xFF66, 0xFF9F, "kana"),  # halfwidth Katakana
    (0x20000, 0x323AF, "han"),
)

# Text without spaces: links, mentions and runs of ASCII letters/digits are kept whole.
_KEEP_WHOLE = re.compile(
    r"(?:https?://|www\.)[!-~]+|@\w+|[A-Za-z0-9]+(?:[.,'’][A-Za-z0-9]+)*|\s+", re.IGNORECASE
)
_SENTENCE_MARKS = "。！？｡．!?"
# A sentence ends after a run of marks (or "…" before a space, or "." before a space), with any
# closing quotes or brackets and the whitespace that follow.
_UNSPACED_SENTENCE_END = re.compile(
    rf"(?:…*[{_SENTENCE_MARKS}][{_SENTENCE_MARKS}…]*|…+(?=\s)|\.(?=\s))"
    r"[」』”’）)\]》〉】\"']*\s*"
)
# Clause marks, the whitespace after them kept with them; ASCII ones not between digits
# ("1,000") nor in a link ("https://").
_UNSPACED_CLAUSE = re.compile(r"((?:[，、､；：]|(?:(?<!\d)[,;:]|[,;:](?!\d))(?!//))\s*)")
_SPACED_SENTENCE = re.compile(r"(?<=[.!?])\s+|(?<=[。！？])(?![。！？」』”’）)])\s*")
_SPACED_CLAUSE = re.compile(r"([,;:])\s+")
SPACED_WORD = re.compile(r"[^\W\d_]+(?:['’][^\W\d_]+)*")  # letters, inner apostrophes
_JOINERS = frozenset({"\u200d", "\u200c"})  # zero-width (non-)joiners stay inside a character


@dataclass(frozen=True)
class Script:
    """How texts of one language split into words, sentences and clauses, and join back."""

    language: str = ""  # the language code declared or detected ("": spaced, language unknown)
    words: Literal["whitespace", "jieba", "characters"] = "whitespace"  # how words are found
    detected: bool = False  # found by `detect` rather than declared in [augment] language

    @property
    def spaced(self) -> bool:
        """True where words are separated by spaces (and re-joined with single spaces)."""
        return self.words == "whitespace"

    def describe(self) -> str:
        """What `hpo augment` shows: "zh (jieba words)", "ja (detected; characters)"..."""
        how = {"whitespace": "whitespace words", "jieba": "jieba words"}.get(
            self.words, "characters"
        )
        if self.words == "characters" and self.language.split("-")[0] in CHINESE:
            how += ": pip install jieba for words"
        label = self.language or "spaced"
        return f"{label} ({'detected; ' if self.detected else ''}{how})"

    def split(self, text: str, remember: bool = False) -> list[str]:
        """The text's words; without spaces, punctuation and whitespace ride on a neighbouring
        word, so ``"".join(split(text)) == text``.

        jieba reads about 100,000 characters a second, slower than a GPU trains on them, so with
        ``remember`` (for texts of the training set, seen again each epoch and each trial) where
        each word of the text ends is kept, up to `SPLIT_MEMORY` word ends in the process."""
        if self.spaced:
            return text.split()
        key = (self.words, text)
        ends = _SPLITS.get(key)
        if ends is not None:
            return [text[a:b] for a, b in zip((0, *ends), ends, strict=False)]
        tokens = _glue(self._pieces(text))
        global _remembered
        if remember and _remembered + len(tokens) <= SPLIT_MEMORY:
            _SPLITS[key] = array("I", itertools.accumulate(map(len, tokens)))
            _remembered += len(tokens)
        return tokens

    def join(self, tokens: Sequence[str]) -> str:
        """Words back into a text: single spaces between them, or nothing where unspaced."""
        if self.spaced:
            return " ".join(tokens)
        return "".join(tokens).strip()

    def vocabulary_words(self, text: str) -> Iterator[str]:
        """The words of `text` that may enter the vocabulary: letters or ideographs, without
        digits, punctuation, links or mentions."""
        if self.spaced:
            for token in text.split():
                if not is_link(token):
                    yield from SPACED_WORD.findall(token)
            return
        for piece in self._pieces(text):
            if not is_link(piece) and is_word(piece):
                yield piece

    def sentences(self, text: str) -> list[str]:
        """The sentences of `text` (each with its end marks; without spaces, with the
        whitespace after them too), in order."""
        if self.spaced:
            return [part for part in _SPACED_SENTENCE.split(text) if part]
        out: list[str] = []
        start = 0
        for match in _UNSPACED_SENTENCE_END.finditer(text):
            if match.end() > start:
                out.append(text[start : match.end()])
                start = match.end()
        if start < len(text):
            out.append(text[start:])
        return out

    def clauses(self, text: str) -> tuple[list[str], list[str]]:
        """The clauses of `text` and the separators between them (one fewer); ``glue`` then
        goes after each separator when they are joined again."""
        pieces = (_SPACED_CLAUSE if self.spaced else _UNSPACED_CLAUSE).split(text)
        return pieces[0::2], pieces[1::2]

    @property
    def glue(self) -> str:
        """What goes between sentences, and after a clause separator: a space, or nothing."""
        return " " if self.spaced else ""

    def _pieces(self, text: str) -> list[str]:
        """Text without spaces as consecutive pieces: words, whitespace, punctuation."""
        out: list[str] = []
        start = 0
        for match in _KEEP_WHOLE.finditer(text):
            if match.start() > start:
                out += self._segment(text[start : match.start()])
            out.append(match.group())
            start = match.end()
        if start < len(text):
            out += self._segment(text[start:])
        return out

    def _segment(self, run: str) -> list[str]:
        """A run of text with no whitespace and no ASCII word, cut into words."""
        if self.words == "jieba":
            return list(_jieba().cut(run))
        return _characters(run)


WHITESPACE = Script()
SPLIT_MEMORY = 1 << 24  # word ends `Script.split` keeps (4 bytes each: 64 MiB)
_SPLITS: dict[tuple[str, str], array[int]] = {}
_remembered = 0


def is_link(token: str) -> bool:
    """True for URLs and @-mentions, whose letters are not vocabulary and are not substituted."""
    lowered = token.lower()
    return "://" in lowered or lowered.startswith(("www.", "@"))


def is_word(text: str) -> bool:
    """Letters (ideographs included) with their combining marks, inner apostrophes allowed."""
    if not text or not text[0].isalpha() or text[-1] in "'’":
        return False
    return all(c.isalpha() or c in "'’" or unicodedata.category(c).startswith("M") for c in text)


def _characters(run: str) -> list[str]:
    """Each character with the combining marks and joined characters that belong to it."""
    out: list[str] = []
    for char in run:
        if out and (
            unicodedata.category(char).startswith("M")
            or char in _JOINERS
            or out[-1][-1] in _JOINERS
            or char == "\ufe0f"
        ):
            out[-1] += char
        else:
            out.append(char)
    return out


def _glue(pieces: list[str]) -> list[str]:
    """Words from pieces: punctuation joins the word before it, an opening bracket or quote the
    word after; whitespace joins an ASCII word after it, else the word before it."""
    tokens: list[str] = []
    pending = ""  # what waits for the next word
    for i, piece in enumerate(pieces):
        if any(c.isalnum() for c in piece):
            tokens.append(pending + piece)
            pending = ""
            continue
        if piece.isspace():
            after = pieces[i + 1][:1] if i + 1 < len(pieces) else ""
            forward = after.isascii() and after.isalnum()
        else:
            forward = unicodedata.category(piece[0]) in ("Ps", "Pi")
        if forward or pending or not tokens:
            pending += piece
        else:
            tokens[-1] += piece
    if pending:
        if tokens:
            tokens[-1] += pending
        else:
            tokens.append(pending)
    return tokens


def _script_of(char: str) -> str:
    point = ord(char)
    for low, high, name in _RANGES:
        if low <= point <= high:
            return name
    return "spaced"


def detect(texts: Sequence[str], sample: int = DETECT_SAMPLE) -> str:
    """The language whose script the corpus is written in, from the letters of up to `sample`
    texts spread over it. Where a quarter or more of the letters are of unspaced scripts (a
    Latin word has several letters where a Chinese word has one or two): "ja" if kana are a
    tenth or more of the Han and kana, else "zh" if Han and kana outnumber each of Thai, Lao,
    Khmer, Myanmar and Tibetan, else the most frequent of those ("th", "lo", "km", "my", "bo").
    Otherwise, or with no letters at all, "" (spaced words)."""
    step = max(1, len(texts) // sample) if sample > 0 else 1
    counts: Counter[str] = Counter()
    for text in texts[::step][:sample]:
        counts.update(_script_of(c) for c in text[:_DETECT_CHARS] if c.isalpha())
    unspaced = {name: n for name, n in counts.items() if name != "spaced"}
    if not unspaced or sum(unspaced.values()) * 4 < sum(counts.values()):
        return ""
    han, kana = unspaced.pop("han", 0), unspaced.pop("kana", 0)
    if kana and kana * 10 >= han + kana:
        return "ja"
    best = max(unspaced, key=unspaced.__getitem__, default="")
    if han + kana >= unspaced.get(best, 0):
        return "zh"
    return best


def script_for(language: str, texts: Sequence[str] = ()) -> Script:
    """The script for ``[augment] language``: "auto" detects it from `texts`.

    Declared Chinese needs jieba (a DependencyError without it); detected Chinese falls back to
    characters, which `Script.describe` says."""
    detected = language == "auto"
    code = detect(texts) if detected else language.split("-")[0].lower()
    shown = code if detected else language
    if code in CHINESE:
        if jieba_available():
            return Script(shown, "jieba", detected)
        if not detected:
            raise DependencyError(
                f"`augment.language` {language!r} needs the package jieba to find Chinese "
                "words: pip install jieba (or 'hpo[zh]')"
            )
        return Script(shown, "characters", detected)
    if code in UNSPACED:
        return Script(shown, "characters", detected)
    return Script(shown, "whitespace", detected)


def jieba_available() -> bool:
    """Whether the optional Chinese word segmenter can be imported."""
    try:
        _jieba()
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def _jieba() -> Any:
    """One jieba tokenizer for the process, its progress messages (which it prints to stderr
    while it builds its dictionary, and which would tear the live view) silenced."""
    import jieba

    logging.getLogger("jieba").setLevel(logging.WARNING)
    return jieba.Tokenizer()
