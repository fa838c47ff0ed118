"""The search space: the dimensions of a study, their conditions, and their fit to a model.

Dimensions belong to strategies (hpo/strategies/); hpo/config/dimension.py turns one ``[space]``
entry into a validated ``Dimension``, and this module holds the whole space. Each is written in the study file as a fixed value
(``batch_size = 16``), a list of choices (``lr_schedule = ["linear", "cosine"]``) or a range
table (``learning_rate = {low = 1e-5, high = 1e-4, log = true}``); a range table, or a choice
table ``{choices = [...]}``, may carry ``when = {lora_rank = [8, 16]}``: the dimension is then
sampled only when that dimension took one of those values. The dimensions a strategy gives a
default are always in the space, and every trial stores them, fixed ones as a one-choice
categorical, so all trials can be queried alike; the others enter the space only when a study
file names them, and trials that do not sample one store no value for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpo.config.dimension import Dimension, parse_dimension
from hpo.errors import SpecError, shown
from hpo.strategies import REGISTRY, Condition, dimensions

if TYPE_CHECKING:
    pass


# The order the first versions sampled in: kept, so that a seeded study draws the same values.
_SAMPLING_ORDER = (
    "learning_rate",
    "warmup_ratio",
    "lr_schedule",
    "frozen_layers",
    "augmentation_strength",
    "batch_size",
    "weight_decay",
    "seed",
)


def defaults() -> dict[str, Any]:
    """The ``[space]`` a study file gets for what it leaves out, in sampling order."""
    dims = dimensions()
    names = [n for n in _SAMPLING_ORDER if n in dims] + [
        n for n in dims if n not in _SAMPLING_ORDER
    ]
    return {name: dims[name].default for name in names if dims[name].default is not None}


@dataclass(frozen=True)
class SearchSpace:
    """All dimensions of a study, each parsed and validated, and the conditions between them."""

    dimensions: dict[str, Dimension] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> SearchSpace:
        merged = {**defaults(), **raw}
        space = cls({name: parse_dimension(name, value) for name, value in merged.items()})
        space.order()  # refuses unknown and circular conditions
        for strategy in REGISTRY:
            strategy.check(space)
        check_depths(space)
        return space

    def to_dict(self) -> dict[str, Any]:
        return {name: dim.to_toml() for name, dim in self.dimensions.items()}

    def __getitem__(self, name: str) -> Dimension:
        return self.dimensions[name]

    def __contains__(self, name: object) -> bool:
        return name in self.dimensions

    def conditions(self) -> dict[str, list[Condition]]:
        """Per dimension, every condition it is sampled under: written ones and implied ones."""
        out: dict[str, list[Condition]] = {name: [] for name in self.dimensions}
        for name, dim in self.dimensions.items():
            for other, values in dim.when:
                text = f"{other} in {list(values)}"
                out[name].append(Condition(name, other, _member(values), text))
        for strategy in REGISTRY:
            for cond in strategy.conditions(self):
                if cond.dim in out and cond.on in self.dimensions:
                    out[cond.dim].append(cond)
        return out

    @property
    def conditional(self) -> bool:
        """Whether any dimension is sampled only under a condition (TPE then groups them)."""
        return any(self.conditions().values())

    def order(self) -> list[str]:
        """Dimension names, each after the ones its conditions read; raises SpecError for a
        condition on a dimension outside the space, on a value it cannot take, or in a cycle."""
        conditions = self.conditions()
        for name, dim in self.dimensions.items():
            for other, values in dim.when:
                where = f"space.{name}.when.{shown(other)}"
                if other == name:  # visit() below skips a dimension's own name
                    raise SpecError(
                        f"`space.{name}.when` forms a cycle: {name} -> {name}; break it"
                    )
                if other not in self.dimensions:
                    raise SpecError(
                        f"`{where}`: {other!r} is not a dimension of the space; "
                        f"name one of: {', '.join(self.dimensions)}"
                    )
                bad = [v for v in values if not _can_take(self.dimensions[other], v)]
                if bad:
                    raise SpecError(
                        f"`{where}` lists {bad[0]!r}, which space.{other} "
                        f"({self.dimensions[other].describe()}) never takes"
                    )
        self._check_reachable(conditions)
        rules = dimensions()
        done: list[str] = []
        visiting: list[str] = []

        def visit(name: str) -> None:
            if name in done:
                return
            if name in visiting:
                cycle = " -> ".join([*visiting[visiting.index(name) :], name])
                raise SpecError(f"`space.{name}.when` forms a cycle: {cycle}; break it")
            visiting.append(name)
            before = [cond.on for cond in conditions[name]]
            if rules[name].depth:  # layer counts are clipped to the model's and the kept depth
                before += [n for n in ("model", "num_layers") if n in self.dimensions]
            for other in before:
                if other != name:
                    visit(other)
            visiting.pop()
            done.append(name)

        for name in self.dimensions:
            visit(name)
        return done

    def _check_reachable(self, conditions: dict[str, list[Condition]]) -> None:
        """Refuse a dimension the study file sets that a condition keeps from ever being
        sampled: ``frozen_layers = 2`` with ``lora_rank = 4`` (freezing applies only without
        LoRA) would store no ``frozen_layers`` and train every trial without it, silently. The
        space's own default ranges, and values that include the off value, may be switched off
        so."""
        for name, conds in conditions.items():
            dim = self.dimensions[name]
            # a range or choice that holds the off value may simply be gated off (LoRA turns
            # freezing off); one that does not asks for the strategy in every trial
            if _is_default(name, dim) or _can_take(dim, dim.rule.off):
                continue
            for cond in conds:
                on = self.dimensions.get(cond.on)
                values = None if on is None else on.values()
                if on is None or values is None or any(cond.holds(v) for v in values):
                    continue
                raise SpecError(
                    f"`space.{name}` ({dim.describe()}) is never used: it applies only when "
                    f"{cond.text}, and space.{cond.on} is {on.describe()}; drop space.{name}, "
                    f"or let space.{cond.on} take such a value"
                )

    def active(self, name: str, values: Mapping[str, Any]) -> bool:
        """Whether ``name`` is sampled, given the values of the dimensions before it."""
        return all(
            cond.on in values and cond.holds(values[cond.on]) for cond in self.conditions()[name]
        )


def _can_take(dim: Dimension, value: Any) -> bool:
    """Whether ``dim`` takes ``value``; a value of the wrong type (a table, a string for a
    number) simply is not one it takes."""
    try:
        return dim.contains(value)
    except TypeError:
        return False


def _member(values: tuple[Any, ...]) -> Any:
    return lambda v: v in values


def _is_default(name: str, dim: Dimension) -> bool:
    """Whether ``dim`` is the range the space gives ``name`` when the study file leaves it out."""
    return bool(dim.to_toml() == defaults().get(name))


def check_depths(space: SearchSpace, model_depth: int | None = None, model: str = "") -> None:
    """The layer dimensions fit in the depth: kept layers (``num_layers``, else the model's
    depth) hold at least the fewest frozen plus re-initialised ones, and, for a study of one
    model, no range goes past its depth (with ``space.model`` ranges are clipped per model)."""
    dims = dimensions()
    users = [n for n, d in dims.items() if d.depth and n != "num_layers" and n in space]
    kept = space.dimensions.get("num_layers")
    for name in users:
        dim = space[name]
        # a range is clipped to the layers left per trial; a choice cannot be, so all must fit
        low = dim.lowest() if dim.is_range else dim.upper_bound()
        if kept is not None and low > kept.lowest():
            raise SpecError(
                f"`space.{name}` can be {low} but `space.num_layers` can be as low as "
                f"{kept.lowest()}; lower {name} or raise num_layers"
            )
        if model_depth is not None and "model" not in space:
            # one model: a range past its depth is a mistake (with `space.model` ranges are
            # clipped per model)
            low = dim.upper_bound()
        if model_depth is not None and low > model_depth:
            raise SpecError(
                f"`space.{name}` goes up to {low} but the model{model} has {model_depth} "
                f"layers; lower it"
            )
    if len(users) > 1:
        total = sum(space[n].lowest() for n in users)
        floor = kept.lowest() if kept is not None else model_depth
        if floor is not None and total > floor:
            names = " plus ".join(f"`space.{n}`" for n in users)
            raise SpecError(
                f"{names} is at least {total}, above the {floor} layers kept; lower one of them"
            )
    single = "model" not in space
    if kept is not None and model_depth is not None and single and kept.upper_bound() > model_depth:
        raise SpecError(
            f"`space.num_layers` goes up to {kept.upper_bound()} but the model has "
            f"{model_depth} layers; lower it"
        )
    if kept is not None and model_depth is not None and kept.lowest() > model_depth:
        raise SpecError(
            f"`space.num_layers` goes down to {kept.lowest()} but the model{model} has only "
            f"{model_depth} layers; lower it"
        )
