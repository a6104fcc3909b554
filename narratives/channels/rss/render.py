"""Our RSS 2.0 and Atom documents for one campaign (feedgen), from the items it is given.

A build is deterministic (dates come from the items, not the clock), so an unchanged feed keeps
its ETag. Media are public only through the manifest a build returns: opaque name → workspace
path (see `files`).

GUIDs are tag: URIs (RFC 4151) from the campaign's link host, its slug and the narrative id, so
an item keeps its GUID across rebuilds, edits and re-publication.
"""

from __future__ import annotations

import hashlib
import html
import mimetypes
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from feedgen.ext.base import BaseEntryExtension, BaseExtension
from feedgen.feed import FeedGenerator
from feedgen.util import xml_elem

from narratives.core.campaigns import Campaign, RSSChannelConfig
from narratives.core.errors import NotFound
from narratives.core.workspace import Workspace

__all__ = ["EPOCH", "PODCAST_NS", "FeedItem", "item_guid", "media_name", "render_feeds"]

#: The Podcasting 2.0 namespace (podcast:transcript).
PODCAST_NS = "https://podcastindex.org/namespace/1.0"
#: Before any item exists a feed's dates are this fixed instant, so empty builds are identical.
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


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
class FeedItem:
    """One published item: the content it went out with, and when."""

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
    workspace: Workspace, campaign: Campaign, items: Sequence[FeedItem], base_url: str
) -> tuple[bytes, bytes, dict[str, str]]:
    """The campaign's RSS and Atom documents of `items` (newest first) and their media manifest
    (name → workspace path). `base_url` is where `/feeds/...` is served."""
    cfg = campaign.channels.rss
    if cfg is None:
        raise NotFound(f"campaign {campaign.slug} has no RSS channel")
    ws = workspace
    base = base_url.rstrip("/")
    manifest: dict[str, str] = {}

    def public(path: Path) -> str:
        rel = path.relative_to(ws.root.resolve()).as_posix()
        name = media_name(rel)
        manifest[name] = rel
        return f"{base}/feeds/media/{name}"

    updated = max((i.published_at for i in items), default=EPOCH)
    fg = _new_feed(ws, campaign, cfg, base, updated, public)

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


def _new_feed(
    ws: Workspace,
    campaign: Campaign,
    cfg: RSSChannelConfig,
    base: str,
    updated: datetime,
    public: Callable[[Path], str],
) -> FeedGenerator:
    """The feed's own elements (title, links, dates, image), before any entry."""
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
    return fg


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
