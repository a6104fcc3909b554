"""What an anonymised narrative hides: the terms (names, places) anonymisation works from and
the editors mark, and the `Redactions` it hands the renderer, so neither needs the other.

`term_words` is the one rule for when two spellings are the same term ("Zoë", "ZOE", "zoe's"):
it keys the marked terms in `redactions.json` and every match anonymisation makes.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "PLACEHOLDERS",
    "Redactions",
    "Term",
    "bare",
    "fold",
    "norm_word",
    "placeholder",
    "term_words",
]

#: Entity kind → what replaces it in text.
PLACEHOLDERS = {"person": "[name]", "name": "[name]", "place": "[place]"}

_EDGE = re.compile(r"^[^\w]+|[^\w]+$")
_POSSESSIVE = re.compile(r"['’]s$|(?<=s)['’]$", re.IGNORECASE)


def placeholder(kind: str) -> str:
    return PLACEHOLDERS.get(kind, "[name]")


@dataclass(frozen=True)
class Term:
    """Something to hide: its text, its kind (person | place | name) and, when it came from
    the analysis, where it is spoken (seconds)."""

    text: str
    kind: str = "name"
    start: float | None = None
    end: float | None = None
    #: analysis | editor
    source: str = "editor"

    @property
    def placeholder(self) -> str:
        return placeholder(self.kind)


def fold(text: str) -> str:
    """Casefolded, without accents, in one Unicode form: "Zoë", "ZOE", "Zoe" and a "Zoë"
    typed with a combining diaeresis are the same name."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def bare(token: str) -> str:
    """`token` without punctuation at its edges."""
    return _EDGE.sub("", token)


def norm_word(token: str) -> str:
    """Folded word (see `fold`) without edge punctuation or a possessive ending."""
    t = _EDGE.sub("", unicodedata.normalize("NFC", token.strip()))
    t = _POSSESSIVE.sub("", t)
    return fold(_EDGE.sub("", t))


def term_words(text: str) -> list[str]:
    """The normalised words of a term: two terms with the same words are one term."""
    return [w for w in (norm_word(p) for p in re.split(r"[\s]+", text)) if w]


@dataclass(frozen=True)
class Redactions:
    """What an anonymised narrative hides: audio intervals (source seconds) bleeped with a
    1 kHz tone, and caption words replaced (matched case-insensitively, punctuation kept)."""

    intervals: Sequence[tuple[float, float]] = ()
    replacements: Mapping[str, str] = field(default_factory=dict)

    def replace(self, text: str) -> str:
        if not self.replacements:
            return text
        table = {k.casefold(): v for k, v in self.replacements.items()}

        def sub(m: re.Match[str]) -> str:
            return table.get(m.group(0).casefold(), m.group(0))

        return re.sub(r"\w+(?:['’]\w+)*", sub, text)
