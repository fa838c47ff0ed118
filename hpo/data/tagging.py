"""Token classification data as read: sentences of words and tags from CoNLL column files and
list columns, and the tagging schemes those tags are written in.

IO (bare types), IOB1 (the raw CoNLL-2003 files), IOB2, IOBES and BILOU are detected and turned
into IOB2: an ``I-`` that does not continue an entity of its own type starts one (``B-``),
``S-``/``U-`` become ``B-`` and ``E-``/``L-`` become ``I-``, and in IO a run of one type is one
entity. Splitting the sentences and loading a study's data is hpo/data/tokens.py.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo.errors import DataError

if TYPE_CHECKING:
    from hpo.config.spec import DataSection

DOCSTART = "-DOCSTART-"
_TAG = re.compile(r"^([BIESUL])[-_](.+)$")


@dataclass(frozen=True)
class Sentence:
    """One sentence as read: words, their tags as written, and where it came from."""

    tokens: list[str]
    tags: list[str]
    where: str  # "file.conll:12" or "train row 7", for error messages


# ---------------------------------------------------------------- reading


def read_conll(path: str | Path, encoding: str = "utf-8") -> list[Sentence]:
    """Sentences of a CoNLL column file: the token in the first column, the tag in the last.

    Columns are split at tabs when the line has one, else at whitespace. A blank line (or one
    of only whitespace) ends a sentence; ``-DOCSTART-`` lines are skipped."""
    path = Path(path)
    try:
        text = path.read_text(encoding=encoding)
    except UnicodeDecodeError:
        raise DataError(
            f'{path.name} is not valid {encoding}; set `data.encoding` (for example "latin-1")'
        ) from None
    sentences: list[Sentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            if tokens:
                sentences.append(Sentence(tokens, tags, f"{path.name}:{start}"))
            tokens, tags = [], []
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        parts = [p.strip() for p in parts if p.strip()]
        if parts[0] == DOCSTART:
            continue
        if len(parts) < 2:
            raise DataError(
                f"{path.name}:{number}: a token without a tag ({line.strip()!r}); a CoNLL line "
                "holds the token first and its tag last"
            )
        if not tokens:
            start = number
        tokens.append(parts[0])
        tags.append(parts[-1])
    if tokens:
        sentences.append(Sentence(tokens, tags, f"{path.name}:{start}"))
    return sentences


def read_table(table: Any, spec: DataSection, split: str) -> list[Sentence]:
    """Sentences of a ``datasets`` table with a list-of-words column and a list-of-tags column;
    integer tags take their names from the column's ``ClassLabel`` feature."""
    for key in ("tokens_column", "tags_column"):
        column = getattr(spec, key)
        if column not in table.column_names:
            raise DataError(
                f"`data.{key}` {column!r} is not a column of the {split} split; "
                f"its columns are: {', '.join(table.column_names)}"
            )
    names = _tag_names(table.features.get(spec.tags_column))
    out: list[Sentence] = []
    for i, (tokens, tags) in enumerate(
        zip(table[spec.tokens_column], table[spec.tags_column], strict=True)
    ):
        where = f"{split} row {i}"
        if not isinstance(tokens, list) or not isinstance(tags, list):
            raise DataError(
                f"{where}: `data.tokens_column` and `data.tags_column` must hold lists of words "
                f"and tags, got {type(tokens).__name__} and {type(tags).__name__}"
            )
        if tags and isinstance(tags[0], int) and not isinstance(tags[0], bool):
            if names is None:
                raise DataError(
                    f"{where}: tags are integers but `data.tags_column` {spec.tags_column!r} "
                    "has no tag names (a ClassLabel feature); store the tags as strings"
                )
            try:
                tags = [names[t] for t in tags]
            except (IndexError, TypeError):
                raise DataError(f"{where}: a tag index outside 0..{len(names) - 1}") from None
        if tokens or tags:  # an empty row carries nothing to learn or score
            out.append(Sentence([str(t) for t in tokens], [str(t) for t in tags], where))
    return out


