"""Publishing: one delivery's trip `scheduled → publishing → published | failed(retry_at)`.

The scheduler service and `narrative publish --now` both go through `publish_delivery`, so a
manual post takes the same path as a scheduled one. Its steps:

1. **Claim** the delivery with one conditional UPDATE (due and `scheduled`, or `failed` with a
   `retry_at` that has come): only one process can win, so two processes never both publish.
   The claim names its owner (`host:pid:token`) and is a lease: `claimed_at` is refreshed as
   each post lands, and every later write is conditional on the row still being `publishing`
   under this claim.
2. **Check** that the draft is still approved and (issue 7) that consent covers the channel.
3. **Publish** through the channel's `Publisher`, outside any transaction. Bluesky stores each
   thread post's ref as it lands, so a retry resumes; the adapter's rkey + getRecord check makes
   a retry after a crash safe.
4. **Record** the outcome: every attempt is a `delivery_attempts` row; transient errors back off
   (exponential, jittered, never sooner than the server's `retry_after`) up to
   `settings.scheduler.max_attempts`; permanent errors stop with the reason in `last_error`.
   A published delivery keeps the content that went out (`deliveries.content`), set in the
   same UPDATE, so feeds never show an edit made after publishing.
5. After the commit, the publisher's `after_commit` runs (RSS rebuilds the campaign's feeds).

**A lost claim.** When a conditional write matches nothing, the claim was lost: the row is
re-read and only then acted on. `withdrawing`/`withdrawn` (consent withdrawn meanwhile): the
publisher stops and takes down whatever it may have posted, by record key. `published`: another
process finished the same record keys (`found_existing`). Anything else: another process took
over; nothing is written and the post is left to it (its rkeys make a repeat find, not repost).

A delivery left in `publishing` by a process that died is handed back by `recover_interrupted`
(at scheduler start and on every sync) once its claim is stale: its owner on this host is gone,
or it showed no progress for `CLAIM_LEASE`. A fresh claim of a live `publish --now` is never
taken away from it.
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from narratives.core.campaigns import Campaign, get_campaign
from narratives.core.errors import (
    ChannelError,
    ConsentError,
    InvalidState,
    NarrativesError,
    PermanentChannelError,
    TransientChannelError,
)
from narratives.store import audit
from narratives.store.context import Context
from narratives.store.deliveries import (  # noqa: F401  (re-exported)
    CLAIM_LEASE,
    claim_is_stale,
    new_claim_owner,
    was_attempted,
)
from narratives.store.schema import (
    OPEN_DELIVERY_STATES,
    deliveries,
    delivery_attempts,
    drafts,
    utcnow,
)
from narratives.workflow.scheduling import Delivery, get_delivery

__all__ = [
    "Backoff",
    "Outgoing",
    "PublishResult",
    "Publisher",
    "Outcome",
    "BlueskyPublisher",
    "RSSPublisher",
    "default_publishers",
    "claim",
    "publish_delivery",
    "publish_draft_now",
    "recover_interrupted",
    "missed_limit",
    "CLAIM_LEASE",
    "ClaimLost",
    "claim_is_stale",
    "new_claim_owner",
]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- the interface


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


class ClaimLost(Exception):
    """Raised by a publisher when `save_progress` says the delivery is no longer its to post.

    Deliberately not a NarrativesError: it is not a failure of the delivery, and
    `publish_delivery` handles it by re-reading the row (see the module docstring)."""


# ----------------------------------------------------------------------------- backoff


@dataclass(frozen=True)
class Backoff:
    """Delay before retry n (1-based): base·factor^(n-1), capped, minus up to `jitter` of it."""

    base: float = 30.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: float = 0.5

    def delay(self, attempt: int, retry_after: float | None = None, rng: Any = random) -> float:
        raw = min(self.cap, self.base * self.factor ** max(attempt - 1, 0))
        delay = raw * (1.0 - self.jitter * rng.random())
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay


# ----------------------------------------------------------------------------- state machine


@dataclass(frozen=True)
class Outcome:
    #: published | found_existing | retry | failed | missed | skipped
    status: str
    delivery: Delivery | None
    error: str | None = None


def missed_limit(ctx: Context, campaign_slug: str) -> timedelta:
    """How late a never-attempted delivery may go out: the campaign's limit, else the settings'."""
    try:
        hours = get_campaign(ctx.workspace, campaign_slug).slots.missed_after_hours
    except NarrativesError:
        hours = ctx.settings.scheduler.missed_after_hours
    return timedelta(hours=hours)


def _due_clause(now: datetime):
    return sa.or_(
        sa.and_(deliveries.c.state == "scheduled", deliveries.c.scheduled_at <= now),
        sa.and_(
            deliveries.c.state == "failed",
            deliveries.c.retry_at.is_not(None),
            deliveries.c.retry_at <= now,
        ),
    )


#: A claim that has shown no progress for this long is stale even if its owner may be alive
#: (another host, or a hung process). Progress (each post of a thread) refreshes it.
def claim(conn: Connection, delivery_id: int, now: datetime, owner: str | None = None) -> bool:
    """Atomically move a due delivery to `publishing`; False if not due or another process won."""
    res = conn.execute(
        deliveries.update()
        .where(deliveries.c.id == delivery_id, _due_clause(now))
        .values(
            state="publishing",
            attempts=deliveries.c.attempts + 1,
            updated_at=now,
            claimed_by=owner or new_claim_owner(),
            claimed_at=now,
        )
    )
    return res.rowcount == 1


def _ours(delivery_id: int, owner: str):
    """The WHERE clause of every write a publisher makes while it holds the claim."""
    return sa.and_(
        deliveries.c.id == delivery_id,
        deliveries.c.state == "publishing",
        deliveries.c.claimed_by == owner,
    )


def _attempt(conn: Connection, delivery_id: int, outcome: str, error: str | None, at: datetime):
    conn.execute(
        delivery_attempts.insert().values(
            delivery_id=delivery_id, at=at, outcome=outcome, error=error
        )
    )


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    hint = getattr(exc, "hint", None)
    return f"{text} ({hint})" if hint else text


def _mark_missed(ctx: Context, d: Delivery, now: datetime, actor: str) -> Delivery | None:
    reason = (
        f"missed: due {d.scheduled_at.isoformat()}, and it was "
        f"{(now - d.scheduled_at).total_seconds() / 3600:.1f} h late when the scheduler woke"
    )
    with ctx.db.begin() as conn:
        res = conn.execute(
            deliveries.update()
            .where(
                deliveries.c.id == d.id,
                deliveries.c.state == "scheduled",
                # Only one never tried: a tried one may have posts out and must be finished.
                ~was_attempted(),
            )
            .values(state="missed", last_error=reason, updated_at=now)
        )
        if res.rowcount != 1:
            return None
        audit.record(
            conn,
            actor=actor,
            action="missed",
            object_type="delivery",
            object_id=d.id,
            before={"state": d.state},
            after={"state": "missed"},
            detail=reason,
        )
        return get_delivery(conn, d.id)


def _check_consent(conn: Connection, draft_id: int, channel: str) -> None:
    # Issue 7: consent is checked again at publish time, not only when scheduling (it may have
    # been withdrawn or have expired in between). Imported here: consent imports the feeds.
    from narratives.policy import consent

    consent.check_publishable(conn, draft_id, channel)


def _check_anonymity(ctx: Context, conn: Connection, draft: Any) -> None:
    """A draft made or edited before the narrator asked to stay anonymous may still name
    them: refuse it rather than publish a name (the editor regenerates or edits it)."""
    from narratives.policy.anonymise import draft_leaks, terms_for
    from narratives.policy.consent import is_anonymous

    if not is_anonymous(conn, draft.narrative_id):
        return
    leaks = draft_leaks(dict(draft.content or {}), terms_for(ctx, draft.narrative_id))
    if leaks:
        raise ConsentError(
            f"draft {draft.id} names {', '.join(sorted(set(leaks)))} but the narrator must "
            "stay anonymous",
            hint="edit the draft or run `narrative process --force` to regenerate it",
        )


def _prepare(ctx: Context, d: Delivery, owner: str) -> Outgoing:
    with ctx.db.connect() as conn:
        draft = conn.execute(sa.select(drafts).where(drafts.c.id == d.draft_id)).first()
        if draft is None:
            raise PermanentChannelError(f"draft {d.draft_id} no longer exists")
        if draft.state != "approved":
            raise PermanentChannelError(
                f"draft {d.draft_id} is {draft.state}, no longer approved",
                hint="approve it again, then move the delivery to a new time",
            )
        _check_consent(conn, d.draft_id, d.channel)
        _check_anonymity(ctx, conn, draft)
    campaign = get_campaign(ctx.workspace, d.campaign)

    def save_progress(posts: list[dict[str, Any]]) -> bool:
        now = utcnow()
        with ctx.db.begin() as c:
            res = c.execute(
                deliveries.update()
                .where(_ours(d.id, owner))
                .values(posts=posts, updated_at=now, claimed_at=now)
            )
        return res.rowcount == 1

    return Outgoing(
        delivery=d,
        campaign=campaign,
        narrative_id=draft.narrative_id,
        content=dict(draft.content or {}),
        workspace_root=ctx.workspace.root,
        save_progress=save_progress,
    )


def publish_delivery(
    ctx: Context,
    delivery_id: int,
    publishers: Mapping[str, Publisher],
    *,
    actor: str = "scheduler",
    backoff: Backoff = Backoff(),
    now: datetime | None = None,
    check_missed: bool = True,
) -> Outcome:
    """Publish one delivery if it is due; safe to call any number of times, from any process."""
    now = now or utcnow()
    with ctx.db.connect() as conn:
        d = get_delivery(conn, delivery_id)
    if (
        check_missed
        and d.state == "scheduled"
        and d.scheduled_at <= now
        and now - d.scheduled_at > missed_limit(ctx, d.campaign)
    ):
        marked = _mark_missed(ctx, d, now, actor)  # None when it was tried: publish it
        if marked is not None:
            return Outcome("missed", marked, d.last_error)
    owner = new_claim_owner()
    with ctx.db.begin() as conn:
        if not claim(conn, delivery_id, now, owner):
            return Outcome("skipped", get_delivery(conn, delivery_id))
        d = get_delivery(conn, delivery_id)

    item: Outgoing | None = None
    failure = dict(ctx=ctx, d=d, owner=owner, actor=actor, backoff=backoff)
    try:
        item = _prepare(ctx, d, owner)
        publisher = publishers.get(d.channel)
        if publisher is None:
            raise PermanentChannelError(f"no publisher for channel {d.channel!r}")
        result = publisher.publish(item)
    except ClaimLost:
        return _claim_lost(ctx, d, owner, actor=actor)
    except TransientChannelError as exc:
        return _failed(exc=exc, transient=True, **failure)
    except (ChannelError, NarrativesError) as exc:
        # Permanent channel errors, consent refusals, missing campaigns or files: retrying
        # cannot help, so stop and show the reason on the draft.
        return _failed(exc=exc, transient=False, **failure)
    except Exception as exc:  # a bug or an unclassified library error: retry a bounded number
        log.exception("publishing delivery %s failed unexpectedly", d.id)
        return _failed(exc=exc, transient=True, **failure)

    done = utcnow()
    outcome = "found_existing" if result.found_existing else "published"
    with ctx.db.begin() as conn:
        values: dict[str, Any] = {
            "state": "published",
            # What went out, kept apart from the draft: an edit after publishing sends the
            # draft back to review and must not reach a feed built from this delivery.
            "content": item.content,
            "published_at": done,
            "retry_at": None,
            "last_error": None,
            "updated_at": done,
            "claimed_by": None,
            "claimed_at": None,
        }
        if result.posts is not None:
            values["posts"] = result.posts
        updated = conn.execute(deliveries.update().where(_ours(d.id, owner)).values(**values))
        if updated.rowcount == 1:
            _attempt(conn, d.id, outcome, None, done)
            audit.record(
                conn,
                actor=actor,
                action="publish",
                object_type="delivery",
                object_id=d.id,
                before={"state": "publishing"},
                after={"state": "published", "url": result.url},
                detail=outcome,
            )
        after = get_delivery(conn, d.id)
    if updated.rowcount != 1:
        return _claim_lost(ctx, d, owner, actor=actor)
    try:
        publishers[d.channel].after_commit(item)
    except Exception:
        # The post is out and recorded; a stale feed is rebuilt when the scheduler starts.
        log.exception("after publishing delivery %s", d.id)
    return Outcome(outcome, after)


def _claim_lost(ctx: Context, d: Delivery, owner: str, *, actor: str) -> Outcome:
    """A conditional write found the delivery no longer ours: act on what it is now.

    Withdrawn meanwhile: take down everything the attempt may have posted (every stored record
    key is looked up, so posts that landed after the withdrawal's own lookups are found too).
    Published by another process with the same record keys: that is this post. Anything else
    (handed back to, or taken over by, another process): leave it to that process.
    """
    with ctx.db.connect() as conn:
        now_row = get_delivery(conn, d.id)
    if now_row.state in ("withdrawing", "withdrawn"):
        from narratives.policy.consent import take_down_delivery

        reason = "withdrawn while publishing"
        take_down_delivery(ctx, d.id, actor=actor, reason=reason, owner=owner)
        with ctx.db.connect() as conn:
            return Outcome("withdrawn", get_delivery(conn, d.id), reason)
    if now_row.state == "published":
        return Outcome("found_existing", now_row)
    log.info("delivery %s: now %s, handled by another process", d.id, now_row.state)
    return Outcome("skipped", now_row, f"taken over by another process ({now_row.state})")


def _failed(
    ctx: Context,
    d: Delivery,
    exc: BaseException,
    *,
    owner: str,
    actor: str,
    backoff: Backoff,
    transient: bool,
) -> Outcome:
    now = utcnow()
    error = _error_text(exc)
    max_attempts = ctx.settings.scheduler.max_attempts
    retry_at = None
    if transient and d.attempts < max_attempts:
        delay = backoff.delay(d.attempts, getattr(exc, "retry_after", None))
        retry_at = now + timedelta(seconds=delay)
        status = "retry"
        last_error = error
    elif transient:
        status = "failed"
        last_error = f"gave up after {d.attempts} attempts: {error}"
    else:
        status = "failed"
        last_error = error
    with ctx.db.begin() as conn:
        res = conn.execute(
            deliveries.update()
            .where(_ours(d.id, owner))
            .values(
                state="failed",
                retry_at=retry_at,
                last_error=last_error,
                updated_at=now,
                claimed_by=None,
                claimed_at=None,
            )
        )
        # Not ours any more (withdrawn, or handed to another process): a "failed" row and
        # audit entry would misreport what happened; see what it is instead.
        lost = res.rowcount != 1
        if not lost:
            kind = "transient_error" if transient else "permanent_error"
            _attempt(conn, d.id, kind, error, now)
            audit.record(
                conn,
                actor=actor,
                action="publish_failed",
                object_type="delivery",
                object_id=d.id,
                before={"state": "publishing"},
                after={"state": "failed", "retry_at": retry_at.isoformat() if retry_at else None},
                detail=last_error,
            )
            after = get_delivery(conn, d.id)
    if lost:
        return _claim_lost(ctx, d, owner, actor=actor)
    log.warning("delivery %s: %s%s", d.id, last_error, f"; retry at {retry_at}" if retry_at else "")
    return Outcome(status, after, last_error)


def recover_interrupted(
    ctx: Context, *, actor: str = "scheduler", now: datetime | None = None
) -> list[int]:
    """Deliveries left `publishing` by a process that stopped become due again (to run once
    more, safely: their record keys make a repeat find what landed).

    Only stale claims are handed back (see `claim_is_stale`): a `publish --now` still posting
    in another process keeps its delivery. The scheduler calls this at start and on every sync.
    """
    now = now or utcnow()
    reason = "interrupted while publishing (its process stopped); retried by the scheduler"
    with ctx.db.begin() as conn:
        rows = conn.execute(
            sa.select(deliveries.c.id, deliveries.c.claimed_by, deliveries.c.claimed_at).where(
                deliveries.c.state == "publishing"
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
                    deliveries.c.state == "publishing",
                    deliveries.c.claimed_by.is_(None)
                    if r.claimed_by is None
                    else deliveries.c.claimed_by == r.claimed_by,
                    deliveries.c.claimed_at.is_(None)
                    if r.claimed_at is None
                    else deliveries.c.claimed_at == r.claimed_at,
                )
                .values(
                    state="failed",
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
            _attempt(conn, i, "transient_error", reason, now)
            audit.record(
                conn,
                actor=actor,
                action="recover",
                object_type="delivery",
                object_id=i,
                before={"state": "publishing"},
                after={"state": "failed", "retry_at": now.isoformat()},
                detail=reason,
            )
    return ids


def publish_draft_now(
    ctx: Context,
    draft_id: int,
    publishers: Mapping[str, Publisher] | None = None,
    *,
    actor: str,
) -> Outcome:
    """`narrative publish DRAFT_ID --now`: schedule (or move) the draft's delivery to now and
    publish it through the same path as the scheduler."""
    from narratives.workflow import scheduling

    now = utcnow()
    with ctx.db.connect() as conn:
        open_ = scheduling.list_deliveries(conn, draft_id=draft_id, states=OPEN_DELIVERY_STATES)
    if open_ and open_[0].state in ("published", "publishing"):
        raise InvalidState(f"draft {draft_id} is already {open_[0].state} (delivery {open_[0].id})")
    if open_:
        d = scheduling.move(ctx, open_[0].id, at=now, actor=actor, now=now)
    else:
        # Raises InvalidState if another process schedules the draft first (the database
        # allows one open delivery per draft), so the draft is never posted twice.
        d = scheduling.schedule(ctx, draft_id, at=now, actor=actor, now=now)
    publishers = publishers if publishers is not None else default_publishers(ctx)
    return publish_delivery(ctx, d.id, publishers, actor=actor, check_missed=False)


# ----------------------------------------------------------------------------- channels


class RSSPublisher:
    """RSS/Atom: the item is "out" once recorded as published; then the feeds are rebuilt
    atomically from the database (under a per-campaign lock, so the last rebuild sees all)."""

    channel = "rss"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

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
        from narratives.channels.rss.feeds import write_campaign_feeds

        write_campaign_feeds(self.ctx, item.campaign)


class BlueskyPublisher:
    """Bluesky through `narratives.channels.bluesky`: one logged-in channel per account, reused;
    posts of one account go out one at a time. The app password comes from the environment
    variable the campaign names."""

    channel = "bluesky"

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._channels: dict[str, Any] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _channel(self, campaign: Campaign) -> tuple[Any, threading.Lock]:
        from narratives.channels.bluesky import BlueskyAccount, BlueskyChannel

        cfg = campaign.channels.bluesky
        if cfg is None:
            raise PermanentChannelError(f"campaign {campaign.slug} has no Bluesky channel")
        key = f"{cfg.service}|{cfg.handle}"
        with self._guard:
            if key not in self._channels:
                account = BlueskyAccount(
                    handle=cfg.handle, service_url=cfg.service, password_env=cfg.password_env
                )
                self._channels[key] = BlueskyChannel(account, self.ctx.workspace)
                self._locks[key] = threading.Lock()
            return self._channels[key], self._locks[key]

    def posts_for(self, item: Outgoing) -> list[Any]:
        """The draft's content as adapter posts: the video (with captions) on the first post,
        language tags and self-labels on every post."""
        from narratives.channels.bluesky import BlueskyPost, Caption, VideoEmbed

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
    def thread_keys(delivery: Delivery, count: int) -> tuple[list[dict], list[dict]]:
        """The stored keys of a thread of `count` posts, and the stored keys beyond it.

        The thread may have changed length after scheduling (edited and approved again): its
        keys derive from the delivery's first key. Keys of posts that no longer belong to the
        thread are kept (`extra`), since those posts may be out: a takedown must find them.
        """
        from narratives.channels.bluesky import thread_rkeys

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
        from narratives.channels.bluesky import PublishedRef

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
        with lock:
            refs = channel.publish(posts, rkeys, already=already, on_progress=progress)
        return PublishResult(posts=[r.as_dict() for r in refs] + extra, url=refs[0].uri)

    def after_commit(self, item: Outgoing) -> None:
        return None

    def close(self) -> None:
        for ch in self._channels.values():
            ch.close()


def default_publishers(ctx: Context) -> dict[str, Publisher]:
    return {"rss": RSSPublisher(ctx), "bluesky": BlueskyPublisher(ctx)}
