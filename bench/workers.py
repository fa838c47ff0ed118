"""Worker scaling on each storage: trials per second and database errors at 1-16 workers.

Each trial does no training: it sleeps a fixed time while reporting 10 intermediate values, so
what is measured is the cost of the study machinery and the database (claiming trials,
sampling, reports, pruning checks, heartbeats), not the model.

    python bench/workers.py                      # SQLite, journal file, PostgreSQL; 1-16 workers
    python bench/workers.py --quick              # 1 and 4 workers on SQLite and the journal file
    python bench/workers.py --storages postgresql --workers 1 16
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import sys
import tempfile
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


def _worker(url: str, name: str, index: int, seconds: float, errors: Any) -> None:
    from hpo.execution.storage import open_storage
    from hpo.execution.workers import work
    from hpo.search.study import load_stored

    try:
        study, spec = load_stored(name, open_storage(url), worker_index=index)
        work(study, SleepObjective(spec, seconds), spec.study.n_trials)
    except Exception:
        errors.put(traceback.format_exc().strip().splitlines()[-1])


def measure(url: str, workers: int, per_worker: int, seconds: float) -> dict[str, Any]:
    """Run one study with ``workers`` processes; trials per second and errors."""
    from optuna.trial import TrialState

    from hpo.execution.storage import open_storage
    from hpo.search.study import create_or_resume

    name = f"bench-{uuid.uuid4().hex[:8]}"
    spec = fake_spec(name, workers * per_worker, sampler="tpe", max_steps=10, eval_every=1)
    study, _ = create_or_resume(spec, open_storage(url, pool_size=2))
    errors: Any = mp.get_context("spawn").Queue()
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_worker, args=(url, name, i, seconds, errors)) for i in range(workers)
    ]
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    wall = time.perf_counter() - start
    found = []
    while not errors.empty():
        found.append(errors.get())
    done = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
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
    }


def storage_urls(names: list[str], folder: Path) -> dict[str, str]:
    urls = {}
    for n in names:
        if n == "sqlite":
            urls[n] = f"sqlite:///{folder / 'bench.db'}"
        elif n == "journal":
            urls[n] = f"journal:{folder / 'bench.journal'}"
        elif n == "postgresql":
            urls[n] = _fresh_pg_database()
    return urls


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
    parser.add_argument("--storages", nargs="+", default=["sqlite", "journal", "postgresql"])
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

    table = Table(title=f"worker scaling: trials of {args.seconds}s sleep + 10 reports")
    for col in ("storage", "workers", "trials", "trials/s", "efficiency", "db errors", "wall s"):
        table.add_column(col, justify="right")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        try:
            urls = storage_urls(args.storages, Path(tmp))
        except Exception as exc:
            print(f"cannot reach a storage: {exc}", file=sys.stderr)
            return 1
        for storage, url in urls.items():
            base = None
            for k in args.workers:
                if storage != "postgresql":  # a fresh file per run
                    url = storage_urls([storage], Path(tempfile.mkdtemp(dir=tmp)))[storage]
                r = measure(url, k, args.trials_per_worker, args.seconds)
                base = base or r["trials_per_s"]
                eff = r["trials_per_s"] / (base * k) if base else 0.0
                rows.append({"storage": storage, "workers": k, "efficiency": eff, **r})
                table.add_row(
                    storage, str(k), f"{r['trials']}/{r['expected']}", f"{r['trials_per_s']:.2f}",
                    f"{eff:.0%}", str(r["errors"]), f"{r['wall']:.1f}",
                )  # fmt: skip
                for line in r["error_lines"]:
                    print(f"  {storage} x{k}: {line}", file=sys.stderr)
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
