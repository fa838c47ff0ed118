"""Model FLOPs of a transformer's training and evaluation, counted as is usual.

Kaplan et al. 2020 ("Scaling laws", table 1) and Chowdhery et al. 2022 (PaLM, appendix B): the
forward pass of one block costs 2 P + 4 d n per token of a row of n tokens, P the block's matrix
parameters and d the hidden size; the backward pass twice that, through the blocks above the
frozen ones only (hpo freezes the embeddings with the lowest blocks, so no gradient flows below
them). A trained block costs 6 P + 12 d n per token and a frozen one 2 P + 4 d n; evaluation is
the forward pass alone. Embedding lookups, the head and padding are left out; LoRA is counted as
full training, an upper bound.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Shape:
    """What a model's FLOPs depend on: matrix parameters per block, hidden size, depth."""

    block_params: int
    hidden: int
    depth: int

    def per_row(self, lengths: Sequence[int], frozen: int = 0, train: bool = True) -> float:
        """Mean model FLOPs of one row, over rows of ``lengths`` real tokens (see the module)."""
        if not lengths:
            return 0.0
        frozen = min(max(frozen, 0), self.depth)
        passes = self.depth + 2 * (self.depth - frozen) if train else self.depth
        p, d = self.block_params, self.hidden
        return statistics.fmean(passes * (2 * p + 4 * d * n) * n for n in lengths)

    def with_depth(self, depth: int) -> Shape:
        return Shape(self.block_params, self.hidden, depth)


def shape_of_config(config: Any) -> Shape:
    """The shape from a configuration's sizes (BERT's names, or GPT-2's ``n_embd``/``n_inner``):
    attention's four d x d matrices and the feed-forward pair d x inner."""
    d = _first(config, "hidden_size", "n_embd", "d_model", "dim")
    depth = _first(config, "num_hidden_layers", "n_layer", "num_layers", "n_layers")
    inner = _first(config, "intermediate_size", "n_inner", "ffn_dim", "hidden_dim") or 4 * d
    return Shape(4 * d * d + 2 * d * inner, d, depth)


def shape_of_model(model: Any, blocks: Any | None) -> Shape:
    """The shape read from the model itself: the matrix parameters of its first block (any
    architecture: gated feed-forwards, grouped attention), else from its configuration."""
    config = getattr(model, "config", None)
    fallback = shape_of_config(config) if config is not None else Shape(0, 0, 0)
    if blocks is None or len(blocks) == 0:
        return fallback
    matrices = [p for p in blocks[0].parameters() if p.dim() >= 2]
    if not matrices:
        return fallback
    hidden = fallback.hidden or min(min(p.shape) for p in matrices)
    depth = fallback.depth or len(blocks)
    return Shape(sum(p.numel() for p in matrices), hidden, depth)


def _first(config: Any, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def trial_flops(
    shape: Shape,
    train_lengths: Sequence[int],
    eval_lengths: Sequence[int],
    samples: int,
    evaluations: int,
    frozen: int = 0,
    frozen_computed_rows: int | None = None,
) -> float:
    """Model FLOPs of a trial that trained ``samples`` rows with ``frozen`` blocks frozen and
    evaluated the validation rows ``evaluations`` times.

    ``frozen_computed_rows``: where the frozen blocks' states were cached, the rows (training
    and validation) that ran through them; every other row read its states and cost only the
    blocks above (the training rows' mean length stands for both splits).
    """
    if frozen_computed_rows is None or frozen <= 0:
        train = samples * shape.per_row(train_lengths, frozen)
        evaluate = evaluations * len(eval_lengths) * shape.per_row(eval_lengths, train=False)
        return train + evaluate
    upper = shape.with_depth(shape.depth - min(frozen, shape.depth))
    train = samples * upper.per_row(train_lengths)
    evaluate = evaluations * len(eval_lengths) * upper.per_row(eval_lengths, train=False)
    below = Shape(shape.block_params, shape.hidden, min(frozen, shape.depth))
    return train + evaluate + frozen_computed_rows * below.per_row(train_lengths, train=False)
