"""The command line, in-process, with the database checked afterwards."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner

from hpo import keys
from hpo.cli.main import cli
from hpo.search.study import FILE_ATTR, SPEC_ATTR
from tests.conftest import sentiment_rows, spec_dict, toml_text, write_csv


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


def db(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'cli.db'}"


def test_every_command_has_help(runner: CliRunner) -> None:
    result = runner.invoke(cli, ["--help"])
    assert result.exit_code == 0
    assert cli.commands, "no commands registered"
    for name, command in cli.commands.items():
        out = runner.invoke(cli, [name, "--help"])
        assert out.exit_code == 0, name
        assert command.help, f"{name} has no help"
        first_words = " ".join(command.help.split()[:5])
        assert first_words in " ".join(out.output.split()), name


def test_python_dash_m_works() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "hpo", "--help"], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0 and "run" in out.stdout and "report" in out.stdout


def test_validate_accepts_a_good_file_and_reports_the_data(runner, study_file: Path) -> None:
    out = runner.invoke(cli, ["validate", str(study_file)])
    assert out.exit_code == 0, out.output
    assert "valid study file" in out.output
    assert "2 labels (neg, pos)" in out.output
    assert "space.learning_rate" in out.output
    assert "first trial" not in out.output
    wide = ["--set", "space.learning_rate={low=1e-5, high=1e-2}"]
    recipe = ["--set", "sampler.start_from_recipe=true"]
    out = runner.invoke(cli, ["validate", str(study_file), *wide, *recipe])
    line = "first trial (trainer recipe), before sampling: {'learning_rate': 5e-05, "
    assert line + "'frozen_layers': 0}" in " ".join(out.output.split())


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["train.eval_every=0"], "`train.eval_every` must be at least 1, got 0"),
        (["space.learning_rate={low=1e-3, high=1e-4}"], "low > high"),
        (["space.frozen_layers={low=0, high=9}"], "goes up to 9 but the model has 2 layers"),
        (["data.text_column=body"], "`data.text_column` 'body' is not a column"),
        (["train.epochs=1", "train.max_steps=5"], "both `max_steps` and `epochs`"),
        (["sampler.first_trials=[{frozen_layers=5}]"], "first_trials[0].frozen_layers` is 5"),
        (["sampler.start_from_recipe=true"], "recipe's learning_rate 5e-05 is outside the space"),
        (["nonsense"], "--set needs section.key=value"),
        (
            ["pruner.name=median", "pruner.reduction_factor=3"],  # its default, still not read
            "`pruner.reduction_factor` is not read by pruner 'median' (only by "
            "'successive_halving', 'hyperband')",
        ),
        (
            ["space.lr_schedule=[linear,cosine]"],
            "--set space.lr_schedule=[linear,cosine] is not a TOML value: quote the words in it",
        ),
    ],
)
def test_a_bad_study_is_one_line_without_traceback(runner, study_file, overrides, message) -> None:
    args = ["validate", str(study_file)] + [x for o in overrides for x in ("--set", o)]
    out = runner.invoke(cli, args)
    assert out.exit_code == 2  # wrong input, as click's usage errors
    assert message in out.output
    assert "Traceback" not in out.output
    assert out.output.strip().count("\n") == 0, out.output  # one line


def test_a_broken_toml_file_is_one_line(runner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[study\nname = 'x'\n")
    out = runner.invoke(cli, ["validate", str(bad)])
    assert (
        out.exit_code == 2 and "is not valid TOML" in out.output and "Traceback" not in out.output
    )


def test_run_stores_the_study_and_report_reads_it_back(
    runner, study_file: Path, tmp_path: Path
) -> None:
    url = db(tmp_path)
    out = runner.invoke(cli, ["run", str(study_file), "--storage", url, "--n-trials", "2"])
    assert out.exit_code == 0, out.output
    study = optuna.load_study(study_name="tiny", storage=url)
    assert len(study.trials) == 2
    assert study.user_attrs[FILE_ATTR] == study_file.read_text()
    assert study.user_attrs[SPEC_ATTR]["study"]["n_trials"] == 2
    assert f"best trial #{study.best_trial.number}" in out.output
    report = runner.invoke(cli, ["report", "tiny", "--storage", url])
    assert report.exit_code == 0, report.output
    assert f"best trial #{study.best_trial.number}" in report.output
    assert "majority class" in report.output
    as_json = runner.invoke(cli, ["report", "tiny", "--storage", url, "--json"])
    assert as_json.exit_code == 0, as_json.output
    facts = json.loads(as_json.output)
    assert facts["summary"]["best_number"] == study.best_trial.number
    assert facts["summary"]["best_value"] == study.best_value
    assert facts["summary"]["n_complete"] == 2
    # running again resumes: the budget is met, nothing new runs
    again = runner.invoke(cli, ["run", str(study_file), "--storage", url, "--n-trials", "2"])
    assert again.exit_code == 0 and "resumed" in again.output
    assert len(optuna.load_study(study_name="tiny", storage=url).trials) == 2


def test_storage_comes_from_the_environment(runner, study_file, tmp_path, monkeypatch) -> None:
    url = db(tmp_path)
    monkeypatch.setenv("HPO_STORAGE", url)
    out = runner.invoke(
        cli, ["run", str(study_file), "--n-trials", "1", "--set", "train.max_steps=10"]
    )
    assert out.exit_code == 0, out.output
    study = optuna.load_study(study_name="tiny", storage=url)
    assert study.trials[0].user_attrs["max_steps"] == 10


def test_report_of_an_unknown_study_is_one_line(runner, study_file, tmp_path) -> None:
    url = db(tmp_path)
    runner.invoke(
        cli,
        ["run", str(study_file), "--storage", url, "--n-trials", "1", "--set", "train.max_steps=5"],
    )
    out = runner.invoke(cli, ["report", "nope", "--storage", url])
    assert out.exit_code == 2
    assert "no study named 'nope'" in out.output and "tiny" in out.output
    assert "Traceback" not in out.output


def test_a_changed_study_file_does_not_touch_the_stored_study(runner, study_file, tmp_path) -> None:
    url = db(tmp_path)
    args = [
        "run",
        str(study_file),
        "--storage",
        url,
        "--n-trials",
        "1",
        "--set",
        "train.max_steps=5",
    ]
    assert runner.invoke(cli, args).exit_code == 0
    out = runner.invoke(cli, [*args, "--set", "space.seed=7"])
    assert out.exit_code == 2 and "already exists with other settings: space.seed" in out.output
    study = optuna.load_study(study_name="tiny", storage=url)
    assert len(study.trials) == 1 and study.user_attrs[SPEC_ATTR]["space"]["seed"] == 0
    # a smaller evaluation batch (after running out of memory) scores the same rows: resumed
    smaller = runner.invoke(cli, [*args, "--n-trials", "2", "--set", "train.eval_batch_size=8"])
    assert smaller.exit_code == 0, smaller.output
    assert len(optuna.load_study(study_name="tiny", storage=url).trials) == 2
    # run again at the earlier count: two are done, past it; nothing runs
    again = runner.invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "(2 trials done, past n_trials 1: raise it to run more)" in again.output
    assert len(optuna.load_study(study_name="tiny", storage=url).trials) == 2


def test_an_unreachable_database_is_one_line(runner, study_file) -> None:
    out = runner.invoke(
        cli, ["run", str(study_file), "--storage", "postgresql+psycopg://nobody@127.0.0.1:1/none"]
    )
    # the URL is right and the server does not answer: not the user's mistake, exit 1
    assert (
        out.exit_code == 1 and "cannot open storage" in out.output and "Traceback" not in out.output
    )
    # a URL SQLAlchemy cannot read is the user's: exit 2
    bad = runner.invoke(cli, ["run", str(study_file), "--storage", "postgresql+nodriver://x/y"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output


def test_augment_shows_texts_unchanged_at_zero_and_perturbed_above(runner, study_file) -> None:
    same = runner.invoke(cli, ["augment", str(study_file), "--strength", "0", "-n", "4"])
    assert same.exit_code == 0, same.output
    rows = [line for line in same.output.splitlines() if line.startswith("│")]
    cells = [[c.strip() for c in row.strip("│").split("│")] for row in rows]
    assert len(cells) >= 4 and all(c[1] == c[2] for c in cells)
    moved = runner.invoke(cli, ["augment", str(study_file), "--strength", "1", "-n", "4"])
    assert moved.exit_code == 0, moved.output
    rows = [line for line in moved.output.splitlines() if line.startswith("│")]
    cells = [[c.strip() for c in row.strip("│").split("│")] for row in rows]
    assert any(c[1] != c[2] for c in cells)
    bad = runner.invoke(cli, ["augment", str(study_file), "--set", "augment.ops={shout=1}"])
    assert bad.exit_code == 2 and "unknown key `augment.ops.shout`" in bad.output
    assert "Traceback" not in bad.output


def test_augment_and_validate_print_texts_and_labels_with_brackets_as_they_are(
    runner, tmp_path, tiny_model_dir
) -> None:
    # rich would read "[love]" and "[/]" in a plain string as markup and drop them from the row
    rows = [(f"row {i} I [love] it [/] [bold]x", "[pos]" if i % 2 else "[neg]") for i in range(40)]
    data = write_csv(tmp_path / "brackets.csv", rows)
    study = tmp_path / "brackets.toml"
    study.write_text(toml_text(spec_dict(tiny_model_dir, data)))
    out = runner.invoke(cli, ["augment", str(study), "--strength", "0", "-n", "3"])
    assert out.exit_code == 0, out.output
    assert out.output.count("I [love] it [/] [bold]x") == 6  # 3 texts, each beside its copy
    checked = runner.invoke(cli, ["validate", str(study)])
    assert checked.exit_code == 0, checked.output
    assert "2 labels ([neg], [pos])" in checked.output


@pytest.mark.parametrize("command", ["report", "export", "plot", "best"])
def test_a_read_only_command_creates_no_database_and_no_folder(
    tmp_path: Path, command: str
) -> None:
    from click.testing import CliRunner

    from hpo.cli.main import cli

    missing = tmp_path / "missing" / "dir" / "x.db"
    where = ["--out", str(tmp_path / "missing" / "out")] if command in ("plot", "best") else []
    out = CliRunner().invoke(cli, [command, "x", "--storage", f"sqlite:///{missing}", *where])
    assert out.exit_code == 2 and out.output.count("\n") == 1, out.output
    assert out.output.startswith(f"Error: no study database at {missing}; pass the --storage")
    assert not (tmp_path / "missing").exists()


def test_a_storage_scheme_sqlalchemy_does_not_know_gets_the_right_one() -> None:
    from click.testing import CliRunner

    from hpo.cli.main import cli

    url = "postgres://ana:s3cret@db.example:5432/hpo"
    out = CliRunner().invoke(cli, ["report", "x", "--storage", url])
    assert out.exit_code == 2 and out.output.count("\n") == 1, out.output
    assert (
        "storage scheme 'postgres' is not one SQLAlchemy knows; write postgresql://" in out.output
    )
    assert "postgresql://ana:***@db.example:5432/hpo" in out.output and "s3cret" not in out.output


def test_an_unknown_key_in_the_study_file_exits_2_in_one_line_on_stderr(
    runner, tiny_model_dir: Path, sentiment_csv: Path, tmp_path: Path
) -> None:
    from tests.conftest import spec_dict, toml_text

    raw = spec_dict(tiny_model_dir, sentiment_csv)
    raw["train"]["max_stepz"] = 30
    bad = tmp_path / "typo.toml"
    bad.write_text(toml_text(raw))
    out = runner.invoke(cli, ["validate", str(bad)])
    assert out.exit_code == 2, out.output
    assert out.stdout == "" and out.stderr.count("\n") == 1, out.output
    assert out.stderr.startswith("Error: unknown key `train.max_stepz`; [train] has: max_steps")


def test_report_of_a_study_in_a_missing_database_exits_2_and_creates_nothing(
    runner, tmp_path: Path
) -> None:
    before = sorted(tmp_path.iterdir())
    out = runner.invoke(cli, ["report", "nosuch", "--storage", f"sqlite:///{tmp_path}/none.db"])
    assert out.exit_code == 2, out.output
    assert out.stderr == f"Error: no study database at {tmp_path}/none.db; pass the --storage " + (
        "URL that `hpo run` used (or set $HPO_STORAGE)\n"
    )
    assert sorted(tmp_path.iterdir()) == before


def test_a_storage_password_never_reaches_the_output(runner, study_file, tmp_path) -> None:
    from tests.databases import database

    secret = "s3cret-pw"
    with database("postgresql", tmp_path) as url:  # trust auth: any password is accepted
        scheme, rest = url.split("://", 1)
        user, host = rest.split("@", 1)
        with_password = f"{scheme}://{user}:{secret}@{host}"
        outputs = [
            runner.invoke(cli, ["create", str(study_file), "--storage", with_password]),
            runner.invoke(cli, ["report", "tiny", "--storage", with_password]),
            runner.invoke(cli, ["export", "tiny", "--storage", with_password, "--format", "json"]),
            runner.invoke(cli, ["report", "nosuch", "--storage", with_password]),
        ]
    down = f"{scheme}://{user}:{secret}@127.0.0.1:1/none"
    outputs.append(runner.invoke(cli, ["run", str(study_file), "--storage", down]))
    assert [o.exit_code for o in outputs] == [0, 0, 0, 2, 1], [o.output for o in outputs]
    assert "created study 'tiny' in" in outputs[0].output and ":***@" in outputs[0].output
    # the hint to join it names the database, its password masked, not a placeholder
    said = " ".join(outputs[0].output.split())
    assert f"hpo worker tiny --storage {scheme}://{user}:***@{host}" in said
    for out in outputs:
        assert secret not in out.output


def _rows_line(output: str) -> tuple[int, int]:
    """The train and validation row counts a run printed as it started."""
    found = re.search(r"(\d[\d,]*) train / (\d[\d,]*) validation rows", output)
    assert found, output
    return int(found[1].replace(",", "")), int(found[2].replace(",", ""))


def test_a_study_refuses_to_go_on_over_changed_data_and_keeps_what_it_has(
    runner, tmp_path: Path, tiny_model_dir: Path
) -> None:
    data = write_csv(tmp_path / "reviews.csv", sentiment_rows(400))
    path = tmp_path / "reviews.toml"
    path.write_text(toml_text(spec_dict(tiny_model_dir, data)))
    url = db(tmp_path)
    args = ["run", str(path), "--storage", url, "--set", "train.max_steps=5"]
    first = runner.invoke(cli, [*args, "--n-trials", "1"])
    assert first.exit_code == 0, first.output
    train_before, _ = _rows_line(first.output)
    stored = optuna.load_study(study_name="tiny", storage=url).user_attrs[keys.DATA]
    # the same data again: the study resumes
    again = runner.invoke(cli, [*args, "--n-trials", "1"])
    assert again.exit_code == 0 and "resumed study" in again.output

    # 60 more training rows: refused in one line, naming the change
    write_csv(data, sentiment_rows(460))
    grown = runner.invoke(cli, [*args, "--n-trials", "2"])
    assert grown.exit_code == 2, grown.output
    fresh = runner.invoke(cli, [*args, "--n-trials", "1", "--set", "study.name=grown"])
    train_after, _ = _rows_line(fresh.output)  # what the changed file gives a new study
    assert train_after != train_before
    assert "put the data back as it was" in grown.output
    assert "Traceback" not in grown.output
    error = grown.output.strip().splitlines()[-1]  # after the "preparing study" progress line
    assert error.startswith("Error: the data differ from what the trials of study 'tiny' ran on")
    assert f"train {train_after:,} rows (was {train_before:,})" in error

    # the same rows with two labels swapped: same counts, other content
    rows = sentiment_rows(400)
    pos = next(i for i, (_, y) in enumerate(rows) if y == "pos")
    neg = next(i for i, (_, y) in enumerate(rows) if y == "neg")
    rows[pos], rows[neg] = (rows[pos][0], "neg"), (rows[neg][0], "pos")
    write_csv(data, rows)
    swapped = runner.invoke(cli, [*args, "--n-trials", "2"])
    assert swapped.exit_code == 2 and "the rows' texts or labels changed" in swapped.output
    worker = runner.invoke(cli, ["worker", "tiny", "--storage", url])
    assert worker.exit_code == 2 and "the rows' texts or labels changed" in worker.output

    # nothing stored was lost or overwritten by the refused runs
    study = optuna.load_study(study_name="tiny", storage=url)
    assert len(study.trials) == 1 and study.user_attrs[keys.DATA] == stored
    # `hpo best` retrains on the data as it is, and says it differs from the search's
    out = tmp_path / "model"
    best = runner.invoke(cli, ["best", "tiny", "--storage", url, "--out", str(out), "--seeds", "1"])
    assert best.exit_code == 0, best.output
    said = " ".join(best.output.split())  # rich wraps long lines
    assert "warning: the data differ from what the study's trials ran on" in said
    assert "(the rows' texts or labels changed)" in said


def test_a_study_its_timeout_cut_short_says_so_and_a_rerun_goes_on(
    runner, study_file: Path, tmp_path: Path
) -> None:
    url = db(tmp_path)
    args = ["run", str(study_file), "--storage", url, "--n-trials", "3"]
    args += ["--set", "train.max_steps=100", "--set", "train.eval_every=50"]
    cut = runner.invoke(cli, [*args, "--timeout", "1"])
    assert cut.exit_code == 0, cut.output
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    ran = sum(t.state != optuna.trial.TrialState.WAITING for t in trials)
    assert ran < 3  # a trial of 100 steps takes longer than the timeout
    note = f"stopped by study.timeout (1 s) with {ran} of 3 trials done; run the same command"
    assert note in " ".join(cut.output.split())
    report = runner.invoke(cli, ["report", "tiny", "--storage", url, "--json"])
    assert json.loads(report.output)["stopped_by_timeout"].startswith(note)
    # a rerun with time enough finishes the budget, and the note is gone
    done = runner.invoke(cli, [*args, "--timeout", "600"])
    assert done.exit_code == 0, done.output
    assert "stopped by study.timeout" not in done.output
    report = runner.invoke(cli, ["report", "tiny", "--storage", url, "--json"])
    assert json.loads(report.output)["stopped_by_timeout"] is None


def test_a_resumed_study_s_live_view_counts_what_it_holds(
    runner, study_file: Path, tmp_path: Path
) -> None:
    url = db(tmp_path)
    args = ["run", str(study_file), "--storage", url, "--n-trials", "2"]
    args += ["--set", "train.max_steps=5"]
    assert runner.invoke(cli, args).exit_code == 0
    study = optuna.load_study(study_name="tiny", storage=url)
    states = [t.state for t in study.trials]
    complete, pruned = (
        states.count(optuna.trial.TrialState.COMPLETE),
        states.count(optuna.trial.TrialState.PRUNED),
    )
    best = study.best_trial
    # the budget is used: the rerun runs nothing, and its view shows the stored trials
    again = runner.invoke(cli, args)
    assert again.exit_code == 0, again.output
    text = " ".join(again.output.split())
    assert f"{complete} complete · {pruned} pruned · 0 failed · 2 of 2 trials" in text
    assert f"best so far: accuracy {best.value:.4g} (trial #{best.number})" in text
    assert "none yet" not in text


def test_a_study_name_given_as_a_number_is_text(runner, study_file: Path) -> None:
    out = runner.invoke(cli, ["validate", str(study_file), "--no-data", "--set", "study.name=2024"])
    assert out.exit_code == 0, out.output
    assert "(study '2024')" in out.output


def test_validate_names_the_class_f1_scores(runner, study_file: Path) -> None:
    # the labels are "neg" and "pos": sorted, "pos" is the second and the one f1 scores
    for extra in ([], ["--no-model"]):
        out = runner.invoke(cli, ["validate", str(study_file), "--set", "study.metric=f1", *extra])
        assert out.exit_code == 0, out.output
        said = " ".join(out.output.split())
        assert "metric f1: F1 of label 'pos', the positive class" in said
        assert "'neg' is the first" in said
    plain = runner.invoke(cli, ["validate", str(study_file), "--no-model"])
    assert "metric f1" not in plain.output


def test_an_f1_study_is_set_beside_the_best_constant_answer(
    runner, tmp_path: Path, study_file: Path
) -> None:
    """The majority share says nothing of F1: the report compares the best trial with the F1
    of always answering one label (the positive class: 2p / (1 + p) for a share p of it)."""
    from hpo.config.studyfile import load_spec
    from hpo.search.preflight import preflight
    from hpo.search.study import BASELINE_ATTR

    url = db(tmp_path)
    args = ["--storage", url, "--set", "study.metric=f1", "--set", "train.max_steps=5"]
    out = runner.invoke(cli, ["run", str(study_file), "--n-trials", "1", *args])
    assert out.exit_code == 0, out.output
    spec, _ = load_spec(study_file, ["study.metric=f1"])
    labels = preflight(spec).validation.label
    p = sum(labels) / len(labels)  # label 1 is "pos"
    stored = optuna.load_study(study_name="tiny", storage=url).user_attrs[BASELINE_ATTR]
    assert stored["constant"] == "pos" and stored["value"] == pytest.approx(2 * p / (1 + p))
    report = runner.invoke(cli, ["report", "tiny", "--storage", url])
    assert report.exit_code == 0, report.output
    said = " ".join(report.output.split())
    assert re.search(
        rf"best f1 \S+ is \w+( than| to)? always answering 'pos' {stored['value']:.4g}", said
    )
    data = json.loads(runner.invoke(cli, ["report", "tiny", "--storage", url, "--json"]).output)
    assert data["baseline"]["value"] == pytest.approx(stored["value"])
    assert data["baseline"]["best_minus_baseline"] is not None


def test_the_default_space_leaves_freezing_and_augmentation_off(
    runner, tmp_path: Path, tiny_model_dir: Path, sentiment_csv: Path
) -> None:
    """They only cost accuracy on short budgets (README, "Defaults, and why"): a study file that
    does not name them trains every trial with all layers and the text as given. A range the
    file writes past the model is a mistake, said before any trial."""
    raw = spec_dict(tiny_model_dir, sentiment_csv, study={"n_trials": 2})
    del raw["space"]["frozen_layers"], raw["space"]["augmentation_strength"]  # the defaults
    path = tmp_path / "small.toml"
    path.write_text(toml_text(raw))
    url = db(tmp_path)
    out = runner.invoke(cli, ["run", str(path), "--storage", url, "--set", "train.max_steps=5"])
    assert out.exit_code == 0, out.output
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    assert [(t.params["frozen_layers"], t.params["augmentation_strength"]) for t in trials] == [
        (0, 0.0),
        (0, 0.0),
    ]
    written = runner.invoke(
        cli, ["validate", str(path), "--set", "space.frozen_layers={low=0, high=5}"]
    )
    assert written.exit_code == 2
    assert "`space.frozen_layers` goes up to 5 but the model has 2 layers" in written.output


def test_a_worker_for_a_database_that_is_not_there_makes_nothing(runner, tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder" / "x.db"
    out = runner.invoke(cli, ["worker", "anything", "--storage", f"sqlite:///{missing}"])
    assert out.exit_code == 2, out.output
    assert f"Error: no study database at {missing}" in out.output
    assert not (tmp_path / "no").exists()


def test_the_same_data_at_another_path_resumes_the_study(
    runner, tmp_path: Path, tiny_model_dir: Path
) -> None:
    import shutil

    (tmp_path / "a").mkdir()
    first = write_csv(tmp_path / "a" / "reviews.csv", sentiment_rows(400))
    path = tmp_path / "study.toml"
    path.write_text(toml_text(spec_dict(tiny_model_dir, first)))
    url = db(tmp_path)
    args = ["run", str(path), "--storage", url, "--set", "train.max_steps=5"]
    assert runner.invoke(cli, [*args, "--n-trials", "1"]).exit_code == 0
    # the folder moved (or another machine's checkout): same rows, another path
    moved = tmp_path / "b" / "reviews.csv"
    moved.parent.mkdir()
    shutil.copy(first, moved)
    path.write_text(toml_text(spec_dict(tiny_model_dir, moved)))
    again = runner.invoke(cli, [*args, "--n-trials", "2"])
    assert again.exit_code == 0 and "resumed study" in again.output, again.output
    study = optuna.load_study(study_name="tiny", storage=url)
    assert len(study.trials) == 2
    assert study.user_attrs[SPEC_ATTR]["data"]["files"]["train"] == str(first)  # for workers
    # other rows at the new path are still refused, as changed data
    write_csv(moved, sentiment_rows(460))
    changed = runner.invoke(cli, [*args, "--n-trials", "3"])
    assert changed.exit_code == 2 and "the data differ from what the trials" in changed.output


@pytest.mark.skipif(
    __import__("importlib").util.find_spec("MySQLdb") is not None, reason="mysqlclient installed"
)
def test_a_bare_mysql_url_without_its_default_driver_names_the_one_to_write(runner) -> None:
    out = runner.invoke(cli, ["report", "x", "--storage", "mysql://root@127.0.0.1/test"])
    assert out.exit_code == 1  # a missing package, not a wrong input
    assert out.output.strip() == (
        "Error: storage mysql://root@127.0.0.1/test asks SQLAlchemy for its default driver, "
        "MySQLdb (mysqlclient), which is not installed; write mysql+pymysql://... "
        "(pip install 'hpo[mysql]')"
    )


def test_a_study_stored_by_another_hpo_version_says_so(runner, study_file, tmp_path) -> None:
    url = db(tmp_path)
    run = runner.invoke(cli, ["run", str(study_file), "--storage", url, "--n-trials", "1",
                              "--set", "train.max_steps=5"])  # fmt: skip
    assert run.exit_code == 0, run.output
    study = optuna.load_study(study_name="tiny", storage=url)
    newer = study.user_attrs[SPEC_ATTR]
    newer["train"]["a_key_from_a_later_version"] = 1  # as a later hpo might store
    study.set_user_attr(SPEC_ATTR, newer)
    for args in (["worker", "tiny"], ["report", "tiny"]):
        out = runner.invoke(cli, [*args, "--storage", url])
        assert out.exit_code == 2
        line = " ".join(out.output.split())
        assert line.startswith("Error: study 'tiny' stores settings this hpo cannot read (")
        assert "a_key_from_a_later_version" in line and "another version of hpo" in line


def test_a_run_in_which_every_trial_failed_exits_1_with_the_first_reason(
    runner, tmp_path: Path, tiny_model_dir: Path, sentiment_csv: Path
) -> None:
    """A study with no result is not a success for the script or scheduler that ran it; the
    failed trials stay stored."""
    raw = spec_dict(tiny_model_dir, sentiment_csv, study={"n_trials": 2})
    raw["train"] |= {"max_steps": 100_000, "eval_every": 50, "trial_timeout": 0.5}
    path = tmp_path / "fails.toml"
    path.write_text(toml_text(raw))
    url = db(tmp_path)
    out = runner.invoke(cli, ["run", str(path), "--storage", url])
    assert out.exit_code == 1, out.output
    flat = " ".join(out.output.split())
    assert "no trial finished: all 2 failed; the first (#0): ran past train.trial_timeout" in flat
    trials = optuna.load_study(study_name="tiny", storage=url).trials
    assert [t.state.name for t in trials] == ["FAIL", "FAIL"]  # stored, with their reasons


def test_a_sampler_key_the_sampler_never_reads_is_said(runner, study_file) -> None:
    """`multivariate` or `n_startup_trials` with the random sampler did nothing, silently; a
    warning, not a refusal, since switching a TPE file to random with --set is fair."""
    out = runner.invoke(
        cli,
        ["validate", str(study_file), "--no-model",
         "--set", "sampler.multivariate=false", "--set", "sampler.n_startup_trials=3"],
    )  # fmt: skip
    assert out.exit_code == 0, out.output
    flat = " ".join(out.output.split())
    assert "warning: `sampler.multivariate` is not read by sampler 'random' (only by 'tpe')" in flat
    assert "`sampler.n_startup_trials` is not read by sampler 'random' (only by 'tpe', 'gp'" in flat
    quiet = runner.invoke(
        cli,
        ["validate", str(study_file), "--no-model", "--set", "sampler.name=tpe",
         "--set", "sampler.multivariate=false"],
    )  # fmt: skip
    assert quiet.exit_code == 0 and "is not read by sampler" not in quiet.output


def test_a_rerun_after_a_killed_worker_counts_its_trial_as_running_and_says_what_it_waits_for(
    runner, study_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A trial a killed worker left RUNNING is not done: the start line says it runs, and the
    worker that waits for its heartbeat to go stale says so instead of idling without a word."""
    from hpo.execution.optuna_private import claim_waiting, heartbeat_of, storage_of, trial_id_of
    from hpo.execution.storage import open_storage

    monkeypatch.setenv("HPO_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("HPO_GRACE_PERIOD", "2")
    url = db(tmp_path)
    # one trial: the killed worker's holds the whole budget, so the rerun has none to run but
    # its retry, and waits for it from the start
    args = ["--storage", url, "--n-trials", "1", "--set", "train.max_steps=5"]
    args += ["--set", "train.eval_every=5"]
    assert runner.invoke(cli, ["create", str(study_file), *args]).exit_code == 0
    study = optuna.load_study(study_name="tiny", storage=open_storage(url))
    first = study.get_trials()[0]  # a worker took it, beat once, and was killed (kill -9)
    assert claim_waiting(storage_of(study), trial_id_of(first))
    storage_of(study).set_trial_user_attr(trial_id_of(first), keys.WORKER, "elsewhere:1")
    heartbeat = heartbeat_of(storage_of(study))
    assert heartbeat is not None
    heartbeat.record_heartbeat(trial_id_of(first))

    out = runner.invoke(cli, ["run", str(study_file), *args])
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())
    assert "resumed study tiny in " in text and "(0 of 1 trials done, 1 running)" in text, text
    wait = (
        "waiting for trial #0, running on another worker; a trial whose worker died is failed "
        "and run again once it has sent no heartbeat for 2 s"
    )
    assert text.count(wait) == 1, text
    states = [t.state.name for t in optuna.load_study(study_name="tiny", storage=url).trials]
    assert states == ["FAIL", "COMPLETE"]  # its retry ran after the wait


