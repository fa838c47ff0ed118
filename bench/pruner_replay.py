"""Replay pruners on recorded learning curves: what each would have saved, and what it would lose.

bench/search_quality.py keeps every trial's learning curve (validation accuracy at each
evaluation). Replaying an unpruned search's trials, in their order, through a pruner shows where
each trial would have stopped, the training samples that leaves, and the best final score among
the trials left to finish, with no training at all. The configurations stay those of the
recorded search: a live search's sampler would also learn from the pruned trials, so this
compares pruners, not whole searches.

    python bench/pruner_replay.py rows.json                    # hpo-noprune rows, every seed
    python bench/pruner_replay.py rows.json --method hf-search --batch 16
    python bench/pruner_replay.py bench/results/*-tweets-*lhs3d.json --method hpo-lhs-3d \
        --complete-only

``--complete-only`` replays only the trials a recorded search let finish (for searches run with a
pruner): every pruner then looks better than it would among all trials, since the worst
configurations are missing, but all candidates see the same curves.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any

# hpo's [pruner] sections to compare; train.max_steps and eval_every come from the curves.
# "optuna-median" is Optuna's own MedianPruner with hpo's default waiting (hpo before the
# tolerant median), "optuna-sha" Optuna's own successive halving from the first evaluation (hpo's
# before tied trials shared the room), "optuna-hyperband" Optuna's own Hyperband (hpo's before it
# had its own); "eval2" stands for the second evaluation's step.
CANDIDATES: dict[str, dict[str, Any]] = {
    "none": {"name": "none"},
    "optuna median, its defaults (5 startup, no warmup)": {
        "name": "optuna-median",
        "n_startup_trials": 5,
        "warmup": 0,
    },
    "optuna median, 3 startup, warmup a third": {"name": "optuna-median", "n_startup_trials": 3},
    "tolerant median, 3 startup, warmup a third (hpo)": {"name": "median"},
    "tolerant median, no margin": {"name": "median", "margin": 0.0},
    "tolerant median, margin 2 se": {"name": "median", "margin": "2se"},
    "optuna successive halving (ties promoted)": {"name": "optuna-sha"},
    "hpo successive halving, ties only (no constant score)": {
        "name": "successive_halving",
        "ties_only": True,
    },
    "hpo successive halving (ties and near-constant scores share the room)": {
        "name": "successive_halving"
    },
    "hpo successive halving, margin one standard error": {
        "name": "successive_halving",
        "margin": "se",
    },
    "hpo hyperband, margin one standard error": {"name": "hyperband", "margin": "se"},
    "successive halving, reduction factor 4": {"name": "successive_halving", "reduction_factor": 4},
    "successive halving, from eval 2": {"name": "successive_halving", "min_resource": "eval2"},
    "hpo successive halving, first rung learned from the complete trials": {
        "name": "successive_halving",
        "learn_rung": True,
    },
    "tolerant median, warmup learned from the complete trials too": {
        "name": "median",
        "learn_rung": True,
    },
    "optuna hyperband": {"name": "optuna-hyperband"},
    "hpo hyperband (brackets dealt in turn, hpo's successive halving in each)": {
        "name": "hyperband"
    },
}


def replay(
    curves: list[dict[str, Any]],
    pruner: Any,
    batch: int,
    eval_rows: int,
    constant: float | None = None,
) -> dict[str, Any]:
    """Feed the curves, in trial order, through ``pruner``; where each stops, what is left.
    ``eval_rows`` and ``constant`` (a constant answer's score) are set on each trial as the
    objective sets them."""
    import optuna

    from hpo.keys import MAX_STEPS
    from hpo.search.pruners import CONSTANT_SCORE_ATTR, EVAL_ROWS_ATTR

    # a fixed name: Optuna's Hyperband assigns trials to brackets by a hash of it
    study = optuna.create_study(study_name="replay", direction="maximize", pruner=pruner)
    samples, finished = 0, []
    length = max(int(k) for c in curves for k in c["values"])
    for c in sorted(curves, key=lambda c: c["number"]):
        trial = study.ask()
        trial.set_user_attr(EVAL_ROWS_ATTR, eval_rows)
        # a trial's planned length, as the objective stores it: successive halving's first rung
        trial.set_user_attr(MAX_STEPS, length)
        if constant is not None:
            trial.set_user_attr(CONSTANT_SCORE_ATTR, constant)
        points = sorted((int(k), v) for k, v in c["values"].items())
        for step, value in points:
            trial.report(value, step)
            if step < points[-1][0] and trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                samples += step * batch
                break
        else:
            study.tell(trial, points[-1][1])
            samples += points[-1][0] * batch
            finished.append(points[-1][1])
    return {"samples": samples, "finished": len(finished), "best": max(finished)}


def top_k(curves: list[dict[str, Any]], k: int, batch: int) -> dict[str, Any]:
    """Egele et al. 2023's baseline on the same curves: every trial trains to the first
    evaluation, then the k best there train the whole budget again from the start (their
    recorded curves), and the best of those at the end is kept."""
    points = [sorted((int(s), v) for s, v in c["values"].items()) for c in curves]
    first = points[0][0][0]
    chosen = sorted(points, key=lambda p: -p[0][1])[:k]
    samples = len(points) * first * batch + sum(p[-1][0] for p in chosen) * batch
    return {"samples": samples, "finished": len(chosen), "best": max(p[-1][1] for p in chosen)}


def make(section: dict[str, Any], steps: list[int], eval_rows: int) -> Any:
    """A fresh pruner for one candidate; ``steps`` are the curves' evaluation steps."""
    import optuna

    from hpo.config.spec import StudySpec
    from hpo.search.study import build_pruner, default_warmup_steps

    section = dict(section)
    section.pop("ties_only", None)  # replay's business: no constant score on the trials
    if section.get("min_resource") == "eval2":
        section["min_resource"] = steps[1]
    if section.get("margin") == "2se":
        section["margin"] = 2 * (0.8 * 0.2 / eval_rows) ** 0.5  # two standard errors near 0.8
    if section.get("margin") == "se":
        section["margin"] = (0.8 * 0.2 / eval_rows) ** 0.5  # one standard error near 0.8
    if section.get("name") == "optuna-sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=steps[0], reduction_factor=3)
    if section.get("name") == "optuna-hyperband":
        return optuna.pruners.HyperbandPruner(steps[0], steps[-1], reduction_factor=3)
    optuna_median = section.get("name") == "optuna-median"
    spec = StudySpec.from_dict(
        {"study": {"name": "replay"}, "data": {"files": {"train": "unused.csv"}},
         "pruner": {"name": "none"} if optuna_median else section,
         "train": {"max_steps": steps[-1], "eval_every": steps[0]}}
    )  # fmt: skip
    if optuna_median:
        warmup = section.get("warmup", default_warmup_steps(spec))
        return optuna.pruners.MedianPruner(section["n_startup_trials"], warmup)
    return build_pruner(spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rows", type=Path, nargs="+", help="JSON written by search_quality.py")
    parser.add_argument("--method", default="hpo-noprune", help="whose curves to replay")
    parser.add_argument("--batch", type=int, default=16, help="samples per step")
    parser.add_argument("--eval-rows", type=int, default=500, help="validation rows")
    parser.add_argument(
        "--constant-score",
        type=float,
        help="a constant answer's validation score, for rows saved before they kept it "
        "(SST2-small: 0.564, the majority class's share)",
    )
    parser.add_argument(
        "--complete-only",
        action="store_true",
        help="replay only the trials that ran to the recorded searches' longest step",
    )
    args = parser.parse_args(argv)
    import optuna
    from rich.console import Console
    from rich.table import Table

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    rows = [r for p in args.rows for r in json.loads(p.read_text()) if r["method"] == args.method]
    rows = [r for r in rows if r.get("curves") and not r.get("reused")]
    if args.complete_only:
        rows = [complete_only(r) for r in rows]
        rows = [r for r in rows if len(r["curves"]) >= 3]
    if not rows:
        print(f"no {args.method} rows with learning curves in {args.rows}", file=sys.stderr)
        return 1
    steps = sorted({int(k) for c in rows[0]["curves"] for k in c["values"]})
    table = Table(title=f"pruners replayed on {len(rows)} {args.method} search(es)")
    for col in ("pruner", "samples", "of unpruned", "finished", "best finished", "lost"):
        table.add_column(col, justify="right")
    full = [replay(r["curves"], optuna.pruners.NopPruner(), args.batch, 0) for r in rows]
    for label, section in CANDIDATES.items():
        runs = [replay(r["curves"], make(section, steps, args.eval_rows), args.batch,
                       args.eval_rows, None if section.get("ties_only")
                       else r.get("constant_score", args.constant_score))
                for r in rows]  # fmt: skip
        add_row(table, label, full, runs)
    for k in (2, 3, 4):
        runs = [top_k(r["curves"], k, args.batch) for r in rows]
        add_row(table, f"top-{k} at the first evaluation, retrained (Egele et al.)", full, runs)
    Console(width=None if sys.stdout.isatty() else 110).print(table)
    print("samples: training rows until each trial stopped (mean over searches); best finished: "
          "the best final validation score among trials left to finish; lost: how far that falls "
          "below the unpruned search's best. top-k: every trial to the first evaluation, then the "
          "k best there trained again from the start (samples count both).")  # fmt: skip
    return 0


def complete_only(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` with only its curves that ran to the search's longest step, renumbered in order."""
    curves = [c for c in row["curves"] if c["state"] == "COMPLETE"]
    longest = max((max(int(s) for s in c["values"]) for c in curves), default=0)
    kept = [c for c in curves if max(int(s) for s in c["values"]) == longest]
    return {**row, "curves": [{**c, "number": i} for i, c in enumerate(kept)]}


def add_row(table: Any, label: str, full: list[dict[str, Any]], runs: list[dict[str, Any]]) -> None:
    """One candidate's means over the searches, against the unpruned searches ``full``."""
    pairs = list(zip(full, runs, strict=True))
    lost = [f["best"] - r["best"] for f, r in pairs]
    table.add_row(
        label, f"{statistics.fmean(r['samples'] for r in runs):,.0f}",
        f"{statistics.fmean(r['samples'] / f['samples'] for f, r in pairs):.0%}",
        f"{statistics.fmean(r['finished'] for r in runs):.1f}",
        f"{statistics.fmean(r['best'] for r in runs):.3f}",
        f"{statistics.fmean(lost):.3f} (max {max(lost):.3f})",
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
