"""Tests of hpo.results.report: the study summary, the rendered report and the live view."""

from __future__ import annotations

import io
import re
from typing import Any

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState, create_trial
from rich.console import Console

from hpo.results.live import LiveView
from hpo.results.report import StudySummary, fmt_number, render_report, summarize

optuna.logging.set_verbosity(optuna.logging.WARNING)

DISTRIBUTIONS = {
    "learning_rate": FloatDistribution(1e-6, 1e-3, log=True),
    "warmup_ratio": FloatDistribution(0.0, 0.3),
    "lr_schedule": CategoricalDistribution(["linear", "cosine"]),
    "frozen_layers": IntDistribution(0, 6),
}
MAX_STEPS = 200


def _trial(
    state: TrialState,
    value: float | None = None,
    steps: int | None = MAX_STEPS,
    lr: float = 3e-5,
    reports: dict[int, float] | None = None,
    **attrs: Any,
) -> FrozenTrial:
    """A trial as hpo leaves it: params, step counts and, for pruned trials, reports."""
    user_attrs: dict[str, Any] = {"max_steps": MAX_STEPS, "samples_per_second": 321.0, **attrs}
    if steps is not None:
        user_attrs["steps"] = steps
    params = {"learning_rate": lr, "warmup_ratio": 0.1, "lr_schedule": "cosine", "frozen_layers": 2}
    return create_trial(
        state=state,
        value=value,
        params=params,
        distributions=DISTRIBUTIONS,
        user_attrs=user_attrs,
        intermediate_values=reports or {},
    )


def _study(trials: list[FrozenTrial], direction: str = "maximize") -> list[FrozenTrial]:
    """Add trials to an in-memory study so they get numbers 0, 1, 2, ... in order."""
    study = optuna.create_study(direction=StudyDirection[direction.upper()])
    for t in trials:
        study.add_trial(t)
    return study.get_trials(deepcopy=False)


def _mixed() -> list[FrozenTrial]:
    """3 complete, 2 pruned, 1 failed, 1 running trials."""
    return _study(
        [
            _trial(TrialState.COMPLETE, 0.70, lr=1e-5),  # 0
            _trial(TrialState.PRUNED, None, steps=50, reports={50: 0.41}),  # 1
            _trial(TrialState.COMPLETE, 0.90, lr=4.2e-5),  # 2
            _trial(TrialState.FAIL, None, steps=10, fail_reason="CUDA out of memory"),  # 3
            _trial(TrialState.PRUNED, None, steps=120, reports={50: 0.5, 100: 0.62}),  # 4
            _trial(TrialState.COMPLETE, 0.80, lr=2e-4),  # 5
            _trial(TrialState.RUNNING, None, steps=None),  # 6
        ]
    )


def _text(renderable: Any) -> str:
    """Render to plain text the way a wide terminal would show it."""
    console = Console(record=True, width=200, file=io.StringIO())
    console.print(renderable)
    return console.export_text()


def test_summarize_counts_by_state() -> None:
    s = summarize("demo", "accuracy", "maximize", _mixed())
    assert (s.n_complete, s.n_pruned, s.n_failed, s.n_running) == (3, 2, 1, 1)
    assert (s.study_name, s.metric, s.direction) == ("demo", "accuracy", "maximize")


@pytest.mark.parametrize(("direction", "best"), [("maximize", 1), ("minimize", 2)])
def test_best_respects_direction(direction: str, best: int) -> None:
    trials = _study(
        [
            _trial(TrialState.COMPLETE, 0.5, lr=1e-5),
            _trial(TrialState.COMPLETE, 0.9, lr=2e-5),
            _trial(TrialState.COMPLETE, 0.1, lr=3e-5),
            # a pruned trial whose last report beats every complete trial both ways: never best
            _trial(TrialState.PRUNED, 5.0, steps=50, reports={50: 5.0}),
            _trial(TrialState.PRUNED, -5.0, steps=50, reports={50: -5.0}),
        ],
        direction,
    )
    s = summarize("d", "eval_loss", direction, trials)
    assert s.best_number == best
    assert s.best_value == trials[best].value
    assert s.best_params == trials[best].params


