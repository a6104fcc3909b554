"""Anonymised mode: the rules that take names and identifying details out of everything
derived from a recording. No IO of its own: the audio effects are `narratives.media.effects`,
the editors' marks `narratives.store.redactions`.

The terms to hide are the analysis stage's `entities` (people, places, other names, each with
its word times) plus the terms an editor marks (`store.redactions`). From them:

- **audio**: the intervals to bleep, from the transcript's word timestamps (a term matches a run
  of words as in the text, possessives included: "Rosalind's"), padded a little because
  word edges are estimates; `media.effects.bleep_audio` replaces them with a 1 kHz tone. The
  audio and the text hide the same words: a term the text matcher refuses ("St" alone) is not
  bleeped at its own times either;
- **text**: `redact_text` replaces each term with "[name]" ("[place]" for places), keeping a
  possessive ("[name]'s"); `anonymised_transcript` does it word by word, so captions generated
  from it (`captions.to_srt`/`to_webvtt`) are clean too; `redact_data` walks analysis records
  and draft content; `draft_leaks` finds what a draft still names;
- **video**: `render_replacements` and the intervals make the render's `Redactions`, and the
  voice disguise setting goes with them.

Every match is made by the one matcher, `narratives.policy.names` (folded case and accents,
possessives, spelled and initialled names, "St. Ives" = "St Ives"), by whole words only, never
substrings, so "Rosa" does not eat "Rosalind's" or "rosary". A person's full name also hides its
parts where capitalised ("Rosa Parks" hides a later "Rosa", not "the parks"); a found name that
is a common word is hidden as written ("Will", not "will"). `artefact_leaks` is the leak check
at publish: it reads what a draft would publish (texts and the captions file) with the same matcher.
`for_publication` is the one call render and drafting make: it returns the transcript and
analysis to work from, and the render redactions, whenever the narrator is anonymous (also when
no consent is recorded: that is the safe default).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from narratives.policy.consent import is_anonymous
from narratives.policy.names import EXACT, PART, expand, hidden_how, matcher
from narratives.records.common_words import SPELLED
from narratives.records.redactions import Redactions, Term
from narratives.records.transcript import Segment, Transcript, Word
from narratives.store.context import Context
from narratives.store.narrative_files import read_analysis
from narratives.store.redactions import marked_terms, voice_disguise, voice_mode

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
    "Leak",
    "leaks_in",
    "artefact_leaks",
]

#: Seconds added before and after a bleep: word edges from Whisper are estimates.
BLEEP_PAD = 0.06
#: Draft content keys holding paths and settings, not text.
_NOT_TEXT = frozenset({"video", "captions", "enclosure", "link", "aspect_ratio", "langs", "labels"})


def _as_terms(terms: Iterable[Term | str]) -> list[Term]:
    return [
        t if isinstance(t, Term) else Term(str(t))
        for t in terms
        if str(getattr(t, "text", t)).strip()
    ]


# ----------------------------------------------------------------------------- text


def redact_text(text: str, terms: Iterable[Term | str]) -> str:
    """Replace every term in `text` with its placeholder ("[name]", "[place]"): the one
    matcher, `policy.names`."""
    if not text:
        return text
    return matcher(_as_terms(terms)).redact(text)


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


@dataclass(frozen=True)
class Leak:
    """A hidden term still in a published artefact: which term, where, and the words around it."""

    term: str
    where: str
    excerpt: str

    def __str__(self) -> str:
        return f"“{self.term}” in {self.where}: “{self.excerpt}”"


def _texts(obj: Any, where: str) -> Iterator[tuple[str, str]]:
    """(where, text) of every string of a draft's content, paths and settings left out."""
    if isinstance(obj, str):
        yield where, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            if k in _NOT_TEXT:
                continue
            if k == "posts" and isinstance(v, list):
                for n, post in enumerate(v, 1):
                    yield from _texts(post, f"post {n}" if len(v) > 1 else "post")
            elif k == "text" and where:
                yield from _texts(v, where)
            else:
                label = {"alt": "alt text", "content_warning": "content warning"}.get(k, k)
                yield from _texts(v, f"{where} {label}".strip())
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _texts(v, where)


def leaks_in(texts: Iterable[tuple[str, str]], terms: Iterable[Term | str]) -> list[Leak]:
    """Every term found in the (where, text) pairs, with the words around it."""
    m = matcher(_as_terms(terms))
    out = []
    for where, text in texts:
        for hit in m.find(text):
            a, b = max(0, hit.start - 30), min(len(text), hit.end + 30)
            excerpt = " ".join(text[a:b].split())
            out.append(Leak(hit.term.text, where, excerpt))
    return out


def draft_leaks(content: Mapping[str, Any], terms: Iterable[Term | str]) -> list[str]:
    """The terms still present in a draft's texts (empty: nothing identifying left)."""
    return list(dict.fromkeys(leak.term for leak in leaks_in(_texts(content, ""), terms)))


