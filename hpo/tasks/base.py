"""What a task is: everything that depends on the kind of labels being learned.

A task reads and checks the rows (``load``), encodes them with their labels (``encode``,
``collate``; ``augmented_batches`` for perturbed rows), names the model head it needs
(``model_class``), and defines the loss, the metrics, the score of a constant answer and the
size of one evaluation for the noise the pruners and the report allow for. The training loop,
the search and the results know a task only through this interface.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from hpo.config.spec import DataSection
    from hpo.data.batches import Encoded
    from hpo.data.dataset import TaskData


class Task:
    """Base class of the tasks in ``hpo.tasks.TASKS``."""

    name: str = "task"
    metrics: tuple[str, ...] = ()  # metrics a study may optimise; the first is the default
    minimized: frozenset[str] = frozenset({"eval_loss"})  # metrics where lower is better
    proportions: frozenset[str] = frozenset()  # metrics that are a share of evaluated units

    def load(self, data: DataSection) -> Any:
        """The splits and label names (``TaskData``, ``TokenData``: the task's own shape)."""
        raise NotImplementedError

    def encode(self, split: Any, tokenizer: Any, max_length: int, name: str = "") -> Any:
        """A split tokenized once: ``len()`` rows with ``repeat``, ``concat`` and ``input_ids``;
        ``name`` (train, validation, test) is for what encoding says about the split."""
        raise NotImplementedError

    def collate(self, encoded: Any, indices: Sequence[int], pad_id: int) -> dict[str, Any]:
        raise NotImplementedError

    def model_class(self) -> Any:
        """The ``transformers`` auto class that loads a model with this task's head."""
        raise NotImplementedError

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, **options: Any) -> torch.Tensor:
        raise NotImplementedError

    def predictions(
        self, logits: torch.Tensor, labels: torch.Tensor, indices: Sequence[int], encoded: Any
    ) -> tuple[list[Any], list[Any]]:
        """(predictions, gold labels) of one evaluation batch (the rows ``indices`` of
        ``encoded``), in the form ``score`` takes."""
        raise NotImplementedError

    def score(
        self, preds: list[Any], labels: list[Any], num_labels: int, encoded: Any
    ) -> dict[str, float]:
        """The metrics of a whole evaluation of ``encoded``; a metric ``m`` may come with its
        standard error as ``m_se``, which the pruners and the report then use as its noise."""
        raise NotImplementedError

    def constant_score(self, encoded: Any, num_labels: int, metric: str) -> float:
        """The best ``metric`` a model giving every unit the same answer scores on ``encoded``."""
        raise NotImplementedError

    def eval_units(self, encoded: Encoded) -> int:
        """How many units one evaluation scores: the n of a proportion's standard error."""
        return len(encoded)

    def check(self, metric: str, data: TaskData) -> None:
        """Raise SpecError when ``metric`` cannot be computed on ``data``."""

    def describe(self, data: Any, tokenizer: Any, max_length: int) -> list[str]:
        """Lines ``hpo validate`` prints about the data (sizes, labels, lengths)."""
        return []

    def metric_note(self, metric: str, data: Any) -> str | None:
        """A line ``hpo validate`` prints on what ``metric`` scores on ``data``, where the
        name alone does not say; None where it does."""
        return None

    def augment_pool(self, train: Any, language: str = "auto") -> Any:
        """What augmentation draws replacements from, built once from the training rows;
        ``language`` is ``[augment] language``, for tasks that split texts into words."""
        raise NotImplementedError

    def augmented_batches(
        self,
        split: Any,
        encoded: Any,
        tokenizer: Any,
        max_length: int,
        pool: Any,
        strength: float,
        seed: int,
        ops: Mapping[str, float],
    ) -> Callable[..., dict[str, Any]]:
        """``make_batch(indices, keep=())``: a training batch of the rows ``keep`` as they are
        and the rows ``indices`` perturbed at ``strength``; both are row numbers of ``encoded``,
        the tokenized ``split`` (what the loop batches)."""
        raise NotImplementedError
