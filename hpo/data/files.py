"""Data files: read a hub dataset, local files or files inside an installed package into
``datasets.Dataset`` tables (csv, tsv, json, jsonl, parquet, and pickles of plain data, which
hpo/data/pickles.py reads without running any code they ask for).
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import importlib.metadata
import json
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from hpo.config.spec import DataSection
from hpo.data.pickles import one_type, read_pickle
from hpo.errors import DataError, DependencyError, first_line, mask_tokens_in_logs

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


def load_hub(spec: DataSection) -> dict[str, Any]:
    """The hub dataset's splits as {split name: datasets.Dataset}."""
    import datasets
    from huggingface_hub import constants

    from hpo.models.source import hub_offline, hub_reachable

    if not hub_offline() and not hub_reachable(constants.ENDPOINT):  # else 30 s of retries
        raise DataError(
            f"cannot load hub dataset {spec.hub!r}: the Hugging Face Hub ({constants.ENDPOINT}) "
            "cannot be reached; connect to the network, set HF_HUB_OFFLINE=1 to read a copy in "
            "the local cache, or give the data as files (data.files)"
        )
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
    mask_tokens_in_logs()  # the hub client's retry lines name the dataset


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
        if Path(name).stat().st_size == 0:
            raise DataError(f"`data.files.{split}` is an empty file (0 bytes): {name}")
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
        table = {key: one_type(values) for key, values in read_pickle(path, spec.columns).items()}
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
        # every cell is read as the text it is: pandas would read "007" as 7 and the labels
        # "01" and "1" as one; only an empty cell is missing: pandas' default would also read
        # the words "None", "NA", "null", "N/A" or "NaN" as missing, dropping a class or a
        # text named so
        kwargs = {"encoding": spec.encoding, "keep_default_na": False, "na_values": [""]}
        if fmt == "tsv":
            kwargs.update(sep="\t", quoting=csv.QUOTE_NONE)
        elif spec.delimiter is not None:
            kwargs["sep"] = spec.delimiter
        if spec.columns is not None:
            _check_headerless(path, spec, fmt)
            kwargs["column_names"] = list(spec.columns)
            fields = len(spec.columns)
        else:
            fields = _check_header(path, spec, fmt)
        # the builder takes no `dtype`; a converter for each column's position (one more
        # than the header has: pandas reads a first field that the header lacks as an index)
        kwargs["converters"] = {i: str for i in range(fields + 1)}
    elif spec.columns is not None:
        raise DataError(
            f"{Path(path).name} is {fmt}, which names its own columns; `data.columns` is for "
            "pickles of parallel lists and csv/tsv files without a header row: drop it"
        )
    elif fmt in ("json", "jsonl"):
        builder = "json"
    else:
        builder = "parquet"
    try:
        with _silent_readers(), tempfile.TemporaryDirectory() as folder:
            source = path
            if fmt in ("json", "jsonl"):
                # pyarrow reads json as utf-8 and keeps bytes that are not, failing only when
                # a text is used, and datasets' own `encoding` misses a json array's file: the
                # text is checked here and read from a utf-8 copy when it is in another encoding
                source = _utf8_text(path, spec.encoding, Path(folder))
                if source != path:  # the copy's table is held in memory; the folder goes
                    kwargs = {"cache_dir": folder, "keep_in_memory": True}
            return datasets.load_dataset(
                builder, data_files={"rows": source}, split="rows", **kwargs
            )
    except DataError:
        raise
    except Exception as exc:  # datasets wraps the reader's errors in its own
        if _caused_by(exc, UnicodeDecodeError):
            raise _not_encoded(Path(path).name, spec.encoding) from None
        if fmt in ("csv", "tsv"):
            problem = _csv_problem(path, spec, fmt)
        else:
            problem = _no_rows(path, fmt) or _json_problem(path, spec.encoding, fmt)
        raise DataError(
            problem or f"cannot read {Path(path).name} as {fmt}: {first_line(exc)}"
        ) from None


