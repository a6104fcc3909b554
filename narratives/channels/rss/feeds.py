"""RSS 2.0 and Atom feeds per campaign (feedgen), and partner feeds pulled in (feedparser).

Our feeds are rebuilt from the database whenever an RSS delivery publishes: the items are the
campaign's RSS deliveries in state `published` (a withdrawn one has another state and drops out),
each showing the content it was published with (`deliveries.content`), so editing a published
draft changes nothing public until the edit is reviewed and published again.
Each build writes `media/feeds/<slug>.xml`, `<slug>.atom` and `<slug>.media.json` (the public
media manifest: opaque name → workspace path) with temp file + `os.replace`, so a reader sees
the old file or the new one, never half of one. A build is deterministic (dates come from the
deliveries, not the clock), so an unchanged feed keeps its ETag.

Media are public only through the manifest: the web routes (`narratives.web.public`) and the
static export resolve `/feeds/media/<opaque name>` and nothing else, never a path.

GUIDs are tag: URIs (RFC 4151) from the campaign's link host, its slug and the narrative id, so
an item keeps its GUID across rebuilds, edits and re-publication.
"""

from __future__ import annotations

import hashlib
import html
import ipaddress
import json
import logging
import mimetypes
import os
import re
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import sqlalchemy as sa
from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from feedgen.util import xml_elem

from narratives.core.campaigns import Campaign, get_campaign, load_campaigns
from narratives.core.errors import (
    NarrativesError,
    NotFound,
    PermanentChannelError,
    TransientChannelError,
)
from narratives.core.files import atomic_write
from narratives.core.workspace import Workspace
from narratives.store.context import Context
from narratives.store.schema import deliveries, drafts, feed_items, utcnow

__all__ = [
    "PODCAST_NS",
    "FeedFiles",
    "PullReport",
    "item_guid",
    "media_name",
    "render_feeds",
    "write_campaign_feeds",
    "write_all_feeds",
    "build_static",
    "read_manifest",
    "resolve_media",
    "pull",
]

log = logging.getLogger(__name__)

#: The Podcasting 2.0 namespace (podcast:transcript).
PODCAST_NS = "https://podcastindex.org/namespace/1.0"
#: Before any item exists a feed's dates are this fixed instant, so empty builds are identical.
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


# ----------------------------------------------------------------------------- writing files


_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


@contextmanager
def _campaign_lock(feeds_dir: Path, slug: str) -> Iterator[None]:
    """One rebuild of a campaign's feeds at a time, across threads and processes: each rebuild
    reads the committed deliveries, so the last one to write includes every item."""
    with _locks_guard:
        lock = _locks.setdefault(f"{feeds_dir}/{slug}", threading.Lock())
    with lock:
        feeds_dir.mkdir(parents=True, exist_ok=True)
        with open(feeds_dir / f".{slug}.lock", "a+b") as fh:
            try:
                import fcntl
            except ImportError:  # pragma: no cover - not POSIX: threads are still serialised
                yield
                return
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


# ----------------------------------------------------------------------------- feedgen extension


class _PodcastIndexFeed(BaseExtension):
    def extend_ns(self) -> dict[str, str]:
        return {"podcast": PODCAST_NS}


class _PodcastIndexEntry(BaseEntryExtension):
    """`<podcast:transcript url=... type=... rel="captions"/>`, which feedgen does not know."""

    def __init__(self) -> None:
        self._transcripts: list[dict[str, str]] = []

    def transcript(self, url: str, type: str = "text/vtt", language: str | None = None) -> None:
        attrs = {"url": url, "type": type, "rel": "captions"}
        if language:
            attrs["language"] = language
        self._transcripts.append(attrs)

    def extend_rss(self, entry):
        for attrs in self._transcripts:
            xml_elem(f"{{{PODCAST_NS}}}transcript", entry).attrib.update(attrs)
        return entry

    def extend_atom(self, entry):
        return entry


# ----------------------------------------------------------------------------- our feeds


@dataclass(frozen=True)
class FeedFiles:
    rss: Path
    atom: Path
    manifest: Path
    items: int


@dataclass(frozen=True)
class _Item:
    delivery_id: int
    narrative_id: str
    published_at: datetime
    content: dict[str, Any]


