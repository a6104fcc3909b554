"""Revision compare: two texts of a draft side by side as a diff (GET
/drafts/{id}/compare?a=N&b=M), picked from the revisions its audit log keeps
(`audit_words.revisions`). A plain GET form picks them; no script is needed."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import HTMLResponse

from narratives.records.draft import Draft
from narratives.web.audit_words import Revision, revision_diff, revisions
from narratives.web.views.base import Endpoint, View, draft_id
from narratives.workflow import review

__all__ = ["ComparePage", "CompareView"]


@dataclass
class ComparePage:
    draft: Draft
    revisions: list[Revision]
    #: The two revisions compared (None when there is only one).
    a: Revision | None
    b: Revision | None
    #: (kind, line): kind is "del", "add" or "" for an unchanged line.
    diff: list[tuple[str, str]]


class CompareView(View):
    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("GET", "/drafts/{draft_id:id}/compare", self.page, "page")]

    def page(self, request: Request) -> HTMLResponse:
        draft = review.get_draft(self.ctx, draft_id(request))
        revs = revisions(review.history(self.ctx, draft.id))
        if len(revs) < 2:
            return self.render(request, "compare.html", ComparePage(draft, revs, None, None, []))
        picked = []
        for key, default in (("a", 1), ("b", len(revs))):
            raw = request.query_params.get(key, "").strip()
            if not raw:
                picked.append(default)
                continue
            if not raw.isdigit() or not 1 <= int(raw) <= len(revs):
                return self.error_page(
                    request,
                    400,
                    f"There is no revision “{raw[:20]}” of this draft: "
                    f"pick a number from 1 to {len(revs)}.",
                )
            picked.append(int(raw))
        a, b = revs[picked[0] - 1], revs[picked[1] - 1]
        page = ComparePage(draft, revs, a, b, revision_diff(a, b))
        return self.render(request, "compare.html", page)
