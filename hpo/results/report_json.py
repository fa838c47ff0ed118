"""``hpo report --json``: a stored study's facts as plain, strict JSON for scripts: the
summary, the baseline, the leaderboard and the insights (hpo/results/insights.py)."""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from optuna.trial import FrozenTrial, TrialState

from hpo import keys
from hpo.execution.workers import timeout_note
from hpo.results.insights import BASELINE_ATTR, BEST_ATTR, insights
from hpo.results.privacy import private_trials
from hpo.results.report import infeasible, ranked, summarize, trial_steps, trial_value
from hpo.tasks.token_classification import per_type_f1

if TYPE_CHECKING:
    from hpo.config.spec import StudySpec


def _jsonable(x: Any) -> Any:
    """x with NaN/inf as null, datetimes as ISO text and tuples as lists (strict JSON)."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, datetime):
        return x.isoformat()
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if x is None or isinstance(x, str | int | bool):
        return x
    return str(x)


def report_data(
    study_name: str,
    spec: StudySpec,
    trials: Sequence[FrozenTrial],
    study_attrs: Mapping[str, Any],
    top: int = 10,
) -> dict[str, Any]:
    """The report's facts as plain data: summary, baseline, leaderboard and insights."""
    if top < 1:
        raise ValueError(f"top must be at least 1, not {top}")
    metric, direction = spec.study.metric, spec.direction
    summary = summarize(study_name, metric, direction, trials)
    facts = dataclasses.asdict(summary)
    facts["failures"] = [{"number": n, "reason": r} for n, r in summary.failures]
    stored = study_attrs.get(BASELINE_ATTR)
    baseline = None
    if isinstance(stored, Mapping) and "accuracy" in stored:
        base, best = float(stored["accuracy"]), summary.best_value
        diff = best - base if metric == "accuracy" and best is not None else None
        baseline = {"label": stored.get("label"), "accuracy": base, "best_minus_baseline": diff}
        if stored.get("metric") == metric:  # F1: the best constant answer, in the metric
            value = float(stored["value"])
            baseline.update(
                constant=stored.get("constant"),
                value=value,
                best_minus_baseline=None if best is None else best - value,
            )
    leaderboard = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": trial_value(t),
            "params": dict(t.params),
            "steps": trial_steps(t),
            "samples_per_second": t.user_attrs.get(keys.SAMPLES_PER_SECOND),
        }
        for t in ranked(trials, direction, top)
    ]
    ins = insights(trials, direction)
    total = summary.steps_if_unpruned
    top_trial = next((t for t in trials if t.number == summary.best_number), None)
    return _jsonable(
        {
            "summary": facts,
            "n_waiting": sum(t.state == TrialState.WAITING for t in trials),
            "stopped_by_timeout": timeout_note(
                list(trials),
                study_attrs,
                spec.study.n_trials,
                spec.study.budget,
                spec.study.timeout,
            ),
            "n_trials_budget": spec.study.n_trials,
            "baseline": baseline,
            "leaderboard": leaderboard,
            "importances": {"values": ins.importances, "note": ins.importance_note},
            "best_history": [{"number": n, "value": v, "best": b} for n, v, b in ins.history],
            "learning_curves": [
                {
                    "number": n,
                    "state": s,
                    "steps": [p[0] for p in pts],
                    "values": [p[1] for p in pts],
                }
                for n, s, pts in ins.curves
            ],
            "by_state": {s: dataclasses.asdict(v) for s, v in ins.by_state.items()},
            "pruning": {
                "steps_saved": summary.steps_saved_by_pruning,
                "steps_if_unpruned": total,
                "fraction_saved": summary.steps_saved_by_pruning / total if total else 0.0,
                "seconds_saved_estimate": ins.pruning_seconds_saved,
            },
            "retrained": study_attrs.get(BEST_ATTR),
            **_spend_race_and_screens(spec, trials),
            # what the text report shows beside the tables above
            "best_per_type_f1": (
                per_type_f1(top_trial.user_attrs.get(keys.METRICS)) if top_trial else {}
            ),
            "windowed_sentences": next(
                (t.user_attrs[keys.WINDOWED] for t in trials if keys.WINDOWED in t.user_attrs),
                None,
            ),
            "privacy": [
                {
                    "number": t.number,
                    "value": t.values[0],
                    "epsilon": epsilon,
                    "delta": t.user_attrs.get(keys.DP_DELTA),
                    "within_target": not infeasible(t),
                }
                for epsilon, t in private_trials(trials)
            ],
        }
    )


def _spend_race_and_screens(spec: StudySpec, trials: Sequence[FrozenTrial]) -> dict[str, Any]:
    """What the text report says in lines of their own: the spend beside the untuned recipe's
    cost and the budget, the race's configurations and the screens kept."""
    from hpo.search.budget import UNITS, spent
    from hpo.search.racing import FINALISTS, configurations, raced
    from hpo.search.screening import kept_runs, ranked_screens, screen_caution, screen_score

    maximize = spec.direction == "maximize"
    full = [t.user_attrs[keys.FULL_TRIAL] for t in trials if keys.FULL_TRIAL in t.user_attrs]
    spend: dict[str, Any] = {unit: spent(trials, unit) for unit in UNITS}
    spend["recipe"] = full[-1] if full else None  # one unpruned trial of the same budget
    budget = None
    if spec.study.budget:
        ((unit, amount),) = spec.study.budget.items()
        budget = {"unit": unit, "amount": amount, "spent": spend[unit]}
    race = [
        {"first": c.first.number, "trials": list(c.numbers), "values": list(c.values),
         "mean": c.mean, "sd": c.sd if len(c.values) > 1 else None}
        for c in configurations(trials, maximize)[:FINALISTS]
    ] if raced(trials) else None  # fmt: skip
    runs = kept_runs(trials)
    screens = [
        {"number": t.number, "screen_value": screen_score(t), "steps": t.user_attrs[keys.SCREENED],
         "kept_as": runs[t.number].number if t.number in runs else None,
         "kept_value": runs[t.number].value if t.number in runs else None}
        for t in ranked_screens(trials, maximize)
    ]  # fmt: skip
    learned = None
    if spec.pruner.learn_rung:
        from hpo.search.rungs import study_rung

        step, done = study_rung(trials, spec.study.proportion)
        learned = {"step": step, "complete_trials": done}  # step None: no trial stopped
    return {
        "learned_rung": learned,
        "spent": spend,
        "budget": budget,
        "race": race,
        "screens": screens or None,
        "screen_caution": screen_caution(trials, maximize, spec.study.proportion),
    }


def report_json(
    study_name: str,
    spec: StudySpec,
    trials: Sequence[FrozenTrial],
    study_attrs: Mapping[str, Any],
    top: int = 10,
) -> str:
    """``report_data`` as strict JSON text (no NaN), indented for reading."""
    return json.dumps(
        report_data(study_name, spec, trials, study_attrs, top), indent=2, allow_nan=False
    )
