"""`hpo dashboard`: study notes, the served API and page over a stored study, beside workers.

The stored study has no training behind it: finished trials are added with the attributes hpo
records. The server is always a real `python -m hpo dashboard` subprocess.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
import pytest
from click.testing import CliRunner
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState, create_trial

from bench.common import CHROMIUM, chromium_dom
from hpo.cli.main import cli
from hpo.config.spec import StudySpec
from hpo.execution.storage import open_storage
from hpo.execution.workers import work
from hpo.results.dashboard import exposure_warning, note_markdown, write_study_note
from hpo.search.study import BASELINE_ATTR, create_or_resume, load_stored
from tests.conftest import spec_dict, toml_text

BENCH = Path(__file__).resolve().parents[1] / "bench"
DISTRIBUTIONS = {
    "learning_rate": FloatDistribution(1e-3, 5e-3, log=True),
    "frozen_layers": IntDistribution(0, 1),
    "lr_schedule": CategoricalDistribution(["linear"]),
}
DEVICE = "cpu (2 threads)"
OOM = "CUDA out of memory (also with half the batch)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def finished(
    state: TrialState, lr: float, curve: dict[int, float], **attrs: Any
) -> optuna.trial.FrozenTrial:
    """A finished trial as a worker would have stored it."""
    value = curve[max(curve)] if state == TrialState.COMPLETE else None
    return create_trial(
        state=state,
        value=value,
        params={"learning_rate": lr, "frozen_layers": 1, "lr_schedule": "linear"},
        distributions=DISTRIBUTIONS,
        intermediate_values=curve,
        user_attrs={"device": DEVICE, "worker": "box:42", **attrs},
    )


def make_study(model: Path, data: Path, url: str, name: str = "dash") -> tuple[optuna.Study, str]:
    """An hpo study (spec, study file, baseline) with four finished trials; returns its file."""
    raw = spec_dict(model, data, study={"name": name, "n_trials": 2})
    text = toml_text(raw)
    baseline = {BASELINE_ATTR: {"label": "pos", "accuracy": 0.5}}
    study, _ = create_or_resume(
        StudySpec.from_dict(raw), open_storage(url, heartbeat=False), text, baseline
    )
    study.add_trials(
        [
            finished(TrialState.COMPLETE, 2e-3, {10: 0.6, 20: 0.7, 30: 0.8}, steps=30,
                     samples_per_second=412.5),
            finished(TrialState.COMPLETE, 3e-3, {10: 0.7, 20: 0.8, 30: 0.85}, steps=30,
                     samples_per_second=398.25),
            finished(TrialState.PRUNED, 1e-3, {10: 0.4}, steps=10, samples_per_second=405.0),
            finished(TrialState.FAIL, 4e-3, {}, steps=0, fail_reason=OOM),
        ]
    )  # fmt: skip
    return study, text


@pytest.fixture
def stored(tmp_path: Path, tiny_model_dir: Path, sentiment_csv: Path) -> tuple[str, str]:
    """(url, study file) of a SQLite database holding the study and a plain Optuna study."""
    url = f"sqlite:///{tmp_path / 'dash.db'}"
    _, text = make_study(tiny_model_dir, sentiment_csv, url)
    optuna.create_study(study_name="plain", storage=url)
    return url, text


def get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as r:
        return json.loads(r.read())


@contextmanager
def serving(url: str, log: Path, port: int | None = None) -> Iterator[str]:
    """Run `hpo dashboard` on ``url`` until the block ends; yields its base URL once it answers."""
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "hpo", "dashboard", "--storage", url, "--port", str(port)]
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 90
            while True:
                if proc.poll() is not None:
                    pytest.fail(f"hpo dashboard exited {proc.returncode}: {log.read_text()}")
                try:
                    get_json(base + "/api/meta")
                    break
                except (urllib.error.URLError, ConnectionError):
                    if time.monotonic() > deadline:
                        pytest.fail(f"hpo dashboard did not answer: {log.read_text()}")
                    time.sleep(0.1)
            yield base
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def study_id(base: str, name: str) -> int:
    summaries = get_json(base + "/api/studies")["study_summaries"]
    (found,) = [s["study_id"] for s in summaries if s["study_name"] == name]
    return int(found)


def test_the_note_holds_the_study_file_and_a_summary(tmp_path, tiny_model_dir, sentiment_csv):
    from optuna_dashboard import get_note

    study, text = make_study(tiny_model_dir, sentiment_csv, f"sqlite:///{tmp_path / 'n.db'}")
    note = note_markdown(study)
    assert f"```toml\n{text.strip()}\n```" in note
    assert "| COMPLETE | 2 |" in note and "| PRUNED | 1 |" in note and "| FAIL | 1 |" in note
    assert "| WAITING | 2 |" in note  # the budget's queued slots
    assert "**Best accuracy: 0.85** (trial #3)" in note
    assert "| learning_rate | 0.003 |" in note
    assert "majority class 'pos' scores accuracy 0.5" in note
    assert write_study_note(study) is True
    assert get_note(study) == note
    assert write_study_note(study) is False  # unchanged: no new note version
    study.add_trial(finished(TrialState.COMPLETE, 5e-3, {10: 0.9}))
    assert write_study_note(study) is True and "**Best accuracy: 0.9**" in get_note(study)


def test_a_study_without_results_says_so(tmp_path, tiny_model_dir, sentiment_csv) -> None:
    raw = spec_dict(tiny_model_dir, sentiment_csv, study={"name": "empty", "n_trials": 1})
    study, _ = create_or_resume(
        StudySpec.from_dict(raw), open_storage(f"sqlite:///{tmp_path}/e.db")
    )
    note = note_markdown(study)
    assert "No trial has completed yet" in note and "the validated spec" in note


def test_the_api_serves_the_study_its_trials_and_note(stored, tmp_path: Path) -> None:
    url, text = stored
    with serving(url, tmp_path / "dashboard.log") as base:
        sid = study_id(base, "dash")
        detail = get_json(f"{base}/api/studies/{sid}")
        plain = get_json(f"{base}/api/studies/{study_id(base, 'plain')}")
    trials = {t["number"]: t for t in detail["trials"]}
    assert [trials[n]["state"] for n in range(6)] == [
        "Waiting", "Waiting", "Complete", "Complete", "Pruned", "Fail"
    ]  # fmt: skip
    attrs = {n: {a["key"]: a["value"] for a in t["user_attrs"]} for n, t in trials.items()}
    assert attrs[2] == {
        "device": DEVICE, "worker": "box:42", "steps": "30", "samples_per_second": "412.5"
    }  # fmt: skip
    assert attrs[5]["fail_reason"] == OOM and attrs[5]["steps"] == "0"
    assert [v["value"] for v in trials[3]["intermediate_values"]] == [0.7, 0.8, 0.85]
    assert [t["number"] for t in detail["best_trials"]] == [3]
    columns = {a["key"] for a in detail["union_user_attrs"]}
    assert {"device", "steps", "samples_per_second", "fail_reason"} <= columns
    note = detail["note"]["body"]
    assert f"```toml\n{text.strip()}\n```" in note and "| COMPLETE | 2 |" in note
    assert plain["note"]["body"] == ""  # not an hpo study: left alone


def rendered(url: str, profile: Path) -> str:
    """The DOM headless Chromium renders for ``url`` after its scripts settle."""
    _, dom, err = chromium_dom(url, profile, timeout=120)
    assert "<html" in dom, err[-2000:]
    return dom


@pytest.mark.skipif(
    not CHROMIUM.exists(), reason=f"no Chromium at {CHROMIUM} (apt install chromium)"
)
def test_chromium_renders_the_trials_and_the_note(stored, tmp_path: Path) -> None:
    url, _ = stored
    with serving(url, tmp_path / "dashboard.log") as base:
        page = f"{base}/dashboard/studies/{study_id(base, 'dash')}"
        trials = rendered(f"{page}/trials?numbers=2,5", tmp_path / "profile")
        note = rendered(f"{page}/note", tmp_path / "profile")
    for shown in ("Trial 2 (trial_id=", "Trial 5 (trial_id=", DEVICE, "412.5", OOM):
        assert shown in trials, shown
    for shown in ("hpo study", "Best accuracy: 0.85", "Study file", "max_eval_samples"):
        assert shown in note, shown


class FakeObjective:
    """Samples the study's space and reports five values, without training."""

    def __init__(self, spec: Any) -> None:
        self.spec = spec

    def __call__(self, trial: optuna.Trial) -> float:
        from hpo.config.sampling import sample

        hp = sample(self.spec.space, trial)
        trial.set_user_attr("device", DEVICE)
        value = 0.0
        for step in range(1, 6):
            value = 1 - 100 * hp.learning_rate + 0.01 * step
            trial.report(value, step)
            time.sleep(0.01)
        trial.set_user_attr("steps", 5)
        return value


