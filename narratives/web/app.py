"""The review web app: a queue of drafts and one page per draft, server-rendered.

Everything works without JavaScript except media playback; the one script (a static file,
so the CSP can forbid inline scripts) adds a live grapheme counter and click-to-seek.
Pages are plain `def` functions run in the thread pool, because the database calls block.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
import sqlalchemy as sa
from jinja2.sandbox import SandboxedEnvironment
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from narratives.core.campaigns import Campaign, load_campaigns
from narratives.core.errors import ConfigError, NarrativesError, NotFound, UsageError
from narratives.core.workspace import DEFAULTS_ROOT
from narratives.records.transcript import Transcript
from narratives.stages.draft.stage import (
    BLUESKY_LIMIT,
    clock,
    count_graphemes,
    join_posts,
    split_posts,
)
from narratives.store.context import Context
from narratives.store.schema import narrative_paths
from narratives.store.users import authenticate, end_sessions
from narratives.web.assign_pages import AssignPages, OutputJobs, _note_sentence, story_title
from narratives.web.consent_pages import ConsentPages
from narratives.web.fidelity import quote_edited, quote_forms
from narratives.web.public import routes as public_routes
from narratives.web.schedule_pages import DELIVERY_LABELS, SchedulePages
from narratives.web.security import (
    AuthGate,
    LoginLimiter,
    SecurityHeaders,
    csrf_ok,
    csrf_token,
    current_user,
    session_secret,
)
from narratives.workflow import assignments, review

__all__ = ["create_app", "SESSION_COOKIE", "SESSION_MAX_AGE"]

SESSION_COOKIE = "narratives_session"
SESSION_MAX_AGE = 12 * 60 * 60


class _IdConvertor(Convertor[int]):
    """A database id in a path: digits that fit a 64-bit integer, so a longer one is a 404
    rather than an OverflowError (a 500) in the database driver."""

    regex = "[0-9]{1,18}"

    def convert(self, value: str) -> int:
        return int(value)

    def to_string(self, value: int) -> str:
        return str(value)


register_url_convertor("id", _IdConvertor())

#: User names are at most this long (users.py); longer input is cut before the limiter keys it.
_MAX_NAME = 64
_HEX_ID = re.compile(r"^[0-9a-f]{64}$")
#: The only media files the app serves, by name inside `media/work/<id>/`.
_MEDIA_KIND = re.compile(
    r"^(?:transcript\.vtt|video-[a-z0-9][a-z0-9-]*-(?:vertical|square)\.(?:mp4|vtt|png)|audio)$"
)
_MEDIA_TYPES = {".mp4": "video/mp4", ".vtt": "text/vtt", ".png": "image/png"}
_AUDIO_TYPES = {
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".ogg": "audio/ogg",
    ".flac": "audio/flac",
    ".mp4": "video/mp4",
}
_STATIC = {"review.css": "text/css; charset=utf-8", "review.js": "text/javascript; charset=utf-8"}
_STATE_LABELS = {
    "pending_review": "Pending review",
    "approved": "Approved",
    "rejected": "Rejected",
    "changes_requested": "Changes requested",
}


def _template_dirs(ctx: Context) -> list[Path]:
    # The workspace's own copy wins, so organisations can restyle; the shipped one is the fallback.
    dirs = [ctx.workspace.templates_dir / "web", DEFAULTS_ROOT / "templates" / "web"]
    return [d for d in dirs if d.is_dir()]


def _environment(ctx: Context) -> jinja2.Environment:
    # Sandboxed: a workspace may override these templates, and a template must not be a way
    # to run code on the server.
    env = SandboxedEnvironment(
        loader=jinja2.FileSystemLoader([str(d) for d in _template_dirs(ctx)]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["timestamp"] = _timestamp
    env.filters["when"] = lambda dt: dt.strftime("%Y-%m-%d %H:%M UTC") if dt else ""
    env.filters["state_label"] = lambda s: _STATE_LABELS.get(s, s)
    env.filters["delivery_label"] = lambda s: DELIVERY_LABELS.get(s, s)
    env.filters["score"] = lambda x: f"{x:.2f}" if isinstance(x, int | float) else "—"
    return env


def _timestamp(seconds: float) -> str:
    seconds = int(seconds or 0)
    return f"{seconds // 60}:{seconds % 60:02d}"


class _App(SchedulePages, ConsentPages, AssignPages):
    def __init__(self, ctx: Context, limiter: LoginLimiter) -> None:
        self.ctx = ctx
        self.env = _environment(ctx)
        self.limiter = limiter
        self.jobs = OutputJobs(ctx)

    # -- rendering -------------------------------------------------------------------------

    def render(self, request: Request, name: str, status: int = 200, **context) -> HTMLResponse:
        session = request.scope.get("session", {})
        state = request.scope.get("state") or {}
        html = self.env.get_template(name).render(
            request=request,
            user=state.get("user"),
            csrf=csrf_token(session),
            flash=session.pop("flash", None),
            flash_error=session.pop("flash_error", None),
            **context,
        )
        return HTMLResponse(html, status_code=status)

    def error_page(self, request: Request, status: int, message: str, hint: str | None = None):
        titles = {
            400: "That request was not understood",
            401: "Please log in",
            403: "Not allowed",
            404: "Not found",
            409: "Not possible right now",
            422: "Cannot use that",
            429: "Too many attempts",
        }
        return self.render(
            request,
            "error.html",
            status=status,
            title=titles.get(status, "Something went wrong"),
            message=message,
            hint=hint,
        )

    def _campaign_map(self) -> dict[str, Campaign]:
        return _campaigns(self.ctx)

    # -- login -----------------------------------------------------------------------------

    def login_form(self, request: Request) -> HTMLResponse:
        return self.render(
            request, "login.html", next=_safe_next(request.query_params.get("next")), error=None
        )

    async def login(self, request: Request) -> Response:
        form = await request.form()
        if not csrf_ok(request.session, form.get("csrf")):
            return self.error_page(
                request, 403, "The form expired.", "Reload the login page and try again."
            )
        name = str(form.get("name") or "").strip().lower()[:_MAX_NAME]
        password = str(form.get("password") or "")
        nxt = _safe_next(str(form.get("next") or ""))
        address = request.client.host if request.client else "unknown"
        wait = self.limiter.acquire(name, address)
        if wait:
            response = self.error_page(
                request,
                429,
                "Too many failed logins for this name.",
                f"Wait {int(wait // 60) + 1} minutes and try again.",
            )
            response.headers["Retry-After"] = str(int(wait))
            return response
        user = await run_in_threadpool(authenticate, self.ctx, name, password)
        if user is None:  # the attempt reserved above stays counted as a failure
            return self.render(
                request, "login.html", status=400, next=nxt, error="Wrong name or password."
            )
        self.limiter.succeeded(name, address)
        # A fresh session (and CSRF token) at login: no fixation of a pre-login session.
        request.session.clear()
        request.session["uid"] = user.id
        request.session["epoch"] = user.session_epoch
        csrf_token(request.session)
        return RedirectResponse(nxt or "/", status_code=303)

    def logout(self, request: Request, form: FormData) -> Response:
        # The cookie is the whole session: end it on the server side too, so a copy of it
        # stops working.
        end_sessions(self.ctx, current_user(request).id)
        request.session.clear()
        return RedirectResponse("/login", status_code=303)

    # -- pages -----------------------------------------------------------------------------

    def queue(self, request: Request) -> HTMLResponse:
        q = request.query_params
        filters = {k: (q.get(k) or "").strip() or None for k in ("campaign", "channel", "state")}
        filters["tag"] = (q.get("tag") or "").strip() or None
        found = review.list_drafts(self.ctx, **filters)
        campaigns = _campaigns(self.ctx)
        tags = sorted({t.name for c in campaigns.values() for t in c.tags})
        counts: dict[str, int] = {}
        for d in review.list_drafts(self.ctx):
            counts[d.state] = counts.get(d.state, 0) + 1
        quotes: dict[str, list[str]] = {}
        edited_quotes = set()
        for d in found:
            if d.narrative_id not in quotes:
                folder = self.ctx.workspace.narrative_dir(d.narrative_id)
                analysis = _read_json(folder / "analysis.json") or {}
                quotes[d.narrative_id] = quote_forms(self.ctx, d.narrative_id, analysis)
            if quote_edited(d, quotes[d.narrative_id]):
                edited_quotes.add(d.id)
        return self.render(
            request,
            "queue.html",
            drafts=found,
            filters=filters,
            campaigns=campaigns,
            tags=tags,
            states=review.STATES,
            counts=counts,
            edited_quotes=edited_quotes,
            **self.queue_assign_context(),
        )

    def draft_page(self, request: Request) -> HTMLResponse:
        draft = review.get_draft(self.ctx, _draft_id(request))
        return self.render(request, "draft.html", **self._draft_context(draft))

    def _draft_context(self, draft: review.Draft) -> dict[str, Any]:
        ctx = self.ctx
        folder = ctx.workspace.narrative_dir(draft.narrative_id)
        analysis = _read_json(folder / "analysis.json") or {}
        transcript_data = _read_json(folder / "transcript.json")
        transcript = Transcript.from_dict(transcript_data) if transcript_data else None
        campaign = _campaigns(ctx).get(draft.campaign)
        media = _media_for(ctx, draft)
        seek_base = media["src"] if media else ""
        fit = (analysis.get("campaigns") or {}).get(draft.campaign) or {}
        scores = {t.get("name"): t.get("score") for t in fit.get("tags") or []}
        corrections: dict[str, bool] = {}
        for c in review.tag_corrections_for(ctx, draft.narrative_id):
            if c["campaign"] == draft.campaign:
                corrections[c["tag"]] = c["applies"]
        tag_rows = []
        names = [t.name for t in campaign.tags] if campaign else list(scores)
        for name in sorted(names, key=lambda n: -(scores.get(n) or 0)):
            score = scores.get(name)
            tag_rows.append(
                {
                    "name": name,
                    "score": score,
                    "above": score is not None
                    and campaign is not None
                    and score >= campaign.tag_threshold,
                    "correction": corrections.get(name),
                }
            )
        note_threshold = campaign.content_notes.threshold if campaign else 0.35
        notes = [
            {
                "name": n.get("name"),
                "score": n.get("score"),
                "flag": n.get("score", 0) >= note_threshold,
            }
            for n in sorted(analysis.get("content_notes") or [], key=lambda n: -n.get("score", 0))
        ]
        posts = [
            {"text": t, "count": count_graphemes(t), "over": count_graphemes(t) > BLUESKY_LIMIT}
            for t in draft.posts
        ]
        cut = draft.data.get("video_cut")
        excerpt = (
            {
                "ranges": [f"{clock(a)}–{clock(b)}" for a, b in cut["kept"]],
                "length": clock(cut["seconds"]),
                "of": clock(cut["of"]),
            }
            if isinstance(cut, dict) and cut.get("kept")
            else None
        )
        return {
            "draft": draft,
            "campaign": campaign,
            "analysis": analysis,
            "summary": analysis.get("summary_text") or "",
            "quote": (analysis.get("quote") or {}).get("text", ""),
            "transcript": _transcript_rows(transcript, analysis, seek_base),
            "media": media,
            "excerpt": excerpt,
            "posts": posts,
            "edit_text": join_posts(draft.posts) if draft.channel == "bluesky" else "",
            "limit": BLUESKY_LIMIT,
            "problems": review.problems(draft),
            "tag_rows": tag_rows,
            "notes": notes,
            "quote_edited": quote_edited(draft, quote_forms(ctx, draft.narrative_id, analysis)),
            **self.consent_context(draft, analysis),
            **self.campaigns_context(draft.narrative_id, analysis),
            **self.schedule_context(draft, campaign),
            "comments": review.list_comments(ctx, draft.id),
            "history": [
                _history_row(h) for h in reversed(review.history(ctx, draft.id, related=True))
            ],
            "state_labels": _STATE_LABELS,
            "handle": (
                campaign.channels.bluesky.handle
                if campaign and campaign.channels.bluesky
                else draft.campaign
            ),
        }

    # -- actions (CSRF checked before any of these runs) -----------------------------------

    def _back(self, request: Request, draft_id: int, flash: str) -> RedirectResponse:
        request.session["flash"] = flash
        return RedirectResponse(f"/drafts/{draft_id}", status_code=303)

    def approve(self, request: Request, form: FormData) -> Response:
        draft_id = _draft_id(request)
        # The form says which text was read: approving another is refused (409).
        seen = _text(form, "version") or "missing"
        review.approve(self.ctx, draft_id, actor=current_user(request).name, seen=seen)
        return self._back(request, draft_id, "Approved. It can now be scheduled.")

    def reject(self, request: Request, form: FormData) -> Response:
        draft_id = _draft_id(request)
        review.reject(
            self.ctx, draft_id, actor=current_user(request).name, reason=_text(form, "reason")
        )
        return self._back(request, draft_id, "Rejected.")

    def request_changes(self, request: Request, form: FormData) -> Response:
        draft_id = _draft_id(request)
        review.request_changes(
            self.ctx, draft_id, actor=current_user(request).name, reason=_text(form, "reason")
        )
        return self._back(request, draft_id, "Changes requested.")

    def edit(self, request: Request, form: FormData) -> Response:
        draft_id = _draft_id(request)
        draft = review.get_draft(self.ctx, draft_id)
        if draft.channel == "bluesky":
            posts = split_posts(_text(form, "text"))
            if not posts:
                raise UsageError("The post text is empty.", hint="Write at least one post.")
            changes: dict[str, Any] = {
                "posts": posts,
                "alt": _text(form, "alt"),
                "content_warning": _text(form, "content_warning") or None,
            }
        else:
            changes = {k: _text(form, k) for k in ("title", "summary", "content")}
        before = draft.content
        seen = _text(form, "version") or "missing"
        draft = review.edit(
            self.ctx, draft_id, changes, actor=current_user(request).name, seen=seen
        )
        if draft.content == before:
            return self._back(request, draft_id, "Nothing changed.")
        note = " It is back in review." if draft.state == "pending_review" else ""
        return self._back(request, draft_id, "Saved." + note)

    def comment(self, request: Request, form: FormData) -> Response:
        draft_id = _draft_id(request)
        review.comment(self.ctx, draft_id, _text(form, "body"), actor=current_user(request).name)
        return self._back(request, draft_id, "Comment added.")

    def correct_tag(self, request: Request, form: FormData) -> Response:
        draft_id = _draft_id(request)
        draft = review.get_draft(self.ctx, draft_id)
        applies = _text(form, "applies")
        if applies not in ("1", "0"):
            raise UsageError("Choose whether the tag applies.")
        tag = _text(form, "tag")
        actor = current_user(request).name
        nid = draft.narrative_id
        before = [r.campaign for r in assignments.routes(self.ctx, nid)]
        review.correct_tag(self.ctx, nid, draft.campaign, tag, applies == "1", actor=actor)
        change = assignments.route_change(self.ctx, nid, before, actor=actor)
        message = f"Tag correction for “{tag}” saved."
        title = story_title(self.ctx, nid)
        for slug in change.gained:
            name = self._campaign_name(slug)
            self.jobs.submit(nid, slug, campaign_name=name, title=title, actor=actor)
            message += f" Its tags now send it to {name}: its drafts are being made."
        for slug in change.lost:
            message += f" Its tags no longer send it to {self._campaign_name(slug)}."
        message += "".join(" " + _note_sentence(n) for n in change.notes)
        return self._back(request, draft_id, message)

    # -- files -----------------------------------------------------------------------------

    def media(self, request: Request) -> Response:
        narrative_id = request.path_params["narrative_id"]
        kind = request.path_params["kind"]
        path, media_type = _resolve_media(self.ctx, narrative_id, kind)
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private"})

    def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            raise NotFound("no such file")
        for folder in _template_dirs(self.ctx):
            path = folder / "static" / name
            if path.is_file():
                return FileResponse(path, media_type=_STATIC[name])
        raise NotFound("no such file")


def _safe_next(value: str | None) -> str:
    """Only same-site paths: no scheme, host or protocol-relative `//` (no open redirect)."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return ""
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return ""
    return value


