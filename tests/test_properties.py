"""Bad input never crashes, never writes (issue #17): properties checked with hypothesis.

Whatever a study dict, a study file or a ``--set`` value holds, reading it gives a spec or a
``UserError`` (``SpecError`` for the study itself) whose message is one line naming the field,
never another exception; ``hpo create`` on a bad file exits 2 with that one line and creates no
database.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import re
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hpo.cli.common import load_study_file
from hpo.cli.main import cli
from hpo.config.sections import AUGMENT_OPS, BUDGET_UNITS
from hpo.config.spec import (
    AugmentSection,
    DataSection,
    ModelSection,
    PrunerSection,
    SamplerSection,
    StudySection,
    StudySpec,
    TrainSection,
)
from hpo.errors import SpecError, UserError
from hpo.strategies import dimensions
from tests.conftest import spec_dict

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Keys = tuple[Any, ...]  # a path of keys and list indexes into a nested dict


def base() -> dict[str, Any]:
    """A valid study dict that uses every kind of field: a budget, first trials, augment ops,
    ranges with log and step, a choice table and conditions."""
    raw = spec_dict(Path("/models/tiny"), Path("/data/train.csv"))
    raw["study"]["budget"] = {"samples": 20000}
    raw["sampler"].update(
        start_from_recipe=False, first_trials=[{"learning_rate": 2e-3, "frozen_layers": 1}]
    )
    raw["augment"] = {
        "ops": {"substitute": 1, "delete": 0.5, "swap": 1, "insert": 0, "reorder": 2},
        "copies": 1,
        "language": "en",
    }
    raw["space"].update(
        lora_rank=[0, 8],
        lora_alpha={"low": 4, "high": 64, "log": True, "when": {"lora_rank": [8]}},
        num_layers={"low": 1, "high": 2},
        max_grad_norm={"low": 0.0, "high": 2.0, "step": 0.5},
        label_smoothing={"choices": [0.0, 0.1], "when": {"lr_schedule": ["linear"]}},
    )
    return raw


def paths_of(node: Any, prefix: Keys = ()) -> list[Keys]:
    """Every key (and list index) path in a nested dict, parents before children."""
    if isinstance(node, dict):
        items: Any = node.items()
    elif isinstance(node, list):
        items = enumerate(node)
    else:
        return []
    out: list[Keys] = []
    for key, value in items:
        out += [(*prefix, key), *paths_of(value, (*prefix, key))]
    return out


def lookup(node: Any, path: Keys) -> Any:
    """The value at ``path``; KeyError where an earlier mutation removed or replaced it."""
    for key in path:
        found = (
            key in node
            if isinstance(node, dict)
            else isinstance(node, list) and isinstance(key, int) and key < len(node)
        )
        if not found:
            raise KeyError(path)
        node = node[key]
    return node


BASE = base()
PATHS = paths_of(BASE)
TABLES = [(), *(p for p in PATHS if isinstance(lookup(BASE, p), dict))]
DIMENSIONS = sorted(dimensions())
SECTION_CLASSES = (
    StudySection,
    SamplerSection,
    PrunerSection,
    ModelSection,
    DataSection,
    TrainSection,
    AugmentSection,
)
# every name the format knows anywhere: an unknown key is none of these
KNOWN = {
    *(str(k) for p in PATHS for k in p),
    *(f.name for f in dataclasses.fields(StudySpec)),
    *(f.name for cls in SECTION_CLASSES for f in dataclasses.fields(cls)),
    *DIMENSIONS,
    *AUGMENT_OPS,
    *BUDGET_UNITS,
    *("low", "high", "log", "step", "when", "choices", "train", "validation", "test"),
}

# ------------------------------------------------------------------ values

WEIRD_TEXT = [
    "",
    " ",
    "\x00",
    "\n",
    "a\nb",
    "\r\n",
    "\t",
    "\x1b[31m",
    "\x7f",
    "\u200f",  # right-to-left mark
    "\u202eevil",  # right-to-left override
    "\u2028",
    "\ufeff",
    "名前",
    "x" * 300,
    "linear",
    "cpu",
    "tpe",
    "none",
    "auto",
    "median",
    "bundled:all-MiniLM-L6-v2",
    "~nosuchuser/x.csv",
    "./a\x00b",
]
HUGE_INTS = [2**31, 2**32, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 10**400, -(10**400), 10**4000]
SPECIAL_FLOATS = [
    0.0,
    -0.0,
    0.1,
    0.5,
    1.0,
    -1.0,
    1e-5,
    1e308,
    -1e308,
    5e-324,
    1e-300,
    1e16,
    float("nan"),
    float("inf"),
    float("-inf"),
]

texts = st.text(max_size=12) | st.sampled_from(WEIRD_TEXT)
numbers = (
    st.integers(-3, 70)
    | st.integers()
    | st.sampled_from(HUGE_INTS)
    | st.floats()
    | st.sampled_from(SPECIAL_FLOATS)
)
toml_scalars = (
    st.booleans()
    | numbers
    | texts
    | st.datetimes(timezones=st.none() | st.just(dt.timezone.utc))
    | st.dates()
    | st.times()
)
scalars = st.none() | toml_scalars  # None: from_dict also reads dicts that are not TOML
keys = texts | st.sampled_from(sorted(KNOWN))


def nested(depth: int, leaf: Any = 1) -> Any:
    """Tables and lists ``depth`` deep, alternating."""
    for i in range(depth):
        leaf = {"a": leaf} if i % 2 else [leaf]
    return leaf


def when_tables(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    names = st.sampled_from(DIMENSIONS) | texts
    return st.dictionaries(names, st.lists(leaves, max_size=3) | leaves, max_size=2) | leaves


def dimension_values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """What a ``[space]`` entry may hold: a value, a list, a range or a choice table."""
    ranges = st.fixed_dictionaries(
        {"low": numbers, "high": numbers},
        optional={"log": st.booleans() | leaves, "step": numbers, "when": when_tables(leaves)},
    )
    tables = st.fixed_dictionaries(
        {"choices": st.lists(leaves, max_size=4) | leaves}, optional={"when": when_tables(leaves)}
    )
    return leaves | st.lists(leaves, max_size=4) | ranges | tables


def any_values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Any value a key may be given: scalars, lists, tables, deep nesting, dimension tables."""
    small = st.recursive(
        leaves,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(keys, inner, max_size=3),
        max_leaves=8,
    )
    deep = st.builds(nested, st.integers(20, 60), leaves)
    return small | deep | dimension_values(leaves)


