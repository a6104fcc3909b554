"""The one matcher of names to hide: redaction (`policy.anonymise`) and the leak check at
publish use it over every text (post text, alt text, summaries, quotes, titles, captions, feed
items) and over a transcript's timed words (the bleeps, the captions' cues).

A text is read as tokens (letters and digits; an inner apostrophe stays: "O'Brien"), each
compared folded (no case, no accents: "Zoë", "ZOE", "zoe" are one word) with a possessive set
aside ("Rosa's" is "Rosa" plus "'s"). Runs of single letters are one token, so a name spelled
out ("D-M-I-T-R-I", "D. M. I. T. R. I.", "d m i t r i") or initialled ("J.R.", "J. R.", "JR")
reads the same as the word it spells. A term of several words matches them with only spaces,
hyphens or full stops between ("St. Ives" = "St Ives", "Zoë-Marie" = "Zoe Marie"). A spelled
name inside a longer run of letters is found too ("... d m i t r i i think").

What never matches on its own: a single letter, a common word, a title ("St", "Dr"); a spelled
run whose letters make one ("I. T.", "D. R.") is a name, matched only where it is spelled out
again, never as the word. The reading of texts and the rule of what may be hidden live in
`records.common_words`, so that the refusal of an editor's term judges as this matcher does. A
person's full name also hides its parts ("Rosa Parks" hides a later "Parks"), except those.
Matches never overlap; the longest wins ("Rosa Parks" before "Rosa").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache

from narratives.records.common_words import SPELLED, STOP_WORDS, Token, term_keys
from narratives.records.common_words import hideable as _hideable
from narratives.records.common_words import tokens as _tokens
from narratives.records.common_words import unit_key as _unit_key
from narratives.records.common_words import units as _units
from narratives.records.redactions import Term

__all__ = [
    "EXACT",
    "PART",
    "Match",
    "Matcher",
    "WordRun",
    "expand",
    "hidden_how",
    "keys_of",
    "letter_runs",
    "matcher",
]

#: Parts of a full name too common to hide on their own.
_PARTICLES = frozenset("de da del della di van von der den la le du dos das bin ibn al".split())
#: What may stand between the words of one name: spaces, hyphens, full stops.
_JOIN = re.compile(r"[\s.\-‐‑–]*")


@dataclass(frozen=True)
class Match:
    """A term found in a text: characters [start, end) hold the name (a possessive after it
    is in `possessive`, not in the span)."""

    start: int
    end: int
    term: Term
    possessive: str = ""

    @property
    def placeholder(self) -> str:
        return self.term.placeholder


@dataclass(frozen=True)
class WordRun:
    """Words first..last (inclusive) of a word list spell `term`."""

    first: int
    last: int
    term: Term


def keys_of(text: str) -> tuple[str, ...]:
    """The folded words of a term, a spelled or initialled run as one ("K. T. Smith" ->
    ("kt", "smith"); initials that make a common word or title are marked, "J. R." is
    (".jr",)); two terms with the same keys match the same text."""
    return term_keys(text)


def letter_runs(text: str, *, min_letters: int = 2) -> list[tuple[int, int, str]]:
    """(start, end, letters) of each run of single letters in `text` ("D. M. I. T. R. I.",
    "k-a-t-y-a", "J. R."): a spelled or initialled name, or part of one."""
    return [
        (u[0].start, u[-1].end, "".join(t.key for t in u))
        for u in _units(text, _tokens(text))
        if len(u) >= min_letters
    ]


#: Marks a key matched only as written, case and all ("Will", not "will").
EXACT = "="
#: Marks a name's part matched only where it is capitalised, or in a text without capitals.
PART = "^"


def _exact_name(t: Term, keys: tuple[str, ...]) -> bool:
    """A name the analysis found that is a common word ("Will" in "I met Will at the
    clinic"), written with a capital: hidden only where it is written so."""
    text = unicodedata.normalize("NFC", t.text.strip())
    return (
        t.source == "analysis"
        and len(keys) == 1
        and keys[0] in STOP_WORDS
        and text[:1].isupper()
        and len(_tokens(text)) == 1
    )


def hidden_how(term: Term) -> str | None:
    """How the matcher hides `term`: "folded" (any case), "as written" (a common word found
    as a name, `EXACT`), or None (never: one letter, a common word or a title alone)."""
    keys = keys_of(term.text)
    if keys and any(_hideable(k) for k in keys):
        return "folded"
    return "as written" if _exact_name(term, keys) else None


def expand(terms: Iterable[Term]) -> list[tuple[tuple[str, ...], Term]]:
    """(keys, term) for every term, plus the parts of a multi-word person's name (marked
    `PART`), and a detected name that is a common word as written (marked `EXACT`)."""
    out: dict[tuple[str, ...], Term] = {}
    for t in terms:
        keys = keys_of(t.text)
        if keys and _exact_name(t, keys):
            out.setdefault((EXACT + unicodedata.normalize("NFC", t.text.strip()),), t)
            continue
        if not keys or not any(_hideable(k) for k in keys):
            continue
        out.setdefault(keys, t)
        if len(keys) > 1:
            # A spelled name inside a longer term ("D. M. I. T. R. I. He") hides on its own.
            for start, end, _letters in letter_runs(t.text, min_letters=3):
                spelled = t.text[start:end]
                out.setdefault(keys_of(spelled), Term(spelled, t.kind, source=t.source))
        if t.kind in ("person", "name") and len(keys) > 1:
            for raw in re.split(r"[\s\-‐]+", t.text):
                part = keys_of(raw)
                if len(part) != 1 or not raw[:1].isupper():
                    continue
                k = part[0]
                if len(k) >= 3 and _hideable(k) and k not in _PARTICLES:
                    # "Mark Green" hides "Green", not "the green door".
                    name_part = Term(raw.strip(".,;:!?"), t.kind, source=t.source)
                    out.setdefault((PART + k,), name_part)
    return list(out.items())


class Matcher:
    """Finds the given terms in texts and word lists (see the module's docstring)."""

    def __init__(self, terms: Iterable[Term | str]):
        self.terms = [
            t if isinstance(t, Term) else Term(str(t))
            for t in terms
            if str(getattr(t, "text", t)).strip()
        ]
        self._expanded = sorted(
            expand(self.terms), key=lambda kt: (-len(kt[0]), -len("".join(kt[0])))
        )

    def __bool__(self) -> bool:
        return bool(self._expanded)

    def find(self, text: str) -> list[Match]:
        """Every term in `text`, in order, never overlapping (the longest first)."""
        if not text or not self._expanded:
            return []
        units = _units(text, _tokens(text))
        keys = [_unit_key(u) for u in units]
        # Within a name of several words, "JR Whitfield" is "J. R. Whitfield": only a key
        # alone must tell a spelled "I. T." from the word "it".
        plain = [key.lstrip(SPELLED) for key in keys]
        lower_text = _without_capitals(text)
        cands: list[tuple[int, int, Term, str]] = []
        for tkeys, term in self._expanded:
            k = len(tkeys)
            if k == 1 and tkeys[0][:1] in (EXACT, PART):
                cands += _marked(text, units, keys, tkeys[0], term, lower_text)
                continue
            want = list(tkeys) if k == 1 else [key.lstrip(SPELLED) for key in tkeys]
            have = keys if k == 1 else plain
            for i in range(len(units) - k + 1):
                if have[i] == want[0] and have[i : i + k] == want:
                    joins = all(
                        _JOIN.fullmatch(text[units[j][-1].end : units[j + 1][0].start])
                        for j in range(i, i + k - 1)
                    )
                    if joins:
                        last = units[i + k - 1][-1]
                        cands.append((units[i][0].start, last.end, term, last.poss))
                elif (
                    k == 1
                    and len(units[i]) > 1
                    and not tkeys[0].startswith(SPELLED)
                    and tkeys[0] in keys[i].lstrip(SPELLED)
                ):
                    # A spelled name inside a longer run of letters ("d m i t r i i think").
                    run, key = units[i], keys[i].lstrip(SPELLED)
                    at = key.find(tkeys[0])
                    while at >= 0:
                        a, b = run[at], run[at + len(tkeys[0]) - 1]
                        cands.append((a.start, b.end, term, b.poss))
                        at = key.find(tkeys[0], at + 1)
        chosen: list[tuple[int, int, Term, str]] = []
        for c in sorted(cands, key=lambda c: (-(c[1] - c[0]), c[0])):
            if all(c[1] <= o[0] or o[1] <= c[0] for o in chosen):
                chosen.append(c)
        return [Match(a, b, t, p) for a, b, t, p in sorted(chosen, key=lambda c: c[0])]

    def redact(self, text: str) -> str:
        """`text` with every term replaced by its placeholder ("[name]", "[place]"), a
        possessive kept ("[name]'s"), and the rest of a double-barrelled name taken along
        ("Zoë-Marie" with "Zoë" marked is "[name]")."""
        out, last = [], 0
        for m in self.find(text):
            if m.start < last:
                continue  # the rest of a double-barrelled name already replaced
            start, end, poss = _barrel_start(text, m.start, last), m.end, m.possessive
            if poss:
                end += len(poss)
            elif rest := _barrel_after(text, end):
                end, poss = rest
            out += [text[last:start], m.placeholder, poss]
            last = end
        out.append(text[last:])
        return "".join(out)

    def runs(self, words: Sequence[object]) -> list[WordRun]:
        """Runs of `words` (anything with a `.text`, such as transcript words) that spell a
        term: the words are read as one text, so spelled names split over many words, a name
        with its possessive, and "St." + "Ives" are found like in any text."""
        text, spans = _joined(words)
        out = []
        for m in self.find(text):
            over = [i for i, (a, b) in enumerate(spans) if a < m.end and m.start < b]
            if over:
                out.append(WordRun(over[0], over[-1], m.term))
        # Two matches in one word (rare) become one run.
        merged: list[WordRun] = []
        for r in out:
            if merged and r.first <= merged[-1].last:
                merged[-1] = WordRun(
                    merged[-1].first, max(r.last, merged[-1].last), merged[-1].term
                )
            else:
                merged.append(r)
        return merged


#: The rest of a hyphenated name after a hidden part ("-Marie", "-Marie's").
_BARREL_AFTER = re.compile(r"(?:[-‐][^\W\d_][^\W_]*)+(?P<poss>['’]s\b)?(?=\W|$)")
_BARREL_PART = re.compile(r"[-‐]([^\W\d_][^\W_]*)")
#: Words after a hyphen that describe the name, not continue it ("Dmitri-led").
_SUFFIXES = frozenset(
    """led based born run owned made style like ish esque era type free related inspired
    approved backed funded sized shaped""".split()
)


def _barrel_after(text: str, end: int) -> tuple[int, str] | None:
    """(end, possessive) of the rest of a double-barrelled name after a hidden part ("-Marie",
    "-marie"), up to a describing word or a common word ("Dmitri-led" keeps "-led")."""
    rest = _BARREL_AFTER.match(text, end)
    if not rest:
        return None
    stop = end
    for part in _BARREL_PART.finditer(text, end, rest.end() - len(rest.group("poss") or "")):
        word = part.group(1)
        if word.lower() in _SUFFIXES or word.lower() in STOP_WORDS:
            break
        stop = part.end()
    if stop == end:
        return None
    whole = stop == rest.end() - len(rest.group("poss") or "")
    return (rest.end(), rest.group("poss") or "") if whole else (stop, "")


def _without_capitals(text: str) -> bool:
    """Whether `text` has no capitals (an unpunctuated transcript) but for the word "I". A
    placeholder counts as a capital: "[name] loved the parks" is a redacted sentence."""
    if _PLACEHOLDER.search(text):
        return False
    return not any(c.isupper() for c in _PRONOUN_I.sub("", text))


_PRONOUN_I = re.compile(r"\bI(?=['’]|\b)")
_PLACEHOLDER = re.compile(r"\[(?:name|place)\]")


def _marked(
    text: str,
    units: list[list[Token]],
    keys: list[str],
    tkey: str,
    term: Term,
    lower_text: bool,
) -> list[tuple[int, int, Term, str]]:
    """Matches of an `EXACT` key (the word as written) or a `PART` key (the folded word,
    capitalised or in a text without capitals)."""
    out = []
    for unit, key in zip(units, keys, strict=True):
        if len(unit) != 1:
            continue
        tok = unit[0]
        written = unicodedata.normalize("NFC", text[tok.start : tok.end])
        if tkey[0] == EXACT:
            hit = written == tkey[1:]
        else:
            hit = key == tkey[1:] and (written[:1].isupper() or lower_text)
        if hit:
            out.append((tok.start, tok.end, term, tok.poss))
    return out


_BARREL_BEFORE = re.compile(r"(?:[^\W\d_][^\W_]*[-‐])+$")


def _barrel_start(text: str, start: int, floor: int) -> int:
    """Where a double-barrelled name ending at a hidden part starts ("Anne-" of "Anne-Zoë")."""
    m = _BARREL_BEFORE.search(text, floor, start)
    if m and (m.start() == 0 or not (text[m.start() - 1].isalnum())):
        return m.start()
    return start


def _joined(words: Sequence[object]) -> tuple[str, list[tuple[int, int]]]:
    parts, spans, pos = [], [], 0
    for w in words:
        t = str(getattr(w, "text", w))
        if parts and not t[:1].isspace():
            t = " " + t
        lead = len(t) - len(t.lstrip())
        parts.append(t)
        spans.append((pos + lead, pos + len(t)))
        pos += len(t)
    return "".join(parts), spans


@lru_cache(maxsize=64)
def _cached(terms: tuple[Term, ...]) -> Matcher:
    return Matcher(terms)


def matcher(terms: Iterable[Term | str]) -> Matcher:
    """A matcher for `terms` (cached: the same terms give the same matcher)."""
    return _cached(tuple(t if isinstance(t, Term) else Term(str(t)) for t in terms))
