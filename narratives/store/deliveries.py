"""The one owner of writes to `deliveries` and `delivery_attempts`, and the rules they follow.

Every state change of a delivery is a named function here, taking the caller's Connection
and writing its audit row in the same transaction. Writes of a publisher holding a claim
(`progress`, `published`, `failed`) are conditional on the row still being `publishing` under
that claim; a False return means the claim was lost, and the caller re-reads the row.

Two rules live here because more than one module applies them:
- **stale claims** (`store.claims.claim_is_stale`): a claim whose owner process on this host
  is gone, or that made no progress for `CLAIM_LEASE`, is handed back (`release_stale_claims`);
- **missed** (`is_late`, `mark_missed`): a delivery whose time passed by more than the
  campaign's `slots.missed_after_hours` is missed if it never went out, whether the scheduler
  finds it at start or a publisher on its wake-up. Never tried, or a failed one waiting for its
  retry; not one with a post already out (it is finished, not missed). A wait the server
  imposed (HTTP 429, Bluesky's daily video limit: its latest attempt is `rate_limited`) is
  measured from its `retry_at` instead: the server chose that time, so waiting for it is not
  lateness (issue 19; a daily limit can hold a post for most of a day).

Reads shared by several modules are in `store.delivery_queries`.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from narratives.core.campaigns import get_campaign
from narratives.core.errors import NarrativesError
from narratives.records.delivery import WAITING, Delivery, DeliveryState
from narratives.store import audit
from narratives.store.claims import claim_is_stale, new_claim_owner
from narratives.store.context import Context
from narratives.store.delivery_queries import get_delivery, was_attempted
from narratives.store.schema import deliveries, delivery_attempts

__all__ = [
    "missed_limit",
    "is_late",
    "waits_for_server",
    "overdue",
    "mark_missed",
    "insert_scheduled",
    "claim",
    "progress",
    "record_attempt",
    "published",
    "failed",
    "release_stale_claims",
    "cancel",
    "reschedule",
    "start_withdrawing",
    "finish_withdrawing",
]

S = DeliveryState


def _summary(d: Delivery) -> dict[str, Any]:
    """A delivery as its audit rows show it."""
    return {
        "state": d.state,
        "scheduled_at": d.scheduled_at.isoformat(),
        "retry_at": d.retry_at.isoformat() if d.retry_at else None,
    }


# ----------------------------------------------------------------------------- publishers


def _same(column: Any, value: Any) -> Any:
    return column.is_(None) if value is None else column == value


def _ours(delivery_id: int, owner: str) -> Any:
    """The WHERE clause of every write a publisher makes while it holds the claim."""
    return sa.and_(
        deliveries.c.id == delivery_id,
        deliveries.c.state == S.PUBLISHING,
        deliveries.c.claimed_by == owner,
    )


def _due_clause(now: datetime) -> Any:
    return sa.or_(
        sa.and_(deliveries.c.state == S.SCHEDULED, deliveries.c.scheduled_at <= now),
        sa.and_(
            deliveries.c.state == S.FAILED,
            deliveries.c.retry_at.is_not(None),
            deliveries.c.retry_at <= now,
        ),
    )


def claim(conn: Connection, delivery_id: int, now: datetime, owner: str | None = None) -> bool:
    """Atomically move a due delivery to `publishing`; False if not due or another process won."""
    res = conn.execute(
        deliveries.update()
        .where(deliveries.c.id == delivery_id, _due_clause(now))
        .values(
            state=S.PUBLISHING,
            attempts=deliveries.c.attempts + 1,
            updated_at=now,
            claimed_by=owner or new_claim_owner(),
            claimed_at=now,
        )
    )
    return res.rowcount == 1


def progress(
    conn: Connection, delivery_id: int, owner: str, posts: list[dict[str, Any]], now: datetime
) -> bool:
    """Store a thread's progress and refresh the claim; False when the claim was lost."""
    res = conn.execute(
        deliveries.update()
        .where(_ours(delivery_id, owner))
        .values(posts=posts, updated_at=now, claimed_at=now)
    )
    return res.rowcount == 1


def record_attempt(
    conn: Connection, delivery_id: int, outcome: str, error: str | None, at: datetime
) -> None:
    conn.execute(
        delivery_attempts.insert().values(
            delivery_id=delivery_id, at=at, outcome=outcome, error=error
        )
    )


