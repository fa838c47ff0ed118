"""The search space: parsing dimensions, and sampling them with real Optuna samplers."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from hpo.config.dimension import Dimension, parse_dimension
from hpo.config.sampling import TRAINER_RECIPE, Hyperparameters, first_trials, sample
from hpo.config.space import SearchSpace
from hpo.errors import SpecError

NAMES = {
    "learning_rate", "warmup_ratio", "lr_schedule", "frozen_layers",
    "augmentation_strength", "batch_size", "weight_decay", "seed",
}  # fmt: skip

# Every kind of dimension: log range over two decades, plain ranges, choices and fixed values.
MIXED = {
    "learning_rate": {"low": 1e-6, "high": 1e-4, "log": True},
    "warmup_ratio": {"low": 0.0, "high": 0.2},
    "lr_schedule": ["linear", "cosine", "polynomial"],
    "frozen_layers": {"low": 0, "high": 4},
    "augmentation_strength": {"low": 0.1, "high": 0.3},
    "batch_size": [8, 16, 32],
    "weight_decay": 0.05,
    "seed": 7,
}


@pytest.fixture(autouse=True)
def quiet_optuna() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def run_study(
    space: SearchSpace, sampler: optuna.samplers.BaseSampler, n_trials: int
) -> tuple[optuna.Study, list[Hyperparameters]]:
    """An in-memory study whose objective samples the space; returns it and each trial's values."""
    seen: list[Hyperparameters] = []

    def objective(trial: optuna.Trial) -> float:
        hp = sample(space, trial)
        seen.append(hp)
        return (math.log10(hp.learning_rate) + 4.5) ** 2 + hp.warmup_ratio + hp.frozen_layers

    study = optuna.create_study(sampler=sampler)
    study.optimize(objective, n_trials=n_trials)
    return study, seen


def check_trials(space: SearchSpace, study: optuna.Study, n_trials: int) -> None:
    """Every trial completed, carries all eight parameters, and each lies within its dimension."""
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * n_trials
    for t in trials:
        assert set(t.params) == NAMES
        for name, dim in space.dimensions.items():
            v = t.params[name]
            if dim.is_range:
                assert dim.low <= v <= dim.high, (name, v)
            elif dim.choices is not None:
                assert v in dim.choices, (name, v)
            else:
                assert v == dim.value, (name, v)


def test_fixed_trial_values_come_back_with_python_types() -> None:
    space = SearchSpace.from_dict(
        {
            "frozen_layers": {"low": 0, "high": 3},
            "augmentation_strength": {"low": 0.0, "high": 0.3},
            "batch_size": [16, 32],
            "weight_decay": {"low": 0.0, "high": 0.1},
            "seed": {"low": 0, "high": 100},
        }
    )
    values = {
        "learning_rate": 3e-5,
        "warmup_ratio": 0,  # an int from the trial must still come back a float
        "lr_schedule": "cosine",
        "frozen_layers": 2,
        "augmentation_strength": 0.25,
        "batch_size": 32,
        "weight_decay": 0,
        "seed": 42,
    }
    hp = sample(space, optuna.trial.FixedTrial(values))
    assert hp == Hyperparameters(
        learning_rate=3e-5,
        warmup_ratio=0.0,
        lr_schedule="cosine",
        frozen_layers=2,
        augmentation_strength=0.25,
        batch_size=32,
        weight_decay=0.0,
        seed=42,
    )
    types = {name: type(getattr(hp, name)) for name in NAMES}
    assert types == {
        "learning_rate": float,
        "warmup_ratio": float,
        "lr_schedule": str,
        "frozen_layers": int,
        "augmentation_strength": float,
        "batch_size": int,
        "weight_decay": float,
        "seed": int,
    }