# ------------------------------------------------------------------ study variants


def names_in(path: Keys) -> set[str]:
    return {k for k in path if isinstance(k, str)}


# dimensions with two valid choices, for conditions that form a cycle
CHOICES = {
    "lora_rank": [0, 8],
    "head_hidden_units": [0, 16],
    "batch_size": [16, 32],
    "seed": [0, 1],
    "weight_decay": [0.0, 0.01],
}
NOT_IN_SPACE = ["reinit_layers", "lora_dropout", "classifier_dropout", "layer_lr_decay", "model"]


@st.composite
def variants(draw: st.DrawFn, leaves: st.SearchStrategy[Any] = scalars) -> tuple[Any, ...]:
    """(study dict, names one of which the error must show, whether it must be refused).

    One to three mutations of ``base()``: a value replaced, a key deleted, an unknown key or
    section added, conditions that form a cycle or name an unknown dimension, a random
    dimension, random first trials."""
    raw = base()
    kinds = [
        "replace",
        "replace",
        "delete",
        "unknown key",
        "cycle",
        "unknown condition",
        "dimension",
        "first trials",
    ]
    names: set[str] = set()
    reasons: list[Callable[[dict[str, Any]], bool]] = []  # each: whether it still spoils the study
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(kinds))
        space = raw.get("space")
        if kind in ("replace", "delete"):
            path = draw(st.sampled_from(PATHS))
            try:
                parent = lookup(raw, path[:-1])
                lookup(raw, path)
            except KeyError:
                continue
            if kind == "replace":
                parent[path[-1]] = draw(any_values(leaves))
            else:
                del parent[path[-1]]
                if path in (("study",), ("data",)):
                    reasons.append(absent(path))
            names |= names_in(path)
        elif kind == "unknown key":
            table = draw(st.sampled_from(TABLES))
            key = draw(texts.filter(lambda k: k not in KNOWN))
            try:
                node = lookup(raw, table)
            except KeyError:
                continue
            if isinstance(node, dict):
                node[key] = draw(any_values(leaves))
                reasons.append(intact([(*table, key)], raw))
                names.add(key)
        elif kind == "cycle" and isinstance(space, dict):
            ring = draw(
                st.lists(st.sampled_from(sorted(CHOICES)), min_size=1, max_size=3, unique=True)
            )
            for name, after in zip(ring, [*ring[1:], ring[0]], strict=True):
                space[name] = {"choices": CHOICES[name], "when": {after: [CHOICES[after][1]]}}
            reasons.append(intact([("space", name) for name in ring], raw))
            names |= set(ring)
        elif kind == "unknown condition" and isinstance(space, dict):
            name = draw(st.sampled_from(sorted(CHOICES)))
            other = draw(st.sampled_from(NOT_IN_SPACE) | texts.filter(lambda k: k not in KNOWN))
            space[name] = {"choices": CHOICES[name], "when": {other: [1]}}
            reasons.append(intact([("space", name)], raw, unless=("space", other)))
            names |= {name, other}
        elif kind == "dimension" and isinstance(space, dict):
            name = draw(st.sampled_from(DIMENSIONS))
            space[name] = draw(dimension_values(leaves | numbers))
            names.add(name)
        elif kind == "first trials" and isinstance(raw.get("sampler"), dict):
            trials = draw(
                st.lists(
                    st.dictionaries(
                        st.sampled_from(DIMENSIONS) | texts, leaves | numbers, max_size=3
                    ),
                    max_size=2,
                )
            )
            raw["sampler"]["first_trials"] = trials
            names |= {"first_trials", *(k for t in trials for k in t)}
    return raw, names, any(reason(raw) for reason in reasons)


