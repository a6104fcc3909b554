"""The draft stage: one draft per campaign the narrative fits and per channel of that campaign.

Post copy comes from the workspace's Jinja2 templates (`templates/posts/*.j2`), rendered with
autoescape off (posts are plain text; each channel escapes at publish time) and StrictUndefined
(a misspelt variable is an error, not a silently empty post). A Bluesky template may ask for a
thread by putting a line `---` between posts; any post over 300 graphemes is split further.
An RSS template defines the blocks `title`, `summary` and `content`.

Regenerating never overwrites an editor: `generated` always holds the template's newest text,
`content` follows it only while the draft has not been edited. A changed text puts an approved
draft back into review, because what was approved is no longer what would go out.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grapheme
import jinja2
import sqlalchemy as sa
from jinja2.sandbox import SandboxedEnvironment

# One grapheme count and one thread splitter for drafting and publishing: the adapter's.
from narratives.channels.bluesky_text import MAX_GRAPHEMES as BLUESKY_LIMIT
from narratives.channels.bluesky_text import count_graphemes, split_thread
from narratives.core.campaigns import Campaign, load_campaigns
from narratives.core.errors import ConfigError, StageFailed
from narratives.core.workspace import Workspace
from narratives.policy.anonymise import for_publication, redact_draft
from narratives.policy.consent import is_anonymous
from narratives.policy.routing import explicit, routes
from narratives.records.draft import EDITABLE
from narratives.records.transcript import Transcript
from narratives.store import audit
from narratives.store.context import Context
from narratives.store.schema import drafts, stage_runs, utcnow
from narratives.store.stage_runs import get_run, stage_run

__all__ = [
    "STAGE",
    "ACTOR",
    "BLUESKY_LIMIT",
    "POST_SEPARATOR",
    "count_graphemes",
    "split_thread",
    "split_posts",
    "clock",
    "join_posts",
    "post_environment",
    "DraftTarget",
    "build_drafts",
    "run",
]

STAGE = "draft"
#: The audit log's actor for changes the pipeline makes on its own.
ACTOR = "narratives"
#: A line holding only this separates the posts of a thread (templates, editors, CLI).
POST_SEPARATOR = "---"
_SEPARATOR_LINE = re.compile(r"^[ \t]*-{3,}[ \t]*$", re.MULTILINE)

#: Formats preferred for the one video a post carries, in order.
_FORMAT_PREFERENCE = ("vertical", "square")
_ASPECT = {"vertical": [9, 16], "square": [1, 1]}
_ALT_LIMIT = 1000


def split_posts(text: str) -> list[str]:
    """Split text at `---` lines into stripped, non-empty posts (no length check)."""
    posts = []
    for part in _SEPARATOR_LINE.split(text.replace("\r\n", "\n")):
        part = re.sub(r"\n{3,}", "\n\n", part.strip())
        if part:
            posts.append(part)
    return posts


def join_posts(posts: list[str]) -> str:
    """The inverse of `split_posts`, for editing a thread as one text."""
    return f"\n\n{POST_SEPARATOR}\n\n".join(posts)


def post_environment(workspace: Workspace) -> jinja2.Environment:
    """The Jinja2 environment for post templates: plain text, strict, sandboxed."""
    return SandboxedEnvironment(
        loader=jinja2.FileSystemLoader(str(workspace.templates_dir)),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=False,
    )


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


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise StageFailed(f"{path}: cannot read: {exc}") from exc


def _rel(workspace: Workspace, path: Path) -> str:
    return path.relative_to(workspace.root).as_posix()


def _video(ctx: Context, narrative_id: str, campaign: Campaign) -> dict[str, Any]:
    """The rendered video for a campaign, from the render stage's `done` rows, if any."""
    formats = sorted(
        campaign.look.formats,
        key=lambda f: _FORMAT_PREFERENCE.index(f) if f in _FORMAT_PREFERENCE else 99,
    )
    folder = ctx.workspace.narrative_dir(narrative_id)
    for fmt in formats:
        run_ = get_run(ctx.db, narrative_id, "render", f"{campaign.slug}/{fmt}")
        if run_ is None or run_.status != "done":
            continue
        video = folder / f"video-{campaign.slug}-{fmt}.mp4"
        if not video.is_file():
            continue
        captions = video.with_suffix(".vtt")
        out = run_.output if isinstance(run_.output, dict) else {}
        aspect = _ASPECT.get(fmt)
        if isinstance(out.get("width"), int) and isinstance(out.get("height"), int):
            aspect = [out["width"], out["height"]]
        return {
            "video": _rel(ctx.workspace, video),
            "captions": _rel(ctx.workspace, captions) if captions.is_file() else None,
            "aspect_ratio": aspect,
            "format": fmt,
            "kept": _kept(out),
            "missing_glyphs": str(out.get("missing_glyphs") or ""),
        }
    return {
        "video": None,
        "captions": None,
        "aspect_ratio": None,
        "format": None,
        "kept": None,
        "missing_glyphs": "",
    }


