"""Real worker processes on SQLite, PostgreSQL and MySQL: budget, SIGKILL, SIGTERM, two studies.

Each test starts ``hpo worker`` processes (the same command ``hpo run --workers`` starts) on the
tiny BERT, then checks the database.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pytest
from optuna.trial import TrialState

from hpo.config.spec import StudySpec
from hpo.execution import launch
from hpo.execution.storage import open_storage
from hpo.search.study import create_or_resume
from tests.conftest import spec_dict
from tests.databases import BACKENDS, database

pytestmark = pytest.mark.slow


@pytest.fixture(params=BACKENDS)
def url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    # Short heartbeats so a dead worker's trial is found within seconds.
    monkeypatch.setenv("HPO_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("HPO_GRACE_PERIOD", "4")
    with database(request.param, tmp_path) as u:
        yield u


def create(model: Path, data: Path, url: str, name: str, n_trials: int, steps: int) -> optuna.Study:
    raw = spec_dict(
        model,
        data,
        study={"name": name, "n_trials": n_trials},
        train={"max_steps": steps, "eval_every": max(5, steps // 4)},
    )
    study, _ = create_or_resume(StudySpec.from_dict(raw), open_storage(url))
    return study


def start(name: str, url: str, n: int, first_index: int = 0) -> list[subprocess.Popen[bytes]]:
    slots = [launch.Slot(first_index + i, None, 1) for i in range(n)]
    return launch.spawn(name, url, slots)


def finish(procs: list[subprocess.Popen[bytes]], timeout: float = 240) -> list[int]:
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for q in procs:
                q.kill()
            pytest.fail("workers did not finish in time")
    return [p.returncode for p in procs]


def running_trial(study: optuna.Study, timeout: float = 120) -> Any:
    """Wait for a trial that a worker is training, and return it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for t in study.get_trials(states=(TrialState.RUNNING,)):
            if "worker" in t.user_attrs and t.intermediate_values:
                return t
        time.sleep(0.2)
    pytest.fail("no trial started training")


def kill_a_training_worker(
    study: optuna.Study, procs: list[subprocess.Popen[bytes]]
) -> tuple[Any, list[Any]]:
    """SIGKILL the worker of a trial in training and let the others finish; returns the trial
    the killed worker left (normally the one it was running, unless that had just finished)
    and all the study's trials."""
    victim = running_trial(study)
    os.kill(int(victim.user_attrs["worker"].rsplit(":", 1)[1]), signal.SIGKILL)
    codes = finish(procs)
    assert sorted(codes) == [-signal.SIGKILL, 0]
    trials = study.get_trials()
    (dead,) = [
        t
        for t in trials
        if t.user_attrs.get("worker") == victim.user_attrs["worker"]
        and t.state != TrialState.COMPLETE
    ]
    return dead, trials


def states(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials():
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def test_workers_share_the_budget_exactly(tiny_model_dir, sentiment_csv, url) -> None:
    study = create(tiny_model_dir, sentiment_csv, url, "shared", n_trials=7, steps=12)
    codes = finish(start("shared", url, 3))
    assert codes == [0, 0, 0]
    trials = study.get_trials()
    assert states(study) == {"COMPLETE": 7}
    assert len({t.params["learning_rate"] for t in trials}) == 7  # no point sampled twice
    assert len({t.user_attrs["worker"] for t in trials}) >= 2  # the work was shared


def test_a_killed_worker_leaves_no_running_trial(tiny_model_dir, sentiment_csv, url) -> None:
    # 400 steps: the kill lands after the first evaluation (step 100) with 300 steps to go,
    # as in the same test through the proxy
    study = create(tiny_model_dir, sentiment_csv, url, "kill", n_trials=4, steps=400)
    dead, trials = kill_a_training_worker(study, start("kill", url, 2))
    assert dead.state == TrialState.FAIL
    retries = [t for t in trials if t.system_attrs.get("failed_trial") == dead.number]
    assert len(retries) == 1
    assert retries[0].params == dead.params and retries[0].state == TrialState.COMPLETE
    assert states(study) == {"COMPLETE": 4, "FAIL": 1}  # the retry took the dead trial's slot


def test_sigterm_fails_the_current_trial_with_its_reason(
    tiny_model_dir, sentiment_csv, url
) -> None:
    study = create(tiny_model_dir, sentiment_csv, url, "term", n_trials=3, steps=400)
    procs = start("term", url, 1)
    victim = running_trial(study)
    procs[0].send_signal(signal.SIGTERM)
    assert finish(procs) == [130]
    dead = study.get_trials()[victim.number]
    assert dead.state == TrialState.FAIL
    assert "SIGTERM" in dead.user_attrs["fail_reason"]
    assert "RUNNING" not in states(study)


def test_two_studies_in_one_database_keep_apart(tiny_model_dir, sentiment_csv, url) -> None:
    a = create(tiny_model_dir, sentiment_csv, url, "alpha", n_trials=3, steps=8)
    b = create(tiny_model_dir, sentiment_csv, url, "beta", n_trials=2, steps=8)
    codes = finish(start("alpha", url, 1) + start("beta", url, 1, first_index=1))
    assert codes == [0, 0]
    assert states(a) == {"COMPLETE": 3} and states(b) == {"COMPLETE": 2}
    assert {t.user_attrs["max_steps"] for t in a.get_trials() + b.get_trials()} == {8}
    summaries = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(url)}
    assert summaries == {"alpha": 3, "beta": 2}


_OPEN_AT = """
import sys, time
from hpo.execution.storage import open_storage
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))
try:
    open_storage(sys.argv[1], heartbeat=False)
    print("opened")
except Exception as exc:
    print(f"failed: {exc}")
"""


def test_workers_started_together_on_a_new_database_all_open_it(url: str) -> None:
    """Optuna checks for its tables and then creates them, so workers started at the same
    moment on an empty database race; every one of them must open it, none fail on "table
    already exists" or on the schema version row."""
    import sqlalchemy

    n = 6
    start_at = time.time() + 3  # after every interpreter has imported hpo
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _OPEN_AT, url, str(start_at)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        for _ in range(n)
    ]
    outputs = [p.communicate(timeout=120)[0].decode().strip() for p in procs]
    assert outputs == ["opened"] * n, outputs
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version"))
            assert len(rows.fetchall()) == 1  # one schema version, written once
    finally:
        engine.dispose()


def test_a_sigterm_whose_exception_a_finalizer_swallowed_still_stops_the_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """SIGTERM's handler raises WorkerStopped; raised inside a ``__del__`` it is printed and
    dropped, and a worker went on to finish its study (exit 0, not 130). The next step or claim
    raises it again."""
    from hpo.execution.signals import WorkerStopped, sigterm_stops_worker, stop_if_signalled

    class Finalized:
        def __del__(self) -> None:
            os.kill(os.getpid(), signal.SIGTERM)  # lands while the finalizer runs

    swallowed: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda u: swallowed.append(u.exc_value))
    with sigterm_stops_worker():
        stop_if_signalled()  # nothing arrived yet
        obj = Finalized()
        del obj  # the handler's exception is swallowed here
        assert [type(e) for e in swallowed] == [WorkerStopped]
        with pytest.raises(WorkerStopped, match="signal 15"):
            stop_if_signalled()
    stop_if_signalled()  # outside the block nothing is pending
