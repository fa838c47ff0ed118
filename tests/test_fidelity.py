"""BOHB's rule for TPE under early stopping: the model sees only results of one budget."""

from __future__ import annotations

import math

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from hpo.config.spec import StudySpec
from hpo.errors import SpecError
from hpo.search.fidelity import BudgetTPESampler, fitting_step
from hpo.search.study import build_sampler
from tests.conftest import spec_dict

LR = FloatDistribution(1e-5, 1e-3, log=True)


def stopped_or_finished(
    lr: float, curve: dict[int, float], finished: bool
) -> optuna.trial.FrozenTrial:
    return create_trial(
        params={"lr": lr},
        distributions={"lr": LR},
        intermediate_values=curve,
        state=TrialState.COMPLETE if finished else TrialState.PRUNED,
        value=curve[max(curve)] if finished else None,
    )


def misleading_history() -> list[optuna.trial.FrozenTrial]:
    """High learning rates lead at step 25 and were stopped there (a rung's mistake); low ones
    trail at step 25, and three of them were let through and finished, lower than the high ones
    stood at step 25. Optuna's TPE ranks the finished low rates first."""
    out = []
    for i in range(6):
        out.append(stopped_or_finished(3e-4 * (1 + 0.1 * i), {25: 0.80 + 0.01 * i}, False))
    for i in range(6):
        lr = 2e-5 * (1 + 0.1 * i)
        if i < 3:
            out.append(stopped_or_finished(lr, {25: 0.60, 75: 0.65, 125: 0.70 + 0.01 * i}, True))
        else:
            out.append(stopped_or_finished(lr, {25: 0.55 + 0.01 * i}, False))
    return out


def proposals(sampler: optuna.samplers.BaseSampler, n: int = 12) -> list[float]:
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.add_trials(misleading_history())
    out = []
    for _ in range(n):
        trial = study.ask({"lr": LR})
        out.append(trial.params["lr"])
        study.tell(trial, state=TrialState.FAIL)  # keep the history as it was
    return out


def test_the_fitting_step_is_the_largest_with_enough_results() -> None:
    study = optuna.create_study(direction="maximize")
    study.add_trials(misleading_history())
    history = study.get_trials()
    step, scores = fitting_step(history, need=6)
    assert step == 25
    assert len(scores) == 12
    assert scores[0] == pytest.approx(0.80)
    step, scores = fitting_step(history, need=3)
    assert step == 125  # three trials finished
    assert sorted(scores) == [6, 7, 8]
    assert fitting_step(history, need=13) == (None, {})


def test_fitting_on_one_budget_follows_the_rung_where_tpe_follows_survival() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    by_rung = proposals(BudgetTPESampler(seed=0, min_results=6))
    every = proposals(optuna.samplers.TPESampler(seed=0, n_startup_trials=0))
    middle = math.sqrt(3e-4 * 2e-5)  # between the two groups of learning rates, in log space
    # TPE takes the finished low rates for the good group; BOHB's rule, the high ones
    assert sum(lr > middle for lr in by_rung) >= 10
    assert sum(lr < middle for lr in every) >= 10


def test_too_few_results_at_any_step_means_random_draws() -> None:
    sampler = BudgetTPESampler(seed=1)  # d + 3 = 4 results needed for one dimension
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.add_trials(misleading_history()[:3])
    trial = study.ask({"lr": LR})
    frozen = study.get_trials(deepcopy=False)[-1]
    assert sampler.sample_relative(study, frozen, {"lr": LR}) == {}
    assert LR.low <= trial.params["lr"] <= LR.high


def test_the_same_seed_proposes_the_same_configurations() -> None:
    assert proposals(BudgetTPESampler(seed=3, min_results=6), 4) == proposals(
        BudgetTPESampler(seed=3, min_results=6), 4
    )


def test_the_study_file_chooses_it_for_tpe_only(tiny_model_dir, sentiment_csv) -> None:
    raw = spec_dict(
        tiny_model_dir,
        sentiment_csv,
        sampler={"name": "tpe", "fit_on": "largest_rung", "startup": "random"},  # not wrapped
    )
    assert isinstance(build_sampler(StudySpec.from_dict(raw)), BudgetTPESampler)
    raw["sampler"]["name"] = "random"
    with pytest.raises(SpecError, match=r"`sampler.fit_on` 'largest_rung' is for the tpe sampler"):
        StudySpec.from_dict(raw)
