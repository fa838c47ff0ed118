"""hpo/execution/optuna_private.py against the installed Optuna: each function reads a private
(or experimental) Optuna name, and each test fails if an upgrade renames or changes it."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.storages import BaseStorage, InMemoryStorage, RDBStorage
from optuna.trial import TrialState

from hpo.execution.optuna_private import (
    backend_of,
    claim_waiting,
    enqueued_params,
    heartbeat_of,
    retry_history,
    storage_of,
    trial_id_of,
)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'private.db'}"


def states(study: optuna.Study) -> list[TrialState]:
    return [t.state for t in study.get_trials(deepcopy=False)]


def test_storage_of_is_the_storage_the_study_was_created_with(url: str) -> None:
    rdb = RDBStorage(url)
    study = optuna.create_study(storage=rdb, study_name="s")
    storage = storage_of(study)
    assert isinstance(storage, BaseStorage)
    assert backend_of(storage) is rdb  # Optuna wraps it in its cache; the RDBStorage is behind
    assert getattr(backend_of(storage), "url", None) == url  # what the SQLite claim lock reads
    # writing through it is what the study, and a second process, read
    study_id = storage.get_study_id_from_name("s")
    storage.set_study_user_attr(study_id, "written", 7)
    assert study.user_attrs["written"] == 7
    assert optuna.load_study(study_name="s", storage=url).user_attrs["written"] == 7
    trial_id = storage.create_new_trial(study_id)
    assert [t.number for t in study.get_trials()] == [storage.get_trial(trial_id).number]

    memory = InMemoryStorage()
    in_memory = optuna.create_study(storage=memory)
    assert storage_of(in_memory) is memory
    assert backend_of(memory) is memory


def test_trial_id_of_is_the_id_the_storage_knows_for_the_number(url: str) -> None:
    storage = RDBStorage(url)
    first = optuna.create_study(storage=storage, study_name="first")
    for _ in range(2):
        first.ask()
    study = optuna.create_study(storage=storage, study_name="second")
    study.ask()
    study.ask()
    study_id = storage.get_study_id_from_name("second")
    for t in study.get_trials():
        known = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        assert trial_id_of(t) == known
        assert trial_id_of(t) != t.number  # ids run across studies, numbers per study
        assert storage.get_trial(trial_id_of(t)).number == t.number


def test_heartbeat_of_is_the_interface_fail_stale_trials_reads(url: str) -> None:
    assert heartbeat_of(InMemoryStorage()) is None
    assert heartbeat_of(RDBStorage(url)) is None  # heartbeats off: no interval
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        rdb = RDBStorage(url, heartbeat_interval=1, grace_period=2)
    study = optuna.create_study(storage=rdb, study_name="beats")
    heartbeat = heartbeat_of(storage_of(study))  # through Optuna's cache too
    assert heartbeat is not None and heartbeat_of(rdb) is rdb
    assert heartbeat.get_heartbeat_interval() == 1
    study.enqueue_trial({})
    (waiting,) = study.get_trials()
    assert claim_waiting(storage_of(study), trial_id_of(waiting))
    # a recorded heartbeat is what Optuna's stale sweep reads: fresh, the trial lives on ...
    heartbeat.record_heartbeat(trial_id_of(waiting))
    optuna.storages.fail_stale_trials(study)
    assert states(study) == [TrialState.RUNNING]
    # ... silent for longer than the grace period, it is failed
    time.sleep(3.5)
    optuna.storages.fail_stale_trials(study)
    assert states(study) == [TrialState.FAIL]


def test_claim_waiting_takes_one_waiting_trial_once(url: str) -> None:
    study = optuna.create_study(storage=RDBStorage(url), study_name="queue")
    study.enqueue_trial({"x": 0.25})
    study.enqueue_trial({})
    storage = storage_of(study)
    first, second = study.get_trials()
    assert claim_waiting(storage, trial_id_of(first)) is True
    assert states(study) == [TrialState.RUNNING, TrialState.WAITING]
    assert claim_waiting(storage, trial_id_of(first)) is False  # already running
    assert states(study) == [TrialState.RUNNING, TrialState.WAITING]
    study.tell(first.number, 1.0)
    assert claim_waiting(storage, trial_id_of(first)) is False  # finished: Optuna raises, we say no
    assert claim_waiting(storage, trial_id_of(second)) is True
    assert states(study) == [TrialState.COMPLETE, TrialState.RUNNING]


def test_enqueued_params_are_what_the_claimed_trial_suggests(url: str) -> None:
    study = optuna.create_study(storage=RDBStorage(url), study_name="fixed")
    study.enqueue_trial({"x": 0.25})
    study.enqueue_trial({})
    fixed, empty = study.get_trials()
    assert fixed.params == {}  # a waiting trial's parameters are not public yet
    assert enqueued_params(fixed) == {"x": 0.25}
    assert enqueued_params(empty) == {}
    assert claim_waiting(storage_of(study), trial_id_of(fixed))
    trial = optuna.Trial(study, trial_id_of(fixed))
    assert trial.suggest_float("x", 0.0, 1.0) == 0.25  # the attribute Optuna itself reads


def test_retry_history_names_the_failed_trials_a_retry_replaces(url: str) -> None:
    study = optuna.create_study(storage=RDBStorage(url), study_name="retries")
    trial = study.ask()
    trial.suggest_float("x", 0.0, 1.0)
    study.tell(trial, state=TrialState.FAIL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=2)
    retry(study, study.get_trials()[0])
    failed, queued = study.get_trials()
    assert queued.state == TrialState.WAITING
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert retry_history(queued) == [failed.number]
        assert retry_history(failed) == []
    assert not caught  # the experimental warning does not reach hpo's output
