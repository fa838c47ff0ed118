"""``hpo dashboard``: optuna-dashboard on the study database, beside running workers."""

from __future__ import annotations

import click

from hpo.cli.options import listen_options, storage_option


@click.command()
@storage_option
@listen_options("the dashboard", 8080)
def dashboard(storage: str | None, host: str, port: int) -> None:
    """Serve optuna-dashboard on the study database while workers write to it.

    Each hpo study gets a note with its study file and a summary (refreshed at start); each trial
    shows its device, steps, samples per second and failure reason. Needs hpo[dashboard].
    """
    from hpo.execution.storage import masked_url, storage_url
    from hpo.results.dashboard import exposure_warning, prepare

    warning = exposure_warning(host, port)
    if warning is not None:  # said first, so it is seen even when serving fails
        click.echo(warning, err=True)
    url = storage_url(storage)
    server, count = prepare(url, host, port)
    shown = "localhost" if host in ("127.0.0.1", "::1") else host
    click.echo(
        f"dashboard of {count} hpo {'study' if count == 1 else 'studies'} in {masked_url(url)} at "
        f"http://{shown}:{port}/dashboard/ (Ctrl-C stops it)"
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