def absent(path: Keys) -> Callable[[dict[str, Any]], bool]:
    def check(raw: dict[str, Any]) -> bool:
        try:
            lookup(raw, path)
        except KeyError:
            return True
        return False

    return check


def intact(
    paths: list[Keys], now: dict[str, Any], unless: Keys | None = None
) -> Callable[[dict[str, Any]], bool]:
    """Whether the parts now at ``paths`` are still the same objects there (and ``unless``,
    a dimension a condition names, is still out of the space)."""
    parts = [lookup(now, p) for p in paths]

    def check(raw: dict[str, Any]) -> bool:
        try:
            same = all(lookup(raw, p) is part for p, part in zip(paths, parts, strict=True))
        except KeyError:
            return False
        return same and (unless is None or absent(unless)(raw))

    return check


def one_line(message: str) -> None:
    assert message.strip(), "an empty message"
    assert message.splitlines() == [message], f"not one line: {message!r}"


def shows(message: str, name: str) -> bool:
    """Whether the message names ``name``, as written or with its unprintable characters escaped."""
    return name in message or repr(name)[1:-1] in message


def check_from_dict(raw: dict[str, Any], names: set[str], must_fail: bool) -> StudySpec | None:
    """The spec ``from_dict`` reads, equal to itself once stored; None for a SpecError, which
    must be one line that shows one of ``names``. Any other exception fails the test."""
    try:
        spec = StudySpec.from_dict(raw)
    except SpecError as exc:
        message = str(exc)
        one_line(message)
        assert any(shows(message, n) for n in names), f"{message!r} names none of {names}"
        return None
    assert not must_fail, f"accepted: {raw!r}"
    stored = json.loads(json.dumps(spec.to_dict()))  # as the database keeps it
    assert StudySpec.from_dict(stored) == spec
    return spec


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(variants())
def test_from_dict_gives_a_spec_or_one_line_naming_the_field(variant: tuple[Any, ...]) -> None:
    """``StudySpec.from_dict`` on a mutated study: a spec that survives being stored, or a
    one-line SpecError that names a field the mutation touched (an unknown key: that key);
    unknown keys and sections, deleted [study] or [data], and conditions that name an unknown
    dimension or form a cycle are always refused. Any other exception is a bug."""
    check_from_dict(*variant)


