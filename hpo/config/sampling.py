"""What a trial gets from the space: a new study's first trials, and the sampled values.

``sample`` walks the space in its order, skips dimensions whose condition does not hold, clips
layer counts to the model, and returns ``Hyperparameters``: every strategy's value, sampled or
at its off value.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hpo import keys
from hpo.config.dimension import typed_value
from hpo.config.space import SearchSpace
from hpo.errors import SpecError, shown
from hpo.strategies import dimensions

if TYPE_CHECKING:
    import optuna

# The Hugging Face Trainer's recipe when nothing is tuned (TrainingArguments' defaults: lr 5e-5,
# no warmup, linear decay), with nothing frozen or augmented: what a user gets without tuning.
TRAINER_RECIPE: dict[str, Any] = {
    "learning_rate": 5e-5,
    "warmup_ratio": 0.0,
    "lr_schedule": "linear",
    "frozen_layers": 0,
    "augmentation_strength": 0.0,
}


def recipe_point(space: SearchSpace) -> dict[str, Any]:
    """The Trainer's recipe, plus each other searched dimension at its off value where it has
    one the space can take: the untuned run."""
    point = dict(TRAINER_RECIPE)
    for name, dim in dimensions().items():
        searched = name in space and not space[name].is_fixed
        if searched and name not in point and dim.off is not None and space[name].contains(dim.off):
            point[name] = dim.off
    if "num_layers" in space and not space["num_layers"].is_fixed:
        point["num_layers"] = space["num_layers"].upper_bound()  # as deep as the space allows
    return {k: v for k, v in point.items() if k in space}


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
            if name not in space:
                continue
            dim = space[name]
            if not dim.is_fixed and not dim.contains(value):
                raise SpecError(
                    f"`sampler.start_from_recipe`: the recipe's {name} {value!r} is outside the "
                    f"space: space.{name} is {dim.describe()}; widen the space or drop the option"
                )
        point = {k: v for k, v in recipe_point(space).items() if not space[k].is_fixed}
        out.append((keys.RECIPE, point))
    for i, raw in enumerate(given or ()):
        point = {}
        for name, value in raw.items():
            where = f"sampler.first_trials[{i}].{shown(name)}"
            if name not in space.dimensions:
                raise SpecError(
                    f"unknown key `{where}`; the space has: {', '.join(space.dimensions)}"
                )
            value = typed_value(name, value, where)
            dim = space[name]
            if not dim.contains(value):
                raise SpecError(
                    f"`{where}` is {value!r}, outside the space: space.{name} is "
                    f"{dim.describe()}; change the value or widen the space"
                )
            if not dim.is_fixed:
                point[name] = value
        out.append((keys.GIVEN, point))
    return out


class Hyperparameters(Mapping[str, Any]):
    """The values one trial trains with: each sampled dimension, and every other dimension of
    every strategy at its off value (None where that is the model's own)."""

    def __init__(self, values: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        given = {**(values or {}), **kwargs}
        known = dimensions()
        unknown = set(given) - set(known)
        if unknown:
            raise KeyError(f"unknown hyperparameter {sorted(unknown)[0]!r}")
        self._values = {name: given.get(name, d.off) for name, d in known.items()}
        self.sampled = tuple(n for n in known if n in given)

    def __getitem__(self, name: str) -> Any:
        return self._values[name]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.__dict__["_values"][name]
        except KeyError:
            raise AttributeError(name) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Hyperparameters):
            return self._values == other._values
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(sorted((k, repr(v)) for k, v in self._values.items())))

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={self._values[k]!r}" for k in self.sampled)
        return f"Hyperparameters({shown})"

    def replace(self, **changes: Any) -> Hyperparameters:
        return Hyperparameters({**{k: self._values[k] for k in self.sampled}, **changes})


def sample(
    space: SearchSpace, trial: optuna.trial.BaseTrial, depth: int | Mapping[str, int] | None = None
) -> Hyperparameters:
    """Sample every active dimension from the trial (``optuna.trial.FixedTrial`` works too).

    ``depth``, the model's number of layers (or one per model for ``space.model``), clips the
    layer dimensions: ``num_layers`` to the depth, the others to the layers kept less the ones
    already used (frozen plus re-initialised never exceed the kept layers)."""
    rules = dimensions()
    values: dict[str, Any] = {}
    for name in space.order():
        if not space.active(name, values):
            continue
        at_most = None
        if rules[name].depth and depth is not None:
            model_depth = (
                depth
                if isinstance(depth, int)
                else depth.get(str(values.get("model", "")), min(depth.values()))
            )
            kept = int(values.get("num_layers") or model_depth)
            if name == "num_layers":
                at_most = model_depth
            else:
                used = sum(
                    int(values.get(n) or 0)
                    for n, d in rules.items()
                    if d.depth and n not in ("num_layers", name)
                )
                at_most = kept - used
        value = space[name].suggest(trial, at_most)
        kind = rules[name].kind
        values[name] = float(value) if kind == "float" else int(value) if kind == "int" else value
    return Hyperparameters(values)
