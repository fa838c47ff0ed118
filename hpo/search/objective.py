"""Glue between Optuna and the loop: sample, train, report and prune, record what happened.

An ``Objective`` lives as long as its worker process: the data are loaded and tokenized and the
pretrained weights read once, on the first trial (or on ``prepare()``), and reused by every
trial after it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import socket
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from hpo import keys
from hpo.config.sampling import Hyperparameters, sample
from hpo.config.spec import StudySpec
from hpo.errors import HpoError, OutOfMemory, TrialFailure, first_line
from hpo.execution.signals import stop_if_signalled
from hpo.search.prepared import Prepared, load_prepared
from hpo.search.racing import race_seed
from hpo.search.records import (
    SoFar,
    full_trial_cost,
    infeasible,
    record,
    record_privacy,
    record_so_far,
    spent_flops,
)
from hpo.search.screening import kept, screen_role
from hpo.strategies import REGISTRY, ModelContext, Settings, Strategy
from hpo.strategies.privacy import private_plan
from hpo.tasks import get_task
from hpo.training.loop import Device, TrainPlan, TrainResult, steps_for, train

if TYPE_CHECKING:
    import optuna
    import torch

    from hpo.data.batches import Encoded
    from hpo.data.dataset import Split
    from hpo.models.pretrained import PretrainedModel


class Listener(Protocol):
    """What the live view is told while trials run (``report.LiveView`` is one)."""

    def trial_started(self, number: int, params: Mapping[str, Any], total_steps: int) -> None: ...
    def step(self, step: int) -> None: ...
    def evaluated(self, step: int, value: float) -> None: ...


class Objective:
    """The callable Optuna runs once per trial."""

    def __init__(self, spec: StudySpec, listener: Listener | None = None) -> None:
        self.spec = spec
        self.task = get_task(spec.study.task)
        self.listener = listener
        self._prepared: dict[str, Prepared] = {}
        self._depths: dict[str, int] = {}
        self.trials_run = 0  # in this process: the first one carries the setup cost
        self._constant_score: float | None = None

    def model_names(self) -> list[str]:
        """Every model a trial may use: ``space.model``'s choices, else ``model.name``."""
        return self.spec.model_names()

    def prepare(
        self, pretrained: PretrainedModel | None = None, model: str | None = None
    ) -> Prepared:
        """Load data, tokenizer and model once (per model), and check the study against them."""
        name = model or self.model_names()[0]
        if name in self._prepared:
            return self._prepared[name]
        first = next(iter(self._prepared.values()), None)
        prep = load_prepared(self.spec, self.task, name, first, pretrained)
        self._depths[name] = prep.pretrained.num_layers
        self._prepared[name] = prep
        return prep

    def depths(self) -> dict[str, int]:
        """Layers of each model a trial may use (read from the configs, weights not loaded)."""
        from hpo.models.pretrained import load_config, num_layers

        for name in self.model_names():
            if name not in self._depths:
                section = dataclasses.replace(self.spec.model, name=name)
                self._depths[name] = num_layers(load_config(section))
        return self._depths

    def settings(self, hp: Hyperparameters) -> Settings:
        """What the strategies decide for the loop, from one sampled configuration."""
        settings = Settings()
        for strategy in self.strategies():
            strategy.configure(settings, hp)
        return settings

    def strategies(self) -> list[Strategy]:
        """The registered strategies that apply to this study's task, in registry order."""
        return [s for s in REGISTRY if s.tasks is None or self.task.name in s.tasks]

    def plan(self, hp: Hyperparameters, n_train: int) -> TrainPlan:
        """The loop's settings for one sampled configuration."""
        t = self.spec.train
        s = self.settings(hp)
        max_steps = t.max_steps or steps_for(
            n_train, s.batch_size, t.gradient_accumulation, t.epochs or 1.0
        )
        return TrainPlan(
            max_steps=max_steps,
            eval_every=t.eval_every,
            batch_size=s.batch_size,
            learning_rate=s.learning_rate,
            warmup_ratio=s.warmup_ratio,
            lr_schedule=s.lr_schedule,
            weight_decay=s.weight_decay,
            seed=s.seed,
            metric=self.spec.study.metric,
            maximize=self.spec.direction == "maximize",
            keep=self.spec.study.objective,
            gradient_accumulation=t.gradient_accumulation,
            max_grad_norm=t.max_grad_norm if s.max_grad_norm is None else s.max_grad_norm,
            eval_batch_size=t.eval_batch_size,
            group_by_length=t.group_by_length,
            timeout=t.trial_timeout,
            loss_options=dict(s.loss_options),
            group_hooks=tuple(s.group_hooks),
            privacy=private_plan(self.spec.privacy, s, n_train),
            frozen_layers=int(hp.get("frozen_layers") or 0),
            frozen_cache_mb=t.frozen_cache_mb,
            compile=t.compile,
        )

    @property
    def constant_score(self) -> float | None:
        """The study metric of the best constant answer on the validation split (None for a
        loss): trials that have not beaten it have not yet learned anything measurable."""
        metric = self.spec.study.metric
        if metric in self.task.minimized:
            return None
        if self._constant_score is None:
            prep = self.prepare()
            self._constant_score = self.task.constant_score(
                prep.validation, prep.task.num_labels, metric
            )
        return self._constant_score

    def __call__(self, trial: optuna.Trial) -> float:
        import optuna

        started = time.perf_counter()
        hp = sample(self.spec.space, trial, self.depths())
        racing = race_seed(trial, hp)  # a re-run of a leading configuration: a new seed
        hp = racing or hp
        name = hp["model"] or self.model_names()[0]
        loads = name not in self._prepared  # this trial pays for reading the model
        prep = self.prepare(model=name)
        train_data, make_batch = self.training_rows(prep, hp)
        plan = self.plan(hp, len(train_data))
        trial.set_user_attr(keys.DEVICE, prep.device.description)
        trial.set_user_attr(keys.WORKER, f"{socket.gethostname()}:{os.getpid()}")
        trial.set_user_attr(keys.MAX_STEPS, plan.max_steps)
        trial.set_user_attr(keys.FULL_TRIAL, full_trial_cost(prep, plan, len(train_data)))
        screened = screen_role(trial, plan.max_steps, plan.eval_every)
        if screened is not None:  # a screen: a run of its own, to the first evaluation only
            plan = dataclasses.replace(plan, max_steps=screened)
        whole = racing is not None or kept(trial)  # no pruner stops a re-run of a leader
        # the pruners' noise margin: units one evaluation scores
        trial.set_user_attr(keys.EVAL_ROWS, self.task.eval_units(prep.validation))
        windowed = {k: getattr(getattr(prep, k), "windowed", 0) for k in ("train", "validation")}
        if any(windowed.values()):
            trial.set_user_attr(keys.WINDOWED, windowed)
        if self.constant_score is not None:  # the pruners' "learned nothing yet" level
            trial.set_user_attr(keys.CONSTANT_SCORE, self.constant_score)
        if loads or self.trials_run == 0:
            trial.set_user_attr(keys.SETUP_SECONDS, round(prep.setup_seconds, 3))
        self.trials_run += 1
        if self.listener is not None:
            self.listener.trial_started(trial.number, trial.params, plan.max_steps)

        so_far = SoFar(started)

        def on_step(step: int) -> None:
            stop_if_signalled()  # a SIGTERM whose exception a finalizer swallowed
            so_far.steps = step
            if self.listener is not None:
                self.listener.step(step)

        def on_eval(step: int, metrics: dict[str, float]) -> bool:
            so_far.evaluations += 1
            value = metrics[plan.metric]
            noise = metrics.get(f"{plan.metric}_se")
            if noise is not None:  # the task measured its own noise (e.g. a bootstrap)
                trial.set_user_attr(keys.EVAL_NOISE, round(noise, 6))
            trial.report(value, step)
            if self.listener is not None:
                self.listener.evaluated(step, value)
            if step >= plan.max_steps:  # stopping at the last evaluation saves no step and
                return False  # would throw a finished result away: no pruner decides there
            return not whole and trial.should_prune()

        def spent_so_far() -> None:
            """Store what the trial spent before it stopped without a result (Ctrl-C, SIGTERM,
            a failure in training): the worker records it as failed, but its steps were spent.
            A storage error here must not hide the one that stopped the trial."""
            with contextlib.suppress(Exception):
                record_so_far(trial, prep, hp, plan, len(train_data), so_far)

        try:
            try:
                result = self._train(
                    trial, prep, hp, plan, train_data, make_batch, on_eval, on_step
                )
            except OutOfMemory as first:
                # Same effective batch in half-size pieces; if that fails too, the trial is
                # kept as infeasible so the sampler learns to avoid the region.
                plan = dataclasses.replace(
                    plan,
                    batch_size=max(1, plan.batch_size // 2),
                    gradient_accumulation=plan.gradient_accumulation * 2,
                )
                trial.set_user_attr(
                    keys.OOM_RETRY,
                    {
                        "first_error": str(first),
                        "batch_size": plan.batch_size,
                        "gradient_accumulation": plan.gradient_accumulation,
                    },
                )
                try:
                    result = self._train(
                        trial, prep, hp, plan, train_data, make_batch, on_eval, on_step
                    )
                except OutOfMemory as second:
                    return infeasible(trial, f"{second} (also with half the batch)", plan)
        except (TrialFailure, HpoError) as exc:
            trial.set_user_attr(keys.FAIL_REASON, str(exc))
            spent_so_far()
            raise TrialFailure(str(exc)) from exc
        except (RuntimeError, ValueError, IndexError, MemoryError) as exc:
            reason = f"{type(exc).__name__}: {first_line(exc)}"
            trial.set_user_attr(keys.FAIL_REASON, reason)
            spent_so_far()
            raise TrialFailure(reason) from exc
        except BaseException:  # Ctrl-C, SIGTERM (WorkerStopped): the worker records the end
            spent_so_far()
            raise
        record(trial, result, time.perf_counter() - started)
        trial.set_user_attr(keys.FLOPS, spent_flops(prep, hp, result))
        if plan.privacy is not None and result.epsilon is not None:
            record_privacy(trial, result.epsilon, plan.privacy.delta, self.spec)
        if result.stopped_early:
            raise optuna.TrialPruned(f"pruned at step {result.steps}")
        if plan.metric not in result.metrics:
            raise TrialFailure(f"no evaluation reached; metric {plan.metric!r} is missing")
        if screened is not None:  # stored as stopped at its evaluation: not a full result
            raise optuna.TrialPruned(f"screened: {result.steps} steps")
        return result.metrics[plan.metric]

    def build_model(self, prep: Prepared, hp: Hyperparameters) -> tuple[Any, dict[str, Any]]:
        """A fresh copy of the pretrained model with every strategy applied, in registry order;
        returns it and the facts strategies noted (trainable parameters among them)."""
        model = prep.pretrained.fresh(int(hp["seed"]))
        ctx = ModelContext(
            seed=int(hp["seed"]),
            new_modules=list(prep.pretrained.new_modules),
            num_labels=prep.task.num_labels,
        )
        for strategy in self.strategies():
            model = strategy.apply(model, hp, ctx)
        ctx.notes[keys.TRAINABLE_PARAMETERS] = sum(
            p.numel() for p in model.parameters() if p.requires_grad
        )
        return model, ctx.notes

    def _train(
        self,
        trial: optuna.Trial,
        prep: Prepared,
        hp: Hyperparameters,
        plan: TrainPlan,
        train_data: Encoded,
        make_batch: Any,
        on_eval: Callable[[int, dict[str, float]], bool],
        on_step: Callable[[int], None],
    ) -> TrainResult:
        """One training run of the trial on a fresh copy of the pretrained model."""
        model, notes = self.build_model(prep, hp)
        try:
            for key, value in notes.items():
                trial.set_user_attr(key, value)
            return train(
                model,
                train_data,
                prep.validation,
                plan,
                prep.device,
                pad_id=prep.pad_id,
                make_batch=make_batch,
                on_eval=on_eval,
                on_step=on_step,
                task=self.task,
            )
        finally:
            del model
            _release_memory(prep.device)

    def training_rows(
        self,
        prep: Prepared,
        hp: Hyperparameters,
        encoded: Encoded | None = None,
        split: Split | None = None,
    ) -> tuple[Encoded, Any]:
        """The rows a trial trains on and how to batch them.

        At augmentation strength 0: the cached tokens, batched by the loop. Above it: a function
        that perturbs and re-tokenizes the rows' text; with ``[augment] copies = c`` each row
        appears once as it is and ``c`` times augmented per epoch, so an epoch is (1 + c) times
        longer. ``encoded`` and ``split`` default to the train split (``hpo best`` passes
        train plus validation).
        """
        encoded = encoded or prep.train
        split = split or prep.task.train
        make_batch = self.batch_maker(prep, hp, split, encoded)
        copies = self.spec.augment.copies
        if make_batch is None or copies == 0:
            return encoded, make_batch
        n = len(encoded)
        grown = encoded.repeat(1 + copies)
        task, pad = self.task, prep.pad_id

        def mixed(indices: list[int]) -> dict[str, torch.Tensor]:
            plain = [i for i in indices if i < n]
            varied = [i % n for i in indices if i >= n]
            if not varied:
                return task.collate(encoded, plain, pad)
            # one batch, re-tokenized together: originals unchanged, copies perturbed
            return make_batch(varied, keep=plain)

        return grown, mixed

    def batch_maker(
        self,
        prep: Prepared,
        hp: Hyperparameters,
        split: Split | None = None,
        encoded: Encoded | None = None,
    ) -> Any:
        """None (use cached tokens) at strength 0; else a function that perturbs and re-tokenizes.

        ``split`` holds the raw text of the rows being trained on and ``encoded`` their tokens,
        whose row numbers the loop batches (default: the train split).
        """
        strength = float(hp["augmentation_strength"])
        if strength == 0:
            return None
        return self.task.augmented_batches(
            split or prep.task.train,
            encoded or prep.train,
            prep.tokenizer,
            self.spec.train.max_length,
            prep.pool,
            strength,
            int(hp["seed"]),
            self.spec.augment.ops,
        )


def _release_memory(device: Device) -> None:
    """Free the trial's model and optimizer before the next trial (GPU memory does not leak)."""
    gc.collect()
    if device.type == "cuda":
        import torch

        torch.cuda.empty_cache()