def _draft_id(request: Request) -> int:
    return int(request.path_params["draft_id"])


def _text(form: FormData, key: str) -> str:
    value = form.get(key)
    return value.replace("\r\n", "\n") if isinstance(value, str) else ""


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _campaigns(ctx: Context) -> dict[str, Campaign]:
    try:
        return {c.slug: c for c in load_campaigns(ctx.workspace)}
    except ConfigError:
        return {}


def _resolve_media(ctx: Context, narrative_id: str, kind: str) -> tuple[Path, str]:
    """A file of the narrative by kind; never a path from the request."""
    if not _HEX_ID.match(narrative_id) or not _MEDIA_KIND.match(kind):
        raise NotFound("no such file")
    ws = ctx.workspace
    if kind == "audio":
        with ctx.db.connect() as conn:
            paths = conn.execute(
                sa.select(narrative_paths.c.path).where(
                    narrative_paths.c.narrative_id == narrative_id
                )
            ).scalars()
            candidates = [Path(p) for p in paths]
        for p in candidates:
            p = p if p.is_absolute() else ws.root / p
            media_type = _AUDIO_TYPES.get(p.suffix.lower())
            if media_type and p.is_file() and ws.contains(p):
                return p.resolve(), media_type
        raise NotFound("no recording for this narrative in the workspace")
    path = ws.narrative_dir(narrative_id) / kind
    if not path.is_file() or not ws.contains(path):
        raise NotFound("no such file")
    return path.resolve(), _MEDIA_TYPES.get(path.suffix, "application/octet-stream")


