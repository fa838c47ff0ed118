"""Private by construction: the texts of a user's data stay out of everything hpo writes.

A sentence planted in the data is looked for, after a whole study, in the database file, every
file the commands write (report, export, best's model folder and card, plots) and what the
dashboard serves: only counts, lengths, hashes and metrics may leave the data files. A password
in a storage URL and a hub token are looked for in the same places.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpo.cli.main import cli
from hpo.errors import TrialFailure, first_line
from tests.conftest import sentiment_rows, spec_dict, toml_text, write_csv
from tests.test_dashboard import get_json, serving, study_id

MARK = "zebra7731quokka"  # one word no tokenizer, label or attribute name would hold by chance
PLANTED = f"the {MARK} sang softly under violet tides"
TOKEN = "hf_" + "PlantedToken0" + "x9Y8z7W6v5U4t3S2r1Q0"  # shaped like a real one: 33 after hf_
PLAIN = "plain-secret-4417"  # a token in the environment that is not shaped like one


def files_holding(folder: Path, needle: bytes, skip: set[Path]) -> list[Path]:
    return [
        p
        for p in folder.rglob("*")
        if p.is_file() and p not in skip and needle in p.read_bytes().lower()
    ]


def every_reader(url: str, tmp_path: Path) -> list[str]:
    """What report, export, best, plot and the dashboard print or serve for study "tiny"; the
    files they write land under ``tmp_path``."""
    runner, outputs = CliRunner(), []
    for args in (
        ["report", "tiny"],
        ["report", "tiny", "--json"],
        ["export", "tiny", "--format", "json"],
        ["export", "tiny", "--format", "csv", "--out", str(tmp_path / "t.csv")],
        ["best", "tiny", "--out", str(tmp_path / "model"), "--seeds", "1"],
        *([["plot", "tiny", "--out", str(tmp_path / "plots")]]
          if importlib.util.find_spec("matplotlib") else []),
    ):  # fmt: skip
        result = runner.invoke(cli, [*args, "--storage", url])
        assert result.exit_code == 0, result.output
        outputs.append(result.output)
    if importlib.util.find_spec("optuna_dashboard") is not None:
        with serving(url, tmp_path / "dashboard.log") as base:
            sid = study_id(base, "tiny")
            for path in ("/api/studies", f"/api/studies/{sid}", "/api/meta"):
                outputs.append(str(get_json(base + path)))
    return outputs


def test_a_planted_sentence_is_in_nothing_hpo_writes_or_serves(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)  # a hub token in the environment must not leak either
    # the planted row three times, so that each split (train, validation, test) may hold it
    data = write_csv(tmp_path / "data.csv", [*sentiment_rows(150), *[(PLANTED, "pos")] * 3])
    raw = spec_dict(
        tiny_model_dir,
        data,
        study={"n_trials": 2},
        data={"test_fraction": 0.2, "max_eval_samples": 200},
        train={"max_steps": 10, "eval_every": 5, "max_length": 32, "device": "cpu"},
    )
    raw["space"]["augmentation_strength"] = {"low": 0.0, "high": 0.3}  # augmented texts too
    study_file = tmp_path / "private.toml"
    study_file.write_text(toml_text(raw))
    db = tmp_path / "private.db"
    url = f"sqlite:///{db}"
    result = CliRunner().invoke(cli, ["run", str(study_file), "--storage", url])
    assert result.exit_code == 0, result.output
    outputs = [result.output, *every_reader(url, tmp_path)]

    needle = MARK.encode()
    assert needle in data.read_bytes()  # the mark is there to be found
    assert files_holding(tmp_path, needle, skip={data}) == []
    assert files_holding(tmp_path, TOKEN.lower().encode(), skip=set()) == []
    assert (tmp_path / "model" / "README.md").is_file() and db.is_file()  # they were searched
    for text in outputs:
        assert MARK not in text.lower() and TOKEN not in text


def test_a_storage_password_is_in_nothing_hpo_prints_writes_stores_or_serves(
    tmp_path: Path, tiny_model_dir: Path, sentiment_csv: Path
) -> None:
    """A password in a real PostgreSQL URL, through every command and channel: the output of
    `hpo run --workers 2` and its workers, report, export, best (its model card and results
    file), plot, the dashboard's pages (the study note among them) and its log, the storage
    proxy's log, and what the database itself holds."""
    import optuna

    from tests.databases import database
    from tests.test_proxy import start_proxy, stop

    secret = "pl4nted-Passw0rd"
    raw = spec_dict(tiny_model_dir, sentiment_csv, study={"n_trials": 2},
                    data={"test_fraction": 0.2, "max_eval_samples": 80},
                    train={"max_steps": 10, "eval_every": 5})  # fmt: skip
    study_file = tmp_path / "pw.toml"
    study_file.write_text(toml_text(raw))
    with database("postgresql", tmp_path) as url:  # trust auth: any password is accepted
        scheme, rest = url.split("://", 1)
        user, host = rest.split("@", 1)
        url = f"{scheme}://{user}:{secret}@{host}"
        run = subprocess.run(
            [sys.executable, "-m", "hpo", "run", str(study_file), "--storage", url,
             "--workers", "2"],
            capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
        assert run.returncode == 0, run.stdout + run.stderr
        outputs = [run.stdout + run.stderr]
        assert f"{user}:***@" in outputs[0]  # the URL was printed, masked
        outputs += every_reader(url, tmp_path)
        proc, _ = start_proxy(url, tmp_path / "proxy.log")
        stop(proc)
        study = optuna.load_study(study_name="tiny", storage=url)
        trials = study.get_trials()
        stored: list[object] = [study.user_attrs]
        for t in trials:
            stored += [t.params, t.user_attrs, t.system_attrs]

    assert len(trials) == 2 and (tmp_path / "model" / "README.md").is_file()
    assert (tmp_path / "proxy.log").stat().st_size > 0  # the proxy said where it listens
    for text in [*outputs, str(stored)]:
        assert secret not in text
    assert files_holding(tmp_path, secret.lower().encode(), skip=set()) == []


def test_the_study_file_names_the_data_but_holds_none_of_it(tmp_path: Path, tiny_model_dir) -> None:
    """What the database does hold about the data: its path, counts and the baseline."""
    import optuna

    data = write_csv(tmp_path / "data.csv", [*sentiment_rows(60), (PLANTED, "pos")])
    raw = spec_dict(tiny_model_dir, data, study={"n_trials": 1})
    study_file = tmp_path / "s.toml"
    study_file.write_text(toml_text(raw))
    url = f"sqlite:///{tmp_path / 's.db'}"
    result = CliRunner().invoke(cli, ["create", str(study_file), "--storage", url])
    assert result.exit_code == 0, result.output
    attrs = optuna.load_study(study_name="tiny", storage=url).user_attrs
    assert str(data) in str(attrs)
    assert MARK in data.read_text() and MARK not in str(attrs).lower()


def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing is sent to the hub (and no test waits on its retries)."""
    import datasets
    import huggingface_hub.constants

    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.setenv(name, "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)


@pytest.mark.parametrize(
    ("section", "key", "value", "shown"),
    [
        ("model", "name", TOKEN, "'hf_***'"),  # a token pasted as the model's name
        ("model", "name", f"nobody/{PLAIN}", "'nobody/hf_***'"),  # the variable's value
        ("model", "name", "nobody/no-such-model", "'nobody/no-such-model'"),  # a missing model
        ("data", "hub", f"{TOKEN}/reviews", "'hf_***/reviews'"),  # the dataset's name
    ],
)
def test_a_hub_token_is_in_no_error_and_no_database(
    tmp_path: Path,
    tiny_model_dir: Path,
    sentiment_csv: Path,
    monkeypatch: pytest.MonkeyPatch,
    section: str,
    key: str,
    value: str,
    shown: str,
) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("HUGGING_FACE_HUB_TOKEN", PLAIN)
    _offline(monkeypatch)
    raw = spec_dict(tiny_model_dir, sentiment_csv)
    if section == "data":
        raw["data"] = {"hub": value}
    else:
        raw[section][key] = value
    study_file = tmp_path / "token.toml"
    study_file.write_text(toml_text(raw))
    db = tmp_path / "token.db"
    runner = CliRunner()
    for args in (["validate", str(study_file)], ["create", str(study_file)]):
        extra = ["--storage", f"sqlite:///{db}"] if args[0] == "create" else []
        out = runner.invoke(cli, [*args, *extra])
        assert out.exit_code == 2, out.output
        assert out.stderr.count("\n") == 1 and shown in out.stderr, out.stderr
        assert TOKEN not in out.output and PLAIN not in out.output
    assert not db.exists()


def test_every_path_a_message_takes_masks_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """Errors, trial failures (their reasons are stored), driver messages, and the hub client's
    log lines."""
    from hpo.errors import DataError
    from hpo.execution.storage import without_secret
    from hpo.models.pretrained import quiet_transformers

    monkeypatch.setenv("HF_TOKEN", PLAIN)
    said = f"401 for {TOKEN} and {PLAIN}"
    assert str(DataError(said)) == "401 for hf_*** and hf_***"
    assert str(TrialFailure(said)) == "401 for hf_*** and hf_***"
    assert first_line(RuntimeError(said + "\nmore")) == "401 for hf_*** and hf_***"
    masked = without_secret(f"{said} as ana:pw99", "postgresql://ana:pw99@db/hpo")
    assert masked == "401 for hf_*** and hf_*** as ana:***"
    assert str(DataError("hf_short1 and a plain hf_ prefix")) == "hf_short1 and a plain hf_ prefix"

    quiet_transformers()
    handlers = logging.getLogger("huggingface_hub").handlers
    assert handlers  # the hub client writes its retry lines through these
    for handler in handlers:
        record = logging.LogRecord(
            "huggingface_hub.utils._http",
            logging.WARNING,
            "",
            0,
            "HEAD %s/%s",
            (TOKEN, PLAIN),
            None,
        )
        assert handler.filter(record)
        assert record.getMessage() == "HEAD hf_***/hf_***"
