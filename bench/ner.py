"""Named-entity recognition on WNUT-17: the Hugging Face Trainer's recipe and search, scored alike.

Protocol "WNUT-17": ../shared/data/wnut17, CoNLL files of token<TAB>tag, IOB2 tags over six
entity types (corporation, creative-work, group, location, person, product). Train:
wnut17train.conll (3,394 sentences); tuning validation: emerging.dev.conll (1,009), the only
split a search sees; held-out test: emerging.test.annotated (1,287), scored once per final model.
The bundled MiniLM-L6 under AutoModelForTokenClassification, max length 128, batch 16, one epoch
per trial (213 steps), evaluated every 50 steps (and at the last step), 12 trials. Methods:

  hf-recipe    the untuned recipe of Hugging Face's examples/pytorch/token-classification/
               run_ner.py: lr 5e-5, linear decay, no warmup, weight decay 0, one epoch; labels
               on the first sub-token of each word only (-100 elsewhere: run_ner's
               tokenize_and_align_labels with label_all_tokens False), sentences cut at max
               length, DataCollatorForTokenClassification, trained by the Trainer with its
               fastest settings: fused AdamW (optim="adamw_torch_fused") and its length-grouping
               sampler (train_sampling_strategy="group_by_length"). Trained with seeds 0, 1, 2;
               it searches nothing, so its samples are one run's and its row is the same for
               every sampler seed (run once, reused).
  hf-search    Trainer.hyperparameter_search(backend="optuna", n_trials=12, direction="maximize")
               over learning rate (log, 1e-5..2e-4), warmup ratio (0..0.2) and lr_scheduler_type
               (linear, cosine, constant_with_warmup), TPESampler(seed=sampler seed) and optuna's
               default MedianPruner(), which the Trainer passes to optuna.create_study. Every
               trial is the recipe above with the sampled values, training seed 0, and reports
               entity F1 on the validation split every 50 steps, computed as run_ner.py does:
               positions labelled -100 dropped, seqeval in its default mode, micro F1 (run_ner's
               overall_f1). Its best configuration is then retrained by the Trainer with seeds 0,
               1, 2. Samples are counted per trial from the Trainer's global step (a pruned trial
               stops at the evaluation that pruned it), as training rows actually seen.

  hpo-recipe   the same recipe (lr 5e-5, no warmup, linear, weight decay 0, nothing frozen or
               augmented) trained in hpo's loop with seeds 0, 1, 2: its samples per second
               beside hf-recipe's compare the two loops on equal terms (both warm: later runs
               in the process).
  hpo          hpo's default search: a study that names only the task, the data, the model and
               the budget (12 trials of one epoch, evaluation every 50 steps), so TPE seeded
               with the sampler seed, the median pruner and the default space (learning rate
               1e-5..1e-4 log, warmup ratio 0..0.2, schedule, frozen layers 0..3, augmentation
               strength 0..0.3; batch 16, weight decay 0.01); its best trial retrained by `hpo
               best`'s code with seeds 0, 1, 2. Samples: the training rows of every trial.
  hpo-3d       hpo's search (TPE, median pruner) over hf-search's space only: learning rate
               (log, 1e-5..2e-4), warmup ratio (0..0.2), the three schedules, weight decay 0,
               nothing frozen or augmented; hpo's machinery on the peer's terms.

Every final model, whichever method trained it, is scored on the test split by one scorer,
hpo's own evaluation (hpo.training.loop.evaluate with the token_classification task): each word
is scored once, a sentence longer than 128 sub-tokens is cut into overlapping windows rather
than truncated, and entity F1 is seqeval's micro F1 over the test's original words. A method
reports that F1 per retraining seed, its mean and sample standard deviation: one fine-tuning
run's luck is about as large as the differences between methods.

Compute: samples are training rows a method spent before its final retraining (hf-search: all
its trials, pruned ones to where they stopped; hf-recipe: its one run); "search s" the wall time
of the search, "wall s" everything (search, retraining with 3 seeds, scoring). For the recipe
the row also keeps the Trainer's own train_samples_per_second of each run: the first run of the
process is cold, the later ones (a fresh model and Trainer in the same process) warm.

A method is a function ``(setup, sampler_seed) -> row`` in METHODS; ``finals`` turns the final
models' test scores into the row keys the tables read, so an added method (hpo's own search)
needs only to train its final models and hand each to ``score_test``.

    python bench/ner.py --json ner.json                  # every method, sampler seed 0
    python bench/ner.py --methods hf-search --seeds 0 1 --json ner.json
    python bench/ner.py --from-json ner.json more.json   # tables of saved runs
    python bench/ner.py --quick --model DIR --train a.conll --validation b.conll \\
        --test c.conll                                  # 2 trials of 10 steps, a smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common import SST2, run_hf_search, step_counter

WNUT17 = SST2.parent / "wnut17"  # ../shared/data/wnut17 beside the repository
FILES = {
    "train": "wnut17train.conll",
    "validation": "emerging.dev.conll",
    "test": "emerging.test.annotated",
}
SCHEDULES = ["linear", "cosine", "constant_with_warmup"]
LR_LOW, LR_HIGH = 1e-5, 2e-4
BATCH = 16
EVAL_BATCH = 128
MAX_LENGTH = 128  # sub-word tokens per sentence, the protocol's cut
EVAL_EVERY = 50
TRIALS = 12
RETRAIN_SEEDS = (0, 1, 2)
# run_ner.py's defaults: TrainingArguments' lr, schedule, warmup and weight decay
RECIPE = {"learning_rate": 5e-5, "warmup_ratio": 0.0, "lr_scheduler_type": "linear"}
# --quick: sentences kept per split (train, validation, test), trials, steps, evaluation period
QUICK_SENTENCES = (64, 32, 32)
QUICK_TRIALS, QUICK_STEPS, QUICK_EVAL_EVERY = 2, 10, 5


@dataclass
class Setup:
    """What every method shares: the study spec (model, data files, max length), the data as hpo
    reads it, the same data tokenized for the Trainer, the test scorer's windows, the budget."""

    spec: Any  # hpo StudySpec of the protocol: an hpo method builds its study on it
    model_path: str  # the model's local folder (or hub id)
    max_length: int
    trials: int
    max_steps: int  # per trial and per final run; -1: one epoch
    eval_every: int
    retrain_seeds: tuple[int, ...]
    folder: Path  # scratch: the Trainer's output_dir
    task: Any  # hpo's token_classification task
    data: Any  # hpo's TokenData: train, validation, test and label_names
    tokenizer: Any
    test_windows: Any  # the test split encoded by hpo, for score_test
    hf: dict[str, Any]  # "train", "validation": datasets.Dataset tokenized as run_ner.py does

    @property
    def label_names(self) -> list[str]:
        return list(self.data.label_names)

    @property
    def n_train(self) -> int:
        return len(self.data.train)

    def rows_seen(self, steps: int) -> int:
        """Training rows in the first ``steps`` batches (an epoch's last batch is short)."""
        per_epoch = math.ceil(self.n_train / BATCH)
        epochs, rest = divmod(steps, per_epoch)
        return epochs * self.n_train + min(rest * BATCH, self.n_train)


