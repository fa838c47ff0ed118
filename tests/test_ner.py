"""Token classification (NER): reading and converting tags, word-aligned windows, seqeval scores,
mention replacement, and whole studies on a tiny BERT whose vocabulary splits words."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from hpo.config.spec import StudySpec
from hpo.data.augment import MentionPool, TokenAugmenter, segments
from hpo.data.tagging import Sentence, detect_scheme, read_conll, to_iob2
from hpo.data.tokens import TokenSplit
from hpo.data.windows import (
    IGNORE,
    collate_windows,
    encode_sentences,
    stitch,
    word_predictions,
)
from hpo.errors import DataError
from hpo.final.best import hyperparameters
from hpo.tasks import get_task
from hpo.tasks.token_classification import bootstrap_f1_se, entity_scores
from tests.conftest import (
    installed,
    ner_sentences,
    spec_dict,
    toml_text,
    write_conll,
)

NER = get_task("token_classification")


def ner_spec(model_dir: Path, files: dict[str, str], **sections: dict[str, Any]) -> dict[str, Any]:
    raw = spec_dict(model_dir, Path(files["train"]), **sections)
    raw["study"] = {"name": "tiny-ner", "n_trials": 2, "task": "token_classification",
                    **sections.get("study", {})}  # fmt: skip
    raw["data"] = {"files": files, **sections.get("data", {})}
    raw["space"]["learning_rate"] = sections.get("space", {}).get("learning_rate", 5e-3)
    return raw


def tokenizer_of(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


# ---------------------------------------------------------------- tagging schemes


def sentence(tags: str, tokens: str | None = None) -> Sentence:
    tag_list = tags.split()
    return Sentence((tokens or " ".join("w" * len(tag_list))).split(), tag_list, "t.conll:1")


@pytest.mark.parametrize(
    ("scheme", "tags", "iob2"),
    [
        # IOB1: I- starts an entity unless it continues one of its type; B- only between two
        ("iob1", "I-PER I-PER O I-LOC B-LOC I-ORG", "B-PER I-PER O B-LOC B-LOC B-ORG"),
        ("iob2", "B-PER I-PER O B-LOC B-LOC I-LOC", "B-PER I-PER O B-LOC B-LOC I-LOC"),
        ("iobes", "B-PER E-PER O S-LOC B-ORG I-ORG E-ORG S-PER", "B-PER I-PER O B-LOC B-ORG I-ORG I-ORG B-PER"),
        ("bilou", "B-PER L-PER U-LOC U-LOC O", "B-PER I-PER B-LOC B-LOC O"),
        # IO: bare types (LOC must not read as BILOU's L-); a run of one type is one entity
        ("io", "PER PER O LOC ORG ORG LOC", "B-PER I-PER O B-LOC B-ORG I-ORG B-LOC"),
    ],
)  # fmt: skip
def test_each_scheme_is_detected_and_converted_to_iob2(scheme: str, tags: str, iob2: str) -> None:
    s = sentence(tags)
    assert detect_scheme([s]) == scheme
    assert to_iob2(s, scheme) == iob2.split()


def test_an_i_tag_after_another_type_starts_an_entity() -> None:
    assert to_iob2(sentence("B-PER I-LOC I-LOC O I-PER"), "iob2") == [
        "B-PER", "B-LOC", "I-LOC", "O", "B-PER",
    ]  # fmt: skip


def test_a_tag_outside_the_scheme_is_refused_with_its_place() -> None:
    with pytest.raises(DataError, match=r"t.conll:1: invalid tag 'X-FOO' at word 2 \('b'\)"):
        to_iob2(sentence("B-PER X-FOO", "a b"), "iob2")
    with pytest.raises(DataError, match="invalid tag 'S-PER'"):
        to_iob2(sentence("S-PER"), "iob2")  # S- only in IOBES
    with pytest.raises(DataError, match=r"tag 'I-LOC' at word 2 \('b'\) has a B-/I- prefix"):
        to_iob2(sentence("PER I-LOC", "a b"), "io")
    # a scheme the study file set is not advice to set one
    with pytest.raises(DataError) as given:
        to_iob2(sentence("PER I-LOC", "a b"), "io", detected=False)
    assert "tag_scheme" not in str(given.value)
    with pytest.raises(DataError, match=r"\(or set `data\.tag_scheme`\)"):
        to_iob2(sentence("S-PER"), "iob2")  # detected: the advice stands
    # detected: IO tags in one file and IOB2 in another say so, not "BILOU" (LOC starts with L),
    # with the word, and where the prefixed tag was found
    other = Sentence(["x", "y", "z"], ["B-PER", "I-PER", "O"], "dev.conll:7")
    with pytest.raises(
        DataError,
        match=r"t.conll:1: tag 'LOC' at word 2 \('b'\) has no B-/I- prefix \(IO tags\) while "
        r"others have one \('B-PER', dev.conll:7\)",
    ):
        detect_scheme([other, sentence("O LOC", "a b")])


def test_conll_reading_skips_docstart_and_ends_sentences_at_whitespace_lines(
    tmp_path: Path,
) -> None:
    path = tmp_path / "a.conll"
    path.write_text(
        "-DOCSTART- -X- O O\n\nEU NNP B-NP I-ORG\nrejects VBZ B-VP O\n \t\nPeter NNP B-NP I-PER\n"
        "Blackburn\tNNP\tI-PER\n",
        encoding="utf-8",
    )
    read = read_conll(path)
    assert [s.tokens for s in read] == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert [s.tags for s in read] == [["I-ORG", "O"], ["I-PER", "I-PER"]]
    assert detect_scheme(read) == "iob1"
    assert [s.where for s in read] == ["a.conll:3", "a.conll:6"]


# ---------------------------------------------------------------- bad data, before any trial


def load(tmp_path: Path, files: dict[str, str], **data: Any) -> Any:
    raw = {"study": {"name": "x", "task": "token_classification"}, "data": {"files": files, **data}}
    return NER.load(StudySpec.from_dict(raw).data)


def test_a_token_without_a_tag_names_the_file_and_line(tmp_path: Path) -> None:
    good = write_conll(tmp_path / "dev.conll", ner_sentences(3))
    bad = tmp_path / "train.conll"
    bad.write_text("the\tO\nparis\tB-LOC\n\nwe\tO\nmet\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"train.conll:5: a token without a tag \('met'\)"):
        load(tmp_path, {"train": str(bad), "validation": str(good)})


def test_list_columns_of_different_lengths_name_the_row(tmp_path: Path) -> None:
    rows = [{"tokens": ["we", "met", "ada"], "ner_tags": ["O", "O", "B-PER"]},
            {"tokens": ["in", "paris"], "ner_tags": ["O"]}]  # fmt: skip
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    with pytest.raises(DataError, match="train row 1: 2 tokens but 1 tags"):
        load(tmp_path, {"train": str(path)})


def test_integer_tags_take_their_names_from_a_classlabel_feature(tmp_path: Path) -> None:
    import datasets

    names = ["O", "B-PER", "I-PER"]
    features = datasets.Features(
        {
            "tokens": datasets.Sequence(datasets.Value("string")),
            "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names)),
        }
    )
    table = datasets.Dataset.from_dict(
        {
            "tokens": [["ada", "lovelace", "met"], ["kurt", "went"]] * 2,
            "ner_tags": [[1, 2, 0], [1, 0]] * 2,
        },
        features=features,
    )
    table.to_parquet(str(tmp_path / "train.parquet"))
    data = load(tmp_path, {"train": str(tmp_path / "train.parquet")}, validation_fraction=0.25)
    every = data.train.concat(data.validation)
    tags = {tuple(every.tokens[i]): tuple(every.tag_names(i)) for i in range(len(every))}
    assert tags == {
        ("ada", "lovelace", "met"): ("B-PER", "I-PER", "O"),
        ("kurt", "went"): ("B-PER", "O"),
    }


def test_an_entity_type_train_never_has_is_refused(tmp_path: Path) -> None:
    train = write_conll(tmp_path / "train.conll", ner_sentences(10))
    dev = tmp_path / "dev.conll"
    dev.write_text("we\tO\nmet\tO\nibm\tB-ORG\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"dev.conll:1: the validation split has entity type 'ORG'"):
        load(tmp_path, {"train": str(train), "validation": str(dev)})


def test_validation_sentences_train_has_too_are_a_leakage_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sentences = ner_sentences(30)
    distinct = list({tuple(tokens): (tokens, tags) for tokens, tags in sentences}.values())
    train = write_conll(tmp_path / "train.conll", distinct[:20])
    dev = write_conll(tmp_path / "dev.conll", [*distinct[:2], *distinct[20:]])  # 2 from train
    data = load(tmp_path, {"train": str(train), "validation": str(dev)})
    warned = [line for line in capsys.readouterr().err.splitlines() if "leakage" in line]
    assert warned == ["warning: 2 validation sentences also appear in train: validation leakage"]
    assert data.notes[0] == warned[0].removeprefix("warning: ")
    # under 20 validation sentences, the noise of one evaluation is named too
    assert any(
        note.startswith(f"only {len(data.validation)} validation sentences") for note in data.notes
    )


def test_blank_words_are_dropped_and_counted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    rows = [{"tokens": t, "ner_tags": g} for t, g in ner_sentences(30)]
    rows.append(
        {"tokens": ["", " ", "\u200b", "obama"], "ner_tags": ["B-PER", "I-PER", "I-PER", "I-PER"]}
    )
    rows.append({"tokens": [" "], "ner_tags": ["O"]})  # nothing left
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    data = load(tmp_path, {"train": str(train)}, validation_fraction=0.2)
    note = "dropped words that are empty, blank or zero-width: 4 words and 1 sentences left empty in train"
    assert note in data.notes and f"warning: {note}" in capsys.readouterr().err
    every = data.train.tokens + data.validation.tokens
    assert not [w for words in every for w in words if not w.strip() or w == "\u200b"]
    # the person whose first words were blank is still one person, on the word that is left
    tagged = [
        [split.names[t] for t in tags]
        for split in (data.train, data.validation)
        for words, tags in zip(split.tokens, split.tags, strict=True)
        if words == ["obama"]
    ]
    assert tagged == [["B-PER"]]


def test_an_empty_split_is_refused(tmp_path: Path) -> None:
    train = write_conll(tmp_path / "train.conll", ner_sentences(10))
    empty = tmp_path / "test.conll"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"the test split \(.*test.conll\) has no sentences"):
        load(tmp_path, {"train": str(train), "test": str(empty)})


def test_a_csv_file_is_refused_for_token_classification(tmp_path: Path) -> None:
    path = tmp_path / "train.csv"
    path.write_text("text,label\na,b\n", encoding="utf-8")
    with pytest.raises(DataError, match="token classification reads conll, json, jsonl or parquet"):
        load(tmp_path, {"train": str(path)})


# ---------------------------------------------------------------- encoding and windows


def test_only_a_words_first_piece_is_labelled_unless_label_all_tokens(ner_model_dir: Path) -> None:
    tok = tokenizer_of(ner_model_dir)
    names = ["O", "B-PER", "I-PER"]
    words, tags = ["ada", "lovelace", "met"], ["B-PER", "I-PER", "O"]
    first = encode_sentences([words], [tags], tok, 32, names)
    # [CLS] ada lovel ##ace met [SEP]
    assert tok.convert_ids_to_tokens(first.input_ids[0]) == [
        "[CLS]", "ada", "lovel", "##ace", "met", "[SEP]",
    ]  # fmt: skip
    assert first.labels[0] == [IGNORE, 1, 2, IGNORE, 0, IGNORE]
    every = encode_sentences([["lovelace", "ada"]], [["B-PER", "I-PER"]], tok, 32, names, True)
    assert every.labels[0] == [IGNORE, 1, 2, 2, IGNORE]  # B- turned into I- on the later piece
    assert every.scored[0] == [(1, 0), (3, 1)]  # scored once per word, at its first piece


def test_a_word_the_tokenizer_drops_keeps_its_tag_as_the_unknown_token(
    ner_model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """BERT's normalizer turns U+FFFD into nothing: the word had no position, so a place
    written so was never trained and always counted as a missed entity."""
    tok = tokenizer_of(ner_model_dir)
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    words, tags = ["ada", "met", "\ufffd", "."], ["B-PER", "O", "B-LOC", "O"]
    assert tok("\ufffd", add_special_tokens=False)["input_ids"] == []  # what the fix is for
    enc = encode_sentences([words], [tags], tok, 32, names)
    assert tok.convert_ids_to_tokens(enc.input_ids[0]) == [
        "[CLS]", "ada", "met", "[UNK]", ".", "[SEP]",
    ]  # fmt: skip
    assert enc.labels[0] == [IGNORE, 1, 0, 3, 0, IGNORE]
    assert sorted(w for _, w in enc.scored[0]) == [0, 1, 2, 3]
    assert words[2] == "\ufffd"  # the caller's sentence is left as it was
    assert "warning: 1 word(s) the tokenizer turns into no token" in capsys.readouterr().err
    # a split says which it is; an augmented batch (said when its split was encoded) is quiet
    encode_sentences([words], [tags], tok, 32, names, about="validation")
    said = capsys.readouterr().err
    assert "warning: 1 word(s) of the validation split the tokenizer turns into no token" in said
    encode_sentences([words], [tags], tok, 32, names, about=None)
    assert capsys.readouterr().err == ""


def test_a_long_sentence_is_windowed_and_every_word_scored_exactly_once(
    ner_model_dir: Path,
) -> None:
    tok = tokenizer_of(ner_model_dir)
    names = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
    words: list[str] = []
    tags: list[str] = []
    for tokens, t in ner_sentences(8, 3):
        words += tokens
        tags += t
    enc = encode_sentences([words, ["we", "met"]], [tags, ["O", "O"]], tok, 12, names)
    assert enc.windowed == 1
    assert enc.longest > 12
    assert all(len(ids) <= 12 for ids in enc.input_ids)
    scored = sorted(w for i, s in enumerate(enc.scored) if enc.sentence[i] == 0 for _, w in s)
    assert scored == list(range(len(words)))  # each word once, none missing
    # consecutive windows overlap, so some words appear in two windows but are scored in one
    seen = sum(
        1 for i, ids in enumerate(enc.input_ids) if enc.sentence[i] == 0 for t in ids if t != 0
    )
    assert seen - 2 * (len(enc) - 1) > len(tok(words, is_split_into_words=True)["input_ids"]) - 2
    # a perfect prediction at the scored positions stitches back to the gold tags
    import torch

    logits = torch.zeros(len(enc), 12, len(names))
    for i, row in enumerate(enc.labels):
        for pos, label in enumerate(row):
            if label != IGNORE:
                logits[i, pos, label] = 1.0
    gold, predicted = stitch(word_predictions(logits, range(len(enc)), enc), enc)
    assert predicted == gold == [tags, ["O", "O"]]


# ---------------------------------------------------------------- scores


def test_entity_scores_are_seqevals_on_a_hand_made_prediction() -> None:
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O"]]
    pred = [["B-PER", "I-PER", "O", "O"], ["B-LOC", "B-PER"]]
    scores = entity_scores(gold, pred)
    # gold entities 3, predicted 3, correct 2 (the person, the second place)
    assert scores["entity_precision"] == pytest.approx(2 / 3)
    assert scores["entity_recall"] == pytest.approx(2 / 3)
    assert scores["entity_f1"] == pytest.approx(2 / 3)
    assert scores["entity_f1_LOC"] == pytest.approx(2 * 1 / (1 + 2))  # p 1/1, r 1/2
    assert scores["entity_f1_PER"] == pytest.approx(2 * 0.5 / 1.5)  # p 1/2, r 1/1
    assert scores["token_accuracy"] == pytest.approx(4 / 6)
    assert scores["entity_f1_se"] > 0


def test_the_bootstrap_noise_shrinks_with_more_sentences() -> None:
    counts = [(1, 1, 1), (0, 1, 1), (1, 2, 1), (0, 0, 1)] * 25
    small, large = bootstrap_f1_se(counts), bootstrap_f1_se(counts * 4)
    assert small == bootstrap_f1_se(counts)  # seeded
    assert large == pytest.approx(small / 2, rel=0.25)  # about 1/sqrt(4)
    assert bootstrap_f1_se([(1, 1, 1)] * 50) == 0.0  # always right: no spread


def test_the_constant_answer_scores_no_entity(ner_model_dir: Path) -> None:
    enc = encode_sentences([["ada", "met"]], [["B-PER", "O"]], tokenizer_of(ner_model_dir), 32,
                           ["O", "B-PER", "I-PER"])  # fmt: skip
    assert NER.constant_score(enc, 3, "entity_f1") == 0.0
    assert NER.constant_score(enc, 3, "token_accuracy") == 0.5


# ---------------------------------------------------------------- augmentation


def pool_and_split() -> tuple[MentionPool, TokenSplit]:
    names = ("O", "B-LOC", "I-LOC", "B-PER", "I-PER")
    index = {n: i for i, n in enumerate(names)}
    rows = ner_sentences(60, 4)
    split = TokenSplit([r[0] for r in rows], [[index[t] for t in r[1]] for r in rows], names)
    return MentionPool.from_split(split), split


def test_mention_replacement_keeps_tags_aligned_and_mentions_whole() -> None:
    pool, split = pool_and_split()
    augment = TokenAugmenter(0.6, pool, seed=1)
    changed = 0
    for i in range(len(split)):
        words, tags = split.tokens[i], split.tag_names(i)
        new_words, new_tags = augment(words, tags)
        assert len(new_words) == len(new_tags)
        changed += new_words != words
        before = [(tuple(w), k) for w, k in segments(words, tags) if k]
        after = [(tuple(w), k) for w, k in segments(new_words, new_tags) if k]
        assert len(after) == len(before)  # no mention dropped, split or merged
        for mention, kind in after:
            assert mention in pool.mentions[kind]  # whole training mentions of the same type
    assert changed > len(split) // 2


def test_strength_zero_changes_no_sentence() -> None:
    pool, split = pool_and_split()
    augment = TokenAugmenter(0.0, pool, seed=1)
    for i in range(len(split)):
        assert augment(split.tokens[i], split.tag_names(i)) == (split.tokens[i], split.tag_names(i))


def test_augmented_batches_find_the_sentence_of_each_window(ner_model_dir: Path) -> None:
    """The loop batches window numbers; a long sentence's windows are one sentence to augment."""
    from hpo.data.windows import collate_windows, encode_split

    pool, split = pool_and_split()
    long_words: list[str] = []
    long_tags: list[int] = []
    for i in range(6):
        long_words += split.tokens[i]
        long_tags += split.tags[i]
    rows = split.subset([10, 11]).concat(split.subset([12]))
    rows = dataclasses.replace(rows, tokens=[rows.tokens[0], long_words, *rows.tokens[1:]],
                               tags=[rows.tags[0], long_tags, *rows.tags[1:]])  # fmt: skip
    tok = tokenizer_of(ner_model_dir)
    enc = encode_split(rows, tok, 12)
    assert enc.sentence[:1] == [0] and enc.sentence[-2:] == [2, 3] and len(enc) > 4
    off = {op: 0.0 for op in ("substitute", "delete", "swap", "insert", "reorder")}
    make_batch = NER.augmented_batches(rows, enc, tok, 12, pool, 0.5, 0, off)  # perturbs nothing
    last = len(enc) - 1
    assert (
        make_batch([last])["input_ids"].tolist()
        == collate_windows(enc, [last], 0)["input_ids"].tolist()
    )  # the last window is sentence 3, not row 3 of the split
    windows = [i for i, s in enumerate(enc.sentence) if s == 1]
    batch = make_batch(windows)
    assert int((batch["labels"] != IGNORE).sum()) == len(long_words)  # once, whole
    # one window of the long sentence drawn: that window is trained on, not all of them (a
    # batch of 16 windows grew to 26, and the samples counted with it)
    second = windows[1]
    alone = make_batch([0, second])
    assert alone["input_ids"].shape[0] == 2
    expected = collate_windows(enc, [0, second], 0)
    assert alone["input_ids"].tolist() == expected["input_ids"].tolist()
    assert alone["labels"].tolist() == expected["labels"].tolist()
    # one window drawn twice (two augmented copies of a row, which length grouping puts side by
    # side): two rows, not one (`copies = 2` trained 139 of 160 rows)
    twice = make_batch([second, second, 0])
    assert (
        twice["input_ids"].tolist()
        == collate_windows(enc, [second, second, 0], 0)["input_ids"].tolist()
    )
    perturbing = NER.augmented_batches(rows, enc, tok, 12, pool, 0.9, 0, {"substitute": 1.0})
    copies = perturbing([0, 0])
    assert copies["input_ids"].shape[0] == 2


