"""Each tuning strategy alone, on a protocol where structure matters: does it help?

Protocol (few samples, several epochs: Zhang et al. 2021; Mosbach et al. 2021): SST2-small
(bench/common.py) with its training rows capped at 1,000 (stratified, seed 0), 5 epochs at
batch 16, max length 64, evaluation on the 500-row validation split every 50 steps, the bundled
MiniLM-L6, on the CPU. Every configuration starts from the untuned recipe (lr 5e-5, no warmup,
linear decay, no weight decay) and changes one strategy; each is trained with 3 seeds and scored
on the held-out SST-2 dev set (872 rows, never used to choose anything). Prints mean and
standard deviation of held-out accuracy, the last validation accuracy, training samples per
second and trainable parameters, and the difference to the untuned recipe in units of its seed
spread.

    python bench/structure.py                       # every configuration, seeds 0 1 2
    python bench/structure.py --configs recipe lora_rank=8 --seeds 0
    python bench/structure.py --from-json structure.jsonl   # print the table of saved rows
    python bench/structure.py --search --seeds 0 1 2  # all dimensions against the first five

``--search`` runs, per sampler seed, two TPE studies of the same number of unpruned trials (so
the same training samples) on the same protocol: one searching the five original strategy
dimensions, one searching every dimension; each study's best configuration is retrained with
3 training seeds and scored on the held-out rows.

Rows are appended to ``--out`` (default structure.jsonl) as each run ends, so a long run can be
stopped and resumed: runs already in the file are skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import sst2_small

MAX_LENGTH = 64
# Each strategy alone at two settings (one where a second makes no sense), as the issue lists.
CONFIGS: dict[str, dict[str, Any]] = {
    "recipe": {},
    "num_layers=4": {"num_layers": 4},
    "head_hidden_units=256": {"head_hidden_units": 256},
    "layer_lr_decay=0.8": {"layer_lr_decay": 0.8},
    "layer_lr_decay=0.9": {"layer_lr_decay": 0.9},
    "reinit_layers=1": {"reinit_layers": 1},
    "reinit_layers=2": {"reinit_layers": 2},
    "lora_rank=8": {"lora_rank": 8},
    "lora_rank=16": {"lora_rank": 16},
    "frozen_layers=2": {"frozen_layers": 2},
    "augmentation_strength=0.1": {"augmentation_strength": 0.1},
    "augmentation_strength=0.3": {"augmentation_strength": 0.3},
    "label_smoothing=0.1": {"label_smoothing": 0.1},
    # LoRA is usually run at a tenfold learning rate: the same rank there, to be fair to it
    "lora_rank=8,lr=5e-4": {"lora_rank": 8, "learning_rate": 5e-4},
}
RECIPE = {"learning_rate": 5e-5, "warmup_ratio": 0.0, "lr_schedule": "linear", "weight_decay": 0.0}
# The search comparison: the five dimensions hpo searched first, and all of them.
FIVE: dict[str, Any] = {
    "learning_rate": {"low": 1e-5, "high": 2e-4, "log": True},
    "warmup_ratio": {"low": 0.0, "high": 0.2},
    "lr_schedule": ["linear", "cosine", "constant_with_warmup"],
    "frozen_layers": {"low": 0, "high": 3},
    "augmentation_strength": {"low": 0.0, "high": 0.3},
}
ALL: dict[str, Any] = {
    **FIVE,
    "num_layers": {"low": 4, "high": 6},
    "head_hidden_units": [0, 256],
    "classifier_dropout": {"low": 0.0, "high": 0.3},
    "layer_lr_decay": {"low": 0.7, "high": 1.0},
    "reinit_layers": {"low": 0, "high": 2},
    "lora_rank": [0, 8, 16],
    "lora_alpha": {"low": 8, "high": 64, "log": True},
    "label_smoothing": {"low": 0.0, "high": 0.2},
}


def make_spec(
    files: dict[str, str],
    train_rows: int,
    epochs: float,
    search: dict[str, Any] | None = None,
    name: str = "structure",
    trials: int = 1,
    seed: int = 0,
    model: str = "bundled:all-MiniLM-L6-v2",
    text: str = "sentence",
) -> Any:
    from hpo.config.spec import StudySpec

    space = {"frozen_layers": 0, "augmentation_strength": 0.0, "batch_size": 16, "seed": 0}
    if search is not None:
        return StudySpec.from_dict(
            {
                "study": {"name": name, "n_trials": trials},
                "sampler": {"name": "tpe", "seed": seed},
                "pruner": {"name": "none"},  # every trial runs to the end: equal samples
                "model": {"name": model},
                "data": {"files": files, "text_column": text, "max_train_samples": train_rows},
                "train": {"epochs": epochs, "eval_every": 50, "max_length": MAX_LENGTH,
                          "device": "cpu"},
                "space": {**space, "weight_decay": 0.01, **search},
            }
        )  # fmt: skip
    return StudySpec.from_dict(
        {
            "study": {"name": "structure", "n_trials": 1},
            "model": {"name": model},
            "data": {"files": files, "text_column": text, "max_train_samples": train_rows},
            "train": {
                "epochs": epochs,
                "eval_every": 50,
                "max_length": MAX_LENGTH,
                "device": "cpu",
            },
            "space": {**space, **{k: v for k, v in RECIPE.items() if k != "weight_decay"}},
        }
    )


def run_one(objective: Any, test: Any, name: str, seed: int) -> dict[str, Any]:
    """Train one configuration with one seed; score the last model on the held-out rows."""
    from hpo.config.sampling import Hyperparameters
    from hpo.training.loop import evaluate, train

    prep = objective.prepare()
    hp = Hyperparameters({**RECIPE, "batch_size": 16, "seed": seed, **CONFIGS[name]})
    rows, make_batch = objective.training_rows(prep, hp)
    plan = objective.plan(hp, len(rows))
    model, notes = objective.build_model(prep, hp)
    start = time.perf_counter()
    result = train(
        model, rows, prep.validation, plan, prep.device, pad_id=prep.pad_id,
        make_batch=make_batch, task=objective.task,
    )  # fmt: skip
    wall = time.perf_counter() - start
    held_out = evaluate(model, test, prep.device, 256, prep.pad_id, objective.task)
    return {
        "config": name, "seed": seed, "dev_accuracy": held_out["accuracy"],
        "validation_accuracy": result.metrics["accuracy"], "steps": result.steps,
        "train_samples": result.train_samples, "samples_per_second": result.samples_per_second,
        "train_seconds": result.train_seconds, "wall_seconds": wall,
        "trainable_parameters": notes["trainable_parameters"],
        "curve": [(step, m["accuracy"]) for step, m in result.history],
    }  # fmt: skip


def run_search(
    files: dict[str, str], args: argparse.Namespace, label: str, seed: int, folder: Path
) -> dict[str, Any]:
    """One TPE study over ``label``'s space, then its best trial retrained with 3 seeds."""
    from hpo.execution.storage import open_storage
    from hpo.execution.workers import work
    from hpo.final.best import retrain, top_trials
    from hpo.search.objective import Objective
    from hpo.search.study import create_or_resume

    space = FIVE if label == "five" else ALL
    if args.quick:  # the tests' tiny model has two layers
        shallow = {"frozen_layers": {"low": 0, "high": 1}, "num_layers": {"low": 1, "high": 2},
                   "reinit_layers": {"low": 0, "high": 1}}  # fmt: skip
        space = {**space, **{k: v for k, v in shallow.items() if k in space}}
    name = f"search-{label}-{seed}"
    spec = make_spec(
        files, args.train_rows, args.epochs, space, name, args.trials, seed, args.model, args.text
    )
    objective = Objective(spec)
    start = time.perf_counter()
    study, _ = create_or_resume(spec, open_storage(f"sqlite:///{folder / (name + '.db')}"))
    work(study, objective, args.trials)
    search_s = time.perf_counter() - start
    trials = study.get_trials()
    best = top_trials(study, 1, maximize=True)[0]
    results, _, _ = retrain(objective, [best], [0, 1, 2])
    runs = results[0].runs
    return {
        "search": label, "seed": seed, "best_validation": best.value,
        "best_params": dict(best.params),
        "train_samples": sum(int(t.user_attrs.get("train_samples", 0)) for t in trials),
        "search_seconds": search_s,
        "dev_seeds": [(r.test or {}).get("accuracy") for r in runs],
        "validation_seeds": [r.validation.get("accuracy") for r in runs],
        "trials": [
            {"params": dict(t.params), "value": t.value, "state": t.state.name} for t in trials
        ],
    }  # fmt: skip


