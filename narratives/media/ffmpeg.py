"""Which ffmpeg binary to run: `NARRATIVES_FFMPEG`, else the one on PATH, else the static build
that the `imageio-ffmpeg` wheel ships (libx264, aac; no ffprobe), so a plain `pip install` can
render without a system ffmpeg. Decoding never needs one (PyAV, `media.audio`).
"""

from __future__ import annotations

import os
import shutil
from functools import cache

from narratives.core.errors import NarrativesError

__all__ = ["ffmpeg_exe"]

_HINT = (
    "install ffmpeg (e.g. `apt-get install ffmpeg`), or `pip install imageio-ffmpeg`, "
    "or set NARRATIVES_FFMPEG to an ffmpeg binary"
)


@cache
def ffmpeg_exe() -> str:
    """The ffmpeg to use, looked up once per process."""
    named = os.environ.get("NARRATIVES_FFMPEG")
    if named:
        if not (os.path.isfile(named) and os.access(named, os.X_OK)):
            raise NarrativesError(f"NARRATIVES_FFMPEG={named}: not an executable file", hint=_HINT)
        return named
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg  # optional fallback; imported only when PATH has no ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as exc:
        raise NarrativesError("no ffmpeg binary found", hint=_HINT) from exc