def test_no_complete_trial_has_no_best() -> None:
    s = summarize("d", "accuracy", "maximize", _study([_trial(TrialState.FAIL, None)]))
    assert (s.best_number, s.best_value, s.best_params) == (None, None, {})


def test_bad_direction_is_rejected() -> None:
    with pytest.raises(ValueError, match="direction"):
        summarize("d", "accuracy", "up", [])


def test_steps_saved_by_pruning() -> None:
    s = summarize("demo", "accuracy", "maximize", _mixed())
    ran = 3 * MAX_STEPS + 50 + 120 + 10  # complete, pruned, failed; running trials are not counted
    saved = (MAX_STEPS - 50) + (MAX_STEPS - 120)
    assert s.steps_run == ran
    assert s.steps_saved_by_pruning == saved
    assert s.steps_if_unpruned == ran + saved


def test_pruned_trial_without_steps_attr_uses_last_reported_step() -> None:
    trials = _study([_trial(TrialState.PRUNED, None, steps=None, reports={25: 0.3, 75: 0.4})])
    s = summarize("d", "accuracy", "maximize", trials)
    assert (s.steps_run, s.steps_saved_by_pruning) == (75, MAX_STEPS - 75)


def test_failures_carry_reasons() -> None:
    trials = _study(
        [
            _trial(TrialState.FAIL, None, fail_reason="loss is NaN at step 12"),
            _trial(TrialState.COMPLETE, 0.5),
            _trial(TrialState.FAIL, None),
        ]
    )
    s = summarize("d", "accuracy", "maximize", trials)
    assert s.failures == [(0, "loss is NaN at step 12"), (2, "unknown")]


def test_trials_within_noise_of_the_best_are_named() -> None:
    # On 400 rows an accuracy of 0.8 has a standard error of 0.02.
    trials = _study(
        [
            _trial(TrialState.COMPLETE, 0.80, lr=1e-5, eval_rows=400),  # 0: best
            _trial(TrialState.COMPLETE, 0.785, lr=2e-5, eval_rows=400),  # 1: within 0.02
            _trial(TrialState.COMPLETE, 0.77, lr=3e-5, eval_rows=400),  # 2: 0.03 behind
            _trial(TrialState.PRUNED, None, steps=50, reports={50: 0.79}, eval_rows=400),  # 3
            _trial(TrialState.COMPLETE, 0.795, lr=5e-5, eval_rows=400),  # 4: within
        ]
    )
    s = summarize("demo", "accuracy", "maximize", trials)
    assert s.noise == pytest.approx(0.02) and s.eval_rows == 400
    assert s.within_noise == [4, 1]  # complete trials only, closest first
    text = _text(render_report(s, trials))
    assert "2 more trial(s) within one standard error (0.020 on 400 validation rows)" in text
    assert "#4, #1" in text and "hpo best demo --top 3" in text


RECIPE_ATTRS = {"first_trial": "trainer recipe", "eval_rows": 400}


@pytest.mark.parametrize(
    ("recipe", "best", "line"),
    [
        # On 400 rows the standard error near 0.8 is 0.02.
        (0.79, 0.80, "scored 0.79; the best is +0.01, within one standard error (0.020): "
                     "validation cannot tell this tuning from none"),
        (0.70, 0.80, "scored 0.7; the best is +0.1, beyond one standard error (0.020)"),
        (0.81, 0.80, "scored 0.81, and no tuned trial did better"),
    ],
)  # fmt: skip
def test_the_report_weighs_tuning_against_the_untuned_recipe(
    recipe: float, best: float, line: str
) -> None:
    trials = _study(
        [
            _trial(TrialState.COMPLETE, recipe, **RECIPE_ATTRS),
            _trial(TrialState.COMPLETE, best, eval_rows=400),
            _trial(TrialState.COMPLETE, 0.5, first_trial="study file", eval_rows=400),
        ]
    )
    s = summarize("demo", "accuracy", "maximize", trials)
    assert (s.recipe_number, s.recipe_value) == (0, recipe)
    assert f"the untuned Trainer recipe (#0) {line}" in " ".join(
        _text(render_report(s, trials)).split()
    )


