"""`narrative erase ID`: remove one narrator's recording, every file made from it and every
row about it, keeping a tombstone.

Order matters. Nothing may still be out or about to go out: a narrative with a live delivery
(scheduled, publishing, published, failed and waiting for a retry, or a takedown unfinished) is
refused with the command that takes it down (`narrative consent withdraw`), checked under the
narrative's row lock in the same transaction that erases the rows. The rows go first (one
transaction, `store.erasure`); from then on the recording is refused to every stage that reads
it (the row says erased), and no new narrative takes its place unasked. Then the files go: the
workspace's copy of the recording, `media/work/<id>/`, a partner feed's download of it
(`media/inbox/`), the analysis cache's embeddings of its text, and, only when asked
(`include_original`), the original at each remembered path after its hash is checked. A kill
between the two leaves files of an erased narrative; `erase` again removes them: the paths of
the originals to remove are forgotten only once they are gone, and the cache is cleared of
every entry no live text accounts for.

The cache (`.narratives/cache/examples/<model>/<kind>-<sha256 of a text>.npy`, by the analyse
stage) holds embeddings of the campaigns' example stories and of every story an editor
corrected a tag of. After the rows are gone, the texts that may stay are exactly those the
analysis would embed now (the examples, and the other corrected stories as they read now);
every other entry, this story's as it reads now or as it read before a transcript correction,
is removed.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from narratives.core.clock import utcnow
from narratives.core.errors import BadRecording, InvalidState, NotFound, UnreadableFile
from narratives.core.files import named_os_errors
from narratives.stages.ingest import RECORDINGS_DIR, hash_file
from narratives.store.context import Context
from narratives.store.delivery_queries import live_of_narrative
from narratives.store.erasure import erase_rows
from narratives.store.narrative_files import read_original_transcript, read_transcript
from narratives.store.narrative_rows import Recording, forget_paths, lock_narrative, recording

__all__ = ["Erasure", "erase", "planned_files"]


@dataclass
class Erasure:
    """What `erase` did: the counts in its tombstone, the files removed, the originals left."""

    narrative_id: str
    erased_at: datetime
    #: True when the narrative had been erased before (only leftover files were removed).
    already: bool = False
    counts: dict[str, int] = field(default_factory=dict)
    removed: list[str] = field(default_factory=list)
    #: Originals at remembered paths that were left in place (no `include_original`).
    originals_kept: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "narrative_id": self.narrative_id,
            "erased_at": self.erased_at.isoformat(),
            "already_erased": self.already,
            "counts": self.counts,
            "removed": self.removed,
            "originals_kept": self.originals_kept,
        }


def _copies(ctx: Context, narrative_id: str, found: Recording) -> list[Path]:
    """The workspace's copies of the recording, and any temporary copy a kill left."""
    folder = ctx.workspace.root / RECORDINGS_DIR
    out = {ctx.workspace.root / found.stored_as} if found.stored_as else set()
    if folder.is_dir():
        out |= set(folder.glob(f"{narrative_id}.*")) | set(folder.glob(f".{narrative_id}.*"))
    return sorted(p for p in out if p.is_file())


def _originals(found: Recording, narrative_id: str) -> dict[Path, str]:
    """Remembered paths that still hold this very recording (the hash is checked, so a
    different file now at that path is never removed), with the path as remembered."""
    out = {}
    for p in found.paths:
        path = Path(p)
        if not path.is_file():
            continue
        try:
            digest, _size = hash_file(path)
        except BadRecording:
            continue
        if digest == narrative_id:
            out[path] = p
    return out


def _texts(ctx: Context, narrative_id: str) -> set[str]:
    """The story's texts as the analysis embeds them: the engine's transcript and the
    editors' correction, when there are."""
    out = set()
    for read in (read_original_transcript, read_transcript):
        try:
            transcript = read(ctx.workspace, narrative_id)
        except UnreadableFile:
            continue
        if transcript is not None and transcript.text:
            out.add(transcript.text)
    return out


@dataclass
class _Plan:
    copies: list[Path]
    work: Path | None
    originals: list[Path]
    include_original: bool

    #: Originals the workspace downloaded itself (partner feeds, `media/inbox/`): its own.
    downloaded: list[Path] = field(default_factory=list)
    #: Every path the recording is remembered at, and the originals' among them.
    paths: list[str] = field(default_factory=list)
    remembered: dict[Path, str] = field(default_factory=dict)
    #: The story's texts (as its transcripts read now): the analysis cache's keys.
    texts: set[str] = field(default_factory=set)

    @property
    def removed_originals(self) -> list[Path]:
        return self.originals if self.include_original else self.downloaded

    @property
    def pending_paths(self) -> list[str]:
        """The remembered paths of the originals to remove: kept until they are gone."""
        return [self.remembered[p] for p in self.removed_originals if p in self.remembered]

    @property
    def kept_originals(self) -> list[Path]:
        return [p for p in self.originals if p not in self.removed_originals]

    @property
    def targets(self) -> list[Path]:
        return [*self.copies, *([self.work] if self.work else []), *self.removed_originals]

    def counts(self) -> dict[str, int]:
        return {
            "recording_copies": len(self.copies),
            "work_files": _count_files([self.work]) if self.work else 0,
            "originals": len(self.removed_originals),
        }


