"""Datasets: load from the hub, local files or an installed package (reading the files is
hpo/data/files.py); split (tokenizing and batching the rows is hpo/data/batches.py).

Every source ends as the same shape: ``text`` (and ``text_pair``) plus an integer ``label``,
with train / validation / optional test splits. Splits carved from train are stratified and
seeded by ``data.seed``, so every trial and every worker sees the same rows.

Bad data stops the study with one ``DataError`` before any trial; what is only suspicious (rows
dropped for an empty text, texts shared between train and a held-out split) is said once, as
a ``warning:`` line on stderr (the lines: hpo/data/notes.py), and kept in ``TaskData.notes``.
"""

from __future__ import annotations

import math
import random
import re
import sys
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.config.spec import DataSection
from hpo.data.files import data_files, file_format, load_hub, read_file
from hpo.data.notes import (
    blank_note,
    label_notes,
    leakage_notes,
    lone_note,
    small_validation_note,
    unlabelled_note,
    unused_fraction_notes,
)
from hpo.errors import DataError


@dataclass(frozen=True)
class Split:
    """One split in the common shape: texts, optional second texts, integer labels."""

    text: list[str]
    text_pair: list[str] | None
    label: list[int]

    def __len__(self) -> int:
        return len(self.label)

    def subset(self, indices: Sequence[int]) -> Split:
        pair = [self.text_pair[i] for i in indices] if self.text_pair is not None else None
        return Split([self.text[i] for i in indices], pair, [self.label[i] for i in indices])

    def concat(self, other: Split) -> Split:
        pair = None
        if self.text_pair is not None and other.text_pair is not None:
            pair = self.text_pair + other.text_pair
        return Split(self.text + other.text, pair, self.label + other.label)


@dataclass(frozen=True)
class TaskData:
    """A classification task ready to tokenize: its splits and its label names."""

    train: Split
    validation: Split
    test: Split | None
    label_names: list[str]
    notes: tuple[str, ...] = ()  # the warnings printed when the data was loaded

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def majority_baseline(self) -> tuple[str, float]:
        """The most frequent training label and the validation accuracy of always predicting it."""
        counts = [0] * self.num_labels
        for y in self.train.label:
            counts[y] += 1
        top = max(range(self.num_labels), key=counts.__getitem__)
        hits = sum(1 for y in self.validation.label if y == top)
        return self.label_names[top], hits / max(1, len(self.validation))


def load_task(spec: DataSection) -> TaskData:
    """Load, clean, split and cap the data the study file describes."""
    raw = _load_raw(spec)
    train_rows = raw.get(spec.train_split) if spec.hub else raw.get("train")
    if train_rows is None:
        raise DataError(f"the dataset has no split {spec.train_split!r}; it has: {', '.join(raw)}")
    columns = [spec.text_column, spec.label_column] + (
        [spec.text_pair_column] if spec.text_pair_column else []
    )
    val_name = spec.validation_split if spec.hub else "validation"
    test_name = spec.test_split if spec.hub else "test"
    tables = {"train": train_rows, "validation": raw.get(val_name), "test": raw.get(test_name)}
    for split, table in tables.items():
        if table is None:
            continue
        for key, col in zip(
            ("text_column", "label_column", "text_pair_column"), columns, strict=False
        ):
            if col not in table.column_names:
                path = (spec.files or {}).get(split)
                headed = path is not None and file_format(path, spec) not in ("csv", "tsv")
                headless = (
                    ""
                    if spec.hub or spec.columns or headed  # json, parquet: columns are named
                    else "; if the file has no header row, name its columns with data.columns"
                )
                names = table.column_names
                if len(names) == 1 and spec.hub is None:
                    used = spec.delimiter or ","
                    sep = next((c for c in ",;|:" if c != used and c in names[0]), None)
                    if sep is not None:  # a header read as one field: another separator
                        headless = f"; fields separated by {sep!r}? set data.delimiter = {sep!r}"
                raise DataError(
                    f"`data.{key}` {col!r} is not a column of the {split} split; "
                    f"its columns are: {', '.join(table.column_names)}{headless}"
                )
    label_names, encode = _label_encoder(train_rows, spec.label_column)
    splits: dict[str, Split] = {}
    blank: dict[str, int] = {}
    unlabelled: dict[str, int] = {}
    lone: dict[str, int] = {}  # pair rows whose second text is empty
    for name, table in tables.items():
        if table is not None:
            # a class-label feature (a hub dataset's) marks a hidden label -1
            hidden = bool(getattr(table.features.get(spec.label_column), "names", None))
            splits[name], blank[name], unlabelled[name], lone[name] = _to_split(
                table, spec, encode, label_names, name, hidden
            )
            if spec.hub is None and len(splits[name]) == 0:
                raise DataError(
                    f"the {name} split ({Path(data_files(spec)[name]).name}) has no row with "
                    "both a text and a label"
                )
    rng = random.Random(spec.seed)
    train = splits["train"]
    test = splits.get("test")
    if test is not None and len(test) == 0:
        test = None  # e.g. a hub test split whose labels are hidden
    if test is None and spec.test_fraction > 0:
        train, test = _stratified_fraction(train, spec.test_fraction, rng)
    validation = splits.get("validation")
    if validation is None or len(validation) == 0:
        train, validation = _stratified_fraction(train, validation_fraction(spec), rng)
    if spec.max_train_samples is not None and len(train) > spec.max_train_samples:
        train = _stratified_cap(train, spec.max_train_samples, rng)
    if spec.max_eval_samples is not None and len(validation) > spec.max_eval_samples:
        validation = _stratified_cap(validation, spec.max_eval_samples, rng)
    if len(train) < 2 or len(validation) < 1:
        raise DataError(
            f"too little data: {len(train)} training and {len(validation)} validation rows"
        )
    notes = (
        blank_note(blank)
        + unlabelled_note(unlabelled, splits)
        + lone_note(lone, spec.text_pair_column)
        + unused_fraction_notes(spec, splits)
        + label_notes(label_names, len(train))
        + leakage_notes(train, {"validation": validation, "test": test})
        + small_validation_note(len(validation), "rows")
    )
    for note in notes:
        print(f"warning: {note}", file=sys.stderr, flush=True)
    return TaskData(train, validation, test, label_names, tuple(notes))


