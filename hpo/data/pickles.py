"""Pickled data files, read without running any code they name: a dict of columns, a list of
row dicts, or a tuple of columns that ``data.columns`` names (hpo/data/files.py reads the
other formats)."""

from __future__ import annotations

import math
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpo.errors import DataError, first_line


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


def one_type(values: list[Any]) -> list[Any]:
    """A column that mixes text with numbers (labels "1" and 2, say) as text throughout, as a
    csv reader would give it: 1, 1.0 and "1" are the same label. Missing values stay None."""
    kinds = {isinstance(v, str) for v in values if v is not None and not _nan(v)}
    if kinds != {True, False}:
        return values
    return [None if v is None or _nan(v) else _as_text(v) for v in values]


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _as_text(value: Any) -> str:
    """A value as text; a whole float as an integer ("2", not "2.0")."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


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
