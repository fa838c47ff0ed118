"""Startup trials from a Latin hypercube: every range covered, the same design in every worker."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import optuna
import pytest
from click.testing import CliRunner
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from hpo.cli.main import cli
from hpo.config.sampling import sample
from hpo.config.spec import StudySpec
from hpo.errors import SpecError
from hpo.search.startup import from_unit
from hpo.search.study import build_sampler, create_or_resume
from tests.conftest import spec_dict, toml_text

LR_LOW, LR_HIGH = 1e-5, 2e-4
SCHEDULES = ["linear", "cosine", "constant_with_warmup"]


def spread_spec(
    model: Path, data: Path, rows: int, name: str = "spread", **sampler: Any
) -> StudySpec:
    space = {
        "learning_rate": {"low": LR_LOW, "high": LR_HIGH, "log": True},
        "warmup_ratio": {"low": 0.0, "high": 0.2},
        "lr_schedule": SCHEDULES,
        "frozen_layers": {"low": 0, "high": 1},
    }
    raw = spec_dict(
        model,
        data,
        study={"name": name, "n_trials": rows + 2},
        sampler={"name": "tpe", "startup": "latin_hypercube", "n_startup_trials": rows, **sampler},
        space=space,
    )
    raw["sampler"] = {k: v for k, v in raw["sampler"].items() if v is not None}
    return StudySpec.from_dict(raw)


def slice_of(value: float, low: float, high: float, n: int, log: bool = False) -> int:
    if log:
        value, low, high = math.log(value), math.log(low), math.log(high)
    return min(int((value - low) / (high - low) * n), n - 1)


def assert_one_per_slice(points: list[dict[str, Any]], n: int) -> None:
    lrs = sorted(slice_of(p["learning_rate"], LR_LOW, LR_HIGH, n, log=True) for p in points)
    warmups = sorted(slice_of(p["warmup_ratio"], 0.0, 0.2, n) for p in points)
    assert lrs == list(range(n)), [p["learning_rate"] for p in points]
    assert warmups == list(range(n)), [p["warmup_ratio"] for p in points]


def run_startup(spec: StudySpec, storage: str, workers: int) -> list[dict[str, Any]]:
    """Ask the study's trials in turn from ``workers`` separate samplers (as separate worker
    processes would), each sampling the space the way hpo's objective does."""
    study, _ = create_or_resume(spec, optuna.storages.RDBStorage(storage))
    samplers = [build_sampler(spec, seed_offset=7919 * i) for i in range(workers)]
    points = []
    for i in range(spec.study.n_trials):
        handle = optuna.load_study(
            study_name=study.study_name, storage=storage, sampler=samplers[i % workers]
        )
        trial = handle.ask()
        values = sample(spec.space, trial, depth=2)
        points.append({k: values[k] for k in ("learning_rate", "warmup_ratio", "lr_schedule")})
        handle.tell(trial, -abs(math.log(values["learning_rate"] / 1e-4)))
    return points


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_startup_trials_cover_every_slice_of_every_range(
    tiny_model_dir, sentiment_csv, tmp_path, seed: int
) -> None:
    spec = spread_spec(tiny_model_dir, sentiment_csv, rows=6, seed=seed)
    points = run_startup(spec, f"sqlite:///{tmp_path / 'db.sqlite'}", workers=1)
    assert_one_per_slice(points[:6], 6)
    assert sorted(p["lr_schedule"] for p in points[:6]) == sorted(SCHEDULES * 2)


@pytest.mark.parametrize("sampler", ["tpe", "gp", "cmaes"])
def test_a_study_file_that_says_nothing_gets_the_hypercube(
    tiny_model_dir, sentiment_csv, tmp_path, sampler: str
) -> None:
    """The default for every sampler with startup trials (the key left out of the file)."""
    spec = spread_spec(tiny_model_dir, sentiment_csv, rows=6, seed=1, name=sampler, startup=None)
    spec = spec.replace("sampler", name=sampler)
    assert "startup" not in spec.to_dict()["sampler"]
    points = run_startup(spec, f"sqlite:///{tmp_path / 'db.sqlite'}", workers=1)
    assert_one_per_slice(points[:6], 6)


