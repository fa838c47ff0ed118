"""The facts of a study's trials, before any rendering: counts by state, the best trial and the
trials validation cannot tell from it, the steps pruning saved, failures and their reasons; and
how trials rank and their values print. The report (hpo/results/report.py), the JSON report,
the dashboard's note and `hpo best` read them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial, TrialState

from hpo import keys
from hpo.execution.optuna_private import retry_history
from hpo.search.pruners import EVAL_ROWS_ATTR
from hpo.search.rungs import standard_error

FAIL_REASON_WIDTH = 120
DIRECTIONS = ("maximize", "minimize")
_STATE_STYLE = {"COMPLETE": "green", "PRUNED": "yellow", "FAIL": "red"}


@dataclass(frozen=True)
class StudySummary:
    """Facts computed from trials: the one place the report's numbers come from."""

    study_name: str
    metric: str
    direction: str
    n_complete: int
    n_pruned: int
    n_failed: int
    n_running: int
    best_number: int | None
    best_value: float | None
    best_params: dict[str, Any]
    steps_run: int  # sum of `steps` over finished trials
    steps_if_unpruned: int  # steps_run + (max_steps - steps) for each pruned trial
    steps_saved_by_pruning: int  # steps_if_unpruned - steps_run
    failures: list[tuple[int, str]]  # (trial number, fail_reason or "unknown") of FAIL trials
    # Complete trials within one standard error of the best value (a proportion on eval_rows
    # validation rows): validation cannot rank them against the best.
    noise: float | None = None
    eval_rows: int | None = None
    within_noise: list[int] = field(default_factory=list)
    measured: bool = False  # the noise is the task's own estimate (a bootstrap), not a proportion's
    # The untuned Trainer recipe, when the study ran it as its first trial and it completed.
    recipe_number: int | None = None
    recipe_value: float | None = None


def _check_direction(direction: str) -> str:
    """Return the direction in lower case, or raise ValueError if it is not one of DIRECTIONS."""
    d = str(direction).lower()
    if d not in DIRECTIONS:
        raise ValueError(f"direction must be 'maximize' or 'minimize', not {direction!r}")
    return d


def _better(a: float, b: float, direction: str) -> bool:
    """Whether value a is strictly better than value b in the given direction."""
    return a > b if direction == "maximize" else a < b


def _int_attr(trial: FrozenTrial, key: str) -> int | None:
    """A user attr as an int, or None when missing or not a finite number."""
    v = trial.user_attrs.get(key)
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return int(v)


def trial_steps(trial: FrozenTrial) -> int:
    """Optimizer steps a trial ran: its `steps` attr, else its last reported step, else 0."""
    s = _int_attr(trial, keys.STEPS)
    return max(trial.intermediate_values, default=0) if s is None else s


def trial_value(trial: FrozenTrial) -> float | None:
    """A trial's objective value; for a pruned trial without one, its last reported value."""
    if trial.values:
        return float(trial.values[0])
    if trial.state == TrialState.PRUNED and trial.intermediate_values:
        return float(trial.intermediate_values[max(trial.intermediate_values)])
    return None


def _rank_key(direction: str) -> Callable[[FrozenTrial], tuple[int, float, int]]:
    """Sort key putting better values first, trials without a value last, ties by number."""
    sign = -1.0 if direction == "maximize" else 1.0

    def key(t: FrozenTrial) -> tuple[int, float, int]:
        v = trial_value(t)
        return (1, 0.0, t.number) if v is None or math.isnan(v) else (0, sign * v, t.number)

    return key


def fmt_number(x: Any) -> str:
    """Format a param or attr compactly: 3.2e-05 for tiny floats, 0.123 otherwise."""
    if not isinstance(x, float) or x == 0 or not math.isfinite(x):
        return str(x)
    if abs(x) < 1e-3:
        return f"{x:.1e}".replace(".0e", "e")
    return f"{x:.4g}" if 1 <= abs(x) < 1e5 else f"{x:.3g}"


def _one_line(reason: str, width: int = FAIL_REASON_WIDTH) -> str:
    """Collapse whitespace and cut to width characters, marking a cut with an ellipsis."""
    s = " ".join(reason.split())
    return s if len(s) <= width else s[: width - 1] + "…"


def infeasible(trial: FrozenTrial) -> bool:
    """A completed trial that broke a constraint (it ran out of memory even at half the batch)."""
    return any(v > 0 for v in trial.constraints.values())


