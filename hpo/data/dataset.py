"""Datasets: load from the hub, local files or an installed package; split (tokenizing and
batching the rows is hpo/data/batches.py).

Every source ends as the same shape: ``text`` (and ``text_pair``) plus an integer ``label``,
with train / validation / optional test splits. Splits carved from train are stratified and
seeded by ``data.seed``, so every trial and every worker sees the same rows.
"""

from __future__ import annotations

import csv
import importlib.metadata
import math
import pickle
import random
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.config.spec import DataSection
from hpo.errors import DataError, DependencyError, first_line

if TYPE_CHECKING:
    pass

_EXTENSIONS = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".json": "json",
    ".jsonl": "jsonl",
    ".parquet": "parquet",
    ".conll": "conll",
    ".iob": "conll",
    ".pkl": "pickle",
    ".pickle": "pickle",
}


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


def load_hub(spec: DataSection) -> dict[str, Any]:
    """The hub dataset's splits as {split name: datasets.Dataset}."""
    import datasets

    quiet_datasets()
    try:
        loaded = datasets.load_dataset(spec.hub, spec.config)
    except Exception as exc:  # the hub raises many kinds; all mean the same to a user
        raise DataError(
            f"cannot load hub dataset {spec.hub!r}"
            + (f" (config {spec.config!r})" if spec.config else "")
            + f": {first_line(exc)}"
        ) from None
    return dict(loaded)


def quiet_datasets() -> None:
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()


def data_files(spec: DataSection) -> dict[str, str]:
    """{split: path} of a local or packaged source, each checked to exist."""
    if spec.package is not None and spec.files is not None:
        files = {
            split: str(_package_file(spec.package, name, f"data.files.{split}"))
            for split, name in spec.files.items()
        }
    elif spec.package is not None:
        assert spec.path is not None
        files = {"train": str(_package_file(spec.package, spec.path))}
    else:
        assert spec.files is not None
        files = dict(spec.files)
    for split, name in files.items():
        if not Path(name).is_file():
            raise DataError(f"`data.files.{split}` not found: {name}")
    return files


def file_format(path: str, spec: DataSection) -> str | None:
    """``data.format``, else the one the file's extension names (None: unknown)."""
    return spec.format or _EXTENSIONS.get(Path(path).suffix.lower())


def read_file(path: str, spec: DataSection) -> Any:
    """One csv, tsv, json, jsonl, parquet or pickle file as a ``datasets.Dataset``."""
    import datasets

    quiet_datasets()
    fmt = file_format(path, spec)
    if fmt == "pickle":
        table = read_pickle(path, spec.columns)
        try:
            return datasets.Dataset.from_dict(table)
        except Exception as exc:  # pyarrow: mixed or unsupported types in a column
            raise DataError(
                f"cannot read {Path(path).name} as a table: {first_line(exc)}"
            ) from None
    if fmt == "conll":
        raise DataError(
            f"{Path(path).name} is a CoNLL file: it holds tagged words, which "
            '`study.task = "token_classification"` reads'
        )
    if fmt is None:
        raise DataError(
            f"cannot tell the format of {Path(path).name}; set `data.format` to csv, tsv, json, "
            "jsonl, parquet, pickle or conll"
        )
    kwargs: dict[str, Any] = {}
    if fmt in ("csv", "tsv"):
        builder = "csv"
        kwargs = {"encoding": spec.encoding}
        if fmt == "tsv":
            kwargs.update(sep="\t", quoting=csv.QUOTE_NONE)
        if spec.columns is not None:
            _check_headerless(path, spec, fmt)
            kwargs["column_names"] = list(spec.columns)
    elif spec.columns is not None:
        raise DataError(
            f"{Path(path).name} is {fmt}, which names its own columns; `data.columns` is for "
            "pickles of parallel lists and csv/tsv files without a header row: drop it"
        )
    else:
        builder = "json" if fmt in ("json", "jsonl") else "parquet"
    try:
        return datasets.load_dataset(builder, data_files={"rows": path}, split="rows", **kwargs)
    except Exception as exc:  # datasets wraps the reader's errors in its own
        if _caused_by(exc, UnicodeDecodeError):
            raise DataError(
                f"{Path(path).name} is not valid {spec.encoding}; set `data.encoding` "
                '(for example "latin-1")'
            ) from None
        raise DataError(f"cannot read {Path(path).name} as {fmt}: {first_line(exc)}") from None


def _check_headerless(path: str, spec: DataSection, fmt: str) -> None:
    """``data.columns`` must name every field of a header-less csv/tsv's rows, and the file
    must not start with a header (it would be read as a row)."""
    assert spec.columns is not None
    name = Path(path).name
    try:
        with open(path, encoding=spec.encoding, newline="") as f:
            if fmt == "tsv":
                first = next(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), [])
            else:
                first = next(csv.reader(f), [])
    except UnicodeDecodeError:
        raise DataError(
            f'{name} is not valid {spec.encoding}; set `data.encoding` (for example "latin-1")'
        ) from None
    if [field.strip() for field in first] == list(spec.columns):
        raise DataError(
            f"{name} starts with a header row ({', '.join(first)}); `data.columns` is for files "
            "without one: drop it"
        )
    if first and len(first) != len(spec.columns):
        raise DataError(
            f"`data.columns` names {len(spec.columns)} columns but the rows of {name} have "
            f"{len(first)} fields; name each of them"
        )


