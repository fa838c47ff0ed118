"""Augmentation of text without spaces: Chinese words from jieba, Japanese and Thai characters,
script detection, ``[augment] language`` and ``hpo augment`` on a Chinese corpus."""

from __future__ import annotations

import random
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner

from hpo.cli.main import cli
from hpo.config.spec import StudySpec
from hpo.data.augment import Augmenter, TextPool, build_vocabulary
from hpo.data.scripts import WHITESPACE, Script, detect, script_for
from hpo.errors import SpecError
from tests.conftest import SPECIALS, save_tiny_bert, spec_dict, toml_text

jieba = pytest.importorskip("jieba", reason="the zh extra (jieba) is not installed")

_ZH_SENTENCES = [
    "今天天气很好。",
    "我们去公园散步吧！",
    "这部电影真的太好看了，我还想再看一遍。",
    "服务员的态度非常差，菜也凉了。",
    "你觉得这个价格合理吗？",
    "手机的电池用了一天就没电了。",
    "快递三天就到了，包装也很完整；下次还会再买。",
    "我用 Python 写了一个小程序。",
    "这台电脑卖1,000元，性价比很高。",
    "详情请看https://example.com/page很方便！",
    "老师说：「明天不用上课」。",
    "他们在北京大学学习中文。",
]
_JA = [
    "今日はとても良い天気ですね。",
    "このカメラは使いやすいです！",
    "駅までどのくらいかかりますか？",
]
_TH = ["วันนี้อากาศดีมาก", "ฉันชอบกินข้าวผัด", "ร้านนี้บริการดี"]
_EN = ["The film was good. I liked it a lot!", "bad, boring; too long: skip it"]
_ONLY_REORDER = {"substitute": 0, "delete": 0, "swap": 0, "insert": 0, "reorder": 1}
_ONLY_SUBSTITUTE = {"substitute": 1, "delete": 0, "swap": 0, "insert": 0, "reorder": 0}
_EVERY_OP = {"substitute": 1, "delete": 1, "swap": 1, "insert": 1, "reorder": 1}


def _chinese(count: int, seed: int = 0) -> list[str]:
    """Texts of one to four sentences, some with an English word, a number or a link."""
    rng = random.Random(seed)
    return ["".join(rng.sample(_ZH_SENTENCES, rng.randint(1, 4))) for _ in range(count)]


_TEXTS = _chinese(240)
_ZH = script_for("zh")
_VOCAB = build_vocabulary(_TEXTS, script=_ZH)


def test_strength_zero_is_identity_on_chinese_and_draws_nothing() -> None:
    augmenter = Augmenter(0.0, _VOCAB, 1, _EVERY_OP, _ZH)
    state = augmenter._rng.getstate()
    for text in [*_TEXTS, " 前后有空格 ", "一"]:
        assert augmenter(text) is text
    assert augmenter.batch(_TEXTS) == _TEXTS
    assert augmenter._rng.getstate() == state


def test_no_space_is_ever_inserted() -> None:
    japanese = script_for("ja")
    thai = script_for("th")
    cases = [(text, _ZH, _VOCAB) for text in _TEXTS]
    cases += [(text, japanese, build_vocabulary(_JA, script=japanese)) for text in _JA * 5]
    cases += [(text, thai, build_vocabulary(_TH, script=thai)) for text in _TH * 5]
    changed = 0
    for strength in (0.1, 0.5, 1.0):
        for seed in range(4):
            for ops in (None, _EVERY_OP):
                for text, script, vocab in cases:
                    out = Augmenter(strength, vocab, seed, ops, script)(text)
                    changed += out != text
                    assert out.strip()
                    if not re.search(r"\s", text):
                        assert not re.search(r"\s", out), (text, out)
                    assert out.count(" ") <= text.count(" "), (text, out)
    assert changed > 0.8 * 3 * 4 * 2 * len(cases)


def test_whitespace_around_an_english_word_stays_with_it() -> None:
    tokens = _ZH.split("我用 Python 写了一个小程序。")
    assert " Python " in tokens
    assert "".join(tokens) == "我用 Python 写了一个小程序。"
    assert all(not t.isspace() for t in tokens)


def test_remembered_words_are_the_words() -> None:
    from hpo.data import scripts

    for text in list(dict.fromkeys(_TEXTS))[:40]:
        text = f" 「{text}」 然后 OK 甲乙"  # not yet seen by any other test
        fresh = _ZH.split(text)
        assert (_ZH.words, text) not in scripts._SPLITS
        assert _ZH.split(text, remember=True) == fresh
        assert (_ZH.words, text) in scripts._SPLITS
        assert _ZH.split(text) == fresh
        assert "".join(fresh) == text and len(fresh) > 5


