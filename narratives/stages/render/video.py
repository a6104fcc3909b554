"""One captioned audiogram video: plan the cut, assemble the audio, draw the design, encode.

MoviePy's clip model supplies the frames by time; `video_writer.I420Writer` hands them to
ffmpeg as YUV 4:2:0, so ffmpeg only encodes: H.264 yuv420p (BT.709), AAC from the WAV beside
the frames, `+faststart` (MoviePy's defaults would be MP3 audio and no faststart). The video,
its WebVTT and its PNG thumbnail appear only when complete (temporary names, then renamed).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from narratives.core.campaigns import Campaign
from narratives.core.errors import ConfigError, StageFailed
from narratives.core.workspace import DEFAULTS_ROOT, Workspace
from narratives.media.audio import probe
from narratives.media.video_writer import I420Writer
from narratives.records.redactions import Redactions
from narratives.records.transcript import Transcript
from narratives.stages.render.cut import length, plan_cut, remap, to_output_time, words_of
from narratives.stages.render.design import Design
from narratives.stages.render.fonts import load_font
from narratives.stages.render.layout import Layout, load_layout
from narratives.stages.render.pages import PAGE_HOLD, vtt
from narratives.stages.render.soundtrack import assemble_audio, levels, write_wav

__all__ = [
    "MAX_BYTES",
    "MAX_SECONDS",
    "Progress",
    "Rendered",
    "asset_paths",
    "frame_scale",
    "render_video",
]

#: Bluesky's limits for a video embed.
MAX_SECONDS = 180.0
MAX_BYTES = 100 * 1000 * 1000

Progress = Callable[[int, int], None]


@dataclass
class Rendered:
    """What `render_video` made (absolute paths)."""

    video: Path
    captions: Path
    thumbnail: Path
    duration: float
    width: int
    height: int
    cut_ranges: list[tuple[float, float]]
    cut: bool
    #: Characters of the title or captions that no font could draw (kept in the VTT).
    missing_glyphs: str = ""


@dataclass
class _Timeline:
    """The cut and the video's length in whole frames, so video and audio end together."""

    ranges: list[tuple[float, float]]
    cut: bool
    #: Words kept, in output time: (start, end, text).
    timed: list[tuple[float, float, str]]
    spoken: float
    tail: float
    nframes: int


def frame_scale(layout: Layout, resolution: int, scale: float = 1.0) -> float:
    """The factor on a layout's 1080-px units that gives frames `resolution` px on the short
    edge, times `scale` (`[render] scale`: tests and previews render smaller)."""
    return resolution / min(layout.width, layout.height) * scale


def render_video(
    audio_path: Path,
    transcript: Transcript,
    campaign: Campaign,
    out: Path,
    *,
    fmt: str = "vertical",
    layout: Layout | None = None,
    workspace: Workspace | None = None,
    title: str = "",
    keys: Sequence[tuple[float, float]] = (),
    fps: int = 30,
    scale: float = 1.0,
    preset: str = "veryfast",
    threads: int | None = None,
    redactions: Redactions | None = None,
    voice_semitones: float | None = None,
    progress: Progress | None = None,
) -> Rendered:
    """Render one video to `out` (`.mp4`), its `.vtt` and `.png` beside it.

    `keys` are source intervals to keep first if the recording must be cut (the quote, then
    the summary sentences). Files appear only when complete (temporary name, then rename).
    """
    layout = layout or load_layout(workspace, fmt)
    font_path, logo, bg_image = _assets(workspace, campaign)
    # The container's own length: the transcript's may be rounded or short of the file.
    duration = probe(audio_path).duration or transcript.duration
    tl = _timeline(transcript, duration, campaign, layout, keys, fps)
    samples = assemble_audio(
        audio_path, tl.ranges, tl.tail, redactions, voice_semitones=voice_semitones
    )
    total = tl.nframes / fps
    design = Design(
        layout=layout,
        scale=scale,
        campaign=campaign,
        title=title,
        words=tl.timed,
        duration=total,
        fps=fps,
        levels=levels(samples, fps, tl.nframes),
        font_path=font_path,
        logo=logo,
        background_image=bg_image,
        redactions=redactions,
    )
    thumb_at = _thumbnail_time(design, keys, tl.ranges)
    vtt_path, png_path = _encode(
        design, samples, out, tl.nframes, fps, preset, threads, progress, thumb_at
    )
    return Rendered(
        video=out,
        captions=vtt_path,
        thumbnail=png_path,
        duration=round(total, 3),
        width=design.width,
        height=design.height,
        cut_ranges=[(round(a, 3), round(b, 3)) for a, b in tl.ranges],
        cut=tl.cut,
        missing_glyphs=design.missing_glyphs,
    )


def _assets(
    workspace: Workspace | None, campaign: Campaign
) -> tuple[str | None, Path | None, Path | None]:
    """The campaign's font (checked to load), logo and background image, if it has them."""
    font_path = None
    if campaign.look.font:
        font = _resolve_asset(workspace, campaign, "font")
        font_path = str(font)
        try:
            load_font(font_path, 12)
        except OSError as exc:
            raise ConfigError(f"{campaign.path}: look.font: cannot load {font}: {exc}") from exc
    logo = _resolve_asset(workspace, campaign, "logo")
    bg_image = _resolve_asset(workspace, campaign, "background_image")
    return font_path, logo, bg_image


