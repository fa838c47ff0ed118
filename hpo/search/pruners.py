"""hpo's median pruner: Optuna's median rule, made to tolerate noisy evaluations.

Optuna's ``MedianPruner`` stops a trial whose best value so far is worse than the median, at the
same step, of the trials that finished. With few trials and a small validation split it is too
eager, for two reasons:

- the median is taken over the finished trials only: the survivors of earlier pruning. The bar
  rises as the study goes on, and a trial as good as most must beat the best few;
- any shortfall counts, also one smaller than the noise of a single evaluation. On 500
  validation rows an accuracy near 0.8 moves by about 0.018 between two equally good models.

``TolerantMedianPruner`` takes the median over every trial that reached the step (finished or
pruned there or later), and stops a trial only when it is behind that median by more than a
margin: by default one standard error of the metric on the trial's validation rows,
sqrt(p (1 - p) / n), with p the median and n the rows (the ``eval_rows`` trial attribute that the
objective sets). For a loss, which has no such formula, the default margin is 0. Like Optuna's,
it waits for ``n_startup_trials`` finished trials and for ``n_warmup_steps``.

``SuccessiveHalvingPruner`` is asynchronous successive halving (ASHA, as in Optuna) with two
changes to how a rung ranks trials. ASHA lets a trial go on past a rung when it is in the top
1/reduction_factor of the trials that reached the rung. Optuna ranks a tied trial with the best
of its ties, so a group of equal values that straddles that cut all goes on. Early evaluations of
a classifier that still predicts the majority class all report the same accuracy, and until some
trial does better, none of them is stopped. Here tied trials share the room left above the cut,
as they would in synchronous successive halving: a trial tied with others goes on only while
fewer of them than that room have gone on. Untied values are ranked as in Optuna, and when every
trial ties, about one in reduction_factor goes on, as with untied values.

For a score that is a proportion of validation rows, values within one standard error above what
a constant answer scores (the ``constant_score`` trial attribute that the objective sets: the
majority class's share, for accuracy) count as that score, and so tie. Such a trial has not shown
that it learned anything; the small differences between such trials at an early rung are noise,
and they favour slow learners that have not yet collapsed to the majority class over fast ones
passing through it.

Both can take their first decision from the study's own results instead of a fixed schedule
(``learn_rung``): the first evaluation step at which the complete trials' scores have spread
beyond the noise of one evaluation and already rank as the trials finished (``learned_rung``).
Fine-tuning curves cross: on three tasks the order at a fifth of a trial agreed with the final
order with a rank correlation of -0.02 to 0.67, at 60% 0.16 to 0.85 (BENCHMARKS.md, "Where the
learning curves separate"). A study whose curves never separate stops nothing, since no rung
there could choose better than chance.

``HyperbandPruner`` hedges against a first rung that says little: it spreads the trials over
brackets of that successive halving, the first judging from ``min_resource``, each next one from
one rung later, and a trial competes only with the trials of its bracket. Unlike Optuna's, which
assigns a trial to a bracket by a hash of the study name and trial number, hpo deals the trials
to the brackets in turn, so a study of a dozen trials fills each bracket in its proportion.
"""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING

import optuna
from optuna.trial import TrialState

from hpo import keys
from hpo.search.rungs import eval_noise, first_rung, learned_rung

if TYPE_CHECKING:
    from collections.abc import Callable

    from optuna.trial import FrozenTrial

EVAL_ROWS_ATTR = keys.EVAL_ROWS
EVAL_NOISE_ATTR = keys.EVAL_NOISE
CONSTANT_SCORE_ATTR = keys.CONSTANT_SCORE


class TolerantMedianPruner(optuna.pruners.BasePruner):
    """Prune a trial behind the median of its peers at the same step by more than the noise."""

    def __init__(
        self,
        n_startup_trials: int = 3,
        n_warmup_steps: int = 0,
        margin: float | None = None,
        proportion: bool = True,
        learn_rung: bool = False,
    ) -> None:
        """``margin``: the shortfall that is ignored; None: one standard error when the metric
        is a ``proportion`` of validation rows (accuracy, F1), else 0. ``learn_rung``: no
        decision before the ``learned_rung`` of the study's complete trials either."""
        self.n_startup_trials = n_startup_trials
        self.n_warmup_steps = n_warmup_steps
        self.margin = margin
        self.proportion = proportion
        self.learn_rung = learn_rung

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.n_warmup_steps:
            return False
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
        if sum(t.state == TrialState.COMPLETE for t in trials) < self.n_startup_trials:
            return False
        if self.learn_rung:
            learned = learned_rung(trials, trial, self.proportion)
            if learned is None or step < learned:
                return False
        at_step = (
            t.intermediate_values.get(step, math.nan) for t in trials if t.number != trial.number
        )
        peers = [v for v in at_step if not math.isnan(v)]
        if not peers:
            return False
        median = statistics.median(peers)
        values = [v for v in trial.intermediate_values.values() if not math.isnan(v)]
        if not values:
            return True  # only NaN so far: the run has diverged
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        best = max(values) if maximize else min(values)
        margin = self._margin(median, trial)
        return best < median - margin if maximize else best > median + margin

    def _margin(self, median: float, trial: FrozenTrial) -> float:
        if self.margin is not None:
            return self.margin
        return eval_noise(trial, median, self.proportion) or 0.0


