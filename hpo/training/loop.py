"""The fine-tuning loop: AdamW on the task's loss, warmup and decay, evaluation every k steps.

It knows nothing of Optuna: the caller passes ``on_eval(step, metrics)``, which returns True to
stop early (that is how pruning reaches the loop). Failures a trial cannot recover from (NaN loss,
out of memory) are raised as ``TrialFailure`` with a reason a user can act on.
"""

from __future__ import annotations

import math
import signal
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hpo.data.batches import Encoded, eval_batches, train_batches
from hpo.errors import OutOfMemory, TrialFailure
from hpo.models.pretrained import parameter_groups
from hpo.training.device import Device, autocast, peak_memory_mb, to_device
from hpo.training.device import pick_device as pick_device  # where callers have long found it

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

    from hpo.tasks.base import Task
    from hpo.training.frozen import FrozenCache
    from hpo.training.private import PrivacyPlan

Batch = dict[str, "torch.Tensor"]
OnEval = Callable[[int, dict[str, float]], bool]


@dataclass(frozen=True)
class TrainPlan:
    """Everything the loop needs, already resolved from the study file and the trial's sample."""

    max_steps: int
    eval_every: int
    batch_size: int
    learning_rate: float
    warmup_ratio: float
    lr_schedule: str
    weight_decay: float
    seed: int
    metric: str = "accuracy"
    maximize: bool = True
    keep: str = "last"  # "last" or "best" evaluation becomes the result
    gradient_accumulation: int = 1
    max_grad_norm: float = 1.0
    eval_batch_size: int = 128
    group_by_length: bool = True
    timeout: float | None = None  # seconds a run may take, checked after each step and evaluation
    loss_options: Mapping[str, Any] = field(default_factory=dict)  # e.g. label_smoothing
    # strategies' hooks (model, AdamW groups) -> groups, e.g. layer-wise learning rates
    group_hooks: tuple[Callable[[Any, list[dict[str, Any]]], list[dict[str, Any]]], ...] = ()
    privacy: PrivacyPlan | None = None  # DP-SGD (hpo/training/private.py); None: plain training
    frozen_layers: int = 0  # blocks the model was given frozen; their states are cached
    frozen_cache_mb: int = 1024  # memory for those states (hpo/training/frozen.py); 0: off
    compile: bool = False  # torch.compile the model, dynamic shapes

    @property
    def warmup_steps(self) -> int:
        return round(self.warmup_ratio * self.max_steps)


def steps_for(n_train: int, batch_size: int, accumulation: int, epochs: float) -> int:
    """Optimizer steps for ``epochs`` passes over ``n_train`` rows."""
    return max(1, math.ceil(n_train * epochs / (batch_size * accumulation)))


def rows_seen(n_train: int, batch_size: int, accumulation: int, steps: int) -> int:
    """Training rows ``steps`` optimizer steps read: every epoch's last batch is short when
    the rows do not divide into batches (exact where the steps end on an epoch's end)."""
    batches = max(1, math.ceil(n_train / batch_size))  # per epoch
    epochs, rest = divmod(steps * accumulation, batches)
    return epochs * n_train + min(rest * batch_size, n_train)


@dataclass
class TrainResult:
    """What a trial did: its last (or best) metrics and how fast and far it got."""

    metrics: dict[str, float]
    steps: int
    train_samples: int
    train_seconds: float
    eval_seconds: float
    peak_memory_mb: float
    stopped_early: bool
    history: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    epsilon: float | None = None  # privacy spent, for a differentially private run
    frozen_computed_rows: int | None = None  # rows run through the frozen blocks (with a cache)
    frozen_served_rows: int = 0  # rows whose frozen states the cache served

    @property
    def samples_per_second(self) -> float:
        return self.train_samples / self.train_seconds if self.train_seconds > 0 else 0.0


def _default_task(task: Task | None) -> Task:
    if task is not None:
        return task
    from hpo.tasks import TASKS

    return TASKS["sequence_classification"]


def evaluate(
    model: PreTrainedModel,
    data: Encoded,
    device: Device,
    batch_size: int,
    pad_id: int,
    task: Task | None = None,
    frozen: FrozenCache | None = None,
) -> dict[str, float]:
    """The task's metrics and mean loss on a split: no-grad, large batches sorted by length
    (the frozen blocks' states read from ``frozen`` where the trial has a cache)."""
    import torch

    task = _default_task(task)
    was_training = model.training
    model.eval()
    preds: list[Any] = []
    labels: list[Any] = []
    loss_sum = 0.0
    units = 0
    lengths = [len(x) for x in data.input_ids]
    with torch.inference_mode(), autocast(device):
        for indices in eval_batches(lengths, batch_size):
            batch = to_device(task.collate(data, indices, pad_id), device)
            with _fed(frozen, batch):
                logits = model(**_inputs(batch)).logits.float()
            loss_sum += task.loss(logits, batch["labels"], reduction="sum").item()
            p, y = task.predictions(logits, batch["labels"], indices, data)
            preds += p
            labels += y
            units += _units(batch["labels"])
    model.train(was_training)
    metrics = task.score(preds, labels, int(model.config.num_labels or 0), data)
    metrics["eval_loss"] = loss_sum / max(1, units)
    return metrics


