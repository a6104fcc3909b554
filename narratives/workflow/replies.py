"""The replies and quote posts each published story received, and the editor's two answers
(issue 19): hide a reply (the thread's threadgate `hiddenReplies`) or detach a quote (the
post's postgate `detachedEmbeddingUris`). Read from the AppView through the campaign's account;
both answers are written to the network and audited.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from narratives.core.campaigns import get_campaign
from narratives.core.errors import NotFound
from narratives.records.delivery import DeliveryState
from narratives.store import audit
from narratives.store.context import Context
from narratives.store.schema import deliveries
from narratives.store.users import require_active

__all__ = ["StoryReplies", "detach_quote", "hide_reply", "replies", "stories"]


@dataclass
class StoryReplies:
    delivery_id: int
    draft_id: int
    campaign: str
    uri: str
    replies: list[dict[str, Any]] = field(default_factory=list)
    quotes: list[dict[str, Any]] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)
    detached: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "delivery_id": self.delivery_id,
            "draft_id": self.draft_id,
            "campaign": self.campaign,
            "uri": self.uri,
            "replies": self.replies,
            "quotes": self.quotes,
            "hidden": self.hidden,
            "detached": self.detached,
        }


def _published(ctx: Context, *, campaign: str | None = None, draft_id: int | None = None):
    q = sa.select(
        deliveries.c.id, deliveries.c.draft_id, deliveries.c.campaign, deliveries.c.posts
    ).where(deliveries.c.state == DeliveryState.PUBLISHED, deliveries.c.channel == "bluesky")
    if campaign is not None:
        q = q.where(deliveries.c.campaign == campaign)
    if draft_id is not None:
        q = q.where(deliveries.c.draft_id == draft_id)
    with ctx.db.connect() as conn:
        return [
            r for r in conn.execute(q.order_by(deliveries.c.id)) if (r.posts or [{}])[0].get("uri")
        ]


def stories(
    ctx: Context, *, campaign: str | None = None, draft_id: int | None = None
) -> list[StoryReplies]:
    """The published Bluesky stories (of a campaign, or a draft), without asking the network."""
    return [
        StoryReplies(r.id, r.draft_id, r.campaign, r.posts[0]["uri"])
        for r in _published(ctx, campaign=campaign, draft_id=draft_id)
    ]


def _channel(ctx: Context, slug: str):
    # The atproto SDK takes about a second to import: only when replies are read or answered.
    from narratives.channels.bluesky.client import BlueskyChannel
    from narratives.channels.bluesky.post import BlueskyAccount
    from narratives.channels.bluesky.publisher import video_upload

    cfg = get_campaign(ctx.workspace, slug).channels.bluesky
    if cfg is None:
        raise NotFound(f"campaign {slug} has no Bluesky account")
    account = BlueskyAccount(cfg.handle, cfg.service, cfg.password_env)
    return BlueskyChannel(account, ctx.workspace, video=video_upload(cfg))


def replies(
    ctx: Context, *, campaign: str | None = None, draft_id: int | None = None
) -> list[StoryReplies]:
    """Every published story's replies and quotes (of one campaign, or one draft)."""
    from narratives.channels.bluesky.client import POSTGATE_COLLECTION, THREADGATE_COLLECTION

    out = []
    channels: dict[str, Any] = {}
    try:
        for row in _published(ctx, campaign=campaign, draft_id=draft_id):
            channel = channels.get(row.campaign) or channels.setdefault(
                row.campaign, _channel(ctx, row.campaign)
            )
            first = row.posts[0]
            story = StoryReplies(row.id, row.draft_id, row.campaign, first["uri"])
            story.replies = channel.replies_to(first["uri"])
            story.quotes = channel.quotes_of(first["uri"])
            gates = channel.gate_records(first["rkey"])
            tg, pg = gates.get(THREADGATE_COLLECTION), gates.get(POSTGATE_COLLECTION)
            story.hidden = list(getattr(tg, "hidden_replies", None) or [])
            story.detached = list(getattr(pg, "detached_embedding_uris", None) or [])
            out.append(story)
    finally:
        for channel in channels.values():
            channel.close()
    return out


def _story_of(ctx: Context, uri: str, key: str) -> Any:
    """The published delivery whose first post `uri` is."""
    for row in _published(ctx):
        if row.posts[0].get("uri") == uri:
            return row
    raise NotFound(
        f"{uri} is not the first post of a published story", hint=f"see `narrative replies` ({key})"
    )


def hide_reply(ctx: Context, story_uri: str, reply_uri: str, *, actor: str) -> bool:
    """Hide a reply under a published story; audited. False if it was hidden already."""
    require_active(ctx, actor)
    row = _story_of(ctx, story_uri, "the story's URI")
    with _channel(ctx, row.campaign) as channel:
        done = channel.hide_reply(row.posts[0]["rkey"], reply_uri)
    _audit(ctx, row, actor, "replies.hide", {"hidden": reply_uri}, done)
    return done


def detach_quote(ctx: Context, story_uri: str, quote_uri: str, *, actor: str) -> bool:
    """Detach a quote post from a published story; audited. False if it was detached already."""
    require_active(ctx, actor)
    row = _story_of(ctx, story_uri, "the story's URI")
    with _channel(ctx, row.campaign) as channel:
        done = channel.detach_quote(row.posts[0]["rkey"], quote_uri)
    _audit(ctx, row, actor, "replies.detach", {"detached": quote_uri}, done)
    return done


def _audit(ctx: Context, row: Any, actor: str, action: str, after: dict, done: bool) -> None:
    with ctx.db.begin() as conn:
        audit.record(
            conn,
            actor=actor,
            action=action,
            object_type="delivery",
            object_id=row.id,
            after=after,
            detail=None if done else "already so",
        )