def item_guid(campaign: Campaign, narrative_id: str) -> str:
    """A stable, globally unique id: tag:<campaign link host>,2026:<slug>/<narrative id>."""
    host = urlsplit(campaign.link).hostname or "narratives.invalid"
    return f"tag:{host},2026:{campaign.slug}/{narrative_id}"


def media_name(relpath: str) -> str:
    """The opaque public name of a workspace file: a hash of its path, plus its suffix."""
    suffix = Path(relpath).suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,8}", suffix):
        suffix = ""
    return hashlib.sha256(relpath.encode("utf-8")).hexdigest()[:32] + suffix


def _published_items(ctx: Context, slug: str) -> list[_Item]:
    """Each item shows what was published, not the draft as it is now: an edit sends the draft
    back to review and must not go live. Deliveries published before `deliveries.content`
    existed have NULL there and fall back to the draft."""
    with ctx.db.connect() as conn:
        rows = conn.execute(
            sa.select(
                deliveries.c.id,
                deliveries.c.published_at,
                deliveries.c.content.label("published_content"),
                drafts.c.narrative_id,
                drafts.c.content,
            )
            .join(drafts, drafts.c.id == deliveries.c.draft_id)
            .where(
                deliveries.c.campaign == slug,
                deliveries.c.channel == "rss",
                deliveries.c.state == "published",
            )
            .order_by(deliveries.c.published_at.desc(), deliveries.c.id.desc())
        ).all()
    return [
        _Item(
            r.id,
            r.narrative_id,
            r.published_at or _EPOCH,
            dict((r.content if r.published_content is None else r.published_content) or {}),
        )
        for r in rows
    ]


#: What XML 1.0 allows (tab, newline, carriage return and these ranges); lxml refuses the rest.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(value: Any) -> str:
    """`value` as text XML can carry: one control character pasted into a title would otherwise
    make lxml refuse the whole feed, and every other item with it."""
    return _NOT_XML.sub("", str(value or ""))


def _html(text: str) -> str:
    """Plain text as the HTML that readers expect in content:encoded: escaped, one <p> per
    paragraph (paragraphs are separated by blank lines)."""
    paragraphs = re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n").strip())
    return "".join(f"<p>{html.escape(p.strip(), quote=False)}</p>" for p in paragraphs if p.strip())


def _file(ws: Workspace, relpath: str | None) -> Path | None:
    if not relpath:
        return None
    p = (ws.root / relpath).resolve()
    if not ws.contains(p) or not p.is_file():
        return None
    return p


def _mime(path: Path, default: str) -> str:
    if path.suffix.lower() == ".vtt":
        return "text/vtt"
    return mimetypes.guess_type(path.name)[0] or default


