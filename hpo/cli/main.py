"""The ``hpo`` command line: thin commands over the library.

This is the one place that turns an ``HpoError`` into a one-line message and an exit code.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from hpo import __version__, keys
from hpo.cli.options import F, set_option, storage_option
from hpo.errors import HpoError
from hpo.execution.workers import WorkerStopped
from hpo.results.dashboard import write_study_note


class _Group(click.Group):
    """A click group that shows library errors as ``Error: <one line>`` (exit 1), not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except HpoError as exc:
            raise click.ClickException(str(exc)) from None


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hpo")
def cli() -> None:
    """Hyperparameter search for fine-tuning pretrained transformers.

    Write a study file (see studies/), then `hpo run STUDY.toml`. Trials and the study file
    are stored in one SQL database that any number of workers and `hpo report` share.
    """


def _load(
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


def _baseline(task: Any) -> dict[str, Any]:
    label, share = task.majority_baseline()
    return {"label": label, "accuracy": share}


@cli.command()
@click.argument("study_file", type=click.Path(dir_okay=False, path_type=Path))
@set_option
@click.option("--data/--no-data", default=True, help="Also load the data and model config.")
def validate(study_file: Path, overrides: tuple[str, ...], data: bool) -> None:
    """Check a study file (and its data and model) without running anything."""
    from rich.console import Console

    from hpo.search.preflight import preflight

    spec, _ = _load(study_file, overrides)
    lines = []
    if data:
        task = preflight(spec)
        base = _baseline(task)
        test = len(task.test) if task.test is not None else 0
        lines.append(
            f"data: {len(task.train)} train, {len(task.validation)} validation, {test} test rows; "
            f"{task.num_labels} labels ({', '.join(task.label_names[:10])}); "
            f"majority class {base['label']!r} is {base['accuracy']:.3f} of validation"
        )
    console = Console()
    console.print(f"[green]ok[/]: {study_file} is a valid study file (study {spec.study.name!r})")
    for line in lines:
        console.print(line, highlight=False)
    conditions = spec.space.conditions()
    for name, dim in spec.space.dimensions.items():
        when = " and ".join(c.text for c in conditions[name])
        shown = (
            {k: v for k, v in dim.to_toml().items() if k != "when"} if dim.when else dim.to_toml()
        )
        console.print(
            f"  space.{name} = {shown!r}" + (f"  (sampled only when {when})" if when else ""),
            highlight=False,
        )
    for origin, params in spec.first_trials():
        console.print(f"  first trial ({origin}), before sampling: {params}", highlight=False)


def budget_options(f: F) -> F:
    f = click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        help="Study-wide seconds; no trial starts after.",
    )(f)
    return click.option(
        "--n-trials", type=click.IntRange(min=1), help="Study-wide number of trials."
    )(f)


@cli.command()
@click.argument("study_file", type=click.Path(dir_okay=False, path_type=Path))
@storage_option
@budget_options
@set_option
def create(
    study_file: Path,
    storage: str | None,
    n_trials: int | None,
    timeout: float | None,
    overrides: tuple[str, ...],
) -> None:
    """Create the study in the database (storing its study file) without running a trial.

    Workers on any machine then join it with `hpo worker STUDY_NAME --storage URL`.
    """
    from hpo.execution.storage import open_storage, storage_url
    from hpo.execution.workers import set_deadline
    from hpo.search.preflight import preflight
    from hpo.search.study import BASELINE_ATTR, create_or_resume

    spec, text = _load(study_file, overrides, n_trials, timeout)
    _quiet_libraries()
    task = preflight(spec)
    url = storage_url(storage)
    extra = {BASELINE_ATTR: _baseline(task)}
    study, resumed = create_or_resume(spec, open_storage(url), text, extra)
    set_deadline(study, spec.study.timeout)
    write_study_note(study)
    click.echo(
        f"{'study exists' if resumed else 'created study'} {spec.study.name!r} in {url} "
        f"({spec.study.n_trials} trials); join it with: "
        f"hpo worker {spec.study.name} --storage URL"
    )


