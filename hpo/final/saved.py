"""The saved model: written with its tokenizer and model card, loaded back, asked to predict.

LoRA adapters are folded into the weights before saving, so the folder loads without ``peft``;
a hidden-layer head is recorded in the config and rebuilt by ``load_model``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.errors import HpoError
from hpo.results.export import ensure_folder

if TYPE_CHECKING:
    from hpo.config.spec import StudySpec
    from hpo.final.best import ConfigResult
    from hpo.search.objective import Prepared


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
) -> Path:
    """Write the model and tokenizer in Hugging Face format plus a model card (README.md);
    ``chosen`` indexes the configuration in ``results`` that the model was trained with."""
    ensure_folder(out)
    model = plain_model(model)
    names = prep.task.label_names
    model.config.id2label = dict(enumerate(names))
    model.config.label2id = {n: i for i, n in enumerate(names)}
    model.save_pretrained(out)
    prep.tokenizer.save_pretrained(out)
    (out / "README.md").write_text(
        model_card(spec, study_name, results, train_on, search_value, chosen), encoding="utf-8"
    )
    (out / "hpo_results.json").write_text(
        json.dumps([dataclasses.asdict(r) for r in results], indent=1), encoding="utf-8"
    )
    return out


def plain_model(model: Any) -> Any:
    """The ``transformers`` model to save: LoRA adapters folded into the weights (so it loads
    without ``peft``), anything else as it is."""
    if hasattr(model, "merge_and_unload"):
        return model.merge_and_unload()
    return model


def load_model(folder: str | Path) -> Any:
    """Load a model saved by ``hpo best``, with the head it was tuned with.

    A model with the model's own head loads with ``AutoModelForSequenceClassification`` too;
    one with a hidden-layer head (``head_hidden_units``) needs this function, which rebuilds the
    head its config records (``hpo_head``) before reading the weights."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    from hpo.models.pretrained import quiet_transformers
    from hpo.strategies.head import HEAD_CONFIG, build_hidden_head

    quiet_transformers()
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise HpoError(f"{folder} is not a saved model folder (no config.json); see `hpo best`")
    config = AutoConfig.from_pretrained(folder)
    head = getattr(config, HEAD_CONFIG, None)
    if not head:
        return AutoModelForSequenceClassification.from_pretrained(folder)
    import torch
    from safetensors.torch import load_file

    model = AutoModelForSequenceClassification.from_config(config)
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
        raise HpoError(f"{folder}: the saved weights lack {missing[0]}; was it saved by hpo best?")
    return model


def summary(
    results: list[ConfigResult], metric: str, search_value: float | None, chosen: int = 0
) -> dict[str, Any]:
    """The facts stored in the study and printed for the chosen configuration: mean and spread
    per split, and the gap."""
    kept = results[chosen]
    val = kept.mean_std("validation", metric)
    test = kept.mean_std("test", metric)
    return {
        "trial": kept.trial_number,
        "metric": metric,
        "seeds": [r.seed for r in kept.runs],
        "search_value": search_value,
        "validation_mean": val[0] if val else None,
        "validation_std": val[1] if val else None,
        "test_mean": test[0] if test else None,
        "test_std": test[1] if test else None,
        "gap": (val[0] - test[0]) if val and test else None,
    }


def model_card(
    spec: StudySpec,
    study_name: str,
    results: list[ConfigResult],
    train_on: str,
    search_value: float | None,
    chosen: int = 0,
) -> str:
    """A short model card: what was tuned, how it scored, where the data came from."""
    metric = spec.study.metric
    facts = summary(results, metric, search_value, chosen)
    data = spec.data
    source = (
        data.hub
        or data.package
        or ", ".join(f"{k}: {Path(v).name}" for k, v in (data.files or {}).items())
    )
    lines = [
        f"# {study_name}: fine-tuned {spec.model.name}",
        "",
        f"Text classification fine-tuned by `hpo` from study `{study_name}`: "
        + (
            f"of the search's best {len(results)} configurations, the one best on validation "
            "over all its seeds"
            if len(results) > 1
            else "the best configuration of the search"
        )
        + f" (trial #{facts['trial']}), retrained on {train_on} with seeds {facts['seeds']}; "
        "this folder holds its run that scored best on validation.",
        "",
        "## Hyperparameters",
        "",
        *(f"- `{k}`: {v}" for k, v in results[chosen].params.items() if k != "seed"),
        "",
        f"## Results ({metric})",
        "",
        "| configuration | validation (mean ± sd) | test (mean ± sd) |",
        "| --- | --- | --- |",
    ]
    for r in results:
        v, t = r.mean_std("validation", metric), r.mean_std("test", metric)
        cell = lambda x: f"{x[0]:.4f} ± {x[1]:.4f}" if x else "n/a"  # noqa: E731
        lines.append(f"| trial #{r.trial_number} | {cell(v)} | {cell(t)} |")
    lines += [""]
    if search_value is not None:
        lines.append(
            f"During the search this configuration scored {search_value:.4f} on validation."
        )
    if facts["gap"] is not None:
        lines.append(
            f"Validation minus test: {facts['gap']:+.4f} (a large positive gap means the search "
            "overfit the validation split)."
        )
    elif train_on != "train":
        lines.append(
            "Validation was part of the training data, so its score is not a held-out one."
        )
    lines += [
        "",
        "## Data",
        "",
        f"- source: {source}" + (f" (config {data.config})" if data.config else ""),
        f"- text column `{data.text_column}`"
        + (f", pair column `{data.text_pair_column}`" if data.text_pair_column else "")
        + f", label column `{data.label_column}`",
        "",
        "## Use",
        "",
        "```python",
        *(
            [
                "import hpo  # the head has a hidden layer (head_hidden_units): hpo rebuilds it",
                "from transformers import AutoTokenizer",
                'model = hpo.load_model("THIS_FOLDER")',
            ]
            if results[chosen].params.get("head_hidden_units")
            else [
                "from transformers import AutoModelForSequenceClassification, AutoTokenizer",
                'model = AutoModelForSequenceClassification.from_pretrained("THIS_FOLDER")',
            ]
        ),
        'tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER")',
        "```",
        "",
        'or from the shell: `hpo predict THIS_FOLDER "some text"`.',
        "",
    ]
    return "\n".join(lines)


def predict(folder: Path, texts: Sequence[str]) -> list[tuple[str, float]]:
    """Label and probability for each text, from a saved model folder."""
    import torch
    from transformers import AutoTokenizer

    model = load_model(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model.eval()
    batch = tokenizer(list(texts), truncation=True, padding=True, return_tensors="pt")
    with torch.inference_mode():
        probs = model(**batch).logits.softmax(-1)
    top = probs.max(-1)
    labels = model.config.id2label
    return [(str(labels[int(i)]), float(p)) for p, i in zip(top.values, top.indices, strict=True)]
