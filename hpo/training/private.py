"""DP-SGD steps for the loop, through opacus: Poisson-sampled batches, per-sample gradients
clipped to a norm, Gaussian noise, and the accountant's epsilon.

Each step samples every training row independently with probability q = batch x accumulation /
rows (opacus' ``UniformWithReplacementSampler``, the sampling its accountants assume), splits
that logical batch into ``gradient_accumulation`` micro-batches whose clipped per-sample
gradients are summed (as opacus' ``BatchMemoryManager`` does), then adds noise once and steps.
The accountant is told of every step with q, so the epsilon it gives is that of the steps taken.
Training runs in fp32: per-sample norms computed in half precision could exceed the clipping
norm, and a loss scaled for fp16 would be clipped at the wrong scale.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from hpo.tasks.base import Task
    from hpo.training.loop import Device, TrainPlan

Batch = dict[str, "torch.Tensor"]
PRV_LIMIT = 100.0  # above this RDP epsilon, the RDP bound is given (see PrivateSteps.epsilon)


@dataclass(frozen=True)
class PrivacyPlan:
    """What DP-SGD needs beyond the loop's plan."""

    noise_multiplier: float  # the noise's standard deviation, in units of max_grad_norm
    max_grad_norm: float  # every row's gradient is clipped to this norm
    delta: float  # the delta the epsilon is stated at
    accountant: str = "prv"  # opacus' accountant: "prv" or "rdp"


class PrivateSteps:
    """Wraps a model and its optimizer for DP-SGD; ``step`` replaces the loop's step."""

    def __init__(
        self, model: Any, optimizer: Any, plan: TrainPlan, rows: int, device: Device
    ) -> None:
        import torch
        from opacus import GradSampleModule
        from opacus.accountants import create_accountant
        from opacus.optimizers import DPOptimizer
        from opacus.utils.uniform_sampler import UniformWithReplacementSampler

        assert plan.privacy is not None
        self.plan = plan
        self.privacy = plan.privacy
        self.device = device
        self.logical = plan.batch_size * plan.gradient_accumulation  # the expected batch
        self.sample_rate = min(1.0, self.logical / max(1, rows))
        # per-sample gradients by hooks on the model's layers; strict: refuse what it cannot do
        self.module = GradSampleModule(model, batch_first=True, loss_reduction="mean", strict=True)
        self.optimizer = DPOptimizer(
            optimizer,
            noise_multiplier=self.privacy.noise_multiplier,
            max_grad_norm=self.privacy.max_grad_norm,
            expected_batch_size=self.logical,
            loss_reduction="mean",
            generator=torch.Generator(device=device.torch).manual_seed(plan.seed + 1),
        )
        self.accountant = create_accountant(self.privacy.accountant)
        self.optimizer.attach_step_hook(
            self.accountant.get_optimizer_hook_fn(sample_rate=self.sample_rate)
        )
        sampler = UniformWithReplacementSampler(
            num_samples=rows,
            sample_rate=self.sample_rate,
            generator=torch.Generator().manual_seed(plan.seed),
            steps=plan.max_steps,
        )
        self.batches: Iterator[list[int]] = iter(sampler)

    def step(
        self, make_batch: Callable[[list[int]], Batch], lengths: list[int], task: Task
    ) -> tuple[float, int]:
        """One DP-SGD step over a Poisson-sampled batch; returns its mean loss and its rows."""
        rows = sorted(next(self.batches), key=lambda i: lengths[i])  # less padding per piece
        pieces = _split(rows, self.plan.gradient_accumulation)
        if not pieces:  # an empty Poisson batch is still a step: noise alone, and accounted
            self._empty_step()
            return 0.0, 0
        total = 0.0
        for i, piece in enumerate(pieces):
            batch = make_batch(piece)
            if self.device.type != "cpu":
                batch = {k: v.to(self.device.torch) for k, v in batch.items()}
            logits = self.module(**{k: v for k, v in batch.items() if k != "labels"}).logits
            loss = task.loss(logits, batch["labels"], **self.plan.loss_options)
            with warnings.catch_warnings():
                # frozen embeddings: the first block's input needs no gradient, so torch warns
                # that opacus' backward hooks see only output gradients, which is all they use
                warnings.filterwarnings("ignore", "Full backward hook is firing", UserWarning)
                loss.backward()
            total += loss.item() * len(piece)
            if i < len(pieces) - 1:  # clip and sum this piece; noise and step after the last
                self.optimizer.signal_skip_step(do_skip=True)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        return total / len(rows), len(rows)

    def _empty_step(self) -> None:
        import torch

        for p in self.optimizer.params:
            p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def epsilon(self) -> float:
        """The privacy spent so far: the accountant's epsilon at the plan's delta.

        The PRV accountant's grid grows without bound as the noise falls (at noise 0.1 it took
        1.5 GB, at 0.01 it exhausted memory), so where the RDP bound is above ``PRV_LIMIT``,
        already no meaningful privacy, that bound is given instead: both bound the same epsilon
        from above.
        """
        from opacus.accountants import RDPAccountant

        if not self.accountant.history:
            return 0.0
        rdp = RDPAccountant()
        rdp.history = list(self.accountant.history)
        with warnings.catch_warnings():  # "optimal order is the smallest alpha": a huge epsilon
            warnings.simplefilter("ignore")
            bound = float(rdp.get_epsilon(delta=self.privacy.delta))
            if self.privacy.accountant == "rdp" or bound > PRV_LIMIT:
                return bound
            return float(self.accountant.get_epsilon(delta=self.privacy.delta))

    def close(self) -> float:
        """Remove opacus' hooks and attributes from the model; returns the epsilon spent."""
        spent = self.epsilon()
        self.module._close()
        return spent


def _split(rows: list[int], pieces: int) -> list[list[int]]:
    """``rows`` in at most ``pieces`` consecutive, non-empty, nearly equal parts."""
    n = min(pieces, len(rows))
    if n == 0:
        return []
    size, extra = divmod(len(rows), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(rows[start:end])
        start = end
    return out
