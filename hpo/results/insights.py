"""A stored study's insights for people and scripts: state totals, learning-curve sparklines,
parameter importances (the JSON report built on them: hpo/results/report_json.py).

Everything here is computed from the trials, the spec and the study's attributes, so the same
facts feed the rich report, ``hpo report --json``, ``hpo export`` and ``hpo plot``.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from optuna.trial import FrozenTrial, TrialState
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from hpo import keys
from hpo.results.report import fmt_number, infeasible, ranked, trial_steps, trial_value

if TYPE_CHECKING:
    import optuna

    from hpo.config.spec import StudySpec

BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 60  # longer series are thinned to this many points
TOP_CURVES = 3
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
BASELINE_ATTR = keys.BASELINE
BEST_ATTR = keys.BEST  # written by `hpo best`
FORMATS = ("csv", "json", "parquet")
# Trial attributes in the order export columns show them; others follow, sorted.
ATTR_ORDER = (
    keys.DEVICE,
    keys.WORKER,
    keys.STEPS,
    keys.MAX_STEPS,
    keys.TRAIN_SAMPLES,
    keys.SAMPLES_PER_SECOND,
    keys.TRAIN_SECONDS,
    keys.EVAL_SECONDS,
    keys.WALL_SECONDS,
    keys.SETUP_SECONDS,
    keys.PEAK_MEMORY_MB,
    keys.TRAINABLE_PARAMETERS,
    keys.FAIL_REASON,
)


@dataclass(frozen=True)
class StateTotals:
    """Trials, optimizer steps and wall-clock seconds spent in one final state."""

    trials: int
    steps: int
    wall_seconds: float


@dataclass(frozen=True)
class Insights:
    """What the report adds beyond the leaderboard: importances, histories, where time went."""

    importances: dict[str, float]
    importance_note: str | None
    history: list[tuple[int, float, float]]  # (trial number, value, best so far), complete only
    curves: list[tuple[int, str, list[tuple[int, float]]]]  # (number, state, (step, value)...)
    by_state: dict[str, StateTotals]
    pruning_seconds_saved: float | None  # estimated at each pruned trial's own speed


def sparkline(values: Sequence[float], lo: float | None = None, hi: float | None = None) -> str:
    """One block character per value, scaled from lo (▁) to hi (█); a blank for NaN."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return " " * len(values)
    lo = min(finite) if lo is None else lo
    hi = max(finite) if hi is None else hi
    out = []
    for v in values:
        if not math.isfinite(v):
            out.append(" ")
        elif hi <= lo:
            out.append(BLOCKS[len(BLOCKS) // 2 - 1])
        else:
            i = round((v - lo) / (hi - lo) * (len(BLOCKS) - 1))
            out.append(BLOCKS[min(max(i, 0), len(BLOCKS) - 1)])
    return "".join(out)


def _thin(values: Sequence[float], width: int = SPARK_WIDTH) -> list[float]:
    """At most width evenly spaced values, always keeping the first and the last."""
    if len(values) <= width:
        return list(values)
    return [values[round(i * (len(values) - 1) / (width - 1))] for i in range(width)]


def _wall_seconds(t: FrozenTrial) -> float:
    """A trial's recorded wall time, else the time between its start and end."""
    v = t.user_attrs.get(keys.WALL_SECONDS)
    if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
        return float(v)
    return t.duration.total_seconds() if t.duration is not None else 0.0


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Silence Optuna's info logs and warnings (experimental, too few trials) for a moment."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        optuna.logging.set_verbosity(level)


def study_copy(trials: Sequence[FrozenTrial], direction: str) -> optuna.Study:
    """An in-memory study holding the finished trials only (no WAITING slots, no RUNNING)."""
    import optuna

    with _quiet_optuna():
        study = optuna.create_study(direction="maximize" if direction == "maximize" else "minimize")
    study.add_trials([t for t in trials if t.state in FINISHED])
    return study


def varying_params(trials: Sequence[FrozenTrial]) -> tuple[list[str], list[str]]:
    """(params that took at least two values, params that took one) over feasible complete trials."""
    values: dict[str, set[str]] = {}
    for t in trials:
        if t.state == TrialState.COMPLETE and not infeasible(t):
            for name, v in t.params.items():
                values.setdefault(name, set()).add(repr(v))
    return (
        [n for n, vs in values.items() if len(vs) > 1],
        [n for n, vs in values.items() if len(vs) == 1],
    )


def importances(trials: Sequence[FrozenTrial], direction: str) -> tuple[dict[str, float], str]:
    """Optuna's parameter importances (default evaluator) and a note on what was left out."""
    import optuna

    feasible = [t for t in trials if t.state == TrialState.COMPLETE and not infeasible(t)]
    if len(feasible) < 2:
        return {}, f"needs at least 2 complete trials, has {len(feasible)}"
    varying, fixed = varying_params(feasible)
    notes = [f"same in every complete trial, so not ranked: {', '.join(fixed)}"] if fixed else []
    if not varying:
        return {}, "; ".join(["no parameter varied", *notes])
    with _quiet_optuna():
        study = study_copy(feasible, direction)
        found = optuna.importance.get_param_importances(study, params=varying)
    if len(found) > 1 and len(set(found.values())) == 1:
        notes.insert(0, "all equal: too few trials to tell the parameters apart")
    elif len(feasible) < 10:
        notes.insert(0, f"rough: from {len(feasible)} complete trials")
    return {k: float(v) for k, v in found.items()}, "; ".join(notes)


def insights(trials: Sequence[FrozenTrial], direction: str) -> Insights:
    """Compute the report's insights from the trials (WAITING slots are ignored)."""
    done = sorted(
        (t for t in trials if t.state == TrialState.COMPLETE and not infeasible(t)),
        key=lambda t: t.number,
    )
    history: list[tuple[int, float, float]] = []
    for t in done:
        v = trial_value(t)
        if v is None or math.isnan(v):
            continue
        best = v if not history else (max if direction == "maximize" else min)(history[-1][2], v)
        history.append((t.number, v, best))
    order = ranked(trials, direction, len(trials))
    curves = [
        (t.number, t.state.name, sorted(t.intermediate_values.items()))
        for t in order
        if t.intermediate_values
    ][:TOP_CURVES]
    by_state = {}
    for state in FINISHED:
        ts = [t for t in trials if t.state == state]
        steps, wall = sum(trial_steps(t) for t in ts), sum(_wall_seconds(t) for t in ts)
        by_state[state.name] = StateTotals(len(ts), steps, round(wall, 3))
    saved = [
        (planned - steps) * float(t.user_attrs[keys.TRAIN_SECONDS]) / steps
        for t in trials
        if t.state == TrialState.PRUNED
        and isinstance(planned := t.user_attrs.get(keys.MAX_STEPS), int)
        and (steps := trial_steps(t)) > 0
        and isinstance(t.user_attrs.get(keys.TRAIN_SECONDS), int | float)
    ]
    values, note = importances(trials, direction)
    return Insights(
        importances=values,
        importance_note=note or None,
        history=history,
        curves=curves,
        by_state=by_state,
        pruning_seconds_saved=round(sum(saved), 1) if saved else None,
    )


def fmt_seconds(s: float) -> str:
    """Seconds as 12.3s, 4m 05s or 2h 03m."""
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(round(s), 60)
    return f"{m}m {sec:02d}s" if m < 60 else f"{m // 60}h {m % 60:02d}m"


def render_insights(spec: StudySpec, trials: Sequence[FrozenTrial]) -> RenderableType:
    """Importances, best-so-far history, top learning curves and time by state, for the report."""
    metric = spec.study.metric
    ins = insights(trials, spec.direction)
    parts: list[RenderableType] = [Text("parameter importance (Optuna's default evaluator)")]
    if ins.importances:
        grid = Table.grid(padding=(0, 2))
        for name, weight in ins.importances.items():
            bar = "█" * round(weight * 30)
            grid.add_row(Text(f"  {name}", style="cyan"), Text(f"{weight:.2f}"), Text(bar))
        parts.append(grid)
    if ins.importance_note:
        parts.append(Text(f"  note: {ins.importance_note}", style="dim"))
    if ins.history:
        best = [b for _, _, b in ins.history]
        new = [n for i, (n, _, b) in enumerate(ins.history) if i == 0 or b != best[i - 1]]
        parts.append(
            Text(
                f"best {metric} over {len(best)} complete trials: {sparkline(_thin(best))} "
                f"{fmt_number(best[0])} → {fmt_number(best[-1])} "
                f"(new best at {', '.join(f'#{n}' for n in new)})"
            )
        )
    if ins.curves:
        vals = [v for _, _, pts in ins.curves for _, v in pts if math.isfinite(v)]
        lo, hi = (min(vals), max(vals)) if vals else (0.0, 0.0)
        parts.append(
            Text(
                f"learning curves of the top {len(ins.curves)} trials "
                f"({metric} at each evaluation, one scale {fmt_number(lo)}–{fmt_number(hi)}):"
            )
        )
        for number, state, pts in ins.curves:
            ys = [v for _, v in pts]
            word = "done" if state == "COMPLETE" else state.lower()
            parts.append(
                Text(
                    f"  #{number:<4} {word:<7} {sparkline(_thin(ys), lo, hi)}  "
                    f"{fmt_number(ys[0])} → {fmt_number(ys[-1])}, steps {pts[0][0]}–{pts[-1][0]}"
                )
            )
    pruner = spec.pruner.wrapped if spec.pruner.name == "patient" else spec.pruner.name
    if spec.pruner.learn_rung and pruner in ("median", "successive_halving"):
        parts.append(Text(learned_rung_line(spec, trials)))
    table = Table("state", "trials", "steps", "wall time", "share", box=None, padding=(0, 2))
    spent = sum(v.wall_seconds for v in ins.by_state.values())
    for state, v in ins.by_state.items():
        share = f"{100 * v.wall_seconds / spent:.0f}%" if spent else "—"
        table.add_row(
            state.lower(), str(v.trials), f"{v.steps:,}", fmt_seconds(v.wall_seconds), share
        )
    parts += [Text("time and steps by final state:"), table]
    if ins.pruning_seconds_saved is not None:
        parts.append(
            Text(
                f"pruning saved about {fmt_seconds(ins.pruning_seconds_saved)} of training "
                "(each pruned trial's unrun steps at its own speed)"
            )
        )
    return Group(*parts)


def learned_rung_line(spec: StudySpec, trials: Sequence[FrozenTrial]) -> str:
    """Where ``pruner.learn_rung`` places the pruner's first decision now, and why."""
    from hpo.search.rungs import LEARN_FROM_TRIALS, study_rung

    step, done = study_rung(trials, spec.study.proportion)
    if done < LEARN_FROM_TRIALS:
        return (
            f"learned rung: none yet, {done} of the {LEARN_FROM_TRIALS} complete trials it "
            "is learned from; until then no trial is stopped"
        )
    if step is None:
        return (
            f"learned rung: none; the {done} complete trials never ranked as they "
            "finished, with scores apart by more than one evaluation's noise, before their last "
            "evaluation, so the pruner stops no trial for its score"
        )
    return (
        f"learned rung: step {step:,}, the first evaluation at which the {done} complete "
        "trials ranked as they finished; no trial is stopped before it"
    )
