"""hpo's pruners: the tolerant median (median of every trial at the step, a noise margin) and
successive halving with ties counted against the trial judged."""

from __future__ import annotations

import math
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from hpo.config.spec import StudySpec
from hpo.errors import SpecError
from hpo.keys import MAX_STEPS
from hpo.search.pruners import (
    CONSTANT_SCORE_ATTR,
    EVAL_ROWS_ATTR,
    HyperbandPruner,
    SuccessiveHalvingPruner,
    TolerantMedianPruner,
    first_rung,
)
from hpo.search.study import build_pruner
from tests.conftest import spec_dict

optuna.logging.set_verbosity(optuna.logging.WARNING)


def study_with(
    pruner: optuna.pruners.BasePruner,
    curves: list[tuple[TrialState, dict[int, float]]],
    direction: str = "maximize",
) -> optuna.Study:
    study = optuna.create_study(direction=direction, pruner=pruner)
    for state, values in curves:
        last = values[max(values)]
        study.add_trial(
            create_trial(
                state=state,
                value=last if state == TrialState.COMPLETE else None,
                params={"x": 0.5},
                distributions={"x": FloatDistribution(0, 1)},
                intermediate_values=values,
            )
        )
    return study


def judged(study: optuna.Study, values: dict[int, float], rows: int | None = 500) -> bool:
    """Whether a new trial reporting ``values`` would be pruned at its last step."""
    trial = study.ask()
    if rows is not None:
        trial.set_user_attr(EVAL_ROWS_ATTR, rows)
    for step, value in sorted(values.items()):
        trial.report(value, step)
    return trial.should_prune()


DONE = TrialState.COMPLETE
FINISHED = [(DONE, {50: 0.80, 100: 0.85}), (DONE, {50: 0.82, 100: 0.86}),
            (DONE, {50: 0.84, 100: 0.87})]  # fmt: skip


def test_a_shortfall_within_one_standard_error_is_not_pruned() -> None:
    margin = math.sqrt(0.82 * 0.18 / 500)  # 0.0172 on 500 rows around the median 0.82
    study = study_with(TolerantMedianPruner(n_startup_trials=3), FINISHED)
    assert not judged(study, {50: 0.82 - margin + 0.002})
    assert judged(study, {50: 0.82 - margin - 0.002})
    # Optuna's own median stops the first one: any shortfall counts there.
    plain = study_with(optuna.pruners.MedianPruner(n_startup_trials=3), FINISHED)
    assert judged(plain, {50: 0.82 - margin + 0.002}, rows=None)


def test_the_margin_shrinks_with_more_validation_rows() -> None:
    study = study_with(TolerantMedianPruner(n_startup_trials=3), FINISHED)
    assert not judged(study, {50: 0.81}, rows=500)
    assert judged(study, {50: 0.81}, rows=50_000)  # standard error 0.0017


def test_a_noise_the_task_measured_replaces_the_proportion_formula() -> None:
    """Entity F1 is no proportion: its bootstrap standard error (eval_noise) is the margin."""
    from hpo import keys

    study = study_with(TolerantMedianPruner(n_startup_trials=3, proportion=False), FINISHED)
    for noise, pruned in ((0.03, False), (0.005, True)):
        trial = study.ask()
        trial.set_user_attr(keys.EVAL_NOISE, noise)
        trial.report(0.80, 50)  # 0.02 behind the median 0.82
        assert trial.should_prune() is pruned
    assert judged(study, {50: 0.80}, rows=None)  # neither: no margin for a non-proportion


def test_pruned_trials_count_in_the_median() -> None:
    pruned = [(TrialState.PRUNED, {50: 0.60}), (TrialState.PRUNED, {50: 0.62})]
    # Finished only: median 0.82; with the two pruned at step 50 too: 0.80.
    study = study_with(TolerantMedianPruner(n_startup_trials=3, margin=0.0), FINISHED + pruned)
    assert not judged(study, {50: 0.805})
    alone = study_with(TolerantMedianPruner(n_startup_trials=3, margin=0.0), FINISHED)
    assert judged(alone, {50: 0.805})


