"""Caption pages: the words of a video grouped into pages of a few wrapped lines, each page
and each highlighted word rasterised once onto its own crop of the caption box, the end card,
and the WebVTT file that says the same as the picture.

Pages break at sentence ends and long pauses. Every patch sits on even rows and columns with
even sizes, so it maps exactly onto the half-size chroma planes of a YUV 4:2:0 frame.
"""

from __future__ import annotations

import bisect
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from narratives.core.campaigns import Campaign
from narratives.core.errors import ConfigError
from narratives.media.video_writer import rgb_to_i420
from narratives.records.redactions import Redactions
from narratives.stages.render.cut import SENTENCE_END
from narratives.stages.render.fonts import fit_text, line_height, load_font, plain, printable, wrap

__all__ = ["PAGE_HOLD", "CaptionBox", "Page", "Patch", "build_pages", "end_card", "vtt"]

#: A pause this long between words starts a new caption page.
_PAGE_GAP = 1.2
#: A caption page stays up this long after its last word (unless the next one starts).
PAGE_HOLD = 0.6

#: (start, end, as drawn, as said)
_Said = tuple[float, float, str, str]
#: (x, baseline, text, line) of a word on its page.
_WordBox = tuple[int, int, str, int]


@dataclass
class Patch:
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
class Page:
    start: float
    end: float
    #: The lines as drawn (what the font can draw)...
    lines: list[str]
    #: ...and as said, for the WebVTT file (players draw every script).
    spoken: list[str]
    image: Patch
    #: (start, end, highlighted patch) per word, in time order.
    words: list[tuple[float, float, Patch]]
    word_starts: list[float]

    def word_at(self, t: float) -> Patch | None:
        i = bisect.bisect_right(self.word_starts, t) - 1
        if i >= 0 and self.words[i][0] <= t < self.words[i][1]:
            return self.words[i][2]
        return None


@dataclass(frozen=True)
class CaptionBox:
    """The caption box of one video: its rows of the frame (even), the text column, the
    colours, and the background it is drawn over."""

    background: Image.Image
    top: int
    height: int
    left: int
    inner: int
    text_rgb: tuple[int, int, int]
    accent_rgb: tuple[int, int, int]
    layout_path: Path | str = "layout"

    @property
    def width(self) -> int:
        return self.background.width

    def blank(self) -> Image.Image:
        return self.background.copy()

    def draw(
        self, boxes: Sequence[_WordBox], font: ImageFont.FreeTypeFont, highlight: int | None
    ) -> Image.Image:
        img = self.blank()
        d = ImageDraw.Draw(img)
        for k, (x, base, text, _li) in enumerate(boxes):
            colour = self.accent_rgb if k == highlight else self.text_rgb
            d.text((x, base), text, font=font, fill=colour, anchor="ls")
        return img


def caption_groups(
    words: Sequence[_Said], font: ImageFont.FreeTypeFont, width: int, max_lines: int
) -> list[list[_Said]]:
    """Pages of at most `max_lines` wrapped lines, broken at sentence ends and long pauses.

    Words are (start, end, as drawn, as said); the drawn text is what is measured."""
    pages: list[list[_Said]] = []
    for w in words:
        cur = pages[-1] if pages else None
        if cur is not None:
            prev = cur[-1]
            fits = len(wrap([x[2] for x in [*cur, w]], font, width)) <= max_lines
            if fits and not SENTENCE_END.search(prev[3]) and w[0] - prev[1] < _PAGE_GAP:
                cur.append(w)
                continue
        pages.append([w])
    return pages


