"""Workers through Optuna's gRPC storage proxy: a real ``hpo proxy`` process in front of a real
PostgreSQL database (or a SQLite file where the test needs no server), real worker processes.

Run as ``python -m tests.test_proxy URL NAME INDEX FOLDER WORKERS`` it is one sleep-trial worker
(the real worker loop, an objective that sleeps instead of training), so 16 of them start in
seconds on a small machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ helpers


def free_port() -> int:
    """A port nothing listens on now (the system picks it; parallel tests get different ones)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def hpo(*args: str, env: dict[str, str] | None = None, cwd: Path = ROOT) -> Any:
    """``hpo ARGS`` in a subprocess: (exit code, stdout, stderr, seconds)."""
    start = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "hpo", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )
    return out.returncode, out.stdout, out.stderr, time.monotonic() - start


@pytest.fixture
def short_heartbeats(monkeypatch: pytest.MonkeyPatch) -> None:
    # Beats every second, a worker silent for 4 s is dead: workers inherit the environment.
    monkeypatch.setenv("HPO_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("HPO_GRACE_PERIOD", "4")


@pytest.fixture
def pg_url(tmp_path: Path) -> Iterator[str]:
    from tests.databases import database

    with database("postgresql", tmp_path) as url:
        yield url


def start_proxy(database_url: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    """``hpo proxy`` on a free port; returns the process and its grpc:// URL once it answers."""
    port = free_port()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hpo", "proxy", "--storage", database_url, "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"hpo proxy exited {proc.returncode}: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, f"grpc://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.2)
    proc.kill()
    pytest.fail("hpo proxy did not start listening")


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)  # Ctrl-C: the proxy's way to stop
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def proxy(pg_url: str, tmp_path: Path) -> Iterator[str]:
    proc, url = start_proxy(pg_url, tmp_path / "proxy.log")
    yield url
    stop(proc)


def connections(database_url: str) -> int:
    """Client connections PostgreSQL holds to this test's database now."""
    import sqlalchemy

    from tests.databases import PG_ADMIN

    name = database_url.rsplit("/", 1)[1]
    engine = sqlalchemy.create_engine(PG_ADMIN, poolclass=sqlalchemy.pool.NullPool)
    with engine.connect() as conn:
        n = conn.execute(
            sqlalchemy.text("SELECT count(*) FROM pg_stat_activity WHERE datname = :n"), {"n": name}
        ).scalar()
    engine.dispose()
    return int(n or 0)


def create(url: str, name: str, n_trials: int, model: str = "unused", data: str = "x.csv") -> Any:
    """An hpo study (the tiny model's, when given) created through ``url``."""
    from hpo.config.spec import StudySpec
    from hpo.execution.storage import open_storage
    from hpo.search.study import create_or_resume
    from tests.conftest import spec_dict

    raw = spec_dict(
        Path(model),
        Path(data),
        study={"name": name, "n_trials": n_trials},
        train={"max_steps": 400, "eval_every": 100},  # trials long enough to be killed in
    )
    study, _ = create_or_resume(StudySpec.from_dict(raw), open_storage(url))
    return study


def states(study: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials():
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


# ------------------------------------------------------------------ the sleep-trial worker


def sleep_worker(url: str, name: str, index: int, folder: Path, workers: int) -> None:
    """One worker process: open the storage, wait until ``workers`` are ready, then run the
    study's queue with trials that sleep 0.3 s and report 3 values. Each trial number it runs is
    appended to ``folder/ran-INDEX``."""
    from hpo.execution.storage import open_storage
    from hpo.execution.workers import work
    from hpo.search.study import load_stored

    study, spec = load_stored(name, open_storage(url), worker_index=index)
    (folder / f"ready-{index}").touch()
    deadline = time.monotonic() + 120
    while len(list(folder.glob("ready-*"))) < workers and time.monotonic() < deadline:
        time.sleep(0.05)
    ran = folder / f"ran-{index}"

    def objective(trial: Any) -> float:
        lr = trial.suggest_float("learning_rate", 1e-5, 1e-3, log=True)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        with ran.open("a") as f:
            f.write(f"{trial.number}\n")
        for step in range(3):
            time.sleep(0.1)
            trial.report(lr * step, step)
        return lr

    work(study, objective, spec.study.n_trials)


# ------------------------------------------------------------------ tests


@pytest.mark.slow
def test_sixteen_workers_through_the_proxy_meet_every_budget(
    proxy: str, pg_url: str, tmp_path: Path
) -> None:
    budgets = {"alpha": 40, "beta": 24}
    studies = {name: create(proxy, name, n) for name, n in budgets.items()}
    folders = {name: tmp_path / name for name in budgets}
    procs = []
    for i in range(16):
        name = "alpha" if i % 2 == 0 else "beta"
        folders[name].mkdir(exist_ok=True)
        args = [proxy, name, str(i), str(folders[name]), "8"]
        with (tmp_path / f"worker-{i}.log").open("wb") as log:
            procs.append(
                subprocess.Popen(
                    [sys.executable, "-m", "tests.test_proxy", *args],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )
            )
    peak = 0
    deadline = time.monotonic() + 240
    while any(p.poll() is None for p in procs):
        peak = max(peak, connections(pg_url))
        if time.monotonic() > deadline:
            for p in procs:
                p.kill()
            pytest.fail("workers did not finish in time")
        time.sleep(0.3)
    outputs = [(tmp_path / f"worker-{i}.log").read_text() for i in range(16)]
    assert [p.returncode for p in procs] == [0] * 16, outputs
    for out in outputs:  # nothing from the database, gRPC or Optuna in any worker's output
        assert not any(word in out for word in ("Error", "Traceback", "Warning")), out
    for name, n in budgets.items():
        study = studies[name]
        assert states(study) == {"COMPLETE": n}
        ran = [int(line) for f in folders[name].glob("ran-*") for line in f.read_text().split()]
        assert sorted(ran) == list(range(n))  # every trial ran once, on one worker
        trials = study.get_trials()
        assert len({t.params["learning_rate"] for t in trials}) == n  # no point sampled twice
        assert len({t.user_attrs["worker"] for t in trials}) >= 6  # 8 workers shared it
    # 16 workers, yet the database saw only the proxy's pool (10 threads + 1) and this check.
    assert 1 <= peak <= 11


@pytest.mark.slow
def test_a_killed_worker_is_failed_and_retried_once_through_the_proxy(
    tiny_model_dir: Path, sentiment_csv: Path, proxy: str, short_heartbeats: None
) -> None:
    from optuna.trial import TrialState

    from hpo.execution import launch
    from hpo.execution.liveness import BEAT_ATTR
    from tests.test_workers import kill_a_training_worker

    study = create(proxy, "kill", 4, str(tiny_model_dir), str(sentiment_csv))
    procs = launch.spawn("kill", proxy, [launch.Slot(i, None, 1) for i in range(2)])
    dead, trials = kill_a_training_worker(study, procs)
    assert dead.state == TrialState.FAIL
    assert "no heartbeat for 4 s" in dead.user_attrs["fail_reason"]
    assert isinstance(dead.system_attrs.get(BEAT_ATTR), float)  # it beat through the proxy
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retries) == 1
    assert retries[0].params == dead.params and retries[0].state == TrialState.COMPLETE
    assert "fail_reason" not in retries[0].user_attrs
    assert states(study) == {"COMPLETE": 4, "FAIL": 1}  # the retry took the dead trial's slot


def test_two_sweepers_fail_a_stale_trial_once_and_retry_it_once(tmp_path: Path) -> None:
    import optuna
    from optuna.trial import TrialState

    from hpo.execution.liveness import BEAT_ATTR, Liveness, fail_and_retry
    from hpo.execution.optuna_private import claim_waiting, storage_of
    from hpo.execution.storage import open_storage

    proc, url = start_proxy(f"sqlite:///{tmp_path / 'p.db'}", tmp_path / "proxy.log")
    try:
        study = optuna.create_study(study_name="race", storage=open_storage(url))
        other = optuna.load_study(study_name="race", storage=open_storage(url))
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        storage_of(study).set_trial_system_attr(trial._trial_id, BEAT_ATTR, 1.0)
        now = [0.0]
        first, second = (Liveness(1, 4, clock=lambda: now[0]) for _ in range(2))
        for sweeper, s in ((first, study), (second, other)):
            assert sweeper.sweep(s) == []  # first sight: remembered, not judged
        now[0] = 3.9
        assert first.sweep(study) == [] and second.sweep(other) == []
        (frozen,) = other.get_trials(states=(TrialState.RUNNING,))
        now[0] = 4.0
        assert first.sweep(study) == [trial.number]
        assert fail_and_retry(other, frozen, 4) is False  # the second one comes too late
        assert second.sweep(other) == []
        trials = study.get_trials()
        assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
        assert trials[1].system_attrs["failed_trial"] == 0 and trials[1].params == trial.params
        assert BEAT_ATTR not in trials[1].system_attrs
        # The retry runs and its worker dies too: failed, and not retried a second time.
        assert claim_waiting(storage_of(study), trials[1]._trial_id)
        now[0] = 10.0
        assert first.sweep(study) == []
        now[0] = 14.0
        assert first.sweep(study) == [1]
        trials = study.get_trials()
        assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
        assert "not retried again" in trials[1].user_attrs["fail_reason"]
    finally:
        stop(proc)


def test_a_beating_trial_is_never_stale_and_one_without_a_beat_is() -> None:
    import optuna

    from hpo.execution.liveness import BEAT_ATTR, Liveness
    from hpo.execution.optuna_private import storage_of

    study = optuna.create_study()
    beating, silent = study.ask(), study.ask()
    done = study.ask()
    now = [100.0]
    sweeper = Liveness(1, 4, clock=lambda: now[0])
    for second in range(12):
        now[0] = 100.0 + second
        storage_of(study).set_trial_system_attr(beating._trial_id, BEAT_ATTR, now[0])
        stale = sweeper.stale(study.get_trials(deepcopy=False))
        if second == 2:
            study.tell(done, 1.0)  # a finished trial is forgotten, never judged
        assert [t.number for t in stale] == ([] if second < 4 else [silent.number])
    with pytest.raises(ValueError, match="`grace` must exceed"):
        Liveness(5, 5)


def test_a_proxy_that_does_not_answer_is_one_line_not_a_hang() -> None:
    url = f"grpc://127.0.0.1:{free_port()}"
    for command in (["report", "x"], ["worker", "x", "--quiet"]):
        code, _, err, seconds = hpo(*command, "--storage", url, env={"HPO_PROXY_TIMEOUT": "2"})
        assert code == 1 and seconds < 30
        assert err.strip().splitlines() == [
            f"Error: no storage proxy answers at {url} (waited 2 s); "
            "start one with `hpo proxy --storage DATABASE_URL`"
        ]


def test_a_port_in_use_is_one_line_exit_1(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        code, out, err, _ = hpo(
            "proxy", "--storage", f"sqlite:///{tmp_path / 'x.db'}", "--port", str(port)
        )
    assert code == 1
    assert err.strip().splitlines() == [
        f"Error: port {port} on 127.0.0.1 is already in use; pick another with --port"
    ]
    assert out == ""  # it never said it was serving


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["proxy", "--storage", "postgres://hpo:s3cret@db/hpo"], "write postgresql://"),
        (["proxy", "--storage", "grpc://127.0.0.1:1"], "not grpc://"),
        (["proxy", "--storage", "journal:study.log"], "not journal files"),
        (["report", "x", "--storage", "grpc://hpo:s3cret@127.0.0.1:1"], "has no login"),
        (["report", "x", "--storage", "grpc://127.0.0.1:port"], "port must be a number"),
        (["best", "x", "--out", "m", "--storage", "grpc://127.0.0.1:1/db"], "not grpc://HOST"),
    ],
)
def test_bad_inputs_are_one_line_exit_2(args: list[str], says: str, tmp_path: Path) -> None:
    code, out, err, _ = hpo(*args, cwd=tmp_path)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and says in lines[0], err
    assert "s3cret" not in out + err
    assert not list(tmp_path.iterdir())


