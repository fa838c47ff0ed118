"""Pretrained models: find, load once per process, hand each trial a fresh copy.

Loading weights from disk takes seconds; a deep copy of a model already in memory takes
milliseconds. ``PretrainedModel`` keeps one pristine copy in host memory and gives each trial
its own, with the new head re-initialised from the trial's seed. A model too large to be held
twice beside what its trial needs is not kept: each trial reads it from disk again (the same
weights, the same seeded head).
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
from typing import TYPE_CHECKING, Any

from hpo.config.spec import ModelSection
from hpo.errors import ModelError, mask_tokens_in_logs
from hpo.models.anatomy import Anatomy, anatomy, declared_depth, remember
from hpo.models.flops import shape_of_model
from hpo.models.source import (  # noqa: F401 (names callers have imported from here)
    BUNDLED,
    PICKLE_FILES,
    Bundle,
    hub_options,
    load_error,
    load_options,
    no_head_error,
    resolve,
    weight_options,
)

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


def quiet_transformers() -> None:
    """No load reports or progress bars: they would tear the live view and clutter output."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    mask_tokens_in_logs()  # the hub client's retry lines name the model


def load_config(spec: ModelSection) -> Any:
    """The model's configuration alone (cheap): used to check the study against the model."""
    from transformers import AutoConfig

    quiet_transformers()
    try:
        return AutoConfig.from_pretrained(resolve(spec), **load_options(spec), **hub_options(spec))
    except (OSError, ValueError) as exc:
        raise load_error(spec, exc) from None


def num_layers(config: Any) -> int:
    """The number of transformer blocks a model's configuration declares (0 if it says none)."""
    return declared_depth(config)


def load_tokenizer(spec: ModelSection) -> PreTrainedTokenizerBase:
    """The model's tokenizer, ready to pad batches: a decoder's tokenizer without a pad token
    pads with its end-of-sequence token (or an added ``<pad>`` when it has none), and every
    batch pads on the right, so a decoder's positions start at 0 and the last real token, which
    a decoder classifies from, is found by ``config.pad_token_id``."""
    from transformers import AutoTokenizer

    quiet_transformers()
    try:
        tokenizer = AutoTokenizer.from_pretrained(
            resolve(spec), **load_options(spec), **hub_options(spec)
        )
    except (OSError, ValueError) as exc:
        raise load_error(spec, exc) from None
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is not None:
            tokenizer.pad_token = tokenizer.eos_token
        else:
            tokenizer.add_special_tokens({"pad_token": "<pad>"})
    tokenizer.padding_side = "right"
    return tokenizer


