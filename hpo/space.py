"""The search space: what each dimension may be, and sampling hyperparameters from a trial.

Each dimension is written in the study file as a fixed value (``batch_size = 16``), a list of
choices (``lr_schedule = ["linear", "cosine"]``) or a range table
(``learning_rate = {low = 1e-5, high = 1e-4, log = true}``). Every dimension is suggested to
the trial, fixed ones as a one-choice categorical, so all stored trials carry all parameters
under the same names and can be queried alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from hpo.errors import SpecError

if TYPE_CHECKING:
    import optuna

# Schedules of ``transformers.get_scheduler`` that need nothing beyond warmup and total steps.
SCHEDULES = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)

Kind = Literal["float", "int", "str"]


@dataclass(frozen=True)
class _Rule:
    kind: Kind
    check: Callable[[Any], bool]
    rule: str


def _between(lo: float, hi: float, hi_open: bool = False) -> Callable[[Any], bool]:
    def check(v: float) -> bool:
        return lo <= v < hi if hi_open else lo <= v <= hi

    return check


RULES: dict[str, _Rule] = {
    "learning_rate": _Rule("float", lambda v: 0 < v < 1, "must be in (0, 1)"),
    "warmup_ratio": _Rule("float", _between(0.0, 1.0, hi_open=True), "must be in [0, 1)"),
    "lr_schedule": _Rule("str", lambda v: v in SCHEDULES, f"must be one of {', '.join(SCHEDULES)}"),
    "frozen_layers": _Rule("int", lambda v: v >= 0, "must be 0 or more"),
    "augmentation_strength": _Rule("float", _between(0.0, 1.0), "must be in [0, 1]"),
    "batch_size": _Rule("int", lambda v: 1 <= v <= 65536, "must be from 1 to 65536"),
    "weight_decay": _Rule("float", lambda v: 0 <= v < 1, "must be in [0, 1)"),
    "seed": _Rule("int", lambda v: 0 <= v < 2**32, "must be from 0 to 2**32 - 1"),
}

DEFAULTS: dict[str, Any] = {
    "learning_rate": {"low": 1e-5, "high": 1e-4, "log": True},
    "warmup_ratio": {"low": 0.0, "high": 0.2},
    "lr_schedule": ["linear", "cosine", "constant_with_warmup"],
    "frozen_layers": {"low": 0, "high": 3},
    "augmentation_strength": {"low": 0.0, "high": 0.3},
    "batch_size": 16,
    "weight_decay": 0.01,
    "seed": 0,
}


@dataclass(frozen=True)
class Dimension:
    """One searchable hyperparameter: a fixed value, a list of choices, or a range."""

    name: str
    value: Any = None
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None

    @property
    def is_range(self) -> bool:
        return self.low is not None

    @property
    def is_fixed(self) -> bool:
        return self.choices is None and self.low is None

    def to_toml(self) -> Any:
        """The value as it would be written in a study file."""
        if self.choices is not None:
            return list(self.choices)
        if self.is_range:
            out: dict[str, Any] = {"low": self.low, "high": self.high}
            if self.log:
                out["log"] = True
            if self.step is not None:
                out["step"] = self.step
            return out
        return self.value

    def upper_bound(self) -> Any:
        """The largest value this dimension can take (for checks against the model)."""
        if self.choices is not None:
            return max(self.choices)
        return self.high if self.is_range else self.value

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is one this dimension can take."""
        if self.choices is not None:
            return value in self.choices
        if not self.is_range:
            return bool(value == self.value)
        assert self.low is not None and self.high is not None
        if not self.low <= value <= self.high:
            return False
        if self.step is None:
            return True
        return math.isclose((value - self.low) / self.step, round((value - self.low) / self.step))

    def describe(self) -> str:
        """The values this dimension can take, in a few words for an error message."""
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        if self.is_range:
            step = f" in steps of {self.step:g}" if self.step is not None else ""
            return f"from {self.low:g} to {self.high:g}{step}"
        return f"fixed at {self.value!r}"

    def suggest(self, trial: optuna.trial.BaseTrial) -> Any:
        """Ask the trial for this dimension's value under its stored name."""
        kind = RULES[self.name].kind
        if self.is_range:
            assert self.low is not None and self.high is not None
            if kind == "int":
                step = int(self.step) if self.step is not None else 1
                return trial.suggest_int(
                    self.name, int(self.low), int(self.high), step=step, log=self.log
                )
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        choices = self.choices if self.choices is not None else (self.value,)
        return trial.suggest_categorical(self.name, list(choices))


