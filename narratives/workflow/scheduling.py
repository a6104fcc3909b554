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
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from narratives.core.campaigns import Campaign, get_campaign
from narratives.core.errors import InvalidState, NotFound, UsageError
from narratives.store import audit
from narratives.store.context import Context
from narratives.store.deliveries import was_attempted  # noqa: F401  (re-exported)
from narratives.store.schema import (
    OPEN_DELIVERY_STATES,
    deliveries,
    drafts,
    utcnow,
)

__all__ = [
    "Delivery",
    "FillResult",
    "SLOT_STATES",
    "WAITING_STATES",
    "resolve_local",
    "parse_when",
    "slot_times",
    "next_free_slot",
    "schedule",
    "fill",
    "list_deliveries",
    "get_delivery",
    "cancel",
    "move",
    "new_post_keys",
]

#: States that occupy a posting slot (cancelled, missed and withdrawn deliveries free it).
SLOT_STATES = ("scheduled", "publishing", "published", "failed")
#: States from which a delivery may still be cancelled or moved.
WAITING_STATES = ("scheduled", "failed")

#: How far ahead a free slot is searched for before giving up.
_SLOT_HORIZON_DAYS = 366 * 2


@dataclass(frozen=True)
class Delivery:
    id: int
    draft_id: int
    campaign: str
    channel: str
    state: str
    scheduled_at: datetime
    rkey: str | None
    attempts: int
    retry_at: datetime | None
    last_error: str | None
    published_at: datetime | None
    posts: list[dict[str, Any]] | None
    created_at: datetime
    updated_at: datetime
    #: The process publishing it ("host:pid:token") and when it last showed progress.
    claimed_by: str | None = None
    claimed_at: datetime | None = None

    @classmethod
    def from_row(cls, row: Any) -> Delivery:
        m = row._mapping
        return cls(**{f: m[f] for f in cls.__dataclass_fields__})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k, v in d.items():
            if isinstance(v, datetime):
                d[k] = v.isoformat()
        return d

    @property
    def landed_posts(self) -> list[dict[str, Any]]:
        """The posts of this delivery known to be on the server (those with a stored URI)."""
        return [p for p in self.posts or () if p.get("uri")]

    @property
    def wake_at(self) -> datetime | None:
        """When the scheduler should next look at this delivery (None: nothing to do)."""
        if self.state == "scheduled":
            return self.scheduled_at
        if self.state == "failed" and self.retry_at is not None:
            return self.retry_at
        return None


def _summary(d: Delivery) -> dict[str, Any]:
    return {
        "state": d.state,
        "scheduled_at": d.scheduled_at.isoformat(),
        "retry_at": d.retry_at.isoformat() if d.retry_at else None,
    }


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


def _occupied(conn: Connection, campaign: str, channel: str, after: datetime) -> set[datetime]:
    rows = conn.execute(
        sa.select(deliveries.c.scheduled_at).where(
            deliveries.c.campaign == campaign,
            deliveries.c.channel == channel,
            deliveries.c.state.in_(SLOT_STATES),
            deliveries.c.scheduled_at > after,
        )
    )
    return {r.scheduled_at for r in rows}


def next_free_slot(
    conn: Connection,
    campaign: Campaign,
    channel: str,
    *,
    after: datetime,
    taken: set[datetime] | None = None,
) -> datetime:
    """The first weekly slot after `after` with no delivery of this campaign and channel."""
    occupied = _occupied(conn, campaign.slug, channel, after) | (taken or set())
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
    from narratives.channels.bluesky import new_tid, thread_rkeys

    keys = thread_rkeys(new_tid(), max(count, 1))
    return [{"rkey": k, "uri": None, "cid": None} for k in keys]


# ----------------------------------------------------------------------------- queries


def get_delivery(conn: Connection, delivery_id: int) -> Delivery:
    row = conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id)).first()
    if row is None:
        raise NotFound(f"no delivery {delivery_id}", hint="see `narrative schedule list`")
    return Delivery.from_row(row)


def list_deliveries(
    conn: Connection,
    *,
    campaign: str | None = None,
    states: Sequence[str] | None = None,
    draft_id: int | None = None,
    channel: str | None = None,
) -> list[Delivery]:
    """Deliveries ordered by scheduled time, optionally filtered."""
    q = sa.select(deliveries).order_by(deliveries.c.scheduled_at, deliveries.c.id)
    if campaign is not None:
        q = q.where(deliveries.c.campaign == campaign)
    if states:
        q = q.where(deliveries.c.state.in_(list(states)))
    if draft_id is not None:
        q = q.where(deliveries.c.draft_id == draft_id)
    if channel is not None:
        q = q.where(deliveries.c.channel == channel)
    return [Delivery.from_row(r) for r in conn.execute(q)]


# ----------------------------------------------------------------------------- actions


def _load_draft(conn: Connection, draft_id: int) -> Any:
    row = conn.execute(sa.select(drafts).where(drafts.c.id == draft_id)).first()
    if row is None:
        raise NotFound(f"no draft {draft_id}", hint="see `narrative drafts list`")
    return row


