"""The classification head: one hidden layer of this many units instead of a linear layer, and
the dropout in front of it.

The model's own head ends in a linear layer onto the labels (BERT's ``classifier``, RoBERTa's
``classifier.out_proj``, GPT-2's ``score``). With ``head_hidden_units = u`` above 0 that layer
becomes Linear(d, u), GELU, Dropout, Linear(u, labels). ``classifier_dropout`` sets every dropout
between the encoder and the labels (the model's own and the new one); out of the space they keep
the model's own rate. The saved model records the head in its config (``hpo_head``) and loads
with ``hpo.load_model`` (hpo/final/best.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpo.strategies.base import Dim, ModelContext, Strategy, between

HEAD_CONFIG = "hpo_head"  # {"hidden_units": u, "activation": "gelu", "dropout": p} in config.json


class Head(Strategy):
    name = "head"
    dims = (
        Dim(
            "head_hidden_units",
            "int",
            between(0, 65536),
            "must be from 0 to 65536",
            off=0,
            short="head",
        ),
        Dim(
            "classifier_dropout",
            "float",
            between(0.0, 1.0, hi_open=True),
            "must be in [0, 1)",
            short="head drop",
        ),
    )

    def apply(self, model: Any, values: Mapping[str, Any], ctx: ModelContext) -> Any:
        units = int(values.get("head_hidden_units") or 0)
        dropout = values.get("classifier_dropout")
        if dropout is not None:
            for module in head_dropouts(model):
                module.p = float(dropout)
        if units > 0:
            p = float(dropout) if dropout is not None else 0.1
            add_hidden_layer(model, units, p, ctx.seed)
        return model


def head_dropouts(model: Any) -> list[Any]:
    """Dropout modules outside the base model: the ones between the encoder and the labels."""
    import torch

    inside = {id(m) for m in model.base_model.modules()}
    return [m for m in model.modules() if isinstance(m, torch.nn.Dropout) and id(m) not in inside]


def output_layer(model: Any) -> tuple[str, Any]:
    """The name and module of the linear layer that maps onto the labels."""
    import torch

    from hpo.errors import ModelError

    inside = {id(m) for m in model.base_model.modules()}
    found = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear)
        and id(m) not in inside
        and m.out_features == model.config.num_labels
    ]
    if not found:
        raise ModelError(
            f"`head_hidden_units`: cannot find the output layer of {type(model).__name__}"
        )
    return found[-1]


def add_hidden_layer(model: Any, units: int, dropout: float, seed: int) -> None:
    """Replace the output layer with Linear(d, units), GELU, Dropout, Linear(units, labels)."""
    import torch

    name, old = output_layer(model)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        head = build_hidden_head(old.in_features, units, old.out_features, dropout)
        for layer in head:
            if isinstance(layer, torch.nn.Linear):
                model._init_weights(layer)
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, attr, head.to(old.weight.device, old.weight.dtype))
    setattr(
        model.config,
        HEAD_CONFIG,
        {"module": name, "hidden_units": units, "activation": "gelu", "dropout": dropout},
    )


def build_hidden_head(width: int, units: int, labels: int, dropout: float) -> Any:
    """The one-hidden-layer head as a Sequential (its state-dict keys are 0.* and 3.*)."""
    import torch

    return torch.nn.Sequential(
        torch.nn.Linear(width, units),
        torch.nn.GELU(),
        torch.nn.Dropout(dropout),
        torch.nn.Linear(units, labels),
    )
