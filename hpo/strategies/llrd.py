"""Layer-wise learning-rate decay: lower blocks move less than upper ones.

With L blocks numbered 0 (bottom) to L-1 and factor f, block i trains at lr * f^(L-i), the
embeddings at lr * f^(L+1), and everything above the blocks (pooler, head) at the full lr
(Howard & Ruder 2018; Clark et al. 2020 for ELECTRA). A factor of 1 is plain fine-tuning.
"Embeddings" are the input modules (hpo/models/anatomy.py): token and position embeddings and
any projection before the first block. Where layers share weights (ALBERT) the one shared block
trains at lr * f and the embeddings at lr * f^2.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpo.strategies.base import Dim, Settings, Strategy


class LayerDecay(Strategy):
    name = "layer_lr_decay"
    dims = (
        Dim(
            "layer_lr_decay",
            "float",
            lambda v: 0 < v <= 1,
            "must be in (0, 1]",
            off=1.0,
            short="llrd",
            layers=True,
        ),
    )

    def configure(self, settings: Settings, values: Mapping[str, Any]) -> None:
        factor = float(values["layer_lr_decay"])
        if factor == 1.0:
            return

        def split(model: Any, groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return layerwise_groups(model, groups, factor)

        settings.group_hooks.append(split)


def layerwise_groups(
    model: Any, groups: list[dict[str, Any]], factor: float
) -> list[dict[str, Any]]:
    """Split each AdamW group by depth, scaling the group's (or the optimizer's) lr with
    ``lr_scale``, which the loop multiplies in when it builds the optimizer."""
    from hpo.models.anatomy import anatomy, input_modules, unwrap

    found = anatomy(model, "layer_lr_decay")
    n = found.stored
    embedded = {id(p) for m in input_modules(model) for p in m.parameters()}
    names = {id(p): name for name, p in unwrap(model).named_parameters()}
    out: list[dict[str, Any]] = []
    for group in groups:
        by_scale: dict[float, list[Any]] = {}
        for p in group["params"]:
            index = found.block_of(names.get(id(p), ""))
            if id(p) in embedded:
                scale = factor ** (n + 1)
            elif index is not None:
                scale = factor ** (n - index)
            else:
                scale = 1.0
            by_scale.setdefault(scale * group.get("lr_scale", 1.0), []).append(p)
        for scale, params in sorted(by_scale.items()):
            out.append({**group, "params": params, "lr_scale": scale})
    return out
