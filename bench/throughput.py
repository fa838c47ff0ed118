"""Trial-loop throughput: hpo's loop against the Hugging Face Trainer, same model, data and steps,
for each number of frozen layers.

Equal terms: the Trainer gets its own fastest settings, fused AdamW (optim="adamw_torch_fused"),
its length-grouping sampler (train_sampling_strategy="group_by_length") and the same precision
(bf16=True where hpo runs bf16 autocast), and both sides are timed warm: hpo's second trial
against the Trainer's second run (a fresh model and Trainer in the same process); the first runs
are shown as cold. With ``frozen_layers = k`` both freeze the embeddings and the lowest k layers
(requires_grad off); hpo also runs them without dropout and caches their output per row
(hpo/training/frozen.py), so it is shown with the cache (its default) and without it
(``train.frozen_cache_mb = 0``). Its second trial reads the states its first one stored: that is
the work trials share.

The data follow the SST2-small protocol: ../shared/data/sst2/train.tsv shuffled with
random.Random(0); rows 0-1,999 train, rows 2,000-2,499 validate. Both sides train the bundled
MiniLM-L6 for 125 steps at batch 16 (one epoch), max length 64, lr 5e-5, linear decay, then
score the 500 validation rows once.

    python bench/throughput.py                       # frozen 0, 2, 4; fp32
    python bench/throughput.py --precision bf16      # bf16 autocast on both sides
    python bench/throughput.py --quick               # 10 steps, to check the script runs
    python bench/throughput.py --model DIR --train a.csv --validation b.csv --text-column text
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import SST2, hf_tokenized, sst2_small


def run_hpo(
    model: str, train: Path, val: Path, text: str, steps: int, folder: Path, frozen: int = 0,
    precision: str = "fp32", cache_mb: int = 1024,
) -> dict[str, Any]:  # fmt: skip
    """Two fixed-configuration trials of hpo's loop in one worker, from an empty cache."""
    from hpo.config.spec import StudySpec
    from hpo.execution.storage import open_storage
    from hpo.execution.workers import work
    from hpo.search.objective import Objective
    from hpo.search.study import create_or_resume
    from hpo.training.frozen import STORE

    STORE.clear()
    name = f"throughput-{frozen}-{cache_mb}-{precision}"
    spec = StudySpec.from_dict(
        {
            "study": {"name": name, "n_trials": 2},
            "model": {"name": model},
            "data": {"files": {"train": str(train), "validation": str(val)}, "text_column": text},
            "train": {"max_steps": steps, "eval_every": steps, "max_length": 64, "device": "cpu",
                      "precision": precision, "frozen_cache_mb": cache_mb},
            "space": {
                "learning_rate": 5e-5, "warmup_ratio": 0.0, "lr_schedule": "linear",
                "frozen_layers": frozen, "augmentation_strength": 0.0, "batch_size": 16,
            },
        }
    )  # fmt: skip
    start = time.perf_counter()
    objective = Objective(spec)
    setup = objective.prepare().setup_seconds
    study, _ = create_or_resume(spec, open_storage(f"sqlite:///{folder / 'throughput.db'}"))
    work(study, objective, 2)
    wall = time.perf_counter() - start
    first, later = (t.user_attrs for t in study.get_trials())
    STORE.clear()
    return {
        "method": "hpo" if frozen == 0 or cache_mb else "hpo, no cache",
        "frozen": frozen,
        "samples_per_s": later["samples_per_second"],
        "samples_per_s_cold": first["samples_per_second"],
        "train_s": later["train_seconds"],
        "eval_s": later["eval_seconds"],
        "first_trial_fixed_s": setup + first["wall_seconds"] - first["train_seconds"],
        "later_trial_fixed_s": later["wall_seconds"] - later["train_seconds"],
        "later_trial_wall_s": later["wall_seconds"],
        "accuracy": later["metrics"]["accuracy"],
        "total_s": wall,
    }