def test_same_seed_reproduces_and_other_seed_differs() -> None:
    first = Augmenter(0.5, _VOCAB, 7, script=_ZH).batch(_TEXTS)
    again = Augmenter(0.5, _VOCAB, 7, script=_ZH).batch(_TEXTS)
    other = Augmenter(0.5, _VOCAB, 8, script=_ZH).batch(_TEXTS)
    assert first == again
    assert sum(a != b for a, b in zip(first, other, strict=True)) > len(_TEXTS) // 2


def test_sentences_are_reordered_at_chinese_marks_and_kept_whole() -> None:
    text = "今天天气很好。我们去公园散步吧！你觉得这个价格合理吗？手机的电池用了一天就没电了。"
    sentences = re.findall(r"[^。！？]+[。！？]", text)
    assert len(sentences) == 4
    orders = set()
    for seed in range(20):
        out = Augmenter(1.0, _VOCAB, seed, _ONLY_REORDER, _ZH)(text)
        moved = re.findall(r"[^。！？]+[。！？]", out)
        assert "".join(moved) == out
        assert Counter(moved) == Counter(sentences)
        assert moved != sentences
        orders.add(tuple(moved))
    assert len(orders) > 3


def test_clauses_are_reordered_with_separators_in_place() -> None:
    text = "红色的苹果，绿色的梨子；黄色的香蕉：紫色的葡萄"
    clauses = re.split(r"[，；：]", text)
    for seed in range(10):
        out = Augmenter(1.0, (), seed, _ONLY_REORDER, _ZH)(text)
        parts = re.split(r"([，；：])", out)
        assert parts[1::2] == ["，", "；", "："]
        assert sorted(parts[0::2]) == sorted(clauses)
        assert parts[0::2] != clauses
    # "1,000" is a number, not two clauses
    out = Augmenter(1.0, (), 0, _ONLY_REORDER, _ZH)("这台电脑卖1,000元，性价比很高")
    assert out == "性价比很高，这台电脑卖1,000元"


def test_vocabulary_is_the_corpus_jieba_words_by_frequency() -> None:
    tokenizer = jieba.Tokenizer()
    counts = Counter(w.lower() for t in _TEXTS for w in tokenizer.lcut(t))
    assert _VOCAB
    assert set(_VOCAB) <= set(counts)
    assert {"公园", "电影", "北京大学", "性价比", "python"} <= set(_VOCAB)
    assert all(word.isalpha() for word in _VOCAB), _VOCAB
    assert not {"1", "000", "，", "https", "com", "example"} & set(_VOCAB)
    frequencies = [counts[w] for w in _VOCAB]
    assert frequencies == sorted(frequencies, reverse=True)


def test_substitution_draws_from_the_vocabulary_and_keeps_punctuation() -> None:
    augmenter = Augmenter(1.0, _VOCAB, 3, _ONLY_SUBSTITUTE, _ZH)
    replaced = 0
    for text in _TEXTS[:60]:
        for token in _ZH.split(text):
            out = augmenter._substitute_unspaced(token)
            if out == token:
                continue
            replaced += 1
            word = re.sub(r"[\W\d_]+", "", out)
            assert word in _VOCAB, (token, out)
            assert re.sub(r"\w+", "", out) == re.sub(r"\w+", "", token)  # punctuation, spaces
    assert replaced > 100
    # links and numbers are never replaced
    assert augmenter._substitute_unspaced("https://example.com/page") == "https://example.com/page"
    assert augmenter._substitute_unspaced("1,000") == "1,000"


def test_detection_picks_the_script() -> None:
    assert detect(_TEXTS) == "zh"
    assert detect(_JA * 10) == "ja"
    assert detect(_TH * 10) == "th"
    assert detect(_EN * 10) == ""
    assert detect(["안녕하세요 만나서 반갑습니다"]) == ""
    assert detect([]) == ""
    assert script_for("auto", _TEXTS) == Script("zh", "jieba", detected=True)
    assert script_for("auto", _JA) == Script("ja", "characters", detected=True)
    assert script_for("auto", _TH).words == "characters"
    assert script_for("auto", _EN) == Script("", "whitespace", detected=True)
    assert script_for("ko", _TEXTS).spaced  # declared beats detected
    assert script_for("zh-TW").words == "jieba"
    assert script_for("auto", _TEXTS).describe() == "zh (detected; jieba words)"


