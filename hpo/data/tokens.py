"""Token classification data, loaded: a study's sentences split into train, validation and
test, each word with one IOB2 tag (``TokenSplit``), and what is said about them.

Reading the files and turning their tags into IOB2 is hpo/data/tagging.py; turning the words
into sub-word windows is hpo/data/windows.py.
"""

from __future__ import annotations

import dataclasses
import random
import sys
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from hpo.data.dataset import validation_fraction
from hpo.data.notes import small_validation_note
from hpo.data.tagging import Sentence, detect_scheme, read_conll, read_table, to_iob2
from hpo.errors import DataError

if TYPE_CHECKING:
    from hpo.config.spec import DataSection

# ---------------------------------------------------------------- splits


@dataclass(frozen=True)
class TokenSplit:
    """One split: sentences of words and their IOB2 tags as indices into ``names``."""

    tokens: list[list[str]]
    tags: list[list[int]]
    names: tuple[str, ...]  # the task's tag names, O first
    label_all_tokens: bool = False  # also label a word's later sub-tokens when encoding

    def __len__(self) -> int:
        return len(self.tokens)

    def subset(self, indices: Sequence[int]) -> TokenSplit:
        return dataclasses.replace(
            self, tokens=[self.tokens[i] for i in indices], tags=[self.tags[i] for i in indices]
        )

    def concat(self, other: TokenSplit) -> TokenSplit:
        return dataclasses.replace(
            self, tokens=self.tokens + other.tokens, tags=self.tags + other.tags
        )

    def tag_names(self, i: int) -> list[str]:
        return [self.names[t] for t in self.tags[i]]

    @property
    def text(self) -> list[str]:
        """Each sentence's words joined by spaces (what augmentation's vocabulary reads)."""
        return [" ".join(t) for t in self.tokens]

    @property
    def words(self) -> int:
        return sum(len(t) for t in self.tokens)

    def entities(self) -> Counter[str]:
        """Entities per type (their B- tags)."""
        counts: Counter[str] = Counter()
        for row in self.tags:
            counts.update(self.names[t][2:] for t in row if self.names[t].startswith("B-"))
        return counts


@dataclass(frozen=True)
class TokenData:
    """A token classification task: its splits and its tag names, ``O`` first."""

    train: TokenSplit
    validation: TokenSplit
    test: TokenSplit | None
    label_names: list[str]
    scheme: str = "iob2"  # the scheme the files were written in
    notes: tuple[str, ...] = ()  # the warnings printed when the data was loaded

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def entity_types(self) -> list[str]:
        return sorted({n[2:] for n in self.label_names if n != "O"})

    def majority_baseline(self) -> tuple[str, float]:
        """The share of validation words tagged O: what tagging every word O scores."""
        o = sum(1 for tags in self.validation.tags for t in tags if t == 0)
        return "O", o / max(1, self.validation.words)


def label_names_for(sentences: Sequence[list[str]]) -> list[str]:
    """O, then B- and I- of every entity type the sentences use, types sorted."""
    kinds = sorted({t[2:] for tags in sentences for t in tags if t != "O"})
    if not kinds:
        raise DataError("the train split has no entity at all: every tag is O")
    return ["O"] + [f"{p}-{k}" for k in kinds for p in "BI"]


def to_split(
    sentences: Sequence[Sentence],
    tags: Sequence[list[str]],
    names: list[str],
    split: str,
    label_all_tokens: bool = False,
) -> TokenSplit:
    """Index the IOB2 tags; a tag type the train split never has is a DataError."""
    index = {n: i for i, n in enumerate(names)}
    out_tags: list[list[int]] = []
    for sentence, row in zip(sentences, tags, strict=True):
        for i, tag in enumerate(row):
            if tag not in index:
                raise DataError(
                    f"{sentence.where}: the {split} split has entity type {tag[2:]!r} "
                    f"(word {i + 1}, {sentence.tokens[i]!r}), which the train split never has; "
                    f"train types: {', '.join(sorted({n[2:] for n in names if n != 'O'}))}"
                )
        out_tags.append([index[t] for t in row])
    return TokenSplit([list(s.tokens) for s in sentences], out_tags, tuple(names), label_all_tokens)


def _is_blank(word: str) -> bool:
    """A word of nothing a tokenizer keeps: empty, spaces, or format characters (zero-width)."""
    return all(c.isspace() or unicodedata.category(c) in ("Cf", "Cc") for c in word)


def drop_blank_words(sentences: Sequence[Sentence]) -> tuple[list[Sentence], tuple[int, int]]:
    """The sentences without their blank words (no sub-token could carry their tag, so they
    could never be predicted and would lower recall), and without sentences left empty;
    (words dropped, sentences dropped)."""
    kept, words, empty = [], 0, 0
    for s in sentences:
        keep = [i for i, w in enumerate(s.tokens) if not _is_blank(w)]
        words += len(s.tokens) - len(keep)
        if not keep:
            empty += 1
            continue
        if len(keep) < len(s.tokens):
            s = Sentence([s.tokens[i] for i in keep], [s.tags[i] for i in keep], s.where)
        kept.append(s)
    return kept, (words, empty)


