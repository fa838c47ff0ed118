"""Storage calls that ride out a database restart: retried with exponential backoff, and only
where a retry cannot write anything twice.

A worker talks to the database for minutes or days; a PostgreSQL or MariaDB restart in between
turns each storage call into Optuna's ``StorageInternalError`` (a SQLAlchemy
``OperationalError`` underneath), and without help the worker dies with its trial. The
``ResilientStorage`` wrapper sits between the study and Optuna's cached ``RDBStorage`` and
sorts each failure into one of two kinds:

- *unreached*: the connection could not be made (refused, the server starting up or shutting
  down), so nothing was sent. Every call may be tried again.
- *lost*: the connection dropped during the call, which may or may not have been applied.
  Reads and writes that store the same thing when repeated (attributes, intermediate values,
  parameters, heartbeats) are tried again; ``create_new_trial`` is not (a second one would be
  a second trial); ``set_trial_state_values`` is, and a repeat that finds the trial already
  finished in the very state it was asked for counts as done (Optuna refuses to finish a trial
  twice, so nothing is written twice). A claim (WAITING -> RUNNING) whose answer was lost and
  whose repeat finds the trial taken may have been this worker's own: it gets one heartbeat,
  so that if nobody runs it, the heartbeat sweep fails and re-queues it.

Waits double from ``FIRST_DELAY`` up to ``LONGEST_DELAY`` (with jitter, so workers do not
return in lockstep), for at most ``$HPO_STORAGE_RETRY_SECONDS`` (60 by default; 0 turns the
wrapper off) counted from the start of the outage, not per call. Past that, calls raise
``StorageUnavailable``: the worker records what it can and exits with one line. Keep the limit
below the heartbeat grace period less one interval, or live trials of a worker that waited
look dead to the others.
"""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

from optuna.storages import BaseStorage

# The heartbeat interface is private in Optuna, and the very class ``fail_stale_trials`` and
# hpo's ``heartbeat_of`` check for: the wrapper must be one to keep heartbeats on.
from optuna.storages._heartbeat import BaseHeartbeat

from hpo.errors import StorageError, StorageUnavailable, first_line

if TYPE_CHECKING:
    import optuna
    from optuna.distributions import BaseDistribution
    from optuna.storages import RDBStorage
    from optuna.study import StudyDirection
    from optuna.study._frozen import FrozenStudy
    from optuna.trial import FrozenTrial, TrialState

ENV_VAR = "HPO_STORAGE_RETRY_SECONDS"
DEFAULT_SECONDS = 60.0
FIRST_DELAY = 0.25  # seconds before the first retry
LONGEST_DELAY = 8.0  # the doubling stops here

T = TypeVar("T")
Failure = Literal["unreached", "lost"]

# Driver messages that mean the connection was never made (psycopg, pymysql, mysqlclient).
_UNREACHED = (
    "connection refused", "could not connect", "can't connect", "connection failed",
    "is starting up", "is shutting down", "not yet accepting connections",
    "no such file or directory", "name or service not known", "timeout expired",
)  # fmt: skip


