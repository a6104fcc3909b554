"""The channels' publishers, built from a store Context: the one place that knows what each
channel's publisher needs (a workspace, a feed rebuild). A next network adds its line here.

Publishers hold network clients; `open_publishers` closes every one of them when done, so a
one-off publish or takedown leaves no connection behind.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from narratives.channels.base import Publisher
from narratives.channels.bluesky.publisher import BlueskyPublisher
from narratives.channels.rss.publisher import RSSPublisher
from narratives.core.campaigns import BLUESKY, RSS
from narratives.store.context import Context
from narratives.workflow.feeds import write_campaign_feeds

__all__ = ["default_publishers", "open_publishers", "close_publishers"]


def default_publishers(ctx: Context) -> dict[str, Publisher]:
    """One publisher per channel, given what each needs from the context."""
    return {
        RSS: RSSPublisher(lambda campaign: write_campaign_feeds(ctx, campaign)),
        BLUESKY: BlueskyPublisher(ctx.workspace),
    }


def close_publishers(publishers: Mapping[str, Publisher]) -> None:
    for publisher in publishers.values():
        publisher.close()


@contextmanager
def open_publishers(
    ctx: Context, publishers: Mapping[str, Publisher] | None = None
) -> Iterator[Mapping[str, Publisher]]:
    """`publishers` as given (the caller owns and closes them), or the default ones, closed
    on the way out."""
    if publishers is not None:
        yield publishers
        return
    made = default_publishers(ctx)
    try:
        yield made
    finally:
        close_publishers(made)
