"""Scheduling: approved drafts become deliveries at a time or in the campaign's next free slot.

A delivery row is the truth about when and where a draft goes out; the scheduler service only
wakes it (`narratives.workflow.scheduler`). Times are stored in UTC. Slots are weekly wall-clock
times in
the campaign's IANA zone, computed day by day with zoneinfo, so "wed 18:30" stays 18:30 local
across daylight-saving changes (its UTC instant moves by an hour instead).

Local times that do not exist or exist twice are resolved deliberately:
- a slot inside a spring-forward gap moves forward by the gap (02:30 becomes 03:30);
- a slot inside a fall-back overlap takes the first occurrence (the earlier instant);
- an explicit `--at` inside a gap is refused (the user should pick a real time); one inside an
  overlap takes the first occurrence, like slots, unless the text carries a UTC offset.

A Bluesky delivery gets its record keys (TIDs, one per post of the thread) when it is scheduled,
so that a retry after a crash finds the record instead of posting twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from narratives.channels.bluesky.tids import new_tid, thread_rkeys
from narratives.core.campaigns import BLUESKY, Campaign, get_campaign
from narratives.core.clock import utcnow
from narratives.core.errors import InvalidState, NotFound, UsageError
from narratives.policy.consent import check_publishable
from narratives.records.delivery import WAITING, Delivery
from narratives.records.draft import DraftState
from narratives.store import deliveries as store
from narratives.store.context import Context
from narratives.store.delivery_queries import (
    attempted_keys,
    get_delivery,
    occupied_times,
    open_delivery,
    open_draft_ids,
)
from narratives.store.schema import drafts

__all__ = [
    "FillResult",
    "resolve_local",
    "parse_when",
    "slot_times",
    "next_free_slot",
    "schedule",
    "fill",
    "cancel",
    "move",
    "new_post_keys",
]

#: How far ahead a free slot is searched for before giving up.
_SLOT_HORIZON_DAYS = 366 * 2


# ----------------------------------------------------------------------------- local time


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise UsageError(f"unknown IANA time zone {name!r}", hint="e.g. Europe/Lisbon") from exc


def resolve_local(
    naive: datetime,
    zone: ZoneInfo,
    *,
    nonexistent: Literal["shift", "raise"] = "shift",
    ambiguous: Literal["earlier", "later"] = "earlier",
) -> datetime:
    """The UTC instant of a wall-clock time in `zone` (see the module docstring for the rules)."""
    if naive.tzinfo is not None:
        return naive.astimezone(UTC)
    first = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:
        return first
    if first.astimezone(zone).replace(tzinfo=None) != naive:
        # In a gap, fold=0 reads the time with the offset before the change, which lands
        # after the gap: the wall clock moved forward by the gap's length.
        if nonexistent == "raise":
            raise UsageError(
                f"{naive:%Y-%m-%d %H:%M} does not exist in {zone.key} (clocks skip forward then)",
                hint="choose a time outside the daylight-saving gap",
            )
        return first
    return min(first, second) if ambiguous == "earlier" else max(first, second)


_WHEN = re.compile(r"^\s*(\d{4}-\d{2}-\d{2})[ T](\d{1,2}:\d{2}(?::\d{2})?)\s*$")


def parse_when(text: str | datetime, zone: ZoneInfo) -> datetime:
    """`"2026-12-01 18:30"` in `zone` (or an ISO time with an offset) as a UTC instant."""
    if isinstance(text, datetime):
        return resolve_local(text, zone, nonexistent="raise")
    m = _WHEN.match(text)
    try:
        if m:
            naive = datetime.fromisoformat(f"{m.group(1)}T{m.group(2).zfill(5)}")
            return resolve_local(naive, zone, nonexistent="raise")
        parsed = datetime.fromisoformat(text.strip())
    except ValueError:  # no such date or time ("2030-13-01 09:00", "25:00")
        raise UsageError(
            f"cannot read the time {text!r}", hint='write it like "2026-12-01 18:30"'
        ) from None
    return resolve_local(parsed, zone, nonexistent="raise")


def slot_times(campaign: Campaign, after: datetime) -> Iterator[datetime]:
    """The campaign's weekly slots as UTC instants strictly after `after`, in order (endless)."""
    slots = campaign.slots.parsed()
    if not slots:
        return
    zone = campaign.slots.zone
    day: date = after.astimezone(zone).date() - timedelta(days=1)
    while True:
        todays = sorted(
            resolve_local(datetime.combine(day, t), zone)
            for weekday, t in slots
            if weekday == day.weekday()
        )
        for instant in todays:
            if instant > after:
                yield instant
        day += timedelta(days=1)


