"""Faults during a study, against the real thing: the database restarted under running workers
(a private PostgreSQL and a private MariaDB, started and restarted by the test itself), and
Ctrl-C during ``hpo run`` followed by the same command.

The shared servers other tests use are never touched: each database test starts its own server
in a temporary folder on a free port, and removes it, whatever the outcome.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from hpo import keys
from hpo.config.spec import StudySpec
from hpo.execution.resilient import Backoff, failure_kind
from hpo.execution.storage import open_storage
from hpo.search.study import create_or_resume
from tests.conftest import spec_dict, toml_text

pytestmark = pytest.mark.slow

OUTAGE = 3.0  # seconds the database stays down while workers run trials


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_as(user: str) -> list[str]:
    """The prefix that runs a command as ``user`` when the tests run as root (PostgreSQL
    refuses root); nothing otherwise."""
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser") is None:
        pytest.skip("tests run as root and runuser is missing: cannot start PostgreSQL")
    try:
        import pwd

        pwd.getpwnam(user)
    except KeyError:
        pytest.skip(f"tests run as root and there is no {user!r} user to run PostgreSQL")
    return ["runuser", "-u", user, "--"]


def wait_until_answers(url: str, timeout: float = 60) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                with engine.connect() as conn:
                    conn.execute(sqlalchemy.text("SELECT 1"))
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        engine.dispose()


class PrivatePostgres:
    """A PostgreSQL cluster of its own in ``folder`` on ``port``, trust auth, run by pg_ctl."""

    def __init__(self, folder: Path) -> None:
        bindir = _pg_bindir()
        if bindir is None:
            pytest.skip("initdb and pg_ctl not found (PostgreSQL server binaries)")
        self.bin = bindir
        self.prefix = run_as("postgres")
        self.folder = folder
        self.port = free_port()
        self.url = f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"
        if self.prefix:
            shutil.chown(folder, "postgres")
        self._run("initdb", "-D", str(folder / "data"), "-A", "trust", "-U", "postgres",
                  "--no-sync", "-E", "UTF8")  # fmt: skip

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.prefix, str(self.bin / tool), *args],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120,
        )  # fmt: skip

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run("pg_ctl", "-D", str(self.folder / "data"), "-l", str(self.folder / "log"),
                  "-w", "-t", "60", "-o", options, *args)  # fmt: skip

    def start(self) -> None:
        self._ctl("start")
        wait_until_answers(self.url)

    def stop(self, mode: str = "fast") -> None:
        self._ctl("stop", "-m", mode)


class PrivateMariaDB:
    """A MariaDB server of its own in ``folder`` on ``port``: root without password."""

    def __init__(self, folder: Path) -> None:
        install = shutil.which("mariadb-install-db") or shutil.which("mysql_install_db")
        self.server = shutil.which("mariadbd") or _sbin("mariadbd")
        if install is None or self.server is None:
            pytest.skip("mariadb-install-db or mariadbd not found (MariaDB server)")
        self.folder = folder
        self.port = free_port()
        self.url = f"mysql+pymysql://root@127.0.0.1:{self.port}/hpo"
        self.proc: subprocess.Popen[bytes] | None = None
        subprocess.run(
            [install, "--no-defaults", f"--datadir={folder / 'data'}", "--user=root",
             "--auth-root-authentication-method=normal", "--skip-test-db"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120,
        )  # fmt: skip

    def start(self) -> None:
        log = (self.folder / "log").open("ab")
        self.proc = subprocess.Popen(
            [self.server, "--no-defaults", f"--datadir={self.folder / 'data'}",
             f"--port={self.port}", f"--socket={self.folder / 'sock'}",
             "--bind-address=127.0.0.1", "--user=root", "--skip-log-bin",
             f"--pid-file={self.folder / 'pid'}", "--innodb-flush-log-at-trx-commit=0"],
            stdout=log, stderr=log,
        )  # fmt: skip
        log.close()
        admin = self.url.rsplit("/", 1)[0] + "/mysql"
        wait_until_answers(admin)
        import sqlalchemy

        engine = sqlalchemy.create_engine(admin)
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("CREATE DATABASE IF NOT EXISTS hpo"))
        engine.dispose()

    def stop(self, mode: str = "fast") -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        if mode == "immediate":
            self.proc.kill()
        else:
            self.proc.terminate()  # mariadbd shuts down cleanly on SIGTERM
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def _pg_bindir() -> Path | None:
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if (Path(out.stdout.strip()) / "initdb").is_file():
            return Path(out.stdout.strip())
    except OSError:
        pass
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))  # Debian's layout
    return Path(found[-1]).parent if found else None


def _sbin(name: str) -> str | None:
    path = Path("/usr/sbin") / name  # not on a root-less PATH on Debian
    return str(path) if path.is_file() else None


@contextmanager
def private_server(kind: str) -> Iterator[Any]:
    """A started private server; stopped and its folder removed whatever happens."""
    folder = Path(tempfile.mkdtemp(prefix=f"hpo-{kind}-"))
    server: Any = None
    try:
        server = PrivatePostgres(folder) if kind == "postgresql" else PrivateMariaDB(folder)
        server.start()
        yield server
    finally:
        if server is not None:
            with suppress(Exception):  # already stopped, if the test failed mid-outage
                server.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


# ------------------------------------------------------------------ what a test compares


def snapshot(t: optuna.trial.FrozenTrial) -> tuple[Any, ...]:
    """Everything a finished trial stored that a later run must leave alone."""
    return (t.number, t.state, t.values, t.params, t.intermediate_values, t.user_attrs,
            t.datetime_start, t.datetime_complete)  # fmt: skip


def states(trials: list[optuna.trial.FrozenTrial]) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in trials:
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def fresh_trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials read through a new connection, not a cache that saw them happen."""
    storage = open_storage(url, heartbeat=False)
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials()
    finally:
        storage.remove_session()
        storage.engine.dispose()  # type: ignore[attr-defined]


