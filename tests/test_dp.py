"""Differentially private fine-tuning (hpo/strategies/privacy.py, hpo/training/private.py) on the
tiny BERT: the epsilon each trial stores, the privacy budget, frozen embeddings, bad input."""

from __future__ import annotations

import json
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from click.testing import CliRunner
from optuna.trial import TrialState
from rich.console import Console

from hpo import keys
from hpo.cli.main import cli
from hpo.config.sampling import Hyperparameters
from hpo.config.spec import StudySpec
from hpo.config.studyfile import load_spec
from hpo.errors import DependencyError, SpecError
from hpo.execution.storage import open_storage
from hpo.execution.workers import work
from hpo.final.best import top_trials
from hpo.results.report import render_report, summarize
from hpo.search import records
from hpo.search.objective import Objective
from hpo.search.preflight import preflight
from hpo.search.study import build_sampler, create_or_resume
from hpo.strategies import privacy
from hpo.training.loop import train
from tests.conftest import spec_dict, toml_text

STUDY = Path(__file__).resolve().parents[1] / "studies" / "private-sentiment.toml"
EMBEDDINGS = {f"bert.embeddings.{n}.weight" for n in ("word_embeddings", "position_embeddings",
              "token_type_embeddings")}  # fmt: skip


def private_spec(model: Path, data: Path, noises: list[float], **sections: Any) -> StudySpec:
    """A study whose first trials take ``noises`` in order (20 steps of batch 16 each)."""
    raw = spec_dict(
        model,
        data,
        study={"n_trials": len(noises)},
        sampler={"first_trials": [{"dp_noise_multiplier": n} for n in noises]},
        train={"max_steps": 20, "eval_every": 10},
        space={"dp_noise_multiplier": sorted(set(noises)), "frozen_layers": 0},
    )
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return StudySpec.from_dict(raw)


def run(spec: StudySpec, tmp_path: Path) -> tuple[optuna.Study, Objective]:
    study, _ = create_or_resume(spec, open_storage(f"sqlite:///{tmp_path / 'dp.db'}"))
    objective = Objective(spec)
    work(study, objective, spec.study.n_trials)
    return study, objective


def opacus_epsilon(accountant: str, noise: float, sample_rate: float, steps: int, delta: float):
    from opacus.accountants import create_accountant

    acc = create_accountant(accountant)
    for _ in range(steps):
        acc.step(noise_multiplier=noise, sample_rate=sample_rate)
    return float(acc.get_epsilon(delta=delta))


@pytest.mark.parametrize("accountant", ["prv", "rdp"])
def test_a_private_trial_stores_the_epsilon_opacus_computes_and_more_noise_spends_less(
    tiny_model_dir, sentiment_csv, tmp_path, accountant
) -> None:
    spec = private_spec(
        tiny_model_dir, sentiment_csv, [0.8, 2.0], privacy={"accountant": accountant}
    )
    study, objective = run(spec, tmp_path)
    rows = len(objective.prepare().train)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    spent = {}
    for t in trials:
        noise, eps = t.params["dp_noise_multiplier"], t.user_attrs[keys.DP_EPSILON]
        assert 0 < eps < math.inf
        assert t.user_attrs[keys.DP_DELTA] == 1e-5  # min(1e-5, 1 / (10 x 360 rows))
        expected = opacus_epsilon(accountant, noise, 16 / rows, t.user_attrs["steps"], 1e-5)
        assert eps == pytest.approx(expected, rel=1e-9)
        spent[noise] = eps
    assert spent[2.0] < spent[0.8] / 3  # more noise, much less privacy spent
    # Poisson sampling: rows per step vary around the expected 16 (not exactly 20 x 16)
    assert trials[0].user_attrs["train_samples"] != 20 * 16


def test_a_trial_over_the_target_epsilon_is_infeasible_and_never_the_best(
    tiny_model_dir, sentiment_csv, tmp_path
) -> None:
    # a learning rate too small to change a prediction: both trials score the same, so only
    # the budget can rank the first (lower-numbered) one below the second
    spec = private_spec(
        tiny_model_dir,
        sentiment_csv,
        [0.5, 3.0],
        privacy={"target_epsilon": 3.0},
        space={"learning_rate": 1e-9},
    )
    study, _ = run(spec, tmp_path)
    over, within = study.get_trials()
    assert over.value == within.value  # a tie, which Optuna alone gives to the first trial
    assert over.user_attrs[keys.DP_EPSILON] > 3.0 > within.user_attrs[keys.DP_EPSILON]
    assert over.constraints[keys.WITHIN_EPSILON] > 0 >= within.constraints[keys.WITHIN_EPSILON]
    assert "over privacy.target_epsilon 3" in over.user_attrs[keys.INFEASIBLE]
    assert study.best_trial.number == within.number
    summary = summarize("tiny", "accuracy", "maximize", study.get_trials())
    assert summary.best_number == within.number
    assert [t.number for t in top_trials(study, 5, True)] == [within.number]
    console = Console(record=True, width=160)
    console.print(render_report(summary, study.get_trials()))
    text = console.export_text()
    assert "accuracy against privacy spent" in text
    assert f"{over.user_attrs[keys.DP_EPSILON]:.3g}" in text and "over" in text
    # report --json carries the same facts: each private trial's epsilon and whether it is
    # within the target, lowest epsilon first
    from hpo.results.report_json import report_data

    facts = report_data("tiny", spec, study.get_trials(), study.user_attrs)
    assert facts["privacy"] == [
        {
            "number": t.number,
            "value": t.value,
            "epsilon": t.user_attrs[keys.DP_EPSILON],
            "delta": 1e-5,
            "within_target": t is within,
        }
        for t in (within, over)  # 3.0's noise spends less than 0.5's
    ]


