"""Editors correcting a transcript: misheard words and sentence breaks, and what follows.

An editor works on a plain-text form of the transcript, one sentence per line (`text_form`:
a line ends at a sentence's end or at a segment's end, where the engine paused).
The corrected text is aligned with the engine's words (difflib, on words compared without
case or punctuation) so that every word keeps a time: a word left alone keeps its own, a
replaced run of words shares the span of the words it replaces, and an inserted word shares
the span of its neighbour. Each line becomes one segment, so a line break is a sentence break
in the captions.

The correction is kept beside the engine's transcript (`transcript.corrected.json`, written by
`narratives.store.narrative_files`) with the text and captions made from it, and an audit row
(`transcript.correct`) holds a unified diff. A new transcription never overwrites it (only
`narrative process --discard-corrections`, through `discard`). Then the story's analysis,
videos and drafts are made again from it (`rederive`): drafts an editor has edited keep the
editor's text (`narratives.stages.draft.saving`).
"""

from __future__ import annotations

import difflib
import hashlib
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from narratives.core.errors import Conflict, NarrativesError, NotFound, UsageError
from narratives.media import captions
from narratives.records.transcript import Segment, Transcript, Word
from narratives.store import audit
from narratives.store.context import Context
from narratives.store.narrative_files import (
    corrected_transcript_path,
    read_original_transcript,
    read_transcript,
    remove_corrected_transcript,
    write_corrected_transcript,
)
from narratives.store.narrative_rows import lock_narrative
from narratives.store.stage_runs import forget_runs
from narratives.store.users import require_active
from narratives.workflow import assignments

__all__ = [
    "Correction",
    "Rederived",
    "align",
    "correct",
    "discard",
    "history",
    "is_corrected",
    "rederive",
    "text_form",
    "text_version",
]

_SENTENCE_END = re.compile(r"[.!?…][\"')\]»”’]*$")
#: The longest corrected text accepted (a form field or file).
MAX_TEXT_CHARS = 200_000


@dataclass(frozen=True)
class Correction:
    """What `correct` did: `changed` False when the text was the same as before."""

    narrative_id: str
    changed: bool
    transcript: Transcript
    #: The unified diff of the text form, before → after ("" when unchanged).
    diff: str = ""
    words_changed: int = 0


@dataclass
class Rederived:
    """What `rederive` made again from the corrected transcript."""

    analysed: bool = False
    videos: int = 0
    drafts: int = 0
    errors: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- the text form


def _timed_words(transcript: Transcript) -> list[tuple[Word, int]]:
    """Every word with the index of its segment; a segment without word times has its text
    spread evenly over its span."""
    out: list[tuple[Word, int]] = []
    for i, seg in enumerate(transcript.segments):
        if seg.words:
            out.extend((w, i) for w in seg.words if w.text.strip())
            continue
        tokens = seg.text.split()
        step = (seg.end - seg.start) / len(tokens) if tokens else 0.0
        for k, tok in enumerate(tokens):
            start = seg.start + k * step
            out.append((Word(round(start, 3), round(start + step, 3), " " + tok), i))
    return out


def _lines(transcript: Transcript) -> list[list[Word]]:
    """Words in lines: a line ends where a sentence ends or where the engine (or an earlier
    correction) ended a segment, so the form of a corrected transcript is the editor's."""
    lines: list[list[Word]] = []
    current: list[Word] = []
    words = _timed_words(transcript)
    for k, (word, seg) in enumerate(words):
        current.append(word)
        if k == len(words) - 1 or words[k + 1][1] != seg or _SENTENCE_END.search(word.text.strip()):
            lines.append(current)
            current = []
    return lines


def text_form(transcript: Transcript) -> str:
    """The transcript as an editor corrects it: one sentence per line."""
    return "".join(" ".join(w.text.strip() for w in line) + "\n" for line in _lines(transcript))


def text_version(transcript: Transcript | None) -> str:
    """A short digest of the text form: a correction says which text it was made from, so a
    second editor's correction cannot silently undo the first's."""
    return hashlib.sha256(text_form(transcript).encode() if transcript else b"").hexdigest()[:16]


def _key(token: str) -> str:
    """A word as alignment compares it: without case, accents or punctuation."""
    folded = unicodedata.normalize("NFKD", token.casefold())
    return "".join(ch for ch in folded if ch.isalnum()) or token


def _clean_lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.replace("\r\n", "\n").split("\n") if line.strip()]


