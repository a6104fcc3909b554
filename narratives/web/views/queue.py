"""The queue: every draft, filtered by campaign, channel, state and tag, with the counts per
state and a note of the stories that wait for a campaign."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import HTMLResponse

from narratives.core.campaigns import Campaign
from narratives.core.errors import NarrativesError, UnreadableFile
from narratives.policy import routing
from narratives.records.draft import STATES, Draft
from narratives.store.narrative_files import read_analysis
from narratives.web.fidelity import quote_edited, quote_forms
from narratives.web.jobs import OutputJob
from narratives.web.views.base import Endpoint, Site, View, campaign_map
from narratives.workflow import review

__all__ = ["QueuePage", "QueueView", "queue_page"]


@dataclass
class QueuePage:
    drafts: list[Draft]
    #: campaign, channel, state, tag: the filter's values (None when not set).
    filters: dict[str, str | None]
    campaigns: dict[str, Campaign]
    tags: list[str]
    states: tuple[str, ...]
    counts: dict[str, int]
    #: Drafts whose edit changed the narrator's quoted sentence.
    edited_quotes: set[int]
    #: How many stories wait for a campaign, and what is being made for assigned ones.
    unassigned_count: int
    making: list[OutputJob]


class QueueView(View):
    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("GET", "/", self.queue, "page")]

    def queue(self, request: Request) -> HTMLResponse:
        q = request.query_params
        filters = {k: (q.get(k) or "").strip() or None for k in ("campaign", "channel", "state")}
        filters["tag"] = (q.get("tag") or "").strip() or None
        return self.render(request, "queue.html", queue_page(self.site, filters))


def queue_page(site: Site, filters: dict[str, str | None]) -> QueuePage:
    ctx = site.ctx
    found = review.list_drafts(ctx, **filters)
    campaigns = campaign_map(ctx)
    tags = sorted({t.name for c in campaigns.values() for t in c.tags})
    counts: dict[str, int] = {}
    for d in review.list_drafts(ctx):
        counts[d.state] = counts.get(d.state, 0) + 1
    quotes: dict[str, list[str]] = {}
    edited_quotes = set()
    for d in found:
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
    return QueuePage(
        drafts=found,
        filters=filters,
        campaigns=campaigns,
        tags=tags,
        states=STATES,
        counts=counts,
        edited_quotes=edited_quotes,
        unassigned_count=waiting,
        making=site.jobs.active(),
    )