def _worker(url: str, name: str, index: int, errors: Any) -> None:
    """A worker process as `hpo worker` runs one (own storage, heartbeats), on the fake objective."""
    try:
        study, spec = load_stored(name, open_storage(url), worker_index=index)
        work(study, FakeObjective(spec), spec.study.n_trials)
    except Exception as exc:
        errors.put(f"{type(exc).__name__}: {exc}")


def test_workers_write_while_the_dashboard_reads_sqlite(tmp_path, tiny_model_dir, sentiment_csv):
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    n = 40
    raw = spec_dict(tiny_model_dir, sentiment_csv, study={"name": "busy", "n_trials": n})
    study, _ = create_or_resume(StudySpec.from_dict(raw), open_storage(url))
    log = tmp_path / "dashboard.log"
    statuses: list[int] = []
    spawn = mp.get_context("spawn")
    errors: Any = spawn.Queue()
    with serving(url, log) as base:
        sid = study_id(base, "busy")
        stop = threading.Event()

        def poll(path: str) -> None:
            while not stop.is_set():
                try:
                    with urllib.request.urlopen(base + path, timeout=60) as r:
                        r.read()
                        statuses.append(r.status)
                except urllib.error.HTTPError as exc:
                    statuses.append(exc.code)
                stop.wait(0.02)  # a busy browser, not a busy loop

        pollers = [
            threading.Thread(target=poll, args=(p,), daemon=True)
            for p in (f"/api/studies/{sid}", "/api/studies", f"/csv/{sid}")  # csv: uncached
        ]
        workers = [spawn.Process(target=_worker, args=(url, "busy", i, errors)) for i in (0, 1)]
        for t in pollers:
            t.start()
        for w in workers:
            w.start()
        try:
            for w in workers:
                w.join(timeout=180)
        finally:
            stop.set()
            for t in pollers:
                t.join(timeout=60)
            for w in workers:
                if w.is_alive():
                    w.kill()
    found = []
    while not errors.empty():
        found.append(errors.get())
    assert found == [] and [w.exitcode for w in workers] == [0, 0]
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * n
    assert all(len(t.intermediate_values) == 5 for t in trials)
    assert len(statuses) > 20 and set(statuses) == {200}, sorted(set(statuses))
    assert "locked" not in log.read_text()