def build_pages(
    box: CaptionBox,
    words: Sequence[tuple[float, float, str]],
    font_path: str,
    size: int,
    min_size: int,
    max_lines: int,
    spacing: float,
    redactions: Redactions | None,
) -> list[Page]:
    """The caption pages of `words` (start, end, text in output time), hidden terms replaced."""
    clean = []
    for a, b, text in words:
        said = plain(redactions.replace(text) if redactions else text)
        if said:
            # A word no font can draw still shows that something was said.
            clean.append((a, b, printable(said, font_path) or "…", said))
    font = _caption_font(box, font_path, size, min_size, max_lines, spacing)
    groups = caption_groups(clean, font, box.inner, max_lines)
    pages = []
    for gi, group in enumerate(groups):
        gfont = font
        # A single word wider than the box: shrink this page only.
        widest = max(gfont.getlength(w[2]) for w in group)
        if widest > box.inner:
            gfont = load_font(font_path, max(1, int(font.size * box.inner / widest) - 1))
        nxt = groups[gi + 1][0][0] - 0.1 if gi + 1 < len(groups) else math.inf
        pages.append(_page(box, group, gfont, spacing, nxt))
    return pages


def _caption_font(
    box: CaptionBox, font_path: str, size: int, min_size: int, max_lines: int, spacing: float
) -> ImageFont.FreeTypeFont:
    """The caption font at the largest size that fits `max_lines` in the box."""
    font = load_font(font_path, size)

    def too_tall(f: ImageFont.FreeTypeFont) -> bool:
        return line_height(f) * (1 + (max_lines - 1) * spacing) > box.height

    # The caption box must hold max_lines; shrink the font rather than clip.
    while size > min_size and too_tall(font):
        size -= 1
        font = load_font(font_path, size)
    if too_tall(font):
        raise ConfigError(
            f"{box.layout_path}: captions.height: {box.height} px cannot hold "
            f"{max_lines} lines of this font at min_size {min_size}",
            hint="raise captions.height or lower captions.min_size or max_lines",
        )
    return font


def _page(
    box: CaptionBox,
    group: Sequence[_Said],
    font: ImageFont.FreeTypeFont,
    spacing: float,
    next_start: float,
) -> Page:
    """One page: its picture, a highlighted patch per word, and its lines as said."""
    lines = wrap([w[2] for w in group], font, box.inner)
    boxes = _word_boxes(box, lines, font, spacing)
    page_img = np.asarray(box.draw(boxes, font, None), dtype=np.uint8).copy()
    inks = [_ink(b, font) for b in boxes]
    patches = [
        (group[k][0], group[k][1], _word_patch(box, boxes, inks, font, k))
        for k in range(len(boxes))
    ]
    said, spoken = [w[3] for w in group], []
    for ln in lines:
        spoken.append(" ".join(said[: len(ln)]))
        said = said[len(ln) :]
    return Page(
        start=max(0.0, group[0][0] - 0.1),
        end=min(next_start, group[-1][1] + PAGE_HOLD),
        lines=[" ".join(ln) for ln in lines],
        spoken=spoken,
        image=Patch(box.top, 0, page_img),
        words=patches,
        word_starts=[p[0] for p in patches],
    )


