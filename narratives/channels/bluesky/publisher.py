"""The Bluesky publisher: a delivery's draft content as a thread of posts, through one
logged-in `BlueskyChannel` per account. The SDK loads on the first post, not on import."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

from narratives.channels.base import ClaimLost, Outgoing, PublishResult
from narratives.channels.bluesky.post import (
    BlueskyAccount,
    BlueskyPost,
    Caption,
    Gates,
    PublishedRef,
    VideoEmbed,
    VideoUpload,
)
from narratives.channels.bluesky.tids import thread_rkeys
from narratives.core.campaigns import BLUESKY, Campaign
from narratives.core.errors import PermanentChannelError
from narratives.core.workspace import Workspace
from narratives.records.delivery import Delivery

__all__ = ["BlueskyPublisher"]


def video_upload(cfg: Any) -> VideoUpload:
    """A campaign's [channels.bluesky] video settings as the adapter takes them."""
    limits = cfg.video_limits
    return VideoUpload(
        mode=cfg.video_upload,
        service_url=cfg.video_service,
        max_bytes=limits.max_bytes,
        max_seconds=limits.max_seconds,
        max_captions=limits.max_captions,
        max_caption_bytes=limits.max_caption_bytes,
    )


class BlueskyPublisher:
    """Bluesky through `narratives.channels.bluesky`: one logged-in channel per account, reused;
    posts of one account go out one at a time. The app password comes from the environment
    variable the campaign names."""

    channel = BLUESKY

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._channels: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _channel(self, campaign: Campaign) -> tuple[Any, threading.Lock]:
        # The atproto SDK takes about a second to import: load it when a post goes out.
        from narratives.channels.bluesky.client import BlueskyChannel

        cfg = campaign.channels.bluesky
        if cfg is None:
            raise PermanentChannelError(f"campaign {campaign.slug} has no Bluesky channel")
        video = video_upload(cfg)
        key = f"{cfg.service}|{cfg.handle}|{video}"
        with self._guard:
            if key not in self._channels:
                account = BlueskyAccount(
                    handle=cfg.handle, service_url=cfg.service, password_env=cfg.password_env
                )
                self._channels[key] = BlueskyChannel(account, self.workspace, video=video)
                self._locks[key] = threading.Lock()
            return self._channels[key], self._locks[key]

    def posts_for(self, item: Outgoing) -> list[BlueskyPost]:
        """The draft's content as adapter posts: the video (with captions) on the first post,
        language tags and self-labels on every post."""
        c = item.content
        texts = [p.get("text", "") for p in c.get("posts") or []]
        if not texts:
            raise PermanentChannelError("the draft has no posts")
        langs = tuple(c.get("langs") or (item.campaign.channels.bluesky.langs or []))
        labels = tuple(c.get("labels") or ())
        video = None
        if c.get("video"):
            captions = ()
            if c.get("captions"):
                captions = (Caption(item.path(c["captions"]), (langs or ("en",))[0]),)
            ratio = tuple(c["aspect_ratio"]) if c.get("aspect_ratio") else None
            video = VideoEmbed(
                path=item.path(c["video"]),
                alt=c.get("alt") or "",
                aspect_ratio=ratio,  # type: ignore[arg-type]
                captions=captions,
            )
        return [
            BlueskyPost(text=t, langs=langs, labels=labels, video=video if i == 0 else None)
            for i, t in enumerate(texts)
        ]

    @staticmethod
    def gates_for(item: Outgoing) -> Gates:
        """The reply and quote controls for this delivery: the draft's own choice
        (`content["gates"]`, set on the review page), else its campaign's."""
        chosen = item.content.get("gates")
        if chosen:
            return Gates.from_dict(chosen)
        cfg = item.campaign.channels.bluesky
        if cfg is None:
            return Gates()
        g = cfg.gates
        return Gates(replies=tuple(g.replies), lists=tuple(g.lists), quotes=g.quotes)

    @staticmethod
    def thread_keys(delivery: Delivery, count: int) -> tuple[list[dict], list[dict]]:
        """The stored keys of a thread of `count` posts, and the stored keys beyond it.

        The thread may have changed length after scheduling (edited and approved again): its
        keys derive from the delivery's first key. Keys of posts that no longer belong to the
        thread are kept (`extra`), since those posts may be out: a takedown must find them.
        """
        stored = list(delivery.posts or [])
        keys = thread_rkeys(delivery.rkey or stored[0]["rkey"], count)
        thread = [
            stored[i] if i < len(stored) and stored[i].get("rkey") == k else {"rkey": k}
            for i, k in enumerate(keys)
        ]
        extra = [p for p in stored[count:] if p.get("rkey") and p["rkey"] not in keys]
        return thread, extra

    def publish(self, item: Outgoing) -> PublishResult:
        """Post the thread, storing each post as it lands; stop (`ClaimLost`) before the next
        post as soon as the delivery is no longer ours (withdrawn, or handed to another)."""
        posts = self.posts_for(item)
        stored, extra = self.thread_keys(item.delivery, len(posts))
        if not item.save_progress(stored + extra):
            raise ClaimLost()
        rkeys = [p["rkey"] for p in stored]
        already = []
        for p in stored:
            if not p.get("uri"):
                break
            already.append(PublishedRef.from_dict(p))

        def progress(refs: list[Any]) -> None:
            done = [r.as_dict() for r in refs]
            if not item.save_progress(done + stored[len(done) :] + extra):
                raise ClaimLost()

        channel, lock = self._channel(item.campaign)
        gates = self.gates_for(item)
        with lock:
            refs = channel.publish(posts, rkeys, already=already, on_progress=progress, gates=gates)
        # Every post this attempt had to send was on the server already (an earlier attempt
        # landed it without recording it): this attempt found them, it did not publish them.
        sent = refs[len(already) :]
        found = bool(sent) and all(r.found for r in sent)
        return PublishResult(
            posts=[r.as_dict() for r in refs] + extra, url=refs[0].uri, found_existing=found
        )

    def after_commit(self, item: Outgoing) -> None:
        return None

    def take_down(self, campaign: Campaign, posts: Sequence[dict[str, Any]]) -> list[str]:
        """Delete every post of a thread that may be on the server; returns the URIs deleted.

        Posts without a stored URI may still have landed (a publish interrupted after the server
        committed), so their record keys are looked up too.
        """
        if campaign.channels.bluesky is None:
            raise PermanentChannelError(
                f"campaign {campaign.slug} has no Bluesky account configured any more, so its "
                "posts cannot be deleted from here",
                hint="restore its [channels.bluesky] section, then run the withdrawal again",
            )
        channel, lock = self._channel(campaign)
        with lock:
            refs: list[PublishedRef] = []
            for p in posts or ():
                if p.get("uri"):
                    refs.append(PublishedRef(uri=p["uri"], cid=p.get("cid") or "", rkey=p["rkey"]))
                elif p.get("rkey"):
                    found = channel.lookup(p["rkey"])
                    if found is not None:
                        refs.append(found)
            if refs:
                channel.delete(refs)
        return [r.uri for r in refs]

    def close(self) -> None:
        for ch in self._channels.values():
            ch.close()
