"""The frozen-layer cache (hpo/training/frozen.py): the same logits as running the frozen blocks,
for every family the layer strategies read; never a stale state; within its memory budget."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from hpo.models.anatomy import freeze_lower_layers
from hpo.training.frozen import FrozenCache, Store
from tests.test_decoders import FAMILIES, build

BIG = 2**30


def batch_of(rows: list[list[int]]) -> dict[str, torch.Tensor]:
    """Right-padded ids (pad 0) and their attention mask, as ``hpo.data.batches.collate``."""
    width = max(len(r) for r in rows)
    ids = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        mask[i, : len(r)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def rows(seed: int, n: int = 4, vocab: int = 60) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, vocab, (int(length),), generator=g).tolist() for length in
            torch.randint(3, 12, (n,), generator=g)]  # fmt: skip


def model_of(family: str, k: int) -> Any:
    model = build(family).eval()
    model.config.pad_token_id = 0  # decoders pick the last real token by it
    freeze_lower_layers(model, k)
    return model


def logits(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    with torch.no_grad():
        return model(**batch).logits


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("k", [1, 3])
def test_cached_states_give_the_logits_of_running_the_frozen_blocks(family: str, k: int) -> None:
    model = model_of(family, k)
    batch = batch_of(rows(0))
    plain = logits(model, batch)
    cache = FrozenCache.attach(model, k, BIG)
    assert cache is not None
    cache.store = Store()
    with cache.feeding(batch):  # rows computed, and stored
        first = logits(model, batch)
    with cache.feeding(batch):  # every row read from the store
        second = logits(model, batch)
    assert (cache.computed_rows, cache.served_rows) == (4, 4)
    torch.testing.assert_close(first, plain, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(second, plain, atol=1e-5, rtol=1e-4)
    cache.detach()
    assert torch.equal(logits(model, batch), plain)  # the blocks run again as before


@pytest.mark.parametrize("family", ["bert", "gpt2", "distilbert", "deberta-v2"])  # with dropout
def test_in_training_mode_the_cache_changes_nothing_but_the_work(family: str) -> None:
    """The loop runs what is below the trainable blocks without dropout (embeddings and their
    dropout included), with or without the cache: the same seed gives the same logits."""
    from hpo.training.loop import _train_mode

    model = model_of(family, 2)
    batch = batch_of(rows(5))
    _train_mode(model, 2)
    torch.manual_seed(0)
    plain = model(**batch).logits
    cache = FrozenCache.attach(model, 2, BIG)
    assert cache is not None
    cache.store = Store()
    torch.manual_seed(0)
    with cache.feeding(batch):
        cached = model(**batch).logits
    torch.manual_seed(1)
    other = model(**batch).logits  # dropout above the frozen blocks is still on
    torch.testing.assert_close(cached, plain, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(other, plain)


def test_rows_in_another_batch_read_the_states_of_their_own_tokens() -> None:
    """Keyed by content: a row met again in a new batch, at a new width and place, is served;
    a row one token apart (what augmentation makes) is computed, never served a neighbour's."""
    model = model_of("bert", 2)
    cache = FrozenCache.attach(model, 2, BIG)
    assert cache is not None
    cache.store = Store()
    a = rows(1)
    changed = [[*a[0][:-1], a[0][-1] % 58 + 1]]  # the same length, the last token swapped
    with cache.feeding(batch_of(a)):
        logits(model, batch_of(a))
    mixed = [a[3], *changed, a[1], [5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17]]
    expected = logits_uncached(model, cache, batch_of(mixed))
    before = cache.computed_rows
    with cache.feeding(batch_of(mixed)):
        got = logits(model, batch_of(mixed))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    assert cache.computed_rows - before == 2  # the changed row and the new one


def logits_uncached(model: Any, cache: FrozenCache, batch: dict[str, torch.Tensor]) -> Any:
    cache.detach()
    try:
        return logits(model, batch)
    finally:
        cache.__init__(model, cache.k, cache.budget, cache.store)  # type: ignore[misc]