def _kept(render_output: dict[str, Any]) -> list[list[float]] | None:
    """The recording's intervals a cut video keeps (render row `cut_ranges`), None if whole."""
    if not render_output.get("cut"):
        return None
    ranges = render_output.get("cut_ranges") or []
    return [[float(a), float(b)] for a, b in ranges] or None


def clock(seconds: float) -> str:
    """0:07, 2:45, 1:02:03: how a length reads in a post."""
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _notes(analysis: dict[str, Any], campaign: Campaign) -> tuple[list[str], list[str]]:
    """(content-warning names, Bluesky self-labels) for the notes above the policy threshold."""
    policy = campaign.content_notes
    warn: list[str] = []
    labels: list[str] = []
    for note in analysis.get("content_notes") or []:
        name, score = note.get("name"), note.get("score", 0)
        if not name or score < policy.threshold:
            continue
        if name in policy.warn and name not in warn:
            warn.append(name)
        label = policy.labels.get(name)
        if label and label not in labels:
            labels.append(label)
    return warn, labels


def _item_link(campaign: Campaign, narrative_id: str) -> str:
    # A stable per-story address under the campaign's public site; ids are hashes of the audio.
    return f"{campaign.link.rstrip('/')}/{narrative_id[:16]}"


def _render(env: jinja2.Environment, name: str, campaign: Campaign) -> tuple[jinja2.Template, str]:
    try:
        source, _, _ = env.loader.get_source(env, name)  # type: ignore[union-attr]
        return env.get_template(name), hashlib.sha256(source.encode("utf-8")).hexdigest()
    except jinja2.TemplateNotFound as exc:
        raise ConfigError(
            f"campaign {campaign.slug}: template {name!r} not found in templates/",
            hint="create it or fix `template` under [channels.*] in the campaign file",
        ) from exc
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"templates/{name}:{exc.lineno}: {exc.message}") from exc


def _template_line(exc: BaseException, name: str) -> str:
    """':12' for the template line the error came from (Jinja2 puts template frames in the
    traceback under the template's file name), or ''."""
    tb, line = exc.__traceback__, ""
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(name):
            line = f":{tb.tb_lineno}"
        tb = tb.tb_next
    return line


def _call(campaign: Campaign, name: str, fn, *args):
    """Render, turning any template failure into a ConfigError naming the template and line:
    an undefined or misspelt variable, a missing include, a sandbox refusal, `title + 1`."""
    try:
        return fn(*args)
    except ConfigError:
        raise
    except (jinja2.TemplateError, TypeError, ValueError, AttributeError) as exc:
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        raise ConfigError(
            f"templates/{name}{_template_line(exc, name)} (campaign {campaign.slug}): {message}",
            hint="see `narrative campaigns check` and the variables listed in templates/posts/",
        ) from exc


