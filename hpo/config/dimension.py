"""One dimension of the search space: a fixed value, a list of choices or a range, checked
against the rule of the strategy that owns it, and sampled from an Optuna trial."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpo.errors import SpecError, shown
from hpo.strategies import Dim, dimensions

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class Dimension:
    """One searchable hyperparameter: a fixed value, a list of choices, or a range; ``when``
    names the values of other dimensions it is sampled under."""

    name: str
    value: Any = None
    choices: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    when: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    @property
    def rule(self) -> Dim:
        return dimensions()[self.name]

    @property
    def is_range(self) -> bool:
        return self.low is not None

    @property
    def is_fixed(self) -> bool:
        return self.choices is None and self.low is None

    def to_toml(self) -> Any:
        """The value as it would be written in a study file."""
        out: dict[str, Any]
        if self.choices is not None:
            if not self.when:
                return list(self.choices)
            out = {"choices": list(self.choices)}
        elif self.is_range:
            out = {"low": self.low, "high": self.high}
            if self.log:
                out["log"] = True
            if self.step is not None:
                out["step"] = self.step
        else:
            if not self.when:
                return self.value
            out = {"choices": [self.value]}
        if self.when:
            out["when"] = {name: list(values) for name, values in self.when}
        return out

    def lowest(self) -> Any:
        """The smallest value this dimension can take."""
        if self.choices is not None:
            return min(self.choices)
        return self.low if self.is_range else self.value

    def upper_bound(self) -> Any:
        """The largest value this dimension can take (for checks against the model)."""
        if self.choices is not None:
            return max(self.choices)
        return self.high if self.is_range else self.value

    def values(self) -> tuple[Any, ...] | None:
        """Every value it can take, when they can be listed (not a continuous range)."""
        if self.choices is not None:
            return self.choices
        if not self.is_range:
            return (self.value,)
        return None

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

    def suggest(self, trial: optuna.trial.BaseTrial, at_most: int | None = None) -> Any:
        """Ask the trial for this dimension's value under its stored name; ``at_most`` clips an
        integer range from above (layer counts, to the model's depth)."""
        kind = self.rule.kind
        if self.is_range:
            assert self.low is not None and self.high is not None
            if kind == "int":
                step = int(self.step) if self.step is not None else 1
                high = int(self.high) if at_most is None else min(int(self.high), at_most)
                high = max(high, int(self.low))
                high -= (high - int(self.low)) % step
                return trial.suggest_int(self.name, int(self.low), high, step=step, log=self.log)
            return trial.suggest_float(self.name, self.low, self.high, log=self.log, step=self.step)
        choices = self.choices if self.choices is not None else (self.value,)
        return trial.suggest_categorical(self.name, list(choices))


def typed_value(name: str, value: Any, where: str) -> Any:
    """Check one scalar against the dimension's type and rule; ints are accepted for floats."""
    rule = dimensions()[name]
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


def _kind_word(kind: str) -> str:
    return {"float": "a number", "int": "an integer", "str": "a string"}[kind]


def parse_dimension(name: str, raw: Any) -> Dimension:
    """Turn one ``[space]`` entry into a validated Dimension; errors name field, value and rule."""
    where = f"space.{shown(name)}"
    known = dimensions()
    if name not in known:
        raise SpecError(f"unknown key `{where}`; the space has: {', '.join(known)}")
    if isinstance(raw, list):
        return Dimension(name, choices=_choices(name, raw, where))
    if isinstance(raw, Mapping):
        raw = dict(raw)
        when = _parse_when(raw.pop("when", None), where)
        if "choices" in raw:
            if set(raw) != {"choices"}:
                extra = shown(sorted(set(raw) - {"choices"})[0])
                raise SpecError(
                    f"unknown key `{where}.{extra}`; a choice table has choices and when"
                )
            if not isinstance(raw["choices"], list):
                raise SpecError(f"`{where}.choices` must be a list, got {raw['choices']!r}")
            return Dimension(name, choices=_choices(name, raw["choices"], where), when=when)
        dim = _parse_range(name, raw, where, known[name].kind)
        return Dimension(name, low=dim.low, high=dim.high, log=dim.log, step=dim.step, when=when)
    return Dimension(name, value=typed_value(name, raw, where))


def _choices(name: str, raw: list[Any], where: str) -> tuple[Any, ...]:
    if not raw:
        raise SpecError(f"`{where}` is an empty list of choices; give at least one value")
    choices = tuple(typed_value(name, v, f"{where}[{i}]") for i, v in enumerate(raw))
    if len(set(choices)) != len(choices):
        raise SpecError(f"`{where}` lists a choice twice: {raw!r}")
    return choices


def _parse_when(raw: Any, where: str) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    """``when = {DIMENSION = [values]}`` as sorted pairs; checked against the space later."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping) or not raw:
        raise SpecError(
            f"`{where}.when` must be a table of dimension = [values], e.g. "
            f"{{lora_rank = [8, 16]}}, got {raw!r}"
        )
    out = []
    for other, values in raw.items():
        listed = values if isinstance(values, list) else [values]
        if not listed:
            raise SpecError(
                f"`{where}.when.{shown(str(other))}` is an empty list; give the values it needs"
            )
        out.append((str(other), tuple(listed)))
    return tuple(sorted(out))


def _parse_range(name: str, raw: dict[str, Any], where: str, kind: str) -> Dimension:
    if kind == "str":
        raise SpecError(f"`{where}` cannot be a range; give a value or a list of choices")
    unknown = set(raw) - {"low", "high", "log", "step"}
    if unknown:
        raise SpecError(
            f"unknown key `{where}.{shown(sorted(unknown)[0])}`; a range has low, high, log, step, "
            "when"
        )
    for key in ("low", "high"):
        if key not in raw:
            raise SpecError(f"`{where}` range needs `{key}`, e.g. {{low = 0, high = 1}}")
    low = typed_value(name, raw["low"], f"{where}.low")
    high = typed_value(name, raw["high"], f"{where}.high")
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
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0 < step < math.inf:
            # (NaN and inf too)
            raise SpecError(f"`{where}.step` must be a positive number, got {step!r}")
        if log:
            raise SpecError(f"`{where}` cannot have both log = true and a step; drop one")
        if kind == "int" and not isinstance(step, int):
            raise SpecError(f"`{where}.step` must be an integer for an integer range, got {step!r}")
        if step > high - low:  # Optuna would sample low alone
            raise SpecError(
                f"`{where}.step` {step!r} is larger than the range from {low!r} to {high!r}"
            )
        if kind == "float" and not (high - low) / step <= 2**53:  # finer than floats go
            raise SpecError(
                f"`{where}.step` {step!r} is too small for the range from {low!r} to {high!r}"
            )
    return Dimension(name, low=low, high=high, log=log, step=step)
