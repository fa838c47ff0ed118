"""One row per trial, as csv, json or parquet: parameters, state, metric and the hpo attributes."""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from hpo.errors import DependencyError, HpoError, UserError, WriteFailed, first_line
from hpo.results.insights import ATTR_ORDER, FORMATS
from hpo.results.report import infeasible
from hpo.results.report_json import _jsonable


def _cell(x: Any) -> Any:
    """A table cell: scalars as they are, lists and dicts as JSON text."""
    if isinstance(x, Mapping | list | tuple):
        return json.dumps(_jsonable(x), allow_nan=False)
    return x


def _flat_attrs(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """User attrs with dicts spread out: metrics as metric_<name>, any other as <attr>_<key>."""
    out: dict[str, Any] = {}
    for key, v in attrs.items():
        if isinstance(v, Mapping):
            prefix = "metric" if key == "metrics" else key
            out.update({f"{prefix}_{k}": _cell(x) for k, x in v.items()})
        else:
            out[key] = _cell(v)
    return out


def trial_table(
    trials: Sequence[FrozenTrial], param_order: Sequence[str] = ()
) -> tuple[list[str], list[dict[str, Any]]]:
    """(columns, rows): one row per trial but WAITING slots, params as param_<name>."""
    kept = sorted((t for t in trials if t.state != TrialState.WAITING), key=lambda t: t.number)
    flat = [_flat_attrs(t.user_attrs) for t in kept]
    seen = {n for t in kept for n in t.params}
    params = [n for n in param_order if n in seen] + sorted(seen - set(param_order))
    keys = {k for attrs in flat for k in attrs}
    metrics = sorted(k for k in keys if k.startswith("metric_"))
    attrs = [k for k in ATTR_ORDER if k in keys]
    attrs += metrics + sorted(keys - set(attrs) - set(metrics))
    head = ["number", "state", "value", "last_reported", "infeasible"]
    head += ["datetime_start", "datetime_complete", "duration_seconds"]
    columns = head + [f"param_{n}" for n in params] + attrs
    rows = []
    for t, a in zip(kept, flat, strict=True):
        last = max(t.intermediate_values, default=None)
        row: dict[str, Any] = {
            "number": t.number,
            "state": t.state.name,
            # an infeasible trial's value is a placeholder, not a score: left out
            "value": float(t.values[0]) if t.values and not infeasible(t) else None,
            "last_reported": None if last is None else float(t.intermediate_values[last]),
            "infeasible": infeasible(t),
            "datetime_start": t.datetime_start,
            "datetime_complete": t.datetime_complete,
            "duration_seconds": None if t.duration is None else t.duration.total_seconds(),
        }
        row.update({f"param_{n}": t.params.get(n) for n in params})
        row.update({k: a.get(k) for k in attrs})
        rows.append(row)
    return columns, rows


def _csv(columns: list[str], rows: list[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {k: v.isoformat() if isinstance(v, datetime) else v for k, v in row.items()}
        )
    return buf.getvalue()


def _parquet(columns: list[str], rows: list[dict[str, Any]]) -> bytes:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ModuleNotFoundError:
        raise DependencyError("--format parquet needs pyarrow: pip install pyarrow") from None
    arrays = {}
    for name in columns:
        values = [row[name] for row in rows]
        try:
            arrays[name] = pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # mixed types: keep them as text
            arrays[name] = pa.array([None if v is None else str(v) for v in values])
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table(arrays), sink)
    return bytes(sink.getvalue().to_pybytes())


def _write(out: Path, data: str | bytes) -> None:
    """Write data to the file out, creating its folder: to a hidden sibling first, then moved
    over ``out`` in one rename, so a failed write leaves any earlier file whole; an OSError
    becomes one line."""
    if _stream(out):  # written into: a rename over /dev/null would replace the device itself
        try:
            with open(out, "wb") as f:
                f.write(data.encode("utf-8") if isinstance(data, str) else data)
        except OSError as exc:
            raise HpoError(f"cannot write --out {out}: {exc.strerror or exc}") from None
        return
    if out.is_symlink():  # the file it points to is replaced, not the link
        out = Path(os.path.realpath(out))
    partial = out.parent / f".{out.name}.partial-{os.getpid()}"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, str):
            partial.write_text(data, encoding="utf-8", newline="")
        else:
            partial.write_bytes(data)
        os.replace(partial, out)
    except OSError as exc:
        with contextlib.suppress(OSError):
            partial.unlink()
        raise HpoError(f"cannot write --out {out}: {exc.strerror or exc}") from None