# ---------------------------------------------------------------- studies


def test_a_token_classification_study_learns_and_stores_per_type_scores(
    tmp_path: Path, ner_model_dir: Path, ner_files: dict[str, str]
) -> None:
    import optuna

    from hpo import keys
    from hpo.search.objective import Objective

    spec = StudySpec.from_dict(ner_spec(ner_model_dir, ner_files, train={"max_steps": 60}))
    assert spec.study.metric == "entity_f1"
    objective = Objective(spec)
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=1)
    trial = study.trials[0]
    metrics = trial.user_attrs[keys.METRICS]
    assert trial.value > 0.3  # names are told by their words: a tiny model learns them (O: 0)
    assert {"entity_f1_PER", "entity_f1_LOC", "entity_precision", "token_accuracy"} <= set(metrics)
    # the last evaluation's bootstrap noise, kept for the pruners; zero only for a perfect score
    assert trial.user_attrs[keys.EVAL_NOISE] == pytest.approx(metrics["entity_f1_se"], abs=1e-6)
    assert trial.user_attrs[keys.EVAL_NOISE] < 0.2
    assert (trial.user_attrs[keys.EVAL_NOISE] > 0) == (trial.value < 1.0)
    assert trial.user_attrs[keys.CONSTANT_SCORE] == 0.0


