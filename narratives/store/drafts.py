"""The one owner of writes to `drafts` and its `comments`.

Every change of a draft is a named function here, taking the caller's Connection and writing
its audit row (who, what, before/after) in the same transaction, so the log can never miss or
invent one. Each change is one compare-and-swap: `UPDATE drafts ... WHERE id = ? AND version = ?`
naming the version the caller read, raising it by one; when another writer got there first the
update matches no row and `Conflict` says who changed the draft (nothing is written). A read
followed by a plain write would let two editors who opened the same text both win, one edit
silently lost, or an approval land on text its approver never saw; the database's own atomic
update is the only check that holds on SQLite and Postgres alike.

Whether a change is allowed (review's states, consent, the editor's text kept on a
regeneration) is decided by the callers, `workflow.review`, `workflow.assignments` and
`stages.draft.saving`; the one rule kept here is that a regenerated text sends a decided draft
back to review (`records.draft.BACK_TO_REVIEW`).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from narratives.core.clock import utcnow
from narratives.core.errors import Conflict
from narratives.records.draft import BACK_TO_REVIEW, Draft, DraftState
from narratives.store import audit
from narratives.store.schema import audit_log, comments, draft_viewers, drafts

__all__ = [
    "insert",
    "regenerate",
    "set_state",
    "save_edit",
    "reopen",
    "add_comment",
    "conflict",
    "last_change",
    "note_viewer",
    "viewers",
]

#: How the audit log's draft actions read in a conflict message.
_DONE = {
    "draft.create": "created",
    "draft.regenerate": "regenerated",
    "draft.edit": "edited",
    "draft.approve": "approved",
    "draft.reject": "rejected",
    "draft.request_changes": "sent back for changes",
    "draft.reopen": "reopened",
    "draft.send_back": "sent back to review",
}
#: A viewer's row is refreshed at most this often (a page view is not a write each time).
_VIEWER_REFRESH = timedelta(seconds=15)

S = DraftState


def insert(
    conn: Connection,
    narrative_id: str,
    *,
    campaign: str,
    channel: str,
    template: str,
    template_hash: str,
    content: dict[str, Any],
    data: dict[str, Any],
    actor: str,
) -> int:
    """A new draft, pending review, with its `draft.create` audit row; returns its id."""
    now = utcnow()
    draft_id = conn.execute(
        drafts.insert().values(
            narrative_id=narrative_id,
            campaign=campaign,
            channel=channel,
            state=S.PENDING_REVIEW,
            template=template,
            template_hash=template_hash,
            generated=content,
            content=content,
            edited=False,
            data=data,
            created_at=now,
            updated_at=now,
        )
    ).inserted_primary_key[0]
    audit.record(
        conn,
        actor=actor,
        action="draft.create",
        object_type="draft",
        object_id=draft_id,
        after={"state": S.PENDING_REVIEW, "content": content},
        detail=f"from templates/{template}",
    )
    return draft_id


def _regenerated(row: Any) -> dict[str, Any]:
    return {"state": row.state, "content": row.content, "template_hash": row.template_hash}


def regenerate(
    conn: Connection,
    row: Any,
    *,
    template: str,
    template_hash: str,
    generated: dict[str, Any],
    data: dict[str, Any],
    content: dict[str, Any],
    actor: str,
    detail: str,
) -> str:
    """Update a draft (a drafts row) to a new generation whose current text is `content`, with
    its `draft.regenerate` audit row; returns the draft's state after."""
    values: dict[str, Any] = {
        "template": template,
        "template_hash": template_hash,
        "generated": generated,
        "data": data,
        "updated_at": utcnow(),
    }
    if row.content != content:
        values["content"] = content
        if row.state in BACK_TO_REVIEW:
            # What was approved is no longer what would go out.
            values["state"] = S.PENDING_REVIEW
    # An editor who saved since `row` was read keeps their text: the swap fails instead.
    _swap(conn, row.id, row.version, values, doing="regenerated")
    after = {
        "state": values.get("state", row.state),
        "content": values.get("content", row.content),
        "template_hash": template_hash,
    }
    audit.record(
        conn,
        actor=actor,
        action="draft.regenerate",
        object_type="draft",
        object_id=row.id,
        before=_regenerated(row),
        after=after,
        detail=detail,
    )
    return after["state"]


def set_state(
    conn: Connection,
    draft: Draft,
    state: DraftState,
    *,
    actor: str,
    action: str,
    detail: str | None = None,
) -> None:
    """A review decision (`action`: draft.approve, draft.reject...), with its audit row; only
    while the draft is still the version `draft` was read at (else `Conflict`)."""
    doing = _DONE.get(action, "changed")
    _swap(conn, draft.id, draft.revision, {"state": state, "updated_at": utcnow()}, doing=doing)
    audit.record(
        conn,
        actor=actor,
        action=action,
        object_type="draft",
        object_id=draft.id,
        before={"state": draft.state},
        after={"state": state},
        detail=detail,
    )