def _no_rows(path: str, fmt: str) -> str | None:
    """The message for a json, jsonl or parquet file that holds no rows; else None."""
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            empty = pq.read_metadata(path).num_rows == 0
        else:
            empty = Path(path).read_bytes().strip() in (b"", b"[]", b"{}")
    except Exception:  # unreadable in another way: the reader's own message says how
        return None
    return f"{Path(path).name} has no rows" if empty else None


def _not_encoded(name: str, encoding: str) -> DataError:
    return DataError(f'{name} is not valid {encoding}; set `data.encoding` (for example "latin-1")')


def _utf8_text(path: str, encoding: str, folder: Path) -> str:
    """``path`` when the file is valid utf-8, else the path of a utf-8 copy of its text in
    ``encoding``, written in ``folder``; a file that is not valid text in it is refused.
    Read in pieces, so a large file is never held whole."""
    name = Path(path).name
    try:
        same = codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        raise DataError(f"`data.encoding` {encoding!r} is not an encoding Python knows") from None
    copy = folder / name
    try:
        with open(path, encoding=encoding) as f, contextlib.ExitStack() as stack:
            out = None if same else stack.enter_context(copy.open("w", encoding="utf-8"))
            while piece := f.read(1 << 20):
                if out is not None:
                    out.write(piece)
    except UnicodeDecodeError:
        raise _not_encoded(name, encoding) from None
    return path if same else str(copy)


def _json_problem(path: str, encoding: str, fmt: str) -> str | None:
    """Where and why a json or jsonl file the reader refused is not valid: the first line
    that is not a JSON object (jsonl), or the line and column of the first mistake (json);
    None when no reason is found."""
    name = Path(path).name
    try:
        with open(path, encoding=encoding) as f:
            if fmt == "json":
                try:
                    json.loads(f.read().lstrip("\ufeff"))
                except json.JSONDecodeError as exc:
                    return (
                        f"{name} line {exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})"
                    )
                return None
            for number, line in enumerate(f, start=1):
                line = line.strip().lstrip("\ufeff")
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    return (
                        f"{name} line {number}: not valid JSON: {exc.msg} (column {exc.colno}); "
                        "a jsonl file holds one JSON object per line"
                    )
                if not isinstance(row, dict):
                    return (
                        f"{name} line {number} holds a JSON {_json_kind(row)}, not an object; "
                        'a jsonl file holds one object per line, such as {"text": ..., "label": ...}'
                    )
    except (OSError, UnicodeDecodeError, LookupError, RecursionError):
        return None
    return None


def _json_kind(value: Any) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


@contextlib.contextmanager
def _silent_readers() -> Iterator[None]:
    """No log line from datasets ("Failed to read file ...") nor warning from pandas while a
    file is read: a failure becomes hpo's one-line ``DataError``, and nothing is printed
    before it."""
    import datasets

    before = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        datasets.logging.set_verbosity(before)


def _csv_reader(f: IO[str], fmt: str, strict: bool = False, delimiter: str | None = None) -> Any:
    """Rows of a csv (fields split at ``delimiter``, default ",") or tsv (no quoting) file,
    fields of any length; ``strict``: a quoting mistake in a csv is a ``csv.Error``."""
    csv.field_size_limit(max(csv.field_size_limit(), 2**31 - 1))
    if fmt == "tsv":
        return csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
    return csv.reader(f, strict=strict, delimiter=delimiter or ",")


