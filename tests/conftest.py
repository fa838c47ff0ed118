"""Shared fixtures: a tiny randomly initialised BERT saved like a hub model, and learnable data.

The tiny model goes through the same ``from_pretrained`` path as a real one, so tests exercise
the real loading, head initialisation and freezing code in seconds.
"""

from __future__ import annotations

import csv
import importlib.metadata
import random
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

POSITIVE = ["good", "great", "love", "happy", "excellent", "fun", "best", "wonderful"]
NEGATIVE = ["bad", "awful", "hate", "sad", "terrible", "boring", "worst", "dull"]
FILLER = ["the", "movie", "was", "a", "film", "this", "it", "really", "very", "plot", "and", "so"]
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def installed(dist: str) -> bool:
    """Whether a distribution (e.g. the package that ships the bundled model) is installed."""
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def sentiment_rows(n: int, seed: int = 0) -> list[tuple[str, str]]:
    """Short texts whose label ("pos"/"neg") is set by one sentiment word among fillers."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = rng.sample(FILLER, rng.randint(3, 8))
        words.insert(
            rng.randrange(len(words) + 1), rng.choice(POSITIVE if label == "pos" else NEGATIVE)
        )
        rows.append((" ".join(words), label))
    rng.shuffle(rows)
    return rows


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    return path


def save_tiny_bert(folder: Path, layers: int = 2, vocab: list[str] | None = None) -> Path:
    """A ``layers``-deep, 32-wide BERT encoder with its tokenizer, saved without a head; the
    WordPiece ``vocab`` defaults to the sentiment words."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = vocab or SPECIALS + POSITIVE + NEGATIVE + FILLER
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast.from_pretrained(folder)  # reads vocab.txt (any version)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=32,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session", autouse=True)
def _ctrl_c_raises() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt in the test process and in what it starts. A suite run
    as a background job of a non-interactive shell (`bash tests/run.sh &`) inherits SIGINT
    ignored, as POSIX has it, and so would every `hpo` process a test starts: the tests that
    send SIGINT would then see nothing happen."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.fixture(autouse=True)
def _empty_frozen_cache() -> Iterator[None]:
    """Each test starts with no cached frozen-layer states: the store belongs to the process,
    and a test that counts what its trials computed must not find another test's rows."""
    from hpo.training.frozen import STORE

    STORE.clear()
    yield
    STORE.clear()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT encoder with its tokenizer, saved without a classification head."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert"), 2)


