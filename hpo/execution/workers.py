"""Workers: claim a queued trial, run it with heartbeats, record it; sweep trials of dead workers.

The study-wide budget is a queue: creating a study enqueues its first trials (with parameters)
and empty WAITING trials (slots) up to ``n_trials``, and a worker only ever runs a trial it
claimed from that queue. Claiming is Optuna's atomic WAITING -> RUNNING change, so K workers
run exactly ``n_trials`` trials between them, never K x n. A trial whose worker dies stops
sending heartbeats; a live worker fails it after the grace period and Optuna re-queues its
parameters once (the retry takes its slot).
"""

from __future__ import annotations

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no advisory locks, one worker per SQLite file
    fcntl = None  # type: ignore[assignment]
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from hpo import keys
from hpo.errors import TrialFailure
from hpo.execution.liveness import Liveness, beating, repeating
from hpo.execution.optuna_private import (
    backend_of,
    claim_waiting,
    enqueued_params,
    heartbeat_of,
    retry_history,
    storage_of,
    trial_id_of,
)
from hpo.execution.signals import WorkerStopped, signals_deferred, stop_if_signalled

if TYPE_CHECKING:
    import optuna

DEADLINE_ATTR = keys.DEADLINE
INTERRUPTED_ATTR = keys.INTERRUPTED

OnFinished = Callable[["optuna.Study", "optuna.trial.FrozenTrial"], None]


def retried_numbers(trials: list[optuna.trial.FrozenTrial]) -> set[int]:
    """Numbers of failed trials that a heartbeat retry has replaced."""
    out: set[int] = set()
    for t in trials:
        out.update(retry_history(t))
    return out


def budget_used(study: optuna.Study, include_waiting: bool = False) -> int:
    """Trials that count against the budget: all that ran or run, less failures that were
    retried and trials a user interrupted (Ctrl-C, SIGTERM), whose slots a rerun fills again."""
    return trials_used(study.get_trials(deepcopy=False), include_waiting)


def trials_used(trials: list[optuna.trial.FrozenTrial], include_waiting: bool = False) -> int:
    """``budget_used`` of a study's ``trials``."""
    from optuna.trial import TrialState

    retried = retried_numbers(trials)
    return sum(
        1
        for t in trials
        if (include_waiting or t.state != TrialState.WAITING)
        and not (
            t.state == TrialState.FAIL
            and (t.number in retried or t.user_attrs.get(INTERRUPTED_ATTR))
        )
    )


def ensure_budget(study: optuna.Study, n_trials: int, ahead: int | None = None) -> int:
    """Enqueue empty trials until the study's queue and history add up to ``n_trials``; with
    ``ahead`` (a study with a spend budget), only until that many trials wait in the queue."""
    from optuna.trial import TrialState

    missing = n_trials - budget_used(study, include_waiting=True)
    if ahead is not None:
        waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
        missing = min(missing, ahead - waiting)
    for _ in range(max(0, missing)):
        study.enqueue_trial({}, skip_if_exists=False)
    return max(0, missing)


def set_deadline(study: optuna.Study, timeout: float | None) -> None:
    """Start the study-wide clock: no worker starts a trial after ``timeout`` seconds from now."""
    study.set_user_attr(DEADLINE_ATTR, None if timeout is None else time.time() + timeout)


def start_deadline(study: optuna.Study, timeout: float | None) -> None:
    """Start the clock of a study ``hpo create`` made, when its first worker starts work: a
    worker queued for hours (a Slurm or Kubernetes job) then still gets the whole ``timeout``.
    A clock already running (another worker's, or ``hpo run``'s) is left as it is."""
    if timeout is not None and study.user_attrs.get(DEADLINE_ATTR) is None:
        set_deadline(study, timeout)


def deadline_passed(study: optuna.Study) -> float | None:
    """The study's deadline (epoch seconds) when it has passed; None while there is time."""
    deadline = study.user_attrs.get(DEADLINE_ATTR)
    return float(deadline) if deadline is not None and time.time() >= float(deadline) else None


