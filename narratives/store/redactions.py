"""The editors' marks on a narrative: terms to hide, the voice disguise and the narrator's own
choice of voice (`voice_mode`), kept in `media/work/<id>/redactions.json`.

Written atomically; read-modify-write under a file lock, so the web app and the CLI can both
add terms. Every change has its audit row. A term of one letter, a common word or a title alone
("St") is refused with the reason (`records.common_words.term_problem`): it would blank that
word everywhere. Two spellings of a term are one term when their
`term_words` agree, so marking "rosalind" after "Rosalind" changes nothing.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from narratives.core.clock import utcnow
from narratives.core.errors import NarrativesError, UsageError
from narratives.core.files import atomic_write_json
from narratives.records.common_words import term_problem
from narratives.records.redactions import PLACEHOLDERS, Term, term_words
from narratives.store import audit
from narratives.store.context import Context

__all__ = [
    "REDACTIONS_FILE",
    "marked_terms",
    "mark_term",
    "unmark_term",
    "voice_disguise",
    "set_voice_disguise",
    "VOICE_MODES",
    "voice_mode",
    "set_voice_mode",
]

REDACTIONS_FILE = "redactions.json"
#: The voices a narrator may choose for their anonymous videos (`policy.voice`); None leaves
#: it to the campaign's `voice` setting.
VOICE_MODES = ("disguised", "synthetic")


def _path(ctx: Context, narrative_id: str) -> Path:
    return ctx.workspace.narrative_dir(narrative_id) / REDACTIONS_FILE


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"terms": [], "voice": None, "voice_mode": None}
    except (OSError, ValueError) as exc:
        raise NarrativesError(f"{path}: cannot read the marked terms: {exc}") from None
    data.setdefault("terms", [])
    data.setdefault("voice", None)
    data.setdefault("voice_mode", None)
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
    problem = term_problem(text)
    if problem:
        raise UsageError(f"not hidden: {problem}")
    if kind not in PLACEHOLDERS:
        raise UsageError(f"kind must be one of {', '.join(PLACEHOLDERS)}")
    with _locked(ctx, narrative_id) as (_, data):
        key = term_words(text)
        if not any(term_words(t["text"]) == key for t in data["terms"]):
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
    key = term_words(text)
    with _locked(ctx, narrative_id) as (_, data):
        gone = [t for t in data["terms"] if term_words(t["text"]) == key]
        data["terms"] = [t for t in data["terms"] if term_words(t["text"]) != key]
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


def voice_mode(ctx: Context, narrative_id: str) -> str | None:
    """The narrator's own choice of voice for anonymous videos ("disguised" or "synthetic"),
    or None: the campaign's `voice` setting decides."""
    mode = _read(_path(ctx, narrative_id)).get("voice_mode")
    return mode if mode in VOICE_MODES else None


def set_voice_mode(ctx: Context, narrative_id: str, mode: str | None, *, actor: str) -> bool:
    """Record the narrator's choice of voice (None: the campaign's); True when it changed.
    Audited; takes effect when the videos are rendered again (the privacy fingerprint
    changes)."""
    if mode is not None and mode not in VOICE_MODES:
        raise UsageError(
            f"unknown voice {mode!r}", hint=f"one of {', '.join(VOICE_MODES)}, or campaign"
        )
    with _locked(ctx, narrative_id) as (_, data):
        before = data.get("voice_mode")
        data["voice_mode"] = mode
    if before != mode:
        _audit(
            ctx,
            narrative_id,
            actor,
            "redaction.voice_mode",
            {"voice_mode": before},
            {"voice_mode": mode},
        )
    return before != mode
