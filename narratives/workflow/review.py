"""The review rules, shared by the web app and the CLI.

States: `pending_review → approved | rejected | changes_requested`. Only `approve` moves a draft
to `approved`, and only from `pending_review`; any edit sends a draft back to `pending_review`.
Every action writes its audit row (who, what, before/after) in the same transaction as the
change, so the log can never miss or invent one; the writes are `narratives.store.drafts`'. The
`Draft` and `Comment` records it reads and returns, and the `DraftState`s, are in
`narratives.records.draft`.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from narratives.channels.bluesky.limits import draft_problems as bluesky_problems
from narratives.core.campaigns import BLUESKY, RSS, draft_gates, get_campaign
from narratives.core.clock import utcnow
from narratives.core.errors import InvalidState, NotFound, UsageError
from narratives.policy.consent import check_approvable
from narratives.records.draft import (
    CHANGES_REQUESTABLE,
    EDITABLE,
    REJECTABLE,
    STATES,
    Comment,
    Draft,
    DraftState,
)
from narratives.stages.draft.templates import join_posts, split_posts
from narratives.store import audit
from narratives.store import drafts as draft_rows
from narratives.store.context import Context
from narratives.store.schema import (
    audit_log,
    comments,
    consents,
    deliveries,
    drafts,
    narratives,
    tag_corrections,
)
from narratives.store.users import require_active

__all__ = [
    "get_draft",
    "list_drafts",
    "list_comments",
    "history",
    "problems",
    "approve",
    "reject",
    "request_changes",
    "edit",
    "edit_text",
    "comment",
    "correct_tag",
    "tag_corrections_for",
    "content_to_text",
    "text_to_changes",
]

_MAX_COMMENT = 5000
_MAX_REASON = 2000
_SEPARATOR_LINE = re.compile(r"^[ \t]*-{3,}[ \t]*$", re.MULTILINE)


def _query():
    return (
        sa.select(
            drafts,
            narratives.c.title.label("n_title"),
            narratives.c.label,
            consents.c.withdrawn_at.label("consent_withdrawn_at"),
        )
        .join(narratives, narratives.c.id == drafts.c.narrative_id)
        .outerjoin(consents, consents.c.narrative_id == drafts.c.narrative_id)
    )


def _draft(row) -> Draft:
    m = row._mapping
    data = m["data"] or {}
    return Draft(
        id=m["id"],
        narrative_id=m["narrative_id"],
        campaign=m["campaign"],
        channel=m["channel"],
        state=m["state"],
        template=m["template"],
        template_hash=m["template_hash"],
        generated=m["generated"],
        content=m["content"],
        edited=bool(m["edited"]),
        data=data,
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        title=data.get("title") or m["n_title"] or m["label"],
        revision=m["version"],
        withdrawn=m["consent_withdrawn_at"] is not None,
    )


def _load(conn: Connection, draft_id: int) -> Draft:
    row = conn.execute(_query().where(drafts.c.id == draft_id)).first()
    if row is None:
        raise NotFound(f"no draft {draft_id}", hint="see `narrative drafts list`")
    return _draft(row)


def get_draft(ctx: Context, draft_id: int) -> Draft:
    with ctx.db.connect() as conn:
        return _load(conn, draft_id)


def list_drafts(
    ctx: Context,
    *,
    campaign: str | None = None,
    channel: str | None = None,
    state: str | None = None,
    tag: str | None = None,
) -> list[Draft]:
    """Drafts, oldest first within each state, filtered by any of the arguments."""
    if state and state not in STATES:
        raise UsageError(f"unknown state {state!r}", hint=f"one of: {', '.join(STATES)}")
    q = _query().order_by(drafts.c.updated_at, drafts.c.id)
    if campaign:
        q = q.where(drafts.c.campaign == campaign)
    if channel:
        q = q.where(drafts.c.channel == channel)
    if state:
        q = q.where(drafts.c.state == state)
    with ctx.db.connect() as conn:
        found = [_draft(r) for r in conn.execute(q)]
    if tag:
        found = [d for d in found if tag in (d.data.get("tags") or [])]
    return found


def list_comments(ctx: Context, draft_id: int) -> list[Comment]:
    with ctx.db.connect() as conn:
        rows = conn.execute(
            sa.select(comments).where(comments.c.draft_id == draft_id).order_by(comments.c.id)
        )
        return [Comment(r.id, r.draft_id, r.author, r.body, r.created_at) for r in rows]


def history(ctx: Context, draft_id: int, *, related: bool = False) -> list[dict[str, Any]]:
    """The draft's audit log, oldest first.

    With `related`, also what was done to its story (consent, hidden names, tag corrections)
    and to its deliveries (scheduled, moved, published, withdrawn): everything an editor can
    do from the draft's page. Each entry then says its `object_type`.
    """
    with ctx.db.connect() as conn:
        if not related:
            return audit.history(conn, "draft", draft_id)
        draft = _load(conn, draft_id)
        delivery_ids = [
            str(r[0])
            for r in conn.execute(
                sa.select(deliveries.c.id).where(deliveries.c.draft_id == draft_id)
            )
        ]
        c = audit_log.c
        rows = conn.execute(
            sa.select(audit_log)
            .where(
                sa.or_(
                    sa.and_(c.object_type == "draft", c.object_id == str(draft_id)),
                    sa.and_(
                        c.object_type.in_(("narrative", "consent")),
                        c.object_id == draft.narrative_id,
                    ),
                    sa.and_(c.object_type == "delivery", c.object_id.in_(delivery_ids)),
                )
            )
            .order_by(c.id)
        )
        return [dict(r._mapping) for r in rows]


def problems(draft: Draft) -> list[str]:
    """What stops the draft from being approved as it stands (empty when it may be)."""
    found: list[str] = []
    if draft.channel == BLUESKY:
        # Every Bluesky limit (text, alt text, languages, labels, reply rules), issue 19.
        found.extend(bluesky_problems(draft.content))
    elif draft.channel == RSS:
        for key in ("title", "content"):
            if not str(draft.content.get(key) or "").strip():
                found.append(f"the item has no {key}")
    return found


def _check_consent(conn: Connection, draft: Draft) -> None:
    """The consent hook (issue 7): the one place approval asks whether it may go ahead.

    Raising `ConsentError` aborts the approval and its transaction.
    """
    check_approvable(conn, draft.narrative_id, draft.channel)


def _check_seen(conn: Connection, draft: Draft, seen: str | None, doing: str) -> None:
    """The text the user read (`seen`, a `Draft.version`) must be the text now; the write
    after it is a compare-and-swap on the row's version (`store.drafts`), so a change landing
    in between is refused too."""
    if seen is not None and seen != draft.version:
        raise draft_rows.conflict(conn, draft.id, doing)


def approve(ctx: Context, draft_id: int, *, actor: str, seen: str | None = None) -> Draft:
    """The only way to `approved`: from `pending_review`, with no problems, with consent.

    With `seen` (a `Draft.version`), only if the text is still the one the approver read.
    """
    require_active(ctx, actor)
    with ctx.db.begin() as conn:
        draft = _load(conn, draft_id)
        _check_seen(conn, draft, seen, "approved")
        if draft.state != DraftState.PENDING_REVIEW:
            raise InvalidState(
                f"draft {draft_id} is {draft.state.replace('_', ' ')}; only a draft pending "
                "review can be approved",
                hint="edit it to send it back to review"
                if draft.state != DraftState.APPROVED
                else None,
            )
        blocking = problems(draft)
        if blocking:
            raise InvalidState(
                f"draft {draft_id} cannot be approved: " + "; ".join(blocking),
                hint="edit the text first",
            )
        _check_consent(conn, draft)
        draft_rows.set_state(conn, draft, DraftState.APPROVED, actor=actor, action="draft.approve")
        return _load(conn, draft_id)


def _clean_reason(reason: str | None) -> str | None:
    reason = (reason or "").strip()
    if len(reason) > _MAX_REASON:
        raise UsageError(f"the reason is too long (at most {_MAX_REASON} characters)")
    return reason or None


def _decide(
    ctx: Context,
    draft_id: int,
    *,
    actor: str,
    state: DraftState,
    allowed: tuple[DraftState, ...],
    reason,
) -> Draft:
    require_active(ctx, actor)
    reason = _clean_reason(reason)
    with ctx.db.begin() as conn:
        draft = _load(conn, draft_id)
        if draft.state not in allowed:
            raise InvalidState(
                f"draft {draft_id} is {draft.state.replace('_', ' ')}; it cannot become "
                f"{state.replace('_', ' ')}"
            )
        action = "draft.reject" if state == DraftState.REJECTED else "draft.request_changes"
        draft_rows.set_state(conn, draft, state, actor=actor, action=action, detail=reason)
        return _load(conn, draft_id)


def reject(ctx: Context, draft_id: int, *, actor: str, reason: str | None = None) -> Draft:
    """Reject from review, from changes requested, or withdraw an approval."""
    return _decide(
        ctx,
        draft_id,
        actor=actor,
        state=DraftState.REJECTED,
        allowed=REJECTABLE,
        reason=reason,
    )


def request_changes(ctx: Context, draft_id: int, *, actor: str, reason: str | None = None) -> Draft:
    return _decide(
        ctx,
        draft_id,
        actor=actor,
        state=DraftState.CHANGES_REQUESTED,
        allowed=CHANGES_REQUESTABLE,
        reason=reason,
    )


def _merge(draft: Draft, changes: dict[str, Any]) -> dict[str, Any]:
    allowed = EDITABLE.get(draft.channel, ())
    unknown = sorted(set(changes) - set(allowed))
    if unknown:
        raise UsageError(
            f"cannot edit {', '.join(unknown)} of a {draft.channel} draft",
            hint=f"editable: {', '.join(allowed)}",
        )
    content = copy.deepcopy(draft.content)
    for key, value in changes.items():
        if key == "posts":
            if not isinstance(value, list) or not value:
                raise UsageError("a thread needs at least one post")
            texts = [v.get("text") if isinstance(v, dict) else v for v in value]
            if not all(isinstance(t, str) for t in texts):
                raise UsageError("posts must be text")
            content["posts"] = [{"text": t.strip()} for t in texts]
        elif key == "gates":
            # The draft's own reply and quote controls (issue 19); empty means the campaign's.
            try:
                gates = draft_gates(value)
            except ValueError as exc:
                raise UsageError(f"reply and quote settings: {exc}") from exc
            if gates is None:
                content.pop("gates", None)
            else:
                content["gates"] = gates
        elif key == "content_warning":
            if value is not None and not isinstance(value, str):
                raise UsageError("content_warning must be text")
            content[key] = (value or "").strip() or None
        else:
            if not isinstance(value, str):
                raise UsageError(f"{key} must be text")
            content[key] = value.replace("\r\n", "\n").strip()
    return content


def edit(
    ctx: Context,
    draft_id: int,
    changes: dict[str, Any],
    *,
    actor: str,
    seen: str | None = None,
) -> Draft:
    """Change the draft's text; any real change sends it back to `pending_review`.

    An over-long post may be saved (the editor sees the warning) but cannot be approved.
    With `seen` (a `Draft.version`), only if nobody changed the text since the editor read it.
    """
    require_active(ctx, actor)
    with ctx.db.begin() as conn:
        draft = _load(conn, draft_id)
        _check_seen(conn, draft, seen, "saved")
        content = _merge(draft, changes)
        if content == draft.content:
            return draft
        draft_rows.save_edit(conn, draft, content, actor=actor)
        return _load(conn, draft_id)


def content_to_text(draft: Draft) -> str:
    """The draft's editable text as one document: parts separated by `---` lines.

    Bluesky: one part per post. RSS: title, summary, content.
    """
    if draft.channel == BLUESKY:
        return join_posts(draft.posts) + "\n"
    c = draft.content
    return (
        f"{c.get('title', '')}\n\n---\n\n{c.get('summary', '')}\n\n---\n\n{c.get('content', '')}\n"
    )


def text_to_changes(draft: Draft, text: str) -> dict[str, Any]:
    """The inverse of `content_to_text`, for `edit`."""
    text = text.replace("\r\n", "\n")
    if draft.channel == BLUESKY:
        posts = split_posts(text)
        if not posts:
            raise UsageError("the text is empty")
        return {"posts": posts}
    parts = _SEPARATOR_LINE.split(text, maxsplit=2)
    if len(parts) != 3:
        raise UsageError(
            "an RSS draft is three parts separated by lines of ---: title, summary, content"
        )
    title, summary, content = (p.strip() for p in parts)
    return {"title": title, "summary": summary, "content": content}


def edit_text(
    ctx: Context, draft_id: int, text: str, *, actor: str, seen: str | None = None
) -> Draft:
    """`edit` from a `content_to_text` document (the CLI's $EDITOR round trip)."""
    changes = text_to_changes(get_draft(ctx, draft_id), text)
    return edit(ctx, draft_id, changes, actor=actor, seen=seen)


def comment(ctx: Context, draft_id: int, body: str, *, actor: str) -> Comment:
    require_active(ctx, actor)
    body = body.replace("\r\n", "\n").strip()
    if not body:
        raise UsageError("the comment is empty")
    if len(body) > _MAX_COMMENT:
        raise UsageError(f"the comment is too long (at most {_MAX_COMMENT} characters)")
    now = utcnow()
    with ctx.db.begin() as conn:
        draft = _load(conn, draft_id)
        comment_id = draft_rows.add_comment(conn, draft.id, actor, body, now)
    return Comment(comment_id, draft_id, actor, body, now)


def correct_tag(
    ctx: Context, narrative_id: str, campaign: str, tag: str, applies: bool, *, actor: str
) -> None:
    """Record an editor's tag correction (audited); the analysis stage learns from it.

    Checks the editor and the tag here; `narratives.stages.analyse.stage.correct_tag` does the rest.
    """
    require_active(ctx, actor)
    get_campaign(ctx.workspace, campaign).tag(tag)  # NotFound for a tag not in the taxonomy
    with ctx.db.connect() as conn:
        known = conn.execute(
            sa.select(narratives.c.id).where(narratives.c.id == narrative_id)
        ).first()
    if known is None:
        raise NotFound(f"no narrative {narrative_id[:12]}")
    # The analysis stage owns the tagging examples: it stores the correction with its audit
    # row in one transaction, then re-scores the narrative with it.
    # The analyse stage loads NumPy and scikit-learn: only when an editor corrects a tag.
    from narratives.stages.analyse.stage import correct_tag as analyse_correct_tag

    analyse_correct_tag(ctx, narrative_id, campaign, tag, applies, actor)


def tag_corrections_for(ctx: Context, narrative_id: str) -> list[dict[str, Any]]:
    with ctx.db.connect() as conn:
        rows = conn.execute(
            sa.select(tag_corrections)
            .where(tag_corrections.c.narrative_id == narrative_id)
            .order_by(tag_corrections.c.id)
        )
        return [dict(r._mapping) for r in rows]
