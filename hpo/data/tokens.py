"""Token classification data: CoNLL files and list columns, tagging schemes, word-aligned windows.

Every source ends as sentences of words with one IOB2 tag per word (``TokenSplit``). IOB1 (the
raw CoNLL-2003 files), IOBES and BILOU are converted to IOB2 on reading: an ``I-`` that does not
continue an entity of its own type starts one (``B-``), ``S-``/``U-`` become ``B-`` and
``E-``/``L-`` become ``I-``. Encoding splits words into sub-word tokens with the tokenizer's
word alignment; a sentence longer than ``max_length`` is cut into overlapping windows at word
boundaries, and each word is scored in exactly one of them (the one where it sits nearer the
middle), so predictions stitch back to one tag per original word.
"""

from __future__ import annotations

import dataclasses
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.errors import DataError

if TYPE_CHECKING:
    import torch

    from hpo.config.spec import DataSection

IGNORE = -100  # label of a position the loss and the scores skip
DOCSTART = "-DOCSTART-"
_TAG = re.compile(r"^([BIESUL])[-_](.+)$")
SCHEMES = ("auto", "iob1", "iob2", "iobes", "bilou")


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
    """IOBES or BILOU when their single/end tags occur; IOB1 when some entity starts with I-;
    else IOB2."""
    prefixes = {t[0] for s in sentences for t in s.tags if t != "O"}
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
    """The sentence's tags in IOB2; a tag that fits no scheme is a DataError naming it."""
    out: list[str] = []
    previous: str | None = None  # entity type of the word before, None after O
    for i, tag in enumerate(sentence.tags):
        if tag == "O":
            out.append("O")
            previous = None
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


# ---------------------------------------------------------------- encoding


@dataclass(frozen=True)
class TokenWindows:
    """A tokenized split: windows of sub-word ids with per-token labels (IGNORE where not
    trained), and what scoring needs to put the predictions back on the original words."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    sentence: list[int]  # window -> sentence index
    scored: list[list[tuple[int, int]]]  # window -> (token position, word index) it scores
    gold: list[list[str]]  # sentence -> IOB2 tag per word
    label_names: list[str]
    windowed: int = 0  # sentences that needed more than one window
    longest: int = 0  # longest sentence in sub-word tokens, special tokens included

    def __len__(self) -> int:
        return len(self.input_ids)

    def repeat(self, times: int) -> TokenWindows:
        """The windows ``times`` over (augmented copies index past the originals)."""
        return TokenWindows(
            self.input_ids * times,
            self.labels * times,
            self.sentence * times,
            self.scored * times,
            self.gold,
            self.label_names,
            self.windowed,
            self.longest,
        )

    def concat(self, other: TokenWindows) -> TokenWindows:
        shift = len(self.gold)
        return TokenWindows(
            self.input_ids + other.input_ids,
            self.labels + other.labels,
            self.sentence + [s + shift for s in other.sentence],
            self.scored + other.scored,
            self.gold + other.gold,
            self.label_names,
            self.windowed + other.windowed,
            max(self.longest, other.longest),
        )


def encode_split(split: TokenSplit, tokenizer: Any, max_length: int) -> TokenWindows:
    """Tokenize every sentence once, by words; windows for sentences past ``max_length``."""
    tags = [split.tag_names(i) for i in range(len(split))]
    names = list(split.names)
    return encode_sentences(
        split.tokens, tags, tokenizer, max_length, names, split.label_all_tokens
    )


def encode_sentences(
    sentences: Sequence[list[str]],
    tags: Sequence[list[str]],
    tokenizer: Any,
    max_length: int,
    label_names: list[str],
    label_all_tokens: bool = False,
) -> TokenWindows:
    """Windows of sentences given as words and IOB2 tag names (see ``encode_split``)."""
    index = {n: i for i, n in enumerate(label_names)}
    inside = {i: index.get("I-" + n[2:], i) for n, i in index.items() if n.startswith("B-")}
    out = TokenWindows([], [], [], [], [list(t) for t in tags], label_names)
    if not sentences:
        return out
    whole = _tokenize(tokenizer, list(sentences), add_special_tokens=True)
    windowed, longest = 0, 0
    for s, (words, row) in enumerate(zip(sentences, tags, strict=True)):
        ids, word_ids = whole[s]
        longest = max(longest, len(ids))
        if len(ids) <= max_length:
            spans = [(0, len(words), 0, len(words))]
            pieces = [(ids, word_ids)]
        else:
            windowed += 1
            spans = _windows(_token_counts(word_ids, len(words)), max_length - _specials(whole))
            pieces = _tokenize(tokenizer, [words[a:b] for a, b, _, _ in spans], True)
        for (a, _b, own_from, own_to), (piece_ids, piece_words) in zip(spans, pieces, strict=True):
            piece_ids, piece_words = piece_ids[:max_length], piece_words[:max_length]
            labels = [IGNORE] * len(piece_ids)
            scored: list[tuple[int, int]] = []
            seen: set[int] = set()
            for pos, w in enumerate(piece_words):
                if w is None:
                    continue  # special tokens
                word = a + w
                if not own_from <= word < own_to:
                    continue  # context only: scored in the window where it is central
                tag = index[row[word]]
                if word not in seen:
                    seen.add(word)
                    labels[pos] = tag
                    scored.append((pos, word))
                elif label_all_tokens:
                    labels[pos] = inside.get(tag, tag)
            out.input_ids.append(piece_ids)
            out.labels.append(labels)
            out.sentence.append(s)
            out.scored.append(scored)
    return TokenWindows(
        out.input_ids,
        out.labels,
        out.sentence,
        out.scored,
        out.gold,
        label_names,
        windowed,
        longest,
    )


def _tokenize(
    tokenizer: Any, sentences: list[list[str]], add_special_tokens: bool
) -> list[tuple[list[int], list[int | None]]]:
    """Sub-word ids and their word indices for sentences given as words."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(
            f"token classification needs a fast tokenizer (for word alignment); "
            f"{type(tokenizer).__name__} is not one"
        )
    enc = tokenizer(
        sentences,
        is_split_into_words=True,
        add_special_tokens=add_special_tokens,
        truncation=False,
        padding=False,
    )
    return [(list(enc["input_ids"][i]), enc.word_ids(i)) for i in range(len(sentences))]


