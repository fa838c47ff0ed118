"""Where a trial runs: CUDA, MPS or the CPU, in which precision, and what that means for a
batch (moved to the device, run under autocast) and for the memory a trial reports."""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpo.errors import SpecError

if TYPE_CHECKING:
    import torch

Batch = dict[str, "torch.Tensor"]


@dataclass(frozen=True)
class Device:
    """Where a trial runs and in which precision."""

    type: str  # "cuda", "mps" or "cpu"
    index: int | None
    description: str  # stored with each trial, e.g. "cuda:0 (NVIDIA H200)"
    autocast: str | None  # "bf16", "fp16" or None

    @property
    def torch(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"


def check_device(requested: str, gpus: int | None = None, where: str = "on this machine") -> None:
    """Refuse, in one line, a ``train.device`` that torch cannot use: "cuda" or "cuda:N" with
    no such GPU, "mps" where there is no MPS device. ``gpus``: how many CUDA GPUs the process
    that trains sees (None: as many as torch sees here), ``where`` says which process that is."""
    import torch

    kind = requested.split(":")[0]
    if kind == "cuda":
        seen = torch.cuda.device_count() if gpus is None else gpus
        index = int(requested.split(":")[1]) if ":" in requested else 0
        if seen == 0:
            raise SpecError(
                f'`train.device` is "{requested}" but torch sees no CUDA GPU {where}; '
                'use "auto" or "cpu"'
            )
        if index >= seen:
            listed = "cuda:0" if seen == 1 else f"cuda:0 to cuda:{seen - 1}"
            raise SpecError(
                f'`train.device` is "{requested}" but torch sees {seen} CUDA GPU'
                f'{"s" if seen > 1 else ""} {where} ({listed}); use "cuda", "auto" or one of those'
            )
    elif kind == "mps":
        mps = getattr(torch.backends, "mps", None)
        if not (mps and mps.is_available()):
            raise SpecError(
                f'`train.device` is "mps" but torch has no MPS device (Apple silicon\'s GPU) '
                f'{where}; use "auto" or "cpu"'
            )


def pick_device(requested: str = "auto", precision: str = "auto") -> Device:
    """CUDA if there is one, then MPS, then the CPU; bf16 autocast where the GPU supports it.
    A device torch cannot use here is refused in one line (``check_device``): the CLI checks
    before it loads anything, this check covers a worker on another machine."""
    import torch

    check_device(requested)
    kind = requested.split(":")[0]
    if kind == "auto":
        if torch.cuda.is_available():
            kind = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            kind = "mps"
        else:
            kind = "cpu"
    if kind == "cuda":
        index = int(requested.split(":")[1]) if ":" in requested else 0
        name = f"cuda:{index} ({torch.cuda.get_device_name(index)})"
        auto = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        autocast = None if precision == "fp32" else (auto if precision == "auto" else precision)
        return Device("cuda", index, name, autocast)
    autocast = "bf16" if precision == "bf16" and kind == "cpu" else None
    name = kind
    if precision in ("bf16", "fp16") and autocast is None:  # said where the run line shows it
        name = f"{kind} (fp32: train.precision {precision} has no autocast on {kind})"
    return Device(kind, None, name, autocast)


def to_device(batch: Batch, device: Device) -> Batch:
    if device.type == "cpu":
        return batch
    return {k: v.to(device.torch, non_blocking=True) for k, v in batch.items()}


def autocast(device: Device) -> Any:
    import contextlib

    import torch

    if device.autocast is None:
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if device.autocast == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def peak_memory_mb(device: Device) -> float:
    """Peak GPU memory of this trial on CUDA; elsewhere the process's peak resident memory."""
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device.torch) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10
