"""The ``[pruner]`` section and which of its keys each pruner reads (hpo/search/pruners.py
builds the pruners). A key the chosen pruner never reads is a mistake (``patience`` with the
median pruner, say): refused rather than silently ignored."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from hpo.errors import SpecError, at_least

# the keys each pruner reads (`patient` also reads those of the pruner it wraps)
_PRUNER_KEYS: dict[str, frozenset[str]] = {
    "median": frozenset({"n_startup_trials", "n_warmup_steps", "margin", "learn_rung"}),
    "successive_halving": frozenset({"margin", "min_resource", "reduction_factor", "learn_rung"}),
    "hyperband": frozenset({"margin", "min_resource", "reduction_factor"}),
    "patient": frozenset({"wrapped", "patience", "min_delta"}),
    "none": frozenset(),
}


@dataclass(frozen=True)
class PrunerSection:
    """Pruning (hpo/search/pruners.py). The default, hpo's median pruner, waits past the first
    evaluation and a third of ``train.max_steps``, so trials still in warmup are not judged, and
    ignores a shortfall smaller than the noise of one evaluation. Successive halving spends about
    half its samples but, in a dozen trials, leaves few complete ones to choose from (README,
    "Defaults, and why")."""

    name: Literal["median", "successive_halving", "hyperband", "patient", "none"] = "median"
    wrapped: Literal["median", "successive_halving", "hyperband"] = "median"  # for `patient`
    n_startup_trials: int = 3  # median: trials that run to the end before any is pruned
    n_warmup_steps: int | None = None  # median: no pruning before this step (default: see below)
    # median: a shortfall behind the median that is ignored (default: one standard error);
    # successive_halving, hyperband: a trial within it of the rung's room goes on (default 0)
    margin: float | None = None
    # successive_halving: the first rung's step (default: each trial's first evaluation at or
    # after a fifth of its steps); hyperband: the first bracket's (default: eval_every)
    min_resource: int | None = None
    reduction_factor: int = 3  # successive_halving, hyperband
    # median, successive_halving: no trial is stopped before the first evaluation at which the
    # study's complete trials rank as they finished (hpo/search/rungs.py, learned_rung)
    learn_rung: bool = False
    patience: int = 2  # patient: evaluations without improvement before the wrapped pruner acts
    min_delta: float = 0.0  # patient: the least change that counts as an improvement

    def __post_init__(self) -> None:
        at_least("pruner.n_startup_trials", self.n_startup_trials, 0)
        if self.n_warmup_steps is not None:
            at_least("pruner.n_warmup_steps", self.n_warmup_steps, 0)
        if self.min_resource is not None:
            at_least("pruner.min_resource", self.min_resource, 1)
        at_least("pruner.reduction_factor", self.reduction_factor, 2)
        at_least("pruner.patience", self.patience, 0)
        if self.margin is not None and not self.margin >= 0:
            raise SpecError(f"`pruner.margin` must be 0 or more, got {self.margin!r}")
        if self.learn_rung and self.min_resource is not None:
            raise SpecError(
                "`pruner.learn_rung` places the first rung, which `pruner.min_resource` also "
                "sets: drop one of them"
            )
        if self.min_delta < 0:
            raise SpecError(f"`pruner.min_delta` must be 0 or more, got {self.min_delta!r}")
        # a key set away from its default; one written at it is checked on the study file
        defaults = PrunerSection.__dataclass_fields__
        changed = [k for k in defaults if getattr(self, k) != defaults[k].default]
        _refuse_unread(changed, self.name, self.wrapped)


def check_pruner_keys(written: Any, name: str, wrapped: str) -> None:
    """Refuse a ``[pruner]`` key the study file writes that pruner ``name`` never reads, also
    one written at its default value (``reduction_factor = 3`` with the median pruner), which
    the section itself cannot tell from a key left out. Only for a study file as written: a
    stored study keeps every key."""
    if isinstance(written, dict):
        _refuse_unread(written, name, wrapped)


def _refuse_unread(keys: Iterable[str], name: str, wrapped: str) -> None:
    """The one rule: a key among ``keys`` that pruner ``name`` does not read is refused.
    ``none`` takes any: turning pruning off (``--set pruner.name=none``) leaves the keys of the
    pruner it turns off."""
    if name == "none":
        return
    uses = set(_PRUNER_KEYS[name]) | {"name"}
    if name == "patient":
        uses |= _PRUNER_KEYS[wrapped]
    for key in sorted(set(keys) - uses):
        readers = [n for n, ks in _PRUNER_KEYS.items() if key in ks]
        raise SpecError(
            f"`pruner.{key}` is not read by pruner {name!r} (only by "
            f"{', '.join(map(repr, readers))}); drop it, or choose that pruner"
        )
