"""After posting (issue 19): a campaign's engagement report, and the replies and quote posts a
published story received with the editor's two answers (hide a reply, detach a quote).

The report's charts are SVG files of their own, shown with `<img>`: readable without
JavaScript, and a story's title inside a chart can never run as script in the page.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from narratives.core.errors import NotFound, UsageError
from narratives.web.security import current_user
from narratives.web.views.base import Endpoint, View, draft_id, text
from narratives.workflow import engagement, review
from narratives.workflow import replies as replies_flow

__all__ = ["EngagementView"]

#: Charts of a report, by name (the part of their URL).
CHARTS = {
    "story": f"the {engagement.TOP_STORIES} most engaged stories",
    "week": "per week published",
    "tag": "per tag",
}


@dataclass
class ReportPage:
    report: Any
    charts: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class RepliesPage:
    draft: Any
    stories: list[Any]


class EngagementView(View):
    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("GET", "/campaigns/{slug}/report", self.report_page, "page"),
            Endpoint("GET", "/campaigns/{slug}/report/{chart}.svg", self.chart, "page"),
            Endpoint("GET", "/drafts/{draft_id:id}/replies", self.replies_page, "page"),
            Endpoint("POST", "/drafts/{draft_id:id}/replies/hide", self.hide, "action"),
            Endpoint("POST", "/drafts/{draft_id:id}/replies/detach", self.detach, "action"),
        ]

    def _report(self, request: Request) -> Any:
        slug = request.path_params["slug"]
        if slug not in self.campaigns():
            raise NotFound(f"no campaign {slug!r}")
        return engagement.report(self.ctx, slug)

    def report_page(self, request: Request) -> Response:
        started = time.perf_counter()
        r = self._report(request)
        charts = [(name, label) for name, label in CHARTS.items() if not r.empty]
        page = ReportPage(r, charts, time.perf_counter() - started)
        return self.render(request, "report.html", page)

    def chart(self, request: Request) -> Response:
        name = request.path_params["chart"]
        if name not in CHARTS:
            raise NotFound(f"no chart {name!r}")
        svg = engagement.charts(self._report(request)).get(name)
        if svg is None:
            raise NotFound("nothing published yet, so there is no chart")
        return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "no-store"})

    def replies_page(self, request: Request) -> Response:
        did = draft_id(request)
        draft = review.get_draft(self.ctx, did)
        stories = replies_flow.replies(self.ctx, draft_id=did)
        return self.render(request, "replies.html", RepliesPage(draft, stories))

    def _answer(self, request: Request, form: FormData, hide: bool) -> Response:
        did = draft_id(request)
        story, uri = text(form, "story"), text(form, "uri")
        if not story.startswith("at://") or not uri.startswith("at://"):
            raise UsageError("Choose a reply or quote post to answer.")
        if not any(s.uri == story for s in replies_flow.stories(self.ctx, draft_id=did)):
            raise NotFound("that post is not this draft's")
        actor = current_user(request).name
        if hide:
            done = replies_flow.hide_reply(self.ctx, story, uri, actor=actor)
            message = "Reply hidden." if done else "That reply was hidden already."
        else:
            done = replies_flow.detach_quote(self.ctx, story, uri, actor=actor)
            message = "Quote detached." if done else "That quote was detached already."
        request.session["flash"] = message
        return RedirectResponse(f"/drafts/{did}/replies", status_code=303)

    def hide(self, request: Request, form: FormData) -> Response:
        return self._answer(request, form, hide=True)

    def detach(self, request: Request, form: FormData) -> Response:
        return self._answer(request, form, hide=False)
