"""``hpo augment``: see what an augmentation strength does to the training texts before tuning it."""

from __future__ import annotations

import random
from pathlib import Path

import click

from hpo.cli.options import set_option


@click.command()
@click.argument("study_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--strength",
    type=click.FloatRange(0.0, 1.0),
    default=0.3,
    show_default=True,
    help="augmentation_strength to show.",
)
@click.option("-n", "count", type=click.IntRange(min=1), default=8, show_default=True,
              help="Training texts to show.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Which texts, and the draw.")
@set_option
def augment(
    study_file: Path, strength: float, count: int, seed: int, overrides: tuple[str, ...]
) -> None:
    """Print N training texts beside their augmented versions, at the study's [augment] ops.

    Strength 0 prints the texts unchanged. Nothing is trained and nothing is stored.
    """
    from rich.console import Console
    from rich.table import Table

    from hpo.cli.common import load_study_file
    from hpo.data.augment import Augmenter, build_vocabulary
    from hpo.tasks import get_task

    spec, _ = load_study_file(study_file, overrides)
    task = get_task(spec.study.task).load(spec.data)
    texts = task.train.text
    picked = random.Random(seed).sample(range(len(texts)), min(count, len(texts)))
    augmenter = Augmenter(strength, build_vocabulary(texts), seed, spec.augment.ops)
    ops = ", ".join(f"{op} {w:g}" for op, w in spec.augment.ops.items())
    table = Table(title=f"augmentation_strength {strength:g} (ops: {ops})", show_lines=True)
    table.add_column("#", justify="right", style="dim")
    table.add_column("training text")
    table.add_column("augmented")
    for i in picked:
        table.add_row(str(i), texts[i], augmenter(texts[i]))
    Console().print(table)