def artefact_leaks(
    root: Path, content: Mapping[str, Any], terms: Iterable[Term | str]
) -> list[Leak]:
    """What a draft would publish that still names a hidden term: its texts (post text, alt
    text, feed item title, summary and content) and its captions file (the WebVTT beside the
    video, read from `root`, the workspace). A captions file that cannot be read is a leak
    too: what cannot be checked does not go out."""
    texts = list(_texts(content, ""))
    rel = content.get("captions")
    if rel:
        path = root / str(rel)
        try:
            texts.append((f"captions file {rel}", path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            return [Leak("(unreadable)", f"captions file {rel}", str(exc))]
    return leaks_in(texts, terms)


# ----------------------------------------------------------------------------- transcript


def _matches(words: Sequence[Word], terms: Sequence[Term]) -> Iterator[tuple[int, int, Term]]:
    """(first, last, term) index runs of `words` that spell a term (the one matcher)."""
    for run in matcher(terms).runs(words):
        yield run.first, run.last, run.term


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
    (from the analysis) is bleeped there too, when the matcher hides it at all.
    """
    terms = _as_terms(terms)
    spans: list[tuple[float, float]] = []
    words = transcript.words
    for i, j, _t in _matches(words, terms):
        spans.append((words[i].start, words[j].end))
    for t in terms:
        # Only a term the text matcher hides: what the text keeps the audio keeps ("St" alone
        # is neither bleeped nor hidden; the editor sees it as unsure).
        if t.start is not None and t.end is not None and t.end > t.start and hidden_how(t):
            spans.append((t.start, t.end))
    limit = transcript.duration or None
    padded = [(max(0.0, a - pad), min(limit, b + pad) if limit else b + pad) for a, b in spans]
    return _merge(padded)


def anonymised_transcript(transcript: Transcript, terms: Iterable[Term | str]) -> Transcript:
    """A copy with every term replaced: a run of words that spells one becomes one word
    "[name]" spanning their times (punctuation and a possessive kept), texts redacted. The
    words are read as one text, as `bleep_intervals` reads them, so a name spelled across two
    segments ("... D. M. I." | "T. R. I. ...") is hidden in both."""
    terms = _as_terms(terms)
    # Runs over the whole transcript, cut at segment ends: (segment, first, last) -> term.
    ends = []
    for seg in transcript.segments:
        ends.append((ends[-1] if ends else 0) + len(seg.words))
    local: dict[int, dict[int, tuple[int, Term]]] = {}
    for i, j, term in _matches(transcript.words, terms):
        for n, end in enumerate(ends):
            start = end - len(transcript.segments[n].words)
            a, b = max(i, start), min(j, end - 1)
            if a <= b:
                local.setdefault(n, {})[a - start] = (b - start, term)
    segments = []
    for n, seg in enumerate(transcript.segments):
        words = list(seg.words)
        runs = local.get(n, {})
        out: list[Word] = []
        i = 0
        while i < len(words):
            if i in runs:
                j, term = runs[i]
                first, last = words[i], words[j]
                joined = "".join(w.text for w in words[i : j + 1])
                probability = min(w.probability for w in words[i : j + 1])
                out.append(Word(first.start, last.end, _hidden(joined, terms, term), probability))
                i = j + 1
            else:
                # No term in it: a word alone could read otherwise ("green" has no capitals).
                out.append(words[i])
                i += 1
        text = redact_text(seg.text, terms)
        if runs and "".join(w.text for w in words) == seg.text:
            text = "".join(w.text for w in out)  # the same words as the captions
        segments.append(
            Segment(
                id=seg.id,
                start=seg.start,
                end=seg.end,
                text=text,
                words=out,
                avg_logprob=seg.avg_logprob,
                no_speech_prob=seg.no_speech_prob,
            )
        )
    return dataclasses.replace(transcript, segments=segments)


def _hidden(joined: str, terms: list[Term], term: Term) -> str:
    """The words of a run as one word: redacted, or (part of a name cut by a segment end, such
    as "T. R. I.") the placeholder with the words' space before and punctuation after."""
    text = redact_text(joined, terms)
    if text != joined:
        return text
    lead = joined[: len(joined) - len(joined.lstrip())]
    tail = re.search(r"[^\w\]]*$", joined).group(0)
    return f"{lead}{term.placeholder}{tail}"


def render_replacements(terms: Iterable[Term | str]) -> dict[str, str]:
    """Word → placeholder for `render.Redactions.replacements`, which replaces one word at a
    time: single-word terms and name parts only (a multi-word place like "New York" must not
    turn every "new" into "[place]"; give render the anonymised transcript for those)."""
    out: dict[str, str] = {}
    for keys, t in expand(_as_terms(terms)):
        if len(keys) != 1 or keys[0][:1] in (EXACT, SPELLED):
            # Matched as written or as spelled letters: one word alone cannot tell; render
            # has the anonymised transcript for those.
            continue
        key = keys[0].removeprefix(PART)  # a name's part: in any case, to be safe
        out[key] = t.placeholder
        out[f"{key}'s"] = f"{t.placeholder}'s"
        out[f"{key}’s"] = f"{t.placeholder}’s"
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
        if e.get("hide") is False:
            continue  # listed for the editor (the model overruled the heuristic), not hidden
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
    #: The narrator's own choice of voice ("disguised" or "synthetic"), or None for the
    #: campaign's (`policy.voice.published_voice`).
    voice_mode: str | None = None
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
        voice_mode=voice_mode(ctx, narrative_id),
        intervals=intervals,
    )