def _typed(name: str, value: Any, where: str) -> Any:
    """Check one scalar against the dimension's type and rule; ints are accepted for floats."""
    rule = RULES[name]
    ok_type = {
        "float": isinstance(value, (int, float)) and not isinstance(value, bool),
        "int": isinstance(value, int) and not isinstance(value, bool),
        "str": isinstance(value, str),
    }[rule.kind]
    if not ok_type:
        raise SpecError(f"`{where}` must be {_kind_word(rule.kind)}, got {value!r}")
    if rule.kind == "float":
        value = float(value)
        if not math.isfinite(value):
            raise SpecError(f"`{where}` must be a finite number, got {value!r}")
    if not rule.check(value):
        raise SpecError(f"`{where}` {rule.rule}, got {value!r}")
    return value


def _kind_word(kind: Kind) -> str:
    return {"float": "a number", "int": "an integer", "str": "a string"}[kind]


def parse_dimension(name: str, raw: Any) -> Dimension:
    """Turn one ``[space]`` entry into a validated Dimension; errors name field, value and rule."""
    where = f"space.{name}"
    if name not in RULES:
        raise SpecError(f"unknown key `{where}`; the space has: {', '.join(RULES)}")
    kind = RULES[name].kind
    if isinstance(raw, list):
        if not raw:
            raise SpecError(f"`{where}` is an empty list of choices; give at least one value")
        choices = tuple(_typed(name, v, f"{where}[{i}]") for i, v in enumerate(raw))
        if len(set(choices)) != len(choices):
            raise SpecError(f"`{where}` lists a choice twice: {raw!r}")
        return Dimension(name, choices=choices)
    if isinstance(raw, Mapping):
        return _parse_range(name, dict(raw), where, kind)
    return Dimension(name, value=_typed(name, raw, where))


def _parse_range(name: str, raw: dict[str, Any], where: str, kind: Kind) -> Dimension:
    if kind == "str":
        raise SpecError(f"`{where}` cannot be a range; give a value or a list of choices")
    unknown = set(raw) - {"low", "high", "log", "step"}
    if unknown:
        raise SpecError(
            f"unknown key `{where}.{sorted(unknown)[0]}`; a range has low, high, log, step"
        )
    for key in ("low", "high"):
        if key not in raw:
            raise SpecError(f"`{where}` range needs `{key}`, e.g. {{low = 0, high = 1}}")
    low = _typed(name, raw["low"], f"{where}.low")
    high = _typed(name, raw["high"], f"{where}.high")
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise SpecError(f"`{where}.log` must be true or false, got {log!r}")
    if low > high:
        raise SpecError(f"`{where}` has low > high ({low!r} > {high!r}); swap them")
    if low == high:
        raise SpecError(
            f"`{where}` is an empty range ({low!r} to {high!r}); write the value itself"
        )
    if log and low <= 0:
        raise SpecError(f"`{where}` is a log range, so low must be above 0, got {low!r}")
    step = raw.get("step")
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, (int, float)) or step <= 0:
            raise SpecError(f"`{where}.step` must be a positive number, got {step!r}")
        if log:
            raise SpecError(f"`{where}` cannot have both log = true and a step; drop one")
        if kind == "int" and not isinstance(step, int):
            raise SpecError(f"`{where}.step` must be an integer for an integer range, got {step!r}")
    return Dimension(name, low=low, high=high, log=log, step=step)


