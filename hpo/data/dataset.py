"""Datasets: load from the hub, local files or an installed package (reading the files is
hpo/data/files.py); split (tokenizing and batching the rows is hpo/data/batches.py).

Every source ends as the same shape: ``text`` (and ``text_pair``) plus an integer ``label``,
with train / validation / optional test splits. Splits carved from train are stratified and
seeded by ``data.seed``, so every trial and every worker sees the same rows.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpo.config.spec import DataSection
from hpo.data.files import data_files, load_hub, read_file
from hpo.errors import DataError

if TYPE_CHECKING:
    pass


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
                raise DataError(
                    f"`data.{key}` {col!r} is not a column of the {split} split; "
                    f"its columns are: {', '.join(table.column_names)}"
                )
    label_names, encode = _label_encoder(train_rows, spec.label_column)
    splits = {
        name: _to_split(table, spec, encode, name)
        for name, table in tables.items()
        if table is not None
    }
    rng = random.Random(spec.seed)
    train = splits["train"]
    test = splits.get("test")
    if test is not None and len(test) == 0:
        test = None  # e.g. a hub test split whose labels are hidden
    if test is None and spec.test_fraction > 0:
        train, test = _stratified_fraction(train, spec.test_fraction, rng)
    validation = splits.get("validation")
    if validation is None or len(validation) == 0:
        train, validation = _stratified_fraction(train, spec.validation_fraction or 0.1, rng)
    if spec.max_train_samples is not None and len(train) > spec.max_train_samples:
        train = _stratified_cap(train, spec.max_train_samples, rng)
    if spec.max_eval_samples is not None and len(validation) > spec.max_eval_samples:
        validation = _stratified_cap(validation, spec.max_eval_samples, rng)
    if len(train) < 2 or len(validation) < 1:
        raise DataError(
            f"too little data: {len(train)} training and {len(validation)} validation rows"
        )
    return TaskData(train, validation, test, label_names)


def _load_raw(spec: DataSection) -> dict[str, Any]:
    """Read the source into {split name: datasets.Dataset}."""
    if spec.hub is not None:
        return load_hub(spec)
    return {split: read_file(path, spec) for split, path in data_files(spec).items()}


def _unlabelled(y: Any) -> bool:
    """No label: missing, NaN (an empty cell in a number column), or -1 (hidden test labels)."""
    return y is None or y == -1 or (isinstance(y, float) and math.isnan(y))


def _label_encoder(table: Any, column: str) -> tuple[list[str], dict[Any, int]]:
    """Label names and a value -> index map; class-label features keep their own order."""
    feature = table.features.get(column)
    names = getattr(feature, "names", None)
    if names:
        return list(names), {i: i for i in range(len(names))}
    values = {v for v in table[column] if not _unlabelled(v)}
    if not values:
        raise DataError(f"`data.label_column` {column!r} has no labels in the train split")
    if len(values) < 2:
        raise DataError(f"`data.label_column` {column!r} has only one class: {values.pop()!r}")
    if len(values) > 1000:
        raise DataError(
            f"`data.label_column` {column!r} has {len(values)} distinct values; "
            "is it really a class label?"
        )
    ordered = sorted(values, key=lambda v: (isinstance(v, str), v))
    # A column of integers with a gap is read as floats (0.0, 1.0): name them as integers.
    names = [str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in ordered]
    return names, {v: i for i, v in enumerate(ordered)}


def _to_split(table: Any, spec: DataSection, encode: dict[Any, int], name: str) -> Split:
    texts = table[spec.text_column]
    pairs = table[spec.text_pair_column] if spec.text_pair_column else None
    labels = table[spec.label_column]
    keep_text: list[str] = []
    keep_pair: list[str] | None = [] if pairs is not None else None
    keep_label: list[int] = []
    for i, (text, y) in enumerate(zip(texts, labels, strict=True)):
        if _unlabelled(y) or not isinstance(text, str) or not text.strip():
            continue  # unlabelled or empty rows carry nothing to learn or score
        if y not in encode:
            raise DataError(
                f"the {name} split has label {y!r}, which the train split never uses; "
                f"train labels: {', '.join(map(str, encode))}"
            )
        keep_text.append(text)
        if keep_pair is not None and pairs is not None:
            keep_pair.append(pairs[i] if isinstance(pairs[i], str) else "")
        keep_label.append(encode[y])
    return Split(keep_text, keep_pair, keep_label)


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