def wait_for(predicate: Any, timeout: float, what: str, running: Any = lambda: True) -> Any:
    """Poll ``predicate`` until it holds; fail at once when ``running()`` says the run ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        if not running():
            pytest.fail(f"the run ended before {what}")
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


# ------------------------------------------------------------------ the retry, without a server


def test_backoff_doubles_up_to_its_cap_with_jitter() -> None:
    b = Backoff(total=60, first=0.25, longest=8)
    assert [b.delay(i, rng=lambda: 0.0) for i in range(7)] == [0.25, 0.5, 1, 2, 4, 8, 8]
    assert b.delay(3, rng=lambda: 1.0) == 1.0  # jitter takes off at most half
    with pytest.raises(Exception, match="`total` must be at least 0"):
        Backoff(total=-1)


def test_only_connection_errors_are_retried() -> None:
    from sqlalchemy.exc import IntegrityError, OperationalError

    def wrapped(inner: BaseException) -> BaseException:
        try:
            try:
                raise inner
            except BaseException as e:
                raise optuna.exceptions.StorageInternalError("commit failed") from e
        except BaseException as outer:
            return outer

    refused = OperationalError("SELECT 1", {}, Exception("connection failed: Connection refused"))
    lost = OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))
    assert failure_kind(wrapped(refused)) == "unreached"
    assert failure_kind(wrapped(lost)) == "lost"
    assert failure_kind(wrapped(IntegrityError("INSERT", {}, Exception("dup")))) is None
    assert failure_kind(ValueError("Cannot tell a FAIL trial.")) is None


def test_the_retry_limit_is_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from hpo.errors import StorageError
    from hpo.execution.resilient import ResilientStorage, backoff_from_env

    monkeypatch.setenv("HPO_STORAGE_RETRY_SECONDS", "5")
    assert backoff_from_env().total == 5
    monkeypatch.setenv("HPO_STORAGE_RETRY_SECONDS", "soon")
    with pytest.raises(StorageError, match="HPO_STORAGE_RETRY_SECONDS must be a number"):
        backoff_from_env()
    monkeypatch.setenv("HPO_STORAGE_RETRY_SECONDS", "0")  # off: Optuna's cached storage as is
    assert not isinstance(open_storage("sqlite:///:memory:"), ResilientStorage)
    monkeypatch.delenv("HPO_STORAGE_RETRY_SECONDS")
    assert isinstance(open_storage("sqlite:///:memory:"), ResilientStorage)
    assert isinstance(
        open_storage("sqlite:///:memory:", heartbeat=False), optuna.storages.RDBStorage
    )


class LosesAnswers(optuna.storages.RDBStorage):
    """A real storage whose next ``lose`` calls are applied, committed, and then lose their
    answer, as when the connection drops right after the server commits."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lose: set[str] = set()

    def _lost(self, name: str) -> None:
        if name in self.lose:
            self.lose.discard(name)
            try:
                raise RuntimeError("server closed the connection unexpectedly")
            except RuntimeError as e:
                from sqlalchemy.exc import OperationalError

                cause = OperationalError("COMMIT", {}, e)
            raise optuna.exceptions.StorageInternalError("commit failed") from cause

    def set_trial_state_values(self, trial_id: int, state: Any, values: Any = None) -> bool:
        done = super().set_trial_state_values(trial_id, state, values)
        self._lost("state")
        return done

    def create_new_trial(self, study_id: int, template_trial: Any = None) -> int:
        trial_id = super().create_new_trial(study_id, template_trial)
        self._lost("create")
        return trial_id


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_write_whose_answer_was_lost_is_not_applied_twice(tmp_path: Path) -> None:
    """Each decision of the wrapper where a call may have gone through, on a real database."""
    from optuna.exceptions import StorageInternalError

    from hpo.execution.resilient import ResilientStorage
    from hpo.execution.workers import _claim

    url = f"sqlite:///{tmp_path / 'lost.db'}"
    inner = LosesAnswers(url, heartbeat_interval=1, grace_period=2)
    storage = ResilientStorage(inner, url, Backoff(total=10, first=0.05, longest=0.1))
    study = optuna.create_study(study_name="lost", storage=storage)
    study.enqueue_trial({})

    inner.lose = {"state"}  # the claim commits, its answer is lost, the repeat finds it taken
    assert _claim(study) is None
    (orphan,) = study.get_trials()
    assert orphan.state == TrialState.RUNNING
    # ... but it got a heartbeat, so the sweep finds it once the grace is over (SQLite's clock
    # counts whole seconds: wait up to three times the grace)
    wait_for(lambda: inner._get_stale_trial_ids(study._study_id) == [orphan._trial_id], 6, "stale")

    trial = study.ask()
    trial.report(0.4, step=1)
    inner.lose = {"state"}  # the end commits, its answer is lost: the repeat finds it done
    study.tell(trial, 0.5)
    done = study.get_trials()[trial.number]
    assert (done.state, done.values, done.intermediate_values) == (
        TrialState.COMPLETE,
        [0.5],
        {1: 0.4},
    )
    assert storage.retries == 2

    inner.lose = {"create"}  # a trial created with its answer lost is not created again
    with pytest.raises(StorageInternalError):
        study.enqueue_trial({})
    assert len(study.get_trials()) == 3  # the orphan, the told trial, one new


