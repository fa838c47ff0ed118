"""Checks of a study against its data and models, before any trial: one line for each problem."""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

from hpo.config.space import check_depths
from hpo.errors import ModelError, SpecError
from hpo.strategies import REGISTRY
from hpo.tasks import get_task

if TYPE_CHECKING:
    from hpo.config.spec import StudySpec
    from hpo.data.dataset import TaskData
    from hpo.models.anatomy import Anatomy


def check_fits(
    spec: StudySpec,
    task: TaskData,
    num_layers: int,
    model: str = "",
    found: Anatomy | None = None,
    model_class: str = "",
    layers_read: bool = True,
) -> None:
    """Refuse, before any trial starts, a study that cannot fit its data or model (whose layers
    are ``found``, None where it has none; ``layers_read`` False: not read yet)."""
    check_data(spec, task)
    shown = f" {model!r}" if model and "model" in spec.space else ""
    check_depths(spec.space, num_layers, shown)
    if not layers_read:
        return
    for strategy in REGISTRY:
        strategy.check_model(spec.space, found, model_class or model)


def check_data(spec: StudySpec, task: TaskData) -> None:
    """The checks of a study against its data that need no model (``validate --no-model``
    makes them too)."""
    get_task(spec.study.task).check(spec.study.metric, task)
    check_screen_length(spec, len(task.train))
    check_delta(spec, len(task.train))
    check_reachable_epsilon(spec, len(task.train))


def check_delta(spec: StudySpec, n_train: int) -> None:
    """Refuse a ``privacy.delta`` at or above 1 / training rows: (epsilon, delta)-DP then
    allows a mechanism that publishes one whole row outright, so whatever epsilon the trials
    report guarantees nothing (opacus' maintainers advise a delta well below 1 / rows)."""
    delta = spec.privacy.delta if spec.privacy is not None else None
    if delta is None or delta < 1.0 / max(1, n_train):
        return
    raise SpecError(
        f"`privacy.delta` {delta:g} is not below 1 / training rows (1/{n_train} = "
        f"{1.0 / max(1, n_train):.2g}): at that delta a trial may leak a whole row and still "
        "meet its epsilon; leave delta out (the default is min(1e-5, 1 / (10 x rows))) or set "
        "it well below 1 / rows"
    )


def check_reachable_epsilon(spec: StudySpec, n_train: int) -> None:
    """With ``privacy.target_epsilon``, refuse a study whose most private configuration (the
    most noise, the smallest batch) already spends more than the target: every trial would be
    infeasible, after training in full. The accountant is opacus' own, as in the trials."""
    from hpo.config.privacy import NOISE, default_delta
    from hpo.training.loop import steps_for

    privacy = spec.privacy
    if privacy is None or privacy.target_epsilon is None or NOISE not in spec.space:
        return
    try:
        from opacus.accountants import create_accountant
    except ImportError:  # the study stops for the missing package before its first trial
        return
    t = spec.train
    noise = float(spec.space[NOISE].upper_bound())
    sizes = spec.space["batch_size"].values() or (spec.space["batch_size"].lowest(),)
    delta = privacy.delta or default_delta(n_train)
    spent = []
    for size in sizes:
        rows = int(size) * t.gradient_accumulation
        steps = t.max_steps or steps_for(
            n_train, int(size), t.gradient_accumulation, t.epochs or 1.0
        )
        accountant = create_accountant(privacy.accountant)
        for _ in range(steps):
            accountant.step(noise_multiplier=noise, sample_rate=min(1.0, rows / n_train))
        spent.append((float(accountant.get_epsilon(delta=delta)), int(size), steps))
    least, size, steps = min(spent)
    if least > privacy.target_epsilon:
        raise SpecError(
            f"`privacy.target_epsilon` {privacy.target_epsilon:g} is out of reach: the most "
            f"private configuration (dp_noise_multiplier {noise:g}, batch_size {size}, {steps} "
            f"steps on {n_train} rows) spends epsilon {least:.3g} at delta {delta:.2g}, so every "
            "trial would be infeasible; raise the noise's high, train fewer steps, or raise the "
            "target"
        )


