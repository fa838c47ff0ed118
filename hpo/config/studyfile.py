"""Reading a study file: TOML from disk, ``--set`` overrides, paths relative to the file.

The result goes to ``StudySpec.from_dict`` (hpo/config/spec.py), which validates it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpo.config.pruner import check_pruner_keys
from hpo.config.spec import StudySpec
from hpo.errors import SpecError, shown

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


# tomllib raises ValueError for an integer of over 4300 digits, RecursionError for arrays or
# tables nested some hundreds deep
_TOO_BIG = "it holds an integer of over 4300 digits or values nested hundreds deep; shorten it"


def parse_override(text: str) -> tuple[list[str], Any]:
    """``section.key=value`` -> (["section", "key"], value); the value is read as TOML if it can be."""
    key, sep, raw_value = text.partition("=")
    path = [part.strip() for part in key.split(".")]
    if not sep or len(path) < 2 or not all(path):
        raise SpecError(f"--set needs section.key=value, got {text!r}")
    raw_value = raw_value.strip()
    where = ".".join(map(shown, path))
    try:
        value = tomllib.loads(f"v = {raw_value}")["v"]
    except tomllib.TOMLDecodeError:
        if raw_value[:1] in "[{" and raw_value:  # meant as a list or table, not a word
            raise SpecError(
                f"--set {where}={raw_value} is not a TOML value: quote the words in it, as in "
                f'\'{where}=["linear", "cosine"]\' (single quotes around it for the shell)'
            ) from None
        value = raw_value  # a bare word: take it as a string
    except (ValueError, RecursionError):  # TOML, but past what tomllib reads
        raise SpecError(f"--set {where}: {_TOO_BIG}") from None
    if path == ["study", "name"] and not isinstance(value, str):
        value = raw_value  # a name is text: --set study.name=2024 means "2024"
    return path, value


# keys of which a study sets one: an override of one replaces the other from the file
_EITHER: dict[tuple[str, ...], tuple[str, str]] = {
    ("train", "max_steps"): ("train", "epochs"),
    ("train", "epochs"): ("train", "max_steps"),
}


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``--set`` overrides to a parsed study file, before validation. Setting one of two
    keys a study takes only one of (``train.max_steps``, ``train.epochs``) drops the other
    where the file set it, so ``--set train.epochs=2`` works on a file with ``max_steps``."""
    given: set[tuple[str, ...]] = set()
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SpecError(f"--set {text!r}: `{shown(part)}` is not a table")
            node = child
        node[path[-1]] = value
        given.add(tuple(path))
        other = _EITHER.get(tuple(path))
        if other is not None and other not in given:
            section = raw.get(other[0])
            if isinstance(section, dict):
                section.pop(other[1], None)
    return raw


def resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make relative data files and model folders absolute, relative to the study file."""
    data = raw.get("data")
    files = data.get("files") if isinstance(data, dict) else None
    if isinstance(files, dict) and not (isinstance(data, dict) and data.get("package")):
        # (with `data.package`, the files are paths inside the package: left as they are)
        for split, name in files.items():
            if isinstance(name, str):
                files[split] = str(_resolved(f"data.files.{shown(split)}", name, base))
    model = raw.get("model")
    if isinstance(model, dict) and isinstance(model.get("name"), str):
        model["name"] = _model_path("model.name", model["name"], base)
    space = raw.get("space")
    choice = space.get("model") if isinstance(space, dict) else None
    if isinstance(space, dict) and isinstance(choice, list):
        space["model"] = [
            _model_path(f"space.model[{i}]", m, base) if isinstance(m, str) else m
            for i, m in enumerate(choice)
        ]
    # a model named again, in a condition or a first trial, is the same path
    for name, dim in (space or {}).items() if isinstance(space, dict) else ():
        when = dim.get("when") if isinstance(dim, dict) else None
        if isinstance(when, dict) and isinstance(when.get("model"), list):
            when["model"] = [
                _model_path(f"space.{name}.when.model", m, base) if isinstance(m, str) else m
                for m in when["model"]
            ]
    sampler = raw.get("sampler")
    firsts = sampler.get("first_trials") if isinstance(sampler, dict) else None
    for i, first in enumerate(firsts if isinstance(firsts, list) else ()):
        if isinstance(first, dict) and isinstance(first.get("model"), str):
            first["model"] = _model_path(f"sampler.first_trials[{i}].model", first["model"], base)
    return raw


def _model_path(where: str, name: str, base: Path) -> str:
    """A model folder relative to the study file, made absolute; hub ids stay as they are."""
    if name.startswith("bundled:"):
        return name
    local = _resolved(where, name, base)
    try:
        folder = local.is_dir()
    except OSError:  # a name too long for a path, say: no folder here
        folder = False
    if name.startswith((".", "~", "/")) or folder:
        return str(local)
    return name


def _resolved(where: str, name: str, base: Path) -> Path:
    """``name`` as an absolute path, relative to ``base``, with ``~`` expanded."""
    try:
        return (base / Path(name).expanduser()).resolve()
    except (RuntimeError, ValueError) as exc:  # ~user of no user, a symlink loop, a NUL
        raise SpecError(f"`{where}` {name!r} is not a path: {exc}") from None


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> tuple[StudySpec, str]:
    """Read, override and validate a study file; returns the spec and the file's text."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM (Windows Notepad) is no TOML
    except FileNotFoundError:
        raise SpecError(f"study file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"cannot read study file {path}: {exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{path} is not valid TOML: {exc}") from None
    except (ValueError, RecursionError):  # TOML, but past what tomllib reads
        raise SpecError(f"{path} cannot be read: {_TOO_BIG}") from None
    raw = apply_overrides(raw, overrides)
    raw = resolve_paths(raw, path.parent.resolve())
    spec = StudySpec.from_dict(raw)
    check_pruner_keys(raw.get("pruner"), spec.pruner.name, spec.pruner.wrapped)
    for note in spec.sampler.unread_keys(raw.get("sampler")):
        print(f"warning: {note}", file=sys.stderr, flush=True)
    return spec, text
