"""Real database servers for storage tests: a fresh database per test, dropped afterwards.

PostgreSQL and MariaDB/MySQL run as services on the CI machines (``.ci/run`` starts them);
where no server answers, the tests that need one are skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PG_ADMIN = os.environ.get(
    "HPO_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
MYSQL_ADMIN = os.environ.get("HPO_TEST_MYSQL", "mysql+pymysql://root@127.0.0.1:3306/mysql")
BACKENDS = ["sqlite", "postgresql", "mysql"]


def _admin_engine(url: str):  # type: ignore[no-untyped-def]
    import sqlalchemy

    return sqlalchemy.create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


@contextmanager
def database(backend: str, tmp_path: Path) -> Iterator[str]:
    """A storage URL on an empty database of the given backend (skips if no server answers)."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'workers.db'}"
        return
    import sqlalchemy

    admin_url = PG_ADMIN if backend == "postgresql" else MYSQL_ADMIN
    name = f"hpo_test_{uuid.uuid4().hex[:10]}"
    try:
        engine = _admin_engine(admin_url)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    except Exception as exc:  # driver missing or server down: both mean "cannot test here"
        pytest.skip(f"no {backend} server at {admin_url.split('@')[-1]}: {type(exc).__name__}")
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        yield url
    finally:
        with engine.connect() as conn:
            if backend == "postgresql":
                conn.execute(
                    sqlalchemy.text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :n AND pid <> pg_backend_pid()"
                    ),
                    {"n": name},
                )
            conn.execute(sqlalchemy.text(f"DROP DATABASE IF EXISTS {name}"))
        engine.dispose()