def _media_for(ctx: Context, draft: review.Draft) -> dict[str, Any] | None:
    """The player's source: the draft's video, another render for its campaign, or the audio."""
    nid = draft.narrative_id
    names = []
    rel = draft.content.get("video") or draft.content.get("enclosure")
    if rel:
        names.append(Path(rel).name)
    folder = ctx.workspace.narrative_dir(nid)
    names += [f"video-{draft.campaign}-{fmt}.mp4" for fmt in ("vertical", "square")]
    for name in names:
        if _MEDIA_KIND.match(name) and (folder / name).is_file():
            vtt = folder / name.replace(".mp4", ".vtt")
            png = folder / name.replace(".mp4", ".png")
            return {
                "kind": "video",
                "src": f"/media/{nid}/{name}",
                "captions": f"/media/{nid}/{vtt.name}" if vtt.is_file() else None,
                "poster": f"/media/{nid}/{png.name}" if png.is_file() else None,
                "vertical": "vertical" in name,
            }
    try:
        _resolve_media(ctx, nid, "audio")
    except NotFound:
        return None
    captions = folder / "transcript.vtt"
    return {
        "kind": "audio",
        "src": f"/media/{nid}/audio",
        "captions": f"/media/{nid}/transcript.vtt" if captions.is_file() else None,
        "poster": None,
        "vertical": False,
    }