# numbers a range, a step or a first trial may hold: bounds of the rules, tiny and huge ones
EDGES = [0, 1, 2, 3, 8, 16, 4096, 65536, 2**62, 0.0, 1e-3, 0.1, 0.5, 0.9, 1.0, 2.0, 1e6]
STEPS = [float("nan"), float("inf"), 5e-324, 1e-300, 0.5, 1, 3, 2**62, 0, -1]
edge_numbers = st.sampled_from(EDGES) | numbers


def takes(name: str, value: Any) -> bool:
    """Whether the rule of dimension ``name`` takes the number ``value``."""
    dim = dimensions()[name]
    if dim.kind == "str" or (dim.kind == "int" and not isinstance(value, int)):
        return False
    return bool(dim.check(value))


def numbers_in(value: Any) -> list[Any]:
    """The numbers a [space] entry holds, and the midpoints of its ranges."""
    if isinstance(value, dict):
        out = [x for v in value.values() for x in numbers_in(v)]
        low, high = value.get("low"), value.get("high")
        if (
            all(isinstance(v, (int, float)) for v in (low, high))
            and max(abs(low), abs(high)) < 1e300
        ):
            out.append((low + high) / 2)
        return out
    if isinstance(value, list):
        return [x for v in value for x in numbers_in(v)]
    return [value] if isinstance(value, (int, float)) and not isinstance(value, bool) else []


@st.composite
def spaces(draw: st.DrawFn) -> tuple[Any, ...]:
    """A study whose [space] gives one to three dimensions random ranges (with log and step),
    choices or values, and whose first trials, conditions and recipe read them at values near
    theirs: (study dict, the dimensions, False)."""
    raw = base()
    picked = draw(st.lists(st.sampled_from(DIMENSIONS), min_size=1, max_size=3, unique=True))
    for name in picked:
        fits = [v for v in EDGES if takes(name, v)]
        if len(fits) > 1 and draw(st.booleans()):  # a range its rule takes, with a step
            low, high = sorted(draw(st.lists(st.sampled_from(fits), min_size=2, max_size=2)))
            step = draw(st.none() | st.sampled_from(STEPS) | edge_numbers)
            log = draw(st.booleans()) if step is None else False
            raw["space"][name] = {"low": low, "high": high, "log": log, "step": step}
            if step is None:
                del raw["space"][name]["step"]
        else:
            raw["space"][name] = draw(dimension_values(edge_numbers | st.sampled_from(WEIRD_TEXT)))
    near = st.sampled_from(EDGES + [x for n in picked for x in numbers_in(raw["space"][n])])
    if draw(st.booleans()):
        raw["sampler"]["first_trials"] = [{n: draw(near) for n in picked if draw(st.booleans())}]
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(CHOICES)))
        on = draw(st.sampled_from(picked))
        if name != on:
            raw["space"][name] = {
                "choices": CHOICES[name],
                "when": {on: draw(st.lists(near, min_size=1, max_size=2))},
            }
    raw["sampler"]["start_from_recipe"] = draw(st.booleans())
    return raw, {*picked, "first_trials", "start_from_recipe"}, False


@pytest.mark.filterwarnings("ignore:The distribution is specified by")  # a step short of high
@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spaces())
def test_random_spaces_give_a_spec_that_samples_or_one_line(variant: tuple[Any, ...]) -> None:
    """The [space] rules on their own: random ranges, steps, choices, conditions and first
    trials near them give a one-line SpecError naming a dimension, or a spec whose space an
    Optuna trial can sample."""
    import optuna

    from hpo.config.sampling import sample

    spec = check_from_dict(*variant)
    if spec is None:
        return
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    sample(spec.space, trial, depth=2)


# ------------------------------------------------------------------ files and --set values


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_value(key)