def test_a_changed_frozen_weight_is_never_served_states_of_the_old_one() -> None:
    model = model_of("bert", 2)
    store = Store()
    batch = batch_of(rows(2))
    first = FrozenCache(model, 2, BIG, store)
    with first.feeding(batch):
        logits(model, batch)
    first.detach()
    with torch.no_grad():  # what a trial's strategy might do to a frozen layer
        model.bert.encoder.layer[0].output.dense.weight.mul_(1.5)
    plain = logits(model, batch)
    second = FrozenCache(model, 2, BIG, store)
    assert second.fingerprint != first.fingerprint
    with second.feeding(batch):
        got = logits(model, batch)
    torch.testing.assert_close(got, plain, atol=1e-5, rtol=1e-4)
    assert second.computed_rows == 4


def test_the_store_keeps_within_its_budget_and_computes_the_rest() -> None:
    model = model_of("bert", 2)
    batch = batch_of(rows(3, n=8))
    plain = logits(model, batch)
    lengths = batch["attention_mask"].sum(1).tolist()
    row_bytes = [n * 32 * 4 for n in lengths]  # float32 states, hidden size 32
    budget = sum(sorted(row_bytes)[:3])  # room for some rows, not all
    store = Store()
    cache = FrozenCache(model, 2, budget, store)
    for _ in range(2):
        with cache.feeding(batch):
            got = logits(model, batch)
        torch.testing.assert_close(got, plain, atol=1e-5, rtol=1e-4)
    kept = len(store.rows(cache.fingerprint))
    assert 0 < kept < 8 and store.bytes <= budget
    assert cache.served_rows == kept and cache.computed_rows == 16 - kept


def test_a_new_model_evicts_the_old_ones_states_not_its_own() -> None:
    store = Store()
    old, new = model_of("bert", 1), model_of("bert", 2)
    batch = batch_of(rows(4))
    a = FrozenCache(old, 1, BIG, store)
    with a.feeding(batch):
        logits(old, batch)
    budget = store.bytes + 1  # room for one model's states at a time
    b = FrozenCache(new, 2, budget, store)
    with b.feeding(batch):
        logits(new, batch)
    assert list(store.entries) == [b.fingerprint] and store.bytes <= budget


def test_no_cache_where_it_cannot_serve() -> None:
    model = model_of("bert", 2)
    assert FrozenCache.attach(model, 0, BIG) is None  # nothing frozen
    assert FrozenCache.attach(model, 2, 0) is None  # turned off
    model.bert.encoder.layer[1].attention.self.query.weight.requires_grad_(True)
    assert FrozenCache.attach(model, 2, BIG) is None  # a trainable weight below k (LoRA, say)


# ------------------------------------------------------------------ a whole training run


def test_a_trial_with_the_cache_learns_as_one_without(
    tiny_model_dir: Path, sentiment_csv: Path
) -> None:
    """The same seed and plan, with and without the cache: the same accuracy, and the cache
    really served the rows (a second trial all of them)."""
    from hpo.config.spec import DataSection, ModelSection
    from hpo.data.batches import encode
    from hpo.data.dataset import load_task
    from hpo.models.pretrained import PretrainedModel, load_tokenizer
    from hpo.training.frozen import STORE
    from hpo.training.loop import TrainPlan, pick_device, train

    task = load_task(DataSection(files={"train": str(sentiment_csv)}, max_eval_samples=80))
    model_spec = ModelSection(name=str(tiny_model_dir))
    tokenizer = load_tokenizer(model_spec)
    pretrained = PretrainedModel(model_spec, task.num_labels)
    tr, va = encode(task.train, tokenizer, 32), encode(task.validation, tokenizer, 32)
    STORE.clear()
    results = {}
    for mb in (0, 64, 64):  # off; then on, twice: the second run reads the first one's states
        model = pretrained.fresh(0)
        freeze_lower_layers(model, 1)
        plan = TrainPlan(max_steps=150, eval_every=50, batch_size=16, learning_rate=1e-2,
                         warmup_ratio=0.1, lr_schedule="linear", weight_decay=0.0, seed=0,
                         frozen_layers=1, frozen_cache_mb=mb)  # fmt: skip
        results.setdefault(mb, []).append(
            train(model, tr, va, plan, pick_device("cpu"), pad_id=tokenizer.pad_token_id)
        )
    (plain,), (first, again) = results[0], results[64]
    assert plain.frozen_computed_rows is None
    distinct = len({tuple(r) for r in tr.input_ids} | {tuple(r) for r in va.input_ids})
    assert first.frozen_computed_rows == distinct  # each distinct row ran the frozen blocks once
    assert again.frozen_computed_rows == 0 and again.frozen_served_rows > 150 * 16
    assert again.metrics == first.metrics  # the states read back are the states computed
    # both run the frozen blocks without dropout: the same training up to float rounding
    assert first.metrics["accuracy"] > 0.85
    assert [m["accuracy"] for _, m in plain.history] == [m["accuracy"] for _, m in first.history]
    losses = [m["eval_loss"] for _, m in first.history]
    assert [m["eval_loss"] for _, m in plain.history] == pytest.approx(losses, rel=1e-4)
    STORE.clear()


