"""The draft page: the post as it will look, the recording with its transcript (quote and
summary marked), the analysis's tags and content notes, and the panels of the other views
(schedule, campaigns, consent), comments and the audit log."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse

from narratives.channels.bluesky.text import MAX_GRAPHEMES as BLUESKY_LIMIT
from narratives.channels.bluesky.text import count_graphemes
from narratives.core.campaigns import BLUESKY, Campaign
from narratives.records.analysis import Analysis
from narratives.records.draft import (
    CHANGES_REQUESTABLE,
    REJECTABLE,
    Comment,
    Draft,
    DraftState,
)
from narratives.records.transcript import Transcript
from narratives.stages.draft.stage import clock
from narratives.stages.draft.templates import join_posts
from narratives.store.narrative_files import read_analysis, read_transcript
from narratives.web.fidelity import quote_edited, quote_forms
from narratives.web.templating import STATE_LABELS
from narratives.web.views.assign import CampaignsPanel, campaigns_panel
from narratives.web.views.base import Endpoint, Site, View, campaign_map, draft_id
from narratives.web.views.consent import ConsentPanel, consent_panel
from narratives.web.views.files import Player, player_for
from narratives.web.views.schedule import SchedulePanel, schedule_panel
from narratives.workflow import review

__all__ = ["DraftPage", "DraftView", "draft_page"]

_HISTORY_LABELS = {
    "draft.create": "created",
    "draft.regenerate": "regenerated",
    "draft.edit": "edited",
    "draft.approve": "approved",
    "draft.reject": "rejected",
    "draft.request_changes": "requested changes",
    "draft.comment": "commented",
    "campaign.assign": "assigned a campaign",
    "campaign.unassign": "unassigned a campaign",
}


@dataclass
class PostRow:
    text: str
    count: int
    #: Longer than Bluesky allows.
    over: bool


@dataclass
class Excerpt:
    """The video is a cut of a longer recording: which parts it keeps."""

    ranges: list[str]
    length: str
    of: str


@dataclass
class TagRow:
    name: str
    score: float | None
    #: At or over the campaign's threshold: the tag applies.
    above: bool
    #: An editor's correction: True applies, False does not, None none.
    correction: bool | None


@dataclass
class NoteRow:
    name: str | None
    score: float | None
    #: At or over the campaign's content-note threshold.
    flag: bool


@dataclass
class Run:
    """Words of one transcript segment that are all quote, all summary or all plain."""

    mark: str
    text: str


@dataclass
class TranscriptRow:
    start: float
    #: The player's source at the segment's start (click to seek).
    href: str
    runs: list[Run]


@dataclass
class HistoryRow:
    at: datetime
    actor: str
    action: str
    #: "" for the draft itself, else what the entry is about ("story", "delivery 3").
    scope: str
    changes: list[str]
    #: What an edit changed, as unified-diff lines.
    diff: str
    detail: str | None


@dataclass
class DraftPage:
    draft: Draft
    campaign: Campaign | None
    #: The captions' language (the analysis's, else English).
    caption_lang: str
    summary: str
    quote: str
    transcript: list[TranscriptRow]
    media: Player | None
    excerpt: Excerpt | None
    posts: list[PostRow]
    #: The thread as one text, posts separated by `---` lines (Bluesky only).
    edit_text: str
    limit: int
    problems: list[str]
    tag_rows: list[TagRow]
    notes: list[NoteRow]
    quote_edited: bool
    consent: ConsentPanel
    routing: CampaignsPanel
    schedule: SchedulePanel
    comments: list[Comment]
    history: list[HistoryRow]
    #: Who the preview shows as the poster.
    handle: str
    #: A thread of posts (Bluesky) rather than a feed item: which preview and edit form.
    thread: bool = False
    #: What the editor may do now, from the draft rules (`records.draft`).
    can_approve: bool = False
    can_request_changes: bool = False
    can_reject: bool = False
    approved: bool = False


class DraftView(View):
    def endpoints(self) -> list[Endpoint]:
        return [Endpoint("GET", "/drafts/{draft_id:id}", self.draft_page, "page")]

    def draft_page(self, request: Request) -> HTMLResponse:
        draft = review.get_draft(self.ctx, draft_id(request))
        return self.render(request, "draft.html", draft_page(self.site, draft))


def draft_page(site: Site, draft: Draft) -> DraftPage:
    ctx = site.ctx
    analysis = read_analysis(ctx.workspace, draft.narrative_id)
    transcript = read_transcript(ctx.workspace, draft.narrative_id)
    campaign = campaign_map(ctx).get(draft.campaign)
    media = player_for(ctx, draft)
    return DraftPage(
        draft=draft,
        campaign=campaign,
        caption_lang=(analysis.language if analysis else "") or "en",
        summary=analysis.summary_text if analysis else "",
        quote=analysis.quote.text if analysis and analysis.quote else "",
        transcript=_transcript_rows(transcript, analysis, media.src if media else ""),
        media=media,
        excerpt=_excerpt(draft.data.get("video_cut")),
        posts=[
            PostRow(t, count_graphemes(t), count_graphemes(t) > BLUESKY_LIMIT) for t in draft.posts
        ],
        edit_text=join_posts(draft.posts) if draft.channel == BLUESKY else "",
        limit=BLUESKY_LIMIT,
        problems=review.problems(draft),
        tag_rows=_tag_rows(ctx, draft, campaign, analysis),
        notes=_note_rows(campaign, analysis),
        quote_edited=quote_edited(draft, quote_forms(ctx, draft.narrative_id, analysis)),
        consent=consent_panel(ctx, draft, analysis),
        routing=campaigns_panel(ctx, site.jobs, draft.narrative_id, analysis),
        schedule=schedule_panel(ctx, draft, campaign),
        thread=draft.channel == BLUESKY,
        can_approve=draft.state == DraftState.PENDING_REVIEW,
        can_request_changes=draft.state in CHANGES_REQUESTABLE,
        can_reject=draft.state in REJECTABLE,
        approved=draft.state == DraftState.APPROVED,
        comments=review.list_comments(ctx, draft.id),
        history=[_history_row(h) for h in reversed(review.history(ctx, draft.id, related=True))],
        handle=(
            campaign.channels.bluesky.handle
            if campaign and campaign.channels.bluesky
            else draft.campaign
        ),
    )


def _tag_rows(
    ctx, draft: Draft, campaign: Campaign | None, analysis: Analysis | None
) -> list[TagRow]:
    """The campaign's tags, best score first, with the editors' corrections."""
    fit = analysis.fit(draft.campaign) if analysis else None
    scores = {t.name: t.score for t in fit.tags} if fit else {}
    corrections: dict[str, bool] = {}
    for c in review.tag_corrections_for(ctx, draft.narrative_id):
        if c["campaign"] == draft.campaign:
            corrections[c["tag"]] = c["applies"]
    names = [t.name for t in campaign.tags] if campaign else list(scores)
    rows = []
    for name in sorted(names, key=lambda n: -(scores.get(n) or 0)):
        score = scores.get(name)
        above = score is not None and campaign is not None and score >= campaign.tag_threshold
        rows.append(TagRow(name, score, above, corrections.get(name)))
    return rows


def _note_rows(campaign: Campaign | None, analysis: Analysis | None) -> list[NoteRow]:
    threshold = campaign.content_notes.threshold if campaign else 0.35
    notes = sorted(analysis.content_notes if analysis else [], key=lambda n: -n.score)
    return [NoteRow(n.name, n.score, n.score >= threshold) for n in notes]


def _excerpt(cut: Any) -> Excerpt | None:
    if not (isinstance(cut, dict) and cut.get("kept")):
        return None
    return Excerpt(
        ranges=[f"{clock(a)}–{clock(b)}" for a, b in cut["kept"]],
        length=clock(cut["seconds"]),
        of=clock(cut["of"]),
    )


def _intervals(analysis: Analysis | None) -> tuple[list[tuple[float, float]], list]:
    """Where the quote and the summary sentences are spoken."""
    if analysis is None:
        return [], []
    quotes = [(analysis.quote.start, analysis.quote.end)] if analysis.quote else []
    return quotes, [(s.start, s.end) for s in analysis.summary]


def _mark(start: float, end: float, quotes, summary) -> str:
    mid = (start + end) / 2
    if any(a <= mid <= b for a, b in quotes):
        return "quote"
    if any(a <= mid <= b for a, b in summary):
        return "summary"
    return ""


def _transcript_rows(
    transcript: Transcript | None, analysis: Analysis | None, seek_base: str
) -> list[TranscriptRow]:
    """Segments with their words grouped into runs marked quote / summary / plain."""
    if transcript is None:
        return []
    quotes, summary = _intervals(analysis)
    rows = []
    for seg in transcript.segments:
        runs: list[Run] = []
        words = seg.words or []
        if not words:
            runs.append(Run(_mark(seg.start, seg.end, quotes, summary), seg.text))
        for w in words:
            mark = _mark(w.start, w.end, quotes, summary)
            if runs and runs[-1].mark == mark:
                runs[-1].text += w.text
            else:
                runs.append(Run(mark, w.text))
        if runs:
            runs[0].text = runs[0].text.lstrip()
        rows.append(TranscriptRow(seg.start, f"{seek_base}#t={seg.start:.1f}", runs))
    return rows


def _content_lines(content: Any) -> list[str]:
    if not isinstance(content, dict):
        return [str(content)]
    if "posts" in content:
        texts = [p.get("text", "") if isinstance(p, dict) else str(p) for p in content["posts"]]
        return "\n---\n".join(texts).splitlines()
    parts = [str(content.get(k) or "") for k in ("title", "summary", "content")]
    return "\n---\n".join(parts).splitlines()


def _text_diff(before: Any, after: Any) -> str:
    """What an edit changed, as unified-diff lines (- removed, + added)."""
    lines = difflib.unified_diff(
        _content_lines(before), _content_lines(after), "before", "after", n=1, lineterm=""
    )
    return "\n".join(list(lines)[2:])


def _history_row(entry: dict[str, Any]) -> HistoryRow:
    before, after = entry.get("before") or {}, entry.get("after") or {}
    changes = []
    diff = ""
    if isinstance(before, dict) and isinstance(after, dict):
        if "state" in after and before.get("state") != after.get("state"):
            old = STATE_LABELS.get(before.get("state"), before.get("state") or "new")
            changes.append(f"{old} → {STATE_LABELS.get(after['state'], after['state'])}")
        if "content" in before and "content" in after and before["content"] != after["content"]:
            changes.append("text changed")
            diff = _text_diff(before["content"], after["content"])
        if "body" in after:
            changes.append(f"“{after['body'][:120]}”")
    kind = entry.get("object_type", "draft")
    scope = {"delivery": f"delivery {entry.get('object_id')}", "narrative": "story"}
    return HistoryRow(
        at=entry["at"],
        actor=entry["actor"],
        action=_HISTORY_LABELS.get(entry["action"], entry["action"]),
        scope=scope.get(kind, kind if kind != "draft" else ""),
        changes=changes,
        diff=diff,
        detail=entry.get("detail"),
    )
