"""Every Bluesky limit a draft's content can break, checked before approval (SDK-free).

The lexicons' limits (app.bsky.feed.post, app.bsky.embed.video, app.bsky.embed.images,
app.bsky.feed.threadgate): a post's text at most 300 graphemes and 3,000 bytes; a video's or
image's alt text at most 1,000 graphemes and 10,000 bytes; at most 3 language tags; self-labels
from Bluesky's short list; a threadgate's allow list at most 5 rules. A draft breaking one would
be approved and then refused for good at its slot, so approval asks `draft_problems` first and
the review page shows the same sentences while the editor is still writing.
"""

from __future__ import annotations

from typing import Any

from narratives.channels.bluesky.post import MAX_LANGS, SELF_LABELS
from narratives.channels.bluesky.text import MAX_GRAPHEMES, MAX_TEXT_BYTES, count_graphemes
from narratives.core.campaigns import draft_gates

__all__ = [
    "MAX_ALT_BYTES",
    "MAX_ALT_GRAPHEMES",
    "MAX_THREADGATE_RULES",
    "draft_problems",
]

#: app.bsky.embed.video#main.alt and app.bsky.embed.images#image.alt.
MAX_ALT_GRAPHEMES = 1000
MAX_ALT_BYTES = 10_000
#: app.bsky.feed.threadgate: allow has at most 5 rules.
MAX_THREADGATE_RULES = 5


def _size(text: str) -> tuple[int, int]:
    return count_graphemes(text), len(text.encode("utf-8"))


def draft_problems(content: dict[str, Any]) -> list[str]:
    """What Bluesky would refuse in a draft's content, as sentences for the editor (empty when
    nothing). Files (video size, caption files) are checked when the post goes out."""
    found: list[str] = []
    posts = [
        p.get("text", "") if isinstance(p, dict) else str(p) for p in content.get("posts") or []
    ]
    if not posts:
        found.append("the thread has no posts")
    for i, text in enumerate(posts, 1):
        graphemes, size = _size(text)
        if not text.strip():
            found.append(f"post {i} is empty")
        elif graphemes > MAX_GRAPHEMES:
            found.append(f"post {i} has {graphemes} characters; Bluesky allows {MAX_GRAPHEMES}")
        elif size > MAX_TEXT_BYTES:
            found.append(f"post {i} is {size} bytes long; Bluesky allows {MAX_TEXT_BYTES}")
    alt = content.get("alt") or ""
    graphemes, size = _size(alt)
    if graphemes > MAX_ALT_GRAPHEMES:
        found.append(
            f"the video description (alt text) has {graphemes} characters; Bluesky allows "
            f"{MAX_ALT_GRAPHEMES}"
        )
    elif size > MAX_ALT_BYTES:
        found.append(
            f"the video description (alt text) is {size} bytes long; Bluesky allows {MAX_ALT_BYTES}"
        )
    langs = content.get("langs") or []
    if len(langs) > MAX_LANGS:
        found.append(f"{len(langs)} language tags; Bluesky allows {MAX_LANGS}")
    unknown = sorted(set(content.get("labels") or ()) - SELF_LABELS)
    if unknown:
        found.append(f"not a Bluesky self-label: {', '.join(unknown)}")
    try:
        gates = draft_gates(content.get("gates"))
    except ValueError as exc:
        found.append(f"reply and quote settings: {exc}")
    else:
        if gates is not None:
            rules = [r for r in gates["replies"] if r not in ("everyone", "nobody", "lists")]
            count = len(rules) + len(gates["lists"])  # type: ignore[arg-type]
            if count > MAX_THREADGATE_RULES:
                found.append(
                    f"{count} reply rules (lists count one each); Bluesky allows "
                    f"{MAX_THREADGATE_RULES}"
                )
    return found