def _failure_reason(trial: FrozenTrial, retry: int | None) -> str:
    reason = trial.user_attrs.get(keys.FAIL_REASON)
    if reason:
        return str(reason) + (" (kept as infeasible)" if trial.state == TrialState.COMPLETE else "")
    if retry is not None:
        return f"its worker stopped sending heartbeats (killed or lost); retried as trial #{retry}"
    return "unknown"


def summarize(
    study_name: str, metric: str, direction: str, trials: Sequence[FrozenTrial]
) -> StudySummary:
    """Count trials by state, find the best complete trial and the training steps pruning saved."""
    direction = _check_direction(direction)
    by_state = {s: [t for t in trials if t.state == s] for s in TrialState}
    broken = [t for t in by_state[TrialState.COMPLETE] if infeasible(t)]
    feasible = [t for t in by_state[TrialState.COMPLETE] if not infeasible(t)]
    order = sorted(feasible, key=_rank_key(direction))
    best = order[0] if order and trial_value(order[0]) is not None else None
    steps_run = sum(trial_steps(t) for t in trials if t.state.is_finished())
    unrun = sum(
        max(0, planned - trial_steps(t))
        for t in by_state[TrialState.PRUNED]
        if (planned := _int_attr(t, keys.MAX_STEPS)) is not None
    )
    recipe = next((t for t in feasible if t.user_attrs.get(keys.FIRST_TRIAL) == keys.RECIPE), None)
    retried_as = {n: t.number for t in trials for n in retry_history(t)}
    failures = [
        (t.number, _failure_reason(t, retried_as.get(t.number)))
        for t in sorted(by_state[TrialState.FAIL] + broken, key=lambda t: t.number)
    ]
    return StudySummary(
        study_name=study_name,
        metric=metric,
        direction=direction,
        n_complete=len(by_state[TrialState.COMPLETE]),
        n_pruned=len(by_state[TrialState.PRUNED]),
        n_failed=len(by_state[TrialState.FAIL]),
        n_running=len(by_state[TrialState.RUNNING]),
        best_number=None if best is None else best.number,
        best_value=None if best is None else trial_value(best),
        best_params={} if best is None else dict(best.params),
        steps_run=steps_run,
        steps_if_unpruned=steps_run + unrun,
        steps_saved_by_pruning=unrun,
        failures=failures,
        recipe_number=None if recipe is None else recipe.number,
        recipe_value=None if recipe is None else trial_value(recipe),
        **_within_noise(order, metric, best),
    )


def _within_noise(
    order: Sequence[FrozenTrial], metric: str, best: FrozenTrial | None
) -> dict[str, Any]:
    """The standard error of the best value (measured by the task, else that of a proportion of
    validation rows), and the other complete trials that close to it."""
    value = None if best is None else trial_value(best)
    rows = None if best is None else _int_attr(best, EVAL_ROWS_ATTR)
    measured = None if best is None else best.user_attrs.get(keys.EVAL_NOISE)
    if value is None or metric == "eval_loss" or not 0.0 <= value <= 1.0:
        return {}
    if isinstance(measured, (int, float)):
        se = float(measured)
    elif rows:
        se = standard_error(value, rows)
    else:
        return {}
    if se <= 0:  # a score of 0 or 1 has no binomial spread: nothing is "within" it
        return {}
    # one entry per configuration, named by its first trial: a race's re-runs of the best (or
    # of another close one) are seeds of a configuration already counted, and `hpo best --top`
    # counts configurations
    from hpo.search.racing import configuration_key

    first: dict[tuple[tuple[str, str], ...], int] = {}
    for t in sorted(order, key=lambda t: t.number):
        first.setdefault(configuration_key(t.params), t.number)
    listed = {configuration_key(best.params)} if best is not None else set()
    close = []
    for t in order[1:]:
        key = configuration_key(t.params)
        if key in listed or (v := trial_value(t)) is None or abs(value - v) > se:
            continue
        listed.add(key)
        close.append(first[key])
    return {"noise": se, "eval_rows": rows, "within_noise": close, "measured": measured is not None}


def ranked(trials: Sequence[FrozenTrial], direction: str, top: int) -> list[FrozenTrial]:
    """The top trials: complete ones by value, then pruned ones by their last reported value."""
    key = _rank_key(direction)
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=key)
    return (complete + sorted((t for t in trials if t.state == TrialState.PRUNED), key=key))[:top]
