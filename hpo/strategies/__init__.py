"""The strategies a study can tune, in the order they act on a trial.

Adding a strategy: write a module with a ``Strategy`` subclass (hpo/strategies/base.py), its
tests, and one line in ``REGISTRY``. The order matters where strategies act on the model: the
model choice first, then layers are dropped, the head is swapped, layers are re-initialised and
frozen, LoRA wraps what is left, and differential privacy freezes what opacus cannot train.
"""

from __future__ import annotations

from hpo.strategies.augmentation import Augmentation
from hpo.strategies.base import Condition, Dim, ModelContext, Settings, Strategy
from hpo.strategies.batch import Batch
from hpo.strategies.clipping import Clipping
from hpo.strategies.freezing import Freezing
from hpo.strategies.head import Head
from hpo.strategies.label_smoothing import LabelSmoothing
from hpo.strategies.layers import Layers
from hpo.strategies.llrd import LayerDecay
from hpo.strategies.lora import Lora
from hpo.strategies.model_choice import ModelChoice
from hpo.strategies.privacy import Privacy
from hpo.strategies.reinit import Reinit
from hpo.strategies.schedule import SCHEDULES, Schedule
from hpo.strategies.weight_decay import WeightDecay

__all__ = [
    "REGISTRY",
    "SCHEDULES",
    "Condition",
    "Dim",
    "ModelContext",
    "Settings",
    "Strategy",
    "dimension",
    "dimensions",
    "owner",
]

REGISTRY: list[Strategy] = [
    ModelChoice(),
    Schedule(),
    Batch(),
    WeightDecay(),
    Clipping(),
    LabelSmoothing(),
    LayerDecay(),
    Augmentation(),
    Layers(),
    Head(),
    Reinit(),
    Freezing(),
    Lora(),
    Privacy(),  # last: freezes what opacus cannot train privately, of whatever is left
]


def dimensions() -> dict[str, Dim]:
    """Every dimension of every registered strategy, by name, in registry order."""
    out: dict[str, Dim] = {}
    for strategy in REGISTRY:
        for dim in strategy.dims:
            if dim.name in out:
                raise RuntimeError(f"two strategies declare the dimension {dim.name!r}")
            out[dim.name] = dim
    return out


def dimension(name: str) -> Dim:
    return dimensions()[name]


def owner(name: str) -> Strategy:
    """The strategy that declares dimension ``name``."""
    return next(s for s in REGISTRY if any(d.name == name for d in s.dims))
