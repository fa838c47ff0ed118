"""The tasks a study can tune, by the name ``[study] task`` gives."""

from __future__ import annotations

from hpo.errors import SpecError
from hpo.tasks.base import Task
from hpo.tasks.classification import SequenceClassification
from hpo.tasks.token_classification import TokenClassification

__all__ = ["DEFAULT_TASK", "TASKS", "Task", "get_task"]

DEFAULT_TASK = "sequence_classification"
TASKS: dict[str, Task] = {
    "sequence_classification": SequenceClassification(),
    "token_classification": TokenClassification(),
}


def get_task(name: str) -> Task:
    """The task named ``name``; a SpecError names the ones there are."""
    try:
        return TASKS[name]
    except KeyError:
        raise SpecError(f"`study.task` must be one of {', '.join(TASKS)}, got {name!r}") from None
