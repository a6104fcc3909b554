"""The one owner of writes to `narratives` and `narrative_paths`.

A narrative's row is written when its recording is registered (with every path it was found
at, and `stored_as`, the workspace's own copy), when it is transcribed (its length and
language), when it is erased (the row stays as a tombstone: `erased_at` set, its label, title,
paths and copy gone) or taken in again after that, and touched to lock it: writers on one
narrative (the campaign choices) serialise on its row. Each function takes the caller's
Connection, so the write commits with the rest of the caller's transaction.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from narratives.store import audit
from narratives.store.schema import narrative_paths, narratives

__all__ = [
    "ERASED_LABEL",
    "Recording",
    "add_recording",
    "forget_paths",
    "recording_paths",
    "recording",
    "set_stored_as",
    "set_transcribed",
    "lock_narrative",
    "mark_erased",
    "take_in_again",
]

#: What an erased narrative's row shows instead of its file name.
ERASED_LABEL = "(erased)"


@dataclass(frozen=True)
class Recording:
    """Where a narrative's recording is: the workspace's copy (relative to its root) and the
    paths it was registered at (newest seen first), and when it was erased, if it was."""

    narrative_id: str
    stored_as: str | None
    paths: list[str]
    erased_at: datetime | None
    label: str
    size_bytes: int


def add_recording(
    conn: Connection,
    narrative_id: str,
    *,
    path: str,
    size_bytes: int,
    label: str,
    source: str,
    now: datetime,
    stored_as: str | None = None,
) -> bool:
    """Register the narrative (once) and remember `path` for it; True when the narrative is
    new. A path seen before only has its `last_seen` moved on. `stored_as` (the workspace's
    copy) is recorded when given; a row kept by reference until now gains it."""
    exists = conn.execute(
        sa.select(narratives.c.id, narratives.c.stored_as).where(narratives.c.id == narrative_id)
    ).first()
    if not exists:
        conn.execute(
            narratives.insert().values(
                id=narrative_id,
                created_at=now,
                updated_at=now,
                size_bytes=size_bytes,
                label=label,
                source=source,
                stored_as=stored_as,
            )
        )
    elif stored_as and exists.stored_as != stored_as:
        set_stored_as(conn, narrative_id, stored_as, now=now)
    known = conn.execute(
        sa.select(narrative_paths.c.path).where(
            narrative_paths.c.narrative_id == narrative_id, narrative_paths.c.path == path
        )
    ).first()
    if known:
        conn.execute(
            narrative_paths.update()
            .where(
                narrative_paths.c.narrative_id == narrative_id,
                narrative_paths.c.path == path,
            )
            .values(last_seen=now)
        )
    else:
        conn.execute(
            narrative_paths.insert().values(
                narrative_id=narrative_id, path=path, first_seen=now, last_seen=now
            )
        )
    return not exists


def recording_paths(conn: Connection, narrative_id: str) -> list[str]:
    """Every path the narrative's recording was registered at, the newest seen first."""
    rows = conn.execute(
        sa.select(narrative_paths.c.path)
        .where(narrative_paths.c.narrative_id == narrative_id)
        .order_by(narrative_paths.c.last_seen.desc())
    ).all()
    return [p for (p,) in rows]


def recording(conn: Connection, narrative_id: str) -> Recording | None:
    """Where the narrative's recording is; None when there is no such narrative."""
    row = conn.execute(
        sa.select(
            narratives.c.stored_as,
            narratives.c.erased_at,
            narratives.c.label,
            narratives.c.size_bytes,
        ).where(narratives.c.id == narrative_id)
    ).first()
    if row is None:
        return None
    return Recording(
        narrative_id=narrative_id,
        stored_as=row.stored_as,
        paths=recording_paths(conn, narrative_id),
        erased_at=row.erased_at,
        label=row.label,
        size_bytes=row.size_bytes,
    )


def set_stored_as(
    conn: Connection, narrative_id: str, stored_as: str | None, *, now: datetime
) -> None:
    """The workspace's copy of the recording (relative to the workspace root), or None."""
    conn.execute(
        narratives.update()
        .where(narratives.c.id == narrative_id)
        .values(stored_as=stored_as, updated_at=now)
    )


def set_transcribed(
    conn: Connection, narrative_id: str, *, duration: float, language: str, now: datetime
) -> None:
    """The narrative's length and language, as its transcript found them."""
    conn.execute(
        narratives.update()
        .where(narratives.c.id == narrative_id)
        .values(duration=duration, language=language, updated_at=now)
    )


def lock_narrative(conn: Connection, narrative_id: str) -> bool:
    """Take the narrative's row lock for this transaction; False when there is no such row.

    SQLite: a write (a no-op UPDATE) takes the database's write lock before anything is read,
    so a second writer waits (busy timeout) instead of reading a state about to change.
    Other databases: `SELECT ... FOR UPDATE` on the narrative's row."""
    if conn.dialect.name == "sqlite":
        done = conn.execute(
            narratives.update().where(narratives.c.id == narrative_id).values(id=narratives.c.id)
        ).rowcount
        return bool(done)
    row = conn.execute(
        sa.select(narratives.c.id).where(narratives.c.id == narrative_id).with_for_update()
    ).first()
    return row is not None


def mark_erased(
    conn: Connection, narrative_id: str, *, now: datetime, keep_paths: Collection[str] = ()
) -> int:
    """Leave only the tombstone of the narrative's row: `erased_at` set, its label, title,
    length, language and copy cleared, and every path it was found at forgotten (a file name
    can be personal) but `keep_paths`: originals still to be removed, forgotten by
    `forget_paths` once they are. Returns how many paths were forgotten."""
    conn.execute(
        narratives.update()
        .where(narratives.c.id == narrative_id)
        .values(
            erased_at=now,
            updated_at=now,
            label=ERASED_LABEL,
            title=None,
            duration=None,
            language=None,
            stored_as=None,
        )
    )
    return conn.execute(
        narrative_paths.delete().where(
            narrative_paths.c.narrative_id == narrative_id,
            narrative_paths.c.path.not_in(list(keep_paths)),
        )
    ).rowcount


def forget_paths(conn: Connection, narrative_id: str, paths: Collection[str]) -> int:
    """Forget these paths of the narrative's recording; returns how many were known."""
    if not paths:
        return 0
    return conn.execute(
        narrative_paths.delete().where(
            narrative_paths.c.narrative_id == narrative_id,
            narrative_paths.c.path.in_(list(paths)),
        )
    ).rowcount


def take_in_again(
    conn: Connection, narrative_id: str, *, label: str, actor: str, now: datetime
) -> None:
    """An erased narrative's recording is taken in again (`process --force`): the row is a
    narrative again, with an audit row saying so."""
    conn.execute(
        narratives.update()
        .where(narratives.c.id == narrative_id)
        .values(erased_at=None, label=label, updated_at=now)
    )
    audit.record(
        conn,
        actor=actor,
        action="narrative.take_in_again",
        object_type="narrative",
        object_id=narrative_id,
        detail="an erased recording was processed again with --force",
    )
