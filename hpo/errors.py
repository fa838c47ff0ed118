"""The errors hpo raises for things a user can fix; the CLI turns each into one line."""

from __future__ import annotations


class HpoError(Exception):
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


class TrialFailure(Exception):
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
    return lines[0] if lines else type(exc).__name__
