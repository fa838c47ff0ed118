"""Optuna's gRPC storage proxy: ``hpo proxy`` serves a database, workers open ``grpc://host:port``.

Every worker process holds its own SQLAlchemy pool (up to three connections), so a few hundred
workers exhaust a PostgreSQL server's ``max_connections``. The proxy holds one pool of
``threads + 1`` connections and answers any number of workers over gRPC. It has no
authentication and no encryption: keep it on a private network.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import uuid
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from hpo.errors import DependencyError, HpoError, StorageError, StorageUnavailable, first_line

if TYPE_CHECKING:
    import optuna

SCHEME = "grpc://"
DEFAULT_PORT = 13000  # Optuna's default for run_grpc_proxy_server
DEFAULT_THREADS = 10  # Optuna's default thread pool; also the proxy's database connections
CONNECT_TIMEOUT = 10.0  # seconds a worker waits for the proxy before giving up
INSTALL_HINT = "pip install 'hpo[proxy]'"


class ProxyError(HpoError):
    """The proxy cannot listen (port in use, address not on this machine): exit 1."""


def is_proxy(url: str) -> bool:
    """Whether the storage URL names a gRPC storage proxy."""
    return url.startswith(SCHEME)


def parse(url: str) -> tuple[str, int]:
    """``grpc://host[:port]`` -> (host, port); anything else about it is a one-line error."""
    parts = urlsplit(url)
    if "@" in parts.netloc:  # checked first: the message must not show a password
        raise StorageError(
            "the gRPC storage proxy has no login: write grpc://HOST:PORT without user:password "
            "(and keep the proxy on a private network)"
        )
    try:
        port = parts.port
    except ValueError:
        raise StorageError(
            f"storage {url!r}: the port must be a number; write grpc://HOST:PORT"
        ) from None
    if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise StorageError(f"storage {url!r} is not grpc://HOST:PORT")
    return parts.hostname, port or DEFAULT_PORT


def _grpc_modules() -> None:
    """Import grpcio and protobuf, or say how to install them."""
    try:
        import google.protobuf  # noqa: F401
        import grpc  # noqa: F401
    except ImportError:
        raise DependencyError(
            f"the gRPC storage proxy needs grpcio and protobuf: {INSTALL_HINT}"
        ) from None


def open_client(url: str) -> optuna.storages.BaseStorage:
    """Connect to the proxy at ``url``; StorageUnavailable after the connect timeout
    (``$HPO_PROXY_TIMEOUT`` seconds, default 10) rather than a hang, and also when the proxy
    answers but its database does not."""
    host, port = parse(url)
    _grpc_modules()
    import grpc
    import optuna

    timeout = float(os.environ.get("HPO_PROXY_TIMEOUT", CONNECT_TIMEOUT))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.GrpcStorageProxy(host=host, port=port)
    try:
        storage.wait_server_ready(timeout=timeout)
    except ConnectionError:
        storage.close()
        raise StorageUnavailable(
            f"no storage proxy answers at {url} (waited {timeout:g} s); start one with "
            "`hpo proxy --storage DATABASE_URL`"
        ) from None
    try:  # one round trip through to the database: an unknown name is the cheap answer
        storage.get_study_id_from_name(f"hpo-probe-{uuid.uuid4().hex}")
    except KeyError:
        pass
    except grpc.RpcError as exc:
        storage.close()
        details = exc.details() if hasattr(exc, "details") else str(exc)
        raise StorageUnavailable(
            f"the storage proxy at {url} answers but its database does not: "
            f"{first_line(Exception(details))}"
        ) from None
    return storage


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine's loopback ("localhost", 127.0.0.0/8, ::1); a host name
    may resolve to any interface, so it is not."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def exposure_warning(host: str, port: int) -> str | None:
    """The warning to print before listening beyond this machine; None on loopback."""
    if is_loopback(host):
        return None
    return (
        "warning: the storage proxy has no authentication and no encryption, so anyone who can "
        f"reach {host}:{port} can read and change every study in the database"
    )


def check_port(host: str, port: int) -> None:
    """Fail with one line if host:port cannot be listened on. gRPC listens with SO_REUSEPORT,
    so a second proxy on a taken port would silently share it with the first; a plain bind,
    tried first, refuses."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise StorageError(f"cannot listen on {host}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ProxyError(
                    f"port {port} on {host} is already in use; pick another with --port"
                ) from None
            raise ProxyError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def backing_storage(url: str, threads: int) -> optuna.storages.BaseStorage:
    """The database the proxy serves, with one connection per server thread, behind Optuna's
    cache of finished trials (as ``run_grpc_proxy_server`` recommends)."""
    import optuna

    from hpo.execution.storage import is_journal, masked_url, open_storage

    if is_proxy(url):
        raise StorageError("the proxy needs a database URL (postgresql+psycopg://...), not grpc://")
    if is_journal(url):
        raise StorageError(
            f"storage {masked_url(url)}: Optuna's proxy serves SQL databases only, not journal "
            "files; give it a postgresql+psycopg:// or mysql+pymysql:// URL"
        )
    # Heartbeats stay off here: workers behind a proxy beat through hpo.execution.liveness.
    storage = open_storage(url, pool_size=threads, heartbeat=False)
    return optuna.storages.get_storage(storage)


def serve(
    url: str, host: str, port: int, threads: int, ready: Callable[[], None] | None = None
) -> None:
    """Serve the database at ``url`` on host:port until interrupted; ``ready`` is called once
    the database is open and the port is free, just before the server starts."""
    os.environ.setdefault("GRPC_VERBOSITY", "ERROR")  # gRPC's C core logs to stderr otherwise
    _grpc_modules()
    import optuna

    storage = backing_storage(url, threads)
    check_port(host, port)
    if ready is not None:
        ready()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        try:
            optuna.storages.run_grpc_proxy_server(
                storage,
                host=host,
                port=port,
                thread_pool=ThreadPoolExecutor(max_workers=threads),
            )
        except RuntimeError as exc:  # gRPC's "Failed to bind": the port was taken meanwhile
            raise ProxyError(f"cannot listen on {host}:{port}: {first_line(exc)}") from None