def test_missing_grpcio_is_one_line_exit_1(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from click.testing import CliRunner

    from hpo.cli.main import cli

    monkeypatch.setitem(sys.modules, "grpc", None)  # what an environment without grpcio sees
    database = f"sqlite:///{tmp_path / 'x.db'}"
    for args in (["proxy", "--storage", database], ["report", "x", "--storage", "grpc://h:1"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 1
        assert result.output.strip().splitlines() == [
            "Error: the gRPC storage proxy needs grpcio and protobuf: pip install 'hpo[proxy]'"
        ]
    assert not list(tmp_path.iterdir())  # the database was not even opened


def test_listening_beyond_loopback_warns() -> None:
    from hpo.execution.proxy import exposure_warning

    assert exposure_warning("127.0.0.1", 13000) is None
    assert exposure_warning("localhost", 13000) is None
    assert "no authentication" in (exposure_warning("0.0.0.0", 13000) or "")


def test_a_full_database_server_is_one_line_that_points_to_the_proxy(pg_url: str) -> None:
    import sqlalchemy
    from sqlalchemy.engine import make_url

    from tests.databases import PG_ADMIN

    role = f"hpo_full_{uuid.uuid4().hex[:8]}"  # a role that may hold no connection: "full"
    admin = sqlalchemy.create_engine(
        PG_ADMIN, isolation_level="AUTOCOMMIT", poolclass=sqlalchemy.pool.NullPool
    )
    with admin.connect() as conn:
        conn.execute(sqlalchemy.text(f"CREATE ROLE {role} LOGIN CONNECTION LIMIT 0"))
    try:
        url = make_url(pg_url).set(username=role, password=None)
        code, _, err, _ = hpo("worker", "x", "--storage", url.render_as_string())
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f"DROP ROLE {role}"))
    assert code == 1  # nothing the user wrote is wrong
    (line,) = err.strip().splitlines()
    assert "refuses more connections" in line and "hpo proxy" in line


if __name__ == "__main__":
    url, name, index, folder, workers = sys.argv[1:]
    sleep_worker(url, name, int(index), Path(folder), int(workers))


@pytest.mark.slow
def test_a_proxy_that_dies_mid_run_ends_the_worker_with_one_line(
    tiny_model_dir: Path, sentiment_csv: Path, pg_url: str, tmp_path: Path
) -> None:
    from optuna.trial import TrialState

    from tests.test_workers import running_trial

    proc, url = start_proxy(pg_url, tmp_path / "proxy.log")
    try:
        study = create(url, "lost", 3, str(tiny_model_dir), str(sentiment_csv))
        worker = subprocess.Popen(
            [sys.executable, "-m", "hpo", "worker", "lost", "--storage", url, "--quiet"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT,
        )  # fmt: skip
        victim = running_trial(study)  # the worker is training
    finally:
        proc.kill()  # the proxy dies, the database stays
        proc.wait()
    _, err = worker.communicate(timeout=120)
    lines = err.decode().strip().splitlines()
    assert worker.returncode == 1, err.decode()
    assert len(lines) == 1 and lines[0].startswith("Error: the storage proxy stopped answering")
    assert "Traceback" not in err.decode()
    # nothing stored was lost: the trial stays as the worker left it, for a sweep to retry
    import optuna

    from hpo.execution.storage import open_storage

    stored = optuna.load_study(study_name="lost", storage=open_storage(pg_url)).get_trials()
    assert stored[victim.number].state == TrialState.RUNNING
    assert stored[victim.number].params == victim.params
