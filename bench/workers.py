"""Worker scaling on each storage: trials per second and database errors at 1-16 workers.

Each trial does no training: it sleeps a fixed time while reporting 10 intermediate values, so
what is measured is the cost of the study machinery and the database (claiming trials,
sampling, reports, pruning checks, heartbeats), not the model. Workers start together (a
barrier after each has opened the study), so slow process start-up is not counted.

    python bench/workers.py                      # SQLite, journal file, PostgreSQL; 1-16 workers
    python bench/workers.py --quick              # 1 and 4 workers on SQLite and the journal file
    python bench/workers.py --storages postgresql --workers 1 16
    python bench/workers.py --storages postgresql proxy --workers 16 64 --sampler random
                                                 # capacity: direct vs `hpo proxy` (gRPC)

On PostgreSQL (direct, or behind the proxy) the table also shows the peak number of
connections the server held to the study database (pg_stat_activity, sampled every 0.2 s).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path
from typing import Any

from common import fake_spec

PG_URL = os.environ.get(
    "HPO_BENCH_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)


class SleepObjective:
    """Samples the real search space, then sleeps ``seconds`` while reporting 10 values."""

    def __init__(self, spec: Any, seconds: float) -> None:
        self.spec, self.seconds = spec, seconds

    def __call__(self, trial: Any) -> float:
        import optuna

        from hpo.config.sampling import sample

        hp = sample(self.spec.space, trial)
        value = 0.0
        for step in range(1, 11):
            time.sleep(self.seconds / 10)
            value = 1 - abs(hp.learning_rate - 3e-5) * 1e3 - 0.01 * hp.frozen_layers + 0.001 * step
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        return value


def _worker(url: str, name: str, index: int, seconds: float, errors: Any, start: Any) -> None:
    from hpo.execution.storage import open_storage
    from hpo.execution.workers import work
    from hpo.search.study import load_stored

    def error() -> None:
        errors.put(traceback.format_exc().strip().splitlines()[-1])

    try:
        study, spec = load_stored(name, open_storage(url), worker_index=index)
    except Exception:  # no connection (a full server): it counts as arrived, then gives up
        error()
        start.wait(timeout=900)
        return
    start.wait(timeout=900)  # every worker has opened the study: go together
    try:
        work(study, SleepObjective(spec, seconds), spec.study.n_trials)
    except Exception:
        error()


def measure(
    url: str,
    workers: int,
    per_worker: int,
    seconds: float,
    sampler: str = "tpe",
    watch: str | None = None,
) -> dict[str, Any]:
    """Run one study with ``workers`` processes; trials per second, errors, and the peak of
    PostgreSQL connections to the database ``watch`` (a URL) while they run."""
    from optuna.trial import TrialState

    from hpo.execution.storage import open_storage
    from hpo.search.study import create_or_resume

    name = f"bench-{uuid.uuid4().hex[:8]}"
    spec = fake_spec(name, workers * per_worker, sampler=sampler, max_steps=10, eval_every=1)
    study, _ = create_or_resume(spec, open_storage(url, pool_size=2))
    ctx = mp.get_context("spawn")
    errors: Any = ctx.Queue()
    start_together = ctx.Barrier(workers)
    procs = [
        ctx.Process(target=_worker, args=(url, name, i, seconds, errors, start_together))
        for i in range(workers)
    ]
    peak = PeakConnections(watch)
    start = time.perf_counter()
    with peak:
        for p in procs:
            p.start()
        for p in procs:
            p.join()
    wall = time.perf_counter() - start
    found = []
    while not errors.empty():
        found.append(errors.get())
    done = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    busy = 0.0
    if done:
        first = min(t.datetime_start for t in done if t.datetime_start)
        last = max(t.datetime_complete for t in done if t.datetime_complete)
        busy = (last - first).total_seconds()
    return {
        "trials": len(done),
        "expected": workers * per_worker,
        "wall": wall,
        "trials_per_s": len(done) / busy if busy > 0 else 0.0,
        "errors": len(found) + sum(p.exitcode != 0 for p in procs),
        "error_lines": sorted(set(found))[:3],
        "peak_connections": peak.peak if watch else None,
    }


class PeakConnections:
    """While the block runs, sample how many connections PostgreSQL holds to one database."""

    def __init__(self, database_url: str | None, every: float = 0.2) -> None:
        self.url, self.every, self.peak = database_url, every, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import sqlalchemy

        assert self.url is not None
        name = self.url.rsplit("/", 1)[1]
        query = sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :n")
        engine = sqlalchemy.create_engine(PG_URL, poolclass=sqlalchemy.pool.NullPool)
        while not self._stop.is_set():
            try:
                with engine.connect() as conn:
                    self.peak = max(self.peak, int(conn.execute(query, {"n": name}).scalar()))
            except Exception:  # the server is full: the workers' errors say so
                pass
            self._stop.wait(self.every)
        engine.dispose()

    def __enter__(self) -> PeakConnections:
        if self.url:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self.url:
            self._thread.join()


def storage_urls(
    names: list[str], folder: Path, proxies: list[subprocess.Popen[bytes]] | None = None
) -> dict[str, tuple[str, str | None]]:
    """Each storage's URL and, for PostgreSQL (direct or behind the proxy), the URL of the
    database whose connections to count. A proxy started here is appended to ``proxies``."""
    urls: dict[str, tuple[str, str | None]] = {}
    for n in names:
        if n == "sqlite":
            urls[n] = (f"sqlite:///{folder / 'bench.db'}", None)
        elif n == "journal":
            urls[n] = (f"journal:{folder / 'bench.journal'}", None)
        elif n == "postgresql":
            pg = _fresh_pg_database()
            urls[n] = (pg, pg)
        elif n == "proxy":
            pg = _fresh_pg_database()
            proc, grpc_url = start_proxy(pg, folder / "proxy.log")
            if proxies is not None:
                proxies.append(proc)
            urls[n] = (grpc_url, pg)
    return urls


def start_proxy(database_url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """`hpo proxy` in front of the database, on a free port; its grpc:// URL once it answers."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "hpo", "proxy", "--storage", database_url, "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    for _ in range(300):
        if proc.poll() is not None:
            raise RuntimeError(f"hpo proxy exited: {log.read_text().strip()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, f"grpc://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("hpo proxy did not start listening")


def max_connections() -> int | None:
    """PostgreSQL's ``max_connections`` (what one server holds), or None if it is not there."""
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(PG_URL, poolclass=sqlalchemy.pool.NullPool)
        with engine.connect() as conn:
            return int(conn.execute(sqlalchemy.text("SHOW max_connections")).scalar())
    except Exception:
        return None


def _fresh_pg_database() -> str:
    import sqlalchemy

    name = f"hpo_bench_{uuid.uuid4().hex[:8]}"
    engine = sqlalchemy.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE DATABASE {name}"))
    return PG_URL.rsplit("/", 1)[0] + f"/{name}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--storages",
        nargs="+",
        default=["sqlite", "journal", "postgresql"],
        choices=["sqlite", "journal", "postgresql", "proxy"],
        help="proxy: PostgreSQL behind `hpo proxy`, workers on grpc://",
    )
    parser.add_argument(
        "--sampler", default="tpe", help="tpe measures sampling too; random, the storage alone"
    )
    parser.add_argument("--workers", nargs="+", type=int, default=[1, 2, 4, 8, 16])
    parser.add_argument("--trials-per-worker", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=1.0, help="sleep per trial")
    parser.add_argument("--quick", action="store_true", help="1 and 4 workers, SQLite and journal")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.storages, args.workers, args.trials_per_worker, args.seconds = (
            ["sqlite", "journal"], [1, 4], 3, 0.3,
        )  # fmt: skip
    os.environ.setdefault("HPO_HEARTBEAT_INTERVAL", "2")
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"worker scaling: trials of {args.seconds}s sleep + 10 reports, {args.sampler}"
    )
    for col in (
        "storage", "workers", "trials", "trials/s", "efficiency", "db errors", "peak conns",
        "wall s",
    ):  # fmt: skip
        table.add_column(col, justify="right")
    rows: list[dict[str, Any]] = []
    proxies: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            urls = storage_urls(args.storages, Path(tmp), proxies)
        except Exception as exc:
            print(f"cannot reach a storage: {exc}", file=sys.stderr)
            return 1
        try:
            for storage, (url, watch) in urls.items():
                base = None
                for k in args.workers:
                    if storage in ("sqlite", "journal"):  # a fresh file per run
                        url = storage_urls([storage], Path(tempfile.mkdtemp(dir=tmp)))[storage][0]
                    r = measure(url, k, args.trials_per_worker, args.seconds, args.sampler, watch)
                    base = base or r["trials_per_s"] / k
                    eff = r["trials_per_s"] / (base * k) if base else 0.0
                    rows.append({"storage": storage, "workers": k, "efficiency": eff, **r})
                    peak = r["peak_connections"]
                    table.add_row(
                        storage, str(k), f"{r['trials']}/{r['expected']}",
                        f"{r['trials_per_s']:.2f}", f"{eff:.0%}", str(r["errors"]),
                        "-" if peak is None else str(peak), f"{r['wall']:.1f}",
                    )  # fmt: skip
                    for line in r["error_lines"]:
                        print(f"  {storage} x{k}: {line}", file=sys.stderr)
        finally:
            for proc in proxies:
                proc.send_signal(2)  # SIGINT: the proxy's Ctrl-C
                proc.wait(timeout=30)
    Console(width=110).print(table)
    if {"postgresql", "proxy"} & set(args.storages):
        print(f"PostgreSQL max_connections: {max_connections()}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