def test_a_created_study_s_timeout_starts_with_its_first_worker_and_a_late_one_says_it_passed(
    runner, study_file: Path, tmp_path: Path
) -> None:
    """`hpo create --timeout` then workers queued for longer than the timeout (a Slurm job):
    the clock starts when the first worker starts work, not at creation; and a worker that
    finds it passed says so in one line instead of exiting 0 without a word."""
    import time

    url = db(tmp_path)
    args = ["--storage", url, "--set", "train.max_steps=5", "--set", "train.eval_every=5"]
    made = runner.invoke(
        cli, ["create", str(study_file), *args, "--n-trials", "1", "--timeout", "2"]
    )
    assert made.exit_code == 0, made.output
    assert optuna.load_study(study_name="tiny", storage=url).user_attrs[keys.DEADLINE] is None
    time.sleep(2.5)  # queued past the timeout
    started = time.time()
    out = runner.invoke(cli, ["worker", "tiny", "--storage", url, "--quiet"])
    assert out.exit_code == 0, out.output
    assert out.output == ""  # it ran its trial, and --quiet says nothing more
    study = optuna.load_study(study_name="tiny", storage=url)
    assert [t.state.name for t in study.trials] == ["COMPLETE"]
    assert started <= study.user_attrs[keys.DEADLINE] - 2 <= time.time()

    # a worker that comes after the clock ran out: one line, even with --quiet, and no trial
    late = ["create", str(study_file), *args, "--n-trials", "2", "--timeout", "2"]
    assert runner.invoke(cli, [*late, "--set", "study.name=late"]).exit_code == 0
    study = optuna.load_study(study_name="late", storage=url)
    study.set_user_attr(keys.DEADLINE, 1_000_000_000.0)  # its first worker started long ago
    out = runner.invoke(cli, ["worker", "late", "--storage", url, "--quiet"])
    assert out.exit_code == 0, out.output
    assert out.output == (
        "stopped: study.timeout (2 s) passed at 2001-09-09 01:46:40 UTC with 0 of 2 trials "
        "done; this worker starts no more trials (`hpo create` or `hpo run` with the study file "
        "starts a new timeout)\n"
    )
    assert {t.state.name for t in study.get_trials()} == {"WAITING"}
