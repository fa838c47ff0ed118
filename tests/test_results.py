"""Tests of hpo.results.insights and its commands: JSON report, insights, export and plots of a stored study."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import FixedTrial, FrozenTrial, TrialState, create_trial
from rich.console import Console

from hpo.cli.main import cli
from hpo.config.sampling import sample
from hpo.config.spec import StudySpec
from hpo.execution.storage import open_storage
from hpo.results.insights import BLOCKS, importances, render_insights, sparkline
from hpo.results.report_json import report_json
from hpo.search.study import BASELINE_ATTR, create_or_resume
from tests.conftest import sentiment_rows, spec_dict, write_csv

PNG = b"\x89PNG\r\n\x1a\n"
N_SLOTS = 4  # the study's budget: that many empty WAITING slots stay in the database
START = datetime(2026, 1, 2, 3, 4, 5, 678901)
CURVE_A = {10: 0.6, 20: 0.7, 30: 0.8}
CURVE_B = {10: 0.65, 20: 0.8, 30: 0.85}
CURVE_C = {10: 0.55, 20: 0.6, 30: 0.7}
CURVE_P = {10: 0.5, 20: 0.52}
NAN_REASON = "loss became NaN at step 7"


def _spec(tmp_path: Path, csv_file: Path, name: str) -> StudySpec:
    # The spec is only stored, never trained on, so the model folder need not exist.
    raw = spec_dict(tmp_path / "unused-model", csv_file, study={"name": name, "n_trials": N_SLOTS})
    return StudySpec.from_dict(raw)


def _trial(
    spec: StudySpec,
    state: TrialState,
    lr: float,
    frozen: int,
    value: float | None = None,
    reports: dict[int, float] | None = None,
    seconds: float = 10.0,
    infeasible: bool = False,
    **attrs: Any,
) -> FrozenTrial:
    """A trial as hpo's objective leaves it: all params under their names, attrs, reports."""
    fixed = FixedTrial(
        {"learning_rate": lr, "frozen_layers": frozen}
        | {n: d.value for n, d in spec.space.dimensions.items() if d.is_fixed}
    )
    sample(spec.space, fixed)
    trial = create_trial(
        state=state,
        value=value,
        params=fixed.params,
        distributions=fixed.distributions,
        user_attrs=attrs,
        intermediate_values=reports or {},
        constraints={"fits_in_memory": 1.0} if infeasible else None,
    )
    trial.datetime_start, trial.datetime_complete = START, START + timedelta(seconds=seconds)
    return trial


def _attrs(steps: int, wall: float, acc: float) -> dict[str, Any]:
    return {
        "device": "cpu",
        "worker": "host:1",
        "steps": steps,
        "max_steps": 30,
        "train_samples": steps * 16,
        "samples_per_second": 100.0 + steps,
        "train_seconds": wall - 1.0,
        "eval_seconds": 0.5,
        "wall_seconds": wall,
        "peak_memory_mb": 512.5,
        "trainable_parameters": 12345,
        "metrics": {"accuracy": acc, "eval_loss": 1.0 - acc},
    }


@pytest.fixture
def stored(tmp_path: Path, sentiment_csv: Path) -> tuple[str, StudySpec, optuna.Study]:
    """A stored study of 3 complete, 1 pruned and 1 failed trial beside WAITING budget slots."""
    url = f"sqlite:///{tmp_path / 'results.db'}"
    spec = _spec(tmp_path, sentiment_csv, "res")
    extra = {BASELINE_ATTR: {"label": "pos", "accuracy": 0.5}}
    study, _ = create_or_resume(spec, open_storage(url, heartbeat=False), "", extra)
    complete = TrialState.COMPLETE
    trials = [
        _trial(spec, complete, 2e-3, 0, 0.80, CURVE_A, **_attrs(30, 12.0, 0.80), setup_seconds=3.0),
        _trial(spec, complete, 4e-3, 1, 0.85, CURVE_B, **_attrs(30, 11.0, 0.85)),
        _trial(spec, complete, 1.2e-3, 1, 0.70, CURVE_C, **_attrs(30, 10.0, 0.70)),
        _trial(spec, TrialState.PRUNED, 4.8e-3, 0, None, CURVE_P, **_attrs(20, 8.0, 0.52)),
        _trial(spec, TrialState.FAIL, 3e-3, 0, seconds=2.5, fail_reason=NAN_REASON),
    ]
    for t in trials:
        study.add_trial(t)
    return url, spec, study