def planned_files(
    ctx: Context, narrative_id: str, found: Recording, *, include_original: bool
) -> _Plan:
    """What erase removes: the copies, media/work/<id>/, and the originals when asked."""
    work = ctx.workspace.narrative_dir(narrative_id)
    originals = _originals(found, narrative_id)
    inbox = (ctx.workspace.media_dir / "inbox").resolve()
    return _Plan(
        copies=_copies(ctx, narrative_id, found),
        work=work if work.exists() else None,
        originals=list(originals),
        include_original=include_original,
        downloaded=[p for p in originals if p.resolve().is_relative_to(inbox)],
        paths=list(found.paths),
        remembered=originals,
        texts=_texts(ctx, narrative_id),
    )


#: Cache entries: `<model>/<kind>-<sha256 of the text>.npy`, and a writer's
#: `.<kind>-<sha256>.*.npy`.
_CACHE_ENTRY = re.compile(r"^\.?[a-z_]+-([0-9a-f]{64})(?:\..*)?\.npy$")


def _example_cache(ctx: Context) -> Path:
    """Where the analyse stage keeps its embeddings (`stages.analyse.stage`)."""
    return ctx.workspace.state_dir / "cache" / "examples"


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _cached_embeddings(ctx: Context, texts: set[str]) -> list[Path]:
    """The analysis cache's entries no live text accounts for (see the module's docstring),
    and those of `texts` (the erased story's) in any case. Called after the rows are gone."""
    folder = _example_cache(ctx)
    if not folder.is_dir():
        return []
    # Here, not at the top: they bring numpy, which `narrative erase --help` must not load.
    from narratives.stages.analyse.stage import load_corrections
    from narratives.stages.analyse.tagging import read_examples

    examples, _errors = read_examples(ctx.workspace.campaigns_dir)
    live = {e.text for e in examples}
    live |= {text for found in load_corrections(ctx, "").examples.values() for text, _ in found}
    keep = {_digest(t) for t in live} - {_digest(t) for t in texts}
    out = []
    for path in sorted(folder.rglob("*.npy")):  # a folder per embedding model
        match = _CACHE_ENTRY.match(path.name)
        if match and match.group(1) not in keep and path.is_file():
            out.append(path)
    return out


def _count_files(paths: list[Path]) -> int:
    return sum(sum(1 for q in p.rglob("*") if q.is_file()) if p.is_dir() else 1 for p in paths)


def _remove(paths: list[Path]) -> list[str]:
    removed = []
    for path in paths:
        with named_os_errors(path, "remove"):
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
            else:
                continue
        removed.append(str(path))
    return removed


def _refuse_live(narrative_id: str, live: list[Any]) -> None:
    short = narrative_id[:12]
    states = ", ".join(f"{row.id} ({row.channel}, {row.state})" for row in live)
    raise InvalidState(
        f"narrative {short} still has deliveries that are out or may go out: {states}",
        hint=f'take them down first: `narrative consent withdraw {short} --reason "..."` '
        f"(or `narrative consent withdraw {short} --erase` to do both)",
    )


def erase(
    ctx: Context, narrative_id: str, *, actor: str, include_original: bool = False
) -> Erasure:
    """Erase the narrative (see the module's docstring); NotFound for an unknown id,
    InvalidState (with the fix) while any of its deliveries is live."""
    with ctx.db.connect() as conn:
        found = recording(conn, narrative_id)
    if found is None:
        raise NotFound(f"no narrative with id {narrative_id}", hint="see `narrative status`")
    plan = planned_files(ctx, narrative_id, found, include_original=include_original)
    now = utcnow()
    result = Erasure(narrative_id, found.erased_at or now, already=found.erased_at is not None)
    if not result.already:
        with ctx.db.begin() as conn:
            lock_narrative(conn, narrative_id)
            live = live_of_narrative(conn, narrative_id)
            if live:
                _refuse_live(narrative_id, live)
            result.counts = erase_rows(
                conn,
                narrative_id,
                actor=actor,
                now=now,
                files=plan.counts(),
                keep_paths=plan.pending_paths,
            )
    result.removed = _remove(plan.targets)
    result.removed += _remove(_cached_embeddings(ctx, plan.texts))
    result.originals_kept = [str(p) for p in plan.kept_originals]
    if plan.paths:
        # Every original is handled (removed, or kept as asked): its path goes too.
        with ctx.db.begin() as conn:
            lock_narrative(conn, narrative_id)
            now_found = recording(conn, narrative_id)
            if now_found is not None and now_found.erased_at is not None:
                forget_paths(conn, narrative_id, plan.paths)
    return result