def timeout_note(
    trials: list[optuna.trial.FrozenTrial],
    study_attrs: Mapping[str, Any],
    n_trials: int,
    spend: Mapping[str, float] | None,
    timeout: float | None,
) -> str | None:
    """The report's line for a study its ``timeout`` stopped before the budget (``n_trials``,
    or the ``spend`` of ``study.budget``) was used; None otherwise, and while trials run."""
    from optuna.trial import TrialState

    from hpo.search.budget import progress, spent

    deadline = study_attrs.get(DEADLINE_ATTR)
    if deadline is None or time.time() < float(deadline):
        return None
    if any(t.state == TrialState.RUNNING for t in trials):
        return None
    if spend:
        ((unit, amount),) = spend.items()
        if spent(trials, unit) >= amount:
            return None
        done = progress(trials, dict(spend))
    else:
        used = trials_used(trials)
        if used >= n_trials:
            return None
        done = f"{used} of {n_trials} trials done"
    limit = f" ({timeout:g} s)" if timeout is not None else ""
    return (
        f"stopped by study.timeout{limit} with {done}; run the same command again to go on "
        "(each run has the whole timeout)"
    )


def _past_deadline(study: optuna.Study) -> bool:
    return deadline_passed(study) is not None


def _claim(study: optuna.Study) -> int | None:
    """Atomically take one WAITING trial; None when the queue is empty.

    Trials with parameters (retries, or ones a user enqueued) go before the empty slots.
    """
    from optuna.trial import TrialState

    storage = storage_of(study)
    with _sqlite_claim_lock(study):
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        waiting.sort(key=lambda t: (not (t.params or enqueued_params(t)), t.number))
        for t in waiting:
            if claim_waiting(storage, trial_id_of(t)):
                return trial_id_of(t)
    return None


