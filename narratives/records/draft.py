"""A draft and its comments as the review reads them, its states and what an editor may change
of it: rules the draft stage and review share."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["STATES", "EDITABLE", "Draft", "Comment"]

STATES = ("pending_review", "approved", "rejected", "changes_requested")
#: The content keys an editor may change, per channel; the rest comes from the pipeline.
EDITABLE = {
    "bluesky": ("posts", "alt", "content_warning"),
    "rss": ("title", "summary", "content"),
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
