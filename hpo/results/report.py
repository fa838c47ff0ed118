"""Rendering of a study's trials as rich renderables: the end-of-study report and a live view."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from optuna.trial import FrozenTrial, TrialState
from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from hpo import keys
from hpo.execution.optuna_private import retry_history
from hpo.results.privacy import epsilon_table
from hpo.search.budget import spend_line
from hpo.search.pruners import EVAL_ROWS_ATTR, standard_error
from hpo.search.racing import race_summary, raced_leader
from hpo.search.screening import screen_caution, screen_summary
from hpo.tasks.token_classification import per_type_f1

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
    close = [
        t.number for t in order[1:] if (v := trial_value(t)) is not None and abs(value - v) <= se
    ]
    return {"noise": se, "eval_rows": rows, "within_noise": close, "measured": measured is not None}


def ranked(trials: Sequence[FrozenTrial], direction: str, top: int) -> list[FrozenTrial]:
    """The top trials: complete ones by value, then pruned ones by their last reported value."""
    key = _rank_key(direction)
    complete = sorted((t for t in trials if t.state == TrialState.COMPLETE), key=key)
    return (complete + sorted((t for t in trials if t.state == TrialState.PRUNED), key=key))[:top]


def _short(name: str) -> str:
    """A dimension's column header, short enough for an 80-column terminal."""
    from hpo.strategies import dimensions

    dim = dimensions().get(name)
    return dim.short if dim is not None and dim.short else name


def _leaderboard(summary: StudySummary, trials: Sequence[FrozenTrial], top: int) -> Table:
    """Table of the top trials with one column per param."""
    rows = ranked(trials, summary.direction, top)
    names: list[str] = []
    for t in rows:
        names.extend(n for n in t.params if n not in names)
    # Parameters with one value in every row are said once, under the table, to keep it narrow.
    fixed = {
        n: rows[0].params[n]
        for n in names
        if len(rows) > 1 and all(n in t.params and t.params[n] == rows[0].params[n] for t in rows)
    }
    names = [n for n in names if n not in fixed]
    better = "higher" if summary.direction == "maximize" else "lower"
    caption = (
        f"{better} is better; complete trials first, then pruned trials (dim) "
        "ranked by the last value they reported"
    )
    if fixed:
        caption += "\nsame in every row: " + ", ".join(
            f"{n} {fmt_number(v)}" for n, v in fixed.items()
        )
    table = Table(
        title=Text(f"top {len(rows)} trials by {summary.metric}"),
        caption=Text(caption),
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
        collapse_padding=True,
    )
    # The identifying columns keep their width; parameter columns give way on narrow terminals.
    table.add_column("#", justify="right", no_wrap=True, min_width=3)
    table.add_column("state", no_wrap=True, min_width=6)
    table.add_column(Text(summary.metric), justify="right", no_wrap=True, min_width=6)
    for name in names:
        table.add_column(Text(_short(name)), overflow="fold")
    table.add_column("steps", justify="right", no_wrap=True, min_width=5)
    for t in rows:
        steps = trial_steps(t)
        cells = [
            str(t.number),
            "done" if t.state == TrialState.COMPLETE else t.state.name.lower(),
            "—" if (v := trial_value(t)) is None else f"{v:.4g}",
            *(fmt_number(t.params[n]) if n in t.params else "" for n in names),
            str(steps),
        ]
        best = t.number == summary.best_number
        style = "bold green" if best else ("dim" if t.state == TrialState.PRUNED else "")
        table.add_row(*(Text(c) for c in cells), style=style)
    return table


def _baseline_line(summary: StudySummary, baseline: tuple[str, float]) -> Text:
    """One line comparing the best value to a baseline's value."""
    name, base = baseline
    if summary.best_value is None:
        return Text(f"no complete trial to compare with {name} ({summary.metric} {base:.4g})")
    best, diff = summary.best_value, summary.best_value - base
    verdict = (
        "better than"
        if _better(best, base, summary.direction)
        else ("equal to" if best == base else "worse than")
    )
    return Text(
        f"best {summary.metric} {best:.4g} is {verdict} {name} {base:.4g} ({diff:+.4g})",
        style="green" if verdict == "better than" else "yellow",
    )


def _recipe_line(summary: StudySummary) -> Text | None:
    """How far tuning got past the untuned Trainer recipe, against the noise of validation."""
    recipe, best = summary.recipe_value, summary.best_value
    if recipe is None or best is None:
        return None
    head = f"the untuned Trainer recipe (#{summary.recipe_number}) scored {recipe:.4g}"
    if summary.best_number == summary.recipe_number or not _better(best, recipe, summary.direction):
        return Text(f"{head}, and no tuned trial did better", style="yellow")
    gain = f"{head}; the best is {best - recipe:+.4g}"
    if summary.noise is None:
        return Text(gain)
    if abs(best - recipe) <= summary.noise:
        return Text(
            f"{gain}, within one standard error ({summary.noise:.3f}): validation cannot tell "
            "this tuning from none",
            style="yellow",
        )
    return Text(f"{gain}, beyond one standard error ({summary.noise:.3f})", style="green")


