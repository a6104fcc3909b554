"""Public routes, no login: the campaigns' feeds and the media files they enclose, nothing else.

    /feeds/<slug>.xml      RSS 2.0        /feeds/<slug>.atom     Atom
    /feeds/media/<name>    a file a current feed encloses, by its opaque name (never a path)

Both answer ETag and Last-Modified and honour If-None-Match / If-Modified-Since with 304.
Feeds are served from the files `narratives.channels.rss.files` writes atomically; media are
looked up in the feeds' manifests, so a withdrawn item's video stops being public when its feed
is rebuilt.

The workspace is `request.app.state.workspace` (or `.context.workspace`) when the app sets one,
else the current one (NARRATIVES_HOME).
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from narratives.channels.rss.files import resolve_media
from narratives.core.workspace import Workspace, current_workspace

__all__ = ["routes"]

_FEED = re.compile(r"^([a-z0-9][a-z0-9-]{0,62})\.(xml|atom)$")
_MEDIA = re.compile(r"^[0-9a-f]{32}(\.[a-z0-9]{1,8})?$")
_TYPES = {
    "xml": "application/rss+xml; charset=utf-8",
    "atom": "application/atom+xml; charset=utf-8",
}


def _workspace(request: Request) -> Workspace:
    state = request.app.state
    ws = getattr(state, "workspace", None)
    if ws is None and getattr(state, "context", None) is not None:
        ws = state.context.workspace
    return ws or current_workspace()


def _not_found() -> Response:
    return PlainTextResponse("Not found", status_code=404)


def _validators(path: Path, strong: str | None = None) -> tuple[str, datetime]:
    st = path.stat()
    etag = f'"{strong}"' if strong else f'"{st.st_mtime_ns:x}-{st.st_size:x}"'
    return etag, datetime.fromtimestamp(int(st.st_mtime), UTC)


def _not_modified(request: Request, etag: str, modified: datetime) -> bool:
    inm = request.headers.get("if-none-match")
    if inm is not None:
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        return "*" in tags or etag in tags
    ims = request.headers.get("if-modified-since")
    if ims:
        try:
            since = parsedate_to_datetime(ims)
        except (TypeError, ValueError):
            return False
        if since.tzinfo is None:
            since = since.replace(tzinfo=UTC)
        return modified <= since
    return False


def _headers(etag: str, modified: datetime) -> dict[str, str]:
    return {
        "ETag": etag,
        "Last-Modified": format_datetime(modified, usegmt=True),
        "Cache-Control": "public, max-age=300",
    }


async def feed(request: Request) -> Response:
    m = _FEED.match(request.path_params["filename"])
    if not m:
        return _not_found()
    path = _workspace(request).feeds_dir / m.group(0)
    try:
        data = path.read_bytes()  # one read: the file may be replaced meanwhile
        etag, modified = _validators(path, hashlib.sha256(data).hexdigest()[:32])
    except FileNotFoundError:
        return _not_found()
    headers = _headers(etag, modified)
    if _not_modified(request, etag, modified):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type=_TYPES[m.group(2)], headers=headers)


async def media(request: Request) -> Response:
    name = request.path_params["name"]
    if not _MEDIA.match(name):
        return _not_found()
    path = resolve_media(_workspace(request), name)
    if path is None:
        return _not_found()
    etag, modified = _validators(path)
    headers = _headers(etag, modified)
    if _not_modified(request, etag, modified):
        return Response(status_code=304, headers=headers)
    media_type = "text/vtt" if path.suffix.lower() == ".vtt" else None
    return FileResponse(path, headers=headers, media_type=media_type)


routes: list[Route] = [
    Route("/feeds/media/{name}", media, methods=["GET", "HEAD"]),
    Route("/feeds/{filename}", feed, methods=["GET", "HEAD"]),
]