def _inputs(batch: Batch) -> Batch:
    return {k: v for k, v in batch.items() if k != "labels"}


def _units(labels: torch.Tensor) -> int:
    """Scored units of a batch: rows, or labelled tokens where labels have a token axis."""
    return int((labels != -100).sum().item()) if labels.ndim > 1 else int(labels.shape[0])


def make_optimizer(model: PreTrainedModel, plan: TrainPlan) -> tuple[Any, Any]:
    """AdamW over the trainable parameters and the sampled warmup-then-decay schedule."""
    import torch
    from transformers import get_scheduler

    groups = parameter_groups(model, plan.weight_decay)
    for hook in plan.group_hooks:
        groups = hook(model, groups)
    for group in groups:
        group["lr"] = plan.learning_rate * group.pop("lr_scale", 1.0)
    try:
        # One fused kernel over all tensors. torch's default on the CPU is a Python loop over
        # them, which took a quarter of a MiniLM training step there (BENCHMARKS.md).
        optimizer = torch.optim.AdamW(groups, lr=plan.learning_rate, fused=True)
    except RuntimeError:  # a device or dtype without the fused kernel
        optimizer = torch.optim.AdamW(groups, lr=plan.learning_rate)
    scheduler = get_scheduler(
        plan.lr_schedule,
        optimizer,
        num_warmup_steps=plan.warmup_steps,
        num_training_steps=plan.max_steps,
    )
    return optimizer, scheduler


def train(
    model: PreTrainedModel,
    train_data: Encoded,
    validation: Encoded,
    plan: TrainPlan,
    device: Device,
    *,
    pad_id: int,
    make_batch: Callable[[list[int]], Batch] | None = None,
    on_eval: OnEval | None = None,
    on_step: Callable[[int], None] | None = None,
    task: Task | None = None,
) -> TrainResult:
    """Fine-tune ``model`` for ``plan.max_steps`` optimizer steps, evaluating every k steps.

    ``make_batch`` turns row indices into a batch (the default pads the cached token ids; an
    augmenting caller re-tokenizes perturbed text). ``on_eval`` returning True stops the loop.
    """
    import torch

    task = _default_task(task)
    torch.manual_seed(plan.seed)
    model.to(device.torch)  # type: ignore[arg-type]
    _train_mode(model, plan.frozen_layers)
    if plan.compile:
        model.compile(dynamic=True)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device.torch)
    optimizer, scheduler = make_optimizer(model, plan)
    scaler = torch.amp.GradScaler("cuda") if device.autocast == "fp16" else None
    private = None
    if plan.privacy is not None:  # DP-SGD: Poisson batches, per-sample clipping, noise
        from hpo.training.private import PrivateSteps

        private = PrivateSteps(model, optimizer, plan, len(train_data), device)
    frozen = None
    if private is None and plan.frozen_layers > 0:  # opacus' hooks see the whole model
        from hpo.training.frozen import FrozenCache

        frozen = FrozenCache.attach(model, plan.frozen_layers, plan.frozen_cache_mb * 2**20)
    trainable = [p for group in optimizer.param_groups for p in group["params"]]  # for clipping
    # an augmenting ``make_batch`` makes one-off rows: keep only those it left unchanged
    keep = None
    if frozen is not None and make_batch is not None:
        from hpo.training.frozen import row_keys

        keep = row_keys(train_data)
    make_batch = make_batch or (lambda idx: task.collate(train_data, idx, pad_id))
    lengths = [len(x) for x in train_data.input_ids]
    batches = train_batches(lengths, plan.batch_size, plan.seed, plan.group_by_length)

    result = TrainResult({}, 0, 0, 0.0, 0.0, 0.0, stopped_early=False)
    best: dict[str, float] | None = None
    last: dict[str, float] | None = None
    start = time.perf_counter()
    hung = _HungStep(plan)  # a step that never returns to the loop is ended as well
    try:
        for step in range(1, plan.max_steps + 1):
            try:
                if private is not None:
                    loss, rows = private.step(make_batch, lengths, task)
                else:
                    loss, rows = _step(model, optimizer, trainable, scaler, batches, make_batch,
                                       plan, device, task, frozen, keep)  # fmt: skip
            except (torch.OutOfMemoryError, MemoryError):
                raise OutOfMemory(
                    f"out of memory at step {step} with batch size {plan.batch_size}; "
                    "lower batch_size or train.max_length"
                ) from None
            if not math.isfinite(loss):
                raise TrialFailure(
                    f"loss became {loss} at step {step}; the learning rate "
                    f"{plan.learning_rate:.2g} is probably too high"
                )
            scheduler.step()
            result.steps = step
            result.train_samples += rows  # the real rows: an epoch's last batch may be short
            if on_step is not None:
                on_step(step)
            _check_time(plan, start, step)
            if step % plan.eval_every == 0 or step == plan.max_steps:
                t0 = time.perf_counter()
                last = evaluate(
                    model, validation, device, plan.eval_batch_size, pad_id, task, frozen
                )
                _train_mode(model, plan.frozen_layers)
                result.eval_seconds += time.perf_counter() - t0
                result.history.append((step, last))
                _check_time(plan, start, step)
                if best is None or _better(last[plan.metric], best[plan.metric], plan):
                    best = last
                if on_eval is not None and on_eval(step, last):
                    result.stopped_early = True
                    break
    finally:
        hung.disarm()
    result.train_seconds = time.perf_counter() - start - result.eval_seconds
    if private is not None:
        result.epsilon = private.close()
    result.metrics = dict((best if plan.keep == "best" else last) or {})
    result.peak_memory_mb = peak_memory_mb(device)
    if frozen is not None:
        frozen.detach()
        result.frozen_computed_rows = frozen.computed_rows
        result.frozen_served_rows = frozen.served_rows
    return result