def asset_paths(workspace: Workspace | None, campaign: Campaign) -> dict[str, Path | None]:
    """The campaign's font, logo and background image files (None where it has none);
    a `ConfigError` names a missing one."""
    return {k: _resolve_asset(workspace, campaign, k) for k in ("font", "logo", "background_image")}


def _resolve_asset(workspace: Workspace | None, campaign: Campaign, key: str) -> Path | None:
    value = getattr(campaign.look, key)
    if not value:
        return None
    roots = [workspace.root] if workspace is not None else []
    roots.append(DEFAULTS_ROOT)
    for root in roots:
        p = (root / value).resolve()
        if p.is_file():
            return p
    where = campaign.path or campaign.slug
    raise ConfigError(f"{where}: look.{key}: file {value!r} not found in the workspace")


def _timeline(
    transcript: Transcript,
    duration: float,
    campaign: Campaign,
    layout: Layout,
    keys: Sequence[tuple[float, float]],
    fps: int,
) -> _Timeline:
    words = words_of(transcript)
    end_seconds = layout.end_card.seconds
    limit = min(campaign.max_video_seconds, MAX_SECONDS)
    # Leave room for the end card when the speech runs to the end.
    ranges = plan_cut(words, duration, max(1.0, limit - end_seconds - PAGE_HOLD), keys)
    timed = remap(words, ranges)
    spoken = length(ranges)
    last_word = max((b for _, b, _ in timed), default=0.0)
    tail = max(0.0, min(last_word + PAGE_HOLD + end_seconds, limit) - spoken)
    # Whole frames, so the video and audio streams end together.
    nframes = max(1, math.ceil((spoken + tail) * fps - 1e-6))
    tail = nframes / fps - spoken
    return _Timeline(ranges, ranges != [(0.0, duration)], timed, spoken, tail, nframes)


def _encode(
    design: Design,
    samples: np.ndarray,
    out: Path,
    nframes: int,
    fps: int,
    preset: str,
    threads: int | None,
    progress: Progress | None,
    thumb_at: float,
) -> tuple[Path, Path]:
    """Write the video, its WebVTT and thumbnail through temporary names; returns the
    captions and thumbnail paths."""
    # MoviePy is heavy to import (imageio, decorators): only when a video is made.
    from moviepy import VideoClip

    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.with_suffix("")
    tmp_video = out.with_name(f".{out.stem}.tmp.mp4")
    tmp_audio = out.with_name(f".{out.stem}.tmp-audio.wav")
    tmp_vtt = out.with_name(f".{out.stem}.tmp.vtt")
    tmp_png = out.with_name(f".{out.stem}.tmp.png")
    vtt_path, png_path = stem.with_suffix(".vtt"), stem.with_suffix(".png")
    try:
        write_wav(tmp_audio, samples)
        # MoviePy's clip model supplies the frames by time (`get_frame`). The composer
        # reuses one buffer: each frame is written before the next is asked for.
        clip = VideoClip(design.composer(), duration=(nframes + 0.5) / fps)
        with I420Writer(
            tmp_video,
            width=design.width,
            height=design.height,
            fps=fps,
            audio=tmp_audio,
            preset=preset,
            threads=threads,
        ) as writer:
            # Progress about once a second of video: a callback per frame costs more than
            # composing the frame.
            for i in range(nframes):
                writer.write(clip.get_frame(i / fps))
                if progress is not None and ((i + 1) % fps == 0 or i + 1 == nframes):
                    progress(i + 1, nframes)
        clip.close()
        if tmp_video.stat().st_size > MAX_BYTES:
            raise StageFailed(
                f"{out.name}: {tmp_video.stat().st_size / 1e6:.0f} MB is over Bluesky's 100 MB"
            )
        tmp_vtt.write_text(vtt(design.pages, nframes / fps), encoding="utf-8")
        Image.fromarray(design.frame(thumb_at)).save(tmp_png)
        os.replace(tmp_vtt, vtt_path)
        os.replace(tmp_png, png_path)
        os.replace(tmp_video, out)
    finally:
        for p in (tmp_video, tmp_audio, tmp_vtt, tmp_png):
            p.unlink(missing_ok=True)
    return vtt_path, png_path


def _thumbnail_time(
    design: Design, keys: Sequence[tuple[float, float]], ranges: Sequence[tuple[float, float]]
) -> float:
    """A frame showing a caption: the quote's first page if kept, else the first page."""
    for a, _b in keys:
        t = to_output_time(a, ranges)
        if t is not None and design.page_at(t + 0.05) is not None:
            return t + 0.05
    if design.pages:
        p = design.pages[0]
        return min(p.end - 1e-3, max(p.start, p.word_starts[0] if p.word_starts else p.start))
    return min(design.duration / 2, design.duration - 1e-3)
