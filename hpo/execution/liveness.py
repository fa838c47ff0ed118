"""hpo's own heartbeat, for storages where Optuna has none (the gRPC storage proxy).

Optuna's heartbeat lives in ``RDBStorage`` (a table the proxy does not expose), so through
``GrpcStorageProxy`` a killed worker's trial would stay RUNNING for good. This one needs nothing
but the public ``BaseStorage`` methods every storage has:

- beat: while a trial runs, a thread in its worker writes the time into the trial's system
  attribute ``hpo_heartbeat`` every ``interval`` seconds;
- sweep: between trials (and while it waits for others), every worker reads the RUNNING trials
  and remembers each one's last stamp and when *it* first saw that stamp. A stamp that has not
  changed for ``grace`` seconds of the observer's own clock means the worker is gone. Comparing
  stamps, never clocks, keeps machines with skewed clocks from failing each other's trials;
- fail once, retry once: the stale trial's reason is written, then it is moved RUNNING -> FAIL.
  That move is a compare-and-set in every storage (a finished trial raises
  ``UpdateFinishedTrialError``), so when two workers sweep at once exactly one wins, and only
  the winner queues the retry, with Optuna's ``RetryHeartbeatStaleTrialCallback(max_retry=1)``:
  the retry carries the same ``failed_trial`` / ``retry_history`` system attributes as on
  PostgreSQL, so the budget counts it the same way, and a retry that dies is not retried again.
"""

from __future__ import annotations

import copy
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from hpo import keys
from hpo.execution.optuna_private import backend_of, retry_history, storage_of, trial_id_of

if TYPE_CHECKING:
    import optuna
    from optuna.storages import BaseStorage

BEAT_ATTR = "hpo_heartbeat"  # system attribute: epoch seconds of the trial's last beat


def covers(storage: BaseStorage) -> bool:
    """Whether hpo beats and sweeps for this storage itself: the gRPC proxy's client, the one
    storage hpo opens whose stale trials Optuna's ``fail_stale_trials`` cannot see."""
    from optuna.storages import GrpcStorageProxy

    return isinstance(backend_of(storage), GrpcStorageProxy)


def settings() -> tuple[int, int]:
    """(interval, grace) in seconds, from the same settings as Optuna's heartbeat."""
    from hpo.execution.storage import _heartbeat_settings

    return _heartbeat_settings()


@contextmanager
def beating(study: optuna.Study, trial_id: int, interval: float | None = None) -> Iterator[None]:
    """Stamp the trial every ``interval`` seconds while the block runs (for covered storages;
    elsewhere nothing happens). A failed write is tried again at the next beat: a proxy that
    hiccups for less than the grace period must not get a live trial failed."""
    from optuna.exceptions import UpdateFinishedTrialError

    storage = storage_of(study)
    if not covers(storage):
        yield
        return

    def beat() -> bool:
        try:
            storage.set_trial_system_attr(trial_id, BEAT_ATTR, time.time())
        except UpdateFinishedTrialError:
            return False  # the trial ended (or a sweeper failed it): nothing left to keep alive
        except Exception:
            pass
        return True

    with repeating(beat, interval if interval is not None else settings()[0], trial_id):
        yield


@contextmanager
def repeating(beat: Callable[[], bool], seconds: float, trial_id: int) -> Iterator[None]:
    """Call ``beat`` now and every ``seconds`` in a background thread while the block runs,
    until it returns False; the thread is stopped and joined when the block ends."""
    stop = threading.Event()

    def loop() -> None:
        while beat() and not stop.wait(seconds):
            pass

    thread = threading.Thread(target=loop, name=f"hpo-heartbeat-{trial_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


class Liveness:
    """One worker's view of the other workers' trials: which stamps it has seen, and since when.

    ``clock`` is injectable so the rule can be tested without waiting; it must be monotonic.
    """

    def __init__(
        self, interval: float, grace: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if interval <= 0:
            raise ValueError(f"`interval` must be above 0, got {interval}")
        if grace <= interval:
            raise ValueError(f"`grace` must exceed `interval` ({interval}), got {grace}")
        self.interval, self.grace = interval, grace
        self._clock = clock
        self._seen: dict[int, tuple[object, float]] = {}

    @classmethod
    def for_study(cls, study: optuna.Study) -> Liveness | None:
        """A sweeper for the study's storage if hpo beats there itself; None otherwise."""
        if not covers(storage_of(study)):
            return None
        return cls(*settings())

    def stale(self, trials: list[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
        """The RUNNING trials among ``trials`` whose stamp this observer has seen unchanged for
        the grace period; remembers the rest. A trial with no stamp yet counts as the stamp
        None: its worker died before its first beat."""
        from optuna.trial import TrialState

        now = self._clock()
        running = {trial_id_of(t): t for t in trials if t.state == TrialState.RUNNING}
        self._seen = {i: seen for i, seen in self._seen.items() if i in running}
        out = []
        for trial_id, t in running.items():
            stamp = t.system_attrs.get(BEAT_ATTR)
            seen = self._seen.get(trial_id)
            if seen is None or seen[0] != stamp:
                self._seen[trial_id] = (stamp, now)
            elif now - seen[1] >= self.grace:
                out.append(t)
        return out

    def sweep(self, study: optuna.Study) -> list[int]:
        """Fail the study's stale trials with their reason and queue each one's retry once;
        returns the numbers of the trials this worker failed."""
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        failed = []
        for t in self.stale(trials):
            if fail_and_retry(study, t, self.grace):
                failed.append(t.number)
            self._seen.pop(trial_id_of(t), None)
        return failed


def fail_and_retry(study: optuna.Study, trial: optuna.trial.FrozenTrial, grace: float) -> bool:
    """Fail a stale RUNNING trial and queue its retry (once); False if another worker, or the
    trial's own worker, ended it first."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    storage = storage_of(study)
    trial_id = trial_id_of(trial)
    again = (
        "not retried again: it was a retry itself"
        if retry_history(trial)
        else "the trial's parameters are queued again once"
    )
    reason = (
        f"its worker sent no heartbeat for {grace:g} s (killed, or cut off from the storage); "
        + again
    )
    try:
        # First the reason, then the state: a finished trial's attributes cannot change.
        storage.set_trial_user_attr(trial_id, keys.FAIL_REASON, reason)
        if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
            return False
    except UpdateFinishedTrialError:
        return False
    dead = copy.deepcopy(storage.get_trial(trial_id))
    # The retry inherits the dead trial's attributes (as on PostgreSQL), but not its failure
    # reason or its last beat: it has neither yet.
    dead.user_attrs = {k: v for k, v in dead.user_attrs.items() if k != keys.FAIL_REASON}
    dead.system_attrs = {k: v for k, v in dead.system_attrs.items() if k != BEAT_ATTR}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)(study, dead)
    return True
