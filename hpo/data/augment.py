"""Cheap, seeded text augmentation for training batches, scaled by one `strength` in [0, 1].

Words are found the way the text's script writes them (hpo/data/scripts.py, ``[augment]
language``): between spaces (the default), by the jieba segmenter for Chinese, or as characters
for Japanese, Thai and the other scripts without spaces. Each call applies, in this order, with
``s`` the strength and each operation's rate multiplied by its weight in ``[augment] ops``
(default 1, and 0 for insertion):

1. sentence perturbation, with probability ``s``: a text of two or more sentences has its
   sentences put in a new order; otherwise a text of two or more clauses has its clauses put in
   a new order, each separator staying in place; otherwise nothing happens. Spaced text splits
   into sentences after ``.``, ``!`` or ``?`` followed by whitespace or after ``。``, ``！`` or
   ``？``, and into clauses after ``,``, ``;`` or ``:`` followed by whitespace. Text without
   spaces splits into sentences after ``。！？｡．!?`` (``…`` and ``.`` only before whitespace),
   closing quotes included, and into clauses after ``，、；：`` or ``,;:`` (not between digits);
2. word deletion: each word is dropped with probability ``s / 3``; a one-word text is never
   shortened, and if every word drew deletion one of them is kept;
3. word substitution: each word-like word (letters or ideographs, inner apostrophes allowed,
   surrounding punctuation kept) is replaced with probability ``s / 3`` by a word drawn
   uniformly from the vocabulary, keeping an upper-case first letter or an all-capitals form;
   skipped if the vocabulary is empty;
4. word insertion (off by default): after each word, with probability ``s / 3``, a word drawn
   uniformly from the vocabulary;
5. word swap: ``round(s * n / 3)`` swaps of two random positions among the ``n`` words left.

There is no offline synonym dictionary, so substitution draws from the training corpus's own
frequent words (see `build_vocabulary`). Spaced words are re-joined with single spaces; words of
text without spaces carry their own punctuation and whitespace and are re-joined with nothing
between them, so no space is ever inserted. Strength 0 returns the input unchanged and draws no
random numbers.
"""

from __future__ import annotations

import random
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeVar

from hpo.data.scripts import SPACED_WORD, WHITESPACE, Script, is_link, is_word

# Weights of the operations when ``[augment] ops`` says nothing: the rates the strength gives.
DEFAULT_OPS = {"substitute": 1.0, "delete": 1.0, "swap": 1.0, "insert": 0.0, "reorder": 1.0}

T = TypeVar("T")
_WORD = SPACED_WORD
_AFFIXES = re.compile(r"^(\W*)(.*?)(\W*)$")


def build_vocabulary(
    texts: Iterable[str], max_words: int = 20000, script: Script = WHITESPACE
) -> tuple[str, ...]:
    """Most frequent words of the training texts as `script` finds them (letters or ideographs,
    no digits, punctuation or links), lower-cased: the pool substitution draws from."""
    if max_words < 1:
        raise ValueError(f"`max_words` must be at least 1, got {max_words!r}")
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(word.lower() for word in script.vocabulary_words(text))
    return tuple(word for word, _ in counts.most_common(max_words))


class TextPool:
    """What augmenting texts draws from: the script the corpus is written in, found once, and
    its vocabulary, built from the training texts on first use (segmenting a large Chinese
    corpus takes a while, and a study that never augments never needs it)."""

    def __init__(self, texts: Sequence[str], script: Script = WHITESPACE) -> None:
        self.script = script
        self._texts = texts
        self._vocabulary: tuple[str, ...] | None = None

    @classmethod
    def for_language(cls, texts: Sequence[str], language: str = "auto") -> TextPool:
        """For ``[augment] language``: "auto" detects the script from the texts."""
        from hpo.data.scripts import script_for

        return cls(texts, script_for(language, texts))

    @property
    def vocabulary(self) -> tuple[str, ...]:
        """`build_vocabulary` of the training texts with the pool's script."""
        if self._vocabulary is None:
            self._vocabulary = build_vocabulary(self._texts, script=self.script)
        return self._vocabulary


def _match_case(template: str, word: str) -> str:
    """Give `word` the capitalisation of `template` so a replacement reads like the original."""
    if len(template) > 1 and template.isupper():
        return word.upper()
    if template[:1].isupper():
        return word[:1].upper() + word[1:]
    return word