def test_no_recipe_line_without_a_finished_recipe_trial() -> None:
    pruned = _trial(TrialState.PRUNED, None, steps=50, reports={50: 0.4}, **RECIPE_ATTRS)
    trials = _study([pruned, _trial(TrialState.COMPLETE, 0.8, first_trial="study file")])
    s = summarize("demo", "accuracy", "maximize", trials)
    assert s.recipe_number is None and "recipe" not in _text(render_report(s, trials))


@pytest.mark.parametrize(("metric", "attrs"), [("eval_loss", {"eval_rows": 400}), ("accuracy", {})])
def test_no_noise_line_for_a_loss_or_without_row_counts(metric: str, attrs: dict[str, int]) -> None:
    trials = _study([_trial(TrialState.COMPLETE, v, **attrs) for v in (0.30, 0.301)])
    s = summarize("demo", metric, "maximize", trials)
    assert (s.noise, s.within_noise) == (None, [])
    assert "standard error" not in _text(render_report(s, trials))


def test_report_shows_best_params_failures_and_savings() -> None:
    trials = _mixed()
    s = summarize("demo", "accuracy", "maximize", trials)
    text = _text(render_report(s, trials))
    assert f"best trial #{s.best_number}" in text
    for name in DISTRIBUTIONS:
        assert name in text
    assert "#3  CUDA out of memory" in text
    total = s.steps_if_unpruned
    pct = 100 * s.steps_saved_by_pruning / total
    assert f"pruning saved {s.steps_saved_by_pruning:,} of {total:,} training steps" in text
    assert f"({pct:.1f}%)" in text
    assert "3 complete, 2 pruned, 1 failed, 1 running" in text
    assert fmt_number(4.2e-5) in text  # the best trial's learning rate


def _leaderboard_numbers(text: str) -> list[int]:
    """Trial numbers of the leaderboard rows, top to bottom."""
    rows = re.findall(r"^\s*(\d+)\s+(?:done|pruned)\s", text, flags=re.MULTILINE)
    return [int(n) for n in rows]


@pytest.mark.parametrize(
    ("direction", "order"), [("maximize", [2, 5, 0, 4, 1]), ("minimize", [0, 5, 2, 1, 4])]
)
def test_leaderboard_ranks_complete_then_pruned(direction: str, order: list[int]) -> None:
    trials = _mixed()
    s = summarize("demo", "accuracy", direction, trials)
    assert _leaderboard_numbers(_text(render_report(s, trials))) == order
    assert _leaderboard_numbers(_text(render_report(s, trials, top=2))) == order[:2]


def test_a_leaderboard_too_wide_for_the_terminal_goes_on_below_without_breaking_numbers() -> None:
    names = ["weight_decay", "dropout", "label_smoothing", "num_layers", "hidden_units", "a", "b"]
    extra = {n: FloatDistribution(0.0, 1.0) for n in names}
    trials = []
    for i in range(4):
        trial = _trial(TrialState.COMPLETE, 0.5 + i / 10, lr=1.2345e-4 * (i + 1))
        values = {n: 0.01 + 0.0123 * (i + 1) * (j + 1) for j, n in enumerate(names)}
        trial.params = {**trial.params, "warmup_ratio": 0.0111 * (i + 1), **values}
        trial.distributions = {**trial.distributions, **extra}
        trials.append(trial)
    trials = _study(trials)
    s = summarize("wide", "accuracy", "maximize", trials)
    console = Console(record=True, width=80, file=io.StringIO())
    console.print(render_report(s, trials))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "top 4 trials by accuracy, continued" in text
    for t in trials:  # every value whole, on one line: none cut or folded
        for value in t.params.values():
            assert re.search(rf"(^|\s){re.escape(fmt_number(value))}(\s|$)", text, re.M), value
    # a continued table is led by the trial number, in the same order as the first
    blocks = text.split("continued")
    assert len(blocks) >= 2
    lead = [int(m) for m in re.findall(r"^\s+(\d+)\s+\S", blocks[1], flags=re.M)]
    assert lead == _leaderboard_numbers(text)
    # wide enough, it is one table as before
    assert "continued" not in _text(render_report(s, trials))