def validation_fraction(spec: DataSection) -> float:
    """The share of train to score trials on, where the data has no validation split."""
    if spec.validation_fraction <= 0:
        raise DataError(
            "the data has no validation split and `data.validation_fraction` is 0: trials are "
            "scored on validation rows; give data.files.validation (or data.validation_split), "
            "or a fraction above 0 (0.1 is the default)"
        )
    return spec.validation_fraction


def _load_raw(spec: DataSection) -> dict[str, Any]:
    """Read the source into {split name: datasets.Dataset}; a local file must hold rows."""
    if spec.hub is not None:
        return load_hub(spec)
    tables = {}
    for split, path in data_files(spec).items():
        tables[split] = read_file(path, spec)
        if len(tables[split]) == 0:
            raise DataError(f"`data.files.{split}` has no rows: {path}")
    return tables


def _unlabelled(y: Any) -> bool:
    """No label: missing, NaN (an empty cell in a number column) or an empty text. A -1 in the
    user's own file is a label (-1/0/1 is a common coding); only a class-label feature (a hub
    dataset's) uses -1 for a hidden label, which its encoder maps to None."""
    return y is None or (isinstance(y, float) and math.isnan(y)) or (isinstance(y, str) and not y)


def _as_text(value: Any) -> str | None:
    """A text cell as a string: numbers (a text column that holds 12345) as written; None for
    a missing, empty or whitespace-only cell."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, (int, float)):
        value = _label_name(value)
    return value if isinstance(value, str) and value.strip() else None


# a whole number written with a zero fraction, as pandas writes an integer column with a gap
_WHOLE = re.compile(r"([+-]?[0-9]+)\.0+")
# text that reads as a number, as every cell of a csv is text: it sorts among the numbers
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _label_name(value: Any) -> str:
    """A label as text: 1, 1.0, "1" and "1.0" are the same label "1" (a json or pickle column
    may mix numbers with text); any other text is the label as written: "01" is not "1"."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, str) and (whole := _WHOLE.fullmatch(value)):
        return whole.group(1)
    return str(value)


def _label_order(name: str, value: Any) -> tuple[bool, float, str]:
    """Numbers first, in numeric order, and text that reads as one among them (a csv's cells
    are all text), then the rest of the text."""
    if isinstance(value, str):
        number = float(value) if _NUMBER.fullmatch(value) else None
    else:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = None
    if number is None or math.isnan(number):
        return True, 0.0, name
    return False, number, name


def _label_encoder(table: Any, column: str) -> tuple[list[str], Callable[[Any], int | None]]:
    """Label names and a value -> index function (None: a label train never has); class-label
    features keep their own order, other labels are read as text, numbers in numeric order."""
    feature = table.features.get(column)
    names = getattr(feature, "names", None)
    if names:
        return list(names), lambda y: y if isinstance(y, int) and 0 <= y < len(names) else None
    try:
        values = {v for v in table[column] if not _unlabelled(v)}
    except TypeError:  # unhashable: a list or a dict in a cell
        raise DataError(
            f"`data.label_column` {column!r} holds lists or tables, not one label per row"
        ) from None
    if not values:
        raise DataError(f"`data.label_column` {column!r} has no labels in the train split")
    if len(values) < 2:
        raise DataError(f"`data.label_column` {column!r} has only one class: {values.pop()!r}")
    if len(values) > 1000:
        raise DataError(
            f"`data.label_column` {column!r} has {len(values)} distinct values; "
            "is it really a class label?"
        )
    ordered = sorted(((_label_name(v), v) for v in values), key=lambda nv: _label_order(*nv))
    names = list(dict.fromkeys(name for name, _ in ordered))
    if len(names) < 2:
        raise DataError(f"`data.label_column` {column!r} has only one class: {names[0]!r}")
    index = {name: i for i, name in enumerate(names)}
    return names, lambda y: index.get(_label_name(y))