def render_feeds(
    ctx: Context, campaign: Campaign, base_url: str | None = None
) -> tuple[bytes, bytes, dict[str, str]]:
    """The campaign's RSS and Atom documents and their media manifest (name → workspace path).

    `base_url` is where `/feeds/...` is served (default: the settings' serve.base_url).
    """
    cfg = campaign.channels.rss
    if cfg is None:
        raise NotFound(f"campaign {campaign.slug} has no RSS channel")
    ws = ctx.workspace
    base = (base_url or ctx.settings.serve.base_url).rstrip("/")
    items = _published_items(ctx, campaign.slug)
    manifest: dict[str, str] = {}

    def public(path: Path) -> str:
        rel = path.relative_to(ws.root.resolve()).as_posix()
        name = media_name(rel)
        manifest[name] = rel
        return f"{base}/feeds/media/{name}"

    updated = max((i.published_at for i in items), default=_EPOCH)
    fg = FeedGenerator()
    fg.load_extension("podcast")
    fg.register_extension("podcastindex", _PodcastIndexFeed, _PodcastIndexEntry, atom=False)
    fg.id(item_guid(campaign, "feed"))
    fg.title(_text(cfg.title))
    fg.description(_text(cfg.description))
    fg.author({"name": _text(cfg.author)})
    fg.link(href=f"{base}/feeds/{campaign.slug}.xml", rel="self", type="application/rss+xml")
    fg.link(href=_text(cfg.link), rel="alternate")
    fg.language(_text(cfg.language))
    fg.generator("narratives")
    fg.lastBuildDate(updated)
    fg.pubDate(updated)
    fg.updated(updated)
    fg.podcast.itunes_author(_text(cfg.author))
    fg.podcast.itunes_summary(_text(cfg.description))
    fg.podcast.itunes_explicit("no")
    image = _file(ws, cfg.image)
    if image is not None:
        url = public(image)
        fg.image(url=url, title=_text(cfg.title), link=_text(cfg.link))
        fg.logo(url)
        if image.suffix.lower() in (".png", ".jpg", ".jpeg"):
            fg.podcast.itunes_image(url)

    # feedgen 1.0 drops rel/type/length from Atom entry links (a shadowed variable), so the
    # Atom links are written here, after the fact, by `_atom_links`.
    atom_links: dict[str, list[dict[str, str]]] = {}
    # content:encoded is HTML to every reader, Atom content can say it is text: the entries
    # get the HTML for the RSS document and their plain text back for the Atom one.
    texts: list[tuple[Any, str]] = []
    for it in items:
        c = it.content
        guid = item_guid(campaign, it.narrative_id)
        link = _text(c.get("link") or campaign.link)
        links = atom_links.setdefault(guid, [{"rel": "alternate", "href": link}])
        summary = _text(c.get("summary"))
        fe = fg.add_entry(order="append")
        fe.guid(guid, permalink=False)
        fe.title(_text(c.get("title")) or "Untitled story")
        fe.description(summary)
        fe.summary(summary)
        if content := _text(c.get("content")).strip():
            fe.content(_html(content), type="CDATA")
            texts.append((fe, content))
        fe.link(href=link)
        fe.author({"name": _text(cfg.author)})
        fe.published(it.published_at)
        fe.updated(it.published_at)
        fe.podcast.itunes_summary(summary)
        video = _file(ws, c.get("enclosure"))
        if video is not None:
            url, size, kind = public(video), str(video.stat().st_size), _mime(video, "video/mp4")
            fe.enclosure(url, size, kind)
            links.append({"rel": "enclosure", "href": url, "length": size, "type": kind})
        captions = _file(ws, c.get("captions"))
        if captions is not None:
            vtt = public(captions)
            fe.podcastindex.transcript(vtt, "text/vtt", cfg.language)
            links.append({"rel": "related", "href": vtt, "type": "text/vtt"})
    rss = fg.rss_str(pretty=True)
    for fe, content in texts:
        fe.content(content, type="text")
    fg.link(
        [
            {"href": f"{base}/feeds/{campaign.slug}.atom", "rel": "self"},
            {"href": cfg.link, "rel": "alternate"},
        ],
        replace=True,
    )
    atom = _atom_links(fg.atom_str(pretty=True), atom_links)
    return rss, atom, manifest


def _atom_links(atom: bytes, links: dict[str, list[dict[str, str]]]) -> bytes:
    """Rewrite each Atom entry's links with their rel/type/length."""
    from lxml import etree

    ns = "{http://www.w3.org/2005/Atom}"
    root = etree.fromstring(atom)
    for entry in root.iter(f"{ns}entry"):
        for old in entry.findall(f"{ns}link"):
            entry.remove(old)
        for attrs in links.get(entry.findtext(f"{ns}id") or "", []):
            etree.SubElement(entry, f"{ns}link", attrs)
    etree.indent(root, space="  ")
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)


def write_campaign_feeds(
    ctx: Context,
    campaign: Campaign | str,
    *,
    out_dir: Path | None = None,
    base_url: str | None = None,
) -> FeedFiles:
    """Rebuild one campaign's feeds atomically (into `media/feeds/` unless `out_dir`)."""
    if isinstance(campaign, str):
        campaign = get_campaign(ctx.workspace, campaign)
    target = out_dir or ctx.workspace.feeds_dir
    with _campaign_lock(target, campaign.slug):
        rss, atom, manifest = render_feeds(ctx, campaign, base_url)
        paths = FeedFiles(
            rss=target / f"{campaign.slug}.xml",
            atom=target / f"{campaign.slug}.atom",
            manifest=target / f"{campaign.slug}.media.json",
            items=rss.count(b"<item>"),
        )
        # Unchanged files are left alone, so their Last-Modified stays true.
        for path, data in (
            (paths.manifest, json.dumps(manifest, indent=1, sort_keys=True).encode()),
            (paths.rss, rss),
            (paths.atom, atom),
        ):
            if not (path.is_file() and path.read_bytes() == data):
                atomic_write(path, data, fsync=True)
    return paths


