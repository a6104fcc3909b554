"""Anonymised mode: the rules that take names and identifying details out of everything
derived from a recording. No IO of its own: the audio effects are `narratives.media.effects`,
the editors' marks `narratives.store.redactions`.

The terms to hide are the analysis stage's `entities` (people, places, other names, each with
its word times) plus the terms an editor marks (`store.redactions`). From them:

- **audio**: the intervals to bleep, from the transcript's word timestamps (a term matches a run
  of words case-insensitively, possessives included: "Rosalind's"), padded a little because
  word edges are estimates; `media.effects.bleep_audio` replaces them with a 1 kHz tone;
- **text**: `redact_text` replaces each term with "[name]" ("[place]" for places), keeping a
  possessive ("[name]'s"); `anonymised_transcript` does it word by word, so captions generated
  from it (`captions.to_srt`/`to_webvtt`) are clean too; `redact_data` walks analysis records
  and draft content; `draft_leaks` finds what a draft still names;
- **video**: `render_replacements` and the intervals make the render's `Redactions`, and the
  voice disguise setting goes with them.

Matching is by whole words only, never substrings, so "Rosa" does not eat "Rosalind's" or
"rosary". A person's full name also hides its parts ("Rosa Parks" hides a later "Rosa").
`for_publication` is the one call render and drafting make: it returns the transcript and
analysis to work from, and the render redactions, whenever the narrator is anonymous (also when
no consent is recorded: that is the safe default).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from narratives.policy.consent import is_anonymous
from narratives.records.redactions import Redactions, Term, bare, fold, norm_word, term_words
from narratives.records.transcript import Segment, Transcript, Word
from narratives.store.context import Context
from narratives.store.narrative_files import read_analysis
from narratives.store.redactions import marked_terms, voice_disguise

__all__ = [
    "Publication",
    "analysis_terms",
    "terms_for",
    "redact_text",
    "redact_data",
    "redact_draft",
    "redact_analysis",
    "bleep_intervals",
    "anonymised_transcript",
    "render_replacements",
    "for_publication",
    "draft_leaks",
]

#: Seconds added before and after a bleep: word edges from Whisper are estimates.
BLEEP_PAD = 0.06
#: Parts of a full name too common to hide on their own.
_NAME_PARTICLES = frozenset(
    "de da del della di van von der den la le du dos das bin ibn al".split()
)
#: Draft content keys holding paths and settings, not text.
_NOT_TEXT = frozenset({"video", "captions", "enclosure", "link", "aspect_ratio", "langs", "labels"})


def _as_terms(terms: Iterable[Term | str]) -> list[Term]:
    return [
        t if isinstance(t, Term) else Term(str(t))
        for t in terms
        if str(getattr(t, "text", t)).strip()
    ]


# ----------------------------------------------------------------------------- words


#: What follows a name inside a word: a possessive, then punctuation ("Rosalind's," → "'s", ",").
_ENDING = re.compile(r"(['’]s|(?<=s)['’])?([^\w'’]*)$", re.IGNORECASE)


def _expand(terms: Iterable[Term]) -> list[Term]:
    """The terms plus the parts of multi-word person names (each part identifies too)."""
    out: dict[tuple[str, ...], Term] = {}
    for t in terms:
        words = tuple(term_words(t.text))
        if not words:
            continue
        out.setdefault(words, t)
        if t.kind in ("person", "name") and len(words) > 1:
            for raw in t.text.split():
                core = bare(raw)
                w = norm_word(raw)
                if len(w) >= 3 and core[:1].isupper() and w not in _NAME_PARTICLES:
                    out.setdefault((w,), Term(core, t.kind, source=t.source))
    return list(out.values())


# ----------------------------------------------------------------------------- text


def _pattern(terms: Sequence[Term]) -> tuple[re.Pattern[str], dict[str, str]] | None:
    """One alternation, longest first, so a full name wins over its parts in one pass."""
    expanded = _expand(terms)
    if not expanded:
        return None
    table: dict[str, str] = {}
    alts = []
    for t in sorted(expanded, key=lambda t: -len(" ".join(term_words(t.text)))):
        words = term_words(t.text)
        key = " ".join(words)
        if key in table:
            continue
        table[key] = t.placeholder
        alts.append(r"[\s\-]+".join(re.escape(w) for w in words))
    body = "|".join(alts)
    return re.compile(rf"(?<!\w)(?P<term>{body})(?P<poss>['’]s|(?<=s)['’])?(?!\w)", re.I), table


#: The rest of a hyphenated name after a hidden part ("-Marie", "-Marie's").
_BARREL = re.compile(r"(?:[-‐][^\W\d_][^\W_]*)+(?P<poss>['’]s\b)?(?=\W|$)")


def redact_text(text: str, terms: Iterable[Term | str]) -> str:
    """Replace every term in `text` with its placeholder ("[name]", "[place]")."""
    if not text:
        return text
    compiled = _pattern(_as_terms(terms))
    if compiled is None:
        return text
    pattern, table = compiled
    # Match on the folded text (no case, no accents), replace in the original: `index` maps
    # each folded character back to the original one it came from.
    folded_parts, index = [], []
    for i, ch in enumerate(text):
        f = fold(ch)
        folded_parts.append(f)
        index.extend([i] * len(f))
    folded = "".join(folded_parts)
    index.append(len(text))
    out, last = [], 0
    for m in pattern.finditer(folded):
        start, end = index[m.start()], index[m.end()]
        if start < last:
            continue  # inside a double-barrelled name already replaced
        key = " ".join(term_words(m.group("term")))
        poss = text[index[m.start("poss")] : end] if m.group("poss") else ""
        if not poss:
            # "Zoë-Marie": the rest of a double-barrelled name identifies as much.
            rest = _BARREL.match(text, end)
            if rest:
                end = rest.end()
                poss = rest.group("poss") or ""
        out += [text[last:start], table.get(key, "[name]"), poss]
        last = end
    out.append(text[last:])
    return "".join(out)


def redact_data(obj: Any, terms: Iterable[Term | str], *, skip: Iterable[str] = ()) -> Any:
    """A copy of a JSON-like value with every string redacted (keys in `skip` left as they are)."""
    terms = _as_terms(terms)
    skip = frozenset(skip)

    def walk(v: Any) -> Any:
        if isinstance(v, str):
            return redact_text(v, terms)
        if isinstance(v, Mapping):
            return {k: (val if k in skip else walk(val)) for k, val in v.items()}
        if isinstance(v, list | tuple):
            return [walk(x) for x in v]
        return v

    return walk(obj)


def redact_draft(content: Mapping[str, Any], terms: Iterable[Term | str]) -> dict[str, Any]:
    """Draft content (Bluesky or RSS) with its texts redacted; paths and settings untouched."""
    return redact_data(dict(content), terms, skip=_NOT_TEXT)


def redact_analysis(analysis: Mapping[str, Any], terms: Iterable[Term | str]) -> dict[str, Any]:
    """An analysis record (`Analysis.to_dict()`) fit to publish from: every text redacted and
    the entity list emptied (it is the list of what to hide)."""
    out = redact_data(dict(analysis), terms, skip=("entities",))
    out["entities"] = []
    return out


def draft_leaks(content: Mapping[str, Any], terms: Iterable[Term | str]) -> list[str]:
    """The terms still present in a draft's texts (empty: nothing identifying left)."""
    terms = _as_terms(terms)
    found = []
    for t in _expand(terms):
        if redact_draft(content, [t]) != redact_draft(content, []):
            found.append(t.text)
    return found