def test_english_pool_is_the_old_vocabulary_and_script() -> None:
    texts = _EN * 3
    pool = TextPool.for_language(texts)
    assert pool.script.spaced and pool.script.words == WHITESPACE.words
    assert pool.vocabulary == build_vocabulary(texts)
    assert Augmenter(0.6, pool.vocabulary, 4, script=pool.script).batch(texts) == Augmenter(
        0.6, build_vocabulary(texts), 4
    ).batch(texts)


def test_language_is_checked_in_the_study_file(tmp_path: Path) -> None:
    raw = spec_dict(tmp_path, tmp_path / "x.csv")
    assert StudySpec.from_dict(raw).augment.language == "auto"
    for ok in ("zh", "zh-Hant", "ja", "th", "en", "yue"):
        assert StudySpec.from_dict({**raw, "augment": {"language": ok}}).augment.language == ok
    for bad in ("xx!", "chinese", "", "z"):
        with pytest.raises(SpecError, match=r"`augment\.language` must be 'auto', 'zh'") as info:
            StudySpec.from_dict({**raw, "augment": {"language": bad}})
        assert repr(bad) in str(info.value)


def test_declared_chinese_without_jieba_is_a_dependency_error() -> None:
    code = (
        "import sys\n"
        "sys.modules['jieba'] = None\n"
        "from hpo.errors import DependencyError\n"
        "from hpo.data.scripts import script_for\n"
        "print(script_for('auto', ['今天天气很好。我们去公园散步吧！']).describe())\n"
        "try:\n"
        "    script_for('zh')\n"
        "except DependencyError as exc:\n"
        "    print('error:', exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    lines = out.stdout.splitlines()
    assert lines[0] == "zh (detected; characters: pip install jieba for words)"
    assert lines[1].startswith("error: `augment.language` 'zh' needs the package jieba")
    assert lines[1].endswith("pip install jieba (or 'hpo[zh]')")
    assert len(lines) == 2


def test_classification_pool_carries_the_script_into_batches(tmp_path: Path) -> None:
    from hpo.data.dataset import Split
    from hpo.tasks.classification import SequenceClassification

    chars = sorted({c for t in _TEXTS for c in t if not c.isspace()})
    folder = save_tiny_bert(tmp_path, 1, SPECIALS + chars + [w.lower() for w in chars])
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    task = SequenceClassification()
    split = Split(_TEXTS[:8], None, [0, 1] * 4)
    pool = task.augment_pool(split, "auto")
    assert pool.script == Script("zh", "jieba", detected=True)
    assert pool.vocabulary == build_vocabulary(_TEXTS[:8], script=pool.script)
    make_batch = task.augmented_batches(split, None, tokenizer, 64, pool, 0.6, 5, _EVERY_OP)
    batch = make_batch(list(range(8)))
    expected = Augmenter(0.6, pool.vocabulary, 5, _EVERY_OP, pool.script).batch(split.text)
    assert expected != split.text
    want = tokenizer(expected, truncation=True, max_length=64, padding=True, return_tensors="pt")
    assert batch["input_ids"].tolist() == want["input_ids"].tolist()
    assert task.augment_pool(split, "en").script.spaced


def test_hpo_augment_shows_chinese_unchanged_at_zero_and_perturbed_above(
    tmp_path: Path, tiny_model_dir: Path
) -> None:
    rows = [(text.replace(" ", ""), "pos" if i % 2 else "neg") for i, text in enumerate(_TEXTS)]
    data = tmp_path / "zh.csv"
    with data.open("w", encoding="utf-8") as f:
        f.write("text,label\n")
        f.writelines(f'"{text}",{label}\n' for text, label in rows)
    study = tmp_path / "zh.toml"
    study.write_text(toml_text(spec_dict(tiny_model_dir, data)), encoding="utf-8")
    runner = CliRunner()

    def cells(strength: str) -> tuple[str, list[list[str]]]:
        result = runner.invoke(
            cli,
            ["augment", str(study), "--strength", strength, "-n", "6"],
            env={"COLUMNS": "300"},
        )
        assert result.exit_code == 0, result.output
        table = [line for line in result.output.splitlines() if line.startswith("│")]
        return result.output, [[c.strip() for c in r.strip("│").split("│")] for r in table]

    output, same = cells("0")
    assert "language zh (detected; jieba words)" in output
    assert len(same) == 6
    assert all(c[1] == c[2] and re.search("[\u4e00-\u9fff]", c[1]) for c in same)
    _, moved = cells("0.5")
    assert len(moved) == 6
    assert sum(c[1] != c[2] for c in moved) >= 4
    assert all(" " not in c[1] and " " not in c[2] and c[2] for c in moved)
