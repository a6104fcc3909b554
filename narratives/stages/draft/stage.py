"""The draft stage: one draft per campaign the narrative goes to and per channel of that campaign.

Post copy comes from the workspace's templates (`templates.py`), with the campaign's video
(`video.py`); any Bluesky post over 300 graphemes is split further into a thread. Drafts are
saved without overwriting an editor (`saving.py`). The stage is redone when anything it
reads changes: the analysis, transcript, redactions, campaigns, templates, videos, consent
or the story's assignments.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import grapheme
import jinja2

# One grapheme count and one thread splitter for drafting and publishing: the adapter's.
from narratives.channels.bluesky.text import count_graphemes, split_thread
from narratives.core.campaigns import BLUESKY, Campaign, load_campaigns
from narratives.core.errors import StageFailed
from narratives.policy.anonymise import Publication, for_publication, redact_draft
from narratives.policy.campaign_assignments import explicit
from narratives.policy.consent import is_anonymous
from narratives.policy.routing import Route, routes
from narratives.records.analysis import Analysis, CampaignTags
from narratives.records.draft import DraftState
from narratives.records.stage import StageResult
from narratives.records.transcript import Transcript
from narratives.stages.draft.saving import DraftTarget, save_draft
from narratives.stages.draft.templates import (
    RSS_BLOCKS,
    item_link,
    load_template,
    post_environment,
    render_block,
    rendering,
    split_posts,
)
from narratives.stages.draft.video import draft_video
from narratives.store.context import Context
from narratives.store.narrative_files import (
    ANALYSIS_FILE,
    TRANSCRIPT_FILE,
    read_analysis,
    read_transcript,
)
from narratives.store.redactions import REDACTIONS_FILE
from narratives.store.stage_runs import list_runs, reusable, stage_run

__all__ = [
    "STAGE",
    "DraftStage",
    "Drafted",
    "build_drafts",
    "clock",
    "make_drafts",
    "run",
]

STAGE = "draft"

_ALT_LIMIT = 1000


@dataclass(frozen=True)
class Drafted:
    """The draft stage's record: the narrative's draft ids (on-topic targets only), and how
    many of them this run created or regenerated that now await review."""

    ids: list[int] = field(default_factory=list)
    awaiting_review: int = 0


@dataclass(frozen=True)
class DraftStage:
    """The draft stage as the pipeline runs it."""

    name: str = STAGE

    def run(self, ctx: Context, narrative_id: str, *, force: bool = False) -> StageResult:
        return make_drafts(ctx, narrative_id, force=force)


def clock(seconds: float) -> str:
    """0:07, 2:45, 1:02:03: how a length reads in a post."""
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


# --------------------------------------------------------------------------- what drafts say


@dataclass
class _Story:
    """What every draft of one narrative is made from: the public copies when the narrator
    must stay anonymous (the default while no consent says otherwise)."""

    narrative_id: str
    analysis: Analysis
    transcript: Transcript | None
    pub: Publication | None

    @property
    def title(self) -> str:
        return self.analysis.title or ""

    @property
    def summary(self) -> str:
        return self.analysis.summary_text or ""

    @property
    def language(self) -> str:
        transcript = self.transcript.language if self.transcript else ""
        return self.analysis.language or transcript or ""

    @property
    def hidden(self) -> tuple[Any, ...]:
        """What must stay hidden in every draft, an editor's text included."""
        return tuple(self.pub.terms) if self.pub is not None and self.pub.anonymous else ()


def _story(ctx: Context, narrative_id: str) -> _Story | None:
    """The narrative's story as drafts tell it; None when the analysis found no speech."""
    analysis = read_analysis(ctx.workspace, narrative_id)
    if analysis is None:
        raise StageFailed(
            f"narrative {narrative_id[:12]} has no analysis yet",
            hint="run `narrative process` (the analyse stage comes before drafts)",
        )
    if analysis.empty:
        return None
    transcript = read_transcript(ctx.workspace, narrative_id)
    pub = for_publication(ctx, narrative_id, transcript, analysis.to_dict()) if transcript else None
    if pub is not None:
        transcript, analysis = pub.transcript, Analysis.from_dict(pub.analysis)
    return _Story(narrative_id, analysis, transcript, pub)