@dataclass(frozen=True)
class SearchSpace:
    """All dimensions of a study, each parsed and validated."""

    dimensions: dict[str, Dimension] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SearchSpace:
        merged = {**DEFAULTS, **raw}
        return cls({name: parse_dimension(name, value) for name, value in merged.items()})

    def to_dict(self) -> dict[str, Any]:
        return {name: dim.to_toml() for name, dim in self.dimensions.items()}

    def __getitem__(self, name: str) -> Dimension:
        return self.dimensions[name]


FIRST_TRIAL_ATTR = "first_trial"  # on a study's first trials: RECIPE or GIVEN
RECIPE, GIVEN = "trainer recipe", "study file"
# The Hugging Face Trainer's recipe when nothing is tuned (TrainingArguments' defaults: lr 5e-5,
# no warmup, linear decay), with nothing frozen or augmented: what a user gets without tuning.
TRAINER_RECIPE: dict[str, Any] = {
    "learning_rate": 5e-5,
    "warmup_ratio": 0.0,
    "lr_schedule": "linear",
    "frozen_layers": 0,
    "augmentation_strength": 0.0,
}


def first_trials(
    space: SearchSpace, given: Sequence[Mapping[str, Any]] | None, recipe: bool = False
) -> list[tuple[str, dict[str, Any]]]:
    """(origin, parameters) of a new study's first trials, run in order before any is sampled.

    With ``recipe`` (``sampler.start_from_recipe``), the Trainer's recipe comes first; dimensions
    the space fixes keep their one value. Then ``given`` (``sampler.first_trials``), each a table
    of dimension values; the dimensions a table leaves out are sampled. Raises SpecError for a
    value the space cannot take."""
    out: list[tuple[str, dict[str, Any]]] = []
    if recipe:
        for name, value in TRAINER_RECIPE.items():
            dim = space[name]
            if not dim.is_fixed and not dim.contains(value):
                raise SpecError(
                    f"`sampler.start_from_recipe`: the recipe's {name} {value!r} is outside the "
                    f"space: space.{name} is {dim.describe()}; widen the space or drop the option"
                )
        out.append((RECIPE, {k: v for k, v in TRAINER_RECIPE.items() if not space[k].is_fixed}))
    for i, raw in enumerate(given or ()):
        point = {}
        for name, value in raw.items():
            where = f"sampler.first_trials[{i}].{name}"
            if name not in space.dimensions:
                raise SpecError(f"unknown key `{where}`; the space has: {', '.join(RULES)}")
            value = _typed(name, value, where)
            dim = space[name]
            if not dim.contains(value):
                raise SpecError(
                    f"`{where}` is {value!r}, outside the space: space.{name} is "
                    f"{dim.describe()}; change the value or widen the space"
                )
            if not dim.is_fixed:
                point[name] = value
        out.append((GIVEN, point))
    return out


@dataclass(frozen=True)
class Hyperparameters:
    """The values one trial trains with."""

    learning_rate: float
    warmup_ratio: float
    lr_schedule: str
    frozen_layers: int
    augmentation_strength: float
    batch_size: int
    weight_decay: float
    seed: int


def sample(space: SearchSpace, trial: optuna.trial.BaseTrial) -> Hyperparameters:
    """Sample every dimension from the trial (works with ``optuna.trial.FixedTrial`` in tests)."""
    values = {name: dim.suggest(trial) for name, dim in space.dimensions.items()}
    return Hyperparameters(
        learning_rate=float(values["learning_rate"]),
        warmup_ratio=float(values["warmup_ratio"]),
        lr_schedule=str(values["lr_schedule"]),
        frozen_layers=int(values["frozen_layers"]),
        augmentation_strength=float(values["augmentation_strength"]),
        batch_size=int(values["batch_size"]),
        weight_decay=float(values["weight_decay"]),
        seed=int(values["seed"]),
    )
