"""Each benchmark script runs in its --quick mode, so the scripts cannot rot unnoticed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"

pytestmark = pytest.mark.slow


def run(script: str, *args: str, timeout: float = 300) -> str:
    out = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def test_workers_benchmark_quick(tmp_path: Path) -> None:
    text = run("workers.py", "--quick", "--json", str(tmp_path / "rows.json"))
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [(r["storage"], r["workers"]) for r in rows] == [
        ("sqlite", 1), ("sqlite", 4), ("journal", 1), ("journal", 4)
    ]  # fmt: skip
    for r in rows:
        assert r["trials"] == r["expected"] and r["errors"] == 0, r
        assert r["trials_per_s"] > 0
    assert "trials/s" in text


def test_cpu_split_benchmark_quick(study_file: Path, tmp_path: Path) -> None:
    text = run(
        "cpu_split.py", "--quick", "--study", str(study_file), "--json", str(tmp_path / "rows.json")
    )
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert [(r["workers"], r["trials"]) for r in rows] == [(1, 3), (2, 3)]
    assert all(r["trials_per_hour"] > 0 and r["samples_per_s_per_worker"] > 0 for r in rows)
    assert "trials/hour" in text
