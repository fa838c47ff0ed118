"""The saved model: written with its tokenizer and model card (hpo/final/card.py), loaded
back, asked to predict.

LoRA adapters are folded into the weights before saving, so the folder loads without ``peft``;
a hidden-layer head is recorded in the config and rebuilt by ``load_model``. The config also
records how the model reads its input (``hpo_input``), so ``predict`` reads it the same way.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.errors import UserError
from hpo.results.export import write_folder

if TYPE_CHECKING:
    from hpo.config.spec import StudySpec
    from hpo.final.best import ConfigResult
    from hpo.search.prepared import Prepared

# In config.json: {"max_length": n} (the train.max_length the model was trained and scored
# at) and, for a model trained on text pairs, "pair": [its text column, its pair column]. A
# folder saved by an older hpo has neither.
INPUT_CONFIG = "hpo_input"


def save(
    model: Any,
    prep: Prepared,
    out: Path,
    spec: StudySpec,
    study_name: str,
    results: list[ConfigResult],
    train_on: str,
    search_value: float | None,
    chosen: int = 0,
    overwrite: bool = False,
) -> Path:
    """Write the model and tokenizer in Hugging Face format plus a model card (README.md);
    ``chosen`` indexes the configuration in ``results`` that the model was trained with.

    Everything is written to a hidden sibling folder and moved into place only once every file
    is written (``write_folder``): a full disk leaves no half-written folder that looks
    complete, but a one-line ``WriteFailed`` and ``out`` as it was. An ``out`` that holds files
    is left as it was (``UserError``) unless ``overwrite``, which replaces it whole."""
    model = plain_model(model)
    names = prep.task.label_names
    model.config.id2label = dict(enumerate(names))
    model.config.label2id = {n: i for i, n in enumerate(names)}
    setattr(model.config, INPUT_CONFIG, input_facts(spec))
    from hpo.final.card import model_card

    card = model_card(spec, study_name, results, train_on, search_value, chosen)
    table = json.dumps([dataclasses.asdict(r) for r in results], indent=1)

    def write(folder: Path) -> None:
        model.save_pretrained(folder)
        save_tokenizer(prep.tokenizer, folder, spec.train.max_length)
        (folder / "README.md").write_text(card, encoding="utf-8")
        (folder / "hpo_results.json").write_text(table, encoding="utf-8")

    write_folder(out, write, "the model", overwrite)
    return out


def input_facts(spec: StudySpec) -> dict[str, Any]:
    """How the model read its input in training and scoring (``INPUT_CONFIG``): texts cut to
    ``train.max_length`` tokens, and for a sentence-pair study the two texts of each row."""
    facts: dict[str, Any] = {"max_length": spec.train.max_length}
    if spec.data.text_pair_column and spec.study.task != "token_classification":
        facts["pair"] = [spec.data.text_column, spec.data.text_pair_column]
    return facts


def save_tokenizer(tokenizer: Any, folder: Path, max_length: int) -> None:
    """Save the tokenizer with ``model_max_length`` set to the study's ``max_length``: the
    model was trained and scored on texts cut there, so ``tokenizer(text, truncation=True)``
    cuts there too; the tokenizer in use is left as it was."""
    before = tokenizer.model_max_length
    tokenizer.model_max_length = max_length
    try:
        tokenizer.save_pretrained(folder)
    finally:
        tokenizer.model_max_length = before


def plain_model(model: Any) -> Any:
    """The ``transformers`` model to save: LoRA adapters folded into the weights (so it loads
    without ``peft``), anything else as it is."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