def next_free_slot(
    conn: Connection,
    campaign: Campaign,
    channel: str,
    *,
    after: datetime,
    taken: set[datetime] | None = None,
) -> datetime:
    """The first weekly slot after `after` with no delivery of this campaign and channel."""
    occupied = occupied_times(conn, campaign.slug, channel, after) | (taken or set())
    horizon = after + timedelta(days=_SLOT_HORIZON_DAYS)
    for instant in slot_times(campaign, after):
        if instant > horizon:
            break
        if instant not in occupied:
            return instant
    if not campaign.slots.weekly:
        raise InvalidState(
            f"campaign {campaign.slug} has no weekly posting slots",
            hint="add [slots] weekly = [...] to its file, or schedule with --at",
        )
    raise InvalidState(f"campaign {campaign.slug} has no free slot in the next two years")


# ----------------------------------------------------------------------------- record keys


def new_post_keys(count: int) -> list[dict[str, Any]]:
    """Fresh `[{rkey, uri, cid}]` for a thread of `count` posts (TIDs from the Bluesky adapter)."""
    keys = thread_rkeys(new_tid(), max(count, 1))
    return [{"rkey": k, "uri": None, "cid": None} for k in keys]


# ----------------------------------------------------------------------------- actions


def _load_draft(conn: Connection, draft_id: int) -> Any:
    row = conn.execute(sa.select(drafts).where(drafts.c.id == draft_id)).first()
    if row is None:
        raise NotFound(f"no draft {draft_id}", hint="see `narrative drafts list`")
    return row


def _require_schedulable(conn: Connection, draft: Any, campaign: Campaign) -> None:
    if draft.state != DraftState.APPROVED:
        raise InvalidState(
            f"draft {draft.id} is {draft.state}; only approved drafts can be scheduled",
            hint="approve it first (`narrative drafts approve` or the review page)",
        )
    if getattr(campaign.channels, draft.channel, None) is None:
        raise InvalidState(f"campaign {campaign.slug} has no {draft.channel} channel")
    check_publishable(conn, draft.id, draft.channel)  # issue 7: no consent, no scheduling
    _require_unscheduled(conn, draft.id)


def _require_unscheduled(conn: Connection, draft_id: int) -> None:
    """A draft is scheduled at most once (a second delivery would post it twice)."""
    existing = open_delivery(conn, draft_id)
    if existing is not None:
        raise InvalidState(
            f"draft {draft_id} already has delivery {existing.id} ({existing.state})",
            hint=f"use `narrative schedule move {existing.id} ...` to change its time",
        )


def _lost_race(ctx: Context, draft_id: int, exc: sa.exc.IntegrityError) -> InvalidState:
    """The InvalidState for an INSERT that the one-open-delivery index refused.

    Another process scheduled the same draft between our check and our INSERT; the index
    (migration 0004) stops the second delivery. Any other integrity error is re-raised.
    """
    with ctx.db.connect() as conn:
        try:
            _require_unscheduled(conn, draft_id)
        except InvalidState as lost:
            return lost
    raise exc


#: How far ahead a post may be scheduled at a given time (a typo'd year is refused).
MAX_AHEAD = timedelta(days=5 * 365)


def _when(
    campaign: Campaign,
    conn: Connection,
    channel: str,
    *,
    at: str | datetime | None,
    tz: str | None,
    next_slot: bool,
    now: datetime,
    taken: set[datetime] | None = None,
) -> datetime:
    if (at is None) == (not next_slot):
        raise UsageError("give either a time (--at) or --next-slot")
    if at is not None:
        when = parse_when(at, _zone(tz) if tz else campaign.slots.zone)
        if when < now - timedelta(minutes=1):
            raise UsageError(
                f"{when.isoformat()} is in the past",
                hint="use `narrative publish DRAFT_ID --now` to post at once",
            )
        if when > now + MAX_AHEAD:
            raise UsageError(
                f"{when.isoformat()} is more than {MAX_AHEAD.days // 365} years ahead",
                hint="check the year; schedule it nearer the time",
            )
        return when
    return next_free_slot(conn, campaign, channel, after=now, taken=taken)


def _insert(conn: Connection, draft: Any, when: datetime, *, actor: str, now: datetime) -> Delivery:
    posts = None
    rkey = None
    if draft.channel == BLUESKY:
        content = draft.content or {}
        posts = attempted_keys(conn, draft.id) or new_post_keys(len(content.get("posts") or []))
        rkey = posts[0]["rkey"]
    return store.insert_scheduled(conn, draft, when, posts=posts, rkey=rkey, actor=actor, now=now)


