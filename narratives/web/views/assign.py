"""Campaign assignment (issue 13): the stories that fit no campaign, with a one-click assign
per campaign, the draft page's campaigns panel (where the story goes and why, with assign and
unassign), and the two actions.

`narratives.workflow.assignments` records each choice (source "web", the logged-in editor as
actor) and writes its audit row. Making the video and drafts of a newly assigned campaign runs
on `narratives.web.jobs.OutputJobs`, so the request returns at once and the pages say what is
being made. A refused assignment (an unknown campaign, withdrawn consent, a failed story) comes
back as a message on the page the editor came from, never as an error page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from narratives.core.campaigns import CHANNELS, Campaign
from narratives.core.clock import utcnow
from narratives.core.errors import NarrativesError, NotFound, UsageError
from narratives.policy import campaign_assignments, routing
from narratives.records.analysis import Analysis
from narratives.records.draft import DraftState
from narratives.store.context import Context
from narratives.store.narrative_files import read_analysis
from narratives.store.schema import narratives
from narratives.web.jobs import OutputJob, OutputJobs
from narratives.web.security import current_user
from narratives.web.views.base import Endpoint, View, campaign_map
from narratives.workflow import assignments

__all__ = [
    "AssignView",
    "CampaignsPanel",
    "SOURCE_LABELS",
    "UnassignedPage",
    "campaigns_panel",
    "note_sentence",
    "story_title",
]

_HEX_ID = re.compile(r"^[0-9a-f]{64}$")
#: Where an assign or unassign form may send the editor back to (never a URL from outside).
_BACK = re.compile(r"^/(?:unassigned|drafts/[0-9]{1,18})?(?:#[a-z][a-z0-9-]{0,40})?$")
_MAX_SLUG = 100
#: Finished jobs stay on the unassigned page this long.
_SHOW_FINISHED = timedelta(hours=1)

SOURCE_LABELS = {
    "intake": "at intake",
    "sidecar": "in the recording's sidecar file",
    "cli": "with `narrative assign`",
    "web": "on the review page",
}


@dataclass
class TagScore:
    name: str
    score: float | None


@dataclass
class SuggestionRow:
    """How well a story fits one campaign: its best tag and score against the threshold."""

    slug: str
    name: str
    top: str | None
    score: float | None
    threshold: float | None
    tags: list[TagScore]


@dataclass
class StoryRow:
    id: str
    title: str | None
    label: str | None
    created_at: datetime
    summary: str
    quote: str
    suggestions: list[SuggestionRow]
    #: Why the story's analysis cannot be read, when it cannot.
    problem: str | None = None


@dataclass
class UnassignedPage:
    stories: list[StoryRow]
    #: What is being made, and what was made in the last hour.
    jobs: list[OutputJob]
    #: The page reloads itself while a job is active.
    working: bool
    #: Tagging defaults still an earlier version's (`narrative campaigns update` takes the
    #: current ones): stories may sit here that this version's defaults would route.
    stale: list[str]


@dataclass
class CampaignRow:
    """One campaign on the draft page: whether the story goes there, and why."""

    slug: str
    name: str
    routed: bool
    #: "assigned" or "tags" when routed.
    reason: str | None
    why: str
    how: str
    at: datetime | None


@dataclass
class CampaignsPanel:
    rows: list[CampaignRow]
    #: Names of the campaigns the story goes to by its tags alone.
    routed_by_tags: list[str]
    #: The newest job of each campaign for this story.
    jobs: list[OutputJob]


class AssignView(View):
    """The unassigned list and the assign/unassign actions."""

    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("GET", "/unassigned", self.unassigned_page, "page"),
            Endpoint("POST", "/stories/{narrative_id}/assign", self.assign_story, "action"),
            Endpoint("POST", "/stories/{narrative_id}/unassign", self.unassign_story, "action"),
        ]

    def unassigned_page(self, request: Request) -> HTMLResponse:
        return self.render(request, "unassigned.html", unassigned_page(self.ctx, self.site.jobs))

    # -- actions (CSRF checked by the app before these run) ------------------------------

    def _refused(self, request: Request, back: str, what: str, exc: NarrativesError) -> Response:
        message = f"{what}: {exc}"
        if exc.hint:
            message += f" ({exc.hint})"
        request.session["flash_error"] = message
        return RedirectResponse(back, status_code=303)

    def assign_story(self, request: Request, form: FormData) -> Response:
        back = _back_to(form)
        slug = _field(form, "campaign")[:_MAX_SLUG]
        actor = current_user(request).name
        try:
            nid = _narrative_id(request)
            if not slug:
                raise UsageError("choose a campaign to assign the story to")
            before = {r.campaign for r in routing.routes(self.ctx, nid)}
            campaign_assignments.assign(self.ctx, nid, slug, actor=actor, source="web")
            title = story_title(self.ctx, nid)
            after = {r.campaign for r in routing.routes(self.ctx, nid)}
        except NarrativesError as exc:
            return self._refused(request, back, "Not assigned", exc)
        name = self.campaign_name(slug)
        self.site.jobs.submit(nid, slug, campaign_name=name, title=title, actor=actor)
        message = (
            f"“{title}” is assigned to {name}. Its video and drafts are being made; "
            "they appear in the queue when they are ready."
        )
        for dropped in sorted(before - after):
            other = self.campaign_name(dropped)
            # Its tags sent it there; now its assigned campaigns decide alone.
            message += (
                f" It no longer goes to {other} by its tags (an assigned story goes only to its "
                f"assigned campaigns); its {other} drafts are left as they are. Assign {other} "
                "too to keep it."
            )
        request.session["flash"] = message
        return RedirectResponse(back, status_code=303)

    def unassign_story(self, request: Request, form: FormData) -> Response:
        """Take the story out of a campaign, as `narrative unassign` does: its drafts there
        that await review are rejected, drafts an editor acted on are left (and listed), and
        if its tags now route it to other campaigns, their video and drafts are made."""
        back = _back_to(form)
        slug = _field(form, "campaign")[:_MAX_SLUG]
        actor = current_user(request).name
        try:
            nid = _narrative_id(request)
            if not slug:
                raise UsageError("choose the campaign to take the story out of")
            before = {r.campaign for r in routing.routes(self.ctx, nid)}
            result = campaign_assignments.unassign(self.ctx, nid, slug, actor=actor, source="web")
            title = story_title(self.ctx, nid)
            notes = assignments.settle_drafts(self.ctx, nid, slug, actor=actor, reject=True)
            after = routing.routes(self.ctx, nid)
        except NarrativesError as exc:
            return self._refused(request, back, "Not unassigned", exc)
        name = self.campaign_name(slug)
        if result.changed:
            message = f"“{title}” is no longer for {name}."
        else:
            message = f"“{title}” was already not for {name}."
        message += "".join(" " + note_sentence(n) for n in notes)
        gained = sorted({r.campaign for r in after} - before)
        for other in gained:
            other_name = self.campaign_name(other)
            self.site.jobs.submit(nid, other, campaign_name=other_name, title=title, actor=actor)
            message += f" Its tags now send it to {other_name}: its drafts are being made."
        if not after:
            message += " It now fits no campaign and is listed under Unassigned stories."
        request.session["flash"] = message
        return RedirectResponse(back, status_code=303)


# ----------------------------------------------------------------------------- page data


def unassigned_page(ctx: Context, jobs: OutputJobs) -> UnassignedPage:
    campaigns = campaign_map(ctx)
    stories = []
    for story in routing.unassigned(ctx):
        analysis = None if story.problem else read_analysis(ctx.workspace, story.id)
        stories.append(
            StoryRow(
                id=story.id,
                title=story.title,
                label=story.label,
                created_at=story.created_at,
                summary=analysis.summary_text if analysis else "",
                quote=analysis.quote.text if analysis and analysis.quote else "",
                suggestions=_suggestion_rows(story.suggestions, campaigns),
                problem=story.problem,
            )
        )
    # What is being made, and what was made in the last hour (older news is in the queue).
    since = utcnow() - _SHOW_FINISHED
    shown = [j for j in jobs.recent() if j.active or (j.finished_at or since) > since]
    return UnassignedPage(
        stories=stories, jobs=shown, working=any(j.active for j in shown), stale=_stale(ctx)
    )


def _stale(ctx: Context) -> list[str]:
    """What `campaigns check` would note about earlier versions' defaults (a note: a campaign
    or examples file that does not load is reported where it is used, not here)."""
    from narratives.core.campaigns import load_campaigns
    from narratives.workflow.upgrade import stale_defaults

    try:
        return stale_defaults(ctx.workspace, load_campaigns(ctx.workspace))
    except (NarrativesError, OSError, ValueError):
        return []


def campaigns_panel(
    ctx: Context, jobs: OutputJobs, narrative_id: str, analysis: Analysis | None
) -> CampaignsPanel:
    """The draft page's campaigns panel: every campaign, whether the story goes there and
    why ("assigned by kai", "suggested by tags 0.52"), and the latest jobs of the story."""
    campaigns = campaign_map(ctx)
    listed = list(campaigns.values())
    routes = {r.campaign: r for r in routing.routes(ctx, narrative_id, analysis, campaigns=listed)}
    latest: dict[str, campaign_assignments.Assignment] = {}
    for a in campaign_assignments.history(ctx, narrative_id):
        latest[a.campaign] = a
    any_assigned = any(r.reason == "assigned" for r in routes.values())
    rows = []
    for s in _suggestion_rows(
        routing.suggestions(ctx, narrative_id, analysis, campaigns=listed), campaigns
    ):
        route = routes.get(s.slug)
        choice = latest.get(s.slug)
        why, how = _why(s, route, choice, any_assigned)
        rows.append(
            CampaignRow(
                slug=s.slug,
                name=s.name,
                routed=route is not None,
                reason=route.reason if route else None,
                why=why,
                how=how,
                at=choice.at if choice is not None else None,
            )
        )
    rows.sort(key=lambda r: (not r.routed, r.name))
    return CampaignsPanel(
        rows=rows,
        routed_by_tags=[
            campaigns[r.campaign].name if r.campaign in campaigns else r.campaign
            for r in routes.values()
            if r.reason == "tags"
        ],
        jobs=_latest_per_campaign(jobs.recent(narrative_id)),
    )


def _why(s: SuggestionRow, route, choice, any_assigned: bool) -> tuple[str, str]:
    """Why the story goes, or does not go, to one campaign, and a detail."""
    if route is not None and route.reason == "assigned" and choice is not None:
        return f"assigned by {choice.actor}", f"{SOURCE_LABELS.get(choice.source, choice.source)}"
    if route is not None:
        return f"suggested by tags {_score(route.score)}", (
            f"best tag {route.top}" if route.top else ""
        )
    if choice is not None and not choice.assigned:
        return f"unassigned by {choice.actor}", SOURCE_LABELS.get(choice.source, choice.source)
    if any_assigned:
        return "not assigned", "it goes only to its assigned campaigns" + (
            f" (best tag here {s.top} {_score(s.score)})" if s.top else ""
        )
    if s.score is None:
        return "no tag scores", ""
    return f"tags {_score(s.score)}", (
        f"below the campaign's {_score(s.threshold)}" if s.threshold is not None else ""
    )


def _suggestion_rows(
    suggestions: list[routing.Suggestion], campaigns: dict[str, Campaign]
) -> list[SuggestionRow]:
    rows = []
    for s in suggestions:
        c = campaigns.get(s.campaign)
        rows.append(
            SuggestionRow(
                slug=s.campaign,
                name=s.name,
                top=s.top,
                score=s.score,
                threshold=c.tag_threshold if c else None,
                tags=[TagScore(n, v) for n, v in s.tags[:4]],
            )
        )
    return rows


def _latest_per_campaign(jobs: list[OutputJob]) -> list[OutputJob]:
    """The newest job of each campaign (a later success hides an earlier failure)."""
    seen: set[str] = set()
    out = []
    for job in jobs:  # newest first
        if job.campaign not in seen:
            seen.add(job.campaign)
            out.append(job)
    return out


def story_title(ctx: Context, narrative_id: str, analysis: Analysis | None = None) -> str:
    """What the pages call a story: its analysed title, else its stored title or file name."""
    if analysis is None:
        analysis = read_analysis(ctx.workspace, narrative_id)
    title = (analysis.title if analysis else "").strip()
    if title:
        return title
    with ctx.db.connect() as conn:
        row = conn.execute(
            sa.select(narratives.c.title, narratives.c.label).where(narratives.c.id == narrative_id)
        ).first()
    if row is None:
        return narrative_id[:12]
    return (row.title or row.label or narrative_id[:12]).strip()


def note_sentence(note: assignments.DraftNote) -> str:
    """What unassigning did to one draft, for the review page (the CLI's notes name commands)."""
    what = f"Draft {note.draft_id} ({CHANNELS[note.channel].label})"
    if note.action == "rejected":
        return f"{what} was awaiting review: rejected."
    if note.state == DraftState.REJECTED:
        return f"{what} was already rejected."
    state = note.state.replace("_", " ")
    return f"{what} is {state}: left as it is (reject it on its page if it should not go out)."


# ----------------------------------------------------------------------------- form fields


def _narrative_id(request: Request) -> str:
    nid = str(request.path_params["narrative_id"])
    if not _HEX_ID.match(nid):
        raise NotFound("There is no story with that id.")
    return nid


def _field(form: FormData, key: str) -> str:
    value = form.get(key)
    return value.strip() if isinstance(value, str) else ""


def _back_to(form: FormData, default: str = "/unassigned") -> str:
    value = _field(form, "next")
    return value if _BACK.match(value) else default


def _score(value: float | None) -> str:
    return f"{value:.2f}" if isinstance(value, int | float) else "—"