def test_an_outage_longer_than_the_limit_is_one_line_and_a_stopped_server_is_waited_for(
    tmp_path: Path,
) -> None:
    """The wrapper against a real server that goes down: a call waits for it to come back; with
    the server down past the limit, a call gives up with ``StorageUnavailable``."""
    from hpo.errors import StorageUnavailable
    from hpo.execution.resilient import ResilientStorage

    with private_server("postgresql") as server:
        storage = open_storage(server.url)
        assert isinstance(storage, ResilientStorage)
        study = optuna.create_study(study_name="outage", storage=storage)
        study.set_user_attr("before", 1)
        server.stop()
        back = threading.Timer(2.0, server.start)  # the server returns 2 s into the next call
        back.start()
        try:
            study.set_user_attr("after", 2)  # the first tries fail, a later one is stored
        finally:
            back.join()
        assert storage.retries >= 2
        server.stop()
        t0 = time.monotonic()
        storage.backoff = Backoff(total=1.5, first=0.1, longest=0.5)
        with pytest.raises(StorageUnavailable, match=r"unreachable for 1\.5 s"):
            study.set_user_attr("lost", 3)
        assert 1.4 < time.monotonic() - t0 < 10
        server.start()
        assert optuna.load_study(study_name="outage", storage=server.url).user_attrs == {
            "before": 1,
            "after": 2,
        }