class Augmenter:
    """Perturbs training texts at a fixed strength with its own seeded random generator."""

    def __init__(
        self,
        strength: float,
        vocabulary: Sequence[str],
        seed: int,
        ops: Mapping[str, float] | None = None,
        script: Script = WHITESPACE,
    ) -> None:
        """Check the strength; seed a private generator so runs repeat without global state.

        ``ops`` weighs each operation (substitute, delete, swap, insert, reorder); left out,
        insertion is off and the others have weight 1. ``script`` says how texts split into
        words and sentences and join back (hpo/data/scripts.py); default: words between spaces.
        """
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"`strength` must be in [0, 1], got {strength!r}")
        weights = {**DEFAULT_OPS, **(ops or {})}
        unknown = set(weights) - set(DEFAULT_OPS)
        if unknown:
            raise ValueError(f"unknown augmentation operation {sorted(unknown)[0]!r}")
        self.strength = float(strength)
        self._rates = {
            op: self.strength * w / (1 if op == "reorder" else 3) for op, w in weights.items()
        }
        self._vocabulary = tuple(vocabulary)
        self._rng = random.Random(seed)
        self.script = script

    @property
    def is_identity(self) -> bool:
        """True at strength 0, where texts pass through untouched, so callers may skip the call."""
        return self.strength == 0.0

    def __call__(self, text: str) -> str:
        """Return one perturbed copy of `text`; strength 0 and blank texts come back unchanged."""
        if self.is_identity or not text.strip():
            return text
        rng = self._rng
        rate = self._rates
        script = self.script
        given = text
        if rate["reorder"] > 0 and rng.random() < rate["reorder"]:
            text = self._perturb_sentences(text.strip())
        tokens = script.split(text, remember=text is given)
        if len(tokens) > 1 and rate["delete"] > 0:
            kept = [token for token in tokens if rng.random() >= rate["delete"]]
            tokens = kept or [rng.choice(tokens)]
        if self._vocabulary and rate["substitute"] > 0:
            substitute = self._substitute if script.spaced else self._substitute_unspaced
            tokens = [substitute(t) if rng.random() < rate["substitute"] else t for t in tokens]
        if self._vocabulary and rate["insert"] > 0:
            grown: list[str] = []
            for token in tokens:
                grown.append(token)
                if rng.random() < rate["insert"]:
                    grown.append(rng.choice(self._vocabulary))
            tokens = grown
        n = len(tokens)
        if n > 1 and rate["swap"] > 0:
            for _ in range(round(rate["swap"] * n)):
                i, j = rng.randrange(n), rng.randrange(n)
                tokens[i], tokens[j] = tokens[j], tokens[i]
        return script.join(tokens)

    def batch(self, texts: Sequence[str]) -> list[str]:
        """Perturb each text of a batch in turn, so one generator drives the whole stream."""
        if self.is_identity:
            return list(texts)
        return [self(text) for text in texts]

    def _substitute(self, token: str) -> str:
        """Swap the word inside `token` for a vocabulary word, keeping its punctuation and case."""
        if is_link(token):
            return token
        match = _AFFIXES.match(token)
        if match is None:
            return token
        prefix, core, suffix = match.groups()
        if not _WORD.fullmatch(core):
            return token
        return prefix + _match_case(core, self._rng.choice(self._vocabulary)) + suffix

    def _substitute_unspaced(self, token: str) -> str:
        """The same for a word of text without spaces, which carries its punctuation and
        whitespace: only the letters between them are replaced."""
        alnum = [i for i, c in enumerate(token) if c.isalnum()]
        if not alnum:
            return token
        end = alnum[-1] + 1
        while end < len(token) and unicodedata.category(token[end]).startswith("M"):
            end += 1  # combining marks after the last letter belong to it
        core = token[alnum[0] : end]
        if is_link(core) or not is_word(core):
            return token
        replacement = _match_case(core, self._rng.choice(self._vocabulary))
        return token[: alnum[0]] + replacement + token[end:]

    def _reorder(self, parts: list[T]) -> list[T]:
        """Shuffle `parts` into an order that always differs from the original one."""
        order = list(range(len(parts)))
        self._rng.shuffle(order)
        if order == sorted(order):
            order = order[1:] + order[:1]
        return [parts[i] for i in order]

    def _perturb_sentences(self, text: str) -> str:
        """Reorder the sentences of `text`, or failing two of them its clauses, else leave it."""
        script = self.script
        sentences = script.sentences(text)
        if len(sentences) > 1:
            return script.glue.join(self._reorder(sentences))
        clauses, separators = script.clauses(text)
        if len(clauses) < 2 or not all(clauses):
            return text
        clauses = self._reorder(clauses)
        out = clauses[0]
        for separator, clause in zip(separators, clauses[1:], strict=True):
            out += f"{separator}{script.glue}{clause}"
        return out


# ---------------------------------------------------------------- tagged sentences (NER)

_SENTENCE_END = frozenset({".", "!", "?", "。", "！", "？"})


