"""Where a model keeps its embeddings, its transformer blocks and its head, found by structure.

The layer strategies (freezing, layer dropping, layer-wise decay, re-initialisation, LoRA) need
three things of any architecture: the modules that run before the first block (token and
position embeddings, and projections such as ALBERT's or ELECTRA's from the embedding width),
the list of blocks, and what sits above it (final norm, pooler, the task's head). A table of
attribute names per family would break on the next one, so ``find_anatomy`` reads the model:

- the blocks are the ``ModuleList`` of the base model that holds the most parameters, its items
  all of one class (BERT's ``encoder.layer``, GPT-2's ``h``, Llama's ``layers``);
- one short forward pass (four tokens, no gradients) records the order modules run in; every
  module outside the blocks that owns weights and runs before the first block, and every
  embedding table wherever it sits (DeBERTa's relative positions are read, never called), is an
  input module; the rest of the base model is the top; the modules outside it are the head.
  Where that pass cannot run, embedding tables and the base model's ``embeddings`` are the
  inputs.

Weights shared across depth: ALBERT runs one block 12 times. There ``depth`` (what the config
says) is above ``stored`` (the blocks in the list), and the strategies say what they mean:
layer dropping runs the shared block fewer times; freezing freezes the input modules only (the
shared block is every layer at once); layer-wise decay treats it as one block; re-initialising
it would erase every layer and is refused before any trial.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpo.errors import ModelError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Anatomy:
    """Qualified module names of a model (unwrapped from any adapter), and its depth."""

    model_class: str
    blocks: str  # the block list, e.g. "bert.encoder.layer"
    depth: int  # layers the model runs
    stored: int  # distinct blocks in the list: below ``depth`` where layers share weights
    inputs: tuple[str, ...]  # weight-owning modules that run before the first block
    top: tuple[str, ...]  # the base model's weight-owning modules above the blocks
    head: tuple[str, ...]  # top-level modules outside the base model

    @property
    def shared(self) -> bool:
        return self.stored < self.depth

    def block_of(self, param_name: str) -> int | None:
        """The block a parameter (by its name in the unwrapped model) belongs to, else None."""
        if not param_name.startswith(self.blocks + "."):
            return None
        return int(param_name[len(self.blocks) + 1 :].split(".", 1)[0])


_CACHE: weakref.WeakKeyDictionary[Any, Anatomy] = weakref.WeakKeyDictionary()


def unwrap(model: Any) -> Any:
    """The transformers model inside an adapter wrapper (peft's ``get_base_model``)."""
    inner = getattr(model, "get_base_model", None)
    return inner() if callable(inner) else model


def anatomy(model: Any, strategy: str = "") -> Anatomy:
    """The model's anatomy (computed once per model object); ``strategy`` names the dimension
    that needs it, for the one-line error when the model cannot be read."""
    model = unwrap(model)
    found = _CACHE.get(model)
    if found is None:
        found = find_anatomy(model, strategy)
        _CACHE[model] = found
    return found


def remember(model: Any, found: Anatomy) -> None:
    """Give a copy of a model (same structure, new object) the anatomy already read."""
    _CACHE[unwrap(model)] = found


def forget(model: Any) -> None:
    """Drop the cached anatomy of a model whose structure changed (layers dropped)."""
    _CACHE.pop(unwrap(model), None)


def declared_depth(config: Any) -> int:
    """The number of transformer layers a configuration declares (0 if it says none)."""
    for name in ("num_hidden_layers", "n_layer", "num_layers", "n_layers"):
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return 0


def find_anatomy(model: Any, strategy: str = "") -> Anatomy:
    """Read the model's structure; a one-line ModelError when it has no block list."""
    import torch

    cls = type(model).__name__
    base = model.base_model
    base_prefix = next(name for name, m in model.named_modules() if m is base)
    blocks_local = _block_list(base)
    if blocks_local is None:
        who = f"`{strategy}`" if strategy else "the layer strategies"
        raise ModelError(
            f"{who} cannot find the transformer layers of {cls} (no list of blocks in "
            f"its base model); leave {strategy or 'them'} out of `[space]` for this model"
        )
    local_name, blocks = blocks_local
    blocks_name = f"{base_prefix}.{local_name}" if base_prefix else local_name
    depth = declared_depth(model.config) or len(blocks)
    in_blocks = {id(m) for m in blocks.modules()}
    owners = [
        (name, m)
        for name, m in model.named_modules()
        if id(m) not in in_blocks and any(True for _ in m.parameters(recurse=False))
    ]
    inside_base = {id(m) for m in base.modules()}
    order = _call_order(model, blocks)
    first_block = min((order[id(b)] for b in blocks if id(b) in order), default=None)
    inputs: list[str] = []
    top: list[str] = []
    for name, m in owners:
        if id(m) not in inside_base:
            continue
        called = order.get(id(m))
        if isinstance(m, torch.nn.Embedding):
            before = True
        elif first_block is not None and called is not None:
            before = called < first_block
        else:  # the pass could not run, or never called this module: name-based last resort
            embeddings = getattr(base, "embeddings", None)
            before = embeddings is not None and id(m) in {id(x) for x in embeddings.modules()}
        (inputs if before else top).append(name)
    head = tuple(name for name, _ in model.named_children() if name != base_prefix.split(".", 1)[0])
    return Anatomy(cls, blocks_name, depth, len(blocks), tuple(inputs), tuple(top), head)


def _block_list(base: Any) -> tuple[str, torch.nn.ModuleList] | None:
    """The ModuleList holding the most parameters whose items share one class (outermost wins
    a tie, so ALBERT's group list is chosen over the layer list inside it)."""
    import torch

    best: tuple[str, torch.nn.ModuleList] | None = None
    best_size = 0
    for name, m in base.named_modules():
        if not isinstance(m, torch.nn.ModuleList) or len(m) == 0:
            continue
        if len({type(item) for item in m}) != 1:
            continue
        size = sum(p.numel() for p in m.parameters())
        if size > best_size:
            best, best_size = (name, m), size
    return best


def _call_order(model: Any, blocks: torch.nn.ModuleList) -> dict[int, int]:
    """{id(module): index of its first call} from one four-token forward pass ({} if the pass
    fails, e.g. on the meta device for a model that reads a tensor's value)."""
    import torch

    order: dict[int, int] = {}

    def seen(module: Any, _args: Any) -> None:
        order.setdefault(id(module), len(order))

    hooks = [m.register_forward_pre_hook(seen) for m in model.modules()]
    was_training = model.training
    try:
        param = next(model.parameters())
        vocab = int(getattr(model.config, "vocab_size", 0) or 0)
        ids = torch.arange(1, 5, device=param.device).remainder(max(vocab, 1)).unsqueeze(0)
        model.eval()
        with torch.no_grad():
            model(input_ids=ids)
    except Exception:  # any failure means "order unknown"; the caller falls back
        order = {}
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return order


def anatomy_from_config(
    config: Any, model_class: Any, name: str
) -> tuple[str, Anatomy | None] | None:
    """The class and anatomy (None where it has no block list) of the model ``config``
    describes under ``model_class``, built on the meta device: no weights are read or
    allocated, so this runs before any trial, even for a large model. A one-line ModelError
    when transformers has no such model for this architecture (``name``: ``model.name``); None
    when the model cannot be built on the meta device (it is then read when its weights are)."""
    import torch

    try:
        with torch.device("meta"):
            model = model_class.from_config(config)
    except Exception as exc:  # any failure to build on meta: checked on the real model later
        if "Unrecognized configuration class" in str(exc):
            from hpo.models.pretrained import no_head_error

            kind = getattr(config, "model_type", type(config).__name__)
            raise no_head_error(name, model_class, kind) from None
        return None
    try:
        return type(model).__name__, find_anatomy(model)
    except ModelError:
        return type(model).__name__, None


def blocks_of(model: Any, strategy: str = "") -> torch.nn.ModuleList:
    """The model's list of transformer blocks."""
    inner = unwrap(model)
    module: torch.nn.ModuleList = inner.get_submodule(anatomy(inner, strategy).blocks)
    return module


def input_modules(model: Any, strategy: str = "") -> list[torch.nn.Module]:
    """The weight-owning modules that run before the first block (embeddings, projections)."""
    inner = unwrap(model)
    return [inner.get_submodule(name) for name in anatomy(inner, strategy).inputs]


def keep_lower_layers(model: Any, k: int) -> None:
    """Run only the lowest ``k`` layers; the config says the new depth, so a saved model loads
    with ``k`` layers. Where layers share weights (ALBERT) the shared block just runs k times."""
    import torch

    found = anatomy(model, "num_layers")
    if not 1 <= k <= found.depth:
        raise ModelError(f"`num_layers` is {k} but the model has {found.depth} layers")
    inner = unwrap(model)
    if not found.shared:
        parent_name, _, attr = found.blocks.rpartition(".")
        parent = inner.get_submodule(parent_name) if parent_name else inner
        setattr(parent, attr, torch.nn.ModuleList(list(inner.get_submodule(found.blocks))[:k]))
    config = inner.config
    config.num_hidden_layers = k
    layer_types = getattr(config, "layer_types", None)
    if isinstance(layer_types, list) and len(layer_types) > k:
        config.layer_types = layer_types[:k]  # per-layer attention kinds (Qwen2, Gemma 2/3)
    forget(inner)


def freeze_lower_layers(model: Any, k: int) -> int:
    """Stop gradients for the input modules and the lowest ``k`` layers; 0 freezes nothing.
    Where layers share weights only the input modules freeze (the shared block is every layer).

    Returns the number of parameters left trainable.
    """
    found = anatomy(model, "frozen_layers")
    if k > found.depth:
        raise ModelError(f"`frozen_layers` is {k} but the model has only {found.depth} layers")
    if k > 0:
        modules = input_modules(model)
        if not found.shared:
            modules += list(blocks_of(model))[:k]
        for module in modules:
            for p in module.parameters():
                p.requires_grad_(False)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def below_blocks(model: Any, k: int) -> list[torch.nn.Module]:
    """The modules that run below block ``k``: the lowest ``k`` blocks (none where layers share
    weights) and what the base model holds before its block list (embeddings, their norm and
    dropout), found by walking down to the block list and taking the siblings defined first."""
    inner = unwrap(model)
    found = anatomy(inner)
    blocks = inner.get_submodule(found.blocks)
    out: list[torch.nn.Module] = [] if found.shared else list(blocks)[:k]
    module = inner.base_model
    while module is not blocks:
        children = list(module.children())
        holder = next(c for c in children if c is blocks or any(m is blocks for m in c.modules()))
        out += children[: children.index(holder)]
        module = holder
    return out
