"""What a trial stores beside its value: its result and speed, the compute it spent (training
samples and model FLOPs, and what one untuned trial would have cost), the privacy it spent, and
why a configuration that cannot run or overspends its privacy is kept as infeasible."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hpo import keys
from hpo.config.sampling import Hyperparameters
from hpo.config.spec import StudySpec
from hpo.models.flops import trial_flops
from hpo.search.prepared import Prepared
from hpo.strategies.privacy import over_budget
from hpo.training.loop import TrainPlan, TrainResult, rows_seen

if TYPE_CHECKING:
    import optuna


def full_trial_cost(prep: Prepared, plan: TrainPlan, rows: int) -> dict[str, float]:
    """What one trial of the whole training budget with nothing frozen costs, as the
    untuned recipe would (the report sets a study's spend beside it)."""
    samples = rows_seen(rows, plan.batch_size, plan.gradient_accumulation, plan.max_steps)
    evaluations = -(-plan.max_steps // max(1, plan.eval_every))
    shape = prep.pretrained.shape
    flops = trial_flops(
        shape, prep.lengths("train"), prep.lengths("validation"), samples, evaluations
    )
    return {"samples": samples, "flops": flops}


def spent_flops(prep: Prepared, hp: Hyperparameters, result: TrainResult) -> float:
    """Model FLOPs the trial spent (hpo.models.flops): its training rows at the cost its
    depth and frozen layers leave, and each evaluation of the validation split."""
    return _flops(prep, hp, result.train_samples, len(result.history), result.frozen_computed_rows)


def _flops(
    prep: Prepared,
    hp: Hyperparameters,
    samples: int,
    evaluations: int,
    frozen_computed_rows: int | None = None,
) -> float:
    shape = prep.pretrained.shape
    depth = int(hp.get("num_layers") or 0)
    if depth:
        shape = shape.with_depth(depth)
    return trial_flops(
        shape,
        prep.lengths("train"),
        prep.lengths("validation"),
        samples,
        evaluations,
        int(hp.get("frozen_layers") or 0),
        frozen_computed_rows,
    )


@dataclass
class SoFar:
    """How far a trial in training got (kept by the objective at each step and evaluation):
    what it spent when it stops without a result of the loop's."""

    started: float  # time.perf_counter() at the trial's start
    steps: int = 0
    evaluations: int = 0


def record_so_far(
    trial: optuna.Trial,
    prep: Prepared,
    hp: Hyperparameters,
    plan: TrainPlan,
    rows: int,
    so_far: SoFar,
) -> None:
    """Store what a trial spent up to where it stopped (Ctrl-C, SIGTERM, a failure in
    training): the study's spend and ``study.budget`` count failed trials too. The samples are
    those its steps read (``rows_seen`` of the ``rows`` it trained on); the FLOPs count every
    row through the frozen layers (a cache's savings are known only at the end); the seconds
    are its wall time. A worker killed with SIGKILL, or a machine that dies, gets no chance to
    store anything: its trial counts nothing."""
    samples = rows_seen(rows, plan.batch_size, plan.gradient_accumulation, so_far.steps)
    trial.set_user_attr(keys.STEPS, so_far.steps)
    trial.set_user_attr(keys.TRAIN_SAMPLES, samples)
    trial.set_user_attr(keys.FLOPS, _flops(prep, hp, samples, so_far.evaluations))
    trial.set_user_attr(keys.WALL_SECONDS, round(time.perf_counter() - so_far.started, 3))


def infeasible(trial: optuna.Trial, reason: str, plan: TrainPlan) -> float:
    """Keep a configuration that cannot run as COMPLETE and infeasible: Optuna's samplers rank
    infeasible trials below every feasible one (so TPE learns to avoid the region) and
    ``best_trial`` skips them; the report, plots and export leave the placeholder value out."""
    trial.set_user_attr(keys.FAIL_REASON, reason)
    trial.set_user_attr(keys.INFEASIBLE, reason)
    trial.set_constraint(keys.FITS_IN_MEMORY, 1.0)
    return 0.0 if plan.maximize else 1e9


def record_privacy(trial: optuna.Trial, epsilon: float, delta: float, spec: StudySpec) -> None:
    """Store the privacy a trial spent; over ``privacy.target_epsilon`` it is kept as infeasible
    (its value stays, but it is never the best and TPE ranks it below every feasible trial)."""
    trial.set_user_attr(keys.DP_EPSILON, epsilon)
    trial.set_user_attr(keys.DP_DELTA, delta)
    if spec.privacy is not None and spec.privacy.target_epsilon is not None:
        if (reason := over_budget(epsilon, spec.privacy.target_epsilon)) is not None:
            trial.set_user_attr(keys.FAIL_REASON, reason)
            trial.set_user_attr(keys.INFEASIBLE, reason)
        trial.set_constraint(keys.WITHIN_EPSILON, epsilon - spec.privacy.target_epsilon)


def record(trial: optuna.Trial, result: TrainResult, wall: float) -> None:
    trial.set_user_attr(keys.STEPS, result.steps)
    trial.set_user_attr(keys.TRAIN_SAMPLES, result.train_samples)
    trial.set_user_attr(keys.SAMPLES_PER_SECOND, round(result.samples_per_second, 2))
    trial.set_user_attr(keys.TRAIN_SECONDS, round(result.train_seconds, 3))
    trial.set_user_attr(keys.EVAL_SECONDS, round(result.eval_seconds, 3))
    trial.set_user_attr(keys.WALL_SECONDS, round(wall, 3))
    trial.set_user_attr(keys.PEAK_MEMORY_MB, round(result.peak_memory_mb, 1))
    trial.set_user_attr(keys.METRICS, {k: round(v, 6) for k, v in result.metrics.items()})
    if result.frozen_computed_rows is not None:
        trial.set_user_attr(keys.FROZEN_COMPUTED, result.frozen_computed_rows)
        trial.set_user_attr(keys.FROZEN_SERVED, result.frozen_served_rows)
