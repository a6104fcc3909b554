"""The one owner of `feed_items`: the partner feed entries already pulled, one row per feed and
GUID holding its latest pull, so a second pull downloads only what is new or failed before.

`workflow.feeds.pull` fetches and downloads; this module remembers what it did.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from narratives.store.schema import feed_items

__all__ = ["Status", "downloaded", "remember"]

#: A failed item is tried again on the next pull; a downloaded one never is.
Status = Literal["downloaded", "failed"]


def downloaded(conn: Connection, feed_url: str) -> set[str]:
    """GUIDs of the feed's items already downloaded."""
    return {
        r.guid
        for r in conn.execute(
            sa.select(feed_items.c.guid).where(
                feed_items.c.feed_url == feed_url, feed_items.c.status == "downloaded"
            )
        )
    }


def remember(
    conn: Connection,
    feed_url: str,
    guid: str,
    *,
    enclosure_url: str,
    status: Status,
    error: str | None,
    at: datetime,
) -> None:
    """Record an item's latest pull, replacing the one before."""
    values = {"enclosure_url": enclosure_url, "status": status, "error": error, "pulled_at": at}
    res = conn.execute(
        feed_items.update()
        .where(feed_items.c.feed_url == feed_url, feed_items.c.guid == guid)
        .values(**values)
    )
    if res.rowcount == 0:
        conn.execute(feed_items.insert().values(feed_url=feed_url, guid=guid, **values))