def published(
    conn: Connection,
    delivery_id: int,
    owner: str,
    *,
    content: dict[str, Any],
    posts: list[dict[str, Any]] | None,
    url: str | None,
    outcome: str,
    actor: str,
    at: datetime,
) -> bool:
    """`publishing` → `published` with the content that went out, its attempt and audit row;
    False when the claim was lost."""
    values: dict[str, Any] = {
        "state": S.PUBLISHED,
        # What went out, kept apart from the draft: an edit after publishing sends the
        # draft back to review and must not reach a feed built from this delivery.
        "content": content,
        "published_at": at,
        "retry_at": None,
        "last_error": None,
        "updated_at": at,
        "claimed_by": None,
        "claimed_at": None,
    }
    if posts is not None:
        values["posts"] = posts
    res = conn.execute(deliveries.update().where(_ours(delivery_id, owner)).values(**values))
    if res.rowcount != 1:
        return False
    record_attempt(conn, delivery_id, outcome, None, at)
    audit.record(
        conn,
        actor=actor,
        action="publish",
        object_type="delivery",
        object_id=delivery_id,
        before={"state": S.PUBLISHING},
        after={"state": S.PUBLISHED, "url": url},
        detail=outcome,
    )
    return True


def failed(
    conn: Connection,
    delivery_id: int,
    owner: str,
    *,
    retry_at: datetime | None,
    last_error: str,
    kind: str,
    error: str,
    actor: str,
    now: datetime,
    counts: bool = True,
) -> bool:
    """`publishing` → `failed` (to retry at `retry_at`, or stopped when None), with its
    attempt (`kind`: transient_error | permanent_error | rate_limited) and audit row; False
    when the claim was lost (a "failed" row and audit entry would then misreport what
    happened). With `counts=False` (a rate-limit wait) the claim's attempt is given back, so
    waiting for the server does not bring the delivery nearer its attempt limit."""
    values: dict[str, Any] = {}
    if not counts:
        values["attempts"] = sa.case(
            (deliveries.c.attempts > 0, deliveries.c.attempts - 1), else_=0
        )
    res = conn.execute(
        deliveries.update()
        .where(_ours(delivery_id, owner))
        .values(
            state=S.FAILED,
            retry_at=retry_at,
            last_error=last_error,
            updated_at=now,
            claimed_by=None,
            claimed_at=None,
            **values,
        )
    )
    if res.rowcount != 1:
        return False
    record_attempt(conn, delivery_id, kind, error, now)
    audit.record(
        conn,
        actor=actor,
        action="publish_failed",
        object_type="delivery",
        object_id=delivery_id,
        before={"state": S.PUBLISHING},
        after={"state": S.FAILED, "retry_at": retry_at.isoformat() if retry_at else None},
        detail=last_error,
    )
    return True


def release_stale_claims(conn: Connection, now: datetime, *, actor: str, reason: str) -> list[int]:
    """Deliveries left `publishing` under a stale claim become due again (`failed`, to retry
    now): their record keys make the repeat find what landed. A fresh claim is left alone."""
    rows = conn.execute(
        sa.select(deliveries.c.id, deliveries.c.claimed_by, deliveries.c.claimed_at).where(
            deliveries.c.state == S.PUBLISHING
        )
    ).all()
    ids = []
    for r in rows:
        if not claim_is_stale(r.claimed_by, r.claimed_at, now):
            continue
        # Conditional on the same claim, so a claim refreshed meanwhile is left alone.
        res = conn.execute(
            deliveries.update()
            .where(
                deliveries.c.id == r.id,
                deliveries.c.state == S.PUBLISHING,
                _same(deliveries.c.claimed_by, r.claimed_by),
                _same(deliveries.c.claimed_at, r.claimed_at),
            )
            .values(
                state=S.FAILED,
                retry_at=now,
                last_error=reason,
                updated_at=now,
                claimed_by=None,
                claimed_at=None,
            )
        )
        if res.rowcount == 1:
            ids.append(r.id)
    for i in ids:
        record_attempt(conn, i, "transient_error", reason, now)
        audit.record(
            conn,
            actor=actor,
            action="recover",
            object_type="delivery",
            object_id=i,
            before={"state": S.PUBLISHING},
            after={"state": S.FAILED, "retry_at": now.isoformat()},
            detail=reason,
        )
    return ids


# ----------------------------------------------------------------------------- missed


def missed_limit(ctx: Context, campaign_slug: str) -> timedelta:
    """How late a never-attempted delivery may go out: the campaign's limit, else the settings'."""
    try:
        hours = get_campaign(ctx.workspace, campaign_slug).slots.missed_after_hours
    except NarrativesError:
        hours = ctx.settings.scheduler.missed_after_hours
    return timedelta(hours=hours)


