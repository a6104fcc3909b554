"""The draft page's reply and quote controls (issue 19): a Bluesky draft may override its
campaign's threadgate and postgate settings. The choice is part of the draft's content, so it
goes through `review.edit` (audited, version-checked) and, on an approved draft, sends it back
to review: who may answer a narrator is an editor's decision like the text."""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from narratives.core.campaigns import BLUESKY, BlueskyGates
from narratives.core.errors import UsageError
from narratives.records.draft import DraftState
from narratives.web.security import current_user
from narratives.web.views.base import Endpoint, View, draft_id, text
from narratives.workflow import review

__all__ = ["GatesView", "REPLY_CHOICES"]

#: The select's options (the same in `_gates.html`): value -> (label, reply rules); "" keeps
#: the campaign's setting.
REPLY_CHOICES: dict[str, tuple[str, list[str]]] = {
    "everyone": ("Everyone", ["everyone"]),
    "followers": ("Followers", ["followers"]),
    "following": ("People the account follows", ["following"]),
    "mentioned": ("People mentioned", ["mentioned"]),
    "followers-mentioned": ("Followers and people mentioned", ["followers", "mentioned"]),
    "nobody": ("Nobody", ["nobody"]),
}


class GatesView(View):
    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("POST", "/drafts/{draft_id:id}/gates", self.set_gates, "action")]

    def set_gates(self, request: Request, form: FormData) -> Response:
        did = draft_id(request)
        draft = review.get_draft(self.ctx, did)
        if draft.channel != BLUESKY:
            raise UsageError("Only Bluesky drafts have reply and quote settings.")
        replies, quotes = text(form, "replies"), text(form, "quotes")
        if replies and replies not in REPLY_CHOICES:
            raise UsageError(f"Unknown reply setting {replies!r}.")
        if quotes not in ("", "on", "off"):
            raise UsageError(f"Unknown quote setting {quotes!r}.")
        gates: dict[str, Any] | None = None
        if replies or quotes:
            # One half chosen: the other half stays the campaign's.
            campaign = self.campaigns().get(draft.campaign)
            cfg = campaign.channels.bluesky if campaign else None
            base = cfg.gates if cfg else BlueskyGates()
            gates = {
                "replies": REPLY_CHOICES[replies][1] if replies else list(base.replies),
                "lists": [] if replies else list(base.lists),
                "quotes": (quotes == "on") if quotes else base.quotes,
            }
        before = draft.content.get("gates")
        seen = text(form, "version") or "missing"
        after = review.edit(
            self.ctx, did, {"gates": gates}, actor=current_user(request).name, seen=seen
        )
        if after.content.get("gates") == before:
            return self.back(request, did, "Reply and quote settings unchanged.")
        note = " It is back in review." if after.state == DraftState.PENDING_REVIEW else ""
        return self.back(request, did, "Reply and quote settings saved." + note)
