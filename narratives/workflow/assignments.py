"""Assigning a story to a campaign, and what follows: its video and drafts are made, and the
drafts of a campaign it leaves are withdrawn while still pending review.

The rule of which campaigns a story goes to is `narratives.policy.routing`, and the explicit
choices (the assignments table) are `narratives.policy.campaign_assignments`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa

from narratives.core.errors import InvalidState, NarrativesError
from narratives.policy.campaign_assignments import check_slugs
from narratives.policy.routing import routes
from narratives.records.delivery import OPEN
from narratives.records.draft import DraftState
from narratives.stages.draft import stage as drafting
from narratives.store import drafts as draft_rows
from narratives.store.context import Context
from narratives.store.schema import audit_log, deliveries, drafts
from narratives.store.users import require_active
from narratives.workflow import review

__all__ = [
    "Outputs",
    "make_outputs",
    "DraftNote",
    "pending_drafts",
    "settle_drafts",
    "RouteChange",
    "route_change",
]


@dataclass
class Outputs:
    """What `make_outputs` made: videos and drafts for the story's campaigns, and what failed."""

    videos: int = 0
    drafts: int = 0
    errors: list[str] = field(default_factory=list)
    #: Of `drafts`, how many this call created.
    new_drafts: int = 0


# ----------------------------------------------------------------------------- outputs

#: progress(message): one line of what is happening, for a terminal or a log.
Progress = Callable[[str], None]


def make_outputs(
    ctx: Context,
    narrative_id: str,
    *,
    campaigns: Sequence[str] | None = None,
    progress: Progress | None = None,
    force: bool = False,
    actor: str = "assignments",
) -> Outputs:
    """Run the render and draft stages for the story's routes (or the named campaigns).

    Returns how many videos and drafts the story now has for those campaigns, and the errors
    met (each a sentence; the other campaigns still get theirs). Drafts are only ever made for
    routed campaigns, so name campaigns that are assigned (or fit by tags). A draft that an
    unassignment withdrew from review (and nobody touched since) goes back to review: the
    story is for that campaign again.
    """
    say = progress or (lambda _msg: None)
    out = Outputs()
    targets = (
        check_slugs(ctx, campaigns)
        if campaigns is not None
        else [r.campaign for r in routes(ctx, narrative_id)]
    )
    if not targets:
        return out
    last: dict[str, int] = {}

    def frames(key: str, done: int, total: int) -> None:
        step = int(10 * done / total) if total else 10
        if last.get(key) != step:
            last[key] = step
            say(f"rendering {key}: {10 * step}%")

    for slug in targets:
        say(f"video for {slug}")
        try:
            # The render stage loads NumPy, Pillow and PyAV: only when a video is made.
            from narratives.stages.render import stage as render

            videos = render.run(ctx, narrative_id, campaigns=[slug], force=force, progress=frames)
        except NarrativesError as exc:
            out.errors.append(f"video for {slug}: {exc}")
            continue
        out.videos += len(videos)
    say("drafts")
    with ctx.db.connect() as conn:
        before = {
            r.id
            for r in conn.execute(
                sa.select(drafts.c.id).where(drafts.c.narrative_id == narrative_id)
            )
        }
    try:
        drafting.run(ctx, narrative_id, force=force)
    except NarrativesError as exc:
        out.errors.append(f"drafts: {exc}")
    routed = {r.campaign for r in routes(ctx, narrative_id)}
    _reopen(ctx, narrative_id, [t for t in targets if t in routed], actor=actor)
    with ctx.db.connect() as conn:
        ids = [
            r.id
            for r in conn.execute(
                sa.select(drafts.c.id).where(
                    drafts.c.narrative_id == narrative_id, drafts.c.campaign.in_(targets)
                )
            )
        ]
    out.drafts = len(ids)
    out.new_drafts = len(set(ids) - before)
    return out


#: The reason `settle_drafts` gives when it rejects a draft; `_reopen` looks for it.
_UNASSIGNED_REASON = "story unassigned from {campaign}"


def _reopen(ctx: Context, narrative_id: str, campaigns: Sequence[str], *, actor: str) -> int:
    """Send back to review the campaigns' drafts whose last change was the rejection made by
    an unassignment; returns how many."""
    if not campaigns:
        return 0
    reopened = 0
    with ctx.db.begin() as conn:
        rows = conn.execute(
            sa.select(drafts.c.id, drafts.c.campaign).where(
                drafts.c.narrative_id == narrative_id,
                drafts.c.campaign.in_(list(campaigns)),
                drafts.c.state == DraftState.REJECTED,
            )
        ).all()
        for r in rows:
            last = conn.execute(
                sa.select(audit_log.c.action, audit_log.c.detail)
                .where(audit_log.c.object_type == "draft", audit_log.c.object_id == str(r.id))
                .order_by(audit_log.c.id.desc())
                .limit(1)
            ).first()
            if (
                last is None
                or last.action != "draft.reject"
                or last.detail != _UNASSIGNED_REASON.format(campaign=r.campaign)
            ):
                continue
            if draft_rows.reopen(
                conn, r.id, actor=actor, detail=f"story assigned to {r.campaign} again"
            ):
                reopened += 1
    return reopened