def _intervals(analysis: dict[str, Any]) -> tuple[list[tuple[float, float]], list]:
    quote = analysis.get("quote") or {}
    quotes = []
    if isinstance(quote.get("start"), int | float) and isinstance(quote.get("end"), int | float):
        quotes.append((quote["start"], quote["end"]))
    summary = [
        (s["start"], s["end"])
        for s in analysis.get("summary") or []
        if isinstance(s.get("start"), int | float) and isinstance(s.get("end"), int | float)
    ]
    return quotes, summary


def _mark(start: float, end: float, quotes, summary) -> str:
    mid = (start + end) / 2
    if any(a <= mid <= b for a, b in quotes):
        return "quote"
    if any(a <= mid <= b for a, b in summary):
        return "summary"
    return ""


def _transcript_rows(
    transcript: Transcript | None, analysis: dict[str, Any], seek_base: str
) -> list[dict[str, Any]]:
    """Segments with their words grouped into runs marked quote / summary / plain."""
    if transcript is None:
        return []
    quotes, summary = _intervals(analysis)
    rows = []
    for seg in transcript.segments:
        runs: list[dict[str, str]] = []
        words = seg.words or []
        if not words:
            runs.append({"mark": _mark(seg.start, seg.end, quotes, summary), "text": seg.text})
        for w in words:
            mark = _mark(w.start, w.end, quotes, summary)
            if runs and runs[-1]["mark"] == mark:
                runs[-1]["text"] += w.text
            else:
                runs.append({"mark": mark, "text": w.text})
        if runs:
            runs[0]["text"] = runs[0]["text"].lstrip()
        rows.append(
            {
                "start": seg.start,
                "href": f"{seek_base}#t={seg.start:.1f}",
                "runs": runs,
            }
        )
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