def load_model(folder: str | Path) -> Any:
    """Load a model saved by ``hpo best``, with the head it was tuned with.

    A model with the model's own head loads with ``AutoModelForSequenceClassification`` (or
    ``AutoModelForTokenClassification``, for a token classification study) too;
    one with a hidden-layer head (``head_hidden_units``) needs this function, which rebuilds the
    head its config records (``hpo_head``) before reading the weights."""
    from transformers import AutoConfig

    from hpo.models.pretrained import quiet_transformers
    from hpo.strategies.head import HEAD_CONFIG, build_hidden_head

    quiet_transformers()
    folder = Path(folder)
    _config_file(folder)
    config = AutoConfig.from_pretrained(folder)
    auto = _auto_class(config)
    head = getattr(config, HEAD_CONFIG, None)
    if not head:
        try:  # hpo saves safetensors; a pickle file in a foreign folder could run code
            return auto.from_pretrained(folder, use_safetensors=True)
        except OSError:
            raise UserError(
                f"{folder} holds no model.safetensors: hpo saves its models as safetensors and "
                "does not unpickle weights, which can run code"
            ) from None
    import torch
    from safetensors.torch import load_file

    model = auto.from_config(config)
    name, _, attr = str(head["module"]).rpartition(".")
    parent = model.get_submodule(name) if name else model
    old = getattr(parent, attr)
    setattr(
        parent,
        attr,
        build_hidden_head(
            old.in_features, int(head["hidden_units"]), old.out_features, float(head["dropout"])
        ),
    )
    state: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        state.update(load_file(str(shard)))
    model.load_state_dict(state, strict=False)
    missing = [k for k in model.state_dict() if k not in state and not k.endswith("position_ids")]
    if missing:
        raise UserError(f"{folder}: the saved weights lack {missing[0]}; was it saved by hpo best?")
    return model


def _config_file(folder: Path) -> Path:
    config = folder / "config.json"
    if not config.is_file():
        raise UserError(f"{folder} is not a saved model folder (no config.json); see `hpo best`")
    return config


