"""Each strategy acts where it says: on a 4-layer tiny BERT, through the objective's own path."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import optuna
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from hpo import strategies
from hpo.config.sampling import Hyperparameters, sample
from hpo.config.space import SearchSpace
from hpo.config.spec import StudySpec
from hpo.errors import SpecError
from hpo.execution.storage import open_storage
from hpo.execution.workers import work
from hpo.final.saved import load_model, plain_model
from hpo.search.objective import Objective, Prepared
from hpo.search.study import create_or_resume
from hpo.strategies import Dim, ModelContext, Settings, Strategy
from hpo.training.loop import make_optimizer, pick_device, train
from tests.conftest import spec_dict

CPU = pick_device("cpu")


def objective_for(model_dir: Path, data: Path, **sections: dict[str, Any]) -> Objective:
    return Objective(StudySpec.from_dict(spec_dict(model_dir, data, **sections)))


@pytest.fixture(scope="module")
def deep(deep_model_dir: Path, sentiment_csv: Path) -> tuple[Objective, Prepared]:
    objective = objective_for(deep_model_dir, sentiment_csv)
    return objective, objective.prepare()


def built(deep: tuple[Objective, Prepared], **values: Any) -> tuple[Any, dict[str, Any]]:
    objective, prep = deep
    return objective.build_model(prep, Hyperparameters(seed=0, **values))


def batch(prep: Prepared, n: int = 8) -> dict[str, torch.Tensor]:
    return prep.kind.collate(prep.train, list(range(n)), prep.pad_id)  # type: ignore[union-attr]


def logits(model: Any, b: Mapping[str, torch.Tensor]) -> torch.Tensor:
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in b.items() if k != "labels"}).logits


def step_flops(model: Any, b: Mapping[str, torch.Tensor]) -> int:
    """Floating-point operations of one forward and backward pass, counted by torch."""
    counter = FlopCounterMode(display=False)
    with counter:
        out = model(**b)
        out.loss.backward()
    return counter.get_total_flops()


def test_num_layers_keeps_the_bottom_layers_and_the_step_gets_cheaper(deep, tmp_path) -> None:
    _, prep = deep
    full, _ = built(deep)
    small, _ = built(deep, num_layers=2)
    assert len(small.bert.encoder.layer) == 2 and small.config.num_hidden_layers == 2
    for kept, original in zip(small.bert.encoder.layer, full.bert.encoder.layer, strict=False):
        assert torch.equal(kept.attention.self.query.weight, original.attention.self.query.weight)
    b = batch(prep)
    assert step_flops(small, b) < 0.75 * step_flops(full, b)
    small.save_pretrained(tmp_path)  # saved, it loads with its two layers and its weights
    from transformers import AutoModelForSequenceClassification

    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert len(reloaded.bert.encoder.layer) == 2
    assert torch.allclose(logits(reloaded, b), logits(small, b), atol=1e-6)


def test_head_hidden_units_puts_a_hidden_layer_before_the_labels(deep, tmp_path) -> None:
    _, prep = deep
    model, _ = built(deep, head_hidden_units=24, classifier_dropout=0.3)
    head = model.classifier
    assert isinstance(head, torch.nn.Sequential)
    assert (head[0].in_features, head[0].out_features) == (32, 24)
    assert (head[3].in_features, head[3].out_features) == (24, 2)
    assert head[2].p == 0.3 and model.dropout.p == 0.3  # classifier_dropout reaches both
    b = batch(prep)
    expected = logits(model, b)
    assert expected.shape == (8, 2)
    model.save_pretrained(tmp_path)
    assert torch.allclose(logits(load_model(tmp_path), b), expected, atol=1e-6)


def test_classifier_dropout_alone_sets_the_models_own_dropout(deep) -> None:
    model, _ = built(deep, classifier_dropout=0.45)
    assert model.dropout.p == 0.45
    assert all(m.p != 0.45 for m in model.bert.modules() if isinstance(m, torch.nn.Dropout))


def test_layer_lr_decay_gives_each_layer_its_rate(deep) -> None:
    objective, prep = deep
    hp = Hyperparameters(seed=0, learning_rate=1e-3, layer_lr_decay=0.5)
    model, _ = objective.build_model(prep, hp)
    optimizer, _ = make_optimizer(model, objective.plan(hp, len(prep.train)))
    rate = {id(p): g["lr"] for g in optimizer.param_groups for p in g["params"]}
    layers = model.bert.encoder.layer
    for i, layer in enumerate(layers):  # layer i of 4 gets lr * 0.5^(4 - i)
        assert rate[id(layer.attention.self.query.weight)] == pytest.approx(1e-3 * 0.5 ** (4 - i))
    assert rate[id(model.bert.embeddings.word_embeddings.weight)] == pytest.approx(1e-3 * 0.5**5)
    assert rate[id(model.classifier.weight)] == pytest.approx(1e-3)
    assert rate[id(model.bert.pooler.dense.weight)] == pytest.approx(1e-3)
    # the weight-decay split survives: biases still have none
    decay = {id(p): g["weight_decay"] for g in optimizer.param_groups for p in g["params"]}
    assert decay[id(layers[0].attention.self.query.bias)] == 0.0


def test_reinit_layers_redraws_the_top_layers_and_nothing_else(deep) -> None:
    base, _ = built(deep)
    model, _ = built(deep, reinit_layers=2)
    before, after = dict(base.named_parameters()), dict(model.named_parameters())
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    top = ("bert.encoder.layer.2.", "bert.encoder.layer.3.", "bert.pooler.")
    weights = {
        n for n in before if n.startswith(top) and n.endswith("weight") and "LayerNorm" not in n
    }
    assert weights <= changed  # every re-drawn matrix differs from the pretrained one
    assert all(name.startswith(top) for name in changed)  # and nothing below them moved


def test_lora_trains_only_adapters_and_head_and_merges_to_the_same_logits(deep, tmp_path) -> None:
    _, prep = deep
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model, notes = built(deep, lora_rank=4, lora_alpha=8.0)
    # peft's use of a deprecated transformers property printed a FutureWarning every trial
    assert not [w for w in caught if "is_gradient_checkpointing" in str(w.message)]
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "classifier" in n for n in trainable)
    assert any("lora_" in n for n in trainable) and any("classifier" in n for n in trainable)
    assert notes["lora_parameters"] > 0
    with torch.no_grad():  # move the adapters off zero so merging has something to fold in
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    b = batch(prep)
    adapted = logits(model, b)
    merged = plain_model(model)
    assert not any("lora" in n for n, _ in merged.named_parameters())
    assert torch.allclose(logits(merged, b), adapted, atol=1e-5)
    merged.save_pretrained(tmp_path)
    from transformers import AutoModelForSequenceClassification

    reloaded = AutoModelForSequenceClassification.from_pretrained(tmp_path)  # no peft needed
    assert torch.allclose(logits(reloaded, b), adapted, atol=1e-5)


def test_lora_trains_end_to_end(deep) -> None:
    objective, prep = deep
    hp = Hyperparameters(seed=0, learning_rate=5e-3, lora_rank=4)
    model, _ = objective.build_model(prep, hp)
    frozen = model.base_model.model.bert.encoder.layer[0].output.dense.weight.clone()
    result = train(
        model, prep.train, prep.validation, objective.plan(hp, len(prep.train)), CPU, pad_id=0
    )
    assert result.steps == 30 and "accuracy" in result.metrics
    assert torch.equal(model.base_model.model.bert.encoder.layer[0].output.dense.weight, frozen)


def test_label_smoothing_reaches_the_loss(deep) -> None:
    objective, prep = deep
    plan = objective.plan(Hyperparameters(seed=0, label_smoothing=0.2), 100)
    assert plan.loss_options == {"label_smoothing": 0.2}
    z = torch.tensor([[2.0, 0.0]])
    y = torch.tensor([0])
    smoothed = prep.kind.loss(z, y, **plan.loss_options)  # type: ignore[union-attr]
    logp = torch.log_softmax(z, -1)[0]
    by_hand = -(0.9 * logp[0] + 0.1 * logp[1])  # 0.8 on the label plus 0.2 spread over 2 classes
    assert smoothed.item() == pytest.approx(by_hand.item())


def test_max_grad_norm_as_a_dimension_overrides_the_train_section(deep) -> None:
    objective, _ = deep
    assert objective.plan(Hyperparameters(seed=0), 100).max_grad_norm == 1.0
    assert objective.plan(Hyperparameters(seed=0, max_grad_norm=0.25), 100).max_grad_norm == 0.25


# ------------------------------------------------------------------- the space's conditions


def test_lora_conditions_sample_alpha_only_with_a_rank_and_freezing_only_without() -> None:
    space = SearchSpace.from_dict(
        {"lora_rank": [0, 8], "lora_alpha": {"low": 4, "high": 64, "log": True}}
    )
    assert space.conditional
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = []
    for _ in range(30):
        trial = study.ask()
        hp = sample(space, trial, depth=4)
        seen.append(hp["lora_rank"])
        if hp["lora_rank"]:
            assert "lora_alpha" in trial.params and "frozen_layers" not in trial.params
        else:
            assert "frozen_layers" in trial.params and "lora_alpha" not in trial.params
            assert hp["lora_alpha"] is None  # off: not sampled, not stored
        study.tell(trial, 0.5)
    assert set(seen) == {0, 8}


@pytest.mark.parametrize("name", ["lora_alpha", "lora_dropout"])
def test_a_lora_setting_without_a_rank_is_refused(name: str) -> None:
    """Without lora_rank LoRA is off, and its alpha or dropout was sampled and never applied."""
    with pytest.raises(SpecError, match=rf"`space\.{name}` is never used: .* add lora_rank"):
        SearchSpace.from_dict({name: 0.1 if name == "lora_dropout" else 16})
    SearchSpace.from_dict({"lora_rank": 8, name: 0.1 if name == "lora_dropout" else 16})


def test_best_reads_a_lora_trial_that_sampled_no_freezing() -> None:
    from hpo.errors import HpoError
    from hpo.final.best import hyperparameters

    params = {"learning_rate": 3e-4, "lora_rank": 8, "lora_alpha": 16.0, "seed": 5}
    hp = hyperparameters(params, seed=2)
    assert (hp["lora_rank"], hp["lora_alpha"], hp["frozen_layers"], hp["seed"]) == (8, 16.0, 0, 2)
    with pytest.raises(HpoError, match="lacks parameter 'learning_rate'"):
        hyperparameters({"x": 1}, seed=0)


def test_a_written_when_condition_and_its_errors() -> None:
    space = SearchSpace.from_dict(
        {
            "head_hidden_units": [0, 64],
            "classifier_dropout": {"low": 0.0, "high": 0.5, "when": {"head_hidden_units": [64]}},
        }
    )
    study = optuna.create_study()
    study.enqueue_trial({"head_hidden_units": 0})
    study.enqueue_trial({"head_hidden_units": 64, "classifier_dropout": 0.2})
    without, with_ = study.ask(), study.ask()
    assert sample(space, without)["classifier_dropout"] is None
    assert "classifier_dropout" not in without.params
    assert sample(space, with_)["classifier_dropout"] == 0.2
    assert SearchSpace.from_dict(space.to_dict()) == space
    bad = {
        "unknown": ({"label_smoothing": {"low": 0.0, "high": 0.2, "when": {"nope": [1]}}}, "'nope' is not a dimension"),
        "cycle": ({"head_hidden_units": {"choices": [0, 8], "when": {"classifier_dropout": [0.1]}}, "classifier_dropout": {"choices": [0.1, 0.2], "when": {"head_hidden_units": [8]}}}, "forms a cycle"),
        "value": ({"lora_rank": [0, 8], "lora_dropout": {"low": 0.0, "high": 0.2, "when": {"lora_rank": [16]}}}, "lists 16, which space.lora_rank"),
        "frozen above kept": ({"num_layers": 2, "frozen_layers": 3}, "`space.frozen_layers` can be 3 but `space.num_layers`"),
        "frozen plus reinit": ({"num_layers": 3, "frozen_layers": 2, "reinit_layers": 2}, "`space.reinit_layers` plus `space.frozen_layers` is at least 4"),
    }  # fmt: skip
    for name, (raw, needle) in bad.items():
        with pytest.raises(SpecError) as info:
            SearchSpace.from_dict(raw)
        assert needle in str(info.value), name
        assert "\n" not in str(info.value)


def test_the_recipe_trial_turns_every_searched_strategy_off() -> None:
    from hpo.config.sampling import first_trials

    space = SearchSpace.from_dict(
        {"num_layers": {"low": 2, "high": 6}, "head_hidden_units": [0, 64], "lora_rank": [0, 8],
         "layer_lr_decay": {"low": 0.7, "high": 1.0}, "label_smoothing": [0.0, 0.1],
         "frozen_layers": {"low": 0, "high": 3}, "augmentation_strength": {"low": 0.0, "high": 0.3}}
    )  # fmt: skip
    ((origin, point),) = first_trials(space, None, recipe=True)
    assert origin == "trainer recipe"
    assert point == {
        "learning_rate": 5e-5, "warmup_ratio": 0.0, "lr_schedule": "linear",
        "frozen_layers": 0, "augmentation_strength": 0.0, "num_layers": 6,
        "head_hidden_units": 0, "lora_rank": 0, "layer_lr_decay": 1.0, "label_smoothing": 0.0,
    }  # fmt: skip


def test_layer_ranges_are_clipped_to_the_layers_kept() -> None:
    space = SearchSpace.from_dict(
        {"num_layers": {"low": 2, "high": 6}, "frozen_layers": {"low": 0, "high": 5}}
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(40):
        trial = study.ask()
        hp = sample(space, trial, depth=4)  # a 4-layer model
        assert 2 <= hp["num_layers"] <= 4 and 0 <= hp["frozen_layers"] <= hp["num_layers"]
        study.tell(trial, 0.5)


def test_layer_ranges_past_a_single_models_depth_are_refused_before_any_trial(
    deep_model_dir, sentiment_csv
) -> None:
    from hpo.search.preflight import preflight

    for space, needle in [
        ({"num_layers": {"low": 2, "high": 9}}, "`space.num_layers` goes up to 9 but the model has 4"),
        ({"reinit_layers": 5}, "`space.reinit_layers` goes up to 5 but the model has 4"),
        ({"frozen_layers": 2, "reinit_layers": 3}, "plus `space.frozen_layers` is at least 5, above the 4"),
    ]:  # fmt: skip
        raw = spec_dict(deep_model_dir, sentiment_csv)
        raw["space"].update(space)
        with pytest.raises(SpecError) as info:
            preflight(StudySpec.from_dict(raw))
        assert needle in str(info.value)


# ------------------------------------------------------------------- several models


def test_space_model_picks_among_models_each_with_its_own_depth(
    tiny_model_dir, deep_model_dir, sentiment_csv, tmp_path
) -> None:
    raw = spec_dict(
        tiny_model_dir,
        sentiment_csv,
        study={"n_trials": 6},
        sampler={"name": "random", "seed": 3},
        train={"max_steps": 10, "eval_every": 10, "max_length": 32, "device": "cpu"},
    )
    raw["space"].update(
        model=[str(tiny_model_dir), str(deep_model_dir)], num_layers={"low": 1, "high": 4}
    )
    spec = StudySpec.from_dict(raw)
    study, _ = create_or_resume(spec, open_storage(f"sqlite:///{tmp_path / 'm.db'}"))
    work(study, Objective(spec), 6)
    trials = study.get_trials()
    assert {t.params["model"] for t in trials} == {str(tiny_model_dir), str(deep_model_dir)}
    for t in trials:
        assert t.state == optuna.trial.TrialState.COMPLETE, t.user_attrs.get("fail_reason")
        depth = 2 if t.params["model"] == str(tiny_model_dir) else 4
        assert t.params["num_layers"] <= depth


# ------------------------------------------------------------------- the registry


class Toy(Strategy):
    """A strategy defined here, known to hpo only through the registry: it scales the learning
    rate and notes what it did on the trial."""

    name = "toy"
    dims = (Dim("toy_lr_scale", "float", lambda v: 0 < v <= 10, "must be in (0, 10]", off=1.0),)

    def configure(self, settings: Settings, values: Mapping[str, Any]) -> None:
        settings.learning_rate *= float(values["toy_lr_scale"])

    def apply(self, model: Any, values: Mapping[str, Any], ctx: ModelContext) -> Any:
        ctx.notes["toy_saw"] = float(values["toy_lr_scale"])
        return model


@pytest.fixture
def toy() -> Iterator[Toy]:
    strategy = Toy()
    strategies.REGISTRY.append(strategy)
    yield strategy
    strategies.REGISTRY.remove(strategy)


def test_a_strategy_added_through_the_registry_alone_runs_in_a_trial(
    toy, tiny_model_dir, sentiment_csv, tmp_path
) -> None:
    raw = spec_dict(tiny_model_dir, sentiment_csv, study={"n_trials": 1})
    raw["space"]["toy_lr_scale"] = 0.5
    spec = StudySpec.from_dict(raw)
    objective = Objective(spec)
    plan = objective.plan(Hyperparameters(learning_rate=2e-3, toy_lr_scale=0.5), 100)
    assert plan.learning_rate == pytest.approx(1e-3)
    study, _ = create_or_resume(spec, open_storage(f"sqlite:///{tmp_path / 't.db'}"))
    work(study, objective, 1)
    (trial,) = study.get_trials()
    assert trial.state == optuna.trial.TrialState.COMPLETE
    assert trial.params["toy_lr_scale"] == 0.5 and trial.user_attrs["toy_saw"] == 0.5