def _notes(analysis: Analysis, campaign: Campaign) -> tuple[list[str], list[str]]:
    """(content-warning names, Bluesky self-labels) for the notes above the policy threshold."""
    policy = campaign.content_notes
    warn: list[str] = []
    labels: list[str] = []
    for note in analysis.content_notes:
        name, score = note.name, note.score
        if not name or score < policy.threshold:
            continue
        if name in policy.warn and name not in warn:
            warn.append(name)
        label = policy.labels.get(name)
        if label and label not in labels:
            labels.append(label)
    return warn, labels


def _tags(fit: CampaignTags | None, campaign: Campaign, route: Route) -> list[str]:
    """The campaign's tags the story carries."""
    # `applied` holds the tags after editors' corrections; older analyses lack it.
    tags = fit.recorded_applied if fit is not None else None
    if tags is None:
        tags = [
            t.name
            for t in sorted(fit.tags if fit is not None else [], key=lambda t: -t.score)
            if t.score >= campaign.tag_threshold
        ]
    if not tags and route.reason == "assigned" and route.top:
        # Assigned, but no tag reaches the threshold: tags rank within the campaign,
        # they never drop the story, so the draft carries the campaign's best tag.
        tags = [route.top]
    return tags


@dataclass
class _View:
    """One campaign's view of the story: template variables, page data, video."""

    variables: dict[str, Any]
    data: dict[str, Any]
    media: dict[str, Any]
    labels: list[str]


def _view(ctx: Context, story: _Story, campaign: Campaign, route: Route) -> _View:
    analysis, transcript = story.analysis, story.transcript
    fit = analysis.fit(campaign.slug)
    tags = _tags(fit, campaign, route)
    warn, labels = _notes(analysis, campaign)
    media = draft_video(ctx, story.narrative_id, campaign)
    # A video cut to the campaign's limit says so: a reader should know it is an excerpt.
    kept = media["kept"]
    recording = transcript.duration if transcript else 0.0
    excerpt = sum(b - a for a, b in kept) if kept else 0.0
    variables = {
        "narrative_id": story.narrative_id,
        "title": story.title,
        "quote": (analysis.quote.text if analysis.quote else "") or "",
        "summary": story.summary,
        "transcript": transcript.text if transcript else "",
        "language": story.language,
        "hashtags": [f"#{h}" for h in campaign.hashtags],
        "tags": tags,
        "link": item_link(campaign, story.narrative_id),
        "content_warning": ", ".join(warn) or None,
        "ai_disclosure": campaign.ai_disclosure,
        "campaign": {
            "slug": campaign.slug,
            "name": campaign.name,
            "owner": campaign.owner,
            "link": campaign.link,
        },
        "has_video": media["video"] is not None,
        "video_cut": kept is not None,
        "video_length": clock(excerpt) if kept else None,
        "recording_length": clock(recording) if recording else None,
        # The video's voice is a shipped synthetic one, to protect an anonymous narrator.
        "voice_recreated": media.get("voice") == "synthetic",
    }
    data = {
        "title": story.title,
        "tags": tags,
        "top": fit.top if fit is not None else None,
        "format": media["format"],
        "video_cut": (
            {"kept": kept, "seconds": round(excerpt, 3), "of": round(recording, 3)}
            if kept
            else None
        ),
        # Characters the video could not draw (its captions file has them): editors check.
        "video_missing_glyphs": media["missing_glyphs"] or None,
    }
    return _View(variables, data, media, labels)


def _bluesky(
    template: jinja2.Template, name: str, campaign: Campaign, story: _Story, view: _View
) -> dict[str, Any]:
    text = rendering(campaign, name, template.render, view.variables)
    posts = [p for post in split_posts(text) for p in split_thread(post)]
    config = campaign.channels.bluesky
    language = story.language
    media = view.media
    return {
        "posts": [{"text": p} for p in posts],
        "langs": [language] if language else list(config.langs or [campaign.language]),
        "labels": view.labels,
        "video": media["video"],
        "captions": media["captions"],
        "alt": _alt(story.title, story.summary),
        "aspect_ratio": media["aspect_ratio"],
        "content_warning": view.variables["content_warning"],
    }


def _rss(template: jinja2.Template, name: str, campaign: Campaign, view: _View) -> dict[str, Any]:
    content: dict[str, Any] = {
        key: rendering(campaign, name, render_block, template, key, view.variables)
        for key in RSS_BLOCKS
    }
    content["link"] = view.variables["link"]
    content["enclosure"] = view.media["video"]
    content["captions"] = view.media["captions"]
    return content