def check_export(
    fmt: str, out: Path | None, overwrite: bool = False, keep: Sequence[Path] = ()
) -> None:
    """Refuse, before any work is done: an unknown format; parquet without a file; an --out
    file that exists, unless ``overwrite``; and, even then, one in ``keep`` (the study's
    database and its journal files), which an export would destroy."""
    _check_format(fmt, out)
    if out is None or not (out.exists() or out.is_symlink()):
        return
    target = os.path.realpath(out)
    for database in keep:
        for kept in (str(database), *(f"{database}{tail}" for tail in _JOURNALS)):
            if target == os.path.realpath(kept):
                raise UserError(
                    f"--out {out} is the study's database; choose another file"
                    if kept == str(database)
                    else f"--out {out} is a journal of the study's database; choose another file"
                )
    if not overwrite and not _stream(out):
        raise UserError(f"--out {out} exists; choose a new file, or pass --overwrite to replace it")


def _stream(out: Path) -> bool:
    """Whether ``out`` is something to write into rather than replace: a device or a pipe
    (``/dev/stdout``, ``/dev/null``, a FIFO), not a regular file or folder."""
    return out.exists() and not out.is_file() and not out.is_dir()


_JOURNALS = ("-wal", "-shm", "-journal")  # files SQLite keeps beside a database


def check_own_files(out: Path | None, own: Sequence[Path]) -> None:
    """Refuse an --out file that is one of the study's own files, ``own`` (its data files and
    local model folders, ``StudySpec.local_paths``), or lies inside one of those folders:
    --overwrite would replace what the study trains on."""
    if out is None or not (out.exists() or out.is_symlink()):
        return  # a new file is none of them
    target = Path(os.path.realpath(out))
    for path in own:
        kept = Path(os.path.realpath(path))
        if target == kept:
            raise UserError(f"--out {out} is the study's data file {path}; choose another file")
        if kept.is_dir() and target.is_relative_to(kept):
            raise UserError(
                f"--out {out} is in the study's model folder {path}; choose another file"
            )


def _check_format(fmt: str, out: Path | None) -> None:
    """Refuse an unknown format, and parquet without a file."""
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if fmt == "parquet" and out is None:
        raise UserError("--format parquet is binary: give --out FILE.parquet")


def export_trials(
    trials: Sequence[FrozenTrial], fmt: str, out: Path | None, param_order: Sequence[str] = ()
) -> tuple[str | None, int]:
    """Write the trial table as csv, json or parquet to out (replacing a file there: the
    command asked ``check_export`` first); (the text when out is None, rows)."""
    _check_format(fmt, out)
    columns, rows = trial_table(trials, param_order)
    data: str | bytes
    if fmt == "csv":
        data = _csv(columns, rows)
    elif fmt == "json":
        data = json.dumps([_jsonable(r) for r in rows], indent=2, allow_nan=False) + "\n"
    else:
        data = _parquet(columns, rows)
    if out is None:
        assert isinstance(data, str)
        return data, len(rows)
    _write(out, data)
    return None, len(rows)


