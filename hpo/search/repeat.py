"""A sampler wrapper that, for the trials it is told to, repeats an earlier trial's parameters.

Racing (re-runs of the leaders with new seeds) and screening (the best screens run in full) both
decide in ``before_trial`` that a trial runs a configuration already tried; this base answers
Optuna's sampling calls for those trials from the earlier trial and hands every other trial to
the study's own sampler.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from optuna.samplers import BaseSampler

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import Study
    from optuna.trial import FrozenTrial, TrialState


class RepeatingSampler(BaseSampler):
    """Wraps ``base``; a subclass's ``before_trial`` calls ``assign`` for the trials that repeat
    an earlier one."""

    def __init__(self, base: BaseSampler) -> None:
        self._base = base
        self._assigned: dict[int, FrozenTrial] = {}  # trial number -> the trial it repeats

    @property
    def base(self) -> BaseSampler:
        return self._base

    def assign(self, number: int, earlier: FrozenTrial) -> None:
        """Trial ``number`` takes ``earlier``'s parameters instead of sampling."""
        self._assigned[number] = earlier

    def repeats(self, number: int) -> FrozenTrial | None:
        """The earlier trial whose parameters trial ``number`` repeats, if it repeats one."""
        return self._assigned.get(number)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._base.before_trial(study, trial)

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        if trial.number in self._assigned:
            return {}
        return self._base.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if trial.number in self._assigned:
            return {}
        return self._base.sample_relative(study, trial, search_space)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        earlier = self._assigned.get(trial.number)
        if earlier is not None and param_name in earlier.params:
            return earlier.params[param_name]
        return self._base.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._assigned.pop(trial.number, None)
        self._base.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self._base.reseed_rng()
