"""The one owner of writes to `consents`: a consent recorded or replaced, and a withdrawal.

One row per narrative. Each write takes the caller's Connection and writes its audit row
(before and after) in the same transaction. A replacement is one compare-and-swap on the row's
`version` (the one the caller's checks read): a consent changed meanwhile by someone else is
`Conflict`, not silently overwritten; a first consent recorded twice at once is the same.

Whether a change is allowed (who may widen a consent, what may replace a withdrawn one) is
the ledger's rule, `policy.consent`, which checks first and then calls these.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from narratives.core.errors import Conflict
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
    d.pop("version", None)
    return d


def _changed(narrative_id: str) -> Conflict:
    return Conflict(
        f"the consent for narrative {narrative_id[:12]} was changed by someone else meanwhile; "
        "nothing was saved",
        hint="look at it again (`narrative consent show`, or reload the page) and retry",
    )


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
    expected: Consent | None | bool = True,
) -> Consent:
    """Record or replace the narrative's consent (clearing any withdrawal: the caller has
    checked that this one may replace it), with an `action` audit row; returns it.

    `expected` is the consent the caller's checks read (None: none was recorded); the write
    lands only if it is still the one recorded, else `Conflict`. True: what is recorded now."""
    before = load_consent(conn, narrative_id)
    if expected is not True and (
        (expected is None) != (before is None)
        or (before is not None and expected is not None and expected.version != before.version)
    ):
        raise _changed(narrative_id)
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
        try:
            conn.execute(consents.insert().values(narrative_id=narrative_id, **values))
        except IntegrityError:  # recorded by someone else between the read and this write
            raise _changed(narrative_id) from None  # (the caller's transaction rolls back)
    else:
        res = conn.execute(
            consents.update()
            .where(consents.c.narrative_id == narrative_id, consents.c.version == before.version)
            .values(**values, version=before.version + 1)
        )
        if res.rowcount != 1:
            raise _changed(narrative_id)
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


def _insert_if_absent(conn: Connection) -> Any:
    """An insert into `consents` that does nothing when the narrative has a row already."""
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    return insert(consents).on_conflict_do_nothing(index_elements=["narrative_id"])


def mark_withdrawn(
    conn: Connection, narrative_id: str, *, now: datetime, actor: str, reason: str
) -> Consent:
    """Mark the narrative's consent withdrawn at `now`, with a `consent.withdraw` audit row
    giving `reason`; an already withdrawn consent is left as it is (no audit row)."""
    before = load_consent(conn, narrative_id)
    if before is None:
        # Nothing was agreed, but the narrator's wish is still recorded and enforced. Two
        # withdrawals at once both read no row: the second insert finds the first's row and
        # leaves it (no IntegrityError, which would also abort a Postgres transaction), and
        # goes on from the row it reloads, like a withdrawal of a recorded consent.
        added = conn.execute(
            _insert_if_absent(conn).values(
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
        if added.rowcount != 1:
            before = load_consent(conn, narrative_id)
    if before is not None and before.withdrawn_at is None:
        res = conn.execute(
            consents.update()
            .where(consents.c.narrative_id == narrative_id, consents.c.withdrawn_at.is_(None))
            .values(withdrawn_at=now, updated_at=now, version=consents.c.version + 1)
        )
        if res.rowcount != 1:
            before = load_consent(conn, narrative_id)  # withdrawn by someone else just now
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