def test_trials_within_noise_are_counted_once_per_configuration() -> None:
    """A race's re-runs (the same parameters, another seed) are not further candidates: the
    list names each close configuration once, by its first trial, and `--top` counts them."""
    trials = _study(
        [
            _trial(TrialState.COMPLETE, 0.80, lr=1e-5, eval_rows=400),  # 0: config A
            _trial(TrialState.COMPLETE, 0.50, lr=2e-5, eval_rows=400),  # 1: config B, far
            _trial(TrialState.COMPLETE, 0.81, lr=3e-5, eval_rows=400),  # 2: config C, best
            _trial(TrialState.COMPLETE, 0.805, lr=3e-5, eval_rows=400),  # 3: C again
            _trial(TrialState.COMPLETE, 0.802, lr=1e-5, eval_rows=400),  # 4: A again
        ]
    )
    s = summarize("race", "accuracy", "maximize", trials)
    assert s.best_number == 2 and s.within_noise == [0]
    text = " ".join(_text(render_report(s, trials)).split())
    assert "1 more trial(s) within one standard error" in text
    assert "of the best: #0;" in text and "`hpo best race --top 2`" in text


def test_long_failure_reason_is_cut_to_one_line() -> None:
    reason = "RuntimeError: boom\n" + "x" * 400 + " THE-END"
    trials = _study([_trial(TrialState.FAIL, None, fail_reason=reason)])
    text = _text(render_report(summarize("d", "accuracy", "maximize", trials), trials))
    line = next(ln for ln in text.splitlines() if "RuntimeError" in ln)
    assert "boom xxx" in line
    assert "THE-END" not in text
    assert len(line.strip()) <= 130


@pytest.mark.parametrize(
    ("direction", "values", "verdict"),
    [
        ("maximize", [0.6, 0.8], "better than"),
        ("maximize", [0.2, 0.3], "worse than"),
        ("minimize", [0.6, 0.8], "worse than"),
        ("minimize", [0.2, 0.3], "better than"),
    ],
)
def test_baseline_comparison(direction: str, values: list[float], verdict: str) -> None:
    trials = _study([_trial(TrialState.COMPLETE, v) for v in values], direction)
    s = summarize("d", "accuracy", direction, trials)
    text = _text(render_report(s, trials, baseline=("majority class", 0.424)))
    assert s.best_value is not None
    assert f"is {verdict} majority class 0.424" in text
    assert f"{s.best_value - 0.424:+.4g}" in text


def test_empty_study_renders_a_message() -> None:
    s = summarize("empty", "accuracy", "maximize", [])
    assert (s.n_complete, s.steps_run, s.best_number, s.failures) == (0, 0, None, [])
    text = _text(render_report(s, []))
    assert "empty" in text
    assert "no trials yet" in text


def test_report_with_only_failures_has_no_best() -> None:
    trials = _study([_trial(TrialState.FAIL, None, fail_reason="bad batch")])
    s = summarize("d", "accuracy", "maximize", trials)
    text = _text(render_report(s, trials))
    assert "no trial has completed yet" in text
    assert "#0  bad batch" in text


