"""Glue between Optuna and the loop: sample, train, report and prune, record what happened.

An ``Objective`` lives as long as its worker process: the data are loaded and tokenized and the
pretrained weights read once, on the first trial (or on ``prepare()``), and reused by every
trial after it.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from hpo.errors import HpoError, OutOfMemory, SpecError, TrialFailure, first_line
from hpo.space import Hyperparameters, sample
from hpo.spec import StudySpec
from hpo.train import (
    Device,
    TrainPlan,
    TrainResult,
    constant_score,
    pick_device,
    steps_for,
    train,
)

if TYPE_CHECKING:
    import optuna
    import torch

    from hpo.data import Encoded, Split, TaskData
    from hpo.model import PretrainedModel


class Listener(Protocol):
    """What the live view is told while trials run (``report.LiveView`` is one)."""

    def trial_started(self, number: int, params: Mapping[str, Any], total_steps: int) -> None: ...
    def step(self, step: int) -> None: ...
    def evaluated(self, step: int, value: float) -> None: ...


@dataclass
class Prepared:
    """What every trial of a process shares: data, tokenized splits, tokenizer, pretrained weights."""

    task: TaskData
    tokenizer: Any
    train: Encoded
    validation: Encoded
    pretrained: PretrainedModel
    vocabulary: tuple[str, ...]
    device: Device
    setup_seconds: float


class Objective:
    """The callable Optuna runs once per trial."""

    def __init__(self, spec: StudySpec, listener: Listener | None = None) -> None:
        self.spec = spec
        self.listener = listener
        self._prepared: Prepared | None = None
        self.trials_run = 0  # in this process: the first one carries the setup cost
        self._constant_score: float | None = None

    def prepare(self, pretrained: PretrainedModel | None = None) -> Prepared:
        """Load data, tokenizer and model once, and check the study against them."""
        if self._prepared is not None:
            return self._prepared
        from hpo.augment import build_vocabulary
        from hpo.data import encode, load_task
        from hpo.model import PretrainedModel, load_tokenizer

        start = time.perf_counter()
        spec = self.spec
        task = load_task(spec.data)
        tokenizer = load_tokenizer(spec.model)
        if pretrained is None:
            pretrained = PretrainedModel(spec.model, task.num_labels)
        check_fits(spec, task, pretrained.num_layers)
        self._prepared = Prepared(
            task=task,
            tokenizer=tokenizer,
            train=encode(task.train, tokenizer, spec.train.max_length),
            validation=encode(task.validation, tokenizer, spec.train.max_length),
            pretrained=pretrained,
            vocabulary=build_vocabulary(task.train.text),
            device=pick_device(spec.train.device, spec.train.precision),
            setup_seconds=0.0,
        )
        self._prepared.setup_seconds = time.perf_counter() - start
        return self._prepared

    def plan(self, hp: Hyperparameters, n_train: int) -> TrainPlan:
        """The loop's settings for one sampled configuration."""
        t = self.spec.train
        max_steps = t.max_steps or steps_for(
            n_train, hp.batch_size, t.gradient_accumulation, t.epochs or 1.0
        )
        return TrainPlan(
            max_steps=max_steps,
            eval_every=t.eval_every,
            batch_size=hp.batch_size,
            learning_rate=hp.learning_rate,
            warmup_ratio=hp.warmup_ratio,
            lr_schedule=hp.lr_schedule,
            weight_decay=hp.weight_decay,
            seed=hp.seed,
            metric=self.spec.study.metric,
            maximize=self.spec.direction == "maximize",
            keep=self.spec.study.objective,
            gradient_accumulation=t.gradient_accumulation,
            max_grad_norm=t.max_grad_norm,
            eval_batch_size=t.eval_batch_size,
            group_by_length=t.group_by_length,
        )

    @property
    def constant_score(self) -> float | None:
        """The study metric of the best constant answer on the validation split (None for a
        loss): trials that have not beaten it have not yet learned anything measurable."""
        if not self.spec.study.proportion:
            return None
        if self._constant_score is None:
            prep = self.prepare()
            labels, metric = prep.validation.label, self.spec.study.metric
            self._constant_score = constant_score(labels, prep.task.num_labels, metric)
        return self._constant_score

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        from hpo.pruners import CONSTANT_SCORE_ATTR, EVAL_ROWS_ATTR

        started = time.perf_counter()
        prep = self.prepare()
        hp = sample(self.spec.space, trial)
        plan = self.plan(hp, len(prep.train))
        trial.set_user_attr("device", prep.device.description)
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr("max_steps", plan.max_steps)
        trial.set_user_attr(EVAL_ROWS_ATTR, len(prep.validation))  # the pruner's noise margin
        if self.constant_score is not None:  # the pruners' "learned nothing yet" level
            trial.set_user_attr(CONSTANT_SCORE_ATTR, self.constant_score)
        if self.trials_run == 0:
            trial.set_user_attr("setup_seconds", round(prep.setup_seconds, 3))
        self.trials_run += 1
        if self.listener is not None:
            self.listener.trial_started(trial.number, trial.params, plan.max_steps)

        def on_eval(step: int, metrics: dict[str, float]) -> bool:
            value = metrics[plan.metric]
            trial.report(value, step)
            if self.listener is not None:
                self.listener.evaluated(step, value)
            return trial.should_prune()

        try:
            try:
                result = self._train(trial, prep, hp, plan, on_eval)
            except OutOfMemory as first:
                # Same effective batch in half-size pieces; if that fails too, the trial is
                # kept as infeasible so the sampler learns to avoid the region.
                plan = dataclasses.replace(
                    plan,
                    batch_size=max(1, plan.batch_size // 2),
                    gradient_accumulation=plan.gradient_accumulation * 2,
                )
                trial.set_user_attr(
                    "oom_retry",
                    {
                        "first_error": str(first),
                        "batch_size": plan.batch_size,
                        "gradient_accumulation": plan.gradient_accumulation,
                    },
                )
                try:
                    result = self._train(trial, prep, hp, plan, on_eval)
                except OutOfMemory as second:
                    trial.set_user_attr("fail_reason", f"{second} (also with half the batch)")
                    trial.set_constraint("fits_in_memory", 1.0)
                    return 0.0 if plan.maximize else 1e9
        except (TrialFailure, HpoError) as exc:
            trial.set_user_attr("fail_reason", str(exc))
            raise TrialFailure(str(exc)) from exc
        except (RuntimeError, ValueError, IndexError, MemoryError) as exc:
            reason = f"{type(exc).__name__}: {first_line(exc)}"
            trial.set_user_attr("fail_reason", reason)
            raise TrialFailure(reason) from exc
        _record(trial, result, time.perf_counter() - started)
        if result.stopped_early:
            raise optuna.TrialPruned(f"pruned at step {result.steps}")
        if plan.metric not in result.metrics:
            raise TrialFailure(f"no evaluation reached; metric {plan.metric!r} is missing")
        return result.metrics[plan.metric]

    def _train(
        self,
        trial: optuna.Trial,
        prep: Prepared,
        hp: Hyperparameters,
        plan: TrainPlan,
        on_eval: Callable[[int, dict[str, float]], bool],
    ) -> TrainResult:
        """One training run of the trial on a fresh copy of the pretrained model."""
        from hpo.model import freeze_lower_layers

        model = prep.pretrained.fresh(hp.seed)
        try:
            trial.set_user_attr(
                "trainable_parameters", freeze_lower_layers(model, hp.frozen_layers)
            )
            return train(
                model,
                prep.train,
                prep.validation,
                plan,
                prep.device,
                pad_id=prep.tokenizer.pad_token_id or 0,
                make_batch=self.batch_maker(prep, hp),
                on_eval=on_eval,
                on_step=self.listener.step if self.listener is not None else None,
            )
        finally:
            del model
            _release_memory(prep.device)

    def batch_maker(self, prep: Prepared, hp: Hyperparameters, split: Split | None = None) -> Any:
        """None (use cached tokens) at strength 0; else a function that perturbs and re-tokenizes.

        ``split`` holds the raw text of the rows being trained on (default: the train split).
        """
        if hp.augmentation_strength == 0:
            return None
        import torch

        from hpo.augment import Augmenter

        augment = Augmenter(hp.augmentation_strength, prep.vocabulary, hp.seed)
        split = split or prep.task.train
        max_length = self.spec.train.max_length

        def make_batch(indices: list[int]) -> dict[str, torch.Tensor]:
            texts = augment.batch([split.text[i] for i in indices])
            pairs = (
                augment.batch([split.text_pair[i] for i in indices]) if split.text_pair else None
            )
            batch = prep.tokenizer(
                texts,
                pairs,
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            out = {k: v for k, v in batch.items()}
            out["labels"] = torch.tensor([split.label[i] for i in indices], dtype=torch.long)
            return out

        return make_batch


def _record(trial: optuna.Trial, result: TrainResult, wall: float) -> None:
    trial.set_user_attr("steps", result.steps)
    trial.set_user_attr("train_samples", result.train_samples)
    trial.set_user_attr("samples_per_second", round(result.samples_per_second, 2))
    trial.set_user_attr("train_seconds", round(result.train_seconds, 3))
    trial.set_user_attr("eval_seconds", round(result.eval_seconds, 3))
    trial.set_user_attr("wall_seconds", round(wall, 3))
    trial.set_user_attr("peak_memory_mb", round(result.peak_memory_mb, 1))
    trial.set_user_attr("metrics", {k: round(v, 6) for k, v in result.metrics.items()})


def _release_memory(device: Device) -> None:
    """Free the trial's model and optimizer before the next trial (GPU memory does not leak)."""
    gc.collect()
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()


def check_fits(spec: StudySpec, task: TaskData, num_layers: int) -> None:
    """Refuse, before any trial starts, a study that cannot fit its data or model."""
    if spec.study.metric == "f1" and task.num_labels != 2:
        raise SpecError(
            f"`study.metric` 'f1' needs two classes but the data has {task.num_labels}; "
            "use 'macro_f1'"
        )
    top = spec.space["frozen_layers"].upper_bound()
    if top > num_layers:
        raise SpecError(
            f"`space.frozen_layers` goes up to {top} but the model has {num_layers} layers; lower it"
        )


def preflight(spec: StudySpec) -> TaskData:
    """Load the data and the model's configuration (not its weights) and check the study."""
    from hpo.data import load_task
    from hpo.model import load_config

    task = load_task(spec.data)
    config = load_config(spec.model)
    check_fits(spec, task, int(getattr(config, "num_hidden_layers", 0) or 0))
    return task
