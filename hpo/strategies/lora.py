"""LoRA: low-rank adapters on the attention projections instead of full fine-tuning (``peft``).

Only the adapters and the head train (Hu et al. 2021). ``lora_alpha`` and ``lora_dropout`` are
sampled only when the rank is above 0, and ``frozen_layers`` and ``reinit_layers`` only when it
is 0: the adapters already adapt every layer, and the frozen base cannot be re-initialised
usefully. Out of the space ``lora_alpha`` is twice the rank and ``lora_dropout`` is 0.
``hpo best`` folds the adapters into the weights, so the saved model loads without ``peft``.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hpo.errors import SpecError
from hpo.strategies.base import Condition, Dim, ModelContext, Strategy, between

if TYPE_CHECKING:
    from hpo.config.space import SearchSpace


class Lora(Strategy):
    name = "lora"
    dims = (
        Dim(
            "lora_rank",
            "int",
            between(0, 4096),
            "must be from 0 (off) to 4096",
            off=0,
            short="lora r",
            layers=True,
        ),
        Dim("lora_alpha", "float", lambda v: 0 < v <= 1e4, "must be in (0, 10000]", short="lora α"),
        Dim(
            "lora_dropout",
            "float",
            between(0.0, 1.0, hi_open=True),
            "must be in [0, 1)",
            0.0,
            short="lora drop",
        ),
    )

    def conditions(self, space: SearchSpace) -> list[Condition]:
        if "lora_rank" not in space.dimensions:
            for name in ("lora_alpha", "lora_dropout"):
                if name in space.dimensions:  # without a rank LoRA is off: never applied
                    raise SpecError(
                        f"`space.{name}` is never used: it applies only when lora_rank is "
                        f"above 0, and the space has no lora_rank (LoRA off); add lora_rank "
                        f"(e.g. lora_rank = [0, 8]), or drop space.{name}"
                    )
            return []
        on = [
            Condition(d, "lora_rank", lambda r: r > 0, "lora_rank above 0")
            for d in ("lora_alpha", "lora_dropout")
        ]
        off = [
            Condition(d, "lora_rank", lambda r: r == 0, "lora_rank = 0")
            for d in ("frozen_layers", "reinit_layers")
        ]
        return on + off

    def apply(self, model: Any, values: Mapping[str, Any], ctx: ModelContext) -> Any:
        rank = int(values.get("lora_rank") or 0)
        if rank == 0:
            return model
        from hpo.errors import DependencyError

        try:
            from peft import LoraConfig, get_peft_model
        except ImportError:
            raise DependencyError(
                "`space.lora_rank` needs the package peft: pip install peft (or 'hpo[lora]')"
            ) from None
        alpha = values.get("lora_alpha")
        config = LoraConfig(
            r=rank,
            lora_alpha=alpha if alpha is not None else 2 * rank,
            lora_dropout=float(values.get("lora_dropout") or 0.0),
            target_modules=attention_projections(model),
            modules_to_save=head_names(model, ctx.new_modules),
        )
        with warnings.catch_warnings():
            # peft reads transformers' deprecated is_gradient_checkpointing: a FutureWarning
            # per trial that is about peft's code, not the user's
            warnings.filterwarnings("ignore", ".*is_gradient_checkpointing", FutureWarning)
            peft_model = get_peft_model(model, config)
        ctx.notes["lora_parameters"] = sum(
            p.numel() for n, p in peft_model.named_parameters() if p.requires_grad and "lora_" in n
        )
        return peft_model


def attention_projections(model: Any) -> list[str]:
    """Names of the linear (or GPT-2 Conv1D) layers of the attention inside every block; where
    no module inside a block is named for attention, every linear layer of the blocks."""
    import torch

    from hpo.models.anatomy import anatomy

    prefix = anatomy(model, "lora_rank").blocks + "."
    linear = [
        name
        for name, m in model.named_modules()
        if name.startswith(prefix)
        and (isinstance(m, torch.nn.Linear) or type(m).__name__ == "Conv1D")
    ]
    attention = [
        name
        for name in linear
        if any(part in ("attention", "attn", "self_attn") for part in name.split("."))
    ]
    return attention or linear


def head_names(model: Any, new_modules: list[str]) -> list[str]:
    """The head's top-level module names (trained in full beside the adapters)."""
    inside = {name for name, _ in model.base_model.named_modules()}
    base = model.base_model_prefix
    tops = {m.split(".")[0] for m in new_modules if m.split(".")[0] != base}
    return sorted(tops - inside) or ["classifier"]