def run_trainer(
    model: str, train: Path, val: Path, text: str, steps: int, folder: Path, frozen: int = 0,
    precision: str = "fp32",
) -> dict[str, Any]:  # fmt: skip
    """The same training with transformers.Trainer: load, tokenize, train, evaluate."""
    import datasets
    import numpy as np
    from transformers import (
        AutoModelForSequenceClassification,
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
    )
    from transformers.utils import logging

    from hpo.config.spec import ModelSection
    from hpo.models.anatomy import freeze_lower_layers
    from hpo.models.pretrained import resolve

    logging.set_verbosity_error()
    datasets.disable_progress_bars()
    start = time.perf_counter()
    path = resolve(ModelSection(name=model))
    tokenizer = AutoTokenizer.from_pretrained(path)
    data, labels = hf_tokenized(tokenizer, {"train": str(train), "validation": str(val)}, text)
    args = TrainingArguments(
        output_dir=str(folder / "trainer"), per_device_train_batch_size=16,
        per_device_eval_batch_size=64, max_steps=steps, learning_rate=5e-5,
        lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.01, logging_strategy="no",
        save_strategy="no", eval_strategy="no", report_to=[], disable_tqdm=True, use_cpu=True,
        dataloader_num_workers=0, seed=0, optim="adamw_torch_fused",
        train_sampling_strategy="group_by_length", bf16=precision == "bf16",
    )  # fmt: skip

    def accuracy(pred: Any) -> dict[str, float]:
        return {"accuracy": float((np.argmax(pred.predictions, -1) == pred.label_ids).mean())}

    def trainer_run() -> tuple[Any, float, Any]:
        net = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(labels))
        freeze_lower_layers(net, frozen)  # requires_grad off, as hpo's freezing does
        trainer = Trainer(
            model=net, args=args, train_dataset=data["train"], eval_dataset=data["validation"],
            data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=accuracy,
        )  # fmt: skip
        t0 = time.perf_counter()
        out = trainer.train()
        return trainer, time.perf_counter() - t0, out

    setup = time.perf_counter() - start
    _, cold_s, _ = trainer_run()
    trainer, train_s, out = trainer_run()
    t0 = time.perf_counter()
    scores = trainer.evaluate()
    eval_s = time.perf_counter() - t0
    return {
        "method": "HF Trainer",
        "frozen": frozen,
        "samples_per_s": steps * 16 / train_s,
        "samples_per_s_cold": steps * 16 / cold_s,
        "train_s": train_s,
        "eval_s": eval_s,
        "first_trial_fixed_s": setup + eval_s,
        "later_trial_fixed_s": None,
        "later_trial_wall_s": None,
        "accuracy": scores["eval_accuracy"],
        "total_s": time.perf_counter() - start,
        "trainer_reported_samples_per_s": out.metrics.get("train_samples_per_second"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="bundled:all-MiniLM-L6-v2")
    parser.add_argument("--train", type=Path)
    parser.add_argument("--validation", type=Path)
    parser.add_argument("--text-column", default="sentence")
    parser.add_argument("--steps", type=int, default=125)
    parser.add_argument("--frozen", type=int, nargs="+", default=[0, 2, 4])
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--quick", action="store_true", help="10 steps")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = 10
    from rich.console import Console
    from rich.table import Table

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.train is None:
            if not (SST2 / "train.tsv").is_file():
                print(f"no SST-2 data at {SST2}; pass --train and --validation", file=sys.stderr)
                return 1
            files = sst2_small(folder)
            args.train, args.validation = Path(files["train"]), Path(files["validation"])
        common = (args.model, args.train, args.validation, args.text_column, args.steps, folder)
        for k in args.frozen:
            rows.append(run_hpo(*common, frozen=k, precision=args.precision))
            if k > 0:
                rows.append(run_hpo(*common, frozen=k, precision=args.precision, cache_mb=0))
            rows.append(run_trainer(*common, frozen=k, precision=args.precision))
            if args.json:  # after each k, so a long run keeps what it measured
                args.json.write_text(json.dumps(rows, indent=1))
    title = f"one trial: {args.steps} steps at batch 16, then one evaluation ({args.precision})"
    table = Table(title=title)
    for col in (
        "frozen",
        "method",
        "train samples/s (warm)",
        "cold",
        "train s",
        "eval s",
        "fixed s (1st)",
        "fixed s (later)",
        "val acc",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        later = r["later_trial_fixed_s"]
        table.add_row(
            str(r["frozen"]), r["method"], f"{r['samples_per_s']:.1f}",
            f"{r['samples_per_s_cold']:.1f}", f"{r['train_s']:.1f}", f"{r['eval_s']:.2f}",
            f"{r['first_trial_fixed_s']:.1f}", "—" if later is None else f"{later:.2f}",
            f"{r['accuracy']:.3f}",
        )  # fmt: skip
    Console().print(table)
    for k in args.frozen:
        trainer = next(r for r in rows if r["frozen"] == k and r["method"] == "HF Trainer")
        for r in rows:
            if r["frozen"] == k and r is not trainer:
                print(
                    f"frozen {k}, {r['method']} / Trainer: "
                    f"warm {r['samples_per_s'] / trainer['samples_per_s']:.2f}x, "
                    f"cold {r['samples_per_s_cold'] / trainer['samples_per_s_cold']:.2f}x, "
                    f"evaluation {trainer['eval_s'] / max(r['eval_s'], 1e-9):.2f}x; "
                    f"accuracy {r['accuracy']:.3f} against {trainer['accuracy']:.3f}"
                )
    print("(Trainer: fused AdamW, length-grouped batches, the same precision)")
    for r in rows:
        if r["later_trial_wall_s"]:
            share = r["later_trial_fixed_s"] / r["later_trial_wall_s"]
            print(f"frozen {r['frozen']}, {r['method']}: fixed cost of a later trial is "
                  f"{share:.1%} of its wall time")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
