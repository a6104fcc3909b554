"""Campaign assignment on the review page (issue 13): the stories that fit no campaign, with a
one-click assign per campaign, and the draft page's campaigns panel (where the story goes and
why, with assign and unassign).

`narratives.workflow.assignments` records each choice (source "web", the logged-in editor as actor)
and writes its audit row. Making the video and drafts of a newly assigned campaign takes from
seconds to minutes, so it runs on a worker thread (`OutputJobs`: one job at a time, because
renders use every core), the request returns at once and the pages say what is being made.
A refused assignment (an unknown campaign, withdrawn consent, a failed story) comes back as a
message on the page the editor came from, never as an error page.
"""

from __future__ import annotations

import logging
import queue
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from narratives.core.campaigns import Campaign
from narratives.core.errors import NarrativesError, NotFound, UsageError
from narratives.store.context import Context
from narratives.store.schema import drafts, narratives, utcnow
from narratives.web.security import current_user
from narratives.workflow import assignments

__all__ = ["AssignPages", "OutputJob", "OutputJobs", "SOURCE_LABELS"]

log = logging.getLogger(__name__)

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


# ----------------------------------------------------------------------------- jobs


@dataclass
class OutputJob:
    """Making one story's video and drafts for one campaign, after an assignment."""

    id: int
    narrative_id: str
    campaign: str
    campaign_name: str
    title: str
    actor: str
    queued_at: datetime
    #: queued | running | done | failed (done with errors is "failed": something is missing)
    state: str = "queued"
    #: The last progress line ("rendering emotional-equity/vertical: 40%").
    step: str = ""
    finished_at: datetime | None = None
    videos: int = 0
    drafts: int = 0
    new_drafts: int = 0
    errors: list[str] = field(default_factory=list)
    #: The story's drafts for the campaign once the job is over (links on the pages).
    draft_ids: list[int] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


class OutputJobs:
    """Runs `assignments.make_outputs` off the request thread, one job at a time, and keeps
    the recent jobs for the pages.

    In memory, on a daemon thread: stopping the server does not wait for a render, and a
    restart forgets the list, not the work. The assignment is already recorded, the stages
    record themselves, and a render cut short shows as interrupted and is redone by the next
    `narrative process` (or by assigning again).
    """

    #: Finished jobs remembered for the pages; running and queued ones are always kept.
    KEEP = 50

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._jobs: list[OutputJob] = []
        self._next_id = 1
        self._pending = 0
        self._queue: queue.Queue[OutputJob] = queue.Queue()
        self._worker: threading.Thread | None = None

    def submit(
        self, narrative_id: str, campaign: str, *, campaign_name: str, title: str, actor: str
    ) -> OutputJob:
        with self._lock:
            for job in self._jobs:
                # Already waiting to start: that job will make the same files.
                if (job.narrative_id, job.campaign, job.state) == (
                    narrative_id,
                    campaign,
                    "queued",
                ):
                    return replace(job)
            job = OutputJob(
                id=self._next_id,
                narrative_id=narrative_id,
                campaign=campaign,
                campaign_name=campaign_name,
                title=title,
                actor=actor,
                queued_at=utcnow(),
            )
            self._next_id += 1
            self._jobs.append(job)
            self._trim()
            self._pending += 1
            self._queue.put(job)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._work, name="narratives-outputs", daemon=True
                )
                self._worker.start()
            return replace(job)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                self._run(job)
            except Exception:  # never let one job stop the worker
                log.exception("output job %s failed", job.id)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _trim(self) -> None:
        finished = [j for j in self._jobs if not j.active]
        drop = {j.id for j in finished[: max(0, len(finished) - self.KEEP)]}
        self._jobs = [j for j in self._jobs if j.id not in drop]

    def _update(self, job: OutputJob, **values: Any) -> None:
        with self._lock:
            for k, v in values.items():
                setattr(job, k, v)

    def _run(self, job: OutputJob) -> None:
        self._update(job, state="running", step="starting")
        errors: list[str] = []
        out = None
        try:
            out = assignments.make_outputs(
                self.ctx,
                job.narrative_id,
                campaigns=[job.campaign],
                progress=lambda message: self._update(job, step=message),
            )
            errors = list(out.errors)
        except NarrativesError as exc:
            errors = [f"{exc} ({exc.hint})" if exc.hint else str(exc)]
        except Exception:  # a bug: the page says so, the log has the traceback
            log.exception("making the outputs of %s for %s failed", job.narrative_id, job.campaign)
            errors = ["an unexpected error stopped it; the server's log has the details"]
        try:
            with self.ctx.db.connect() as conn:
                ids = list(
                    conn.execute(
                        sa.select(drafts.c.id)
                        .where(
                            drafts.c.narrative_id == job.narrative_id,
                            drafts.c.campaign == job.campaign,
                        )
                        .order_by(drafts.c.id)
                    ).scalars()
                )
        except Exception:
            log.exception("listing the drafts of %s failed", job.narrative_id)
            ids = []
        self._update(
            job,
            state="failed" if errors or not ids else "done",
            step="",
            finished_at=utcnow(),
            videos=out.videos if out else 0,
            drafts=out.drafts if out else 0,
            new_drafts=out.new_drafts if out else 0,
            errors=errors
            or ([] if ids else ["no draft was made (is the campaign's template missing?)"]),
            draft_ids=ids,
        )

    def recent(self, narrative_id: str | None = None, limit: int = 20) -> list[OutputJob]:
        """Copies of the latest jobs, newest first (of one story, when given)."""
        with self._lock:
            jobs = [
                replace(j, errors=list(j.errors), draft_ids=list(j.draft_ids))
                for j in self._jobs
                if narrative_id is None or j.narrative_id == narrative_id
            ]
        return list(reversed(jobs))[:limit]

    def active(self) -> list[OutputJob]:
        return [j for j in self.recent(limit=self.KEEP * 4) if j.active]

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every submitted job is over (tests, shutdown); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)


