"""Partner feeds, fetched safely: RSS/Atom/podcast feeds and their audio/video enclosures.

The feed names the addresses we fetch, so every hop (redirects included) is checked: only
http(s), and no link-local, multicast, unspecified or reserved address; private and loopback
ones only when allowed. Each body is size- and time-bounded; an enclosure lands atomically.
What was pulled before is the workflow's bookkeeping (`narratives.workflow.feeds.pull`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import mimetypes
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from narratives.core.errors import PermanentChannelError, TransientChannelError
from narratives.core.files import remove_stale_parts

__all__ = [
    "absolute_url",
    "download",
    "enclosure",
    "entry_guid",
    "fetch_feed",
    "open_client",
    "parse_feed",
    "target_name",
]

_MEDIA_TYPES = ("audio/", "video/")
_MAX_FEED_BYTES = 10 * 1024 * 1024


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


def fetch_feed(client: Any, url: str, timeout: float) -> bytes:
    import httpx  # loaded when a feed is pulled, not by every command

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


def parse_feed(url: str, data: bytes) -> Any:
    import feedparser  # loaded when a feed is pulled, not by every command

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


def entry_guid(entry: Any) -> str | None:
    return entry.get("id") or entry.get("guid") or entry.get("link")


def enclosure(entry: Any) -> tuple[str, str] | None:
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


def target_name(feed_url: str, guid: str, enclosure_url: str, content_type: str) -> str:
    tag = hashlib.sha256(f"{feed_url}\n{guid}".encode()).hexdigest()[:12]
    base = Path(unquote(urlsplit(enclosure_url).path)).name
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(base).stem).strip("-.")[:60] or "item"
    suffix = Path(base).suffix.lower()
    if not re.fullmatch(r"\.[a-z0-9]{1,5}", suffix):
        suffix = mimetypes.guess_extension(content_type) or ".bin"
    return f"{tag}-{stem}{suffix}"


def download(client: Any, url: str, inbox: Path, name: str, max_bytes: int, timeout: float) -> Path:
    import httpx  # loaded when a feed is pulled, not by every command

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
            remove_stale_parts(inbox)  # what earlier killed downloads left
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


def open_client(
    *, timeout: float, max_redirects: int, allow_private: bool, transport: Any = None
) -> Any:
    """An httpx client for one pull: redirects followed (at most `max_redirects`), every hop
    checked by `_guard`. Use it as a context manager."""
    import httpx  # loaded when a feed is pulled, not by every command

    return httpx.Client(
        timeout=timeout,
        follow_redirects=True,
        max_redirects=max_redirects,
        transport=transport,
        headers={"user-agent": "narratives feed pull"},
        event_hooks=_guard(allow_private),
    )


def absolute_url(base: str, href: str) -> str:
    """`href` (perhaps relative) as found in the feed at `base`."""
    import httpx  # loaded when a feed is pulled, not by every command

    return str(httpx.URL(base).join(href))