@pytest.fixture(scope="session")
def deep_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny BERT with 4 layers, for the strategies that act on layers."""
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-bert-4"), 4)


@pytest.fixture(scope="session")
def sentiment_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("data") / "sentiment.csv", sentiment_rows(400))


def spec_dict(model_dir: Path, data_file: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A small, fast study over the tiny model; ``sections`` override keys section by section."""
    raw: dict[str, Any] = {
        "study": {"name": "tiny", "n_trials": 3},
        "sampler": {"name": "random", "seed": 0},
        "pruner": {"name": "none"},
        "model": {"name": str(model_dir)},
        "data": {"files": {"train": str(data_file)}, "max_eval_samples": 80, "seed": 0},
        "train": {"max_steps": 30, "eval_every": 10, "max_length": 32, "device": "cpu"},
        "space": {
            "learning_rate": {"low": 1e-3, "high": 5e-3, "log": True},
            "warmup_ratio": 0.1,
            "lr_schedule": "linear",
            "frozen_layers": {"low": 0, "high": 1},
            "augmentation_strength": 0.0,
            "batch_size": 16,
            "weight_decay": 0.0,
            "seed": 0,
        },
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return raw


def toml_text(raw: dict[str, Any]) -> str:
    """Write a spec dict as a study file (enough TOML for the values these tests use)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, dict):
            return "{" + ", ".join(f"{k} = {value(x)}" for k, x in v.items()) + "}"
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    lines = []
    for section, body in raw.items():
        lines.append(f"[{section}]")
        lines += [f"{k} = {value(v)}" for k, v in body.items()]
        lines.append("")
    return "\n".join(lines)


@pytest.fixture
def study_file(tmp_path: Path, tiny_model_dir: Path, sentiment_csv: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(toml_text(spec_dict(tiny_model_dir, sentiment_csv)))
    return path


# ---------------------------------------------------------------- token classification (NER)

PEOPLE = [("ada", "lovelace"), ("alan", "turing"), ("grace", "hopper"), ("kurt",)]
PLACES = [("paris",), ("new", "york"), ("berlin",), ("oslo",)]
WORDS = ["the", "met", "in", "and", "went", "to", "from", "today", "visited", "we", "."]
# word pieces: "lovelace" is lovel + ##ace, "turing" tur + ##ing, "berlin" ber + ##lin
PIECES = ["lovel", "##ace", "tur", "##ing", "ber", "##lin"]
WHOLE = sorted({w for name in PEOPLE + PLACES for w in name} - {"lovelace", "turing", "berlin"})


def ner_sentences(n: int, seed: int = 0) -> list[tuple[list[str], list[str]]]:
    """Sentences where a person or place name is told apart by the words themselves."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        tokens: list[str] = []
        tags: list[str] = []
        for _ in range(rng.randint(1, 2)):
            tokens += rng.sample(WORDS[:-1], rng.randint(1, 3))
            tags += ["O"] * (len(tokens) - len(tags))
            kind, names = rng.choice([("PER", PEOPLE), ("LOC", PLACES)])
            name = rng.choice(names)
            tokens += list(name)
            tags += [f"B-{kind}"] + [f"I-{kind}"] * (len(name) - 1)
        tokens.append(".")
        tags.append("O")
        out.append((tokens, tags))
    return out


def write_conll(path: Path, sentences: list[tuple[list[str], list[str]]]) -> Path:
    lines = []
    for tokens, tags in sentences:
        lines += [f"{w}\t{t}" for w, t in zip(tokens, tags, strict=True)] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def ner_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT whose WordPiece vocabulary splits some names into pieces."""
    vocab = SPECIALS + WORDS + WHOLE + PIECES + ["obama", "barack", "unbe", "##liev", "##ably"]
    return save_tiny_bert(tmp_path_factory.mktemp("tiny-ner-bert"), 2, vocab)


@pytest.fixture(scope="session")
def ner_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("ner-data")
    words: list[str] = []
    tags: list[str] = []
    for w, t in ner_sentences(6, 5):  # one sentence longer than the tests' max_length of 32
        words += w
        tags += t
    long = (words, tags)
    return {
        "train": str(write_conll(folder / "train.conll", ner_sentences(240, 0))),
        "validation": str(write_conll(folder / "dev.conll", [*ner_sentences(60, 1), long])),
        "test": str(write_conll(folder / "test.conll", ner_sentences(60, 2))),
    }


# ---------------------------------------------------------------- decoders (GPT-2, Llama)


def train_decoder_tokenizer(
    family: str, texts: list[str], eos: bool = True, vocab_size: int = 0
) -> Any:
    """A tokenizer trained here on ``texts``, with no pad token, as the real family ships:
    GPT-2's byte-level BPE, or Llama's SentencePiece-style BPE over "▁"-marked words.
    ``eos=False`` leaves out the end-of-sequence token too; ``vocab_size`` 0: a few hundred."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2TokenizerFast, LlamaTokenizerFast

    if family == "gpt2":
        end = ["<|endoftext|>"] if eos else []
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size or 400,
            special_tokens=end,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        )
        tok.train_from_iterator(texts, trainer)
        special = dict.fromkeys(("bos_token", "eos_token", "unk_token"), end[0]) if eos else {}
        return GPT2TokenizerFast(tokenizer_object=tok, **special)
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    specials = ["<unk>", "<s>"] + (["</s>"] if eos else [])
    tok.train_from_iterator(
        texts, trainers.BpeTrainer(vocab_size=vocab_size or 300, special_tokens=specials)
    )
    ends = {"eos_token": "</s>" if eos else None}
    return LlamaTokenizerFast(tokenizer_object=tok, bos_token="<s>", unk_token="<unk>", **ends)


def save_tiny_decoder(
    folder: Path,
    family: str,
    texts: list[str],
    eos: bool = True,
    width: int = 32,
    layers: int = 2,
    vocab_size: int = 0,
) -> Path:
    """A GPT-2 or Llama decoder (``layers`` deep, ``width`` wide, 16-wide heads; by default 2
    and 32) with a tokenizer trained on ``texts``, saved like a hub model (no head, no pad
    token)."""
    import torch
    from transformers import GPT2Config, GPT2Model, LlamaConfig, LlamaModel

    tokenizer = train_decoder_tokenizer(family, texts, eos, vocab_size)
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    n, end, heads = len(tokenizer), tokenizer.eos_token_id, max(2, width // 64)
    if family == "gpt2":
        config: Any = GPT2Config(
            vocab_size=n, n_embd=width, n_layer=layers, n_head=heads, n_positions=512,
            bos_token_id=end, eos_token_id=end,
        )  # fmt: skip
        GPT2Model(config).save_pretrained(folder)
    else:
        config = LlamaConfig(
            vocab_size=n, hidden_size=width, num_hidden_layers=layers, num_attention_heads=heads,
            num_key_value_heads=max(1, heads // 3), intermediate_size=4 * width,
            max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id, eos_token_id=end,
        )  # fmt: skip
        LlamaModel(config).save_pretrained(folder)
    return folder


def decoder_texts() -> list[str]:
    words = [w for text, _ in sentiment_rows(300) for w in text.split()]
    ner = [" ".join(w) for w, _ in ner_sentences(100)]
    return [t for t, _ in sentiment_rows(300)] + ner + [" ".join(words)]


@pytest.fixture(scope="session", params=["gpt2", "llama"])
def decoder_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny GPT-2 and a tiny Llama, each with its trained tokenizer and no pad token."""
    family = str(request.param)
    return save_tiny_decoder(tmp_path_factory.mktemp(f"tiny-{family}"), family, decoder_texts())
