"""From a study to a model: retrain the best configuration with several seeds, test it, save it.

Selection uses the validation split only; the test split is scored once per retrained model and
never chooses anything, so the validation-test gap it reports is an honest check of whether the
search overfit the validation split (Dodge et al. 2020; Liu & Wang 2021).
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpo import keys
from hpo.config.sampling import Hyperparameters
from hpo.errors import HpoError
from hpo.search.racing import configurations, raced

if TYPE_CHECKING:
    import optuna

    from hpo.config.spec import StudySpec
    from hpo.search.objective import Objective
    from hpo.search.prepared import Prepared

BEST_ATTR = keys.BEST  # the retraining summary, stored in the study for `hpo report`


@dataclass
class SeedRun:
    """One retraining of a configuration with one seed."""

    seed: int
    validation: dict[str, float]
    test: dict[str, float] | None
    train_seconds: float
    epsilon: float | None = None  # privacy this run spent (DP-SGD), at ``delta``
    delta: float | None = None


@dataclass
class ConfigResult:
    """All seeds of one configuration (a trial of the study)."""

    trial_number: int
    params: dict[str, Any]
    runs: list[SeedRun] = field(default_factory=list)
    saved: int = 0  # the run whose model is kept (the best on validation)

    def values(self, split: str, metric: str) -> list[float]:
        out = []
        for run in self.runs:
            scores = run.validation if split == "validation" else run.test
            if scores is not None and metric in scores:
                out.append(scores[metric])
        return out

    def mean_std(self, split: str, metric: str) -> tuple[float, float] | None:
        vals = self.values(split, metric)
        if not vals:
            return None
        return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def top_trials(study: optuna.Study, k: int, maximize: bool) -> list[optuna.trial.FrozenTrial]:
    """The k best complete, feasible trials; after a race, the first trials of the k
    configurations with the best mean over their seeds."""
    from optuna.trial import TrialState

    from hpo.results.report import infeasible

    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and not infeasible(t)
    ]
    if not done:
        raise HpoError(f"study {study.study_name!r} has no complete trial to retrain yet")
    if raced(done):  # a race re-ran the leaders: rank configurations by their mean over seeds
        return [c.first for c in configurations(done, maximize)[:k]]
    done.sort(key=lambda t: (-t.value if maximize else t.value, t.number))  # type: ignore[operator]
    return done[:k]


def hyperparameters(params: dict[str, Any], seed: int) -> Hyperparameters:
    """A trial's parameters as the loop's settings, with another seed; dimensions the trial did
    not sample (conditional ones, or ones added since) take their off values."""
    from hpo.strategies import dimensions

    known = dimensions()
    if "learning_rate" not in params:  # in every space; conditional dimensions may be absent
        raise HpoError(
            f"the trial lacks parameter 'learning_rate' ({sorted(params)}); was it made by hpo?"
        )
    return Hyperparameters({**{k: v for k, v in params.items() if k in known}, "seed": seed})


def retrain(
    objective: Objective,
    trials: Sequence[optuna.trial.FrozenTrial],
    seeds: Sequence[int],
    train_on: str = "train",
    on_run: Callable[[int, int, SeedRun], None] | None = None,
) -> tuple[list[ConfigResult], Any, int]:
    """Retrain each trial's configuration for the full budget once per seed; score val and test.

    Returns the results, a model of the configuration `choose` picks (its run best on
    validation; its first seed's run when validation is part of the training data), and that
    configuration's index in the results.
    """
    from hpo.training.loop import evaluate, train

    spec = objective.spec
    task = objective.task
    tests: dict[str, Any] = {}
    results: list[ConfigResult] = []
    kept: tuple[int, Any] = (0, None)  # the configuration chosen so far and its model
    maximize, by_validation = spec.direction == "maximize", train_on == "train"
    sign = 1.0 if maximize else -1.0
    for trial in trials:
        result = ConfigResult(trial.number, dict(trial.params))
        best: tuple[float, Any] | None = None  # this configuration's best run
        for seed in seeds:
            hp = hyperparameters(trial.params, seed)
            prep = objective.prepare(model=hp["model"] or None)
            if prep.model_name not in tests:  # tokenized once per model
                rows = prep.task.test
                tests[prep.model_name] = (
                    task.encode(rows, prep.tokenizer, spec.train.max_length, "test")
                    if rows
                    else None
                )
            test = tests[prep.model_name]
            encoded, source = _training_data(prep, train_on, spec)
            train_data, make_batch = objective.training_rows(prep, hp, encoded, source)
            plan = objective.plan(hp, len(train_data))
            model, _ = objective.build_model(prep, hp)
            started = time.perf_counter()
            # objective = "best": the search scored the trial at its best evaluation, so the
            # run stops there, on the same schedule, and that state is the one scored and saved
            stop = best_step(trial, maximize) if spec.study.objective == "best" else None
            out = train(
                model,
                train_data,
                prep.validation,
                dataclasses.replace(plan, eval_every=stop or plan.max_steps),
                prep.device,
                pad_id=prep.pad_id,
                make_batch=make_batch,
                task=task,
                on_eval=None if stop is None else _stop_at(stop),
            )
            scores = None
            if test is not None:
                scores = evaluate(
                    model, test, prep.device, spec.train.eval_batch_size, prep.pad_id, task
                )
            run = SeedRun(seed, out.metrics, scores, time.perf_counter() - started)
            if out.epsilon is not None and plan.privacy is not None:
                run.epsilon, run.delta = out.epsilon, plan.privacy.delta
            result.runs.append(run)
            if on_run is not None:
                on_run(trial.number, seed, run)
            key = sign * out.metrics[spec.study.metric] if by_validation else 0.0
            if best is None or key > best[0]:
                best = (key, model.cpu())
                result.saved = len(result.runs) - 1
            else:
                del model
        results.append(result)
        assert best is not None
        if choose(results, spec.study.metric, maximize, by_validation) == len(results) - 1:
            kept = (len(results) - 1, best[1])
        del best  # not held while the next configuration trains
    return results, kept[1], kept[0]


def _stop_at(stop: int) -> Callable[[int, dict[str, float]], bool]:
    """An ``on_eval`` that ends training at step ``stop``."""
    return lambda step, _: step >= stop


def best_step(trial: optuna.trial.FrozenTrial, maximize: bool) -> int | None:
    """The step of the trial's best evaluation (the first of ties), where it comes before its
    last; None where the last evaluation was its best or it has none."""
    values = sorted(
        (s, v)
        for s, v in trial.intermediate_values.items()
        if v == v  # NaN: not a score
    )
    if not values:
        return None
    sign = 1.0 if maximize else -1.0
    step = max(values, key=lambda sv: (sign * sv[1], -sv[0]))[0]
    return None if step == values[-1][0] else step


def choose(
    results: Sequence[ConfigResult], metric: str, maximize: bool, by_validation: bool = True
) -> int:
    """The index of the configuration to keep: the best mean validation score over its seeds.

    One validation score is noisy, and the search's best trial is the highest of many noisy
    scores; the mean over several seeds ranks configurations the way held-out data does far
    more often. Without validation scores (e.g. trained on train+validation) the search's own
    order stands. Ties keep the earlier configuration.
    """
    means = [r.mean_std("validation", metric) for r in results]
    if not by_validation or any(m is None for m in means):
        return 0
    sign = 1.0 if maximize else -1.0
    keys = [sign * m[0] for m in means if m is not None]
    return keys.index(max(keys))


def _training_data(prep: Prepared, train_on: str, spec: StudySpec) -> tuple[Any, Any]:
    """The encoded rows to train on and their raw split (for augmentation)."""
    if train_on == "train":
        return prep.train, prep.task.train
    return prep.train.concat(prep.validation), prep.task.train.concat(prep.task.validation)
