"""Screening (study.screen): the first trials train to their first evaluation, then the best of
them re-run in full."""

from __future__ import annotations

import re
from typing import Any

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from hpo import keys
from hpo.cli.main import cli
from hpo.config.spec import StudySpec
from hpo.errors import SpecError, TrialFailure
from hpo.final.best import top_trials
from hpo.search.screening import ScreeningSampler, ranked_screens, screen_caution, screen_role
from tests.conftest import spec_dict, toml_text


def _toy(fail: set[int] | None = None) -> Any:
    """An objective with the real screen bookkeeping: a screen reports x at its one step and
    stops; any other trial reports x at the end. Trial numbers in ``fail`` fail."""

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        steps = screen_role(trial, full_steps=10, eval_every=2)
        if trial.number in (fail or set()):
            raise RuntimeError("a worker died")
        if steps is not None:
            trial.report(x, steps)
            raise optuna.TrialPruned()
        return x

    return objective


def test_the_best_screens_are_kept_in_order_and_a_failed_screen_gives_way() -> None:
    sampler = ScreeningSampler(optuna.samplers.RandomSampler(seed=4), 5, 2, maximize=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(_toy(fail={1}), n_trials=9, catch=(RuntimeError,))
    trials = study.get_trials()
    screens = [t for t in trials if keys.SCREENED in t.user_attrs]
    # trial 1 failed before it was scored: a sixth trial screened in its place
    assert [t.number for t in screens] == [0, 1, 2, 3, 4, 5]
    assert all(t.user_attrs[keys.SCREENED] == 2 for t in screens)
    scored = sorted(
        (t for t in screens if t.state == TrialState.PRUNED), key=lambda t: -t.params["x"]
    )
    kept = [t for t in trials if keys.SCREEN_OF in t.user_attrs]
    assert [t.number for t in kept] == [6, 7]
    assert [t.user_attrs[keys.SCREEN_OF] for t in kept] == [scored[0].number, scored[1].number]
    assert [t.params for t in kept] == [scored[0].params, scored[1].params]
    # a kept trial that failed and is retried with its parameters (as the heartbeat's retry
    # enqueues it) is kept again; a given configuration that is no screen's is not
    assert trials[8].params["x"] not in {t.params["x"] for t in screens}
    assert keys.SCREEN_OF not in trials[8].user_attrs


def test_a_retried_kept_trial_is_kept_and_a_given_one_runs_as_asked() -> None:
    sampler = ScreeningSampler(optuna.samplers.RandomSampler(seed=4), 3, 2, maximize=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.optimize(_toy(fail={3}), n_trials=4, catch=(RuntimeError,))
    failed = study.trials[3]
    assert failed.state == TrialState.FAIL and keys.SCREEN_OF in failed.user_attrs
    study.enqueue_trial({"x": 0.123})  # given: no screen ran it
    study.enqueue_trial(failed.params)  # the retry
    study.optimize(_toy(), n_trials=3)
    given, retry, last = study.trials[4:]
    assert given.params == {"x": 0.123} and keys.SCREEN_OF not in given.user_attrs
    assert retry.user_attrs[keys.SCREEN_OF] == failed.user_attrs[keys.SCREEN_OF]
    best_two = sorted(study.trials[:3], key=lambda t: -t.params["x"])[:2]
    assert last.user_attrs[keys.SCREEN_OF] == best_two[1].number


def _screen_at(number: int, value: float, **attrs: Any) -> optuna.trial.FrozenTrial:
    t = optuna.trial.create_trial(
        state=TrialState.PRUNED,
        params={"x": value},
        distributions={"x": optuna.distributions.FloatDistribution(-10, 10)},
        intermediate_values={25: value},
        user_attrs={keys.SCREENED: 25, **attrs},
    )
    t.number = number
    return t


def _kept_of(number: int, screen: int, value: float) -> optuna.trial.FrozenTrial:
    t = optuna.trial.create_trial(value=value, user_attrs={keys.SCREEN_OF: screen})
    t.number = number
    return t


def test_screens_rank_by_their_one_evaluation_in_the_study_direction() -> None:
    trials = [
        _screen_at(0, 0.5),
        _screen_at(1, 0.2),
        _screen_at(2, 0.9, **{keys.INFEASIBLE: "out of memory"}),
        _screen_at(3, 0.2),
    ]
    trials.append(optuna.trial.create_trial(value=0.0))  # a complete trial is no screen
    assert [t.number for t in ranked_screens(trials, maximize=True)] == [0, 1, 3]
    assert [t.number for t in ranked_screens(trials, maximize=False)] == [1, 3, 0]


def test_the_report_cautions_when_a_kept_screen_had_learned_nothing() -> None:
    # accuracy on 100 rows with a constant answer of 0.5: one standard error is
    # sqrt(0.5 * 0.5 / 100) = 0.05, so a screen shows it learned above 0.55
    attrs = {keys.CONSTANT_SCORE: 0.5, keys.EVAL_ROWS: 100}

    def study(second: float) -> list[optuna.trial.FrozenTrial]:
        screens = [
            _screen_at(0, 0.70, **attrs),
            _screen_at(1, second, **attrs),
            _screen_at(2, 0.52, **attrs),
            _screen_at(3, 0.30, **attrs),
        ]
        return [*screens, _kept_of(4, 0, 0.8), _kept_of(5, 1, 0.6)]

    # 0.54 is above the constant answer but within its noise: the second kept screen is chance
    caution = screen_caution(study(0.54), maximize=True, proportion=True)
    assert caution is not None
    assert caution.startswith("caution: 1 of 4 screens scored above a constant answer (0.5000)")
    assert "the kept screen(s) #1 had not" in caution
    # 0.56 is beyond the noise: both kept screens had learned something
    assert screen_caution(study(0.56), maximize=True, proportion=True) is None
    # a loss has no constant answer to compare with; neither does a trial that stored none
    assert screen_caution(study(0.54), maximize=False, proportion=True) is None
    bare = [_screen_at(0, 0.54), _screen_at(1, 0.53), _kept_of(2, 0, 0.6)]
    assert screen_caution(bare, maximize=True, proportion=True) is None


def test_a_screened_study_trains_its_screens_short_and_the_kept_ones_whole(
    tmp_path: Any, tiny_model_dir: Any, sentiment_csv: Any
) -> None:
    raw = spec_dict(
        tiny_model_dir,
        sentiment_csv,
        study={"name": "screen", "n_trials": 6, "screen": {"trials": 4, "keep": 2}},
        # a pruner that would stop half the trials at every rung: the kept ones are exempt
        pruner={"name": "successive_halving", "reduction_factor": 2},
        sampler={"name": "tpe", "seed": 0},
    )
    raw["data"]["max_train_samples"] = 96
    path = tmp_path / "screen.toml"
    path.write_text(toml_text(raw))
    db = f"sqlite:///{tmp_path / 'screen.db'}"
    result = CliRunner().invoke(cli, ["run", str(path), "--storage", db])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="screen", storage=db)
    trials = study.get_trials()
    screens, kept = trials[:4], trials[4:]
    for t in screens:
        assert t.state == TrialState.PRUNED
        assert t.user_attrs[keys.SCREENED] == 10  # train.eval_every
        assert t.user_attrs[keys.STEPS] == 10
        assert t.user_attrs[keys.TRAIN_SAMPLES] == 10 * 16
        assert list(t.intermediate_values) == [10]
    best = sorted(screens, key=lambda t: (-t.intermediate_values[10], t.number))[:2]
    assert [t.user_attrs[keys.SCREEN_OF] for t in kept] == [t.number for t in best]
    for t, screen in zip(kept, best, strict=True):
        assert t.params == screen.params  # the seed too
        assert t.state == TrialState.COMPLETE
        assert t.user_attrs[keys.STEPS] == t.user_attrs[keys.MAX_STEPS] == 30
        assert sorted(t.intermediate_values) == [10, 20, 30]
    assert top_trials(study, 1, maximize=True)[0].number in (4, 5)
    out = " ".join(result.output.split())
    assert "screened: 4 trial(s) to step 10" in out
    assert "2 complete, 4 pruned (4 of them screens)" in out
    assert "pruning and screening saved 80 of 180 training steps" in out  # 4 x (30 - 10)
    assert f"#{best[0].number} ({screen_score_text(best[0])}) as #4" in out
    # the tiny model learns nothing in 10 steps: every screen sits at the constant answer, so
    # the report says the kept screens were chosen by chance
    for t in screens:
        rows, constant = t.user_attrs[keys.EVAL_ROWS], t.user_attrs[keys.CONSTANT_SCORE]
        assert t.intermediate_values[10] <= constant + (constant * (1 - constant) / rows) ** 0.5
    blind = ", ".join(f"#{t.number}" for t in sorted(best, key=lambda t: t.number))
    assert "caution: 0 of 4 screens scored above a constant answer (0.5000)" in out
    assert f"the kept screen(s) {blind} had not, so chance chose them" in out
    # report --json states the screens and the caution for scripts
    import json

    report = CliRunner().invoke(cli, ["report", "screen", "--storage", db, "--json"])
    facts = json.loads(report.output)
    kept_as = {t.user_attrs[keys.SCREEN_OF]: t.number for t in kept}
    assert [(r["number"], r["kept_as"]) for r in facts["screens"]] == [
        (t.number, kept_as.get(t.number))
        for t in sorted(screens, key=lambda t: (-t.intermediate_values[10], t.number))
    ]
    assert facts["screen_caution"].startswith("caution: 0 of 4 screens scored above")


def screen_score_text(t: optuna.trial.FrozenTrial) -> str:
    return f"{t.intermediate_values[10]:.4f}"


@pytest.mark.parametrize(
    ("study", "error"),
    [
        ({"n_trials": 6, "screen": {"trials": 4}}, "`study.screen` takes trials and keep"),
        ({"n_trials": 6, "screen": {"trials": 3, "keep": 3}}, "`study.screen.keep` (3) must be"),
        ({"n_trials": 6, "screen": {"trials": 1, "keep": 1}}, "`study.screen.trials` must be at"),
        ({"n_trials": 5, "screen": {"trials": 4, "keep": 2}}, "needs trials + keep = 6 trials"),
        (
            {"n_trials": 8, "race_trials": 2, "screen": {"trials": 4, "keep": 2}},
            "`study.screen` and `study.race_trials` do not combine",
        ),
        (
            {"n_trials": 6, "screen": {"trials": 4, "keep": 2}, "eval_every": 30},
            "`train.eval_every` (30) is not below `train.max_steps` (30)",
        ),
    ],
)
def test_a_screen_that_cannot_run_is_refused_in_one_line(
    tiny_model_dir: Any, sentiment_csv: Any, study: dict[str, Any], error: str
) -> None:
    study = dict(study)
    every = study.pop("eval_every", 10)
    raw = spec_dict(tiny_model_dir, sentiment_csv, study=study, train={"eval_every": every})
    with pytest.raises(SpecError, match=re.escape(error)):
        StudySpec.from_dict(raw)


def test_a_bad_screen_in_a_study_file_exits_with_one_line(
    tmp_path: Any, tiny_model_dir: Any, sentiment_csv: Any
) -> None:
    raw = spec_dict(
        tiny_model_dir, sentiment_csv, study={"n_trials": 4, "screen": {"trials": 4, "keep": 1}}
    )
    path = tmp_path / "bad.toml"
    path.write_text(toml_text(raw))
    db = f"sqlite:///{tmp_path / 'bad.db'}"
    result = CliRunner().invoke(cli, ["run", str(path), "--storage", db])
    assert result.exit_code == 2  # wrong input, as click's usage errors
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "needs trials + keep = 5 trials" in lines[0], result.output
    assert "Traceback" not in result.output


def test_a_screen_scores_as_a_study_of_that_many_steps_and_a_kept_trial_as_a_whole_one(
    tmp_path: Any, tiny_model_dir: Any, sentiment_csv: Any
) -> None:
    """What the screen measured is a short run of its own, its schedule fitted to its steps,
    and the kept trial is the unpruned full run: each equals a plain study's trial."""

    def run(name: str, study: dict[str, Any], train: dict[str, Any], given: Any = None) -> Any:
        raw = spec_dict(
            tiny_model_dir,
            sentiment_csv,
            study={"name": name, "metric": "eval_loss", **study},  # a finer score than accuracy
            train=train,
            space={"warmup_ratio": {"low": 0.0, "high": 0.3}},
        )
        raw["data"]["max_train_samples"] = 64
        if given is not None:
            raw["sampler"]["first_trials"] = [given]
        path = tmp_path / f"{name}.toml"
        path.write_text(toml_text(raw))
        db = f"sqlite:///{tmp_path / 'all.db'}"
        result = CliRunner().invoke(cli, ["run", str(path), "--storage", db])
        assert result.exit_code == 0, result.output
        return optuna.load_study(study_name=name, storage=db).get_trials()

    screened = run("screened", {"n_trials": 3, "screen": {"trials": 2, "keep": 1}}, {})
    kept = screened[2]
    screen = screened[kept.user_attrs[keys.SCREEN_OF]]
    given = {k: screen.params[k] for k in ("learning_rate", "warmup_ratio", "frozen_layers")}
    (short,) = run("short", {"n_trials": 1}, {"max_steps": 10}, given)
    (whole,) = run("whole", {"n_trials": 1}, {}, given)
    assert short.params == screen.params and whole.params == kept.params
    assert screen.intermediate_values[10] == short.value  # not the first 10 of 30 steps
    assert kept.value == whole.value
    assert kept.intermediate_values[10] != screen.intermediate_values[10]


def test_workers_together_screen_the_first_trials_and_keep_distinct_ones(
    tiny_model_dir: Any, sentiment_csv: Any, tmp_path: Any
) -> None:
    """Two ``hpo worker`` processes on one SQLite study: four screens, two kept trials, each
    a different screened configuration, whichever worker ran what."""
    from hpo.execution import launch
    from hpo.execution.storage import open_storage
    from hpo.search.study import create_or_resume

    raw = spec_dict(
        tiny_model_dir,
        sentiment_csv,
        study={"name": "together", "n_trials": 6, "screen": {"trials": 4, "keep": 2}},
    )
    raw["data"]["max_train_samples"] = 64
    url = f"sqlite:///{tmp_path / 'together.db'}"
    study, _ = create_or_resume(StudySpec.from_dict(raw), open_storage(url))
    procs = launch.spawn("together", url, [launch.Slot(i, None, 1) for i in range(2)])
    assert [p.wait(timeout=240) for p in procs] == [0, 0]
    trials = study.get_trials()
    assert len({t.user_attrs[keys.WORKER] for t in trials}) >= 2  # the work was shared
    screens = [t for t in trials if keys.SCREENED in t.user_attrs]
    kept = [t for t in trials if keys.SCREEN_OF in t.user_attrs]
    assert sorted(t.number for t in screens) == [0, 1, 2, 3]
    assert all(t.state == TrialState.PRUNED for t in screens)
    assert len({t.user_attrs[keys.SCREEN_OF] for t in kept}) == 2
    for t in kept:
        assert t.state == TrialState.COMPLETE
        assert t.params == trials[t.user_attrs[keys.SCREEN_OF]].params


def test_a_screen_as_long_as_its_trial_is_refused_before_any_trial(
    tmp_path: Any, tiny_model_dir: Any, sentiment_csv: Any
) -> None:
    """A trial of one epoch has as many steps as the data and the batch size give; where the
    largest batch size leaves no more steps than a screen, validate and run refuse the study
    in one line, before it is stored."""
    raw = spec_dict(
        tiny_model_dir,
        sentiment_csv,
        study={"name": "long", "n_trials": 3, "screen": {"trials": 2, "keep": 1}},
        train={"eval_every": 3, "epochs": 1.0},
    )
    del raw["train"]["max_steps"]
    raw["data"]["max_train_samples"] = 96  # 6 steps at batch 16, 3 at batch 32
    raw["space"]["batch_size"] = [16, 32]
    path = tmp_path / "long.toml"
    path.write_text(toml_text(raw))
    db = tmp_path / "long.db"
    for args in (["validate", str(path)], ["run", str(path), "--storage", f"sqlite:///{db}"]):
        out = CliRunner().invoke(cli, args)
        assert out.exit_code == 2, out.output
        assert out.stderr.count("\n") == 1 and "Traceback" not in out.output
        assert (
            "1 epoch(s) of 96 training rows at batch_size 32 is only 3 steps, so a screen "
            "would be a whole trial; set eval_every below 3, or keep batch_size below 32"
        ) in out.stderr
    assert not db.exists() or "long" not in optuna.get_all_study_names(f"sqlite:///{db}")
    # screens of 2 steps fit in every trial
    raw["train"]["eval_every"] = 2
    path.write_text(toml_text(raw))
    assert CliRunner().invoke(cli, ["validate", str(path)]).exit_code == 0


def test_a_screen_whose_trial_turns_out_too_short_fails_with_the_reason() -> None:
    # the guard behind the up-front check: a trial whose length only its run knows
    sampler = ScreeningSampler(optuna.samplers.RandomSampler(seed=0), 2, 1, maximize=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)

    def objective(trial: optuna.Trial) -> float:
        trial.suggest_float("x", 0.0, 1.0)
        screen_role(trial, full_steps=4, eval_every=10)
        return 0.0

    with pytest.raises(TrialFailure, match=r"`train.eval_every` \(10\) below a trial's 4 steps"):
        study.optimize(objective, n_trials=1)
