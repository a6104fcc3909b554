"""Anonymised mode: names and identifying details out of everything derived from a recording.

The terms to hide are the analysis stage's `entities` (people, places, other names, each with
its word times) plus the terms an editor marks, stored per narrative in
`media/work/<id>/redactions.json` (written atomically; read-modify-write under a file lock, so
the web app and the CLI can both add terms). From them:

- **audio**: the intervals to bleep, from the transcript's word timestamps (a term matches a run
  of words case-insensitively, possessives included: "Rosalind's"), padded a little because
  word edges are estimates; `bleep_audio` replaces them with a 1 kHz tone;
- **text**: `redact_text` replaces each term with "[name]" ("[place]" for places), keeping a
  possessive ("[name]'s"); `anonymised_transcript` does it word by word, so captions generated
  from it (`captions.to_srt`/`to_webvtt`) are clean too; `redact_data` walks analysis records
  and draft content;
- **files**: `strip_metadata` drops container and stream metadata (titles, artist, GPS, device,
  dates), and `bleep_audio`/`disguise_voice` never copy it in the first place;
- **voice**: `disguise_voice` shifts the pitch (FFmpeg's `rubberband` filter when it is built
  in, else `asetrate` + `atempo`, which keeps the duration).

Matching is by whole words only, never substrings, so "Rosa" does not eat "Rosalind's" or
"rosary". A person's full name also hides its parts ("Rosa Parks" hides a later "Rosa").
`for_publication` is the one call render and drafting make: it returns the transcript and
analysis to work from, and the render redactions, whenever the narrator is anonymous (also when
no consent is recorded: that is the safe default).
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import re
import shutil
import subprocess
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from narratives.core.errors import BadRecording, NarrativesError, UsageError
from narratives.core.files import atomic_write_json
from narratives.records.redactions import Redactions
from narratives.records.transcript import Segment, Transcript, Word
from narratives.store import audit
from narratives.store.context import Context
from narratives.store.schema import utcnow

__all__ = [
    "PLACEHOLDERS",
    "REDACTIONS_FILE",
    "Term",
    "Publication",
    "placeholder",
    "analysis_terms",
    "marked_terms",
    "mark_term",
    "unmark_term",
    "voice_disguise",
    "set_voice_disguise",
    "terms_for",
    "redact_text",
    "redact_data",
    "redact_draft",
    "redact_analysis",
    "bleep_intervals",
    "anonymised_transcript",
    "render_replacements",
    "for_publication",
    "bleep_samples",
    "bleep_audio",
    "strip_metadata",
    "disguise_voice",
    "disguise_samples",
    "draft_leaks",
]

REDACTIONS_FILE = "redactions.json"
#: Entity kind → what replaces it in text.
PLACEHOLDERS = {"person": "[name]", "name": "[name]", "place": "[place]"}
#: Seconds added before and after a bleep: word edges from Whisper are estimates.
BLEEP_PAD = 0.06
TONE_LEVEL = 0.3
_RAMP = 0.005
#: Parts of a full name too common to hide on their own.
_NAME_PARTICLES = frozenset(
    "de da del della di van von der den la le du dos das bin ibn al".split()
)
#: Draft content keys holding paths and settings, not text.
_NOT_TEXT = frozenset({"video", "captions", "enclosure", "link", "aspect_ratio", "langs", "labels"})


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


def _as_terms(terms: Iterable[Term | str]) -> list[Term]:
    return [
        t if isinstance(t, Term) else Term(str(t))
        for t in terms
        if str(getattr(t, "text", t)).strip()
    ]


# ----------------------------------------------------------------------------- words


_EDGE = re.compile(r"^[^\w]+|[^\w]+$")
_POSSESSIVE = re.compile(r"['’]s$|(?<=s)['’]$", re.IGNORECASE)


#: What follows a name inside a word: a possessive, then punctuation ("Rosalind's," → "'s", ",").
_ENDING = re.compile(r"(['’]s|(?<=s)['’])?([^\w'’]*)$", re.IGNORECASE)


def _fold(text: str) -> str:
    """Casefolded, without accents, in one Unicode form: "Zoë", "ZOE", "Zoe" and a "Zoë"
    typed with a combining diaeresis are the same name."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _norm(token: str) -> str:
    """Folded word (see `_fold`) without edge punctuation or a possessive ending."""
    t = _EDGE.sub("", unicodedata.normalize("NFC", token.strip()))
    t = _POSSESSIVE.sub("", t)
    return _fold(_EDGE.sub("", t))


