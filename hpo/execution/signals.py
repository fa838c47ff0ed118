"""Signals in a worker: SIGTERM (a scheduler preempting it) stops the worker as Ctrl-C does,
after its current trial is recorded; a claim holds both back until it knows its trial."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class WorkerStopped(BaseException):
    """SIGTERM reached the worker: its current trial is recorded as failed, then it exits."""


_SIGNALLED: list[int] = []  # SIGTERMs that reached ``sigterm_stops_worker``'s handler


def stop_if_signalled() -> None:
    """Raise ``WorkerStopped`` if SIGTERM arrived and its exception was lost: a handler's
    exception raised while the interpreter runs a finalizer (``__del__``) is printed and
    dropped, and the worker went on to finish the study. Called at every training step and
    before each claim."""
    if _SIGNALLED:
        raise WorkerStopped(f"signal {_SIGNALLED[0]}")


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the block, then deliver what arrived to the handlers
    that were in place. A claim writes RUNNING before the worker knows which trial it took: a
    signal in between would leave that trial RUNNING until another worker's sweep."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    arrived: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, frame: arrived.append(signum)) for s in held}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    for signum in arrived[:1]:
        signal.raise_signal(signum)


@contextmanager
def sigterm_stops_worker() -> Iterator[None]:
    """Turn SIGTERM into ``WorkerStopped`` in the main thread for the duration of the block."""

    def handler(signum: int, frame: Any) -> None:
        _SIGNALLED.append(signum)  # kept, should the exception below be swallowed
        raise WorkerStopped(f"signal {signum}")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _SIGNALLED.clear()
    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _SIGNALLED.clear()
