"""Options shared by several commands, defined once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def storage_option(f: F) -> F:
    return click.option(
        "--storage",
        metavar="URL",
        default=None,
        help="Database URL (default: $HPO_STORAGE, else sqlite:///hpo.db). "
        "postgresql+psycopg://..., mysql+pymysql://..., journal:FILE and "
        "grpc://HOST:PORT (an `hpo proxy`) also work.",
    )(f)


def listen_options(what: str, port: int) -> Callable[[F], F]:
    """--host (loopback by default) and --port options for a server ``what`` names."""

    def decorate(f: F) -> F:
        f = click.option(
            "--port",
            type=click.IntRange(min=1, max=65535),
            default=port,
            show_default=True,
            help="Port to listen on.",
        )(f)
        return click.option(
            "--host",
            default="127.0.0.1",
            show_default=True,
            help=f"Address to listen on. 0.0.0.0 lets other machines in, and {what} has no login.",
        )(f)

    return decorate


def out_folder_option(what: str) -> Callable[[F], F]:
    """A required --out FOLDER option and its --overwrite flag; ``what`` says what goes in it."""

    def decorate(f: F) -> F:
        f = click.option(
            "--overwrite",
            is_flag=True,
            help="Replace an --out folder that is not empty (by default it is refused).",
        )(f)
        return click.option(
            "--out",
            type=click.Path(file_okay=False, path_type=Path),
            required=True,
            help=f"Folder for {what}: a new or empty one, unless --overwrite.",
        )(f)

    return decorate


def set_option(f: F) -> F:
    return click.option(
        "--set",
        "overrides",
        metavar="SECTION.KEY=VALUE",
        multiple=True,
        help="Override one field of the study file for this run (repeatable); "
        "the value is read as TOML, e.g. --set train.max_steps=50.",
    )(f)