def _word_boxes(
    box: CaptionBox, lines: Sequence[Sequence[str]], font: ImageFont.FreeTypeFont, spacing: float
) -> list[_WordBox]:
    """Word positions: x from the measured prefix, centred lines, the block centred."""
    ascent, _ = font.getmetrics()
    lh = round(line_height(font) * spacing)
    block = lh * (len(lines) - 1) + line_height(font)
    y0 = max(0, (box.height - block) // 2)
    boxes: list[_WordBox] = []
    for li, ln in enumerate(lines):
        full = " ".join(ln)
        x0 = box.left + round((box.inner - font.getlength(full)) / 2)
        for wi, w in enumerate(ln):
            prefix = " ".join(ln[:wi]) + (" " if wi else "")
            boxes.append((x0 + round(font.getlength(prefix)), y0 + li * lh + ascent, w, li))
    return boxes


def _ink(word: _WordBox, font: ImageFont.FreeTypeFont) -> tuple[int, int, int, int]:
    """Where a word's ink can fall on its page (left, top, right, bottom), a little generous."""
    x, base, text, _li = word
    x0, top, x1, bottom = font.getbbox(text, anchor="ls")
    margin = 4
    return (x + x0 - margin, base + top - margin, x + x1 + margin, base + bottom + margin)


def _word_patch(
    box: CaptionBox,
    boxes: Sequence[_WordBox],
    inks: Sequence[tuple[int, int, int, int]],
    font: ImageFont.FreeTypeFont,
    k: int,
) -> Patch:
    """The page with word `k` highlighted, cropped to that word (even bounds).

    Only the words whose ink reaches the crop are drawn, onto the crop itself: the same
    pixels as drawing the whole page and cropping (whole-pixel positions, same order), at a
    few glyphs per word instead of the whole page per word."""
    ascent = font.getmetrics()[0]
    descent = line_height(font) - ascent
    x, base, text, _li = boxes[k]
    x0, top, x1, bottom = font.getbbox(text, anchor="ls")
    # The ink's own box too: stacked accents (Ỗ) rise above the ascent.
    pad = 3  # even bounds, as for every patch (see the module docstring)
    xa = max(0, (x + x0 - pad) // 2 * 2)
    xb = min(box.width, -(-(x + x1 + pad) // 2) * 2)
    ya = max(0, (base + min(top, -ascent) - pad) // 2 * 2)
    yb = min(box.height, -(-(base + max(bottom, descent) + pad) // 2) * 2)
    img = box.background.crop((xa, ya, xb, yb))
    d = ImageDraw.Draw(img)
    for j, (wx, wbase, wtext, _wl) in enumerate(boxes):
        left, upper, right, lower = inks[j]
        if left < xb and right > xa and upper < yb and lower > ya:
            colour = box.accent_rgb if j == k else box.text_rgb
            d.text((wx - xa, wbase - ya), wtext, font=font, fill=colour, anchor="ls")
    return Patch(box.top + ya, xa, np.asarray(img, dtype=np.uint8).copy())


def end_card(
    box: CaptionBox, campaign: Campaign, bold: str, regular: str, tag_size: int, link_size: int
) -> Patch:
    """Hashtags and link, centred in the caption box, shown after the last word."""
    img = box.blank()
    d = ImageDraw.Draw(img)
    tags = " ".join(f"#{h}" for h in campaign.hashtags)
    tfont, tlines = fit_text(tags, bold, box.inner, tag_size, max(8, tag_size // 2), 3)
    link = re.sub(r"^https?://", "", campaign.link)
    lfont, llines = fit_text(link, regular, box.inner, link_size, max(6, link_size // 2), 2)
    lh_t, lh_l = line_height(tfont), line_height(lfont)
    gap = lh_l // 2
    block = lh_t * len(tlines) + gap + lh_l * len(llines)
    y = max(0, (box.height - block) // 2)
    for ln in tlines:
        d.text(
            (box.width // 2, y + tfont.getmetrics()[0]),
            ln,
            font=tfont,
            fill=box.accent_rgb,
            anchor="ms",
        )
        y += lh_t
    y += gap
    for ln in llines:
        d.text(
            (box.width // 2, y + lfont.getmetrics()[0]),
            ln,
            font=lfont,
            fill=box.text_rgb,
            anchor="ms",
        )
        y += lh_l
    return Patch(box.top, 0, np.asarray(img, dtype=np.uint8).copy())


def _vtt_time(t: float) -> str:
    ms = round(max(0.0, t) * 1000)
    h, ms = divmod(ms, 3600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}.{ms:03d}"


def vtt(pages: Sequence[Page], duration: float) -> str:
    """The WebVTT captions: the pages as said, cut where the picture cuts them."""
    out = ["WEBVTT", ""]
    for i, p in enumerate(pages, 1):
        end = min(p.end, duration)
        if end <= p.start:
            continue
        out += [str(i), f"{_vtt_time(p.start)} --> {_vtt_time(end)}", *p.spoken, ""]
    return "\n".join(out)
