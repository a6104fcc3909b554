"""The render stage: a captioned audiogram video per campaign and format, assembled by MoviePy.

Speed is the design choice here. MoviePy's own way (masked `TextClip`s composited over a
transparent background) costs 5-11x real time on a 60 s 1080x1920 video; masks, not text, are
the cost. So everything static (gradient, image, logo, title card, progress track) is drawn
once into one opaque RGB frame, every caption page and every highlighted word is rasterised
once with Pillow onto its own crop of that frame, and a single `VideoClip` frame function
copies the base and pastes opaque patches, bars and the progress fill. x264 then dominates.

The frames the clip yields are YUV 4:2:0 (I420), not RGB: each layer is converted once, on
even rows and columns so it pastes exactly into the half-size chroma planes, and
`video_writer.I420Writer` hands them to ffmpeg, which then only encodes. MoviePy's own writer
cannot do that (it declares every input rgb24), and converting RGB frames in ffmpeg cost more
than drawing them. `frame(t)` composes the same layers in RGB for thumbnails and tests.

Captions are wrapped by measured pixel width (MoviePy's `method="caption"` breaks words),
drawn from the baseline with room for the font's full descent, and checked against the
layout's safe area; titles and names are shrunk, then ellipsised, to fit. Emoji are dropped. A
script the campaign's font cannot draw switches the whole video to DejaVu Sans; characters no
font has are left out of the picture (a word of only those shows as "…"), kept in the WebVTT,
and listed as `missing_glyphs` in the stage's output.

The audio (cut around the analysis quote and summary when the recording is longer than the
campaign allows, with short fades; bleeped where redacted) is assembled with NumPy and
written as WAV, which the encoder reads beside the frames: H.264 yuv420p
(BT.709), AAC, `+faststart` (MoviePy's defaults would be MP3 audio and no faststart).

Layouts live in `templates/video/<format>.toml`; a bad key is a `ConfigError` naming the file.
"""

from __future__ import annotations

import bisect
import json
import math
import os
import re
import tomllib
import unicodedata
import wave
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from narratives.core.campaigns import Campaign, get_campaign
from narratives.core.errors import ConfigError, InvalidState, StageFailed
from narratives.core.workspace import DEFAULTS_ROOT, Workspace
from narratives.media.video_writer import I420Writer, i420_planes, rgb_to_i420, yuv_of
from narratives.records.redactions import Redactions
from narratives.records.transcript import Transcript, Word
from narratives.stages.ingest import source_path

__all__ = [
    "STAGE",
    "FORMATS",
    "Layout",
    "Redactions",
    "Rendered",
    "VideoResult",
    "load_layout",
    "plan_cut",
    "render_video",
    "run",
]

STAGE = "render"
FORMATS = ("vertical", "square")
#: Bluesky's limits for a video embed.
MAX_SECONDS = 180.0
MAX_BYTES = 100 * 1000 * 1000
#: Audio is assembled and encoded at this rate.
AUDIO_RATE = 44100
#: Fade at each cut edge, long enough to avoid a click and short enough not to be heard.
_FADE = 0.04
#: Silence kept around a sentence at a cut, at most (shared with its neighbour if closer).
_PAD_BEFORE, _PAD_AFTER = 0.2, 0.3
#: A pause this long between words starts a new caption page.
_PAGE_GAP = 1.2
#: A caption page stays up this long after its last word (unless the next one starts).
_PAGE_HOLD = 0.6
_SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*$")

Progress = Callable[[int, int], None]


# --------------------------------------------------------------------------- layout


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
    bold = str(_roboto("Bold"))
    cap, tl = layout.captions, layout.title
    need = _line_height(_font(bold, cap.min_size)) * (1 + (cap.max_lines - 1) * cap.line_spacing)
    if need > cap.height:
        raise ConfigError(
            f"{path}: invalid layout\n  captions.height: {cap.height} cannot hold "
            f"{cap.max_lines} lines at min_size {cap.min_size} (needs {math.ceil(need)})"
        )
    need = _line_height(_font(bold, tl.min_size)) + _line_height(_font(bold, tl.line_size))
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


# --------------------------------------------------------------------------- records


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
class VideoResult:
    narrative_id: str
    campaign: str
    format: str
    video: Path
    captions: Path
    thumbnail: Path
    duration: float
    width: int
    height: int
    cut: bool
    cut_ranges: list[tuple[float, float]]
    missing_glyphs: str = ""
    #: True when a finished render was found and nothing was redone.
    skipped: bool = False

    def output(self, workspace: Workspace) -> dict[str, Any]:
        """The `stage_runs.output` record: workspace-relative paths."""
        return {
            "video": _rel(workspace, self.video),
            "captions": _rel(workspace, self.captions),
            "thumbnail": _rel(workspace, self.thumbnail),
            "duration": self.duration,
            "width": self.width,
            "height": self.height,
            "cut": self.cut,
            "cut_ranges": [[round(a, 3), round(b, 3)] for a, b in self.cut_ranges],
            "missing_glyphs": self.missing_glyphs,
        }


def _rel(workspace: Workspace, path: Path) -> str:
    try:
        return path.resolve().relative_to(workspace.root.resolve()).as_posix()
    except ValueError:
        return str(path)


# --------------------------------------------------------------------------- fonts and text


def _roboto(weight: str) -> Path:
    import font_roboto

    return Path(font_roboto.font_directory) / f"Roboto-{weight}.ttf"


@lru_cache(maxsize=128)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, max(1, size))


@lru_cache(maxsize=4096)
def _has_glyph(path: str, ch: str) -> bool:
    font = _font(path, 48)
    missing = font.getmask("\U0010fffd")
    mask = font.getmask(ch)
    return not (mask.size == missing.size and bytes(mask) == bytes(missing))


def _plain(text: str) -> str:
    """NFC text without control characters, emoji or pictographs: captions are emoji-free."""
    out = []
    for ch in unicodedata.normalize("NFC", text):
        cat = unicodedata.category(ch)
        if cat in ("Cc", "Cf", "Cs", "Co", "Cn", "Me") or ch in "\ufe0e\ufe0f":
            continue
        if cat in ("So", "Sk") and ord(ch) >= 0x2190:  # arrows, dingbats, emoji, skin tones
            continue
        out.append(ch)
    return re.sub(r"\s+", " ", "".join(out)).strip()


