"""Where a pruner may decide: the noise of one evaluation, successive halving's default first
rung, and the rung learned from a study's own complete trials (``pruner.learn_rung``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from optuna.trial import TrialState

from hpo import keys

if TYPE_CHECKING:
    from optuna.trial import FrozenTrial


def eval_noise(trial: FrozenTrial, p: float, proportion: bool) -> float | None:
    """One standard error: the one the task measured at the trial's last evaluation (a
    bootstrap of entity F1, say), else that of a proportion ``p`` on the trial's validation
    rows; None when neither is known."""
    measured = trial.user_attrs.get(keys.EVAL_NOISE)
    if isinstance(measured, (int, float)) and measured >= 0:
        return float(measured)
    rows = trial.user_attrs.get(keys.EVAL_ROWS)
    if not proportion or not rows or not 0.0 <= p <= 1.0:
        return None
    return standard_error(p, int(rows))


def standard_error(p: float, rows: int) -> float:
    """One standard error of a proportion p measured on ``rows`` examples: how far two equally
    good models may land apart on the same validation split by chance."""
    return math.sqrt(p * (1.0 - p) / rows)


LEARN_FROM_TRIALS = 3  # complete trials before a rung is learned
RANK_AGREEMENT = 0.8  # Spearman's rho with the final scores that places a rung


def learned_rung(trials: list[FrozenTrial], judged: FrozenTrial, proportion: bool) -> int | None:
    """The first evaluation step at which the study's complete trials already tell apart what
    they finished as: their scores there spread wider (standard deviation across trials) than
    one evaluation's noise (of the ``judged`` trial's validation rows; not checked where that
    noise is unknown, a loss, say), and rank as their final scores do (Spearman's rho at least
    ``RANK_AGREEMENT``). None before ``LEARN_FROM_TRIALS`` trials are complete, and where no
    step before the last shared one does both: then no trial is stopped.

    Only trials as long as the judged one count (with ``train.epochs`` and a searched batch
    size, step 8 is a quarter of one trial and half of another), and only the steps every such
    trial reported; the last of them is where the trials end, where a decision saves nothing."""
    import pandas as pd

    length = judged.user_attrs.get(keys.MAX_STEPS)
    curves = [
        (t.intermediate_values, t.value)
        for t in trials
        if t.state == TrialState.COMPLETE
        and t.value is not None
        and not math.isnan(t.value)
        and len(t.intermediate_values) > 1
        and t.user_attrs.get(keys.MAX_STEPS) == length
    ]
    if len(curves) < LEARN_FROM_TRIALS:
        return None
    steps = sorted(set.intersection(*(set(values) for values, _ in curves)))
    finals = pd.Series([final for _, final in curves])
    for step in steps[:-1]:
        at = pd.Series([values[step] for values, _ in curves])
        if at.isna().any() or at.nunique() < 2:
            continue
        noise = eval_noise(judged, float(at.mean()), proportion)
        if noise is not None and at.std() <= noise:
            continue
        if at.corr(finals, method="spearman") >= RANK_AGREEMENT:
            return step
    return None


def first_rung(max_steps: int, eval_every: int) -> int:
    """Successive halving's default first rung: the first evaluation at or after a fifth of the
    trial. Earlier evaluations of a fine-tuning run are mostly noise (Dodge et al. 2020 judge
    runs at 20-30% of training); a fifth is where the rungs sat in the searches measured across
    tasks (125 steps, evaluations every 25: rungs at 25 and 75), and it keeps them there when a
    trial is longer, instead of at a fixed count of steps (the first evaluation) that is 1% of a
    long trial."""
    return eval_every * max(1, math.ceil(max_steps / (5 * eval_every)))


def study_rung(trials: Sequence[FrozenTrial], proportion: bool) -> tuple[int | None, int]:
    """Where a study's learned rung sits now, judged as for its latest complete trial, and how
    many complete trials it was learned from."""
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    return (learned_rung(done, done[-1], proportion) if done else None), len(done)
