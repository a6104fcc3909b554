"""Saving drafts: a new draft is inserted pending review; a changed one is regenerated, each
with its audit row, in one transaction per draft.

Regenerating never overwrites an editor: `generated` always holds the template's newest text,
`content` follows it only while the draft has not been edited. A changed text puts an approved
draft back into review, because what was approved is no longer what would go out. The writes
and their audit rows are `narratives.store.drafts`'.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from narratives.core.errors import Conflict
from narratives.policy.anonymise import redact_draft
from narratives.records.draft import EDITABLE, DraftState
from narratives.store import drafts as draft_rows
from narratives.store.context import Context
from narratives.store.schema import drafts

__all__ = ["ACTOR", "DraftTarget", "save_draft"]

#: The audit log's actor for changes the pipeline makes on its own.
ACTOR = "narratives"


@dataclass
class DraftTarget:
    """What the stage would write for one campaign and channel."""

    campaign: str
    channel: str
    template: str
    template_hash: str
    content: dict[str, Any]
    data: dict[str, Any]
    #: What must stay hidden (anonymous narrator): applied to an editor's text too.
    hidden: tuple[Any, ...] = ()


def _keep_editor_text(current: dict[str, Any], target: DraftTarget) -> dict[str, Any]:
    """An edited draft keeps the editor's text, but what the pipeline owns (content labels,
    video, captions, languages...) follows the new generation, and names now hidden are
    hidden in the editor's text too: an edit must not freeze a missing label or a name."""
    editable = EDITABLE.get(target.channel, ())
    merged = {k: v for k, v in target.content.items() if k not in editable}
    merged.update({k: current[k] for k in editable if k in current})
    return redact_draft(merged, target.hidden) if target.hidden else merged


def _insert(conn: sa.Connection, narrative_id: str, target: DraftTarget) -> int:
    """A new draft, pending review, with its `draft.create` audit row."""
    return draft_rows.insert(
        conn,
        narrative_id,
        campaign=target.campaign,
        channel=target.channel,
        template=target.template,
        template_hash=target.template_hash,
        content=target.content,
        data=target.data,
        actor=ACTOR,
    )


def _regenerate(conn: sa.Connection, row: Any, target: DraftTarget) -> str:
    """Update a draft to the new generation, with its `draft.regenerate` audit row; returns
    the draft's state after."""
    detail = "regenerated; the editor's text is kept" if row.edited else "regenerated"
    content = target.content if not row.edited else _keep_editor_text(row.content, target)
    return draft_rows.regenerate(
        conn,
        row,
        template=target.template,
        template_hash=target.template_hash,
        generated=target.content,
        data=target.data,
        content=content,
        actor=ACTOR,
        detail=detail,
    )


def save_draft(ctx: Context, narrative_id: str, target: DraftTarget) -> tuple[int, str, str]:
    """Insert or update one draft (and its audit row) in one transaction; (its id, created |
    updated | unchanged, its state after). An editor saving at the same moment wins the
    row's compare-and-swap; the draft is then read again, so their text is kept."""
    for attempt in range(3):
        try:
            return _save_once(ctx, narrative_id, target)
        except Conflict:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _save_once(ctx: Context, narrative_id: str, target: DraftTarget) -> tuple[int, str, str]:
    with ctx.db.begin() as conn:
        row = conn.execute(
            sa.select(drafts).where(
                drafts.c.narrative_id == narrative_id,
                drafts.c.campaign == target.campaign,
                drafts.c.channel == target.channel,
            )
        ).first()
        if row is None:
            return _insert(conn, narrative_id, target), "created", DraftState.PENDING_REVIEW
        same = (
            row.generated == target.content
            and row.template_hash == target.template_hash
            and row.template == target.template
            and row.data == target.data
        )
        if same:
            return row.id, "unchanged", row.state
        return row.id, "updated", _regenerate(conn, row, target)