def test_waits_for_startup_trials_and_warmup_steps() -> None:
    few = study_with(TolerantMedianPruner(n_startup_trials=4, margin=0.0), FINISHED)
    assert not judged(few, {50: 0.1})  # 3 finished, 4 wanted
    early = study_with(TolerantMedianPruner(n_startup_trials=3, n_warmup_steps=51), FINISHED)
    assert not judged(early, {50: 0.1})
    assert judged(study_with(TolerantMedianPruner(n_startup_trials=3), FINISHED), {50: 0.1})


def test_best_value_so_far_is_judged_like_optuna() -> None:
    study = study_with(TolerantMedianPruner(n_startup_trials=3, margin=0.0), FINISHED)
    assert not judged(study, {50: 0.87, 100: 0.70})  # its best (0.87) beats step 100's 0.86
    assert judged(study, {50: 0.85, 100: 0.70})


def test_a_loss_has_no_default_margin_and_a_diverged_run_is_pruned() -> None:
    losses = [(DONE, {50: 0.40}), (DONE, {50: 0.45}), (DONE, {50: 0.50})]
    loss_pruner = TolerantMedianPruner(n_startup_trials=3, proportion=False)
    study = study_with(loss_pruner, losses, direction="minimize")
    assert judged(study, {50: 0.46})
    assert not judged(study, {50: 0.44})
    assert judged(study, {50: float("nan")})


def spec(pruner: dict[str, object], metric: str = "accuracy") -> StudySpec:
    return StudySpec.from_dict(
        {
            "study": {"name": "p", "metric": metric},
            "data": {"files": {"train": "x.csv"}},
            "pruner": pruner,
            "train": {"max_steps": 125, "eval_every": 25},
        }
    )


def test_build_pruner_gives_the_tolerant_median_with_its_waiting() -> None:
    pruner = build_pruner(spec({}))
    assert isinstance(pruner, TolerantMedianPruner)
    assert (pruner.n_startup_trials, pruner.n_warmup_steps) == (3, 42)  # a third of 125 steps
    assert pruner.margin is None and pruner.proportion
    assert not build_pruner(spec({}, metric="eval_loss")).proportion  # type: ignore[attr-defined]
    assert build_pruner(spec({"margin": 0.05})).margin == 0.05  # type: ignore[attr-defined]


def test_successive_halving_starts_its_rungs_at_a_fifth_of_each_trial_by_default() -> None:
    halving = {"name": "successive_halving"}
    pruner = build_pruner(spec(halving))
    assert isinstance(pruner, SuccessiveHalvingPruner)
    assert (pruner.min_resource, pruner.eval_every, pruner.reduction_factor) == (None, 25, 3)
    assert pruner.proportion and pruner.margin == 0.0
    assert build_pruner(spec({**halving, "min_resource": 50})).min_resource == 50  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("max_steps", "eval_every", "rung"),
    [(125, 25, 25), (125, 50, 50), (10, 25, 25), (4200, 50, 850), (1000, 100, 200), (101, 10, 30)],
)
def test_first_rung_is_the_first_evaluation_at_or_after_a_fifth(
    max_steps: int, eval_every: int, rung: int
) -> None:
    assert first_rung(max_steps, eval_every) == rung


def test_successive_halving_by_default_judges_a_long_trial_first_at_a_fifth() -> None:
    """1,000 steps, evaluations every 25: the first rung is step 200, the next 600. A trial far
    behind at step 25 goes on to 200 (a fixed first rung of 25 would stop it there)."""
    leader = {s: 0.9 for s in range(25, 1001, 25)}
    behind = {s: 0.6 for s in range(25, 1001, 25)}
    attrs = {MAX_STEPS: 1000}
    pruner = SuccessiveHalvingPruner(None, 3, eval_every=25)
    assert stops(pruner, [leader, behind], attrs=attrs) == [1000, 200]
    assert stops(SuccessiveHalvingPruner(25, 3), [leader, behind]) == [1000, 25]
    # without the trial's length (a trial from before hpo stored it), no rung is known: go on
    assert stops(pruner, [leader, behind]) == [1000, 1000]
    with pytest.raises(ValueError, match="eval_every"):
        SuccessiveHalvingPruner(None, 3)


