"""Bad data, through the real ``hpo`` command: each case is handled as the README says, or ends
in one ``Error:`` line on stderr (exit 2) before any trial, with nothing written to a database.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from hpo.config.spec import DataSection
from hpo.data.dataset import load_task
from hpo.errors import DataError, SpecError
from tests.conftest import sentiment_rows, spec_dict, toml_text, write_csv


def rows(n: int, prefix: str = "row") -> list[tuple[str, str]]:
    """``n`` rows with unique texts of the sentiment words, labels alternating pos / neg."""
    return [(f"{text} {prefix} {i}", label) for i, (text, label) in enumerate(sentiment_rows(n))]


def write_rows(
    path: Path, body: list[list[Any]], header: tuple[str, ...] = ("text", "label")
) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(body)
    return path


def hpo(args: list[str]) -> Result:
    from hpo.cli.main import cli

    return CliRunner().invoke(cli, args)


def study(folder: Path, model: Path, files: dict[str, Path], **data: Any) -> Path:
    raw = spec_dict(model, files["train"], data=data, study={"n_trials": 1})
    raw["data"]["files"] = {split: str(path) for split, path in files.items()}
    path = folder / "bad.toml"
    path.write_text(toml_text(raw))
    return path


def assert_one_line_error(folder: Path, study_file: Path, *expected: str) -> None:
    """``validate --no-model``, ``create`` and ``run`` all stop with the same one line on
    stderr, exit 2, and no database file."""
    db = folder / "study.db"
    stored = ["--storage", f"sqlite:///{db}"]
    for args in (
        ["validate", str(study_file), "--no-model"],
        ["create", str(study_file), *stored],
        ["run", str(study_file), *stored],
    ):
        out = hpo(args)
        assert out.exit_code == 2, out.output
        assert out.stderr.count("\n") == 1 and out.stderr.startswith("Error: "), out.stderr
        for text in expected:
            assert text in out.stderr, out.stderr
        assert "Traceback" not in out.output and "pandas" not in out.output.lower()
        assert not db.exists()


TWO_STEPS = ["--set", "train.max_steps=2", "--set", "train.eval_every=2"]

# ---------------------------------------------------------------- one-line errors


def test_a_header_only_file_is_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    train = write_csv(tmp_path / "train.csv", rows(40))
    dev = write_rows(tmp_path / "dev.csv", [])
    assert_one_line_error(
        tmp_path,
        study(tmp_path, tiny_model_dir, {"train": train, "validation": dev}),
        "dev.csv has a header row but no data rows",
    )


def test_a_zero_byte_file_is_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    train = write_csv(tmp_path / "train.csv", rows(40))
    (tmp_path / "test.csv").write_bytes(b"")
    assert_one_line_error(
        tmp_path,
        study(tmp_path, tiny_model_dir, {"train": train, "test": tmp_path / "test.csv"}),
        "`data.files.test` is an empty file (0 bytes)",
        "test.csv",
    )


def test_a_parquet_file_of_no_rows_is_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    train = write_csv(tmp_path / "train.csv", rows(40))
    schema = pa.schema([("text", pa.string()), ("label", pa.string())])
    pq.write_table(schema.empty_table(), tmp_path / "test.parquet")
    assert_one_line_error(
        tmp_path,
        study(tmp_path, tiny_model_dir, {"train": train, "test": tmp_path / "test.parquet"}),
        "Error: test.parquet has no rows\n",
    )


def test_a_split_of_only_empty_texts_is_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    train = write_csv(tmp_path / "train.csv", rows(40))
    dev = write_rows(tmp_path / "dev.csv", [["", "pos"], ["   ", "neg"], ["\t", "pos"]])
    assert_one_line_error(
        tmp_path,
        study(tmp_path, tiny_model_dir, {"train": train, "validation": dev}),
        "the validation split (dev.csv) has no row with both a text and a label",
    )


def test_an_unterminated_quote_names_the_file_and_line(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    good = "\n".join(f"{text},{label}" for text, label in rows(30))
    body = f'text,label\n{good}\n"an opened quote, never closed,pos\nlast row good,neg\n'
    (tmp_path / "broken.csv").write_text(body, encoding="utf-8")
    assert_one_line_error(
        tmp_path,
        study(tmp_path, tiny_model_dir, {"train": tmp_path / "broken.csv"}),
        "broken.csv line 32: a quoted field starts here and its closing quote",
    )


def test_a_broken_quote_in_a_real_process_prints_hpo_line_alone(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """In its own process, where no test harness holds the log records: the reader's log line
    ("Failed to read file ... ParserError ...") is not printed before hpo's."""
    body = 'text,label\ngood film,pos\n"bad film,neg\nfine film,pos\n'
    (tmp_path / "broken.csv").write_text(body, encoding="utf-8")
    study_file = study(tmp_path, tiny_model_dir, {"train": tmp_path / "broken.csv"})
    out = subprocess.run(
        [sys.executable, "-m", "hpo", "validate", str(study_file), "--no-model"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == (
        'Error: broken.csv line 3: a quoted field starts here and its closing quote (") never '
        'comes; close it, or double each quote inside a field ("")\n'
    )


def test_a_test_label_that_train_never_has_is_one_line(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    train = write_csv(tmp_path / "train.csv", rows(40))
    test = write_rows(tmp_path / "test.csv", [["good film", "pos"], ["so so film", "meh"]])
    assert_one_line_error(
        tmp_path,
        study(tmp_path, tiny_model_dir, {"train": train, "test": test}),
        "the test split has label 'meh', which the train split never uses; train labels: neg, pos",
    )


def test_an_unterminated_quote_in_a_headerless_csv(tmp_path: Path) -> None:
    path = tmp_path / "raw.csv"
    path.write_text('"never closed,a\nrow two,b\n', encoding="utf-8")
    with pytest.raises(DataError, match=r"^raw\.csv line 1: a quoted field starts here"):
        load_task(DataSection(files={"train": str(path)}, columns=["text", "label"]))


# ---------------------------------------------------------------- handled, and said so


def test_whitespace_only_texts_are_dropped_and_counted_once(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    blank = [["   ", "pos"], ["\t\n", "neg"], ["", "pos"]]
    train = write_rows(tmp_path / "train.csv", [*map(list, rows(40)), *blank])
    test = write_rows(tmp_path / "test.csv", [*map(list, rows(10, "held")), [" ", "neg"]])
    out = hpo(["validate", str(study(tmp_path, tiny_model_dir, {"train": train, "test": test}))])
    assert out.exit_code == 0, out.output
    assert out.stderr.splitlines() == [
        "warning: dropped rows whose text is empty or only whitespace: 3 in train, 1 in test",
        # 4 rows: sqrt(0.5 * 0.5 / 4) = 0.25
        "warning: only 4 validation rows: one evaluation's standard error is about 0.25, so "
        "trials that close cannot be told apart; give more validation data "
        "(data.files.validation, data.validation_fraction)",
    ]
    assert "data: 36 train, 4 validation, 10 test rows" in out.stdout  # 40 kept, 10% carved


def test_leakage_into_test_and_validation_is_a_warning_printed_once_before_trials(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    train_rows = rows(60)
    train = write_csv(tmp_path / "train.csv", train_rows)
    dev = write_csv(tmp_path / "dev.csv", [*train_rows[:3], *rows(20, "dev")])
    test = write_csv(tmp_path / "test.csv", [*train_rows[10:15], *rows(20, "test")])
    files = {"train": train, "validation": dev, "test": test}
    study_file = study(tmp_path, tiny_model_dir, files)
    warnings = [
        "warning: 3 validation rows also appear in train: validation leakage",
        "warning: 5 test rows also appear in train: test leakage",
    ]
    checked = hpo(["validate", str(study_file), "--no-model"])
    assert checked.exit_code == 0, checked.output
    assert checked.stderr.splitlines() == warnings

    db = tmp_path / "leak.db"
    run = hpo(["run", str(study_file), "--storage", f"sqlite:///{db}", *TWO_STEPS])
    assert run.exit_code == 0, run.output
    assert run.stderr.splitlines() == warnings  # once, though the run loads the data and trains
    assert run.output.index(warnings[1]) < run.output.index("created study")  # before any trial
    assert db.is_file()
    # a worker joining the study says them again, unless it is one of `hpo run --workers`'
    # (--quiet), whose parent printed them once already
    loud = hpo(["worker", "tiny", "--storage", f"sqlite:///{db}"])
    quiet = hpo(["worker", "tiny", "--storage", f"sqlite:///{db}", "--quiet"])
    assert loud.exit_code == 0 and quiet.exit_code == 0, loud.output + quiet.output
    assert loud.stderr.splitlines() == warnings and quiet.stderr == ""


def test_a_headerless_file_s_missing_column_points_at_data_columns(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    train = tmp_path / "train.tsv"
    train.write_text("".join(f"{t}\t{y}\n" for t, y in rows(40)), encoding="utf-8")
    first_text, first_label = rows(40)[0]
    assert_one_line_error(
        tmp_path,
        study(tmp_path, tiny_model_dir, {"train": train}),
        f"`data.text_column` 'text' is not a column of the train split; its columns are: "
        f"{first_text}, {first_label}; if the file has no header row, name its columns with "
        "data.columns",
    )


def test_a_json_file_s_missing_column_does_not_point_at_data_columns(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    """json names its own columns, and `data.columns` is refused for it: no such advice."""
    train = tmp_path / "train.jsonl"
    train.write_text(
        "".join(json.dumps({"review": t, "label": y}) + "\n" for t, y in rows(40)),
        encoding="utf-8",
    )
    out = hpo(["validate", str(study(tmp_path, tiny_model_dir, {"train": train})), "--no-model"])
    assert out.exit_code == 2
    assert out.stderr == (
        "Error: `data.text_column` 'text' is not a column of the train split; its columns are: "
        "review, label\n"
    )


def test_a_semicolon_separated_file_is_read_with_data_delimiter(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    body = rows(40)
    train = tmp_path / "train.csv"
    train.write_text(
        "text;label\n" + "".join(f'"{t}; more";{y}\n' for t, y in body), encoding="utf-8"
    )
    # read with commas, the header is one field: the error says which separator it saw
    assert_one_line_error(
        tmp_path,
        study(tmp_path, tiny_model_dir, {"train": train}),
        "its columns are: text;label; fields separated by ';'? set data.delimiter = ';'",
    )
    task = load_task(DataSection(files={"train": str(train)}, delimiter=";"))
    every = task.train.concat(task.validation)
    assert sorted(zip(every.text, (task.label_names[y] for y in every.label), strict=True)) == (
        sorted((f"{t}; more", y) for t, y in body)  # a quoted ";" stays in the text
    )
    with pytest.raises(SpecError, match=r"`data\.delimiter` must be one character"):
        DataSection(files={"train": str(train)}, delimiter=";;")


def test_no_validation_split_and_a_zero_fraction_is_one_line(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    train = write_csv(tmp_path / "train.csv", rows(40))
    assert_one_line_error(
        tmp_path,
        study(tmp_path, tiny_model_dir, {"train": train}, validation_fraction=0.0),
        "no validation split and `data.validation_fraction` is 0",
        "a fraction above 0",
    )


def test_labels_that_look_like_a_mistake_are_warned_about(tmp_path: Path) -> None:
    # labels that differ only in case or trailing spaces
    spelled = ["positive", "Positive ", "negative", "NEGATIVE", "neutral"]
    body = [[f"text {i}", spelled[i % 5]] for i in range(50)]
    task = load_task(DataSection(files={"train": str(write_rows(tmp_path / "a.csv", body))}))
    assert len(task.label_names) == 5  # still read as written
    (note,) = [n for n in task.notes if "differ only in case" in n]
    assert "'NEGATIVE' and 'negative'" in note and "'Positive ' and 'positive'" in note
    # a continuous target: 120 rows, a distinct value in each
    body = [[f"text {i}", f"{i / 7:.3f}"] for i in range(120)]
    task = load_task(DataSection(files={"train": str(write_rows(tmp_path / "b.csv", body))}))
    (note,) = [n for n in task.notes if "continuous target" in n]
    assert note.startswith(f"{len(task.label_names)} distinct labels among {len(task.train)}")
    from hpo.tasks import get_task

    (line,) = get_task("sequence_classification").describe(task, None, 64)
    first_ten = ", ".join(task.label_names[:10])
    assert f"{len(task.label_names)} labels ({first_ten}, ...);" in line  # more are left out
    # ordinary labels draw neither note
    task = load_task(DataSection(files={"train": str(write_csv(tmp_path / "c.csv", rows(60)))}))
    assert not [n for n in task.notes if "case" in n or "continuous" in n]


# ---------------------------------------------------------------- labels of mixed types


def test_mixed_number_and_text_labels_are_read_as_text(tmp_path: Path) -> None:
    labels: list[Any] = [1, "1", 1.0, "a", 2, "2"]
    records = [{"text": f"row {i}", "label": labels[i % 6]} for i in range(36)]
    jsonl = tmp_path / "mixed.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    pickled = tmp_path / "mixed.pkl"
    pickled.write_bytes(pickle.dumps(records))
    for path in (jsonl, pickled):
        task = load_task(DataSection(files={"train": str(path)}, validation_fraction=0.5))
        assert task.label_names == ["1", "2", "a"], path
        every = task.train.concat(task.validation)
        by_text = dict(zip(every.text, every.label, strict=True))
        names = [task.label_names[by_text[f"row {i}"]] for i in range(6)]
        assert names == ["1", "1", "1", "a", "2", "2"], path


def test_number_labels_in_train_match_text_labels_in_validation(tmp_path: Path) -> None:
    train = write_rows(tmp_path / "train.csv", [[f"row {i}", i % 2] for i in range(20)])
    dev = tmp_path / "dev.jsonl"
    dev.write_text(
        "".join(json.dumps({"text": f"dev {i}", "label": str(i % 2)}) + "\n" for i in range(6))
    )
    task = load_task(DataSection(files={"train": str(train), "validation": str(dev)}))
    assert task.label_names == ["0", "1"]
    assert task.validation.label == [0, 1, 0, 1, 0, 1]


# ---------------------------------------------------------------- a 1 MB text


def test_a_one_megabyte_text_loads_and_is_truncated(tmp_path: Path, tiny_model_dir: Path) -> None:
    from hpo.config.spec import StudySpec
    from hpo.search.prepared import load_prepared
    from hpo.tasks import get_task

    huge = ("good movie the plot " * 60_000)[:1_000_000]
    train = write_csv(tmp_path / "train.csv", [*rows(40), (huge, "pos")])
    dev = write_csv(tmp_path / "dev.csv", rows(10, "dev"))
    raw = spec_dict(tiny_model_dir, train)
    raw["data"]["files"] = {"train": str(train), "validation": str(dev)}
    spec = StudySpec.from_dict(raw)
    prep = load_prepared(spec, get_task(spec.study.task), str(tiny_model_dir))
    where = prep.task.train.text.index(huge)  # the whole text was read, in train
    assert len(prep.task.train.text[where]) == 1_000_000
    ids = prep.train.input_ids[where]
    assert len(ids) == spec.train.max_length == 32
    assert max(len(row) for row in prep.train.input_ids) == 32


# ---------------------------------------------------------------- reading files as written


def test_a_header_naming_a_column_twice_is_one_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    train = write_rows(
        tmp_path / "train.csv",
        [[t, f"other {t}", y] for t, y in rows(40)],
        ("text", "text", "label"),
    )
    assert_one_line_error(
        tmp_path,
        study(tmp_path, tiny_model_dir, {"train": train}),
        "Error: train.csv: columns 1 and 2 of the header row are both named 'text'; rename one "
        "of them (only the first would be read)\n",
    )
    tsv = tmp_path / "train.tsv"
    tsv.write_text("label\ttext\tlabel\npos\ta\tneg\n", encoding="utf-8")
    with pytest.raises(
        DataError, match=r"columns 1 and 3 of the header row are both named 'label'"
    ):
        load_task(DataSection(files={"train": str(tsv)}))


def test_csv_cells_are_read_as_written_not_as_numbers(tmp_path: Path) -> None:
    texts = ["007", "1e3", "3.10", "0x1F", "-0", "1,000"]
    labels = ["01", "1", "02"]  # three classes: "01" is not "1"
    body = [
        [f"{texts[i % 6]}" if i < 6 else f"{texts[i % 6]} {i}", labels[i % 3]] for i in range(36)
    ]
    for fmt in ("csv", "tsv"):
        path = tmp_path / f"codes.{fmt}"
        with path.open("w", newline="", encoding="utf-8") as f:
            csv.writer(f, delimiter="," if fmt == "csv" else "\t").writerows(
                [["text", "label"], *body]
            )
        task = load_task(DataSection(files={"train": str(path)}, validation_fraction=0.5))
        assert task.label_names == ["01", "1", "02"], fmt
        every = task.train.concat(task.validation)
        read = dict(zip(every.text, (task.label_names[y] for y in every.label), strict=True))
        assert read == {t: y for t, y in body}, fmt  # every text and label exactly as written


def test_csv_number_labels_keep_numeric_order_and_a_zero_fraction(tmp_path: Path) -> None:
    train = write_rows(tmp_path / "train.csv", [[f"row {i}", i % 11] for i in range(44)])
    # a split written by a tool that wrote the integer labels as floats
    dev = write_rows(tmp_path / "dev.csv", [[f"dev {i}", f"{i % 11}.0"] for i in range(11)])
    task = load_task(DataSection(files={"train": str(train), "validation": str(dev)}))
    assert task.label_names == [str(i) for i in range(11)]  # 2 before 10, as numbers sort
    assert task.validation.label == list(range(11))
    assert [task.label_names[y] for y in task.train.label[:11]] == [str(i) for i in range(11)]


def test_a_json_file_not_in_utf8_is_one_line_and_data_encoding_reads_it(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    records = [{"text": f"café crème {t}", "label": y} for t, y in rows(40)]
    jsonl = tmp_path / "train.jsonl"
    jsonl.write_bytes(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("latin-1")
    )
    whole = tmp_path / "whole.json"
    whole.write_bytes(json.dumps(records, ensure_ascii=False).encode("latin-1"))
    for path in (jsonl, whole):
        assert_one_line_error(
            tmp_path,
            study(tmp_path, tiny_model_dir, {"train": path}),
            f'Error: {path.name} is not valid utf-8; set `data.encoding` (for example "latin-1")\n',
        )
        task = load_task(DataSection(files={"train": str(path)}, encoding="latin-1"))
        every = task.train.concat(task.validation)
        assert sorted(every.text) == sorted(r["text"] for r in records), path.name


def test_a_broken_jsonl_line_is_named(tmp_path: Path, tiny_model_dir: Path) -> None:
    lines = [json.dumps({"text": t, "label": y}) for t, y in rows(40)]
    broken = tmp_path / "broken.jsonl"
    broken.write_text(
        "\n".join([*lines[:2], '{"text": "a", "label": "pos"', *lines[2:]]) + "\n", encoding="utf-8"
    )
    assert_one_line_error(
        tmp_path,
        study(tmp_path, tiny_model_dir, {"train": broken}),
        "Error: broken.jsonl line 3: not valid JSON: Expecting ',' delimiter (column 29); a "
        "jsonl file holds one JSON object per line\n",
    )
    listed = tmp_path / "listed.jsonl"
    listed.write_text("\n".join([*lines[:4], '["a", "pos"]', *lines[4:]]) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"^listed\.jsonl line 5 holds a JSON array, not an object"):
        load_task(DataSection(files={"train": str(listed)}))
    whole = tmp_path / "whole.json"
    whole.write_text("[\n" + ",\n".join(lines[:3]) + ",\n]\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"^whole\.json line 5: not valid JSON: Expecting value"):
        load_task(DataSection(files={"train": str(whole)}))


def test_a_wrong_data_delimiter_is_named(tmp_path: Path, tiny_model_dir: Path) -> None:
    # a comma file: texts with a comma are quoted, texts with a semicolon are not
    body = [[f"{t}; more" if i % 2 else f"{t}, more", y] for i, (t, y) in enumerate(rows(40))]
    train = write_rows(tmp_path / "train.csv", body)
    assert_one_line_error(
        tmp_path,
        study(tmp_path, tiny_model_dir, {"train": train}, delimiter=";"),
        "Error: train.csv line 2: ';' expected after '\"'; `data.delimiter` is ';', which its "
        "first line does not have: set `data.delimiter = ','`?\n",
    )
    plain = write_csv(tmp_path / "plain.csv", rows(40))  # read whole: one column
    assert_one_line_error(
        tmp_path,
        study(tmp_path, tiny_model_dir, {"train": plain}, delimiter=";"),
        "its columns are: text,label; fields separated by ','? set data.delimiter = ','\n",
    )


def test_a_label_column_of_texts_is_a_short_line(tmp_path: Path, tiny_model_dir: Path) -> None:
    train = write_rows(
        tmp_path / "train.csv",
        [[f"title {i}", t, y] for i, (t, y) in enumerate(rows(300))],
        ("title", "body", "label"),
    )
    dev = write_rows(
        tmp_path / "dev.csv",
        [[f"dev {i}", t, y] for i, (t, y) in enumerate(rows(20, "dev"))],
        ("title", "body", "label"),
    )
    task = load_task(
        DataSection(files={"train": str(train)}, text_column="title", label_column="body")
    )
    assert len(task.label_names) == 300
    assert_one_line_error(
        tmp_path,
        study(
            tmp_path,
            tiny_model_dir,
            {"train": train, "validation": dev},
            text_column="title",
            label_column="body",
        ),
        "which the train split never uses; train labels: ",
        ", ... (300 in all)\n",
    )
    out = hpo(["validate", str(tmp_path / "bad.toml"), "--no-model"])
    assert len(out.stderr) < 600, out.stderr  # not 300 texts: ten, each cut to 40 characters