def sample_variables(campaign: Campaign) -> dict[str, Any]:
    """Variables like a real narrative's, for checking a campaign's templates before use."""
    return {
        "narrative_id": "0" * 64,
        "title": "A sample title",
        "quote": "A sample quote.",
        "summary": "A sample summary.",
        "transcript": "A sample transcript.\n\nIn two paragraphs.",
        "language": campaign.language,
        "hashtags": [f"#{h}" for h in campaign.hashtags],
        "tags": [t.name for t in campaign.tags[:1]],
        "link": _item_link(campaign, "0" * 64),
        "content_warning": "grief",
        "ai_disclosure": campaign.ai_disclosure,
        "campaign": {
            "slug": campaign.slug,
            "name": campaign.name,
            "owner": campaign.owner,
            "link": campaign.link,
        },
        "has_video": True,
        "video_cut": True,
        "video_length": "0:45",
        "recording_length": "3:10",
    }


def check_template(env: jinja2.Environment, campaign: Campaign, channel: str) -> None:
    """Load and render a campaign's template for `channel` with sample variables, so a
    misspelt variable or a broken expression shows before any narrative is drafted."""
    name = getattr(campaign.channels, channel).template
    template, _ = _render(env, name, campaign)
    variables = sample_variables(campaign)
    if channel == "bluesky":
        _call(campaign, name, template.render, variables)
    else:
        for key in ("title", "summary", "content"):
            _call(campaign, name, _block, template, key, variables)


def build_drafts(ctx: Context, narrative_id: str) -> list[DraftTarget]:
    """Render every draft the narrative should have, without touching the database."""
    folder = ctx.workspace.narrative_dir(narrative_id)
    analysis = _read_json(folder / "analysis.json")
    if analysis is None:
        raise StageFailed(
            f"narrative {narrative_id[:12]} has no analysis yet",
            hint="run `narrative process` (the analyse stage comes before drafts)",
        )
    if analysis.get("empty"):
        return []
    transcript_data = _read_json(folder / "transcript.json")
    transcript = Transcript.from_dict(transcript_data) if transcript_data else None
    # Public text comes from the anonymised copies when the narrator must stay anonymous
    # (the default while no consent says otherwise).
    pub = for_publication(ctx, narrative_id, transcript, analysis) if transcript else None
    if pub is not None:
        transcript, analysis = pub.transcript, pub.analysis
    language = analysis.get("language") or (transcript.language if transcript else "") or ""
    summary = analysis.get("summary_text") or ""
    quote = (analysis.get("quote") or {}).get("text", "") or ""
    title = analysis.get("title") or ""

    env = post_environment(ctx.workspace)
    targets: list[DraftTarget] = []
    campaigns = load_campaigns(ctx.workspace)
    # Explicit assignments first, then the tag fit (see `narratives/assignments.py`).
    routed = {r.campaign: r for r in routes(ctx, narrative_id, analysis, campaigns=campaigns)}
    for campaign in campaigns:
        route = routed.get(campaign.slug)
        if route is None:
            continue
        fit = (analysis.get("campaigns") or {}).get(campaign.slug) or {}
        # `applied` holds the tags after editors' corrections; older analyses lack it.
        tags = fit.get("applied")
        if tags is None:
            tags = [
                t["name"]
                for t in sorted(fit.get("tags") or [], key=lambda t: -t.get("score", 0))
                if t.get("score", 0) >= campaign.tag_threshold
            ]
        if not tags and route.reason == "assigned" and route.top:
            # Assigned, but no tag reaches the threshold: tags rank within the campaign,
            # they never drop the story, so the draft carries the campaign's best tag.
            tags = [route.top]
        warn, labels = _notes(analysis, campaign)
        media = _video(ctx, narrative_id, campaign)
        link = _item_link(campaign, narrative_id)
        # A video cut to the campaign's limit says so: a reader should know it is an excerpt.
        kept = media["kept"]
        recording = transcript.duration if transcript else 0.0
        excerpt = sum(b - a for a, b in kept) if kept else 0.0
        variables = {
            "narrative_id": narrative_id,
            "title": title,
            "quote": quote,
            "summary": summary,
            "transcript": transcript.text if transcript else "",
            "language": language,
            "hashtags": [f"#{h}" for h in campaign.hashtags],
            "tags": tags,
            "link": link,
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
        }
        data = {
            "title": title,
            "tags": tags,
            "top": fit.get("top"),
            "format": media["format"],
            "video_cut": (
                {"kept": kept, "seconds": round(excerpt, 3), "of": round(recording, 3)}
                if kept
                else None
            ),
            # Characters the video could not draw (its captions file has them): editors check.
            "video_missing_glyphs": media["missing_glyphs"] or None,
        }
        for channel in campaign.channel_names:
            config = getattr(campaign.channels, channel)
            template, digest = _render(env, config.template, campaign)
            if channel == "bluesky":
                text = _call(campaign, config.template, template.render, variables)
                posts = [p for post in split_posts(text) for p in split_thread(post)]
                langs = [language] if language else list(config.langs or [campaign.language])
                content: dict[str, Any] = {
                    "posts": [{"text": p} for p in posts],
                    "langs": langs,
                    "labels": labels,
                    "video": media["video"],
                    "captions": media["captions"],
                    "alt": _alt(title, summary),
                    "aspect_ratio": media["aspect_ratio"],
                    "content_warning": variables["content_warning"],
                }
            else:
                content = {
                    key: _call(campaign, config.template, _block, template, key, variables)
                    for key in ("title", "summary", "content")
                }
                content["link"] = link
                content["enclosure"] = media["video"]
                content["captions"] = media["captions"]
            if pub is not None and pub.anonymous:
                content = redact_draft(content, pub.terms)
            targets.append(
                DraftTarget(
                    campaign.slug,
                    channel,
                    config.template,
                    digest,
                    content,
                    data,
                    tuple(pub.terms) if pub is not None and pub.anonymous else (),
                )
            )
    return targets


