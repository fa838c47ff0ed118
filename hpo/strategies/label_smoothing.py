"""Label smoothing of the cross-entropy: the target puts this share of its mass on all classes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpo.strategies.base import Dim, Settings, Strategy, between


class LabelSmoothing(Strategy):
    name = "label_smoothing"
    dims = (
        Dim(
            "label_smoothing",
            "float",
            between(0.0, 1.0, hi_open=True),
            "must be in [0, 1)",
            0.0,
            short="smooth",
        ),
    )

    def configure(self, settings: Settings, values: Mapping[str, Any]) -> None:
        if values["label_smoothing"]:
            settings.loss_options["label_smoothing"] = float(values["label_smoothing"])
