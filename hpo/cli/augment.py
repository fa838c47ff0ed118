"""``hpo augment``: see what an augmentation strength does to the training texts before tuning it."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

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

    The title names the language and how its texts split into words ([augment] language: jieba
    words for Chinese, characters for Japanese or Thai, else words between spaces). For token
    classification, sentences show each entity mention as [words|type]. Strength 0 prints the
    texts unchanged. Nothing is trained and nothing is stored.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    from hpo.cli.common import load_study_file
    from hpo.tasks import get_task

    spec, _ = load_study_file(study_file, overrides)
    kind = get_task(spec.study.task)
    task = kind.load(spec.data)
    train = task.train
    picked = random.Random(seed).sample(range(len(train)), min(count, len(train)))
    ops = ", ".join(f"{op} {w:g}" for op, w in spec.augment.ops.items())
    title = f"augmentation_strength {strength:g} (ops: {ops})"
    table = Table(title=title, show_lines=True)
    table.add_column("#", justify="right", style="dim")
    if spec.study.task == "token_classification":
        from hpo.data.augment import TokenAugmenter

        tagged = TokenAugmenter(strength, kind.augment_pool(train), seed, spec.augment.ops)
        table.add_column(escape("training sentence ([mention|type])"))
        table.add_column("augmented")
        for i in picked:
            words, tags = train.tokens[i], train.tag_names(i)
            table.add_row(str(i), _tagged(words, tags), _tagged(*tagged(words, tags)))
    else:
        from hpo.data.augment import Augmenter

        texts = train.text
        pool = kind.augment_pool(train, spec.augment.language)
        augmenter = Augmenter(strength, pool.vocabulary, seed, spec.augment.ops, pool.script)
        table.title = f"{title}; language {pool.script.describe()}"
        table.add_column("training text")
        table.add_column("augmented")
        for i in picked:
            table.add_row(str(i), Text(texts[i]), Text(augmenter(texts[i])))  # not markup
    Console().print(table)


def _tagged(words: list[str], tags: list[str]) -> Any:
    """A tagged sentence as text, each mention bracketed with its type: [Paris|location]."""
    from rich.text import Text

    from hpo.data.augment import segments

    out = Text()
    for i, (unit, kind) in enumerate(segments(words, tags)):
        out.append(" " if i else "")
        if kind is None:
            out.append(unit[0])
        else:
            out.append(f"[{' '.join(unit)}|{kind}]", style="bold")
    return out