def test_negative_margin_is_refused() -> None:
    with pytest.raises(SpecError, match=r"pruner\.margin"):
        spec({"margin": -0.1})


def stops(
    pruner: optuna.pruners.BasePruner,
    curves: list[dict[int, float]],
    minimize: bool = False,
    attrs: dict[str, float] | None = None,
) -> list[int]:
    """Run ``curves`` one after another through a live study; the step at which each stopped."""
    study = optuna.create_study(direction="minimize" if minimize else "maximize", pruner=pruner)
    out = []
    for values in curves:
        trial = study.ask()
        for key, attr in (attrs or {}).items():
            trial.set_user_attr(key, attr)
        for step, value in sorted(values.items()):
            trial.report(value, step)
            if trial.should_prune():
                study.tell(trial, state=TrialState.PRUNED)
                break
        else:
            study.tell(trial, value)
        out.append(step)
    return out


@pytest.mark.parametrize("minimize", [False, True])
def test_successive_halving_without_ties_stops_trials_where_optuna_does(minimize: bool) -> None:
    rng = __import__("random").Random(7)
    curves = [{s: rng.random() for s in (25, 50, 75, 100, 125)} for _ in range(30)]
    ours = stops(SuccessiveHalvingPruner(25, 3), curves, minimize)
    theirs = stops(optuna.pruners.SuccessiveHalvingPruner(25, 3), curves, minimize)
    assert ours == theirs
    assert ours.count(25) > 10 and ours.count(125) >= 1  # it does prune, and lets some finish


def test_successive_halving_trials_tied_at_a_rung_share_its_room() -> None:
    # Majority-class accuracy at the first rung (25) for the first four; the fifth has learned.
    stuck = {25: 0.564, 50: 0.564, 75: 0.564, 100: 0.6, 125: 0.62}
    learner = {25: 0.79, 50: 0.81, 75: 0.82, 100: 0.83, 125: 0.83}
    curves = [stuck, stuck, stuck, stuck, learner]
    # Optuna ranks a tie with the best of its ties: every stuck trial passes every rung.
    assert stops(optuna.pruners.SuccessiveHalvingPruner(25, 3), curves) == [125] * 5
    # Here only the first does: the room at a rung of 2-5 trials is one; the learner goes on.
    assert stops(SuccessiveHalvingPruner(25, 3), curves) == [125, 25, 25, 25, 125]


def test_successive_halving_when_every_trial_ties_one_in_three_goes_on() -> None:
    flat = {25: 0.5, 50: 0.5, 75: 0.5, 100: 0.5, 125: 0.5}
    ours = stops(SuccessiveHalvingPruner(25, 3), [flat] * 12)
    # The room grows with the trials at the rung (1 up to 5 trials, 2 up to 8, 3, then 4).
    assert [n for n, step in enumerate(ours) if step > 25] == [0, 5, 8, 11]
    assert ours == [125, 25, 25, 25, 25, 75, 25, 25, 75, 25, 25, 75]


def test_successive_halving_stops_a_diverged_run_and_judges_each_rung_once() -> None:
    assert stops(SuccessiveHalvingPruner(25, 3), [{25: float("nan"), 50: 0.9}]) == [25]
    # Reports between rungs (every 10 steps) are not judged; a rung uses the first report at or
    # after its step, so a trial reporting at 30 is judged there against others' 30s.
    pruner = SuccessiveHalvingPruner(25, 3)
    curves = [{10: 0.5, 30: 0.8, 80: 0.8}, {10: 0.9, 30: 0.7, 40: 0.99, 80: 0.99}]
    assert stops(pruner, curves) == [80, 30]


def test_successive_halving_refuses_a_bad_rung_schedule() -> None:
    with pytest.raises(ValueError, match="reduction_factor >= 2"):
        SuccessiveHalvingPruner(25, 1)


