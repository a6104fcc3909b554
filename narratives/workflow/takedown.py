"""Takedowns: what happens to a narrative's deliveries when its consent stops covering them.

The ledger (`policy.consent`) records consent; this module acts on a change of it: a
withdrawal, an expiry, or a new consent that covers less. It cancels what never went out,
deletes Bluesky posts by record key and rebuilds feeds without the narrative's items.

Design choices that are not obvious:

- **Withdrawal is a takedown, not a flag.** `withdraw` marks the consent withdrawn first (in its
  own transaction, so no publish can pass the check afterwards), cancels the deliveries still
  waiting, then deletes every post of every published Bluesky thread by its record key and
  rebuilds the campaign feeds without the narrative's items. Network work happens outside any
  transaction. A delivery that is or may be out is first marked `withdrawing` in its own
  transaction, *before* any lookup or delete: a publisher still posting it then fails its next
  conditional write, stops, and takes down what it posted itself. It becomes `withdrawn` only
  once its posts are gone and no live publisher still holds it, so a takedown interrupted by a
  server outage (or racing a publish) is finished by the next `withdraw` or `expire_due`.
- **Expiry does the same, lazily.** `expire_due` finds narratives whose consent no longer
  allows publishing (expired, or withdrawn with a takedown left unfinished) that still have
  live deliveries, and takes those down. No extra state: "live deliveries remain" is the state.
- **Narrowing consent takes down what it no longer covers.** A new consent that drops a channel
  cancels or takes down that channel's deliveries; one that asks for anonymity where the
  narrator was named takes down all of them (their videos carry the voice and the names, which
  no text check can see). `expire_due` catches what such a takedown left unfinished.
- **A feed item is gone before its delivery is `withdrawn`.** An RSS delivery stays
  `withdrawing` until its campaign's feeds are rebuilt without it; if the rebuild fails for any
  reason it stays so, and the next `withdraw` or `expire_due` tries again.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from narratives.channels.base import Publisher
from narratives.core.campaigns import CHANNELS, RSS, get_campaign
from narratives.core.clock import utcnow
from narratives.core.errors import NarrativesError
from narratives.policy import consent as ledger
from narratives.policy.sidecar import import_sidecar
from narratives.records.consent import Consent, TakenDown, WithdrawalReport
from narratives.records.delivery import OUT, STOPPED, WAITING, Delivery, DeliveryState
from narratives.store import audit
from narratives.store import deliveries as store
from narratives.store.claims import claim_is_stale
from narratives.store.context import Context
from narratives.store.delivery_queries import live_clause, live_of_narrative, load_with_attempts
from narratives.store.schema import consents, deliveries, drafts
from narratives.workflow.channels import open_publishers
from narratives.workflow.feeds import write_campaign_feeds

__all__ = [
    "set_consent",
    "import_consent",
    "withdraw",
    "take_down",
    "take_down_delivery",
    "take_down_uncovered",
    "expire_due",
]

log = logging.getLogger(__name__)

S = DeliveryState


# ----------------------------------------------------------------------------- consent changes


def set_consent(
    ctx: Context,
    narrative_id: str,
    *,
    given_by: str,
    method: str,
    channels: Sequence[str],
    anonymous: bool = True,
    given_at: datetime | date | None = None,
    expires_at: datetime | date | None = None,
    notes: str | None = None,
    actor: str,
    expected_version: int | None | Literal["any"] = "any",
) -> Consent:
    """Record (or replace) a narrative's consent (`policy.consent.record_consent`, which
    refuses a stale `expected_version` with `Conflict`), then cancel or take down what it no
    longer covers; the returned consent carries that `takedown`."""
    before, after = ledger.record_consent(
        ctx,
        narrative_id,
        given_by=given_by,
        method=method,
        channels=channels,
        anonymous=anonymous,
        given_at=given_at,
        expires_at=expires_at,
        notes=notes,
        actor=actor,
        expected_version=expected_version,
    )
    report = take_down_uncovered(ctx, narrative_id, before, after, actor=actor)
    return dataclasses.replace(after, takedown=report) if report else after


def import_consent(
    ctx: Context, narrative_id: str, recording_path: Path, *, actor: str, replace: bool = True
) -> Consent | None:
    """`policy.sidecar.import_sidecar`, then take down what the imported consent no longer
    covers."""

    def narrowed(before: Consent | None, after: Consent) -> None:
        take_down_uncovered(ctx, narrative_id, before, after, actor=actor)

    return import_sidecar(
        ctx, narrative_id, recording_path, actor, replace=replace, on_change=narrowed
    )


def withdraw(
    ctx: Context, narrative_id: str, *, actor: str, reason: str, wait: float = 30.0
) -> WithdrawalReport:
    """The narrator withdraws consent: stop and take down everything of the narrative.

    A delivery a live publisher holds is left to it (it takes its posts down when it notices,
    within seconds): this waits up to `wait` seconds for those, so the report says what is
    down; what is still held then is in `report.pending`.
    Safe to run again: a second run finishes a takedown the first could not (server down).
    """
    reason = ledger.record_withdrawal(ctx, narrative_id, actor=actor, reason=reason)
    report = take_down(ctx, narrative_id, actor=actor, reason=reason, action="withdraw")
    wait_for_pending(ctx, report, wait)
    return report


def wait_for_pending(ctx: Context, report: WithdrawalReport, timeout: float) -> None:
    """Poll the deliveries `report` says a publisher still holds until they are settled or
    `timeout` seconds pass; their `after` is updated to what they are now."""
    deadline = time.monotonic() + timeout
    while report.pending:
        with ctx.db.connect() as conn:
            for t in report.deliveries:
                if t.delivery_id in report.pending:
                    t.after = load_with_attempts(conn, t.delivery_id).state
        if not report.pending or time.monotonic() >= deadline:
            return
        time.sleep(0.2)


# ----------------------------------------------------------------------------- one delivery


def _may_have_landed(row: Any) -> bool:
    """A Bluesky delivery that was attempted, or has posts recorded, may have posts out."""
    if not CHANNELS[row.channel].has_records:
        return False
    return bool(row.ever_attempted) or any(p.get("uri") for p in row.posts or ())


def _needs_takedown(row: Any) -> bool:
    if row.state in OUT:
        return True
    if row.state == S.WITHDRAWN:
        # Look again: a publisher may have landed a post after the first takedown's lookups.
        return CHANNELS[row.channel].has_records
    return row.state in (*WAITING, *STOPPED) and _may_have_landed(row)


def _start_withdrawing(ctx: Context, delivery_id: int, *, actor: str, reason: str) -> Any:
    """Cancel the delivery if it never went out, else mark it `withdrawing` in a transaction
    of its own, before any lookup or delete (see the module docstring). Returns the row as it
    is now; its state says which happened."""
    with ctx.db.begin() as conn:
        for _ in range(5):
            row = load_with_attempts(conn, delivery_id)
            if row.state in WAITING and not _may_have_landed(row):
                before = Delivery.from_row(row)
                detail = f"consent: {reason}"
                if store.cancel(conn, before, actor=actor, now=utcnow(), detail=detail):
                    return load_with_attempts(conn, delivery_id)
                continue
            if not _needs_takedown(row):
                return row
            if store.start_withdrawing(conn, delivery_id, row.state, utcnow()):
                return load_with_attempts(conn, delivery_id)
        raise NarrativesError(f"delivery {delivery_id} keeps changing state; try again")


def _finish_withdrawing(
    ctx: Context,
    info: TakenDown,
    posts: list[dict[str, Any]],
    *,
    owner: str | None,
    actor: str,
    reason: str,
) -> None:
    """`withdrawing` → `withdrawn`, unless a live publisher other than `owner` still holds
    the delivery: it may land a post after our lookups, so it is left `withdrawing` (still
    live) for that publisher, or a later `expire_due`, to finish."""
    with ctx.db.begin() as conn:
        row = load_with_attempts(conn, info.delivery_id)
        if row.state != S.WITHDRAWING:
            info.after = row.state  # finished by another takedown meanwhile
            return
        held = row.claimed_by is not None and row.claimed_by != owner
        if held and CHANNELS[info.channel].has_records:
            if not claim_is_stale(row.claimed_by, row.claimed_at, utcnow()):
                info.after = S.WITHDRAWING
                return
        audited = info.before != S.WITHDRAWN or info.deleted
        done = store.finish_withdrawing(
            conn,
            info.delivery_id,
            row.claimed_by,
            utcnow(),
            actor=actor,
            detail=f"consent: {reason}",
            before={"state": info.before, "posts": posts or None} if audited else None,
            deleted=info.deleted,
        )
        if not done:
            info.after = load_with_attempts(conn, info.delivery_id).state
            return
    info.after = S.WITHDRAWN


def take_down_delivery(
    ctx: Context,
    delivery_id: int,
    *,
    actor: str,
    reason: str,
    publishers: Mapping[str, Publisher] | None = None,
    owner: str | None = None,
    finish_rss: bool = True,
) -> TakenDown:
    """Stop or take down one delivery: cancel it if it never went out; otherwise mark it
    `withdrawing`, delete every post it may have on Bluesky (stored URIs, and a lookup of
    every other record key), then mark it `withdrawn`. The feed is not rebuilt here: with
    `finish_rss=False` an RSS delivery is left `withdrawing` for the caller to finish once
    the feed no longer lists it (`take_down`).

    A publisher that finds, after posting, that its delivery was withdrawn meanwhile calls this
    with its claim as `owner` (its conditional update matched no row).
    """
    with ctx.db.connect() as conn:
        first = load_with_attempts(conn, delivery_id)
    row = _start_withdrawing(ctx, delivery_id, actor=actor, reason=reason)
    info = TakenDown(row.id, row.draft_id, row.campaign, row.channel, first.state, row.state)
    if row.state != S.WITHDRAWING or (info.channel == RSS and not finish_rss):
        return info
    posts = list(row.posts or [])

    deleted: list[str] = []
    if CHANNELS[info.channel].has_records and posts:
        try:
            campaign = get_campaign(ctx.workspace, info.campaign)
            with open_publishers(ctx, publishers) as chosen:
                deleted = chosen[info.channel].take_down(campaign, posts)
        except NarrativesError as exc:
            info.after, info.error = S.WITHDRAWING, str(exc)
            return info
    info.deleted = deleted
    _finish_withdrawing(ctx, info, posts, owner=owner, actor=actor, reason=reason)
    return info


# ----------------------------------------------------------------------------- a narrative


def take_down(
    ctx: Context,
    narrative_id: str,
    *,
    actor: str,
    reason: str,
    action: str = "withdraw",
    only: Collection[int] | None = None,
) -> WithdrawalReport:
    """Cancel, delete and unlist every delivery of the narrative's drafts (or only those in
    `only`); rebuild feeds.

    Always ends with its audit record, whatever failed: a failure is reported in `errors`, and
    what it left undone stays live (`withdrawing`) for a later run to finish.
    """
    report = WithdrawalReport(narrative_id, reason, utcnow(), action)
    with ctx.db.connect() as conn:
        rows = live_of_narrative(conn, narrative_id)
    if only is not None:
        rows = [r for r in rows if r.id in only]
    unlist: dict[str, list[TakenDown]] = {}
    with open_publishers(ctx) as publishers:
        for r in rows:
            try:
                taken = take_down_delivery(
                    ctx, r.id, actor=actor, reason=reason, publishers=publishers, finish_rss=False
                )
            except Exception as exc:  # reported; the delivery stays live for a later run
                if not isinstance(exc, NarrativesError):
                    log.exception("taking down delivery %s failed", r.id)
                report.errors.append(f"delivery {r.id}: {exc}")
                continue
            report.deliveries.append(taken)
            if taken.error:
                report.errors.append(f"delivery {r.id} ({taken.channel}): {taken.error}")
            elif taken.channel == RSS and taken.after == S.WITHDRAWING:
                unlist.setdefault(taken.campaign, []).append(taken)
    for slug, items in sorted(unlist.items()):
        if not _unlist(ctx, slug, items, actor=actor, reason=reason, report=report):
            continue
        report.feeds_rebuilt.append(slug)
    if rows or report.errors:
        with ctx.db.begin() as conn:
            audit.record(
                conn,
                actor=actor,
                action=f"consent.{action}.takedown",
                object_type="consent",
                object_id=narrative_id,
                after={
                    "cancelled": report.cancelled,
                    "withdrawn": report.withdrawn,
                    "deleted_posts": report.deleted_posts,
                    "feeds_rebuilt": report.feeds_rebuilt,
                    "errors": report.errors,
                },
                detail=reason,
            )
    return report


def _unlist(
    ctx: Context,
    slug: str,
    items: list[TakenDown],
    *,
    actor: str,
    reason: str,
    report: WithdrawalReport,
) -> bool:
    """Rebuild the campaign's feeds without `items` (already `withdrawing`, which no feed
    lists), then mark them `withdrawn`. On any failure they stay `withdrawing`: the old feed
    file may still list them, so the takedown is not done until a rebuild succeeds."""
    try:
        write_campaign_feeds(ctx, slug)
        for info in items:
            _finish_withdrawing(ctx, info, [], owner=None, actor=actor, reason=reason)
    except Exception as exc:  # any failure leaves the items to a later run
        if not isinstance(exc, NarrativesError):
            log.exception("rebuilding the feeds of %s after a takedown failed", slug)
        for info in items:
            if info.after == S.WITHDRAWING:
                info.error = f"feeds of {slug} not rebuilt: {exc}"
        report.errors.append(f"feeds of {slug}: {exc}")
        return False
    return True


def _uncovered(
    conn: Connection, narrative_id: str, consent: Consent, *, newly_anonymous: bool
) -> list[int]:
    """The narrative's live deliveries that `consent` does not cover: on a channel it does not
    name (or all of them, when it no longer allows publishing, or when the narrator must now
    stay anonymous), and any takedown left unfinished (`withdrawing`)."""
    rows = live_of_narrative(conn, narrative_id)
    return [
        r.id
        for r in rows
        if newly_anonymous
        or r.state == S.WITHDRAWING
        or ledger.consent_problem(consent, r.channel) is not None
    ]


def take_down_uncovered(
    ctx: Context, narrative_id: str, before: Consent | None, after: Consent, *, actor: str
) -> WithdrawalReport | None:
    """After a consent is replaced: cancel or take down what the new one no longer covers.

    Dropping a channel affects that channel's deliveries. Asking for anonymity where the
    narrator was named affects all of them: their videos carry the undisguised voice and
    names that no text check can see. None when nothing was affected; a takedown left
    unfinished (server down) is logged and finished by `expire_due`.
    """
    newly_anonymous = before is not None and not before.anonymous and after.anonymous
    with ctx.db.connect() as conn:
        ids = _uncovered(conn, narrative_id, after, newly_anonymous=newly_anonymous)
    if not ids:
        return None
    if newly_anonymous:
        reason = "new consent: the narrator must now stay anonymous"
    else:
        allowed = ", ".join(after.channels) or "none"
        reason = f"new consent covers less (only: {allowed})"
    report = take_down(ctx, narrative_id, actor=actor, reason=reason, action="narrow", only=ids)
    if report.errors:
        log.warning(
            "narrative %s: takedown after the consent change is unfinished (retried by the "
            "scheduler): %s",
            narrative_id[:12],
            "; ".join(report.errors),
        )
    return report


def expire_due(
    ctx: Context, now: datetime | None = None, *, actor: str = "scheduler"
) -> list[WithdrawalReport]:
    """Take down narratives whose consent no longer allows publishing but that still have
    live deliveries: expired consents, and withdrawals whose takedown was left unfinished.
    Under a consent still in force, take down the deliveries on channels it does not name
    (a narrowed consent whose takedown did not finish) and any other unfinished takedown.

    Cheap when there is nothing to do (two queries); the scheduler runs it periodically.
    """
    now = now or utcnow()
    in_force = sa.and_(
        consents.c.withdrawn_at.is_(None),
        sa.or_(consents.c.expires_at.is_(None), consents.c.expires_at > now),
    )
    with ctx.db.connect() as conn:
        rows = conn.execute(
            sa.select(consents.c.narrative_id, consents.c.withdrawn_at, consents.c.expires_at)
            .where(
                sa.not_(in_force),
                sa.exists(
                    sa.select(deliveries.c.id)
                    .join(drafts, drafts.c.id == deliveries.c.draft_id)
                    .where(
                        drafts.c.narrative_id == consents.c.narrative_id,
                        live_clause(),
                    )
                ),
            )
            .order_by(consents.c.narrative_id)
        ).all()
        # JSON membership is not portable SQL, so the channels are compared here.
        live = conn.execute(
            sa.select(
                consents.c.narrative_id,
                consents.c.channels,
                deliveries.c.id,
                deliveries.c.channel,
                deliveries.c.state,
            )
            .join(drafts, drafts.c.narrative_id == consents.c.narrative_id)
            .join(deliveries, deliveries.c.draft_id == drafts.c.id)
            .where(in_force, live_clause())
            .order_by(consents.c.narrative_id, deliveries.c.id)
        ).all()
    narrowed: dict[str, list[int]] = {}
    for d in live:
        if d.state == S.WITHDRAWING or d.channel not in (d.channels or ()):
            narrowed.setdefault(d.narrative_id, []).append(d.id)
    reports = []
    for r in rows:
        if r.withdrawn_at is not None:
            action, reason = "withdraw", "finishing an interrupted withdrawal"
        else:
            action, reason = "expire", f"consent expired on {r.expires_at:%Y-%m-%d %H:%M} UTC"
        reports.append(take_down(ctx, r.narrative_id, actor=actor, reason=reason, action=action))
    for narrative_id, ids in narrowed.items():
        reason = "finishing the takedown of what the consent no longer covers"
        reports.append(
            take_down(ctx, narrative_id, actor=actor, reason=reason, action="narrow", only=ids)
        )
    return reports