@dataclass(frozen=True)
class Backoff:
    """How long to keep trying: ``total`` seconds of outage, waits from ``first`` doubling up
    to ``longest``."""

    total: float = DEFAULT_SECONDS
    first: float = FIRST_DELAY
    longest: float = LONGEST_DELAY

    def __post_init__(self) -> None:
        if not self.total >= 0:
            raise StorageError(f"`total` must be at least 0 seconds, got {self.total}")
        if not 0 < self.first <= self.longest:
            raise StorageError(
                f"`first` must be above 0 and at most `longest` ({self.longest}), got {self.first}"
            )

    def delay(self, attempt: int, rng: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number ``attempt`` (0 first): the doubled delay, capped,
        less up to half of it at random."""
        full = min(self.longest, self.first * 2.0 ** min(attempt, 60))
        return full * (1.0 - 0.5 * rng())


def backoff_from_env() -> Backoff:
    """The backoff ``$HPO_STORAGE_RETRY_SECONDS`` asks for (60 s when unset)."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw:
        return Backoff()
    try:
        seconds = float(raw)
    except ValueError:
        seconds = float("nan")
    if not seconds >= 0 or seconds == float("inf"):
        raise StorageError(f"{ENV_VAR} must be a number of seconds >= 0, got {raw!r}")
    return Backoff(total=seconds)


def failure_kind(exc: BaseException) -> Failure | None:
    """``unreached`` (no connection was made), ``lost`` (the connection broke during the call,
    or the server aborted it: deadlock, lock timeout) or None (not a connection problem: a
    bug or bad data, never retried). Reads the SQLAlchemy error behind Optuna's
    ``StorageInternalError``."""
    found = _connection_error(exc)
    if found is None:
        return None
    text = str(found).lower()
    return "unreached" if any(sign in text for sign in _UNREACHED) else "lost"


def _connection_error(exc: BaseException) -> BaseException | None:
    """The SQLAlchemy connection error in ``exc``'s chain of causes, if there is one."""
    from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

    seen: set[int] = set()
    cause: BaseException | None = exc
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        if isinstance(cause, (OperationalError, InterfaceError)) or (
            isinstance(cause, DBAPIError) and cause.connection_invalidated
        ):
            return cause
        cause = cause.__cause__ or (None if cause.__suppress_context__ else cause.__context__)
    return None


def _reason(exc: BaseException, url: str) -> str:
    """The driver's first line (Optuna's own message only says "during the commit"), without
    the URL's password."""
    from hpo.execution.storage import without_secret

    found = _connection_error(exc)
    driver = getattr(found, "orig", None) or found or exc
    return without_secret(first_line(driver), url)


def retried(storage: RDBStorage, url: str, backoff: Backoff | None = None) -> BaseStorage:
    """``storage`` behind Optuna's cache and, unless ``$HPO_STORAGE_RETRY_SECONDS`` is 0,
    behind the retrying wrapper; a study opened on the result uses it as it is."""
    backoff = backoff if backoff is not None else backoff_from_env()
    cached = _cached(storage)
    return cached if backoff.total == 0 else ResilientStorage(cached, url, backoff)


def _cached(storage: RDBStorage) -> BaseStorage:
    """Optuna's cache in front of an ``RDBStorage`` (``_CachedStorage``), which ``create_study``
    adds by itself only when given the bare ``RDBStorage``. ``get_storage`` is the one public
    name that builds it."""
    import optuna

    return optuna.storages.get_storage(storage)


class ResilientStorage(BaseStorage, BaseHeartbeat):
    """A storage that retries its inner storage's calls through database outages (see the
    module's docstring for which calls and how). Optuna sees a ``BaseStorage`` with
    heartbeats, as it saw the inner one. Import this module only where Optuna is loaded."""

    def __init__(self, inner: BaseStorage, url: str, backoff: Backoff | None = None) -> None:
        self.inner = inner
        self.url = url  # read by the SQLite claim lock, as on RDBStorage
        self.backoff = backoff or Backoff()
        self.retries = 0  # calls repeated since the storage was opened
        self._lock = threading.Lock()
        self._down_since: float | None = None

    # ------------------------------------------------------------ the retry loop

    def _call(self, fn: Callable[[], T], *, idempotent: bool = True) -> T:
        attempt = 0
        while True:
            try:
                result = fn()
            except Exception as exc:
                kind = failure_kind(exc)
                if kind is None or (kind == "lost" and not idempotent):
                    raise
                self._wait(exc, attempt)
                attempt += 1
                continue
            self._recovered()
            return result

    def _wait(self, exc: Exception, attempt: int) -> None:
        """Sleep before the next try; raise ``StorageUnavailable`` once the outage has lasted
        the whole budget."""
        from hpo.execution.storage import masked_url

        now = time.monotonic()
        with self._lock:
            if self._down_since is None:
                self._down_since = now
                _say(
                    f"warning: storage {masked_url(self.url)} failed ({_reason(exc, self.url)}); "
                    f"retrying for up to "
                    f"{self.backoff.total:g} s"
                )
            left = self._down_since + self.backoff.total - now
            self.retries += 1
        if left <= 0:
            raise StorageUnavailable(
                f"storage {masked_url(self.url)} unreachable for {self.backoff.total:g} s "
                f"({ENV_VAR}): {_reason(exc, self.url)}"
            ) from exc
        time.sleep(min(self.backoff.delay(attempt), left))

    def _recovered(self) -> None:
        if self._down_since is None:  # the common case: no lock taken
            return
        from hpo.execution.storage import masked_url

        with self._lock:
            if self._down_since is None:
                return
            down = time.monotonic() - self._down_since
            self._down_since = None
        _say(f"storage {masked_url(self.url)} answers again after {down:.1f} s")

    # ------------------------------------------------------------ calls with their own rules

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        # Not idempotent: repeated only when the first try never reached the server.
        return self._call(
            lambda: self.inner.create_new_trial(study_id, template_trial), idempotent=False
        )

    def set_trial_state_values(
        self, trial_id: int, state: TrialState, values: Sequence[float] | None = None
    ) -> bool:
        from optuna.exceptions import UpdateFinishedTrialError
        from optuna.trial import TrialState

        tries = 0

        def once() -> bool:
            nonlocal tries
            tries += 1
            try:
                done = self.inner.set_trial_state_values(trial_id, state=state, values=values)
            except UpdateFinishedTrialError:
                # A repeat: the try whose answer was lost finished the trial as asked.
                if tries > 1 and state.is_finished():
                    stored = self.inner.get_trial(trial_id)
                    if stored.state == state and (values is None or stored.values == list(values)):
                        return True
                raise
            if not done and tries > 1 and state == TrialState.RUNNING:
                self._beat_once(trial_id)
            return done

        return self._call(once)

    def _beat_once(self, trial_id: int) -> None:
        """A claim whose answer was lost, then found taken, may have been ours: one heartbeat
        lets the sweep fail and re-queue it if no worker runs it (a live owner beats anyway)."""
        if self.get_heartbeat_interval() is not None:
            self.record_heartbeat(trial_id)

    # ------------------------------------------------------------ calls retried as they are

    def create_new_study(
        self, directions: Sequence[StudyDirection], study_name: str | None = None
    ) -> int:
        # A repeat of a create that went through fails on the unique name: no second study.
        return self._call(lambda: self.inner.create_new_study(directions, study_name))

    def delete_study(self, study_id: int) -> None:
        self._call(lambda: self.inner.delete_study(study_id))

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._call(lambda: self.inner.set_study_user_attr(study_id, key, value))

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._call(lambda: self.inner.set_study_system_attr(study_id, key, value))

    def get_study_id_from_name(self, study_name: str) -> int:
        return self._call(lambda: self.inner.get_study_id_from_name(study_name))

    def get_study_name_from_id(self, study_id: int) -> str:
        return self._call(lambda: self.inner.get_study_name_from_id(study_id))

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return self._call(lambda: self.inner.get_study_directions(study_id))

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return self._call(lambda: self.inner.get_study_user_attrs(study_id))

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return self._call(lambda: self.inner.get_study_system_attrs(study_id))

    def get_all_studies(self) -> list[FrozenStudy]:
        return self._call(self.inner.get_all_studies)

    def set_trial_param(
        self,
        trial_id: int,
        param_name: str,
        param_value_internal: float,
        distribution: BaseDistribution,
    ) -> None:
        # A repeat of an insert that went through hits the unique key, which Optuna ignores.
        self._call(
            lambda: self.inner.set_trial_param(
                trial_id, param_name, param_value_internal, distribution
            )
        )

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return self._call(
            lambda: self.inner.get_trial_id_from_study_id_trial_number(study_id, trial_number)
        )

    def set_trial_intermediate_value(
        self, trial_id: int, step: int, intermediate_value: float
    ) -> None:
        self._call(
            lambda: self.inner.set_trial_intermediate_value(trial_id, step, intermediate_value)
        )

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._call(lambda: self.inner.set_trial_user_attr(trial_id, key, value))

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._call(lambda: self.inner.set_trial_system_attr(trial_id, key, value))

    def get_trial(self, trial_id: int) -> FrozenTrial:
        return self._call(lambda: self.inner.get_trial(trial_id))

    def get_all_trials(
        self,
        study_id: int,
        deepcopy: bool = True,
        states: Container[TrialState] | None = None,
    ) -> list[FrozenTrial]:
        return self._call(lambda: self.inner.get_all_trials(study_id, deepcopy, states))

    def get_best_trial(self, study_id: int) -> FrozenTrial:
        return self._call(lambda: self.inner.get_best_trial(study_id))

    def remove_session(self) -> None:
        self.inner.remove_session()

    # ------------------------------------------------------------ heartbeats (BaseHeartbeat)

    def _heartbeat(self) -> BaseHeartbeat:
        return cast("BaseHeartbeat", self.inner)

    def record_heartbeat(self, trial_id: int) -> None:
        self._call(lambda: self._heartbeat().record_heartbeat(trial_id))

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        return self._call(lambda: self._heartbeat()._get_stale_trial_ids(study_id))

    def get_heartbeat_interval(self) -> int | None:
        return self._heartbeat().get_heartbeat_interval()

    def get_heartbeat_stale_trial_callback(
        self,
    ) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return self._heartbeat().get_heartbeat_stale_trial_callback()


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
