"""The ``hpo`` command line: thin commands over the library.

This is the one place that turns an ``HpoError`` into a one-line message and an exit code.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from hpo import __version__
from hpo.errors import HpoError

F = TypeVar("F", bound=Callable[..., Any])


class _Group(click.Group):
    """A click group that shows library errors as ``Error: <one line>`` (exit 1), not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HpoError as exc:
            raise click.ClickException(str(exc)) from None


def storage_option(f: F) -> F:
    return click.option(
        "--storage",
        metavar="URL",
        default=None,
        help="Database URL (default: $HPO_STORAGE, else sqlite:///hpo.db). "
        "postgresql+psycopg://..., mysql+pymysql://..., journal:FILE also work.",
    )(f)


def set_option(f: F) -> F:
    return click.option(
        "--set",
        "overrides",
        metavar="SECTION.KEY=VALUE",
        multiple=True,
        help="Override one field of the study file for this run (repeatable); "
        "the value is read as TOML, e.g. --set train.max_steps=50.",
    )(f)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hpo")
def cli() -> None:
    """Hyperparameter search for fine-tuning pretrained transformers.

    Write a study file (see studies/), then `hpo run STUDY.toml`. Trials and the study file
    are stored in one SQL database that any number of workers and `hpo report` share.
    """


@cli.command()
@click.argument("study_file", type=click.Path(dir_okay=False, path_type=Path))
@set_option
@click.option(
    "--data/--no-data", default=True, help="Also load the data and model config (default)."
)
def validate(study_file: Path, overrides: tuple[str, ...], data: bool) -> None:
    """Check a study file (and its data and model) without running anything."""
    from rich.console import Console

    from hpo.spec import load_spec

    spec, _ = load_spec(study_file, overrides)
    lines = []
    if data:
        from hpo.data import load_task
        from hpo.model import load_config
        from hpo.objective import check_model_fits

        task = load_task(spec.data)
        config = load_config(spec.model)
        layers = int(getattr(config, "num_hidden_layers", 0) or 0)
        check_model_fits(spec, layers)
        label, share = task.majority_baseline()
        test = len(task.test) if task.test is not None else 0
        lines += [
            f"data: {len(task.train)} train, {len(task.validation)} validation, {test} test rows; "
            f"{task.num_labels} labels ({', '.join(task.label_names[:10])}); "
            f"majority class {label!r} is {share:.3f} of validation",
            f"model: {spec.model.name} ({config.model_type}, {layers} layers)",
        ]
    console = Console()
    console.print(f"[green]ok[/]: {study_file} is a valid study file (study {spec.study.name!r})")
    for line in lines:
        console.print(line, highlight=False)
    for name, dim in spec.space.dimensions.items():
        console.print(f"  space.{name} = {dim.to_toml()!r}")


@cli.command()
@click.argument("study_file", type=click.Path(dir_okay=False, path_type=Path))
@storage_option
@click.option("--n-trials", type=click.IntRange(min=1), help="Study-wide number of trials.")
@click.option(
    "--timeout", type=click.FloatRange(min=0, min_open=True), help="Seconds; no trial starts after."
)
@set_option
def run(
    study_file: Path,
    storage: str | None,
    n_trials: int | None,
    timeout: float | None,
    overrides: tuple[str, ...],
) -> None:
    """Run (or resume) the study a study file describes, then print its report.

    The trial budget is the study's: running again resumes the stored study and only runs the
    trials that are missing. Raise it with --n-trials.
    """
    from rich.console import Console

    from hpo.objective import Objective
    from hpo.report import LiveView
    from hpo.spec import load_spec
    from hpo.storage import open_storage, storage_url
    from hpo.study import BASELINE_ATTR, create_or_resume, finished_count, run_study

    spec, text = load_spec(study_file, overrides)
    if n_trials is not None:
        spec = spec.replace("study", n_trials=n_trials)
    if timeout is not None:
        spec = spec.replace("study", timeout=timeout)
    url = storage_url(storage)
    console = Console()
    _quiet_libraries()
    store = open_storage(url)
    objective = Objective(spec)
    console.print(f"preparing study [bold]{spec.study.name}[/]: data, tokenizer, model ...")
    prep = objective.prepare()
    label, share = prep.task.majority_baseline()
    baseline = {"label": label, "accuracy": share}
    study, resumed = create_or_resume(spec, store, text, {BASELINE_ATTR: baseline})
    done = finished_count(study)
    console.print(
        f"{'resumed' if resumed else 'created'} study [bold]{spec.study.name}[/] in {url} "
        f"({done} of {spec.study.n_trials} trials stored) · device {prep.device.description} · "
        f"{len(prep.task.train)} train / {len(prep.task.validation)} validation rows · "
        f"setup {prep.setup_seconds:.1f}s"
    )
    try:
        with LiveView(
            console, spec.study.name, spec.study.metric, spec.direction, spec.study.n_trials
        ) as live:
            objective.listener = live
            run_study(
                study,
                objective,
                spec.study.n_trials,
                spec.study.timeout,
                callbacks=[lambda _s, t: live.trial_finished(t.number, t.state.name, t.value)],
            )
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: finished trials are stored; run again to resume")
        sys.exit(130)
    _print_report(console, study, spec)


@cli.command()
@click.argument("study_name")
@storage_option
@click.option(
    "--top", type=click.IntRange(min=1), default=10, show_default=True, help="Leaderboard rows."
)
def report(study_name: str, storage: str | None, top: int) -> None:
    """Show the report of a stored study, from the database alone."""
    from rich.console import Console

    from hpo.storage import open_storage, storage_url
    from hpo.study import load_stored

    _quiet_libraries()
    study, spec = load_stored(study_name, open_storage(storage_url(storage), heartbeat=False))
    _print_report(Console(), study, spec, top)


def _print_report(console: Any, study: Any, spec: Any, top: int = 10) -> None:
    from hpo.report import render_report, summarize
    from hpo.study import BASELINE_ATTR

    trials = study.get_trials(deepcopy=False)
    summary = summarize(study.study_name, spec.study.metric, spec.direction, trials)
    stored = study.user_attrs.get(BASELINE_ATTR)
    baseline = None
    if stored and spec.study.metric == "accuracy":
        baseline = (f"majority class {stored['label']!r}", float(stored["accuracy"]))
    console.print(render_report(summary, trials, top=top, baseline=baseline))


def _quiet_libraries() -> None:
    """Optuna's per-trial log lines and experimental warnings would tear the live view."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def main() -> None:
    """Entry point of the ``hpo`` script and ``python -m hpo``."""
    cli(prog_name="hpo")
