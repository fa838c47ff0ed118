"""Layer dropping: keep only the bottom k transformer blocks, a smaller and faster model.

Its off value is the model's own depth. The other layer dimensions (frozen, re-initialised)
count within the blocks kept. Where layers share weights (ALBERT) the shared block runs k times.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpo.strategies.base import Dim, ModelContext, Strategy


class Layers(Strategy):
    name = "layers"
    dims = (
        Dim(
            "num_layers",
            "int",
            lambda v: v >= 1,
            "must be 1 or more",
            depth=True,
            short="layers",
            layers=True,
        ),
    )

    def apply(self, model: Any, values: Mapping[str, Any], ctx: ModelContext) -> Any:
        from hpo.models.anatomy import anatomy, keep_lower_layers

        k = values.get("num_layers")
        if k is not None and int(k) < anatomy(model, "num_layers").depth:
            keep_lower_layers(model, int(k))
        return model