def test_fixed_dimensions_are_suggested_as_their_one_value() -> None:
    space = SearchSpace.from_dict({})
    values = {"learning_rate": 2e-5, "warmup_ratio": 0.1, "lr_schedule": "linear"}
    values |= {"frozen_layers": 0, "augmentation_strength": 0.0}
    hp = sample(
        space,
        optuna.trial.FixedTrial({**values, "batch_size": 16, "weight_decay": 0.01, "seed": 0}),
    )
    assert (hp.batch_size, hp.weight_decay, hp.seed) == (16, 0.01, 0)
    with pytest.raises(ValueError):  # a fixed dimension admits no other value
        sample(
            space,
            optuna.trial.FixedTrial({**values, "batch_size": 32, "weight_decay": 0.01, "seed": 0}),
        )
    with pytest.raises(ValueError):  # the strategies a short budget pays for are off by default
        sample(
            space,
            optuna.trial.FixedTrial(
                {**values, "frozen_layers": 1, "batch_size": 16, "weight_decay": 0.01, "seed": 0}
            ),
        )


def test_random_sampler_covers_the_space() -> None:
    space = SearchSpace.from_dict(MIXED)
    study, seen = run_study(space, optuna.samplers.RandomSampler(seed=0), 30)
    check_trials(space, study, 30)
    assert [hp.learning_rate for hp in seen] == [t.params["learning_rate"] for t in study.trials]
    rates = [hp.learning_rate for hp in seen]
    assert any(r < 1e-5 for r in rates) and any(r >= 1e-5 for r in rates)  # both decades
    assert {hp.lr_schedule for hp in seen} <= {"linear", "cosine", "polynomial"}
    assert len({hp.lr_schedule for hp in seen}) > 1
    assert {hp.batch_size for hp in seen} <= {8, 16, 32}
    assert {hp.frozen_layers for hp in seen} <= set(range(5))
    assert all(0.1 <= hp.augmentation_strength <= 0.3 for hp in seen)
    assert {(hp.weight_decay, hp.seed) for hp in seen} == {(0.05, 7)}


def test_stepped_ranges_give_multiples_of_the_step_from_low() -> None:
    space = SearchSpace.from_dict(
        {
            "frozen_layers": {"low": 1, "high": 9, "step": 2},
            "batch_size": {"low": 8, "high": 64, "step": 8},
            "warmup_ratio": {"low": 0.05, "high": 0.2, "step": 0.05},
        }
    )
    study, seen = run_study(space, optuna.samplers.RandomSampler(seed=1), 30)
    check_trials(space, study, 30)
    frozen = {hp.frozen_layers for hp in seen}
    assert frozen <= {1, 3, 5, 7, 9} and len(frozen) >= 3
    assert all((hp.batch_size - 8) % 8 == 0 for hp in seen)
    for hp in seen:
        k = (hp.warmup_ratio - 0.05) / 0.05
        assert abs(k - round(k)) < 1e-9, hp.warmup_ratio


SAMPLERS: dict[str, Callable[[], Any]] = {
    "tpe": lambda: optuna.samplers.TPESampler(
        seed=0, n_startup_trials=3, multivariate=True, constant_liar=True
    ),
    "gp": lambda: optuna.samplers.GPSampler(seed=0, n_startup_trials=3),
    "cmaes": lambda: optuna.samplers.CmaEsSampler(
        seed=0, n_startup_trials=3, warn_independent_sampling=False
    ),
    "qmc": lambda: optuna.samplers.QMCSampler(seed=0, warn_independent_sampling=False),
}
NEEDS = {"gp": ["torch", "scipy"], "cmaes": ["cmaes"], "qmc": ["scipy"]}


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize("name", SAMPLERS)
@pytest.mark.parametrize("raw", [{}, MIXED], ids=["defaults", "mixed"])
def test_model_based_samplers_handle_the_space(name, raw) -> None:
    for module in NEEDS.get(name, []):
        pytest.importorskip(module)
    space = SearchSpace.from_dict({**raw, "frozen_layers": {"low": 0, "high": 6, "step": 2}})
    study, seen = run_study(space, SAMPLERS[name](), 8)
    check_trials(space, study, 8)
    assert {hp.frozen_layers for hp in seen} <= {0, 2, 4, 6}


