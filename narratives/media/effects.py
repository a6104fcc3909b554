"""Audio effects anonymisation needs, in one place: the bleep, the voice disguise, and copies
without metadata.

One bleep: `tone` makes the 1 kHz tone (5 ms ramps, no click) that both `bleep_samples` (a
whole recording, source time) and the render's audio assembly (its kept ranges, output time)
put over a hidden name. The voice disguise shifts the pitch with FFmpeg's `rubberband` filter
when it is built in, else `asetrate` + `atempo`, which keeps the duration. Every file written
here carries no container or stream metadata (titles, artist, GPS, device, dates).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

import numpy as np

from narratives.core.errors import BadRecording, UsageError
from narratives.media.audio import decode, probe
from narratives.media.ffmpeg import ffmpeg_exe

__all__ = [
    "TONE_HZ",
    "TONE_LEVEL",
    "tone",
    "bleep_samples",
    "bleep_audio",
    "strip_metadata",
    "disguise_voice",
    "disguise_samples",
]

TONE_HZ = 1000.0
TONE_LEVEL = 0.3
_RAMP = 0.005


def tone(n: int, rate: int, *, tone_hz: float = TONE_HZ, level: float = TONE_LEVEL) -> np.ndarray:
    """`n` samples of the bleep tone, ramped in and out over 5 ms so it does not click."""
    t = np.arange(n, dtype=np.float32) / rate
    out = (level * np.sin(2 * np.pi * tone_hz * t)).astype(np.float32)
    ramp = min(round(_RAMP * rate), out.size // 2)
    if ramp:
        out[:ramp] *= np.linspace(0, 1, ramp, dtype=np.float32)
        out[-ramp:] *= np.linspace(1, 0, ramp, dtype=np.float32)
    return out


def bleep_samples(
    samples: np.ndarray,
    rate: int,
    intervals: Iterable[tuple[float, float]],
    *,
    tone_hz: float = TONE_HZ,
    level: float = TONE_LEVEL,
) -> np.ndarray:
    """A copy of mono `samples` with each interval (seconds) replaced by the tone."""
    out = np.array(samples, dtype=np.float32, copy=True)
    for a, b in intervals:
        lo, hi = max(0, round(a * rate)), min(out.size, round(b * rate))
        if hi > lo:
            out[lo:hi] = tone(hi - lo, rate, tone_hz=tone_hz, level=level)
    return out


# ----------------------------------------------------------------------------- ffmpeg


def _run(args: list[str], what: str, stdin: bytes | None = None) -> bytes:
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", *(["-nostdin"] if stdin is None else []), "-v", "error"]
        + ["-y", *args],
        input=stdin,
        capture_output=True,
        timeout=3600,
    )
    if proc.returncode != 0:
        err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        raise BadRecording(f"{what}: ffmpeg failed: {err[-1] if err else proc.returncode}")
    return proc.stdout


@contextmanager
def _atomic(dst: Path) -> Iterator[Path]:
    """A temporary path beside `dst` (same suffix, so ffmpeg picks the format), renamed on
    success; nothing is left behind on failure."""
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.stem}.", suffix=dst.suffix, dir=dst.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, dst)
    finally:
        Path(tmp).unlink(missing_ok=True)


# Strip everything a file can carry about its origin: container and stream tags (title,
# artist, location, device, creation time), chapters, and the encoder's version string.
_NO_METADATA = [
    "-map_metadata", "-1", "-map_chapters", "-1",
    "-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact",
]  # fmt: skip


def _encode(samples: np.ndarray, rate: int, dst: Path, what: str) -> Path:
    with _atomic(dst) as tmp:
        _run(
            ["-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0", *_NO_METADATA, str(tmp)],
            what,
            stdin=np.ascontiguousarray(samples, dtype="<f4").tobytes(),
        )
    return Path(dst)


def bleep_audio(
    src: Path,
    dst: Path,
    intervals: Iterable[tuple[float, float]],
    tone_hz: float = TONE_HZ,
) -> Path:
    """Write `src`'s audio (mono, its own rate) to `dst` with `intervals` bleeped and no
    metadata; the format follows `dst`'s suffix (.wav, .m4a, .flac, ...)."""
    src, dst = Path(src), Path(dst)
    rate = probe(src).sample_rate or 44100
    samples = bleep_samples(decode(src, rate), rate, intervals, tone_hz=tone_hz)
    return _encode(samples, rate, dst, src.name)


def strip_metadata(src: Path, dst: Path) -> Path:
    """Copy `src` to `dst` without any metadata (streams copied, not re-encoded)."""
    src, dst = Path(src), Path(dst)
    with _atomic(dst) as tmp:
        _run(["-i", str(src), "-map", "0", "-c", "copy", *_NO_METADATA, str(tmp)], src.name)
    return dst


# ----------------------------------------------------------------------------- voice


@cache
def _has_rubberband() -> bool:
    proc = subprocess.run(
        [ffmpeg_exe(), "-hide_banner", "-filters"], capture_output=True, text=True, timeout=60
    )
    return bool(re.search(r"^\s*\S+\s+rubberband\s", proc.stdout, re.MULTILINE))


def _pitch_filter(semitones: float, rate: int) -> str:
    factor = 2.0 ** (semitones / 12.0)
    if _has_rubberband():
        return f"rubberband=pitch={factor:.6f}:formant=shifted"
    # Play at a changed rate (pitch and speed move together), resample back, then restore
    # the speed; atempo takes 0.5..2, and the factor is kept within an octave.
    return f"asetrate={round(rate * factor)},aresample={rate},atempo={1.0 / factor:.6f}"


def disguise_voice(src: Path, dst: Path, semitones: float = -3.0) -> Path:
    """Write `src` to `dst` with its voice shifted by `semitones` (same duration, no
    metadata). A video stream, if any, is copied as it is."""
    if not (-12 <= semitones <= 12):
        raise UsageError("the pitch shift must be between -12 and 12 semitones")
    src, dst = Path(src), Path(dst)
    rate = probe(src).sample_rate or 44100
    with _atomic(dst) as tmp:
        _run(
            [
                "-i", str(src), "-map", "0:v?", "-map", "0:a:0", "-c:v", "copy",
                "-af", _pitch_filter(semitones, rate), *_NO_METADATA, str(tmp),
            ],
            src.name,
        )  # fmt: skip
    return dst


def disguise_samples(samples: np.ndarray, rate: int, semitones: float = -3.0) -> np.ndarray:
    """`disguise_voice` for samples in memory (mono float32), e.g. the render's audio."""
    raw = _run(
        [
            "-f", "f32le", "-ar", str(rate), "-ac", "1", "-i", "pipe:0",
            "-af", _pitch_filter(semitones, rate), "-f", "f32le", "-ac", "1", "-ar", str(rate),
            "pipe:1",
        ],
        "voice disguise",
        stdin=np.ascontiguousarray(samples, dtype="<f4").tobytes(),
    )  # fmt: skip
    out = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    # Filters may pad or trim a few milliseconds; keep the timeline the captions follow.
    if out.size < samples.size:
        out = np.concatenate([out, np.zeros(samples.size - out.size, np.float32)])
    return out[: samples.size].copy()