def write_all_feeds(ctx: Context) -> list[FeedFiles]:
    """Rebuild the feeds of every campaign with an RSS channel."""
    return [
        write_campaign_feeds(ctx, c)
        for c in load_campaigns(ctx.workspace)
        if c.channels.rss is not None
    ]


def read_manifest(feeds_dir: Path) -> dict[str, str]:
    """Every public media name of every campaign feed in `feeds_dir` → workspace path."""
    out: dict[str, str] = {}
    for p in sorted(feeds_dir.glob("*.media.json")):
        try:
            out.update(json.loads(p.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            log.warning("unreadable media manifest %s", p)
    return out


def resolve_media(workspace: Workspace, name: str) -> Path | None:
    """The file behind a public media name, or None if no feed encloses it."""
    rel = read_manifest(workspace.feeds_dir).get(name)
    if rel is None:
        return None
    path = (workspace.root / rel).resolve()
    if not workspace.contains(path) or not path.is_file():
        return None
    return path


def _same_content(src: Path, dst: Path) -> bool:
    """Whether `dst` already holds `src`'s bytes. Hashed every time: `files.file_sha256`
    trusts size and mtime, and a same-size rewrite within one timestamp tick would slip by."""
    if not dst.is_file() or dst.stat().st_size != src.stat().st_size:
        return False
    digests = []
    for path in (src, dst):
        with open(path, "rb") as fh:
            digests.append(hashlib.file_digest(fh, "sha256").digest())
    return digests[0] == digests[1]


def build_static(
    ctx: Context, out_dir: Path, *, base_url: str, campaigns: list[str] | None = None
) -> list[Path]:
    """A static copy for hosting elsewhere: `out_dir/feeds/<slug>.xml|.atom` and the media
    they enclose in `out_dir/feeds/media/`, with every link under `base_url`.

    A file is copied when its content differs (a re-anonymised caption file can keep its size),
    and media that no current feed encloses are deleted, so a withdrawn item's video leaves the
    export too. Campaigns left out by `campaigns` still count: their media stay.
    """
    feeds_out = out_dir / "feeds"
    media_out = feeds_out / "media"
    media_out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    public: set[str] = set()
    for c in load_campaigns(ctx.workspace):
        if c.channels.rss is None:
            continue
        if campaigns and c.slug not in campaigns:
            public.update(render_feeds(ctx, c, base_url)[2])
            continue
        files = write_campaign_feeds(ctx, c, out_dir=feeds_out, base_url=base_url)
        written += [files.rss, files.atom]
        manifest = json.loads(files.manifest.read_text(encoding="utf-8"))
        files.manifest.unlink()
        public.update(manifest)
        for name, rel in sorted(manifest.items()):
            src = ctx.workspace.root / rel
            dst = media_out / name
            if _same_content(src, dst):
                continue
            tmp = dst.with_name(f".{name}.tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
            written.append(dst)
    for old in media_out.iterdir():
        if old.name not in public and old.is_file():
            log.info("removing %s: no feed encloses it any more", old)
            old.unlink()
    for lock in feeds_out.glob(".*.lock"):
        lock.unlink(missing_ok=True)
    return written


# ----------------------------------------------------------------------------- partner feeds


@dataclass
class PullReport:
    feed_url: str
    title: str = ""
    #: Enclosures downloaded this time, in `media/inbox/`.
    downloaded: list[Path] = field(default_factory=list)
    #: GUIDs pulled before (not downloaded again).
    skipped: list[str] = field(default_factory=list)
    #: (GUID, reason) of items that failed; the others went on.
    failed: list[tuple[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "feed_url": self.feed_url,
            "title": self.title,
            "downloaded": [str(p) for p in self.downloaded],
            "skipped": self.skipped,
            "failed": [{"guid": g, "error": e} for g, e in self.failed],
        }


_MEDIA_TYPES = ("audio/", "video/")
_MAX_FEED_BYTES = 10 * 1024 * 1024


def _inbox(ws: Workspace) -> Path:
    return ws.media_dir / "inbox"


def _refused(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, allow_private: bool) -> bool:
    """Link-local (cloud metadata), multicast, unspecified and reserved addresses are never
    fetched; private and loopback ones only when allowed (a partner on this network, tests)."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_link_local or ip.is_multicast or ip.is_unspecified:
        return True
    if allow_private and (ip.is_loopback or (ip.is_private and not ip.is_reserved)):
        return False
    return not ip.is_global or ip.is_reserved


def _guard(allow_private: bool) -> dict[str, list[Any]]:
    """httpx event hooks that refuse, on every hop including redirects, a scheme other than
    http(s) and a host that resolves to an address `_refused` names. The response hook checks
    the address actually connected to as well, in case the name resolved differently then."""

    def refuse(url: Any, addr: str) -> PermanentChannelError:
        return PermanentChannelError(
            f"refused to fetch {url}: {addr} is a private, loopback, link-local or reserved "
            "address",
            hint="for a partner on this network, pull with --allow-private",
        )

    def check_request(request: Any) -> None:
        url = request.url
        if url.scheme not in ("http", "https"):
            raise PermanentChannelError(f"refused to fetch {url}: only http and https")
        try:
            infos = socket.getaddrinfo(url.host, None, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            return  # unresolvable: httpx reports the connection error itself
        for info in infos:
            addr = str(info[4][0]).split("%", 1)[0]
            if _refused(ipaddress.ip_address(addr), allow_private):
                raise refuse(url, addr)

    def check_response(response: Any) -> None:
        stream = response.extensions.get("network_stream")
        peer = stream.get_extra_info("server_addr") if stream is not None else None
        if peer:
            addr = str(peer[0]).split("%", 1)[0]
            if _refused(ipaddress.ip_address(addr), allow_private):
                raise refuse(response.request.url, addr)

    return {"request": [check_request], "response": [check_response]}


def _chunks(resp: Any, url: str, deadline: float, timeout: float) -> Iterator[bytes]:
    """The body, given up on at `deadline`: httpx's timeout bounds each read, not the whole,
    so a server sending one byte a second would otherwise hold the pull as long as it likes.
    (A read that stalls just before the deadline still ends by httpx's read timeout.)"""
    for chunk in resp.iter_bytes():
        if time.monotonic() > deadline:
            raise TransientChannelError(f"{url} took longer than {timeout:g} s")
        yield chunk


def _fetch_feed(client: Any, url: str, timeout: float) -> bytes:
    import httpx

    deadline = time.monotonic() + timeout
    try:
        with client.stream("GET", url) as resp:
            if resp.status_code != 200:
                raise PermanentChannelError(f"cannot read the feed {url}: HTTP {resp.status_code}")
            data = bytearray()
            for chunk in _chunks(resp, url, deadline, timeout):
                data += chunk
                if len(data) > _MAX_FEED_BYTES:
                    raise PermanentChannelError(f"the feed {url} is larger than 10 MB")
            return bytes(data)
    except httpx.TooManyRedirects as exc:
        raise PermanentChannelError(f"the feed {url} redirects too often") from exc
    except httpx.HTTPError as exc:
        raise TransientChannelError(f"cannot fetch the feed {url}: {exc}") from exc


def _parse(url: str, data: bytes) -> Any:
    import feedparser

    parsed = feedparser.parse(data)
    exc = parsed.get("bozo_exception")
    benign = (feedparser.CharacterEncodingOverride,)
    if (parsed.get("bozo") and not isinstance(exc, benign)) or not parsed.get("version"):
        reason = f": {exc}" if exc else ""
        raise PermanentChannelError(
            f"{url} is not a well-formed RSS or Atom feed{reason}",
            hint="check the address; the partner's feed may be broken",
        )
    return parsed


def _entry_guid(entry: Any) -> str | None:
    return entry.get("id") or entry.get("guid") or entry.get("link")


def _enclosure(entry: Any) -> tuple[str, str] | None:
    """(url, declared type) of the entry's first audio or video enclosure."""
    links = list(entry.get("enclosures") or [])
    links += [
        link
        for link in entry.get("links") or []
        if link.get("rel") == "enclosure" and link not in links
    ]
    for link in links:
        href, kind = link.get("href"), (link.get("type") or "").lower()
        if href and (not kind or kind.startswith(_MEDIA_TYPES)):
            return href, kind
    return None


def _target_name(feed_url: str, guid: str, enclosure_url: str, content_type: str) -> str:
    tag = hashlib.sha256(f"{feed_url}\n{guid}".encode()).hexdigest()[:12]
    base = Path(unquote(urlsplit(enclosure_url).path)).name
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(base).stem).strip("-.")[:60] or "item"
    suffix = Path(base).suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
        suffix = mimetypes.guess_extension(content_type) or ".bin"
    return f"{tag}-{stem}{suffix}"


def _download(
    client: Any, url: str, inbox: Path, name: str, max_bytes: int, timeout: float
) -> Path:
    import httpx

    deadline = time.monotonic() + timeout
    try:
        with client.stream("GET", url) as resp:
            if resp.status_code != 200:
                raise PermanentChannelError(f"HTTP {resp.status_code}")
            kind = resp.headers.get("content-type", "").split(";")[0].strip().lower()
            if not kind.startswith(_MEDIA_TYPES):
                raise PermanentChannelError(f"not audio or video (content-type {kind or 'none'})")
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise PermanentChannelError(f"{declared} bytes is over the {max_bytes}-byte limit")
            inbox.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=inbox)
            try:
                size = 0
                with os.fdopen(fd, "wb") as fh:
                    for chunk in _chunks(resp, url, deadline, timeout):
                        size += len(chunk)
                        if size > max_bytes:
                            raise PermanentChannelError(f"over the {max_bytes}-byte limit")
                        fh.write(chunk)
                    fh.flush()
                    os.fsync(fh.fileno())
                if size == 0:
                    raise PermanentChannelError("the file is empty")
                target = inbox / name
                os.replace(tmp, target)
                return target
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    except httpx.HTTPError as exc:
        raise TransientChannelError(f"{type(exc).__name__}: {exc}") from exc


def _remember(ctx: Context, feed_url: str, guid: str, url: str, status: str, error: str | None):
    values = {"enclosure_url": url, "status": status, "error": error, "pulled_at": utcnow()}
    with ctx.db.begin() as conn:
        res = conn.execute(
            feed_items.update()
            .where(feed_items.c.feed_url == feed_url, feed_items.c.guid == guid)
            .values(**values)
        )
        if res.rowcount == 0:
            conn.execute(feed_items.insert().values(feed_url=feed_url, guid=guid, **values))


def pull(
    ctx: Context,
    url: str,
    *,
    timeout: float = 300.0,
    max_bytes: int = 500 * 1024 * 1024,
    max_redirects: int = 5,
    allow_private: bool = False,
    transport: Any = None,
) -> PullReport:
    """Download the new audio/video enclosures of a partner's RSS/Atom/podcast feed into
    `media/inbox/` (each atomically) and remember every item, so a second pull adds nothing.

    `timeout` is the time allowed for the feed and for each enclosure, in total. The feed names
    the addresses we fetch, so private and loopback addresses are refused unless
    `allow_private` (link-local, multicast and reserved ones always are), on every redirect too.

    A malformed feed raises PermanentChannelError; an item whose enclosure fails (404, wrong
    type, too large, too slow) is recorded as failed and retried on the next pull, the others
    go on.
    """
    import httpx

    report = PullReport(feed_url=url)
    inbox = _inbox(ctx.workspace)
    with httpx.Client(
        timeout=timeout,
        follow_redirects=True,
        max_redirects=max_redirects,
        transport=transport,
        headers={"user-agent": "narratives feed pull"},
        event_hooks=_guard(allow_private),
    ) as client:
        parsed = _parse(url, _fetch_feed(client, url, timeout))
        report.title = parsed.feed.get("title", "")
        with ctx.db.connect() as conn:
            done = {
                r.guid
                for r in conn.execute(
                    sa.select(feed_items.c.guid).where(
                        feed_items.c.feed_url == url, feed_items.c.status == "downloaded"
                    )
                )
            }
        for entry in parsed.entries:
            found = _enclosure(entry)
            guid = _entry_guid(entry) or (found[0] if found else None)
            if guid is None or found is None:
                continue
            if guid in done:
                report.skipped.append(guid)
                continue
            enclosure_url = httpx.URL(url).join(found[0])
            name = _target_name(url, guid, str(enclosure_url), found[1])
            try:
                path = _download(client, str(enclosure_url), inbox, name, max_bytes, timeout)
            except NarrativesError as exc:
                _remember(ctx, url, guid, str(enclosure_url), "failed", str(exc))
                report.failed.append((guid, str(exc)))
                continue
            _remember(ctx, url, guid, str(enclosure_url), "downloaded", None)
            done.add(guid)
            report.downloaded.append(path)
    return report