def _finished(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials() if t.state != TrialState.WAITING]


def _one_line_error(out: Any, needle: str, code: int) -> None:
    """One line, no traceback; ``code`` 2 for wrong input, 1 for what else stops the command."""
    assert out.exit_code == code, out.output
    assert "Traceback" not in out.output
    assert out.output.strip().count("\n") == 0, out.output
    assert out.output.startswith("Error:") and needle in out.output, out.output


def test_sparkline_scales_values_to_blocks() -> None:
    assert sparkline([0, 1, 2, 3, 4, 5, 6, 7]) == BLOCKS
    assert sparkline([1.0, float("nan"), 3.0]) == "▁ █"
    assert sparkline([2.0, 2.0]) == BLOCKS[3] * 2  # a flat series sits mid-height
    assert sparkline([0.5], lo=0.0, hi=1.0) in ("▄", "▅")


def test_report_json_matches_the_trials(stored) -> None:
    _, spec, study = stored
    text = report_json(study.study_name, spec, study.get_trials(), study.user_attrs, top=3)
    data = json.loads(text)
    numbers = [t.number for t in _finished(study)]  # after the N_SLOTS waiting slots
    a, b, c, pruned, failed = numbers
    s = data["summary"]
    assert (s["n_complete"], s["n_pruned"], s["n_failed"], s["n_running"]) == (3, 1, 1, 0)
    assert data["n_waiting"] == N_SLOTS and data["n_trials_budget"] == N_SLOTS
    assert s["best_number"] == b and s["best_value"] == pytest.approx(0.85)
    assert s["best_params"] == study.trials[b].params
    assert s["failures"] == [{"number": failed, "reason": NAN_REASON}]
    assert s["steps_saved_by_pruning"] == 10 and data["pruning"]["steps_saved"] == 10
    # the pruned trial's 10 unrun steps at its own 7 s per 20 steps
    assert data["pruning"]["seconds_saved_estimate"] == pytest.approx(3.5)
    board = data["leaderboard"]
    assert [r["number"] for r in board] == [b, a, c]
    assert board[0] == {
        "number": b,
        "state": "COMPLETE",
        "value": 0.85,
        "params": study.trials[b].params,
        "steps": 30,
        "samples_per_second": 130.0,
    }
    assert data["baseline"]["label"] == "pos"
    assert data["baseline"]["best_minus_baseline"] == pytest.approx(0.35)
    full = json.loads(report_json("res", spec, study.get_trials(), study.user_attrs))["leaderboard"]
    assert [(r["number"], r["state"], r["value"]) for r in full[3:]] == [(pruned, "PRUNED", 0.52)]
    assert [h["best"] for h in data["best_history"]] == [0.8, 0.85, 0.85]
    curves = data["learning_curves"]
    assert [x["number"] for x in curves] == [b, a, c]
    assert curves[0]["steps"] == [10, 20, 30] and curves[0]["values"] == [0.65, 0.8, 0.85]
    by_state = data["by_state"]
    assert by_state["COMPLETE"] == {"trials": 3, "steps": 90, "wall_seconds": 33.0}
    assert by_state["PRUNED"] == {"trials": 1, "steps": 20, "wall_seconds": 8.0}
    assert by_state["FAIL"] == {"trials": 1, "steps": 0, "wall_seconds": 2.5}  # from its times
    assert set(data["importances"]["values"]) == {"learning_rate", "frozen_layers"}
    assert sum(data["importances"]["values"].values()) == pytest.approx(1.0)
    assert "batch_size" in data["importances"]["note"]  # fixed params are named, not ranked


def test_report_json_is_strict_json_without_trials(tmp_path: Path, sentiment_csv: Path) -> None:
    spec = _spec(tmp_path, sentiment_csv, "empty")
    data = json.loads(report_json("empty", spec, [], {}))
    assert data["leaderboard"] == [] and data["summary"]["best_number"] is None
    assert data["importances"] == {"values": {}, "note": "needs at least 2 complete trials, has 0"}
    with pytest.raises(ValueError, match="top must be at least 1"):
        report_json("empty", spec, [], {}, top=0)


def test_importances_skip_single_valued_params_and_small_studies(stored) -> None:
    _, spec, study = stored
    complete = [t for t in study.get_trials() if t.state == TrialState.COMPLETE]
    assert importances(complete[:1], "maximize") == ({}, "needs at least 2 complete trials, has 1")
    same = [_trial(spec, TrialState.COMPLETE, 2e-3, 0, v) for v in (0.6, 0.7)]
    values, note = importances(same, "maximize")
    assert values == {} and note.startswith("no parameter varied")
    assert "learning_rate" in note and "seed" in note


