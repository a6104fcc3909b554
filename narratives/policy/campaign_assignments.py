"""The campaigns staff chose for a story: the rules for changing them, and their reads.

Staff usually know which campaign a recording is for. They say so at intake
(`narrative process --campaign SLUG`, or `campaigns = [...]` in the recording's sidecar file),
later with `narrative assign` / `unassign`, or on the review page; how that choice routes the
story is `narratives.policy.routing`.

The table is append-only: one row per real change, the latest row per (narrative, campaign)
wins, and every row has an audit row (`campaign.assign` / `campaign.unassign`) written in the
same transaction (both by `store.campaign_assignments`). Re-assigning what is already assigned
writes nothing. Concurrent writers on one narrative are serialised by a lock on the narrative's
row (`store.narrative_rows.lock_narrative`: a write lock on SQLite, `SELECT ... FOR UPDATE`
elsewhere), so the check and the insert can never interleave.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from narratives.core.campaigns import load_campaigns
from narratives.core.clock import utcnow
from narratives.core.errors import InvalidState, NotFound, UsageError
from narratives.store.campaign_assignments import insert_assignment
from narratives.store.context import Context
from narratives.store.narrative_files import read_analysis
from narratives.store.narrative_rows import lock_narrative
from narratives.store.schema import campaign_assignments, consents, stage_runs
from narratives.store.users import require_active

__all__ = [
    "SOURCES",
    "Assignment",
    "assign",
    "unassign",
    "record_intake",
    "explicit",
    "history",
    "known_slugs",
    "check_slugs",
    "failed_stage",
]

#: Where an explicit choice was made.
SOURCES = ("intake", "sidecar", "cli", "web")
Source = Literal["intake", "sidecar", "cli", "web"]


@dataclass(frozen=True)
class Assignment:
    """One row of `campaign_assignments`; `changed` is False when the call wrote nothing
    (the campaign was already assigned, or already unassigned) and this is the row in force."""

    id: int
    narrative_id: str
    campaign: str
    assigned: bool
    source: str
    actor: str
    at: datetime
    changed: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "narrative_id": self.narrative_id,
            "campaign": self.campaign,
            "assigned": self.assigned,
            "source": self.source,
            "actor": self.actor,
            "at": self.at.isoformat(),
            "changed": self.changed,
        }


# ----------------------------------------------------------------------------- campaigns


def known_slugs(ctx: Context) -> list[str]:
    return [c.slug for c in load_campaigns(ctx.workspace)]


def _unknown(slug: str, known: Sequence[str]) -> UsageError:
    listed = ", ".join(known) if known else "none (add campaigns/*.toml)"
    return UsageError(
        f"unknown campaign {slug!r}; known campaigns: {listed}",
        hint="see `narrative campaigns list`",
    )


def check_slugs(ctx: Context, slugs: Iterable[str]) -> list[str]:
    """The slugs, deduplicated in order; UsageError naming the known slugs for an unknown one."""
    known = known_slugs(ctx)
    out: list[str] = []
    for slug in slugs:
        if slug not in known:
            raise _unknown(slug, known)
        if slug not in out:
            out.append(slug)
    return out


def _row(r: Any, *, changed: bool = True) -> Assignment:
    m = r._mapping
    return Assignment(
        id=m["id"],
        narrative_id=m["narrative_id"],
        campaign=m["campaign"],
        assigned=bool(m["assigned"]),
        source=m["source"],
        actor=m["actor"],
        at=m["at"],
        changed=changed,
    )


def _latest(conn: Connection, narrative_id: str, campaign: str | None = None) -> dict[str, Any]:
    """The latest row per campaign of one narrative (optionally one campaign)."""
    q = sa.select(campaign_assignments).where(campaign_assignments.c.narrative_id == narrative_id)
    if campaign is not None:
        q = q.where(campaign_assignments.c.campaign == campaign)
    latest: dict[str, Any] = {}
    for r in conn.execute(q.order_by(campaign_assignments.c.id)):
        latest[r.campaign] = r
    return latest


def explicit(ctx: Context, narrative_id: str) -> dict[str, bool]:
    """The latest explicit choice per campaign: True assigned, False unassigned."""
    with ctx.db.connect() as conn:
        return {slug: bool(r.assigned) for slug, r in _latest(conn, narrative_id).items()}


def history(ctx: Context, narrative_id: str) -> list[Assignment]:
    """Every explicit choice made for the narrative, oldest first."""
    with ctx.db.connect() as conn:
        rows = conn.execute(
            sa.select(campaign_assignments)
            .where(campaign_assignments.c.narrative_id == narrative_id)
            .order_by(campaign_assignments.c.id)
        )
        return [_row(r) for r in rows]


def failed_stage(conn: Connection, narrative_id: str) -> tuple[str, str] | None:
    """The narrative's failed transcribe or analyse stage and why, or None."""
    row = conn.execute(
        sa.select(stage_runs.c.stage, stage_runs.c.error)
        .where(
            stage_runs.c.narrative_id == narrative_id,
            stage_runs.c.stage.in_(("transcribe", "analyse")),
            stage_runs.c.status == "failed",
        )
        .order_by(stage_runs.c.id)
    ).first()
    return (row.stage, row.error or "no reason recorded") if row else None