def _block(template: jinja2.Template, name: str, variables: dict[str, Any]) -> str:
    if name not in template.blocks:
        raise ConfigError(f"RSS template {template.name!r} needs a `{{% block {name} %}}`")
    text = "".join(template.blocks[name](template.new_context(variables)))
    return re.sub(r"\n{3,}", "\n\n", text.strip())


def _alt(title: str, summary: str) -> str:
    text = f"Audiogram video: {title}. {summary}".strip() if title else summary
    if count_graphemes(text) > _ALT_LIMIT:
        text = grapheme.slice(text, 0, _ALT_LIMIT - 1) + "…"
    return text


def _fingerprint(ctx: Context, narrative_id: str) -> str:
    """What the drafts depend on; a change (template, campaign, analysis, video) redoes them."""
    h = hashlib.sha256()
    folder = ctx.workspace.narrative_dir(narrative_id)
    files = [folder / "analysis.json", folder / "transcript.json", folder / "redactions.json"]
    files += sorted(ctx.workspace.campaigns_dir.glob("*.toml"))
    files += sorted((ctx.workspace.templates_dir / "posts").glob("**/*"))
    for path in files:
        h.update(path.name.encode())
        h.update(path.read_bytes() if path.is_file() else b"-")
    with ctx.db.connect() as conn:
        rows = conn.execute(
            sa.select(stage_runs.c.key, stage_runs.c.status, stage_runs.c.finished_at)
            .where(stage_runs.c.narrative_id == narrative_id, stage_runs.c.stage == "render")
            .order_by(stage_runs.c.key)
        )
        h.update(repr([tuple(r) for r in rows]).encode())
        # Consent switching between named and anonymous changes every public text.
        h.update(b"anonymous" if is_anonymous(conn, narrative_id) else b"named")
    # Assigning or unassigning a campaign changes which drafts the narrative has.
    h.update(repr(sorted(explicit(ctx, narrative_id).items())).encode())
    return h.hexdigest()


def _snapshot(row) -> dict[str, Any]:
    return {"state": row.state, "content": row.content, "template_hash": row.template_hash}


