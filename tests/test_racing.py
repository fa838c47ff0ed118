"""Racing: the last trials of a study re-run the leading configurations with new seeds."""

from __future__ import annotations

from typing import Any

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from hpo import keys
from hpo.cli.main import cli
from hpo.config.spec import StudySpec
from hpo.errors import SpecError
from hpo.final.best import top_trials
from hpo.search.racing import SEED_STRIDE, RacingSampler, configurations
from tests.conftest import spec_dict, toml_text


def _x(trial: optuna.Trial) -> float:
    return trial.suggest_float("x", 0.0, 1.0)


def _study(race: RacingSampler) -> optuna.Study:
    return optuna.create_study(direction="maximize", sampler=race)


def test_the_last_trials_rerun_the_three_leaders_fewest_runs_first() -> None:
    race = RacingSampler(optuna.samplers.RandomSampler(seed=3), 10, 4, maximize=True)
    study = _study(race)
    study.optimize(_x, n_trials=10)
    trials = study.get_trials()
    search, raced = trials[:6], trials[6:]
    assert len({t.params["x"] for t in search}) == 6  # the search sampled six configurations
    leaders = sorted(search, key=lambda t: -t.params["x"])[:3]
    # every leader once, best first (ties in runs go to the better mean), then the best again
    expected = [leaders[0], leaders[1], leaders[2], leaders[0]]
    assert [t.params for t in raced] == [t.params for t in expected]


def test_a_spend_budget_races_when_what_is_left_pays_for_the_race() -> None:
    race = RacingSampler(
        optuna.samplers.RandomSampler(seed=1), 10**5, 2, True, budget={"samples": 1000}
    )
    study = _study(race)

    def objective(trial: optuna.Trial) -> float:
        trial.set_user_attr(keys.TRAIN_SAMPLES, 200)
        trial.set_user_attr(keys.FULL_TRIAL, {"samples": 200, "flops": 1.0})
        return _x(trial)

    study.optimize(objective, n_trials=6)
    xs = [t.params["x"] for t in study.get_trials()]
    # 3 trials spend 600 samples; 400 are left, what 2 unpruned trials cost: the race begins
    assert len(set(xs[:3])) == 3
    assert set(xs[3:]) <= set(xs[:3])
    assert xs[3] == max(xs[:3])


def test_configurations_rank_by_mean_over_seeds_not_the_luckiest_run() -> None:
    study = optuna.create_study(direction="maximize")
    for params, value in [({"a": 1}, 0.90), ({"a": 2}, 0.85), ({"a": 1}, 0.70), ({"a": 2}, 0.86)]:
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions={"a": optuna.distributions.IntDistribution(1, 2)},
                value=value,
            )
        )
    ranked = configurations(study.get_trials(), maximize=True)
    assert [c.first.params["a"] for c in ranked] == [2, 1]  # 0.855 beats 0.80
    assert ranked[0].numbers == (1, 3)
    assert ranked[1].mean == pytest.approx(0.80)


@pytest.mark.parametrize(
    ("study", "error"),
    [
        ({"n_trials": 4, "race_trials": 4}, "`study.race_trials` (4) must be below"),
        ({"n_trials": 4, "race_trials": -1}, "study.race_trials"),
    ],
)
def test_a_race_that_leaves_no_search_is_one_line(
    tiny_model_dir: Any, sentiment_csv: Any, study: dict[str, int], error: str
) -> None:
    raw = spec_dict(tiny_model_dir, sentiment_csv, study=study)
    with pytest.raises(SpecError, match=error.replace("(", r"\(").replace(")", r"\)")):
        StudySpec.from_dict(raw)


def test_a_raced_study_reruns_its_leaders_with_new_seeds_and_reports_their_means(
    tmp_path: Any, tiny_model_dir: Any, sentiment_csv: Any
) -> None:
    raw = spec_dict(
        tiny_model_dir,
        sentiment_csv,
        study={"name": "race", "n_trials": 5, "race_trials": 2},
        pruner={"name": "successive_halving", "reduction_factor": 2},
    )
    raw["data"]["max_train_samples"] = 96
    path = tmp_path / "race.toml"
    path.write_text(toml_text(raw))
    db = f"sqlite:///{tmp_path / 'race.db'}"
    result = CliRunner().invoke(cli, ["run", str(path), "--storage", db])
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="race", storage=db)
    trials = study.get_trials()
    assert len(trials) == 5
    search, raced = trials[:3], trials[3:]
    assert all(keys.RACE_OF not in t.user_attrs for t in search)
    done = [t for t in search if t.state == TrialState.COMPLETE]
    for t in raced:
        first = trials[t.user_attrs[keys.RACE_OF]]
        assert first in done  # a complete configuration of the search...
        assert t.params == first.params  # ...re-run as it was...
        assert t.user_attrs[keys.RACE_SEED] in (SEED_STRIDE, 2 * SEED_STRIDE)  # ...on a new seed
        assert t.state == TrialState.COMPLETE  # never pruned: its score is at the last step
        assert t.user_attrs[keys.STEPS] == t.user_attrs[keys.MAX_STEPS]
    out = " ".join(result.output.split())
    assert "raced: mean validation accuracy per configuration" in out
    ranked = configurations(study.get_trials(), maximize=True)
    assert [t.number for t in top_trials(study, 2, True)] == [c.first.number for c in ranked[:2]]
    # the report's headline is the configuration `hpo best` retrains, by its mean over seeds
    chosen = top_trials(study, 1, True)[0]
    runs = [t.value for t in trials if t.state == TrialState.COMPLETE and t.params == chosen.params]
    mean = sum(runs) / len(runs)  # type: ignore[arg-type]
    best = max(t.value for t in trials if t.state == TrialState.COMPLETE)  # type: ignore[type-var]
    single = next(t for t in trials if t.value == best)
    assert (
        f"best configuration (trial #{chosen.number}): accuracy {mean:.4g} mean over "
        f"{len(runs)} seed(s); best single run #{single.number} {best:.4g}"
    ) in out  # whole: as a panel's title it was cut at the panel's width
    # report --json states the race for scripts: the configurations, best mean first
    import json

    facts = json.loads(
        CliRunner().invoke(cli, ["report", "race", "--storage", db, "--json"]).output
    )
    assert [(r["first"], r["values"]) for r in facts["race"]] == [
        (c.first.number, list(c.values)) for c in ranked[: len(facts["race"])]
    ]
    assert facts["race"][0]["mean"] == pytest.approx(mean)


def test_the_race_line_says_one_seed_where_a_configuration_ran_once() -> None:
    from hpo.search.racing import race_summary

    def run(number: int, x: float, value: float, **attrs: Any) -> optuna.trial.FrozenTrial:
        t = optuna.trial.create_trial(
            params={"x": x},
            distributions={"x": optuna.distributions.FloatDistribution(0, 1)},
            value=value,
            user_attrs=attrs,
        )
        t.number = number
        return t

    trials = [run(0, 0.1, 0.70), run(1, 0.2, 0.80), run(2, 0.1, 0.74, **{keys.RACE_OF: 0})]
    line = race_summary(trials, maximize=True, metric="accuracy")
    # #1 ran once: no spread to show; #0 ran twice: 0.70 and 0.74, mean 0.72, sd 0.0283
    assert line == (
        "raced: mean validation accuracy per configuration (first trial): "
        "#1 0.8000 (one seed); #0 0.7200 ± 0.0283 over 2 seeds"
    )