def test_fmt_number() -> None:
    assert fmt_number(3.2e-05) == "3.2e-05"
    assert fmt_number(1e-4) == "1e-04"
    assert fmt_number(0.123456) == "0.123"
    assert fmt_number(16) == "16"
    assert fmt_number("cosine") == "cosine"


def _run_live(direction: str) -> tuple[LiveView, str]:
    """Drive a live view through a pruned, two complete and a failed trial."""
    console = Console(file=io.StringIO(), force_terminal=False, width=120)
    with LiveView(console, "demo", "accuracy", direction, n_trials=4) as view:
        view.trial_started(0, {"learning_rate": 3.1e-05, "seed": 7}, total_steps=200)
        for i in range(1, 51):
            view.step(i)
        view.evaluated(50, 0.512)
        view.trial_finished(0, "PRUNED", None)
        for number, value in ((1, 0.7), (2, 0.9)):
            view.trial_started(number, {"learning_rate": 5e-05, "seed": 7}, total_steps=200)
            for i in range(1, 201):
                view.step(i)
            view.evaluated(200, value)
            view.trial_finished(number, "COMPLETE", value)
        view.trial_started(3, {"learning_rate": 1e-3}, total_steps=200)
        view.step(5)
        view.trial_finished(3, "FAIL", None)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    return view, out


@pytest.mark.parametrize(("direction", "best"), [("maximize", (2, 0.9)), ("minimize", (1, 0.7))])
def test_live_view_prints_finished_trials_and_tracks_best(
    direction: str, best: tuple[int, float]
) -> None:
    view, out = _run_live(direction)
    assert "#0 PRUNED at step 50  accuracy 0.512  learning_rate 3.1e-05  seed 7" in out
    assert "#1 COMPLETE  accuracy 0.7" in out
    assert "#2 COMPLETE  accuracy 0.9" in out
    assert "#3 FAIL at step 5" in out
    assert view.best == best
    assert f"best so far: accuracy {best[1]} (trial #{best[0]})" in out
    assert "2 complete · 1 pruned · 1 failed · 4 of 4 trials" in out
    new_best_lines = [ln for ln in out.splitlines() if ln.endswith("new best")]
    assert [ln.split()[0] for ln in new_best_lines] == (
        ["#1", "#2"] if direction == "maximize" else ["#1"]
    )


def test_live_view_shows_running_trial_progress() -> None:
    console = Console(file=io.StringIO(), force_terminal=False, width=120)
    with LiveView(console, "demo", "accuracy", "maximize", n_trials=None) as view:
        view.trial_started(3, {"learning_rate": 2e-5}, total_steps=240)
        for i in range(1, 38):
            view.step(i)
        view.evaluated(30, 0.61)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "trial #3 training" in out
    assert "37/240" in out
    assert "latest eval: accuracy 0.61 at step 30" in out
    assert "best so far: none yet" in out
    assert "of" not in out.splitlines()[-1]  # no n_trials given


def test_live_view_with_a_real_study() -> None:
    """Drive the view from an Optuna objective; its summary agrees with the view's counts."""
    console = Console(file=io.StringIO(), force_terminal=False, width=120)
    study = optuna.create_study(direction="maximize", pruner=optuna.pruners.NopPruner())
    with LiveView(console, "real", "accuracy", "maximize", n_trials=4) as view:

        def objective(trial: optuna.Trial) -> float:
            lr = trial.suggest_float("learning_rate", 1e-5, 1e-4, log=True)
            trial.set_user_attr("max_steps", 100)
            view.trial_started(trial.number, trial.params, 100)
            for step in range(1, 101):
                view.step(step)
                trial.set_user_attr("steps", step)
                if step % 25 == 0:
                    value = trial.number / 10 + step / 1000
                    trial.report(value, step)
                    view.evaluated(step, value)
                    if trial.number % 2 == 1 and step == 50:
                        view.trial_finished(trial.number, "PRUNED", value)
                        raise optuna.TrialPruned()
            value = trial.number / 10 + lr
            view.trial_finished(trial.number, "COMPLETE", value)
            return value

        study.optimize(objective, n_trials=4)
    s = summarize("real", "accuracy", "maximize", study.trials)
    assert (s.n_complete, s.n_pruned) == (view.counts["COMPLETE"], view.counts["PRUNED"]) == (2, 2)
    assert s.best_number == study.best_trial.number == view.best[0]  # type: ignore[index]
    assert s.steps_saved_by_pruning == 2 * 50
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "#1 PRUNED at step 50" in out and "#3 PRUNED at step 50" in out