def _noise_line(summary: StudySummary) -> Text:
    """Which trials validation cannot tell from the best, and how to choose among them."""
    close = summary.within_noise
    shown = ", ".join(f"#{n}" for n in close[:5]) + (
        f" and {len(close) - 5} more" if len(close) > 5 else ""
    )
    return Text(
        f"{len(close)} more trial(s) within one standard error ({summary.noise:.3f} "
        + (
            "by bootstrap over the validation sentences"
            if summary.measured
            else f"on {summary.eval_rows} validation rows"
        )
        + f") of the best: {shown}; validation cannot rank "
        f"them. `hpo best {summary.study_name} --top {min(len(close) + 1, 3)}` retrains the "
        "closest with several seeds to choose.",
        style="yellow",
    )


def render_report(
    summary: StudySummary,
    trials: Sequence[FrozenTrial],
    top: int = 10,
    baseline: tuple[str, float] | None = None,
    proportion: bool = True,
) -> Group:
    """The end-of-study report: leaderboard, counts, pruning savings, best params, failures.
    ``proportion``: the metric is a share of validation rows (accuracy), so one evaluation's
    noise follows from the rows where the task does not measure it."""
    if top < 1:
        raise ValueError(f"top must be at least 1, not {top}")
    head = Text(f"study {summary.study_name}: {summary.metric} ({summary.direction})", style="bold")
    if not trials:
        return Group(head, Text("no trials yet: run the study first", style="yellow"))
    parts: list[RenderableType] = [head]
    if summary.n_complete or summary.n_pruned:
        parts.append(_leaderboard(summary, trials, top))
    counts = (summary.n_complete, summary.n_pruned, summary.n_failed, summary.n_running)
    screens = sum(1 for t in trials if keys.SCREENED in t.user_attrs)
    pruned = f"{counts[1]} pruned" + (f" ({screens} of them screens)" if screens else "")
    over = sum(1 for t in trials if t.state == TrialState.COMPLETE and infeasible(t))
    complete = f"{counts[0]} complete" + (f" ({over} infeasible)" if over else "")
    parts.append(Text(f"{complete}, {pruned}, {counts[2]} failed, {counts[3]} running"))
    total, saved = summary.steps_if_unpruned, summary.steps_saved_by_pruning
    pct = f"{100 * saved / total:.1f}" if total else "0.0"
    what = "pruning and screening" if screens else "pruning"
    parts.append(Text(f"{what} saved {saved:,} of {total:,} training steps ({pct}%)"))
    if (spend := spend_line(trials)) is not None:
        parts.append(Text(spend))
    if summary.best_number is not None:
        params = Table.grid(padding=(0, 2))
        params.add_column(style="cyan")
        params.add_column()
        leader = raced_leader(trials, summary.direction == "maximize")
        shown_params = summary.best_params if leader is None else dict(leader.first.params)
        for name, value in shown_params.items():
            params.add_row(Text(name), Text(fmt_number(value)))
        title = f"best trial #{summary.best_number}: {summary.metric} {summary.best_value:.4g}"
        if leader is not None:  # what `hpo best` takes: the best mean, not one lucky seed
            title = (
                f"best configuration (trial #{leader.first.number}): {summary.metric} "
                f"{leader.mean:.4g} mean over {len(leader.values)} seed(s); best single run "
                f"#{summary.best_number} {summary.best_value:.4g}"
            )
        parts.append(Panel(params, title=Text(title), title_align="left", expand=False))
        best = next((t for t in trials if t.number == summary.best_number), None)
        per_type = per_type_f1(best.user_attrs.get(keys.METRICS) if best else None)
        if per_type:
            shown = ", ".join(f"{k} {v:.3f}" for k, v in per_type.items())
            parts.append(Text(f"F1 per entity type (trial #{summary.best_number}): {shown}"))
    elif summary.n_complete:  # every complete trial broke a constraint: none is an answer
        parts.append(
            Text(
                f"no feasible trial yet: the {summary.n_complete} complete trial(s) each broke "
                "a constraint (see the failed trials below)",
                style="yellow",
            )
        )
    else:
        parts.append(Text("no trial has completed yet", style="yellow"))
    windowed = next(
        (t.user_attrs[keys.WINDOWED] for t in trials if keys.WINDOWED in t.user_attrs), None
    )
    if windowed and any(windowed.values()):
        parts.append(
            Text(
                "sentences longer than train.max_length, split into overlapping windows and "
                "scored per word: " + ", ".join(f"{k} {v}" for k, v in windowed.items())
            )
        )
    if (private := epsilon_table(trials, summary.metric, summary.direction)) is not None:
        parts.append(private)
    if summary.within_noise:
        parts.append(_noise_line(summary))
    if (race := race_summary(trials, summary.direction == "maximize", summary.metric)) is not None:
        parts.append(Text(race))
    if screen := screen_summary(trials, summary.direction == "maximize", summary.metric):
        parts.append(Text(screen))
    if caution := screen_caution(trials, summary.direction == "maximize", proportion):
        parts.append(Text(caution, style="yellow"))
    if (line := _recipe_line(summary)) is not None:
        parts.append(line)
    if baseline is not None:
        parts.append(_baseline_line(summary, baseline))
    if summary.failures:
        parts.append(Text("failed trials:", style="bold red"))
        parts.extend(Text(f"  #{n}  {_one_line(reason)}") for n, reason in summary.failures)
    return Group(*parts)
