"""The video's audio: the kept ranges of the recording, faded at each cut, the voice disguised
and names bleeped where the narrator must stay anonymous, then silence under the end card.

It is assembled with NumPy and written as WAV, which the encoder reads beside the frames. The
waveform bars follow its loudness (`levels`).
"""

from __future__ import annotations

import wave
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from narratives.media.audio import iter_decode
from narratives.media.effects import disguise_samples, tone
from narratives.records.redactions import Redactions

__all__ = ["AUDIO_RATE", "assemble_audio", "levels", "write_wav"]

#: Audio is assembled and encoded at this rate.
AUDIO_RATE = 44100
#: Fade at each cut edge, long enough to avoid a click and short enough not to be heard.
_FADE = 0.04

_Spans = list[tuple[int, int]]


def assemble_audio(
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
    """
    spans = [(round(a * rate), round(b * rate)) for a, b in ranges]
    starts = np.cumsum([0] + [b - a for a, b in spans])
    out = np.zeros(int(starts[-1]) + round(tail * rate), np.float32)
    decoded = _fill(out, audio_path, spans, starts, rate)
    _fade_cuts(out, spans, starts, decoded, rate)
    if voice_semitones:
        out = disguise_samples(out, rate, voice_semitones)
    for ra, rb in redactions.intervals if redactions else ():
        _bleep(out, spans, starts, round(ra * rate), round(rb * rate), rate)
    return out


def _fill(out: np.ndarray, audio_path: Path, spans: _Spans, starts: np.ndarray, rate: int) -> int:
    """Copy the kept spans of the recording into `out`, back to back; returns how many
    samples were decoded.

    Decoding streams block by block, so a long recording is never held whole.
    """
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
    return pos


def _fade_cuts(out: np.ndarray, spans: _Spans, starts: np.ndarray, decoded: int, rate: int) -> None:
    """Fade in and out where a span meets a cut (not at the recording's own start and end)."""
    fade = np.linspace(0.0, 1.0, max(1, round(_FADE * rate)), dtype=np.float32)
    n = fade.size
    for (a, b), o in zip(spans, starts, strict=False):
        seg = out[o : o + b - a]
        if a > 0 and seg.size > n:
            seg[:n] *= fade
        if b < decoded and seg.size > n:
            seg[-n:] *= fade[::-1]


def _bleep(
    out: np.ndarray, spans: _Spans, starts: np.ndarray, lo_src: int, hi_src: int, rate: int
) -> None:
    """The bleep tone over source samples `lo_src..hi_src`, wherever the cut kept them."""
    for (a, b), o in zip(spans, starts, strict=False):
        lo, hi = max(a, lo_src), min(b, hi_src)
        if lo < hi:
            out[o + lo - a : o + hi - a] = tone(hi - lo, rate)


def write_wav(path: Path, samples: np.ndarray, rate: int = AUDIO_RATE) -> None:
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def levels(samples: np.ndarray, fps: int, nframes: int, rate: int = AUDIO_RATE) -> np.ndarray:
    """RMS per video frame, normalised to 0..1 against the loud end of the recording."""
    hop = rate / fps
    idx = (np.arange(nframes + 1) * hop).astype(np.int64).clip(0, samples.size)
    sq = np.concatenate([[0.0], np.cumsum(samples.astype(np.float64) ** 2)])
    n = np.maximum(idx[1:] - idx[:-1], 1)
    rms = np.sqrt((sq[idx[1:]] - sq[idx[:-1]]) / n)
    ref = max(float(np.percentile(rms, 98)) if rms.size else 0.0, 1e-4)
    return np.clip(rms / ref, 0.0, 1.0) ** 0.7
