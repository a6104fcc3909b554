"""Bluesky rich text: facets for the links, #hashtags and @mentions of a post's text."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable

from atproto import models

from narratives.channels.bluesky.text import count_graphemes

__all__ = ["build_facets"]

MAX_TAG_GRAPHEMES = 64

_URL = re.compile(r"(?:^|(?<=[\s(\[]))https?://[^\s<>\"]+", re.IGNORECASE)
_MENTION = re.compile(r"(?:^|(?<=[\s(\[]))@([A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)")
_TAG = re.compile(r"(?:^|(?<=\s))[#\uff03](\S+)")
_URL_TRAILING = ".,;:!?'\"”’"
_TAG_INVISIBLE = "\u00ad\u2060\u200a\u200b\u200c\u200d\u20e2\ufe0f"


def _is_punctuation(char: str) -> bool:
    return unicodedata.category(char).startswith("P")


def _trim_url(url: str) -> str:
    while url and (
        url[-1] in _URL_TRAILING or (url[-1] == ")" and url.count("(") < url.count(")"))
    ):
        url = url[:-1]
    return url


def _trim_tag(tag: str) -> str | None:
    """Bluesky's rule: trailing punctuation is not part of a tag; a tag is not only digits."""
    while tag and _is_punctuation(tag[-1]):
        tag = tag[:-1]
    if not tag or tag[0] in _TAG_INVISIBLE or any(c in _TAG_INVISIBLE for c in tag):
        return None
    if all(c.isdigit() or _is_punctuation(c) for c in tag):
        return None
    if count_graphemes(tag) > MAX_TAG_GRAPHEMES:
        return None
    return tag


def _slice(text: str, start: int, end: int) -> models.AppBskyRichtextFacet.ByteSlice:
    byte_start = len(text[:start].encode("utf-8"))
    byte_end = byte_start + len(text[start:end].encode("utf-8"))
    return models.AppBskyRichtextFacet.ByteSlice(byte_start=byte_start, byte_end=byte_end)


def build_facets(
    text: str, resolve_handle: Callable[[str], str | None] | None = None
) -> list[models.AppBskyRichtextFacet.Main]:
    """Facets for the links, #hashtags and @mentions in `text`, with UTF-8 byte offsets.

    Links must start with http:// or https:// (bare domains stay text, as they are easily
    confused with handles). `resolve_handle` maps a handle to its DID or None; a mention that
    does not resolve, or any mention when no resolver is given, stays plain text.
    """
    facets: list[tuple[int, models.AppBskyRichtextFacet.Main]] = []

    for match in _URL.finditer(text):
        url = _trim_url(match.group(0))
        if len(url) <= len("https://"):
            continue
        start = match.start()
        feature = models.AppBskyRichtextFacet.Link(uri=url)
        index = _slice(text, start, start + len(url))
        facets.append((start, models.AppBskyRichtextFacet.Main(index=index, features=[feature])))

    if resolve_handle is not None:
        for match in _MENTION.finditer(text):
            handle = match.group(1)
            if "." not in handle:
                continue
            did = resolve_handle(handle.lower())
            if not did:
                continue
            feature = models.AppBskyRichtextFacet.Mention(did=did)
            index = _slice(text, match.start(), match.end())
            facets.append(
                (match.start(), models.AppBskyRichtextFacet.Main(index=index, features=[feature]))
            )

    for match in _TAG.finditer(text):
        tag = _trim_tag(match.group(1))
        if tag is None:
            continue
        start = match.start()
        end = match.start(1) + len(tag)
        feature = models.AppBskyRichtextFacet.Tag(tag=tag)
        facets.append(
            (
                start,
                models.AppBskyRichtextFacet.Main(
                    index=_slice(text, start, end), features=[feature]
                ),
            )
        )

    return [facet for _, facet in sorted(facets, key=lambda item: item[0])]
