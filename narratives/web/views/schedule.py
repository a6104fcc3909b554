"""Scheduling on the review page: the agenda per campaign (a list, or a week or month
calendar with move and cancel on each waiting delivery), the draft page's delivery panel, and
the schedule, move and cancel actions.

Every action goes through `narratives.workflow.scheduling`, which checks the draft's state and
consent and writes the audit rows; this module only turns form fields into its arguments and
reads deliveries for display. Times are shown as wall-clock time in the campaign's zone, with
the zone's abbreviation, because that is how the campaign's slots are written: a Monday 09:00
slot reads 09:00 PST in February and 09:00 PDT in April, while its UTC instant moves by an hour.
"""

from __future__ import annotations

import calendar as _calendar
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

import sqlalchemy as sa
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from narratives.core.campaigns import Campaign
from narratives.core.clock import utcnow
from narratives.core.errors import NarrativesError, NotFound, UsageError
from narratives.records.delivery import OPEN, WAITING, Delivery, DeliveryState
from narratives.records.draft import Draft, DraftState
from narratives.store.context import Context
from narratives.store.delivery_queries import list_deliveries
from narratives.store.schema import delivery_attempts
from narratives.web.security import current_user
from narratives.web.views.base import Endpoint, View, campaign_map, draft_id
from narratives.workflow import review, scheduling

__all__ = [
    "AgendaPage",
    "CalendarDay",
    "LocalTime",
    "SchedulePanel",
    "ScheduleView",
    "local_time",
]

#: The agenda stops here; more than this is a list for the CLI (`narrative schedule list`).
_MAX_ROWS = 500
#: Where a move or cancel made from the calendar may send the editor back to.
_CALENDAR_PATH = re.compile(r"/schedule(\?[A-Za-z0-9_=&%.+-]*)?")


@dataclass(frozen=True)
class LocalTime:
    """An instant as the campaign's people read it."""

    instant: datetime
    zone: str
    day: date
    day_label: str
    time: str
    abbr: str
    #: For `<input type="datetime-local">` (no seconds, no zone).
    input_value: str

    @property
    def short_day(self) -> str:
        return f"{self.day:%a %-d %b %Y}"

    @property
    def label(self) -> str:
        return f"{self.short_day}, {self.time} {self.abbr}"


def local_time(instant: datetime, zone: tzinfo) -> LocalTime:
    local = instant.astimezone(zone)
    return LocalTime(
        instant=instant,
        zone=getattr(zone, "key", "UTC"),
        day=local.date(),
        day_label=f"{local:%A %-d %B %Y}",
        time=f"{local:%H:%M}",
        abbr=local.tzname() or "",
        input_value=f"{local:%Y-%m-%dT%H:%M}",
    )


@dataclass
class AttemptRow:
    when: LocalTime
    outcome: str
    error: str | None


@dataclass
class DeliveryRow:
    """One delivery as the agenda and the draft page show it."""

    d: Delivery
    title: str
    campaign_name: str
    when: LocalTime
    retry: LocalTime | None
    published: LocalTime | None
    #: The scheduler stopped on a permanent error (or after its last retry): no retry_at.
    stopped: bool
    #: It may still be moved or cancelled.
    waiting: bool
    attempts: list[AttemptRow] = field(default_factory=list)


@dataclass
class AgendaDay:
    day: date
    label: str
    rows: list[DeliveryRow]


@dataclass
class CalendarDay:
    """One day of the week or month calendar."""

    day: date
    rows: list[DeliveryRow]
    #: Outside the month shown (the grid's leading and trailing days).
    outside: bool
    today: bool


@dataclass
class AgendaPage:
    campaigns: dict[str, Campaign]
    selected: Campaign | None
    slug: str | None
    #: "upcoming" (from today, open deliveries) or "all".
    show: str
    days: list[AgendaDay]
    #: Rows past `_MAX_ROWS`, not shown.
    more: int
    #: Failed deliveries, and missed ones whose draft was not scheduled again.
    attention: list[DeliveryRow]
    #: "list", "week" or "month".
    view: str = "list"
    #: The calendar's weeks (one for the week view), Monday first.
    weeks: list[list[CalendarDay]] = field(default_factory=list)
    #: The calendar's title ("March 2030", "Week of 11 March 2030") and its neighbours' starts.
    period: str = ""
    prev_start: str = ""
    next_start: str = ""
    #: This view's query string without the start (the calendar's own links add it).
    query: str = ""
    #: The page itself, for the move and cancel forms to come back to.
    here: str = "/schedule"
    #: How many deliveries the calendar shows.
    calendar_rows: int = 0


