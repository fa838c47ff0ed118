"""Data augmentation: word substitution, deletion, swap and insertion, and sentence reordering,
all driven by one strength in [0, 1] (``[augment]`` weighs the operations; hpo/data/augment.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpo.strategies.base import Dim, Settings, Strategy, between


class Augmentation(Strategy):
    name = "augmentation"
    dims = (
        Dim(
            "augmentation_strength",
            "float",
            between(0.0, 1.0),
            "must be in [0, 1]",
            off=0.0,
            default=0.0,
            short="augment",
        ),
    )

    def configure(self, settings: Settings, values: Mapping[str, Any]) -> None:
        settings.augmentation_strength = float(values["augmentation_strength"])