# ----------------------------------------------------------------------------- unassigning


@dataclass(frozen=True)
class DraftNote:
    """What happened to one existing draft when its story was unassigned from its campaign."""

    draft_id: int
    channel: str
    #: The draft's state after (rejected when it was withdrawn from review).
    state: str
    #: rejected (it was pending review) | kept (anything else: an editor acted on it)
    action: Literal["rejected", "kept"]
    #: A sentence for the user: what was done, or why it was left and what they can do.
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "draft_id": self.draft_id,
            "channel": self.channel,
            "state": self.state,
            "action": self.action,
            "message": self.message,
        }


def pending_drafts(ctx: Context, narrative_id: str, campaign: str) -> list[int]:
    """Ids of the narrative's drafts for `campaign` that still await review."""
    with ctx.db.connect() as conn:
        return [
            r.id
            for r in conn.execute(
                sa.select(drafts.c.id)
                .where(
                    drafts.c.narrative_id == narrative_id,
                    drafts.c.campaign == campaign,
                    drafts.c.state == DraftState.PENDING_REVIEW,
                )
                .order_by(drafts.c.id)
            )
        ]


def settle_drafts(
    ctx: Context, narrative_id: str, campaign: str, *, actor: str, reject: bool = True
) -> list[DraftNote]:
    """After an unassignment: withdraw from review (reject) the campaign's drafts that are
    still `pending_review`, and leave every other draft as it is, saying why.

    Approved, scheduled or published drafts were an editor's decision: they are never changed
    here, only reported with what to do. Rejecting goes through `review.reject` (the actor
    must be a user here; PermissionDenied otherwise, before any draft is touched)."""
    with ctx.db.connect() as conn:
        rows = conn.execute(
            sa.select(drafts.c.id, drafts.c.channel, drafts.c.state)
            .where(drafts.c.narrative_id == narrative_id, drafts.c.campaign == campaign)
            .order_by(drafts.c.id)
        ).all()
        open_ = {
            r.draft_id: r
            for r in conn.execute(
                sa.select(deliveries.c.id, deliveries.c.draft_id, deliveries.c.state).where(
                    deliveries.c.draft_id.in_([r.id for r in rows] or [-1]),
                    deliveries.c.state.in_(OPEN),
                )
            )
        }
    if reject and any(r.state == DraftState.PENDING_REVIEW for r in rows):
        require_active(ctx, actor)
    notes: list[DraftNote] = []
    for r in rows:
        name = f"draft {r.id} ({r.channel})"
        state = r.state
        if state == DraftState.PENDING_REVIEW and reject:
            try:
                review.reject(
                    ctx, r.id, actor=actor, reason=_UNASSIGNED_REASON.format(campaign=campaign)
                )
            except InvalidState:
                # An editor acted on it meanwhile: reported below as it is now.
                with ctx.db.connect() as conn:
                    state = conn.execute(
                        sa.select(drafts.c.state).where(drafts.c.id == r.id)
                    ).scalar_one()
            else:
                notes.append(
                    DraftNote(
                        r.id,
                        r.channel,
                        DraftState.REJECTED,
                        "rejected",
                        f"{name} was pending review: rejected (withdrawn from review)",
                    )
                )
                continue
        message = _kept_message(name, r.id, state, open_.get(r.id))
        notes.append(DraftNote(r.id, r.channel, state, "kept", message))
    return notes


def _kept_message(name: str, draft_id: int, state: str, delivery: Any) -> str:
    """Why a draft was left as it is, and the command that changes it."""
    shown = state.replace("_", " ")
    if delivery is not None:
        return (
            f"{name} is {shown} with delivery {delivery.id} {delivery.state}: left as it "
            f"is; `narrative schedule cancel {delivery.id}` stops it, "
            f"`narrative drafts reject {draft_id}` withdraws the approval"
        )
    if state == DraftState.APPROVED:
        return (
            f"{name} is approved: left as it is; `narrative drafts reject {draft_id}` "
            "withdraws the approval"
        )
    if state == DraftState.PENDING_REVIEW:
        return f"{name} is pending review: left pending, as asked"
    if state == DraftState.REJECTED:
        return f"{name} was already rejected"
    return f"{name} is {shown}: left as it is; `narrative drafts reject {draft_id}` rejects it"


@dataclass
class RouteChange:
    """What changed in where a story goes, after a tag correction."""

    gained: list[str] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    notes: list[DraftNote] = field(default_factory=list)


def route_change(
    ctx: Context, narrative_id: str, before: Iterable[str], *, actor: str
) -> RouteChange:
    """Compare the story's routes with `before`: the drafts awaiting review in campaigns it
    left are rejected (others are reported, never changed); the campaigns it joined are
    returned for the caller to make their outputs (`make_outputs`, or a web job)."""
    now = {r.campaign for r in routes(ctx, narrative_id)}
    then = set(before)
    change = RouteChange(sorted(now - then), sorted(then - now))
    for slug in change.lost:
        change.notes += settle_drafts(ctx, narrative_id, slug, actor=actor, reject=True)
    return change
