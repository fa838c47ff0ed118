"""Running a study: `hpo create`, `hpo run` (here or in parallel workers) and `hpo worker`."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from hpo import keys
from hpo.cli.common import baseline, load_study_file, print_report, quiet_libraries
from hpo.cli.options import F, set_option, storage_option
from hpo.cli.status import (
    budget_text,
    exit_if_nothing_finished,
    progress,
    say_deadline,
    stopped_line,
)
from hpo.data.fingerprint import check_same_data, fingerprint
from hpo.execution.signals import WorkerStopped, sigterm_stops_worker
from hpo.execution.storage import masked_url, open_storage
from hpo.results.dashboard import write_study_note


def budget_options(f: F) -> F:
    f = click.option(
        "--timeout",
        type=click.FloatRange(min=0, min_open=True),
        help="Study-wide seconds; no trial starts after.",
    )(f)
    return click.option(
        "--n-trials", type=click.IntRange(min=1), help="Study-wide number of trials."
    )(f)


@click.command()
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

    spec, text = load_study_file(study_file, overrides, n_trials, timeout)
    quiet_libraries()
    task = preflight(spec)
    url = storage_url(storage)
    extra = {BASELINE_ATTR: baseline(task, spec.study.metric)}
    study, resumed = create_or_resume(spec, open_storage(url), text, extra, fingerprint(task))
    # no clock yet: the first worker starts it (start_deadline), however long it was queued
    set_deadline(study, None)
    write_study_note(study)
    click.echo(
        f"{'study exists' if resumed else 'created study'} {spec.study.name!r} in {masked_url(url)} "
        f"({budget_text(spec)}); join it with: "
        f"hpo worker {spec.study.name} --storage {masked_url(url)}"
    )


@click.command()
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
    from hpo.execution.storage import storage_url
    from hpo.training.device import check_device

    spec, text = load_study_file(study_file, overrides, n_trials, timeout)
    url = storage_url(storage)
    console = Console()
    quiet_libraries()
    gpu_ids = launch.parse_gpus(gpus)
    check_device(spec.train.device)  # before anything loads or the database opens
    # the database is opened once the data and model have loaded: bad data leaves no database
    if gpu_ids or (workers or 1) > 1:
        slots = launch.plan_slots(workers, gpu_ids, per_gpu)
        # each worker sees only its own GPU (as cuda:0), or none
        who = "in each --gpus worker" if gpu_ids else "in --workers processes (--gpus: GPU ones)"
        check_device(spec.train.device, 1 if gpu_ids else 0, who)
        study = _run_parallel(console, spec, text, url, slots)
    else:
        study = _run_here(console, spec, text, url)
    write_study_note(study)
    print_report(console, study, spec)
    exit_if_nothing_finished(console, study)


def _work(study: Any, objective: Any, spec: Any, live: Any, held: Any) -> None:
    """This process's share of the study: trials until the trial count or the spend budget is
    used, each announced on the live view (which counted ``held`` when it started)."""
    from hpo.execution.workers import work

    work(
        study,
        objective,
        spec.study.n_trials,
        on_finished=_announce(live, held),
        spend=spec.study.budget,
        on_wait=lambda line: live.console.print(line, highlight=False),
    )


def _live(console: Any, spec: Any, held: Any) -> Any:
    """The live view, counting the trials a study already ``held`` when it started."""
    from hpo.results.live import LiveView

    view = LiveView(
        console,
        spec.study.name,
        spec.study.metric,
        spec.direction,
        None if spec.study.budget else spec.study.n_trials,
    )
    view.resume_from(held)
    return view


def _run_here(console: Any, spec: Any, text: str, url: str) -> Any:
    """One worker in this process, with the live view."""
    from hpo.execution.workers import budget_used, set_deadline
    from hpo.search.objective import Objective
    from hpo.search.preflight import check_max_lengths
    from hpo.search.study import BASELINE_ATTR, create_or_resume

    objective = Objective(spec)
    check_max_lengths(spec)  # tokenizers and configs: an error before the data and weights load
    console.print(f"preparing study [bold]{spec.study.name}[/]: data, tokenizer, model ...")
    prep = objective.prepare()
    extra = {BASELINE_ATTR: baseline(prep.task, spec.study.metric)}
    study, resumed = create_or_resume(spec, open_storage(url), text, extra, fingerprint(prep.task))
    set_deadline(study, spec.study.timeout)
    done = progress(study.get_trials(deepcopy=False), budget_used(study), spec)
    console.print(
        f"{'resumed' if resumed else 'created'} study [bold]{spec.study.name}[/] in {masked_url(url)} "
        f"({done}) · device "
        f"{prep.device.description} · {len(prep.task.train)} train / "
        f"{len(prep.task.validation)} validation rows · setup {prep.setup_seconds:.1f}s",
        highlight=False,
    )
    try:
        held = study.get_trials(deepcopy=False)
        with sigterm_stops_worker(), _live(console, spec, held) as live:
            objective.listener = live
            _work(study, objective, spec, live, held)
    except (KeyboardInterrupt, WorkerStopped):
        stopped_line(console, study)  # the interrupted trial is recorded by now
        sys.exit(130)
    return study


def _announce(live: Any, held: Any) -> Callable[..., None]:
    """Announce each trial as this worker finishes it, and before it those that other workers
    (another ``hpo worker``, another machine) finished since the last: this worker's view then
    counts, and takes the best so far from, the whole study, not only its own trials. ``held``:
    the trials the view already counted when it started."""
    seen = {t.number for t in held if t.state.is_finished()}

    def announce(study: Any, finished: Any = None) -> None:
        """``finished``: this worker's trial, announced last; None: only others' (a launcher
        that runs no trial itself polls with it)."""
        last = None if finished is None else finished.number
        trials = study.get_trials(deepcopy=False)
        others = [t for t in trials if t.state.is_finished() and t.number != last]
        for t in [*others, *([finished] if finished is not None else [])]:
            if t.number not in seen:
                seen.add(t.number)
                _finished(live, t)

    return announce


def _finished(live: Any, trial: Any) -> None:
    """Print a stored trial's end on the live view: where it stopped, its (last) value, and
    whether it can be the answer."""
    from hpo.results.summary import infeasible, trial_steps, trial_value

    feasible = not infeasible(trial)
    live.trial_finished(
        trial.number, trial.state.name, trial_value(trial), feasible, trial_steps(trial)
    )


def _run_parallel(console: Any, spec: Any, text: str, url: str, slots: list[Any]) -> Any:
    """Create the study here, then start one worker process per slot and watch the database."""
    from hpo.execution import launch
    from hpo.execution.workers import set_deadline
    from hpo.search.preflight import preflight
    from hpo.search.study import BASELINE_ATTR, create_or_resume

    task = preflight(spec)
    extra = {BASELINE_ATTR: baseline(task, spec.study.metric)}
    study, resumed = create_or_resume(spec, open_storage(url), text, extra, fingerprint(task))
    set_deadline(study, spec.study.timeout)
    where = ", ".join(
        f"GPU {s.gpu}" if s.gpu is not None else f"{s.threads} CPU threads" for s in slots
    )
    console.print(
        f"{'resumed' if resumed else 'created'} study [bold]{spec.study.name}[/] in {masked_url(url)}; "
        f"{len(slots)} workers ({where}) · {len(task.train)} train / {len(task.validation)} "
        "validation rows",
        highlight=False,
    )
    # the trials a resumed study already holds are counted by the view, not announced again
    held = study.get_trials(deepcopy=False)
    procs = launch.spawn(spec.study.name, url, slots)
    try:
        with sigterm_stops_worker(), _live(console, spec, held) as live:
            announce = _announce(live, held)
            codes = launch.wait_all(procs, lambda: announce(study))
    except (KeyboardInterrupt, WorkerStopped):
        launch.stop_all(procs)  # each worker records its current trial, then exits
        stopped_line(console, study)
        sys.exit(130)
    if any(codes):
        console.print(f"[yellow]some workers exited with errors[/]: exit codes {codes}")
    return study


@click.command()
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
    import contextlib
    import io
    import os

    from rich.console import Console

    from hpo.execution import launch
    from hpo.execution.storage import open_existing, storage_url
    from hpo.execution.workers import start_deadline
    from hpo.search.objective import Objective
    from hpo.search.study import BASELINE_ATTR, load_stored

    quiet_libraries()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    index = worker_index if worker_index is not None else os.getpid()
    # a worker joins a study: a database that is not there is an error, and none is made
    existing = open_existing(storage_url(storage), heartbeat=True)
    study, spec = load_stored(study_name, existing, worker_index=index)
    objective = Objective(spec)
    # the data's warnings (leakage, dropped rows) were printed by whoever launched the workers;
    # --quiet keeps N workers from repeating them (errors still raise and are printed)
    with contextlib.redirect_stderr(io.StringIO()) if quiet else contextlib.nullcontext():
        prep = objective.prepare()
    # a worker on another machine reads its own copy of the data: it must be the study's
    data = fingerprint(prep.task)
    check_same_data(study.study_name, study.user_attrs.get(keys.DATA), data)
    if keys.DATA not in study.user_attrs:
        study.set_user_attr(keys.DATA, data)
    if BASELINE_ATTR not in study.user_attrs:
        study.set_user_attr(BASELINE_ATTR, baseline(prep.task, spec.study.metric))
    console = Console(quiet=quiet)
    start_deadline(study, spec.study.timeout)  # a study `hpo create` made: its first worker
    try:
        held = study.get_trials(deepcopy=False)
        with sigterm_stops_worker(), _live(console, spec, held) as live:
            if not quiet:
                objective.listener = live
            _work(study, objective, spec, live, held)
    except (KeyboardInterrupt, WorkerStopped):
        stopped_line(console, study)  # nothing with --quiet (the workers `run --workers` starts)
        sys.exit(130)
    if os.environ.get(launch.LAUNCHED_ENV) != "1":  # `hpo run --workers`: its report says it
        say_deadline(study, spec)
