"""Tests for hpo.data.augment: identity at 0, seeding, strength scaling, reordering, vocabulary."""

from __future__ import annotations

import difflib
import random

import pytest

from hpo.data.augment import Augmenter, build_vocabulary

_PROSE = (
    "the movie was great and i loved every minute of it but the ending felt rushed "
    "honestly this phone battery dies fast so i am returning it tomorrow morning "
    "what a beautiful day for a walk in the park with my dog"
)
_WORDS = _PROSE.split()
_EXTRAS = ("#happy", "@friend", "https://t.co/abc", "😀", "café", "Zürich", "2024", "!!!")


def _sentences(count: int, seed: int = 0) -> list[str]:
    """Deterministic tweet-like texts with mixed case, punctuation, emoji, tags and links."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(8, 20))]
        words[0] = words[0].capitalize()
        words.insert(rng.randrange(len(words)), rng.choice(_EXTRAS))
        texts.append(" ".join(words) + rng.choice([".", "!", "?", ""]))
    return texts


_TEXTS = _sentences(50)
_VOCAB = build_vocabulary(_TEXTS)
_LONG = (
    "Yesterday I finally watched the new film with my sister. The plot was clever, the music "
    "was loud, and the actors were brilliant! Would I see it again? Absolutely, next weekend."
)


def _edit_fraction(before: str, after: str) -> float:
    """Share of tokens changed between two texts, from a token-level sequence match."""
    return 1.0 - difflib.SequenceMatcher(a=before.split(), b=after.split()).ratio()


def test_strength_zero_is_identity_and_draws_no_randomness() -> None:
    augmenter = Augmenter(0.0, _VOCAB, seed=1)
    assert augmenter.is_identity
    state = augmenter._rng.getstate()
    for text in [*_TEXTS, _LONG, "", "   ", "one"]:
        assert augmenter(text) is text
    assert augmenter.batch(_TEXTS) == _TEXTS
    assert augmenter._rng.getstate() == state


def test_nonzero_strength_is_not_identity() -> None:
    assert not Augmenter(0.01, _VOCAB, seed=1).is_identity


def test_global_random_state_is_untouched() -> None:
    random.seed(123)
    expected = random.random()
    random.seed(123)
    Augmenter(1.0, _VOCAB, seed=5).batch(_TEXTS)
    assert random.random() == expected


def test_same_seed_reproduces_and_other_seed_differs() -> None:
    first = Augmenter(0.5, _VOCAB, seed=7).batch([_LONG, *_TEXTS])
    second = Augmenter(0.5, _VOCAB, seed=7).batch([_LONG, *_TEXTS])
    other = Augmenter(0.5, _VOCAB, seed=8).batch([_LONG, *_TEXTS])
    assert first == second
    assert first[0] != other[0]
    assert first != other


def test_call_and_batch_agree() -> None:
    one_by_one = Augmenter(0.4, _VOCAB, seed=3)
    batched = Augmenter(0.4, _VOCAB, seed=3)
    assert [one_by_one(text) for text in _TEXTS] == batched.batch(_TEXTS)


def test_full_strength_changes_most_texts() -> None:
    augmenter = Augmenter(1.0, _VOCAB, seed=0)
    changed = sum(augmenter(text) != text for text in _TEXTS)
    assert changed >= 0.9 * len(_TEXTS)


def test_change_grows_with_strength() -> None:
    def mean_edit(strength: float) -> float:
        augmenter = Augmenter(strength, _VOCAB, seed=11)
        return sum(_edit_fraction(t, augmenter(t)) for t in _TEXTS) / len(_TEXTS)

    low, mid, high = mean_edit(0.1), mean_edit(0.6), mean_edit(1.0)
    assert 0.0 < low < mid < high


@pytest.mark.parametrize("text", ["word", "😀", "#hashtag", "  padded  ", "two words", "a, b"])
def test_never_empty_at_full_strength(text: str) -> None:
    for seed in range(30):
        out = Augmenter(1.0, _VOCAB, seed=seed)(text)
        assert out.strip()
        assert out == " ".join(out.split())


def test_single_word_is_never_deleted() -> None:
    outputs = {Augmenter(1.0, (), seed=seed)("lonely") for seed in range(30)}
    assert outputs == {"lonely"}


def test_blank_text_is_returned_unchanged() -> None:
    augmenter = Augmenter(1.0, _VOCAB, seed=0)
    for text in ["", " ", "\t\n"]:
        assert augmenter(text) == text


def test_empty_vocabulary_skips_substitution() -> None:
    augmenter = Augmenter(1.0, [], seed=0)
    for text in _TEXTS:
        out = augmenter(text)
        assert set(out.split()) <= set(text.split())


def test_substitution_keeps_capital_and_punctuation() -> None:
    augmenter = Augmenter(1.0, ("zebra",), seed=0)
    outputs = [augmenter("(Hello) WORLD!") for _ in range(200)]
    tokens = {token for out in outputs for token in out.split()}
    assert "(Zebra)" in tokens
    assert "ZEBRA!" in tokens
    assert tokens <= {"(Hello)", "WORLD!", "(Zebra)", "ZEBRA!"}


def test_links_and_mentions_are_not_substituted() -> None:
    augmenter = Augmenter(1.0, ("zebra",), seed=0)
    for _ in range(50):
        tokens = augmenter("@someone https://example.com/page").split()
        assert set(tokens) <= {"@someone", "https://example.com/page"}


def test_sentences_are_reordered_at_full_strength() -> None:
    first = ["apple", "banana", "cherry", "date", "elder", "fig", "grape"]
    second = ["kiwi", "lemon", "mango", "nectarine", "olive", "peach", "quince"]
    text = " ".join(first) + ". " + " ".join(second) + "!"
    second_leads = 0
    for seed in range(20):
        tokens = [t.strip(".!") for t in Augmenter(1.0, (), seed=seed)(text).split()]
        where_first = [i for i, t in enumerate(tokens) if t in first]
        where_second = [i for i, t in enumerate(tokens) if t in second]
        assert where_first and where_second
        mean_first = sum(where_first) / len(where_first)
        mean_second = sum(where_second) / len(where_second)
        second_leads += mean_second < mean_first
    # Word swaps alone rarely move a whole sentence ahead; a sentence shuffle at strength 1 does.
    assert second_leads >= 15


def test_sentence_perturbation_alone_reorders_sentences_and_clauses() -> None:
    augmenter = Augmenter(1.0, (), seed=0)
    sentences = "One two. Three four! Five six?"
    shuffled = augmenter._perturb_sentences(sentences)
    assert shuffled != sentences
    assert sorted(shuffled.split()) == sorted(sentences.split())
    clauses = "red apples, green pears; yellow bananas"
    rotated = augmenter._perturb_sentences(clauses)
    assert rotated != clauses
    assert rotated.count(",") == 1 and rotated.count(";") == 1
    assert augmenter._perturb_sentences("no breaks here at all") == "no breaks here at all"


def test_vocabulary_is_frequency_ordered_and_capped() -> None:
    texts = ["b a a c", "A b a", "a 42 !!! ... c", "b a", "d"]
    assert build_vocabulary(texts) == ("a", "b", "c", "d")
    assert build_vocabulary(texts, max_words=2) == ("a", "b")


def test_vocabulary_has_only_words() -> None:
    texts = [*_TEXTS, "Price: $3.50 (50%) — 2024-01-01 ?!? 😀😀 http://x.co/y @user don't"]
    vocabulary = build_vocabulary(texts)
    assert vocabulary
    assert len(set(vocabulary)) == len(vocabulary)
    for word in vocabulary:
        assert word.replace("'", "").isalpha(), word
    assert "don't" in vocabulary
    assert "café" in vocabulary
    assert not {"http", "user", "co"} & set(vocabulary)


def test_vocabulary_rejects_nonpositive_cap() -> None:
    with pytest.raises(ValueError, match="max_words"):
        build_vocabulary(["a b"], max_words=0)


@pytest.mark.parametrize("strength", [1.5, -0.1, float("nan")])
def test_invalid_strength_raises(strength: float) -> None:
    with pytest.raises(ValueError, match="`strength`") as info:
        Augmenter(strength, _VOCAB, seed=0)
    assert repr(strength) in str(info.value)


def test_ops_weights_turn_operations_off_and_on() -> None:
    vocab = ("zebra", "quokka", "narwhal")
    text = "one two three four five six seven eight nine ten"
    # insertion alone: every original word stays, in order, and vocabulary words are added
    grow = Augmenter(
        0.9, vocab, 0, {"substitute": 0, "delete": 0, "swap": 0, "insert": 1, "reorder": 0}
    )
    for _ in range(20):
        out = grow(text).split()
        assert [w for w in out if w not in vocab] == text.split()
    assert any(len(grow(text).split()) > 10 for _ in range(20))
    # deletion alone never adds or reorders a word
    cut = Augmenter(
        0.9, vocab, 0, {"substitute": 0, "delete": 1, "swap": 0, "insert": 0, "reorder": 0}
    )
    outs = [cut(text).split() for _ in range(20)]
    assert all(o == [w for w in text.split() if w in o] for o in outs)
    assert any(len(o) < 10 for o in outs)
    # every weight at 0: nothing changes, whatever the strength
    still = Augmenter(
        1.0, vocab, 0, dict.fromkeys(("substitute", "delete", "swap", "insert", "reorder"), 0)
    )
    assert still(text) == text


def test_default_ops_draw_exactly_as_before_ops_existed() -> None:
    """Studies stored before `[augment]` augment the same way: weights 1 and insertion off."""
    vocab = build_vocabulary(["alpha beta gamma delta", "epsilon zeta eta theta"])
    texts = ["The film was good. I liked it a lot!", "bad, boring; too long: skip it"] * 5
    assert Augmenter(0.4, vocab, 7).batch(texts) == Augmenter(
        0.4, vocab, 7, {"substitute": 1, "delete": 1, "swap": 1, "insert": 0, "reorder": 1}
    ).batch(texts)


def test_unknown_op_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown augmentation operation 'shout'"):
        Augmenter(0.2, (), 0, {"shout": 1})
