"""The one owner of writes to `narratives` and `narrative_paths`.

A narrative's row is written when its recording is registered (with every path it was found
at), when it is transcribed (its length and language), and touched to lock it: writers on one
narrative (the campaign choices) serialise on its row. Each function takes the caller's
Connection, so the write commits with the rest of the caller's transaction.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from narratives.store.schema import narrative_paths, narratives

__all__ = ["add_recording", "recording_paths", "set_transcribed", "lock_narrative"]


def add_recording(
    conn: Connection,
    narrative_id: str,
    *,
    path: str,
    size_bytes: int,
    label: str,
    source: str,
    now: datetime,
) -> bool:
    """Register the narrative (once) and remember `path` for it; True when the narrative is
    new. A path seen before only has its `last_seen` moved on."""
    exists = conn.execute(sa.select(narratives.c.id).where(narratives.c.id == narrative_id)).first()
    if not exists:
        conn.execute(
            narratives.insert().values(
                id=narrative_id,
                created_at=now,
                updated_at=now,
                size_bytes=size_bytes,
                label=label,
                source=source,
            )
        )
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
