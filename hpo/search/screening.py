"""Screening: Egele et al. 2023's top-k, trained short, then the best few in full.

With ``[study] screen = {trials = N, keep = K}`` the first N trials of a study train only to the
first evaluation: ``train.eval_every`` steps, their learning-rate schedule (warmup and decay)
fitted to those steps, one evaluation at the end. They are stored as stopped there (PRUNED, with
``screened`` set to the steps they trained). The next K trials each re-run one of the K
screened configurations that scored best, in full, from the pretrained weights and with the same
seed, and no pruner stops them; the study's answer is the best of those. Trials after them, if
``n_trials`` leaves any, search as usual.

Why: on the three tasks of the search benchmark, 5 screened and 2 kept held out within noise
of Hugging Face's 12-trial search with a third of its training samples, and 12 screened and 3
kept with 0.57-0.60 (BENCHMARKS.md), where hpo's median pruner spent as much as the peer. Egele et al. ("Is one epoch all you need for
multi-fidelity hyperparameter optimization?", 2023) found this baseline hard to beat.

``ScreeningSampler`` wraps the study's sampler: screens are sampled by it (the Latin-hypercube
startup spreads them), and a kept trial's parameters are those of the screen it re-runs. The
choice is made in ``before_trial``; the objective asks ``screen_role(trial)``. The screens are
the study's first N trials that do not fail (a screen that fails before the kept trials begin
gives its place to the next trial). The trials after them choose in number order, each the
best screen no lower-numbered trial kept. With parallel workers, a kept trial ranks the
screens finished when it starts: a screen still running then is not waited for, so a slow
worker's screen may miss its chance to be kept.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from optuna.trial import TrialState

from hpo import keys
from hpo.errors import TrialFailure
from hpo.execution.optuna_private import enqueued_params, storage_of, trial_id_of
from hpo.search.pruners import learned_floor
from hpo.search.repeat import RepeatingSampler

if TYPE_CHECKING:
    from optuna.samplers import BaseSampler
    from optuna.study import Study
    from optuna.trial import FrozenTrial, Trial

_TAKEN = (TrialState.RUNNING, TrialState.COMPLETE, TrialState.PRUNED)  # a failure gives way
_UNDECIDED_WAIT = 10.0  # seconds a trial waits for a lower-numbered one to store its choice


@dataclass(frozen=True)
class Role:
    """What a trial is in a screened study: a screen (``keeps`` None), or a kept trial that
    re-runs the configuration of screen ``keeps``."""

    keeps: FrozenTrial | None = None


def screen_score(trial: FrozenTrial) -> float | None:
    """A finished screen's score: its one evaluation; None for anything else."""
    if trial.state != TrialState.PRUNED or keys.SCREENED not in trial.user_attrs:
        return None
    if trial.user_attrs.get(keys.INFEASIBLE) or not trial.intermediate_values:
        return None
    value = trial.intermediate_values[max(trial.intermediate_values)]
    return None if math.isnan(value) else float(value)


def ranked_screens(trials: Sequence[FrozenTrial], maximize: bool) -> list[FrozenTrial]:
    """Finished screens, best score first (ties: the earlier trial)."""
    scored = [(s, t) for t in trials if (s := screen_score(t)) is not None]
    sign = -1.0 if maximize else 1.0
    scored.sort(key=lambda st: (sign * st[0], st[1].number))
    return [t for _, t in scored]


