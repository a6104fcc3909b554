"""Words that are never a name to hide on their own: English function words, titles and
abbreviations, nationality words. Data, how the matcher reads a text (`tokens`, `units`,
`term_keys`: words folded, a spelled run as one) and one rule of what may be hidden
(`hideable`), shared by the editors' marks (`term_problem`: `store.redactions` refuses such a
term with the reason), the matcher (`policy.names`) and the detectors, so that a term accepted
here is a term the matcher hides.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from narratives.records.redactions import fold

__all__ = [
    "STOP_WORDS",
    "TITLES",
    "NATIONALITIES",
    "SPELLED",
    "Token",
    "hideable",
    "term_keys",
    "term_problem",
    "tokens",
    "unit_key",
    "units",
]

#: Function words: hiding one would blank every "will", "may" or "and" of a text.
STOP_WORDS = frozenset(
    """a about above after again against all am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it
    its itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them
    themselves then there these they this those through to too under until up very was we were
    what when where which while who whom why will with would you your yours yourself
    yourselves may might must shall also yes oh um uh ok okay like well""".split()
)
#: Titles and abbreviations that go before a name ("St. Ives", "Dr. Okafor"): a name's part,
#: never a name alone.
TITLES = frozenset("st mr mrs ms mx dr prof sr jr sir madam mt ft".split())
#: Nationality and language words: public descriptions, hidden only when an editor marks one.
NATIONALITIES = frozenset(
    """american british english scottish welsh irish french german spanish italian polish
    portuguese dutch chinese japanese indian pakistani nigerian ghanaian kenyan mexican
    canadian australian european african asian muslim christian catholic jewish hindu sikh
    buddhist""".split()
)


# ----------------------------------------------------------------------------- reading a text
# How the matcher (`policy.names`) reads texts and terms, here so that `term_problem` judges a
# term exactly as the matcher will.

#: A letter or digit with any combining marks after it (a "Zoë" typed as e + U+0308).
_CHAR = r"[^\W_][\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]*"
_TOKEN = re.compile(rf"(?:{_CHAR})+(?:['’](?:{_CHAR})+)*")
_POSSESSIVE = re.compile(r"['’]s$", re.IGNORECASE)
#: What may stand between the letters of a spelled name.
SPELL_JOIN = re.compile(r"[\s.\-‐‑–,]*")
#: Marks the key of a spelled run whose letters make a common word or title ("I. T.", "D. R."):
#: it matches only another spelled run ("I.T.", "i t"), never the word ("it", "Dr").
SPELLED = "."


@dataclass(frozen=True)
class Token:
    start: int
    end: int
    key: str
    #: The possessive after the name ("'s", or "'" after an s), already outside `end`.
    poss: str = ""


def _key(token: str) -> str:
    return fold(unicodedata.normalize("NFC", token)).replace("'", "").replace("’", "")


def tokens(text: str) -> list[Token]:
    """The words of `text` (letters and digits; an inner apostrophe stays), folded, with a
    possessive set aside."""
    out = []
    for m in _TOKEN.finditer(text):
        word, start, end = m.group(0), m.start(), m.end()
        poss = ""
        p = _POSSESSIVE.search(word)
        if p and len(word) > 2:
            word, end, poss = word[: p.start()], start + p.start(), word[p.start() :]
        elif word[-1:].lower() == "s" and text[end : end + 1] in ("'", "’"):
            poss = text[end]
        key = _key(word)
        if key:
            out.append(Token(start, end, key, poss))
    return out


def units(text: str, toks: list[Token]) -> list[list[Token]]:
    """Tokens grouped: a run of single letters joined only by spaces, dots, hyphens or commas
    is one unit (a spelled or initialled name); any other token is a unit of its own."""
    out: list[list[Token]] = []
    for t in toks:
        prev = out[-1] if out else None
        if (
            prev is not None
            and len(t.key) == 1
            and len(prev[-1].key) == 1
            and not prev[-1].poss
            and SPELL_JOIN.fullmatch(text[prev[-1].end : t.start])
        ):
            prev.append(t)
        else:
            out.append([t])
    return out


def _word_hideable(key: str) -> bool:
    return len(key) > 1 and key not in STOP_WORDS and key not in TITLES


def unit_key(unit: list[Token]) -> str:
    """A unit's key: its letters; a spelled run that makes a common word or title ("I. T.")
    marked `SPELLED`, so that it is a name of its own and not the word."""
    letters = "".join(t.key for t in unit)
    if len(unit) > 1 and not _word_hideable(letters):
        return SPELLED + letters
    return letters


def hideable(key: str) -> bool:
    """Whether a unit key may be hidden on its own: not one letter, a common word or a title
    (a spelled run is, even when its letters make one: "I. T." is hidden, "it" never)."""
    return key.startswith(SPELLED) or _word_hideable(key)


def term_keys(text: str) -> tuple[str, ...]:
    """The unit keys of a term, as the matcher reads it ("J. R. Smith" -> ("jr", "smith"))."""
    return tuple(unit_key(u) for u in units(text, tokens(text)))


def term_problem(text: str) -> str | None:
    """Why `text` cannot be a term to hide (None: it can): one letter, or only common words or
    titles. Judged on the keys the matcher reads (`term_keys`), so a term accepted here is a
    term the matcher hides, and one it would ignore is refused."""
    keys = term_keys(text)
    if not keys:
        return "give a word or name to hide"
    if any(hideable(k) for k in keys):
        return None
    words = [k for k in keys if k]
    if len("".join(words)) == 1:
        return (
            f"“{text.strip()}” is a single letter: hiding it would blank that letter "
            "everywhere; mark the whole name (spelled-out names like “D. M. I. T. R. I.” are "
            "fine)"
        )
    if all(w in TITLES for w in words):
        return (
            f"“{text.strip()}” is a title or abbreviation, not a name; mark the whole name "
            "(e.g. “St. Ives”, “Dr. Okafor”)"
        )
    common = next((w for w in words if w in STOP_WORDS), words[0])
    return (
        f"“{text.strip()}” is a common word: hiding it would blank every “{common}” in "
        "the texts; mark the full name instead (e.g. with a surname)"
    )
