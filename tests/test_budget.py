"""A study's budget in the user's units (samples, model FLOPs, seconds), and what trials spend."""

from __future__ import annotations

import statistics
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState
from transformers import AutoConfig

from hpo import keys
from hpo.cli.main import cli
from hpo.config.spec import StudySpec
from hpo.errors import SpecError
from hpo.execution.storage import open_storage
from hpo.execution.workers import work
from hpo.search.objective import Objective
from hpo.search.study import create_or_resume
from tests.conftest import spec_dict, toml_text

FAST = {"max_steps": 10, "eval_every": 5, "max_length": 32, "device": "cpu"}


def budget_spec(
    model: Path, data: Path, budget: dict[str, float], rows: int = 64, **space: object
) -> StudySpec:
    """A study of 10-step trials over ``rows`` training rows (64: four batches of 16)."""
    raw = spec_dict(model, data, train=FAST)
    raw["study"] = {"name": "tiny", "budget": budget}
    raw["data"]["max_train_samples"] = rows
    raw["space"].update(space)
    return StudySpec.from_dict(raw)


def run(spec: StudySpec, tmp_path: Path) -> optuna.Study:
    study, _ = create_or_resume(spec, open_storage(f"sqlite:///{tmp_path / 'b.db'}"))
    work(study, Objective(spec), spec.study.n_trials, spend=spec.study.budget)
    return study


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({"samples": 0}, "`study.budget.samples` must be a number above 0, got 0"),
        ({"flops": -1.0}, "`study.budget.flops` must be a number above 0"),
        ({"seconds": float("nan")}, "`study.budget.seconds` must be a number above 0"),
        ({"seconds": float("inf")}, "`study.budget.seconds` must be a number above 0"),
        ({"samples": True}, "`study.budget` must be a table of numbers"),
        ({"cups": 3}, "takes one of samples, flops or seconds, e.g. budget = {samples = 20000}"),
        ({"samples": 10, "seconds": 5}, "got samples, seconds"),
        ({}, "got nothing"),
    ],
)
def test_a_bad_budget_is_one_line_naming_the_key(
    tiny_model_dir, sentiment_csv, budget, message
) -> None:
    with pytest.raises(SpecError) as err:
        budget_spec(tiny_model_dir, sentiment_csv, budget)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_budget_lifts_the_trial_cap_unless_the_file_sets_one(
    tiny_model_dir, sentiment_csv
) -> None:
    raw = spec_dict(tiny_model_dir, sentiment_csv)
    raw["study"] = {"name": "tiny"}
    assert StudySpec.from_dict(raw).study.n_trials == 20
    budgeted = budget_spec(tiny_model_dir, sentiment_csv, {"samples": 400})
    assert budgeted.study.n_trials >= 10_000
    capped = spec_dict(tiny_model_dir, sentiment_csv, study={"n_trials": 2, "budget": {"flops": 1}})
    assert StudySpec.from_dict(capped).study.n_trials == 2


def test_a_samples_budget_starts_trials_until_it_is_spent(
    tiny_model_dir, sentiment_csv, tmp_path
) -> None:
    # 10 steps of 16 rows: 160 samples a trial; the third starts at 320 < 400 and ends at 480
    spec = budget_spec(tiny_model_dir, sentiment_csv, {"samples": 400})
    study = run(spec, tmp_path)
    ran = [t for t in study.get_trials() if t.state != TrialState.WAITING]
    assert [t.user_attrs[keys.TRAIN_SAMPLES] for t in ran] == [160, 160, 160]
    # one empty slot at a time: a budget study never queues thousands of placeholders
    assert len(study.get_trials(states=(TrialState.WAITING,))) <= 1


def test_samples_count_real_rows_when_an_epochs_last_batch_is_short(
    tiny_model_dir, sentiment_csv, tmp_path
) -> None:
    # 72 rows: batches of 16, 16, 16, 16 and 8; 10 steps are two epochs, 144 rows, not 160
    spec = budget_spec(tiny_model_dir, sentiment_csv, {"samples": 100}, rows=72)
    study = run(spec, tmp_path)
    (trial,) = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert trial.user_attrs[keys.TRAIN_SAMPLES] == 144
    assert trial.user_attrs[keys.FULL_TRIAL]["samples"] == 144