# ---------------------------------------------------------------- data and scoring


def first_sentences(split: Any, n: int) -> Any:
    """The first ``n`` sentences of an hpo TokenSplit (--quick)."""
    return dataclasses.replace(split, tokens=split.tokens[:n], tags=split.tags[:n])


def run_ner_dataset(tokens: list[list[str]], tags: list[list[int]], tokenizer: Any, n: int) -> Any:
    """Sentences tokenized as run_ner.py's tokenize_and_align_labels does (label_all_tokens
    False): truncated at ``n`` sub-tokens, a word's label on its first sub-token, -100 on the
    special tokens and on every later sub-token."""
    import datasets

    def align(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        enc = tokenizer(batch["tokens"], truncation=True, max_length=n, is_split_into_words=True)
        labels = []
        for i, words in enumerate(batch["ner_tags"]):
            row, previous = [], None
            for word in enc.word_ids(batch_index=i):
                row.append(-100 if word is None or word == previous else words[word])
                previous = word
            labels.append(row)
        enc["labels"] = labels
        return enc

    table = datasets.Dataset.from_dict({"tokens": tokens, "ner_tags": tags})
    return table.map(align, batched=True, remove_columns=table.column_names)


def score_test(s: Setup, model: Any) -> dict[str, float]:
    """hpo's evaluation of ``model`` on the test split: the one scorer of every method."""
    from hpo.training.loop import evaluate, pick_device

    pad = int(s.tokenizer.pad_token_id or 0)
    return evaluate(model, s.test_windows, pick_device("cpu"), EVAL_BATCH, pad, s.task)


def finals(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The row keys of a method's final models (one dict per retraining seed, each with ``seed``
    and ``test``, score_test's metrics): test entity F1 per seed, mean and sample sd."""
    f1 = [r["test"]["entity_f1"] for r in runs]
    return {
        "retrain_seeds": [r["seed"] for r in runs],
        "test_f1": f1,
        "test_f1_mean": statistics.fmean(f1),
        "test_f1_sd": statistics.stdev(f1) if len(f1) > 1 else 0.0,
        "test_precision_mean": statistics.fmean(r["test"]["entity_precision"] for r in runs),
        "test_recall_mean": statistics.fmean(r["test"]["entity_recall"] for r in runs),
        "final_runs": runs,
    }


# ---------------------------------------------------------------- the Trainer


def quiet() -> None:
    import datasets
    import transformers as hf

    hf.logging.set_verbosity_error()
    hf.logging.disable_progress_bar()  # "Loading weights" bars
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", module="seqeval")  # no entity predicted yet: F1 is 0


def load_model(s: Setup) -> Any:
    """The pretrained encoder under a fresh token-classification head, hpo's labels."""
    import transformers as hf

    names = s.label_names
    return hf.AutoModelForTokenClassification.from_pretrained(
        s.model_path,
        num_labels=len(names),
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )


def trainer_args(s: Setup, name: str, seed: int, evaluate: bool, **params: Any) -> Any:
    """TrainingArguments of the recipe, with ``params`` (learning_rate, warmup_ratio,
    lr_scheduler_type) over its defaults; evaluation every ``eval_every`` steps if asked."""
    import transformers as hf

    p = {**RECIPE, **params}
    return hf.TrainingArguments(
        output_dir=str(s.folder / name), per_device_train_batch_size=BATCH,
        per_device_eval_batch_size=EVAL_BATCH, num_train_epochs=1, max_steps=s.max_steps,
        learning_rate=p["learning_rate"], lr_scheduler_type=p["lr_scheduler_type"],
        # a float: a ratio of the steps when below 1; the search's values are cast to its type
        warmup_steps=float(p["warmup_ratio"]), weight_decay=0.0,
        optim="adamw_torch_fused", train_sampling_strategy="group_by_length",
        eval_strategy="steps" if evaluate else "no", eval_steps=s.eval_every if evaluate else None,
        logging_strategy="no", save_strategy="no", report_to=[], disable_tqdm=True, use_cpu=True,
        dataloader_num_workers=0, seed=seed,
    )  # fmt: skip


def make_trainer(s: Setup, args: Any, callbacks: list[Any] | None = None, **kw: Any) -> Any:
    import transformers as hf

    trainer = hf.Trainer(
        args=args, train_dataset=s.hf["train"], eval_dataset=s.hf["validation"],
        data_collator=hf.DataCollatorForTokenClassification(s.tokenizer),
        processing_class=s.tokenizer, callbacks=callbacks, **kw,
    )  # fmt: skip
    trainer.remove_callback(hf.PrinterCallback)  # it prints every log when tqdm is off
    return trainer


def train_final(s: Setup, name: str, seed: int, params: dict[str, Any]) -> dict[str, Any]:
    """One final model: the Trainer with ``params`` and training ``seed`` (which also draws
    the new head, as run_ner.py seeds before loading), then hpo's test score."""
    import transformers as hf

    start = time.perf_counter()
    hf.set_seed(seed)
    trainer = make_trainer(s, trainer_args(s, f"{name}-{seed}", seed, False, **params),
                           model=load_model(s))  # fmt: skip
    t0 = time.perf_counter()
    out = trainer.train()
    train_s = time.perf_counter() - t0
    test = score_test(s, trainer.model)
    return {
        "seed": seed, "test": test, "steps": out.global_step,
        "samples": s.rows_seen(out.global_step), "train_s": train_s,
        "samples_per_s": out.metrics.get("train_samples_per_second"),
        "wall_s": time.perf_counter() - start,
    }  # fmt: skip


def retrain(s: Setup, method: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], float]:
    """``params`` trained with each retraining seed and scored on the test; the wall time."""
    from rich.console import Console

    start = time.perf_counter()
    runs = []
    for seed in s.retrain_seeds:
        Console(stderr=True, soft_wrap=True).print(
            f"[dim]  {method}: final model, seed {seed} ...[/dim]"
        )
        runs.append(train_final(s, method, seed, params))
    return runs, time.perf_counter() - start


def method_hf_recipe(s: Setup, seed: int) -> dict[str, Any]:
    """run_ner.py's recipe, untuned, trained with each retraining seed."""
    runs, wall = retrain(s, "hf-recipe", RECIPE)
    return recipe_row("hf-recipe", seed, RECIPE, runs, wall)


def recipe_row(
    method: str, seed: int, params: dict[str, Any], runs: list[dict[str, Any]], wall: float
) -> dict[str, Any]:
    """The row of a recipe trained once per retraining seed: one run's samples, and its speed
    cold (the process's first run) and warm (the mean of the later ones)."""
    speeds = [r["samples_per_s"] for r in runs]
    return {
        "method": method, "seed": seed, "best_validation": None, "params": params,
        "samples": runs[0]["samples"], "search_s": 0.0, "retrain_s": wall, "wall_s": wall,
        "trials": 1, "pruned": 0,
        "samples_per_s_cold": speeds[0],
        "samples_per_s_warm": statistics.fmean(speeds[1:]) if len(speeds) > 1 else None,
        **finals(runs),
    }  # fmt: skip


def seqeval_metrics(label_names: list[str]) -> Callable[[Any], dict[str, float]]:
    """run_ner.py's compute_metrics: argmax, positions labelled -100 dropped, seqeval's default
    mode; the entity-level micro scores and the token accuracy, named as run_ner names them."""
    import numpy as np
    from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

    def compute(pred: Any) -> dict[str, float]:
        best = np.argmax(pred.predictions, axis=2)
        gold, guess = [], []
        for p_row, y_row in zip(best, pred.label_ids, strict=True):
            keep = [(p, y) for p, y in zip(p_row, y_row, strict=True) if y != -100]
            guess.append([label_names[p] for p, _ in keep])
            gold.append([label_names[y] for _, y in keep])
        return {
            "overall_precision": float(precision_score(gold, guess)),
            "overall_recall": float(recall_score(gold, guess)),
            "overall_f1": float(f1_score(gold, guess)),
            "overall_accuracy": float(accuracy_score(gold, guess)),
        }

    return compute


def method_hf_search(s: Setup, seed: int) -> dict[str, Any]:
    """Trainer.hyperparameter_search with optuna; its best configuration retrained by the
    Trainer with each retraining seed."""
    import optuna

    start = time.perf_counter()

    def hp_space(trial: optuna.Trial) -> dict[str, Any]:
        return {
            "learning_rate": trial.suggest_float("learning_rate", LR_LOW, LR_HIGH, log=True),
            "warmup_steps": trial.suggest_float("warmup_ratio", 0.0, 0.2),  # < 1: a ratio
            "lr_scheduler_type": trial.suggest_categorical("lr_scheduler_type", SCHEDULES),
        }

    counter = step_counter()
    trainer = make_trainer(
        s, trainer_args(s, f"hf-search-{seed}", 0, True), [counter],
        model_init=lambda: load_model(s), compute_metrics=seqeval_metrics(s.label_names),
    )  # fmt: skip
    value, best, trials = run_hf_search(
        trainer, hp_space, "eval_overall_f1", s.trials, seed, counter
    )
    search_s = time.perf_counter() - start
    # the Trainer casts a sampled value to the type of the argument's current value: warmup
    # stays a ratio only because trainer_args passes a float (the field's default is int 0)
    assert trainer.args.warmup_steps == trials[-1].params["warmup_ratio"]
    params = {k: best[k] for k in ("learning_rate", "warmup_ratio", "lr_scheduler_type")}
    del trainer
    runs, retrain_s = retrain(s, "hf-search", params)
    curves = [
        {"number": t.number, "state": t.state.name, "value": t.value, "params": dict(t.params),
         "samples": s.rows_seen(n),
         "values": {str(k): v for k, v in sorted(t.intermediate_values.items())}}
        for t, n in zip(trials, counter.steps, strict=True)
    ]  # fmt: skip
    return {
        "method": "hf-search", "seed": seed, "best_validation": value, "params": params,
        "samples": sum(c["samples"] for c in curves), "trial_steps": counter.steps,
        "search_s": search_s, "retrain_s": retrain_s, "wall_s": search_s + retrain_s,
        "trials": len(trials),
        "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in trials),
        "samples_per_s_warm": statistics.fmean(r["samples_per_s"] for r in runs),
        **finals(runs), "curves": curves,
    }  # fmt: skip


def method_hpo(
    s: Setup, seed: int, method: str = "hpo", space: dict[str, Any] | None = None
) -> dict[str, Any]:
    """hpo's default search, as a study file that names only the task, data, model and budget
    gets it: TPE (sampler seed ``seed``), the median pruner, the default space (learning rate,
    warmup, schedule, frozen layers, augmentation strength), or ``space``; its best trial
    retrained by ``hpo best``'s code with each retraining seed and scored on the test by the
    same scorer."""
    from optuna.trial import TrialState

    from hpo import keys
    from hpo.execution.storage import open_storage
    from hpo.execution.workers import work
    from hpo.final.best import retrain as hpo_retrain
    from hpo.final.best import top_trials
    from hpo.search.objective import Objective
    from hpo.search.study import create_or_resume

    budget: dict[str, Any] = {"eval_every": s.eval_every, "eval_batch_size": EVAL_BATCH}
    if s.max_steps > 0:
        budget["max_steps"] = s.max_steps
    spec = (
        s.spec.replace("study", name=f"{method}-{seed}", n_trials=s.trials)
        .replace("sampler", seed=seed)
        .replace("train", **budget)
    )
    if space is not None:
        spec = spec.replace("space", **space)

    start = time.perf_counter()
    objective = Objective(spec)
    db = s.folder / f"{method}-{seed}.db"
    study, _ = create_or_resume(spec, open_storage(f"sqlite:///{db}"))
    work(study, objective, s.trials)
    search_s = time.perf_counter() - start
    ran = [t for t in study.get_trials() if t.state != TrialState.WAITING]
    best = top_trials(study, 1, maximize=True)[0]
    start = time.perf_counter()
    results, _, _ = hpo_retrain(objective, [best], list(s.retrain_seeds))
    retrain_s = time.perf_counter() - start
    runs = [{"seed": r.seed, "test": r.test} for r in results[0].runs]
    speeds = [float(t.user_attrs[keys.SAMPLES_PER_SECOND]) for t in ran
              if keys.SAMPLES_PER_SECOND in t.user_attrs]  # fmt: skip
    return {
        "method": method, "seed": seed, "best_validation": best.value, "params": dict(best.params),
        "samples": sum(int(t.user_attrs.get(keys.TRAIN_SAMPLES, 0)) for t in ran),
        "trial_steps": [int(t.user_attrs.get(keys.STEPS, 0)) for t in ran],
        "search_s": search_s, "retrain_s": retrain_s, "wall_s": search_s + retrain_s,
        "trials": len(ran), "pruned": sum(t.state == TrialState.PRUNED for t in ran),
        "samples_per_s_cold": speeds[0] if speeds else None,
        "samples_per_s_warm": statistics.fmean(speeds[1:]) if len(speeds) > 1 else None,
        **finals(runs),
        "curves": [
            {"number": t.number, "state": t.state.name, "value": t.value,
             "params": dict(t.params), "samples": int(t.user_attrs.get(keys.TRAIN_SAMPLES, 0)),
             "values": {str(k): v for k, v in sorted(t.intermediate_values.items())}}
            for t in ran
        ],
    }  # fmt: skip


def method_hpo_recipe(s: Setup, seed: int) -> dict[str, Any]:
    """The recipe of hf-recipe trained in hpo's loop (the same settings: lr 5e-5, no warmup,
    linear decay, weight decay 0, nothing frozen or augmented) with each retraining seed: its
    samples per second beside the Trainer's are the two loops on equal terms."""
    from hpo import keys
    from hpo.final.best import hyperparameters
    from hpo.search.objective import Objective
    from hpo.training.loop import train

    budget: dict[str, Any] = {"eval_every": s.eval_every, "eval_batch_size": EVAL_BATCH}
    if s.max_steps > 0:
        budget["max_steps"] = s.max_steps
    objective = Objective(s.spec.replace("train", **budget))
    prep = objective.prepare()
    params = {"learning_rate": RECIPE["learning_rate"], "warmup_ratio": 0.0,
              "lr_schedule": "linear", "frozen_layers": 0, "augmentation_strength": 0.0,
              "batch_size": BATCH, "weight_decay": 0.0}  # fmt: skip
    start = time.perf_counter()
    runs = []
    for retrain_seed in s.retrain_seeds:
        hp = hyperparameters(params, retrain_seed)
        plan = objective.plan(hp, len(prep.train))
        model, _ = objective.build_model(prep, hp)
        out = train(model, prep.train, prep.validation,
                    dataclasses.replace(plan, eval_every=plan.max_steps), prep.device,
                    pad_id=prep.pad_id, task=objective.task)  # fmt: skip
        runs.append({"seed": retrain_seed, "test": score_test(s, model),
                     "samples": out.train_samples, "samples_per_s": out.samples_per_second,
                     keys.STEPS: out.steps})  # fmt: skip
    return recipe_row("hpo-recipe", seed, params, runs, time.perf_counter() - start)


def method_hpo_3d(s: Setup, seed: int) -> dict[str, Any]:
    """hpo's search (TPE, median pruner) over hf-search's space, nothing else: lr 1e-5..2e-4
    (log), warmup ratio 0..0.2, the three schedules, weight decay 0, nothing frozen or
    augmented; hpo's machinery on the peer's terms."""
    space = {
        "learning_rate": {"low": LR_LOW, "high": LR_HIGH, "log": True},
        "warmup_ratio": {"low": 0.0, "high": 0.2},
        "lr_schedule": SCHEDULES,
        "frozen_layers": 0,
        "augmentation_strength": 0.0,
        "weight_decay": 0.0,
    }
    return method_hpo(s, seed, "hpo-3d", space)


METHODS: dict[str, Callable[[Setup, int], dict[str, Any]]] = {
    "hf-recipe": method_hf_recipe,
    "hf-search": method_hf_search,
    "hpo-recipe": method_hpo_recipe,
    "hpo": method_hpo,
    "hpo-3d": method_hpo_3d,
}
SEED_FREE = ("hf-recipe", "hpo-recipe")  # no sampler: the same row for every sampler seed


# ---------------------------------------------------------------- setup, tables, main


def make_setup(args: argparse.Namespace, folder: Path) -> Setup | str:
    """The protocol's (or the given) data read by hpo and tokenized for the Trainer; a message
    if there is none."""
    from transformers import AutoConfig, AutoTokenizer

    from hpo.config.spec import StudySpec
    from hpo.models.pretrained import load_config, num_layers, resolve
    from hpo.tasks import get_task

    if args.train is None:
        missing = [name for name in FILES.values() if not (WNUT17 / name).is_file()]
        if missing:
            return f"no WNUT-17 data at {WNUT17} ({missing[0]}); pass --train, --validation, --test"
        files = {split: str(WNUT17 / name) for split, name in FILES.items()}
    elif args.validation is None or args.test is None:
        return "--train needs --validation and --test as well"
    else:
        files = {"train": str(args.train), "validation": str(args.validation),
                 "test": str(args.test)}  # fmt: skip
    caps = {}
    if args.quick:
        caps = {"max_train_samples": QUICK_SENTENCES[0], "max_eval_samples": QUICK_SENTENCES[1]}
    spec = StudySpec.from_dict(
        {
            "study": {"name": "ner-bench", "task": "token_classification"},
            "data": {"files": files, "format": "conll", **caps},
            "model": {"name": args.model},
            "train": {"max_length": args.max_length, "device": "cpu"},
        }
    )
    path = resolve(spec.model)
    positions = getattr(AutoConfig.from_pretrained(path), "max_position_embeddings", None)
    max_length = min(args.max_length, positions or args.max_length)  # tiny test models: 64
    if max_length != spec.train.max_length:
        spec = spec.replace("train", max_length=max_length)
    depth = num_layers(load_config(spec.model))
    if depth <= 3:  # --quick's tiny models: the default frozen_layers range (0..3) cannot fit
        spec = spec.replace("space", frozen_layers={"low": 0, "high": depth - 1})
    task = get_task("token_classification")
    data = task.load(spec.data)
    if args.quick:
        data = dataclasses.replace(data, test=first_sentences(data.test, QUICK_SENTENCES[2]))
    tokenizer = AutoTokenizer.from_pretrained(path)
    hf = {
        name: run_ner_dataset(split.tokens, split.tags, tokenizer, max_length)
        for name, split in (("train", data.train), ("validation", data.validation))
    }
    return Setup(
        spec=spec, model_path=path, max_length=max_length, trials=args.trials,
        max_steps=args.steps, eval_every=args.eval_every, retrain_seeds=tuple(args.retrain_seeds),
        folder=folder, task=task, data=data, tokenizer=tokenizer,
        test_windows=task.encode(data.test, tokenizer, max_length), hf=hf,
    )  # fmt: skip


def describe(s: Setup) -> str:
    w = s.test_windows
    return (
        f"train {len(s.data.train):,}, validation {len(s.data.validation):,}, test "
        f"{len(s.data.test):,} sentences; {len(s.label_names)} tags; max length {s.max_length}; "
        f"test sentences longer than that (windowed by the scorer): {w.windowed}"
    )


def _f1(x: float | None) -> str:
    return "—" if x is None else f"{x:.4f}"


def table(title: str, rows: list[dict[str, Any]]) -> Any:
    """One line per method and sampler seed: test entity F1 of its final models and its cost."""
    from rich.table import Table

    out = Table(title=title)
    cols = ["method", "sampler seed", "best val F1", "test F1 mean ± sd", "test F1 per seed",
            "samples", "trials (pruned)", "search s", "wall s", "samples/s"]  # fmt: skip
    for col in cols:
        out.add_column(col, justify="left" if col == "method" else "right")
    for r in rows:
        per_seed = ", ".join(
            f"{seed}: {f1:.4f}" for seed, f1 in zip(r["retrain_seeds"], r["test_f1"], strict=True)
        )
        speed = r.get("samples_per_s_warm") or r.get("samples_per_s_cold")
        cold = r.get("samples_per_s_warm") is None and speed is not None
        out.add_row(
            r["method"] + ("*" if r.get("reused") else ""), str(r["seed"]),
            _f1(r.get("best_validation")),
            f"{r['test_f1_mean']:.4f} ± {r['test_f1_sd']:.4f} ({len(r['test_f1'])})", per_seed,
            f"{r['samples']:,.0f}", f"{r.get('trials', '—')} ({r.get('pruned', 0)})",
            f"{r.get('search_s', 0):.0f}", f"{r['wall_s']:.0f}",
            "—" if speed is None else f"{speed:.1f}" + (" (cold)" if cold else ""),
        )  # fmt: skip
    return out


def summary(rows: list[dict[str, Any]], methods: list[str]) -> Any:
    """Means over sampler seeds per method of the mean test F1 over retraining seeds."""
    from rich.table import Table

    out = Table(title="mean over sampler seeds")
    for col in ("method", "sampler seeds", "test F1 (mean over seeds) ± sd", "samples", "wall s"):
        out.add_column(col, justify="left" if col == "method" else "right")
    for m in methods:
        mine = [r for r in rows if r["method"] == m]
        if not mine:
            continue
        means = [r["test_f1_mean"] for r in mine]
        sd = statistics.stdev(means) if len(means) > 1 else 0.0
        out.add_row(
            m, str(len(mine)), f"{statistics.fmean(means):.4f} ± {sd:.4f}",
            f"{statistics.fmean(r['samples'] for r in mine):,.0f}",
            f"{statistics.fmean(r['wall_s'] for r in mine):.0f}",
        )  # fmt: skip
    return out


def report(rows: list[dict[str, Any]], methods: list[str]) -> None:
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 160)  # logs: no wrapped cells
    order = {m: i for i, m in enumerate(methods)}
    rows = sorted(
        (r for r in rows if r["method"] in order), key=lambda r: (r["seed"], order[r["method"]])
    )
    console.print(table("test entity F1 of each method's final models", rows))
    if len({r["seed"] for r in rows}) > 1:
        console.print(summary(rows, methods))
    console.print(
        "test F1: seqeval entity micro F1 on the held-out test by hpo's scorer (every word, long "
        "sentences windowed), of the final configuration trained with each retraining seed: "
        "mean ± sample sd (how many); best val F1: the search's best trial on the validation "
        "split (hf-search: the Trainer's run_ner-style metric; hpo: hpo's, every word). samples: "
        "training rows spent choosing the configuration (a recipe: one run). samples/s: training "
        "rows per second, warm (later runs in the process; hf: the Trainer's "
        "train_samples_per_second; hpo: its trials' mean, whatever they froze or augmented; "
        "hpo-recipe: the recipe in hpo's loop, the equal-terms figure). * a recipe's row of the "
        "first sampler seed, reused."
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--methods", nargs="+", choices=(*METHODS, "all"), help="default: all")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="sampler seeds")
    parser.add_argument("--trials", type=int, default=TRIALS, help="trials per search")
    parser.add_argument("--steps", type=int, default=-1, help="steps per run (-1: one epoch)")
    parser.add_argument("--eval-every", type=int, default=EVAL_EVERY, help="steps")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_TRIALS} trials of {QUICK_STEPS} steps, one retraining "
                        f"seed, at most {'/'.join(map(str, QUICK_SENTENCES))} sentences")  # fmt: skip
    parser.add_argument("--model", default="bundled:all-MiniLM-L6-v2")
    parser.add_argument("--train", type=Path)
    parser.add_argument("--validation", type=Path)
    parser.add_argument("--test", type=Path, help="held-out split, scored once per final model")
    parser.add_argument("--max-length", type=int, default=MAX_LENGTH)
    parser.add_argument("--json", type=Path, help="also write all rows to this JSON file")
    parser.add_argument("--from-json", type=Path, nargs="+",
                        help="print the tables of saved runs; train nothing")  # fmt: skip
    args = parser.parse_args(argv)
    methods = list(METHODS) if "all" in (args.methods or ["all"]) else args.methods
    methods = [m for m in METHODS if m in methods]
    if args.from_json:
        saved = [r for path in args.from_json for r in json.loads(path.read_text())]
        report(saved, [*methods, *sorted({r["method"] for r in saved} - set(methods))])
        return 0
    args.retrain_seeds = list(RETRAIN_SEEDS)
    if args.quick:
        args.trials, args.steps, args.eval_every = QUICK_TRIALS, QUICK_STEPS, QUICK_EVAL_EVERY
        args.retrain_seeds = [0]
    import optuna
    from rich.console import Console

    quiet()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console = Console(stderr=True, soft_wrap=True)  # progress: one line each
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        setup = make_setup(args, Path(tmp))
        if isinstance(setup, str):
            print(setup, file=sys.stderr)
            return 1
        console.print(f"[dim]{describe(setup)}[/dim]")
        reused: dict[str, dict[str, Any]] = {}
        for seed in args.seeds:
            for m in methods:
                if m in reused:
                    rows.append({**reused[m], "seed": seed, "reused": True})
                    continue
                console.print(f"[dim]seed {seed}: {m} ...[/dim]")
                row = METHODS[m](setup, seed)
                if m in SEED_FREE:
                    reused[m] = row
                rows.append(row)
                if args.json:  # after every method: a long run that stops keeps what it finished
                    args.json.write_text(json.dumps(rows, indent=1))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    report(rows, methods)
    return 0


if __name__ == "__main__":
    sys.exit(main())
