"""What a task is: everything that depends on the kind of labels being learned.

A task reads and checks the rows (``load``), encodes them with their labels (``encode``,
``collate``; ``encode_texts`` for augmented text), names the model head it needs
(``model_class``), and defines the loss, the metrics, the score of a constant answer and the
size of one evaluation for the noise the pruners and the report allow for. The training loop,
the search and the results know a task only through this interface.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from hpo.config.spec import DataSection
    from hpo.data.dataset import Encoded, Split, TaskData


class Task:
    """Base class of the tasks in ``hpo.tasks.TASKS``."""

    name: str = "task"
    metrics: tuple[str, ...] = ()  # metrics a study may optimise; the first is the default
    minimized: frozenset[str] = frozenset({"eval_loss"})  # metrics where lower is better
    proportions: frozenset[str] = frozenset()  # metrics that are a share of evaluated units

    def load(self, data: DataSection) -> TaskData:
        raise NotImplementedError

    def encode(self, split: Split, tokenizer: Any, max_length: int) -> Encoded:
        raise NotImplementedError

    def collate(self, encoded: Encoded, indices: Sequence[int], pad_id: int) -> dict[str, Any]:
        raise NotImplementedError

    def encode_texts(
        self,
        tokenizer: Any,
        split: Split,
        indices: Sequence[int],
        texts: list[str],
        pairs: list[str] | None,
        max_length: int,
    ) -> dict[str, Any]:
        """A training batch from (augmented) texts of the rows ``indices`` of ``split``."""
        raise NotImplementedError

    def model_class(self) -> Any:
        """The ``transformers`` auto class that loads a model with this task's head."""
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, **options: Any) -> torch.Tensor:
        raise NotImplementedError

    def predictions(
        self, logits: torch.Tensor, labels: torch.Tensor
    ) -> tuple[list[Any], list[Any]]:
        """(predictions, gold labels) of one evaluation batch, in the form ``score`` takes."""
        raise NotImplementedError

    def score(self, preds: list[Any], labels: list[Any], num_labels: int) -> dict[str, float]:
        raise NotImplementedError

    def constant_score(self, labels: Sequence[Any], num_labels: int, metric: str) -> float:
        """The best ``metric`` a model giving every unit the same answer scores on ``labels``."""
        raise NotImplementedError

    def eval_units(self, encoded: Encoded) -> int:
        """How many units one evaluation scores: the n of a proportion's standard error."""
        return len(encoded)

    def check(self, metric: str, data: TaskData) -> None:
        """Raise SpecError when ``metric`` cannot be computed on ``data``."""
