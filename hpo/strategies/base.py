"""What a tuning strategy is: its dimensions, and the points of a trial where it acts.

A strategy declares the dimensions it owns (``Dim``: name, kind, rule, default range, the value
that means "off") and overrides the hooks it needs:

- ``configure(settings, values)``: the loop's settings (learning rate and schedule, batch,
  weight decay, clipping, loss options, parameter-group hooks, the augmentation strength);
- ``apply(model, values, ctx)``: the model itself (drop, re-initialise or freeze layers, swap
  the head, wrap it in adapters), in registry order;
- ``check(space)``: interactions between dimensions, when the study file is read;
- ``check_model(space, found, model_class)``: what the model must offer, before any trial;
- ``conditions(space)``: conditions a dimension implies for others (LoRA's rank turns freezing off).

A hook receives only the sampled values, never the Optuna trial: the training loop stays free of
Optuna.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from hpo.errors import ModelError

if TYPE_CHECKING:
    from hpo.config.space import SearchSpace
    from hpo.models.anatomy import Anatomy

Kind = Literal["float", "int", "str"]


@dataclass(frozen=True)
class Dim:
    """One dimension a strategy owns.

    ``default`` is what ``[space]`` holds when the study file says nothing (a value, a list or a
    range table); None keeps the dimension out of the space, at ``off``, until a study file names
    it. ``off`` is the value that leaves training as it would be without the strategy (None: the
    model's own, decided when the model is known). ``depth`` marks layer counts, whose ranges are
    clipped to the model's depth per trial.
    """

    name: str
    kind: Kind
    check: Callable[[Any], bool]
    rule: str
    off: Any = None
    default: Any = None
    depth: bool = False
    short: str = ""
    layers: bool = False  # acts on the model's layers, so needs its anatomy (hpo/models/anatomy.py)  # the report's column header, when the name is too long for 80 columns


@dataclass
class Settings:
    """The loop's settings that strategies decide; each starts at the untuned recipe's value."""

    learning_rate: float = 5e-5
    warmup_ratio: float = 0.0
    lr_schedule: str = "linear"
    weight_decay: float = 0.0
    batch_size: int = 16
    seed: int = 0
    max_grad_norm: float | None = None  # None: `train.max_grad_norm`
    augmentation_strength: float = 0.0
    dp_noise_multiplier: float = 0.0  # DP-SGD's noise, in units of the clipping norm; 0: off
    dp_max_grad_norm: float = 1.0  # DP-SGD's per-sample clipping norm
    loss_options: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the loss
    # each takes (model, AdamW parameter groups) and returns the groups it wants instead
    group_hooks: list[Callable[[Any, list[dict[str, Any]]], list[dict[str, Any]]]] = field(
        default_factory=list
    )


@dataclass(frozen=True)
class Condition:
    """``dim`` is sampled only when ``on`` took a value that ``holds``; ``text`` says which."""

    dim: str
    on: str
    holds: Callable[[Any], bool]
    text: str


@dataclass
class ModelContext:
    """What a strategy acting on the model may need beyond the sampled values."""

    seed: int
    new_modules: list[str]  # modules the pretrained checkpoint lacked (the head), by name
    num_labels: int
    notes: dict[str, Any] = field(default_factory=dict)  # facts a strategy records on the trial


class Strategy:
    """Base class: a strategy with no dimensions that does nothing."""

    name: str = "strategy"
    dims: tuple[Dim, ...] = ()
    tasks: tuple[str, ...] | None = None  # the tasks it applies to; None: every task

    def configure(self, settings: Settings, values: Mapping[str, Any]) -> None:
        """Set what this strategy decides in the loop's settings."""

    def apply(self, model: Any, values: Mapping[str, Any], ctx: ModelContext) -> Any:
        """Change the trial's fresh model; return it (a strategy may wrap it)."""
        return model

    def check(self, space: SearchSpace) -> None:
        """Raise SpecError for dimensions of the space that cannot work together."""

    def check_model(self, space: SearchSpace, found: Anatomy | None, model_class: str) -> None:
        """Raise SpecError or ModelError when the model (of class ``model_class``, with the
        anatomy ``found``, None where its layers could not be found) cannot take this
        strategy's values. By default: a strategy with a dimension marked ``layers`` needs the
        layers wherever the space can turn it on."""
        if found is not None:
            return
        for dim in self.dims:
            if dim.layers and can_act(space, dim.name, dim.off):
                raise ModelError(
                    f"`{dim.name}` cannot find the transformer layers of {model_class}; "
                    f"leave `space.{dim.name}` out for this model"
                )

    def conditions(self, space: SearchSpace) -> list[Condition]:
        """Conditions this strategy implies for dimensions of the space."""
        return []


def can_act(space: SearchSpace, name: str, off: Any) -> bool:
    """Whether the space can give dimension ``name`` a value other than ``off``."""
    dim = space.dimensions.get(name)
    if dim is None:
        return False
    values = dim.values()
    return values is None or any(v != off for v in values)


def between(lo: float, hi: float, hi_open: bool = False) -> Callable[[Any], bool]:
    """A rule: lo <= v <= hi (or < hi)."""

    def check(v: float) -> bool:
        return lo <= v < hi if hi_open else lo <= v <= hi

    return check
