"""Which campaigns a story is for: explicit assignments first, tags only suggest.

Staff usually know which campaign a recording is for. They say so at intake
(`narrative process --campaign SLUG`, or `campaigns = [...]` in the recording's sidecar file),
later with `narrative assign` / `unassign`, or on the review page. That choice always holds:

- if any campaign is explicitly assigned, the story goes to exactly those campaigns;
- otherwise to the campaigns whose analysis says `on_topic` (the tag fit), minus the ones
  explicitly unassigned.

A story that ends up with no campaign is *unassigned*: `unassigned()` lists it with the best
campaigns and tags as suggestions, so nothing disappears silently.

The table `campaign_assignments` is append-only: one row per real change, the latest row per
(narrative, campaign) wins, and every row has an audit row (`campaign.assign` /
`campaign.unassign`) written in the same transaction. Re-assigning what is already assigned
writes nothing. Concurrent writers on one narrative are serialised by a lock on the narrative's
row (a write lock on SQLite, `SELECT ... FOR UPDATE` elsewhere), so the check and the insert
can never interleave.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from narratives.core.campaigns import Campaign, load_campaigns
from narratives.core.errors import InvalidState, NotFound, UsageError
from narratives.store import audit
from narratives.store.context import Context
from narratives.store.schema import campaign_assignments, consents, narratives, stage_runs, utcnow
from narratives.store.users import require_active

__all__ = [
    "SOURCES",
    "Assignment",
    "Route",
    "Suggestion",
    "UnassignedStory",
    "assign",
    "unassign",
    "explicit",
    "history",
    "routes",
    "suggestions",
    "unassigned",
    "is_unassigned",
    "known_slugs",
    "check_slugs",
    "record_intake",
    "read_analysis",
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


@dataclass(frozen=True)
class Route:
    """A campaign the story goes to, and why: staff assigned it, or its tags fit."""

    campaign: str
    reason: Literal["assigned", "tags"]
    #: The campaign's best tag for this story and its score (None before analysis).
    top: str | None
    score: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "reason": self.reason,
            "top": self.top,
            "score": None if self.score is None else round(self.score, 4),
        }


@dataclass(frozen=True)
class Suggestion:
    """How well a story fits a campaign by its tags (best tag first)."""

    campaign: str
    name: str
    top: str | None
    score: float | None
    tags: list[tuple[str, float]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "campaign": self.campaign,
            "name": self.name,
            "top": self.top,
            "score": None if self.score is None else round(self.score, 4),
            "tags": [[name, round(score, 4)] for name, score in self.tags],
        }


@dataclass(frozen=True)
class UnassignedStory:
    """An analysed story that no campaign gets: shown so that someone can assign it."""

    id: str
    title: str
    #: The recording's file name.
    label: str
    created_at: datetime
    suggestions: list[Suggestion]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "label": self.label,
            "created_at": self.created_at.isoformat(),
            "suggestions": [s.to_json() for s in self.suggestions],
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


# ----------------------------------------------------------------------------- reading


def read_analysis(ctx: Context, narrative_id: str) -> dict[str, Any] | None:
    """The narrative's analysis.json as a dict, or None when there is none (or unreadable)."""
    path: Path = ctx.workspace.narrative_dir(narrative_id) / "analysis.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


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


def _fit(analysis: Mapping[str, Any] | None, slug: str) -> Mapping[str, Any]:
    fit = ((analysis or {}).get("campaigns") or {}).get(slug)
    return fit if isinstance(fit, Mapping) else {}


def _ranked_tags(fit: Mapping[str, Any]) -> list[tuple[str, float]]:
    tags = [
        (str(t["name"]), float(t.get("score") or 0.0))
        for t in fit.get("tags") or []
        if isinstance(t, Mapping) and t.get("name")
    ]
    return sorted(tags, key=lambda t: -t[1])


def _top(fit: Mapping[str, Any]) -> tuple[str | None, float | None]:
    tags = _ranked_tags(fit)
    top = fit.get("top") if isinstance(fit.get("top"), str) else None
    top = top or (tags[0][0] if tags else None)
    score = next((s for name, s in tags if name == top), None)
    return top, score


def routes(
    ctx: Context,
    narrative_id: str,
    analysis: Mapping[str, Any] | None = None,
    *,
    campaigns: Sequence[Campaign] | None = None,
) -> list[Route]:
    """The campaigns the story goes to, sorted by slug.

    Explicitly assigned campaigns, if there are any; otherwise the campaigns its tags fit
    (`on_topic` in the analysis) minus the explicitly unassigned ones. Only campaigns that
    exist in the workspace count. `analysis` is analysis.json's dict (read when None).
    """
    if _withdrawn(ctx, narrative_id):
        return []  # a withdrawn story goes to no campaign
    if analysis is None:
        analysis = read_analysis(ctx, narrative_id)
    slugs = {
        c.slug for c in (campaigns if campaigns is not None else load_campaigns(ctx.workspace))
    }
    chosen = explicit(ctx, narrative_id)
    assigned = sorted(s for s, yes in chosen.items() if yes and s in slugs)
    if assigned:
        return [Route(s, "assigned", *_top(_fit(analysis, s))) for s in assigned]
    if not analysis or analysis.get("empty"):
        return []
    out = []
    for slug in sorted(slugs):
        fit = _fit(analysis, slug)
        if fit.get("on_topic") and chosen.get(slug) is not False:
            out.append(Route(slug, "tags", *_top(fit)))
    return out


