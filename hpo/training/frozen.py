"""Frozen layers computed once per worker: their hidden states cached per row and per depth.

With ``frozen_layers = k`` the input modules (embeddings) and the lowest k blocks get no
gradient, so what they produce for a row depends only on the row's tokens and their weights.
hpo runs them without dropout (as in evaluation; the Trainer keeps dropout there) and keeps
each row's output of block k - 1 in memory. A step then reads the cached states of its rows and
runs only the blocks above k; evaluation does the same, and so does every later trial of the
worker that freezes the same k blocks of the same weights.

How it attaches, for any architecture ``hpo.models.anatomy`` can read:
- the frozen blocks' ``forward`` is replaced on the instance (names, weights and saving are
  unchanged): while a batch is fed, the lowest k - 1 pass their input through and block k - 1
  returns the batch's cached states; otherwise they run as before;
- rows are keyed by their content (the token ids and token types under the attention mask), so
  a row that augmentation changed is never served another row's states: it is computed;
- the store belongs to the process and is keyed by a fingerprint of the frozen weights and k,
  so a trial that changed a frozen weight (or another model) never reads stale states;
- it holds at most ``budget`` bytes; rows beyond it are computed at each step, as without it.

Rows missing from the store are computed by running the model up to block k - 1 (a hook stops
the forward there), in evaluation mode and without gradients, under the caller's autocast.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from hpo.data.batches import Encoded
    from hpo.data.windows import TokenWindows

DEFAULT_BUDGET_MB = 1024


class _Reached(Exception):
    """Raised by the hook on the last frozen block: the forward has gone far enough."""

    def __init__(self, output: Any) -> None:
        super().__init__()
        self.output = output


class Store:
    """A process's cached states: {fingerprint: {row key: states}}, within a byte budget.

    When a new entry does not fit, the states of other fingerprints (least recently used
    first) make room; the current one's are never evicted, so a trial's hits stay hits.
    """

    def __init__(self) -> None:
        self.entries: OrderedDict[str, dict[bytes, torch.Tensor]] = OrderedDict()
        # what the blocks return: 0 a tensor, n a tuple of n (the states, then None for the
        # rest, such as attention weights nobody asked for)
        self.outputs: dict[str, int] = {}
        self.bytes = 0

    def rows(self, fingerprint: str) -> dict[bytes, torch.Tensor]:
        table = self.entries.setdefault(fingerprint, {})
        self.entries.move_to_end(fingerprint)
        return table

    def put(self, fingerprint: str, key: bytes, states: torch.Tensor, budget: int) -> bool:
        size = states.numel() * states.element_size()
        while self.bytes + size > budget and self._evict_other(fingerprint):
            pass
        if self.bytes + size > budget:
            return False
        self.rows(fingerprint)[key] = states
        self.bytes += size
        return True

    def _evict_other(self, keep: str) -> bool:
        for fingerprint in self.entries:
            if fingerprint != keep:
                table = self.entries.pop(fingerprint)
                self.bytes -= sum(t.numel() * t.element_size() for t in table.values())
                return True
        return False

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0


STORE = Store()


class FrozenCache:
    """The frozen blocks of one model served from ``STORE``; see the module's docstring."""

    def __init__(self, model: Any, k: int, budget_bytes: int, store: Store = STORE) -> None:
        from hpo.models.anatomy import anatomy, blocks_of, input_modules, unwrap

        inner = unwrap(model)
        found = anatomy(inner, "frozen_layers")
        self.model = model
        self.k = k
        self.budget = budget_bytes
        self.store = store
        self.blocks = list(blocks_of(inner))[:k]
        frozen = [*input_modules(inner), *self.blocks]
        self.fingerprint = _fingerprint(found.model_class, k, frozen)
        self._feeding: torch.Tensor | None = None
        self.computed_rows = 0  # rows whose frozen states this cache computed (FLOPs spent)
        self.served_rows = 0  # rows read from the store
        for i, block in enumerate(self.blocks):
            block.forward = self._forward(block.forward, last=i == k - 1)

    @classmethod
    def attach(cls, model: Any, k: int, budget_bytes: int) -> FrozenCache | None:
        """A cache over the lowest ``k`` blocks, or None where it cannot serve this model: no
        block frozen, no budget, layers that share weights, or a trainable weight among the
        frozen modules (LoRA adapters in the lowest blocks, say)."""
        from hpo.models.anatomy import anatomy, blocks_of, input_modules, unwrap

        if k <= 0 or budget_bytes <= 0:
            return None
        inner = unwrap(model)
        found = anatomy(inner, "frozen_layers")
        if found.shared or k > found.stored:
            return None
        frozen = [*input_modules(inner), *list(blocks_of(inner))[:k]]
        if any(p.requires_grad for m in frozen for p in m.parameters()):
            return None
        return cls(model, k, budget_bytes)

    def detach(self) -> None:
        """Give the frozen blocks their own ``forward`` back."""
        for block in self.blocks:
            if "forward" in vars(block):
                del block.forward

    def _forward(self, original: Any, last: bool) -> Any:
        def forward(*args: Any, **kwargs: Any) -> Any:
            if self._feeding is None:
                return original(*args, **kwargs)
            states = self._feeding if last else (args[0] if args else kwargs["hidden_states"])
            n = self.store.outputs.get(self.fingerprint, 0)
            return (states, *[None] * (n - 1)) if n else states

        return forward

    @contextmanager
    def feeding(
        self, batch: Mapping[str, torch.Tensor], keep: Collection[bytes] | None = None
    ) -> Iterator[None]:
        """Within the block, a forward pass of ``batch`` reads its rows' frozen states (those
        not cached are computed now, and kept as the budget allows; only rows whose key is in
        ``keep`` where it is given)."""
        self._feeding = self.states(batch, keep)
        try:
            yield
        finally:
            self._feeding = None

    def states(
        self, batch: Mapping[str, torch.Tensor], keep: Collection[bytes] | None = None
    ) -> torch.Tensor:
        """The output of the last frozen block for ``batch``, padded as the batch is (zeros
        where the attention mask is 0)."""
        import torch

        mask = batch["attention_mask"].bool()
        keys = _row_keys(batch, mask)
        table = self.store.rows(self.fingerprint)
        found = [table.get(key) for key in keys]
        missing = [i for i, states in enumerate(found) if states is None]
        if missing:
            computed = self._compute(batch, missing)
            for i, states in zip(missing, computed, strict=True):
                found[i] = states
                if keep is None or keys[i] in keep:
                    self.store.put(self.fingerprint, keys[i], states, self.budget)
            self.computed_rows += len(missing)
        self.served_rows += len(keys) - len(missing)
        first = found[0]
        assert first is not None
        out = first.new_zeros((*mask.shape, first.shape[-1]))
        out[mask] = torch.cat(found)  # type: ignore[arg-type]
        return out

    def _compute(self, batch: Mapping[str, torch.Tensor], rows: list[int]) -> list[torch.Tensor]:
        """Run the rows up to the last frozen block (evaluation mode, no gradients)."""
        import torch

        index = torch.tensor(rows, device=batch["attention_mask"].device)
        mask = batch["attention_mask"].index_select(0, index)
        columns = mask.bool().any(0)
        inputs = {
            name: value.index_select(0, index)[:, columns]
            for name, value in batch.items()
            if name != "labels"
        }

        def reached(_module: Any, _args: Any, output: Any) -> None:
            raise _Reached(output)

        hook = self.blocks[-1].register_forward_hook(reached)
        modes = [(m, m.training) for m in self.model.modules()]
        self.model.eval()
        try:
            # not inference mode, even within an evaluation: stored states feed training later
            with torch.inference_mode(False), torch.no_grad():
                self.model(**inputs)
            raise RuntimeError("the forward pass never reached the last frozen block")
        except _Reached as done:
            output = done.output
        finally:
            hook.remove()
            for module, training in modes:  # as they were: the frozen ones stay in eval mode
                module.training = training
        self.store.outputs[self.fingerprint] = len(output) if isinstance(output, tuple) else 0
        hidden = output[0] if isinstance(output, tuple) else output
        sub = inputs["attention_mask"].bool()
        with torch.inference_mode(False), torch.no_grad():
            return [row.clone() for row in hidden[sub].split(sub.sum(1).tolist())]


