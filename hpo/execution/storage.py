"""Storage URL -> Optuna storage: SQLite tuned for a few processes, PostgreSQL, MySQL, journal file.

One factory, so every command opens the database the same way, and one place that turns driver
errors into a ``StorageError`` a user can read.
"""

from __future__ import annotations

import os
import sqlite3
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.errors import (
    DependencyError,
    StorageError,
    StorageUnavailable,
    first_line,
    without_tokens,
)

if TYPE_CHECKING:
    import optuna

DEFAULT_STORAGE = "sqlite:///hpo.db"
ENV_VAR = "HPO_STORAGE"

# Heartbeats let live workers notice a dead one's trial; a trial whose worker has been silent
# for the grace period is failed and its parameters re-queued once. The environment variables
# shorten both for tests, or lengthen them for slow shared file systems.
HEARTBEAT_INTERVAL = 20
GRACE_PERIOD = 90


def _heartbeat_settings() -> tuple[int, int]:
    interval = int(os.environ.get("HPO_HEARTBEAT_INTERVAL", HEARTBEAT_INTERVAL))
    grace = int(os.environ.get("HPO_GRACE_PERIOD", max(GRACE_PERIOD, 3 * interval)))
    if interval < 1 or grace <= interval:
        raise StorageError(
            f"HPO_GRACE_PERIOD ({grace}) must exceed HPO_HEARTBEAT_INTERVAL ({interval}) >= 1"
        )
    return interval, grace


_DRIVERS = {
    "psycopg": "postgres",
    "psycopg2": "postgres",
    "pymysql": "mysql",
    "MySQLdb": "mysql",
}


def storage_url(cli_value: str | None = None) -> str:
    """The URL to use: the flag, else ``$HPO_STORAGE``, else ``sqlite:///hpo.db`` here."""
    return cli_value or os.environ.get(ENV_VAR) or DEFAULT_STORAGE


def open_storage(
    url: str, *, pool_size: int = 2, heartbeat: bool = True
) -> optuna.storages.BaseStorage:
    """Open (creating tables if needed) the storage behind ``url``."""
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if is_journal(url):
        return _journal(url)
    if url.startswith("grpc://"):  # Optuna's storage proxy (``hpo proxy``) in front of a database
        from hpo.execution.proxy import open_client

        return open_client(url)
    if "://" not in url:
        raise StorageError(
            f"storage {url!r} is not a URL; use sqlite:///file.db, postgresql+psycopg://..., "
            "mysql+pymysql://..., journal:path.log or grpc://host:port (hpo proxy)"
        )
    _check_scheme(url)
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        _prepare_sqlite(url)
        # Wait for a lock instead of failing at once; WAL lets readers in beside a writer.
        engine_kwargs["connect_args"] = {"timeout": 60}
    else:
        # A worker holds at most two connections at once (its trial and its heartbeat thread),
        # so 16 workers stay far below PostgreSQL's default of 100 clients.
        engine_kwargs.update(pool_size=pool_size, max_overflow=1, pool_recycle=3600)
    hb: dict[str, Any] = {}
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna, and relied on
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            if heartbeat:
                interval, grace = _heartbeat_settings()
                hb = {
                    "heartbeat_interval": interval,
                    "grace_period": grace,
                    "heartbeat_stale_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=1),
                }
            rdb = _created(url, engine_kwargs, hb)
        if heartbeat:  # workers and runs ride out a database restart; readers fail at once
            from hpo.execution.resilient import retried

            return retried(rdb, url)
        return rdb
    except ModuleNotFoundError as exc:
        extra = _DRIVERS.get(exc.name or "")
        hint = f"pip install 'hpo[{extra}]'" if extra else f"pip install {exc.name}"
        raise DependencyError(
            f"storage {masked_url(url)} needs the driver {exc.name}: {hint}"
        ) from None
    except Exception as exc:  # sqlalchemy raises ArgumentError, OperationalError, ...
        if "Failed to import DB access module" in str(exc):  # Optuna's words for no driver
            raise DependencyError(_no_driver(url)) from None
        message = f"cannot open storage {masked_url(url)}: {without_secret(first_line(exc), url)}"
        # The server is full ("too many clients", or a per-role or per-database limit): nothing
        # in the URL is wrong. Optuna may wrap the driver's error in its own, hence the cause.
        if "too many c" in f"{exc} {exc.__cause__}".lower():
            raise StorageUnavailable(
                f"database {masked_url(url)} refuses more connections (its max_connections is "
                "used up; each worker holds up to 3): run fewer workers, or put `hpo proxy` in "
                "front of it (deploy/README.md)"
            ) from None
        if _server_down(exc):
            raise StorageUnavailable(message) from None
        raise StorageError(message) from None


# the driver SQLAlchemy takes for a bare scheme, and the scheme of the driver hpo installs
_DEFAULT_DRIVERS = {
    "mysql": ("MySQLdb (mysqlclient)", "mysql+pymysql", "mysql"),
    "mariadb": ("MySQLdb (mysqlclient)", "mariadb+pymysql", "mysql"),
    "postgresql": ("psycopg2", "postgresql+psycopg", "postgres"),
}