@dataclass
class SchedulePanel:
    """The draft page's schedule panel: its deliveries and the schedule form."""

    deliveries: list[DeliveryRow]
    can_schedule: bool
    next_slot: LocalTime | None
    slot_problem: str | None
    #: The campaign's time zone, the form's default.
    zone: str
    zones: list[str]


class ScheduleView(View):
    """The agenda page and the scheduling actions."""

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("GET", "/schedule", self.agenda, "page"),
            Endpoint("POST", "/drafts/{draft_id:id}/schedule", self.schedule_draft, "action"),
            Endpoint("POST", "/deliveries/{delivery_id:id}/cancel", self.cancel_delivery, "action"),
            Endpoint("POST", "/deliveries/{delivery_id:id}/move", self.move_delivery, "action"),
        ]

    def agenda(self, request: Request) -> HTMLResponse:
        q = request.query_params
        slug = (q.get("campaign") or "").strip() or None
        show = "all" if q.get("show") == "all" else "upcoming"
        view = q.get("view") or "list"
        if view not in ("list", "week", "month"):
            raise UsageError(f"unknown view {view!r}", hint="list, week or month")
        start = _start_date(q.get("start"))
        data = agenda_page(self.ctx, slug, show, view=view, start=start)
        return self.render(request, "agenda.html", data)

    def _said(self, d: Delivery) -> str:
        return local_time(d.scheduled_at, _zone(self.campaigns().get(d.campaign))).label

    def schedule_draft(self, request: Request, form: FormData) -> Response:
        did = draft_id(request)
        d = scheduling.schedule(self.ctx, did, **_when_args(form), actor=current_user(request).name)
        return self.back(request, did, f"Scheduled for {self._said(d)}.")

    def cancel_delivery(self, request: Request, form: FormData) -> Response:
        delivery_id = int(request.path_params["delivery_id"])
        reason = str(form.get("reason") or "").strip() or None
        d = scheduling.cancel(
            self.ctx, delivery_id, actor=current_user(request).name, reason=reason
        )
        return self._back(request, form, d.draft_id, f"Delivery {d.id} cancelled.")

    def move_delivery(self, request: Request, form: FormData) -> Response:
        delivery_id = int(request.path_params["delivery_id"])
        d = scheduling.move(
            self.ctx, delivery_id, **_when_args(form), actor=current_user(request).name
        )
        return self._back(request, form, d.draft_id, f"Delivery {d.id} moved to {self._said(d)}.")

    def _back(self, request: Request, form: FormData, draft: int, flash: str) -> Response:
        """Back to the calendar the action came from, else to the draft's page."""
        back = form.get("back")
        if isinstance(back, str) and _CALENDAR_PATH.fullmatch(back):
            request.session["flash"] = flash
            return RedirectResponse(back, status_code=303)
        return self.back(request, draft, flash)


# ----------------------------------------------------------------------------- page data


