"""The queue: every draft, filtered by campaign, channel, state and tag and searched by title,
text or id, sorted and paged, with the counts per state of what the filters match, bulk
approve and reject (each draft checked as if approved on its own page), and a note of the
stories that wait for a campaign."""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse

from narratives.core.campaigns import Campaign
from narratives.core.errors import NarrativesError, UnreadableFile, UsageError
from narratives.policy import routing
from narratives.records.draft import STATES, Draft
from narratives.store.narrative_files import read_analysis
from narratives.web.fidelity import quote_edited, quote_forms
from narratives.web.jobs import OutputJob
from narratives.web.security import current_user
from narratives.web.views.base import Endpoint, Site, View, campaign_map, text
from narratives.workflow import review

__all__ = ["BulkResult", "QueuePage", "QueueView", "queue_page", "SORTS", "PAGE_SIZE"]

#: The queue's orders: key -> (label, how drafts are sorted).
SORTS: dict[str, str] = {
    "updated": "Recently updated",
    "oldest": "Waiting longest",
    "title": "Title",
    "campaign": "Campaign",
    "state": "State",
}
PAGE_SIZE = 25
_FILTERS = ("campaign", "channel", "state", "tag")
#: The most drafts one bulk action may touch (each is its own transaction).
_BULK_MAX = 200


@dataclass
class BulkResult:
    """One draft of a bulk action: what happened to it, in words."""

    draft_id: int
    title: str
    ok: bool
    message: str


@dataclass
class QueuePage:
    drafts: list[Draft]
    #: campaign, channel, state, tag, q: the filter's values (None when not set).
    filters: dict[str, str | None]
    campaigns: dict[str, Campaign]
    tags: list[str]
    states: tuple[str, ...]
    #: Drafts per state among those the other filters (and the search) match.
    counts: dict[str, int]
    #: How many drafts match every filter (all pages).
    total: int
    sort: str
    sorts: dict[str, str]
    page: int
    pages: int
    #: The query string of this view without the page (for the pager's links), and
    #: without the state too (for the counts' links).
    query: str
    query_without_state: str
    #: Drafts whose edit changed the narrator's quoted sentence.
    edited_quotes: set[int]
    #: How many stories wait for a campaign, and what is being made for assigned ones.
    unassigned_count: int
    making: list[OutputJob]
    #: What a bulk action just did to each draft.
    bulk: list[BulkResult]


class QueueView(View):
    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("GET", "/", self.queue, "page"),
            Endpoint("POST", "/bulk", self.bulk, "action"),
        ]

    def queue(self, request: Request) -> HTMLResponse:
        return self._page(request, request.query_params)

    def _page(self, request: Request, q, bulk: list[BulkResult] | None = None) -> HTMLResponse:
        filters: dict[str, str | None] = {
            k: (q.get(k) or "").strip() or None for k in (*_FILTERS, "q")
        }
        sort = q.get("sort") or "updated"
        if sort not in SORTS:
            raise UsageError(f"unknown sort {sort!r}", hint=f"one of: {', '.join(SORTS)}")
        try:
            page = max(1, int(q.get("page") or 1))
        except ValueError:
            page = 1
        data = queue_page(self.site, filters, sort=sort, page=page)
        data.bulk = bulk or []
        return self.render(request, "queue.html", data)

    def bulk(self, request: Request, form: FormData) -> HTMLResponse:
        """Approve or reject the ticked drafts, one at a time through the review rules (an
        approval only of the text the queue showed); the queue comes back with each draft's
        outcome (not through the session: a long list would not fit in its cookie)."""
        action = form.get("action")
        if action not in ("approve", "reject"):
            raise UsageError("choose Approve or Reject for the ticked drafts")
        ids = []
        for value in form.getlist("ids"):
            if isinstance(value, str) and value.isdigit() and len(value) <= 18:
                ids.append(int(value))
        ids = list(dict.fromkeys(ids))
        # Each draft is its own transaction: past the limit, the rest wait for another go.
        left = len(ids) - _BULK_MAX
        ids = ids[:_BULK_MAX]
        actor = current_user(request).name
        reason = text(form, "reason").strip() or None
        results: list[BulkResult] = []
        for did in ids:
            # The version of the text the queue showed; none sent is a text nobody saw, so
            # "missing" (never a version) is refused like a changed text, as on the draft page.
            seen = text(form, f"version-{did}").strip() or "missing"
            try:
                if action == "approve":
                    draft = review.approve(self.ctx, did, actor=actor, seen=seen)
                    message = "approved"
                else:
                    draft = review.reject(self.ctx, did, actor=actor, reason=reason)
                    message = "rejected"
                results.append(BulkResult(did, draft.title, True, message))
            except NarrativesError as exc:
                results.append(BulkResult(did, _title(self.site, did), False, str(exc)))
        done = sum(1 for r in results if r.ok)
        verb = "Approved" if action == "approve" else "Rejected"
        if not ids:
            request.session["flash_error"] = "No draft was ticked."
        elif done == len(ids):
            request.session["flash"] = f"{verb} {done} draft{'s' if done != 1 else ''}."
        else:
            request.session["flash_error"] = (
                f"{verb} {done} of {len(ids)} drafts; the others were left as they were "
                "(see why below)."
            )
        if left > 0:
            request.session["flash_error"] = (
                request.session.get("flash_error", "")
                + f" {left} more ticked draft{'s were' if left != 1 else ' was'} not processed: "
                f"at most {_BULK_MAX} are done at a time. Tick {'them' if left != 1 else 'it'} "
                "again."
            ).strip()
        back = form.get("back")
        query = parse_qs(back if isinstance(back, str) else "", max_num_fields=20)
        return self._page(request, {k: v[0] for k, v in query.items()}, results)


