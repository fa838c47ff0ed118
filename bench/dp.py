"""Differentially private fine-tuning (DP-SGD through opacus) against plain fine-tuning, at equal
steps, on SST2-small.

Protocol: SST2-small (bench/common.py: the bundled MiniLM-L6, max length 64, 2,000 training
rows, 500 validation, the official dev set of 872 rows as the held-out test), on the CPU, batch
64, ``--epochs`` passes (default 1: 32 steps), one evaluation at the end. Rows:

  plain         the non-private recipe: AdamW at ``--lr-plain``, 10% warmup, linear decay,
                every weight trained, shuffled batches of 64.
  plain-frozen  the same with the embeddings frozen, as DP-SGD must (the cost of freezing alone).
  dp eps=E      DP-SGD at the same steps: Poisson batches of expected size 64 (q = 0.032), every
                row's gradient clipped to ``--clip``, the noise multiplier that opacus'
                ``get_noise_multiplier`` gives for epsilon E at delta 1e-5 over those steps (PRV
                accountant), AdamW at ``--lr-private``, embeddings frozen. The epsilon shown is
                the one the trial's accountant measured after training.

Nothing here is tuned on the test rows; the two learning rates are fixed beforehand (DP-SGD's
noisy steps want a larger rate: Li et al. 2022 fine-tune with DP-Adam at 5e-4).

    OMP_NUM_THREADS=1 python bench/dp.py       # plain and epsilon 1, 3, 8: 25 minutes here
    python bench/dp.py --rows plain plain-frozen dp --epochs 2  # more: about an hour
    python bench/dp.py --epsilons 8 --rows dp --json bench/results/dp.jsonl
    python bench/dp.py --from-json bench/results/dp.jsonl       # the table of saved rows
    python bench/dp.py --quick --model DIR --train a.csv --validation b.csv --test c.csv \\
        --text-column text                                       # 5 steps: a smoke test
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BATCH = 64
DELTA = 1e-5


def make_objective(files: dict[str, str], text: str, model: str, steps: int) -> Any:
    from hpo.config.spec import StudySpec
    from hpo.search.objective import Objective

    spec = StudySpec.from_dict(
        {
            "study": {"name": "dp-bench", "n_trials": 1},
            "model": {"name": model},
            "data": {"files": files, "text_column": text},
            "train": {"max_steps": steps, "eval_every": steps, "max_length": 64, "device": "cpu"},
            "privacy": {"delta": DELTA},
            "space": {"frozen_layers": 0, "augmentation_strength": 0.0, "batch_size": BATCH,
                      "weight_decay": 0.0, "seed": 0, "dp_noise_multiplier": {"low": 0.0, "high": 100.0}},
        }
    )  # fmt: skip
    return Objective(spec)


def noise_for(epsilon: float, sample_rate: float, steps: int) -> float:
    """The noise multiplier that spends ``epsilon`` at DELTA over ``steps`` (opacus, PRV)."""
    from opacus.accountants.utils import get_noise_multiplier

    return float(
        get_noise_multiplier(
            target_epsilon=epsilon,
            target_delta=DELTA,
            sample_rate=sample_rate,
            steps=steps,
            accountant="prv",
            epsilon_tolerance=0.01,
        )
    )


def run_row(
    objective: Any, name: str, lr: float, noise: float, clip: float, freeze: bool, frozen: int = 0
) -> dict:
    """Train one configuration; score it on validation and the held-out test."""
    from hpo.config.sampling import Hyperparameters
    from hpo.strategies.privacy import freeze_unsupported
    from hpo.training.loop import evaluate, train

    prep = objective.prepare()
    task = objective.task
    hp = Hyperparameters(
        seed=0, learning_rate=lr, warmup_ratio=0.1, lr_schedule="linear", batch_size=BATCH,
        weight_decay=0.0, dp_noise_multiplier=noise, frozen_layers=frozen,
        **({"dp_max_grad_norm": clip} if noise else {}),
    )  # fmt: skip
    model, _ = objective.build_model(prep, hp)
    if freeze:
        freeze_unsupported(model)
    plan = objective.plan(hp, len(prep.train))
    out = train(
        model, prep.train, prep.validation, plan, prep.device, pad_id=prep.pad_id, task=task
    )
    test = task.encode(prep.task.test, prep.tokenizer, 64)
    scores = evaluate(model, test, prep.device, 128, prep.pad_id, task)
    return {
        "row": name, "lr": lr, "frozen_layers": frozen,
        "noise": round(noise, 4), "clip": clip if noise else None,
        "steps": out.steps, "epsilon": out.epsilon, "delta": DELTA if noise else None,
        "validation": out.metrics["accuracy"], "test": scores["accuracy"],
        "train_s": round(out.train_seconds, 1), "samples": out.train_samples,
        "trainable": sum(p.numel() for p in model.parameters() if p.requires_grad),
    }  # fmt: skip


def table(rows: list[dict]) -> str:
    head = "| row | epsilon (measured) | noise | validation | held-out test | train s | trainable |"
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        eps = "∞ (not private)" if r["epsilon"] is None else f"{r['epsilon']:.2f}"
        lines.append(
            f"| {r['row']} | {eps} | {r['noise'] or '—'} | {r['validation']:.3f} | "
            f"{r['test']:.3f} | {r['train_s']:.0f} | {r['trainable'] / 1e6:.1f}M |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--epsilons", type=float, nargs="+", default=[1.0, 3.0, 8.0])
    parser.add_argument("--rows", nargs="+", default=["plain", "dp"])
    parser.add_argument("--lr-plain", type=float, default=1e-4)
    parser.add_argument("--lr-private", type=float, default=5e-4)
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument(
        "--frozen-layers", type=int, default=0,
        help="also freeze this many of the lowest encoder layers (every row): fewer weights to "
        "clip and noise, and faster per-row gradients",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="append each row to this JSON-lines file")
    parser.add_argument("--from-json", type=Path, help="print the table of saved rows and stop")
    parser.add_argument("--quick", action="store_true", help="5 steps: a smoke test")
    parser.add_argument("--model", default="bundled:all-MiniLM-L6-v2")
    parser.add_argument("--train")
    parser.add_argument("--validation")
    parser.add_argument("--test")
    parser.add_argument("--text-column", default="sentence")
    args = parser.parse_args()
    if args.from_json:
        rows = [json.loads(x) for x in args.from_json.read_text().splitlines() if x.strip()]
        print(table(rows))
        return
    with tempfile.TemporaryDirectory() as tmp:
        if args.train:
            files = {"train": args.train, "validation": args.validation, "test": args.test}
        else:
            from bench.common import sst2_small

            files = sst2_small(Path(tmp))
        with open(files["train"], encoding="utf-8") as f:
            n_train = sum(1 for _ in f) - 1
        steps = 5 if args.quick else -(-n_train * args.epochs // BATCH)
        objective = make_objective(files, args.text_column, args.model, steps)
        q = BATCH / n_train
        todo: list[tuple[str, float, float, bool]] = []
        if "plain" in args.rows:
            todo.append(("plain", args.lr_plain, 0.0, False))
        if "plain-frozen" in args.rows:
            todo.append(("plain, embeddings frozen", args.lr_plain, 0.0, True))
        if "dp" in args.rows:
            for eps in args.epsilons:
                todo.append((f"dp eps={eps:g}", args.lr_private, noise_for(eps, q, steps), True))
        rows = []
        for name, lr, noise, freeze in todo:
            row = run_row(objective, name, lr, noise, args.clip, freeze, args.frozen_layers)
            row["target_epsilon"] = float(name.split("=")[1]) if "=" in name else None
            rows.append(row)
            print(json.dumps(row), flush=True)
            if args.json:
                with args.json.open("a", encoding="utf-8") as f:
                    f.write(json.dumps(row) + "\n")
    print(f"\nSST2-small, {steps} steps at batch {BATCH}, delta {DELTA:g} (PRV accountant)\n")
    print(table(rows))


if __name__ == "__main__":
    main()