def test_render_insights_shows_importances_curves_and_time(stored) -> None:
    _, spec, study = stored
    buf = io.StringIO()
    Console(file=buf, width=120).print(render_insights(spec, study.get_trials()))
    text = buf.getvalue()
    assert "learning_rate" in text and "frozen_layers" in text
    b = _finished(study)[1].number
    assert f"#{b}" in text and "0.65 → 0.85" in text  # the best trial's learning curve
    assert "best accuracy over 3 complete trials" in text
    assert any(ch in text for ch in BLOCKS[1:])
    assert "pruning saved about 3.5s" in text
    assert "33.0s" in text and "2.5s" in text  # wall time of complete and failed trials


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def test_export_csv_json_parquet_equal_the_trials(stored, runner, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    url, _, study = stored
    trials = _finished(study)
    out = runner.invoke(cli, ["export", "res", "--storage", url])
    assert out.exit_code == 0, out.output
    csv_rows = list(csv.DictReader(io.StringIO(out.stdout)))
    out = runner.invoke(cli, ["export", "res", "--format", "json", "--storage", url])
    assert out.exit_code == 0, out.output
    json_rows = json.loads(out.stdout)
    file = tmp_path / "sub" / "trials.parquet"
    args = ["export", "res", "--format", "parquet", "--out", str(file), "--storage", url]
    out = runner.invoke(cli, args)
    assert out.exit_code == 0 and f"wrote 5 trials to {file}" in out.output, out.output
    pq_rows = pq.read_table(file).to_pylist()
    assert len(csv_rows) == len(json_rows) == len(pq_rows) == len(trials) == 5
    for t, c, j, p in zip(trials, csv_rows, json_rows, pq_rows, strict=True):
        assert int(c["number"]) == j["number"] == p["number"] == t.number
        assert c["state"] == j["state"] == p["state"] == t.state.name
        assert j["value"] == p["value"] == (t.value if t.values else None)
        assert c["value"] == ("" if not t.values else repr(t.value))
        for name, v in t.params.items():
            assert j[f"param_{name}"] == p[f"param_{name}"] == v
            assert c[f"param_{name}"] == str(v)
        assert j["datetime_start"] == c["datetime_start"] == t.datetime_start.isoformat()
        assert p["datetime_start"] == t.datetime_start
        assert j["duration_seconds"] == p["duration_seconds"] == t.duration.total_seconds()
        for key in ("steps", "wall_seconds", "fail_reason", "setup_seconds", "device"):
            assert j[key] == p[key] == t.user_attrs.get(key), key
        metrics = t.user_attrs.get("metrics", {})
        assert j["metric_accuracy"] == p["metric_accuracy"] == metrics.get("accuracy")
        assert j["metric_eval_loss"] == metrics.get("eval_loss")
    assert json_rows[-1]["fail_reason"] == NAN_REASON
    assert json_rows[3]["last_reported"] == 0.52 and json_rows[3]["value"] is None
    assert list(csv_rows[0])[:3] == ["number", "state", "value"]


def test_infeasible_trials_are_marked_and_never_best(stored, runner) -> None:
    url, spec, study = stored
    oom = "out of memory (also with half the batch)"
    study.add_trial(
        _trial(
            spec, TrialState.COMPLETE, 1.5e-3, 0, 0.99, {10: 0.99}, infeasible=True, fail_reason=oom
        )
    )
    data = json.loads(report_json("res", spec, study.get_trials(), study.user_attrs))
    assert data["summary"]["best_value"] == 0.85
    assert [h["value"] for h in data["best_history"]] == [0.8, 0.85, 0.7]
    assert data["summary"]["failures"][-1]["reason"] == f"{oom} (kept as infeasible)"
    out = runner.invoke(cli, ["export", "res", "--format", "json", "--storage", url])
    rows = json.loads(out.stdout)
    assert [r["infeasible"] for r in rows] == [False] * 5 + [True]
    # the stored 0.99 is a placeholder, not a score: the export leaves it out
    assert rows[-1]["value"] is None and rows[-1]["fail_reason"] == oom


def test_an_infeasible_trial_is_best_nowhere_and_counted_as_such(
    stored, runner, tmp_path: Path, sentiment_csv: Path
) -> None:
    from hpo.results.dashboard import note_markdown
    from hpo.results.live import LiveView

    url, spec, study = stored
    over = "epsilon 9.1 above privacy.target_epsilon 1"
    study.add_trial(
        _trial(
            spec,
            TrialState.COMPLETE,
            1.5e-3,
            0,
            0.99,
            {10: 0.99},
            infeasible=True,
            fail_reason=over,
        )
    )
    trials = study.get_trials()
    best = max((t for t in trials if t.value == 0.85), key=lambda t: t.number)
    text = " ".join(runner.invoke(cli, ["report", "res", "--storage", url]).output.split())
    assert "4 complete (1 infeasible), 1 pruned" in text
    assert f"best trial #{best.number}: accuracy 0.85" in text
    assert f"**Best accuracy: 0.85** (trial #{best.number})" in note_markdown(study)
    view = LiveView(Console(file=io.StringIO()), "res", "accuracy", "maximize", None)
    view.resume_from(trials)
    assert view.best == (best.number, 0.85)
    view.trial_finished(99, "COMPLETE", 0.995, feasible=False)  # over its constraint
    assert view.best == (best.number, 0.85)
    # a study whose every complete trial is infeasible has no best, and says why
    alone = _spec(tmp_path, sentiment_csv, "over")
    only, _ = create_or_resume(alone, open_storage(url, heartbeat=False))
    only.add_trial(
        _trial(
            alone, TrialState.COMPLETE, 1e-3, 0, 0.9, {10: 0.9}, infeasible=True, fail_reason=over
        )
    )
    text = " ".join(runner.invoke(cli, ["report", "over", "--storage", url]).output.split())
    assert "1 complete (1 infeasible)" in text and "no feasible trial yet" in text
    assert "no trial has completed yet" not in text


def test_export_errors_are_one_line(stored, runner, tmp_path: Path) -> None:
    url, _, _ = stored
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = runner.invoke(cli, ["export", "nope", "--storage", url])
    _one_line_error(out, "no study named 'nope'", 2)
    out = runner.invoke(cli, ["export", "res", "--format", "parquet", "--storage", url])
    _one_line_error(out, "give --out FILE.parquet", 2)
    out = runner.invoke(cli, ["export", "res", "--out", str(blocker / "t.csv"), "--storage", url])
    _one_line_error(out, "cannot write --out", 1)


def test_export_never_overwrites_a_file_unasked_nor_ever_the_database(
    stored, runner, tmp_path: Path
) -> None:
    url, _, _ = stored
    database = tmp_path / "results.db"
    kept = database.read_bytes()
    mine = tmp_path / "notes.txt"
    mine.write_text("my notes")
    args = ["export", "res", "--storage", url, "--out"]
    out = runner.invoke(cli, [*args, str(mine)])
    _one_line_error(out, f"--out {mine} exists; choose a new file, or pass --overwrite", 2)
    assert mine.read_text() == "my notes"
    replaced = runner.invoke(cli, [*args, str(mine), "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    assert mine.read_text().startswith("number,state,value")
    # the database itself, with --overwrite or without: refused, and still a working study
    for extra in ([], ["--overwrite"]):
        out = runner.invoke(cli, [*args, str(database), *extra])
        _one_line_error(out, "is the study's database; choose another file", 2)
    assert database.read_bytes() == kept
    assert runner.invoke(cli, ["report", "res", "--storage", url]).exit_code == 0


def test_plot_writes_png_files(stored, runner, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="hpo plot needs the plots extra")
    url, _, _ = stored
    folder = tmp_path / "plots"
    out = runner.invoke(cli, ["plot", "res", "--out", str(folder), "--storage", url])
    assert out.exit_code == 0, out.output
    names = {"history", "intermediate_values", "importances"}
    names |= {"slice_learning_rate", "slice_frozen_layers"}
    assert {p.stem for p in folder.iterdir()} == names
    for stem in names:
        data = (folder / f"{stem}.png").read_bytes()
        assert data.startswith(PNG) and len(data) > 1000, stem
    assert "never varied: " in out.output and "batch_size" in out.output


def test_plot_refuses_an_out_folder_that_holds_files_unless_overwrite(
    stored, runner, tmp_path: Path, monkeypatch
) -> None:
    """Like `hpo best`: a folder with files is refused in one line and left byte for byte,
    --overwrite replaces it whole (no stale plot stays), an empty current folder takes them."""
    pytest.importorskip("matplotlib", reason="hpo plot needs the plots extra")
    url, _, _ = stored
    folder = tmp_path / "plots"
    folder.mkdir()
    (folder / "history.png").write_bytes(b"mine")
    (folder / "slice_gone.png").write_bytes(b"stale")
    args = ["plot", "res", "--out", str(folder), "--storage", url]
    out = runner.invoke(cli, args)
    _one_line_error(out, f"--out {folder} is not empty (it holds 2 files); choose a new", 2)
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == {
        "history.png": b"mine",
        "slice_gone.png": b"stale",
    }
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # none hidden
    out = runner.invoke(cli, [*args, "--overwrite"])
    assert out.exit_code == 0, out.output
    assert "slice_gone.png" not in {p.name for p in folder.iterdir()}
    assert (folder / "history.png").read_bytes().startswith(PNG)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # none hidden
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    out = runner.invoke(cli, ["plot", "res", "--out", ".", "--storage", url])
    assert out.exit_code == 0, out.output
    assert (here / "history.png").read_bytes().startswith(PNG)


def test_plot_skips_importances_with_one_complete_trial(
    runner, tmp_path: Path, sentiment_csv: Path
) -> None:
    pytest.importorskip("matplotlib", reason="hpo plot needs the plots extra")
    url = f"sqlite:///{tmp_path / 'one.db'}"
    spec = _spec(tmp_path, sentiment_csv, "one")
    study, _ = create_or_resume(spec, open_storage(url, heartbeat=False))
    study.add_trial(_trial(spec, TrialState.COMPLETE, 2e-3, 0, 0.8, {10: 0.8}))
    out = runner.invoke(cli, ["plot", "one", "--out", str(tmp_path / "p"), "--storage", url])
    assert out.exit_code == 0, out.output
    assert "no parameter importances: fewer than 2 complete trials" in out.output
    assert {p.name for p in (tmp_path / "p").iterdir()} == {
        "history.png",
        "intermediate_values.png",
    }


def test_plot_errors_are_one_line(stored, runner, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="hpo plot needs the plots extra")
    url, _, _ = stored
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    out = runner.invoke(cli, ["plot", "nope", "--out", str(tmp_path / "p"), "--storage", url])
    _one_line_error(out, "no study named 'nope'", 2)
    out = runner.invoke(cli, ["plot", "res", "--out", str(blocker / "p"), "--storage", url])
    _one_line_error(out, f"cannot write to --out {blocker / 'p'}", 1)
    assert not (tmp_path / "p").exists()


def test_plot_without_matplotlib_names_the_extra(stored, runner, tmp_path, monkeypatch) -> None:
    url, _, _ = stored
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    out = runner.invoke(cli, ["plot", "res", "--out", str(tmp_path / "p"), "--storage", url])
    _one_line_error(out, "pip install 'hpo[plots]'", 1)


def test_a_conditional_study_reports_exports_and_plots(
    runner, tmp_path: Path, sentiment_csv
) -> None:
    """LoRA trials store lora_alpha and no frozen_layers, full fine-tuning trials the reverse:
    every view of the study handles the parameters a trial does not have."""
    url = f"sqlite:///{tmp_path / 'cond.db'}"
    raw = spec_dict(tmp_path / "unused-model", sentiment_csv, study={"name": "cond", "n_trials": 8})
    raw["space"].update(lora_rank=[0, 8], lora_alpha={"low": 4.0, "high": 64.0, "log": True})
    spec = StudySpec.from_dict(raw)
    study, _ = create_or_resume(spec, open_storage(url, heartbeat=False))
    for i in range(8):
        trial = study.ask()
        hp = sample(spec.space, trial, depth=2)
        value = 0.9 - 0.01 * i if hp["lora_rank"] else 0.7 + 0.01 * i
        trial.report(value, 10)
        trial.set_user_attr("steps", 10)
        study.tell(trial, value)
    trials = study.get_trials()
    assert {"lora_alpha" in t.params for t in trials} == {True, False}
    data = json.loads(report_json("cond", spec, trials, study.user_attrs))
    best = max(trials, key=lambda t: t.value or 0)
    assert data["summary"]["best_value"] == pytest.approx(best.value)
    out = runner.invoke(cli, ["report", "cond", "--storage", url])
    assert out.exit_code == 0, out.output
    assert "lora r" in out.output  # the strategy's short column name
    out = runner.invoke(cli, ["export", "cond", "--format", "json", "--storage", url])
    rows = json.loads(out.stdout)
    by_number = {r["number"]: r for r in rows}
    for t in trials:
        row = by_number[t.number]
        assert row["param_lora_alpha"] == t.params.get("lora_alpha")
        assert row["param_frozen_layers"] == t.params.get("frozen_layers")
    pytest.importorskip("matplotlib", reason="hpo plot needs the plots extra")
    out = runner.invoke(cli, ["plot", "cond", "--out", str(tmp_path / "p"), "--storage", url])
    assert out.exit_code == 0, out.output
    assert (tmp_path / "p" / "history.png").read_bytes().startswith(PNG)


def test_export_writes_into_a_pipe_or_device_and_through_a_link(
    stored, runner, tmp_path: Path
) -> None:
    """--out /dev/stdout (a pipe or terminal) or a FIFO is written into: the atomic rename that
    protects a file replaced the device itself (as root, /dev/null became a regular file). A
    symlink keeps pointing at the file it names, which gets the export."""
    import os
    import stat
    import threading

    url, _, _ = stored
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()))
    reader.start()
    try:
        out = runner.invoke(cli, ["export", "res", "--storage", url, "--out", str(fifo)])
    finally:
        reader.join(timeout=30)
        if reader.is_alive():  # nothing opened it for writing: let the reader go
            fifo.open("w").close()
            reader.join()
    assert out.exit_code == 0, out.output  # no --overwrite needed: nothing there to lose
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)  # still the pipe
    assert got and got[0].startswith("number,state,value")
    real = tmp_path / "real.csv"
    real.write_text("old")
    link = tmp_path / "link.csv"
    link.symlink_to(real)
    done = runner.invoke(
        cli, ["export", "res", "--storage", url, "--out", str(link), "--overwrite"]
    )
    assert done.exit_code == 0, done.output
    assert link.is_symlink() and real.read_text().startswith("number,state,value")


