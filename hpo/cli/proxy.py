"""``hpo proxy``: Optuna's gRPC storage proxy in front of the study database, for many workers."""

from __future__ import annotations

import contextlib

import click

from hpo.cli.options import listen_options, storage_option
from hpo.execution.proxy import DEFAULT_PORT, DEFAULT_THREADS


@click.command()
@storage_option
@listen_options("the proxy", DEFAULT_PORT)
@click.option(
    "--threads",
    type=click.IntRange(min=1, max=256),
    default=DEFAULT_THREADS,
    show_default=True,
    help="Requests served at once; the proxy holds one database connection per thread (+1).",
)
def proxy(storage: str | None, host: str, port: int, threads: int) -> None:
    """Serve the study database to workers over gRPC: `hpo worker NAME --storage grpc://HOST:PORT`.

    Hundreds of workers then share the proxy's few database connections instead of holding up
    to three each. Needs hpo[proxy]. A worker killed behind the proxy has its trial failed and
    retried once by the others, as on the database itself.
    """
    from hpo.execution.proxy import exposure_warning, serve
    from hpo.execution.storage import masked_url, storage_url

    warning = exposure_warning(host, port)
    if warning is not None:  # said first, so it is seen even when serving fails
        click.echo(warning, err=True)
    url = storage_url(storage)
    shown = f"[{host}]" if ":" in host else host

    def ready() -> None:
        click.echo(
            f"storage proxy for {masked_url(url)} at grpc://{shown}:{port} "
            f"({threads} threads; Ctrl-C stops it)"
        )

    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it stops
        serve(url, host, port, threads, ready)
