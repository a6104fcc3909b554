"""Helpers for the scheduling, scheduler, feed and publish tests: narratives and drafts are
inserted as rows (content in the documented JSON shape, docs/architecture.md), so these tests
do not depend on the drafting and review modules."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path
from typing import Any

from narratives.core.clock import utcnow
from narratives.store.context import Context
from narratives.store.schema import consents, drafts, narratives

_counter = itertools.count(1)


def add_narrative(
    ctx: Context, label: str | None = None, *, consent: tuple[str, ...] = ("bluesky", "rss")
) -> str:
    """A narrative row; with consent recorded for `consent` channels (none if empty)."""
    n = next(_counter)
    label = label or f"story-{n}.wav"
    nid = hashlib.sha256(f"{label}/{n}/{id(ctx)}".encode()).hexdigest()
    now = utcnow()
    with ctx.db.begin() as conn:
        conn.execute(
            narratives.insert().values(
                id=nid, created_at=now, updated_at=now, size_bytes=1000, label=label
            )
        )
        if consent:
            conn.execute(
                consents.insert().values(
                    narrative_id=nid,
                    given_by="the narrator",
                    given_at=now,
                    method="form",
                    channels=list(consent),
                    anonymous=True,
                    updated_at=now,
                )
            )
    return nid


def rss_content(
    title: str = "The two lines",
    *,
    summary: str = "A dreamer waits in the line for people who cannot pay.",
    content: str = "I dreamt there were two lines. One for people who paid, one for the rest.",
    enclosure: str | None = None,
    captions: str | None = None,
    link: str = "https://emotional-equity.example/stories/two-lines",
) -> dict[str, Any]:
    return {
        "title": title,
        "summary": summary,
        "content": content,
        "link": link,
        "enclosure": enclosure,
        "captions": captions,
    }


def bluesky_content(*texts: str, video: str | None = None, captions: str | None = None) -> dict:
    return {
        "posts": [{"text": t} for t in (texts or ("A story about rest. #EmotionalEquity",))],
        "langs": ["en"],
        "labels": [],
        "video": video,
        "captions": captions,
        "alt": "An audiogram of a narrator telling a dream.",
        "aspect_ratio": [1080, 1920] if video else None,
        "content_warning": None,
    }


def add_draft(
    ctx: Context,
    campaign: str = "emotional-equity",
    channel: str = "rss",
    *,
    content: dict | None = None,
    state: str = "approved",
    narrative_id: str | None = None,
) -> int:
    nid = narrative_id or add_narrative(ctx)
    if content is None:
        content = rss_content() if channel == "rss" else bluesky_content()
    now = utcnow()
    with ctx.db.begin() as conn:
        res = conn.execute(
            drafts.insert().values(
                narrative_id=nid,
                campaign=campaign,
                channel=channel,
                state=state,
                template=f"posts/{channel}.j2",
                template_hash="0" * 64,
                generated=content,
                content=content,
                created_at=now,
                updated_at=now,
            )
        )
    return res.inserted_primary_key[0]


def write_media(ws_root: Path, rel: str, data: bytes) -> str:
    p = ws_root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(data)
    return rel
