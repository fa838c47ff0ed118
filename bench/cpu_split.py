"""Two workers with one core each against one worker with all the cores, on a real study.

Runs the same study file twice into fresh SQLite databases, once with `hpo run` (one worker,
every core) and once with `hpo run --workers 2` (two workers, the cores divided), and prints
trials per hour and training samples per second for each.

    python bench/cpu_split.py                       # the quickstart study, 6 trials, no pruning
    python bench/cpu_split.py --quick               # a few tiny trials, to check the script runs
    python bench/cpu_split.py --study studies/x.toml --trials 8
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def run_study(
    study: Path, workers: int, trials: int, extra: list[str], folder: Path
) -> dict[str, Any]:
    """One `hpo run` in a fresh database; wall time and what the trials recorded."""
    import optuna

    url = f"sqlite:///{folder / f'split-{workers}.db'}"
    name = f"split-{workers}"
    cmd = [
        sys.executable, "-m", "hpo", "run", str(study), "--storage", url, "--n-trials", str(trials),
        "--set", f"study.name={name}", "--set", "pruner.name=none", *extra,
    ]  # fmt: skip
    if workers > 1:
        cmd += ["--workers", str(workers)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    done = [
        t for t in optuna.load_study(study_name=name, storage=url).trials if t.state.is_finished()
    ]
    samples = sum(t.user_attrs.get("train_samples", 0) for t in done)
    train_s = sum(t.user_attrs.get("train_seconds", 0.0) for t in done)
    return {
        "workers": workers,
        "trials": len(done),
        "wall_s": wall,
        "trials_per_hour": 3600 * len(done) / wall,
        "samples_per_s_per_worker": samples / train_s if train_s else 0.0,
        "samples_per_s_total": samples / wall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--study", type=Path, default=ROOT / "studies" / "quickstart.toml")
    parser.add_argument("--trials", type=int, default=6)
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="extra --set for both runs"
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 short trials, to smoke-test the script"
    )
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    extra = [x for o in args.overrides for x in ("--set", o)]
    if args.quick:
        args.trials = 3
        extra += ["--set", "train.max_steps=10", "--set", "train.eval_every=5"]
    from rich.console import Console
    from rich.table import Table

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            rows.append(run_study(args.study, workers, args.trials, extra, Path(tmp)))
    table = Table(title=f"{args.study.name}: {args.trials} trials, one worker vs two")
    for col in (
        "workers",
        "trials",
        "wall s",
        "trials/hour",
        "samples/s per worker",
        "samples/s total",
    ):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            str(r["workers"]), str(r["trials"]), f"{r['wall_s']:.0f}", f"{r['trials_per_hour']:.0f}",
            f"{r['samples_per_s_per_worker']:.1f}", f"{r['samples_per_s_total']:.1f}",
        )  # fmt: skip
    Console().print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