class _PlainUnpickler(pickle.Unpickler):
    """Unpickles lists, tuples, dicts, sets, strings, bytes, numbers, booleans and None only:
    every class or function a pickle names is refused, so loading one can run no code."""

    def find_class(self, module: str, name: str) -> Any:
        raise _RefusedGlobal(f"{module}.{name}")


class _RefusedGlobal(pickle.UnpicklingError):
    pass


def read_pickle(path: str, columns: Sequence[str] | None = None) -> dict[str, list[Any]]:
    """A pickle of plain data as {column: values}: a list of row dicts, a dict of equal-length
    columns, or a tuple (or list) of parallel columns that ``columns`` names."""
    name = Path(path).name
    try:
        with open(path, "rb") as f:
            data = _PlainUnpickler(f).load()
    except _RefusedGlobal as exc:
        raise DataError(
            f"{name} asks for {exc} while unpickling; hpo refuses to load objects that run code "
            "from a pickle: save plain lists, dicts, strings and numbers"
        ) from None
    except Exception as exc:  # a broken or truncated pickle raises many kinds
        raise DataError(f"cannot read {name} as a pickle: {first_line(exc)}") from None
    if isinstance(data, dict):
        if columns is not None:
            raise DataError(
                f"{name} holds a dict, which names its own columns ({_shown(data)}); "
                "drop `data.columns`"
            )
        table = {str(k): v for k, v in data.items()}
        if len(table) != len(data):
            raise DataError(f"{name}: two of the dict's keys read as the same column name")
        for key, values in table.items():
            if not isinstance(values, (list, tuple)):
                raise DataError(
                    f"{name} holds a dict whose {key!r} is a {type(values).__name__}, not a "
                    "list; a dict must map each column name to a list of values"
                )
        return _equal_lengths(table, name, "")
    if isinstance(data, (list, tuple)) and data and all(isinstance(r, dict) for r in data):
        if columns is not None:
            raise DataError(
                f"{name} holds row dicts, which name their own columns; drop `data.columns`"
            )
        keys: dict[str, None] = {}
        for row in data:
            keys.update((str(k), None) for k in row)
        rows = [{str(k): v for k, v in row.items()} for row in data]
        return {key: [row.get(key) for row in rows] for key in keys}
    if isinstance(data, (list, tuple)) and data and all(isinstance(c, (list, tuple)) for c in data):
        if columns is None:
            raise DataError(
                f"{name} holds {len(data)} parallel lists but no column names; set "
                f'`data.columns` to {len(data)} names, e.g. ["text", "label"]'
            )
        if len(columns) != len(data):
            raise DataError(
                f"`data.columns` names {len(columns)} columns ({', '.join(columns)}) but {name} "
                f"holds {len(data)} parallel lists; give one name for each"
            )
        return _equal_lengths(dict(zip(columns, data, strict=True)), name, " in `data.columns`")
    kind = type(data).__name__
    if isinstance(data, (list, tuple)):
        kinds = sorted({type(x).__name__ for x in data})
        kind += f" of {', '.join(kinds)}" if data else " with nothing in it"
    raise DataError(
        f"{name} holds a {kind}; a data pickle holds a list of row dicts, a dict of "
        "equal-length columns, or a tuple of parallel columns (named by `data.columns`)"
    )


def _equal_lengths(table: dict[str, Any], name: str, where: str) -> dict[str, list[Any]]:
    lengths = {key: len(values) for key, values in table.items()}
    if len(set(lengths.values())) > 1:
        first = next(iter(lengths))
        other = next(k for k, n in lengths.items() if n != lengths[first])
        raise DataError(
            f"{name}: column {other!r}{where} has {lengths[other]} values but {first!r} has "
            f"{lengths[first]}; every column needs one value per row"
        )
    return {key: list(values) for key, values in table.items()}


def _shown(data: dict[Any, Any]) -> str:
    keys = [str(k) for k in data]
    return ", ".join(keys[:6]) + (", ..." if len(keys) > 6 else "")


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _package_file(package: str, path: str, key: str = "data.path") -> Path:
    """Find a data file shipped inside an installed distribution, without importing it."""
    try:
        dist = importlib.metadata.distribution(package)
    except importlib.metadata.PackageNotFoundError:
        raise DependencyError(
            f"`data.package` {package!r} is not installed; install it: pip install {package}"
        ) from None
    located = Path(str(dist.locate_file(path)))
    if not located.is_file():
        raise DataError(f"`{key}` {path!r} is not a file of the installed package {package!r}")
    return located


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
