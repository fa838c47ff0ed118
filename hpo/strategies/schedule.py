"""Learning rate, warmup and decay: the step size and how it rises and falls over a trial."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpo.strategies.base import Dim, Settings, Strategy, between

# Schedules of ``transformers.get_scheduler`` that need nothing beyond warmup and total steps.
SCHEDULES = (
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)


class Schedule(Strategy):
    name = "schedule"
    dims = (
        Dim(
            "learning_rate",
            "float",
            lambda v: 0 < v < 1,
            "must be in (0, 1)",
            off=5e-5,
            default={"low": 1e-5, "high": 2e-4, "log": True},
            short="lr",
        ),
        Dim(
            "warmup_ratio",
            "float",
            between(0.0, 1.0, hi_open=True),
            "must be in [0, 1)",
            short="warmup",
            off=0.0,
            default={"low": 0.0, "high": 0.2},
        ),
        Dim(
            "lr_schedule",
            "str",
            lambda v: v in SCHEDULES,
            f"must be one of {', '.join(SCHEDULES)}",
            off="linear",
            default=["linear", "cosine", "constant_with_warmup"],
            short="schedule",
        ),
    )

    def configure(self, settings: Settings, values: Mapping[str, Any]) -> None:
        settings.learning_rate = float(values["learning_rate"])
        settings.warmup_ratio = float(values["warmup_ratio"])
        settings.lr_schedule = str(values["lr_schedule"])
