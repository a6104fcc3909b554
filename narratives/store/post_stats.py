"""The one writer of `post_stats`: published Bluesky posts' counts over time (issue 19), and
the reads the engagement report is made from."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from narratives.records.delivery import DeliveryState
from narratives.store.schema import deliveries, drafts, narratives, post_stats

__all__ = ["COUNTS", "latest_by_delivery", "published_posts", "record", "totals_over_time"]

#: The counts kept for each post, in report order.
COUNTS = ("likes", "reposts", "replies", "quotes")


def record(conn: Connection, at: datetime, rows: Iterable[tuple[int, str, dict[str, int]]]) -> int:
    """One pull's counts: (delivery id, post URI, counts) each; returns how many were stored."""
    values = [
        {"delivery_id": d, "uri": uri, "at": at, **{k: int(c.get(k, 0)) for k in COUNTS}}
        for d, uri, c in rows
    ]
    if values:
        conn.execute(post_stats.insert(), values)
    return len(values)


def published_posts(conn: Connection, campaign: str | None = None) -> list[Any]:
    """Published Bluesky deliveries with their stored posts: (id, campaign, posts)."""
    q = sa.select(deliveries.c.id, deliveries.c.campaign, deliveries.c.posts).where(
        deliveries.c.state == DeliveryState.PUBLISHED, deliveries.c.channel == "bluesky"
    )
    if campaign is not None:
        q = q.where(deliveries.c.campaign == campaign)
    return conn.execute(q.order_by(deliveries.c.id)).all()


def latest_by_delivery(conn: Connection, campaign: str) -> list[dict[str, Any]]:
    """Each published delivery of the campaign with its story's title and tags, its
    publication time, and its thread's counts summed from the latest pull of each post
    (zeros when never pulled)."""
    latest = (
        sa.select(post_stats.c.uri, sa.func.max(post_stats.c.id).label("id"))
        .group_by(post_stats.c.uri)
        .subquery()
    )
    counts = (
        sa.select(
            post_stats.c.delivery_id,
            *[sa.func.sum(post_stats.c[k]).label(k) for k in COUNTS],
            sa.func.max(post_stats.c.at).label("pulled_at"),
        )
        .join(latest, latest.c.id == post_stats.c.id)
        .group_by(post_stats.c.delivery_id)
        .subquery()
    )
    rows = conn.execute(
        sa.select(
            deliveries.c.id,
            deliveries.c.published_at,
            deliveries.c.posts,
            drafts.c.data,
            narratives.c.title,
            narratives.c.label,
            *[counts.c[k] for k in COUNTS],
            counts.c.pulled_at,
        )
        .join(drafts, drafts.c.id == deliveries.c.draft_id)
        .join(narratives, narratives.c.id == drafts.c.narrative_id)
        .outerjoin(counts, counts.c.delivery_id == deliveries.c.id)
        .where(
            deliveries.c.campaign == campaign,
            deliveries.c.channel == "bluesky",
            deliveries.c.state == DeliveryState.PUBLISHED,
        )
        .order_by(deliveries.c.published_at, deliveries.c.id)
    ).all()
    out = []
    for r in rows:
        data = r.data or {}
        out.append(
            {
                "delivery_id": r.id,
                "title": data.get("title") or r.title or r.label or f"delivery {r.id}",
                "tags": list(data.get("tags") or []),
                "published_at": r.published_at,
                "uri": next((p.get("uri") for p in r.posts or () if p.get("uri")), None),
                "pulled_at": r.pulled_at,
                **{k: int(getattr(r, k) or 0) for k in COUNTS},
            }
        )
    return out


def totals_over_time(conn: Connection, campaign: str) -> list[dict[str, Any]]:
    """The campaign's summed counts at each pull time (the growth curve)."""
    rows = conn.execute(
        sa.select(post_stats.c.at, *[sa.func.sum(post_stats.c[k]).label(k) for k in COUNTS])
        .join(deliveries, deliveries.c.id == post_stats.c.delivery_id)
        .where(deliveries.c.campaign == campaign)
        .group_by(post_stats.c.at)
        .order_by(post_stats.c.at)
    ).all()
    return [{"at": r.at, **{k: int(getattr(r, k) or 0) for k in COUNTS}} for r in rows]
