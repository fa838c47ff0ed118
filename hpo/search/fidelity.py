"""TPE that models only comparable results: BOHB's rule for searches that stop trials early.

Optuna's TPE ranks a trial that was stopped early below every finished one (it sorts by the last
step reached, then by value). Under successive halving most trials stop at the first rung, and
the first evaluation of a fine-tuning run says little: a good learning rate can still predict
the majority class there. TPE then reads "stopped early" as "bad" and samples away from good
regions (BENCHMARKS.md, "What steers the sampler under successive halving").

BOHB (Falkner et al. 2018, section 4.1) fits its model on the largest budget that has enough
results, N_min + 2 of them with N_min = d + 1 for d searched dimensions, so that every result
the model sees was measured at the same budget. ``BudgetTPESampler`` does the same with Optuna's
TPE: before each trial it takes, from the finished and stopped trials, the largest evaluation
step at which enough of them reported, builds an in-memory study of those trials with their
score at that step as their value, and lets TPE propose the next configuration from it. Trials
that stopped before that step are left out rather than ranked last. Trials still running enter
with the worst score seen (Optuna's constant liar), so parallel workers spread out. Until some
step has enough results, configurations are drawn at random; dimensions outside the shared
search space (conditional ones) are drawn at random too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import optuna
from optuna.samplers import BaseSampler, RandomSampler, TPESampler
from optuna.trial import TrialState

from hpo import keys

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import Study
    from optuna.trial import FrozenTrial


class BudgetTPESampler(BaseSampler):
    """Optuna's TPE fitted on the largest evaluation step with enough results (BOHB's rule)."""

    def __init__(
        self, seed: int | None = None, multivariate: bool = True, min_results: int | None = None
    ) -> None:
        """``min_results``: results a step needs before the model uses it; None: BOHB's
        d + 3 for d searched dimensions."""
        self._seed = seed
        self._multivariate = multivariate
        self._min_results = min_results
        self._random = RandomSampler(seed=seed)

    def reseed_rng(self) -> None:
        self._random.reseed_rng()

    def infer_relative_search_space(
        self, study: Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        space = optuna.search_space.intersection_search_space(done)
        return {name: d for name, d in space.items() if not d.single()}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        if not search_space:
            return {}
        done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        usable = [t for t in done if _feasible(t) and search_space.keys() <= t.params.keys()]
        need = self._min_results or len(search_space) + 3
        step, scores = fitting_step(usable, need)
        if step is None:
            return {}
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        worst = min(scores.values()) if maximize else max(scores.values())
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        lies = [
            t
            for t in running
            if t.number != trial.number and search_space.keys() <= t.params.keys()
        ]
        view = optuna.create_study(
            direction=study.direction,
            sampler=TPESampler(
                seed=None if self._seed is None else self._seed + trial.number,
                n_startup_trials=0,
                multivariate=self._multivariate,
                constant_liar=False,
            ),
        )
        by_number = {t.number: t for t in usable + lies}
        entries = [(n, v) for n, v in scores.items()] + [(t.number, worst) for t in lies]
        view.add_trials(
            [
                optuna.trial.create_trial(
                    params={k: by_number[n].params[k] for k in search_space},
                    distributions=search_space,
                    value=v,
                )
                for n, v in entries
            ]
        )
        return dict(view.ask(fixed_distributions=search_space).params)

    def sample_independent(
        self,
        study: Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        return self._random.sample_independent(study, trial, param_name, param_distribution)


def fitting_step(trials: Sequence[FrozenTrial], need: int) -> tuple[int | None, dict[int, float]]:
    """The largest evaluation step at which at least ``need`` trials reported a number, and
    each such trial's score there (by trial number); (None, {}) when no step has enough."""
    reported: dict[int, dict[int, float]] = {}
    for t in trials:
        for step, value in t.intermediate_values.items():
            if not math.isnan(value):
                reported.setdefault(step, {})[t.number] = value
    for step in sorted(reported, reverse=True):
        if len(reported[step]) >= need:
            return step, reported[step]
    return None, {}


def _feasible(trial: FrozenTrial) -> bool:
    return keys.INFEASIBLE not in trial.user_attrs