@pytest.mark.parametrize(
    "make",
    [
        lambda s: optuna.samplers.RandomSampler(seed=s),
        lambda s: optuna.samplers.TPESampler(seed=s, n_startup_trials=3),
    ],
    ids=["random", "tpe"],
)
def test_seeded_samplers_repeat_their_sequence(make) -> None:
    space = SearchSpace.from_dict(MIXED)
    first = [t.params for t in run_study(space, make(11), 8)[0].trials]
    again = [t.params for t in run_study(space, make(11), 8)[0].trials]
    other = [t.params for t in run_study(space, make(12), 8)[0].trials]
    assert first == again
    assert first != other


@pytest.mark.parametrize(
    ("name", "raw", "toml"),
    [
        ("learning_rate", 3e-5, 3e-5),
        ("warmup_ratio", 0, 0.0),
        ("lr_schedule", "cosine", "cosine"),
        ("batch_size", [8, 16], [8, 16]),
        ("weight_decay", [0, 0.01], [0.0, 0.01]),
        (
            "learning_rate",
            {"low": 1e-5, "high": 1e-4, "log": True},
            {"low": 1e-5, "high": 1e-4, "log": True},
        ),
        ("learning_rate", {"low": 1e-5, "high": 1e-4, "log": False}, {"low": 1e-5, "high": 1e-4}),
        ("frozen_layers", {"low": 0, "high": 4, "step": 2}, {"low": 0, "high": 4, "step": 2}),
        (
            "warmup_ratio",
            {"low": 0, "high": 0.2, "step": 0.05},
            {"low": 0.0, "high": 0.2, "step": 0.05},
        ),
    ],
)
def test_to_toml_round_trips_through_parse_dimension(name, raw, toml) -> None:
    dim = parse_dimension(name, raw)
    assert dim.to_toml() == toml
    assert type(dim.to_toml()) is type(toml)
    assert parse_dimension(name, dim.to_toml()) == dim


def test_dimension_kinds_and_upper_bound() -> None:
    ranged = parse_dimension("frozen_layers", {"low": 0, "high": 6})
    listed = parse_dimension("batch_size", [16, 64, 32])
    fixed = parse_dimension("batch_size", 24)
    assert (ranged.is_range, ranged.is_fixed, ranged.upper_bound()) == (True, False, 6)
    assert (listed.is_range, listed.is_fixed, listed.upper_bound()) == (False, False, 64)
    assert (fixed.is_range, fixed.is_fixed, fixed.upper_bound()) == (False, True, 24)
    assert parse_dimension("learning_rate", {"low": 1e-5, "high": 5e-5}).upper_bound() == 5e-5
    assert fixed == Dimension("batch_size", value=24)


def test_from_dict_fills_in_the_defaults_and_to_dict_gives_them_back() -> None:
    space = SearchSpace.from_dict({"batch_size": [8, 16]})
    assert set(space.dimensions) == NAMES
    assert space["batch_size"].choices == (8, 16)
    assert space["weight_decay"] == Dimension("weight_decay", value=0.01)
    assert SearchSpace.from_dict(space.to_dict()) == space


@pytest.mark.parametrize(
    ("name", "raw", "needle"),
    [
        ("momentum", 0.9, "unknown key `space.momentum`"),
        ("batch_size", {"high": 8}, "range needs `low`"),
        ("batch_size", [8, "16"], "`space.batch_size[1]` must be an integer, got '16'"),
        (
            "learning_rate",
            {"low": 0, "high": 1e-4},
            "`space.learning_rate.low` must be in (0, 1), got 0.0",
        ),
        (
            "seed",
            {"low": 0, "high": 10, "step": True},
            "`space.seed.step` must be a positive number",
        ),
    ],
)
def test_parse_dimension_errors(name, raw, needle) -> None:
    with pytest.raises(SpecError) as info:
        parse_dimension(name, raw)
    assert needle in str(info.value)