def test_a_bad_storage_or_a_used_port_is_one_line(tmp_path: Path) -> None:
    def dashboard(*args: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "hpo", "dashboard", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)

    missing = dashboard("--storage", f"sqlite:///{tmp_path}/missing/dir/x.db")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr  # wrong input
    assert missing.stderr.strip().count("\n") == 0, missing.stderr
    assert "no study database at" in missing.stderr and not (tmp_path / "missing").exists()

    url = f"sqlite:///{tmp_path / 'ok.db'}"
    open_storage(url, heartbeat=False)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        used = dashboard("--storage", url, "--port", str(port))
    assert used.returncode == 1 and "Traceback" not in used.stderr  # the input is fine
    assert used.stderr.strip() == f"Error: port {port} on 127.0.0.1 is already in use; " + (
        "pick another with --port"
    )


def test_without_optuna_dashboard_it_names_the_extra(tmp_path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)
    out = CliRunner().invoke(cli, ["dashboard", "--storage", f"sqlite:///{tmp_path}/x.db"])
    assert out.exit_code == 1 and "pip install 'hpo[dashboard]'" in out.output
    assert "Traceback" not in out.output


def test_it_listens_on_the_loopback_address_unless_told_otherwise() -> None:
    host = {p.name: p for p in cli.commands["dashboard"].params}["host"]
    assert host.default == "127.0.0.1"
    for local in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert exposure_warning(local, 8080) is None, local


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.7", "dash.example.org"])
def test_any_other_host_is_warned_about_the_missing_login(host: str) -> None:
    assert exposure_warning(host, 8081) == (
        "warning: optuna-dashboard has no authentication, so anyone who can reach "
        f"{host}:8081 can read every study and trial in the database"
    )


def test_the_warning_comes_before_serving_and_only_for_another_host(tmp_path: Path) -> None:
    """Driven up to the database, which is missing: the warning is already out, on stderr."""
    missing = ["--storage", f"sqlite:///{tmp_path}/none.db"]
    error = f"Error: no study database at {tmp_path}/none.db"
    wide = CliRunner().invoke(cli, ["dashboard", *missing, "--host", "0.0.0.0", "--port", "8099"])
    assert wide.exit_code == 2 and wide.stdout == "", wide.output
    lines = wide.stderr.splitlines()
    assert len(lines) == 2 and lines[1].startswith(error), wide.stderr
    assert lines[0] == exposure_warning("0.0.0.0", 8099)
    local = CliRunner().invoke(cli, ["dashboard", *missing])
    assert local.exit_code == 2 and local.stderr.startswith(error), local.output
    assert local.stderr.count("\n") == 1 and "no authentication" not in local.output
    assert not (tmp_path / "none.db").exists()


@pytest.mark.slow
def test_the_dashboard_benchmark_runs_quick() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        rows = Path(tmp) / "dashboard.json"
        out = subprocess.run(
            [sys.executable, str(BENCH / "dashboard.py"), "--quick", "--json", str(rows)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert out.returncode == 0, out.stderr[-2000:]
        row = json.loads(rows.read_text())
    assert row["trials"] == 100 and row["trials_served"] == 100
    assert row["note_has_study_file"] is True
    assert 0 < row["startup_s"] < 120 and 0 < row["trials_api_first_s"] < 60
    if CHROMIUM.exists():
        assert row["page_rendered"] is True and row["chromium_page_s"] > 0
    assert "start-up" in out.stdout
