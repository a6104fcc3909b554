"""What the render stage hands on: one video per campaign and format, as its `stage_runs` row
records it, so the draft stage, the web app and the CLI read a typed record, not a dict."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from narratives.core.campaigns import CHANNELS, Campaign

__all__ = ["FORMATS", "Video", "campaign_formats", "video_file", "video_key"]

#: The video formats there are layouts for (`templates/video/<format>.toml`), in the order a
#: draft prefers them for the one video a post carries.
FORMATS = ("vertical", "square")


def campaign_formats(campaign: Campaign) -> list[str]:
    """The formats a campaign's videos are rendered in: those its channels publish
    (`ChannelInfo.video_format`), then the extras its `look.formats` asks for, in `FORMATS`
    order. A campaign with no channel and no extras renders nothing (no post would carry it;
    `narrative render --format F` still makes one on request)."""
    wanted = {CHANNELS[name].video_format for name in campaign.channel_names}
    wanted |= set(campaign.look.formats)
    return [f for f in FORMATS if f in wanted]


def video_key(campaign: str, fmt: str) -> str:
    """The render stage's `stage_runs.key` for one video: `"<campaign>/<format>"`."""
    return f"{campaign}/{fmt}"


def video_file(campaign: str, fmt: str) -> str:
    """The video's file name in the narrative's folder (`.vtt` and `.png` beside it)."""
    return f"video-{campaign}-{fmt}.mp4"


@dataclass
class Video:
    """One rendered video, its WebVTT captions and PNG thumbnail (absolute paths)."""

    narrative_id: str
    campaign: str
    format: str
    video: Path
    captions: Path
    thumbnail: Path
    duration: float
    width: int
    height: int
    #: True when the video is an excerpt of a recording over the campaign's limit.
    cut: bool
    #: The recording's intervals (seconds) the video keeps, in order.
    cut_ranges: list[tuple[float, float]] = field(default_factory=list)
    #: Characters of the title or captions that no font could draw (kept in the VTT).
    missing_glyphs: str = ""
    #: True when a finished render was found and nothing was redone.
    skipped: bool = False
    #: "synthetic" when a shipped voice speaks the redacted words instead of the recording
    #: (`policy.voice`); None: the recording's own audio (bleeped, maybe pitch-shifted).
    voice: str | None = None

    @property
    def key(self) -> str:
        return video_key(self.campaign, self.format)

    @property
    def aspect_ratio(self) -> list[int]:
        return [self.width, self.height]

    @property
    def kept(self) -> list[list[float]] | None:
        """The intervals a cut video keeps, None when it is the whole recording."""
        if not self.cut:
            return None
        return [[float(a), float(b)] for a, b in self.cut_ranges] or None

    def output(self, root: Path) -> dict[str, Any]:
        """The `stage_runs.output` record: paths relative to the workspace `root`."""
        out = {
            "video": _rel(root, self.video),
            "captions": _rel(root, self.captions),
            "thumbnail": _rel(root, self.thumbnail),
            "duration": self.duration,
            "width": self.width,
            "height": self.height,
            "cut": self.cut,
            "cut_ranges": [[round(a, 3), round(b, 3)] for a, b in self.cut_ranges],
            "missing_glyphs": self.missing_glyphs,
        }
        if self.voice:
            out["voice"] = self.voice
        return out

    @classmethod
    def from_output(
        cls,
        root: Path,
        narrative_id: str,
        campaign: str,
        fmt: str,
        output: Mapping[str, Any],
        *,
        skipped: bool = False,
    ) -> Video:
        """The record of a `done` render row (`output` as `Video.output` wrote it)."""
        return cls(
            narrative_id,
            campaign,
            fmt,
            root / output["video"],
            root / output["captions"],
            root / output["thumbnail"],
            output["duration"],
            output["width"],
            output["height"],
            output["cut"],
            [(float(a), float(b)) for a, b in output["cut_ranges"]],
            str(output.get("missing_glyphs") or ""),
            skipped=skipped,
            voice=output.get("voice") or None,
        )


def _rel(root: Path, path: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)
