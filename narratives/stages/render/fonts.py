"""Fonts and text for the video: which font set draws a video, what of a text it can draw,
and wrapping by measured pixel width.

Captions are emoji-free. A script the campaign's font cannot draw switches the whole video to
DejaVu Sans; characters no font has are left out of the picture (kept in the WebVTT).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

__all__ = [
    "Fonts",
    "choose_fonts",
    "ellipsize",
    "fit_text",
    "hex_rgb",
    "line_height",
    "load_font",
    "mix",
    "plain",
    "printable",
    "roboto",
    "wrap",
]


def roboto(weight: str) -> Path:
    # font_roboto is a data-only package: imported where a font is first needed.
    import font_roboto

    return Path(font_roboto.font_directory) / f"Roboto-{weight}.ttf"


@lru_cache(maxsize=128)
def load_font(path: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, max(1, size))


@lru_cache(maxsize=4096)
def _has_glyph(path: str, ch: str) -> bool:
    font = load_font(path, 48)
    missing = font.getmask("\U0010fffd")
    mask = font.getmask(ch)
    return not (mask.size == missing.size and bytes(mask) == bytes(missing))


def plain(text: str) -> str:
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


def printable(text: str, font_path: str) -> str:
    """What of `text` the font can draw: the rest is dropped rather than shown as boxes."""
    kept = (
        ch for ch in plain(text) if ord(ch) <= 0x24F or ch.isspace() or _has_glyph(font_path, ch)
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
class Fonts:
    bold: str
    regular: str
    medium: str

    @classmethod
    def of(cls, font_path: str | None) -> Fonts:
        """The campaign's own font for every weight, else Roboto."""
        if font_path:
            return cls(font_path, font_path, font_path)
        return cls(str(roboto("Bold")), str(roboto("Regular")), str(roboto("Medium")))

    def lacks(self, chars: Iterable[str]) -> set[str]:
        paths = (self.bold, self.regular, self.medium)
        return {ch for ch in chars if not all(_has_glyph(p, ch) for p in paths)}


def choose_fonts(primary: Fonts, texts: Iterable[str]) -> tuple[Fonts, str]:
    """The first font set that draws every letter of `texts`, else the one missing fewest,
    with the characters it cannot draw (left out of the picture, kept in the WebVTT)."""
    chars = {ch for t in texts for ch in plain(t) if ord(ch) > 0x24F and not ch.isspace()}
    best, missing = primary, primary.lacks(chars)
    for paths in _FALLBACK_FONTS:
        if not missing:
            break
        if all(Path(p).is_file() for p in paths):
            candidate = Fonts(*paths)
            lacks = candidate.lacks(chars)
            if len(lacks) < len(missing):
                best, missing = candidate, lacks
    return best, "".join(sorted(missing))


def wrap(words: Sequence[str], font: ImageFont.FreeTypeFont, width: int) -> list[list[str]]:
    """Greedy wrap by measured width; a word wider than the line gets a line of its own."""
    lines: list[list[str]] = []
    for w in words:
        if lines and font.getlength(" ".join([*lines[-1], w])) <= width:
            lines[-1].append(w)
        else:
            lines.append([w])
    return lines


def fit_text(
    text: str, font_path: str, width: int, size: int, min_size: int, max_lines: int
) -> tuple[ImageFont.FreeTypeFont, list[str]]:
    """Wrap into at most `max_lines` lines, shrinking the font down to `min_size`, then
    ellipsising the last line."""
    words = text.split()
    for s in range(size, min_size - 1, -max(1, size // 20)):
        font = load_font(font_path, s)
        lines = wrap(words, font, width)
        if len(lines) <= max_lines and all(font.getlength(" ".join(ln)) <= width for ln in lines):
            return font, [" ".join(ln) for ln in lines]
    font = load_font(font_path, min_size)
    lines = [" ".join(ln) for ln in wrap(words, font, width)]
    kept = [ln if font.getlength(ln) <= width else ellipsize(ln, font, width) for ln in lines]
    if len(kept) > max_lines:
        kept = kept[:max_lines]
        kept[-1] = ellipsize(kept[-1].rstrip(" .,;:…"), font, width)
    return font, kept


def ellipsize(line: str, font: ImageFont.FreeTypeFont, width: int) -> str:
    """`line…`, shortened until it fits `width`."""
    while line and font.getlength(line + "…") > width:
        line = line[:-1].rstrip()
    return line + "…"


def line_height(font: ImageFont.FreeTypeFont) -> int:
    ascent, descent = font.getmetrics()
    return ascent + descent


def hex_rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def mix(a: tuple[int, int, int], b: tuple[int, int, int], share: float) -> tuple[int, int, int]:
    return tuple(round(x * (1 - share) + y * share) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]