def test_summary_is_frozen() -> None:
    s = summarize("d", "accuracy", "maximize", [])
    assert isinstance(s, StudySummary)
    with pytest.raises(AttributeError):
        s.n_complete = 3  # type: ignore[misc]


def test_a_failure_whose_worker_died_names_its_retry() -> None:
    """A trial failed for missing heartbeats is reported with the retry Optuna's callback
    queued for it (read from the retry's history)."""
    import warnings

    study = optuna.create_study(direction="maximize")
    trial = study.ask()
    trial.suggest_float("learning_rate", 1e-6, 1e-3, log=True)
    study.tell(trial, state=TrialState.FAIL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)
    retry(study, study.get_trials()[0])
    summary = summarize("s", "accuracy", "maximize", study.get_trials())
    assert summary.failures == [
        (0, "its worker stopped sending heartbeats (killed or lost); retried as trial #1")
    ]


def test_a_worker_view_counts_and_ranks_the_trials_other_workers_finished() -> None:
    """``hpo worker`` (or ``hpo run`` beside other workers) takes its best so far from the
    whole study: a trial another worker finished better is the best, and this worker's own
    trial that only beats this worker's others is not announced as new best."""
    from hpo.cli.run import _announce

    study = optuna.create_study(direction="maximize")
    study.add_trial(_trial(TrialState.COMPLETE, 0.70))  # 0: held when the worker started
    held = study.get_trials()
    console = Console(file=io.StringIO(), force_terminal=False, width=120)
    with LiveView(console, "demo", "accuracy", "maximize", n_trials=5) as view:
        view.resume_from(held)
        announce = _announce(view, held)
        # meanwhile, other workers finish a better trial and a pruned one
        study.add_trial(_trial(TrialState.COMPLETE, 0.90))  # 1
        study.add_trial(_trial(TrialState.PRUNED, None, steps=60, reports={50: 0.4, 60: 0.45}))
        view.trial_started(3, {"learning_rate": 5e-05}, total_steps=200)
        view.step(200)
        view.evaluated(200, 0.80)
        study.add_trial(_trial(TrialState.COMPLETE, 0.80))  # 3: this worker's, now stored
        announce(study, study.get_trials()[3])
        announce(study, study.get_trials()[3])  # announced once only
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert view.best == (1, 0.90)
    assert view.counts == {"COMPLETE": 3, "PRUNED": 1, "FAIL": 0}
    lines = [ln for ln in out.splitlines() if ln.startswith("#")]
    assert lines[0].startswith("#1 COMPLETE  accuracy 0.9") and lines[0].endswith("new best")
    assert lines[1].startswith("#2 PRUNED at step 60  accuracy 0.45")
    assert lines[2].startswith("#3 COMPLETE  accuracy 0.8  learning_rate 5e-05")
    assert "new best" not in lines[2] and len(lines) == 3


def test_no_noise_line_for_a_score_with_no_spread() -> None:
    # an F1 or accuracy of exactly 0 or 1 has a binomial standard error of 0: "two more trials
    # within one standard error (0.000)" would say nothing
    trials = _study(
        [_trial(TrialState.COMPLETE, 0.0, lr=lr, eval_rows=100) for lr in (1e-5, 2e-5, 3e-5)]
    )
    s = summarize("flat", "f1", "maximize", trials)
    assert (s.noise, s.within_noise) == (None, [])
    assert "within one standard error" not in _text(render_report(s, trials))
