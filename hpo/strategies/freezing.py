"""Layer freezing: the input modules (token and position embeddings, any projection before the
first block) and the lowest k transformer blocks get no gradient. Where layers share weights
(ALBERT) only the input modules freeze: the shared block is every layer at once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpo.strategies.base import Dim, ModelContext, Strategy


class Freezing(Strategy):
    name = "freezing"
    dims = (
        Dim(
            "frozen_layers",
            "int",
            lambda v: v >= 0,
            "must be 0 or more",
            off=0,
            default=0,
            depth=True,
            short="frozen",
            layers=True,
        ),
    )

    def apply(self, model: Any, values: Mapping[str, Any], ctx: ModelContext) -> Any:
        from hpo.models.anatomy import freeze_lower_layers

        freeze_lower_layers(model, int(values["frozen_layers"]))
        return model