def test_export_never_overwrites_the_study_data_or_model_files(runner, tmp_path: Path) -> None:
    """--overwrite replaces a file the user names, never one the study trains on."""
    data = write_csv(tmp_path / "train.csv", sentiment_rows(20))
    rows = data.read_text()
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    url = f"sqlite:///{tmp_path / 'own.db'}"
    raw = spec_dict(model, data, study={"name": "own", "n_trials": 1})
    create_or_resume(StudySpec.from_dict(raw), open_storage(url, heartbeat=False))
    args = ["export", "own", "--storage", url, "--overwrite", "--out"]
    out = runner.invoke(cli, [*args, str(data)])
    _one_line_error(out, f"--out {data} is the study's data file {data}; choose another file", 2)
    assert data.read_text() == rows
    out = runner.invoke(cli, [*args, str(model / "config.json")])
    _one_line_error(out, f"is in the study's model folder {model}; choose another file", 2)
    assert (model / "config.json").read_text() == "{}"
    # a link to the data file is the data file
    link = tmp_path / "link.csv"
    link.symlink_to(data)
    _one_line_error(runner.invoke(cli, [*args, str(link)]), "is the study's data file", 2)
    assert data.read_text() == rows
    mine = tmp_path / "table.csv"
    mine.write_text("old")
    assert runner.invoke(cli, [*args, str(mine)]).exit_code == 0
    assert mine.read_text().startswith("number,state,value")


def test_export_and_best_say_nothing_of_optunas_experimental_features(
    tmp_path: Path, tiny_model_dir: Path, sentiment_csv: Path
) -> None:
    """A conditional space rebuilds TPE with ``group``, which Optuna calls experimental: two
    lines of ExperimentalWarning on stderr from `hpo export` and `hpo best`, not the study's."""
    import subprocess

    from tests.conftest import spec_dict, toml_text

    raw = spec_dict(
        tiny_model_dir,
        sentiment_csv,
        sampler={"name": "tpe", "seed": 0},
        space={"lora_rank": [0, 4], "lora_alpha": {"low": 4, "high": 16}},
    )
    path = tmp_path / "s.toml"
    path.write_text(toml_text(raw))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert CliRunner().invoke(cli, ["create", str(path), "--storage", url]).exit_code == 0
    out = subprocess.run(
        [sys.executable, "-m", "hpo", "export", "tiny", "--storage", url, "--format", "json",
         "--out", str(tmp_path / "t.json")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "ExperimentalWarning" not in out.stderr, out.stderr