# ----------------------------------------------------------------------------- pages


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


def story_title(ctx: Context, narrative_id: str, analysis: Mapping[str, Any] | None = None) -> str:
    """What the pages call a story: its analysed title, else its stored title or file name."""
    if analysis is None:
        analysis = assignments.read_analysis(ctx, narrative_id) or {}
    title = str(analysis.get("title") or "").strip()
    if title:
        return title
    with ctx.db.connect() as conn:
        row = conn.execute(
            sa.select(narratives.c.title, narratives.c.label).where(narratives.c.id == narrative_id)
        ).first()
    if row is None:
        return narrative_id[:12]
    return (row.title or row.label or narrative_id[:12]).strip()


class AssignPages:
    """The unassigned list and the assign/unassign actions; mixed into the review app."""

    # Provided by the app.
    ctx: Any
    jobs: OutputJobs

    def render(self, request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        raise NotImplementedError

    def _campaign_map(self) -> dict[str, Campaign]:
        raise NotImplementedError

    # -- reading ---------------------------------------------------------------------------

    def _suggestion_rows(
        self, suggestions: list[assignments.Suggestion], campaigns: dict[str, Campaign]
    ) -> list[dict[str, Any]]:
        rows = []
        for s in suggestions:
            c = campaigns.get(s.campaign)
            threshold = c.tag_threshold if c else None
            rows.append(
                {
                    "slug": s.campaign,
                    "name": s.name,
                    "top": s.top,
                    "score": s.score,
                    "threshold": threshold,
                    "tags": [{"name": n, "score": v} for n, v in s.tags[:4]],
                }
            )
        return rows

    def unassigned_stories(self) -> list[dict[str, Any]]:
        campaigns = self._campaign_map()
        rows = []
        for story in assignments.unassigned(self.ctx):
            analysis = assignments.read_analysis(self.ctx, story.id) or {}
            rows.append(
                {
                    "id": story.id,
                    "title": story.title,
                    "label": story.label,
                    "created_at": story.created_at,
                    "summary": analysis.get("summary_text") or "",
                    "quote": (analysis.get("quote") or {}).get("text", "")
                    if isinstance(analysis.get("quote"), dict)
                    else "",
                    "suggestions": self._suggestion_rows(story.suggestions, campaigns),
                }
            )
        return rows

    def queue_assign_context(self) -> dict[str, Any]:
        """For the queue page: how many stories wait for a campaign, what is being made."""
        try:
            waiting = len(assignments.unassigned(self.ctx))
        except NarrativesError:
            waiting = 0
        return {"unassigned_count": waiting, "making": self.jobs.active()}

    def campaigns_context(self, narrative_id: str, analysis: Mapping[str, Any]) -> dict[str, Any]:
        """The draft page's campaigns panel: every campaign, whether the story goes there and
        why ("assigned by kai", "suggested by tags 0.52"), and the latest jobs of the story."""
        campaigns = self._campaign_map()
        listed = list(campaigns.values())
        routes = {
            r.campaign: r
            for r in assignments.routes(self.ctx, narrative_id, analysis, campaigns=listed)
        }
        latest: dict[str, assignments.Assignment] = {}
        for a in assignments.history(self.ctx, narrative_id):
            latest[a.campaign] = a
        rows = []
        for s in self._suggestion_rows(
            assignments.suggestions(self.ctx, narrative_id, analysis, campaigns=listed), campaigns
        ):
            route = routes.get(s["slug"])
            choice = latest.get(s["slug"])
            if route is not None and route.reason == "assigned" and choice is not None:
                why = f"assigned by {choice.actor}"
                how = f"{SOURCE_LABELS.get(choice.source, choice.source)}"
            elif route is not None:
                why = f"suggested by tags {_score(route.score)}"
                how = f"best tag {route.top}" if route.top else ""
            elif choice is not None and not choice.assigned:
                why = f"unassigned by {choice.actor}"
                how = f"{SOURCE_LABELS.get(choice.source, choice.source)}"
            elif routes and any(r.reason == "assigned" for r in routes.values()):
                why = "not assigned"
                how = "it goes only to its assigned campaigns" + (
                    f" (best tag here {s['top']} {_score(s['score'])})" if s["top"] else ""
                )
            elif s["score"] is None:
                why = "no tag scores"
                how = ""
            else:
                why = f"tags {_score(s['score'])}"
                how = (
                    f"below the campaign's {_score(s['threshold'])}"
                    if s["threshold"] is not None
                    else ""
                )
            rows.append(
                {
                    **s,
                    "routed": route is not None,
                    "reason": route.reason if route else None,
                    "why": why,
                    "how": how,
                    "at": choice.at if choice is not None else None,
                }
            )
        rows.sort(key=lambda r: (not r["routed"], r["name"]))
        return {
            "story_campaigns": rows,
            "routed_by_tags": [
                campaigns[r.campaign].name if r.campaign in campaigns else r.campaign
                for r in routes.values()
                if r.reason == "tags"
            ],
            "story_jobs": _latest_per_campaign(self.jobs.recent(narrative_id)),
        }

    def unassigned_page(self, request: Request) -> HTMLResponse:
        stories = self.unassigned_stories()
        # What is being made, and what was made in the last hour (older news is in the queue).
        since = utcnow() - _SHOW_FINISHED
        jobs = [j for j in self.jobs.recent() if j.active or (j.finished_at or since) > since]
        return self.render(
            request,
            "unassigned.html",
            stories=stories,
            jobs=jobs,
            working=any(j.active for j in jobs),
        )

    # -- actions (CSRF checked by the app before these run) ------------------------------

    def _refused(self, request: Request, back: str, what: str, exc: NarrativesError) -> Response:
        message = f"{what}: {exc}"
        if exc.hint:
            message += f" ({exc.hint})"
        request.session["flash_error"] = message
        return RedirectResponse(back, status_code=303)

    def _campaign_name(self, slug: str) -> str:
        c = self._campaign_map().get(slug)
        return c.name if c else slug

    def assign_story(self, request: Request, form: FormData) -> Response:
        back = _back_to(form)
        slug = _field(form, "campaign")[:_MAX_SLUG]
        actor = current_user(request).name
        try:
            nid = _narrative_id(request)
            if not slug:
                raise UsageError("choose a campaign to assign the story to")
            before = {r.campaign for r in assignments.routes(self.ctx, nid)}
            assignments.assign(self.ctx, nid, slug, actor=actor, source="web")
            title = story_title(self.ctx, nid)
            after = {r.campaign for r in assignments.routes(self.ctx, nid)}
        except NarrativesError as exc:
            return self._refused(request, back, "Not assigned", exc)
        name = self._campaign_name(slug)
        self.jobs.submit(nid, slug, campaign_name=name, title=title, actor=actor)
        message = (
            f"“{title}” is assigned to {name}. Its video and drafts are being made; "
            "they appear in the queue when they are ready."
        )
        for dropped in sorted(before - after):
            other = self._campaign_name(dropped)
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
            before = {r.campaign for r in assignments.routes(self.ctx, nid)}
            result = assignments.unassign(self.ctx, nid, slug, actor=actor, source="web")
            title = story_title(self.ctx, nid)
            notes = assignments.settle_drafts(self.ctx, nid, slug, actor=actor, reject=True)
            after = assignments.routes(self.ctx, nid)
        except NarrativesError as exc:
            return self._refused(request, back, "Not unassigned", exc)
        name = self._campaign_name(slug)
        if result.changed:
            message = f"“{title}” is no longer for {name}."
        else:
            message = f"“{title}” was already not for {name}."
        message += "".join(" " + _note_sentence(n) for n in notes)
        gained = sorted({r.campaign for r in after} - before)
        for other in gained:
            other_name = self._campaign_name(other)
            self.jobs.submit(nid, other, campaign_name=other_name, title=title, actor=actor)
            message += f" Its tags now send it to {other_name}: its drafts are being made."
        if not after:
            message += " It now fits no campaign and is listed under Unassigned stories."
        request.session["flash"] = message
        return RedirectResponse(back, status_code=303)


def _latest_per_campaign(jobs: list[OutputJob]) -> list[OutputJob]:
    """The newest job of each campaign (a later success hides an earlier failure)."""
    seen: set[str] = set()
    out = []
    for job in jobs:  # newest first
        if job.campaign not in seen:
            seen.add(job.campaign)
            out.append(job)
    return out


def _note_sentence(note: assignments.DraftNote) -> str:
    """What unassigning did to one draft, for the review page (the CLI's notes name commands)."""
    what = f"Draft {note.draft_id} ({'Bluesky' if note.channel == 'bluesky' else 'RSS'})"
    if note.action == "rejected":
        return f"{what} was awaiting review: rejected."
    if note.state == "rejected":
        return f"{what} was already rejected."
    state = note.state.replace("_", " ")
    return f"{what} is {state}: left as it is (reject it on its page if it should not go out)."
