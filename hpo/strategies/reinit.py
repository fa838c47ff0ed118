"""Re-initialise the top k transformer blocks (and the pooler) before training.

The top layers of a pretrained encoder are the most specific to its pre-training objective;
drawing them afresh with the model's own initialiser helps few-sample fine-tuning (Zhang et al.
2021, "Revisiting few-sample BERT fine-tuning"). The draw is seeded by the trial's seed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hpo.strategies.base import Dim, ModelContext, Strategy


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
        ),
    )

    def apply(self, model: Any, values: Mapping[str, Any], ctx: ModelContext) -> Any:
        k = int(values.get("reinit_layers") or 0)
        if k == 0:
            return model
        import torch

        from hpo.models.pretrained import encoder_layers

        layers = encoder_layers(model)
        targets = list(layers)[len(layers) - k :]
        pooler = getattr(model.base_model, "pooler", None)
        if pooler is not None:
            targets.append(pooler)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(ctx.seed + 1)
            for block in targets:
                block.apply(model._init_weights)
        return model