def toml_value(v: Any) -> str:
    """``v`` written as TOML (None, which TOML lacks, is left out of lists and tables)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        if v.bit_length() < 13000:
            return str(v)
        return hex(v) if v > 0 else "-" + "1" * 4400  # past tomllib's 4300 digits
    if isinstance(v, float):
        return repr(v) if v == v else "nan"  # repr: inf, -inf, -0.0, 1e+308
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, (dt.datetime, dt.date, dt.time)):
        return v.isoformat()
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v if x is not None) + "]"
    if isinstance(v, dict):
        pairs = [f"{toml_key(k)} = {toml_value(x)}" for k, x in v.items() if x is not None]
        return "{" + ", ".join(pairs) + "}"
    raise TypeError(f"no TOML for {v!r}")


def toml_document(raw: dict[str, Any]) -> str:
    """A study file: top-level values that are not tables first, then one [section] each."""
    lines = [
        f"{toml_key(k)} = {toml_value(v)}"
        for k, v in raw.items()
        if v is not None and not isinstance(v, dict)
    ]
    for section, body in raw.items():
        if isinstance(body, dict):
            lines.append(f"[{toml_key(section)}]")
            lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in body.items() if v is not None]
    return "\n".join(lines) + "\n"


VALID = toml_document(BASE)
LINES = [
    *VALID.splitlines(),
    "[study]",
    "[data]",
    "[space]",
    "[[study]]",
    'name = "x"',
    "study = 5",
    'data = "x"',
    "study.name = 3",
    'files.train = "~nosuchuser/x.csv"',
    'name = "./a\\u0000"',
    '"a\\nb" = 1',
    "\ufeff",
    "x = 1" + "0" * 5000,
    "x = " + "[" * 600 + "]" * 600,
    "seed = 99999999999999999999999",
    "learning_rate = {low = 1e-5, high = 1e-4, step = 5e-324}",
]
FILES = [
    "",
    "\n",
    "study = 5",
    "study = []",
    "[[study]]\nname = 'x'\n[data]\nhub = 'glue'",
    "a = 1",
    "x = " + "1" * 5000,
    "x = " + "[" * 600 + "]" * 600,
    "x = " + "{a = " * 400 + "1" + "}" * 400,
    VALID,
    VALID + "[train]\n",
    VALID.replace("n_trials = 3", "n_trials = 1" + "0" * 30),
    VALID.replace("n_trials = 3", "n_trials = 0x" + "f" * 4000),
]


@st.composite
def file_bytes(draw: st.DrawFn) -> bytes:
    """Whole study files: random bytes, random text, lines of TOML, study dicts written as TOML,
    and a valid file with bytes spliced in."""
    kind = draw(st.integers(0, 7))
    if kind >= 6:
        return VALID.encode()  # for the --set values to act on
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        return draw(st.text(max_size=200)).encode()
    if kind == 2:
        return draw(st.sampled_from(FILES)).encode()
    if kind == 3:
        lines = draw(st.lists(st.sampled_from(LINES) | st.text(max_size=20), max_size=12))
        return "\n".join(lines).encode()
    if kind == 4:
        return toml_document(draw(variants(toml_scalars))[0]).encode()
    text = VALID.encode()
    at = draw(st.integers(0, len(text)))
    return text[:at] + draw(st.binary(max_size=8)) + text[at + draw(st.integers(0, 4)) :]


# section.key, and deeper: data.files.train, space.learning_rate.low
OVERRIDE_KEYS = [".".join(p) for p in PATHS if len(p) > 1 and all(isinstance(k, str) for k in p)]
OVERRIDE_VALUES = [
    "",
    "1",
    "-1",
    "0",
    "nan",
    "inf",
    "-inf",
    "1e999",
    "-0.0",
    "true",
    '"x"',
    "x y",
    "[1, 2]",
    "[]",
    "{}",
    "{low = 1, high = 2}",
    "{low = 1e-5, high = 1e-4, log = true}",
    "{low = 0, high = 1, step = 5e-324}",
    "[{learning_rate = 1e-3}]",
    "1" + "0" * 5000,
    "1" + "0" * 30,
    "0x" + "f" * 3000,
    "[" * 600 + "]" * 600,
    '"\\u0000"',
    "\x00",
    "\n",
    "1\nv2 = 2",
    "\u200f",
    "1979-05-27T07:32:00Z",
    "~nosuchuser/x.csv",
    "./a\x00",
]
# paths a study file names (resolved next to it): home folders, NUL characters
PATH_KEYS = ["data.files.train", "data.files", "model.name", "space.model"]
PATH_VALUES = [
    "~nosuchuser/x.csv",
    "~",
    "./a\x00",
    '"./a\\u0000"',
    '"a\\u0000"',
    '["./m", "~nosuchuser"]',
    '{train = "~nosuchuser/t.csv"}',
    '{train = "t\\u0000.csv"}',
    "./x",
    "/",
]
section_names = (
    st.sampled_from(["study", "sampler", "pruner", "model", "data", "train", "augment", "space"])
    | texts
)
override_keys = st.sampled_from(OVERRIDE_KEYS) | st.builds("{}.{}".format, section_names, keys)
override_values = st.sampled_from(OVERRIDE_VALUES) | st.text(max_size=20)
overrides = (
    st.builds("{}={}".format, st.sampled_from(PATH_KEYS), st.sampled_from(PATH_VALUES) | texts)
    | st.builds("{}={}".format, st.sampled_from(OVERRIDE_KEYS), override_values)
    | st.builds("{}={}".format, override_keys, override_values)
    | override_keys  # no "="
    | st.text(max_size=30)
    | st.sampled_from(["", "=", ".", ".=1", "a.=1", "a..b=1", "study", "study.name.first=x"])
)


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    content=file_bytes(),
    sets=st.lists(overrides, max_size=3),
    n_trials=st.none() | st.integers(min_value=1) | st.sampled_from([2**63, 10**30]),
    timeout=st.none()
    | st.floats(min_value=0, exclude_min=True)
    | st.sampled_from([float("nan"), float("inf")]),
)
def test_any_file_and_set_values_give_a_spec_or_one_user_error(
    content: bytes, sets: list[str], n_trials: int | None, timeout: float | None
) -> None:
    """What the CLI reads (``load_study_file``: the file, ``--set``, --n-trials, --timeout)
    from any bytes and any override text: a spec, or a one-line UserError that says where the
    fault is (a `field`, an option, or the study file: its bytes, its TOML at a line, a
    missing section); nothing else."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "study.toml"
        path.write_bytes(content)
        try:
            load_study_file(path, tuple(sets), n_trials, timeout)
        except UserError as exc:
            message = str(exc)
            one_line(message)
            assert any(where in message for where in ("`", "--", str(path), "study file")), message


