"""Token classification data: CoNLL files and list columns, tagging schemes, splits.

Every source ends as sentences of words with one IOB2 tag per word (``TokenSplit``). IOB1 (the
raw CoNLL-2003 files), IOBES and BILOU are converted to IOB2 on reading: an ``I-`` that does not
continue an entity of its own type starts one (``B-``), ``S-``/``U-`` become ``B-`` and
``E-``/``L-`` become ``I-``. Turning the words into sub-word windows is hpo/data/windows.py.
"""

from __future__ import annotations

import dataclasses
import random
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.data.dataset import small_validation_note, validation_fraction
from hpo.errors import DataError

if TYPE_CHECKING:
    from hpo.config.spec import DataSection

DOCSTART = "-DOCSTART-"
_TAG = re.compile(r"^([BIESUL])[-_](.+)$")


@dataclass(frozen=True)
class Sentence:
    """One sentence as read: words, their tags as written, and where it came from."""

    tokens: list[str]
    tags: list[str]
    where: str  # "file.conll:12" or "train row 7", for error messages


# ---------------------------------------------------------------- reading


def read_conll(path: str | Path, encoding: str = "utf-8") -> list[Sentence]:
    """Sentences of a CoNLL column file: the token in the first column, the tag in the last.

    Columns are split at tabs when the line has one, else at whitespace. A blank line (or one
    of only whitespace) ends a sentence; ``-DOCSTART-`` lines are skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding=encoding)
    except UnicodeDecodeError:
        raise DataError(
            f'{path.name} is not valid {encoding}; set `data.encoding` (for example "latin-1")'
        ) from None
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if tokens:
                sentences.append(Sentence(tokens, tags, f"{path.name}:{start}"))
            tokens, tags = [], []
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        parts = [p.strip() for p in parts if p.strip()]
        if parts[0] == DOCSTART:
            continue
        if len(parts) < 2:
            raise DataError(
                f"{path.name}:{number}: a token without a tag ({line.strip()!r}); a CoNLL line "
                "holds the token first and its tag last"
            )
        if not tokens:
            start = number
        tokens.append(parts[0])
        tags.append(parts[-1])
    if tokens:
        sentences.append(Sentence(tokens, tags, f"{path.name}:{start}"))
    return sentences


def read_table(table: Any, spec: DataSection, split: str) -> list[Sentence]:
    """Sentences of a ``datasets`` table with a list-of-words column and a list-of-tags column;
    integer tags take their names from the column's ``ClassLabel`` feature."""
    for key in ("tokens_column", "tags_column"):
        column = getattr(spec, key)
        if column not in table.column_names:
            raise DataError(
                f"`data.{key}` {column!r} is not a column of the {split} split; "
                f"its columns are: {', '.join(table.column_names)}"
            )
    names = _tag_names(table.features.get(spec.tags_column))
    out: list[Sentence] = []
    for i, (tokens, tags) in enumerate(
        zip(table[spec.tokens_column], table[spec.tags_column], strict=True)
    ):
        where = f"{split} row {i}"
        if not isinstance(tokens, list) or not isinstance(tags, list):
            raise DataError(
                f"{where}: `data.tokens_column` and `data.tags_column` must hold lists of words "
                f"and tags, got {type(tokens).__name__} and {type(tags).__name__}"
            )
        if tags and isinstance(tags[0], int) and not isinstance(tags[0], bool):
            if names is None:
                raise DataError(
                    f"{where}: tags are integers but `data.tags_column` {spec.tags_column!r} "
                    "has no tag names (a ClassLabel feature); store the tags as strings"
                )
            try:
                tags = [names[t] for t in tags]
            except (IndexError, TypeError):
                raise DataError(f"{where}: a tag index outside 0..{len(names) - 1}") from None
        if tokens or tags:  # an empty row carries nothing to learn or score
            out.append(Sentence([str(t) for t in tokens], [str(t) for t in tags], where))
    return out


def _tag_names(feature: Any) -> list[str] | None:
    """The names of a list-of-ClassLabel feature (``Sequence`` or ``List`` of ``ClassLabel``)."""
    inner = getattr(feature, "feature", None)
    names = getattr(inner, "names", None)
    return list(names) if names else None


# ---------------------------------------------------------------- tagging schemes


def detect_scheme(sentences: Sequence[Sentence]) -> str:
    """IO when no tag has a prefix (bare ``PER``, ``LOC``); IOBES or BILOU when their
    single/end tags occur; IOB1 when some entity starts with I-; else IOB2."""
    tagged = [t for s in sentences for t in s.tags if t != "O"]
    if tagged and not any(_TAG.match(t) for t in tagged):
        return "io"
    bare = next(((s, t) for s in sentences for t in s.tags if t != "O" and not _TAG.match(t)), None)
    if bare is not None:  # IO tags beside prefixed ones: no scheme reads both
        sentence, tag = bare
        prefixed = next(t for t in tagged if _TAG.match(t))
        raise DataError(
            f"{sentence.where}: tag {tag!r} has no B-/I- prefix (IO tags) while others have one "
            f"({prefixed!r}); write every file in one scheme, or set `data.tag_scheme`"
        )
    prefixes = {t[0] for t in tagged}
    if prefixes & {"U", "L"}:
        return "bilou"
    if prefixes & {"S", "E"}:
        return "iobes"
    for s in sentences:
        before = "O"
        for tag in s.tags:
            if tag.startswith("I-") and (before == "O" or before[2:] != tag[2:]):
                return "iob1"
            before = tag
    return "iob2"


def to_iob2(sentence: Sentence, scheme: str) -> list[str]:
    """The sentence's tags in IOB2; a tag that fits no scheme is a DataError naming it. In IO
    (bare entity types) a run of one type is one entity: two such entities side by side
    cannot be told apart there, and become one."""
    out: list[str] = []
    previous: str | None = None  # entity type of the word before, None after O
    for i, tag in enumerate(sentence.tags):
        if tag == "O":
            out.append("O")
            previous = None
            continue
        if scheme == "io":
            if _TAG.match(tag):
                raise DataError(
                    f"{sentence.where}: tag {tag!r} at word {i + 1} ({sentence.tokens[i]!r}) "
                    "has a B-/I- prefix, but other tags have none (IO tags): use one scheme "
                    "throughout, or set `data.tag_scheme`"
                )
            out.append(("I-" if previous == tag else "B-") + tag)
            previous = tag
            continue
        match = _TAG.match(tag)
        prefix = match.group(1) if match else ""
        allowed = "BI" if scheme in ("iob1", "iob2") else "BIES" if scheme == "iobes" else "BILU"
        if match is None or prefix not in allowed:
            schemes = {"BI": "IOB", "BIES": "IOBES", "BILU": "BILOU"}[allowed]
            raise DataError(
                f"{sentence.where}: invalid tag {tag!r} at word {i + 1} ({sentence.tokens[i]!r}); "
                f"{schemes} tags are O or {'/'.join(allowed)}- followed by the entity type"
                + (" (or set `data.tag_scheme`)" if scheme != "auto" else "")
            )
        kind = match.group(2)
        starts = prefix in "BSU" or previous != kind
        out.append(("B-" if starts else "I-") + kind)
        previous = None if prefix in "ESUL" else kind
    return out


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
    tags = {split: [to_iob2(s, scheme) for s in sentences] for split, sentences in read.items()}
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