def _withdrawn(ctx: Context, narrative_id: str) -> bool:
    with ctx.db.connect() as conn:
        at = conn.execute(
            sa.select(consents.c.withdrawn_at).where(consents.c.narrative_id == narrative_id)
        ).scalar()
    return at is not None


def suggestions(
    ctx: Context,
    narrative_id: str,
    analysis: Mapping[str, Any] | None = None,
    *,
    campaigns: Sequence[Campaign] | None = None,
) -> list[Suggestion]:
    """Every campaign with the story's tag scores for it, best fit first."""
    if analysis is None:
        analysis = read_analysis(ctx, narrative_id)
    out = []
    for c in campaigns if campaigns is not None else load_campaigns(ctx.workspace):
        fit = _fit(analysis, c.slug)
        top, score = _top(fit)
        out.append(Suggestion(c.slug, c.name, top, score, _ranked_tags(fit)))
    return sorted(out, key=lambda s: (s.score is None, -(s.score or 0.0), s.campaign))


def _failed_stage(conn: Connection, narrative_id: str) -> tuple[str, str] | None:
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


def unassigned(ctx: Context) -> list[UnassignedStory]:
    """Analysed, non-empty stories that are not failed or withdrawn and go to no campaign,
    oldest first, each with its suggestions."""
    campaigns = load_campaigns(ctx.workspace)
    with ctx.db.connect() as conn:
        analysed = {
            r.narrative_id
            for r in conn.execute(
                sa.select(stage_runs.c.narrative_id).where(
                    stage_runs.c.stage == "analyse", stage_runs.c.status == "done"
                )
            )
        }
        failed = {
            r.narrative_id
            for r in conn.execute(
                sa.select(stage_runs.c.narrative_id).where(
                    stage_runs.c.stage.in_(("transcribe", "analyse")),
                    stage_runs.c.status == "failed",
                )
            )
        }
        withdrawn = {
            r.narrative_id
            for r in conn.execute(
                sa.select(consents.c.narrative_id).where(consents.c.withdrawn_at.is_not(None))
            )
        }
        rows = conn.execute(
            sa.select(
                narratives.c.id, narratives.c.title, narratives.c.label, narratives.c.created_at
            ).order_by(narratives.c.created_at, narratives.c.id)
        ).all()
    out = []
    for r in rows:
        if r.id not in analysed or r.id in failed or r.id in withdrawn:
            continue
        analysis = read_analysis(ctx, r.id)
        if not analysis or analysis.get("empty"):
            continue
        if routes(ctx, r.id, analysis, campaigns=campaigns):
            continue
        title = (analysis.get("title") or r.title or "").strip()
        out.append(
            UnassignedStory(
                r.id,
                title,
                r.label,
                r.created_at,
                suggestions(ctx, r.id, analysis, campaigns=campaigns),
            )
        )
    return out


def is_unassigned(
    ctx: Context, narrative_id: str, analysis: Mapping[str, Any] | None = None
) -> bool:
    """Whether `unassigned()` lists the narrative: analysed, with speech, not failed, consent
    not withdrawn, and no campaign gets it."""
    if analysis is None:
        analysis = read_analysis(ctx, narrative_id)
    if not analysis or analysis.get("empty"):
        return False
    with ctx.db.connect() as conn:
        analysed = conn.execute(
            sa.select(stage_runs.c.id).where(
                stage_runs.c.narrative_id == narrative_id,
                stage_runs.c.stage == "analyse",
                stage_runs.c.status == "done",
            )
        ).first()
        if analysed is None or _failed_stage(conn, narrative_id) is not None:
            return False
        withdrawn = conn.execute(
            sa.select(consents.c.withdrawn_at).where(consents.c.narrative_id == narrative_id)
        ).scalar()
    return withdrawn is None and not routes(ctx, narrative_id, analysis)


# ----------------------------------------------------------------------------- writing


def _lock(conn: Connection, narrative_id: str) -> bool:
    """Take the narrative's row lock for this transaction; False when there is no such row.

    SQLite: a write (a no-op UPDATE) takes the database's write lock before anything is read,
    so a second writer waits (busy timeout) instead of reading a state about to change.
    Other databases: `SELECT ... FOR UPDATE` on the narrative's row."""
    if conn.dialect.name == "sqlite":
        done = conn.execute(
            narratives.update().where(narratives.c.id == narrative_id).values(id=narratives.c.id)
        ).rowcount
        return bool(done)
    row = conn.execute(
        sa.select(narratives.c.id).where(narratives.c.id == narrative_id).with_for_update()
    ).first()
    return row is not None


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
    failed = _failed_stage(conn, narrative_id)
    if failed:
        return (
            f"its {failed[0]} stage failed ({failed[1]}); run `narrative process` on the "
            "recording again first"
        )
    analysis = read_analysis(ctx, narrative_id)
    if analysis is not None and analysis.get("empty"):
        reason = analysis.get("reason") or "nothing to analyse: the recording holds no speech"
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
    verb = "assign" if assigned else "unassign"
    with ctx.db.begin() as conn:
        if not _lock(conn, narrative_id):
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
        new_id = conn.execute(
            campaign_assignments.insert().values(
                narrative_id=narrative_id,
                campaign=campaign,
                assigned=assigned,
                source=source,
                actor=actor,
                at=now,
            )
        ).inserted_primary_key[0]
        audit.record(
            conn,
            actor=actor,
            action=f"campaign.{verb}",
            object_type="narrative",
            object_id=narrative_id,
            before=None if before is None else {"campaign": campaign, "assigned": before.assigned},
            after={"campaign": campaign, "assigned": assigned, "source": source},
            detail=f"{verb}ed {'to' if assigned else 'from'} {campaign} ({source})",
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