def _title(site: Site, draft_id: int) -> str:
    try:
        return review.get_draft(site.ctx, draft_id).title
    except NarrativesError:
        return ""


def _haystack(d: Draft) -> str:
    content = d.content if isinstance(d.content, dict) else {}
    parts = [d.title, str(d.id), d.narrative_id, *d.posts]
    parts += [str(content.get(k) or "") for k in ("title", "summary", "content")]
    return "\n".join(parts).casefold()


def _matches(d: Draft, words: list[str]) -> bool:
    """Every word of the search is in the title, the text, the draft id or the story id
    (a story id matches by its start: the prefix the pages show)."""
    hay = _haystack(d)
    for w in words:
        if w.startswith("#") and w[1:].isdigit():
            if str(d.id) != w[1:]:
                return False
        elif not (w in hay or d.narrative_id.startswith(w)):
            return False
    return True


def _sorted(found: list[Draft], sort: str) -> list[Draft]:
    if sort == "updated":
        return sorted(found, key=lambda d: (d.updated_at, d.id), reverse=True)
    if sort == "oldest":
        return sorted(found, key=lambda d: (d.updated_at, d.id))
    if sort == "title":
        return sorted(found, key=lambda d: ((d.title or "").casefold(), d.id))
    if sort == "campaign":
        return sorted(found, key=lambda d: (d.campaign, d.channel, d.id))
    order = {s: i for i, s in enumerate(STATES)}
    return sorted(found, key=lambda d: (order.get(d.state, 99), d.updated_at, d.id))


def queue_page(
    site: Site,
    filters: dict[str, str | None],
    *,
    sort: str = "updated",
    page: int = 1,
    per_page: int = PAGE_SIZE,
) -> QueuePage:
    ctx = site.ctx
    filters = {k: filters.get(k) for k in (*_FILTERS, "q")}
    state = filters["state"]
    if state and state not in STATES:
        raise UsageError(f"unknown state {state!r}", hint=f"one of: {', '.join(STATES)}")
    # One read; the counts follow every filter but the state (they say how many per state).
    others = {k: filters[k] for k in ("campaign", "channel", "tag")}
    matching = review.list_drafts(ctx, **others)
    words = (filters["q"] or "").casefold().split()
    if words:
        matching = [d for d in matching if _matches(d, words)]
    counts: dict[str, int] = {}
    for d in matching:
        counts[d.state] = counts.get(d.state, 0) + 1
    found = _sorted([d for d in matching if not state or d.state == state], sort)
    pages = max(1, math.ceil(len(found) / per_page))
    page = min(page, pages)
    shown = found[(page - 1) * per_page : page * per_page]

    campaigns = campaign_map(ctx)
    tags = sorted({t.name for c in campaigns.values() for t in c.tags})
    quotes: dict[str, list[str]] = {}
    edited_quotes = set()
    for d in shown:
        if d.narrative_id not in quotes:
            try:
                analysis = read_analysis(ctx.workspace, d.narrative_id)
            except UnreadableFile:  # its draft page names the damaged file; the queue lists
                analysis = None
            quotes[d.narrative_id] = quote_forms(ctx, d.narrative_id, analysis)
        if quote_edited(d, quotes[d.narrative_id]):
            edited_quotes.add(d.id)
    try:
        waiting = len(routing.unassigned(ctx))
    except NarrativesError:
        waiting = 0
    kept = [(k, v) for k, v in filters.items() if v]
    order = [("sort", sort)] if sort != "updated" else []
    query = urlencode(kept + order)
    return QueuePage(
        drafts=shown,
        filters=filters,
        campaigns=campaigns,
        tags=tags,
        states=STATES,
        counts=counts,
        total=len(found),
        sort=sort,
        sorts=SORTS,
        page=page,
        pages=pages,
        query=query,
        query_without_state=urlencode([(k, v) for k, v in kept if k != "state"] + order),
        edited_quotes=edited_quotes,
        unassigned_count=waiting,
        making=site.jobs.active(),
        bulk=[],
    )