def test_augmented_batches_read_the_cache_but_never_fill_it(
    tiny_model_dir: Path, sentiment_csv: Path
) -> None:
    """An augmenting ``make_batch`` (new tokens each step): augmented rows are one-offs,
    computed where they occur and never stored; rows it left as they were may be kept."""
    import random

    from hpo.config.spec import DataSection, ModelSection
    from hpo.data.batches import collate, encode
    from hpo.data.dataset import load_task
    from hpo.models.pretrained import PretrainedModel, load_tokenizer
    from hpo.training.frozen import STORE
    from hpo.training.loop import TrainPlan, pick_device, train

    task = load_task(DataSection(files={"train": str(sentiment_csv)}, max_eval_samples=80))
    spec = ModelSection(name=str(tiny_model_dir))
    tokenizer = load_tokenizer(spec)
    tr, va = encode(task.train, tokenizer, 32), encode(task.validation, tokenizer, 32)
    rng = random.Random(0)
    vocab = len(tokenizer)

    def augmenting(indices: list[int]) -> dict[str, torch.Tensor]:
        batch = collate(tr, indices, tokenizer.pad_token_id)
        ids = batch["input_ids"]
        for row in range(ids.shape[0]):  # one inner token replaced, as word substitution does
            n = int(batch["attention_mask"][row].sum())
            if n > 2:
                ids[row, rng.randrange(1, n - 1)] = rng.randrange(5, vocab)
        return batch

    model = PretrainedModel(spec, task.num_labels).fresh(0)
    freeze_lower_layers(model, 1)
    plan = TrainPlan(max_steps=20, eval_every=10, batch_size=16, learning_rate=5e-3,
                     warmup_ratio=0.0, lr_schedule="linear", weight_decay=0.0, seed=0,
                     frozen_layers=1)  # fmt: skip
    result = train(model, tr, va, plan, pick_device("cpu"), pad_id=tokenizer.pad_token_id,
                   make_batch=augmenting)  # fmt: skip
    from hpo.training.frozen import row_keys

    stored = {key for table in STORE.entries.values() for key in table}
    assert va.token_type_ids is not None  # a BERT tokenizer: rows are keyed with their types
    validation = {
        torch.tensor(ids).numpy().tobytes() + b"|" + torch.tensor(types).numpy().tobytes()
        for ids, types in zip(va.input_ids, va.token_type_ids, strict=True)
    }
    assert validation <= stored <= validation | row_keys(tr)  # no augmented row kept
    assert len(stored) < len(validation) + 20 * 16  # most training rows were augmented
    assert result.frozen_computed_rows is not None
    total = result.frozen_computed_rows + result.frozen_served_rows
    assert total == result.train_samples + 2 * len(va)  # every row trained on or scored
    # the second evaluation read the first one's rows; training rows are served only where one
    # equals a stored validation row (the synthetic data repeats sentences)
    assert result.frozen_served_rows >= len(va)