class ScreeningSampler(RepeatingSampler):
    """The study's sampler for the screens and any trials after the kept ones; the parameters
    of a screened configuration for each kept trial."""

    def __init__(self, base: BaseSampler, trials: int, keep: int, maximize: bool) -> None:
        super().__init__(base)
        self._trials = trials
        self._keep = keep
        self._maximize = maximize
        self._screens: set[int] = set()  # this process's trials that are screens

    def role(self, number: int) -> Role | None:
        """Trial ``number``'s role, decided when it started in this process; None when it
        searches as usual."""
        if number in self._screens:
            return Role()
        keeps = self.repeats(number)
        return None if keeps is None else Role(keeps=keeps)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._base.before_trial(study, trial)
        # the study's first N trials that do not fail are screens: a worker claims the lowest
        # numbered slot, so the trials numbered below this one have started, on whichever
        # worker, and the count needs nothing those workers have yet to write
        trials = study.get_trials(deepcopy=False)
        below = _taken_below(trials, trial.number)
        if len(below) < self._trials:
            self._screens.add(trial.number)
            return
        fixed = enqueued_params(trial)
        # Trials after the screens choose in number order: each keeps the best screen that no
        # lower-numbered trial kept. A lower trial writes its choice as it starts; one that
        # started a moment ago may not have yet, so wait (briefly) for it rather than pick
        # the same screen.
        deadline = time.monotonic() + _UNDECIDED_WAIT
        while True:
            after = below[self._trials :]
            kept = {t.user_attrs[keys.SCREEN_OF] for t in after if keys.SCREEN_OF in t.user_attrs}
            if len(kept) >= self._keep:
                return
            undecided = [
                t
                for t in after
                if t.state == TrialState.RUNNING and keys.SCREEN_OF not in t.user_attrs
            ]
            if not undecided or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
            trials = study.get_trials(deepcopy=False)
            below = _taken_below(trials, trial.number)
        others = [t for t in trials if t.number != trial.number]
        left = [t for t in ranked_screens(others, self._maximize) if t.number not in kept]
        if fixed:  # a given trial runs as asked; a retry of a kept trial is still kept
            left = [t for t in left if t.params == fixed]
        if left:
            self.assign(trial.number, left[0])
            # stored now, before the trial samples or loads anything, for the trials after it
            storage_of(study).set_trial_user_attr(
                trial_id_of(trial), keys.SCREEN_OF, left[0].number
            )

    def after_trial(
        self,
        study: Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        self._screens.discard(trial.number)
        super().after_trial(study, trial, state, values)


def _taken_below(trials: Sequence[FrozenTrial], number: int) -> list[FrozenTrial]:
    """The started trials numbered below ``number`` that have not failed, in order."""
    taken = (t for t in trials if t.state in _TAKEN and t.number < number)
    return sorted(taken, key=lambda t: t.number)


def _role(trial: Trial) -> Role | None:
    """The role the study's screening sampler gave ``trial``; None without screening."""
    sampler = trial.study.sampler
    return sampler.role(trial.number) if isinstance(sampler, ScreeningSampler) else None


def screen_role(trial: Trial, full_steps: int, eval_every: int) -> int | None:
    """For a screen, the steps it trains (the first evaluation), recorded on the trial; None
    for a kept trial (its ``screen_of`` was stored when it started) and for a trial that
    searches as usual."""
    role = _role(trial)
    if role is None:
        return None
    if role.keeps is not None:
        return None
    if eval_every >= full_steps:  # a trial of `epochs` whose length only the data tells
        raise TrialFailure(
            f"`study.screen` needs `train.eval_every` ({eval_every}) below a trial's "
            f"{full_steps} steps, or a screen is a whole trial; lower eval_every"
        )
    trial.set_user_attr(keys.SCREENED, eval_every)
    return eval_every


def kept(trial: Trial) -> bool:
    """Whether ``trial`` re-runs a screened configuration (so no pruner may stop it)."""
    role = _role(trial)
    return role is not None and role.keeps is not None


def kept_runs(trials: Sequence[FrozenTrial]) -> dict[int, FrozenTrial]:
    """Each kept trial, by the number of the screen it re-runs in full."""
    return {t.user_attrs[keys.SCREEN_OF]: t for t in trials if keys.SCREEN_OF in t.user_attrs}


def screen_summary(trials: Sequence[FrozenTrial], maximize: bool, metric: str) -> str | None:
    """The report's line on screening: how many screened, at how many steps, and which
    configurations were kept with their screen scores and full results."""
    screens = [t for t in trials if keys.SCREENED in t.user_attrs]
    if not screens:
        return None
    steps = sorted({int(t.user_attrs[keys.SCREENED]) for t in screens})
    runs = kept_runs(trials)
    parts = []
    for t in ranked_screens(trials, maximize):
        run = runs.get(t.number)
        if run is None:
            continue
        full = f"{run.value:.4f}" if run.value is not None else run.state.name.lower()
        parts.append(f"#{t.number} ({screen_score(t):.4f}) as #{run.number}: {full}")
    kept_text = "; ".join(parts) if parts else "none yet"
    at = "/".join(map(str, steps))
    return (
        f"screened: {len(screens)} trial(s) to step {at}; kept, validation {metric} "
        f"screened then in full: {kept_text}"
    )


def screen_caution(trials: Sequence[FrozenTrial], maximize: bool, proportion: bool) -> str | None:
    """A warning when some kept trials re-run screens that had shown nothing: screens whose
    score was within one evaluation's noise of a constant answer's (the majority class, for
    accuracy). Their order is noise, and at an early evaluation it favours slow learners that
    have not yet collapsed to the majority class over fast ones passing through it. None when
    every kept screen had learned, or where the trials do not say what a constant answer
    scores (a loss)."""
    if not maximize:
        return None
    screens = ranked_screens(trials, maximize)
    kept_of = set(kept_runs(trials))
    if not screens or not kept_of:
        return None
    learned: set[int] = set()
    for t in screens:
        floor, score = learned_floor(t, proportion), screen_score(t)
        if floor is None or score is None:
            return None
        if score > floor:
            learned.add(t.number)
    blind = sorted(n for n in kept_of if n not in learned)
    if not blind:
        return None
    constant = float(screens[0].user_attrs[keys.CONSTANT_SCORE])
    steps = "/".join(map(str, sorted({int(t.user_attrs[keys.SCREENED]) for t in screens})))
    which = ", ".join(f"#{n}" for n in blind)
    return (
        f"caution: {len(learned)} of {len(screens)} screens scored above a constant answer "
        f"({constant:.4f}) by more than one evaluation's noise at step {steps}; the kept "
        f"screen(s) {which} had not, so chance chose them. Screens that train longer "
        "(a higher `train.eval_every`) or more screen trials give the choice something to go on"
    )