# ------------------------------------------------------------------ A: the database restarts


def start_workers(name: str, url: str, n: int, logs: Path) -> list[subprocess.Popen[bytes]]:
    """``hpo worker`` processes, as ``hpo run --workers`` starts them, each one's stderr kept."""
    procs = []
    for i in range(n):
        env = {**os.environ, "HPO_STORAGE": url, "CUDA_VISIBLE_DEVICES": ""}
        cmd = [sys.executable, "-m", "hpo", "worker", name, "--worker-index", str(i),
               "--threads", "1", "--quiet"]  # fmt: skip
        with (logs / f"worker{i}.err").open("wb") as err:
            procs.append(subprocess.Popen(cmd, env=env, stderr=err))
    return procs


def finish(procs: list[subprocess.Popen[bytes]], timeout: float = 240) -> list[int]:
    deadline = time.monotonic() + timeout
    try:
        for p in procs:
            p.wait(timeout=max(1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        pytest.fail("workers did not finish in time")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [p.returncode for p in procs]


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_workers_ride_out_a_database_restart(
    kind: str,
    tiny_model_dir: Path,
    sentiment_csv: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Heartbeats every second; a grace period longer than the outage and the backoff after it,
    # so a live worker that waited is never taken for a dead one.
    monkeypatch.setenv("HPO_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("HPO_GRACE_PERIOD", "30")
    n_trials, steps, every = 6, STEPS, STEPS // 4
    raw = spec_dict(
        tiny_model_dir,
        sentiment_csv,
        study={"name": "restart", "n_trials": n_trials},
        train={"max_steps": steps, "eval_every": every},
    )
    with private_server("postgresql" if kind == "postgresql" else "mariadb") as server:
        create_or_resume(StudySpec.from_dict(raw), open_storage(server.url))
        procs = start_workers("restart", server.url, 2, tmp_path)
        try:
            before = wait_for(
                lambda: _done_and_running(fresh_trials(server.url, "restart"), 2),
                180,
                "two complete trials and one in training",
                running=lambda: any(p.poll() is None for p in procs),
            )
            server.stop()  # under running trials: reports, heartbeats and claims fail
            time.sleep(OUTAGE)
            server.start()
        finally:
            codes = finish(procs)
        errors = [(tmp_path / f"worker{i}.err").read_text() for i in range(2)]
        assert codes == [0, 0], errors
        after = fresh_trials(server.url, "restart")
    assert states(after) == {"COMPLETE": n_trials}
    assert sorted(t.number for t in after) == list(range(n_trials))
    assert len({t.params["learning_rate"] for t in after}) == n_trials  # no point run twice
    # every report of every trial was stored, those sent during the outage included
    assert all(len(t.intermediate_values) == steps // every for t in after)
    finished_before = {t.number: snapshot(t) for t in before if t.state.is_finished()}
    assert {t.number: snapshot(t) for t in after if t.number in finished_before} == finished_before
    # the outage was seen and waited out, not slipped through between two calls
    assert any("retrying for up to 60 s" in e for e in errors), errors
    assert any("answers again after" in e for e in errors), errors
    print(f"\n{kind}: before the restart {states(before)}, after {states(after)}; "
          f"{len(finished_before)} finished trials unchanged")  # fmt: skip


STEPS = 60  # a trial of the tiny model takes about a second or two on one thread


def _done_and_running(
    trials: list[optuna.trial.FrozenTrial], done: int, before_step: int | None = None
) -> Any:
    """The trials once ``done`` are complete and one is in training (and has reported no step
    past ``before_step``, so it cannot finish before a signal lands), else None."""
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    training = [
        t
        for t in trials
        if t.state == TrialState.RUNNING
        and t.intermediate_values
        and (before_step is None or max(t.intermediate_values) <= before_step)
    ]
    return trials if len(complete) >= done and training else None


# ------------------------------------------------------------------ B: Ctrl-C, then run again


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_then_the_same_command_continues_the_study(
    workers: int, tiny_model_dir: Path, sentiment_csv: Path, tmp_path: Path
) -> None:
    # long trials, and with two workers twice as many: the first two run side by side, so
    # a signal must have later trials in training to land in (one alone leaves too short
    # a window on a fast machine)
    n_trials, steps, every = 3 * workers, 4 * STEPS, STEPS // 2
    raw = spec_dict(
        tiny_model_dir,
        sentiment_csv,
        study={"name": "ctrlc", "n_trials": n_trials},
        train={"max_steps": steps, "eval_every": every},
    )
    study_file = tmp_path / "ctrlc.toml"
    study_file.write_text(toml_text(raw))
    url = f"sqlite:///{tmp_path / 'ctrlc.db'}"
    cmd = [sys.executable, "-m", "hpo", "run", str(study_file), "--storage", url]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    env = {**os.environ, "HPO_HEARTBEAT_INTERVAL": "1", "HPO_GRACE_PERIOD": "30",
           "CUDA_VISIBLE_DEVICES": "", "COLUMNS": "200"}  # fmt: skip

    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for(
            lambda: (
                (tmp_path / "ctrlc.db").exists()
                and _done_and_running(_trials_or_none(url), 1, steps // 2)
            ),
            180,
            "one complete trial and the next in training",
            running=lambda: first.poll() is None,
        )
        first.send_signal(signal.SIGINT)
        out, _ = first.communicate(timeout=120)
    except BaseException:
        if first.poll() is None:
            first.kill()
        print(first.communicate()[0].decode(errors="replace")[-6000:])  # shown with the failure
        raise
    text = out.decode(errors="replace")
    assert first.returncode == 130, text
    before = fresh_trials(url, "ctrlc")
    interrupted = [t for t in before if t.state == TrialState.FAIL]
    # the last line says what the database holds once every worker recorded its trial
    stopped = [line for line in text.splitlines() if line.startswith("stopped")]
    held = states(before)
    assert stopped == [
        f"stopped: {held.get('COMPLETE', 0)} complete · {held.get('PRUNED', 0)} pruned · "
        f"{len(interrupted)} failed ({len(interrupted)} interrupted, to run again) stored; "
        "run again to resume"
    ], text
    assert interrupted and all(t.user_attrs.get(keys.INTERRUPTED) for t in interrupted)
    why = "interrupted (Ctrl-C)" if workers == 1 else "stopped by SIGTERM"  # parent -> workers
    assert all(why in t.user_attrs[keys.FAIL_REASON] for t in interrupted), before
    assert any(t.intermediate_values for t in interrupted)  # stopped in mid-training
    assert not [t for t in before if t.state == TrialState.RUNNING]
    done_before = {t.number: snapshot(t) for t in before if t.state.is_finished()}

    again = subprocess.run(cmd, env=env, capture_output=True, timeout=300)
    text = again.stdout.decode(errors="replace")
    assert again.returncode == 0, text + again.stderr.decode(errors="replace")
    assert "resumed study ctrlc" in text
    # one worker or several, the start line says how many rows the data gave
    assert re.search(r"resumed study ctrlc .* \d+ train / \d+ validation rows", text), text

    after = fresh_trials(url, "ctrlc")
    assert states(after) == {"COMPLETE": n_trials, "FAIL": len(interrupted)}
    assert {t.number: snapshot(t) for t in after if t.number in done_before} == done_before
    complete = [t for t in after if t.state == TrialState.COMPLETE]
    assert len({t.params["learning_rate"] for t in complete}) == n_trials  # none run twice
    assert all(len(t.intermediate_values) == steps // every for t in complete)
    print(f"\nCtrl-C with {workers} worker(s): after the first run {states(before)}, after "
          f"the second {states(after)}; interrupted trials "
          f"{[t.number for t in interrupted]}")  # fmt: skip


def _trials_or_none(url: str) -> list[optuna.trial.FrozenTrial]:
    """The study's trials, or none before the study exists."""
    try:
        return fresh_trials(url, "ctrlc")
    except Exception:  # no database or no study yet
        return []


def test_a_trial_a_sweeper_failed_while_it_ran_does_not_stop_its_worker(tmp_path: Path) -> None:
    """A database outage longer than the grace period lets another worker fail a live trial;
    when its own worker then reports or tells, the worker goes on to the next trial."""
    from hpo.execution.optuna_private import storage_of, trial_id_of
    from hpo.execution.workers import work

    storage = open_storage(f"sqlite:///{tmp_path / 'swept.db'}")
    study = optuna.create_study(storage=storage, study_name="swept", direction="maximize")

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        if trial.number < 2:  # what a sweeper does to a trial it takes for dead
            frozen = study.get_trials(deepcopy=False)[trial.number]
            storage_of(study).set_trial_state_values(trial_id_of(frozen), TrialState.FAIL)
        if trial.number == 1:
            trial.report(x, 1)  # the worker, back, reports into a finished trial
        return x

    assert work(study, objective, 3) == 3  # the worker went on after each swept trial
    assert [t.state for t in study.get_trials()] == [
        TrialState.FAIL,
        TrialState.FAIL,
        TrialState.COMPLETE,
    ]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_the_moment_a_trial_is_claimed_fails_that_trial(
    sig: signal.Signals, tmp_path: Path
) -> None:
    """The claim writes RUNNING before the worker knows the trial's id; a SIGTERM or Ctrl-C
    right after that write must still end the trial as interrupted, not leave it RUNNING."""
    from hpo.execution.signals import WorkerStopped, sigterm_stops_worker
    from hpo.execution.workers import work

    storage = open_storage(f"sqlite:///{tmp_path / 'claimed.db'}")
    study = optuna.create_study(storage=storage, study_name="claimed", direction="maximize")
    ran: list[int] = []

    def signal_after_the_claim(frame: Any, event: str, result: Any) -> None:
        # the storage call that turned WAITING into RUNNING returned True: the signal lands
        # at the next line of the claim, before the worker has the trial's id
        if event == "return" and frame.f_code.co_name == "claim_waiting" and result is True:
            sys.setprofile(None)
            os.kill(os.getpid(), sig)

    expected = WorkerStopped if sig == signal.SIGTERM else KeyboardInterrupt
    with sigterm_stops_worker(), pytest.raises(expected):
        sys.setprofile(signal_after_the_claim)
        try:
            work(study, lambda t: ran.append(t.number) or 1.0, 2)
        finally:
            sys.setprofile(None)
    trials = study.get_trials()
    assert ran == []  # stopped before the objective
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.WAITING]
    assert trials[0].user_attrs[keys.INTERRUPTED] is True
    why = "stopped by SIGTERM" if sig == signal.SIGTERM else "interrupted (Ctrl-C)"
    assert why in trials[0].user_attrs[keys.FAIL_REASON]


def test_a_worker_with_nothing_left_waits_for_a_dead_workers_trial_and_runs_its_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The budget counts running trials, so a worker whose peer died mid-trial used to find
    the budget spent and leave; it now waits until that trial's heartbeat goes stale and runs
    the retry, so the study ends with its whole budget complete."""
    from hpo.execution.optuna_private import heartbeat_of, storage_of, trial_id_of
    from hpo.execution.workers import work

    monkeypatch.setenv("HPO_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("HPO_GRACE_PERIOD", "2")
    study = optuna.create_study(
        storage=open_storage(f"sqlite:///{tmp_path / 'dead.db'}"),
        study_name="dead",
        direction="maximize",
    )
    dead = study.ask()  # a worker elsewhere took this trial, beat once, and died
    dead.suggest_float("x", 0.0, 1.0)
    dead.set_user_attr(keys.WORKER, "elsewhere:1")
    heartbeat = heartbeat_of(storage_of(study))
    assert heartbeat is not None
    heartbeat.record_heartbeat(trial_id_of(study.get_trials()[0]))

    assert work(study, lambda t: t.suggest_float("x", 0.0, 1.0), 2) == 2
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.COMPLETE]
    assert trials[2].params == trials[0].params  # the retry of the dead worker's trial
