"""A draft and its comments as the review reads them, its states and what an editor may change
of it: rules the draft stage and review share.

States (docs/architecture.md, "Records"): a draft is made `pending_review`, and review moves it
to `approved | rejected | changes_requested`. They are named once here, with the groups the
rules ask about; the database column stays a plain string (a StrEnum compares equal to it).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from narratives.core.campaigns import BLUESKY, RSS

__all__ = [
    "DraftState",
    "STATES",
    "REJECTABLE",
    "CHANGES_REQUESTABLE",
    "BACK_TO_REVIEW",
    "EDITABLE",
    "Draft",
    "Comment",
]


class DraftState(StrEnum):
    PENDING_REVIEW = "pending_review"
    #: Only `approve` leads here, from `pending_review`; only an approved draft is scheduled.
    APPROVED = "approved"
    REJECTED = "rejected"
    CHANGES_REQUESTED = "changes_requested"


S = DraftState

#: The state names as plain strings, in order, for choices a user types (CLI, the queue filter).
STATES = tuple(s.value for s in DraftState)
#: States a draft may be rejected from (withdrawing an approval included).
REJECTABLE = (S.PENDING_REVIEW, S.CHANGES_REQUESTED, S.APPROVED)
#: States from which an editor may ask for changes.
CHANGES_REQUESTABLE = (S.PENDING_REVIEW, S.APPROVED)
#: States a regenerated text sends back to review: what was decided on is no longer what would
#: go out (a rejected draft stays rejected).
BACK_TO_REVIEW = (S.APPROVED, S.CHANGES_REQUESTED)
#: The content keys an editor may change, per channel; the rest comes from the pipeline.
EDITABLE = {
    BLUESKY: ("posts", "alt", "content_warning", "gates"),
    RSS: ("title", "summary", "content"),
}


@dataclass
class Draft:
    id: int
    narrative_id: str
    campaign: str
    channel: str
    state: str
    template: str
    template_hash: str
    generated: dict[str, Any]
    content: dict[str, Any]
    edited: bool
    data: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    #: The narrative's title (analysis) or its file name.
    title: str = ""
    #: The row's version: every write names the one it read and raises it (compare-and-swap).
    revision: int = 0
    #: The narrator withdrew consent: whatever its state, the draft never goes out.
    withdrawn: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    @property
    def posts(self) -> list[str]:
        return [p.get("text", "") for p in self.content.get("posts") or []]

    @property
    def version(self) -> str:
        """A digest of the text: forms carry it, so an approval or an edit applies only to
        the text the editor saw (not one someone changed meanwhile)."""
        data = json.dumps(self.content, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(data.encode("utf-8")).hexdigest()[:16]


@dataclass
class Comment:
    id: int
    draft_id: int
    author: str
    body: str
    created_at: datetime
