"""The training loop on the tiny BERT: schedules, learning, early stop, failures, metrics."""

from __future__ import annotations

import math
import random
from pathlib import Path

import pytest
import torch

from hpo.config.spec import DataSection, ModelSection
from hpo.data.batches import Encoded, encode
from hpo.data.dataset import load_task
from hpo.errors import SpecError, TrialFailure
from hpo.models.anatomy import freeze_lower_layers
from hpo.models.pretrained import PretrainedModel, load_tokenizer
from hpo.tasks.classification import classification_metrics, constant_score
from hpo.training.loop import (
    TrainPlan,
    evaluate,
    make_optimizer,
    pick_device,
    steps_for,
    train,
)

CPU = pick_device("cpu")


@pytest.fixture(scope="module")
def setup(
    tiny_model_dir: Path, sentiment_csv: Path
) -> tuple[PretrainedModel, Encoded, Encoded, int]:
    task = load_task(DataSection(files={"train": str(sentiment_csv)}, max_eval_samples=80))
    tokenizer = load_tokenizer(ModelSection(name=str(tiny_model_dir)))
    pretrained = PretrainedModel(ModelSection(name=str(tiny_model_dir)), task.num_labels)
    return (
        pretrained,
        encode(task.train, tokenizer, 32),
        encode(task.validation, tokenizer, 32),
        tokenizer.pad_token_id,
    )


def plan(**changes: object) -> TrainPlan:
    base = dict(
        max_steps=40,
        eval_every=10,
        batch_size=16,
        learning_rate=3e-3,
        warmup_ratio=0.1,
        lr_schedule="linear",
        weight_decay=0.0,
        seed=0,
    )
    return TrainPlan(**{**base, **changes})  # type: ignore[arg-type]


def lr_after(model: torch.nn.Module, p: TrainPlan, steps: int) -> float:
    optimizer, scheduler = make_optimizer(model, p)  # type: ignore[arg-type]
    for _ in range(steps):
        optimizer.step()
        scheduler.step()
    return float(optimizer.param_groups[0]["lr"])