def _row_keys(batch: Mapping[str, torch.Tensor], mask: torch.Tensor) -> list[bytes]:
    """Each row's identity: its token ids (and token types) where the mask is set."""
    ids = batch["input_ids"].cpu()
    types = batch.get("token_type_ids")
    types = types.cpu() if types is not None else None
    cpu_mask = mask.cpu()
    return [
        _key(ids[row][cpu_mask[row]], None if types is None else types[row][cpu_mask[row]])
        for row in range(ids.shape[0])
    ]


def _key(ids: torch.Tensor, types: torch.Tensor | None) -> bytes:
    key: bytes = ids.numpy().tobytes()
    return key if types is None else key + b"|" + types.numpy().tobytes()


def row_keys(encoded: Encoded | TokenWindows) -> frozenset[bytes]:
    """The keys of a tokenized split's rows as they are, unaugmented (as batches carry them)."""
    import torch

    types = getattr(encoded, "token_type_ids", None)  # NER windows carry none
    return frozenset(
        _key(
            torch.tensor(ids, dtype=torch.long),
            None if types is None else torch.tensor(types[i], dtype=torch.long),
        )
        for i, ids in enumerate(encoded.input_ids)
    )


def _fingerprint(model_class: str, k: int, modules: list[Any]) -> str:
    """Which weights the cached states came from: the class, k, and every frozen tensor's
    name, shape, dtype and two sums (a changed weight changes them)."""
    import torch

    digest = hashlib.sha256(f"{model_class}|{k}".encode())
    with torch.no_grad():
        for m_index, module in enumerate(modules):
            for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
                values = tensor.detach().double()
                digest.update(
                    f"{m_index}.{name}|{tuple(tensor.shape)}|{tensor.dtype}|{tensor.device}|"
                    f"{values.sum().item()!r}|{values.abs().sum().item()!r}|"
                    f"{(values * values).sum().item()!r}".encode()
                )
    return digest.hexdigest()
