"""What an editor does on the draft page: approve, reject, request changes, edit the text,
comment, and correct a tag. Each goes through `narratives.workflow.review`, which checks the
state and writes the audit row; the forms carry the text's version, so an action applies only
to the text the editor read. A refused approval or a save that lost a race shows the draft's
page as it is now, with the reason (and the editor's unsaved text), not an error page."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from narratives.core.campaigns import BLUESKY
from narratives.core.errors import Conflict, InvalidState, UsageError
from narratives.policy import routing
from narratives.records.draft import DraftState
from narratives.stages.draft.templates import join_posts, split_posts
from narratives.web.security import current_user
from narratives.web.views.assign import note_sentence, story_title
from narratives.web.views.base import Endpoint, View, draft_id, text
from narratives.web.views.draft import draft_page
from narratives.workflow import assignments, review

__all__ = ["DraftActions"]

#: The edit form's fields, kept on the page when a save lost a race.
_UNSAVED = ("text", "alt", "content_warning", "title", "summary", "content")


class DraftActions(View):
    """The draft page's forms (CSRF checked by the app before any of these runs)."""

    def endpoints(self) -> list[Endpoint]:
        base = "/drafts/{draft_id:id}"
        return [
            Endpoint("POST", f"{base}/approve", self.approve, "action"),
            Endpoint("POST", f"{base}/reject", self.reject, "action"),
            Endpoint("POST", f"{base}/request-changes", self.request_changes, "action"),
            Endpoint("POST", f"{base}/edit", self.edit, "action"),
            Endpoint("POST", f"{base}/comment", self.comment, "action"),
            Endpoint("POST", f"{base}/tags", self.correct_tag, "action"),
        ]

    def approve(self, request: Request, form: FormData) -> Response:
        did = draft_id(request)
        # The form says which text was read: approving another is refused (409).
        seen = text(form, "version") or "missing"
        try:
            review.approve(self.ctx, did, actor=current_user(request).name, seen=seen)
        except InvalidState as exc:  # a lost race, consent, the text: say so on the draft
            return self.refused(request, did, exc)
        return self.back(request, did, "Approved. It can now be scheduled.")

    def refused(
        self, request: Request, did: int, exc: InvalidState, unsaved: dict[str, str] | None = None
    ) -> Response:
        """The draft's page as it is now, saying why the action was refused (with its error
        status), and keeping what the editor wrote that differs from it, to copy from."""
        draft = review.get_draft(self.ctx, did)
        page = draft_page(self.site, draft, viewer=current_user(request).name)
        page.refusal = str(exc)[:1].upper() + str(exc)[1:]
        page.refusal_hint = (
            "The page below shows the draft as it is now: review it, then try again."
            if isinstance(exc, Conflict)
            else exc.hint
        )
        if unsaved:
            now = {"text": join_posts(draft.posts), **draft.content}
            unsaved = {k: v for k, v in unsaved.items() if v.strip() != str(now.get(k) or "")}
        page.unsaved = unsaved or None
        return self.render(request, "draft.html", page, status=exc.http_status)

    def reject(self, request: Request, form: FormData) -> Response:
        did = draft_id(request)
        actor, reason = current_user(request).name, text(form, "reason")
        try:
            review.reject(self.ctx, did, actor=actor, reason=reason)
        except InvalidState as exc:
            return self.refused(request, did, exc)
        return self.back(request, did, "Rejected.")

    def request_changes(self, request: Request, form: FormData) -> Response:
        did = draft_id(request)
        actor, reason = current_user(request).name, text(form, "reason")
        try:
            review.request_changes(self.ctx, did, actor=actor, reason=reason)
        except InvalidState as exc:
            return self.refused(request, did, exc)
        return self.back(request, did, "Changes requested.")

    def edit(self, request: Request, form: FormData) -> Response:
        did = draft_id(request)
        draft = review.get_draft(self.ctx, did)
        if draft.channel == BLUESKY:
            posts = split_posts(text(form, "text"))
            if not posts:
                raise UsageError("The post text is empty.", hint="Write at least one post.")
            changes: dict[str, Any] = {
                "posts": posts,
                "alt": text(form, "alt"),
                "content_warning": text(form, "content_warning") or None,
            }
        else:
            changes = {k: text(form, k) for k in ("title", "summary", "content")}
        before = draft.content
        seen = text(form, "version") or "missing"
        try:
            draft = review.edit(self.ctx, did, changes, actor=current_user(request).name, seen=seen)
        except Conflict as exc:
            unsaved = {k: text(form, k) for k in _UNSAVED if text(form, k)}
            return self.refused(request, did, exc, unsaved)
        if draft.content == before:
            return self.back(request, did, "Nothing changed.")
        note = " It is back in review." if draft.state == DraftState.PENDING_REVIEW else ""
        return self.back(request, did, "Saved." + note)

    def comment(self, request: Request, form: FormData) -> Response:
        did = draft_id(request)
        review.comment(self.ctx, did, text(form, "body"), actor=current_user(request).name)
        return self.back(request, did, "Comment added.")

    def correct_tag(self, request: Request, form: FormData) -> Response:
        did = draft_id(request)
        draft = review.get_draft(self.ctx, did)
        applies = text(form, "applies")
        if applies not in ("1", "0"):
            raise UsageError("Choose whether the tag applies.")
        tag = text(form, "tag")
        actor = current_user(request).name
        nid = draft.narrative_id
        before = [r.campaign for r in routing.routes(self.ctx, nid)]
        review.correct_tag(self.ctx, nid, draft.campaign, tag, applies == "1", actor=actor)
        change = assignments.route_change(self.ctx, nid, before, actor=actor)
        message = f"Tag correction for “{tag}” saved."
        title = story_title(self.ctx, nid)
        for slug in change.gained:
            name = self.campaign_name(slug)
            self.site.jobs.submit(nid, slug, campaign_name=name, title=title, actor=actor)
            message += f" Its tags now send it to {name}: its drafts are being made."
        for slug in change.lost:
            message += f" Its tags no longer send it to {self.campaign_name(slug)}."
        message += "".join(" " + note_sentence(n) for n in change.notes)
        return self.back(request, did, message)
