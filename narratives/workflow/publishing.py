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

**Missed.** A delivery woken past its campaign's `slots.missed_after_hours` with nothing of it out
is marked `missed` instead of claimed: the one rule of `store.deliveries` (`is_late`,
`mark_missed`), which the scheduler also applies at start, so the two never disagree. A wait the
server imposed (429, Bluesky's daily video limit) counts from its `retry_at`, not its slot.

A delivery left in `publishing` by a process that died is handed back by `recover_interrupted`
(at scheduler start and on every sync) once its claim is stale: its owner on this host is gone,
or it showed no progress for `CLAIM_LEASE`. A fresh claim of a live `publish --now` is never
taken away from it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from narratives.channels.base import (
    ClaimLost,
    Outgoing,
    Publisher,
    PublishResult,
)
from narratives.core.campaigns import get_campaign
from narratives.core.clock import utcnow
from narratives.core.errors import (
    ChannelError,
    ConsentError,
    EnvironmentProblem,
    InvalidState,
    NarrativesError,
    PermanentChannelError,
    RateLimited,
    TransientChannelError,
)
from narratives.policy.anonymise import artefact_leaks, terms_for
from narratives.policy.consent import check_publishable, is_anonymous
from narratives.records.delivery import OPEN, TAKEN_DOWN, Delivery, DeliveryState
from narratives.records.draft import DraftState
from narratives.store import deliveries as store
from narratives.store import drafts as draft_rows
from narratives.store.claims import new_claim_owner
from narratives.store.context import Context
from narratives.store.delivery_queries import get_delivery, list_deliveries
from narratives.store.schema import drafts
from narratives.workflow import scheduling
from narratives.workflow.channels import open_publishers
from narratives.workflow.takedown import take_down_delivery

__all__ = [
    "Backoff",
    "Outcome",
    "publish_delivery",
    "publish_draft_now",
    "recover_interrupted",
]

log = logging.getLogger(__name__)

S = DeliveryState


# ----------------------------------------------------------------------------- backoff


@dataclass(frozen=True)
class Backoff:
    """Delay before retry n (1-based): base·factor^(n-1), capped, minus up to `jitter` of it.

    After a rate limit (HTTP 429) the wait is the server's reset time plus `margin` seconds plus
    up to `spread` seconds at random: deliveries that met the same limit then wake at
    different times, not all on its reset second to meet it again (issue 19)."""

    base: float = 30.0
    factor: float = 2.0
    cap: float = 3600.0
    jitter: float = 0.5
    margin: float = 2.0
    spread: float = 30.0

    def after_rate_limit(self, retry_after: float | None, rng: Any = random) -> float:
        wait = retry_after if retry_after is not None else self.base
        return wait + self.margin + self.spread * rng.random()

    def delay(self, attempt: int, retry_after: float | None = None, rng: Any = random) -> float:
        raw = min(self.cap, self.base * self.factor ** max(attempt - 1, 0))
        delay = raw * (1.0 - self.jitter * rng.random())
        if retry_after is not None:
            delay = max(delay, retry_after)
        return delay


# ----------------------------------------------------------------------------- state machine


@dataclass(frozen=True)
class Outcome:
    #: published | found_existing | retry | failed | missed | skipped | withdrawn
    status: str
    delivery: Delivery | None
    error: str | None = None


def _error_text(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    hint = getattr(exc, "hint", None)
    return f"{text} ({hint})" if hint else text


def _missed(ctx: Context, d: Delivery, now: datetime, actor: str) -> Outcome | None:
    """Mark `d` missed if the missed rule says so; None when it is to be published."""
    limit = store.missed_limit(ctx, d.campaign)
    if not store.is_late(d, now, limit):
        return None
    with ctx.db.begin() as conn:
        # False when it was tried after all (it may have posts out and must be finished), or
        # when it waits for a time the server set (issue 19: a daily limit is not lateness).
        if not store.mark_missed(conn, d, now, actor=actor, limit=limit):
            return None
        return Outcome("missed", get_delivery(conn, d.id), d.last_error)


def _check_consent(conn: Connection, draft_id: int, channel: str) -> None:
    # Issue 7: consent is checked again at publish time, not only when scheduling (it may have
    # been withdrawn or have expired in between).
    check_publishable(conn, draft_id, channel)


def _check_anonymity(ctx: Context, conn: Connection, draft: Any) -> None:
    """A draft made or edited before the narrator asked to stay anonymous may still name
    them: refuse it rather than publish a name (the editor regenerates or edits it)."""
    if not is_anonymous(conn, draft.narrative_id):
        return
    # Issue 14: every artefact that would go out (post text, alt text, feed item texts, the
    # captions file) is read with the one matcher; a leak sends the draft back to review.
    terms = terms_for(ctx, draft.narrative_id)
    leaks = artefact_leaks(ctx.workspace.root, dict(draft.content or {}), terms)
    if leaks:
        names = ", ".join(sorted({leak.term for leak in leaks}))
        where = "; ".join(str(leak) for leak in leaks[:5])
        reason = f"names {names} but the narrator must stay anonymous ({where})"
        with ctx.db.begin() as write:
            draft_rows.send_back(write, draft.id, actor="leak-check", reason=reason)
        raise ConsentError(
            f"draft {draft.id} {reason}; it was sent back to review",
            hint="edit the draft (or mark the name and run `narrative process --force`), "
            "then approve and schedule it again",
        )


def _prepare(ctx: Context, d: Delivery, owner: str) -> Outgoing:
    with ctx.db.connect() as conn:
        draft = conn.execute(sa.select(drafts).where(drafts.c.id == d.draft_id)).first()
        if draft is None:
            raise PermanentChannelError(f"draft {d.draft_id} no longer exists")
        if draft.state != DraftState.APPROVED:
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
            return store.progress(c, d.id, owner, posts, now)

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
    if check_missed and (missed := _missed(ctx, d, now, actor)) is not None:
        return missed
    owner = new_claim_owner()
    with ctx.db.begin() as conn:
        if not store.claim(conn, delivery_id, now, owner):
            return Outcome("skipped", get_delivery(conn, delivery_id))
        d = get_delivery(conn, delivery_id)

    failure = dict(ctx=ctx, d=d, owner=owner, actor=actor, backoff=backoff)
    try:
        item = _prepare(ctx, d, owner)
        publisher = publishers.get(d.channel)
        if publisher is None:
            raise PermanentChannelError(f"no publisher for channel {d.channel!r}")
        result = publisher.publish(item)
    except ClaimLost:
        return _claim_lost(ctx, d, owner, actor=actor)
    except (TransientChannelError, EnvironmentProblem) as exc:
        # A full disk or a locked database passes: retried like a network failure.
        return _failed(exc=exc, transient=True, **failure)
    except (ChannelError, NarrativesError) as exc:
        # Permanent channel errors, consent refusals, missing campaigns or files: retrying
        # cannot help, so stop and show the reason on the draft.
        return _failed(exc=exc, transient=False, **failure)
    except Exception as exc:  # a bug or an unclassified library error: retry a bounded number
        log.exception("publishing delivery %s failed unexpectedly", d.id)
        return _failed(exc=exc, transient=True, **failure)
    return _published(ctx, d, owner, item, result, publisher, actor=actor)


def _published(
    ctx: Context,
    d: Delivery,
    owner: str,
    item: Outgoing,
    result: PublishResult,
    publisher: Publisher,
    *,
    actor: str,
) -> Outcome:
    """Record a publish that went out, then run the publisher's `after_commit`."""
    done = utcnow()
    outcome = "found_existing" if result.found_existing else "published"
    with ctx.db.begin() as conn:
        ours = store.published(
            conn,
            d.id,
            owner,
            content=item.content,
            posts=result.posts,
            url=result.url,
            outcome=outcome,
            actor=actor,
            at=done,
        )
        after = get_delivery(conn, d.id)
    if not ours:
        return _claim_lost(ctx, d, owner, actor=actor)
    try:
        publisher.after_commit(item)
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
    if now_row.state in TAKEN_DOWN:
        reason = "withdrawn while publishing"
        take_down_delivery(ctx, d.id, actor=actor, reason=reason, owner=owner)
        with ctx.db.connect() as conn:
            return Outcome("withdrawn", get_delivery(conn, d.id), reason)
    if now_row.state == S.PUBLISHED:
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
    # Waiting for a rate limit to reset is not a failed attempt (issue 19).
    rate_limited = isinstance(exc, RateLimited)
    if rate_limited:
        delay = backoff.after_rate_limit(getattr(exc, "retry_after", None))
        retry_at = now + timedelta(seconds=delay)
        status = "retry"
        last_error = error
    elif transient and d.attempts < max_attempts:
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
        kind = "transient_error" if transient else "permanent_error"
        kind = "rate_limited" if rate_limited else kind
        ours = store.failed(
            conn,
            d.id,
            owner,
            retry_at=retry_at,
            last_error=last_error,
            kind=kind,
            error=error,
            actor=actor,
            now=now,
            counts=not rate_limited,
        )
        after = get_delivery(conn, d.id) if ours else None
    # Not ours any more (withdrawn, or handed to another process): a "failed" row and
    # audit entry would misreport what happened; see what it is instead.
    if not ours:
        return _claim_lost(ctx, d, owner, actor=actor)
    log.warning("delivery %s: %s%s", d.id, last_error, f"; retry at {retry_at}" if retry_at else "")
    return Outcome(status, after, last_error)


def recover_interrupted(
    ctx: Context, *, actor: str = "scheduler", now: datetime | None = None
) -> list[int]:
    """Deliveries left `publishing` by a process that stopped become due again (to run once
    more, safely: their record keys make a repeat find what landed).

    Only stale claims are handed back (see `store.claims.claim_is_stale`): a
    `publish --now` still posting in another process keeps its delivery. The scheduler calls
    this at start and on every sync.
    """
    now = now or utcnow()
    reason = "interrupted while publishing (its process stopped); retried by the scheduler"
    with ctx.db.begin() as conn:
        return store.release_stale_claims(conn, now, actor=actor, reason=reason)


def publish_draft_now(
    ctx: Context,
    draft_id: int,
    publishers: Mapping[str, Publisher] | None = None,
    *,
    actor: str,
) -> Outcome:
    """`narrative publish DRAFT_ID --now`: schedule (or move) the draft's delivery to now and
    publish it through the same path as the scheduler."""
    now = utcnow()
    with ctx.db.connect() as conn:
        open_ = list_deliveries(conn, draft_id=draft_id, states=OPEN)
    if open_ and open_[0].state in (S.PUBLISHED, S.PUBLISHING):
        raise InvalidState(f"draft {draft_id} is already {open_[0].state} (delivery {open_[0].id})")
    if open_:
        d = scheduling.move(ctx, open_[0].id, at=now, actor=actor, now=now)
    else:
        # Raises InvalidState if another process schedules the draft first (the database
        # allows one open delivery per draft), so the draft is never posted twice.
        d = scheduling.schedule(ctx, draft_id, at=now, actor=actor, now=now)
    with open_publishers(ctx, publishers) as chosen:
        return publish_delivery(ctx, d.id, chosen, actor=actor, check_missed=False)