def refused(text: str) -> bool:
    """Whether the study file is invalid TOML or a study ``from_dict`` refuses."""
    try:
        StudySpec.from_dict(tomllib.loads(text))
    except (SpecError, ValueError, RecursionError):  # TOMLDecodeError is a ValueError
        return True
    return False


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@given(variants(toml_scalars).map(lambda v: toml_document(v[0])))
def test_create_refuses_a_bad_file_in_one_line_and_writes_nothing(text: str) -> None:
    """``hpo create`` on a file the generator spoiled: exit 2, one line "Error: ...", no
    traceback, and neither the database nor its folder exists afterwards."""
    assume(refused(text))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "study.toml").write_text(text, encoding="utf-8")
        db = folder / "db" / "x.db"
        args = ["create", str(folder / "study.toml"), "--storage", f"sqlite:///{db}"]
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
        assert isinstance(result.exception, SystemExit), result.exception
        lines = result.output.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and lines[0][7:].strip(), lines
        assert "Traceback" not in result.output
        assert not db.exists() and not db.parent.exists()
        assert os.listdir(folder) == ["study.toml"]


# ------------------------------------------------------------------ what the properties found


def with_space(**dims: Any) -> dict[str, Any]:
    raw = base()
    raw["space"].update(dims)
    return raw


def with_section(name: str, **keys: Any) -> dict[str, Any]:
    raw = base()
    raw[name] = {**raw[name], **keys}
    return raw


