"""Commands from a study to a model: ``hpo best`` retrains and saves it, ``hpo predict`` uses it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from hpo.cli.options import out_folder_option, storage_option

AUTO_TOP = 3  # configurations `hpo best` retrains by default when validation cannot rank them


@click.command()
@click.argument("study_name")
@out_folder_option("the model")
@storage_option
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Retrainings per configuration.",
)
@click.option(
    "--top",
    type=click.IntRange(min=1),
    default=None,
    help="How many of the best configurations [default: the best and those validation cannot "
    f"tell from it (within one standard error), at most {AUTO_TOP}].",
)
@click.option(
    "--train-on",
    type=click.Choice(["train", "train+validation"]),
    default="train",
    show_default=True,
    help="train+validation uses more data but leaves no held-out validation score.",
)
def best(
    study_name: str,
    out: Path,
    overwrite: bool,
    storage: str | None,
    seeds: int,
    top: int | None,
    train_on: str,
) -> None:
    """Retrain the best configuration with several seeds, test it, and save the best model.

    Each run trains for the study's full per-trial budget and is scored on validation and on
    the test split (once, never to choose). With --top K the configuration with the best mean
    validation over its seeds is kept: one search score is noisy, the mean over seeds less so.
    Its run best on validation is saved in Hugging Face format with a model card. The
    validation-test gap shows whether tuning overfit validation. An --out folder that holds
    files is refused before any retraining unless --overwrite, which replaces it whole.
    """
    from rich.console import Console

    from hpo import keys
    from hpo.cli.common import quiet_libraries
    from hpo.data.fingerprint import data_change, fingerprint
    from hpo.execution.storage import local_file, open_existing, storage_url
    from hpo.final.best import BEST_ATTR, retrain, top_trials
    from hpo.final.card import over_seeds, summary
    from hpo.final.saved import save
    from hpo.results.export import check_out_folder, probe_folder
    from hpo.search.objective import Objective
    from hpo.search.study import load_stored

    console = Console()
    url = storage_url(storage)
    quiet_libraries()  # the sampler it rebuilds warns of Optuna's experimental features
    study, spec = load_stored(study_name, open_existing(url))
    database = [f for f in [local_file(url)] if f is not None]
    check_out_folder(out, overwrite, [*database, *spec.local_paths()])  # before any retraining
    tied: list[int] = []
    if train_on != "train" and top is not None and top > 1:
        raise click.UsageError(
            f"--top {top} with --train-on {train_on} retrains {top} configurations that nothing "
            "can choose between (validation is in their training data); use --top 1, or choose "
            "with --train-on train first"
        )
    if top is None and train_on == "train":  # validation cannot rank trials within its noise
        tied = indistinguishable(study, spec)[: AUTO_TOP - 1]
    top = top or 1 + len(tied)
    trials = top_trials(study, top, spec.direction == "maximize")
    probe_folder(out)  # fail before hours of retraining; the save itself creates the folder
    objective = Objective(spec)
    prep = objective.prepare()
    changed = data_change(study.user_attrs.get(keys.DATA), fingerprint(prep.task))
    if changed is not None:
        console.print(
            f"[yellow]warning[/]: the data differ from what the study's trials ran on "
            f"({changed}): the configuration chosen there is retrained on the data as it is now",
            highlight=False,
        )
    metric = spec.study.metric
    if prep.task.test is None:
        console.print(
            "[yellow]the study has no test split[/]: scoring validation only; give "
            "data.files.test, data.test_split or data.test_fraction for a held-out score"
        )
    if tied:
        console.print(
            f"{len(tied)} trial(s) within one standard error of the best on validation "
            f"({', '.join(f'#{n}' for n in tied)}): retraining them too, to choose by the mean "
            "over seeds (--top 1 retrains the best alone)"
        )
    console.print(f"retraining {len(trials)} configuration(s) x {seeds} seeds on {train_on} ...")

    def show(number: int, seed: int, run: object) -> None:
        val = run.validation.get(metric)  # type: ignore[attr-defined]
        test = run.test.get(metric) if run.test else None  # type: ignore[attr-defined]
        # trained on validation too, its score there is a training score, not a held-out one
        seen = " (trained on it)" if train_on != "train" else ""
        console.print(
            f"  trial #{number} seed {seed}: validation{seen} {metric} {val:.4f}"
            + (f", test {test:.4f}" if test is not None else "")
            + (f", epsilon {run.epsilon:.3f}" if run.epsilon is not None else ""),  # type: ignore[attr-defined]
            highlight=False,
        )

    results, model, chosen = retrain(objective, trials, list(range(seeds)), train_on, show)
    value = trials[chosen].value
    facts = summary(results, metric, value, chosen)
    kept = objective.prepare(model=results[chosen].params.get("model"))  # its own tokenizer
    save(model, kept, out, spec, study_name, results, train_on, value, chosen, overwrite)
    # only now: a study never claims a model its failed save did not leave
    study.set_user_attr(BEST_ATTR, {**facts, "train_on": train_on, "out": str(out)})
    if len(results) > 1 and train_on == "train":
        console.print(f"chose trial #{facts['trial']}: the best mean validation {metric} of the "
                      f"{len(results)} configurations")  # fmt: skip
    line = f"trial #{facts['trial']}: search {metric} {value:.4f}"
    if facts["validation_mean"] is not None and train_on == "train":
        validation = over_seeds(facts["validation_mean"], facts["validation_std"], facts["seeds"])
        line += f"; retrained validation {validation}"
    if facts["test_mean"] is not None:
        line += f"; test {over_seeds(facts['test_mean'], facts['test_std'], facts['seeds'])}"
    if facts["gap"] is not None and train_on == "train":
        line += f"; validation - test gap {facts['gap']:+.4f}"
    console.print(line, highlight=False)
    if facts["per_type"]:
        console.print(
            "F1 per entity type: "
            + ", ".join(f"{k} {v:.4f}" for k, v in facts["per_type"].items()),
            highlight=False,
        )
    console.print(f"saved the model, tokenizer and model card to {out}")


def indistinguishable(study: Any, spec: Any) -> list[int]:
    """Numbers of the complete trials within one standard error of the best, best first."""
    from hpo.results.report import summarize

    trials = study.get_trials(deepcopy=False)
    return summarize(study.study_name, spec.study.metric, spec.direction, trials).within_noise


def _utf8(raw: bytes, where: str) -> str:
    """``raw`` decoded as UTF-8, else a one-line error naming the first bad byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise click.UsageError(
            f"{where} is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
            "convert it first, e.g. iconv -f latin1 -t utf-8"
        ) from None