def _tag_names(feature: Any) -> list[str] | None:
    """The names of a list-of-ClassLabel feature (``Sequence`` or ``List`` of ``ClassLabel``)."""
    inner = getattr(feature, "feature", None)
    names = getattr(inner, "names", None)
    return list(names) if names else None


# ---------------------------------------------------------------- tagging schemes


def detect_scheme(sentences: Sequence[Sentence]) -> str:
    """IO when no tag has a prefix (bare ``PER``, ``LOC``); IOBES or BILOU when their
    single/end tags occur; IOB1 when some entity starts with I-; else IOB2."""
    tagged = [t for s in sentences for t in s.tags if t != "O"]
    if tagged and not any(_TAG.match(t) for t in tagged):
        return "io"
    bare = next(
        ((s, i) for s in sentences for i, t in enumerate(s.tags) if t != "O" and not _TAG.match(t)),
        None,
    )
    if bare is not None:  # IO tags beside prefixed ones: no scheme reads both
        sentence, i = bare
        other = next(s for s in sentences if any(_TAG.match(t) for t in s.tags))
        prefixed = next(t for t in other.tags if _TAG.match(t))
        raise DataError(
            f"{sentence.where}: tag {sentence.tags[i]!r} at word {i + 1} "
            f"({sentence.tokens[i]!r}) has no B-/I- prefix (IO tags) while others have one "
            f"({prefixed!r}, {other.where}); write every file in one scheme, or set "
            "`data.tag_scheme`"
        )
    prefixes = {t[0] for t in tagged}
    if prefixes & {"U", "L"}:
        return "bilou"
    if prefixes & {"S", "E"}:
        return "iobes"
    for s in sentences:
        before = "O"
        for tag in s.tags:
            if tag.startswith("I-") and (before == "O" or before[2:] != tag[2:]):
                return "iob1"
            before = tag
    return "iob2"


def to_iob2(sentence: Sentence, scheme: str, detected: bool = True) -> list[str]:
    """The sentence's tags in IOB2; a tag that fits no scheme is a DataError naming it (and,
    where the scheme was ``detected`` rather than set, that `data.tag_scheme` can set it). In
    IO (bare entity types) a run of one type is one entity: two such entities side by side
    cannot be told apart there, and become one."""
    advice = ", or set `data.tag_scheme`" if detected else ""
    out: list[str] = []
    previous: str | None = None  # entity type of the word before, None after O
    for i, tag in enumerate(sentence.tags):
        if tag == "O":
            out.append("O")
            previous = None
            continue
        if scheme == "io":
            if _TAG.match(tag):
                raise DataError(
                    f"{sentence.where}: tag {tag!r} at word {i + 1} ({sentence.tokens[i]!r}) "
                    "has a B-/I- prefix, but other tags have none (IO tags): use one scheme "
                    f"throughout{advice}"
                )
            out.append(("I-" if previous == tag else "B-") + tag)
            previous = tag
            continue
        match = _TAG.match(tag)
        prefix = match.group(1) if match else ""
        allowed = "BI" if scheme in ("iob1", "iob2") else "BIES" if scheme == "iobes" else "BILU"
        if match is None or prefix not in allowed:
            schemes = {"BI": "IOB", "BIES": "IOBES", "BILU": "BILOU"}[allowed]
            raise DataError(
                f"{sentence.where}: invalid tag {tag!r} at word {i + 1} ({sentence.tokens[i]!r}); "
                f"{schemes} tags are O or {'/'.join(allowed)}- followed by the entity type"
                + (" (or set `data.tag_scheme`)" if detected else "")
            )
        kind = match.group(2)
        starts = prefix in "BSU" or previous != kind
        out.append(("B-" if starts else "I-") + kind)
        previous = None if prefix in "ESUL" else kind
    return out