def learning_rates(spec: StudySpec, sampler: optuna.samplers.BaseSampler, n: int) -> list[float]:
    """The learning rates of ``n`` trials that ``sampler`` proposes in an in-memory study."""
    study = optuna.create_study(sampler=sampler)
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(sample(spec.space, trial, depth=2)["learning_rate"])
        study.tell(trial, 0.5)
    return out


@pytest.mark.parametrize("sampler", ["random", "qmc"])
def test_samplers_without_startup_trials_draw_as_optuna_does(
    tiny_model_dir, sentiment_csv, sampler: str
) -> None:
    """Left unset, ``startup`` adds no design to random and qmc: their first trials are the
    ones Optuna's own sampler with the same seed proposes."""
    spec = spread_spec(tiny_model_dir, sentiment_csv, rows=6, seed=4, startup=None)
    spec = spec.replace("sampler", name=sampler)
    own = {
        "random": optuna.samplers.RandomSampler(seed=4),
        "qmc": optuna.samplers.QMCSampler(seed=4, warn_independent_sampling=False),
    }[sampler]
    assert learning_rates(spec, build_sampler(spec), 6) == learning_rates(spec, own, 6)


def test_a_study_stored_with_random_startup_resumes_with_the_new_default(
    tiny_model_dir, sentiment_csv, tmp_path
) -> None:
    """A study created when random startup was the default (stored explicitly) resumes from a
    file that leaves the key out, and its remaining startup trials take the hypercube."""
    storage = f"sqlite:///{tmp_path / 'db.sqlite'}"
    before = spread_spec(tiny_model_dir, sentiment_csv, rows=6, seed=0, startup="random")
    create_or_resume(before, optuna.storages.RDBStorage(storage))
    handle = optuna.load_study(study_name="spread", storage=storage, sampler=build_sampler(before))
    trial = handle.ask()
    sample(before.space, trial, depth=2)
    handle.tell(trial, 0.5)
    after = spread_spec(tiny_model_dir, sentiment_csv, rows=6, seed=0, startup=None)
    resumed, was_stored = create_or_resume(after, optuna.storages.RDBStorage(storage))
    done = resumed.get_trials(states=(optuna.trial.TrialState.COMPLETE,))
    assert was_stored and [t.value for t in done] == [0.5]  # nothing stored is lost
    points = []
    for _ in range(5):  # the five startup trials left take five different sixths of each range
        trial = resumed.ask()
        points.append(sample(after.space, trial, depth=2))
        resumed.tell(trial, 0.5)
    for name, low, high, log in (("learning_rate", LR_LOW, LR_HIGH, True),
                                 ("warmup_ratio", 0.0, 0.2, False)):  # fmt: skip
        slices = {slice_of(p[name], low, high, 6, log=log) for p in points}
        assert len(slices) == 5, [p[name] for p in points]


def test_random_startup_leaves_slices_empty(tiny_model_dir, sentiment_csv, tmp_path) -> None:
    """The check above can fail: independent draws miss a slice of six in most studies."""
    missed = 0
    for seed in range(3):
        spec = spread_spec(tiny_model_dir, sentiment_csv, rows=6, seed=seed, startup="random")
        points = run_startup(spec, f"sqlite:///{tmp_path / f'db{seed}.sqlite'}", workers=1)
        try:
            assert_one_per_slice(points[:6], 6)
        except AssertionError:
            missed += 1
    assert missed >= 2


def test_workers_without_a_seed_share_one_design(tiny_model_dir, sentiment_csv, tmp_path) -> None:
    """No sampler seed: the design comes from the study name, so three workers asking in turn
    (each with its own sampler, as separate processes) still cover every slice."""
    spec = spread_spec(tiny_model_dir, sentiment_csv, rows=6, seed=None)
    points = run_startup(spec, f"sqlite:///{tmp_path / 'db.sqlite'}", workers=3)
    assert_one_per_slice(points[:6], 6)