def check_screen_length(spec: StudySpec, n_train: int) -> None:
    """With ``study.screen`` and a trial length set by ``epochs``, refuse a batch size whose
    trials are no longer than a screen (``train.eval_every`` steps): its screens would be
    whole trials, and fail. The study file alone cannot tell; the training rows can."""
    from hpo.training.loop import steps_for

    t = spec.train
    if not spec.study.screen or t.max_steps or "batch_size" not in spec.space:
        return
    largest = int(spec.space["batch_size"].upper_bound())
    steps = steps_for(n_train, largest, t.gradient_accumulation, t.epochs or 1.0)
    if steps <= t.eval_every:
        raise SpecError(
            f"`study.screen` trains each screen `train.eval_every` ({t.eval_every}) steps, but "
            f"{t.epochs or 1:g} epoch(s) of {n_train} training rows at batch_size {largest} "
            f"is only {steps} steps, so a screen would be a whole trial; set eval_every below "
            f"{steps}, or keep batch_size below {largest}"
        )


# A tokenizer's ``model_max_length`` at or past this is transformers' "not set" (1e30)
_UNSET_LENGTH = 10**12
# configuration keys that size a table of absolute positions, in the order they are read
_POSITION_KEYS = (
    "max_position_embeddings",
    "n_positions",
    "max_sequence_length",
    "max_seq_len",
    "n_ctx",
    "seq_length",
)
# models whose position ids start after the padding id (RoBERTa's ``pad_token_id + 1``): the
# table's first ``pad_token_id + 1`` rows hold no position (RoBERTa: 514 rows, 512 positions)
_PADDING_OFFSET = {
    "roberta", "xlm-roberta", "xlm-roberta-xl", "camembert", "longformer", "data2vec-text",
    "ibert", "roberta-prelayernorm", "xmod", "mpnet", "luke", "markuplm", "lilt", "layoutlmv3",
    "esm",
}  # fmt: skip


def _no_position_table(config: Any) -> bool:
    """Whether the model has no table of absolute positions (rotary, ALiBi, T5's or DeBERTa's
    relative attention): any length runs, so its configuration sets no limit."""
    said = getattr(config, "position_embedding_type", None)
    if isinstance(said, str):  # BERT's and ESM's kind: absolute (or relative_key) has a table
        return said.lower() in ("rotary", "rope", "alibi")
    for key, value in vars(config).items():
        if ("rope" in key or "rotary" in key) and value not in (None, False, 0, ""):
            return True
    if getattr(config, "alibi", False) is True:
        return True
    if hasattr(config, "relative_attention_num_buckets") and not hasattr(
        config, "max_position_embeddings"
    ):  # T5's relative buckets (MPNet has them beside a table)
        return True
    return bool(getattr(config, "relative_attention", False)) and not getattr(
        config, "position_biased_input", True
    )  # DeBERTa v2/v3 without absolute positions


def position_limit(config: Any, tokenizer: Any) -> int | None:
    """The most tokens a row of the model may have: the tokenizer's ``model_max_length`` where
    it is set, and the size of the configuration's table of absolute positions (less RoBERTa's
    padding offset), the smaller of the two; None where neither says (no absolute positions)."""
    limits = []
    said = getattr(tokenizer, "model_max_length", None)
    if isinstance(said, int | float) and math.isfinite(said) and 0 < said < _UNSET_LENGTH:
        limits.append(int(said))
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if not _no_position_table(text):
        for key in _POSITION_KEYS:
            rows = getattr(text, key, None)
            if isinstance(rows, int) and not isinstance(rows, bool) and rows > 0:
                if getattr(text, "model_type", "") in _PADDING_OFFSET:
                    pad = getattr(text, "pad_token_id", None)
                    rows -= (pad if isinstance(pad, int) else 1) + 1
                limits.append(rows)
                break
    return min(limits) if limits else None