# ----------------------------------------------------------------------------- transcript


def _matches(words: Sequence[Word], terms: Sequence[Term]) -> Iterator[tuple[int, int, Term]]:
    """(first, last, term) index runs of `words` that spell a term, longest terms first,
    never overlapping."""
    normed = [norm_word(w.text) for w in words]
    taken = [False] * len(words)
    for t in sorted(_expand(terms), key=lambda t: -len(term_words(t.text))):
        seq = term_words(t.text)
        k = len(seq)
        for i in range(len(words) - k + 1):
            if normed[i : i + k] == seq and not any(taken[i : i + k]):
                for j in range(i, i + k):
                    taken[j] = True
                yield i, i + k - 1, t


def _merge(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out: list[list[float]] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1][1] = max(out[-1][1], b)
        else:
            out.append([a, b])
    return [(round(a, 3), round(b, 3)) for a, b in out]


def bleep_intervals(
    transcript: Transcript, terms: Iterable[Term | str], *, pad: float = BLEEP_PAD
) -> list[tuple[float, float]]:
    """Sorted, merged (start, end) seconds where a term is spoken, padded by `pad` each side.

    Terms are matched against the transcript's words; a term that carries its own times
    (from the analysis) is bleeped there too.
    """
    terms = _as_terms(terms)
    spans: list[tuple[float, float]] = []
    words = transcript.words
    for i, j, _t in _matches(words, terms):
        spans.append((words[i].start, words[j].end))
    for t in terms:
        if t.start is not None and t.end is not None and t.end > t.start:
            spans.append((t.start, t.end))
    limit = transcript.duration or None
    padded = [(max(0.0, a - pad), min(limit, b + pad) if limit else b + pad) for a, b in spans]
    return _merge(padded)