def test_every_strategy_applies_per_token(
    tmp_path: Path, ner_model_dir: Path, ner_files: dict[str, str]
) -> None:
    import optuna

    from hpo.search.objective import Objective

    space = {
        "head_hidden_units": 16,
        "classifier_dropout": 0.1,
        "layer_lr_decay": 0.9,
        "reinit_layers": 1,
        "label_smoothing": 0.1,
        "augmentation_strength": 0.3,
        "frozen_layers": 1,
    }
    spec = StudySpec.from_dict(
        ner_spec(
            ner_model_dir, ner_files, space=space, train={"max_steps": 20}, augment={"copies": 1}
        )
    )
    objective = Objective(spec)
    study = optuna.create_study(direction="maximize")
    study.optimize(objective, n_trials=1)
    assert study.trials[0].state.name == "COMPLETE"
    model, _ = objective.build_model(
        objective.prepare(), hyperparameters(study.trials[0].params, 0)
    )
    head = model.classifier
    assert [type(m).__name__ for m in head] == ["Linear", "GELU", "Dropout", "Linear"]


@pytest.mark.skipif(not installed("peft"), reason="LoRA needs: pip install peft")
def test_lora_and_layer_dropping_apply_to_a_token_classifier(
    tmp_path: Path, ner_model_dir: Path, ner_files: dict[str, str]
) -> None:
    import optuna

    from hpo import keys
    from hpo.search.objective import Objective

    space = {"lora_rank": 4, "num_layers": 1, "frozen_layers": 0}
    spec = StudySpec.from_dict(
        ner_spec(ner_model_dir, ner_files, space=space, train={"max_steps": 10})
    )
    study = optuna.create_study(direction="maximize")
    study.optimize(Objective(spec), n_trials=1)
    trial = study.trials[0]
    assert trial.state.name == "COMPLETE"
    # adapters on one layer's query and value projections, and the per-token head, train
    full = Objective(StudySpec.from_dict(ner_spec(ner_model_dir, ner_files)))
    plain = hyperparameters(trial.params | {"lora_rank": 0}, seed=0)  # the same, fully trained
    _, notes = full.build_model(full.prepare(), plain)
    assert 0 < trial.user_attrs[keys.TRAINABLE_PARAMETERS] < notes[keys.TRAINABLE_PARAMETERS] / 10


