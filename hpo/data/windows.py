"""Tagged sentences as sub-word windows, and predictions put back on the original words.

Encoding splits words into sub-word tokens with the tokenizer's word alignment; a sentence longer
than ``max_length`` is cut into overlapping windows at word boundaries, and each word is scored
in exactly one of them (the one where it sits nearer the middle), so predictions stitch back to
one tag per original word.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hpo.errors import DataError

if TYPE_CHECKING:
    import torch

    from hpo.data.tokens import TokenSplit

IGNORE = -100  # label of a position the loss and the scores skip


@dataclass(frozen=True)
class TokenWindows:
    """A tokenized split: windows of sub-word ids with per-token labels (IGNORE where not
    trained), and what scoring needs to put the predictions back on the original words."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    sentence: list[int]  # window -> sentence index
    scored: list[list[tuple[int, int]]]  # window -> (token position, word index) it scores
    gold: list[list[str]]  # sentence -> IOB2 tag per word
    label_names: list[str]
    windowed: int = 0  # sentences that needed more than one window
    longest: int = 0  # longest sentence in sub-word tokens, special tokens included

    def __len__(self) -> int:
        return len(self.input_ids)

    def repeat(self, times: int) -> TokenWindows:
        """The windows ``times`` over (augmented copies index past the originals)."""
        return TokenWindows(
            self.input_ids * times,
            self.labels * times,
            self.sentence * times,
            self.scored * times,
            self.gold,
            self.label_names,
            self.windowed,
            self.longest,
        )

    def concat(self, other: TokenWindows) -> TokenWindows:
        shift = len(self.gold)
        return TokenWindows(
            self.input_ids + other.input_ids,
            self.labels + other.labels,
            self.sentence + [s + shift for s in other.sentence],
            self.scored + other.scored,
            self.gold + other.gold,
            self.label_names,
            self.windowed + other.windowed,
            max(self.longest, other.longest),
        )


def encode_split(
    split: TokenSplit, tokenizer: Any, max_length: int, name: str = ""
) -> TokenWindows:
    """Tokenize every sentence once, by words; windows for sentences past ``max_length``.
    ``name``: the split's, for the warnings."""
    tags = [split.tag_names(i) for i in range(len(split))]
    names = list(split.names)
    return encode_sentences(
        split.tokens, tags, tokenizer, max_length, names, split.label_all_tokens, name
    )


def encode_sentences(
    sentences: Sequence[list[str]],
    tags: Sequence[list[str]],
    tokenizer: Any,
    max_length: int,
    label_names: list[str],
    label_all_tokens: bool = False,
    about: str | None = "",
) -> TokenWindows:
    """Windows of sentences given as words and IOB2 tag names (see ``encode_split``).
    ``about``: the split named in warnings; None: no warning (it was said already)."""
    index = {n: i for i, n in enumerate(label_names)}
    inside = {i: index.get("I-" + n[2:], i) for n, i in index.items() if n.startswith("B-")}
    out = TokenWindows([], [], [], [], [list(t) for t in tags], label_names)
    if not sentences:
        return out
    # filled below, then frozen with the sentence counts
    sentences = list(sentences)
    whole = _tokenize(tokenizer, sentences, add_special_tokens=True)
    _unknown_for_vanished(sentences, whole, tokenizer, about)
    windowed, longest = 0, 0
    for s, (words, row) in enumerate(zip(sentences, tags, strict=True)):
        ids, word_ids = whole[s]
        longest = max(longest, len(ids))
        if len(ids) <= max_length:
            spans = [(0, len(words), 0, len(words))]
            pieces = [(ids, word_ids)]
        else:
            windowed += 1
            spans = _windows(_token_counts(word_ids, len(words)), max_length - _specials(whole))
            pieces = _tokenize(tokenizer, [words[a:b] for a, b, _, _ in spans], True)
        for (a, _b, own_from, own_to), (piece_ids, piece_words) in zip(spans, pieces, strict=True):
            piece_ids, piece_words = piece_ids[:max_length], piece_words[:max_length]
            labels = [IGNORE] * len(piece_ids)
            scored: list[tuple[int, int]] = []
            seen: set[int] = set()
            for pos, w in enumerate(piece_words):
                if w is None:
                    continue  # special tokens
                word = a + w
                if not own_from <= word < own_to:
                    continue  # context only: scored in the window where it is central
                tag = index[row[word]]
                if word not in seen:
                    seen.add(word)
                    labels[pos] = tag
                    scored.append((pos, word))
                elif label_all_tokens:
                    labels[pos] = inside.get(tag, tag)
            out.input_ids.append(piece_ids)
            out.labels.append(labels)
            out.sentence.append(s)
            out.scored.append(scored)
    return dataclasses.replace(out, windowed=windowed, longest=longest)


def _unknown_for_vanished(
    sentences: list[list[str]],
    whole: list[tuple[list[int], list[int | None]]],
    tokenizer: Any,
    about: str | None = "",
) -> None:
    """Give a word the tokenizer turns into no token at all (BERT's normalizer drops U+FFFD and
    lone combining marks) the tokenizer's unknown token, in place: left out, it had no position,
    so its tag was never trained nor scored and an entity on it always counted as missed. Said
    once per call in a warning."""
    unknown = getattr(tokenizer, "unk_token", None)
    replaced = 0
    for s, (_ids, word_ids) in enumerate(whole):
        present = {w for w in word_ids if w is not None}
        if len(present) == len(sentences[s]) or unknown is None:
            continue
        missing = [i for i in range(len(sentences[s])) if i not in present]
        sentences[s] = [unknown if i in missing else w for i, w in enumerate(sentences[s])]
        whole[s] = _tokenize(tokenizer, [sentences[s]], add_special_tokens=True)[0]
        replaced += len(missing)
    if replaced and about is not None:
        where = f" of the {about} split" if about else ""
        print(
            f"warning: {replaced} word(s){where} the tokenizer turns into no token (U+FFFD, a lone "
            f"combining mark) read as its unknown token {unknown!r}, so their tags are trained "
            "and scored",
            file=sys.stderr,
            flush=True,
        )