def _to_split(
    table: Any,
    spec: DataSection,
    encode: Callable[[Any], int | None],
    label_names: list[str],
    name: str,
    hidden: bool = False,
) -> tuple[Split, int, int, int]:
    """The split's labelled rows with a text; how many labelled rows had none (an empty or
    whitespace-only text); how many rows had no label (for a ``hidden``-label feature, also a
    label outside its classes: -1); and how many pair rows had an empty second text (kept,
    with "" as it)."""
    texts = table[spec.text_column]
    pairs = table[spec.text_pair_column] if spec.text_pair_column else None
    labels = table[spec.label_column]
    keep_text: list[str] = []
    keep_pair: list[str] | None = [] if pairs is not None else None
    keep_label: list[int] = []
    blank = 0
    unlabelled = lone = 0
    for i, (cell, y) in enumerate(zip(texts, labels, strict=True)):
        index = None if _unlabelled(y) else encode(y)
        if index is None and (_unlabelled(y) or hidden):
            unlabelled += 1  # unlabelled rows carry nothing to learn or score
            continue
        text = _as_text(cell)
        if text is None:
            blank += 1  # nor do rows without a text: dropped, and counted in a warning
            continue
        pair = _as_text(pairs[i]) if pairs is not None else ""
        if pair is None:  # a title without its body, say: the first text alone, counted
            lone += 1
            pair = ""
        if index is None:
            raise DataError(
                f"the {name} split has label {_shown_value(y)}, which the train split never "
                f"uses; train labels: {_shown_names(label_names)}"
            )
        keep_text.append(text)
        if keep_pair is not None:
            keep_pair.append(pair)
        keep_label.append(index)
    return Split(keep_text, keep_pair, keep_label), blank, unlabelled, lone


def _shown_names(names: Sequence[str], most: int = 10) -> str:
    """The first ``most`` names, and how many there are when that is not all of them: a label
    column that holds texts would otherwise fill the error line with every one."""
    if len(names) <= most:
        return ", ".join(_shown_value(n, quoted=False) for n in names)
    shown = ", ".join(_shown_value(n, quoted=False) for n in names[:most])
    return f"{shown}, ... ({len(names)} in all)"


def _shown_value(value: Any, quoted: bool = True, most: int = 40) -> str:
    """A label as an error line shows it, cut to ``most`` characters (a text can be long)."""
    text = repr(value) if quoted else str(value)
    return text if len(text) <= most else text[: most - 3] + "..."


def _by_label(split: Split, rng: random.Random) -> list[list[int]]:
    groups: dict[int, list[int]] = defaultdict(list)
    for i, y in enumerate(split.label):
        groups[y].append(i)
    out = [groups[y] for y in sorted(groups)]
    for group in out:
        rng.shuffle(group)
    return out


def _quotas(sizes: list[int], total: int) -> list[int]:
    """Rows to take from each class so they add up to ``total`` exactly, in proportion.

    Largest remainders get the leftover rows; every class with two or more rows gets at least
    one when the total allows it, so no class vanishes from a small split.
    """
    n = sum(sizes)
    exact = [s * total / n for s in sizes]
    quota = [int(x) for x in exact]
    for i in sorted(range(len(sizes)), key=lambda i: exact[i] - quota[i], reverse=True):
        if sum(quota) >= total:
            break
        quota[i] += 1
    for i, size in enumerate(sizes):
        if quota[i] == 0 and size > 1 and total >= len(sizes):
            donor = max(range(len(sizes)), key=quota.__getitem__)
            quota[donor] -= 1
            quota[i] = 1
    return [min(q, s) for q, s in zip(quota, sizes, strict=True)]


def _stratified_split(split: Split, size: int, rng: random.Random) -> tuple[Split, Split]:
    """Carve ``size`` rows keeping label proportions; returns (rest, carved)."""
    groups = _by_label(split, rng)
    held: list[int] = []
    rest: list[int] = []
    for group, k in zip(groups, _quotas([len(g) for g in groups], size), strict=True):
        held += group[:k]
        rest += group[k:]
    return split.subset(sorted(rest)), split.subset(sorted(held))


def _stratified_fraction(split: Split, fraction: float, rng: random.Random) -> tuple[Split, Split]:
    return _stratified_split(split, max(1, round(len(split) * fraction)), rng)


def _stratified_cap(split: Split, n: int, rng: random.Random) -> Split:
    return _stratified_split(split, n, rng)[1]