def _term_words(text: str) -> list[str]:
    return [w for w in (_norm(p) for p in re.split(r"[\s]+", text)) if w]


def _expand(terms: Iterable[Term]) -> list[Term]:
    """The terms plus the parts of multi-word person names (each part identifies too)."""
    out: dict[tuple[str, ...], Term] = {}
    for t in terms:
        words = tuple(_term_words(t.text))
        if not words:
            continue
        out.setdefault(words, t)
        if t.kind in ("person", "name") and len(words) > 1:
            for raw in t.text.split():
                core = _EDGE.sub("", raw)
                w = _norm(raw)
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
    for t in sorted(expanded, key=lambda t: -len(" ".join(_term_words(t.text)))):
        words = _term_words(t.text)
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
        f = _fold(ch)
        folded_parts.append(f)
        index.extend([i] * len(f))
    folded = "".join(folded_parts)
    index.append(len(text))
    out, last = [], 0
    for m in pattern.finditer(folded):
        start, end = index[m.start()], index[m.end()]
        if start < last:
            continue  # inside a double-barrelled name already replaced
        key = " ".join(_term_words(m.group("term")))
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
    normed = [_norm(w.text) for w in words]
    taken = [False] * len(words)
    for t in sorted(_expand(terms), key=lambda t: -len(_term_words(t.text))):
        seq = _term_words(t.text)
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
        words = _term_words(t.text)
        if len(words) != 1:
            continue
        out[words[0]] = t.placeholder
        out[f"{words[0]}'s"] = f"{t.placeholder}'s"
        out[f"{words[0]}’s"] = f"{t.placeholder}’s"
    return out


# ----------------------------------------------------------------------------- storage


def _path(ctx: Context, narrative_id: str) -> Path:
    return ctx.workspace.narrative_dir(narrative_id) / REDACTIONS_FILE


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"terms": [], "voice": None}
    except (OSError, ValueError) as exc:
        raise NarrativesError(f"{path}: cannot read the marked terms: {exc}") from None
    data.setdefault("terms", [])
    data.setdefault("voice", None)
    return data