def test_run_report_best_and_predict_from_the_shell(
    tmp_path: Path, ner_model_dir: Path, ner_files: dict[str, str]
) -> None:
    from click.testing import CliRunner

    from hpo.cli.main import cli

    study = tmp_path / "ner.toml"
    study.write_text(toml_text(ner_spec(ner_model_dir, ner_files, train={"max_steps": 60})))
    storage = f"sqlite:///{tmp_path / 'ner.db'}"
    runner = CliRunner()
    out = runner.invoke(cli, ["validate", str(study)])
    assert out.exit_code == 0, out.output
    assert "train: 240 sentences" in out.output and "entities (LOC" in out.output
    out = runner.invoke(cli, ["run", str(study), "--storage", storage, "--n-trials", "1"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(cli, ["report", "tiny-ner", "--storage", storage])
    assert "F1 per entity type (trial #0): LOC" in out.output
    assert "split into overlapping windows and scored per word: train 0, validation 1" in (
        " ".join(out.output.split())
    )
    # report --json has the same facts
    import json

    import optuna

    facts = json.loads(
        runner.invoke(cli, ["report", "tiny-ner", "--storage", storage, "--json"]).output
    )
    metrics = (
        optuna.load_study(study_name="tiny-ner", storage=storage).trials[0].user_attrs["metrics"]
    )
    assert facts["best_per_type_f1"] == {
        k.removeprefix("entity_f1_"): v
        for k, v in metrics.items()
        if k.startswith("entity_f1_") and k != "entity_f1_se"
    }
    assert "LOC" in facts["best_per_type_f1"]
    assert facts["windowed_sentences"] == {"train": 0, "validation": 1}
    model = tmp_path / "model"
    out = runner.invoke(
        cli, ["best", "tiny-ner", "--storage", storage, "--out", str(model), "--seeds", "1"]
    )
    assert out.exit_code == 0, out.output
    assert "F1 per entity type: LOC" in out.output
    card = (model / "README.md").read_text(encoding="utf-8")
    assert "Named-entity recognition" in card and "| PER |" in card
    out = runner.invoke(cli, ["predict", str(model), "--json", "we met ada lovelace in paris ."])
    assert out.exit_code == 0, out.output
    found = json.loads(out.output)["entities"]
    assert ("paris", "LOC") in {(e["text"], e["type"]) for e in found}
    assert [e["type"] for e in found if e["text"].startswith("ada")] == ["PER"]
    assert all(0 < e["score"] <= 1 for e in found)
    # a sentence past max_length (32) is read in windows of 32 tokens, as validation scored
    # it, not whole within the model's 64 positions; the saved tokenizer and the card say 32
    import torch
    from seqeval.metrics.sequence_labeling import get_entities
    from transformers import AutoModelForTokenClassification

    assert tokenizer_of(model).model_max_length == 32
    assert "at most 32 tokens at a time" in " ".join(card.split())
    words = [w for sentence, _ in ner_sentences(6, 5) for w in sentence]  # validation's last
    net = AutoModelForTokenClassification.from_pretrained(model).eval()
    names = [net.config.id2label[i] for i in range(net.config.num_labels)]
    windows = encode_sentences([words], [["O"] * len(words)], tokenizer_of(model), 32, names)
    assert len(windows) > 1 and len(windows.input_ids[0]) == 32 < windows.longest < 64
    batch = collate_windows(windows, range(len(windows)), 0)
    batch.pop("labels")
    with torch.inference_mode():
        logits = net(**batch).logits
    _, [tags] = stitch(word_predictions(logits, range(len(windows)), windows), windows)
    expected = [(" ".join(words[a : b + 1]), kind) for kind, a, b in get_entities(tags)]
    out = runner.invoke(cli, ["predict", str(model), "--json", " ".join(words)])
    assert out.exit_code == 0, out.output
    assert [(e["text"], e["type"]) for e in json.loads(out.output)["entities"]] == expected


def test_augment_shows_tagged_sentences_unchanged_at_zero_and_perturbed_above(
    tmp_path: Path, ner_model_dir: Path, ner_files: dict[str, str]
) -> None:
    from click.testing import CliRunner

    from hpo.cli.main import cli

    study = tmp_path / "ner.toml"
    study.write_text(toml_text(ner_spec(ner_model_dir, ner_files)))
    rows = {}
    for strength in ("0", "0.8"):
        out = CliRunner().invoke(
            cli, ["augment", str(study), "--strength", strength, "-n", "4"], terminal_width=200
        )
        assert out.exit_code == 0, out.output
        lines = [line.split("│") for line in out.output.splitlines() if line.count("│") == 4]
        rows[strength] = [(a.strip(), b.strip()) for _, _, a, b, _ in lines if a.strip()]
    assert rows["0"] and all(before == after for before, after in rows["0"])
    assert any("|PER]" in before or "|LOC]" in before for before, _ in rows["0"])
    assert any(before != after for before, after in rows["0.8"])


def test_predict_turns_sub_words_into_words_and_words_into_spans(ner_model_dir: Path) -> None:
    import torch
    from transformers import AutoModelForTokenClassification

    from hpo.final.saved import predict_entities

    names = ["O", "B-PER", "I-PER"]
    model = AutoModelForTokenClassification.from_pretrained(
        ner_model_dir, num_labels=3, id2label=dict(enumerate(names))
    )
    tok = tokenizer_of(ner_model_dir)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.copy_(torch.tensor([0.0, 0.0, 5.0]))  # I-PER everywhere
    text = "Barack  unbelievably, Obama"
    [found] = predict_entities(model, tok, [text])
    # every word I-PER: one person from the first word to the last, offsets into the raw text
    assert [(e["text"], e["type"], e["start"], e["end"]) for e in found] == [
        (text, "PER", 0, len(text))
    ]
    with torch.no_grad():
        model.classifier.bias.copy_(torch.tensor([0.0, 5.0, 0.0]))  # B-PER everywhere
    [found] = predict_entities(model, tok, [text])
    # a word of three pieces (unbe ##liev ##ably) is one entity, not three
    assert [e["text"] for e in found] == ["Barack", "unbelievably", ",", "Obama"]
    # a text longer than the model's table of positions is read in windows that fit it
    assert model.config.max_position_embeddings < 300
    long = " ".join(["Obama"] * 300)
    [found] = predict_entities(model, tok, [long])
    assert len(found) == 300 and found[-1]["end"] == len(long)  # every word, to the last


def test_screening_keeps_the_screen_with_the_best_entity_f1(
    ner_model_dir: Path, ner_files: dict[str, str]
) -> None:
    """study.screen on token classification: the screens stop at their one evaluation, and the
    kept trial re-runs the one with the best entity F1, whole."""
    import optuna
    from optuna.trial import TrialState

    from hpo import keys
    from hpo.search.objective import Objective
    from hpo.search.screening import screen_caution
    from hpo.search.study import build_sampler

    raw = ner_spec(
        ner_model_dir,
        ner_files,
        study={"n_trials": 3, "screen": {"trials": 2, "keep": 1}},
        sampler={"name": "tpe", "seed": 1},
        train={"max_steps": 60, "eval_every": 30},
        space={"learning_rate": {"low": 1e-3, "high": 2e-2, "log": True}},
    )
    spec = StudySpec.from_dict(raw)
    study = optuna.create_study(direction="maximize", sampler=build_sampler(spec))
    study.optimize(Objective(spec), n_trials=3)
    screens, (kept,) = study.trials[:2], study.trials[2:]
    assert [t.state for t in screens] == [TrialState.PRUNED] * 2
    assert [list(t.intermediate_values) for t in screens] == [[30], [30]]
    scores = [t.intermediate_values[30] for t in screens]
    best = screens[scores.index(max(scores))]
    assert kept.user_attrs[keys.SCREEN_OF] == best.number
    assert kept.params == best.params
    assert kept.state == TrialState.COMPLETE
    assert sorted(kept.intermediate_values) == [30, 60]
    # entity F1 is no proportion: the noise a screen is judged against is the bootstrap's
    # (the kept screen's F1 is above its bootstrap standard error: it learned something)
    assert best.intermediate_values[30] > best.user_attrs[keys.EVAL_NOISE] > 0
    assert screen_caution(study.trials, maximize=True, proportion=False) is None


def test_predict_reads_chinese_and_japanese_a_character_a_word() -> None:
    """Unspaced scripts are split into characters, as character-per-line NER data is; read as
    one word, a whole sentence was tagged as one entity."""
    from hpo.final.saved import split_words

    text = "张三在北京工作。 Ada met O'Brien in 東京"
    words = split_words(text)
    assert [w for w, _, _ in words] == [
        "张", "三", "在", "北", "京", "工", "作", "。", "Ada", "met", "O'Brien", "in", "東", "京",
    ]  # fmt: skip
    assert all(text[a:b] == w for w, a, b in words)  # offsets point at the words
