"""The one owner of writes to `consents`: a consent recorded or replaced, and a withdrawal.

One row per narrative. Each write takes the caller's Connection and writes its audit row
(before and after) in the same transaction. Whether a change is allowed (who may widen a
consent, what may replace a withdrawn one) is the ledger's rule, `policy.consent`, which
checks first and then calls these.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from narratives.records.consent import Consent
from narratives.store import audit
from narratives.store.schema import consents

__all__ = ["load_consent", "write_consent", "mark_withdrawn"]


def load_consent(conn: Connection, narrative_id: str) -> Consent | None:
    row = conn.execute(sa.select(consents).where(consents.c.narrative_id == narrative_id)).first()
    return Consent.from_row(row) if row else None


def _audit_view(c: Consent | None) -> dict[str, Any] | None:
    if c is None:
        return None
    d = c.to_dict()
    d.pop("narrative_id", None)
    d.pop("updated_at", None)
    d.pop("status", None)
    return d


def write_consent(
    conn: Connection,
    narrative_id: str,
    *,
    given_by: str,
    given_at: datetime,
    method: str,
    channels: Sequence[str],
    anonymous: bool,
    expires_at: datetime | None,
    notes: str | None,
    now: datetime,
    actor: str,
    action: str,
    detail: str | None = None,
) -> Consent:
    """Record or replace the narrative's consent (clearing any withdrawal: the caller has
    checked that this one may replace it), with an `action` audit row; returns it."""
    before = load_consent(conn, narrative_id)
    values = {
        "given_by": given_by,
        "given_at": given_at,
        "method": method,
        "channels": list(channels),
        "anonymous": anonymous,
        "expires_at": expires_at,
        "withdrawn_at": None,
        "notes": notes,
        "updated_at": now,
    }
    if before is None:
        conn.execute(consents.insert().values(narrative_id=narrative_id, **values))
    else:
        conn.execute(
            consents.update().where(consents.c.narrative_id == narrative_id).values(**values)
        )
    after = load_consent(conn, narrative_id)
    assert after is not None
    audit.record(
        conn,
        actor=actor,
        action=action,
        object_type="consent",
        object_id=narrative_id,
        before=_audit_view(before),
        after=_audit_view(after),
        detail=detail,
    )
    return after


def mark_withdrawn(
    conn: Connection, narrative_id: str, *, now: datetime, actor: str, reason: str
) -> Consent:
    """Mark the narrative's consent withdrawn at `now`, with a `consent.withdraw` audit row
    giving `reason`; an already withdrawn consent is left as it is (no audit row)."""
    before = load_consent(conn, narrative_id)
    if before is None:
        # Nothing was agreed, but the narrator's wish is still recorded and enforced.
        conn.execute(
            consents.insert().values(
                narrative_id=narrative_id,
                given_by="(none recorded)",
                given_at=now,
                method="in_person",
                channels=[],
                anonymous=True,
                withdrawn_at=now,
                notes=None,
                updated_at=now,
            )
        )
    elif before.withdrawn_at is None:
        conn.execute(
            consents.update()
            .where(consents.c.narrative_id == narrative_id)
            .values(withdrawn_at=now, updated_at=now)
        )
    after = load_consent(conn, narrative_id)
    assert after is not None
    if before is None or before.withdrawn_at is None:
        audit.record(
            conn,
            actor=actor,
            action="consent.withdraw",
            object_type="consent",
            object_id=narrative_id,
            before=_audit_view(before),
            after=_audit_view(after),
            detail=reason,
        )
    return after
