"""Rendering of a study's trials as rich renderables: the end-of-study report (the facts it
shows are hpo/results/summary.py's)."""

from __future__ import annotations

from collections.abc import Sequence

from optuna.trial import FrozenTrial, TrialState
from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from hpo import keys
from hpo.results.privacy import epsilon_table
from hpo.results.summary import (  # noqa: F401 (names callers have imported from here)
    _STATE_STYLE,
    StudySummary,
    _better,
    _check_direction,
    _one_line,
    fmt_number,
    infeasible,
    ranked,
    summarize,
    trial_steps,
    trial_value,
)
from hpo.search.budget import spend_line
from hpo.search.racing import race_summary, raced_leader
from hpo.search.screening import screen_caution, screen_summary
from hpo.tasks.token_classification import per_type_f1


def _short(name: str) -> str:
    """A dimension's column header, short enough for an 80-column terminal."""
    from hpo.strategies import dimensions

    dim = dimensions().get(name)
    return dim.short if dim is not None and dim.short else name


class _Leaderboard:
    """The top trials, one column per varying parameter, laid out at render time: where every
    column fits the terminal it is one table; where not, the parameters that do not fit go to
    further tables below it, each led by the trial number, as pandas wraps a wide frame. A
    number is never folded across lines (1.2e-04 split into "1.2e-" and "04" reads wrong)."""

    def __init__(self, summary: StudySummary, trials: Sequence[FrozenTrial], top: int) -> None:
        self.summary = summary
        self.rows = ranked(trials, summary.direction, top)
        names: list[str] = []
        for t in self.rows:
            names.extend(n for n in t.params if n not in names)
        # Parameters with one value in every row are said once, under the table.
        rows = self.rows
        self.fixed = {
            n: rows[0].params[n]
            for n in names
            if len(rows) > 1
            and all(n in t.params and t.params[n] == rows[0].params[n] for t in rows)
        }
        self.names = [n for n in names if n not in self.fixed]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        blocks: list[list[str]] = [[]]
        for name in self.names:  # greedily, in order: as many parameters per table as fit
            if blocks[-1] and self._width(console, options, blocks, name) > options.max_width:
                blocks.append([])
            blocks[-1].append(name)
        for i, names in enumerate(blocks):
            yield self._table(names, first=i == 0)
        # under the last table, at the terminal's width rather than squeezed into the table's
        better = "higher" if self.summary.direction == "maximize" else "lower"
        caption = (
            f"{better} is better; complete trials first, then pruned trials (dim) "
            "ranked by the last value they reported"
        )
        if self.fixed:
            caption += "\nsame in every row: " + ", ".join(
                f"{n} {fmt_number(v)}" for n, v in self.fixed.items()
            )
        yield Text(caption, style="table.caption")

    def _width(
        self, console: Console, options: ConsoleOptions, blocks: list[list[str]], name: str
    ) -> int:
        trial = self._table([*blocks[-1], name], first=len(blocks) == 1)
        # measured unbounded: Measurement clamps to the width it is given
        return Measurement.get(console, options.update_width(1 << 20), trial).maximum

    def _table(self, names: list[str], first: bool) -> Table:
        summary = self.summary
        title = f"top {len(self.rows)} trials by {summary.metric}"
        table = Table(
            title=Text(title if first else f"{title}, continued"),
            box=box.SIMPLE_HEAD,
            padding=(0, 1),
            pad_edge=False,
            collapse_padding=True,
        )
        # The identifying columns keep their width; a lone parameter column on a terminal too
        # narrow even for it folds rather than vanish.
        table.add_column("#", justify="right", no_wrap=True, min_width=3)
        if first:
            table.add_column("state", no_wrap=True, min_width=6)
            table.add_column(Text(summary.metric), justify="right", no_wrap=True, min_width=6)
        for name in names:
            table.add_column(Text(_short(name)), overflow="fold", no_wrap=len(names) > 1)
        if first:
            table.add_column("steps", justify="right", no_wrap=True, min_width=5)
        for t in self.rows:
            cells = [str(t.number)]
            if first:
                cells.append("done" if t.state == TrialState.COMPLETE else t.state.name.lower())
                cells.append("—" if (v := trial_value(t)) is None else f"{v:.4g}")
            cells.extend(fmt_number(t.params[n]) if n in t.params else "" for n in names)
            if first:
                cells.append(str(trial_steps(t)))
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
        parts.append(_Leaderboard(summary, trials, top))
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
            # a line of its own: a panel's title is cut at the panel's width
            parts.append(
                Text(
                    f"best configuration (trial #{leader.first.number}): {summary.metric} "
                    f"{leader.mean:.4g} mean over {len(leader.values)} seed(s); best single "
                    f"run #{summary.best_number} {summary.best_value:.4g}"
                )
            )
            title = f"trial #{leader.first.number}"
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