def test_contains_follows_each_kind_of_dimension() -> None:
    dims = SearchSpace.from_dict(MIXED).dimensions
    assert dims["learning_rate"].contains(1e-4) and not dims["learning_rate"].contains(2e-4)
    assert dims["lr_schedule"].contains("cosine") and not dims["lr_schedule"].contains("linear ")
    assert dims["seed"].contains(7) and not dims["seed"].contains(8)
    stepped = parse_dimension("warmup_ratio", {"low": 0.0, "high": 0.2, "step": 0.05})
    assert stepped.contains(0.15) and not stepped.contains(0.12)
    assert stepped.describe() == "from 0 to 0.2 in steps of 0.05"


def test_first_trials_the_recipe_then_the_study_files_own() -> None:
    default = SearchSpace.from_dict(
        {"frozen_layers": {"low": 0, "high": 3}, "augmentation_strength": {"low": 0.0, "high": 0.3}}
    )
    assert first_trials(default, None) == []  # nothing unless asked for
    # Every dimension the recipe names is searched here and holds its value.
    assert first_trials(default, None, recipe=True) == [("trainer recipe", TRAINER_RECIPE)]
    # A fixed dimension keeps its own value: the recipe does not name it. The default space
    # fixes freezing and augmentation off.
    only_three = {"learning_rate": 5e-5, "warmup_ratio": 0.0, "lr_schedule": "linear"}
    fixed = SearchSpace.from_dict({"frozen_layers": 2, "augmentation_strength": 0.1})
    assert first_trials(fixed, None, recipe=True) == [("trainer recipe", only_three)]
    bare = SearchSpace.from_dict({})
    assert first_trials(bare, None, recipe=True) == [("trainer recipe", only_three)]
    # A searched range that leaves the recipe out is an error that says how to fix it.
    narrow = SearchSpace.from_dict({"learning_rate": {"low": 1e-4, "high": 1e-3}})
    with pytest.raises(SpecError, match=r"recipe's learning_rate 5e-05 is outside .* from 0.0001"):
        first_trials(narrow, None, recipe=True)
    # The study file's own come after the recipe; left-out dimensions are sampled; fixed
    # values may be repeated and are then left to the space.
    given = [{"learning_rate": 2e-5, "frozen_layers": 1}, {"batch_size": 16, "seed": 0}]
    assert first_trials(default, given, recipe=True) == [
        ("trainer recipe", TRAINER_RECIPE),
        ("study file", {"learning_rate": 2e-5, "frozen_layers": 1}),
        ("study file", {}),
    ]
    with pytest.raises(SpecError, match=r"first_trials\[0\]\.batch_size` is 32, outside"):
        first_trials(default, [{"batch_size": 32}])


@pytest.mark.parametrize("name", ["frozen_layers", "reinit_layers"])
def test_a_set_dimension_a_condition_never_lets_be_sampled_is_refused(name: str) -> None:
    # freezing and re-initialising act only without LoRA: set beside a fixed rank they would
    # be stored nowhere and train nothing, silently
    with pytest.raises(SpecError) as info:
        SearchSpace.from_dict({"lora_rank": 4, name: 2})
    assert str(info.value) == (
        f"`space.{name}` (fixed at 2) is never used: it applies only when lora_rank = 0, and "
        f"space.lora_rank is fixed at 4; drop space.{name}, or let space.lora_rank take such "
        "a value"
    )
    # taken: a rank that can be 0, the dimension at its off value, or the space's own default
    assert SearchSpace.from_dict({"lora_rank": [0, 4], name: 2}).active(name, {"lora_rank": 0})
    SearchSpace.from_dict({"lora_rank": 4, name: 0})
    SearchSpace.from_dict({"lora_rank": 4})
