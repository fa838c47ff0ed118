"""How much of a held-out score is the configuration, and how much the training seed?

Retrains fixed configurations with several training seeds on the SST2-small protocol (see
bench/search_quality.py: 125 steps at batch 16, max length 64, the bundled MiniLM) and scores
each run on the tuning validation split and on the held-out dev split. A search is judged by
one retraining of the configuration it chose; this shows how far one retraining can land from
the configuration's mean, and whether validation ranks configurations the way held-out data does.

    python bench/retest.py                                  # the built-in configurations, 3 seeds
    python bench/retest.py --seeds 0 1 2 3 4 --config 1e-4,0.1,linear
    python bench/retest.py --from-json rows.json            # each saved search's best configuration
    python bench/retest.py --quick --model DIR --train a.csv --validation b.csv --test c.csv \\
        --text-column text                                  # 2 configurations, 2 seeds, 10 steps
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from search_quality import BATCH, SCHEDULES, add_data_args, make_setup, make_spec, retest

# name -> (learning rate, warmup ratio, schedule)
CONFIGS: dict[str, tuple[float, float, str]] = {
    "Trainer default": (5e-5, 0.0, "linear"),
    "BERT recipe": (2e-5, 0.1, "linear"),
    "lr 1e-4": (1e-4, 0.0, "linear"),
    "lr 1.1e-4, long warmup, constant": (1.1e-4, 0.19, "constant_with_warmup"),
    "lr 1.1e-4, long warmup, linear": (1.1e-4, 0.19, "linear"),
    "lr 2e-4, 10% warmup": (2e-4, 0.1, "linear"),
}
FIXED = {"frozen_layers": 0, "augmentation_strength": 0.0, "batch_size": BATCH,
         "weight_decay": 0.01, "seed": 0}  # fmt: skip


def parse_config(text: str) -> tuple[str, dict[str, Any]]:
    """``lr,warmup,schedule`` as a configuration."""
    parts = text.split(",")
    if len(parts) != 3 or parts[2] not in SCHEDULES:
        raise argparse.ArgumentTypeError(f"--config wants lr,warmup,schedule; got {text!r}")
    lr, warmup = float(parts[0]), float(parts[1])
    return text, {"learning_rate": lr, "warmup_ratio": warmup, "lr_schedule": parts[2]}


def saved_configs(paths: list[Path]) -> list[tuple[str, dict[str, Any]]]:
    """The best configuration of every row that search_quality.py saved."""
    rows = [r for path in paths for r in json.loads(path.read_text())]
    return [(f"{r['method']} seed {r['seed']}", r["best_params"]) for r in rows]


def measure(objective: Any, name: str, params: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    """Retrain one configuration once per seed (seeds must be consecutive from the first)."""
    import optuna

    params = {**FIXED, **params}
    one = optuna.distributions.CategoricalDistribution
    trial = optuna.trial.create_trial(
        params=params, distributions={k: one([v]) for k, v in params.items()}, value=0.0
    )
    out = retest(objective, trial, seeds[0], len(seeds))
    return {"name": name, "params": params, "seeds": seeds, **out}


def spread(values: list[float]) -> str:
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.3f} ± {sd:.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--config", type=parse_config, action="append", default=[],
                        help="lr,warmup,schedule (repeatable); default: the built-in set")  # fmt: skip
    parser.add_argument("--from-json", type=Path, nargs="+", help="search_quality.py rows")
    parser.add_argument("--quick", action="store_true", help="2 configurations, 2 seeds, 10 steps")
    parser.add_argument("--steps", type=int, default=125, help="steps per run at batch 16")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    add_data_args(parser)
    args = parser.parse_args(argv)
    seeds = sorted(args.seeds)
    if seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        parser.error("--seeds must be consecutive, e.g. 0 1 2")
    configs = args.config + (saved_configs(args.from_json) if args.from_json else [])
    if not configs:
        configs = [(k, dict(zip(("learning_rate", "warmup_ratio", "lr_schedule"), v, strict=True)))
                   for k, v in CONFIGS.items()]  # fmt: skip
    if args.quick:
        configs, seeds, args.steps = configs[:2], seeds[:2], 10
    args.trials, args.retest_seeds = 1, len(seeds)
    import optuna
    from rich.console import Console
    from rich.table import Table

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console = Console(width=None if sys.stdout.isatty() else 110)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        setup = make_setup(args, Path(tmp))
        if isinstance(setup, str):
            print(setup, file=sys.stderr)
            return 1
        from hpo.search.objective import Objective

        objective = Objective(make_spec(setup, "retest", {}, 1))  # data and weights loaded once
        for name, params in configs:
            console.print(f"[dim]{name} ...[/dim]")
            rows.append(measure(objective, name, params, seeds))
            if args.json:
                args.json.write_text(json.dumps(rows, indent=1))
    table = Table(title=f"each configuration retrained with seeds {seeds[0]}..{seeds[-1]}")
    for col in ("configuration", "lr", "warmup", "schedule", "frozen", "augment", "validation",
                "dev (held out)", "dev per seed"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in rows:
        p = r["params"]
        table.add_row(
            r["name"], f"{p['learning_rate']:.2g}", f"{p['warmup_ratio']:.2f}", p["lr_schedule"],
            str(p["frozen_layers"]), f"{p['augmentation_strength']:.2f}", spread(r["validation_seeds"]), spread(r["dev_seeds"]),
            " ".join(f"{v:.3f}" for v in r["dev_seeds"]),
        )  # fmt: skip
    console.print(table)
    console.print("validation and dev: mean ± sd over the training seeds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
