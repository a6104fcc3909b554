"""Reads of the deliveries table that the scheduling, publishing and takedown code share.

The writes, and the rules they follow, are in `store.deliveries`; these only look.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from narratives.core.campaigns import RECORD_CHANNELS
from narratives.core.errors import NotFound
from narratives.records.delivery import LIVE, OPEN, STOPPED, Delivery, DeliveryState
from narratives.store.schema import deliveries, delivery_attempts, drafts

__all__ = [
    "was_attempted",
    "live_clause",
    "get_delivery",
    "list_deliveries",
    "load_with_attempts",
    "live_of_narrative",
    "open_delivery",
    "open_draft_ids",
    "occupied_times",
    "attempted_keys",
    "waiting_times",
]

S = DeliveryState


def was_attempted() -> Any:
    """True for a delivery with any publish attempt on record. `deliveries.attempts` counts
    attempts since the last `move` (for backoff), so it cannot say whether a post may be out."""
    return sa.exists().where(delivery_attempts.c.delivery_id == deliveries.c.id)


def live_clause() -> Any:
    """Deliveries with something to stop or take down; cancelled or missed deliveries of a
    channel with records (Bluesky) that were attempted count too, since a post may have landed
    without being recorded."""
    return sa.or_(
        deliveries.c.state.in_(LIVE),
        sa.and_(
            deliveries.c.state.in_(STOPPED),
            deliveries.c.channel.in_(RECORD_CHANNELS),
            was_attempted(),
        ),
    )


def get_delivery(conn: Connection, delivery_id: int) -> Delivery:
    row = conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id)).first()
    if row is None:
        raise NotFound(f"no delivery {delivery_id}", hint="see `narrative schedule list`")
    return Delivery.from_row(row)


def list_deliveries(
    conn: Connection,
    *,
    campaign: str | None = None,
    states: Sequence[str] | None = None,
    draft_id: int | None = None,
    channel: str | None = None,
) -> list[Delivery]:
    """Deliveries ordered by scheduled time, optionally filtered."""
    q = sa.select(deliveries).order_by(deliveries.c.scheduled_at, deliveries.c.id)
    if campaign is not None:
        q = q.where(deliveries.c.campaign == campaign)
    if states:
        q = q.where(deliveries.c.state.in_(list(states)))
    if draft_id is not None:
        q = q.where(deliveries.c.draft_id == draft_id)
    if channel is not None:
        q = q.where(deliveries.c.channel == channel)
    return [Delivery.from_row(r) for r in conn.execute(q)]


def load_with_attempts(conn: Connection, delivery_id: int) -> Any:
    """The delivery's row with `ever_attempted` (whether any attempt is on record)."""
    row = conn.execute(
        sa.select(deliveries, was_attempted().label("ever_attempted")).where(
            deliveries.c.id == delivery_id
        )
    ).first()
    if row is None:
        raise NotFound(f"no delivery {delivery_id}")
    return row


def live_of_narrative(conn: Connection, narrative_id: str) -> list[Any]:
    """(id, state, channel) of the narrative's live deliveries (`live_clause`), by id."""
    return conn.execute(
        sa.select(deliveries.c.id, deliveries.c.state, deliveries.c.channel)
        .join(drafts, drafts.c.id == deliveries.c.draft_id)
        .where(drafts.c.narrative_id == narrative_id, live_clause())
        .order_by(deliveries.c.id)
    ).all()


def open_delivery(conn: Connection, draft_id: int) -> Any:
    """(id, state) of the draft's open delivery (at most one: see `records.delivery.OPEN`)."""
    return conn.execute(
        sa.select(deliveries.c.id, deliveries.c.state).where(
            deliveries.c.draft_id == draft_id, deliveries.c.state.in_(OPEN)
        )
    ).first()


def open_draft_ids() -> Any:
    """A subquery: the ids of drafts with an open delivery."""
    return sa.select(deliveries.c.draft_id).where(deliveries.c.state.in_(OPEN))


def occupied_times(conn: Connection, campaign: str, channel: str, after: datetime) -> set[datetime]:
    """The times after `after` that deliveries of this campaign and channel hold."""
    rows = conn.execute(
        sa.select(deliveries.c.scheduled_at).where(
            deliveries.c.campaign == campaign,
            deliveries.c.channel == channel,
            deliveries.c.state.in_(OPEN),
            deliveries.c.scheduled_at > after,
        )
    )
    return {r.scheduled_at for r in rows}


def attempted_keys(conn: Connection, draft_id: int) -> list[dict[str, Any]] | None:
    """The record keys of the draft's latest closed Bluesky delivery that was attempted.

    An attempt may have landed a post without recording it (killed after the server committed);
    scheduling the draft again with the same keys finds that post instead of posting it twice.
    """
    row = conn.execute(
        sa.select(deliveries.c.posts)
        .where(
            deliveries.c.draft_id == draft_id,
            deliveries.c.channel.in_(RECORD_CHANNELS),
            # Not open any more; a missed one from before missed required "never tried".
            deliveries.c.state.in_(STOPPED),
            was_attempted(),
        )
        .order_by(deliveries.c.id.desc())
        .limit(1)
    ).first()
    if row is None or not row.posts:
        return None
    return [{"rkey": p["rkey"], "uri": None, "cid": None} for p in row.posts if p.get("rkey")]


def waiting_times(conn: Connection) -> dict[int, datetime]:
    """Delivery id → when it wants to wake, for every delivery with something to do."""
    rows = conn.execute(
        sa.select(
            deliveries.c.id,
            deliveries.c.state,
            deliveries.c.scheduled_at,
            deliveries.c.retry_at,
        ).where(
            sa.or_(
                deliveries.c.state == S.SCHEDULED,
                sa.and_(deliveries.c.state == S.FAILED, deliveries.c.retry_at.is_not(None)),
            )
        )
    )
    return {r.id: (r.scheduled_at if r.state == S.SCHEDULED else r.retry_at) for r in rows}