def search_table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| search | sampler seed | best validation | held-out dev, 3 retrainings (mean ± sd) "
        "| training samples | search s |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in sorted(rows, key=lambda r: (r["search"], r["seed"])):
        dev = r["dev_seeds"]
        sd = statistics.stdev(dev) if len(dev) > 1 else 0.0
        lines.append(
            f"| {r['search']} | {r['seed']} | {r['best_validation']:.4f} | "
            f"{statistics.fmean(dev):.4f} ± {sd:.4f} | {r['train_samples']:,} | "
            f"{r['search_seconds']:.0f} |"
        )
    for label in ("five", "all"):
        mine = [statistics.fmean(r["dev_seeds"]) for r in rows if r["search"] == label]
        if len(mine) > 1:
            lines.append(
                f"| {label}: mean over sampler seeds | {len(mine)} | | "
                f"{statistics.fmean(mine):.4f} ± {statistics.stdev(mine):.4f} | | |"
            )
    return "\n".join(lines)


def table(rows: list[dict[str, Any]]) -> str:
    by: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by.setdefault(row["config"], []).append(row)

    def stats(name: str, key: str) -> tuple[float, float]:
        values = [r[key] for r in by[name]]
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0

    base = stats("recipe", "dev_accuracy") if "recipe" in by else None
    lines = [
        "| configuration | seeds | held-out dev acc (mean ± sd) | Δ vs recipe | Δ / recipe sd "
        "| last validation acc | samples/s (median) | trainable params |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name in [n for n in CONFIGS if n in by]:
        mean, sd = stats(name, "dev_accuracy")
        val, _ = stats(name, "validation_accuracy")
        # the median over seeds: a run slowed by other work on the machine does not move it
        speed = statistics.median(r["samples_per_second"] for r in by[name])
        delta = f"{mean - base[0]:+.4f}" if base else "n/a"
        ratio = f"{(mean - base[0]) / base[1]:+.1f}" if base and base[1] > 0 else "n/a"
        params = by[name][0]["trainable_parameters"]
        lines.append(
            f"| {name} | {len(by[name])} | {mean:.4f} ± {sd:.4f} | {delta} | {ratio} | "
            f"{val:.4f} | {speed:.1f} | {params:,} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--train-rows", type=int, default=1000)
    parser.add_argument("--epochs", type=float, default=5.0)
    parser.add_argument("--out", type=Path, default=Path("structure.jsonl"))
    parser.add_argument("--from-json", type=Path, help="print the table of saved rows and stop")
    parser.add_argument("--search", action="store_true", help="the search comparison instead")
    parser.add_argument("--trials", type=int, default=10, help="--search: trials per study")
    parser.add_argument("--model", default="bundled:all-MiniLM-L6-v2")
    parser.add_argument("--data", type=Path, help="one csv as train, validation and test (tests)")
    parser.add_argument("--text", default="sentence", help="the text column")
    parser.add_argument(
        "--quick", action="store_true", help="4 configurations (or 2 trials), 2 seeds, 0.2 epochs"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.seeds, args.epochs, args.trials = args.seeds[:2], 0.2, 2
        if args.configs == list(CONFIGS):
            args.configs = ["recipe", "head_hidden_units=256", "layer_lr_decay=0.8", "lora_rank=8"]
    if args.from_json:
        rows = [json.loads(line) for line in args.from_json.read_text().splitlines() if line]
        print(search_table(rows) if rows and "search" in rows[0] else table(rows))
        return 0
    if args.search:
        return main_search(args)
    from hpo.config.sampling import Hyperparameters
    from hpo.search.objective import Objective

    done = set()
    if args.out.exists():
        done = {
            (r["config"], r["seed"])
            for r in map(json.loads, filter(None, args.out.read_text().splitlines()))
        }
    with tempfile.TemporaryDirectory() as tmp:
        files = data_files(args, Path(tmp))
        spec = make_spec(files, args.train_rows, args.epochs, model=args.model, text=args.text)
        objective = Objective(spec)
        prep = objective.prepare()
        assert prep.task.test is not None
        test = objective.task.encode(prep.task.test, prep.tokenizer, MAX_LENGTH)
        print(
            f"{len(prep.train)} training rows, {len(prep.validation)} validation, "
            f"{len(test)} held out; {objective.plan(Hyperparameters(), len(prep.train)).max_steps}"
            " steps a run",
            file=sys.stderr,
        )
        for seed in args.seeds:  # seed-major: a stopped run still has every config's first seed
            for name in args.configs:
                if (name, seed) in done:
                    continue
                row = run_one(objective, test, name, seed)
                with args.out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(
                    f"{name} seed {seed}: held-out {row['dev_accuracy']:.4f}, validation "
                    f"{row['validation_accuracy']:.4f}, {row['samples_per_second']:.1f} samples/s",
                    file=sys.stderr,
                )
    rows = [json.loads(line) for line in args.out.read_text().splitlines() if line]
    print(table(rows))
    return 0


def data_files(args: argparse.Namespace, folder: Path) -> dict[str, str]:
    if args.data is not None:
        return {"train": str(args.data), "validation": str(args.data), "test": str(args.data)}
    return sst2_small(folder)


def main_search(args: argparse.Namespace) -> int:
    out = args.out if args.out != Path("structure.jsonl") else Path("structure_search.jsonl")
    done = set()
    if out.exists():
        done = {(r["search"], r["seed"]) for r in map(json.loads, filter(None, out.read_text().splitlines()))}  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        files = data_files(args, Path(tmp))
        for seed in args.seeds:
            for label in ("five", "all"):
                if (label, seed) in done:
                    continue
                row = run_search(files, args, label, seed, Path(tmp))
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(
                    f"{label} seed {seed}: best validation {row['best_validation']:.4f}, "
                    f"held-out {statistics.fmean(row['dev_seeds']):.4f}",
                    file=sys.stderr,
                )
    rows = [json.loads(line) for line in out.read_text().splitlines() if line]
    print(search_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