def _no_driver(url: str) -> str:
    """The line for a URL whose database driver is not installed."""
    scheme = url.split("://", 1)[0]
    known = _DEFAULT_DRIVERS.get(scheme.lower())
    if known is None:
        return f"storage {masked_url(url)} needs a database driver that is not installed"
    driver, better, extra = known
    return (
        f"storage {masked_url(url)} asks SQLAlchemy for its default driver, {driver}, which is "
        f"not installed; write {better}://... (pip install 'hpo[{extra}]')"
    )


def _created(url: str, engine_kwargs: dict[str, Any], hb: dict[str, Any]) -> Any:
    """Optuna's RDBStorage, tolerating another process creating the same tables at this moment.

    Optuna checks for its tables, then creates them; two workers started together on a new
    database both see none, and the slower one fails on "table ... already exists" or on the
    schema version row. Opening again finds the tables complete.
    """
    import time

    import optuna

    for attempt in range(5):
        try:
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **hb)
        except Exception as exc:
            if attempt == 4 or not _creation_race(exc):
                raise
            time.sleep(0.2 * (attempt + 1))
    raise AssertionError("unreachable")


def _creation_race(exc: BaseException) -> bool:
    """Whether ``exc`` says another process created the schema first (SQLite, PostgreSQL and
    MySQL word it differently; Optuna may wrap the driver's error)."""
    text = f"{exc} {exc.__cause__}".lower()
    return any(
        sign in text
        for sign in ("already exists", "unique constraint failed: alembic_version",
                     "duplicate key value", "duplicate entry")
    )  # fmt: skip


def _server_down(exc: BaseException) -> bool:
    """Whether opening the storage failed because its server did not answer (sqlalchemy's
    OperationalError around a refused or timed-out connection), not because of the URL."""
    from sqlalchemy.exc import InterfaceError, OperationalError

    if not isinstance(exc, (OperationalError, InterfaceError)):
        return False
    text = str(exc).lower()
    return any(
        sign in text
        for sign in ("connection refused", "could not connect", "can't connect", "timed out",
                     "timeout expired", "no route to host", "name or service not known",
                     "could not translate host name", "server closed the connection")
    )  # fmt: skip


def open_existing(url: str, heartbeat: bool = False) -> optuna.storages.BaseStorage:
    """Open a study database that must exist already (to read it, without heartbeats; or, with
    ``heartbeat``, for a worker to join its study). A command that does not create studies
    never creates a database: a SQLite or journal file that is not there is a one-line error,
    and nothing (no file, no folder) is made."""
    file = local_file(url)
    if file is not None and not file.is_file():
        raise StorageError(
            f"no study database at {file}; pass the --storage URL that `hpo run` used "
            "(or set $HPO_STORAGE)"
        )
    return open_storage(url, heartbeat=heartbeat)


# Schemes people write that SQLAlchemy does not know, and the one it does.
_SCHEMES = {"postgres": "postgresql", "pg": "postgresql", "psql": "postgresql", "sqlite3": "sqlite"}


def _check_scheme(url: str) -> None:
    """A one-line error with the right scheme for a common misspelling (``postgres://``)."""
    scheme = url.split("://", 1)[0]
    backend = scheme.split("+", 1)[0].lower()
    if backend in _SCHEMES:
        right = _SCHEMES[backend] + scheme[len(backend) :]
        raise StorageError(
            f"storage scheme {scheme!r} is not one SQLAlchemy knows; write {right}:// "
            f"instead (for example {masked_url(right + url[len(scheme) :])})"
        )


def is_journal(url: str) -> bool:
    """Whether the URL names Optuna's journal file storage."""
    return url.startswith("journal:") or url.endswith((".log", ".journal", ".jsonl"))


def local_file(url: str) -> Path | None:
    """The file behind a SQLite or journal URL; None for database servers and memory."""
    if is_journal(url):
        return Path(url.removeprefix("journal:").removeprefix("//")).expanduser()
    if url.startswith("sqlite") and "///" in url:
        path = url.split("///", 1)[1].split("?", 1)[0]
        return None if path in ("", ":memory:") else Path(path).expanduser()
    return None


def _prepare_sqlite(url: str) -> None:
    """Create the file's folder and switch the database to WAL (the setting lives in the file)."""
    file = local_file(url)
    if file is None:
        return
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(file, timeout=60) as conn:
            conn.execute("PRAGMA journal_mode=WAL")
    except (OSError, sqlite3.Error) as exc:
        raise StorageError(f"cannot open SQLite database {file}: {exc}") from None


def _journal(url: str) -> optuna.storages.BaseStorage:
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

    path = local_file(url)
    assert path is not None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Lock by open(O_EXCL): works on network file systems where symlink locks may not.
        backend = JournalFileBackend(str(path), lock_obj=JournalFileOpenLock(str(path)))
        return JournalStorage(backend)
    except OSError as exc:
        raise StorageError(f"cannot open journal file {path}: {exc}") from None


def masked_url(url: str) -> str:
    """The storage URL as hpo prints it anywhere: its password masked (``***``) by SQLAlchemy's
    own URL rendering; URLs SQLAlchemy cannot read (journal files, gRPC) by hand."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return _redact(url)


def without_secret(text: str, url: str) -> str:
    """``text`` (a driver's error message, say) with the URL's password, and any Hugging Face
    token, masked wherever they appear."""
    text = without_tokens(text)
    try:
        from sqlalchemy.engine import make_url

        password = make_url(url).password
    except Exception:
        return text
    return text.replace(str(password), "***") if password else text


def _redact(url: str) -> str:
    """The URL without its password, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else url
    return url