@cli.command()
@click.argument("study_file", type=click.Path(dir_okay=False, path_type=Path))
@storage_option
@budget_options
@click.option("--workers", type=click.IntRange(min=1), help="Local worker processes (CPU).")
@click.option("--gpus", metavar="all|0,1,..", help="One worker per GPU, pinned to it.")
@click.option("--per-gpu", type=click.IntRange(min=1), default=1, help="Workers per GPU.")
@set_option
def run(
    study_file: Path,
    storage: str | None,
    n_trials: int | None,
    timeout: float | None,
    workers: int | None,
    gpus: str | None,
    per_gpu: int,
    overrides: tuple[str, ...],
) -> None:
    """Run (or resume) the study a study file describes, then print its report.

    The trial budget is the study's: running again resumes the stored study and only runs the
    trials that are missing (raise it with --n-trials). With --workers or --gpus the trials run
    in parallel worker processes that share the database.
    """
    from rich.console import Console

    from hpo.execution import launch
    from hpo.execution.storage import open_storage, storage_url

    spec, text = _load(study_file, overrides, n_trials, timeout)
    url = storage_url(storage)
    console = Console()
    _quiet_libraries()
    store = open_storage(url)
    gpu_ids = launch.parse_gpus(gpus)
    if gpu_ids or (workers or 1) > 1:
        slots = launch.plan_slots(workers, gpu_ids, per_gpu)
        study = _run_parallel(console, spec, text, url, store, slots)
    else:
        study = _run_here(console, spec, text, url, store)
    write_study_note(study)
    _print_report(console, study, spec)


def _live(console: Any, spec: Any) -> Any:
    from hpo.results.live import LiveView

    return LiveView(
        console, spec.study.name, spec.study.metric, spec.direction, spec.study.n_trials
    )


def _run_here(console: Any, spec: Any, text: str, url: str, store: Any) -> Any:
    """One worker in this process, with the live view."""
    from hpo.execution.workers import budget_used, set_deadline, sigterm_stops_worker, work
    from hpo.search.objective import Objective
    from hpo.search.study import BASELINE_ATTR, create_or_resume

    objective = Objective(spec)
    console.print(f"preparing study [bold]{spec.study.name}[/]: data, tokenizer, model ...")
    prep = objective.prepare()
    extra = {BASELINE_ATTR: _baseline(prep.task)}
    study, resumed = create_or_resume(spec, store, text, extra)
    set_deadline(study, spec.study.timeout)
    console.print(
        f"{'resumed' if resumed else 'created'} study [bold]{spec.study.name}[/] in {url} "
        f"({budget_used(study)} of {spec.study.n_trials} trials done) · device "
        f"{prep.device.description} · {len(prep.task.train)} train / "
        f"{len(prep.task.validation)} validation rows · setup {prep.setup_seconds:.1f}s",
        highlight=False,
    )
    try:
        with sigterm_stops_worker(), _live(console, spec) as live:
            objective.listener = live
            work(study, objective, spec.study.n_trials, on_finished=_announce(live))
    except (KeyboardInterrupt, WorkerStopped):
        console.print("[yellow]stopped[/]: finished trials are stored; run again to resume")
        sys.exit(130)
    return study


def _announce(live: Any) -> Callable[[Any, Any], None]:
    return lambda _study, t: live.trial_finished(t.number, t.state.name, t.value)


def _run_parallel(
    console: Any, spec: Any, text: str, url: str, store: Any, slots: list[Any]
) -> Any:
    """Create the study here, then start one worker process per slot and watch the database."""
    from hpo.execution import launch
    from hpo.execution.workers import set_deadline, sigterm_stops_worker
    from hpo.search.preflight import preflight
    from hpo.search.study import BASELINE_ATTR, create_or_resume

    task = preflight(spec)
    extra = {BASELINE_ATTR: _baseline(task)}
    study, resumed = create_or_resume(spec, store, text, extra)
    set_deadline(study, spec.study.timeout)
    where = ", ".join(
        f"GPU {s.gpu}" if s.gpu is not None else f"{s.threads} CPU threads" for s in slots
    )
    console.print(
        f"{'resumed' if resumed else 'created'} study [bold]{spec.study.name}[/] in {url}; "
        f"{len(slots)} workers ({where})",
        highlight=False,
    )
    procs = launch.spawn(spec.study.name, url, slots)
    seen: set[int] = set()
    try:
        with sigterm_stops_worker(), _live(console, spec) as live:

            def poll() -> None:
                for t in study.get_trials(deepcopy=False):
                    if t.state.is_finished() and t.number not in seen:
                        seen.add(t.number)
                        live.trial_finished(t.number, t.state.name, t.value)

            codes = launch.wait_all(procs, poll)
    except (KeyboardInterrupt, WorkerStopped):
        launch.stop_all(procs)  # each worker records its current trial, then exits
        console.print("[yellow]stopped[/]: finished trials are stored; run again to resume")
        sys.exit(130)
    if any(codes):
        console.print(f"[yellow]some workers exited with errors[/]: exit codes {codes}")
    return study