def _train_mode(model: PreTrainedModel, frozen_layers: int) -> None:
    """Training mode, but the frozen modules (embeddings and the lowest blocks, where no weight
    in them trains) run as in evaluation, without dropout: what they compute for a row is then
    the same at every step, which lets hpo/training/frozen.py cache it."""
    model.train()
    if frozen_layers <= 0:
        return
    from hpo.models.anatomy import below_blocks

    for module in below_blocks(model, frozen_layers):
        if not any(p.requires_grad for p in module.parameters()):
            module.eval()


class _HungStep:
    """``train.trial_timeout`` for a step that does not come back to the loop (user code that
    waits forever, a read that blocks): SIGALRM, set for the timeout plus a tenth (at least a
    second), raises the trial's failure in the main thread, where the signal's handler runs as
    soon as the step is back in Python or a blocking call is interrupted. A call that never
    returns to Python (a lock inside native code) is not ended; only the main thread can take
    signals, so elsewhere (a trial run from a thread) only the check between steps applies."""

    def __init__(self, plan: TrainPlan) -> None:
        self.previous: Any = None
        timeout = plan.timeout
        if timeout is None or threading.current_thread() is not threading.main_thread():
            return
        grace = max(1.0, timeout / 10)

        def on_alarm(signum: int, frame: Any) -> None:
            raise TrialFailure(
                f"ran past train.trial_timeout ({timeout:g} s): a step did not return within "
                f"{grace:g} s more"
            )

        self.previous = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, timeout + grace)

    def disarm(self) -> None:
        if self.previous is not None:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self.previous)
            self.previous = None


def _check_time(plan: TrainPlan, start: float, step: int) -> None:
    """End a run past ``plan.timeout`` as a failed trial that says why (the worker goes on)."""
    if plan.timeout is not None and (spent := time.perf_counter() - start) > plan.timeout:
        raise TrialFailure(
            f"ran past train.trial_timeout ({plan.timeout:g} s): {spent:.1f} s at step {step} "
            f"of {plan.max_steps}"
        )


def _step(
    model: PreTrainedModel,
    optimizer: torch.optim.Optimizer,
    trainable: list[torch.nn.Parameter],
    scaler: Any,
    batches: Any,
    make_batch: Callable[[list[int]], Batch],
    plan: TrainPlan,
    device: Device,
    task: Task,
    frozen: FrozenCache | None = None,
    keep: Collection[bytes] | None = None,
) -> tuple[float, int]:
    """One optimizer step over ``gradient_accumulation`` micro-batches; returns the mean loss
    and the rows it trained on."""
    import torch

    total = 0.0
    rows = 0
    for _ in range(plan.gradient_accumulation):
        batch = to_device(make_batch(next(batches)), device)
        with autocast(device), _fed(frozen, batch, keep):
            logits = model(**_inputs(batch)).logits
        loss = task.loss(logits, batch["labels"], **plan.loss_options)
        loss = loss / plan.gradient_accumulation
        (scaler.scale(loss) if scaler is not None else loss).backward()
        total += loss.item()
        rows += int(batch["labels"].shape[0])
    if scaler is not None:
        scaler.unscale_(optimizer)
    if plan.max_grad_norm > 0:
        torch.nn.utils.clip_grad_norm_(trainable, plan.max_grad_norm)
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total, rows


def _better(value: float, incumbent: float, plan: TrainPlan) -> bool:
    return value > incumbent if plan.maximize else value < incumbent


def _fed(frozen: FrozenCache | None, batch: Batch, keep: Collection[bytes] | None = None) -> Any:
    """Feed the batch's cached frozen states to the forward pass, where there is a cache."""
    import contextlib

    return contextlib.nullcontext() if frozen is None else frozen.feeding(batch, keep)