class MentionPool:
    """What augmenting tagged sentences draws from: the training split's words outside any
    entity (for substitution and insertion) and its entity mentions by type."""

    def __init__(
        self, vocabulary: Sequence[str], mentions: Mapping[str, Sequence[tuple[str, ...]]]
    ):
        self.vocabulary = tuple(vocabulary)
        self.mentions = {kind: list(found) for kind, found in mentions.items()}

    @classmethod
    def from_split(cls, split: Any) -> MentionPool:
        """From a ``TokenSplit``: O words by frequency, and each type's distinct mentions."""
        outside: list[str] = []
        mentions: dict[str, dict[tuple[str, ...], None]] = {}
        for i in range(len(split)):
            for words, kind in segments(split.tokens[i], split.tag_names(i)):
                if kind is None:
                    outside.append(words[0])
                else:
                    mentions.setdefault(kind, {})[tuple(words)] = None
        return cls(build_vocabulary(outside), {k: list(v) for k, v in mentions.items()})


def segments(tokens: Sequence[str], tags: Sequence[str]) -> list[tuple[list[str], str | None]]:
    """A tagged sentence (IOB2) as units: each entity mention whole, with its type, and each
    word outside an entity on its own (type None)."""
    out: list[tuple[list[str], str | None]] = []
    for word, tag in zip(tokens, tags, strict=True):
        if tag == "O":
            out.append(([word], None))
        elif tag.startswith("I-") and out and out[-1][1] == tag[2:]:
            out[-1][0].append(word)
        else:
            out.append(([word], tag[2:]))
    return out


class TokenAugmenter(Augmenter):
    """Perturbs tagged sentences so every tag stays on its word and no mention is split or merged.

    At strength ``s`` (each rate times its ``[augment] ops`` weight, as for texts): with
    probability ``s`` the sentences of a tweet or paragraph are reordered at sentence-ending
    punctuation outside entities; each word outside an entity is deleted with probability
    ``s / 3`` (never the last unit); ``substitute`` replaces each mention, with probability
    ``s / 3``, by another training mention of the same type (mention replacement, Dai and Adel
    2020) and each outside word by a training word outside entities; ``insert`` adds outside
    words; ``swap`` exchanges ``round(s * n / 3)`` pairs among the ``n`` outside words.
    Strength 0 returns the sentence unchanged and draws no random numbers.
    """

    def __init__(
        self,
        strength: float,
        pool: MentionPool,
        seed: int,
        ops: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(strength, pool.vocabulary, seed, ops)
        self.pool = pool

    def __call__(  # type: ignore[override]
        self, tokens: Sequence[str], tags: Sequence[str]
    ) -> tuple[list[str], list[str]]:
        """One perturbed copy of a sentence given as words and IOB2 tags."""
        if self.is_identity or not tokens:
            return list(tokens), list(tags)
        rng, rate = self._rng, self._rates
        units = segments(tokens, tags)
        if rate["reorder"] > 0 and rng.random() < rate["reorder"]:
            units = self._reorder_sentences(units)
        if len(units) > 1 and rate["delete"] > 0:
            kept = [u for u in units if u[1] is not None or rng.random() >= rate["delete"]]
            units = kept or [rng.choice(units)]
        if rate["substitute"] > 0:
            units = [self._replace(u) if rng.random() < rate["substitute"] else u for u in units]
        if self._vocabulary and rate["insert"] > 0:
            grown: list[tuple[list[str], str | None]] = []
            for unit in units:
                grown.append(unit)
                if rng.random() < rate["insert"]:
                    grown.append(([rng.choice(self._vocabulary)], None))
            units = grown
        outside = [i for i, u in enumerate(units) if u[1] is None]
        if len(outside) > 1 and rate["swap"] > 0:
            for _ in range(round(rate["swap"] * len(outside))):
                i, j = rng.choice(outside), rng.choice(outside)
                units[i], units[j] = units[j], units[i]
        words: list[str] = []
        out_tags: list[str] = []
        for unit_words, kind in units:
            words += unit_words
            if kind is None:
                out_tags += ["O"] * len(unit_words)
            else:
                out_tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(unit_words) - 1)
        return words, out_tags

    def _replace(self, unit: tuple[list[str], str | None]) -> tuple[list[str], str | None]:
        words, kind = unit
        if kind is None:
            return ([self._substitute(words[0])] if self._vocabulary else words), None
        choices = self.pool.mentions.get(kind)
        if not choices:
            return unit
        return list(self._rng.choice(choices)), kind

    def _reorder_sentences(
        self, units: list[tuple[list[str], str | None]]
    ) -> list[tuple[list[str], str | None]]:
        """Reorder the sentences, cut after sentence-ending punctuation outside entities."""
        parts: list[list[tuple[list[str], str | None]]] = [[]]
        for unit in units:
            parts[-1].append(unit)
            if unit[1] is None and unit[0][0] in _SENTENCE_END:
                parts.append([])
        parts = [p for p in parts if p]
        if len(parts) < 2:
            return units
        return [u for part in self._reorder(parts) for u in part]