# ----------------------------------------------------------------------------- alignment


def align(transcript: Transcript, text: str) -> Transcript:
    """The transcript with `text` (one sentence per line) as its words and segments, each
    word timed from the engine's words it stands for."""
    if len(text) > MAX_TEXT_CHARS:
        raise UsageError(f"the corrected transcript is over {MAX_TEXT_CHARS:,} characters")
    lines = _clean_lines(text)
    new = [tok for line in lines for tok in line]
    if not new:
        raise UsageError(
            "the corrected transcript is empty",
            hint="fix the words and keep the text; to drop a story, reject its drafts",
        )
    old = [w for w, _ in _timed_words(transcript)]
    times: list[tuple[float, float, float] | None] = [None] * len(new)
    matcher = difflib.SequenceMatcher(
        None, [_key(w.text.strip()) for w in old], [_key(t) for t in new], autojunk=False
    )
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                times[j] = (old[i].start, old[i].end, old[i].probability)
        elif op == "replace":
            if i2 - i1 == j2 - j1:  # word for word: each keeps the time of the one it replaces
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                    times[j] = (old[i].start, old[i].end, 1.0)
            else:  # the replaced words' span, shared evenly
                for k, span in enumerate(_split(old[i1].start, old[i2 - 1].end, j2 - j1)):
                    times[j1 + k] = (*span, 1.0)
    _time_inserted(times, transcript.duration)
    words = [
        Word(start=round(t[0], 3), end=round(t[1], 3), text=" " + tok, probability=t[2])
        for tok, t in zip(new, times, strict=True)
        if t is not None
    ]
    segments, k = [], 0
    for line in lines:
        seg_words = words[k : k + len(line)]
        k += len(line)
        segments.append(
            Segment(
                id=len(segments),
                start=seg_words[0].start,
                end=seg_words[-1].end,
                text=" " + " ".join(line),
                words=seg_words,
            )
        )
    return replace(transcript, segments=segments)


def _split(start: float, end: float, n: int) -> list[tuple[float, float]]:
    step = max(end - start, 0.0) / n
    return [(start + k * step, start + (k + 1) * step) for k in range(n)]


def _time_inserted(times: list[tuple[float, float, float] | None], duration: float) -> None:
    """Give each run of inserted words the span of a neighbour, shared with it: the gap
    between its neighbours when there is room, else the previous word's (or the next's)."""
    j = 0
    while j < len(times):
        if times[j] is not None:
            j += 1
            continue
        end = j
        while end < len(times) and times[end] is None:
            end += 1
        prev = times[j - 1] if j > 0 else None
        nxt = times[end] if end < len(times) else None
        n = end - j
        if prev and nxt and nxt[0] - prev[1] >= 0.1 * n:
            spans = _split(prev[1], nxt[0], n)
            for k, span in enumerate(spans):
                times[j + k] = (*span, 1.0)
        elif prev:  # share the previous word's span
            spans = _split(prev[0], prev[1], n + 1)
            times[j - 1] = (*spans[0], prev[2])
            for k, span in enumerate(spans[1:]):
                times[j + k] = (*span, 1.0)
        elif nxt:  # at the very start: share the next word's span
            spans = _split(nxt[0], nxt[1], n + 1)
            for k, span in enumerate(spans[:-1]):
                times[j + k] = (*span, 1.0)
            times[end] = (*spans[-1], nxt[2])
        else:  # no timed word at all: spread over the recording
            for k, span in enumerate(_split(0.0, duration, n)):
                times[j + k] = (*span, 1.0)
        j = end


# ----------------------------------------------------------------------------- storing


def _beside(transcript: Transcript) -> dict[str, str]:
    return {
        "transcript.txt": transcript.text + "\n",
        "transcript.srt": captions.to_srt(transcript),
        "transcript.vtt": captions.to_webvtt(transcript),
    }


def _diff(before: str, after: str) -> str:
    lines = difflib.unified_diff(
        before.splitlines(), after.splitlines(), "before", "after", n=1, lineterm=""
    )
    return "\n".join(lines)


def history(ctx: Context, narrative_id: str) -> list[dict[str, Any]]:
    """The story's transcript corrections and discards, oldest first (audit rows)."""
    with ctx.db.connect() as conn:
        rows = audit.history(conn, "narrative", narrative_id)
    return [r for r in rows if r["action"] in ("transcript.correct", "transcript.discard")]


