"""Private by construction: the texts of a user's data stay out of everything hpo writes.

A sentence planted in the data is looked for, after a whole study, in the database file, every
file the commands write (report, export, best's model folder and card, plots) and what the
dashboard serves: only counts, lengths, hashes and metrics may leave the data files.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from click.testing import CliRunner

from hpo.cli.main import cli
from tests.conftest import sentiment_rows, spec_dict, toml_text, write_csv
from tests.test_dashboard import get_json, serving, study_id

MARK = "zebra7731quokka"  # one word no tokenizer, label or attribute name would hold by chance
PLANTED = f"the {MARK} sang softly under violet tides"


def files_holding(folder: Path, needle: bytes, skip: set[Path]) -> list[Path]:
    return [
        p
        for p in folder.rglob("*")
        if p.is_file() and p not in skip and needle in p.read_bytes().lower()
    ]


def test_a_planted_sentence_is_in_nothing_hpo_writes_or_serves(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
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
    runner = CliRunner()
    outputs = []

    def call(*args: str) -> None:
        result = runner.invoke(cli, list(args))
        assert result.exit_code == 0, result.output
        outputs.append(result.output)

    call("run", str(study_file), "--storage", url)
    call("report", "tiny", "--storage", url)
    call("report", "tiny", "--storage", url, "--json")
    call("export", "tiny", "--storage", url, "--format", "json")
    call("export", "tiny", "--storage", url, "--format", "csv", "--out", str(tmp_path / "t.csv"))
    call("best", "tiny", "--storage", url, "--out", str(tmp_path / "model"), "--seeds", "1")
    if importlib.util.find_spec("matplotlib") is not None:
        call("plot", "tiny", "--storage", url, "--out", str(tmp_path / "plots"))
    served = []
    if importlib.util.find_spec("optuna_dashboard") is not None:
        with serving(url, tmp_path / "dashboard.log") as base:
            sid = study_id(base, "tiny")
            for path in ("/api/studies", f"/api/studies/{sid}", "/api/meta"):
                served.append(str(get_json(base + path)))

    needle = MARK.encode()
    assert needle in data.read_bytes()  # the mark is there to be found
    assert files_holding(tmp_path, needle, skip={data}) == []
    assert (tmp_path / "model" / "README.md").is_file() and db.is_file()  # they were searched
    for text in outputs + served:
        assert MARK not in text.lower()


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
