"""`hpo best` and `hpo predict` on a small stored study of the tiny BERT."""

from __future__ import annotations

import csv
import json
import os
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
import torch
from click.testing import CliRunner

from hpo.cli.main import cli
from hpo.config.spec import StudySpec
from hpo.data.batches import encode
from hpo.data.dataset import load_task
from hpo.execution.storage import open_storage
from hpo.execution.workers import work
from hpo.search.study import create_or_resume
from hpo.training.loop import evaluate, pick_device
from tests.conftest import sentiment_rows, spec_dict


@pytest.fixture
def stored(tiny_model_dir: Path, sentiment_csv: Path, tmp_path: Path) -> tuple[str, StudySpec]:
    from hpo.search.objective import Objective

    url = f"sqlite:///{tmp_path / 'best.db'}"
    spec = StudySpec.from_dict(
        spec_dict(
            tiny_model_dir,
            sentiment_csv,
            study={"n_trials": 2},
            data={"test_fraction": 0.2},
            train={"max_steps": 40, "eval_every": 20},
        )
    )
    study, _ = create_or_resume(spec, open_storage(url))
    work(study, Objective(spec), 2)
    return url, spec


def test_best_retrains_tests_and_saves_a_loadable_model(
    stored, tmp_path: Path, tiny_model_dir: Path
) -> None:
    url, spec = stored
    out = tmp_path / "model"
    result = CliRunner().invoke(
        cli, ["best", "tiny", "--storage", url, "--out", str(out), "--seeds", "2", "--top", "1"]
    )
    assert result.exit_code == 0, result.output
    study = optuna.load_study(study_name="tiny", storage=url)
    facts = study.user_attrs["hpo_best"]
    assert facts["trial"] == study.best_trial.number and facts["seeds"] == [0, 1]
    assert facts["gap"] == pytest.approx(facts["validation_mean"] - facts["test_mean"])
    assert f"test {facts['test_mean']:.4f}" in result.output
    card = (out / "README.md").read_text()
    # a local model is named by its folder: the card does not say where it sat on this machine
    assert card.splitlines()[0] == f"# tiny: fine-tuned {tiny_model_dir.name}"
    assert str(tiny_model_dir) not in card
    assert (
        "## Hyperparameters" in card and "learning_rate" in card and "Validation minus test" in card
    )
    # every file has the mode a new file gets here, the weights too (safetensors writes 0o600)
    mask = os.umask(0)
    os.umask(mask)
    modes = {f.name: f.stat().st_mode & 0o777 for f in out.iterdir()}
    assert "model.safetensors" in modes and set(modes.values()) == {0o666 & ~mask}, modes

    # the saved model reloads and reproduces the test score of the run it came from
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.id2label == {0: "neg", 1: "pos"}
    task = load_task(spec.data)
    assert task.test is not None
    test = encode(task.test, tokenizer, spec.train.max_length)
    score = evaluate(model, test, pick_device("cpu"), 64, tokenizer.pad_token_id)["accuracy"]
    runs = json.loads((out / "hpo_results.json").read_text())[0]["runs"]
    saved = max(runs, key=lambda r: r["validation"]["accuracy"])
    assert score == pytest.approx(saved["test"]["accuracy"], abs=1e-6)
    assert torch.is_tensor(next(model.parameters()))


def test_choose_takes_the_best_mean_validation_not_the_best_single_run() -> None:
    from hpo.final.best import ConfigResult, SeedRun, choose

    def config(number: int, *scores: float) -> ConfigResult:
        runs = [SeedRun(i, {"accuracy": v}, None, 1.0) for i, v in enumerate(scores)]
        return ConfigResult(number, {}, runs)

    lucky, steady = config(3, 0.90, 0.70), config(8, 0.84, 0.82)  # means 0.80 and 0.83
    assert choose([lucky, steady], "accuracy", maximize=True) == 1
    assert choose([lucky, steady], "accuracy", maximize=False) == 0
    assert choose([lucky, steady], "accuracy", True, by_validation=False) == 0
    assert choose([steady, config(9, 0.83, 0.83)], "accuracy", True) == 0  # a tie: the earlier


