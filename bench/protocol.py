"""The SST2-small protocol's data, shared by the benchmarks that use it.

../shared/data/sst2/train.tsv shuffled with random.Random(0): rows 0-1,999 train, rows
2,000-2,499 the tuning validation split; the official dev.tsv (872 rows) the held-out test.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"


def sst2_small(folder: Path) -> dict[str, str]:
    """The protocol's train, validation and held-out test rows as csv files."""

    def read(name: str) -> list[list[str]]:
        with (SST2 / name).open(encoding="utf-8") as f:
            return list(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE))[1:]

    rows = read("train.tsv")
    random.Random(0).shuffle(rows)
    parts = {"train": rows[:2000], "validation": rows[2000:2500], "test": read("dev.tsv")}
    files = {}
    for name, part in parts.items():
        path = folder / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["sentence", "label"])
            writer.writerows(part)
        files[name] = str(path)
    return files
