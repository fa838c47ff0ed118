"""How fast `hpo dashboard` serves a large study: start-up, the trials API, the study page.

A fake objective samples the real search space and reports 10 values (no training), so the
study looks like a finished hpo study of N trials: complete, pruned and a few failed ones, each
with the user attributes hpo records. The study is written to a fresh SQLite file, then
`hpo dashboard` is started as a subprocess and timed:

    (a) start-up: from launching the command until its API answers (includes the note refresh)
    (b) the first GET of the study's trials API (/api/studies/<id>, cold), then a second (cached)
    (c) the first load of the study page in headless Chromium (when /usr/bin/chromium exists),
        beside Chromium on about:blank for its own start-up cost

    python bench/dashboard.py                  # 1,000 trials
    python bench/dashboard.py --quick          # 100 trials
    python bench/dashboard.py --trials 5000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from common import CHROMIUM, chromium_dom, fake_spec

STUDY_FILE = """\
# bench/dashboard.py: a fake study, no training
[study]
name = "{name}"
n_trials = {n}
[sampler]
name = "random"
seed = 0
"""


class FakeObjective:
    """Samples the real space, reports 10 values and records hpo's trial attributes."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec
        self.rng = random.Random(0)

    def __call__(self, trial: Any) -> float:
        import optuna

        from hpo.config.sampling import sample
        from hpo.errors import TrialFailure

        hp = sample(self.spec.space, trial)
        trial.set_user_attr("device", "cuda:0 (NVIDIA H100 80GB HBM3)")
        trial.set_user_attr("worker", f"bench:{trial.number % 4}")
        if self.rng.random() < 0.02:
            trial.set_user_attr("fail_reason", "CUDA out of memory (also with half the batch)")
            raise TrialFailure("out of memory")
        score = 0.9 - 40 * abs(math.log10(hp.learning_rate) + 4.5) * 0.01 - 0.01 * hp.frozen_layers
        value = 0.5
        for step in range(10, 101, 10):
            value = 0.5 + (score - 0.5) * (1 - math.exp(-step / 30)) + self.rng.gauss(0, 0.005)
            trial.report(value, step)
            trial.set_user_attr("steps", step)
            if trial.should_prune():
                raise optuna.TrialPruned()
        trial.set_user_attr("samples_per_second", round(self.rng.uniform(300, 400), 2))
        trial.set_user_attr("metrics", {"accuracy": round(value, 6), "eval_loss": 0.4})
        return value


def build_study(url: str, name: str, n_trials: int) -> None:
    """A finished study of ``n_trials`` fake trials in the database behind ``url``."""
    import json as _json

    import optuna

    from hpo.errors import TrialFailure
    from hpo.execution.storage import open_storage
    from hpo.search.study import BASELINE_ATTR, FILE_ATTR, SPEC_ATTR, build_pruner, build_sampler

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    spec = fake_spec(name, n_trials, sampler="random", max_steps=100, eval_every=10)
    # Sample in memory (fast), then store the finished trials in one pass.
    memory = optuna.create_study(
        direction="maximize", sampler=build_sampler(spec), pruner=build_pruner(spec)
    )
    memory.optimize(FakeObjective(spec), n_trials=n_trials, catch=(TrialFailure,))
    stored = optuna.create_study(
        study_name=name, storage=open_storage(url, heartbeat=False), direction="maximize"
    )
    stored.set_user_attr(SPEC_ATTR, _json.loads(_json.dumps(spec.to_dict())))
    stored.set_user_attr(FILE_ATTR, STUDY_FILE.format(name=name, n=n_trials))
    stored.set_user_attr(BASELINE_ATTR, {"label": "pos", "accuracy": 0.51})
    stored.add_trials(memory.get_trials(deepcopy=False))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, timeout: float = 120) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return bytes(r.read())


def _timed_get(url: str) -> tuple[float, bytes]:
    start = time.perf_counter()
    body = _get(url)
    return time.perf_counter() - start, body


def _wait_ready(proc: subprocess.Popen[bytes], base: str, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"hpo dashboard exited: {log.read_text()[-2000:]}")
        try:
            _get(base + "/api/meta", timeout=5)
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.02)
    raise RuntimeError("hpo dashboard did not answer in time")


def chromium_seconds(url: str, folder: Path) -> tuple[float, str]:
    """Wall seconds of one headless Chromium load of ``url`` and the DOM it rendered."""
    seconds, dom, _ = chromium_dom(url, Path(tempfile.mkdtemp(dir=folder)))
    return seconds, dom


def measure(n_trials: int, folder: Path) -> dict[str, Any]:
    """Build the study, start the dashboard on it and time what a user waits for."""
    url = f"sqlite:///{folder / 'dashboard.db'}"
    name = "bench-dashboard"
    start = time.perf_counter()
    build_study(url, name, n_trials)
    build = time.perf_counter() - start
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    log = folder / "dashboard.log"
    cmd = [sys.executable, "-m", "hpo", "dashboard", "--storage", url, "--port", str(port)]
    with log.open("wb") as sink:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
        try:
            _wait_ready(proc, base, log)
            startup = time.perf_counter() - start
            studies = json.loads(_get(base + "/api/studies"))["study_summaries"]
            (study_id,) = [s["study_id"] for s in studies if s["study_name"] == name]
            first, body = _timed_get(f"{base}/api/studies/{study_id}")
            second, _ = _timed_get(f"{base}/api/studies/{study_id}")
            detail = json.loads(body)
            row: dict[str, Any] = {
                "trials": n_trials,
                "build_s": build,
                "startup_s": startup,
                "trials_api_first_s": first,
                "trials_api_second_s": second,
                "trials_api_bytes": len(body),
                "trials_served": len(detail["trials"]),
                "note_has_study_file": "```toml" in detail["note"]["body"],
                "chromium_page_s": None,
                "chromium_blank_s": None,
                "page_rendered": None,
            }
            if CHROMIUM.exists():
                blank, _ = chromium_seconds("about:blank", folder)
                page, dom = chromium_seconds(f"{base}/dashboard/studies/{study_id}", folder)
                row.update(
                    chromium_blank_s=blank,
                    chromium_page_s=page,
                    page_rendered="Best Trial (number=" in dom,
                )
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return row


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=1000, help="trials in the study")
    parser.add_argument("--quick", action="store_true", help="100 trials")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    n = 100 if args.quick else args.trials
    from rich.console import Console
    from rich.table import Table

    with tempfile.TemporaryDirectory() as tmp:
        row = measure(n, Path(tmp))
    table = Table(title=f"hpo dashboard on a SQLite study of {n} trials (seconds)")
    table.add_column("what")
    table.add_column("seconds", justify="right")
    table.add_row("(a) start-up until the API answers", _s(row["startup_s"]))
    kb = row["trials_api_bytes"] / 1024
    table.add_row(f"(b) first GET of the trials API ({kb:.0f} KiB)", _s(row["trials_api_first_s"]))
    table.add_row("    second GET (cached)", _s(row["trials_api_second_s"]))
    table.add_row("(c) study page in headless Chromium", _s(row["chromium_page_s"]))
    table.add_row("    Chromium on about:blank", _s(row["chromium_blank_s"]))
    table.add_row("building the study (not the dashboard)", _s(row["build_s"]))
    Console().print(table)
    if row["chromium_page_s"] is None:
        print(f"(c) skipped: no Chromium at {CHROMIUM}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(row, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