def test_best_of_several_keeps_one_configuration_throughout(stored, tmp_path: Path) -> None:
    url, spec = stored
    out = tmp_path / "model"
    args = ["best", "tiny", "--storage", url, "--out", str(out), "--seeds", "2", "--top", "2"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    configs = json.loads((out / "hpo_results.json").read_text())
    means = [sum(r["validation"]["accuracy"] for r in c["runs"]) / 2 for c in configs]
    chosen = configs[means.index(max(means))]
    facts = optuna.load_study(study_name="tiny", storage=url).user_attrs["hpo_best"]
    assert facts["trial"] == chosen["trial_number"]
    assert f"chose trial #{chosen['trial_number']}" in result.output
    card = (out / "README.md").read_text()
    assert f"`learning_rate`: {chosen['params']['learning_rate']}" in card
    # the saved weights are the chosen configuration's best run, whatever the other one scored
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    task = load_task(spec.data)
    assert task.test is not None
    test = encode(task.test, tokenizer, spec.train.max_length)
    score = evaluate(model, test, pick_device("cpu"), 64, tokenizer.pad_token_id)["accuracy"]
    saved = max(chosen["runs"], key=lambda r: r["validation"]["accuracy"])
    assert score == pytest.approx(saved["test"]["accuracy"], abs=1e-6)


def test_best_by_default_retrains_what_validation_cannot_rank(stored, tmp_path: Path) -> None:
    from hpo.cli.best import indistinguishable

    url, spec = stored
    study = optuna.load_study(study_name="tiny", storage=url)
    best = study.best_trial
    twin = optuna.trial.create_trial(  # the best's score again: validation cannot rank the two
        params=best.params,
        distributions=best.distributions,
        value=best.value,
        user_attrs=best.user_attrs,
    )
    study.add_trial(twin)
    tied = indistinguishable(study, spec)
    assert len(tied) >= 1
    out = tmp_path / "model"
    result = CliRunner().invoke(
        cli, ["best", "tiny", "--storage", url, "--out", str(out), "--seeds", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "within one standard error of the best on validation" in " ".join(result.output.split())
    configs = json.loads((out / "hpo_results.json").read_text())
    assert len(configs) == 1 + len(tied)


def test_a_best_clear_of_the_noise_is_retrained_alone() -> None:
    from hpo import keys
    from hpo.cli.best import indistinguishable

    study = optuna.create_study(direction="maximize")
    lr = optuna.distributions.FloatDistribution(1e-5, 1e-3, log=True)
    for value, rate in ((0.90, 1e-4), (0.70, 2e-5), (0.89, 5e-5)):
        study.add_trial(
            optuna.trial.create_trial(
                params={"learning_rate": rate},
                distributions={"learning_rate": lr},
                value=value,
                user_attrs={keys.EVAL_ROWS: 10_000},  # one standard error: 0.003
            )
        )
    spec = StudySpec.from_dict(spec_dict(Path("m"), Path("d.csv")))
    assert indistinguishable(study, spec) == []
    study.add_trial(
        optuna.trial.create_trial(
            params={"learning_rate": 6e-5},
            distributions={"learning_rate": lr},
            value=0.899,
            user_attrs={keys.EVAL_ROWS: 10_000},
        )
    )
    assert indistinguishable(study, spec) == [3]


def test_predict_prints_a_label_per_text(stored, tmp_path: Path) -> None:
    url, _ = stored
    out = tmp_path / "model"
    best = CliRunner().invoke(
        cli, ["best", "tiny", "--storage", url, "--out", str(out), "--seeds", "1"]
    )
    assert best.exit_code == 0, best.output
    # one seed has no spread to show (it printed ± 0.0000)
    retrained = " ".join(best.output.split()).split("retrained validation ")[1]
    assert retrained.split(";")[0].split(" saved")[0].endswith("(one seed)"), retrained
    assert "±" not in best.output
    long = " ".join(["a great fun film"] * 100)  # 400 words: past the 64 positions it has
    result = CliRunner().invoke(
        cli, ["predict", str(out), "a great fun film", "awful and boring", long]
    )
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 3
    for line in lines:
        label, prob, _ = line.split("\t")
        assert label in {"neg", "pos"} and 0.5 <= float(prob) <= 1.0
    # "-" reads one text per line from standard input; --json keeps non-ASCII text as it is
    piped = CliRunner().invoke(
        cli, ["predict", str(out), "-", "--json"], input="一部很好的电影\nawful and boring\n"
    )
    assert piped.exit_code == 0, piped.output
    assert "一部很好的电影" in piped.output  # not \u escapes
    rows = [json.loads(line) for line in piped.output.strip().splitlines()]
    assert [r["text"] for r in rows] == ["一部很好的电影", "awful and boring"]
    # bytes that are not UTF-8 (latin-1 "café"), piped or in an argument: one line, exit 2
    latin = CliRunner().invoke(cli, ["predict", str(out), "-"], input=b"caf\xe9 film\n")
    assert latin.exit_code == 2
    assert "standard input is not valid UTF-8 (byte 0xe9 at offset 3)" in latin.output
    argument = CliRunner().invoke(cli, ["predict", str(out), "ok", "caf\udce9 film"])
    assert argument.exit_code == 2
    assert "text 2 is not valid UTF-8 (byte 0xe9 at offset 3)" in argument.output
    assert all(r["label"] in {"neg", "pos"} for r in rows)
    # an empty line still gets its row (the output stays aligned with the input), and a
    # warning on standard error names it: training drops such rows, so its label means nothing
    blank = CliRunner().invoke(cli, ["predict", str(out), "-"], input="a great film\n  \nbad\n")
    assert blank.exit_code == 0, blank.output
    assert len(blank.stdout.strip("\n").splitlines()) == 3
    assert blank.stderr.startswith("warning: text 2 is empty or only whitespace")
    assert CliRunner().invoke(cli, ["predict", str(out), "fine"]).stderr == ""


def _study(url: str, raw: dict) -> StudySpec:
    """A stored study of ``raw`` with one trial run."""
    from hpo.search.objective import Objective

    spec = StudySpec.from_dict(raw)
    study, _ = create_or_resume(spec, open_storage(url))
    work(study, Objective(spec), 1)
    return spec


def _direct(folder: Path, texts: list[str], pairs: list[str] | None, **cut: int) -> list:
    """(label, score) per text as plain transformers computes them from a saved folder."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(texts, pairs, truncation=True, padding=True, return_tensors="pt", **cut)
    with torch.inference_mode():
        top = model(**batch).logits.softmax(-1).max(-1)
    labels = model.config.id2label
    return [(labels[int(i)], round(float(p), 4)) for p, i in zip(*top, strict=True)]


def test_predict_cuts_texts_where_training_and_scoring_cut_them(
    tiny_model_dir: Path, sentiment_csv: Path, tmp_path: Path
) -> None:
    """The scores `hpo best` reports were measured on texts cut to train.max_length: the saved
    tokenizer's model_max_length is that length, the card says it, and `hpo predict` cuts
    there too, not at the 64 positions the model has. A folder saved before hpo recorded the
    length is read as before."""
    url = f"sqlite:///{tmp_path / 'cut.db'}"
    _study(
        url,
        spec_dict(
            tiny_model_dir,
            sentiment_csv,
            study={"n_trials": 1},
            space={"learning_rate": 5e-3},
            train={"max_steps": 60, "eval_every": 30, "max_length": 8},
        ),
    )
    out = tmp_path / "model"
    args = ["best", "tiny", "--storage", url, "--out", str(out), "--seeds", "1", "--top", "1"]
    assert (result := CliRunner().invoke(cli, args)).exit_code == 0, result.output
    from transformers import AutoTokenizer

    assert AutoTokenizer.from_pretrained(out).model_max_length == 8
    card = " ".join((out / "README.md").read_text().split())
    assert "cut to 8 tokens" in card and "max_length=8" in card and "truncation=True" in card
    # one sentiment word in the first 8 tokens, the opposite ones past them
    texts = [
        "great fun the movie was a film this it really awful boring dull",
        "awful bad the movie was a film this it really great fun best",
        "the movie was a film this it really great",
        "a great film\tso dull",  # a model of single texts reads a tab as part of its text
    ]
    assert _direct(out, texts, None, max_length=8) != _direct(out, texts, None, max_length=64)
    # plain transformers cuts there with truncation alone
    assert _direct(out, texts, None) == _direct(out, texts, None, max_length=8)

    def predicted(folder: Path) -> list:
        result = CliRunner().invoke(cli, ["predict", str(folder), "--json", *texts])
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in result.output.splitlines()]
        return [(r["label"], r["score"]) for r in rows]

    assert predicted(out) == _direct(out, texts, None, max_length=8)
    # an older folder records no length: the model's own limit, as before
    config = json.loads((out / "config.json").read_text())
    del config["hpo_input"]
    (out / "config.json").write_text(json.dumps(config))
    tokenizer = json.loads((out / "tokenizer_config.json").read_text())
    tokenizer["model_max_length"] = int(1e30)  # transformers' "not set", as the tiny BERT has
    (out / "tokenizer_config.json").write_text(json.dumps(tokenizer))
    assert predicted(out) == _direct(out, texts, None, max_length=64)


def test_predict_reads_a_pair_models_texts_as_pairs(tiny_model_dir: Path, tmp_path: Path) -> None:
    """A model trained on text pairs takes each TEXT (and each line of standard input) as its
    two texts separated by a tab and encodes them as a pair, as training did; a TEXT without
    a tab is refused in one line that says how to give a pair."""
    data = tmp_path / "pairs.csv"
    with data.open("w", newline="", encoding="utf-8") as f:
        rows = [("the film", text, label) for text, label in sentiment_rows(200)]
        csv.writer(f).writerows([("premise", "hypothesis", "label"), *rows])
    url = f"sqlite:///{tmp_path / 'pairs.db'}"
    columns = {"text_column": "premise", "text_pair_column": "hypothesis"}
    train = {"max_steps": 10, "eval_every": 10}
    _study(url, spec_dict(tiny_model_dir, data, study={"n_trials": 1}, data=columns, train=train))
    out = tmp_path / "model"
    args = ["best", "tiny", "--storage", url, "--out", str(out), "--seeds", "1", "--top", "1"]
    assert (result := CliRunner().invoke(cli, args)).exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["hpo_input"] == {"max_length": 32, "pair": ["premise", "hypothesis"]}
    card = (out / "README.md").read_text()
    assert "hpo predict THIS_FOLDER $'the premise\\tthe hypothesis'" in card
    assert 'tokenizer(["the premise"], ["the hypothesis"], truncation=True' in card

    firsts, seconds = ["a great film", "so dull", "the film"], ["it was fun", "awful", "bad\tx"]
    texts = [f"{a}\t{b}" for a, b in zip(firsts, seconds, strict=True)]
    expected = _direct(out, firsts, seconds)
    assert expected != _direct(out, texts, None)  # each line encoded alone, as before
    given = CliRunner().invoke(cli, ["predict", str(out), "--json", *texts])
    piped = CliRunner().invoke(cli, ["predict", str(out), "-", "--json"], input="\n".join(texts))
    for result in (given, piped):
        assert result.exit_code == 0, result.output
        rows = [json.loads(line) for line in result.output.splitlines()]
        assert [(r["text"], r["text_pair"]) for r in rows] == list(
            zip(firsts, seconds, strict=True)
        )
        assert [(r["label"], r["score"]) for r in rows] == expected
    plain = CliRunner().invoke(cli, ["predict", str(out), texts[0]])
    label, score = expected[0]
    assert plain.output == f"{label}\t{score:.3f}\t{texts[0]}\n"

    refused = CliRunner().invoke(cli, ["predict", str(out), texts[0], "a great film"])
    assert refused.exit_code == 2, refused.output
    assert refused.output == (
        "Error: text 2 has no tab: this model reads text pairs (premise, hypothesis); give each "
        "as its two texts separated by a tab, e.g. $'the premise\\tthe hypothesis', or one pair "
        "a line on standard input with TEXT -\n"
    )


def test_best_errors_are_one_line(stored, tmp_path: Path) -> None:
    url, _ = stored
    blocker = tmp_path / "file"
    blocker.write_text("x")
    runner = CliRunner()
    for args, message, code in [  # 2: wrong input; 1: a correct command that cannot go on
        (
            ["best", "nope", "--storage", url, "--out", str(tmp_path / "m")],
            "no study named 'nope'",
            2,
        ),
        (
            ["best", "tiny", "--storage", url, "--out", str(blocker / "m"), "--seeds", "1"],
            "cannot write to --out",
            1,
        ),
        (["predict", str(tmp_path), "text"], "not a saved model folder", 2),
    ]:
        result = runner.invoke(cli, args)
        assert result.exit_code == code, result.output
        assert message in result.output and "Traceback" not in result.output


def test_best_of_a_lora_study_with_a_hidden_head_saves_a_merged_model(
    tiny_model_dir: Path, sentiment_csv: Path, tmp_path: Path
) -> None:
    """LoRA adapters are folded into the weights and the hidden-layer head is rebuilt on load:
    the saved folder needs neither peft nor the study to predict."""
    from hpo.search.objective import Objective

    url = f"sqlite:///{tmp_path / 'lora.db'}"
    raw = spec_dict(
        tiny_model_dir,
        sentiment_csv,
        study={"n_trials": 1},
        data={"test_fraction": 0.2},
        train={"max_steps": 20, "eval_every": 20},
    )
    raw["space"].update(lora_rank=4, lora_alpha=8.0, head_hidden_units=16)
    spec = StudySpec.from_dict(raw)
    study, _ = create_or_resume(spec, open_storage(url))
    work(study, Objective(spec), 1)
    assert "frozen_layers" not in study.get_trials()[0].params  # LoRA's own condition
    out = tmp_path / "model"
    result = CliRunner().invoke(
        cli, ["best", "tiny", "--storage", url, "--out", str(out), "--seeds", "1"]
    )
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["hpo_head"]["hidden_units"] == 16
    from safetensors.torch import load_file

    weights = load_file(str(out / "model.safetensors"))
    assert not any("lora" in k for k in weights)  # merged: a plain transformers checkpoint
    assert "hpo.load_model" in (out / "README.md").read_text()

    import hpo

    model = hpo.load_model(str(out))
    task = load_task(spec.data)
    assert task.test is not None
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    scores = evaluate(
        model, encode(task.test, tokenizer, 32), pick_device("cpu"), 64, tokenizer.pad_token_id
    )
    facts = optuna.load_study(study_name="tiny", storage=url).user_attrs["hpo_best"]
    assert scores["accuracy"] == pytest.approx(facts["test_mean"])  # the run it came from
    predicted = CliRunner().invoke(cli, ["predict", str(out), "a great film", "an awful film"])
    assert predicted.exit_code == 0 and len(predicted.output.splitlines()) == 2


def _file_size_limit(limit: int) -> Callable[[], None]:
    """A subprocess whose writes past ``limit`` bytes fail with EFBIG (an OSError) instead of
    killing it with SIGXFSZ: a real write failure, like a full disk, at a size we choose."""

    def preexec() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return preexec


def test_a_failed_save_leaves_nothing_and_no_best_attribute(
    stored, tiny_model_dir: Path, tmp_path: Path
) -> None:
    """A write that fails while `hpo best` saves leaves no half-written model folder that
    looks complete, no hidden partial folder, and no `hpo_best` in the study; a rerun then
    saves to the same folder."""
    from hpo.execution.storage import local_file

    url, _ = stored
    source = local_file(url)
    assert source is not None
    db = tmp_path / "copy.db"  # every page in one file (none left in a WAL): its size is known
    src, dst = sqlite3.connect(source), sqlite3.connect(db)
    src.backup(dst)
    src.close()
    dst.close()
    copy_url = f"sqlite:///{db}"
    # Reading the study writes SQLite's 32 KiB WAL index and nothing past the database's end;
    # the saved weights are the encoder's and a head, more than the encoder alone.
    wal_index = 32 * 1024
    weights = (tiny_model_dir / "model.safetensors").stat().st_size
    limit = (wal_index + weights) // 2
    assert wal_index + 8 * 1024 < limit < weights - 8 * 1024

    parent = tmp_path / "models"
    parent.mkdir()
    out = parent / "model"
    args = [sys.executable, "-m", "hpo", "best", "tiny", "--storage", copy_url,
            "--out", str(out), "--seeds", "1", "--top", "1"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for existed in (False, True):  # no folder yet, then an empty one made beforehand
        if existed:
            out.mkdir()
        failed = subprocess.run(
            args, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
            preexec_fn=_file_size_limit(limit),
        )  # fmt: skip
        assert failed.returncode == 1, failed.stdout + failed.stderr
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1, failed.stderr
        assert lines[0].startswith(f"Error: cannot save the model to {out}: [Errno 27] ")
        assert lines[0].endswith("; nothing was saved")
        assert "Traceback" not in failed.stdout + failed.stderr
        if existed:
            assert out.is_dir() and not any(out.iterdir())  # as it was
        else:
            assert not out.exists()
        assert [p.name for p in parent.iterdir()] == (["model"] if existed else [])
        study = optuna.load_study(study_name="tiny", storage=copy_url)
        assert "hpo_best" not in study.user_attrs

    # nothing of the failed attempts is in the way: the same command without the limit saves
    result = CliRunner().invoke(cli, args[3:])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in parent.iterdir()) == ["model"]
    assert {"config.json", "model.safetensors", "README.md", "hpo_results.json"} <= {
        p.name for p in out.iterdir()
    }
    facts = optuna.load_study(study_name="tiny", storage=copy_url).user_attrs["hpo_best"]
    assert facts["out"] == str(out)
    predicted = CliRunner().invoke(cli, ["predict", str(out), "a great fun film"])
    assert predicted.exit_code == 0, predicted.output
    label, prob, _ = predicted.output.strip().split("\t")
    assert label in {"neg", "pos"} and 0.5 <= float(prob) <= 1.0


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_best_refuses_an_out_folder_that_holds_files_before_retraining(
    stored, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder with files in it is refused in one line (exit 2) before the model is even
    loaded, and left byte for byte; --overwrite replaces it whole; a new path, nested, and an
    empty existing folder take the model."""
    from hpo.search.objective import Objective

    url, _ = stored
    out = tmp_path / "model1"
    (out / "sub").mkdir(parents=True)
    for name, text in [("config.json", "{}"), ("README.md", "mine"), ("notes.txt", "keep")]:
        (out / name).write_text(text)
    (out / "sub" / "data.bin").write_bytes(b"\x00\x01")
    before, siblings = _snapshot(out), sorted(p.name for p in tmp_path.iterdir())
    args = ["best", "tiny", "--storage", url, "--out", str(out), "--seeds", "1", "--top", "1"]
    prepared: list[object] = []
    real_prepare = Objective.prepare

    def no_retraining(self: Objective, *a: object, **k: object) -> object:
        prepared.append(a)
        raise AssertionError("retraining started")

    monkeypatch.setattr(Objective, "prepare", no_retraining)
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2, refused.output
    assert refused.output == (
        f"Error: --out {out} is not empty (it holds 3 files and 1 folder); "
        "choose a new folder or pass --overwrite to replace it\n"
    )
    assert prepared == []  # refused before the model was loaded, let alone trained
    assert _snapshot(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == siblings  # no partial folder left
    assert "hpo_best" not in optuna.load_study(study_name="tiny", storage=url).user_attrs

    monkeypatch.setattr(Objective, "prepare", real_prepare)
    replaced = CliRunner().invoke(cli, [*args, "--overwrite"])
    assert replaced.exit_code == 0, replaced.output
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "README.md", "hpo_results.json"} <= names
    assert not {"notes.txt", "sub"} & names  # replaced whole, not merged into
    assert "tiny" in (out / "README.md").read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == siblings  # nothing hidden left over
    saved = _snapshot(out)

    again = CliRunner().invoke(cli, args)  # the saved model is no longer replaced unasked
    assert again.exit_code == 2 and "--out" in again.output and "is not empty" in again.output
    assert _snapshot(out) == saved

    empty, new = tmp_path / "empty", tmp_path / "new" / "nested"
    empty.mkdir()
    for folder in (empty, new):
        result = CliRunner().invoke(cli, [*args[:4], "--out", str(folder), *args[6:]])
        assert result.exit_code == 0, result.output
        assert (folder / "model.safetensors").is_file() and (folder / "README.md").is_file()
    predicted = CliRunner().invoke(cli, ["predict", str(out), "a great fun film"])
    assert predicted.exit_code == 0, predicted.output


def test_overwrite_never_deletes_the_current_folder_or_the_database(
    stored, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch
) -> None:
    url, _ = stored
    here = tmp_path_factory.mktemp("here")  # outside tmp_path, which holds the database
    (here / "study.toml").write_text("x")
    monkeypatch.chdir(here)
    for out, holds in [(".", "the current folder"), (str(tmp_path), str(tmp_path / "best.db"))]:
        args = ["best", "tiny", "--storage", url, "--out", out, "--seeds", "1"]
        refused = CliRunner().invoke(cli, args)
        assert refused.exit_code == 2 and "is not empty" in refused.output, refused.output
        refused = CliRunner().invoke(cli, [*args, "--overwrite"])
        assert refused.exit_code == 2, refused.output
        assert refused.output == (
            f"Error: --out {out} holds {holds}, which --overwrite would delete; "
            "choose a new folder\n"
        )
    assert [p.name for p in here.iterdir()] == ["study.toml"]
    assert (tmp_path / "best.db").stat().st_size > 0


def test_overwrite_never_deletes_the_studys_data_or_model(
    tiny_model_dir: Path, sentiment_csv: Path, tmp_path: Path
) -> None:
    """An --out that is or holds a data file of the study or its local model folder is
    refused in one line, --overwrite or not, by `hpo best` and `hpo plot` alike."""
    from hpo.search.objective import Objective

    data, models = tmp_path / "data", tmp_path / "models"
    data.mkdir()
    train = Path(shutil.copy(sentiment_csv, data / "train.csv"))
    model = Path(shutil.copytree(tiny_model_dir, models / "tiny"))
    (tmp_path / "db").mkdir()
    url = f"sqlite:///{tmp_path / 'db' / 'study.db'}"
    raw = spec_dict(model, train, study={"n_trials": 1}, train={"max_steps": 10, "eval_every": 10})
    spec = StudySpec.from_dict(raw)
    study, _ = create_or_resume(spec, open_storage(url))
    work(study, Objective(spec), 1)
    before = {folder: _snapshot(folder) for folder in (data, models)}
    commands = [["best", "tiny", "--seeds", "1", "--top", "1"], ["plot", "tiny"]]
    for out, says in [(data, f"holds {train}"), (models, f"holds {model}"), (model, f"is {model}")]:
        for command in commands:
            args = [*command, "--storage", url, "--out", str(out), "--overwrite"]
            result = CliRunner().invoke(cli, args)
            assert result.exit_code == 2, result.output
            assert result.output == (
                f"Error: --out {out} {says}, which --overwrite would delete; choose a new folder\n"
            )
    assert {folder: _snapshot(folder) for folder in (data, models)} == before
    # a local model among the choices of a `model` dimension is kept too; a hub id is no path
    raw["space"]["model"] = [str(model), "org/hub-model"]
    assert StudySpec.from_dict(raw).local_paths() == [train, model]


def test_write_folder_keeps_what_it_would_replace_when_anything_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Files that arrive after the up-front check are not replaced unasked; with overwrite, a
    failed write or a failed swap leaves the old folder as it was and no hidden sibling."""
    from hpo.errors import UserError, WriteFailed
    from hpo.results.export import write_folder

    out = tmp_path / "model"
    out.mkdir()
    (out / "old.txt").write_text("old")

    def write(folder: Path) -> None:
        (folder / "new.txt").write_text("new")

    with pytest.raises(UserError, match="is not empty"):
        write_folder(out, write, "the model")
    assert _snapshot(out) == {"old.txt": b"old"} and [p.name for p in tmp_path.iterdir()] == [
        "model"
    ]

    def full_disk(folder: Path) -> None:
        write(folder)
        raise OSError(28, "No space left on device")

    with pytest.raises(WriteFailed, match=r"\[Errno 28\] No space left on device"):
        write_folder(out, full_disk, "the model", overwrite=True)
    assert _snapshot(out) == {"old.txt": b"old"} and [p.name for p in tmp_path.iterdir()] == [
        "model"
    ]

    real_rename = os.rename

    def failing_swap_in(src: object, dst: object) -> None:
        if ".partial-" in str(src) and not Path(str(dst)).exists():  # once the old one is aside
            raise OSError(5, "Input/output error")
        real_rename(src, dst)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "rename", failing_swap_in)
    with pytest.raises(WriteFailed, match=r"\[Errno 5\]"):
        write_folder(out, write, "the model", overwrite=True)
    assert _snapshot(out) == {"old.txt": b"old"} and [p.name for p in tmp_path.iterdir()] == [
        "model"
    ]
    monkeypatch.setattr(os, "rename", real_rename)
    write_folder(out, write, "the model", overwrite=True)
    assert _snapshot(out) == {"new.txt": b"new"} and [p.name for p in tmp_path.iterdir()] == [
        "model"
    ]


def test_ctrl_c_during_best_exits_130_in_one_line_and_saves_nothing(stored, tmp_path: Path) -> None:
    url, _ = stored
    out = tmp_path / "model"
    cmd = [sys.executable, "-m", "hpo", "best", "tiny", "--storage", url, "--out", str(out)]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "COLUMNS": "200"}
    proc = subprocess.Popen(
        [*cmd, "--seeds", "50", "--top", "1"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        for line in proc.stdout:  # the first retraining has finished: more are under way
            if line.lstrip().startswith("trial #"):
                break
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, rest + err
    assert err.strip().splitlines()[-1] == "stopped by Ctrl-C", err
    assert "Traceback" not in err and "Aborted" not in err + rest
    assert not out.exists()
    assert "hpo_best" not in optuna.load_study(study_name="tiny", storage=url).user_attrs


def test_best_on_train_and_validation_says_validation_was_trained_on(
    stored, tmp_path: Path
) -> None:
    url, _ = stored
    args = ["best", "tiny", "--storage", url, "--seeds", "1", "--top", "1"]
    both = CliRunner().invoke(
        cli, [*args, "--out", str(tmp_path / "both"), "--train-on", "train+validation"]
    )
    assert both.exit_code == 0, both.output
    runs = [line for line in both.output.splitlines() if line.startswith("  trial #")]
    assert runs and all("validation (trained on it) accuracy" in line for line in runs)
    alone = CliRunner().invoke(cli, [*args, "--out", str(tmp_path / "alone")])
    runs = [line for line in alone.output.splitlines() if line.startswith("  trial #")]
    assert runs and all("seed 0: validation accuracy" in line for line in runs)
    # the model card says so too: no validation-minus-test "overfit" gap of a trained-on split
    card = (tmp_path / "both" / "README.md").read_text()
    assert "| configuration | validation, trained on (mean ± sd) | test (mean ± sd) |" in card
    assert "Validation minus test" not in card and "scored best on validation" not in card
    assert "Validation was part of the training data" in card
    assert "this folder holds the run with seed 0, the first (validation is in its" in card
    assert "Validation minus test" in (tmp_path / "alone" / "README.md").read_text()
    # several configurations trained on validation: nothing could choose between them
    many = CliRunner().invoke(
        cli,
        ["best", "tiny", "--storage", url, "--top", "2", "--out", str(tmp_path / "many"),
         "--train-on", "train+validation"],
    )  # fmt: skip
    assert many.exit_code == 2
    assert "--top 2 with --train-on train+validation retrains 2 configurations that nothing" in (
        " ".join(many.output.split())
    )
    assert not (tmp_path / "many").exists()


def test_the_card_names_the_model_a_model_dimension_chose(tiny_model_dir: Path) -> None:
    from hpo.final.best import ConfigResult, SeedRun
    from hpo.final.card import model_card

    other = tiny_model_dir.parent / "tiny-gpt2"  # a local folder: named, not its path
    raw = spec_dict(tiny_model_dir, Path("d.csv"))
    raw["space"]["model"] = [str(tiny_model_dir), str(other)]
    spec = StudySpec.from_dict(raw)
    run = SeedRun(0, {"accuracy": 0.8}, {"accuracy": 0.7}, 1.0)
    chosen = ConfigResult(4, {"model": str(other), "learning_rate": 1e-4}, [run])
    card = model_card(spec, "multi", [chosen], "train", 0.8)
    assert card.splitlines()[0] == "# multi: fine-tuned tiny-gpt2"
    assert "- `model`: tiny-gpt2" in card and str(other) not in card


def test_best_of_an_objective_best_study_saves_the_state_the_search_scored(
    tiny_model_dir: Path, sentiment_csv: Path, tmp_path: Path
) -> None:
    """With objective = "best" a trial's value is its best evaluation, here at step 30 of 60 (a
    rate high enough to fall back to the majority class after). Retrained to the end, the saved
    model scored what the search never reported; it now stops at step 30 of the same schedule."""
    from hpo.config.spec import StudySpec
    from hpo.execution.storage import open_storage
    from hpo.execution.workers import work
    from hpo.final.best import best_step
    from hpo.search.objective import Objective
    from hpo.search.study import create_or_resume

    raw = spec_dict(
        tiny_model_dir,
        sentiment_csv,
        study={"name": "peak", "n_trials": 1, "objective": "best"},
        train={"max_steps": 60, "eval_every": 10},
        space={"learning_rate": 2e-2, "lr_schedule": "constant", "frozen_layers": 0},
    )
    spec = StudySpec.from_dict(raw)
    url = f"sqlite:///{tmp_path / 'peak.db'}"
    study, _ = create_or_resume(spec, open_storage(url))
    work(study, Objective(spec), 1)
    trial = study.get_trials()[0]
    last = trial.intermediate_values[60]
    assert trial.value is not None and trial.value > last  # the peak came before the end
    stop = best_step(trial, maximize=True)
    assert stop is not None and trial.intermediate_values[stop] == trial.value
    out = tmp_path / "model"
    result = CliRunner().invoke(
        cli, ["best", "peak", "--storage", url, "--out", str(out), "--seeds", "1"]
    )
    assert result.exit_code == 0, result.output
    runs = json.loads((out / "hpo_results.json").read_text())[0]["runs"]
    assert runs[0]["validation"]["accuracy"] == pytest.approx(trial.value)