def agenda_page(
    ctx: Context,
    slug: str | None,
    show: str,
    *,
    view: str = "list",
    start: date | None = None,
) -> AgendaPage:
    campaigns = campaign_map(ctx)
    if slug is not None and slug not in campaigns:
        raise NotFound(f"no campaign {slug!r}", hint="pick one from the list")
    with ctx.db.connect() as conn:
        found = list_deliveries(conn, campaign=slug)
    titles = {d.id: d.title for d in review.list_drafts(ctx, campaign=slug)}
    now = utcnow()
    rows = [_row(d, campaigns.get(d.campaign), titles.get(d.draft_id, "")) for d in found]

    # Missed deliveries stay on the list until their draft is scheduled again.
    rescheduled = {d.draft_id for d in found if d.state in OPEN}
    attention = [
        r
        for r in rows
        if r.d.state == DeliveryState.FAILED
        or (r.d.state == DeliveryState.MISSED and r.d.draft_id not in rescheduled)
    ]

    def today(r: DeliveryRow) -> date:
        return now.astimezone(_zone(campaigns.get(r.d.campaign))).date()

    if show == "upcoming":
        listed = [r for r in rows if r.d.state in OPEN and r.when.day >= today(r)]
    else:
        listed = rows
    listed.sort(key=lambda r: (r.when.day, r.d.scheduled_at, r.d.id))
    days: list[AgendaDay] = []
    for r in listed[:_MAX_ROWS]:
        if not days or days[-1].day != r.when.day:
            days.append(AgendaDay(day=r.when.day, label=r.when.day_label, rows=[]))
        days[-1].rows.append(r)
    page = AgendaPage(
        campaigns=campaigns,
        selected=campaigns.get(slug) if slug else None,
        slug=slug,
        show=show,
        days=days,
        more=max(0, len(listed) - _MAX_ROWS),
        attention=attention,
        view=view,
    )
    if view != "list":
        zone = _zone(page.selected)
        _fill_calendar(page, rows, today=now.astimezone(zone).date(), start=start)
    return page


#: The dates the week and month calendars may start from.
_CALENDAR_FIRST = date(1970, 1, 1)
_CALENDAR_LAST = date(2199, 12, 31)


def _start_date(text: str | None) -> date | None:
    if not text:
        return None
    try:
        start = date.fromisoformat(text.strip()[:10])
    except ValueError:
        raise UsageError(f"{text!r} is not a date", hint="write it like 2030-03-11") from None
    # The grid runs to the weeks around the start and links to its neighbours: a start at the
    # ends of the calendar (9999-12-31, 0001-01-01) would overflow `date`.
    if not _CALENDAR_FIRST <= start <= _CALENDAR_LAST:
        raise UsageError(
            f"The calendar shows {_CALENDAR_FIRST.year} to {_CALENDAR_LAST.year}; "
            f"{start.isoformat()} is outside that.",
            hint="check the year",
        )
    return start


def _fill_calendar(
    page: AgendaPage, rows: list[DeliveryRow], *, today: date, start: date | None
) -> None:
    """The week (Monday to Sunday) or month grid around `start` (default: today). Each
    delivery sits on its day in its campaign's zone; cancelled and withdrawn ones only with
    "show all"."""
    anchor = start or today
    if page.view == "week":
        first = anchor - timedelta(days=anchor.weekday())
        last = first + timedelta(days=6)
        page.period = f"Week of {first:%-d %B %Y}"
        page.prev_start = (first - timedelta(days=7)).isoformat()
        page.next_start = (first + timedelta(days=7)).isoformat()
        month = None
    else:
        month_first = anchor.replace(day=1)
        days_in = _calendar.monthrange(month_first.year, month_first.month)[1]
        month_last = month_first.replace(day=days_in)
        first = month_first - timedelta(days=month_first.weekday())
        last = month_last + timedelta(days=6 - month_last.weekday())
        page.period = f"{month_first:%B %Y}"
        page.prev_start = (month_first - timedelta(days=1)).replace(day=1).isoformat()
        page.next_start = (month_last + timedelta(days=1)).isoformat()
        month = month_first.month
    hidden = (DeliveryState.CANCELLED, DeliveryState.WITHDRAWN, DeliveryState.WITHDRAWING)
    by_day: dict[date, list[DeliveryRow]] = {}
    for r in sorted(rows, key=lambda r: (r.d.scheduled_at, r.d.id)):
        if first <= r.when.day <= last and (page.show == "all" or r.d.state not in hidden):
            by_day.setdefault(r.when.day, []).append(r)
    weeks: list[list[CalendarDay]] = []
    day = first
    while day <= last:
        if day.weekday() == 0:
            weeks.append([])
        weeks[-1].append(
            CalendarDay(
                day=day,
                rows=by_day.get(day, []),
                outside=month is not None and day.month != month,
                today=day == today,
            )
        )
        day += timedelta(days=1)
    page.weeks = weeks
    page.calendar_rows = sum(len(v) for v in by_day.values())
    kept = [("campaign", page.slug or ""), ("view", page.view)]
    if page.show == "all":
        kept.append(("show", "all"))
    page.query = "&".join(f"{k}={v}" for k, v in kept if v)
    page.here = f"/schedule?{page.query}&start={(start or first).isoformat()}"


