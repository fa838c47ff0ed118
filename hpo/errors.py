"""The errors hpo raises for things a user can fix; the CLI turns each into one line."""

from __future__ import annotations

import logging
import os
import re

# A Hugging Face access token ("hf_" and 30 or more letters and digits), and the environment
# variables huggingface_hub reads one from.
_HUB_TOKEN = re.compile(r"hf_[A-Za-z0-9]{30,}")
_TOKEN_VARIABLES = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
_SHORTEST_SECRET = 8  # a shorter variable's value would mask common words, not a secret


def without_tokens(text: str) -> str:
    """``text`` with every Hugging Face token masked (``hf_***``): the values of ``HF_TOKEN``
    and ``HUGGING_FACE_HUB_TOKEN``, and anything shaped like a token. Every message hpo shows
    or stores passes through it (errors' ``__init__``, ``first_line``)."""
    for variable in _TOKEN_VARIABLES:
        secret = os.environ.get(variable, "").strip()
        if len(secret) >= _SHORTEST_SECRET:
            text = text.replace(secret, "hf_***")
    return _HUB_TOKEN.sub("hf_***", text)


class _TokenMask(logging.Filter):
    """Masks Hugging Face tokens in a log record before its handler writes it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = without_tokens(record.getMessage()), None
        return True


def mask_tokens_in_logs() -> None:
    """Mask tokens in what huggingface_hub and transformers log (the hub client's "Retrying
    ... HEAD https://huggingface.co/NAME/..." lines echo a model or dataset name)."""
    for name in ("huggingface_hub", "transformers"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, _TokenMask) for f in handler.filters):
                handler.addFilter(_TokenMask())


class _Scrubbed(Exception):
    """An exception whose text arguments have their Hugging Face tokens masked."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(without_tokens(a) if isinstance(a, str) else a for a in args))


class HpoError(_Scrubbed):
    """Base of every error hpo explains in one line instead of a traceback. ``hpo`` exits 1 for
    one that stops a correct command (a missing package, a port in use, a folder it cannot
    write), 2 for a ``UserError``."""


class UserError(HpoError):
    """The input is wrong: the study file, the data, the model, the storage URL, or a study,
    database or folder named on the command line. ``hpo`` exits 2, as click does for a bad
    option, so a script can tell "fix what you gave" from "something else broke"."""


class SpecError(UserError):
    """The study file, or a ``--set`` override, breaks a rule."""


class DataError(UserError):
    """The dataset cannot be read or does not have what the study file says."""


class ModelError(UserError):
    """The pretrained model or tokenizer cannot be loaded or does not fit the study."""


class StorageError(UserError):
    """The storage URL is wrong, names no database or study, or the database cannot be reached."""


class StorageUnavailable(HpoError):
    """The storage URL is right but its server does not answer (down, refusing, unreachable):
    nothing the user wrote is wrong, so ``hpo`` exits 1."""


class DependencyError(HpoError):
    """An optional package the study needs is not installed (the input is fine: exit 1)."""


class WriteFailed(HpoError):
    """Files could not be written (a full disk, a quota, a file-size limit): nothing the user
    gave is wrong, so ``hpo`` exits 1; whatever was half-written has been removed."""


class TrialFailure(_Scrubbed):
    """One trial cannot go on (NaN loss, out of memory, a bad batch); the study carries on."""


class OutOfMemory(TrialFailure):
    """The trial's batch does not fit in the device's memory."""


def shown(name: str) -> str:
    """A name from the input as a one-line message shows it: as written when it is printable,
    else with line breaks, control and direction characters escaped (as ``repr`` does)."""
    return name if name.isprintable() else repr(name)[1:-1]


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (driver errors run to many lines)."""
    lines = str(exc).strip().splitlines()
    return without_tokens(lines[0]) if lines else type(exc).__name__


def at_least(where: str, value: int, low: int) -> None:
    """Refuse a study-file number below ``low``, naming its key."""
    if value < low:
        raise SpecError(f"`{where}` must be at least {low}, got {value!r}")
