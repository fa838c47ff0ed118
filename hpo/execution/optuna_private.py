"""The few Optuna internals hpo relies on, each behind one small function.

Optuna has no public API for what these do (checked against Optuna 5.0). Keeping every private
name here means an Optuna upgrade that renames one breaks one function, and
``tests/test_optuna_private.py`` checks each against the installed Optuna. ``retry_history``
is public but experimental (it may change without notice, as a private name may), so it is
here too.

What is public and used directly elsewhere: ``Study.tell`` / ``get_trials`` / ``enqueue_trial``,
``optuna.Trial(study, trial_id)``, ``optuna.storages.fail_stale_trials``, and the
``BaseStorage`` methods (``set_trial_state_values``, ``get_trial``, ``record_heartbeat`` ...).
``Study.ask`` claims a WAITING trial too, but always the oldest, not the one hpo chooses
(retries and enqueued parameters first), and without the lock hpo takes on SQLite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage
    from optuna.storages._heartbeat import BaseHeartbeat


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage the study reads and writes through (``Study._storage``).

    Optuna exposes no accessor: ``optuna.load_study`` takes a storage but wraps an
    ``RDBStorage`` in a ``_CachedStorage``, and the study's trials must be claimed and read
    through that same object, or its cache misses the changes."""
    return study._storage


def trial_id_of(trial: optuna.trial.FrozenTrial) -> int:
    """The storage's id of a trial (``FrozenTrial._trial_id``), which storage methods take.

    Public is only the trial number; mapping it back costs two storage queries per trial
    (``get_study_id_from_name``, ``get_trial_id_from_study_id_trial_number``), which a worker
    scanning the queue would pay for every waiting trial."""
    return trial._trial_id


def backend_of(storage: BaseStorage) -> BaseStorage:
    """The storage behind Optuna's cache (``_CachedStorage._backend``); any other storage as
    it is. The ``RDBStorage`` behind it has the database's ``url``, which the wrapper lacks."""
    import optuna

    if isinstance(storage, optuna.storages._CachedStorage):
        return storage._backend
    return storage


def heartbeat_of(storage: BaseStorage) -> BaseHeartbeat | None:
    """The storage as Optuna's heartbeat interface (``record_heartbeat``,
    ``get_heartbeat_interval``) when it has heartbeats switched on; None otherwise (in-memory
    and journal storages, or an ``RDBStorage`` opened without ``heartbeat_interval``).

    The interface, ``BaseHeartbeat``, lives in the private module ``optuna.storages._heartbeat``;
    it is the very check ``optuna.storages.fail_stale_trials`` makes, so hpo beats for exactly
    the storages whose stale trials Optuna fails."""
    from optuna.storages._heartbeat import BaseHeartbeat

    if isinstance(storage, BaseHeartbeat) and storage.get_heartbeat_interval() is not None:
        return storage
    return None


def claim_waiting(storage: BaseStorage, trial_id: int) -> bool:
    """Move the WAITING trial ``trial_id`` to RUNNING; False if it is not WAITING any more
    (another worker claimed it, or it finished).

    This is the compare-and-set ``Study.ask`` uses internally (``Study._pop_waiting_trial_id``):
    ``set_trial_state_values(..., RUNNING)`` returns False for a trial that is not WAITING and
    raises ``UpdateFinishedTrialError`` for a finished one. Optuna has no public "claim this
    trial"."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:
        return bool(storage.set_trial_state_values(trial_id, state=TrialState.RUNNING))
    except UpdateFinishedTrialError:
        return False


def enqueued_params(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """The parameters ``Study.enqueue_trial`` fixed for a WAITING trial (the ``fixed_params``
    system attribute, which ``optuna.Trial`` reads when the trial starts); empty for a slot
    enqueued with none. A WAITING trial's ``params`` stay empty until it runs, and Optuna has
    no public reader of what was enqueued."""
    return dict(trial.system_attrs.get("fixed_params") or {})


def retry_history(trial: optuna.trial.FrozenTrial) -> list[int]:
    """Numbers of the failed trials ``trial`` retries, the first failure first; empty for a
    trial that retries none. Public but experimental:
    ``RetryHeartbeatStaleTrialCallback.retry_history``, its ``ExperimentalWarning`` silenced."""
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return list(optuna.storages.RetryHeartbeatStaleTrialCallback.retry_history(trial))