@click.command()
@click.argument("model_dir", type=click.Path(file_okay=False, path_type=Path))
@click.argument("texts", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per text, for scripts.")
def predict(model_dir: Path, texts: tuple[str, ...], as_json: bool) -> None:
    """Predict the label of each TEXT with a model saved by `hpo best`.

    A classifier prints label, probability and text; a token classification (NER) model prints
    each text, then one line per entity: its words, type and score. TEXT `-` reads the texts
    from standard input, one per line. A model trained on text pairs takes each TEXT (and
    each line) as its two texts separated by a tab."""
    import json
    import sys

    from hpo.final.saved import pair_columns, split_pairs
    from hpo.final.saved import predict as run_predict

    if texts == ("-",):
        texts = tuple(_utf8(sys.stdin.buffer.read(), "standard input").splitlines())
        if not texts:
            raise click.UsageError("no text on standard input (one text per line)")
    for i, text in enumerate(texts, 1):  # undecodable bytes in an argument arrive as surrogates
        _utf8(text.encode("utf-8", "surrogateescape"), f"text {i}")
    columns = pair_columns(model_dir)  # None: a model of single texts, a tab is part of one
    firsts, pairs = split_pairs(texts, columns) if columns else (list(texts), None)
    rows: list[dict[str, str]] = [{"text": text} for text in texts]
    if pairs is not None:
        rows = [{"text": a, "text_pair": b} for a, b in zip(firsts, pairs, strict=True)]
    blank = [i for i, text in enumerate(texts, 1) if not text.strip()]
    if blank:
        shown = ", ".join(map(str, blank[:10])) + (", ..." if len(blank) > 10 else "")
        click.echo(
            f"warning: text {shown} is empty or only whitespace: its prediction is the model's "
            "guess with nothing to read (training drops such rows)",
            err=True,
        )
    for text, row, found in zip(texts, rows, run_predict(model_dir, firsts, pairs), strict=True):
        if isinstance(found, list):  # entities
            if as_json:
                click.echo(json.dumps({**row, "entities": found}, ensure_ascii=False))
                continue
            click.echo(text)
            for e in found:
                click.echo(f"  {e['text']}\t{e['type']}\t{e['score']:.3f}")
            if not found:
                click.echo("  (no entity)")
        elif as_json:
            label, prob = found
            out = {**row, "label": label, "score": round(prob, 4)}
            click.echo(json.dumps(out, ensure_ascii=False))
        else:
            label, prob = found
            click.echo(f"{label}\t{prob:.3f}\t{text}")