def test_a_seconds_budget_stops_after_the_trial_that_spends_it(
    tiny_model_dir, sentiment_csv, tmp_path
) -> None:
    spec = budget_spec(tiny_model_dir, sentiment_csv, {"seconds": 0.01})
    study = run(spec, tmp_path)
    ran = [t for t in study.get_trials() if t.state != TrialState.WAITING]
    assert len(ran) == 1
    assert ran[0].user_attrs[keys.WALL_SECONDS] >= 0.01


def test_trials_store_their_model_flops_by_the_usual_count(
    tiny_model_dir, sentiment_csv, tmp_path
) -> None:
    spec = budget_spec(
        tiny_model_dir, sentiment_csv, {"samples": 300}, frozen_layers=[0, 1], seed=0
    )
    objective = Objective(spec)
    study, _ = create_or_resume(spec, open_storage(f"sqlite:///{tmp_path / 'f.db'}"))
    study.enqueue_trial({"frozen_layers": 0})
    study.enqueue_trial({"frozen_layers": 1})
    work(study, objective, spec.study.n_trials, spend=spec.study.budget)
    free, frozen = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    prep = objective.prepare()
    config = AutoConfig.from_pretrained(tiny_model_dir)
    d, inner, depth = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    block = 4 * d * d + 2 * d * inner  # attention's four matrices and the feed-forward pair

    def row(n: int, passes: int) -> float:
        return passes * (2 * block + 4 * d * n) * n

    train = [len(ids) for ids in prep.train.input_ids]
    val = [len(ids) for ids in prep.validation.input_ids]
    evaluation = sum(row(n, depth) for n in val)
    per_row = statistics.fmean(row(n, 3 * depth) for n in train)
    expected = 160 * per_row + 2 * evaluation  # evaluated at steps 5 and 10
    assert free.user_attrs[keys.FLOPS] == pytest.approx(expected, rel=1e-9)
    assert keys.FROZEN_COMPUTED not in free.user_attrs  # nothing frozen, nothing cached
    # the frozen layer's states are cached: each row ran through it once; the steps and the
    # evaluations ran only the layer above
    computed = frozen.user_attrs[keys.FROZEN_COMPUTED]
    distinct = {tuple(r) for r in prep.train.input_ids} | {
        tuple(r) for r in prep.validation.input_ids
    }
    assert 0 < computed <= len(distinct)
    assert frozen.user_attrs[keys.FROZEN_SERVED] >= 160 + 2 * len(val) - computed
    upper = statistics.fmean(row(n, 3 * (depth - 1)) for n in train)
    once = computed * statistics.fmean(row(n, 1) for n in train)
    expected = 160 * upper + 2 * sum(row(n, depth - 1) for n in val) + once
    assert frozen.user_attrs[keys.FLOPS] == pytest.approx(expected, rel=1e-9)
    assert frozen.user_attrs[keys.FLOPS] < free.user_attrs[keys.FLOPS]
    full = free.user_attrs[keys.FULL_TRIAL]
    assert full["samples"] == 160
    assert full["flops"] == pytest.approx(free.user_attrs[keys.FLOPS], rel=1e-9)


def test_hpo_run_with_a_budget_reports_its_spend_beside_the_recipe(
    tmp_path, tiny_model_dir, sentiment_csv
) -> None:
    raw = spec_dict(tiny_model_dir, sentiment_csv, train=FAST)
    raw["study"] = {"name": "tiny", "budget": {"samples": 300}}
    raw["data"]["max_train_samples"] = 64
    path = tmp_path / "budget.toml"
    path.write_text(toml_text(raw))
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    result = CliRunner().invoke(cli, ["run", str(path), "--storage", db])
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # the terminal's line breaks
    assert "(0 samples of 300 samples spent)" in out
    assert "spent 320 samples, " in out
    assert "the untuned recipe, one unpruned trial: 160 samples" in out
    assert "(the search spent 2.0 times its samples)" in out
    # report --json states the same facts for scripts
    import json

    facts = json.loads(
        CliRunner().invoke(cli, ["report", "tiny", "--storage", db, "--json"]).output
    )
    trials = optuna.load_study(study_name="tiny", storage=db).trials
    assert facts["spent"]["samples"] == 320
    assert facts["spent"]["flops"] == pytest.approx(sum(t.user_attrs["flops"] for t in trials))
    assert facts["spent"]["recipe"]["samples"] == 160
    assert facts["budget"] == {"unit": "samples", "amount": 300, "spent": 320}
    assert facts["race"] is None and facts["screens"] is None
