"""The model card a saved model folder carries (its README.md): what was tuned, how it scored
over its retraining seeds, where the data came from, the privacy it spent, and how to load and
call it, as the model read its input in training (``saved.input_facts``)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.final.saved import input_facts

if TYPE_CHECKING:
    from hpo.config.spec import StudySpec
    from hpo.final.best import ConfigResult


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
        "per_type": per_type(kept, "test") or per_type(kept, "validation"),
    }


def over_seeds(mean: float, std: float, seeds: list[int]) -> str:
    """A retrained score over its seeds: the mean and its spread, or one run's score alone (a
    spread of one run is not 0, it is unknown)."""
    return f"{mean:.4f}" + (f" ± {std:.4f}" if len(seeds) > 1 else " (one seed)")


def per_type(result: ConfigResult, split: str) -> dict[str, float]:
    """Mean F1 per entity type over a configuration's runs (token classification; else empty)."""
    from hpo.tasks.token_classification import per_type_f1

    scores = [per_type_f1(r.test if split == "test" else r.validation) for r in result.runs]
    kinds = sorted({k for run in scores for k in run})
    return {k: round(statistics.fmean(run[k] for run in scores if k in run), 4) for k in kinds}


def _privacy_lines(results: list[ConfigResult], chosen: int) -> list[str]:
    """The model card's privacy section, for a model trained with DP-SGD: the (epsilon,
    delta) its saved run spent, and what that guarantee does not cover."""
    run = results[chosen].runs[results[chosen].saved]
    if run.epsilon is None or run.delta is None:
        return []
    others = sum(len(r.runs) for r in results) - 1
    return [
        "## Privacy",
        "",
        f"Trained with DP-SGD (opacus): the saved run spent epsilon = {run.epsilon:.3f} at delta "
        f"= {run.delta:.2e} on its training data. "
        + (
            f"The {others} other retraining run(s) were discarded, not released; choosing "
            "among runs by their validation score, and the search's own trials, are not "
            "counted in that epsilon."
            if others
            else "The search's own trials are not counted in that epsilon."
        ),
        "",
    ]


def _shown_model(name: str) -> str:
    """The model as a card shared with others names it: a hub id as it is, a local folder by
    its own name (its full path says where it sat on this machine, which a card should not)."""
    return Path(name).name if Path(name).is_absolute() else name


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
    tokens = spec.study.task == "token_classification"
    what = "Named-entity recognition (token classification)" if tokens else "Text classification"
    auto = "AutoModelForTokenClassification" if tokens else "AutoModelForSequenceClassification"
    source = (
        data.hub
        or data.package
        or ", ".join(f"{k}: {Path(v).name}" for k, v in (data.files or {}).items())
    )
    held_out = train_on == "train"  # else validation was trained on: no held-out score
    # the chosen configuration's model: a `model` dimension's choice, else the study's model
    base = str(results[chosen].params.get("model") or spec.model.name)
    lines = [
        f"# {study_name}: fine-tuned {_shown_model(base)}",
        "",
        f"{what} fine-tuned by `hpo` from study `{study_name}`: "
        + (
            f"of the search's best {len(results)} configurations, the one best on validation "
            "over all its seeds"
            if len(results) > 1
            else "the best configuration of the search"
        )
        + f" (trial #{facts['trial']}), retrained on {train_on} with seeds {facts['seeds']}; "
        + (
            "this folder holds its run that scored best on validation."
            if held_out
            else f"this folder holds the run with seed {facts['seeds'][0]}, the first (validation "
            "is in its training data, so it cannot choose between the runs)."
        ),
        "",
        "## Hyperparameters",
        "",
        *(
            f"- `{k}`: {_shown_model(str(v)) if k == 'model' else v}"
            for k, v in results[chosen].params.items()
            if k != "seed"
        ),
        "",
        f"## Results ({metric})",
        "",
        "| configuration | validation"
        + ("" if held_out else ", trained on")
        + " (mean ± sd) | test (mean ± sd) |",
        "| --- | --- | --- |",
    ]
    for r in results:
        v, t = r.mean_std("validation", metric), r.mean_std("test", metric)
        cell = lambda x: f"{x[0]:.4f} ± {x[1]:.4f}" if x else "n/a"  # noqa: E731
        lines.append(f"| trial #{r.trial_number} | {cell(v)} | {cell(t)} |")
    lines += [""]
    if facts["per_type"]:
        split = "test" if results[chosen].values("test", metric) else "validation"
        lines += [
            f"F1 per entity type ({split}, mean over seeds of trial #{facts['trial']}):",
            "",
            "| type | F1 |",
            "| --- | --- |",
            *(f"| {k} | {v:.4f} |" for k, v in facts["per_type"].items()),
            "",
        ]
    lines += _privacy_lines(results, chosen)
    if search_value is not None:
        lines.append(
            f"During the search this configuration scored {search_value:.4f} on validation."
        )
    if facts["gap"] is not None and held_out:
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
        (
            f"- words and tags: CoNLL columns or `{data.tokens_column}` / `{data.tags_column}`, "
            f"read as {data.tag_scheme}, trained as IOB2"
            if tokens
            else f"- text column `{data.text_column}`"
            + (f", pair column `{data.text_pair_column}`" if data.text_pair_column else "")
            + f", label column `{data.label_column}`"
        ),
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
                f"from transformers import {auto}, AutoTokenizer",
                f'model = {auto}.from_pretrained("THIS_FOLDER")',
            ]
        ),
        'tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER")',
        *_card_encoding(spec),
        "```",
        "",
        *_card_input(spec),
        "",
    ]
    return "\n".join(lines)


def _card_encoding(spec: StudySpec) -> list[str]:
    """The card's lines that encode a text (or a text pair) as training did."""
    if spec.study.task == "token_classification":
        return []
    facts = input_facts(spec)
    texts = '["some text"]'
    if "pair" in facts:
        texts = f'["the {facts["pair"][0]}"], ["the {facts["pair"][1]}"]'
    return [
        f'inputs = tokenizer({texts}, truncation=True, return_tensors="pt")',
        "label = model.config.id2label[int(model(**inputs).logits.argmax(-1)[0])]",
    ]


def _card_input(spec: StudySpec) -> list[str]:
    """The card's lines on what the model reads: the length its scores were measured at,
    and the shell command, in its text-pair form for a pair model."""
    n = spec.train.max_length
    if spec.study.task == "token_classification":
        return [
            f"The model was trained and scored on at most {n} tokens at a time "
            "(`train.max_length`, the saved tokenizer's `model_max_length`): a longer sentence "
            "was split into overlapping windows, as `hpo predict` splits it.",
            "",
            'or from the shell: `hpo predict THIS_FOLDER "some text"` (prints the entities: '
            "text, type, score).",
        ]
    pair = input_facts(spec).get("pair")
    shell = 'or from the shell: `hpo predict THIS_FOLDER "some text"`.'
    if pair:
        shell = (
            f"or from the shell, each pair as its two texts separated by a tab (the `{pair[0]}`, "
            f"then the `{pair[1]}`): `hpo predict THIS_FOLDER $'the {pair[0]}\\tthe {pair[1]}'`."
        )
    return [
        f"The model was trained and scored on inputs cut to {n} tokens (`train.max_length`): the "
        f"saved tokenizer's `model_max_length` is {n}, so `truncation=True` cuts there; with "
        f"a tokenizer loaded elsewhere pass `truncation=True, max_length={n}`, as `hpo predict` "
        "does.",
        "",
        shell,
    ]
