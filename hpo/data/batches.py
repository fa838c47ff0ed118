"""Rows as token ids: a split tokenized once, padded batches, and the order batches come in.

Training batches are shuffled (and, by default, grouped by length to pad less); evaluation
batches are sorted by length. The same orderings serve every task, since they only need each
row's length.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedTokenizerBase

    from hpo.data.dataset import Split


@dataclass(frozen=True)
class Encoded:
    """A tokenized split: token ids per row (unpadded) and labels."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None
    label: list[int]

    def __len__(self) -> int:
        return len(self.label)

    def repeat(self, times: int) -> Encoded:
        """The rows ``times`` over (augmented copies index past the originals)."""
        types = self.token_type_ids
        return Encoded(
            self.input_ids * times, types * times if types is not None else None, self.label * times
        )

    def concat(self, other: Encoded) -> Encoded:
        types = None
        if self.token_type_ids is not None and other.token_type_ids is not None:
            types = self.token_type_ids + other.token_type_ids
        return Encoded(self.input_ids + other.input_ids, types, self.label + other.label)


def encode(split: Split, tokenizer: PreTrainedTokenizerBase, max_length: int) -> Encoded:
    """Tokenize a whole split once, without padding (batches pad to their own longest row)."""
    out = tokenizer(
        split.text,
        split.text_pair,
        truncation=True,
        max_length=max_length,
        padding=False,
    )
    types = out.get("token_type_ids")
    return Encoded(list(out["input_ids"]), list(types) if types is not None else None, split.label)


def collate(encoded: Encoded, indices: Sequence[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad the chosen rows to the longest among them and stack them as tensors."""
    import torch

    width = max(len(encoded.input_ids[i]) for i in indices)
    n = len(indices)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    types = torch.zeros((n, width), dtype=torch.long) if encoded.token_type_ids else None
    for row, i in enumerate(indices):
        seq = encoded.input_ids[i]
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
        if types is not None and encoded.token_type_ids is not None:
            types[row, : len(seq)] = torch.tensor(encoded.token_type_ids[i])
    batch = {"input_ids": ids, "attention_mask": mask}
    if types is not None:
        batch["token_type_ids"] = types
    batch["labels"] = torch.tensor([encoded.label[i] for i in indices], dtype=torch.long)
    return batch


def train_batches(
    lengths: Sequence[int], batch_size: int, seed: int, group_by_length: bool
) -> Iterator[list[int]]:
    """Endless shuffled batches of row indices; with grouping, rows of similar length batch together.

    Grouping sorts within windows of 50 batches and shuffles the batch order, so padding
    shrinks while each epoch still sees every row once in a random-enough order.
    """
    rng = random.Random(seed)
    n = len(lengths)
    epoch = 0
    while True:
        order = list(range(n))
        rng.shuffle(order)
        batches: list[list[int]] = []
        window = batch_size * 50 if group_by_length else n
        for start in range(0, n, window):
            chunk = order[start : start + window]
            if group_by_length:
                chunk.sort(key=lengths.__getitem__)
            batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
        if group_by_length:
            rng.shuffle(batches)
        yield from batches
        epoch += 1


def eval_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Batches for no-grad evaluation, longest first, so padding is minimal and memory peaks early."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
