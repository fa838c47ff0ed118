"""The live terminal view of a running study: current trial, its steps, best so far, counts."""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from rich import progress as rp
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.text import Text

from hpo.results.summary import _STATE_STYLE, _better, _check_direction, fmt_number, infeasible


class LiveView:
    """Live terminal view while a study runs: current trial, its steps, best so far, counts."""

    def __init__(
        self,
        console: Console,
        study_name: str,
        metric: str,
        direction: str,
        n_trials: int | None,
    ) -> None:
        """Set up the view; nothing is drawn until the view is entered."""
        self.console = console
        self.study_name = study_name
        self.metric = metric
        self.direction = _check_direction(direction)
        self.n_trials = n_trials
        self.counts = {"COMPLETE": 0, "PRUNED": 0, "FAIL": 0}
        self.best: tuple[int, float] | None = None
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._number: int | None = None  # the trial now training
        self._params: dict[str, Any] = {}
        self._latest: tuple[int, float] | None = None  # (step, value) of its latest eval
        self._task: rp.TaskID | None = None
        self._last_step, self._closed = 0, False
        columns = (rp.BarColumn(), rp.MofNCompleteColumn(), rp.TimeElapsedColumn())
        eta = (rp.TextColumn("eta"), rp.TimeRemainingColumn())
        self._progress = rp.Progress(*columns, *eta, console=console, auto_refresh=False)

    def resume_from(self, trials: Sequence[Any]) -> None:
        """Count the finished trials a resumed study already holds, and take its best, so the
        view agrees with the report and a trial that only ties the stored best is no new one."""
        with self._lock:
            for t in sorted(trials, key=lambda t: t.number):
                state = t.state.name
                if state not in self.counts:
                    continue  # running or waiting: not finished
                self.counts[state] += 1
                if self._improves(state, t.value, not infeasible(t)):
                    self.best = (t.number, t.value)

    def _improves(self, state: str, value: float | None, feasible: bool) -> bool:
        """Whether a finished trial is the new best so far: complete, feasible, a number, and
        strictly better (a tie keeps the earlier trial)."""
        return (
            state == "COMPLETE"
            and feasible
            and value is not None
            and not math.isnan(value)
            and (self.best is None or _better(value, self.best[1], self.direction))
        )

    def __enter__(self) -> LiveView:
        """Start drawing the live area."""
        self._live = Live(
            get_renderable=self._render,
            console=self.console,
            transient=False,
            refresh_per_second=4,
        )
        self._live.start()
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop drawing; the last state of the live area stays on screen."""
        if self._live is not None:
            with self._lock:
                self._closed = True
            self._live.stop()
            self._live = None
            if not self.console.is_terminal:
                self.console.line()  # a file or pipe gets the last frame without a line end

    def trial_started(self, number: int, params: Mapping[str, Any], total_steps: int) -> None:
        """A trial begins: show it with a fresh progress bar of total_steps."""
        with self._lock:
            self._number, self._params = number, dict(params)
            self._last_step, self._latest = 0, None
            if self._task is not None:
                self._progress.remove_task(self._task)
            total = total_steps if total_steps > 0 else None
            self._task = self._progress.add_task("train", total=total)

    def step(self, step: int) -> None:
        """The current trial reached optimizer step `step` (cheap: no redraw)."""
        self._last_step = step
        task = self._task
        if task is not None:
            with contextlib.suppress(KeyError):  # the trial may have just finished elsewhere
                self._progress.update(task, completed=step)

    def evaluated(self, step: int, value: float) -> None:
        """The current trial's latest validation value."""
        with self._lock:
            self._latest = (step, value)
            self._last_step = max(self._last_step, step)

    def trial_finished(
        self,
        number: int,
        state: str,
        value: float | None,
        feasible: bool = True,
        step: int | None = None,
    ) -> None:
        """A trial ended: count it, update the best so far (``feasible`` trials only: one that
        broke a constraint is no answer) and print its line above the view. ``step``: where a
        trial another worker ran stopped (this view followed its own trial's steps)."""
        state = state.upper()
        with self._lock:
            current = number == self._number
            self.counts[state] = self.counts.get(state, 0) + 1
            params = self._params if current else {}
            if value is None and self._latest is not None and current:
                value = self._latest[1]
            if current:  # the step it reached, also where it failed before storing one
                step = self._last_step
            new_best = self._improves(state, value, feasible)
            if new_best and value is not None:
                self.best = (number, value)
            line = Text(f"#{number} {state}", style=_STATE_STYLE.get(state, ""))
            if state != "COMPLETE" and step is not None:
                line.append(f" at step {step}")
            if value is not None:
                line.append(f"  {self.metric} {value:.4g}")
            for name, v in params.items():
                line.append(f"  {name} {fmt_number(v)}", style="dim")
            if new_best:
                line.append("  new best", style="bold green")
            elif state == "COMPLETE" and not feasible:
                line.append("  infeasible", style="yellow")
            if current:  # another worker's trial leaves this one's progress bar be
                if self._task is not None:
                    self._progress.remove_task(self._task)
                    self._task = None
                self._number, self._latest = None, None
        self.console.print(line)

    def _render(self) -> RenderableType:
        """The live area, built when rich refreshes it (about 4 times a second)."""
        with self._lock:
            lines: list[RenderableType] = []
            head = Text(f"{self.study_name} · {self.metric} ({self.direction}) · ", style="bold")
            if self._number is not None:
                head.append(f"trial #{self._number} training")
            elif self._closed:
                head.append("done")
            else:
                head.append("waiting for the next trial", style="dim")
            lines.append(head)
            if self._task is not None:
                lines.append(self._progress)
            if self._latest is not None:
                step, v = self._latest
                lines.append(Text(f"latest eval: {self.metric} {v:.4g} at step {step}"))
            best = f"{self.metric} {self.best[1]:.4g} (trial #{self.best[0]})" if self.best else ""
            lines.append(Text(f"best so far: {best or 'none yet'}"))
            c = self.counts
            tally = f"{c['COMPLETE']} complete · {c['PRUNED']} pruned · {c['FAIL']} failed"
            if self.n_trials:
                done = sum(c.values())  # above the budget when a rerun lowered it
                tally += f" · {done} of {max(self.n_trials, done)} trials"
            lines.append(Text(tally))
            return Group(*lines)