def _printable(text: str, font_path: str) -> str:
    """What of `text` the font can draw: the rest is dropped rather than shown as boxes."""
    kept = (
        ch for ch in _plain(text) if ord(ch) <= 0x24F or ch.isspace() or _has_glyph(font_path, ch)
    )
    return re.sub(r"\s+", " ", "".join(kept)).strip()


#: Tried when the campaign's font (or Roboto) cannot draw a title or caption: DejaVu Sans, from
#: Debian's fonts-dejavu-core (`scripts/setup` installs it), adds Hebrew, Arabic, Armenian,
#: Georgian and more. One set draws a whole video, so its look stays consistent.
_FALLBACK_FONTS = (
    (
        "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    ),
)


@dataclass(frozen=True)
class _Fonts:
    bold: str
    regular: str
    medium: str

    def lacks(self, chars: Iterable[str]) -> set[str]:
        paths = (self.bold, self.regular, self.medium)
        return {ch for ch in chars if not all(_has_glyph(p, ch) for p in paths)}


def _choose_fonts(primary: _Fonts, texts: Iterable[str]) -> tuple[_Fonts, str]:
    """The first font set that draws every letter of `texts`, else the one missing fewest,
    with the characters it cannot draw (left out of the picture, kept in the WebVTT)."""
    chars = {ch for t in texts for ch in _plain(t) if ord(ch) > 0x24F and not ch.isspace()}
    best, missing = primary, primary.lacks(chars)
    for paths in _FALLBACK_FONTS:
        if not missing:
            break
        if all(Path(p).is_file() for p in paths):
            candidate = _Fonts(*paths)
            lacks = candidate.lacks(chars)
            if len(lacks) < len(missing):
                best, missing = candidate, lacks
    return best, "".join(sorted(missing))


def _wrap(words: Sequence[str], font: ImageFont.FreeTypeFont, width: int) -> list[list[str]]:
    """Greedy wrap by measured width; a word wider than the line gets a line of its own."""
    lines: list[list[str]] = []
    for w in words:
        if lines and font.getlength(" ".join([*lines[-1], w])) <= width:
            lines[-1].append(w)
        else:
            lines.append([w])
    return lines


def _fit_text(
    text: str, font_path: str, width: int, size: int, min_size: int, max_lines: int
) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """Wrap into at most `max_lines` lines, shrinking the font down to `min_size`, then
    ellipsising the last line."""
    words = text.split()
    for s in range(size, min_size - 1, -max(1, size // 20)):
        font = _font(font_path, s)
        lines = _wrap(words, font, width)
        if len(lines) <= max_lines and all(font.getlength(" ".join(ln)) <= width for ln in lines):
            return font, [" ".join(ln) for ln in lines]
    font = _font(font_path, min_size)
    lines = [" ".join(ln) for ln in _wrap(words, font, width)]
    kept = [ln if font.getlength(ln) <= width else _ellipsize(ln, font, width) for ln in lines]
    if len(kept) > max_lines:
        kept = kept[:max_lines]
        kept[-1] = _ellipsize(kept[-1].rstrip(" .,;:…"), font, width)
    return font, kept


def _ellipsize(line: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    """`line…`, shortened until it fits `width`."""
    while line and font.getlength(line + "…") > width:
        line = line[:-1].rstrip()
    return line + "…"


def _line_height(font: ImageFont.FreeTypeFont) -> int:
    ascent, descent = font.getmetrics()
    return ascent + descent


def _hex(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def _mix(a: tuple[int, int, int], b: tuple[int, int, int], share: float) -> tuple[int, int, int]:
    return tuple(round(x * (1 - share) + y * share) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


# --------------------------------------------------------------------------- cutting


@dataclass
class _Sentence:
    start: float
    end: float
    first: int
    last: int


def _sentences(words: Sequence[Word]) -> list[_Sentence]:
    out: list[_Sentence] = []
    first = 0
    for i, w in enumerate(words):
        if _SENTENCE_END.search(w.text.strip()) or i == len(words) - 1:
            out.append(_Sentence(words[first].start, w.end, first, i))
            first = i + 1
    return out


def _edges(sents: Sequence[_Sentence], duration: float) -> list[tuple[float, float]]:
    """Each sentence padded into the silence around it, never past the middle of a pause."""
    out = []
    for i, s in enumerate(sents):
        prev_end = sents[i - 1].end if i else 0.0
        next_start = sents[i + 1].start if i + 1 < len(sents) else duration
        a = s.start - min(_PAD_BEFORE, max(0.0, s.start - prev_end) / (2 if i else 1))
        b = s.end + min(_PAD_AFTER, max(0.0, next_start - s.end) / (2 if i + 1 < len(sents) else 1))
        out.append((max(0.0, a), min(duration, b)))
    return out


def _merged(indices: Iterable[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _ranges(
    indices: Iterable[int], edges: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    return [(edges[r[0]][0], edges[r[-1]][1]) for r in _merged(indices)]


def _length(ranges: Sequence[tuple[float, float]]) -> float:
    return sum(b - a for a, b in ranges)


def plan_cut(
    words: Sequence[Word],
    duration: float,
    limit: float,
    keys: Sequence[tuple[float, float]] = (),
) -> list[tuple[float, float]]:
    """Source intervals to keep so the result lasts at most `limit` seconds.

    Whole sentences only: first those overlapping the key intervals (the quote, then the
    summary sentences, in priority order), then their neighbours, nearest to the first key
    first, while they fit. A single sentence longer than the limit is cut at a word end.
    """
    if duration <= limit:
        return [(0.0, duration)]
    sents = _sentences(words)
    if not sents:
        return [(0.0, limit)]
    edges = _edges(sents, duration)
    wanted = [
        i for a, b in keys for i, s in enumerate(sents) if s.start < b and s.end > a and b > a
    ]
    anchor = wanted[0] if wanted else 0
    chosen: list[int] = []
    for i in wanted or [0]:
        if i not in chosen and _length(_ranges([*chosen, i], edges)) <= limit:
            chosen.append(i)
    if not chosen:
        # One sentence is longer than the whole limit: keep its words up to the limit.
        s = sents[anchor]
        a = edges[anchor][0]
        end = a
        for w in words[s.first : s.last + 1]:
            if w.end - a > limit - _PAD_AFTER:
                break
            end = w.end
        return [(a, min(end + _PAD_AFTER, a + limit))] if end > a else [(a, a + limit)]
    while True:
        # Neighbours of what is chosen: the sentence after before the one before.
        cands = sorted(
            {j for i in chosen for j in (i + 1, i - 1) if 0 <= j < len(sents)} - set(chosen),
            key=lambda j: (abs(j - anchor), j < anchor),
        )
        for j in cands:
            if _length(_ranges([*chosen, j], edges)) <= limit:
                chosen.append(j)
                break
        else:
            return _ranges(chosen, edges)


def _remap(
    words: Sequence[Word], ranges: Sequence[tuple[float, float]]
) -> list[tuple[float, float, str]]:
    """Words inside the kept ranges, in output time."""
    out = []
    offset = 0.0
    for a, b in ranges:
        for w in words:
            if w.start >= a - 1e-3 and w.end <= b + 1e-3:
                out.append((max(0.0, w.start - a) + offset, min(b, w.end) - a + offset, w.text))
        offset += b - a
    return out


def _to_output_time(t: float, ranges: Sequence[tuple[float, float]]) -> float | None:
    offset = 0.0
    for a, b in ranges:
        if a <= t <= b:
            return t - a + offset
        offset += b - a
    return None


# --------------------------------------------------------------------------- audio


def _assemble_audio(
    audio_path: Path,
    ranges: Sequence[tuple[float, float]],
    tail: float,
    redactions: Redactions | None,
    rate: int = AUDIO_RATE,
    voice_semitones: float | None = None,
) -> np.ndarray:
    """The kept ranges, faded at each cut, bleeped where redacted, then `tail` s of silence.

    A voice disguise (pitch shift) applies to the speech before the bleeps go in, so the
    bleep tone stays at its own pitch.

    Decoding streams block by block, so a long recording is never held whole.
    """
    from narratives.media.audio import iter_decode

    spans = [(round(a * rate), round(b * rate)) for a, b in ranges]
    total = sum(b - a for a, b in spans)
    out = np.zeros(total + round(tail * rate), np.float32)
    starts = np.cumsum([0] + [b - a for a, b in spans])
    pos = 0
    for block in iter_decode(audio_path, rate):
        end = pos + block.size
        for (a, b), o in zip(spans, starts, strict=False):
            lo, hi = max(a, pos), min(b, end)
            if lo < hi:
                out[o + lo - a : o + hi - a] = block[lo - pos : hi - pos]
        pos = end
        if pos >= spans[-1][1]:
            break
    fade = np.linspace(0.0, 1.0, max(1, round(_FADE * rate)), dtype=np.float32)
    n = fade.size
    for (a, b), o in zip(spans, starts, strict=False):
        seg = out[o : o + b - a]
        if a > 0 and seg.size > n:
            seg[:n] *= fade
        if b < pos and seg.size > n:
            seg[-n:] *= fade[::-1]
    if voice_semitones:
        from narratives.policy.anonymise import disguise_samples

        out = disguise_samples(out, rate, voice_semitones)
    for ra, rb in redactions.intervals if redactions else ():
        offset = 0
        for (a, b), o in zip(spans, starts, strict=False):
            lo, hi = max(a, round(ra * rate)), min(b, round(rb * rate))
            if lo < hi:
                t = np.arange(hi - lo, dtype=np.float32) / rate
                tone = 0.3 * np.sin(2 * np.pi * 1000.0 * t, dtype=np.float32)
                ramp = min(round(0.005 * rate), tone.size // 2)
                if ramp:
                    tone[:ramp] *= np.linspace(0, 1, ramp, dtype=np.float32)
                    tone[-ramp:] *= np.linspace(1, 0, ramp, dtype=np.float32)
                out[o + lo - a : o + hi - a] = tone
            offset += b - a
    return out


def _write_wav(path: Path, samples: np.ndarray, rate: int = AUDIO_RATE) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def _levels(samples: np.ndarray, fps: int, nframes: int, rate: int = AUDIO_RATE) -> np.ndarray:
    """RMS per video frame, normalised to 0..1 against the loud end of the recording."""
    hop = rate / fps
    idx = (np.arange(nframes + 1) * hop).astype(np.int64).clip(0, samples.size)
    sq = np.concatenate([[0.0], np.cumsum(samples.astype(np.float64) ** 2)])
    n = np.maximum(idx[1:] - idx[:-1], 1)
    rms = np.sqrt((sq[idx[1:]] - sq[idx[:-1]]) / n)
    ref = max(float(np.percentile(rms, 98)) if rms.size else 0.0, 1e-4)
    return np.clip(rms / ref, 0.0, 1.0) ** 0.7


# --------------------------------------------------------------------------- drawing


@dataclass
class _Patch:
    """An opaque RGB picture placed at (y, x); even position and size."""

    y: int
    x: int
    pixels: np.ndarray
    _yuv: tuple[np.ndarray, ...] | None = field(default=None, repr=False)

    def paste(self, frame: np.ndarray) -> None:
        h, w = self.pixels.shape[:2]
        frame[self.y : self.y + h, self.x : self.x + w] = self.pixels

    def paste_i420(self, planes: Sequence[np.ndarray]) -> None:
        """Paste into Y, U, V planes; converted on first use and kept (a page is shown
        for many frames; a page never shown is never converted)."""
        if self._yuv is None:
            self._yuv = rgb_to_i420(self.pixels)
        for k, (plane, part) in enumerate(zip(planes, self._yuv, strict=True)):
            d = 1 if k == 0 else 2  # U and V are half size
            h, w = part.shape
            plane[self.y // d : self.y // d + h, self.x // d : self.x // d + w] = part


@dataclass
class _Page:
    start: float
    end: float
    #: The lines as drawn (what the font can draw)...
    lines: list[str]
    #: ...and as said, for the WebVTT file (players draw every script).
    spoken: list[str]
    image: _Patch
    #: (start, end, highlighted patch) per word, in time order.
    words: list[tuple[float, float, _Patch]]
    word_starts: list[float]

    def word_at(self, t: float) -> _Patch | None:
        i = bisect.bisect_right(self.word_starts, t) - 1
        if i >= 0 and self.words[i][0] <= t < self.words[i][1]:
            return self.words[i][2]
        return None


def _caption_groups(
    words: Sequence[tuple[float, float, str, str]],
    font: ImageFont.FreeTypeFont,
    width: int,
    max_lines: int,
) -> list[list[tuple[float, float, str, str]]]:
    """Pages of at most `max_lines` wrapped lines, broken at sentence ends and long pauses.

    Words are (start, end, as drawn, as said); the drawn text is what is measured."""
    pages: list[list[tuple[float, float, str, str]]] = []
    for w in words:
        cur = pages[-1] if pages else None
        if cur is not None:
            prev = cur[-1]
            fits = len(_wrap([x[2] for x in [*cur, w]], font, width)) <= max_lines
            if fits and not _SENTENCE_END.search(prev[3]) and w[0] - prev[1] < _PAGE_GAP:
                cur.append(w)
                continue
        pages.append([w])
    return pages


class _Design:
    """Everything drawn once for one video; `frame(t)` composes a frame from it."""

    def __init__(
        self,
        *,
        layout: Layout,
        scale: float,
        campaign: Campaign,
        title: str,
        words: Sequence[tuple[float, float, str]],
        duration: float,
        fps: int,
        levels: np.ndarray,
        font_path: str | None,
        logo: Path | None,
        background_image: Path | None,
        redactions: Redactions | None,
    ) -> None:
        def px(v: float) -> int:
            return round(v * scale)

        # Everything pasted or filled per frame sits on even rows and columns with even
        # sizes, so it maps exactly onto the half-size chroma planes of a YUV 4:2:0 frame.
        def up(v: float) -> int:
            return math.ceil(v / 2) * 2

        def down(v: float) -> int:
            return math.floor(v / 2) * 2

        self.width = max(2, round(layout.width * scale / 2) * 2)
        self.height = max(2, round(layout.height * scale / 2) * 2)
        self.fps, self.duration, self.levels = fps, duration, levels
        look = campaign.look
        self.text_rgb, self.accent_rgb = _hex(look.text_color), _hex(look.accent_color)
        primary = (
            _Fonts(font_path, font_path, font_path)
            if font_path
            else _Fonts(str(_roboto("Bold")), str(_roboto("Regular")), str(_roboto("Medium")))
        )

        def hidden(text: str) -> str:
            return redactions.replace(text) if redactions else text

        texts = [hidden(title), campaign.name, look.title_line, *(hidden(w[2]) for w in words)]
        texts += [*campaign.hashtags, campaign.link]
        self.fonts, self.missing_glyphs = _choose_fonts(primary, texts)
        bold, regular, medium = self.fonts.bold, self.fonts.regular, self.fonts.medium
        safe = layout.safe_area
        self.left = up(px(safe.left))
        self.inner = down(self.width - self.left - px(safe.right))

        # Background: gradient, optional image beneath a tint, logo, header, title card.
        bg = self._gradient([_hex(c) for c in look.background])
        if background_image is not None:
            img = _cover(Image.open(background_image).convert("RGB"), self.width, self.height)
            bg = Image.blend(img, bg, 0.65)
        draw = ImageDraw.Draw(bg)
        head = layout.header
        x = self.left
        if logo is not None:
            mark = Image.open(logo).convert("RGBA")
            h = px(head.height)
            w = max(1, round(mark.width * h / mark.height))
            mark = mark.resize((w, h), Image.LANCZOS)
            bg.paste(mark, (x, px(head.top)), mark)
            x += w + px(24)
        name_size = px(head.name_size)
        name_font, name_lines = _fit_text(
            _printable(campaign.name.upper(), medium),
            medium,
            self.left + self.inner - x,
            name_size,
            max(6, name_size // 2),
            1,
        )
        name = name_lines[0] if name_lines else ""
        draw.text(
            (x, px(head.top) + px(head.height) // 2),
            name,
            font=name_font,
            fill=self.accent_rgb,
            anchor="lm",
        )
        tl = layout.title
        line_font, line_lines = _fit_text(
            _printable(look.title_line, regular),
            regular,
            self.inner,
            px(tl.line_size),
            max(6, px(tl.line_size) * 2 // 3),
            1,
        )
        line_text = line_lines[0] if line_lines else ""
        reserve = _line_height(line_font) + px(12) if line_text else 0
        title_text = _printable(hidden(title), bold)
        tfont, tlines = _fit_text(
            title_text, bold, self.inner, px(tl.size), px(tl.min_size), tl.max_lines
        )
        lh = _line_height(tfont)
        while len(tlines) * lh + reserve > px(tl.height) and len(tlines) > 1:
            tlines = tlines[:-1]
            tlines[-1] = _ellipsize(tlines[-1].rstrip(" .,;:…"), tfont, self.inner)
        y = px(tl.top)
        ascent = tfont.getmetrics()[0]
        for ln in tlines:
            draw.text((self.left, y + ascent), ln, font=tfont, fill=self.text_rgb, anchor="ls")
            y += lh
        if line_text:
            draw.text(
                (self.left, y + px(12) + line_font.getmetrics()[0]),
                line_text,
                font=line_font,
                fill=_mix(self.text_rgb, self.accent_rgb, 0.5),
                anchor="ls",
            )
        # Waveform and progress geometry; the progress track is part of the background.
        wf = layout.waveform
        self.wave_top, self.wave_h = up(px(wf.top)), down(px(wf.height))
        slot = self.inner / wf.bars
        self.bar_w = max(2, down(slot * (1 - wf.gap)))
        self.bar_x = [self.left + down(i * slot + (slot - self.bar_w) / 2) for i in range(wf.bars)]
        self.bar_step = max(1, round(fps / 15))
        pr = layout.progress
        self.prog_top, self.prog_h = up(px(pr.top)), max(2, down(px(pr.height)))
        draw.rectangle(
            (self.left, self.prog_top, self.left + self.inner - 1, self.prog_top + self.prog_h - 1),
            fill=_mix(_hex(look.background[-1]), self.text_rgb, 0.25),
        )
        self.base = np.asarray(bg, dtype=np.uint8).copy()
        self.base_img = bg
        self._base_i420: np.ndarray | None = None
        self._accent_yuv = (0, 0, 0)

        # Caption pages, each with one patch per highlighted word.
        cap = layout.captions
        self.layout_path = layout.path or "layout"
        self.cap_top = up(px(cap.top))
        self.cap_h = down(px(cap.top) + px(cap.height) - self.cap_top)
        self.pages = self._pages(
            words,
            bold,
            px(cap.size),
            px(cap.min_size),
            cap.max_lines,
            cap.line_spacing,
            redactions,
        )
        self.page_starts = [p.start for p in self.pages]
        # End card: hashtags and link in the caption box, after the last word.
        last = max((p.end for p in self.pages), default=0.0)
        self.end_start = max(last, duration - layout.end_card.seconds)
        self.end_card = self._end_card(
            campaign, bold, regular, px(layout.end_card.hashtag_size), px(layout.end_card.link_size)
        )

    def _gradient(self, colours: list[tuple[int, int, int]]) -> Image.Image:
        top = np.array(colours[0], np.float32)
        bottom = np.array(colours[-1], np.float32)
        t = np.linspace(0.0, 1.0, self.height, dtype=np.float32)[:, None]
        col = (top * (1 - t) + bottom * t).round().astype(np.uint8)
        arr = np.repeat(col[:, None, :], self.width, axis=1)
        return Image.fromarray(arr)

    def _box(self) -> Image.Image:
        return self.base_img.crop((0, self.cap_top, self.width, self.cap_top + self.cap_h))

    def _pages(
        self,
        words: Sequence[tuple[float, float, str]],
        font_path: str,
        size: int,
        min_size: int,
        max_lines: int,
        spacing: float,
        redactions: Redactions | None,
    ) -> list[_Page]:
        clean = []  # (start, end, as drawn, as said)
        for a, b, text in words:
            said = _plain(redactions.replace(text) if redactions else text)
            if said:
                # A word no font can draw still shows that something was said.
                clean.append((a, b, _printable(said, font_path) or "…", said))
        font = _font(font_path, size)

        def too_tall(f: ImageFont.FreeTypeFont) -> bool:
            return _line_height(f) * (1 + (max_lines - 1) * spacing) > self.cap_h

        # The caption box must hold max_lines; shrink the font rather than clip.
        while size > min_size and too_tall(font):
            size -= 1
            font = _font(font_path, size)
        if too_tall(font):
            raise ConfigError(
                f"{self.layout_path}: captions.height: {self.cap_h} px cannot hold "
                f"{max_lines} lines of this font at min_size {min_size}",
                hint="raise captions.height or lower captions.min_size or max_lines",
            )
        groups = _caption_groups(clean, font, self.inner, max_lines)
        pages = []
        for gi, group in enumerate(groups):
            gfont = font
            # A single word wider than the box: shrink this page only.
            widest = max(gfont.getlength(w[2]) for w in group)
            if widest > self.inner:
                gfont = _font(font_path, max(1, int(size * self.inner / widest) - 1))
            lines = _wrap([w[2] for w in group], gfont, self.inner)
            ascent, _ = gfont.getmetrics()
            lh = round(_line_height(gfont) * spacing)
            block = lh * (len(lines) - 1) + _line_height(gfont)
            y0 = max(0, (self.cap_h - block) // 2)
            # Word positions: x from the measured prefix, centred lines.
            boxes: list[tuple[int, int, str, int]] = []  # (x, baseline, text, line)
            for li, ln in enumerate(lines):
                full = " ".join(ln)
                x0 = self.left + round((self.inner - gfont.getlength(full)) / 2)
                for wi, w in enumerate(ln):
                    prefix = " ".join(ln[:wi]) + (" " if wi else "")
                    boxes.append(
                        (x0 + round(gfont.getlength(prefix)), y0 + li * lh + ascent, w, li)
                    )

            page_img = np.asarray(self._draw_page(boxes, gfont, None), dtype=np.uint8).copy()
            start = max(0.0, group[0][0] - 0.1)
            nxt = groups[gi + 1][0][0] - 0.1 if gi + 1 < len(groups) else math.inf
            end = min(nxt, group[-1][1] + _PAGE_HOLD)
            patches = []
            descent = _line_height(gfont) - ascent
            for k, (x, base, text, _li) in enumerate(boxes):
                x0, top, x1, bottom = gfont.getbbox(text, anchor="ls")
                # The ink's own box too: stacked accents (Ỗ) rise above the ascent.
                pad = 3  # even bounds: see `up` and `down` in __init__
                xa = max(0, (x + x0 - pad) // 2 * 2)
                xb = min(self.width, -(-(x + x1 + pad) // 2) * 2)
                ya = max(0, (base + min(top, -ascent) - pad) // 2 * 2)
                yb = min(self.cap_h, -(-(base + max(bottom, descent) + pad) // 2) * 2)
                hi = np.asarray(
                    self._draw_page(boxes, gfont, k).crop((xa, ya, xb, yb)), dtype=np.uint8
                ).copy()
                patches.append((group[k][0], group[k][1], _Patch(self.cap_top + ya, xa, hi)))
            said, spoken = [w[3] for w in group], []
            for ln in lines:
                spoken.append(" ".join(said[: len(ln)]))
                said = said[len(ln) :]
            pages.append(
                _Page(
                    start=start,
                    end=end,
                    lines=[" ".join(ln) for ln in lines],
                    spoken=spoken,
                    image=_Patch(self.cap_top, 0, page_img),
                    words=patches,
                    word_starts=[p[0] for p in patches],
                )
            )
        return pages

    def _draw_page(
        self,
        boxes: Sequence[tuple[int, int, str, int]],
        font: ImageFont.FreeTypeFont,
        highlight: int | None,
    ) -> Image.Image:
        img = self._box()
        d = ImageDraw.Draw(img)
        for k, (x, base, text, _li) in enumerate(boxes):
            colour = self.accent_rgb if k == highlight else self.text_rgb
            d.text((x, base), text, font=font, fill=colour, anchor="ls")
        return img

    def _end_card(
        self, campaign: Campaign, bold: str, regular: str, tag_size: int, link_size: int
    ) -> _Patch:
        img = self._box()
        d = ImageDraw.Draw(img)
        tags = " ".join(f"#{h}" for h in campaign.hashtags)
        tfont, tlines = _fit_text(tags, bold, self.inner, tag_size, max(8, tag_size // 2), 3)
        link = re.sub(r"^https?://", "", campaign.link)
        lfont, llines = _fit_text(link, regular, self.inner, link_size, max(6, link_size // 2), 2)
        lh_t, lh_l = _line_height(tfont), _line_height(lfont)
        gap = lh_l // 2
        block = lh_t * len(tlines) + gap + lh_l * len(llines)
        y = max(0, (self.cap_h - block) // 2)
        for ln in tlines:
            d.text(
                (self.width // 2, y + tfont.getmetrics()[0]),
                ln,
                font=tfont,
                fill=self.accent_rgb,
                anchor="ms",
            )
            y += lh_t
        y += gap
        for ln in llines:
            d.text(
                (self.width // 2, y + lfont.getmetrics()[0]),
                ln,
                font=lfont,
                fill=self.text_rgb,
                anchor="ms",
            )
            y += lh_l
        return _Patch(self.cap_top, 0, np.asarray(img, dtype=np.uint8).copy())

    def page_at(self, t: float) -> _Page | None:
        i = bisect.bisect_right(self.page_starts, t) - 1
        if i >= 0 and self.pages[i].start <= t < self.pages[i].end:
            return self.pages[i]
        return None

    def _paint(
        self,
        t: float,
        paste: Callable[[_Patch], None],
        fill: Callable[[int, int, int, int], None],
    ) -> None:
        """Lay out the frame at `t` over the base: patches to paste, accent boxes to fill
        (top, bottom, left, right; all even)."""
        k = min(max(0, int(t * self.fps + 1e-6)), self.levels.size - 1)
        page = self.page_at(t)
        if page is not None:
            paste(page.image)
            word = page.word_at(t)
            if word is not None:
                paste(word)
        elif t >= self.end_start:
            paste(self.end_card)
        # Level bars: the current level in the middle, recent history spreading outwards.
        n = len(self.bar_x)
        mid = (n - 1) / 2
        centre = self.wave_top + self.wave_h // 4 * 2
        for i, x in enumerate(self.bar_x):
            lv = self.levels[max(0, k - round(abs(i - mid)) * self.bar_step)]
            h = max(self.bar_w, int(lv * self.wave_h) // 2 * 2)
            top = centre - h // 4 * 2
            fill(top, top + h, x, x + self.bar_w)
        done = round(self.inner * min(1.0, t / self.duration) / 2) * 2 if self.duration else 0
        if done:
            fill(self.prog_top, self.prog_top + self.prog_h, self.left, self.left + done)

    def frame(self, t: float) -> np.ndarray:
        """The frame at `t` as an RGB array (thumbnails, tests)."""
        img = self.base.copy()
        colour = np.array(self.accent_rgb, np.uint8)

        def fill(top: int, bottom: int, left: int, right: int) -> None:
            img[top:bottom, left:right] = colour

        self._paint(t, lambda p: p.paste(img), fill)
        return img

    def frame_i420(self, t: float) -> np.ndarray:
        """The frame at `t` as one I420 buffer (Y, then U and V at half size): what the
        encoder takes without converting."""
        if self._base_i420 is None:
            self._base_i420 = np.concatenate([p.ravel() for p in rgb_to_i420(self.base)])
            self._accent_yuv = yuv_of(self.accent_rgb)
        buf = self._base_i420.copy()
        planes = i420_planes(buf, self.width, self.height)
        yuv = self._accent_yuv

        def fill(top: int, bottom: int, left: int, right: int) -> None:
            planes[0][top:bottom, left:right] = yuv[0]
            planes[1][top // 2 : bottom // 2, left // 2 : right // 2] = yuv[1]
            planes[2][top // 2 : bottom // 2, left // 2 : right // 2] = yuv[2]

        self._paint(t, lambda p: p.paste_i420(planes), fill)
        return buf


def _cover(img: Image.Image, width: int, height: int) -> Image.Image:
    s = max(width / img.width, height / img.height)
    img = img.resize((max(width, round(img.width * s)), max(height, round(img.height * s))))
    x, y = (img.width - width) // 2, (img.height - height) // 2
    return img.crop((x, y, x + width, y + height))


# --------------------------------------------------------------------------- captions file


def _vtt_time(t: float) -> str:
    ms = round(max(0.0, t) * 1000)
    h, ms = divmod(ms, 3600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def _vtt(pages: Sequence[_Page], duration: float) -> str:
    out = ["WEBVTT", ""]
    for i, p in enumerate(pages, 1):
        end = min(p.end, duration)
        if end <= p.start:
            continue
        out += [str(i), f"{_vtt_time(p.start)} --> {_vtt_time(end)}", *p.spoken, ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- rendering


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


def _words_of(transcript: Transcript) -> list[Word]:
    """Word timings; a segment without them gets its words spread by length."""
    out: list[Word] = []
    for seg in transcript.segments:
        if seg.words:
            out.extend(w for w in seg.words if w.text.strip())
            continue
        parts = seg.text.split()
        total = sum(len(p) + 1 for p in parts) or 1
        t = seg.start
        for p in parts:
            d = (seg.end - seg.start) * (len(p) + 1) / total
            out.append(Word(t, t + d, " " + p))
            t += d
    return out


class _MoviePyProgress:
    """Adapts proglog's callbacks (MoviePy's progress) to `progress(done, total)`."""

    def __new__(cls, progress: Progress | None):
        if progress is None:
            return None
        import proglog

        class Logger(proglog.ProgressBarLogger):
            def bars_callback(self, bar, attr, value, old_value=None):
                if bar == "frame_index" and attr == "index":
                    progress(int(value), int(self.bars[bar]["total"] or 0))

        return Logger()


def _cleanup(*paths: Path) -> None:
    for p in paths:
        try:
            p.unlink()
        except FileNotFoundError:
            pass


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
    from moviepy import VideoClip

    from narratives.media.audio import probe

    layout = layout or load_layout(workspace, fmt)
    font_path = None
    if campaign.look.font:
        font = _resolve_asset(workspace, campaign, "font")
        font_path = str(font)
        try:
            _font(font_path, 12)
        except OSError as exc:
            raise ConfigError(f"{campaign.path}: look.font: cannot load {font}: {exc}") from exc
    logo = _resolve_asset(workspace, campaign, "logo")
    bg_image = _resolve_asset(workspace, campaign, "background_image")

    words = _words_of(transcript)
    # The container's own length: the transcript's may be rounded or short of the file.
    duration = probe(audio_path).duration or transcript.duration
    end_seconds = layout.end_card.seconds
    limit = min(campaign.max_video_seconds, MAX_SECONDS)
    # Leave room for the end card when the speech runs to the end.
    ranges = plan_cut(words, duration, max(1.0, limit - end_seconds - _PAGE_HOLD), keys)
    cut = ranges != [(0.0, duration)]
    timed = _remap(words, ranges)
    spoken = _length(ranges)
    last_word = max((b for _, b, _ in timed), default=0.0)
    tail = max(0.0, min(last_word + _PAGE_HOLD + end_seconds, limit) - spoken)

    # Whole frames, so the video and audio streams end together.
    nframes = max(1, math.ceil((spoken + tail) * fps - 1e-6))
    tail = nframes / fps - spoken
    samples = _assemble_audio(audio_path, ranges, tail, redactions, voice_semitones=voice_semitones)
    total = nframes / fps
    design = _Design(
        layout=layout,
        scale=scale,
        campaign=campaign,
        title=title,
        words=timed,
        duration=total,
        fps=fps,
        levels=_levels(samples, fps, nframes),
        font_path=font_path,
        logo=logo,
        background_image=bg_image,
        redactions=redactions,
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.with_suffix("")
    tmp_video = out.with_name(f".{out.stem}.tmp.mp4")
    tmp_audio = out.with_name(f".{out.stem}.tmp-audio.wav")
    tmp_vtt = out.with_name(f".{out.stem}.tmp.vtt")
    tmp_png = out.with_name(f".{out.stem}.tmp.png")
    vtt_path, png_path = stem.with_suffix(".vtt"), stem.with_suffix(".png")
    temps = (tmp_video, tmp_audio, tmp_vtt, tmp_png)
    try:
        _write_wav(tmp_audio, samples)
        del samples
        # MoviePy's clip model supplies the frames by time; half a frame past the end so its
        # int(duration * fps) counts all `nframes` despite float rounding.
        clip = VideoClip(design.frame_i420, duration=(nframes + 0.5) / fps)
        with I420Writer(
            tmp_video,
            width=design.width,
            height=design.height,
            fps=fps,
            audio=tmp_audio,
            preset=preset,
            threads=threads,
        ) as writer:
            for frame in clip.iter_frames(fps=fps, logger=_MoviePyProgress(progress)):
                writer.write(frame)
        clip.close()
        if tmp_video.stat().st_size > MAX_BYTES:
            raise StageFailed(
                f"{out.name}: {tmp_video.stat().st_size / 1e6:.0f} MB is over Bluesky's 100 MB"
            )
        tmp_vtt.write_text(_vtt(design.pages, total), encoding="utf-8")
        Image.fromarray(design.frame(_thumbnail_time(design, keys, ranges))).save(tmp_png)
        os.replace(tmp_vtt, vtt_path)
        os.replace(tmp_png, png_path)
        os.replace(tmp_video, out)
    finally:
        _cleanup(*temps)
    return Rendered(
        video=out,
        captions=vtt_path,
        thumbnail=png_path,
        duration=round(total, 3),
        width=design.width,
        height=design.height,
        cut_ranges=[(round(a, 3), round(b, 3)) for a, b in ranges],
        cut=cut,
        missing_glyphs=design.missing_glyphs,
    )


def _thumbnail_time(
    design: _Design, keys: Sequence[tuple[float, float]], ranges: Sequence[tuple[float, float]]
) -> float:
    """A frame showing a caption: the quote's first page if kept, else the first page."""
    for a, _b in keys:
        t = _to_output_time(a, ranges)
        if t is not None and design.page_at(t + 0.05) is not None:
            return t + 0.05
    if design.pages:
        p = design.pages[0]
        return min(p.end - 1e-3, max(p.start, p.word_starts[0] if p.word_starts else p.start))
    return min(design.duration / 2, design.duration - 1e-3)


# --------------------------------------------------------------------------- the stage


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise StageFailed(f"{path}: cannot read: {exc}") from exc


def _interval(item: Any) -> tuple[float, float] | None:
    if isinstance(item, Mapping):
        a, b = item.get("start"), item.get("end")
        if isinstance(a, int | float) and isinstance(b, int | float) and b > a:
            return float(a), float(b)
    return None


def _title(ctx: Any, narrative_id: str, analysis: Mapping[str, Any], transcript: Transcript) -> str:
    if isinstance(analysis.get("title"), str) and analysis["title"].strip():
        return analysis["title"].strip()
    import sqlalchemy as sa

    from narratives.store.schema import narratives

    with ctx.db.connect() as conn:
        title = conn.execute(
            sa.select(narratives.c.title).where(narratives.c.id == narrative_id)
        ).scalar()
    if title:
        return title
    first = _sentences(_words_of(transcript))
    words = _words_of(transcript)
    text = " ".join(w.text.strip() for w in words[: first[0].last + 1]) if first else ""
    return text[:80] or "A narrative"


def _privacy_fingerprint(pub: Any, redactions: Redactions | None) -> str:
    """Changes whenever what must be hidden changes, so a video made while the narrator was
    named is never reused once they must be anonymous (or a new name is marked)."""
    import hashlib

    data = {
        "anonymous": pub.anonymous,
        "intervals": [list(map(float, i)) for i in (redactions.intervals if redactions else [])],
        "replacements": sorted((redactions.replacements or {}).items()) if redactions else [],
        "voice": pub.voice_semitones,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def run(
    ctx: Any,
    narrative_id: str,
    *,
    force: bool = False,
    formats: Sequence[str] | None = None,
    campaigns: Sequence[str | Campaign] | None = None,
    redactions: Redactions | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> list[VideoResult]:
    """Render every (campaign, format) video of a narrative; one `stage_runs` row each.

    Campaigns: `campaigns` when given, else the narrative's routes (`assignments.routes`:
    the campaigns staff assigned it to, or else those its tags fit). Formats: `formats` when
    given, else each campaign's `look.formats`. A `done` row whose files exist is reused
    unless `force`. `progress(key, frames_done, frames_total)`.
    """
    from importlib.metadata import version

    from narratives.store.stage_runs import get_run, stage_run

    settings = ctx.settings.render
    if not settings.enabled:
        return []
    ws: Workspace = ctx.workspace
    folder = ws.narrative_dir(narrative_id)
    data = _read_json(folder / "transcript.json")
    if data is None:
        raise InvalidState(
            f"{narrative_id[:12]}: no transcript yet", hint="run `narrative process` first"
        )
    transcript = Transcript.from_dict(data)
    analysis = _read_json(folder / "analysis.json") or {}
    if analysis.get("empty") or transcript.is_empty:
        return []
    # Everything public is derived from the anonymised copies when the narrator must stay
    # anonymous (the default while no consent says otherwise).
    from narratives.policy.anonymise import for_publication

    analysed = bool(analysis)
    if campaigns is None and analysed:
        from narratives.policy.routing import routes

        # Explicit assignments first, then the tag fit (see `narratives/assignments.py`).
        routed = [r.campaign for r in routes(ctx, narrative_id, analysis)]
    pub = for_publication(ctx, narrative_id, transcript, analysis)
    transcript, analysis = pub.transcript, pub.analysis
    redactions = redactions or pub.redactions
    privacy = _privacy_fingerprint(pub, redactions)
    if campaigns is not None:
        chosen = [c if isinstance(c, Campaign) else get_campaign(ws, c) for c in campaigns]
    elif analysed:
        chosen = [get_campaign(ws, slug) for slug in routed]
    else:
        raise InvalidState(
            f"{narrative_id[:12]}: not analysed yet, so its campaigns are unknown",
            hint="run the analysis first, or name the campaigns (--campaign SLUG)",
        )
    for f in formats or ():
        if f not in FORMATS:
            raise ConfigError(f"unknown video format {f!r}", hint=f"one of {', '.join(FORMATS)}")

    title = _title(ctx, narrative_id, analysis, transcript)
    keys = [k for k in [_interval(analysis.get("quote"))] if k]
    # The analysis stores its summary as a list of timed sentences.
    summary = analysis.get("summary") or []
    if isinstance(summary, Mapping):
        summary = summary.get("sentences") or []
    keys += [k for s in summary if (k := _interval(s))]
    audio_path: Path | None = None
    results: list[VideoResult] = []
    for campaign in chosen:
        for fmt in list(formats or campaign.look.formats):
            key = f"{campaign.slug}/{fmt}"
            video = folder / f"video-{campaign.slug}-{fmt}.mp4"
            prev = get_run(ctx.db, narrative_id, STAGE, key)
            if (
                not force
                and prev is not None
                and prev.status == "done"
                and isinstance(prev.output, dict)
                and prev.output.get("privacy") == privacy
                and all(
                    (ws.root / prev.output[k]).is_file() for k in ("video", "captions", "thumbnail")
                )
            ):
                o = prev.output
                results.append(
                    VideoResult(
                        narrative_id,
                        campaign.slug,
                        fmt,
                        ws.root / o["video"],
                        ws.root / o["captions"],
                        ws.root / o["thumbnail"],
                        o["duration"],
                        o["width"],
                        o["height"],
                        o["cut"],
                        [tuple(r) for r in o["cut_ranges"]],
                        o.get("missing_glyphs", ""),
                        skipped=True,
                    )
                )
                continue
            layout = load_layout(ws, fmt)
            audio_path = audio_path or source_path(ctx.db, narrative_id)
            with stage_run(ctx.db, narrative_id, STAGE, key) as handle:
                handle.engine = "moviepy"
                handle.model = f"layout:{fmt}"
                # moviepy.__version__ is stale in 2.2.1 (it says 2.1.2); the metadata is not.
                handle.version = version("moviepy")
                r = render_video(
                    audio_path,
                    transcript,
                    campaign,
                    video,
                    fmt=fmt,
                    layout=layout,
                    workspace=ws,
                    title=title,
                    keys=keys,
                    fps=settings.fps,
                    scale=settings.scale,
                    preset=settings.preset,
                    threads=settings.threads or None,
                    redactions=redactions,
                    voice_semitones=pub.voice_semitones,
                    progress=(lambda d, t, key=key: progress(key, d, t)) if progress else None,
                )
                result = VideoResult(
                    narrative_id,
                    campaign.slug,
                    fmt,
                    r.video,
                    r.captions,
                    r.thumbnail,
                    r.duration,
                    r.width,
                    r.height,
                    r.cut,
                    r.cut_ranges,
                    r.missing_glyphs,
                )
                handle.output = {**result.output(ws), "privacy": privacy}
            results.append(result)
    return results
