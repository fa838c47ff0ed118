"""Re-initialise the top k transformer blocks (and the pooler) before training.

The top layers of a pretrained encoder are the most specific to its pre-training objective;
drawing them afresh with the model's own initialiser helps few-sample fine-tuning (Zhang et al.
2021, "Revisiting few-sample BERT fine-tuning"). The draw is seeded by the trial's seed. A
model whose layers share weights (ALBERT) is refused: its one block is every layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hpo.errors import ModelError
from hpo.strategies.base import Dim, ModelContext, Strategy, can_act

if TYPE_CHECKING:
    from hpo.config.space import SearchSpace
    from hpo.models.anatomy import Anatomy


class Reinit(Strategy):
    name = "reinit"
    dims = (
        Dim(
            "reinit_layers",
            "int",
            lambda v: v >= 0,
            "must be 0 or more",
            off=0,
            depth=True,
            short="reinit",
            layers=True,
        ),
    )

    def check_model(self, space: SearchSpace, found: Anatomy | None, model_class: str) -> None:
        super().check_model(space, found, model_class)
        if found is not None and found.shared and can_act(space, "reinit_layers", 0):
            raise ModelError(
                f"`reinit_layers`: the {found.depth} layers of {model_class} share one set of "
                "weights, so re-initialising any would erase all; leave `space.reinit_layers` out"
            )

    def apply(self, model: Any, values: Mapping[str, Any], ctx: ModelContext) -> Any:
        k = int(values.get("reinit_layers") or 0)
        if k == 0:
            return model
        import torch

        from hpo.models.anatomy import anatomy, blocks_of

        if anatomy(model, "reinit_layers").shared:
            raise ModelError("`reinit_layers` cannot act on layers that share weights")
        layers = blocks_of(model, "reinit_layers")
        targets = list(layers)[len(layers) - k :]
        pooler = getattr(model.base_model, "pooler", None)
        if pooler is not None:
            targets.append(pooler)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed + 1)
            for block in targets:
                block.apply(model._init_weights)
        return model