def _blank_words_note(blank: dict[str, tuple[int, int]]) -> list[str]:
    parts = [
        f"{words} words and {empty} sentences left empty in {split}"
        if empty
        else f"{words} words in {split}"
        for split, (words, empty) in blank.items()
        if words or empty
    ]
    if not parts:
        return []
    return [f"dropped words that are empty, blank or zero-width: {', '.join(parts)}"]


def check_lengths(sentences: Sequence[Sentence]) -> None:
    for s in sentences:
        if len(s.tokens) != len(s.tags):
            raise DataError(
                f"{s.where}: {len(s.tokens)} tokens but {len(s.tags)} tags; "
                "every word needs exactly one tag"
            )


def carve(split: TokenSplit, size: int, rng: random.Random) -> tuple[TokenSplit, TokenSplit]:
    """``size`` random sentences out of ``split``; returns (rest, carved), each in file order."""
    order = list(range(len(split)))
    rng.shuffle(order)
    held = sorted(order[:size])
    rest = sorted(order[size:])
    return split.subset(rest), split.subset(held)


# ---------------------------------------------------------------- loading


def load_tokens(spec: DataSection) -> TokenData:
    """Read, check, convert to IOB2, split and cap the tagged sentences the study file names."""
    from hpo.data import files

    split_names = {"train": "train", "validation": "validation", "test": "test"}
    read: dict[str, list[Sentence]] = {}
    if spec.hub is not None:
        tables = files.load_hub(spec)
        split_names = {
            "train": spec.train_split,
            "validation": spec.validation_split,
            "test": spec.test_split,
        }
        if spec.train_split not in tables:
            raise DataError(
                f"the dataset has no split {spec.train_split!r}; it has: {', '.join(tables)}"
            )
        for split, name in split_names.items():
            if name in tables:
                read[split] = read_table(tables[name], spec, split)
    else:
        for split, path in files.data_files(spec).items():
            fmt = files.file_format(path, spec)
            if fmt == "conll":
                read[split] = read_conll(path, spec.encoding)
            elif fmt in ("json", "jsonl", "parquet"):
                read[split] = read_table(files.read_file(path, spec), spec, split)
            else:
                raise DataError(
                    f"{Path(path).name}: token classification reads conll, json, jsonl or "
                    "parquet files (set `data.format`)" + (f", not {fmt}" if fmt else "")
                )
    blank: dict[str, tuple[int, int]] = {}
    for split, sentences in read.items():
        check_lengths(sentences)
        read[split], blank[split] = drop_blank_words(sentences)
        sentences = read[split]
        if not sentences:
            where = split_names[split] if spec.hub else (spec.files or {}).get(split, spec.path)
            raise DataError(f"the {split} split ({where}) has no sentences")
    everything = [s for sentences in read.values() for s in sentences]
    scheme = detect_scheme(everything) if spec.tag_scheme == "auto" else spec.tag_scheme
    detected = spec.tag_scheme == "auto"
    tags = {
        split: [to_iob2(s, scheme, detected) for s in sentences]
        for split, sentences in read.items()
    }
    names = label_names_for(tags["train"])
    splits = {
        split: to_split(read[split], tags[split], names, split, spec.label_all_tokens)
        for split in read
    }
    rng = random.Random(spec.seed)
    train = splits["train"]
    test = splits.get("test")
    if test is None and spec.test_fraction > 0:
        train, test = carve(train, max(1, round(len(train) * spec.test_fraction)), rng)
    validation = splits.get("validation")
    if validation is None:
        size = max(1, round(len(train) * validation_fraction(spec)))
        train, validation = carve(train, size, rng)
    if spec.max_train_samples is not None and len(train) > spec.max_train_samples:
        train = carve(train, spec.max_train_samples, rng)[1]
    if spec.max_eval_samples is not None and len(validation) > spec.max_eval_samples:
        validation = carve(validation, spec.max_eval_samples, rng)[1]
    if len(train) < 2:
        raise DataError(f"too little data: {len(train)} training sentences")
    notes = _blank_words_note(blank)
    notes += _shared_sentences(train, {"validation": validation, "test": test})
    notes += small_validation_note(len(validation), "sentences")
    for note in notes:
        print(f"warning: {note}", file=sys.stderr, flush=True)
    return TokenData(train, validation, test, names, scheme, tuple(notes))


def _shared_sentences(train: TokenSplit, held_out: dict[str, TokenSplit | None]) -> list[str]:
    """A note for each held-out split holding sentences (word for word) that train has too:
    their entity F1 would flatter a model that memorised them."""
    seen = {tuple(tokens) for tokens in train.tokens}
    notes = []
    for name, split in held_out.items():
        shared = sum(1 for tokens in split.tokens if tuple(tokens) in seen) if split else 0
        if shared:
            notes.append(f"{shared} {name} sentences also appear in train: {name} leakage")
    return notes