def anonymised_transcript(transcript: Transcript, terms: Iterable[Term | str]) -> Transcript:
    """A copy with every term replaced: a run of words that spells one becomes one word
    "[name]" spanning their times (punctuation and a possessive kept), texts redacted."""
    terms = _as_terms(terms)
    segments = []
    for seg in transcript.segments:
        words = list(seg.words)
        runs = {i: (j, t) for i, j, t in _matches(words, terms)}
        out: list[Word] = []
        i = 0
        while i < len(words):
            if i in runs:
                j, t = runs[i]
                first, last = words[i], words[j]
                lead = first.text[: len(first.text) - len(first.text.lstrip())]
                m = _ENDING.search(last.text.strip())
                poss, tail = (m.group(1) or "", m.group(2)) if m else ("", "")
                probability = min(w.probability for w in words[i : j + 1])
                out.append(
                    Word(first.start, last.end, f"{lead}{t.placeholder}{poss}{tail}", probability)
                )
                i = j + 1
            else:
                w = words[i]
                out.append(dataclasses.replace(w, text=redact_text(w.text, terms)))
                i += 1
        segments.append(
            Segment(
                id=seg.id,
                start=seg.start,
                end=seg.end,
                text=redact_text(seg.text, terms),
                words=out,
                avg_logprob=seg.avg_logprob,
                no_speech_prob=seg.no_speech_prob,
            )
        )
    return dataclasses.replace(transcript, segments=segments)


def render_replacements(terms: Iterable[Term | str]) -> dict[str, str]:
    """Word → placeholder for `render.Redactions.replacements`, which replaces one word at a
    time: single-word terms and name parts only (a multi-word place like "New York" must not
    turn every "new" into "[place]"; give render the anonymised transcript for those)."""
    out: dict[str, str] = {}
    for t in _expand(_as_terms(terms)):
        words = term_words(t.text)
        if len(words) != 1:
            continue
        out[words[0]] = t.placeholder
        out[f"{words[0]}'s"] = f"{t.placeholder}'s"
        out[f"{words[0]}’s"] = f"{t.placeholder}’s"
    return out


# ----------------------------------------------------------------------------- a narrative's terms


def analysis_terms(analysis: Mapping[str, Any] | Any | None) -> list[Term]:
    """The analysis record's entities (dict from analysis.json, or an `Analysis`) as terms."""
    if analysis is None:
        return []
    entities = (
        analysis.get("entities") if isinstance(analysis, Mapping) else analysis.entities
    ) or []
    out = []
    for e in entities:
        e = e if isinstance(e, Mapping) else dataclasses.asdict(e)
        if str(e.get("text") or "").strip():
            out.append(
                Term(e["text"], e.get("kind") or "name", e.get("start"), e.get("end"), "analysis")
            )
    return out


def terms_for(ctx: Context, narrative_id: str) -> list[Term]:
    """Everything to hide for a narrative: the analysis entities and the editors' terms."""
    analysis = read_analysis(ctx.workspace, narrative_id)
    return analysis_terms(analysis) + marked_terms(ctx, narrative_id)


# ----------------------------------------------------------------------------- one call


@dataclass
class Publication:
    """What render and drafting should work from. When `anonymous`, `transcript` and
    `analysis` are the anonymised copies and `redactions` the render's bleeps."""

    anonymous: bool
    transcript: Transcript
    analysis: dict[str, Any]
    terms: list[Term] = field(default_factory=list)
    #: The render's bleeps and caption replacements, or None when nothing is hidden.
    redactions: Redactions | None = None
    #: Semitones to shift the voice by in the video, or None.
    voice_semitones: float | None = None
    #: Source intervals bleeped (the same as `redactions.intervals`).
    intervals: list[tuple[float, float]] = field(default_factory=list)


def for_publication(
    ctx: Context,
    narrative_id: str,
    transcript: Transcript,
    analysis: Mapping[str, Any] | None,
) -> Publication:
    """The transcript and analysis to derive public things from, anonymised when the narrator
    must stay anonymous (the default, including when no consent is recorded)."""
    analysis = dict(analysis or {})
    with ctx.db.connect() as conn:
        anonymous = is_anonymous(conn, narrative_id)
    if not anonymous:
        return Publication(False, transcript, analysis)
    terms = analysis_terms(analysis) + marked_terms(ctx, narrative_id)
    intervals = bleep_intervals(transcript, terms)
    return Publication(
        anonymous=True,
        transcript=anonymised_transcript(transcript, terms),
        analysis=redact_analysis(analysis, terms),
        terms=terms,
        redactions=Redactions(intervals=intervals, replacements=render_replacements(terms)),
        voice_semitones=voice_disguise(ctx, narrative_id),
        intervals=intervals,
    )
