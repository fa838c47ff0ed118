"""Planning local worker slots: GPUs pinned one per worker, CPU cores divided, never oversubscribed."""

from __future__ import annotations

import pytest

from hpo.errors import SpecError
from hpo.execution import launch


def test_gpu_slots_pin_each_worker_to_one_gpu(monkeypatch) -> None:
    monkeypatch.setattr(launch, "cpu_count", lambda: 16)
    slots = launch.plan_slots(None, ["0", "1", "3"], per_gpu=2)
    assert [s.gpu for s in slots] == ["0", "0", "1", "1", "3", "3"]
    assert [s.index for s in slots] == list(range(6))
    assert {s.threads for s in slots} == {2}  # 16 cores over 6 workers, rounded down


def test_cpu_workers_share_the_cores(monkeypatch) -> None:
    monkeypatch.setattr(launch, "cpu_count", lambda: 8)
    assert [s.threads for s in launch.plan_slots(3, [])] == [2, 2, 2]
    assert [s.gpu for s in launch.plan_slots(2, [])] == [None, None]
    with pytest.raises(SpecError, match="--workers 9 is more than the 8 CPU cores"):
        launch.plan_slots(9, [])


@pytest.mark.parametrize(("value", "ids"), [(None, []), ("0", ["0"]), ("0, 2,3", ["0", "2", "3"])])
def test_gpu_ids_are_parsed(value, ids) -> None:
    assert launch.parse_gpus(value) == ids


@pytest.mark.parametrize("value", ["a,b", "0;1", ","])
def test_bad_gpu_ids_are_one_line_errors(value) -> None:
    with pytest.raises(SpecError, match="--gpus must be 'all' or GPU ids"):
        launch.parse_gpus(value)


def test_gpus_all_without_a_gpu_says_so() -> None:
    import torch

    if torch.cuda.is_available():
        assert launch.parse_gpus("all") == [str(i) for i in range(torch.cuda.device_count())]
    else:
        with pytest.raises(SpecError, match="sees no CUDA GPU"):
            launch.parse_gpus("all")