def pair_columns(folder: str | Path) -> tuple[str, str] | None:
    """The two text columns of a model trained on text pairs, from its folder's config; None
    for a model of single texts (or one saved by an older hpo, which recorded no pairs)."""
    folder = Path(folder)
    try:
        config = json.loads(_config_file(folder).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {folder}/config.json: {exc}") from None
    return _pair(config.get(INPUT_CONFIG) if isinstance(config, dict) else None)


def _pair(facts: Any) -> tuple[str, str] | None:
    pair = facts.get("pair") if isinstance(facts, dict) else None
    return (str(pair[0]), str(pair[1])) if isinstance(pair, list) and len(pair) == 2 else None


def split_pairs(texts: Sequence[str], columns: tuple[str, str]) -> tuple[list[str], list[str]]:
    """Each text of a pair model's input as its two texts, separated by its first tab; a
    text without a tab is refused (``UserError``), since encoding it alone reads it as a
    pair with its second text missing."""
    firsts, seconds = [], []
    for i, text in enumerate(texts, 1):
        first, tab, second = text.partition("\t")
        if not tab:
            raise UserError(
                f"text {i} has no tab: this model reads text pairs ({columns[0]}, {columns[1]}); "
                f"give each as its two texts separated by a tab, e.g. $'the {columns[0]}\\tthe "
                f"{columns[1]}', or one pair a line on standard input with TEXT -"
            )
        firsts.append(first)
        seconds.append(second)
    return firsts, seconds


def _auto_class(config: Any) -> Any:
    """The auto class of the head the saved config names (sequence or token classification)."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    names = getattr(config, "architectures", None) or []
    if any(str(n).endswith("ForTokenClassification") for n in names):
        return AutoModelForTokenClassification
    return AutoModelForSequenceClassification


def is_token_model(model: Any) -> bool:
    return type(model).__name__.endswith("ForTokenClassification")


def predict(folder: Path, texts: Sequence[str], pairs: Sequence[str] | None = None) -> list[Any]:
    """For each text, from a saved model folder: (label, probability); for a token
    classification model, its entities (see ``predict_entities``). A model trained on text
    pairs needs ``pairs``, the second text of each (see ``split_pairs``), and is given them
    as pairs, as in training; every input is cut where training cut it (``input_limit``)."""
    import torch
    from transformers import AutoTokenizer

    model = load_model(folder)
    columns = _pair(getattr(model.config, INPUT_CONFIG, None))
    if columns is not None and pairs is None:
        raise UserError(f"{folder} reads text pairs ({columns[0]}, {columns[1]}): give both texts")
    tokenizer = AutoTokenizer.from_pretrained(folder)
    if is_token_model(model):
        if pairs is not None:
            raise UserError(f"{folder} is a token classification model: it reads no text pairs")
        return predict_entities(model, tokenizer, texts)
    model.eval()
    limit = input_limit(model, tokenizer)
    batch = tokenizer(
        list(texts),
        list(pairs) if pairs is not None else None,
        truncation=True,
        max_length=limit,
        padding=True,
        return_tensors="pt",
    )
    with torch.inference_mode():
        probs = model(**batch).logits.softmax(-1)
    top = probs.max(-1)
    labels = model.config.id2label
    return [(str(labels[int(i)]), float(p)) for p, i in zip(top.values, top.indices, strict=True)]


def input_limit(model: Any, tokenizer: Any) -> int:
    """The most tokens one row (or window) may have: the ``train.max_length`` the model was
    trained and scored at, which its config records, so a prediction reads a text as the
    reported scores did. A folder saved by an older hpo records none: then what the model's
    tokenizer and its table of positions allow (a tokenizer saved without
    ``model_max_length`` says nothing), at most 512."""
    from hpo.search.preflight import position_limit

    facts = getattr(model.config, INPUT_CONFIG, None)
    recorded = facts.get("max_length") if isinstance(facts, dict) else None
    if isinstance(recorded, int) and not isinstance(recorded, bool) and recorded > 0:
        return recorded
    return min(position_limit(model.config, tokenizer) or 512, 512)


# Chinese and Japanese scripts write no spaces between words: each character is a word of its
# own, as in the character-per-line files Chinese NER data comes in (MSRA, Weibo, Resume); a
# run of them read as one word would be tagged as one entity
_UNSPACED = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_WORDS = re.compile(rf"[{_UNSPACED}]|[@#]?[^\W{_UNSPACED}]+(?:['’.\-][^\W{_UNSPACED}]+)*|\S")


def split_words(text: str) -> list[tuple[str, int, int]]:
    """Words of a raw text with their character offsets: runs of letters and digits (with
    inner apostrophes, dots and hyphens, and a leading @ or #), each Chinese or Japanese
    character alone, and each other mark alone."""
    return [(m.group(), m.start(), m.end()) for m in _WORDS.finditer(text)]


def predict_entities(
    model: Any, tokenizer: Any, texts: Sequence[str]
) -> list[list[dict[str, Any]]]:
    """The entities of each text: its words tagged by their first sub-token's prediction
    (long texts in windows, as in training), IOB2 tags read into spans; each span's score is
    the mean probability of its words' tags."""
    import torch
    from seqeval.metrics.sequence_labeling import get_entities

    from hpo.data.windows import collate_windows, encode_sentences

    names = [str(model.config.id2label[i]) for i in range(int(model.config.num_labels))]
    words = [split_words(t) for t in texts]
    windows = encode_sentences(
        [[w for w, _, _ in row] for row in words],
        [["O"] * len(row) for row in words],
        tokenizer,
        input_limit(model, tokenizer),
        names,
    )
    tags = [["O"] * len(row) for row in words]
    probs = [[0.0] * len(row) for row in words]
    model.eval()
    if len(windows):
        batch = collate_windows(windows, range(len(windows)), int(tokenizer.pad_token_id or 0))
        batch.pop("labels")
        with torch.inference_mode():
            p = model(**batch).logits.float().softmax(-1)
        top = p.max(-1)
        for i, scored in enumerate(windows.scored):
            s = windows.sentence[i]
            for pos, w in scored:
                tags[s][w] = names[int(top.indices[i, pos])]
                probs[s][w] = float(top.values[i, pos])
    out = []
    for text, row, t, pr in zip(texts, words, tags, probs, strict=True):
        found = []
        for kind, first, last in get_entities(t):
            start, end = row[first][1], row[last][2]
            score = sum(pr[first : last + 1]) / (last - first + 1)
            found.append(
                {"text": text[start:end], "type": kind, "start": start, "end": end,
                 "score": round(score, 4)}
            )  # fmt: skip
        out.append(found)
    return out
