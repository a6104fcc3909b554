"""The RSS/Atom publisher: an item is "out" once recorded as published; the feeds are then
rebuilt from what is published, by a callback the workflow hands in (it reads the store)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from narratives.channels.base import Outgoing, PublishResult
from narratives.core.campaigns import RSS, Campaign
from narratives.core.errors import PermanentChannelError

__all__ = ["RSSPublisher"]


class RSSPublisher:
    """RSS/Atom: the item is "out" once recorded as published; then the feeds are rebuilt
    atomically from the database (under a per-campaign lock, so the last rebuild sees all).

    `rebuild_feeds(campaign)` writes the campaign's feeds; the workflow supplies it."""

    channel = RSS

    def __init__(self, rebuild_feeds: Callable[[Campaign], None]) -> None:
        self.rebuild_feeds = rebuild_feeds

    def publish(self, item: Outgoing) -> PublishResult:
        if item.campaign.channels.rss is None:
            raise PermanentChannelError(f"campaign {item.campaign.slug} has no RSS channel")
        for key in ("title", "summary"):
            if not str(item.content.get(key) or "").strip():
                raise PermanentChannelError(f"the feed item has no {key}")
        for key in ("enclosure", "captions"):
            rel = item.content.get(key)
            if rel and not item.path(rel).is_file():
                raise PermanentChannelError(f"the item's {key} file {rel} does not exist")
        return PublishResult(url=item.content.get("link") or item.campaign.link)

    def after_commit(self, item: Outgoing) -> None:
        self.rebuild_feeds(item.campaign)

    def take_down(self, campaign: Campaign, posts: Sequence[dict[str, Any]]) -> list[str]:
        """A feed item is gone once the feeds are rebuilt without it (a `withdrawing` delivery
        is not listed); nothing is deleted elsewhere."""
        self.rebuild_feeds(campaign)
        return []

    def close(self) -> None:
        return None
