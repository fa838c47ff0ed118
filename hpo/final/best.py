"""From a study to a model: retrain the best configuration with several seeds, test it, save it.

Selection uses the validation split only; the test split is scored once per retrained model and
never chooses anything, so the validation-test gap it reports is an honest check of whether the
search overfit the validation split (Dodge et al. 2020; Liu & Wang 2021).
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo import keys
from hpo.config.space import Hyperparameters
from hpo.errors import HpoError
from hpo.results.export import ensure_folder

if TYPE_CHECKING:
    import optuna

    from hpo.config.spec import StudySpec
    from hpo.search.objective import Objective, Prepared

BEST_ATTR = keys.BEST  # the retraining summary, stored in the study for `hpo report`


@dataclass
class SeedRun:
    """One retraining of a configuration with one seed."""

    seed: int
    validation: dict[str, float]
    test: dict[str, float] | None
    train_seconds: float


@dataclass
class ConfigResult:
    """All seeds of one configuration (a trial of the study)."""

    trial_number: int
    params: dict[str, Any]
    runs: list[SeedRun] = field(default_factory=list)

    def values(self, split: str, metric: str) -> list[float]:
        out = []
        for run in self.runs:
            scores = run.validation if split == "validation" else run.test
            if scores is not None and metric in scores:
                out.append(scores[metric])
        return out

    def mean_std(self, split: str, metric: str) -> tuple[float, float] | None:
        vals = self.values(split, metric)
        if not vals:
            return None
        return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0


def top_trials(study: optuna.Study, k: int, maximize: bool) -> list[optuna.trial.FrozenTrial]:
    """The k best complete, feasible trials."""
    from optuna.trial import TrialState

    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and not any(v > 0 for v in t.constraints.values())
    ]
    if not done:
        raise HpoError(f"study {study.study_name!r} has no complete trial to retrain yet")
    done.sort(key=lambda t: (-t.value if maximize else t.value, t.number))  # type: ignore[operator]
    return done[:k]


def hyperparameters(params: dict[str, Any], seed: int) -> Hyperparameters:
    """A trial's parameters as the loop's settings, with another seed; dimensions the trial did
    not sample (conditional ones, or ones added since) take their off values."""
    from hpo.strategies import dimensions

    known = dimensions()
    if "learning_rate" not in params:  # in every space; conditional dimensions may be absent
        raise HpoError(
            f"the trial lacks parameter 'learning_rate' ({sorted(params)}); was it made by hpo?"
        )
    return Hyperparameters({**{k: v for k, v in params.items() if k in known}, "seed": seed})


def retrain(
    objective: Objective,
    trials: Sequence[optuna.trial.FrozenTrial],
    seeds: Sequence[int],
    train_on: str = "train",
    on_run: Callable[[int, int, SeedRun], None] | None = None,
) -> tuple[list[ConfigResult], Any, int]:
    """Retrain each trial's configuration for the full budget once per seed; score val and test.

    Returns the results, a model of the configuration `choose` picks (its run best on
    validation; its first seed's run when validation is part of the training data), and that
    configuration's index in the results.
    """
    from hpo.training.loop import evaluate, train

    spec = objective.spec
    task = objective.task
    tests: dict[str, Any] = {}
    results: list[ConfigResult] = []
    kept: tuple[int, Any] = (0, None)  # the configuration chosen so far and its model
    maximize, by_validation = spec.direction == "maximize", train_on == "train"
    sign = 1.0 if maximize else -1.0
    for trial in trials:
        result = ConfigResult(trial.number, dict(trial.params))
        best: tuple[float, Any] | None = None  # this configuration's best run
        for seed in seeds:
            hp = hyperparameters(trial.params, seed)
            prep = objective.prepare(model=hp["model"] or None)
            if prep.model_name not in tests:  # tokenized once per model
                rows = prep.task.test
                tests[prep.model_name] = (
                    task.encode(rows, prep.tokenizer, spec.train.max_length) if rows else None
                )
            test = tests[prep.model_name]
            encoded, source = _training_data(prep, train_on, spec)
            train_data, make_batch = objective.training_rows(prep, hp, encoded, source)
            plan = objective.plan(hp, len(train_data))
            model, _ = objective.build_model(prep, hp)
            started = time.perf_counter()
            out = train(
                model,
                train_data,
                prep.validation,
                dataclasses.replace(plan, eval_every=plan.max_steps),
                prep.device,
                pad_id=prep.pad_id,
                make_batch=make_batch,
                task=task,
            )
            scores = None
            if test is not None:
                scores = evaluate(
                    model, test, prep.device, spec.train.eval_batch_size, prep.pad_id, task
                )
            run = SeedRun(seed, out.metrics, scores, time.perf_counter() - started)
            result.runs.append(run)
            if on_run is not None:
                on_run(trial.number, seed, run)
            key = sign * out.metrics[spec.study.metric] if by_validation else 0.0
            if best is None or key > best[0]:
                best = (key, model.cpu())
            else:
                del model
        results.append(result)
        assert best is not None
        if choose(results, spec.study.metric, maximize, by_validation) == len(results) - 1:
            kept = (len(results) - 1, best[1])
        del best  # not held while the next configuration trains
    return results, kept[1], kept[0]


def choose(
    results: Sequence[ConfigResult], metric: str, maximize: bool, by_validation: bool = True
) -> int:
    """The index of the configuration to keep: the best mean validation score over its seeds.

    One validation score is noisy, and the search's best trial is the highest of many noisy
    scores; the mean over several seeds ranks configurations the way held-out data does far
    more often. Without validation scores (e.g. trained on train+validation) the search's own
    order stands. Ties keep the earlier configuration.
    """
    means = [r.mean_std("validation", metric) for r in results]
    if not by_validation or any(m is None for m in means):
        return 0
    sign = 1.0 if maximize else -1.0
    keys = [sign * m[0] for m in means if m is not None]
    return keys.index(max(keys))


def _training_data(prep: Prepared, train_on: str, spec: StudySpec) -> tuple[Any, Any]:
    """The encoded rows to train on and their raw split (for augmentation)."""
    from hpo.data.dataset import Encoded, Split

    if train_on == "train":
        return prep.train, prep.task.train
    a, b = prep.train, prep.validation
    types = None
    if a.token_type_ids is not None and b.token_type_ids is not None:
        types = a.token_type_ids + b.token_type_ids
    encoded = Encoded(a.input_ids + b.input_ids, types, a.label + b.label)
    ta, tb = prep.task.train, prep.task.validation
    pair = ta.text_pair + tb.text_pair if ta.text_pair is not None and tb.text_pair else None
    return encoded, Split(ta.text + tb.text, pair, ta.label + tb.label)


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
