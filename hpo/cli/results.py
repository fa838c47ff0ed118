"""Commands that take a stored study's results out: ``hpo export`` (a table) and ``hpo plot``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hpo.cli.options import out_folder_option, storage_option


def _load(study_name: str, storage: str | None) -> tuple[Any, Any]:
    """The stored study and its spec, read without starting heartbeats."""
    import optuna

    from hpo.cli.common import quiet_libraries
    from hpo.execution.storage import open_existing, storage_url
    from hpo.search.study import load_stored

    quiet_libraries()  # the sampler it rebuilds warns of Optuna's experimental features
    study, spec = load_stored(study_name, open_existing(storage_url(storage)))
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return study, spec


@click.command()
@click.argument("study_name")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json", "parquet"]),
    default="csv",
    show_default=True,
    help="Table format.",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="File to write (default: stdout; parquet needs a file); a new one, unless --overwrite.",
)
@click.option("--overwrite", is_flag=True, help="Replace an --out file that exists.")
@storage_option
def export(
    study_name: str, fmt: str, out: Path | None, overwrite: bool, storage: str | None
) -> None:
    """Write one row per trial (number, state, value, param_*, times, attributes, metric_*).

    Parameters are columns named param_<name>, validation metrics metric_<name>; empty budget
    slots (WAITING trials) are left out.
    """
    from hpo.execution.storage import local_file, storage_url
    from hpo.results.export import check_export, check_own_files, export_trials

    database = local_file(storage_url(storage))
    # before the database is read: parquet without --out, an --out that exists (or is it)
    check_export(fmt, out, overwrite, [database] if database is not None else [])
    study, spec = _load(study_name, storage)
    check_own_files(out, spec.local_paths())  # its data and model files: known once read
    trials = study.get_trials(deepcopy=False)
    order = list(spec.space.dimensions)
    text, n = export_trials(trials, fmt, out, order)
    if text is not None:
        click.echo(text, nl=False)
    else:
        click.echo(f"wrote {n} trials to {out}")


@click.command()
@click.argument("study_name")
@out_folder_option("the PNG files")
@storage_option
def plot(study_name: str, out: Path, overwrite: bool, storage: str | None) -> None:
    """Write PNG plots: optimisation history, learning curves, importances, one slice per param.

    Needs matplotlib (pip install 'hpo[plots]'). Pruned trials show as cut-off learning curves.
    An --out folder that holds files is refused unless --overwrite, which replaces it whole.
    """
    from hpo.execution.storage import local_file, storage_url
    from hpo.results.export import check_out_folder
    from hpo.results.plots import pyplot, write_plots

    pyplot()  # a missing matplotlib is said before the database is read
    database = local_file(storage_url(storage))
    study, spec = _load(study_name, storage)
    keep = [database] if database is not None else []
    check_out_folder(out, overwrite, [*keep, *spec.local_paths()])
    files, notes = write_plots(study, spec.study.metric, out, overwrite)
    for note in notes:
        click.echo(f"note: {note}")
    for path in files:
        click.echo(f"wrote {path}")
