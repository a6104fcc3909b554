"""Draw the two campaign logos (narratives/defaults/media/brand/*.png) with Pillow.

Simple marks in each campaign's colours, drawn at 4x and scaled down for smooth edges, on a
transparent background so they sit on any gradient. Run: `.venv/bin/python scripts/make_brand.py`.
"""

from __future__ import annotations

import math
from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parent.parent / "narratives" / "defaults" / "media" / "brand"
SIZE = 512
SS = 4  # supersampling


def _canvas() -> tuple[Image.Image, ImageDraw.ImageDraw, int]:
    n = SIZE * SS
    img = Image.new("RGBA", (n, n), (0, 0, 0, 0))
    return img, ImageDraw.Draw(img), n


def _save(img: Image.Image, name: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    img.resize((SIZE, SIZE), Image.LANCZOS).save(OUT / name, optimize=True)


def emotional_equity() -> None:
    """A crescent moon resting on an equals sign: equal rest for everyone."""
    img, d, n = _canvas()
    amber, cream, rose = (255, 163, 0, 255), (255, 241, 232, 255), (126, 37, 83, 255)
    d.ellipse((0.04 * n, 0.04 * n, 0.96 * n, 0.96 * n), fill=(29, 43, 83, 255))
    d.ellipse((0.04 * n, 0.04 * n, 0.96 * n, 0.96 * n), outline=amber, width=int(0.03 * n))
    moon = Image.new("L", (n, n), 0)
    m = ImageDraw.Draw(moon)
    m.ellipse((0.26 * n, 0.16 * n, 0.70 * n, 0.60 * n), fill=255)
    m.ellipse((0.38 * n, 0.10 * n, 0.80 * n, 0.52 * n), fill=0)
    img.paste(cream, (0, 0), moon)
    for y in (0.64, 0.76):
        d.rounded_rectangle(
            (0.26 * n, y * n, 0.74 * n, (y + 0.07) * n), radius=int(0.035 * n), fill=amber
        )
    d.ellipse((0.62 * n, 0.22 * n, 0.66 * n, 0.26 * n), fill=rose)
    _save(img, "emotional-equity-logo.png")


def neural_mandate() -> None:
    """Three nested arcs (shared dreams) around a node: a mind in a network."""
    img, d, n = _canvas()
    teal, mint, ice = (28, 124, 125, 255), (61, 220, 151, 255), (224, 251, 252, 255)
    c = n / 2
    pts = [
        (
            c + 0.46 * n * math.cos(math.radians(60 * k + 30)),
            c + 0.46 * n * math.sin(math.radians(60 * k + 30)),
        )
        for k in range(6)
    ]
    d.polygon(pts, fill=(11, 19, 43, 255))
    d.line([*pts, pts[0]], fill=teal, width=int(0.03 * n), joint="curve")
    for i, r in enumerate((0.14, 0.23, 0.32)):
        box = (c - r * n, c - r * n, c + r * n, c + r * n)
        d.arc(
            box, 200 + 15 * i, 340 - 15 * i, fill=mint if i % 2 == 0 else ice, width=int(0.035 * n)
        )
        d.arc(
            box, 20 + 15 * i, 160 - 15 * i, fill=mint if i % 2 == 0 else ice, width=int(0.035 * n)
        )
    d.ellipse((c - 0.06 * n, c - 0.06 * n, c + 0.06 * n, c + 0.06 * n), fill=mint)
    _save(img, "neural-mandate-logo.png")


if __name__ == "__main__":
    emotional_equity()
    neural_mandate()
    print(f"wrote logos to {OUT}")
