"""Gradient clipping: the largest norm of a step's gradient; 0 turns clipping off.

Out of the space it stays at ``train.max_grad_norm`` (1.0 unless the study file says otherwise).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpo.strategies.base import Dim, Settings, Strategy


class Clipping(Strategy):
    name = "clipping"
    dims = (
        Dim(
            "max_grad_norm",
            "float",
            lambda v: 0 <= v <= 1e6,
            "must be from 0 (no clipping) to 1e6",
            short="clip",
        ),
    )

    def configure(self, settings: Settings, values: Mapping[str, Any]) -> None:
        if values.get("max_grad_norm") is not None:
            settings.max_grad_norm = float(values["max_grad_norm"])