def is_corrected(ctx: Context, narrative_id: str) -> bool:
    return corrected_transcript_path(ctx.workspace, narrative_id).is_file()


def correct(
    ctx: Context,
    narrative_id: str,
    text: str,
    *,
    actor: str,
    seen: str | None = None,
) -> Correction:
    """Store an editor's corrected text of the transcript (one sentence per line).

    `seen` is the `text_version` the editor started from: when someone corrected it since,
    this is a `Conflict` and nothing is written. A text the same as the stored one changes
    nothing. The later stages' rows are forgotten; `rederive` makes their outputs again.
    """
    require_active(ctx, actor)
    with ctx.db.begin() as conn:
        # Serialise correctors of one story: the check and the write are one step.
        if not lock_narrative(conn, narrative_id):
            raise NotFound(f"there is no narrative {narrative_id[:12]}")
        current = read_transcript(ctx.workspace, narrative_id)
        if current is None:
            raise NotFound(
                f"narrative {narrative_id[:12]} has no transcript yet",
                hint="run `narrative process` on its recording first",
            )
        if seen is not None and seen != text_version(current):
            raise Conflict(
                "someone corrected this transcript after you opened it",
                hint="open it again to see their correction, then make yours",
            )
        before = text_form(current)
        corrected = align(current, text)
        after = text_form(corrected)
        if after == before:
            return Correction(narrative_id, False, current)
        diff = _diff(before, after)
        old_words = [w.text.strip() for w in current.words]
        new_words = [w.text.strip() for w in corrected.words]
        sm = difflib.SequenceMatcher(None, old_words, new_words, autojunk=False)
        changed = sum(
            max(i2 - i1, j2 - j1) for op, i1, i2, j1, j2 in sm.get_opcodes() if op != "equal"
        )
        audit.record(
            conn,
            actor=actor,
            action="transcript.correct",
            object_type="narrative",
            object_id=narrative_id,
            before={"text": before, "words": len(old_words)},
            after={"text": after, "words": len(new_words), "changed": changed},
            detail=diff,
        )
        forget_runs(conn, narrative_id, but="transcribe")
        # Written last, inside the transaction: a failed write rolls the audit row back.
        write_corrected_transcript(
            ctx.workspace, narrative_id, corrected, beside=_beside(corrected)
        )
    return Correction(narrative_id, True, corrected, diff, changed)


def discard(ctx: Context, narrative_id: str, *, actor: str) -> bool:
    """Drop the editors' correction: the engine's transcript counts again. False when the
    story had none."""
    with ctx.db.begin() as conn:
        lock_narrative(conn, narrative_id)
        if not is_corrected(ctx, narrative_id):
            return False
        corrected = read_transcript(ctx.workspace, narrative_id)
        original = read_original_transcript(ctx.workspace, narrative_id)
        before = text_form(corrected) if corrected else ""
        after = text_form(original) if original else ""
        audit.record(
            conn,
            actor=actor,
            action="transcript.discard",
            object_type="narrative",
            object_id=narrative_id,
            before={"text": before},
            after={"text": after},
            detail=_diff(before, after),
        )
        forget_runs(conn, narrative_id, but="transcribe")
        remove_corrected_transcript(
            ctx.workspace, narrative_id, beside=_beside(original) if original else None
        )
    return True


# ----------------------------------------------------------------------------- what follows


def rederive(
    ctx: Context,
    narrative_id: str,
    *,
    actor: str,
    progress: Callable[[str], None] | None = None,
) -> Rederived:
    """Analyse the story again from its (corrected) transcript, then make its videos and
    drafts again through the stages: summary, quote, title and tags, the captions burnt into
    the videos and the drafts' pipeline-owned fields follow the correction; a draft an editor
    has edited keeps the editor's text."""
    # NumPy and the models: imported when a correction is re-derived, not for `process --help`.
    from narratives.stages.analyse import stage as analysing

    say = progress or (lambda _m: None)
    out = Rederived()
    say("analysing")
    try:
        analysing.run(ctx, narrative_id, force=True)
        out.analysed = True
    except NarrativesError as exc:
        out.errors.append(f"analysis: {exc}")
        return out
    made = assignments.make_outputs(ctx, narrative_id, force=True, actor=actor, progress=say)
    out.videos, out.drafts = made.videos, made.drafts
    out.errors.extend(made.errors)
    return out