# ----------------------------------------------------------------------------- changes


def _refusal(conn: Connection, ctx: Context, narrative_id: str, *, stages: bool) -> str | None:
    """Why the narrative cannot be assigned to a campaign, or None."""
    withdrawn = conn.execute(
        sa.select(consents.c.withdrawn_at).where(consents.c.narrative_id == narrative_id)
    ).scalar()
    if withdrawn is not None:
        return (
            f"the narrator's consent was withdrawn on {withdrawn:%Y-%m-%d %H:%M} UTC; "
            "a withdrawn story goes to no campaign"
        )
    if not stages:
        return None
    failed = failed_stage(conn, narrative_id)
    if failed:
        return (
            f"its {failed[0]} stage failed ({failed[1]}); run `narrative process` on the "
            "recording again first"
        )
    analysis = read_analysis(ctx.workspace, narrative_id)
    if analysis is not None and analysis.empty:
        reason = analysis.reason or "nothing to analyse: the recording holds no speech"
        return reason.replace("nothing to analyse: ", "there is nothing to publish: ")
    return None


def _change(
    ctx: Context,
    narrative_id: str,
    campaign: str,
    *,
    assigned: bool,
    actor: str,
    source: str,
) -> Assignment:
    if source not in SOURCES:
        raise UsageError(f"unknown assignment source {source!r}: one of {', '.join(SOURCES)}")
    if not actor or not actor.strip():
        raise UsageError("who is acting?", hint="pass --as USER or set NARRATIVES_USER")
    check_slugs(ctx, [campaign])
    if source in ("cli", "web"):
        require_active(ctx, actor)  # PermissionDenied (exit 7) for a name nobody has
    with ctx.db.begin() as conn:
        # Locked before anything is read: the check and the insert never interleave.
        if not lock_narrative(conn, narrative_id):
            raise NotFound(f"no narrative with id {narrative_id}", hint="see `narrative status`")
        before = _latest(conn, narrative_id, campaign).get(campaign)
        if assigned:
            # Sources at intake come before the stages run, which are about to be (re)done.
            problem = _refusal(conn, ctx, narrative_id, stages=source not in ("intake", "sidecar"))
            if problem:
                raise InvalidState(f"cannot assign {narrative_id[:12]} to {campaign}: {problem}")
        if before is not None and bool(before.assigned) == assigned:
            return _row(before, changed=False)
        now = utcnow()
        new_id = insert_assignment(
            conn,
            narrative_id,
            campaign,
            assigned=assigned,
            source=source,
            actor=actor,
            now=now,
            was_assigned=None if before is None else before.assigned,
        )
    return Assignment(new_id, narrative_id, campaign, assigned, source, actor, now)


def assign(
    ctx: Context, narrative_id: str, campaign: str, *, actor: str, source: str = "cli"
) -> Assignment:
    """Say the story is for `campaign`. Once any campaign is assigned, the story goes to
    exactly the assigned ones, whatever its tags say.

    UsageError for an unknown slug (naming the known ones); NotFound for an unknown
    narrative; InvalidState when the narrator's consent is withdrawn, or (except at intake)
    its transcribe/analyse stage failed or it holds no speech (also when already assigned);
    PermissionDenied when the actor of a CLI or web change is not an active user.
    Already assigned: no new row.
    """
    return _change(ctx, narrative_id, campaign, assigned=True, actor=actor, source=source)


def unassign(
    ctx: Context, narrative_id: str, campaign: str, *, actor: str, source: str = "cli"
) -> Assignment:
    """Say the story is not for `campaign` (its tags no longer route it there either).

    Always allowed for a known narrative and slug; already unassigned: no new row.
    Existing drafts are left alone here (see `narrative unassign` for what it does to them)."""
    return _change(ctx, narrative_id, campaign, assigned=False, actor=actor, source=source)


def record_intake(
    ctx: Context,
    narrative_id: str,
    campaigns: Iterable[str],
    *,
    actor: str,
    source: str = "intake",
) -> list[Assignment]:
    """Assign every campaign named at intake (`process --campaign`, a sidecar's `campaigns`)."""
    return [assign(ctx, narrative_id, slug, actor=actor, source=source) for slug in campaigns]