@contextmanager
def _sqlite_claim_lock(study: optuna.Study) -> Iterator[None]:
    """On SQLite, make the claim exclusive across processes with a lock file beside the database.

    Optuna's claim reads the trial's state, then writes it; PostgreSQL and MySQL lock the row
    between the two (SELECT ... FOR UPDATE), but SQLite's driver reads outside the write
    transaction, so two processes could both claim one trial. Every SQLite worker shares the
    machine with the file, so an advisory file lock closes the gap.
    """
    from hpo.execution.storage import local_file

    url = str(getattr(backend_of(storage_of(study)), "url", ""))
    path = local_file(url) if url.startswith("sqlite") else None
    if path is None or fcntl is None:
        yield
        return
    with open(f"{path}.claim-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _heartbeat(study: optuna.Study, trial_id: int) -> Iterator[None]:
    """Record a heartbeat for the trial every interval while it runs: Optuna's on RDB
    storages, hpo's own (``liveness``) through the gRPC proxy."""
    storage = heartbeat_of(storage_of(study))
    if storage is None:
        with beating(study, trial_id):
            yield
        return

    def beat() -> bool:
        storage.record_heartbeat(trial_id)
        return True

    with repeating(beat, storage.get_heartbeat_interval() or 60, trial_id):
        yield


def run_trial(study: optuna.Study, trial_id: int, objective: Callable[[Any], float]) -> None:
    """Run one claimed trial and record its end: complete, pruned, or failed with a reason."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    trial = optuna.Trial(study, trial_id)
    with _heartbeat(study, trial_id):
        try:
            value = objective(trial)
        except UpdateFinishedTrialError:
            # another worker took this trial for dead (a database outage longer than the grace
            # period) and failed it, queueing its retry: its end is stored, this worker goes on
            return
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
            return
        except TrialFailure as exc:
            _fail(study, trial, str(exc))
            return
        except Exception as exc:  # Ctrl-C and SIGTERM are BaseExceptions: ``work`` records them
            _fail(study, trial, f"{type(exc).__name__}: {exc}".splitlines()[0])
            raise
    study.tell(trial, value, skip_if_finished=True)  # a sweeper may have failed it meanwhile


def _interrupted(study: optuna.Study, trial_id: int, exc: BaseException) -> None:
    """Fail a trial Ctrl-C or SIGTERM stopped, and mark it so it gives its budget slot back;
    a trial that ended before the signal keeps its end."""
    import optuna
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    if storage_of(study).get_trial(trial_id).state != TrialState.RUNNING:
        return
    why = "interrupted (Ctrl-C)" if isinstance(exc, KeyboardInterrupt) else "stopped by SIGTERM"
    trial = optuna.Trial(study, trial_id)
    try:
        trial.set_user_attr(INTERRUPTED_ATTR, True)
    except UpdateFinishedTrialError:
        return
    _fail(study, trial, f"worker {why} during the trial")


def _fail(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    try:
        if keys.FAIL_REASON not in trial.user_attrs:
            trial.set_user_attr(keys.FAIL_REASON, reason)
    except UpdateFinishedTrialError:
        return  # already ended by another worker's sweep, with its own reason
    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)


def sweep_stale(study: optuna.Study, liveness: Liveness | None = None) -> None:
    """Fail trials whose worker stopped sending heartbeats; the storage's callback retries them
    (``liveness`` does both where the storage has no heartbeat of Optuna's)."""
    if liveness is not None:
        liveness.sweep(study)
    import warnings

    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def work(
    study: optuna.Study,
    objective: Callable[[Any], float],
    n_trials: int,
    on_finished: OnFinished | None = None,
    poll_seconds: float | None = None,
    spend: Mapping[str, float] | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> int:
    """Run queued trials until the budget is used or the deadline passes; returns trials run.

    ``spend`` (``study.budget``: samples, flops or seconds) is a second budget: no trial starts
    once the study's trials have spent it, and the queue holds one empty slot at a time.

    When the queue is empty but other workers' trials still run, the worker waits and sweeps:
    if one of them died, its retry appears in the queue and this worker runs it. ``on_wait``
    gets one line when such a wait begins (and again when it waits for other trials), saying
    what it waits for: a dead worker's trial is only found once its heartbeat is a grace
    period old, which can be minutes of silence otherwise.
    """
    from optuna.trial import TrialState

    heartbeat = heartbeat_of(storage_of(study))
    liveness = None if heartbeat is not None else Liveness.for_study(study)
    interval = (
        heartbeat.get_heartbeat_interval()
        if heartbeat is not None
        else (liveness.interval if liveness is not None else None)
    )
    poll = poll_seconds or interval or 1.0
    ahead = None if not spend else 1
    ensure_budget(study, n_trials, ahead)  # slots given back by interrupted trials are queued
    ran = 0

    said: set[int] = set()

    def others_running() -> bool:
        """Trials still run on other hpo workers: one may have died, and its retry needs a
        worker (without heartbeats nothing could find it dead, so there is nothing to wait for;
        a trial some other program started carries no worker and is not waited for)."""
        if interval is None:
            return False
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        numbers = {t.number for t in running if keys.WORKER in t.user_attrs}
        if numbers and not numbers <= said and on_wait is not None:
            on_wait(_waiting_line(sorted(numbers)))
        said.update(numbers)
        return bool(numbers)

    while not _past_deadline(study):
        sweep_stale(study, liveness)
        if budget_used(study) >= n_trials or spend_reached(study, spend):
            if not others_running():
                break
            time.sleep(poll)  # the budget counts running trials: wait until they end or die
            continue
        if ahead is not None:
            ensure_budget(study, n_trials, ahead)
        trial_id = None
        try:
            stop_if_signalled()
            with signals_deferred():
                trial_id = _claim(study)
            if trial_id is None:
                if not others_running():
                    break
                time.sleep(poll)  # wait for others to finish, or to be found dead
                continue
            run_trial(study, trial_id, objective)
        except (KeyboardInterrupt, WorkerStopped) as exc:
            if trial_id is not None:
                _interrupted(study, trial_id, exc)
            raise
        ran += 1
        if on_finished is not None:
            on_finished(study, storage_of(study).get_trial(trial_id))
    return ran


def _waiting_line(numbers: list[int]) -> str:
    """What a worker with nothing to claim waits for: other workers' running trials, any of
    which may belong to a dead worker (killed, its machine gone) and then ends only when its
    heartbeat is a grace period old."""
    from hpo.execution.storage import _heartbeat_settings

    _, grace = _heartbeat_settings()
    which = ", ".join(f"#{n}" for n in numbers)
    many = len(numbers) > 1
    return (
        f"waiting for {'trials' if many else 'trial'} {which}, running on "
        f"{'other workers' if many else 'another worker'}; a trial whose worker died is failed "
        f"and run again once it has sent no heartbeat for {grace} s"
    )


def spend_reached(study: optuna.Study, spend: Mapping[str, float] | None) -> bool:
    """Whether the study's trials have spent its ``study.budget``."""
    if not spend:
        return False
    from hpo.search.budget import spent

    ((unit, amount),) = spend.items()
    return spent(study.get_trials(deepcopy=False), unit) >= amount
