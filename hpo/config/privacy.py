"""The ``[privacy]`` section: the privacy budget of differentially private trials (DP-SGD).

Differential privacy is turned on by the space (``dp_noise_multiplier`` above 0,
hpo/strategies/privacy.py); this section says what a trial may spend. A trial whose epsilon
exceeds ``target_epsilon`` is kept as infeasible: never the best, and the sampler learns to
avoid its region. The checks here need the whole study (the space and ``[augment]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from hpo.errors import SpecError

if TYPE_CHECKING:
    from hpo.config.sections import AugmentSection
    from hpo.config.space import SearchSpace

NOISE = "dp_noise_multiplier"


@dataclass(frozen=True)
class PrivacySection:
    # the most epsilon a trial may spend; a trial over it is infeasible. None: no limit (each
    # trial still stores the epsilon it spent)
    target_epsilon: float | None = None
    # the delta epsilon is stated at; default min(1e-5, 1 / (10 x training rows)): opacus'
    # maintainers advise a delta well below 1 / rows, and 1e-5 is the usual value
    delta: float | None = None
    # opacus' accountant: prv (privacy random variables, opacus' default and the tighter bound)
    # or rdp (Renyi DP, a looser but simpler bound)
    accountant: Literal["prv", "rdp"] = "prv"

    def __post_init__(self) -> None:
        eps = self.target_epsilon
        if eps is not None and not (0 < eps < math.inf):
            raise SpecError(f"`privacy.target_epsilon` must be a number above 0, got {eps!r}")
        if self.delta is not None and not 0 < self.delta < 1:
            raise SpecError(f"`privacy.delta` must be in (0, 1), got {self.delta!r}")


def default_delta(rows: int) -> float:
    """The delta of a study that names none: 1e-5, or ten times below 1 / rows for larger data."""
    return min(1e-5, 1.0 / (10 * max(1, rows)))


def check_private_study(
    privacy: PrivacySection, space: SearchSpace, augment: AugmentSection, given: bool
) -> None:
    """Refuse a study whose privacy settings would not hold: a budget with no private trial, a
    budget some trials would train without noise under, or augmented copies of a row (one
    person's text would then be several rows, which the per-row guarantee does not cover).
    ``given``: the study file has a ``[privacy]`` section."""
    dim = space.dimensions.get(NOISE)
    can_be_on = dim is not None and dim.upper_bound() > 0
    # a dimension sampled only under a condition stays at 0 (no noise) when it does not hold
    can_be_off = dim is None or dim.lowest() <= 0 or bool(dim.when)
    if given and not can_be_on:
        raise SpecError(
            "[privacy] is set but no trial trains privately: set space.dp_noise_multiplier "
            "above 0 (e.g. 1.0), or drop [privacy]"
        )
    if privacy.target_epsilon is not None and can_be_off:
        raise SpecError(
            "`privacy.target_epsilon` is set but space.dp_noise_multiplier can be 0, which trains "
            "without privacy; keep it above 0 (e.g. {low = 0.5, high = 2.0})"
        )
    strength = space.dimensions.get("augmentation_strength")
    augments = strength is not None and strength.upper_bound() > 0
    if can_be_on and augments and augment.copies > 0:
        raise SpecError(
            f"`augment.copies` is {augment.copies} with space.augmentation_strength above 0 and "
            "space.dp_noise_multiplier on, but differentially private training counts each "
            "training row once; set augment.copies = 0 (augmenting rows in place is fine)"
        )
