"""What loading a classification data set says about it: one warning line each for rows it
dropped (an empty text or label), rows it kept but the user should see (a pair without its
second text, held-out rows train also has), fractions the data's own splits make moot, labels
that look wrong, and a validation split too small to rank trials by."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hpo.config.spec import DataSection
    from hpo.data.dataset import Split


SMALL_VALIDATION = 20  # below this, one evaluation's standard error is above 0.1


def small_validation_note(n: int, units: str) -> list[str]:
    """A note when the validation split is too small to rank trials by."""
    if n >= SMALL_VALIDATION:
        return []
    return [
        f"only {n} validation {units}: one evaluation's standard error is about "
        f"{0.5 / math.sqrt(max(n, 1)):.2f}, so trials that close cannot be told apart; give "
        "more validation data (data.files.validation, data.validation_fraction)"
    ]


def label_notes(label_names: Sequence[str], train_rows: int) -> list[str]:
    """Notes on label columns that are probably not what the user meant: labels that differ
    only in case or surrounding spaces, and a continuous target read as classes."""
    notes = []
    groups: dict[str, list[str]] = defaultdict(list)
    for name in label_names:
        groups[name.strip().casefold()].append(name)
    alike = [names for names in groups.values() if len(names) > 1]
    if alike:
        shown = "; ".join(" and ".join(repr(n) for n in names) for names in alike[:3])
        notes.append(
            f"labels that differ only in case or spaces are separate classes: {shown}; "
            "clean the label column if they are one class"
        )
    if len(label_names) > 20 and len(label_names) > train_rows / 2:
        notes.append(
            f"{len(label_names)} distinct labels among {train_rows} training rows: a "
            "continuous target? hpo classifies, so every distinct value is a class of its own"
        )
    return notes


def blank_note(blank: dict[str, int]) -> list[str]:
    """How many labelled rows of each split were dropped for an empty or whitespace text."""
    counts = [f"{n} in {split}" for split, n in blank.items() if n]
    if not counts:
        return []
    return [f"dropped rows whose text is empty or only whitespace: {', '.join(counts)}"]


def lone_note(lone: dict[str, int], column: str | None) -> list[str]:
    """How many pair rows of each split had an empty second text: kept, read as their first
    text alone (a headline without its article is still a text to classify; a premise without
    its hypothesis is probably a broken row, which the user should see)."""
    counts = [f"{n} in {split}" for split, n in lone.items() if n]
    if not counts or column is None:
        return []
    return [
        f"rows whose second text (`{column}`) is empty, kept and read as their first text "
        f"alone: {', '.join(counts)}"
    ]


def unused_fraction_notes(spec: DataSection, splits: dict[str, Split]) -> list[str]:
    """A fraction to carve from train that the data's own split makes moot: said, where it was
    silently ignored (the default validation fraction is not one the user chose)."""
    notes = []
    for name, fraction, default in (
        ("validation", spec.validation_fraction, 0.1),
        ("test", spec.test_fraction, 0.0),
    ):
        if fraction != default and len(splits.get(name) or ()):
            notes.append(
                f"`data.{name}_fraction` {fraction:g} is not used: the data has its own "
                f"{name} split; drop the key, or the {name} split to carve one from train"
            )
    return notes


def unlabelled_note(unlabelled: dict[str, int], splits: dict[str, Split]) -> list[str]:
    """How many rows of each split were dropped for an empty label cell; a split with no label
    at all (a hub test split whose labels are hidden) is left out, as it is by design."""
    counts = [
        f"{n} in {name}" for name, n in unlabelled.items() if n and len(splits.get(name) or ())
    ]
    if not counts:
        return []
    return [f"dropped rows with no label (an empty cell): {', '.join(counts)}"]


def leakage_notes(train: Split, held_out: dict[str, Split | None]) -> list[str]:
    """A note for each held-out split holding rows whose text (and pair) train has too: its
    scores would flatter a model that memorised them."""
    seen = set(_row_texts(train))
    notes = []
    for name, split in held_out.items():
        shared = sum(1 for row in _row_texts(split) if row in seen) if split else 0
        if shared:
            notes.append(f"{shared} {name} rows also appear in train: {name} leakage")
    return notes


def _row_texts(split: Split) -> list[tuple[str, str | None]]:
    pairs = split.text_pair if split.text_pair is not None else [None] * len(split)
    return list(zip(split.text, pairs, strict=True))