def _history_row(entry: dict[str, Any]) -> dict[str, Any]:
    before, after = entry.get("before") or {}, entry.get("after") or {}
    changes = []
    diff = ""
    if isinstance(before, dict) and isinstance(after, dict):
        if "state" in after and before.get("state") != after.get("state"):
            old = _STATE_LABELS.get(before.get("state"), before.get("state") or "new")
            changes.append(f"{old} → {_STATE_LABELS.get(after['state'], after['state'])}")
        if "content" in before and "content" in after and before["content"] != after["content"]:
            changes.append("text changed")
            diff = _text_diff(before["content"], after["content"])
        if "body" in after:
            changes.append(f"“{after['body'][:120]}”")
    labels = {
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
    kind = entry.get("object_type", "draft")
    scope = {"delivery": f"delivery {entry.get('object_id')}", "narrative": "story"}
    return {
        "at": entry["at"],
        "actor": entry["actor"],
        "action": labels.get(entry["action"], entry["action"]),
        "scope": scope.get(kind, kind if kind != "draft" else ""),
        "changes": changes,
        "diff": diff,
        "detail": entry.get("detail"),
    }


def create_app(ctx: Context, *, limiter: LoginLimiter | None = None) -> Starlette:
    """The review app for a workspace; every route but the login page and static assets
    needs a logged-in user."""
    web = _App(ctx, limiter or LoginLimiter())

    def page(fn):
        async def endpoint(request: Request) -> Response:
            return await run_in_threadpool(fn, request)

        return endpoint

    def action(fn):
        # Every POST goes through here: the CSRF check cannot be forgotten on a new form.
        async def endpoint(request: Request) -> Response:
            form = await request.form()
            if not csrf_ok(request.session, form.get("csrf")):
                return web.error_page(
                    request,
                    403,
                    "The form's security token is missing or wrong.",
                    "Reload the page and try again.",
                )
            return await run_in_threadpool(fn, request, form)

        return endpoint

    routes = [
        Route("/login", page(web.login_form), methods=["GET"]),
        Route("/login", web.login, methods=["POST"]),
        Route("/logout", action(web.logout), methods=["POST"]),
        Route("/", page(web.queue), methods=["GET"]),
        Route("/drafts/{draft_id:id}", page(web.draft_page), methods=["GET"]),
        Route("/drafts/{draft_id:id}/approve", action(web.approve), methods=["POST"]),
        Route("/drafts/{draft_id:id}/reject", action(web.reject), methods=["POST"]),
        Route(
            "/drafts/{draft_id:id}/request-changes",
            action(web.request_changes),
            methods=["POST"],
        ),
        Route("/drafts/{draft_id:id}/edit", action(web.edit), methods=["POST"]),
        Route("/drafts/{draft_id:id}/comment", action(web.comment), methods=["POST"]),
        Route("/drafts/{draft_id:id}/tags", action(web.correct_tag), methods=["POST"]),
        Route("/drafts/{draft_id:id}/schedule", action(web.schedule_draft), methods=["POST"]),
        Route("/drafts/{draft_id:id}/consent", action(web.set_consent), methods=["POST"]),
        Route(
            "/drafts/{draft_id:id}/consent/withdraw",
            action(web.withdraw_consent),
            methods=["POST"],
        ),
        Route("/drafts/{draft_id:id}/hide", action(web.mark_term), methods=["POST"]),
        Route("/drafts/{draft_id:id}/unhide", action(web.unmark_term), methods=["POST"]),
        Route("/schedule", page(web.agenda), methods=["GET"]),
        Route("/unassigned", page(web.unassigned_page), methods=["GET"]),
        Route("/stories/{narrative_id}/assign", action(web.assign_story), methods=["POST"]),
        Route("/stories/{narrative_id}/unassign", action(web.unassign_story), methods=["POST"]),
        Route("/deliveries/{delivery_id:id}/cancel", action(web.cancel_delivery), methods=["POST"]),
        Route("/deliveries/{delivery_id:id}/move", action(web.move_delivery), methods=["POST"]),
        Route("/media/{narrative_id}/{kind}", page(web.media), methods=["GET"]),
        Route("/static/{name}", page(web.static), methods=["GET"]),
        # Public: feeds and their enclosures only (no login; see narratives.web.public).
        *public_routes,
    ]

    async def on_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, NarrativesError):
            return web.error_page(request, exc.http_status, str(exc), exc.hint)
        assert isinstance(exc, HTTPException)
        messages = {404: "There is no page here.", 405: "That action is not available here."}
        return web.error_page(
            request, exc.status_code, messages.get(exc.status_code, str(exc.detail))
        )

    middleware = [
        Middleware(SecurityHeaders),
        Middleware(
            SessionMiddleware,
            secret_key=session_secret(ctx.workspace),
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_MAX_AGE,
            same_site="lax",
            https_only=ctx.settings.serve.secure_cookies,
        ),
        Middleware(AuthGate, ctx=ctx),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={NarrativesError: on_error, HTTPException: on_error},
    )
    app.state.workspace = ctx.workspace
    # The background jobs that make videos and drafts after an assignment (tests wait on it).
    app.state.output_jobs = web.jobs
    return app
