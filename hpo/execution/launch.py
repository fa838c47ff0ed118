"""Local worker processes: one per GPU slot (or CPU share), started and watched by ``hpo run``.

Each worker is ``python -m hpo worker STUDY --storage URL``: it needs nothing but the database.
GPUs are assigned through ``CUDA_VISIBLE_DEVICES``; without GPUs the CPU cores are divided
between the workers through ``--threads``, never oversubscribed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hpo.errors import SpecError


@dataclass(frozen=True)
class Slot:
    """Where one worker runs: a GPU (or none) and how many CPU threads it may use."""

    index: int
    gpu: str | None
    threads: int


def cpu_count() -> int:
    """Cores this process may use (respects affinity masks and container limits)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def parse_gpus(value: str | None) -> list[str]:
    """``--gpus`` as a list of device ids: "all", "0,1,3", or nothing."""
    if not value:
        return []
    if value == "all":
        import torch

        n = torch.cuda.device_count()
        if n == 0:
            raise SpecError("--gpus all: torch sees no CUDA GPU on this machine")
        return [str(i) for i in range(n)]
    ids = [part.strip() for part in value.split(",") if part.strip()]
    if not ids or not all(i.isdigit() for i in ids):
        raise SpecError(f"--gpus must be 'all' or GPU ids like 0,1,2, got {value!r}")
    return ids


def plan_slots(workers: int | None, gpus: Sequence[str], per_gpu: int = 1) -> list[Slot]:
    """Worker slots: ``per_gpu`` workers on each GPU, else ``workers`` sharing the CPU cores."""
    cores = cpu_count()
    if gpus:
        n = len(gpus) * per_gpu
        threads = max(1, cores // n)
        return [Slot(i, gpus[i // per_gpu], threads) for i in range(n)]
    n = workers or 1
    if n > cores:
        raise SpecError(
            f"--workers {n} is more than the {cores} CPU cores here; each worker needs a core"
        )
    return [Slot(i, None, cores // n) for i in range(n)]


# Set in the workers ``hpo run --workers`` starts: their launcher's report says what they
# would each say (the study's timeout passed), once.
LAUNCHED_ENV = "HPO_LAUNCHED_BY_RUN"


def spawn(study_name: str, storage: str, slots: Sequence[Slot]) -> list[subprocess.Popen[bytes]]:
    """Start one ``hpo worker`` process per slot."""
    procs = []
    for slot in slots:
        env = dict(os.environ)
        env["HPO_STORAGE"] = storage
        # A worker without a GPU must not see one; a worker with one sees only its own.
        env["CUDA_VISIBLE_DEVICES"] = slot.gpu if slot.gpu is not None else ""
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        env[LAUNCHED_ENV] = "1"
        cmd = [
            sys.executable, "-m", "hpo", "worker", study_name,
            "--worker-index", str(slot.index),
            "--threads", str(slot.threads),
            "--quiet",
        ]  # fmt: skip
        procs.append(subprocess.Popen(cmd, env=env))
    return procs


def wait_all(
    procs: Sequence[subprocess.Popen[bytes]],
    poll: Callable[[], None] | None = None,
    every: float = 2.0,
) -> list[int]:
    """Wait for every worker, calling ``poll`` between checks; returns their exit codes."""
    while any(p.poll() is None for p in procs):
        if poll is not None:
            poll()
        time.sleep(every)
    if poll is not None:
        poll()
    return [p.returncode for p in procs]


def stop_all(procs: Sequence[subprocess.Popen[bytes]], grace: float = 30.0) -> None:
    """SIGTERM every worker (each records its trial as failed), then SIGKILL stragglers."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
