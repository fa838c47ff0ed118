"""The errors hpo raises for things a user can fix; the CLI turns each into one line."""

from __future__ import annotations


class HpoError(Exception):
    """Base of every error caused by input a user controls (study file, data, storage)."""


class SpecError(HpoError):
    """The study file, or a ``--set`` override, breaks a rule."""


class DataError(HpoError):
    """The dataset cannot be read or does not have what the study file says."""


class ModelError(HpoError):
    """The pretrained model or tokenizer cannot be loaded or does not fit the study."""


class StorageError(HpoError):
    """The storage URL is wrong or the database cannot be reached."""


class DependencyError(HpoError):
    """An optional package the study needs is not installed."""


class TrialFailure(Exception):
    """One trial cannot go on (NaN loss, out of memory, a bad batch); the study carries on."""


class OutOfMemory(TrialFailure):
    """The trial's batch does not fit in the device's memory."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (driver errors run to many lines)."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