FOUND_IN_DICTS = {
    # a condition on the dimension itself was taken, and the dimension never sampled
    "self condition": (
        with_space(batch_size={"choices": [16, 32], "when": {"batch_size": [32]}}),
        "`space.batch_size.when` forms a cycle: batch_size -> batch_size",
    ),
    # OverflowError: int too large to convert to float
    "huge int for a float dimension": (
        with_space(augmentation_strength=10**400),
        "`space.augmentation_strength` is an integer of 1329 bits",
    ),
    "huge int for a float key": (with_section("train", epochs=10**400), "`train.epochs`"),
    "huge int op weight": (
        with_section("augment", ops={"swap": 10**400}),
        "`augment.ops.swap` is an integer",
    ),
    "huge int in a first trial": (
        with_section("sampler", first_trials=[{"learning_rate": -(10**400)}]),
        "`sampler.first_trials[0].learning_rate` is an integer",
    ),
    # messages that broke in two lines at a line break in an unknown name
    "line break in a section": ({**base(), "a\nb": {}}, "unknown section `a\\nb`"),
    "line break in a dimension": (with_space(**{"x\x85": 1}), "unknown key `space.x\\x85`"),
    "rtl override in a key": (
        with_section("train", **{"\u202eevil": 1}),
        "unknown key `train.\\u202eevil`",
    ),
    "line break in a condition": (
        with_space(seed={"choices": [0, 1], "when": {"a\rb": [1]}}),
        "`space.seed.when.a\\rb`",
    ),
    "line break in a first trial": (
        with_section("sampler", first_trials=[{"\x1e": 1}]),
        "unknown key `sampler.first_trials[0].\\x1e`",
    ),
    # were accepted: NaN then failed a first trial (ValueError) and read back from storage
    # unequal to itself; inf failed in Optuna
    "nan step": (
        with_space(max_grad_norm={"low": 0.0, "high": 2.0, "step": float("nan")}),
        "`space.max_grad_norm.step` must be a positive number, got nan",
    ),
    "inf step": (
        with_space(max_grad_norm={"low": 0.0, "high": 2.0, "step": float("inf")}),
        "`space.max_grad_norm.step` must be a positive number, got inf",
    ),
    # OverflowError (5e-324) or decimal.InvalidOperation in Optuna (1e-300)
    "tiny step": (
        with_space(augmentation_strength={"low": 0, "high": 1, "step": 1e-300}),
        "`space.augmentation_strength.step` 1e-300 is too small for the range from 0.0 to 1.0",
    ),
    # Optuna warned and sampled low alone
    "step past the range": (
        with_space(warmup_ratio={"low": 0.0, "high": 0.1, "step": 1}),
        "`space.warmup_ratio.step` 1 is larger than the range from 0.0 to 0.1",
    ),
}


@pytest.mark.parametrize(("raw", "needle"), FOUND_IN_DICTS.values(), ids=FOUND_IN_DICTS.keys())
def test_what_the_dict_properties_found_is_one_line(raw: dict[str, Any], needle: str) -> None:
    with pytest.raises(SpecError) as info:
        StudySpec.from_dict(raw)
    one_line(str(info.value))
    assert needle in str(info.value)


FOUND_IN_FILES = {
    # ValueError: Exceeds the limit (4300 digits) for integer string conversion
    "long integer": ("x = " + "1" * 5000, (), "cannot be read: it holds an integer of over 4300"),
    # RecursionError
    "deep nesting": ("x = " + "[" * 600 + "]" * 600, (), "nested hundreds deep"),
    "long integer in --set": (VALID, ("study.n_trials=1" + "0" * 5000,), "--set study.n_trials:"),
    "deep nesting in --set": (VALID, ("space.seed=" + "[" * 600,), "--set space.seed:"),
    # RuntimeError: Could not determine home directory
    "home of no user": (
        VALID,
        ("data.files.train=~nosuchuser/x.csv",),
        "`data.files.train` '~nosuchuser/x.csv' is not a path",
    ),
    "model in the home of no user": (VALID, ("model.name=~nosuchuser",), "`model.name`"),
    # ValueError: embedded null byte
    "NUL in a data file": (VALID, ('data.files.train="t\\u0000.csv"',), "`data.files.train`"),
    "NUL in a model folder": (VALID, ('space.model=["./m\\u0000"]',), "`space.model[0]`"),
}


@pytest.mark.parametrize(
    ("text", "sets", "needle"), FOUND_IN_FILES.values(), ids=FOUND_IN_FILES.keys()
)
def test_what_the_file_properties_found_is_one_line(
    tmp_path: Path, text: str, sets: tuple[str, ...], needle: str
) -> None:
    path = tmp_path / "study.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load_study_file(path, sets)
    one_line(str(info.value))
    assert needle in str(info.value)


def test_a_model_name_too_long_for_a_path_stays_a_name(tmp_path: Path) -> None:
    path = tmp_path / "study.toml"  # OSError: File name too long, from Path.is_dir
    path.write_text(VALID, encoding="utf-8")
    assert load_study_file(path, ("model.name=" + "x" * 300,))[0].model.name == "x" * 300
