"""AdamW's decoupled weight decay, on weight matrices only (not biases or norms)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpo.strategies.base import Dim, Settings, Strategy


class WeightDecay(Strategy):
    name = "weight_decay"
    dims = (
        Dim(
            "weight_decay",
            "float",
            lambda v: 0 <= v < 1,
            "must be in [0, 1)",
            0.0,
            0.01,
            short="decay",
        ),
    )

    def configure(self, settings: Settings, values: Mapping[str, Any]) -> None:
        settings.weight_decay = float(values["weight_decay"])
