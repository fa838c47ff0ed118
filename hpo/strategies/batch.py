"""The batch size and the trial's seed (weight init of new modules, data order, dropout)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpo.strategies.base import Dim, Settings, Strategy


class Batch(Strategy):
    name = "batch"
    dims = (
        Dim(
            "batch_size",
            "int",
            lambda v: 1 <= v <= 65536,
            "must be from 1 to 65536",
            16,
            16,
            short="batch",
        ),
        Dim("seed", "int", lambda v: 0 <= v < 2**32, "must be from 0 to 2**32 - 1", 0, 0),
    )

    def configure(self, settings: Settings, values: Mapping[str, Any]) -> None:
        settings.batch_size = int(values["batch_size"])
        settings.seed = int(values["seed"])