def learned_floor(trial: FrozenTrial, proportion: bool) -> float | None:
    """The highest score that shows nothing learned: what a constant answer scores (the
    majority class's share, for accuracy) plus one evaluation's noise. None where the trial
    does not know its constant answer or that noise (a loss, say)."""
    stored = trial.user_attrs.get(CONSTANT_SCORE_ATTR)
    if stored is None:
        return None
    constant = float(stored)
    noise = eval_noise(trial, constant, proportion)
    return None if noise is None else constant + noise


class SuccessiveHalvingPruner(optuna.pruners.BasePruner):
    """Asynchronous successive halving in which trials tied at a rung share its room."""

    def __init__(
        self,
        min_resource: int | None,
        reduction_factor: int = 3,
        min_early_stopping_rate: int = 0,
        proportion: bool = True,
        margin: float = 0.0,
        eval_every: int | None = None,
        learn_rung: bool = False,
    ) -> None:
        """Rung k sits at step ``min_resource * reduction_factor ** (min_early_stopping_rate +
        k)``; a trial's value at a rung is its first report at or after that step. None: each
        trial's ``first_rung`` of its ``max_steps`` trial attribute and ``eval_every``. With
        ``proportion`` (the metric is a share of validation rows), values within one standard
        error of the constant answer's score count as that score. A trial outside the rung's
        room goes on all the same when it is within ``margin`` of the last value inside it: a
        rung does not decide between trials its evaluation cannot tell apart. ``learn_rung``
        (without ``min_resource``): rung 0 is the ``learned_rung`` of the study's complete trials,
        and no trial stops before there is one."""
        if learn_rung and min_resource is not None:
            raise ValueError("successive halving learns its first rung only without min_resource")
        if min_resource is None and not learn_rung and (eval_every is None or eval_every < 1):
            raise ValueError("successive halving needs min_resource, or eval_every >= 1")
        _check_rungs(min_resource or 1, reduction_factor, min_early_stopping_rate)
        if margin < 0:
            raise ValueError("successive halving needs margin >= 0")
        self.min_resource = min_resource
        self.eval_every = eval_every
        self.reduction_factor = reduction_factor
        self.min_early_stopping_rate = min_early_stopping_rate
        self.proportion = proportion
        self.margin = margin
        self.learn_rung = learn_rung

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return self._stops(study, trial, lambda t: True)

    def _stops(
        self, study: optuna.Study, trial: FrozenTrial, rival: Callable[[FrozenTrial], bool]
    ) -> bool:
        """Whether ``trial`` stops at its last report, ranked against the other trials that
        ``rival`` accepts."""
        step = trial.last_step
        if step is None:
            return False
        if math.isnan(trial.intermediate_values[step]):
            return True
        first = self._first_rung(study, trial)
        if first is None:
            return False
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        level = self._as_learned(trial) if maximize else (lambda v: v)
        value = level(trial.intermediate_values[step])
        others: list[FrozenTrial] | None = None
        for rung_step in self._rungs_reached_at(trial, step, first):
            if others is None:
                others = [
                    t
                    for t in study.get_trials(deepcopy=False)
                    if t.number != trial.number and rival(t)
                ]
            reports = [(t, s) for t in others if (s := _report_at(t, rung_step)) is not None]
            rivals = [
                (level(v), _went_on(t, s))
                for t, s in reports
                if not math.isnan(v := t.intermediate_values[s])
            ]
            better = sum(v > value if maximize else v < value for v, _ in rivals)
            tied_on = sum(v == value and went_on for v, went_on in rivals)
            allowed = max(1, (len(rivals) + 1) // self.reduction_factor)
            if better + tied_on + 1 > allowed and not self._close_to_room(
                [v for v, _ in rivals], value, allowed, maximize
            ):
                return True
        return False

    def _close_to_room(
        self, rivals: list[float], value: float, allowed: int, maximize: bool
    ) -> bool:
        """Whether ``value`` is within the margin of the last value inside the rung's room."""
        if self.margin <= 0:
            return False
        ranked = sorted(rivals, reverse=maximize)
        last_in = ranked[min(allowed, len(ranked)) - 1]
        return value >= last_in - self.margin if maximize else value <= last_in + self.margin

    def _as_learned(self, trial: FrozenTrial) -> Callable[[float], float]:
        """Map a score to what it shows: within noise of a constant answer, that answer's."""
        floor = learned_floor(trial, self.proportion)
        if floor is None:
            return lambda v: v
        constant = float(trial.user_attrs[CONSTANT_SCORE_ATTR])
        return lambda v: constant if v <= floor else v

    def _first_rung(self, study: optuna.Study, trial: FrozenTrial) -> int | None:
        """The step of rung 0: ``min_resource``; the ``learned_rung`` when learning it (None
        while there is none); else the trial's ``first_rung`` (None before the objective has
        stored its ``max_steps``)."""
        if self.min_resource is not None:
            return self.min_resource
        if self.learn_rung:
            done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
            return learned_rung(done, trial, self.proportion)
        max_steps = trial.user_attrs.get(keys.MAX_STEPS)
        if not max_steps or self.eval_every is None:
            return None
        return first_rung(int(max_steps), self.eval_every)

    def _rungs_reached_at(self, trial: FrozenTrial, step: int, first: int) -> list[int]:
        """The rung steps this report is the trial's first report at or after."""
        earlier = [s for s in trial.intermediate_values if s < step]
        rungs, k = [], self.min_early_stopping_rate
        while (rung_step := first * self.reduction_factor**k) <= step:
            if not any(s >= rung_step for s in earlier):
                rungs.append(rung_step)
            k += 1
        return rungs


class HyperbandPruner(optuna.pruners.BasePruner):
    """Hyperband: trials spread over brackets of hpo's successive halving, each bracket starting
    its rungs one rung later than the one before."""

    def __init__(
        self,
        min_resource: int,
        max_resource: int | None = None,
        reduction_factor: int = 3,
        proportion: bool = True,
        margin: float = 0.0,
    ) -> None:
        """Bracket b is successive halving with its first rung at step ``min_resource *
        reduction_factor ** b``, for every such step up to ``max_resource``; None: the
        ``max_steps`` trial attribute the objective sets."""
        _check_rungs(min_resource, reduction_factor)
        if max_resource is not None and max_resource < 1:
            raise ValueError("hyperband needs max_resource >= 1")
        self.min_resource = min_resource
        self.max_resource = max_resource
        self.reduction_factor = reduction_factor
        self.proportion = proportion
        self.margin = margin

    def budgets(self, max_resource: int) -> list[int]:
        """Each bracket's share of the trials, from the most aggressive bracket to the least.

        As in the Hyperband paper: with s_max + 1 brackets, the bracket whose first rung is s
        rungs below the top gets ceil((s_max + 1) * reduction_factor ** s / (s + 1)), so every
        bracket spends about the same training steps."""
        n = 1
        while self.min_resource * self.reduction_factor**n <= max_resource:
            n += 1
        return [math.ceil(n * self.reduction_factor**s / (s + 1)) for s in reversed(range(n))]

    def bracket(self, number: int, budgets: list[int]) -> int:
        """The bracket of trial ``number``: trials take the brackets in turn, each as many in a
        row as its budget. Every worker computes the same answer, and a small study still fills
        every bracket in proportion, which a hash of the trial would not."""
        position = number % sum(budgets)
        for b, budget in enumerate(budgets):
            position -= budget
            if position < 0:
                return b
        raise AssertionError("unreachable: position < sum(budgets)")

    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        max_resource = self.max_resource or trial.user_attrs.get(keys.MAX_STEPS)
        if not max_resource:
            return False
        budgets = self.budgets(int(max_resource))
        b = self.bracket(trial.number, budgets)
        halving = SuccessiveHalvingPruner(
            self.min_resource, self.reduction_factor, b, self.proportion, self.margin
        )
        return halving._stops(study, trial, lambda t: self.bracket(t.number, budgets) == b)


def _check_rungs(
    min_resource: int, reduction_factor: int, min_early_stopping_rate: int = 0
) -> None:
    if min_resource < 1 or reduction_factor < 2 or min_early_stopping_rate < 0:
        raise ValueError(
            "successive halving needs min_resource >= 1, reduction_factor >= 2 and "
            "min_early_stopping_rate >= 0"
        )


def _report_at(trial: FrozenTrial, rung_step: int) -> int | None:
    """The step of a trial's report for a rung: its first at or after the rung's step."""
    return min((s for s in trial.intermediate_values if s >= rung_step), default=None)


def _went_on(trial: FrozenTrial, report: int) -> bool:
    """Whether a trial went on past its rung ``report``: it was not stopped there."""
    return not (trial.state in (TrialState.PRUNED, TrialState.FAIL) and trial.last_step == report)
