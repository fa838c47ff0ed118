"""The privacy part of the report: each private trial's score against the epsilon it spent."""

from __future__ import annotations

from collections.abc import Sequence

from optuna.trial import FrozenTrial, TrialState
from rich import box
from rich.table import Table
from rich.text import Text

from hpo import keys


def private_trials(trials: Sequence[FrozenTrial]) -> list[tuple[float, FrozenTrial]]:
    """(epsilon, trial) of the complete trials that trained with differential privacy, by
    epsilon, then trial number."""
    out = [
        (float(t.user_attrs[keys.DP_EPSILON]), t)
        for t in trials
        if t.state == TrialState.COMPLETE and t.values and keys.DP_EPSILON in t.user_attrs
    ]
    return sorted(out, key=lambda pair: (pair[0], pair[1].number))


def frontier(pairs: Sequence[tuple[float, FrozenTrial]], maximize: bool) -> set[int]:
    """Trial numbers no other trial beats at the same or a smaller epsilon: the best score each
    privacy level buys."""
    best: float | None = None
    out = set()
    for _, t in pairs:
        value = float(t.values[0])
        if best is None or (value > best if maximize else value < best):
            best = value
            out.add(t.number)
    return out


def epsilon_table(
    trials: Sequence[FrozenTrial], metric: str, direction: str, top: int = 20
) -> Table | None:
    """Score against epsilon for the private trials (None when there are none); the trials
    that buy the best score for their privacy are in bold, those over the target dim."""
    from hpo.results.report import fmt_number  # report imports this module

    pairs = private_trials(trials)
    if not pairs:
        return None
    best = frontier(pairs, direction == "maximize")
    deltas = sorted({float(t.user_attrs.get(keys.DP_DELTA, 0.0)) for _, t in pairs})
    caption = (
        f"epsilon at delta {', '.join(f'{d:.2g}' for d in deltas)}, per trial (a search over "
        "several private trials spends more than its best trial's epsilon); bold: the best "
        f"{metric} at that epsilon or less"
    )
    table = Table(
        title=Text(f"{metric} against privacy spent (differential privacy)"),
        caption=Text(caption),
        box=box.SIMPLE_HEAD,
        padding=(0, 1),
        pad_edge=False,
    )
    for name in ("#", "epsilon", metric, "noise", "clip", "target"):
        table.add_column(Text(name), justify="left" if name == "target" else "right")
    shown = [p for p in pairs if p[1].number in best]
    shown += [p for p in pairs if p[1].number not in best][: max(0, top - len(shown))]
    for eps, t in sorted(shown, key=lambda pair: (pair[0], pair[1].number)):
        over = keys.INFEASIBLE in t.user_attrs
        style = "dim" if over else ("bold" if t.number in best else "")
        cells = [
            str(t.number),
            f"{eps:.3g}",
            f"{float(t.values[0]):.4g}",
            fmt_number(t.params["dp_noise_multiplier"])
            if "dp_noise_multiplier" in t.params
            else "",
            f"{t.params.get('dp_max_grad_norm', 1.0)}",
            "over" if over else ("within" if t.constraints else ""),
        ]
        table.add_row(*(Text(c) for c in cells), style=style)
    return table