def test_successive_halving_scores_within_noise_of_a_constant_answer_tie() -> None:
    # SST-2 at step 25: the fast learner passes through the majority class (0.564), two slow
    # learners have not collapsed to it yet (0.58, 0.584); all three end where their speed says.
    fast = {25: 0.564, 50: 0.78, 75: 0.81, 100: 0.82, 125: 0.82}
    slow = {25: 0.58, 50: 0.57, 75: 0.57, 100: 0.58, 125: 0.6}
    slower = {25: 0.584, 50: 0.566, 75: 0.57, 100: 0.57, 125: 0.57}
    curves = [fast, slow, slower, {25: 0.79, 50: 0.8, 75: 0.82, 100: 0.83, 125: 0.83}]
    pruner = SuccessiveHalvingPruner(25, 3)
    # Without the attributes the slow ones rank above the fast one's 0.564 and go on to 75.
    assert stops(pruner, curves) == [125, 75, 75, 125]
    # One standard error of 0.564 on 500 rows is 0.022: up to 0.586 shows nothing learned yet.
    seen = {CONSTANT_SCORE_ATTR: 0.564, EVAL_ROWS_ATTR: 500}
    assert stops(pruner, curves, attrs=seen) == [125, 25, 25, 125]
    # On 50,000 rows the noise is 0.002: 0.58 is a measured step above the constant answer.
    assert stops(pruner, curves, attrs={**seen, EVAL_ROWS_ATTR: 50_000}) == [125, 75, 75, 125]
    # Not for a loss, which no standard error of a proportion describes.
    plain = SuccessiveHalvingPruner(25, 3, proportion=False)
    assert stops(plain, curves, attrs=seen) == [125, 75, 75, 125]


def test_hyperband_deals_trials_to_brackets_in_proportion() -> None:
    pruner = HyperbandPruner(25, 125, 3)
    # Rungs 25 and 75 fit in 125 steps: two brackets, 3 trials to 2 (the paper's ceil(n r^s/(s+1))).
    assert pruner.budgets(125) == [3, 2]
    assert [pruner.bracket(n, [3, 2]) for n in range(12)] == [0, 0, 0, 1, 1, 0, 0, 0, 1, 1, 0, 0]
    # The paper's example, R = 81 and eta = 3: 81, 34, 15, 8 and 5 configurations.
    assert HyperbandPruner(1, 81, 3).budgets(81) == [81, 34, 15, 8, 5]
    assert pruner.budgets(24) == [1]  # not even one rung fits: plain successive halving


def bracket_curves(curves: list[dict[int, float]], b: int) -> list[dict[int, float]]:
    return [c for n, c in enumerate(curves) if HyperbandPruner(25, 125).bracket(n, [3, 2]) == b]


@pytest.mark.parametrize("minimize", [False, True])
def test_hyperband_is_successive_halving_within_each_bracket(minimize: bool) -> None:
    rng = __import__("random").Random(11)
    curves = [{s: rng.random() for s in (25, 50, 75, 100, 125)} for _ in range(30)]
    ours = stops(HyperbandPruner(25, 125, 3), curves, minimize)
    for b in (0, 1):
        alone = bracket_curves(curves, b)
        theirs = stops(optuna.pruners.SuccessiveHalvingPruner(25, 3, b), alone, minimize)
        assert bracket_curves(ours, b) == theirs  # type: ignore[arg-type]
    later = bracket_curves(ours, 1)  # type: ignore[arg-type]
    assert 25 not in later and 75 in later and 125 in later  # its first rung is 75
    # Ties share a rung's room within a bracket, as in hpo's successive halving.
    flat = {25: 0.5, 50: 0.5, 75: 0.5, 100: 0.5, 125: 0.5}
    assert stops(HyperbandPruner(25, 125, 3), [flat] * 12) == [
        125, 25, 25, 125, 75, 25, 25, 75, 75, 75, 25, 25,
    ]  # fmt: skip


def test_hyperband_reads_the_trial_length_when_not_given() -> None:
    rng = __import__("random").Random(3)
    curves = [{s: rng.random() for s in (25, 50, 75, 100, 125)} for _ in range(12)]
    given = stops(HyperbandPruner(25, 125), curves)
    assert stops(HyperbandPruner(25), curves, attrs={"max_steps": 125}) == given
    assert 25 in given and 75 in given
    assert stops(HyperbandPruner(25), curves) == [125] * 12  # no length known: no pruning
    with pytest.raises(ValueError, match="max_resource"):
        HyperbandPruner(25, 0)


