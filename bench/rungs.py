"""Where do learning curves separate? The evidence for placing a pruner's rungs, from recorded runs.

A rung is worth having where the scores of different configurations already differ by more than
the noise of one evaluation, and in the order they will finish in. For each evaluation step of
the complete trials recorded by bench/search_quality.py (one task's JSON files), this prints:

- the spread of the trials' scores at that step (standard deviation across trials) against the
  noise of one evaluation (one standard error of an accuracy p on the validation rows,
  sqrt(p (1 - p) / n), p the mean score at that step);
- Spearman's rank correlation between the score at that step and the final score;
- in how many of the recorded searches the trial that finished best was in the top third at that
  step: what successive halving with reduction factor 3 would have kept.

Only complete trials have a whole curve, so trials a pruner stopped are missing: the figures
describe the configurations that searches let finish, a selection that leaves out the worst.

    python bench/rungs.py bench/results/*-trec-*.json --eval-rows 500
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from typing import Any


def complete_curves(files: list[Path]) -> list[list[dict[int, float]]]:
    """Each recorded search's complete learning curves (step -> score), one list per search,
    those with its most common evaluation steps; a search stored in two files (the same method,
    seed and curves) counts once."""
    seen: set[str] = set()
    out = []
    for path in files:
        for row in json.loads(path.read_text()):
            curves = [
                {int(s): float(v) for s, v in c["values"].items()}
                for c in row.get("curves", ())
                if c["state"] == "COMPLETE" and len(c["values"]) > 1
            ]
            shapes = [tuple(sorted(c)) for c in curves]  # a grid's batch-32 runs are shorter
            common = max(set(shapes), key=shapes.count, default=())
            curves = [c for c, shape in zip(curves, shapes, strict=True) if shape == common]
            key = json.dumps([row.get("method"), row.get("seed"), curves], sort_keys=True)
            if len(curves) >= 3 and key not in seen:
                seen.add(key)
                out.append(curves)
    return out


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties)."""
    import pandas as pd

    return float(pd.Series(xs).corr(pd.Series(ys), method="spearman"))


def per_step(searches: list[list[dict[int, float]]], eval_rows: int) -> list[dict[str, Any]]:
    """The figures above for every step all complete curves share."""
    longest = max(max(c) for s in searches for c in s)
    searches = [s for s in searches if max(s[0]) == longest]
    steps = sorted(set.intersection(*(set(c) for s in searches for c in s)))
    final = steps[-1]
    rows = []
    for step in steps:
        sds, ses, rhos, kept = [], [], [], 0
        for curves in searches:
            at = [c[step] for c in curves]
            end = [c[final] for c in curves]
            p = statistics.fmean(at)
            sds.append(statistics.stdev(at))
            ses.append(math.sqrt(max(p * (1 - p), 1e-12) / eval_rows))
            if len(set(at)) > 1 and len(set(end)) > 1:
                rhos.append(spearman(at, end))
            best = max(range(len(curves)), key=lambda i: end[i])
            room = math.ceil(len(curves) / 3)
            top = sorted(range(len(curves)), key=lambda i: -at[i])[:room]
            kept += best in top
        rows.append(
            {
                "step": step,
                "share": step / final,
                "sd": statistics.fmean(sds),
                "se": statistics.fmean(ses),
                "rho": statistics.fmean(rhos) if rhos else math.nan,
                "kept": kept,
                "searches": len(searches),
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("rows", type=Path, nargs="+", help="JSON written by search_quality.py")
    parser.add_argument("--eval-rows", type=int, default=500, help="validation rows")
    parser.add_argument("--title", default="", help="a name for the table")
    args = parser.parse_args(argv)
    searches = complete_curves(args.rows)
    if not searches:
        print("error: no search in these files has three complete trials", file=sys.stderr)
        return 2
    from rich.console import Console
    from rich.table import Table

    trials = sum(len(s) for s in searches)
    table = Table(title=f"{args.title} {trials} complete trials in {len(searches)} searches")
    for name in ("step", "share of trial", "sd across trials", "one eval's se", "sd / se",
                 "rank corr. with final", "final best in top third"):  # fmt: skip
        table.add_column(name, justify="right")
    for r in per_step(searches, args.eval_rows):
        table.add_row(
            str(r["step"]), f"{r['share']:.0%}", f"{r['sd']:.3f}", f"{r['se']:.3f}",
            f"{r['sd'] / r['se']:.1f}", f"{r['rho']:.2f}", f"{r['kept']} of {r['searches']}",
        )  # fmt: skip
    Console(width=140).print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
