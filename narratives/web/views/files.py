"""The files the pages play and load: a narrative's videos, captions and recording, by kind
(never a path from the request), and the two static assets.

A generated file is served only when it resolves (links followed) to a regular file inside the
workspace's media folder: a link planted in `media/work/<id>/` pointing at the session secret,
the database or anything else is "not found". A recording may be anywhere in the workspace
(`narrative process` registers where it is) but never in its private state folder."""

from __future__ import annotations

import re
import stat
from dataclasses import dataclass
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response

from narratives.core.errors import NotFound
from narratives.records.draft import Draft
from narratives.stages.ingest import recording_file
from narratives.store.context import Context
from narratives.web.templating import template_dirs
from narratives.web.views.base import Endpoint, View

__all__ = ["FilesView", "Player", "player_for", "resolve_media"]

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


@dataclass
class Player:
    """What the draft page's player plays: a video with captions and poster, or the audio."""

    kind: str
    src: str
    captions: str | None
    poster: str | None
    vertical: bool


class FilesView(View):
    def endpoints(self) -> list[Endpoint]:
        return [
            Endpoint("GET", "/media/{narrative_id}/{kind}", self.media, "page"),
            Endpoint("GET", "/static/{name}", self.static, "page"),
        ]

    def media(self, request: Request) -> Response:
        narrative_id = request.path_params["narrative_id"]
        kind = request.path_params["kind"]
        path, media_type = resolve_media(self.ctx, narrative_id, kind)
        return FileResponse(path, media_type=media_type, headers={"Cache-Control": "private"})

    def static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in _STATIC:
            raise NotFound("no such file")
        for folder in template_dirs(self.ctx):
            path = folder / "static" / name
            if path.is_file():
                return FileResponse(path, media_type=_STATIC[name])
        raise NotFound("no such file")


def resolve_media(ctx: Context, narrative_id: str, kind: str) -> tuple[Path, str]:
    """A file of the narrative by kind; never a path from the request."""
    if not _HEX_ID.match(narrative_id) or not _MEDIA_KIND.match(kind):
        raise NotFound("no such file")
    ws = ctx.workspace
    if kind == "audio":
        # The workspace's copy when there is one, else a remembered path inside the workspace.
        p = recording_file(ctx, narrative_id)
        real = _regular_file(p) if p is not None else None
        media_type = _AUDIO_TYPES.get(real.suffix.lower()) if real else None
        # Never the workspace's private state, whatever a link says.
        if real and media_type and _inside(real, ws.root) and not _inside(real, ws.state_dir):
            return real, media_type
        raise NotFound("no recording for this narrative in the workspace")
    path = ws.narrative_dir(narrative_id) / kind
    real = _regular_file(path)
    if real is None or not _inside(real, ws.media_dir):
        raise NotFound("no such file")
    return real, _MEDIA_TYPES.get(real.suffix, "application/octet-stream")


def _regular_file(path: Path) -> Path | None:
    """The file's real path when it is a regular file (links followed), else None."""
    try:
        real = path.resolve(strict=True)
        mode = real.stat().st_mode
    except (OSError, RuntimeError):  # missing, unreadable, a link loop
        return None
    return real if stat.S_ISREG(mode) else None


def _inside(real: Path, folder: Path) -> bool:
    """True when the resolved `real` lies inside `folder` (itself resolved: a workspace may
    sit behind a link)."""
    try:
        return real.is_relative_to(folder.resolve())
    except OSError:
        return False


def player_for(ctx: Context, draft: Draft) -> Player | None:
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
            return Player(
                kind="video",
                src=f"/media/{nid}/{name}",
                captions=f"/media/{nid}/{vtt.name}" if vtt.is_file() else None,
                poster=f"/media/{nid}/{png.name}" if png.is_file() else None,
                vertical="vertical" in name,
            )
    try:
        resolve_media(ctx, nid, "audio")
    except NotFound:
        return None
    captions = folder / "transcript.vtt"
    return Player(
        kind="audio",
        src=f"/media/{nid}/audio",
        captions=f"/media/{nid}/transcript.vtt" if captions.is_file() else None,
        poster=None,
        vertical=False,
    )