def _specials(whole: list[tuple[list[int], list[int | None]]]) -> int:
    """Special tokens the tokenizer adds to one sentence (the same for every sentence)."""
    return sum(1 for w in whole[0][1] if w is None)


def _token_counts(word_ids: list[int | None], n_words: int) -> list[int]:
    counts = [0] * n_words
    for w in word_ids:
        if w is not None:
            counts[w] += 1
    return counts


def _windows(counts: list[int], room: int) -> list[tuple[int, int, int, int]]:
    """Overlapping word ranges that each fit ``room`` sub-word tokens.

    Returns (first word, end word, first owned word, end owned word) per window: consecutive
    windows overlap by about a quarter of ``room`` tokens, and the words of an overlap are split
    at its middle between the two, so every word is owned (scored) by exactly one window. A
    single word longer than ``room`` gets a window of its own, cut to ``room`` tokens."""
    room = max(1, room)
    overlap = room // 4
    n = len(counts)
    spans: list[list[int]] = []
    start = 0
    while start < n:
        end, used = start, 0
        while end < n and (used + counts[end] <= room or end == start):
            used += counts[end]
            end += 1
        spans.append([start, end])
        if end >= n:
            break
        nxt, back = end, 0
        while nxt - 1 > start and back + counts[nxt - 1] <= overlap:
            nxt -= 1
            back += counts[nxt]
        start = nxt
    out: list[tuple[int, int, int, int]] = []
    for k, (a, b) in enumerate(spans):
        own_from = 0 if k == 0 else (spans[k - 1][1] + a + 1) // 2
        own_to = n if k == len(spans) - 1 else (b + spans[k + 1][0] + 1) // 2
        out.append((a, b, own_from, own_to))
    return out


def collate_windows(encoded: TokenWindows, indices: Sequence[int], pad_id: int) -> dict[str, Any]:
    """Pad the chosen windows to the longest among them; labels pad with IGNORE."""
    import torch

    width = max(len(encoded.input_ids[i]) for i in indices)
    n = len(indices)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    labels = torch.full((n, width), IGNORE, dtype=torch.long)
    for row, i in enumerate(indices):
        seq = encoded.input_ids[i]
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
        labels[row, : len(seq)] = torch.tensor(encoded.labels[i])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def word_predictions(
    logits: torch.Tensor, indices: Sequence[int], encoded: TokenWindows
) -> list[tuple[int, list[tuple[int, int]]]]:
    """(sentence, [(word, predicted tag index)]) for each window of a batch."""
    best = logits.argmax(-1).tolist()
    out = []
    for row, i in enumerate(indices):
        out.append((encoded.sentence[i], [(w, best[row][pos]) for pos, w in encoded.scored[i]]))
    return out


def stitch(
    predictions: Sequence[tuple[int, list[tuple[int, int]]]], encoded: TokenWindows
) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted IOB2 tags per sentence; a word no window scored (one the tokenizer
    turns into no token at all) is predicted O."""
    names = encoded.label_names
    predicted: dict[int, list[str]] = {}
    for s, words in predictions:
        row = predicted.setdefault(s, ["O"] * len(encoded.gold[s]))
        for w, tag in words:
            row[w] = names[tag]
    order = sorted(predicted)
    return [encoded.gold[s] for s in order], [predicted[s] for s in order]


# ---------------------------------------------------------------- loading


def load_tokens(spec: DataSection) -> TokenData:
    """Read, check, convert to IOB2, split and cap the tagged sentences the study file names."""
    from hpo.data import dataset

    split_names = {"train": "train", "validation": "validation", "test": "test"}
    read: dict[str, list[Sentence]] = {}
    if spec.hub is not None:
        tables = dataset.load_hub(spec)
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
        for split, path in dataset.data_files(spec).items():
            fmt = dataset.file_format(path, spec)
            if fmt == "conll":
                read[split] = read_conll(path, spec.encoding)
            elif fmt in ("json", "jsonl", "parquet"):
                read[split] = read_table(dataset.read_file(path, spec), spec, split)
            else:
                raise DataError(
                    f"{Path(path).name}: token classification reads conll, json, jsonl or "
                    "parquet files (set `data.format`)" + (f", not {fmt}" if fmt else "")
                )
    for split, sentences in read.items():
        check_lengths(sentences)
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
        size = max(1, round(len(train) * (spec.validation_fraction or 0.1)))
        train, validation = carve(train, size, rng)
    if spec.max_train_samples is not None and len(train) > spec.max_train_samples:
        train = carve(train, spec.max_train_samples, rng)[1]
    if spec.max_eval_samples is not None and len(validation) > spec.max_eval_samples:
        validation = carve(validation, spec.max_eval_samples, rng)[1]
    if len(train) < 2:
        raise DataError(f"too little data: {len(train)} training sentences")
    return TokenData(train, validation, test, names, scheme)