def _require_schedulable(conn: Connection, draft: Any, campaign: Campaign) -> None:
    if draft.state != "approved":
        raise InvalidState(
            f"draft {draft.id} is {draft.state}; only approved drafts can be scheduled",
            hint="approve it first (`narrative drafts approve` or the review page)",
        )
    if getattr(campaign.channels, draft.channel, None) is None:
        raise InvalidState(f"campaign {campaign.slug} has no {draft.channel} channel")
    from narratives.policy import consent  # issue 7: no consent for the channel, no scheduling

    consent.check_publishable(conn, draft.id, draft.channel)
    _require_unscheduled(conn, draft.id)


def _require_unscheduled(conn: Connection, draft_id: int) -> None:
    """A draft is scheduled at most once (a second delivery would post it twice)."""
    existing = conn.execute(
        sa.select(deliveries.c.id, deliveries.c.state).where(
            deliveries.c.draft_id == draft_id, deliveries.c.state.in_(OPEN_DELIVERY_STATES)
        )
    ).first()
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
        return when
    return next_free_slot(conn, campaign, channel, after=now, taken=taken)


def _earlier_attempted_keys(conn: Connection, draft_id: int) -> list[dict[str, Any]] | None:
    """The record keys of the draft's latest cancelled Bluesky delivery that was attempted.

    An attempt may have landed a post without recording it (killed after the server committed);
    scheduling the draft again with the same keys finds that post instead of posting it twice.
    """
    row = conn.execute(
        sa.select(deliveries.c.posts)
        .where(
            deliveries.c.draft_id == draft_id,
            deliveries.c.channel == "bluesky",
            # Not open any more; a missed one from before missed required "never tried".
            deliveries.c.state.in_(("cancelled", "missed")),
            was_attempted(),
        )
        .order_by(deliveries.c.id.desc())
        .limit(1)
    ).first()
    if row is None or not row.posts:
        return None
    return [{"rkey": p["rkey"], "uri": None, "cid": None} for p in row.posts if p.get("rkey")]


def _insert(conn: Connection, draft: Any, when: datetime, *, actor: str, now: datetime) -> Delivery:
    posts = None
    rkey = None
    if draft.channel == "bluesky":
        content = draft.content or {}
        posts = _earlier_attempted_keys(conn, draft.id) or new_post_keys(
            len(content.get("posts") or [])
        )
        rkey = posts[0]["rkey"]
    result = conn.execute(
        deliveries.insert().values(
            draft_id=draft.id,
            campaign=draft.campaign,
            channel=draft.channel,
            state="scheduled",
            scheduled_at=when,
            rkey=rkey,
            attempts=0,
            posts=posts,
            created_at=now,
            updated_at=now,
        )
    )
    delivery = get_delivery(conn, result.inserted_primary_key[0])
    audit.record(
        conn,
        actor=actor,
        action="schedule",
        object_type="delivery",
        object_id=delivery.id,
        after={**_summary(delivery), "draft_id": draft.id, "channel": draft.channel},
    )
    return delivery


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
    scheduled = sa.select(deliveries.c.draft_id).where(deliveries.c.state.in_(OPEN_DELIVERY_STATES))
    with ctx.db.connect() as conn:
        ids = conn.scalars(
            sa.select(drafts.c.id)
            .where(
                drafts.c.campaign == campaign.slug,
                drafts.c.state == "approved",
                drafts.c.channel.in_(campaign.channel_names),
                drafts.c.id.not_in(scheduled),
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
        if before.state in WAITING_STATES and before.landed_posts:
            raise InvalidState(
                f"delivery {delivery_id} has {len(before.landed_posts)} post(s) on Bluesky "
                "already; cancelling it would leave them up",
                hint=f"use `narrative schedule move {delivery_id} ...` to finish the thread, "
                "or withdraw consent to take the posts down",
            )
        res = conn.execute(
            deliveries.update()
            .where(deliveries.c.id == delivery_id, deliveries.c.state.in_(WAITING_STATES))
            .values(state="cancelled", retry_at=None, updated_at=now)
        )
        if res.rowcount != 1:
            raise InvalidState(f"delivery {delivery_id} is {before.state}; it cannot be cancelled")
        after = get_delivery(conn, delivery_id)
        audit.record(
            conn,
            actor=actor,
            action="cancel",
            object_type="delivery",
            object_id=delivery_id,
            before=_summary(before),
            after=_summary(after),
            detail=reason,
        )
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
        if before.state not in WAITING_STATES:
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
        res = conn.execute(
            deliveries.update()
            .where(deliveries.c.id == delivery_id, deliveries.c.state.in_(WAITING_STATES))
            .values(
                state="scheduled",
                scheduled_at=when,
                retry_at=None,
                last_error=None,
                attempts=0,
                updated_at=now,
            )
        )
        if res.rowcount != 1:
            raise InvalidState(f"delivery {delivery_id} changed state meanwhile; try again")
        after = get_delivery(conn, delivery_id)
        audit.record(
            conn,
            actor=actor,
            action="move",
            object_type="delivery",
            object_id=delivery_id,
            before=_summary(before),
            after=_summary(after),
        )
        return after
