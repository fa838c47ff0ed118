"""Startup trials spread over the space: a Latin hypercube instead of independent random draws.

Before a model-based sampler (TPE, GP, CMA-ES) has enough results it draws its first
``n_startup_trials`` configurations at random. With a small budget those draws are most of the
search, and random draws cluster: three of them leave the top third of a log learning-rate range
untried about 30% of the time ((2/3)^3), and on the tasks measured here that third is where the
good learning rates were (BENCHMARKS.md). A Latin hypercube (McKay et al. 1979) of n rows puts
exactly one row in each of n equal slices of every dimension, so n startup trials always cover
the whole of every range, in the sampler's own scale (log ranges in log space).

It is the default for TPE, GP and CMA-ES (``sampler.startup``): at the default budget it measured
as good as random startup, and at small budgets it kept the search from missing the good range
(BENCHMARKS.md, "The hypercube at the default budget").

``StratifiedStartSampler`` gives the startup trials the rows of one such design and hands every
later trial to the wrapped sampler. A trial's row is its number less the study's enqueued first
trials (the recipe, ``sampler.first_trials``), so every worker gives each number the same row;
the design is seeded by ``sampler.seed`` or, without one, by the study's name, so workers and
resumed runs share it. Values come through ``sample_independent`` with the distribution the
trial asks for, so conditional dimensions and ranges clipped to the model's depth are handled
as for any draw. Each dimension has its own column of the design, by its place in the space.
"""

from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Any

from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.samplers import BaseSampler

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import Study
    from optuna.trial import FrozenTrial

_COLUMNS = 64  # dimensions a design has room for; more than any study file's space


def design_seed(seed: int | None, study_name: str) -> int:
    """The design's seed: the sampler's, else one derived from the study name (stable across
    processes, unlike ``hash``)."""
    if seed is not None:
        return seed
    return int.from_bytes(hashlib.sha256(study_name.encode()).digest()[:4], "big")


def latin_hypercube(rows: int, seed: int) -> list[list[float]]:
    """``rows`` points in [0, 1)^_COLUMNS with exactly one point in each 1/rows slice of every
    column (scipy's Latin hypercube)."""
    from scipy.stats import qmc

    return qmc.LatinHypercube(d=_COLUMNS, seed=seed).random(rows).tolist()


def from_unit(u: float, distribution: BaseDistribution) -> Any:
    """The value at quantile ``u`` in [0, 1) of ``distribution``, in its own scale: uniform in
    log space for a log range, one equal slice per choice or per integer."""
    u = min(max(u, 0.0), math.nextafter(1.0, 0.0))
    if isinstance(distribution, CategoricalDistribution):
        return distribution.choices[int(u * len(distribution.choices))]
    if isinstance(distribution, IntDistribution):
        if distribution.log:
            low, high = math.log(distribution.low - 0.5), math.log(distribution.high + 0.5)
            value = round(math.exp(low + u * (high - low)))
        else:
            count = (distribution.high - distribution.low) // distribution.step + 1
            value = distribution.low + int(u * count) * distribution.step
        return min(max(value, distribution.low), distribution.high)
    if isinstance(distribution, FloatDistribution):
        low, high = distribution.low, distribution.high
        if distribution.log:
            return math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        if distribution.step is not None:
            count = round((high - low) / distribution.step) + 1
            return min(low + int(u * count) * distribution.step, high)
        return low + u * (high - low)
    raise TypeError(f"no quantile rule for {type(distribution).__name__}")


class StratifiedStartSampler(BaseSampler):
    """Trials ``first`` .. ``first + rows - 1`` take the rows of one Latin hypercube; every other
    trial is the ``base`` sampler's."""

    def __init__(
        self, base: BaseSampler, rows: int, first: int, seed: int, names: list[str]
    ) -> None:
        """``names``: the space's dimensions in order, one column each (every parameter a
        trial samples is one of them: ``hpo.config.sampling.sample``)."""
        self._base = base
        self._rows = rows
        self._first = first
        self._design = latin_hypercube(rows, seed) if rows > 0 else []
        self._columns = {name: i % _COLUMNS for i, name in enumerate(names)}

    def row(self, number: int) -> list[float] | None:
        """The design row trial ``number`` takes, or None when the base sampler decides."""
        index = number - self._first
        return self._design[index] if 0 <= index < self._rows else None

    def reseed_rng(self) -> None:
        self._base.reseed_rng()

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._base.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: Any, values: Any) -> None:
        self._base.after_trial(study, trial, state, values)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        if self.row(trial.number) is not None:
            return {}
        return self._base.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if self.row(trial.number) is not None:
            return {}
        return self._base.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: Any
    ) -> Any:
        row = self.row(trial.number)
        if row is None:
            return self._base.sample_independent(study, trial, param_name, param_distribution)
        return from_unit(row[self._columns[param_name]], param_distribution)