def _alt(title: str, summary: str) -> str:
    text = f"Audiogram video: {title}. {summary}".strip() if title else summary
    if count_graphemes(text) > _ALT_LIMIT:
        text = grapheme.slice(text, 0, _ALT_LIMIT - 1) + "…"
    return text


def build_drafts(ctx: Context, narrative_id: str) -> list[DraftTarget]:
    """Render every draft the narrative should have, without touching the database."""
    story = _story(ctx, narrative_id)
    if story is None:
        return []
    env = post_environment(ctx.workspace)
    campaigns = load_campaigns(ctx.workspace)
    # Explicit assignments first, then the tag fit (see `narratives/policy/routing.py`).
    analysis = story.analysis
    routed = {r.campaign: r for r in routes(ctx, narrative_id, analysis, campaigns=campaigns)}
    targets: list[DraftTarget] = []
    for campaign in campaigns:
        route = routed.get(campaign.slug)
        if route is None:
            continue
        view = _view(ctx, story, campaign, route)
        for channel in campaign.channel_names:
            name = getattr(campaign.channels, channel).template
            template, digest = load_template(env, name, campaign)
            if channel == BLUESKY:
                content = _bluesky(template, name, campaign, story, view)
            else:
                content = _rss(template, name, campaign, view)
            if story.pub is not None and story.pub.anonymous:
                content = redact_draft(content, story.pub.terms)
            targets.append(
                DraftTarget(campaign.slug, channel, name, digest, content, view.data, story.hidden)
            )
    return targets


# --------------------------------------------------------------------------- the stage


def _fingerprint(ctx: Context, narrative_id: str) -> str:
    """What the drafts depend on; a change (template, campaign, analysis, video) redoes them."""
    h = hashlib.sha256()
    folder = ctx.workspace.narrative_dir(narrative_id)
    files = [folder / ANALYSIS_FILE, folder / TRANSCRIPT_FILE, folder / REDACTIONS_FILE]
    files += sorted(ctx.workspace.campaigns_dir.glob("*.toml"))
    files += sorted((ctx.workspace.templates_dir / "posts").glob("**/*"))
    for path in files:
        h.update(path.name.encode())
        h.update(path.read_bytes() if path.is_file() else b"-")
    renders = sorted(
        (r.key, r.status, r.finished_at)
        for r in list_runs(ctx.db, narrative_id)
        if r.stage == "render"
    )
    h.update(repr(renders).encode())
    with ctx.db.connect() as conn:
        # Consent switching between named and anonymous changes every public text.
        h.update(b"anonymous" if is_anonymous(conn, narrative_id) else b"named")
    # Assigning or unassigning a campaign changes which drafts the narrative has.
    h.update(repr(sorted(explicit(ctx, narrative_id).items())).encode())
    return h.hexdigest()


def make_drafts(ctx: Context, narrative_id: str, *, force: bool = False) -> StageResult:
    """Create or refresh the narrative's drafts; the result's record is `Drafted`.

    Skipped when the stage is `done` and nothing it depends on changed, unless `force`.
    """
    fingerprint = _fingerprint(ctx, narrative_id)
    done = reusable(
        ctx.db,
        narrative_id,
        STAGE,
        force=force,
        fits=lambda run: isinstance(run.output, dict) and run.output.get("inputs") == fingerprint,
    )
    if done is not None:
        return StageResult(STAGE, "skipped", Drafted(list(done.output.get("drafts", []))))
    with stage_run(ctx.db, narrative_id, STAGE) as handle:
        handle.engine = "jinja2"
        handle.version = jinja2.__version__
        ids: list[int] = []
        awaiting = 0
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        for target in build_drafts(ctx, narrative_id):
            draft_id, outcome, state = save_draft(ctx, narrative_id, target)
            ids.append(draft_id)
            counts[outcome] += 1
            if outcome != "unchanged" and state == DraftState.PENDING_REVIEW:
                awaiting += 1
        handle.output = {"drafts": ids, "inputs": fingerprint, **counts}
    return StageResult(STAGE, "done", Drafted(ids, awaiting))


def run(ctx: Context, narrative_id: str, *, force: bool = False) -> list[int]:
    """Create or refresh the narrative's drafts; returns their ids (on-topic targets only)."""
    return make_drafts(ctx, narrative_id, force=force).record.ids