def check_max_length(spec: StudySpec, name: str, tokenizer: Any = None) -> None:
    """Refuse ``train.max_length`` above what model ``name`` takes (``tokenizer``: its loaded
    tokenizer, else loaded here): every row that long would fail its trial."""
    from hpo.models.pretrained import load_config, load_tokenizer

    section = dataclasses.replace(spec.model, name=name)
    if tokenizer is None:
        tokenizer = load_tokenizer(section)
    limit = position_limit(load_config(section), tokenizer)
    wanted = spec.train.max_length
    if limit is not None and wanted > limit:
        raise SpecError(
            f"`train.max_length` {wanted} is above what {name!r} takes ({limit} positions); "
            f"set it to {limit} or less"
        )


def check_max_lengths(spec: StudySpec) -> None:
    """``check_max_length`` for every model a trial may use (tokenizers and configurations
    only: quick, before the data or any weights load)."""
    from hpo.search.objective import Objective

    for name in Objective(spec).model_names():
        check_max_length(spec, name)


def preflight(spec: StudySpec) -> TaskData:
    """Load the data and each model's configuration and tokenizer (not its weights) and check
    the study."""
    from hpo.models.anatomy import anatomy_from_config
    from hpo.models.pretrained import load_config, load_tokenizer, num_layers
    from hpo.models.source import check_local_weights, resolve
    from hpo.search.objective import Objective

    objective = Objective(spec)
    for name in objective.model_names():  # a missing package is said before the data loads
        resolve(dataclasses.replace(spec.model, name=name))
    task = objective.task.load(spec.data)
    for name in objective.model_names():
        section = dataclasses.replace(spec.model, name=name)
        check_local_weights(section)
        tokenizer = load_tokenizer(section)
        check_max_length(spec, name, tokenizer)
        config = load_config(section)
        built = anatomy_from_config(config, objective.task.model_class(), name)
        # a model not buildable without its weights has its layers checked when they load
        model_class, found = built or ("", None)
        check_fits(spec, task, num_layers(config), name, found, model_class, built is not None)
        check_vocabulary(name, tokenizer, config, sample_texts(task))  # after the head's check
    return task


def sample_texts(task: TaskData, rows: int = 32) -> list[str]:
    """The first ``rows`` training texts (a tagged sentence's words joined by spaces)."""
    split: Any = task.train
    texts = getattr(split, "text", None)
    if texts is None:  # tagged sentences
        texts = [" ".join(words) for words in split.tokens[:rows]]
    return [t for t in list(texts[:rows]) if t.strip()]


def check_vocabulary(name: str, tokenizer: Any, config: Any, texts: list[str]) -> None:
    """Refuse a tokenizer that does not fit its model, which would fail every trial with a
    message from deep inside torch: one that turns the training texts into no tokens, or one
    whose token ids reach past the model's embedding table (tokens added to the tokenizer but
    not to the model, or a tokenizer from another model)."""
    if not texts:
        return
    ids = tokenizer(texts, add_special_tokens=False, truncation=True, max_length=512)["input_ids"]
    if not any(ids):
        raise ModelError(
            f"the tokenizer of {name!r} turns the training texts into no tokens (the first: "
            f"{texts[0][:60]!r}); check its tokenizer files, or use the model's own tokenizer"
        )
    vocab = getattr(config, "vocab_size", None)
    # a pad token the loader added (load_tokenizer) gets its embedding row when the model
    # loads (set_pad_token): not a mismatch
    specials = [i for i in tokenizer.all_special_ids if i != tokenizer.pad_token_id]
    highest = max([*(max(row) for row in ids if row), *specials], default=-1)
    if isinstance(vocab, int) and highest >= vocab:
        raise ModelError(
            f"the tokenizer of {name!r} gives token id {highest}, but the model's embeddings "
            f"hold {vocab} (config vocab_size): tokenizer and model do not match; resize the "
            "model's embeddings to the tokenizer, or use the model's own tokenizer"
        )
