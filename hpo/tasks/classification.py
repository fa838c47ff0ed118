"""Sequence classification: one label per text or text pair (sentiment, topic, entailment).

Rows are read and split by hpo/data/dataset.py; the labels are integers indexing ``label_names``. The
head is ``AutoModelForSequenceClassification``'s, the loss cross-entropy on [batch, classes]
logits, and the metrics accuracy, macro-F1 and (two classes) F1 of class 1, each a share of the
validation rows, so one evaluation's noise is a proportion's standard error over those rows.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hpo.errors import SpecError
from hpo.tasks.base import Task

if TYPE_CHECKING:
    import torch

    from hpo.config.spec import DataSection
    from hpo.data.augment import TextPool
    from hpo.data.batches import Encoded
    from hpo.data.dataset import Split, TaskData


class SequenceClassification(Task):
    name = "sequence_classification"
    metrics = ("accuracy", "macro_f1", "f1", "eval_loss")
    proportions = frozenset({"accuracy", "macro_f1", "f1"})

    def load(self, data: DataSection) -> TaskData:
        from hpo.data.dataset import load_task

        return load_task(data)

    def encode(self, split: Split, tokenizer: Any, max_length: int, name: str = "") -> Encoded:
        from hpo.data.batches import encode

        return encode(split, tokenizer, max_length)

    def collate(self, encoded: Encoded, indices: Sequence[int], pad_id: int) -> dict[str, Any]:
        from hpo.data.batches import collate

        return collate(encoded, indices, pad_id)

    def augment_pool(self, train: Split, language: str = "auto") -> TextPool:
        from hpo.data.augment import TextPool

        return TextPool.for_language(train.text, language)

    def augmented_batches(
        self,
        split: Split,
        encoded: Encoded,
        tokenizer: Any,
        max_length: int,
        pool: Any,
        strength: float,
        seed: int,
        ops: Mapping[str, float],
    ) -> Callable[..., dict[str, Any]]:
        import torch

        from hpo.data.augment import Augmenter

        augment = Augmenter(strength, pool.vocabulary, seed, ops, pool.script)

        def make_batch(indices: list[int], keep: Sequence[int] = ()) -> dict[str, Any]:
            texts = [split.text[i] for i in keep] + augment.batch([split.text[i] for i in indices])
            pairs = None
            if split.text_pair is not None:
                pairs = [split.text_pair[i] for i in keep] + augment.batch(
                    [split.text_pair[i] for i in indices]
                )
            batch = tokenizer(
                texts,
                pairs,
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            out = dict(batch.items())
            every = [*keep, *indices]
            out["labels"] = torch.tensor([split.label[i] for i in every], dtype=torch.long)
            return out

        return make_batch

    def model_class(self) -> Any:
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, **options: Any) -> torch.Tensor:
        import torch

        reduction = options.pop("reduction", "mean")
        return torch.nn.functional.cross_entropy(
            logits.float(), labels, reduction=reduction, **options
        )

    def predictions(
        self, logits: torch.Tensor, labels: torch.Tensor, indices: Sequence[int], encoded: Any
    ) -> tuple[list[Any], list[Any]]:
        return logits.argmax(-1).tolist(), labels.tolist()

    def score(
        self, preds: list[Any], labels: list[Any], num_labels: int, encoded: Any
    ) -> dict[str, float]:
        return classification_metrics(preds, labels, num_labels)

    def constant_score(self, encoded: Encoded, num_labels: int, metric: str) -> float:
        return constant_score(encoded.label, num_labels, metric)

    def describe(self, data: TaskData, tokenizer: Any, max_length: int) -> list[str]:
        label, share = data.majority_baseline()
        test = len(data.test) if data.test is not None else 0
        return [
            f"data: {len(data.train)} train, {len(data.validation)} validation, {test} test "
            f"rows; {data.num_labels} labels ({', '.join(data.label_names[:10])}"
            f"{', ...' if data.num_labels > 10 else ''}); "
            f"majority class {label!r} is {share:.3f} of validation"
        ]

    def metric_note(self, metric: str, data: TaskData) -> str | None:
        if metric != "f1" or data.num_labels != 2:
            return None
        negative, positive = data.label_names
        return (
            f"metric f1: F1 of label {positive!r}, the positive class (the second of the two "
            f"labels in sorted order; {negative!r} is the first); rename the labels to score "
            "the other, or use macro_f1"
        )

    def check(self, metric: str, data: TaskData) -> None:
        if metric == "f1" and data.num_labels != 2:
            raise SpecError(
                f"`study.metric` 'f1' needs two classes but the data has {data.num_labels}; "
                "use 'macro_f1'"
            )


def classification_metrics(
    preds: Sequence[int], labels: Sequence[int], num_labels: int
) -> dict[str, float]:
    """Accuracy, macro-F1 and (two classes only) F1 of class 1, from predicted and true labels.
    Macro-F1 averages over the classes that occur among the labels or the predictions, as
    scikit-learn's does: a class the validation rows never hold and no row is given would
    count as F1 0 and cap even a perfect model below 1."""
    n = len(labels)
    tp = [0] * num_labels
    fp = [0] * num_labels
    fn = [0] * num_labels
    for p, y in zip(preds, labels, strict=True):
        if p == y:
            tp[y] += 1
        else:
            fp[p] += 1
            fn[y] += 1

    def f1(c: int) -> float:
        denom = 2 * tp[c] + fp[c] + fn[c]
        return 2 * tp[c] / denom if denom else 0.0

    out = {"accuracy": sum(tp) / n if n else 0.0}
    seen = [c for c in range(num_labels) if tp[c] + fp[c] + fn[c]]
    out["macro_f1"] = sum(f1(c) for c in seen) / len(seen) if seen else 0.0
    if num_labels == 2:
        out["f1"] = f1(1)
    return out


def constant_score(labels: Sequence[int], num_labels: int, metric: str) -> float:
    """The best ``metric`` a model that gives every row the same answer scores on ``labels``:
    what a classifier that has learned nothing yet can already reach."""
    return best_constant(labels, num_labels, metric)[1]


def best_constant(labels: Sequence[int], num_labels: int, metric: str) -> tuple[int, float]:
    """The one answer that scores best on ``labels`` when given to every row, and its score
    (ties: the lower class)."""
    scores = [
        classification_metrics([c] * len(labels), labels, num_labels)[metric]
        for c in range(num_labels)
    ]
    best = max(range(num_labels), key=scores.__getitem__)
    return best, scores[best]