def test_the_recipe_runs_first_and_the_design_fills_the_rest(
    tiny_model_dir, sentiment_csv, tmp_path
) -> None:
    spec = spread_spec(tiny_model_dir, sentiment_csv, rows=4, seed=3, start_from_recipe=True)
    points = run_startup(spec, f"sqlite:///{tmp_path / 'db.sqlite'}", workers=2)
    assert points[0]["learning_rate"] == 5e-5  # the Trainer's recipe, enqueued
    assert_one_per_slice(points[1:5], 4)


@pytest.mark.parametrize(
    ("distribution", "values"),
    [
        (CategoricalDistribution(["a", "b", "c"]), ["a", "b", "c"]),
        (IntDistribution(0, 5), [0, 1, 2, 3, 4, 5]),
        (IntDistribution(2, 10, step=4), [2, 6, 10]),
        (FloatDistribution(0.0, 0.3, step=0.1), [0.0, 0.1, 0.2, 0.3]),
    ],
)
def test_every_value_holds_an_equal_slice_of_the_unit_interval(distribution, values) -> None:
    """A design of n x (number of values) rows gives every value n rows, and nothing else."""
    rows = 3 * len(values)
    drawn = [from_unit((i + 0.5) / rows, distribution) for i in range(rows)]
    assert drawn == pytest.approx([v for v in values for _ in range(3)])


def test_a_log_integer_range_reaches_every_integer_once_per_log_slice() -> None:
    batch = IntDistribution(1, 64, log=True)
    drawn = [from_unit(i / 10000, batch) for i in range(10000)]
    assert set(drawn) == set(range(1, 65))
    # log scale: integer k holds the log-slice of [k - 0.5, k + 0.5], so 1-7 hold the share
    # log(7.5 / 0.5) / log(64.5 / 0.5) of the interval (a uniform rule would give 7 / 64)
    below = sum(v < 8 for v in drawn) / len(drawn)
    assert below == pytest.approx(math.log(7.5 / 0.5) / math.log(64.5 / 0.5), abs=1e-3)


def test_log_ranges_are_sliced_in_log_space() -> None:
    lr = FloatDistribution(1e-5, 1e-3, log=True)
    assert from_unit(0.5, lr) == pytest.approx(1e-4)
    assert from_unit(0.0, lr) == pytest.approx(1e-5)
    assert from_unit(1.0, lr) < 1e-3


def test_startup_for_a_sampler_without_one_is_refused(tiny_model_dir, sentiment_csv) -> None:
    raw = spec_dict(
        tiny_model_dir, sentiment_csv, sampler={"name": "random", "startup": "latin_hypercube"}
    )
    with pytest.raises(SpecError, match=r"`sampler\.startup` 'latin_hypercube' is for the tpe"):
        StudySpec.from_dict(raw)


def test_without_scipy_the_run_stops_with_one_line_and_no_trial(
    tiny_model_dir, sentiment_csv, tmp_path, monkeypatch
) -> None:
    raw = spec_dict(
        tiny_model_dir, sentiment_csv, sampler={"name": "tpe", "startup": "latin_hypercube"}
    )
    monkeypatch.setitem(sys.modules, "scipy", None)  # as if uninstalled
    path = tmp_path / "lhs.toml"
    path.write_text(toml_text(raw))
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    out = CliRunner().invoke(cli, ["run", str(path), "--storage", url])
    assert out.exit_code == 1, out.output  # a missing package, not a wrong input
    assert "Traceback" not in out.output
    said = [line for line in out.output.splitlines() if "scipy" in line]
    assert len(said) == 1 and "needs the package scipy: pip install scipy" in said[0], out.output
    if (tmp_path / "cli.db").exists():
        assert all(s.n_trials == 0 for s in optuna.get_all_study_summaries(url))
