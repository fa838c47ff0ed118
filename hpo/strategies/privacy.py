"""Differential privacy: DP-SGD through opacus, with its noise and clipping norm as dimensions.

``dp_noise_multiplier`` above 0 trains with per-sample gradients clipped to ``dp_max_grad_norm``,
Gaussian noise of that multiple of the norm, and Poisson-sampled batches (hpo/training/private.py);
the accountant's epsilon is stored on the trial, and ``[privacy] target_epsilon`` marks trials
over it infeasible (hpo/config/privacy.py). Here the model is made trainable by opacus: every
embedding table, and every layer opacus has no valid per-sample gradient for, is frozen, and
the strategy says which. Embeddings are frozen because opacus' per-sample gradient of a table is
a dense vocabulary-by-width tensor per row (about 47 MB for MiniLM, 3 GB for a batch of 64), and
the position table is indexed by one row of positions shared by the batch, whose per-sample
gradient opacus computes for a batch of one.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hpo import keys
from hpo.errors import DependencyError, ModelError
from hpo.strategies.base import Condition, Dim, ModelContext, Settings, Strategy, can_act

if TYPE_CHECKING:
    from hpo.config.privacy import PrivacySection
    from hpo.config.space import SearchSpace
    from hpo.models.anatomy import Anatomy
    from hpo.training.private import PrivacyPlan

DEFAULT_CLIP = 1.0  # the per-sample clipping norm when the space leaves dp_max_grad_norm out
# what this process has already said about frozen layers: said once, not once per trial (Python's
# own once-per-place rule is reset whenever a library changes the warning filters)
said: set[str] = set()


class PrivacyWarning(UserWarning):
    """Differentially private training changed the model (froze layers) to run at all."""


class Privacy(Strategy):
    name = "privacy"
    dims = (
        Dim(
            "dp_noise_multiplier",
            "float",
            lambda v: 0 <= v <= 1000,
            "must be from 0 (no differential privacy) to 1000",
            off=0.0,
            short="dp noise",
        ),
        Dim(
            "dp_max_grad_norm",
            "float",
            lambda v: 0 < v <= 1e6,
            "must be above 0 and at most 1e6",
            short="dp clip",
        ),
    )

    def conditions(self, space: SearchSpace) -> list[Condition]:
        if "dp_noise_multiplier" not in space.dimensions:
            return []
        return [
            Condition(
                "dp_max_grad_norm",
                "dp_noise_multiplier",
                lambda v: v > 0,
                "dp_noise_multiplier above 0",
            )
        ]

    def check(self, space: SearchSpace) -> None:
        from hpo.errors import SpecError

        if "dp_max_grad_norm" in space and not can_act(space, "dp_noise_multiplier", 0.0):
            raise SpecError(
                "`space.dp_max_grad_norm` is the clipping norm of differentially private "
                "training, which is off: set space.dp_noise_multiplier above 0, or drop it"
            )

    def check_model(self, space: SearchSpace, found: Anatomy | None, model_class: str) -> None:
        if can_act(space, "dp_noise_multiplier", 0.0):
            require_opacus()

    def configure(self, settings: Settings, values: Mapping[str, Any]) -> None:
        settings.dp_noise_multiplier = float(values["dp_noise_multiplier"] or 0.0)
        clip = values["dp_max_grad_norm"]
        settings.dp_max_grad_norm = DEFAULT_CLIP if clip is None else float(clip)

    def apply(self, model: Any, values: Mapping[str, Any], ctx: ModelContext) -> Any:
        if not values["dp_noise_multiplier"]:
            return model
        require_opacus()
        frozen = freeze_unsupported(model)
        ctx.notes[keys.DP_FROZEN] = sorted(frozen)
        message = frozen_message(frozen, type(model).__name__)
        if frozen and message not in said:  # every trial stores the list; the line is said once
            said.add(message)
            warnings.warn(PrivacyWarning(message), stacklevel=2)
        if not any(p.requires_grad for p in model.parameters()):
            raise ModelError(
                f"differentially private training of {type(model).__name__} leaves nothing to "
                "train: opacus supports none of its trainable layers"
            )
        return model


def require_opacus() -> None:
    """Raise DependencyError unless opacus imports (never fall back to non-private training)."""
    try:
        import opacus  # noqa: F401
    except ImportError:
        raise DependencyError(
            "`space.dp_noise_multiplier` above 0 needs the package opacus: "
            "pip install 'opacus>=1.5' (or 'hpo[privacy]')"
        ) from None


def unsupported_layers(model: Any) -> dict[str, str]:
    """Trainable layers opacus cannot give correct, affordable per-sample gradients, by name,
    with the reason: embedding tables, layers opacus' validators refuse (batch norm, plain
    LSTM, ...), and layers that keep buffers (their statistics would leak)."""
    import torch
    from opacus.utils.module_utils import trainable_modules
    from opacus.validators import ModuleValidator

    out: dict[str, str] = {}
    for name, module in trainable_modules(model):
        if isinstance(module, (torch.nn.Embedding, torch.nn.EmbeddingBag)):
            out[name] = "embedding"
        elif ModuleValidator.VALIDATORS.get(type(module), lambda m: [])(module):
            out[name] = "refused by opacus"
        elif any(True for _ in module.buffers(recurse=False)):
            out[name] = "keeps buffers"
    return out


def freeze_unsupported(model: Any) -> dict[str, str]:
    """Freeze the layers ``unsupported_layers`` finds; returns them with their reasons."""
    found = unsupported_layers(model)
    modules = dict(model.named_modules())
    for name in found:
        for p in modules[name].parameters(recurse=False):
            p.requires_grad_(False)
    return found


def frozen_message(frozen: Mapping[str, str], model_class: str) -> str:
    """One line naming the layers differentially private training froze, and why."""
    names = ", ".join(sorted(frozen))
    kinds = sorted(set(frozen.values()))
    return (
        f"differential privacy: froze {len(frozen)} layer(s) of {model_class} that opacus "
        f"cannot train privately ({', '.join(kinds)}): {names}"
    )


def over_budget(epsilon: float, target: float | None) -> str | None:
    """Why a trial that spent ``epsilon`` is infeasible under ``target``; None when it is not."""
    if target is None or epsilon <= target:
        return None
    return f"spent epsilon {epsilon:.3g}, over privacy.target_epsilon {target:g}"


def private_plan(
    section: PrivacySection | None, settings: Settings, rows: int
) -> PrivacyPlan | None:
    """DP-SGD's settings for the loop when the trial's noise is above 0 (else None); ``rows``:
    the training rows, which the default delta depends on."""
    from hpo.config.privacy import PrivacySection, default_delta
    from hpo.training.private import PrivacyPlan

    if settings.dp_noise_multiplier <= 0:
        return None
    section = section or PrivacySection()
    return PrivacyPlan(
        noise_multiplier=settings.dp_noise_multiplier,
        max_grad_norm=settings.dp_max_grad_norm,
        delta=section.delta if section.delta is not None else default_delta(rows),
        accountant=section.accountant,
    )
