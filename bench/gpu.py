"""Scaling on a GPU: hpo's search on full SST-2 with a bert-base-sized model; samples/s and MFU.

Run through bench/gpu.sh on a machine with a CUDA GPU. The pretrained bert-base weights (440
MB) cannot travel to the lent GPU machine, so the model is BERT-base's architecture (12 layers,
hidden 768, 12 heads, intermediate 3,072: 110M parameters) initialised at random from code, with
the bundled MiniLM's tokenizer (the uncased WordPiece vocabulary of bert-base-uncased). Its
accuracy only shows that training works; the figures that matter are speed. ``--arch gpt2``
runs a decoder of the same sizes (GPT-2 small's shape: 124M parameters with GPT-2's own
vocabulary, fewer here), which classifies from its last real token.

Settings are the BERT paper's for GLUE: batch 32, max length 128, learning rate searched in
[1e-5, 1e-4] (log), warmup in [0, 0.2], the three schedules, plus frozen layers (0-3) and
augmentation (0-0.3). Train: all 67,349 rows of SST-2's train.tsv; validation: the official
dev.tsv (872 rows). Each trial trains at most ``--steps`` steps, evaluated four times, under
hpo's default TPE sampler and median pruner; the study stops at ``--timeout`` seconds.

Model FLOPs follow the usual count (``common.flops_per_row``; Kaplan et al. 2020, Chowdhery et
al. 2022): training one token of a sequence of n tokens costs 6 N + 12 L d n FLOPs, N the
parameters outside the embeddings, L layers, d the hidden size; a frozen layer a third of its
share. Only real (not padding) tokens count. MFU is that rate against the GPU's dense bf16 peak
(--peak-tflops; 989 TFLOP/s for an H100 or H200 SXM, NVIDIA's datasheet).

    python bench/gpu.py --prepare .gpu      # here: tokenizer and SST-2 files to carry
    python bench/gpu.py --train .gpu/sst2/train.tsv --validation .gpu/sst2/dev.tsv \\
        --tokenizer .gpu/tokenizer         # there (bench/gpu.sh does both steps)
    python bench/gpu.py --quick ...         # 2 trials of 6 steps, a 2-layer model, any device
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import SST2, flops_per_row

BERT_BASE = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072}  # fmt: skip
TINY = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 128}  # fmt: skip
BATCH, MAX_LENGTH = 32, 128


def prepare(folder: Path) -> None:
    """Write what the GPU machine lacks and is small enough to travel: tokenizer, SST-2 files."""
    from transformers import AutoTokenizer

    from hpo.config.spec import ModelSection
    from hpo.models.pretrained import resolve

    AutoTokenizer.from_pretrained(resolve(ModelSection())).save_pretrained(folder / "tokenizer")
    (folder / "sst2").mkdir(parents=True, exist_ok=True)
    for name in ("train.tsv", "dev.tsv"):
        shutil.copyfile(SST2 / name, folder / "sst2" / name)
    print(f"wrote {folder}/tokenizer and {folder}/sst2")


def random_model(tokenizer_dir: Path, out: Path, sizes: dict[str, int], arch: str = "bert") -> Any:
    """A randomly initialised BERT (or GPT-2 decoder, ``arch="gpt2"``) of the given sizes, saved
    with the tokenizer as a model folder. The decoder classifies from its last real token."""
    import torch
    from transformers import (
        AutoTokenizer,
        BertConfig,
        BertForSequenceClassification,
        GPT2Config,
        GPT2ForSequenceClassification,
    )

    from hpo.models.pretrained import quiet_transformers

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    quiet_transformers()
    torch.manual_seed(0)
    if arch == "gpt2":
        config: Any = GPT2Config(
            vocab_size=len(tokenizer), num_labels=2, n_positions=MAX_LENGTH * 4,
            n_embd=sizes["hidden_size"], n_layer=sizes["num_hidden_layers"],
            n_head=sizes["num_attention_heads"], n_inner=sizes["intermediate_size"],
        )  # fmt: skip
        GPT2ForSequenceClassification(config).save_pretrained(out)
    else:
        config = BertConfig(vocab_size=len(tokenizer), num_labels=2, **sizes)
        BertForSequenceClassification(config).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return config


def trained_flops_per_row(config: Any, lengths: list[int], trial: Any) -> float:
    """Model FLOPs per training row that ran: the frozen layers' forward pass counts only for
    the share of rows the frozen-layer cache computed (``frozen_rows_computed`` against
    ``frozen_rows_served``, both splits together); rows it served skipped those layers."""
    frozen = int(trial.params.get("frozen_layers") or 0)
    per_row = flops_per_row(config, lengths, frozen)
    computed = trial.user_attrs.get("frozen_rows_computed")
    served = int(trial.user_attrs.get("frozen_rows_served") or 0)
    if not frozen or computed is None or computed + served == 0:
        return per_row
    below = flops_per_row(config, lengths, train=False) * frozen / config.num_hidden_layers
    return per_row - below * served / (computed + served)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prepare", type=Path, help="write the files to carry here, then stop")
    parser.add_argument("--train", type=Path, default=SST2 / "train.tsv")
    parser.add_argument("--validation", type=Path, default=SST2 / "dev.tsv")
    parser.add_argument("--text-column", default="sentence")
    parser.add_argument("--tokenizer", type=Path, help="default: the bundled MiniLM's")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1000, help="most steps per trial")
    parser.add_argument("--timeout", type=float, default=330, help="study time limit, seconds")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak")
    parser.add_argument("--device", default="cuda", help="cuda; cpu only for --quick")
    parser.add_argument("--quick", action="store_true", help="2 trials of 6 steps, tiny model")
    parser.add_argument(
        "--arch", choices=("bert", "gpt2"), default="bert",
        help="bert-base's shape, or GPT-2 small's (the same sizes, as a decoder)",
    )  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.prepare:
        prepare(args.prepare)
        return 0
    import optuna
    import torch
    from rich.console import Console
    from rich.table import Table

    from hpo.config.spec import ModelSection, StudySpec
    from hpo.execution.storage import open_storage
    from hpo.execution.workers import work
    from hpo.models.pretrained import resolve
    from hpo.search.objective import Objective
    from hpo.search.study import create_or_resume

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU here: this benchmark needs one (--quick --device cpu to smoke-test)",
              file=sys.stderr)  # fmt: skip
        return 1
    if args.quick:
        args.trials, args.steps = 2, 6
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    console = Console(width=None if sys.stdout.isatty() else 110)
    tokenizer_dir = args.tokenizer or Path(resolve(ModelSection()))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        config = random_model(
            tokenizer_dir, folder / "model", TINY if args.quick else BERT_BASE, args.arch
        )
        spec = StudySpec.from_dict({
            "study": {"name": "gpu-scaling", "n_trials": args.trials, "timeout": args.timeout},
            "sampler": {"name": "tpe", "seed": 0},
            "model": {"name": str(folder / "model")},
            "data": {"files": {"train": str(args.train), "validation": str(args.validation)},
                     "text_column": args.text_column},
            "train": {"max_steps": args.steps, "eval_every": max(1, args.steps // 4),
                      "max_length": MAX_LENGTH, "device": args.device},
            "space": {"learning_rate": {"low": 1e-5, "high": 1e-4, "log": True},
                      "warmup_ratio": {"low": 0.0, "high": 0.2},
                      "lr_schedule": ["linear", "cosine", "constant_with_warmup"],
                      "frozen_layers": {"low": 0, "high": min(3, config.num_hidden_layers)},
                      "augmentation_strength": {"low": 0.0, "high": 0.3},
                      "batch_size": BATCH, "weight_decay": 0.01, "seed": 0},
        })  # fmt: skip
        start = time.perf_counter()
        objective = Objective(spec)
        prep = objective.prepare()
        setup_s = time.perf_counter() - start
        lengths = [len(ids) for ids in prep.train.input_ids]  # tokens, no padding
        study, _ = create_or_resume(spec, open_storage(f"sqlite:///{folder / 'gpu.db'}"))
        work(study, objective, spec.study.n_trials)
        wall = time.perf_counter() - start
        trials = [t for t in study.get_trials() if "samples_per_second" in t.user_attrs]
    rows = []
    for t in trials:
        rate = float(t.user_attrs["samples_per_second"])
        tflops = rate * trained_flops_per_row(config, lengths, t) / 1e12
        rows.append({
            "trial": t.number, "state": t.state.name, "steps": t.user_attrs.get("steps"),
            "frozen_layers": t.params.get("frozen_layers"), "samples_per_s": rate,
            "tokens_per_s": rate * statistics.fmean(lengths), "model_tflops": tflops,
            "mfu": tflops / args.peak_tflops, "accuracy": t.value if t.value is not None
            else max(t.intermediate_values.values(), default=None),
            "peak_memory_mb": t.user_attrs.get("peak_memory_mb"),
            "device": t.user_attrs.get("device"),
        })  # fmt: skip
    size = "2-layer" if args.quick else "bert-base-sized"
    kind = "GPT-2 decoder" if args.arch == "gpt2" else "BERT"
    table = Table(title=f"hpo on {rows[0]['device'] if rows else args.device}: {size} {kind}, "
                  f"{len(lengths):,} training rows, batch {BATCH}")  # fmt: skip
    for col in ("trial", "state", "steps", "frozen", "samples/s", "tokens/s", "TFLOP/s", "MFU",
                "val acc", "peak MB"):  # fmt: skip
        table.add_column(col, justify="right")
    for r in rows:
        acc = "—" if r["accuracy"] is None else f"{r['accuracy']:.3f}"
        table.add_row(
            str(r["trial"]), r["state"].lower(), str(r["steps"]), str(r["frozen_layers"]),
            f"{r['samples_per_s']:,.0f}", f"{r['tokens_per_s']:,.0f}", f"{r['model_tflops']:.1f}",
            f"{r['mfu']:.1%}", acc, f"{r['peak_memory_mb'] or 0:,.0f}",
        )  # fmt: skip
    console.print(table)
    console.print(
        f"{len(rows)} trials in {wall:.0f} s (setup: data, tokenizer, model {setup_s:.1f} s); "
        f"mean real tokens per sample {statistics.fmean(lengths):.1f}; model FLOPs per sample "
        f"with no layer frozen {flops_per_row(config, lengths) / 1e9:.2f} GFLOP; MFU against "
        f"{args.peak_tflops:.0f} TFLOP/s."
    )
    if args.json:
        args.json.write_text(json.dumps({"wall_s": wall, "setup_s": setup_s, "rows": rows}))
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
