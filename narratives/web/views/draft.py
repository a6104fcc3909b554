"""The draft page: the post as it will look, the recording with its transcript (quote and
summary marked), the analysis's tags and content notes, and the panels of the other views
(schedule, campaigns, consent), comments and the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse

from narratives.channels.bluesky.text import MAX_GRAPHEMES as BLUESKY_LIMIT
from narratives.channels.bluesky.text import count_graphemes
from narratives.core.campaigns import BLUESKY, Campaign
from narratives.core.clock import utcnow
from narratives.policy.consent import consent_problem
from narratives.records.analysis import Analysis
from narratives.records.consent import Consent
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
from narratives.store import drafts as draft_rows
from narratives.store.narrative_files import read_analysis, read_transcript
from narratives.web.audit_words import AuditRow, audit_row, tag_model_scores
from narratives.web.fidelity import quote_edited, quote_forms
from narratives.web.views.assign import CampaignsPanel, campaigns_panel
from narratives.web.views.base import Endpoint, Site, View, campaign_map, draft_id
from narratives.web.views.consent import ConsentPanel, consent_panel
from narratives.web.views.files import Player, player_for
from narratives.web.views.schedule import SchedulePanel, schedule_panel
from narratives.workflow import review

__all__ = ["Decision", "DraftPage", "DraftView", "draft_page", "decision_for"]

#: Someone whose page view is older than this no longer counts as having the draft open.
VIEWER_WINDOW = timedelta(minutes=2)


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
    #: The tag applies (its score reached its threshold, or an editor said so).
    above: bool
    #: An editor's correction: True applies, False does not, None none.
    correction: bool | None
    #: The model's score before an editor first corrected the tag (None: never corrected).
    model_score: float | None = None


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
class Decision:
    """The decision panel: the consent beside Approve, and why Approve or Schedule is off.

    The buttons are only a courtesy: review and scheduling refuse the same cases again."""

    #: active | missing | withdrawn | expired | narrower (does not cover this channel)
    consent_state: str
    #: The consent's scope in words ("Bluesky and RSS/Atom, may be named, given by ...").
    consent_text: str
    #: Why the draft cannot be approved as it stands (consent, text), in sentences.
    approve_blocked: list[str]
    #: Why an approved draft cannot be scheduled now.
    schedule_blocked: list[str]
    #: The narrator withdrew consent: shown in place of the draft's state.
    withdrawn: bool


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
    #: What a tag's score must reach, in words ("0.55"; both thresholds when some tags are
    #: scored by their descriptions).
    tag_threshold: str
    notes: list[NoteRow]
    quote_edited: bool
    #: Which of the summary and the quote have an end guessed from unpunctuated words.
    guessed: list[str]
    consent: ConsentPanel
    routing: CampaignsPanel
    schedule: SchedulePanel
    comments: list[Comment]
    history: list[AuditRow]
    #: Who the preview shows as the poster.
    handle: str
    #: A thread of posts (Bluesky) rather than a feed item: which preview and edit form.
    thread: bool = False
    #: What the editor may do now, from the draft rules (`records.draft`).
    can_approve: bool = False
    can_request_changes: bool = False
    can_reject: bool = False
    approved: bool = False
    decision: Decision | None = None
    #: Other editors who have the page open now (the soft lock), most recent first.
    viewers: list[str] | None = None
    #: Why the last action was refused (a lost race, consent): shown on the page itself.
    refusal: str | None = None
    refusal_hint: str | None = None
    #: The editor's text that was not saved because someone changed the draft first.
    unsaved: dict[str, str] | None = None


class DraftView(View):
    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("GET", "/drafts/{draft_id:id}", self.draft_page, "page"),
            Endpoint("GET", "/drafts/{draft_id:id}/viewers", self.viewers, "page"),
        ]

    def viewers(self, request: Request) -> JSONResponse:
        """Who else has the draft open, for the page's script (every 30 s while it is open;
        each call also says this user still has it open)."""
        draft = review.get_draft(self.ctx, draft_id(request))
        user = request.scope["state"]["user"].name
        return JSONResponse({"viewers": _viewers(self.site, draft, user)})

    def draft_page(self, request: Request) -> HTMLResponse:
        draft = review.get_draft(self.ctx, draft_id(request))
        user = request.scope["state"]["user"].name
        return self.render(request, "draft.html", draft_page(self.site, draft, viewer=user))


def _viewers(site: Site, draft: Draft, viewer: str | None) -> list[str]:
    """Note that `viewer` has the page open, and say who else has (the soft lock)."""
    now = utcnow()
    with site.ctx.db.begin() as conn:
        if viewer:
            draft_rows.note_viewer(conn, draft.id, viewer, now)
        seen = draft_rows.viewers(conn, draft.id, now - VIEWER_WINDOW)
    return [name for name, _ in seen if name != viewer]


def decision_for(draft: Draft, record: Consent | None, problems: list[str]) -> Decision:
    now = utcnow()
    if record is None:
        state, text = "missing", "none recorded"
    else:
        state = record.status(now)
        if state == "active" and draft.channel not in record.channels:
            state = "narrower"
        scope = ", ".join(record.channels) or "no channel"
        named = "may be named" if not record.anonymous else "anonymous"
        text = f"{scope}; {named}; given by {record.given_by} on {record.given_at:%Y-%m-%d}"
    problem = consent_problem(record, draft.channel, now)
    blocked = ([problem[0].upper() + problem[1:] + "."] if problem else []) + [
        p[0].upper() + p[1:] + "." for p in problems
    ]
    return Decision(
        consent_state=state,
        consent_text=text,
        approve_blocked=blocked,
        schedule_blocked=blocked,
        withdrawn=state == "withdrawn",
    )


def draft_page(site: Site, draft: Draft, *, viewer: str | None = None) -> DraftPage:
    ctx = site.ctx
    analysis = read_analysis(ctx.workspace, draft.narrative_id)
    consent = consent_panel(ctx, draft, analysis)
    problems = review.problems(draft)
    transcript = read_transcript(ctx.workspace, draft.narrative_id)
    campaign = campaign_map(ctx).get(draft.campaign)
    media = player_for(ctx, draft)
    decision = decision_for(draft, consent.record, problems)
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
        problems=problems,
        tag_rows=_tag_rows(ctx, draft, campaign, analysis),
        tag_threshold=_tag_threshold(draft, campaign, analysis),
        notes=_note_rows(campaign, analysis),
        quote_edited=quote_edited(draft, quote_forms(ctx, draft.narrative_id, analysis)),
        guessed=_guessed(analysis),
        consent=consent,
        routing=campaigns_panel(ctx, site.jobs, draft.narrative_id, analysis),
        schedule=schedule_panel(ctx, draft, campaign),
        thread=draft.channel == BLUESKY,
        can_approve=draft.state == DraftState.PENDING_REVIEW and not decision.approve_blocked,
        can_request_changes=draft.state in CHANGES_REQUESTABLE,
        can_reject=draft.state in REJECTABLE,
        approved=draft.state == DraftState.APPROVED,
        comments=review.list_comments(ctx, draft.id),
        history=[audit_row(h) for h in reversed(review.history(ctx, draft.id, related=True))],
        handle=(
            campaign.channels.bluesky.handle
            if campaign and campaign.channels.bluesky
            else draft.campaign
        ),
        decision=decision,
        viewers=_viewers(site, draft, viewer),
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
    model = tag_model_scores(ctx, draft.narrative_id, draft.campaign) if corrections else {}
    # Whether each tag applies as the analysis decided it: a tag scored by its description
    # (too few examples) has its own threshold, and an editor's correction decides.
    applies = {t.name: t.applies for t in fit.tags} if fit else {}
    names = [t.name for t in campaign.tags] if campaign else list(scores)
    rows = []
    for name in sorted(names, key=lambda n: -(scores.get(n) or 0)):
        score = scores.get(name)
        above = applies.get(name)
        if above is None:  # an older analysis that did not record it
            above = score is not None and campaign is not None and score >= campaign.tag_threshold
        rows.append(TagRow(name, score, above, corrections.get(name), model.get(name)))
    return rows


def _tag_threshold(draft: Draft, campaign: Campaign | None, analysis: Analysis | None) -> str:
    """The score a tag must reach, as the analysis scored the campaign's tags: the threshold
    the analysis used (the tag rows show its decisions), not the campaign's current one, which
    may have changed since."""
    if campaign is None:
        return ""
    fit = analysis.fit(draft.campaign) if analysis else None
    learnt, described = campaign.tag_threshold, campaign.description_threshold
    used = fit.threshold if fit is not None and fit.threshold > 0 else None
    if fit is not None and fit.method == "description":
        described = used if used is not None else described
        return f"{described:.2f} (scored by the tags’ descriptions: too few example stories)"
    if fit is not None and fit.method == "mixed":
        described = used if used is not None else described
        return f"{learnt:.2f}, or {described:.2f} for tags scored by their descriptions"
    return f"{used if used is not None else learnt:.2f}"


def _guessed(analysis: Analysis | None) -> list[str]:
    """ "summary" and/or "quote" when an end of it was guessed (the transcript has neither
    punctuation nor a pause there): an editor should check it does not stop mid-sentence."""
    if analysis is None:
        return []
    out = []
    if not analysis.abstract and any(e.guessed for e in analysis.summary):
        out.append("summary")
    if analysis.quote is not None and analysis.quote.guessed:
        out.append("quote")
    return out


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
