"""What several commands share: reading a study file, the baseline, quiet libraries, the report."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from hpo import keys


def load_study_file(
    study_file: Path,
    overrides: tuple[str, ...],
    n_trials: int | None = None,
    timeout: float | None = None,
) -> tuple[Any, str]:
    """The study file with ``--set`` and the budget flags applied, validated."""
    from hpo.config.studyfile import load_spec

    spec, text = load_spec(study_file, overrides)
    if n_trials is not None:
        spec = spec.replace("study", n_trials=n_trials)
    if timeout is not None:
        spec = spec.replace("study", timeout=timeout)
    return spec, text


def baseline(task: Any, metric: str = "accuracy") -> dict[str, Any]:
    """What a model that learned nothing scores, stored with the study for its report: the
    train majority class's share of validation; for F1 metrics of a classification, also the
    best F1 one constant answer reaches on validation (always the positive class, say), which
    accuracy's majority share says nothing about."""
    label, share = task.majority_baseline()
    out: dict[str, Any] = {"label": label, "accuracy": share}
    labels = getattr(task.validation, "label", None)
    if metric in ("f1", "macro_f1") and labels:
        from hpo.tasks.classification import best_constant

        best, value = best_constant(labels, task.num_labels, metric)
        out.update(metric=metric, value=value, constant=task.label_names[best])
    return out


def baseline_of(stored: Any, metric: str) -> tuple[str, float] | None:
    """The stored baseline the report sets the best trial beside, in the study's metric."""
    if not stored:
        return None
    if metric == "accuracy":
        return f"majority class {stored['label']!r}", float(stored["accuracy"])
    if stored.get("metric") == metric:
        return f"always answering {stored['constant']!r}", float(stored["value"])
    return None


def print_report(console: Any, study: Any, spec: Any, top: int = 10) -> None:
    from hpo.execution.workers import timeout_note
    from hpo.final.card import over_seeds
    from hpo.results.insights import render_insights
    from hpo.results.report import render_report, summarize
    from hpo.search.study import BASELINE_ATTR

    trials = study.get_trials(deepcopy=False)
    summary = summarize(study.study_name, spec.study.metric, spec.direction, trials)
    baseline = baseline_of(study.user_attrs.get(BASELINE_ATTR), spec.study.metric)
    console.print(
        render_report(summary, trials, top=top, baseline=baseline, proportion=spec.study.proportion)
    )
    note = timeout_note(
        trials, study.user_attrs, spec.study.n_trials, spec.study.budget, spec.study.timeout
    )
    if note is not None:
        console.print(note, style="yellow", highlight=False, markup=False)
    console.print(render_insights(spec, trials))
    retrained = study.user_attrs.get(keys.BEST)
    if retrained and retrained.get("test_mean") is not None:
        gap = retrained.get("gap")
        console.print(
            f"retrained best (trial #{retrained['trial']}, seeds {retrained['seeds']}): "
            f"test {retrained['metric']} "
            f"{over_seeds(retrained['test_mean'], retrained['test_std'], retrained['seeds'])}"
            + (f", validation - test gap {gap:+.4f}" if gap is not None else ""),
            highlight=False,
        )


def quiet_libraries() -> None:
    """Optuna's per-trial log lines and experimental warnings would tear the live view."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
