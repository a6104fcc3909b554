"""Which campaigns a story goes to: explicit assignments first, tags only suggest.

The explicit choices staff made are `narratives.policy.campaign_assignments`. That choice
always holds:

- if any campaign is explicitly assigned, the story goes to exactly those campaigns;
- otherwise to the campaigns whose analysis says `on_topic` (the tag fit), minus the ones
  explicitly unassigned.

A story that ends up with no campaign is *unassigned*: `unassigned()` lists it with the best
campaigns and tags as suggestions, so nothing disappears silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from narratives.core.campaigns import Campaign, load_campaigns
from narratives.core.errors import UnreadableFile
from narratives.policy.campaign_assignments import explicit, failed_stage
from narratives.records.analysis import Analysis, CampaignTags
from narratives.store.context import Context
from narratives.store.narrative_files import read_analysis
from narratives.store.schema import consents, narratives, stage_runs

__all__ = [
    "Route",
    "Suggestion",
    "UnassignedStory",
    "routes",
    "suggestions",
    "unassigned",
    "is_unassigned",
]


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
    #: Why its analysis cannot be read (a damaged analysis.json): it is listed, not dropped.
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "label": self.label,
            "created_at": self.created_at.isoformat(),
            "suggestions": [s.to_json() for s in self.suggestions],
            "problem": self.problem,
        }


def _analysis(ctx: Context, narrative_id: str, analysis: Analysis | None) -> Analysis | None:
    """The given analysis, else the stored one (None before the analysis)."""
    return analysis if analysis is not None else read_analysis(ctx.workspace, narrative_id)


def _fit(analysis: Analysis | None, slug: str) -> CampaignTags | None:
    return analysis.fit(slug) if analysis is not None else None


def _ranked_tags(fit: CampaignTags | None) -> list[tuple[str, float]]:
    tags = [(t.name, float(t.score or 0.0)) for t in (fit.tags if fit else []) if t.name]
    return sorted(tags, key=lambda t: -t[1])


def _top(fit: CampaignTags | None) -> tuple[str | None, float | None]:
    tags = _ranked_tags(fit)
    top = (fit.top if fit else None) or (tags[0][0] if tags else None)
    score = next((s for name, s in tags if name == top), None)
    return top, score


def routes(
    ctx: Context,
    narrative_id: str,
    analysis: Analysis | None = None,
    *,
    campaigns: Sequence[Campaign] | None = None,
) -> list[Route]:
    """The campaigns the story goes to, sorted by slug.

    Explicitly assigned campaigns, if there are any; otherwise the campaigns its tags fit
    (`on_topic` in the analysis) minus the explicitly unassigned ones. Only campaigns that
    exist in the workspace count. `analysis` is the stored Analysis (read when None).
    """
    if _withdrawn(ctx, narrative_id):
        return []  # a withdrawn story goes to no campaign
    analysis = _analysis(ctx, narrative_id, analysis)
    slugs = {
        c.slug for c in (campaigns if campaigns is not None else load_campaigns(ctx.workspace))
    }
    chosen = explicit(ctx, narrative_id)
    assigned = sorted(s for s, yes in chosen.items() if yes and s in slugs)
    if assigned:
        return [Route(s, "assigned", *_top(_fit(analysis, s))) for s in assigned]
    if analysis is None or analysis.empty:
        return []
    out = []
    for slug in sorted(slugs):
        fit = _fit(analysis, slug)
        if fit is not None and fit.on_topic and chosen.get(slug) is not False:
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
    analysis: Analysis | None = None,
    *,
    campaigns: Sequence[Campaign] | None = None,
) -> list[Suggestion]:
    """Every campaign with the story's tag scores for it, best fit first."""
    analysis = _analysis(ctx, narrative_id, analysis)
    out = []
    for c in campaigns if campaigns is not None else load_campaigns(ctx.workspace):
        fit = _fit(analysis, c.slug)
        top, score = _top(fit)
        out.append(Suggestion(c.slug, c.name, top, score, _ranked_tags(fit)))
    return sorted(out, key=lambda s: (s.score is None, -(s.score or 0.0), s.campaign))


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
        try:
            analysis = read_analysis(ctx.workspace, r.id)
        except UnreadableFile as exc:
            # One damaged file must not hide the others, nor vanish itself: listed, with why.
            if not any(explicit(ctx, r.id).values()):
                none = [Suggestion(c.slug, c.name, None, None) for c in campaigns]
                row = (r.id, r.title or "", r.label, r.created_at)
                out.append(UnassignedStory(*row, none, problem=str(exc)))
            continue
        if analysis is None or analysis.empty:
            continue
        if routes(ctx, r.id, analysis, campaigns=campaigns):
            continue
        title = (analysis.title or r.title or "").strip()
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


def is_unassigned(ctx: Context, narrative_id: str, analysis: Analysis | None = None) -> bool:
    """Whether `unassigned()` lists the narrative: analysed, with speech, not failed, consent
    not withdrawn, and no campaign gets it."""
    analysis = _analysis(ctx, narrative_id, analysis)
    if analysis is None or analysis.empty:
        return False
    with ctx.db.connect() as conn:
        analysed = conn.execute(
            sa.select(stage_runs.c.id).where(
                stage_runs.c.narrative_id == narrative_id,
                stage_runs.c.stage == "analyse",
                stage_runs.c.status == "done",
            )
        ).first()
        if analysed is None or failed_stage(conn, narrative_id) is not None:
            return False
        withdrawn = conn.execute(
            sa.select(consents.c.withdrawn_at).where(consents.c.narrative_id == narrative_id)
        ).scalar()
    return withdrawn is None and not routes(ctx, narrative_id, analysis)
