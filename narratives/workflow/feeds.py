"""Feeds as the workflow sees them: what is published goes into each campaign's RSS/Atom files,
and partner feeds pulled in are remembered, so a second pull adds nothing.

Our feeds are rebuilt from the database whenever an RSS delivery publishes: the items are the
campaign's RSS deliveries in state `published` (a withdrawn one has another state and drops out),
each showing the content it was published with (`deliveries.content`), so editing a published
draft changes nothing public until the edit is reviewed and published again. Rendering, the
files and the safe fetching are the channel's (`narratives.channels.rss`); this module reads
the store for them, and remembers partner pulls through `narratives.store.feed_items`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from narratives.channels.rss import static
from narratives.channels.rss.fetch import (
    absolute_url,
    download,
    enclosure,
    entry_guid,
    fetch_feed,
    open_client,
    parse_feed,
    target_name,
)
from narratives.channels.rss.files import FeedFiles, write_feeds
from narratives.channels.rss.render import EPOCH, FeedItem
from narratives.core.campaigns import RSS, Campaign, get_campaign, load_campaigns
from narratives.core.clock import utcnow
from narratives.core.errors import NarrativesError
from narratives.core.files import atomic_write
from narratives.records.delivery import DeliveryState
from narratives.store import feed_items
from narratives.store.context import Context
from narratives.store.schema import deliveries, drafts

__all__ = [
    "PullReport",
    "build_static",
    "published_items",
    "pull",
    "write_all_feeds",
    "feeds_base_url",
    "record_served_address",
    "write_campaign_feeds",
]


# ----------------------------------------------------------------------------- our feeds


def published_items(ctx: Context, slug: str) -> list[FeedItem]:
    """Each item shows what was published, not the draft as it is now: an edit sends the draft
    back to review and must not go live. Deliveries published before `deliveries.content`
    existed have NULL there and fall back to the draft."""
    with ctx.db.connect() as conn:
        rows = conn.execute(
            sa.select(
                deliveries.c.id,
                deliveries.c.published_at,
                deliveries.c.content.label("published_content"),
                drafts.c.narrative_id,
                drafts.c.content,
            )
            .join(drafts, drafts.c.id == deliveries.c.draft_id)
            .where(
                deliveries.c.campaign == slug,
                deliveries.c.channel == RSS,
                deliveries.c.state == DeliveryState.PUBLISHED,
            )
            .order_by(deliveries.c.published_at.desc(), deliveries.c.id.desc())
        ).all()
    return [
        FeedItem(
            r.id,
            r.narrative_id,
            r.published_at or EPOCH,
            dict((r.content if r.published_content is None else r.published_content) or {}),
        )
        for r in rows
    ]


def write_campaign_feeds(
    ctx: Context,
    campaign: Campaign | str,
    *,
    out_dir: Path | None = None,
    base_url: str | None = None,
) -> FeedFiles:
    """Rebuild one campaign's feeds atomically (into `media/feeds/` unless `out_dir`);
    `base_url` is where `/feeds/...` is served (default: `feeds_base_url`)."""
    if isinstance(campaign, str):
        campaign = get_campaign(ctx.workspace, campaign)
    return write_feeds(
        ctx.workspace,
        campaign,
        partial(published_items, ctx),
        out_dir=out_dir or ctx.workspace.feeds_dir,
        base_url=base_url or feeds_base_url(ctx),
    )


#: Where `narrative serve` records the address it serves at, for other processes' feed links.
SERVED_AT = "served-at"


def feeds_base_url(ctx: Context) -> str:
    """serve.base_url when set; else the address `narrative serve` last started on (so the
    scheduler's rebuilds agree with `serve --port`); else the settings' host and port."""
    serve = ctx.settings.serve
    if serve.public_url != f"http://{serve.host}:{serve.port}":
        return serve.public_url
    try:
        served = (ctx.workspace.state_dir / SERVED_AT).read_text(encoding="utf-8").strip()
    except OSError:
        served = ""
    return served if served.startswith(("http://", "https://")) else serve.public_url


def record_served_address(ctx: Context, url: str) -> list[FeedFiles]:
    """Called by `narrative serve` at start: remember its address and rebuild the feeds so
    their links point at it."""
    atomic_write(ctx.workspace.state_dir / SERVED_AT, url + "\n", mode=0o600)
    return write_all_feeds(ctx)


def write_all_feeds(ctx: Context) -> list[FeedFiles]:
    """Rebuild the feeds of every campaign with an RSS channel."""
    return [
        write_campaign_feeds(ctx, c)
        for c in load_campaigns(ctx.workspace)
        if c.channels.rss is not None
    ]


def build_static(
    ctx: Context, out_dir: Path, *, base_url: str, campaigns: list[str] | None = None
) -> list[Path]:
    """A static copy for hosting elsewhere (see `narratives.channels.rss.static`)."""
    return static.build_static(
        ctx.workspace,
        load_campaigns(ctx.workspace),
        partial(published_items, ctx),
        out_dir,
        base_url=base_url,
        campaigns=campaigns,
    )


# ----------------------------------------------------------------------------- partner feeds


@dataclass
class PullReport:
    """What one pull of a partner feed did."""

    feed_url: str
    title: str = ""
    #: Enclosures downloaded this time, in `media/inbox/`.
    downloaded: list[Path] = field(default_factory=list)
    #: GUIDs pulled before (not downloaded again).
    skipped: list[str] = field(default_factory=list)
    #: (GUID, reason) of items that failed; the others went on.
    failed: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "feed_url": self.feed_url,
            "title": self.title,
            "downloaded": [str(p) for p in self.downloaded],
            "skipped": self.skipped,
            "failed": [{"guid": g, "error": e} for g, e in self.failed],
        }


def _downloaded(ctx: Context, feed_url: str) -> set[str]:
    """GUIDs of the feed's items already downloaded."""
    with ctx.db.connect() as conn:
        return feed_items.downloaded(conn, feed_url)


def _remember(
    ctx: Context, feed_url: str, guid: str, url: str, status: feed_items.Status, error: str | None
):
    """Record an item's latest pull: one `feed_items` row per feed and GUID."""
    with ctx.db.begin() as conn:
        feed_items.remember(
            conn, feed_url, guid, enclosure_url=url, status=status, error=error, at=utcnow()
        )


def pull(
    ctx: Context,
    url: str,
    *,
    timeout: float = 300.0,
    max_bytes: int = 500 * 1024 * 1024,
    max_redirects: int = 5,
    allow_private: bool = False,
    transport: Any = None,
) -> PullReport:
    """Download the new audio/video enclosures of a partner's RSS/Atom/podcast feed into
    `media/inbox/` (each atomically) and remember every item, so a second pull adds nothing.

    `timeout` is the time allowed for the feed and for each enclosure, in total. The feed names
    the addresses we fetch, so private and loopback addresses are refused unless
    `allow_private` (link-local, multicast and reserved ones always are), on every redirect too.

    A malformed feed raises PermanentChannelError; an item whose enclosure fails (404, wrong
    type, too large, too slow) is recorded as failed and retried on the next pull, the others
    go on.
    """
    report = PullReport(feed_url=url)
    inbox = ctx.workspace.media_dir / "inbox"
    client = open_client(
        timeout=timeout,
        max_redirects=max_redirects,
        allow_private=allow_private,
        transport=transport,
    )
    with client:
        parsed = parse_feed(url, fetch_feed(client, url, timeout))
        report.title = parsed.feed.get("title", "")
        done = _downloaded(ctx, url)
        for entry in parsed.entries:
            found = enclosure(entry)
            guid = entry_guid(entry) or (found[0] if found else None)
            if guid is None or found is None:
                continue
            if guid in done:
                report.skipped.append(guid)
                continue
            enclosure_url = absolute_url(url, found[0])
            name = target_name(url, guid, enclosure_url, found[1])
            try:
                path = download(client, enclosure_url, inbox, name, max_bytes, timeout)
            except NarrativesError as exc:
                _remember(ctx, url, guid, enclosure_url, "failed", str(exc))
                report.failed.append((guid, str(exc)))
                continue
            _remember(ctx, url, guid, enclosure_url, "downloaded", None)
            done.add(guid)
            report.downloaded.append(path)
    return report