@contextmanager
def _locked(ctx: Context, narrative_id: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """Read-modify-write of redactions.json under an exclusive lock; written atomically."""
    path = _path(ctx, narrative_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(f".{REDACTIONS_FILE}.lock"), "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            data = _read(path)
            yield path, data
            atomic_write_json(path, data)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def marked_terms(ctx: Context, narrative_id: str) -> list[Term]:
    """The terms editors marked for this narrative."""
    data = _read(_path(ctx, narrative_id))
    return [Term(t["text"], t.get("kind", "name"), source="editor") for t in data["terms"]]


def _audit(ctx: Context, narrative_id: str, actor: str, action: str, before, after) -> None:
    with ctx.db.begin() as conn:
        audit.record(
            conn,
            actor=actor,
            action=action,
            object_type="narrative",
            object_id=narrative_id,
            before=before,
            after=after,
        )


def mark_term(
    ctx: Context, narrative_id: str, text: str, *, kind: str = "name", actor: str
) -> list[Term]:
    """Mark a name or detail to hide (idempotent); returns the marked terms."""
    text = " ".join(text.split())
    if not _term_words(text):
        raise UsageError("give a word or name to hide")
    if kind not in PLACEHOLDERS:
        raise UsageError(f"kind must be one of {', '.join(PLACEHOLDERS)}")
    with _locked(ctx, narrative_id) as (_, data):
        key = _term_words(text)
        if not any(_term_words(t["text"]) == key for t in data["terms"]):
            data["terms"].append(
                {"text": text, "kind": kind, "added_by": actor, "added_at": utcnow().isoformat()}
            )
            changed = True
        else:
            changed = False
    if changed:
        _audit(ctx, narrative_id, actor, "redaction.add", None, {"text": text, "kind": kind})
    return marked_terms(ctx, narrative_id)


def unmark_term(ctx: Context, narrative_id: str, text: str, *, actor: str) -> list[Term]:
    """Stop hiding a term an editor marked (analysis entities stay hidden)."""
    key = _term_words(text)
    with _locked(ctx, narrative_id) as (_, data):
        gone = [t for t in data["terms"] if _term_words(t["text"]) == key]
        data["terms"] = [t for t in data["terms"] if _term_words(t["text"]) != key]
    if gone:
        _audit(ctx, narrative_id, actor, "redaction.remove", gone[0], None)
    return marked_terms(ctx, narrative_id)


def voice_disguise(ctx: Context, narrative_id: str) -> float | None:
    """Semitones to shift the published voice by, or None for no disguise."""
    voice = _read(_path(ctx, narrative_id)).get("voice")
    return float(voice["semitones"]) if voice else None


def set_voice_disguise(
    ctx: Context, narrative_id: str, semitones: float | None, *, actor: str
) -> None:
    """Disguise the voice in published videos by `semitones` (None: off). Takes effect when
    the videos are rendered again."""
    if semitones is not None and not (-12 <= semitones <= 12 and semitones != 0):
        raise UsageError("the pitch shift must be between -12 and 12 semitones, and not 0")
    with _locked(ctx, narrative_id) as (_, data):
        before = data.get("voice")
        data["voice"] = {"semitones": float(semitones)} if semitones is not None else None
        after = data["voice"]
    if before != after:
        _audit(ctx, narrative_id, actor, "redaction.voice", before, after)


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
    path = ctx.workspace.narrative_dir(narrative_id) / "analysis.json"
    try:
        analysis = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        analysis = None
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
    #: `narratives.stages.render.stage.Redactions`, or None when nothing is hidden.
    redactions: Any = None
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
    from narratives.policy.consent import is_anonymous

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


# ----------------------------------------------------------------------------- audio


def _ffmpeg() -> str:
    exe = shutil.which("ffmpeg")
    if exe is None:
        raise NarrativesError(
            "ffmpeg is not installed", hint="install it (e.g. `apt-get install ffmpeg`)"
        )
    return exe


def _run(args: list[str], what: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(
        [_ffmpeg(), "-hide_banner", *(["-nostdin"] if stdin is None else []), "-v", "error"]
        + ["-y", *args],
        input=stdin,
        capture_output=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise BadRecording(f"{what}: ffmpeg failed: {err[-1] if err else proc.returncode}")
    return proc.stdout


@contextmanager
def _atomic(dst: Path) -> Iterator[Path]:
    """A temporary path beside `dst` (same suffix, so ffmpeg picks the format), renamed on
    success; nothing is left behind on failure."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=dst.suffix, dir=dst.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, dst)
    finally:
        Path(tmp).unlink(missing_ok=True)


# Strip everything a file can carry about its origin: container and stream tags (title,
# artist, location, device, creation time), chapters, and the encoder's version string.
_NO_METADATA = [
    "-map_metadata", "-1", "-map_chapters", "-1",
    "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
]  # fmt: skip


def bleep_samples(
    samples: np.ndarray,
    rate: int,
    intervals: Iterable[tuple[float, float]],
    *,
    tone_hz: float = 1000.0,
    level: float = TONE_LEVEL,
) -> np.ndarray:
    """A copy of mono `samples` with each interval replaced by a tone (5 ms ramps, no click)."""
    out = np.array(samples, dtype=np.float32, copy=True)
    for a, b in intervals:
        lo, hi = max(0, round(a * rate)), min(out.size, round(b * rate))
        if hi <= lo:
            continue
        t = np.arange(hi - lo, dtype=np.float32) / rate
        tone = (level * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
        ramp = min(round(_RAMP * rate), tone.size // 2)
        if ramp:
            tone[:ramp] *= np.linspace(0, 1, ramp, dtype=np.float32)
            tone[-ramp:] *= np.linspace(1, 0, ramp, dtype=np.float32)
        out[lo:hi] = tone
    return out


def _encode(samples: np.ndarray, rate: int, dst: Path, what: str) -> Path:
    with _atomic(dst) as tmp:
        _run(
            ["-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0", *_NO_METADATA, str(tmp)],
            what,
            stdin=np.ascontiguousarray(samples, dtype="<f4").tobytes(),
        )
    return Path(dst)


def bleep_audio(
    src: Path,
    dst: Path,
    intervals: Iterable[tuple[float, float]],
    tone_hz: float = 1000.0,
) -> Path:
    """Write `src`'s audio (mono, its own rate) to `dst` with `intervals` bleeped and no
    metadata; the format follows `dst`'s suffix (.wav, .m4a, .flac, ...)."""
    from narratives.media.audio import decode, probe

    src, dst = Path(src), Path(dst)
    rate = probe(src).sample_rate or 44100
    samples = bleep_samples(decode(src, rate), rate, intervals, tone_hz=tone_hz)
    return _encode(samples, rate, dst, src.name)


def strip_metadata(src: Path, dst: Path) -> Path:
    """Copy `src` to `dst` without any metadata (streams copied, not re-encoded)."""
    src, dst = Path(src), Path(dst)
    with _atomic(dst) as tmp:
        _run(["-i", str(src), "-map", "0", "-c", "copy", *_NO_METADATA, str(tmp)], src.name)
    return dst


@cache
def _has_rubberband() -> bool:
    proc = subprocess.run(
        [_ffmpeg(), "-hide_banner", "-filters"], capture_output=True, text=True, timeout=60
    )
    return bool(re.search(r"^\s*\S+\s+rubberband\s", proc.stdout, re.MULTILINE))


def _pitch_filter(semitones: float, rate: int) -> str:
    factor = 2.0 ** (semitones / 12.0)
    if _has_rubberband():
        return f"rubberband=pitch={factor:.6f}:formant=shifted"
    # Play at a changed rate (pitch and speed move together), resample back, then restore
    # the speed; atempo takes 0.5..2, and the factor is kept within an octave.
    return f"asetrate={round(rate * factor)},aresample={rate},atempo={1.0 / factor:.6f}"


def disguise_voice(src: Path, dst: Path, semitones: float = -3.0) -> Path:
    """Write `src` to `dst` with its voice shifted by `semitones` (same duration, no
    metadata). A video stream, if any, is copied as it is."""
    if not (-12 <= semitones <= 12):
        raise UsageError("the pitch shift must be between -12 and 12 semitones")
    from narratives.media.audio import probe

    src, dst = Path(src), Path(dst)
    rate = probe(src).sample_rate or 44100
    with _atomic(dst) as tmp:
        _run(
            [
                "-i", str(src), "-map", "0:v?", "-map", "0:a:0", "-c:v", "copy",
                "-af", _pitch_filter(semitones, rate), *_NO_METADATA, str(tmp),
            ],
            src.name,
        )  # fmt: skip
    return dst


def disguise_samples(samples: np.ndarray, rate: int, semitones: float = -3.0) -> np.ndarray:
    """`disguise_voice` for samples in memory (mono float32), e.g. the render's audio."""
    raw = _run(
        [
            "-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0",
            "-af", _pitch_filter(semitones, rate), "-f", "f32le", "-ac", "1", "-ar", str(rate),
            "pipe:1",
        ],
        "voice disguise",
        stdin=np.ascontiguousarray(samples, dtype="<f4").tobytes(),
    )  # fmt: skip
    out = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    # Filters may pad or trim a few milliseconds; keep the timeline the captions follow.
    if out.size < samples.size:
        out = np.concatenate([out, np.zeros(samples.size - out.size, np.float32)])
    return out[: samples.size].copy()
