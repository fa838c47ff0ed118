"""Mistakes seen before any trial: `train.max_length` past the model's positions, and a
`train.device` torch cannot use here. `hpo validate` and `hpo run` refuse each in one line
(exit 2) before the study is created; without the checks every trial would fail."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import transformers as tf
from click.testing import CliRunner

from hpo.cli.main import cli
from hpo.errors import SpecError
from hpo.search.preflight import position_limit
from hpo.training.device import check_device, pick_device
from tests.conftest import (
    ner_sentences,
    save_tiny_decoder,
    sentiment_rows,
    spec_dict,
    toml_text,
    write_conll,
)

UNSET = SimpleNamespace(model_max_length=int(1e30))  # transformers' "not set"


def one_line_error(out: Any, *parts: str) -> None:
    """A user error: exit 2, one line naming ``parts``, no traceback."""
    assert out.exit_code == 2, out.output
    assert out.output.startswith("Error: "), out.output
    assert out.output.strip().count("\n") == 0, out.output
    assert "Traceback" not in out.output and out.exception.__class__ is SystemExit
    for part in parts:
        assert part in out.output, out.output


def no_study(tmp_path: Path) -> None:
    """The database was never opened: no file, so no study in it."""
    assert not (tmp_path / "s.db").exists()


def storage(tmp_path: Path) -> list[str]:
    return ["--storage", f"sqlite:///{tmp_path / 's.db'}", "--n-trials", "1"]


# ---------------------------------------------------------------- train.max_length


def test_the_limit_comes_from_the_tokenizer_and_the_position_table() -> None:
    roberta = tf.RobertaConfig(max_position_embeddings=514)  # 2 rows before the first position
    assert position_limit(roberta, SimpleNamespace(model_max_length=512)) == 512
    assert position_limit(roberta, UNSET) == 512
    assert position_limit(tf.BertConfig(max_position_embeddings=64), UNSET) == 64
    assert position_limit(tf.BertConfig(), SimpleNamespace(model_max_length=256)) == 256
    assert position_limit(tf.BertConfig(), SimpleNamespace(model_max_length=4096)) == 512
    assert position_limit(tf.GPT2Config(n_positions=300), UNSET) == 300
    assert position_limit(tf.BartConfig(max_position_embeddings=1024), UNSET) == 1024
    for unbounded in (
        tf.LlamaConfig(max_position_embeddings=512),
        tf.T5Config(n_positions=512),
        tf.DebertaV2Config(relative_attention=True, position_biased_input=False),
        tf.XLNetConfig(),
    ):
        assert position_limit(unbounded, UNSET) is None, type(unbounded).__name__
    assert position_limit(tf.LlamaConfig(), SimpleNamespace(model_max_length=2048)) == 2048


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_max_length_past_the_model_is_one_line(command, study_file, tmp_path) -> None:
    """The tiny BERT has 64 positions and a tokenizer that sets no maximum."""
    extra = storage(tmp_path) if command == "run" else []
    for wanted in ("100000", "65"):
        args = [command, str(study_file), "--set", f"train.max_length={wanted}", *extra]
        out = CliRunner().invoke(cli, args)
        one_line_error(
            out,
            f"`train.max_length` {wanted} is above what",
            "takes (64 positions); set it to 64 or less",
        )
    no_study(tmp_path)


def test_a_max_length_at_the_limit_runs(study_file, tmp_path) -> None:
    args = [str(study_file), "--set", "train.max_length=64"]
    out = CliRunner().invoke(cli, ["validate", *args])
    assert out.exit_code == 0 and out.output.startswith("ok: "), out.output
    out = CliRunner().invoke(cli, ["run", *args, *storage(tmp_path), "--set", "train.max_steps=5"])
    assert out.exit_code == 0, out.output
    import optuna

    (trial,) = optuna.load_study(study_name="tiny", storage=storage(tmp_path)[1]).trials
    assert trial.state.name == "COMPLETE"


def test_each_model_of_the_space_is_checked_before_the_first_loads(
    study_file, tmp_path, tiny_model_dir
) -> None:
    """The second choice of `space.model` (a GPT-2 of 40 positions) is refused up front too."""
    gpt2 = save_tiny_decoder(tmp_path / "gpt2", "gpt2", [t for t, _ in sentiment_rows(50)])
    config = tf.AutoConfig.from_pretrained(gpt2)
    config.n_positions = 40
    tf.GPT2Model(config).save_pretrained(gpt2)
    models = f'space.model=["{tiny_model_dir}", "{gpt2}"]'
    for command in ("validate", "run"):
        extra = storage(tmp_path) if command == "run" else []
        args = [command, str(study_file), "--set", models, "--set", "train.max_length=48"]
        out = CliRunner().invoke(cli, [*args, "--set", "space.frozen_layers=0", *extra])
        one_line_error(out, f"above what '{gpt2}' takes (40 positions); set it to 40 or less")
    no_study(tmp_path)


def test_a_model_without_absolute_positions_takes_any_max_length(tmp_path, study_file) -> None:
    """A Llama (rotary positions) whose tokenizer sets no maximum: nothing to refuse."""
    llama = save_tiny_decoder(tmp_path / "llama", "llama", [t for t, _ in sentiment_rows(50)])
    args = ["validate", str(study_file), "--set", f'model.name="{llama}"']
    out = CliRunner().invoke(cli, [*args, "--set", "train.max_length=100000"])
    assert out.exit_code == 0 and out.output.startswith("ok: "), out.output


def test_ner_windows_do_not_lift_the_limit(tmp_path, ner_model_dir) -> None:
    """Token classification cuts long sentences into windows of max_length: still too long."""
    train = ner_sentences(40, 0)
    held = [s for s in ner_sentences(40, 1) if s not in train]  # no leakage warning either
    files = {"train": str(write_conll(tmp_path / "train.conll", train)),
             "validation": str(write_conll(tmp_path / "validation.conll", held))}  # fmt: skip
    raw = spec_dict(ner_model_dir, Path(files["train"]), study={"task": "token_classification"})
    raw["data"] = {"files": files}
    study = tmp_path / "ner.toml"
    study.write_text(toml_text(raw))
    for command in ("validate", "run"):
        extra = storage(tmp_path) if command == "run" else []
        out = CliRunner().invoke(cli, [command, str(study), "--set", "train.max_length=65", *extra])
        one_line_error(out, "`train.max_length` 65", "(64 positions); set it to 64 or less")
    no_study(tmp_path)


# ---------------------------------------------------------------- train.device


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("device", ["cuda", "cuda:1"])
def test_cuda_without_a_gpu_is_one_line(command, device, study_file, tmp_path) -> None:
    extra = storage(tmp_path) if command == "run" else []
    out = CliRunner().invoke(cli, [command, str(study_file), "--set", f'train.device="{device}"', *extra])  # fmt: skip
    one_line_error(
        out, f'`train.device` is "{device}" but torch sees no CUDA GPU on this machine', '"cpu"'
    )
    no_study(tmp_path)


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="needs a machine without MPS")
@pytest.mark.parametrize("command", ["validate", "run"])
def test_mps_where_there_is_none_is_one_line(command, study_file, tmp_path) -> None:
    extra = storage(tmp_path) if command == "run" else []
    out = CliRunner().invoke(cli, [command, str(study_file), "--set", 'train.device="mps"', *extra])
    one_line_error(out, '`train.device` is "mps" but torch has no MPS device', '"cpu"')
    no_study(tmp_path)


def test_parallel_workers_see_their_own_gpus(study_file, tmp_path, monkeypatch) -> None:
    """Here two GPUs are seen, but a --workers process sees none and a --gpus one sees one."""
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr("hpo.execution.launch.cpu_count", lambda: 4)
    check_device("cuda:1")  # what this process sees: fine
    cases = [
        (["--workers", "2"], "cuda", "torch sees no CUDA GPU in --workers processes"),
        (["--gpus", "0,1"], "cuda:1", "torch sees 1 CUDA GPU in each --gpus worker (cuda:0)"),
    ]
    for flags, device, said in cases:
        args = ["run", str(study_file), "--set", f'train.device="{device}"', *flags]
        one_line_error(CliRunner().invoke(cli, [*args, *storage(tmp_path)]), said)
    no_study(tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a CUDA GPU")
def test_a_worker_elsewhere_refuses_the_device_in_one_line(study_file, tmp_path) -> None:
    """`hpo create` is for workers on other machines, so it stores a CUDA study here; a
    worker without a GPU then stops in one line instead of a traceback."""
    with pytest.raises(SpecError, match="torch sees no CUDA GPU"):
        pick_device("cuda")
    db = storage(tmp_path)[:2]
    out = CliRunner().invoke(cli, ["create", str(study_file), *db, "--set", 'train.device="cuda"'])
    assert out.exit_code == 0, out.output
    out = CliRunner().invoke(cli, ["worker", "tiny", *db, "--quiet"])
    one_line_error(out, '`train.device` is "cuda" but torch sees no CUDA GPU on this machine')