#: The `delivery_attempts.outcome` of a wait the server imposed (HTTP 429, a daily limit).
RATE_LIMITED = "rate_limited"


def _server_wait() -> Any:
    """A failed delivery waiting for a time the server set: its latest attempt is a rate-limit
    wait (never NULL, so its negation is safe)."""
    latest = (
        sa.select(delivery_attempts.c.outcome)
        .where(delivery_attempts.c.delivery_id == deliveries.c.id)
        .order_by(delivery_attempts.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    return sa.and_(
        deliveries.c.state == S.FAILED,
        deliveries.c.retry_at.is_not(None),
        sa.func.coalesce(latest, "") == RATE_LIMITED,
    )


def waits_for_server(conn: Connection, delivery_id: int) -> bool:
    """Whether the delivery is waiting for a time the server set (see `_server_wait`)."""
    q = sa.select(deliveries.c.id).where(deliveries.c.id == delivery_id, _server_wait())
    return conn.execute(q).first() is not None


def _late(now: datetime, limit: timedelta, server_wait: bool) -> Any:
    """The lateness part of the missed rule, for `mark_missed`'s own condition."""
    cutoff = now - limit
    if server_wait:
        return sa.and_(_server_wait(), deliveries.c.retry_at < cutoff)
    return sa.and_(~_server_wait(), deliveries.c.scheduled_at < cutoff)


def _missable() -> Any:
    """The part of the missed rule the database checks (the rest is in `is_late`)."""
    return sa.or_(
        # Never tried: `attempts` restarts at a move, but a tried one may have posts out
        # (a thread half posted) and must be finished, not missed.
        sa.and_(deliveries.c.state == S.SCHEDULED, ~was_attempted()),
        # A retry still pending: stale too, unless part of it is already out.
        sa.and_(deliveries.c.state == S.FAILED, deliveries.c.retry_at.is_not(None)),
    )


def is_late(d: Delivery, now: datetime, limit: timedelta, *, server_wait: bool = False) -> bool:
    """Whether a waiting delivery is past its campaign's limit with nothing of it out.

    Lateness counts from `scheduled_at`, or from `retry_at` for a wait the server imposed
    (`server_wait`, see `waits_for_server`). Without `server_wait` this is a first check only:
    `mark_missed`'s own condition applies the whole rule (a server wait, or a scheduled one
    that was ever attempted, is refused there)."""
    if d.state not in WAITING or d.scheduled_at > now:
        return False
    if d.state == S.FAILED and (d.retry_at is None or d.landed_posts):
        return False
    since = d.retry_at if server_wait and d.retry_at is not None else d.scheduled_at
    return now - since > limit


def overdue(conn: Connection, now: datetime) -> list[Delivery]:
    """The due deliveries the missed rule may apply to (filter them with `is_late`)."""
    rows = conn.execute(
        sa.select(deliveries)
        .where(_missable(), deliveries.c.scheduled_at <= now)
        .order_by(deliveries.c.id)
    ).all()
    return [Delivery.from_row(r) for r in rows]


def mark_missed(
    conn: Connection, d: Delivery, now: datetime, *, actor: str, limit: timedelta
) -> bool:
    """Mark a late delivery (`is_late`) `missed`, with the reason and its audit row; False
    when it changed meanwhile, was tried after all (then it is published, not missed), or is
    waiting for a time the server set that is not `limit` past (the rule is checked here, in
    the UPDATE's condition, so a caller's stale view cannot miss a server wait)."""
    server_wait = waits_for_server(conn, d.id)
    if server_wait and d.retry_at is not None:
        reason = (
            f"missed: due {d.scheduled_at.isoformat()}, held by the server's limit until "
            f"{d.retry_at.isoformat()}, and it was "
            f"{(now - d.retry_at).total_seconds() / 3600:.1f} h past that when the scheduler woke"
        )
    else:
        reason = (
            f"missed: due {d.scheduled_at.isoformat()}, and it was "
            f"{(now - d.scheduled_at).total_seconds() / 3600:.1f} h late when the scheduler woke"
        )
    res = conn.execute(
        deliveries.update()
        .where(
            deliveries.c.id == d.id,
            deliveries.c.state == d.state,
            _missable(),
            _late(now, limit, server_wait),
        )
        .values(state=S.MISSED, retry_at=None, last_error=reason, updated_at=now)
    )
    if res.rowcount != 1:
        return False
    audit.record(
        conn,
        actor=actor,
        action="missed",
        object_type="delivery",
        object_id=d.id,
        before={"state": d.state},
        after={"state": S.MISSED},
        detail=reason,
    )
    return True


# ----------------------------------------------------------------------------- editors


def insert_scheduled(
    conn: Connection,
    draft: Any,
    when: datetime,
    *,
    posts: list[dict[str, Any]] | None,
    rkey: str | None,
    actor: str,
    now: datetime,
) -> Delivery:
    """A new `scheduled` delivery of `draft` (a drafts row) at `when`, with its audit row.

    The one-open-delivery index refuses a second open delivery of the draft (IntegrityError)."""
    result = conn.execute(
        deliveries.insert().values(
            draft_id=draft.id,
            campaign=draft.campaign,
            channel=draft.channel,
            state=S.SCHEDULED,
            scheduled_at=when,
            rkey=rkey,
            attempts=0,
            posts=posts,
            created_at=now,
            updated_at=now,
        )
    )
    delivery = get_delivery(conn, result.inserted_primary_key[0])
    audit.record(
        conn,
        actor=actor,
        action="schedule",
        object_type="delivery",
        object_id=delivery.id,
        after={**_summary(delivery), "draft_id": draft.id, "channel": draft.channel},
    )
    return delivery


def cancel(
    conn: Connection, before: Delivery, *, actor: str, now: datetime, detail: str | None = None
) -> Delivery | None:
    """Cancel a waiting delivery, with its audit row; None when its state changed meanwhile."""
    res = conn.execute(
        deliveries.update()
        .where(deliveries.c.id == before.id, deliveries.c.state.in_(WAITING))
        .values(state=S.CANCELLED, retry_at=None, updated_at=now)
    )
    if res.rowcount != 1:
        return None
    after = get_delivery(conn, before.id)
    audit.record(
        conn,
        actor=actor,
        action="cancel",
        object_type="delivery",
        object_id=before.id,
        before=_summary(before),
        after=_summary(after),
        detail=detail,
    )
    return after


def reschedule(
    conn: Connection, before: Delivery, when: datetime, *, actor: str, now: datetime
) -> Delivery | None:
    """A waiting delivery scheduled afresh at `when` (attempts restart; its record keys stay),
    with its audit row; None when its state changed meanwhile."""
    res = conn.execute(
        deliveries.update()
        .where(deliveries.c.id == before.id, deliveries.c.state.in_(WAITING))
        .values(
            state=S.SCHEDULED,
            scheduled_at=when,
            retry_at=None,
            last_error=None,
            attempts=0,
            updated_at=now,
        )
    )
    if res.rowcount != 1:
        return None
    after = get_delivery(conn, before.id)
    audit.record(
        conn,
        actor=actor,
        action="move",
        object_type="delivery",
        object_id=before.id,
        before=_summary(before),
        after=_summary(after),
    )
    return after


# ----------------------------------------------------------------------------- takedowns


def start_withdrawing(conn: Connection, delivery_id: int, from_state: str, now: datetime) -> bool:
    """Mark a delivery `withdrawing` (no publisher may write it any more) if it is still in
    `from_state`. Its audit row is written when the takedown finishes."""
    res = conn.execute(
        deliveries.update()
        .where(deliveries.c.id == delivery_id, deliveries.c.state == from_state)
        .values(state=S.WITHDRAWING, retry_at=None, updated_at=now)
    )
    return res.rowcount == 1


def finish_withdrawing(
    conn: Connection,
    delivery_id: int,
    claimed_by: str | None,
    now: datetime,
    *,
    actor: str,
    detail: str,
    before: dict[str, Any] | None,
    deleted: list[str],
) -> bool:
    """`withdrawing` → `withdrawn`, only while the claim is still `claimed_by` (so a publisher
    that claimed it meanwhile is not overruled), with a `withdraw` audit row unless `before`
    is None (a repeat look that found nothing more to delete)."""
    res = conn.execute(
        deliveries.update()
        .where(
            deliveries.c.id == delivery_id,
            deliveries.c.state == S.WITHDRAWING,
            _same(deliveries.c.claimed_by, claimed_by),
        )
        .values(
            state=S.WITHDRAWN,
            retry_at=None,
            updated_at=now,
            claimed_by=None,
            claimed_at=None,
        )
    )
    if res.rowcount != 1:
        return False
    if before is not None:
        audit.record(
            conn,
            actor=actor,
            action="withdraw",
            object_type="delivery",
            object_id=delivery_id,
            before=before,
            after={"state": S.WITHDRAWN, "deleted": deleted},
            detail=detail,
        )
    return True
