"""Video layouts: one format's geometry, from `templates/video/<format>.toml`.

A bad key is a `ConfigError` naming the file, and so is a layout whose boxes leave the safe
area, overlap, or cannot hold their text at the smallest size.
"""

from __future__ import annotations

import math
import tomllib
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from narratives.core.errors import ConfigError
from narratives.core.workspace import DEFAULTS_ROOT, Workspace
from narratives.records.video import FORMATS
from narratives.stages.render.fonts import line_height, load_font, roboto

__all__ = ["FORMATS", "Layout", "load_layout", "load_layout_file"]


class _LayoutModel(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Box(_LayoutModel):
    #: Pixels from the top of a 1080-wide frame (scaled with `render.scale`).
    top: int = Field(ge=0)
    height: int = Field(gt=0)


class SafeArea(_LayoutModel):
    top: int = Field(ge=0)
    bottom: int = Field(ge=0)
    left: int = Field(ge=0)
    right: int = Field(ge=0)


class HeaderLayout(_Box):
    """Logo and campaign name."""

    name_size: int = Field(gt=0)


class TitleLayout(_Box):
    size: int = Field(gt=0)
    min_size: int = Field(gt=0)
    max_lines: int = Field(ge=1, le=4)
    line_size: int = Field(gt=0)


class CaptionLayout(_Box):
    size: int = Field(gt=0)
    min_size: int = Field(gt=0)
    max_lines: int = Field(ge=1, le=3)
    line_spacing: float = Field(1.2, ge=1.0, le=2.0)


class WaveformLayout(_Box):
    bars: int = Field(ge=3, le=200)
    #: Share of each bar's slot left empty.
    gap: float = Field(0.35, ge=0, le=0.9)


class ProgressLayout(_Box):
    pass


class EndCardLayout(_LayoutModel):
    #: How long the end card shows after the last word (the video grows if needed).
    seconds: float = Field(ge=0, le=10)
    hashtag_size: int = Field(gt=0)
    link_size: int = Field(gt=0)


class Layout(_LayoutModel):
    """One format's geometry, in pixels of the full-size frame."""

    width: int = Field(ge=240, le=3840)
    height: int = Field(ge=240, le=3840)
    safe_area: SafeArea
    header: HeaderLayout
    title: TitleLayout
    captions: CaptionLayout
    waveform: WaveformLayout
    progress: ProgressLayout
    end_card: EndCardLayout
    path: Path | None = Field(default=None, exclude=True)


_ROWS = ("header", "title", "captions", "waveform", "progress")


def _check_layout(layout: Layout, path: Path) -> None:
    safe = layout.safe_area
    lo, hi = safe.top, layout.height - safe.bottom
    if hi - lo < layout.height // 3 or layout.width - safe.left - safe.right < layout.width // 3:
        raise ConfigError(f"{path}: invalid layout\n  safe_area: leaves too little of the frame")
    prev_name, prev_end = None, lo
    for name in _ROWS:
        box: _Box = getattr(layout, name)
        end = box.top + box.height
        if box.top < lo or end > hi:
            raise ConfigError(
                f"{path}: invalid layout\n  {name}.top: rows {box.top}..{end} leave the safe "
                f"area ({lo}..{hi})"
            )
        if box.top < prev_end and prev_name:
            raise ConfigError(
                f"{path}: invalid layout\n  {name}.top: {box.top} overlaps {prev_name} "
                f"(which ends at {prev_end})"
            )
        prev_name, prev_end = name, end
    if layout.title.min_size > layout.title.size:
        raise ConfigError(f"{path}: invalid layout\n  title.min_size: larger than title.size")
    if layout.captions.min_size > layout.captions.size:
        raise ConfigError(f"{path}: invalid layout\n  captions.min_size: larger than captions.size")
    # The boxes must hold their text at the smallest size (measured with the shipped font;
    # a campaign's own font is checked again when a video is drawn).
    bold = str(roboto("Bold"))
    cap, tl = layout.captions, layout.title
    need = line_height(load_font(bold, cap.min_size)) * (1 + (cap.max_lines - 1) * cap.line_spacing)
    if need > cap.height:
        raise ConfigError(
            f"{path}: invalid layout\n  captions.height: {cap.height} cannot hold "
            f"{cap.max_lines} lines at min_size {cap.min_size} (needs {math.ceil(need)})"
        )
    need = line_height(load_font(bold, tl.min_size)) + line_height(load_font(bold, tl.line_size))
    if need > tl.height:
        raise ConfigError(
            f"{path}: invalid layout\n  title.height: {tl.height} cannot hold one title line "
            f"at min_size {tl.min_size} and the line below it (needs {need})"
        )


def load_layout(workspace: Workspace | None, fmt: str) -> Layout:
    """`templates/video/<fmt>.toml` of the workspace, else the shipped one."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown video format {fmt!r}", hint=f"one of {', '.join(FORMATS)}")
    candidates = [DEFAULTS_ROOT / "templates" / "video" / f"{fmt}.toml"]
    if workspace is not None:
        candidates.insert(0, workspace.templates_dir / "video" / f"{fmt}.toml")
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise ConfigError(f"no layout for {fmt!r} videos", hint=f"create {candidates[0]}")
    return load_layout_file(path)


def load_layout_file(path: Path) -> Layout:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read layout: {exc}") from exc
    if "path" in data:
        raise ConfigError(f"{path}: invalid layout\n  path: Extra inputs are not permitted")
    try:
        layout = Layout.model_validate({**data, "path": path})
    except ValidationError as exc:
        lines = [f"{path}: invalid layout"]
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            lines.append(f"  {key}: {err['msg']}")
        raise ConfigError("\n".join(lines)) from exc
    _check_layout(layout, path)
    return layout