def _tokenize(
    tokenizer: Any, sentences: list[list[str]], add_special_tokens: bool
) -> list[tuple[list[int], list[int | None]]]:
    """Sub-word ids and their word indices for sentences given as words."""
    if not getattr(tokenizer, "is_fast", False):
        raise DataError(
            f"token classification needs a fast tokenizer (for word alignment); "
            f"{type(tokenizer).__name__} is not one"
        )
    if _needs_word_space(tokenizer):
        sentences = [[" " + w for w in words] for words in sentences]
    enc = tokenizer(
        sentences,
        is_split_into_words=True,
        add_special_tokens=add_special_tokens,
        truncation=False,
        padding=False,
    )
    return [(list(enc["input_ids"][i]), enc.word_ids(i)) for i in range(len(sentences))]


def _needs_word_space(tokenizer: Any) -> bool:
    """True for a byte-level BPE tokenizer that reads a word given alone without the space
    before it (GPT-2, RoBERTa, Qwen2, SmolLM2 as shipped): in pre-training a word inside a
    sentence came with its space ("Ġword"), so each word of a tagged sentence is given one."""
    import json

    backend = getattr(tokenizer, "backend_tokenizer", None)
    pre = getattr(backend, "pre_tokenizer", None)
    if pre is None:
        return False
    try:
        state = json.loads(pre.__getstate__())
    except (TypeError, ValueError, AttributeError):
        return False
    stack = [state]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") == "ByteLevel" and node.get("add_prefix_space") is False:
                return True
            stack += list(node.values())
        elif isinstance(node, list):
            stack += node
    return False


def _specials(whole: list[tuple[list[int], list[int | None]]]) -> int:
    """Special tokens the tokenizer adds to one sentence (the same for every sentence)."""
    return sum(1 for w in whole[0][1] if w is None)


def _token_counts(word_ids: list[int | None], n_words: int) -> list[int]:
    counts = [0] * n_words
    for w in word_ids:
        if w is not None:
            counts[w] += 1
    return counts


def _windows(counts: list[int], room: int) -> list[tuple[int, int, int, int]]:
    """Overlapping word ranges that each fit ``room`` sub-word tokens.

    Returns (first word, end word, first owned word, end owned word) per window: consecutive
    windows overlap by about a quarter of ``room`` tokens, and the words of an overlap are split
    at its middle between the two, so every word is owned (scored) by exactly one window. A
    single word longer than ``room`` gets a window of its own, cut to ``room`` tokens."""
    room = max(1, room)
    overlap = room // 4
    n = len(counts)
    spans: list[list[int]] = []
    start = 0
    while start < n:
        end, used = start, 0
        while end < n and (used + counts[end] <= room or end == start):
            used += counts[end]
            end += 1
        spans.append([start, end])
        if end >= n:
            break
        nxt, back = end, 0
        while nxt - 1 > start and back + counts[nxt - 1] <= overlap:
            nxt -= 1
            back += counts[nxt]
        start = nxt
    out: list[tuple[int, int, int, int]] = []
    for k, (a, b) in enumerate(spans):
        own_from = 0 if k == 0 else (spans[k - 1][1] + a + 1) // 2
        own_to = n if k == len(spans) - 1 else (b + spans[k + 1][0] + 1) // 2
        out.append((a, b, own_from, own_to))
    return out


def collate_windows(encoded: TokenWindows, indices: Sequence[int], pad_id: int) -> dict[str, Any]:
    """Pad the chosen windows to the longest among them; labels pad with IGNORE."""
    import torch

    width = max(len(encoded.input_ids[i]) for i in indices)
    n = len(indices)
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    mask = torch.zeros((n, width), dtype=torch.long)
    labels = torch.full((n, width), IGNORE, dtype=torch.long)
    for row, i in enumerate(indices):
        seq = encoded.input_ids[i]
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1
        labels[row, : len(seq)] = torch.tensor(encoded.labels[i])
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def word_predictions(
    logits: torch.Tensor, indices: Sequence[int], encoded: TokenWindows
) -> list[tuple[int, list[tuple[int, int]]]]:
    """(sentence, [(word, predicted tag index)]) for each window of a batch."""
    best = logits.argmax(-1).tolist()
    out = []
    for row, i in enumerate(indices):
        out.append((encoded.sentence[i], [(w, best[row][pos]) for pos, w in encoded.scored[i]]))
    return out


def stitch(
    predictions: Sequence[tuple[int, list[tuple[int, int]]]], encoded: TokenWindows
) -> tuple[list[list[str]], list[list[str]]]:
    """Gold and predicted IOB2 tags per sentence; a word no window scored (one the tokenizer
    turns into no token at all) is predicted O."""
    names = encoded.label_names
    predicted: dict[int, list[str]] = {}
    for s, words in predictions:
        row = predicted.setdefault(s, ["O"] * len(encoded.gold[s]))
        for w, tag in words:
            row[w] = names[tag]
    order = sorted(predicted)
    return [encoded.gold[s] for s in order], [predicted[s] for s in order]
