"""The interface every channel implements.

Shaped like httpx's transports: a tiny `Publisher` protocol and one class per channel behind
it (`channels/bluesky/`, `channels/rss/`). Publishers take plain values (a workspace, a
callback), never the store: the workflow builds them from a Context and records what they
report. A next network needs:

- its folder here, with a publisher that implements `Publisher`;
- its name and `ChannelInfo` in `core.campaigns.CHANNELS` (label, whether it leaves records a
  takedown must delete), and its settings model as a field of `core.campaigns.Channels`;
- the draft fields an editor may change, `records.draft.EDITABLE`;
- its line in `workflow.channels.default_publishers`.

The names live in core, not here, because layers that cannot import channels (records, and
the store beside it) need them too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from narratives.core.campaigns import Campaign
from narratives.core.errors import PermanentChannelError
from narratives.records.delivery import Delivery

__all__ = [
    "ClaimLost",
    "Outgoing",
    "PublishResult",
    "Publisher",
]


@dataclass(frozen=True)
class Outgoing:
    """What a publisher needs: the claimed delivery, its draft's content and its campaign."""

    delivery: Delivery
    campaign: Campaign
    narrative_id: str
    content: dict[str, Any]
    workspace_root: Path
    #: Store per-post progress ([{rkey, uri, cid}]) so a failed thread resumes where it stopped;
    #: refreshes the claim. False when the delivery is no longer ours to publish (withdrawn,
    #: or handed to another process): the publisher must then stop posting.
    save_progress: Callable[[list[dict[str, Any]]], bool] = field(
        default=lambda posts: True, repr=False
    )

    def path(self, relpath: str) -> Path:
        """A workspace-relative path from draft content, refused if it escapes the workspace."""
        root = self.workspace_root.resolve()
        p = (root / relpath).resolve()
        if not p.is_relative_to(root):
            raise PermanentChannelError(f"{relpath!r} is outside the workspace")
        return p


@dataclass(frozen=True)
class PublishResult:
    """What a publish put out, for the workflow to record on the delivery."""

    #: Bluesky: every post's {rkey, uri, cid}; None for channels without records.
    posts: list[dict[str, Any]] | None = None
    #: Where it can be seen (first post's at:// URI, or the feed item's link).
    url: str | None = None
    #: True when the record was already there (an earlier attempt had landed).
    found_existing: bool = False


class Publisher(Protocol):
    """A channel as the scheduler sees it."""

    channel: str

    def publish(self, item: Outgoing) -> PublishResult:
        """Put the item out; raise TransientChannelError or PermanentChannelError on failure."""
        ...

    def after_commit(self, item: Outgoing) -> None:
        """Runs once the delivery is recorded as published (e.g. rebuild a feed)."""
        ...

    def take_down(self, campaign: Campaign, posts: Sequence[dict[str, Any]]) -> list[str]:
        """Remove what a delivery put out (`posts` as stored: [{rkey, uri, cid}]); return the
        URIs deleted. Called once the delivery is `withdrawing`, so a feed no longer lists it."""
        ...

    def close(self) -> None:
        """Release network clients; the publisher is not used afterwards."""
        ...


class ClaimLost(Exception):
    """Raised by a publisher when `save_progress` says the delivery is no longer its to post.

    Deliberately not a NarrativesError: it is not a failure of the delivery, and
    `workflow.publishing.publish_delivery` handles it by re-reading the row."""