def test_build_pruner_gives_hpo_hyperband_over_the_trial_length() -> None:
    pruner = build_pruner(spec({"name": "hyperband", "reduction_factor": 4}))
    assert isinstance(pruner, HyperbandPruner)
    assert (pruner.min_resource, pruner.max_resource, pruner.reduction_factor) == (25, 125, 4)
    assert pruner.proportion
    for_loss = build_pruner(spec({"name": "hyperband"}, metric="eval_loss"))
    assert isinstance(for_loss, HyperbandPruner) and not for_loss.proportion


@pytest.mark.parametrize("max_steps", [40, 60])
def test_no_pruner_decides_at_a_trials_last_evaluation(
    tiny_model_dir: Path, sentiment_csv: Path, max_steps: int
) -> None:
    """A trial far behind the median is stopped at step 40 when steps remain after it, and
    kept as finished when step 40 is its last evaluation: stopping there saves nothing."""
    from hpo.search.objective import Objective
    from hpo.search.study import build_sampler

    raw = spec_dict(
        tiny_model_dir,
        sentiment_csv,
        study={"n_trials": 2},
        pruner={"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0, "margin": 0.0},
        train={"max_steps": max_steps, "eval_every": 20},
        sampler={"name": "tpe", "seed": 0, "n_startup_trials": 1,
                 "first_trials": [{"learning_rate": 5e-3}, {"learning_rate": 1e-5}]},
        space={"learning_rate": {"low": 1e-5, "high": 5e-3, "log": True}, "frozen_layers": 0},
    )  # fmt: skip
    s = StudySpec.from_dict(raw)
    study = optuna.create_study(
        direction="maximize", sampler=build_sampler(s), pruner=build_pruner(s)
    )
    for params in s.sampler.first_trials or []:
        study.enqueue_trial(params)
    study.optimize(Objective(s), n_trials=2)
    good, slow = study.trials
    assert good.state == TrialState.COMPLETE
    assert slow.intermediate_values[40] < good.intermediate_values[40] - 0.1  # far behind
    if max_steps == 60:
        assert slow.state == TrialState.PRUNED and slow.last_step == 40
    else:  # step 40 is its last evaluation
        assert slow.state == TrialState.COMPLETE and slow.value == slow.intermediate_values[40]


def test_successive_halving_lets_a_trial_within_the_margin_of_the_room_go_on() -> None:
    best = {25: 0.80, 50: 0.81, 75: 0.82, 100: 0.83, 125: 0.83}
    close = {25: 0.79, 50: 0.80, 75: 0.815, 100: 0.82, 125: 0.83}
    behind = {25: 0.70, 50: 0.72, 75: 0.74, 100: 0.75, 125: 0.76}
    curves = [best, close, behind]
    assert stops(SuccessiveHalvingPruner(25, 3), curves) == [125, 25, 25]
    # 0.79 is 0.01 behind the last value inside the room (0.80): evaluation cannot tell them apart
    assert stops(SuccessiveHalvingPruner(25, 3, margin=0.02), curves) == [125, 125, 25]
    # where nothing has separated yet (every trial at one score), no trial stops at that rung
    flat = {25: 0.5, 50: 0.5, 75: 0.5, 100: 0.5, 125: 0.5}
    assert stops(SuccessiveHalvingPruner(25, 3, margin=0.02), [flat] * 6) == [125] * 6
    with pytest.raises(ValueError, match="margin >= 0"):
        SuccessiveHalvingPruner(25, 3, margin=-0.1)


def test_build_pruner_passes_the_margin_to_successive_halving() -> None:
    pruner = build_pruner(spec({"name": "successive_halving", "margin": 0.03}))
    assert isinstance(pruner, SuccessiveHalvingPruner) and pruner.margin == 0.03
    assert build_pruner(spec({"name": "successive_halving"})).margin == 0.0
    assert build_pruner(spec({"name": "hyperband", "margin": 0.01})).margin == 0.01