def test_optimizer_is_fused_and_matches_the_reference_adamw(setup) -> None:
    fused, reference = setup[0].fresh(0), setup[0].fresh(0)
    p = plan(
        learning_rate=1e-3, weight_decay=0.1, warmup_ratio=0.0, lr_schedule="constant_with_warmup"
    )
    optimizer, _ = make_optimizer(fused, p)  # its schedule keeps the learning rate at 1e-3
    assert optimizer.defaults["fused"] is True  # one kernel, not a Python loop over tensors
    from hpo.models.pretrained import parameter_groups

    slow = torch.optim.AdamW(parameter_groups(reference, 0.1), lr=1e-3, foreach=False)
    for _ in range(3):
        for model in (fused, reference):
            torch.manual_seed(1)
            for q in model.parameters():
                q.grad = torch.randn_like(q)
        optimizer.step()
        slow.step()
    for (name, a), b in zip(fused.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert any(
        not torch.equal(a, b)
        for a, b in zip(fused.parameters(), setup[0].fresh(0).parameters(), strict=True)
    )  # it did train


@pytest.mark.parametrize(
    ("schedule", "at_end"),
    [("linear", 0.0), ("cosine", 0.0), ("constant_with_warmup", 1.0), ("polynomial", 1e-7 / 1e-3)],
)
def test_schedule_warms_up_then_decays(setup, schedule: str, at_end: float) -> None:
    model = setup[0].fresh(0)
    p = plan(max_steps=100, warmup_ratio=0.2, lr_schedule=schedule, learning_rate=1e-3)
    assert p.warmup_steps == 20
    assert lr_after(model, p, 0) == pytest.approx(0.0)
    assert lr_after(model, p, 10) == pytest.approx(0.5e-3)
    assert lr_after(model, p, 20) == pytest.approx(1e-3)
    assert lr_after(model, p, 100) == pytest.approx(at_end * 1e-3, abs=1e-9)


def test_no_warmup_starts_at_the_peak(setup) -> None:
    assert lr_after(
        setup[0].fresh(0), plan(warmup_ratio=0.0, learning_rate=2e-4), 0
    ) == pytest.approx(2e-4)


def test_training_learns_the_task_and_reports_every_k_steps(setup) -> None:
    pretrained, tr, va, pad = setup
    before = evaluate(pretrained.fresh(0), va, CPU, 64, pad)["accuracy"]
    seen: list[int] = []
    result = train(
        pretrained.fresh(0),
        tr,
        va,
        plan(max_steps=60, learning_rate=5e-3),
        CPU,
        pad_id=pad,
        on_eval=lambda s, m: seen.append(s) is not None,
    )
    assert seen == [10, 20, 30, 40, 50, 60]
    assert result.steps == 60 and not result.stopped_early
    full_epochs = 60 * 16 // len(tr)  # each epoch's short last batch counts its real rows
    assert 60 * 16 - (full_epochs + 1) * 16 < result.train_samples <= 60 * 16
    assert result.metrics["accuracy"] > max(0.9, before + 0.3)
    assert result.samples_per_second > 0 and result.train_seconds > 0 and result.eval_seconds > 0
    assert [s for s, _ in result.history] == seen


def test_on_eval_true_stops_the_loop(setup) -> None:
    pretrained, tr, va, pad = setup
    result = train(
        pretrained.fresh(0), tr, va, plan(), CPU, pad_id=pad, on_eval=lambda s, m: s >= 20
    )
    assert result.stopped_early and result.steps == 20
    assert result.metrics == result.history[-1][1]


def test_keep_best_returns_the_best_evaluation(setup) -> None:
    pretrained, tr, va, pad = setup
    result = train(
        pretrained.fresh(0), tr, va, plan(keep="best", learning_rate=5e-3), CPU, pad_id=pad
    )
    best = max(m["accuracy"] for _, m in result.history)
    assert result.metrics["accuracy"] == best


def test_a_last_partial_interval_is_still_evaluated(setup) -> None:
    pretrained, tr, va, pad = setup
    result = train(pretrained.fresh(0), tr, va, plan(max_steps=25), CPU, pad_id=pad)
    assert [s for s, _ in result.history] == [10, 20, 25]


def test_same_seed_same_result(setup) -> None:
    pretrained, tr, va, pad = setup
    a = train(pretrained.fresh(3), tr, va, plan(max_steps=10, seed=3), CPU, pad_id=pad)
    b = train(pretrained.fresh(3), tr, va, plan(max_steps=10, seed=3), CPU, pad_id=pad)
    assert a.metrics == b.metrics


def test_nan_loss_fails_the_trial_with_a_reason(setup) -> None:
    pretrained, tr, va, pad = setup
    model = pretrained.fresh(0)
    with torch.no_grad():
        model.classifier.weight.fill_(float("nan"))
    with pytest.raises(TrialFailure, match="loss became nan at step 1"):
        train(model, tr, va, plan(), CPU, pad_id=pad)


def test_gradient_accumulation_counts_samples(setup) -> None:
    pretrained, tr, va, pad = setup
    rows = Encoded(tr.input_ids[:32], None, tr.label[:32])  # whole batches of 16 only
    result = train(
        pretrained.fresh(0), rows, va, plan(max_steps=5, gradient_accumulation=2), CPU, pad_id=pad
    )
    assert result.train_samples == 5 * 16 * 2


def test_samples_count_the_real_rows_of_a_short_last_batch(setup) -> None:
    pretrained, tr, va, pad = setup
    rows = Encoded(tr.input_ids[:20], None, tr.label[:20])
    # batches of 8 over 20 rows: 8, 8 and a short 4 make one epoch; two epochs are 6 steps
    result = train(pretrained.fresh(0), rows, va, plan(max_steps=6, batch_size=8), CPU, pad_id=pad)
    assert result.train_samples == 2 * 20


def test_classification_metrics_by_hand() -> None:
    m = classification_metrics([0, 1, 1, 0], [0, 1, 0, 0], 2)
    assert m["accuracy"] == 0.75
    assert m["f1"] == pytest.approx(2 / 3)  # class 1: tp 1, fp 1, fn 0
    assert m["macro_f1"] == pytest.approx((0.8 + 2 / 3) / 2)  # class 0: tp 2, fp 0, fn 1
    three = classification_metrics([0, 1, 2, 2], [0, 1, 2, 1], 3)
    assert "f1" not in three and three["accuracy"] == 0.75


def test_macro_f1_leaves_out_classes_neither_labelled_nor_predicted() -> None:
    # four classes, the validation rows hold three: a perfect model scores 1, not 3/4
    assert classification_metrics([0, 1, 2, 0], [0, 1, 2, 0], 4)["macro_f1"] == 1.0
    sklearn = pytest.importorskip("sklearn.metrics")
    rng = random.Random(0)
    for _ in range(50):
        labels = [rng.randrange(5) for _ in range(12)]
        preds = [rng.randrange(5) for _ in range(12)]
        ours = classification_metrics(preds, labels, 6)["macro_f1"]
        assert ours == pytest.approx(sklearn.f1_score(labels, preds, average="macro"))


def test_constant_score_is_the_best_single_answer() -> None:
    labels = [0, 0, 1]
    assert constant_score(labels, 2, "accuracy") == pytest.approx(2 / 3)  # always 0
    assert constant_score(labels, 2, "macro_f1") == pytest.approx(0.4)  # class 0's F1 0.8, / 2
    assert constant_score(labels, 2, "f1") == pytest.approx(0.5)  # always 1: tp 1, fp 2
    assert constant_score([2, 2, 1, 0], 3, "accuracy") == 0.5


def test_steps_for_epochs() -> None:
    assert steps_for(100, 16, 1, 1.0) == 7
    assert steps_for(100, 16, 2, 2.0) == 7
    assert steps_for(3, 16, 1, 0.1) == 1


def test_device_is_cpu_here_unless_cuda() -> None:
    device = pick_device("auto")
    assert device.type == ("cuda" if torch.cuda.is_available() else device.type)
    assert pick_device("cpu").autocast is None
    if not torch.cuda.is_available():
        with pytest.raises(SpecError, match='is "cuda" but torch sees no CUDA GPU'):
            pick_device("cuda")


def test_a_precision_the_cpu_cannot_autocast_is_named_in_the_device() -> None:
    # the CPU autocasts bf16; fp16 runs fp32 there, and the device every trial stores says so
    assert pick_device("cpu", "bf16").autocast == "bf16"
    half = pick_device("cpu", "fp16")
    assert half.autocast is None and half.type == "cpu"
    assert half.description == "cpu (fp32: train.precision fp16 has no autocast on cpu)"
    assert pick_device("cpu", "auto").description == "cpu"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_uses_bf16_autocast_and_records_peak_memory(setup) -> None:
    pretrained, tr, va, pad = setup
    device = pick_device("auto")
    assert device.autocast in ("bf16", "fp16")
    result = train(pretrained.fresh(0), tr, va, plan(max_steps=10), device, pad_id=pad)
    assert result.peak_memory_mb > 0 and math.isfinite(result.metrics["eval_loss"])


def test_a_compiled_model_trains_as_the_eager_one(setup) -> None:
    """``train.compile``: torch.compile with dynamic shapes (batches of every width) gives the
    same evaluations as eager execution, with the frozen-layer cache in the way too."""
    pretrained, tr, va, pad = setup
    runs = []
    for compiled in (False, True):
        model = pretrained.fresh(0)
        freeze_lower_layers(model, 1)
        p = plan(max_steps=20, frozen_layers=1, compile=compiled)
        runs.append(train(model, tr, va, p, CPU, pad_id=pad))
    eager, compiled_run = runs
    assert compiled_run.frozen_served_rows > 0  # the cache served the compiled model
    losses = [m["eval_loss"] for _, m in eager.history]
    assert [m["eval_loss"] for _, m in compiled_run.history] == pytest.approx(losses, rel=1e-3)
