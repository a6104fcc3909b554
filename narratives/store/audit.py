"""The audit log: who did what to which record, when, with the before and after state.

Callers pass the open transaction so the change and its audit row commit together.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from narratives.core.clock import utcnow
from narratives.store.schema import audit_log

__all__ = ["record", "history"]


def record(
    conn: Connection,
    *,
    actor: str,
    action: str,
    object_type: str,
    object_id: str | int,
    before: Any = None,
    after: Any = None,
    detail: str | None = None,
) -> None:
    conn.execute(
        audit_log.insert().values(
            at=utcnow(),
            actor=actor,
            action=action,
            object_type=object_type,
            object_id=str(object_id),
            before=before,
            after=after,
            detail=detail,
        )
    )


def history(conn: Connection, object_type: str, object_id: str | int) -> list[dict[str, Any]]:
    rows = conn.execute(
        sa.select(audit_log)
        .where(audit_log.c.object_type == object_type, audit_log.c.object_id == str(object_id))
        .order_by(audit_log.c.id)
    )
    return [dict(r._mapping) for r in rows]