class PretrainedModel:
    """One pristine pretrained model with a new head; ``fresh(seed)`` gives a trial its own copy."""

    def __init__(
        self,
        spec: ModelSection,
        num_labels: int,
        model_class: Any = None,
        tokenizer: Any = None,
        keep_copy: bool | None = None,
        trains_on_host: bool = True,
    ) -> None:
        """Load ``spec``'s weights under the task's head (``model_class``, an auto class;
        default: sequence classification). ``tokenizer`` (from ``load_tokenizer``) sets the
        model's pad token. ``keep_copy``: hold the pristine weights in host memory (None: when
        they fit beside what a trial needs there; ``trains_on_host`` False when trials train on
        a GPU, whose copy, gradients and optimizer state are not in host memory)."""
        if model_class is None:
            from transformers import AutoModelForSequenceClassification as model_class

        self._spec = spec
        self._num_labels = num_labels
        self._model_class = model_class
        self._pad_id = None if tokenizer is None else tokenizer.pad_token_id
        self._vocab = 0 if tokenizer is None else len(tokenizer)
        model, info = self._load()
        new = set(info["missing_keys"]) | {k for k, *_ in info.get("mismatched_keys", ())}
        self.new_modules = sorted({key.rsplit(".", 1)[0] for key in new})
        self._describe(model)
        if keep_copy is None:
            keep_copy = keeps_copy(self.model_bytes, available_memory(), trains_on_host)
        self.keeps_copy = keep_copy
        self._model: PreTrainedModel | None = model if keep_copy else None

    def _load(self) -> tuple[PreTrainedModel, dict[str, Any]]:
        quiet_transformers()
        spec = self._spec
        # transformers' GGUF reader draws a progress bar of its own, past its logging switches
        quiet = (
            contextlib.redirect_stderr(io.StringIO()) if "gguf_file" in load_options(spec) else None
        )
        try:
            with quiet or contextlib.nullcontext():
                model, info = self._model_class.from_pretrained(
                    resolve(spec),
                    num_labels=self._num_labels,
                    output_loading_info=True,
                    ignore_mismatched_sizes=True,  # a checkpoint with another head size
                    **weight_options(spec),
                    **hub_options(spec),
                )
        except (OSError, ValueError) as exc:
            raise load_error(spec, exc, self._model_class) from None
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None and load_options(spec).get("gguf_file"):
            # dequantised to float32 on load: a plain model from here on, which trains and saves
            quantizer.remove_quantization_config(model)
        set_pad_token(model, self._pad_id, self._vocab)
        return model, info

    def _describe(self, model: PreTrainedModel) -> None:
        """What the pristine model is, read once: its size, depth, class and where its layers
        are (None for a model without a block list: a study that uses no layer strategy runs
        on any model)."""
        self.model_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        self._depth = declared_depth(model.config)
        self.class_name = type(model).__name__
        self.anatomy: Anatomy | None
        try:
            self.anatomy = anatomy(model)
        except ModelError:
            self.anatomy = None
        blocks = model.get_submodule(self.anatomy.blocks) if self.anatomy is not None else None
        self.shape = shape_of_model(model, blocks)  # what its FLOPs per row depend on

    @classmethod
    def from_model(cls, model: PreTrainedModel, new_modules: list[str]) -> PretrainedModel:
        """Wrap a model built in memory (tests build tiny ones from a config)."""
        self = cls.__new__(cls)
        self._model = model
        self.new_modules = new_modules
        self.keeps_copy = True
        self._describe(model)
        return self

    @property
    def num_layers(self) -> int:
        return self._depth

    def fresh(self, seed: int) -> PreTrainedModel:
        """A trainable copy whose newly added weights (the head) are drawn from ``seed``."""
        import torch

        model = copy.deepcopy(self._model) if self._model is not None else self._load()[0]
        if self.anatomy is not None:
            remember(model, self.anatomy)
        modules = dict(model.named_modules())
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for name in self.new_modules:
                model._init_weights(modules[name])
        model.train()
        return model


def set_pad_token(model: PreTrainedModel, pad_id: int | None, vocab: int) -> None:
    """Tell the model which id pads (decoders classify from the last token that is not it), and
    give a pad token added to the tokenizer an embedding row: the mean of the others, so loading
    twice gives the same weights."""
    if pad_id is None:
        return
    import torch

    model.config.pad_token_id = pad_id
    table: Any = model.get_input_embeddings()
    rows = int(table.weight.shape[0])
    if pad_id >= rows:
        model.resize_token_embeddings(max(vocab, pad_id + 1), mean_resizing=False)
        grown: Any = model.get_input_embeddings()
        weight: torch.Tensor = grown.weight
        with torch.no_grad():
            weight[rows:] = weight[:rows].mean(dim=0)


def available_memory() -> int | None:
    """Bytes of host memory available now (Linux's MemAvailable), else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def keeps_copy(model_bytes: int, available: int | None, trains_on_host: bool = True) -> bool:
    """Keep the pristine copy when, beside it, host memory still holds what a trial puts there:
    its copy, gradients and AdamW's two moments (four model sizes) when it trains on the CPU,
    the copy on its way to the GPU (one) otherwise. Else reading from disk per trial is the
    price of not running out of memory. Unknown memory: keep it."""
    return available is None or available >= (4 if trains_on_host else 1) * model_bytes


def parameter_groups(model: PreTrainedModel, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: decay on weight matrices, none on biases and normalisation weights."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