def schedule_panel(ctx: Context, draft: Draft, campaign: Campaign | None) -> SchedulePanel:
    with ctx.db.connect() as conn:
        found = list_deliveries(conn, draft_id=draft.id)
        attempts = _attempts(conn, [d.id for d in found])
        has_open = any(d.state in OPEN for d in found)
        can_schedule = draft.state == DraftState.APPROVED and not has_open and campaign is not None
        next_slot = None
        slot_problem = None
        if can_schedule and campaign is not None:
            try:
                instant = scheduling.next_free_slot(conn, campaign, draft.channel, after=utcnow())
                next_slot = local_time(instant, campaign.slots.zone)
            except NarrativesError as exc:
                slot_problem = str(exc)
    rows = [_row(d, campaign, draft.title, attempts[d.id]) for d in reversed(found)]
    zones = sorted({c.slots.timezone for c in campaign_map(ctx).values()} | {"UTC"})
    return SchedulePanel(
        deliveries=rows,
        can_schedule=can_schedule,
        next_slot=next_slot,
        slot_problem=slot_problem,
        zone=campaign.slots.timezone if campaign else "UTC",
        zones=zones,
    )


def _zone(campaign: Campaign | None) -> tzinfo:
    return campaign.slots.zone if campaign else UTC


def _attempts(conn: sa.Connection, ids: Iterable[int]) -> dict[int, list[dict[str, Any]]]:
    """Every publishing attempt of these deliveries, oldest first (display only)."""
    ids = list(ids)
    out: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    if not ids:
        return out
    rows = conn.execute(
        sa.select(delivery_attempts)
        .where(delivery_attempts.c.delivery_id.in_(ids))
        .order_by(delivery_attempts.c.id)
    )
    for r in rows:
        out[r.delivery_id].append(dict(r._mapping))
    return out


def _row(
    d: Delivery,
    campaign: Campaign | None,
    title: str = "",
    attempts: list[dict[str, Any]] | None = None,
) -> DeliveryRow:
    zone = _zone(campaign)
    return DeliveryRow(
        d=d,
        title=title or f"Draft {d.draft_id}",
        campaign_name=campaign.name if campaign else d.campaign,
        when=local_time(d.scheduled_at, zone),
        retry=local_time(d.retry_at, zone) if d.retry_at else None,
        published=local_time(d.published_at, zone) if d.published_at else None,
        # The scheduler stops on a permanent error (or after its last retry): no retry_at.
        stopped=d.state == DeliveryState.FAILED and d.retry_at is None,
        waiting=d.state in WAITING,
        attempts=[
            AttemptRow(when=local_time(a["at"], zone), outcome=a["outcome"], error=a["error"])
            for a in (attempts or [])
        ],
    )


def _when_args(form: FormData) -> dict[str, Any]:
    """`scheduling.schedule`/`move` keyword arguments from a form: a time or the next slot."""
    mode = form.get("mode")
    if mode == "next":
        return {"next_slot": True}
    if mode == "at":
        when = str(form.get("when") or "").strip()
        if not when:
            raise UsageError(
                "Pick a date and time, or use the next free slot.",
                hint="The time is read in the time zone next to it.",
            )
        try:
            # `datetime-local` sends 2030-03-11T09:00; check it here, because an impossible
            # date (month 13) would otherwise reach the scheduler as a bare ValueError.
            datetime.fromisoformat(when)
        except ValueError:
            raise UsageError(
                f"{when!r} is not a date and time.", hint="Write it like 2030-03-11 09:00."
            ) from None
        tz = str(form.get("tz") or "").strip()
        if len(tz) > 64:
            raise UsageError("That time zone name is too long.", hint="e.g. Europe/Lisbon")
        return {"at": when, "tz": tz or None}
    raise UsageError("Choose a time or the next free slot.")
