"""The training step itself on this machine: fp32 against bf16 autocast, eager against
torch.compile, and torch threads, on hpo's own loop (hpo.training.loop.train).

Each option trains the bundled MiniLM-L6 for the same steps on the same SST2-small rows (batch
16, max length 64, lr 5e-5, seed 0) twice in one process, and the second (warm) run is timed; the
validation accuracy after the run shows whether an option changed what was learned.

    python bench/step_options.py                 # 60 steps per run, every option
    python bench/step_options.py --quick         # 5 steps, to check the script runs
    python bench/step_options.py --options fp32 bf16 --threads 1 2
    python bench/step_options.py --model DIR --train a.csv --validation b.csv --text-column text
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import SST2, sst2_small

OPTIONS = ("fp32", "bf16", "compile", "compile-bf16")


def run(
    option: str, threads: int, steps: int, files: dict[str, str], model_name: str, text: str
) -> dict[str, Any]:
    import torch

    from hpo.config.spec import DataSection, ModelSection
    from hpo.data.batches import encode
    from hpo.data.dataset import load_task
    from hpo.models.pretrained import PretrainedModel, load_tokenizer
    from hpo.training.loop import TrainPlan, pick_device, train

    torch.set_num_threads(threads)
    task = load_task(DataSection(files=files, text_column=text))
    spec = ModelSection(name=model_name)
    tokenizer = load_tokenizer(spec)
    pretrained = PretrainedModel(spec, task.num_labels, tokenizer=tokenizer)
    tr, va = encode(task.train, tokenizer, 64), encode(task.validation, tokenizer, 64)
    device = pick_device("cpu", "bf16" if "bf16" in option else "fp32")
    plan = TrainPlan(max_steps=steps, eval_every=steps, batch_size=16, learning_rate=5e-5,
                     warmup_ratio=0.0, lr_schedule="linear", weight_decay=0.01, seed=0)  # fmt: skip
    runs = []
    for _ in range(2):  # cold, then warm
        model = pretrained.fresh(0)
        if option.startswith("compile"):
            model.compile(dynamic=True)
        t0 = time.perf_counter()
        result = train(model, tr, va, plan, device, pad_id=tokenizer.pad_token_id)
        runs.append((result, time.perf_counter() - t0))
    (cold, cold_wall), (warm, _) = runs
    return {
        "option": option,
        "threads": threads,
        "samples_per_s": warm.samples_per_second,
        "samples_per_s_cold": cold.samples_per_second,
        "cold_wall_s": cold_wall,
        "eval_s": warm.eval_seconds,
        "accuracy": warm.metrics["accuracy"],
        "eval_loss": warm.metrics["eval_loss"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--options", nargs="+", choices=OPTIONS, default=list(OPTIONS))
    parser.add_argument("--model", default="bundled:all-MiniLM-L6-v2")
    parser.add_argument("--train", type=Path)
    parser.add_argument("--validation", type=Path)
    parser.add_argument("--text-column", default="sentence")
    parser.add_argument("--threads", nargs="+", type=int, default=[1])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="5 steps")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = 5
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.train is not None:
            files = {"train": str(args.train), "validation": str(args.validation or args.train)}
        elif (SST2 / "train.tsv").is_file():
            files = sst2_small(Path(tmp))
            files.pop("test")
        else:
            print(f"no SST-2 data at {SST2}; pass --train and --validation", file=sys.stderr)
            return 1
        for threads in args.threads:
            for option in args.options:
                rows.append(run(option, threads, args.steps, files, args.model, args.text_column))
                r = rows[-1]
                print(f"{option:>13} threads {threads}: {r['samples_per_s']:6.1f} samples/s warm, "
                      f"{r['samples_per_s_cold']:6.1f} cold (first run {r['cold_wall_s']:.0f} s), "
                      f"eval {r['eval_s']:.2f} s, accuracy {r['accuracy']:.3f}, "
                      f"eval loss {r['eval_loss']:.4f}", flush=True)  # fmt: skip
    for threads in args.threads:
        base = next(r for r in rows if r["threads"] == threads)
        for r in rows:
            if r["threads"] == threads:
                print(f"threads {threads}: {r['option']} / {base['option']}: "
                      f"{r['samples_per_s'] / base['samples_per_s']:.2f}x warm")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
