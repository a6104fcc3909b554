"""The one owner of writes to `drafts` and its `comments`.

Every change of a draft is a named function here, taking the caller's Connection and writing
its audit row (who, what, before/after) in the same transaction, so the log can never miss or
invent one. Whether a change is allowed (review's states, consent, the editor's text kept on a
regeneration) is decided by the callers, `workflow.review`, `workflow.assignments` and
`stages.draft.saving`; the one rule kept here is that a regenerated text sends a decided draft
back to review (`records.draft.BACK_TO_REVIEW`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from narratives.core.clock import utcnow
from narratives.records.draft import BACK_TO_REVIEW, Draft, DraftState
from narratives.store import audit
from narratives.store.schema import comments, drafts

__all__ = ["insert", "regenerate", "set_state", "save_edit", "reopen", "add_comment"]

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
    conn.execute(drafts.update().where(drafts.c.id == row.id).values(**values))
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
    """A review decision (`action`: draft.approve, draft.reject...), with its audit row."""
    conn.execute(
        drafts.update().where(drafts.c.id == draft.id).values(state=state, updated_at=utcnow())
    )
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
    `draft.edit` audit row."""
    conn.execute(
        drafts.update()
        .where(drafts.c.id == draft.id)
        .values(content=content, edited=True, state=S.PENDING_REVIEW, updated_at=utcnow())
    )
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
        .values(state=S.PENDING_REVIEW, updated_at=utcnow())
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
