"""One video's design: everything static drawn once into an opaque base frame, and `frame(t)`
composing a frame from it.

Speed is the design choice here. MoviePy's own way (masked `TextClip`s composited over a
transparent background) costs 5-11x real time on a 60 s 1080x1920 video; masks, not text, are
the cost. So everything static (gradient, image, logo, title card, progress track) is drawn
once into one opaque RGB frame, every caption page and every highlighted word is rasterised
once with Pillow onto its own crop of that frame, and a single frame function copies the base
and pastes opaque patches, bars and the progress fill. For encoding, `composer()` keeps one
frame and changes only the parts that differ from the frame before.

The frames the encoder takes are YUV 4:2:0 (I420), not RGB (`frame_i420`): each layer is
converted once, on even rows and columns so it pastes exactly into the half-size chroma
planes. `frame(t)` composes the same layers in RGB for thumbnails and tests.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from narratives.core.campaigns import Campaign
from narratives.media.video_writer import i420_planes, rgb_to_i420, yuv_of
from narratives.records.redactions import Redactions
from narratives.stages.render.fonts import (
    Fonts,
    choose_fonts,
    ellipsize,
    fit_text,
    hex_rgb,
    line_height,
    mix,
    printable,
)
from narratives.stages.render.layout import Layout
from narratives.stages.render.pages import CaptionBox, Page, Patch, build_pages, end_card

__all__ = ["Design"]


# Everything pasted or filled per frame sits on even rows and columns with even sizes, so it
# maps exactly onto the half-size chroma planes of a YUV 4:2:0 frame.
def _up(v: float) -> int:
    return math.ceil(v / 2) * 2


def _down(v: float) -> int:
    return math.floor(v / 2) * 2


class Design:
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
        self.scale = scale
        self.width = max(2, round(layout.width * scale / 2) * 2)
        self.height = max(2, round(layout.height * scale / 2) * 2)
        self.fps, self.duration, self.levels = fps, duration, levels
        look = campaign.look
        self.text_rgb, self.accent_rgb = hex_rgb(look.text_color), hex_rgb(look.accent_color)
        self.redactions = redactions
        texts = [self._hidden(title), campaign.name, look.title_line]
        texts += [*(self._hidden(w[2]) for w in words), *campaign.hashtags, campaign.link]
        self.fonts, self.missing_glyphs = choose_fonts(Fonts.of(font_path), texts)
        safe = layout.safe_area
        self.left = _up(self._px(safe.left))
        self.inner = _down(self.width - self.left - self._px(safe.right))

        # Background: gradient, optional image beneath a tint, logo, header, title card.
        bg = self._gradient([hex_rgb(c) for c in look.background])
        if background_image is not None:
            img = _cover(Image.open(background_image).convert("RGB"), self.width, self.height)
            bg = Image.blend(img, bg, 0.65)
        draw = ImageDraw.Draw(bg)
        self._draw_header(bg, draw, layout, campaign, logo)
        self._draw_title(draw, layout, look.title_line, title)
        self._place_bars(layout)
        # The progress track is part of the background.
        draw.rectangle(
            (self.left, self.prog_top, self.left + self.inner - 1, self.prog_top + self.prog_h - 1),
            fill=mix(hex_rgb(look.background[-1]), self.text_rgb, 0.25),
        )
        self.base = np.asarray(bg, dtype=np.uint8).copy()
        self.base_img = bg
        self._base_i420: np.ndarray | None = None
        self._accent_yuv = (0, 0, 0)
        self._make_captions(layout, campaign, words)

    def _px(self, v: float) -> int:
        return round(v * self.scale)

    def _hidden(self, text: str) -> str:
        return self.redactions.replace(text) if self.redactions else text

    def _gradient(self, colours: list[tuple[int, int, int]]) -> Image.Image:
        top = np.array(colours[0], np.float32)
        bottom = np.array(colours[-1], np.float32)
        t = np.linspace(0.0, 1.0, self.height, dtype=np.float32)[:, None]
        col = (top * (1 - t) + bottom * t).round().astype(np.uint8)
        arr = np.repeat(col[:, None, :], self.width, axis=1)
        return Image.fromarray(arr)

    def _draw_header(
        self,
        bg: Image.Image,
        draw: ImageDraw.ImageDraw,
        layout: Layout,
        campaign: Campaign,
        logo: Path | None,
    ) -> None:
        """The logo, then the campaign's name shrunk to fit beside it."""
        px, head, medium = self._px, layout.header, self.fonts.medium
        x = self.left
        if logo is not None:
            mark = Image.open(logo).convert("RGBA")
            h = px(head.height)
            w = max(1, round(mark.width * h / mark.height))
            mark = mark.resize((w, h), Image.LANCZOS)
            bg.paste(mark, (x, px(head.top)), mark)
            x += w + px(24)
        name_size = px(head.name_size)
        name_font, name_lines = fit_text(
            printable(campaign.name.upper(), medium),
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

    def _draw_title(
        self, draw: ImageDraw.ImageDraw, layout: Layout, title_line: str, title: str
    ) -> None:
        """The title card: the title, shrunk then ellipsised, and the line below it."""
        px, tl = self._px, layout.title
        bold, regular = self.fonts.bold, self.fonts.regular
        line_font, line_lines = fit_text(
            printable(title_line, regular),
            regular,
            self.inner,
            px(tl.line_size),
            max(6, px(tl.line_size) * 2 // 3),
            1,
        )
        line_text = line_lines[0] if line_lines else ""
        reserve = line_height(line_font) + px(12) if line_text else 0
        title_text = printable(self._hidden(title), bold)
        tfont, tlines = fit_text(
            title_text, bold, self.inner, px(tl.size), px(tl.min_size), tl.max_lines
        )
        lh = line_height(tfont)
        while len(tlines) * lh + reserve > px(tl.height) and len(tlines) > 1:
            tlines = tlines[:-1]
            tlines[-1] = ellipsize(tlines[-1].rstrip(" .,;:…"), tfont, self.inner)
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
                fill=mix(self.text_rgb, self.accent_rgb, 0.5),
                anchor="ls",
            )

    def _place_bars(self, layout: Layout) -> None:
        """Waveform and progress geometry."""
        px, wf, pr = self._px, layout.waveform, layout.progress
        self.wave_top, self.wave_h = _up(px(wf.top)), _down(px(wf.height))
        slot = self.inner / wf.bars
        self.bar_w = max(2, _down(slot * (1 - wf.gap)))
        self.bar_x = [self.left + _down(i * slot + (slot - self.bar_w) / 2) for i in range(wf.bars)]
        self.bar_step = max(1, round(self.fps / 15))
        self.prog_top, self.prog_h = _up(px(pr.top)), max(2, _down(px(pr.height)))
        # Per bar, how many frames of history it shows: the middle now, outwards older.
        mid = (wf.bars - 1) / 2
        self._bar_lag = np.array([round(abs(i - mid)) * self.bar_step for i in range(wf.bars)])
        # The rows the bars can reach (all even): the tallest bar about the centre line.
        self._centre = self.wave_top + self.wave_h // 4 * 2
        tallest = max(self.bar_w, self.wave_h // 2 * 2)
        self.band_top = self._centre - tallest // 4 * 2
        self.band_bottom = self.band_top + tallest

    def _bars(self, k: int) -> list[tuple[int, int, int, int]]:
        """The level bars of frame `k` as (top, bottom, left, right), all even: the current
        level in the middle, recent history spreading outwards."""
        lv = self.levels[np.maximum(0, k - self._bar_lag)]
        h = np.maximum(self.bar_w, (lv * self.wave_h).astype(np.int64) // 2 * 2)
        top = self._centre - h // 4 * 2
        w = self.bar_w
        bars = zip(top.tolist(), h.tolist(), self.bar_x, strict=True)
        return [(t, t + hh, x, x + w) for t, hh, x in bars]

    def _make_captions(
        self, layout: Layout, campaign: Campaign, words: Sequence[tuple[float, float, str]]
    ) -> None:
        """Caption pages, each with one patch per highlighted word, and the end card:
        hashtags and link in the caption box, after the last word."""
        px, cap = self._px, layout.captions
        self.cap_top = _up(px(cap.top))
        self.cap_h = _down(px(cap.top) + px(cap.height) - self.cap_top)
        box = CaptionBox(
            background=self.base_img.crop((0, self.cap_top, self.width, self.cap_top + self.cap_h)),
            top=self.cap_top,
            height=self.cap_h,
            left=self.left,
            inner=self.inner,
            text_rgb=self.text_rgb,
            accent_rgb=self.accent_rgb,
            layout_path=layout.path or "layout",
        )
        self.pages: list[Page] = build_pages(
            box,
            words,
            self.fonts.bold,
            px(cap.size),
            px(cap.min_size),
            cap.max_lines,
            cap.line_spacing,
            self.redactions,
        )
        self.page_starts = [p.start for p in self.pages]
        last = max((p.end for p in self.pages), default=0.0)
        self.end_start = max(last, self.duration - layout.end_card.seconds)
        self.end_card = end_card(
            box,
            campaign,
            self.fonts.bold,
            self.fonts.regular,
            px(layout.end_card.hashtag_size),
            px(layout.end_card.link_size),
        )

    def page_at(self, t: float) -> Page | None:
        i = bisect.bisect_right(self.page_starts, t) - 1
        if i >= 0 and self.pages[i].start <= t < self.pages[i].end:
            return self.pages[i]
        return None

    def _caption(self, t: float) -> tuple[Patch | None, Patch | None]:
        """What the caption box shows at `t`: a page and its highlighted word, the end card,
        or nothing (the background)."""
        page = self.page_at(t)
        if page is not None:
            return page.image, page.word_at(t)
        if t >= self.end_start:
            return self.end_card, None
        return None, None

    def _frame_index(self, t: float) -> int:
        return min(max(0, int(t * self.fps + 1e-6)), self.levels.size - 1)

    def _done(self, t: float) -> int:
        """Width of the progress fill at `t` (even)."""
        return round(self.inner * min(1.0, t / self.duration) / 2) * 2 if self.duration else 0

    def frame(self, t: float) -> np.ndarray:
        """The frame at `t` as an RGB array (thumbnails, tests)."""
        img = self.base.copy()
        colour = np.array(self.accent_rgb, np.uint8)
        for patch in self._caption(t):
            if patch is not None:
                patch.paste(img)
        for top, bottom, left, right in self._bars(self._frame_index(t)):
            img[top:bottom, left:right] = colour
        done = self._done(t)
        img[self.prog_top : self.prog_top + self.prog_h, self.left : self.left + done] = colour
        return img

    def frame_i420(self, t: float) -> np.ndarray:
        """The frame at `t` as one I420 buffer (Y, then U and V at half size): what the
        encoder takes without converting."""
        buf = self._i420_base().copy()
        planes = i420_planes(buf, self.width, self.height)
        for patch in self._caption(t):
            if patch is not None:
                patch.paste_i420(planes)
        self._draw_bars(planes, t)
        self._fill_progress(planes, 0, self._done(t))
        return buf

    def composer(self) -> Callable[[float], np.ndarray]:
        """A frame function for encoding: `frame_i420(t)`, drawn into one buffer that it
        reuses by changing only what differs from the frame before (the caption box when its
        page or word changes, the bars, the progress bar's new part). Write each frame out
        before asking for the next."""
        regions = [
            (self.cap_top, self.cap_top + self.cap_h),
            (self.band_top, self.band_bottom),
            (self.prog_top, self.prog_top + self.prog_h),
        ]
        if any(
            a[1] > b[0] and b[1] > a[0] for i, a in enumerate(regions) for b in regions[i + 1 :]
        ):
            return self.frame_i420  # a layout whose parts overlap: compose every frame whole
        return _Composer(self)

    def _i420_base(self) -> np.ndarray:
        if self._base_i420 is None:
            self._base_i420 = np.concatenate([p.ravel() for p in rgb_to_i420(self.base)])
            self._accent_yuv = yuv_of(self.accent_rgb)
        return self._base_i420

    def _draw_bars(self, planes: Sequence[np.ndarray], t: float) -> None:
        y, u, v = planes
        cy, cu, cv = self._accent_yuv
        for top, bottom, left, right in self._bars(self._frame_index(t)):
            y[top:bottom, left:right] = cy
            u[top // 2 : bottom // 2, left // 2 : right // 2] = cu
            v[top // 2 : bottom // 2, left // 2 : right // 2] = cv

    def _fill_progress(self, planes: Sequence[np.ndarray], start: int, end: int) -> None:
        """The progress fill from `start` to `end` px along the track (even)."""
        if end <= start:
            return
        top, bottom = self.prog_top, self.prog_top + self.prog_h
        left, right = self.left + start, self.left + end
        for k, plane in enumerate(planes):
            d = 1 if k == 0 else 2
            plane[top // d : bottom // d, left // d : right // d] = self._accent_yuv[k]


class _Composer:
    """`Design.composer()`: one I420 buffer, changed frame to frame only where it differs."""

    def __init__(self, design: Design) -> None:
        self.design = design
        self.base = i420_planes(design._i420_base(), design.width, design.height)
        self.buf = design._i420_base().copy()
        self.planes = i420_planes(self.buf, design.width, design.height)
        self.caption: tuple[Patch | None, Patch | None] = (None, None)
        self.done = 0

    def __call__(self, t: float) -> np.ndarray:
        d, planes = self.design, self.planes
        caption = d._caption(t)
        if any(a is not b for a, b in zip(caption, self.caption, strict=True)):
            _restore(planes, self.base, d.cap_top, d.cap_top + d.cap_h)
            for patch in caption:
                if patch is not None:
                    patch.paste_i420(planes)
            self.caption = caption
        _restore(planes, self.base, d.band_top, d.band_bottom)
        d._draw_bars(planes, t)
        done = d._done(t)
        if done < self.done:
            _restore(planes, self.base, d.prog_top, d.prog_top + d.prog_h)
            self.done = 0
        d._fill_progress(planes, self.done, done)
        self.done = done
        return self.buf


def _restore(
    planes: Sequence[np.ndarray], base: Sequence[np.ndarray], top: int, bottom: int
) -> None:
    """Rows `top`..`bottom` (even) of every plane back to the base frame's."""
    for k, (plane, src) in enumerate(zip(planes, base, strict=True)):
        d = 1 if k == 0 else 2
        plane[top // d : bottom // d] = src[top // d : bottom // d]


def _cover(img: Image.Image, width: int, height: int) -> Image.Image:
    s = max(width / img.width, height / img.height)
    img = img.resize((max(width, round(img.width * s)), max(height, round(img.height * s))))
    x, y = (img.width - width) // 2, (img.height - height) // 2
    return img.crop((x, y, x + width, y + height))