def _keep_editor_text(current: dict[str, Any], target: DraftTarget) -> dict[str, Any]:
    """An edited draft keeps the editor's text, but what the pipeline owns (content labels,
    video, captions, languages...) follows the new generation, and names now hidden are
    hidden in the editor's text too: an edit must not freeze a missing label or a name."""
    editable = EDITABLE.get(target.channel, ())
    merged = {k: v for k, v in target.content.items() if k not in editable}
    merged.update({k: current[k] for k in editable if k in current})
    return redact_draft(merged, target.hidden) if target.hidden else merged


def _store(ctx: Context, narrative_id: str, target: DraftTarget) -> tuple[int, str]:
    """Insert or update one draft (and its audit row) in one transaction."""
    now = utcnow()
    with ctx.db.begin() as conn:
        row = conn.execute(
            sa.select(drafts).where(
                drafts.c.narrative_id == narrative_id,
                drafts.c.campaign == target.campaign,
                drafts.c.channel == target.channel,
            )
        ).first()
        if row is None:
            draft_id = conn.execute(
                drafts.insert().values(
                    narrative_id=narrative_id,
                    campaign=target.campaign,
                    channel=target.channel,
                    state="pending_review",
                    template=target.template,
                    template_hash=target.template_hash,
                    generated=target.content,
                    content=target.content,
                    edited=False,
                    data=target.data,
                    created_at=now,
                    updated_at=now,
                )
            ).inserted_primary_key[0]
            audit.record(
                conn,
                actor=ACTOR,
                action="draft.create",
                object_type="draft",
                object_id=draft_id,
                after={"state": "pending_review", "content": target.content},
                detail=f"from templates/{target.template}",
            )
            return draft_id, "created"
        same = (
            row.generated == target.content
            and row.template_hash == target.template_hash
            and row.template == target.template
            and row.data == target.data
        )
        if same:
            return row.id, "unchanged"
        values: dict[str, Any] = {
            "template": target.template,
            "template_hash": target.template_hash,
            "generated": target.content,
            "data": target.data,
            "updated_at": now,
        }
        detail = "regenerated; the editor's text is kept" if row.edited else "regenerated"
        content = target.content if not row.edited else _keep_editor_text(row.content, target)
        if row.content != content:
            values["content"] = content
            if row.state in ("approved", "changes_requested"):
                # What was approved is no longer what would go out.
                values["state"] = "pending_review"
        conn.execute(drafts.update().where(drafts.c.id == row.id).values(**values))
        after = {
            "state": values.get("state", row.state),
            "content": values.get("content", row.content),
            "template_hash": target.template_hash,
        }
        audit.record(
            conn,
            actor=ACTOR,
            action="draft.regenerate",
            object_type="draft",
            object_id=row.id,
            before=_snapshot(row),
            after=after,
            detail=detail,
        )
        return row.id, "updated"


def run(ctx: Context, narrative_id: str, *, force: bool = False) -> list[int]:
    """Create or refresh the narrative's drafts; returns their ids (on-topic targets only).

    Skipped when the stage is `done` and nothing it depends on changed, unless `force`.
    """
    fingerprint = _fingerprint(ctx, narrative_id)
    done = get_run(ctx.db, narrative_id, STAGE)
    if (
        not force
        and done is not None
        and done.status == "done"
        and isinstance(done.output, dict)
        and done.output.get("inputs") == fingerprint
    ):
        return list(done.output.get("drafts", []))
    with stage_run(ctx.db, narrative_id, STAGE) as handle:
        handle.engine = "jinja2"
        handle.version = jinja2.__version__
        ids: list[int] = []
        counts = {"created": 0, "updated": 0, "unchanged": 0}
        for target in build_drafts(ctx, narrative_id):
            draft_id, outcome = _store(ctx, narrative_id, target)
            ids.append(draft_id)
            counts[outcome] += 1
        handle.output = {"drafts": ids, "inputs": fingerprint, **counts}
    return ids