def test_the_sampler_avoids_configurations_over_the_target(tiny_model_dir, sentiment_csv) -> None:
    """TPE, built from the study file, with the objective's own recording of epsilon: less noise
    scores better but spends more; over the target, the sampler moves to the noise that keeps
    within it, where without a target it goes to the least noise."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def shares(target: float | None) -> tuple[float, float]:
        extra = {"privacy": {"target_epsilon": target}} if target else {}
        spec = StudySpec.from_dict(
            spec_dict(
                tiny_model_dir,
                sentiment_csv,
                sampler={"name": "tpe", "seed": 0, "n_startup_trials": 8},
                space={"dp_noise_multiplier": {"low": 0.5, "high": 3.0}},
                **extra,
            )
        )
        study = optuna.create_study(direction="maximize", sampler=build_sampler(spec))

        def fake(trial: optuna.Trial) -> float:
            noise = spec.space["dp_noise_multiplier"].suggest(trial)
            records.record_privacy(trial, 6.0 / noise, 1e-5, spec)
            return 1.0 - noise / 3.0

        study.optimize(fake, n_trials=50)
        late = [t.params["dp_noise_multiplier"] for t in study.trials[20:]]
        over = sum(n < 1.5 for n in late) / len(late)  # epsilon 6 / noise above 4
        edge = sum(1.5 <= n < 2.0 for n in late) / len(late)  # the best that keeps within 4
        return over, edge

    (free_over, free_edge), (held_over, held_edge) = shares(None), shares(4.0)
    assert free_over > 0.8 and free_edge < 0.1  # without a target: the least noise
    assert held_over < free_over - 0.4  # with one: far fewer trials over it ...
    assert held_edge > 0.4  # ... and most near the least noise within it


def test_embeddings_are_frozen_said_once_and_stay_unchanged(tiny_model_dir, sentiment_csv) -> None:
    spec = StudySpec.from_dict(
        spec_dict(tiny_model_dir, sentiment_csv, space={"dp_noise_multiplier": 1.0})
    )
    objective = Objective(spec)
    prep = objective.prepare()
    hp = Hyperparameters(seed=0, learning_rate=1e-2, batch_size=16, dp_noise_multiplier=1.0)
    privacy.said.clear()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        model, notes = objective.build_model(prep, hp)
        objective.build_model(prep, hp)  # a second trial's model says nothing more
    said = [w for w in seen if issubclass(w.category, privacy.PrivacyWarning)]
    assert len(said) == 1
    message = str(said[0].message)
    assert "word_embeddings" in message and "position_embeddings" in message
    assert "\n" not in message
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == EMBEDDINGS
    assert notes[keys.DP_FROZEN] == sorted(n.removesuffix(".weight") for n in EMBEDDINGS)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    plan = objective.plan(hp, len(prep.train))
    assert plan.privacy is not None and plan.privacy.noise_multiplier == 1.0
    out = train(model, prep.train, prep.validation, plan, prep.device, pad_id=prep.pad_id)
    assert out.epsilon is not None and out.epsilon > 0
    after = dict(model.named_parameters())
    for name in EMBEDDINGS:
        assert torch.equal(after[name], before[name])
    assert not torch.equal(after["classifier.weight"], before["classifier.weight"])
    assert not hasattr(after["classifier.weight"], "grad_sample")  # opacus' hooks are gone


def test_without_opacus_a_private_study_stops_before_any_trial(
    tiny_model_dir, sentiment_csv, tmp_path, monkeypatch
) -> None:
    raw = spec_dict(tiny_model_dir, sentiment_csv, space={"dp_noise_multiplier": 1.0})
    spec = StudySpec.from_dict(raw)
    monkeypatch.setitem(sys.modules, "opacus", None)  # `import opacus` fails, as uninstalled
    with pytest.raises(DependencyError, match=r"needs the package opacus: pip install"):
        preflight(spec)
    path = tmp_path / "dp.toml"
    path.write_text(toml_text(raw))
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    out = CliRunner().invoke(cli, ["run", str(path), "--storage", url])
    assert out.exit_code == 1  # a missing package, not a wrong input
    assert "Traceback" not in out.output
    said = [line for line in out.output.splitlines() if "opacus" in line]
    assert len(said) == 1 and "needs the package opacus: pip install" in said[0], out.output
    if (tmp_path / "cli.db").exists():  # whatever was created, no trial ran
        assert all(s.n_trials == 0 for s in optuna.get_all_study_summaries(url))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["space.dp_noise_multiplier=-1"], "`space.dp_noise_multiplier`"),
        (["space.dp_noise_multiplier=1.0", "privacy.target_epsilon=0"], "above 0, got 0"),
        (["space.dp_noise_multiplier=1.0", "privacy.delta=1.5"], "`privacy.delta` must be in"),
        (["privacy.target_epsilon=3"], "no trial trains privately"),
        (["space.dp_noise_multiplier=[0.0, 1.0]", "privacy.target_epsilon=3"], "can be 0"),
        (
            [
                "space.dp_noise_multiplier=1.0",
                "space.augmentation_strength=0.2",
                "augment.copies=1",
            ],
            "`augment.copies` is 1",
        ),
        (["space.dp_max_grad_norm=0.5"], "`space.dp_max_grad_norm` is the clipping norm"),
        (["space.dp_noise_multiplier=1.0", "privacy.epsilon=3"], "unknown key `privacy.epsilon`"),
    ],
)
def test_bad_privacy_settings_are_one_line_errors(study_file, overrides, message) -> None:
    args = ["validate", str(study_file)] + [x for o in overrides for x in ("--set", o)]
    out = CliRunner().invoke(cli, args)
    assert out.exit_code == 2, out.output
    assert message in out.output and "Traceback" not in out.output
    assert out.output.strip().count("\n") == 0, out.output


def test_the_private_study_file_is_valid_and_private_in_every_trial() -> None:
    spec, _ = load_spec(STUDY)
    assert spec.privacy is not None and spec.privacy.target_epsilon == 8.0
    noise = spec.space["dp_noise_multiplier"]
    assert noise.lowest() > 0 and not noise.when  # no trial trains without noise
    assert spec.augment.copies == 0
    assert spec.space["batch_size"].value == 64
    conditions = spec.space.conditions()["dp_max_grad_norm"]
    assert [c.on for c in conditions] == ["dp_noise_multiplier"]


def test_the_default_delta_is_ten_times_below_one_over_the_rows() -> None:
    from hpo.config.privacy import default_delta

    assert default_delta(2_000) == 1e-5
    assert default_delta(1_000_000) == pytest.approx(1e-7)


def test_accumulated_micro_batches_make_one_private_step_of_the_same_sample_rate(
    tiny_model_dir, sentiment_csv
) -> None:
    """Batch 8 with 2 micro-batches per step samples rows at the rate of batch 16 and adds
    noise once per step: the same epsilon as batch 16, from the same number of steps."""
    spent = []
    for batch, accumulate in ((16, 1), (8, 2)):
        raw = spec_dict(
            tiny_model_dir,
            sentiment_csv,
            train={"max_steps": 6, "eval_every": 6, "gradient_accumulation": accumulate},
            space={"dp_noise_multiplier": 1.0, "batch_size": batch},
        )
        objective = Objective(StudySpec.from_dict(raw))
        prep = objective.prepare()
        hp = Hyperparameters(seed=0, learning_rate=1e-3, batch_size=batch, dp_noise_multiplier=1.0)
        model, _ = objective.build_model(prep, hp)
        before = model.classifier.weight.detach().clone()
        plan = objective.plan(hp, len(prep.train))
        out = train(model, prep.train, prep.validation, plan, prep.device, pad_id=prep.pad_id)
        assert out.steps == 6 and not torch.equal(model.classifier.weight, before)
        spent.append(out.epsilon)
    rows = len(prep.train)
    assert spent[0] == spent[1] == pytest.approx(opacus_epsilon("prv", 1.0, 16 / rows, 6, 1e-5))


def test_best_of_a_private_study_states_the_epsilon_of_the_model_it_saves(
    tiny_model_dir, sentiment_csv, tmp_path
) -> None:
    spec = private_spec(tiny_model_dir, sentiment_csv, [1.0])
    study, objective = run(spec, tmp_path)
    rows = len(objective.prepare().train)
    trial = study.get_trials()[0]
    url = f"sqlite:///{tmp_path / 'dp.db'}"
    out = tmp_path / "model"
    result = CliRunner().invoke(
        cli, ["best", study.study_name, "--storage", url, "--out", str(out), "--seeds", "2"]
    )
    assert result.exit_code == 0, result.output
    runs = json.loads((out / "hpo_results.json").read_text())[0]["runs"]
    # each retraining is private: the epsilon opacus gives for its steps, at the study's delta
    for r in runs:
        assert r["delta"] == 1e-5
        assert r["epsilon"] == pytest.approx(
            opacus_epsilon("prv", 1.0, 16 / rows, trial.user_attrs["steps"], 1e-5), rel=1e-9
        )
    saved = max(runs, key=lambda r: r["validation"]["accuracy"])  # ties: the first
    card = (out / "README.md").read_text()
    assert "## Privacy" in card
    assert f"spent epsilon = {saved['epsilon']:.3f} at delta = 1.00e-05" in card
    assert "The 1 other retraining run(s) were discarded" in card
    assert f"epsilon {runs[0]['epsilon']:.3f}" in result.output


def test_a_target_epsilon_no_configuration_can_reach_is_refused_up_front(
    tiny_model_dir, sentiment_csv
) -> None:
    spec = private_spec(tiny_model_dir, sentiment_csv, [0.5, 1.0], privacy={"target_epsilon": 0.01})
    rows = len(preflight(private_spec(tiny_model_dir, sentiment_csv, [1.0])).train)
    least = opacus_epsilon("prv", 1.0, 16 / rows, 20, 1e-5)  # the most noise, 20 steps
    assert least > 0.01
    with pytest.raises(SpecError) as info:
        preflight(spec)
    assert str(info.value) == (
        f"`privacy.target_epsilon` 0.01 is out of reach: the most private configuration "
        f"(dp_noise_multiplier 1, batch_size 16, 20 steps on {rows} rows) spends epsilon "
        f"{least:.3g} at delta 1e-05, so every trial would be infeasible; raise the noise's "
        "high, train fewer steps, or raise the target"
    )
    # a target that configuration reaches is taken
    preflight(
        private_spec(
            tiny_model_dir, sentiment_csv, [0.5, 1.0], privacy={"target_epsilon": least * 1.01}
        )
    )


def test_a_delta_not_below_one_over_the_rows_is_refused(tiny_model_dir, sentiment_csv) -> None:
    rows = len(preflight(private_spec(tiny_model_dir, sentiment_csv, [1.0])).train)
    with pytest.raises(SpecError) as info:
        preflight(private_spec(tiny_model_dir, sentiment_csv, [1.0], privacy={"delta": 0.5}))
    assert str(info.value).startswith(
        f"`privacy.delta` 0.5 is not below 1 / training rows (1/{rows} = {1 / rows:.2g}): at "
        "that delta a trial may leak a whole row"
    )
    # one just below 1 / rows is taken
    preflight(private_spec(tiny_model_dir, sentiment_csv, [1.0], privacy={"delta": 0.99 / rows}))


def test_validate_without_the_model_makes_the_checks_that_need_only_the_data(
    tiny_model_dir, sentiment_csv, tmp_path
) -> None:
    """--no-model said ok to a delta, a target epsilon and a screen that the run refuses."""
    raw = private_spec(tiny_model_dir, sentiment_csv, [1.0]).to_dict()
    path = tmp_path / "study.toml"
    cases = [
        ({"privacy": {**raw.get("privacy", {}), "delta": 0.5}}, "`privacy.delta` 0.5 is not below 1 / "),
        ({"privacy": {**raw.get("privacy", {}), "target_epsilon": 0.001}}, "`privacy.target_epsilon` 0.001 is out of reach"),
        ({"study": {**raw["study"], "n_trials": 3, "screen": {"trials": 2, "keep": 1}},
          "train": {**{k: v for k, v in raw["train"].items() if k != "max_steps"}, "epochs": 1,
                    "eval_every": 30}}, "so a screen would be a whole trial"),
    ]  # fmt: skip
    for change, message in cases:
        path.write_text(toml_text({**raw, **change}))
        out = CliRunner().invoke(cli, ["validate", str(path), "--no-model"])
        assert out.exit_code == 2, (change, out.output)
        assert message in " ".join(out.output.split()), out.output


def test_the_epsilon_table_rounds_the_noise_as_the_leaderboard_does() -> None:
    from optuna.distributions import FloatDistribution

    from hpo.results.privacy import epsilon_table

    trial = optuna.trial.create_trial(
        params={"dp_noise_multiplier": 1.425596638292661},
        distributions={"dp_noise_multiplier": FloatDistribution(0.5, 2.0)},
        value=0.7,
        user_attrs={keys.DP_EPSILON: 2.5, keys.DP_DELTA: 1e-5},
    )
    table = epsilon_table([trial], "accuracy", "maximize")
    assert table is not None
    console = Console(record=True, width=160)
    console.print(table)
    text = console.export_text()
    assert "1.426" in text and "1.4255" not in text