def _csv_problem(path: str, spec: DataSection, fmt: str) -> str | None:
    """Why a csv/tsv file the reader refused cannot be read, in one line naming the file and
    the line (an unterminated quote, a header with no rows); None when no reason is found."""
    name = Path(path).name
    rows = 0
    line = 0
    try:
        with open(path, encoding=spec.encoding, newline="") as f:
            reader = _csv_reader(f, fmt, strict=True, delimiter=spec.delimiter)
            for row in reader:
                rows += bool(row)  # blank lines are no rows (pandas skips them)
                line = reader.line_num
    except csv.Error as exc:
        if "unexpected end of data" in str(exc):
            return (
                f'{name} line {line + 1}: a quoted field starts here and its closing quote (") '
                'never comes; close it, or double each quote inside a field ("")'
            )
        return f"{name} line {line + 1}: {first_line(exc)}{_delimiter_hint(path, spec, fmt)}"
    except (OSError, UnicodeDecodeError):
        return None
    if rows == 1 and spec.columns is None:
        return f"{name} has a header row but no data rows"
    return None


def _delimiter_hint(path: str, spec: DataSection, fmt: str) -> str:
    """What a csv's fields were split at, and the separator its first line seems to use
    instead, if it has none of that one: a csv read with the wrong `data.delimiter` fails on
    the first quoted field with a message about quotes."""
    if fmt != "csv":
        return ""
    used = spec.delimiter or ","
    said = f"`data.delimiter` is {used!r}" + ("" if spec.delimiter else " (the default)")
    try:
        with open(path, encoding=spec.encoding, newline="") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError, LookupError):
        return f"; {said}"
    other = next((c for c in (",", ";", "\t", "|") if c != used and c in first), None)
    if used in first or other is None:
        return f"; {said}"
    return f"; {said}, which its first line does not have: set `data.delimiter = {other!r}`?"


def _check_header(path: str, spec: DataSection, fmt: str) -> int:
    """The number of fields in a csv/tsv's header row (0 if it cannot be read here), which
    must name each column once: pandas would read a second ``text`` as ``text.1``, and the
    first would be used without a word."""
    name = Path(path).name
    try:
        with open(path, encoding=spec.encoding, newline="") as f:
            rows = _csv_reader(f, fmt, delimiter=spec.delimiter)
            header: list[str] = next((row for row in rows if row), [])
    except UnicodeDecodeError:
        raise _not_encoded(name, spec.encoding) from None
    except (OSError, csv.Error, LookupError):
        return 0  # the reader says what is wrong
    seen: dict[str, int] = {}
    for number, column in enumerate(header, start=1):
        column = column.removeprefix("\ufeff") if number == 1 else column
        if column and column in seen:
            raise DataError(
                f"{name}: columns {seen[column]} and {number} of the header row are both named "
                f"{column!r}; rename one of them (only the first would be read)"
            )
        seen[column] = number
    return len(header)


def _check_headerless(path: str, spec: DataSection, fmt: str) -> None:
    """``data.columns`` must name every field of a header-less csv/tsv's rows, and the file
    must not start with a header (it would be read as a row)."""
    assert spec.columns is not None
    name = Path(path).name
    try:
        with open(path, encoding=spec.encoding, newline="") as f:
            first: list[str] = next(_csv_reader(f, fmt, delimiter=spec.delimiter), [])
    except UnicodeDecodeError:
        raise _not_encoded(name, spec.encoding) from None
    except csv.Error:
        raise DataError(_csv_problem(path, spec, fmt) or f"cannot read {name} as {fmt}") from None
    if [field.strip() for field in first] == list(spec.columns):
        raise DataError(
            f"{name} starts with a header row ({', '.join(first)}); `data.columns` is for files "
            "without one: drop it"
        )
    if first and len(first) != len(spec.columns):
        raise DataError(  # an unterminated quote on the first line makes one long field
            _csv_problem(path, spec, fmt)
            or f"`data.columns` names {len(spec.columns)} columns but the rows of {name} have "
            f"{len(first)} fields; name each of them"
        )


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
            f"`data.package` {package!r} is not installed: check the name, or install it "
            f"(pip install {package})"
        ) from None
    located = Path(str(dist.locate_file(path)))
    if not located.is_file():
        raise DataError(f"`{key}` {path!r} is not a file of the installed package {package!r}")
    return located
