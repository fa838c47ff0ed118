"""The ``hpo`` command line: thin commands over the library.

This is the one place that turns an ``HpoError`` into a one-line message and an exit code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hpo import __version__
from hpo.cli.common import load_study_file, print_report, quiet_libraries
from hpo.cli.options import set_option, storage_option
from hpo.errors import HpoError, UserError


class _WrongInput(click.ClickException):
    """A ``UserError`` shown as ``Error: <one line>``: exit 2, the code of click's own usage
    errors, without their usage text (the line names the field to fix)."""

    exit_code = 2


class _Group(click.Group):
    """A click group that shows library errors as ``Error: <one line>`` on stderr, not a
    traceback: exit 2 for wrong input (``UserError``), 1 for the rest, 130 for Ctrl-C."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except UserError as exc:
            raise _WrongInput(str(exc)) from None
        except KeyboardInterrupt:  # click would say "Aborted!" and exit 1; `run` exits 130 too
            click.echo("stopped by Ctrl-C", err=True)
            ctx.exit(130)
        except HpoError as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            if (lost := lost_proxy(exc)) is None:
                raise
            raise click.ClickException(lost) from None


def lost_proxy(exc: BaseException) -> str | None:
    """The line for a storage proxy (``hpo proxy``) that stopped answering mid-command, where
    ``exc`` is gRPC's error for it; None for anything else (a bug keeps its traceback)."""
    if not type(exc).__module__.startswith("grpc") or not hasattr(exc, "code"):
        return None
    code = getattr(exc.code(), "name", str(exc.code()))
    if code not in ("UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"):
        return None
    return (
        f"the storage proxy stopped answering ({code}); start `hpo proxy` again and rerun "
        "the same command: finished trials are stored, and the one in progress is retried"
    )


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
@click.option("--data/--no-data", default=True, help="Also load the data and model config.")
@click.option(
    "--model/--no-model",
    default=True,
    help="With the data, also load the model's config and tokenizer; --no-model checks the "
    "data alone (offline, before a hub model is downloaded).",
)
def validate(study_file: Path, overrides: tuple[str, ...], data: bool, model: bool) -> None:
    """Check a study file (and its data and model) without running anything."""
    from rich.console import Console

    from hpo.search.preflight import preflight
    from hpo.training.device import check_device

    spec, _ = load_study_file(study_file, overrides)
    check_device(spec.train.device)
    lines = []
    if data and model:
        from hpo.errors import ModelError
        from hpo.models.pretrained import load_tokenizer
        from hpo.tasks import get_task

        try:
            task = preflight(spec)
            tokenizer = load_tokenizer(spec.model)
        except ModelError as exc:
            raise ModelError(
                f"{exc} (--no-model checks the study and its data without it)"
            ) from None
        kind = get_task(spec.study.task)
        lines += kind.describe(task, tokenizer, spec.train.max_length)
        if (note := kind.metric_note(spec.study.metric, task)) is not None:
            lines.append(note)
    elif data:
        lines += _data_without_model(spec)
    console = Console()
    console.print(f"[green]ok[/]: {study_file} is a valid study file (study {spec.study.name!r})")
    for line in lines:  # label names and paths from the data: "[pos]" is not markup
        console.print(line, highlight=False, markup=False)
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


def _data_without_model(spec: Any) -> list[str]:
    """Load and check the data as a run would, without the model; lines that describe it."""
    from hpo.search.preflight import check_data
    from hpo.tasks import DEFAULT_TASK, get_task

    kind = get_task(spec.study.task)
    task = kind.load(spec.data)
    check_data(spec, task)  # all that needs no model: the metric, screens, privacy
    if spec.study.task == DEFAULT_TASK:  # its description counts rows and labels, not tokens
        lines = kind.describe(task, None, spec.train.max_length)
    else:
        test = len(task.test) if task.test is not None else 0
        lines = [f"data: {len(task.train)} train, {len(task.validation)} validation, {test} test"]
    if (note := kind.metric_note(spec.study.metric, task)) is not None:
        lines.append(note)
    return [*lines, f"model: {spec.model.name!r} not loaded (--no-model)"]


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

    from hpo.execution.storage import open_existing, storage_url
    from hpo.search.study import load_stored

    quiet_libraries()
    study, spec = load_stored(study_name, open_existing(storage_url(storage)))
    if as_json:
        from hpo.results.report_json import report_json

        trials = study.get_trials(deepcopy=False)
        click.echo(report_json(study.study_name, spec, trials, study.user_attrs, top))
        return
    print_report(Console(), study, spec, top)


def main() -> None:
    """Entry point of the ``hpo`` script and ``python -m hpo``."""
    cli(prog_name="hpo")


from hpo.cli.best import best, predict  # noqa: E402
from hpo.cli.run import create, run, worker  # noqa: E402

cli.add_command(create)
cli.add_command(run)
cli.add_command(worker)

cli.add_command(best)
cli.add_command(predict)

from hpo.cli.dashboard import dashboard  # noqa: E402

cli.add_command(dashboard)

from hpo.cli.proxy import proxy  # noqa: E402

cli.add_command(proxy)

from hpo.cli.augment import augment  # noqa: E402
from hpo.cli.results import export, plot  # noqa: E402

cli.add_command(augment)

cli.add_command(export)
cli.add_command(plot)
