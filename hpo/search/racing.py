"""Racing: the last trials of a study re-run its leading configurations with new seeds.

One fine-tuning run's score moves with its seed about as much as with its hyperparameters
(Dodge et al. 2020), so the best single trial of a search is partly a lucky seed. With
``[study] race_trials = R``, the last R trials of the budget do not sample a new configuration:
each re-runs one of the three configurations with the best mean score so far, the one with the
fewest runs (ties: the better mean), with a seed no earlier run of it used. Racing trials are
never pruned, so every run of a configuration is scored at the same step. The report and
``hpo best`` then rank configurations by their mean over seeds, not by their luckiest run.

``RacingSampler`` wraps the study's sampler and makes the choice in ``before_trial``, which
Optuna calls when a trial starts; the objective asks ``raced(trial)`` which configuration it
re-runs (``race_seed``), to change its seed and keep the pruner away. A study with a spend budget
(``study.budget``) starts racing when what is left of it would pay for R unpruned trials.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from optuna.samplers import BaseSampler
from optuna.trial import TrialState

from hpo import keys
from hpo.execution.optuna_private import enqueued_params
from hpo.search.repeat import RepeatingSampler

if TYPE_CHECKING:
    from optuna.study import Study
    from optuna.trial import FrozenTrial, Trial

    from hpo.config.sampling import Hyperparameters

FINALISTS = 3  # configurations a race shares its trials among
SEED_STRIDE = 1000  # a re-run's seed: its first run's seed + SEED_STRIDE x (runs before it)
_STARTED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)


@dataclass(frozen=True)
class Configuration:
    """One configuration's runs: its first trial, every trial that ran it, and their scores."""

    first: FrozenTrial
    numbers: tuple[int, ...]  # complete runs, first first
    values: tuple[float, ...]
    running: int = 0  # runs under way, not scored yet

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def sd(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    @property
    def runs(self) -> int:
        return len(self.values) + self.running


def configuration_key(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """What makes two trials the same configuration: every parameter but the seed."""
    return tuple(sorted((k, repr(v)) for k, v in params.items() if k != "seed"))


def configurations(trials: Sequence[FrozenTrial], maximize: bool) -> list[Configuration]:
    """The complete, feasible configurations of a study, best mean first (ties: fewer runs
    last, then the earlier first trial)."""
    from hpo.results.report import infeasible  # report imports this module

    groups: dict[tuple[tuple[str, str], ...], list[FrozenTrial]] = {}
    running: dict[tuple[tuple[str, str], ...], int] = {}
    for t in sorted(trials, key=lambda t: t.number):
        key = configuration_key(t.params)
        if t.state == TrialState.COMPLETE and t.value is not None and not infeasible(t):
            groups.setdefault(key, []).append(t)
        elif t.state == TrialState.RUNNING and keys.RACE_OF in t.user_attrs:
            running[key] = running.get(key, 0) + 1
    out = [
        Configuration(
            first=runs[0],
            numbers=tuple(t.number for t in runs),
            values=tuple(float(t.value) for t in runs),  # type: ignore[arg-type]
            running=running.get(key, 0),
        )
        for key, runs in groups.items()
    ]
    sign = -1.0 if maximize else 1.0
    out.sort(key=lambda c: (sign * c.mean, -len(c.values), c.first.number))
    return out


def raced(trials: Sequence[FrozenTrial]) -> bool:
    """Whether any trial of the study re-ran a configuration in a race."""
    return any(keys.RACE_OF in t.user_attrs for t in trials)


def next_finalist(trials: Sequence[FrozenTrial], maximize: bool) -> Configuration | None:
    """The configuration the next racing trial re-runs: among the FINALISTS best by mean, the
    one with the fewest runs (complete or under way); ties go to the better mean."""
    leading = configurations(trials, maximize)[:FINALISTS]
    if not leading:
        return None
    return min(leading, key=lambda c: (c.runs, leading.index(c)))


class RacingSampler(RepeatingSampler):
    """The study's sampler for the search; the configuration to re-run once the race is due.

    ``n_trials`` and ``race_trials`` as in ``[study]``; ``budget`` (``study.budget``, one unit)
    starts the race when what is left of it would pay for ``race_trials`` unpruned trials."""

    def __init__(
        self,
        base: BaseSampler,
        n_trials: int,
        race_trials: int,
        maximize: bool,
        budget: Mapping[str, float] | None = None,
    ) -> None:
        super().__init__(base)
        self._n_trials = n_trials
        self._race_trials = race_trials
        self._maximize = maximize
        self._budget = dict(budget or {})

    def due(self, trials: Sequence[FrozenTrial], number: int) -> bool:
        """Whether trial ``number`` falls in the race: the last ``race_trials`` of the budget."""
        others = [t for t in trials if t.number != number]
        started = sum(1 for t in others if t.state in _STARTED)
        if started >= self._n_trials - self._race_trials:
            return True
        if not self._budget:
            return False
        from hpo.search.budget import spent

        ((unit, amount),) = self._budget.items()
        return spent(others, unit) + self._race_trials * _full_cost(others, unit) >= amount

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._base.before_trial(study, trial)
        if enqueued_params(trial):  # the recipe, a given first trial or a retry: run as asked
            return
        trials = study.get_trials(deepcopy=False)
        if not self.due(trials, trial.number):
            return
        finalist = next_finalist(trials, self._maximize)
        if finalist is not None:
            self.assign(trial.number, finalist.first)


def _full_cost(trials: Sequence[FrozenTrial], unit: str) -> float:
    """What one unpruned trial costs in ``unit``: the stored figure for samples and FLOPs, the
    slowest complete trial's wall time for seconds."""
    if unit == "seconds":
        walls = [
            float(t.user_attrs[keys.WALL_SECONDS])
            for t in trials
            if t.state == TrialState.COMPLETE and keys.WALL_SECONDS in t.user_attrs
        ]
        return max(walls, default=0.0)
    costs = [
        t.user_attrs[keys.FULL_TRIAL].get(unit) for t in trials if keys.FULL_TRIAL in t.user_attrs
    ]
    finite = [float(c) for c in costs if isinstance(c, (int, float)) and math.isfinite(c)]
    return finite[-1] if finite else 0.0


def race_seed(trial: Trial, hp: Hyperparameters) -> Hyperparameters | None:
    """For a trial that re-runs a configuration in a race, its hyperparameters with a seed no
    earlier run of it used (the first run's seed plus SEED_STRIDE for each run before this
    one), recorded on the trial; None for a trial of the search."""
    sampler = trial.study.sampler
    first = sampler.repeats(trial.number) if isinstance(sampler, RacingSampler) else None
    if first is None:
        return None
    key = configuration_key(first.params)
    before = sum(
        1
        for t in trial.study.get_trials(deepcopy=False, states=_STARTED)
        if t.number != trial.number and configuration_key(t.params) == key
    )
    seed = int(hp["seed"]) + SEED_STRIDE * max(1, before)
    trial.set_user_attr(keys.RACE_OF, first.number)
    trial.set_user_attr(keys.RACE_SEED, seed)
    return hp.replace(seed=seed)


def raced_leader(trials: Sequence[FrozenTrial], maximize: bool) -> Configuration | None:
    """In a raced study, the configuration with the best mean over its seeds (the one `hpo
    best` retrains); None where no race ran."""
    if not raced(trials):
        return None
    leading = configurations(trials, maximize)
    return leading[0] if leading else None


def race_summary(trials: Sequence[FrozenTrial], maximize: bool, metric: str) -> str | None:
    """The report's line on a race: the leading configurations' means over their seeds."""
    if not raced(trials):
        return None
    parts = [
        f"#{c.first.number} {c.mean:.4f} ± {c.sd:.4f} over {len(c.values)} seeds"
        if len(c.values) > 1
        else f"#{c.first.number} {c.mean:.4f} (one seed)"
        for c in configurations(trials, maximize)[:FINALISTS]
    ]
    return f"raced: mean validation {metric} per configuration (first trial): " + "; ".join(parts)
