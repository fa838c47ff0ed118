"""Token classification (named-entity recognition): one IOB2 tag per word.

Rows are tagged sentences (hpo/data/tagging.py, hpo/data/tokens.py, hpo/data/windows.py); the head is ``AutoModelForTokenClassification``'s,
applied to every token, and the loss cross-entropy over the labelled sub-tokens (a word's first,
or all of them with ``data.label_all_tokens``). Scores are per original word, predictions
stitched back from the windows, and computed by ``seqeval`` in its default mode: entity-level
micro precision, recall and F1 (and F1 per entity type), and word accuracy. One evaluation's
noise is a bootstrap over the validation sentences of the entity counts (``entity_f1_se``):
entity F1 is not a proportion of words, so the proportion formula would misjudge it.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hpo.tasks.base import Task

if TYPE_CHECKING:
    import torch

    from hpo.config.spec import DataSection
    from hpo.data.tokens import TokenData, TokenSplit
    from hpo.data.windows import TokenWindows

BOOTSTRAP_SAMPLES = 200


class TokenClassification(Task):
    name = "token_classification"
    metrics = ("entity_f1", "entity_precision", "entity_recall", "token_accuracy", "eval_loss")
    proportions = frozenset({"token_accuracy"})

    def load(self, data: DataSection) -> TokenData:
        from hpo.data.tokens import load_tokens

        return load_tokens(data)

    def encode(
        self, split: TokenSplit, tokenizer: Any, max_length: int, name: str = ""
    ) -> TokenWindows:
        from hpo.data.windows import encode_split

        return encode_split(split, tokenizer, max_length, name)

    def collate(self, encoded: TokenWindows, indices: Sequence[int], pad_id: int) -> dict[str, Any]:
        from hpo.data.windows import collate_windows

        return collate_windows(encoded, indices, pad_id)

    def model_class(self) -> Any:
        from transformers import AutoModelForTokenClassification

        return AutoModelForTokenClassification

    def loss(self, logits: torch.Tensor, labels: torch.Tensor, **options: Any) -> torch.Tensor:
        import torch

        from hpo.data.windows import IGNORE

        reduction = options.pop("reduction", "mean")
        return torch.nn.functional.cross_entropy(
            logits.float().flatten(0, 1),
            labels.flatten(),
            ignore_index=IGNORE,
            reduction=reduction,
            **options,
        )

    def predictions(
        self, logits: torch.Tensor, labels: torch.Tensor, indices: Sequence[int], encoded: Any
    ) -> tuple[list[Any], list[Any]]:
        from hpo.data.windows import word_predictions

        return word_predictions(logits, indices, encoded), []

    def score(
        self, preds: list[Any], labels: list[Any], num_labels: int, encoded: Any
    ) -> dict[str, float]:
        from hpo.data.windows import stitch

        return entity_scores(*stitch(preds, encoded))

    def constant_score(self, encoded: Any, num_labels: int, metric: str) -> float:
        """Tagging every word O: no entity found (F1 0), the O words right."""
        if metric != "token_accuracy":
            return 0.0
        words = [t for row in encoded.gold for t in row]
        return sum(1 for t in words if t == "O") / max(1, len(words))

    def eval_units(self, encoded: Any) -> int:
        return sum(len(row) for row in encoded.gold)

    def describe(self, data: Any, tokenizer: Any, max_length: int) -> list[str]:
        """Sentences, words and entities per split and type; the longest sentence in tokens."""
        lines = [
            f"tags: {data.scheme.upper()} read, IOB2 used; {len(data.entity_types)} entity types "
            f"({', '.join(data.entity_types)})"
        ]
        for name in ("train", "validation", "test"):
            split = getattr(data, name)
            if split is None:
                continue
            counts = split.entities()
            per_type = ", ".join(f"{k} {counts.get(k, 0)}" for k in data.entity_types)
            windows = self.encode(split, tokenizer, max_length)
            lines.append(
                f"{name}: {len(split)} sentences, {split.words} words, "
                f"{sum(counts.values())} entities ({per_type}); longest sentence "
                f"{windows.longest} tokens"
                + (
                    f", {windows.windowed} longer than max_length {max_length} (split into windows)"
                    if windows.windowed
                    else ""
                )
            )
        return lines

    def augment_pool(self, train: TokenSplit, language: str = "auto") -> Any:
        # the words are split already: `language` changes nothing here
        from hpo.data.augment import MentionPool

        return MentionPool.from_split(train)

    def augmented_batches(
        self,
        split: TokenSplit,
        encoded: TokenWindows,
        tokenizer: Any,
        max_length: int,
        pool: Any,
        strength: float,
        seed: int,
        ops: Mapping[str, float],
    ) -> Callable[..., dict[str, Any]]:
        from hpo.data.augment import TokenAugmenter
        from hpo.data.windows import collate_windows, encode_sentences

        augment = TokenAugmenter(strength, pool, seed, ops)
        names = list(split.names)
        seen: dict[int, int] = {}
        ordinal = []  # window -> its place among its sentence's windows
        for s in encoded.sentence:
            ordinal.append(seen.get(s, 0))
            seen[s] = ordinal[-1] + 1

        def make_batch(indices: list[int], keep: Sequence[int] = ()) -> dict[str, Any]:
            """The batch's windows, their sentences perturbed (those of ``keep`` as they are) and
            re-tokenized whole; of each sentence only the windows drawn are trained on, at their
            place (the last where the perturbed sentence has fewer). A window drawn twice (two
            augmented copies of one row) is two rows, each perturbed apart, so a batch holds
            as many windows as were drawn."""
            drawn = [(i, False) for i in keep] + [(i, True) for i in indices]
            copies: dict[tuple[int, bool, int], int] = {}
            slots = []  # (sentence, perturbed, copy), place among its windows
            for i, varied in drawn:
                window = (encoded.sentence[i], varied, ordinal[i])
                copy = copies.get(window, 0)
                copies[window] = copy + 1
                slots.append(((encoded.sentence[i], varied, copy), ordinal[i]))
            keys = list(dict.fromkeys(key for key, _ in slots))
            rows = [
                augment(split.tokens[s], split.tag_names(s))
                if varied
                else (split.tokens[s], split.tag_names(s))
                for s, varied, _ in keys
            ]
            windows = encode_sentences(
                [r[0] for r in rows],
                [r[1] for r in rows],
                tokenizer,
                max_length,
                names,
                split.label_all_tokens,
                about=None,  # the train split said it once, when it was encoded
            )
            of_row: dict[int, list[int]] = {}
            for w, r in enumerate(windows.sentence):
                of_row.setdefault(r, []).append(w)
            row_of = {key: r for r, key in enumerate(keys)}
            chosen = []
            for key, at in slots:
                mine = of_row.get(row_of[key], [])
                if mine:
                    chosen.append(mine[min(at, len(mine) - 1)])
            return collate_windows(windows, chosen, int(tokenizer.pad_token_id or 0))

        return make_batch


def entity_scores(gold: list[list[str]], predicted: list[list[str]]) -> dict[str, float]:
    """seqeval's entity-level micro precision, recall and F1 (default mode), F1 per type, word
    accuracy, and the bootstrap standard error of entity F1 over the sentences."""
    from seqeval.metrics import accuracy_score, classification_report
    from seqeval.metrics.sequence_labeling import get_entities

    with warnings.catch_warnings():  # no entity predicted yet: seqeval warns, scores are 0
        warnings.simplefilter("ignore")
        report = classification_report(gold, predicted, output_dict=True, zero_division=0)
    micro = report.get("micro avg", {"precision": 0.0, "recall": 0.0, "f1-score": 0.0})
    out = {
        "entity_f1": float(micro["f1-score"]),
        "entity_precision": float(micro["precision"]),
        "entity_recall": float(micro["recall"]),
        "token_accuracy": float(accuracy_score(gold, predicted)) if gold else 0.0,
    }
    for kind, row in sorted(report.items()):
        if kind not in ("micro avg", "macro avg", "weighted avg"):
            out[f"entity_f1_{kind}"] = float(row["f1-score"])
    counts = []
    for g, p in zip(gold, predicted, strict=True):
        truth, guess = set(get_entities(g)), set(get_entities(p))
        counts.append((len(truth & guess), len(guess), len(truth)))
    out["entity_f1_se"] = bootstrap_f1_se(counts)
    return out


def bootstrap_f1_se(
    counts: Sequence[tuple[int, int, int]], samples: int = BOOTSTRAP_SAMPLES
) -> float:
    """Standard deviation of micro F1 over ``samples`` resamplings of the sentences, each
    given as (correct, predicted, gold) entity counts; seeded, so it repeats."""
    import numpy as np

    if not counts:
        return 0.0
    table = np.asarray(counts, dtype=np.float64)
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(table), size=(samples, len(table)))
    sums = table[picks].sum(axis=1)  # samples x 3
    denom = sums[:, 1] + sums[:, 2]
    f1 = np.divide(2 * sums[:, 0], denom, out=np.zeros(samples), where=denom > 0)
    return float(f1.std(ddof=1))


def per_type_f1(metrics: Any) -> dict[str, float]:
    """F1 per entity type from a metrics dict (``entity_f1_<type>``); empty for other tasks."""
    if not isinstance(metrics, Mapping):
        return {}
    return {
        k.removeprefix("entity_f1_"): float(v)
        for k, v in sorted(metrics.items())
        if k.startswith("entity_f1_") and k != "entity_f1_se"
    }
