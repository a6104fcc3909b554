"""The video a draft carries: one per campaign, from the render stage's `done` rows: the
formats the campaign renders (`records.video.campaign_formats`: its channels' format, vertical,
then its `look.formats` extras) first, then any other format rendered on request
(`narrative render --format`). A cut video (an excerpt of a long recording) says what it keeps.

Rows are read leniently (a row may hold no more than the video's path), so not through
`records.video.Video.from_output`, which needs the whole record.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from narratives.core.campaigns import Campaign
from narratives.core.workspace import Workspace
from narratives.records.video import campaign_formats, video_key
from narratives.store.context import Context
from narratives.store.stage_runs import get_run

__all__ = ["draft_video"]

_ASPECT = {"vertical": [9, 16], "square": [1, 1]}

_NO_VIDEO: dict[str, Any] = {
    "video": None,
    "captions": None,
    "aspect_ratio": None,
    "format": None,
    "kept": None,
    "missing_glyphs": "",
    "voice": None,
}


def _rel(workspace: Workspace, path: Path) -> str:
    return path.relative_to(workspace.root).as_posix()


def draft_video(ctx: Context, narrative_id: str, campaign: Campaign) -> dict[str, Any]:
    """The rendered video for a campaign, from the render stage's `done` rows, if any: its
    paths relative to the workspace, aspect ratio, format, kept intervals, missing glyphs."""
    # What the render stage makes for the campaign, the channels' format first. Never another
    # format rendered once on request: the render stage keeps only these current (a change of
    # the narrator's privacy renders them again), so another could carry a named voice.
    formats = campaign_formats(campaign)
    folder = ctx.workspace.narrative_dir(narrative_id)
    for fmt in formats:
        run_ = get_run(ctx.db, narrative_id, "render", video_key(campaign.slug, fmt))
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
            # "synthetic" when a shipped voice re-created the narrator's words (policy.voice).
            "voice": out.get("voice") or None,
        }
    return dict(_NO_VIDEO)


def _kept(render_output: dict[str, Any]) -> list[list[float]] | None:
    """The recording's intervals a cut video keeps (render row `cut_ranges`), None if whole."""
    if not render_output.get("cut"):
        return None
    ranges = render_output.get("cut_ranges") or []
    return [[float(a), float(b)] for a, b in ranges] or None