@cli.command()
@click.argument("study_name")
@storage_option
@click.option("--threads", type=click.IntRange(min=1), help="Torch CPU threads for this worker.")
@click.option(
    "--worker-index",
    type=click.IntRange(min=0),
    help="This worker's number; keeps parallel workers' samplers apart.",
)
@click.option("--quiet", is_flag=True, help="Print nothing but errors.")
def worker(
    study_name: str,
    storage: str | None,
    threads: int | None,
    worker_index: int | None,
    quiet: bool,
) -> None:
    """Join a stored study and run its trials until the study-wide budget is used.

    Needs only the study name and the storage URL: the study file is read from the database.
    """
    import os

    from rich.console import Console

    from hpo.execution.storage import open_storage, storage_url
    from hpo.execution.workers import sigterm_stops_worker, work
    from hpo.search.objective import Objective
    from hpo.search.study import BASELINE_ATTR, load_stored

    _quiet_libraries()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    index = worker_index if worker_index is not None else os.getpid()
    study, spec = load_stored(study_name, open_storage(storage_url(storage)), worker_index=index)
    objective = Objective(spec)
    prep = objective.prepare()
    if BASELINE_ATTR not in study.user_attrs:
        study.set_user_attr(BASELINE_ATTR, _baseline(prep.task))
    console = Console(quiet=quiet)
    try:
        with sigterm_stops_worker(), _live(console, spec) as live:
            if not quiet:
                objective.listener = live
            work(study, objective, spec.study.n_trials, on_finished=_announce(live))
    except (KeyboardInterrupt, WorkerStopped):
        sys.exit(130)


@cli.command()
@click.argument("study_name")
@storage_option
@click.option(
    "--top", type=click.IntRange(min=1), default=10, show_default=True, help="Leaderboard rows."
)
@click.option("--json", "as_json", is_flag=True, help="Print the same facts as JSON, for scripts.")
def report(study_name: str, storage: str | None, top: int, as_json: bool) -> None:
    """Show the report of a stored study, from the database alone."""
    from rich.console import Console

    from hpo.execution.storage import open_storage, storage_url
    from hpo.search.study import load_stored

    _quiet_libraries()
    study, spec = load_stored(study_name, open_storage(storage_url(storage), heartbeat=False))
    if as_json:
        from hpo.results.insights import report_json

        trials = study.get_trials(deepcopy=False)
        click.echo(report_json(study.study_name, spec, trials, study.user_attrs, top))
        return
    _print_report(Console(), study, spec, top)


def _print_report(console: Any, study: Any, spec: Any, top: int = 10) -> None:
    from hpo.results.insights import render_insights
    from hpo.results.report import render_report, summarize
    from hpo.search.study import BASELINE_ATTR

    trials = study.get_trials(deepcopy=False)
    summary = summarize(study.study_name, spec.study.metric, spec.direction, trials)
    stored = study.user_attrs.get(BASELINE_ATTR)
    baseline = None
    if stored and spec.study.metric == "accuracy":
        baseline = (f"majority class {stored['label']!r}", float(stored["accuracy"]))
    console.print(render_report(summary, trials, top=top, baseline=baseline))
    console.print(render_insights(spec, trials))
    retrained = study.user_attrs.get(keys.BEST)
    if retrained and retrained.get("test_mean") is not None:
        gap = retrained.get("gap")
        console.print(
            f"retrained best (trial #{retrained['trial']}, seeds {retrained['seeds']}): "
            f"test {retrained['metric']} {retrained['test_mean']:.4f} ± {retrained['test_std']:.4f}"
            + (f", validation - test gap {gap:+.4f}" if gap is not None else ""),
            highlight=False,
        )


def _quiet_libraries() -> None:
    """Optuna's per-trial log lines and experimental warnings would tear the live view."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def main() -> None:
    """Entry point of the ``hpo`` script and ``python -m hpo``."""
    cli(prog_name="hpo")


from hpo.cli.best import best, predict  # noqa: E402

cli.add_command(best)
cli.add_command(predict)

from hpo.cli.dashboard import dashboard  # noqa: E402

cli.add_command(dashboard)

from hpo.cli.augment import augment  # noqa: E402
from hpo.cli.results import export, plot  # noqa: E402

cli.add_command(augment)

cli.add_command(export)
cli.add_command(plot)
