"""A pruner's first decision placed from the study's own complete trials (``learn_rung``): the
first evaluation at which their scores have spread beyond one evaluation's noise and rank as
they finished."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState, create_trial
from rich.console import Console

from hpo.cli.main import cli
from hpo.config.spec import StudySpec
from hpo.errors import SpecError
from hpo.keys import MAX_STEPS
from hpo.results.insights import render_insights
from hpo.search.pruners import EVAL_ROWS_ATTR, SuccessiveHalvingPruner, TolerantMedianPruner
from hpo.search.rungs import learned_rung
from hpo.search.study import build_pruner
from tests.conftest import spec_dict, toml_text
from tests.test_pruners import judged, spec, stops, study_with

DONE = TrialState.COMPLETE
# Finals A > B > C. At step 25 the three sit within noise of each other (0.01 apart; one
# standard error on 500 rows near 0.61 is 0.022); at 50 they rank C > A > B; at 75 A > B > C,
# 0.05 apart: the first step that tells them apart as they finish.
A = {25: 0.62, 50: 0.70, 75: 0.80, 100: 0.84, 125: 0.86}
B = {25: 0.61, 50: 0.65, 75: 0.75, 100: 0.80, 125: 0.82}
C = {25: 0.60, 50: 0.72, 75: 0.70, 100: 0.74, 125: 0.76}
BEHIND = {25: 0.30, 50: 0.40, 75: 0.45, 100: 0.48, 125: 0.50}


def rung_of(curves: list[dict[int, float]], rows: int | None = 500) -> int | None:
    study = study_with(optuna.pruners.NopPruner(), [(DONE, c) for c in curves])
    judged_trial = study.ask()
    if rows is not None:
        judged_trial.set_user_attr(EVAL_ROWS_ATTR, rows)
    frozen = study.get_trials(deepcopy=False)[-1]
    return learned_rung(study.get_trials(deepcopy=False), frozen, proportion=True)


def test_the_rung_is_the_first_step_that_ranks_the_trials_as_they_finished() -> None:
    assert rung_of([A, B, C]) == 75
    # without the noise of an evaluation (rows unknown) the spread is not checked: step 25
    # already ranks A > B > C
    assert rung_of([A, B, C], rows=None) == 25
    # with 50,000 rows one standard error is 0.002: the 0.01 spread at step 25 is real
    assert rung_of([A, B, C], rows=50_000) == 25


def test_no_rung_before_three_complete_trials_nor_where_the_order_never_holds() -> None:
    assert rung_of([A, B]) is None
    # C finishes best but trails until the end: no step before the last ranks it first
    late = {25: 0.5, 50: 0.55, 75: 0.6, 100: 0.65, 125: 0.95}
    assert rung_of([A, B, late]) is None


def test_successive_halving_learns_its_first_rung_and_stops_nothing_before() -> None:
    attrs = {EVAL_ROWS_ATTR: 500, MAX_STEPS: 125}
    learned = SuccessiveHalvingPruner(None, 3, eval_every=25, learn_rung=True)
    # B and C trail A at every step but run whole: three complete trials come first; the trial
    # far behind then stops at the learned step 75, not at 25
    assert stops(learned, [A, B, C, BEHIND], attrs=attrs) == [125, 125, 125, 75]
    fifth = SuccessiveHalvingPruner(None, 3, eval_every=25)
    assert stops(fifth, [A, B, C, BEHIND], attrs=attrs) == [125, 25, 25, 25]
    with pytest.raises(ValueError, match="min_resource"):
        SuccessiveHalvingPruner(25, 3, learn_rung=True)


def test_the_median_pruner_waits_for_the_learned_rung() -> None:
    finished = [(DONE, A), (DONE, B), (DONE, C)]
    learned = study_with(TolerantMedianPruner(n_startup_trials=3, learn_rung=True), finished)
    assert not judged(learned, {25: 0.3, 50: 0.3})
    assert judged(learned, {25: 0.3, 50: 0.3, 75: 0.3})
    plain = study_with(TolerantMedianPruner(n_startup_trials=3), finished)
    assert judged(plain, {25: 0.3, 50: 0.3})


def test_the_study_file_sets_it_for_the_pruners_that_read_it() -> None:
    assert build_pruner(spec({"learn_rung": True})).learn_rung  # type: ignore[attr-defined]
    halving = build_pruner(spec({"name": "successive_halving", "learn_rung": True}))
    assert halving.learn_rung  # type: ignore[attr-defined]
    with pytest.raises(SpecError, match=r"`pruner\.learn_rung` places the first rung"):
        spec({"name": "successive_halving", "learn_rung": True, "min_resource": 50})
    with pytest.raises(SpecError, match=r"`pruner\.learn_rung` is not read by pruner 'hyperband'"):
        spec({"name": "hyperband", "learn_rung": True})


def report_text(spec_raw: dict[str, object], trials: list[optuna.trial.FrozenTrial]) -> str:
    console = Console(width=200, record=True)
    console.print(render_insights(StudySpec.from_dict(spec_raw), trials))
    return " ".join(console.export_text().split())


def test_the_report_says_where_the_rung_was_learned() -> None:
    raw: dict[str, object] = {
        "study": {"name": "r"},
        "data": {"files": {"train": "x.csv"}},
        "pruner": {"name": "successive_halving", "learn_rung": True},
        "train": {"max_steps": 125, "eval_every": 25},
    }

    def trials(curves: list[dict[int, float]]) -> list[optuna.trial.FrozenTrial]:
        return [
            create_trial(
                state=DONE,
                value=c[max(c)],
                intermediate_values=c,
                user_attrs={EVAL_ROWS_ATTR: 500, MAX_STEPS: 125},
            )
            for c in curves
        ]

    text = report_text(raw, trials([A, B, C]))
    assert "learned rung: step 75, the first evaluation at which the 3 complete trials" in text
    assert "learned rung: none yet, 2 of the 3 complete trials" in report_text(raw, trials([A, B]))
    late = {25: 0.5, 50: 0.55, 75: 0.6, 100: 0.65, 125: 0.95}
    assert "learned rung: none; the 3 complete trials never ranked" in report_text(
        raw, trials([A, B, late])
    )
    plain = {**raw, "pruner": {"name": "successive_halving"}}
    assert "learned rung" not in report_text(plain, trials([A, B, C]))


def test_a_study_with_a_learned_rung_runs_its_first_trials_whole(
    tmp_path: Path, tiny_model_dir: Path, sentiment_csv: Path
) -> None:
    """A real study: successive halving that keeps one trial in two at each rung would stop
    some of the first trials; learning its rung, the first three run whole, and a later trial
    stops only at or after the rung learned from the trials complete before it."""
    raw = spec_dict(
        tiny_model_dir,
        sentiment_csv,
        study={"name": "learned", "n_trials": 6},
        pruner={"name": "successive_halving", "reduction_factor": 2, "learn_rung": True},
        sampler={"name": "random", "seed": 3},
    )
    # rates that learn the task in 60 steps and rates that do not: curves that separate
    raw["space"]["learning_rate"] = {"low": 3e-4, "high": 1e-2, "log": True}
    raw["space"]["frozen_layers"] = 0
    raw["train"]["max_steps"] = 60
    path = tmp_path / "learned.toml"
    path.write_text(toml_text(raw))
    db = f"sqlite:///{tmp_path / 'learned.db'}"
    result = CliRunner().invoke(cli, ["run", str(path), "--storage", db])
    assert result.exit_code == 0, result.output
    trials = optuna.load_study(study_name="learned", storage=db).get_trials()
    assert [t.state for t in trials[:3]] == [DONE] * 3
    for t in trials[3:]:
        before = [u for u in trials if u.state == DONE and u.datetime_complete < t.datetime_start]
        rung = learned_rung(before, t, proportion=True)
        if t.state == TrialState.PRUNED:
            assert rung is not None and t.last_step is not None and t.last_step >= rung, t
    # the first three teach a rung (curves that separate), and a later trial stops at it
    assert any(t.state == TrialState.PRUNED for t in trials[3:])
    done = [t for t in trials if t.state == DONE]
    expected = learned_rung(done, done[-1], proportion=True)
    out = " ".join(result.output.split())
    words = "none;" if expected is None else f"step {expected},"
    assert f"learned rung: {words}" in out
    report = CliRunner().invoke(cli, ["report", "learned", "--storage", db, "--json"])
    facts = json.loads(report.output)
    assert facts["learned_rung"] == {"step": expected, "complete_trials": len(done)}


def test_only_trials_as_long_as_the_judged_one_teach_its_rung() -> None:
    """With epochs and a searched batch size, trials differ in length: step 25 is a fifth of a
    125-step trial and a tenth of a 250-step one."""

    def done(curve: dict[int, float], length: int) -> optuna.trial.FrozenTrial:
        return create_trial(
            state=DONE, value=curve[max(curve)], intermediate_values=curve,
            user_attrs={EVAL_ROWS_ATTR: 500, MAX_STEPS: length},
        )  # fmt: skip

    short = [done(c, 125) for c in (A, B, C)]
    judged = create_trial(state=DONE, value=0.5, user_attrs={EVAL_ROWS_ATTR: 500, MAX_STEPS: 250})
    assert learned_rung(short, short[0], proportion=True) == 75
    assert learned_rung(short, judged, proportion=True) is None