def save_edit(conn: Connection, draft: Draft, content: dict[str, Any], *, actor: str) -> None:
    """An editor's text: the draft is marked edited and goes back to review, with its
    `draft.edit` audit row; only while the draft is still the version `draft` was read at
    (else `Conflict`, and nothing is written)."""
    values = {"content": content, "edited": True, "state": S.PENDING_REVIEW, "updated_at": utcnow()}
    _swap(conn, draft.id, draft.revision, values, doing="saved")
    audit.record(
        conn,
        actor=actor,
        action="draft.edit",
        object_type="draft",
        object_id=draft.id,
        before={"state": draft.state, "content": draft.content},
        after={"state": S.PENDING_REVIEW, "content": content},
    )


def reopen(conn: Connection, draft_id: int, *, actor: str, detail: str) -> bool:
    """A rejected draft back to review, with its `draft.reopen` audit row; False when it is no
    longer rejected."""
    res = conn.execute(
        drafts.update()
        .where(drafts.c.id == draft_id, drafts.c.state == S.REJECTED)
        .values(state=S.PENDING_REVIEW, updated_at=utcnow(), version=drafts.c.version + 1)
    )
    if res.rowcount != 1:
        return False
    audit.record(
        conn,
        actor=actor,
        action="draft.reopen",
        object_type="draft",
        object_id=draft_id,
        before={"state": S.REJECTED},
        after={"state": S.PENDING_REVIEW},
        detail=detail,
    )
    return True


def send_back(conn: Connection, draft_id: int, *, actor: str, reason: str) -> bool:
    """An approved draft back to review because what it would publish is not fit to go out (a
    hidden name leaks), with its `draft.send_back` audit row giving the reason; False when it
    is no longer approved (one conditional UPDATE: of two callers at once, one sends it back)."""
    res = conn.execute(
        drafts.update()
        .where(drafts.c.id == draft_id, drafts.c.state == S.APPROVED)
        .values(state=S.PENDING_REVIEW, updated_at=utcnow(), version=drafts.c.version + 1)
    )
    if res.rowcount != 1:
        return False
    audit.record(
        conn,
        actor=actor,
        action="draft.send_back",
        object_type="draft",
        object_id=draft_id,
        before={"state": S.APPROVED},
        after={"state": S.PENDING_REVIEW},
        detail=reason,
    )
    return True


def add_comment(conn: Connection, draft_id: int, author: str, body: str, now: datetime) -> int:
    """A comment on a draft, with its `draft.comment` audit row; returns its id."""
    comment_id = conn.execute(
        comments.insert().values(draft_id=draft_id, author=author, body=body, created_at=now)
    ).inserted_primary_key[0]
    audit.record(
        conn,
        actor=author,
        action="draft.comment",
        object_type="draft",
        object_id=draft_id,
        after={"comment_id": comment_id, "body": body},
    )
    return comment_id


def _swap(
    conn: Connection, draft_id: int, expected: int, values: dict[str, Any], *, doing: str
) -> None:
    """The one write of a draft's row: only while its version is `expected`, raising it."""
    res = conn.execute(
        drafts.update()
        .where(drafts.c.id == draft_id, drafts.c.version == expected)
        .values(**values, version=expected + 1)
    )
    if res.rowcount != 1:
        raise conflict(conn, draft_id, doing)


def last_change(conn: Connection, draft_id: int) -> tuple[str, str] | None:
    """(who, what they did) of the draft's latest change in the audit log (comments aside)."""
    row = conn.execute(
        sa.select(audit_log.c.actor, audit_log.c.action)
        .where(
            audit_log.c.object_type == "draft",
            audit_log.c.object_id == str(draft_id),
            audit_log.c.action != "draft.comment",
        )
        .order_by(audit_log.c.id.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    return row.actor, _DONE.get(row.action, row.action.removeprefix("draft."))


def conflict(conn: Connection, draft_id: int, doing: str) -> Conflict:
    """The error for a change that lost a race (or was made from an older text): who changed
    the draft since, and that this change was not made."""
    last = last_change(conn, draft_id)
    by = f" ({last[1]} by {last[0]})" if last else ""
    return Conflict(
        f"draft {draft_id} was changed since you opened it{by}; it was not {doing}",
        hint="reload it and review the text as it is now",
    )


def note_viewer(conn: Connection, draft_id: int, user: str, now: datetime) -> None:
    """Record that `user` has the draft's page open now (the soft lock); not audited. One
    upsert (SQLite and Postgres both have `ON CONFLICT`), so two tabs at once cannot clash; a
    row seen in the last few seconds is left alone, so a page view is not a write each time."""
    seen = conn.execute(
        sa.select(draft_viewers.c.seen_at).where(
            draft_viewers.c.draft_id == draft_id, draft_viewers.c.user_name == user
        )
    ).scalar()
    if seen is not None and now - seen < _VIEWER_REFRESH:
        return
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(draft_viewers).values(draft_id=draft_id, user_name=user, seen_at=now)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[draft_viewers.c.draft_id, draft_viewers.c.user_name],
            set_={"seen_at": now},
        )
    )


def viewers(conn: Connection, draft_id: int, since: datetime) -> list[tuple[str, datetime]]:
    """Who had the draft's page open since `since`, most recent first."""
    rows = conn.execute(
        sa.select(draft_viewers.c.user_name, draft_viewers.c.seen_at)
        .where(draft_viewers.c.draft_id == draft_id, draft_viewers.c.seen_at >= since)
        .order_by(draft_viewers.c.seen_at.desc())
    )
    return [(r.user_name, r.seen_at) for r in rows]