def ensure_folder(out: Path) -> None:
    """Create the --out folder and prove it takes files, before any plot is drawn."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".hpo-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise HpoError(
            f"cannot write to --out {out}: {exc.strerror or exc}; give a folder you can write to"
        ) from None


def probe_folder(out: Path) -> None:
    """``ensure_folder``'s check, leaving no trace: a folder this call had to create is removed
    again, so a command that fails before it writes leaves no empty --out behind."""
    existed = out.exists() or out.is_symlink()
    ensure_folder(out)
    if not existed:
        with contextlib.suppress(OSError):
            out.rmdir()


def check_out_folder(out: Path, overwrite: bool, keep: Sequence[Path] = ()) -> None:
    """Refuse, before any work is done, an --out folder whose files a save would lose: one
    that exists and is not empty, unless ``overwrite``; and even then one that is or holds the
    current folder or a path in ``keep`` (the study's database, data files and local model
    folders), which replacing would delete.
    A new or an empty folder passes."""
    target = Path(os.path.realpath(out))
    if not target.is_dir():
        return  # not there yet: the save creates it
    entries = _entries(out, target)
    if not entries:
        return
    if not overwrite:
        raise UserError(_not_empty(out, entries))
    _keep(out, target, keep)


def _keep(out: Path, target: Path, keep: Sequence[Path] = ()) -> None:
    """Refuse to replace ``target`` when it holds the current folder or a path in ``keep``."""
    for inside, what in [(Path.cwd(), "the current folder"), *((k, str(k)) for k in keep)]:
        path = Path(os.path.realpath(inside))
        if path.is_relative_to(target):
            verb = "is" if path == target and inside in keep else "holds"
            raise UserError(
                f"--out {out} {verb} {what}, which --overwrite would delete; choose a new folder"
            )


def _entries(out: Path, folder: Path) -> list[Path]:
    try:
        return list(folder.iterdir())
    except OSError as exc:
        raise HpoError(f"cannot read --out {out}: {exc.strerror or exc}") from None


def _not_empty(out: Path, entries: Sequence[Path]) -> str:
    folders = sum(1 for e in entries if e.is_dir() and not e.is_symlink())
    counts = [(len(entries) - folders, "file"), (folders, "folder")]
    holds = " and ".join(f"{n} {word}{'' if n == 1 else 's'}" for n, word in counts if n)
    return (
        f"--out {out} is not empty (it holds {holds}); "
        "choose a new folder or pass --overwrite to replace it"
    )


def write_folder(
    out: Path, write: Callable[[Path], None], what: str, overwrite: bool = False
) -> None:
    """Call ``write`` on a hidden sibling of ``out`` (``.<name>.partial-<pid>``), then move it
    into place once every file is written, so a full disk or any failed write never leaves a
    half-written ``out`` that looks complete: a folder that does not exist, or an empty one,
    by one atomic rename (an empty current folder, which cannot be renamed over, gets the
    files moved in one by one). A folder that holds anything is never merged into: without
    ``overwrite`` it is refused (``UserError``, as ``check_out_folder`` does up front) and
    left as it was; with ``overwrite`` it is swapped out (renamed aside, the new folder
    renamed in, the old one deleted only then). ``out`` as a symbolic link keeps pointing to
    the new folder.

    On a write failure (an ``OSError``, or a Rust writer's "... (os error N)") the sibling is
    removed, ``out`` is left as it was, and ``WriteFailed`` names ``out`` and the OS reason.
    """
    target = Path(os.path.realpath(out))  # "." and "a/.." have a name and a parent too
    partial = target.parent / f".{target.name}.partial-{os.getpid()}"
    try:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            if partial.exists():  # left by a killed run of a process with the same id
                shutil.rmtree(partial)
            partial.mkdir()
            write(partial)
            _usual_modes(partial)
            _move_into_place(partial, target, out, overwrite)
        finally:
            if partial.exists():
                shutil.rmtree(partial, ignore_errors=True)
    except Exception as exc:
        reason = _write_failure(exc)
        if reason is None:
            raise
        raise WriteFailed(f"cannot save {what} to {out}: {reason}; nothing was saved") from None


def _usual_modes(folder: Path) -> None:
    """Give every file and folder under ``folder`` the mode a new one gets here (0o644 and
    0o755 under the usual umask): safetensors writes weights 0o600, which other users, or a
    serving container running as another user, cannot read."""
    mask = os.umask(0)
    os.umask(mask)
    for root, dirs, files in os.walk(folder):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o777 & ~mask)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, 0o666 & ~mask)


def _move_into_place(partial: Path, target: Path, out: Path, overwrite: bool) -> None:
    """Rename the written folder to ``target``; see ``write_folder``."""
    if _is_cwd(target):
        entries = _entries(out, target)
        if entries:  # check_out_folder refuses to replace the current folder, --overwrite or not
            raise UserError(_not_empty(out, entries))
        for entry in sorted(partial.iterdir()):
            os.rename(entry, target / entry.name)
        return
    try:
        os.rename(partial, target)  # replaces an empty folder; fails on one that holds files
        return
    except OSError as exc:
        if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not target.is_dir():
            raise
    if not overwrite:  # files came in since check_out_folder: keep them
        raise UserError(_not_empty(out, _entries(out, target)))
    _keep(out, target)
    old = target.parent / f".{target.name}.replaced-{os.getpid()}"
    if old.is_dir() and not old.is_symlink():  # left by a killed run with the same process id
        shutil.rmtree(old)
    elif old.exists() or old.is_symlink():
        old.unlink()
    os.rename(target, old)
    try:
        os.rename(partial, target)
    except OSError:
        os.rename(old, target)  # as it was
        raise
    shutil.rmtree(old, ignore_errors=True)


def _is_cwd(folder: Path) -> bool:
    try:
        return folder.samefile(Path.cwd())
    except OSError:
        return False


_RUST_IO = re.compile(r"\(os error (\d+)\)")


def _write_failure(exc: BaseException) -> str | None:
    """The OS reason a write failed, as ``[Errno N] reason``; None when ``exc`` is no write
    failure. safetensors and tokenizers write from Rust and raise their own exceptions whose
    text ends in Rust's "... (os error N)"."""
    if isinstance(exc, OSError):
        if exc.errno is not None and exc.strerror:
            return f"[Errno {exc.errno}] {exc.strerror}"  # without the hidden folder's path
        return first_line(exc)
    found = _RUST_IO.search(str(exc))
    if found is None:
        return None
    number = int(found.group(1))
    return f"[Errno {number}] {os.strerror(number)}"
