"""What a study spends, in the user's units: training samples, model FLOPs or trial seconds.

A study can set its budget as ``[study] budget = {samples = 20000}`` (or ``flops``, or
``seconds``) instead of a number of trials. Workers start a trial only while the study's spend is
below it; a trial that starts under the budget runs to its end, so a study overshoots by at most
one trial per worker. Every trial stores what it spent:

- samples: the training rows it saw (a short last batch counts its real rows);
- flops: model FLOPs of its training rows and of each evaluation (``hpo.models.flops``);
- seconds: the trial's wall time, setup included (worker-seconds: two workers spend two seconds a
  second).

The untuned recipe's cost, which the report shows beside the spend, is one trial of the study's
training budget with no layer frozen, evaluated on the study's schedule.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from hpo import keys
from hpo.config.sections import BUDGET_UNITS as UNITS

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial

__all__ = ["UNITS", "describe", "progress", "spend_line", "spent"]
_ATTR = {"samples": keys.TRAIN_SAMPLES, "flops": keys.FLOPS, "seconds": keys.WALL_SECONDS}


def spent(trials: Iterable[FrozenTrial], unit: str) -> float:
    """What the study's trials have spent, in ``unit``: finished trials, and pruned or failed
    ones up to where they stopped (the trials still running have not reported yet)."""
    attr = _ATTR[unit]
    total = 0.0
    for t in trials:
        value = t.user_attrs.get(attr)
        if isinstance(value, (int, float)) and math.isfinite(value):
            total += float(value)
    return total


def describe(amount: float, unit: str) -> str:
    """A spend as the report prints it: 20,000 samples, 1.2 PFLOP, 15 min 3 s."""
    if unit == "samples":
        return f"{amount:,.0f} samples"
    if unit == "flops":
        for scale, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
            if amount >= scale:
                return f"{amount / scale:.3g} {prefix}FLOP"
        return f"{amount:.3g} FLOP"
    minutes, seconds = divmod(round(amount), 60)
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def progress(trials: list[FrozenTrial], budget: dict[str, float]) -> str:
    """How much of a study's ``budget`` its trials spent: "4,800 samples of 20,000 samples
    spent"."""
    ((unit, amount),) = budget.items()
    return f"{describe(spent(trials, unit), unit)} of {describe(amount, unit)} spent"


def spend_line(trials: Sequence[FrozenTrial]) -> str | None:
    """What the study spent (samples, model FLOPs, trial time) beside the untuned recipe: one
    unpruned trial of the same training budget."""
    if not any(keys.TRAIN_SAMPLES in t.user_attrs for t in trials):
        return None
    parts = [describe(spent(trials, u), u) for u in ("samples", "flops", "seconds")]
    line = f"spent {parts[0]}, {parts[1]}, {parts[2]} of trial time"
    full = [t.user_attrs[keys.FULL_TRIAL] for t in trials if keys.FULL_TRIAL in t.user_attrs]
    if full:
        recipe = full[-1]
        ratio = spent(trials, "samples") / recipe["samples"] if recipe["samples"] else 0.0
        line += (
            f"; the untuned recipe, one unpruned trial: {describe(recipe['samples'], 'samples')}"
            f", {describe(recipe['flops'], 'flops')} (the search spent {ratio:.1f} times its "
            "samples)"
        )
    return line
