"""Bluesky's text rules without its SDK: graphemes, the post limits, and cutting a long text
into a thread. The draft stage needs only these, so it does not load the atproto SDK (about a
second of import time) just to count characters."""

from __future__ import annotations

import re

import grapheme

__all__ = ["MAX_GRAPHEMES", "MAX_TEXT_BYTES", "count_graphemes", "fits", "split_thread"]

#: app.bsky.feed.post limits: text at most 300 graphemes and 3000 UTF-8 bytes.
MAX_GRAPHEMES = 300
MAX_TEXT_BYTES = 3000


def count_graphemes(text: str) -> int:
    """User-perceived characters, as Bluesky counts them (an emoji family or e + U+0301 is one)."""
    return grapheme.length(text)


def fits(text: str, limit: int = MAX_GRAPHEMES) -> bool:
    """Whether `text` is within the post limits (`limit` graphemes, 3000 bytes)."""
    return count_graphemes(text) <= limit and len(text.encode("utf-8")) <= MAX_TEXT_BYTES


# A sentence ends at . ! ? … (plus closing quotes or brackets) followed by whitespace, or at a
# blank line. Abbreviations ("Dr. Ames") may end a "sentence" too early; that only moves where a
# thread is cut, never what it says.
_SENTENCE_END = re.compile(r"[.!?…。！？]+[\"'”’»)\]]*\s+|\n\s*\n\s*")


def _sentences(text: str) -> list[str]:
    """Pieces of `text`, each a sentence with the whitespace that follows it."""
    pieces, start = [], 0
    for match in _SENTENCE_END.finditer(text):
        pieces.append(text[start : match.end()])
        start = match.end()
    if start < len(text):
        pieces.append(text[start:])
    return pieces


def _words(text: str, limit: int) -> list[str]:
    """Words of `text` with their trailing whitespace; a word longer than a post is cut,
    except a link: half a URL is a broken link, so it stays whole and its post too long,
    which stops approval until an editor shortens it."""
    out: list[str] = []
    for word in re.findall(r"\S+\s*", text):
        if fits(word.strip(), limit) or re.match(r"(?i)https?://", word):
            out.append(word)
            continue
        piece = ""
        for cluster in grapheme.graphemes(word.strip()):
            if not fits(piece + cluster, limit):
                out.append(piece)
                piece = ""
            piece += cluster
        out.append(piece + word[len(word.rstrip()) :])
    return out


def split_thread(text: str, limit: int = MAX_GRAPHEMES) -> list[str]:
    """Cut `text` into posts of at most `limit` graphemes (and 3000 bytes) for a thread.

    Cuts fall between sentences where possible, else between words; only a single word longer
    than a post is cut inside. Whitespace at the cuts is dropped; the rest is kept as written.
    """
    text = text.strip()
    if not text:
        return []
    if fits(text, limit):
        return [text]
    units: list[str] = []
    for sentence in _sentences(text):
        units.extend([sentence] if fits(sentence.strip(), limit) else _words(sentence, limit))
    posts: list[str] = []
    current = ""
    for unit in units:
        if current.strip() and not fits((current + unit).strip(), limit):
            posts.append(current.strip())
            current = unit
        else:
            current += unit
    if current.strip():
        posts.append(current.strip())
    return posts