def schedule(
    ctx: Context,
    draft_id: int,
    *,
    at: str | datetime | None = None,
    tz: str | None = None,
    next_slot: bool = False,
    actor: str,
    now: datetime | None = None,
) -> Delivery:
    """Schedule an approved draft at `at` (wall-clock in `tz`, default the campaign's zone)
    or, with `next_slot`, in its campaign's next free slot for the draft's channel."""
    now = now or utcnow()
    try:
        with ctx.db.begin() as conn:
            draft = _load_draft(conn, draft_id)
            campaign = get_campaign(ctx.workspace, draft.campaign)
            _require_schedulable(conn, draft, campaign)
            when = _when(campaign, conn, draft.channel, at=at, tz=tz, next_slot=next_slot, now=now)
            return _insert(conn, draft, when, actor=actor, now=now)
    except sa.exc.IntegrityError as exc:
        raise _lost_race(ctx, draft_id, exc) from None


@dataclass(frozen=True)
class FillResult:
    """What `fill` queued, and the drafts it left out with the reason for each."""

    deliveries: list[Delivery]
    #: (draft id, why): consent does not cover it, or another process scheduled it meanwhile.
    skipped: list[tuple[int, str]]


def fill(
    ctx: Context, campaign_slug: str, *, actor: str, now: datetime | None = None
) -> FillResult:
    """Queue every approved, unscheduled draft of the campaign into free slots (oldest first).

    Each draft passes the same checks as `schedule` (consent above all) and is queued in a
    transaction of its own, so a draft that fails them, or that another process schedules
    first (a refused INSERT aborts a PostgreSQL transaction), is skipped and reported instead
    of stopping the others. Drafts of one narrative for different channels land in the same
    slot when both are free.
    """
    now = now or utcnow()
    campaign = get_campaign(ctx.workspace, campaign_slug)
    if not campaign.slots.weekly:
        raise InvalidState(f"campaign {campaign.slug} has no weekly posting slots")
    with ctx.db.connect() as conn:
        ids = conn.scalars(
            sa.select(drafts.c.id)
            .where(
                drafts.c.campaign == campaign.slug,
                drafts.c.state == DraftState.APPROVED,
                drafts.c.channel.in_(campaign.channel_names),
                drafts.c.id.not_in(open_draft_ids()),
            )
            .order_by(drafts.c.updated_at, drafts.c.id)
        ).all()
    out = FillResult([], [])
    for draft_id in ids:
        try:
            with ctx.db.begin() as conn:
                draft = _load_draft(conn, draft_id)
                _require_schedulable(conn, draft, campaign)
                when = next_free_slot(conn, campaign, draft.channel, after=now)
                out.deliveries.append(_insert(conn, draft, when, actor=actor, now=now))
        except sa.exc.IntegrityError as exc:
            out.skipped.append((draft_id, str(_lost_race(ctx, draft_id, exc))))
        except (InvalidState, NotFound) as exc:
            out.skipped.append((draft_id, str(exc)))
    return out


def cancel(ctx: Context, delivery_id: int, *, actor: str, reason: str | None = None) -> Delivery:
    """Cancel a delivery that has not gone out (scheduled, or failed and waiting).

    A Bluesky delivery with posts already on the server is refused: cancelling would leave
    them up with nothing tracking them. Moving it finishes the thread with the same record
    keys; withdrawing consent takes the posts down.
    """
    now = utcnow()
    with ctx.db.begin() as conn:
        before = get_delivery(conn, delivery_id)
        if before.state in WAITING and before.landed_posts:
            raise InvalidState(
                f"delivery {delivery_id} has {len(before.landed_posts)} post(s) on Bluesky "
                "already; cancelling it would leave them up",
                hint=f"use `narrative schedule move {delivery_id} ...` to finish the thread, "
                "or withdraw consent to take the posts down",
            )
        after = store.cancel(conn, before, actor=actor, now=now, detail=reason)
        if after is None:
            raise InvalidState(f"delivery {delivery_id} is {before.state}; it cannot be cancelled")
        return after


def move(
    ctx: Context,
    delivery_id: int,
    *,
    at: str | datetime | None = None,
    tz: str | None = None,
    next_slot: bool = False,
    actor: str,
    now: datetime | None = None,
) -> Delivery:
    """Give a waiting delivery a new time; a failed one is scheduled afresh (its record keys,
    and so any posts of a thread that already went out, are kept)."""
    now = now or utcnow()
    with ctx.db.begin() as conn:
        before = get_delivery(conn, delivery_id)
        if before.state not in WAITING:
            raise InvalidState(f"delivery {delivery_id} is {before.state}; it cannot be moved")
        campaign = get_campaign(ctx.workspace, before.campaign)
        taken = {before.scheduled_at}
        when = _when(
            campaign,
            conn,
            before.channel,
            at=at,
            tz=tz,
            next_slot=next_slot,
            now=now,
            taken=taken if next_slot else None,
        )
        after = store.reschedule(conn, before, when, actor=actor, now=now)
        if after is None:
            raise InvalidState(f"delivery {delivery_id} changed state meanwhile; try again")
        return after
