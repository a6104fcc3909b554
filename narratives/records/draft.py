"""A draft's states and what an editor may change of it: rules the draft stage and review share."""

from __future__ import annotations

__all__ = ["STATES", "EDITABLE"]

STATES = ("pending_review", "approved", "rejected", "changes_requested")
#: The content keys an editor may change, per channel; the rest comes from the pipeline.
EDITABLE = {
    "bluesky": ("posts", "alt", "content_warning"),
    "rss": ("title", "summary", "content"),
}
