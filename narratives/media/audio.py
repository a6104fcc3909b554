"""Probe and decode recordings with PyAV, so no ffmpeg binary is needed at run time.

Every way a recording can be unusable (missing, unreadable, empty, not audio, truncated, no
audio stream, too short) becomes a `BadRecording` whose message names the file, so a batch
can record the reason on that narrative and carry on. Decoding streams: `iter_decode` yields
mono float32 blocks and `decode` fills one growing buffer, so a long recording is never held
twice (no list of frames concatenated at the end).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from narratives.core.errors import BadRecording

__all__ = ["AudioInfo", "probe", "decode", "iter_decode", "SAMPLE_RATE"]

#: Whisper's input rate.
SAMPLE_RATE = 16000

#: Decoded audio shorter than this share of the duration the container declares is truncated.
_TRUNCATED_SHARE = 0.8
#: ... unless the gap is below this many seconds (encoder padding, rounding of estimates).
_TRUNCATED_SLACK = 1.0
#: Raw streams whose duration FFmpeg only estimates from the bitrate: no truncation check.
_ESTIMATED_DURATION = frozenset({"aac", "mp3", "ac3", "eac3", "dts", "amr"})


@dataclass(frozen=True)
class AudioInfo:
    #: Seconds, as the container declares it (0.0 when it does not say).
    duration: float
    sample_rate: int
    channels: int
    codec: str
    container: str


def _bad(path: Path, reason: str, hint: str | None = None) -> BadRecording:
    return BadRecording(f"{path.name}: {reason}", hint=hint)


def _check_file(path: Path) -> None:
    """Fail on what PyAV would report obscurely: missing, a folder, unreadable, empty."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise _bad(path, f"no such file ({path})") from None
    except PermissionError:
        raise _bad(path, f"permission denied ({path})") from None
    except OSError as exc:
        raise _bad(path, f"cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise _bad(path, f"is a directory, not a recording ({path})")
    if not stat.S_ISREG(st.st_mode):
        raise _bad(path, f"not a regular file ({path})")
    try:
        with open(path, "rb") as fh:
            head = fh.read(1)
    except PermissionError:
        raise _bad(path, f"permission denied ({path})") from None
    except OSError as exc:
        raise _bad(path, f"cannot read {path}: {exc.strerror or exc}") from None
    if not head:
        raise _bad(path, "empty file (0 bytes)")


def _open(path: Path) -> av.container.InputContainer:
    _check_file(path)
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except av.error.InvalidDataError:
        raise _bad(
            path, "not a recording: unknown format, or the file is damaged or truncated"
        ) from None
    except av.error.EOFError:
        raise _bad(path, "truncated: the file ends before its header does") from None
    except av.error.PermissionError:
        raise _bad(path, f"permission denied ({path})") from None
    except av.error.FFmpegError as exc:
        raise _bad(path, f"cannot open as a recording: {_reason(exc)}") from None
    except OSError as exc:  # e.g. EACCES raised while PyAV opens the file itself
        if exc.errno == errno.EACCES:
            raise _bad(path, f"permission denied ({path})") from None
        raise _bad(path, f"cannot read {path}: {exc.strerror or exc}") from None


def _wav_shortfall(path: Path) -> int:
    """Bytes missing from a WAV file whose header declares more data than it holds.

    FFmpeg derives a WAV's duration from the file size, so a cut-off download would pass
    as a shorter recording; the RIFF `data` chunk size still says how long it was.
    """
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    if len(head) < 12 or head[:4] not in (b"RIFF", b"RIFX") or head[8:12] != b"WAVE":
        return 0
    order = "little" if head[:4] == b"RIFF" else "big"
    pos = 12
    while pos + 8 <= len(head):
        size = int.from_bytes(head[pos + 4 : pos + 8], order)
        if head[pos : pos + 4] == b"data":
            if size in (0, 0xFFFFFFFF):  # written by a streaming encoder: size unknown
                return 0
            return max(0, pos + 8 + size - path.stat().st_size)
        pos += 8 + size + (size & 1)
    return 0


def _check_wav(path: Path, container: av.container.InputContainer) -> None:
    if container.format.name == "wav" and (missing := _wav_shortfall(path)):
        raise _bad(path, f"truncated: the WAV header declares {missing} more bytes of audio")


def _reason(exc: Exception) -> str:
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def _audio_stream(path: Path, container: av.container.InputContainer) -> av.AudioStream:
    if not container.streams.audio:
        kinds = "a video track only" if container.streams.video else "no streams PyAV can use"
        raise _bad(path, f"no audio stream (the file has {kinds})")
    return container.streams.audio[0]


def _declared_duration(container: av.container.InputContainer, stream: av.AudioStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def _info(container: av.container.InputContainer, stream: av.AudioStream) -> AudioInfo:
    ctx = stream.codec_context
    return AudioInfo(
        duration=round(_declared_duration(container, stream), 3),
        sample_rate=int(ctx.sample_rate or 0),
        channels=int(ctx.channels or 0),
        codec=ctx.name or "",
        container=container.format.name or "",
    )


def _check_duration(path: Path, seconds: float, min_duration: float) -> None:
    if seconds < min_duration:
        raise _bad(
            path,
            f"too short to hold speech ({seconds:.2f} s < {min_duration:g} s)",
            hint="setting transcribe.min_duration sets the shortest accepted recording",
        )


def probe(path: str | os.PathLike[str], *, min_duration: float = 0.0) -> AudioInfo:
    """Read the container header only: format, codec, rate, channels, declared duration."""
    path = Path(path)
    with _open(path) as container:
        info = _info(container, _audio_stream(path, container))
        _check_wav(path, container)
    if info.duration:
        _check_duration(path, info.duration, min_duration)
    return info


def iter_decode(
    path: str | os.PathLike[str],
    sample_rate: int = SAMPLE_RATE,
    *,
    block_seconds: float = 30.0,
) -> Iterator[np.ndarray]:
    """Yield the first audio track as mono float32 blocks of about `block_seconds` each.

    Raises `BadRecording` (possibly after some blocks) when the stream is corrupt or ends
    well before the duration its container declares.
    """
    path = Path(path)
    block = max(1, int(block_seconds * sample_rate))
    with _open(path) as container:
        stream = _audio_stream(path, container)
        _check_wav(path, container)
        declared = _declared_duration(container, stream)
        if container.format.name in _ESTIMATED_DURATION:
            declared = 0.0
        resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
        pending: list[np.ndarray] = []
        pending_n = total = 0

        def frames() -> Iterator[av.AudioFrame]:
            try:
                for packet in container.demux(stream):
                    yield from packet.decode()
            except av.error.EOFError:
                pass
            except av.error.FFmpegError as exc:
                at = total / sample_rate
                raise _bad(path, f"corrupt or truncated at {at:.1f} s: {_reason(exc)}") from None
            yield None  # flush the resampler

        for frame in frames():
            try:
                out = resampler.resample(frame)
            except (av.error.FFmpegError, ValueError) as exc:
                raise _bad(path, f"cannot resample audio: {_reason(exc)}") from None
            for f in out:
                data = f.to_ndarray().reshape(-1)
                pending.append(data)
                pending_n += data.size
                total += data.size
            while pending_n >= block:
                joined = np.concatenate(pending)
                yield joined[:block]
                rest = joined[block:]
                pending, pending_n = ([rest] if rest.size else []), rest.size
        if pending_n:
            yield np.concatenate(pending)
    if total == 0:
        raise _bad(path, "no audio samples could be decoded (empty or truncated audio stream)")
    decoded = total / sample_rate
    if declared and decoded < declared * _TRUNCATED_SHARE and declared - decoded > _TRUNCATED_SLACK:
        raise _bad(path, f"truncated: holds {decoded:.1f} s of audio but declares {declared:.1f} s")


def decode(
    path: str | os.PathLike[str],
    sample_rate: int = SAMPLE_RATE,
    *,
    min_duration: float = 0.0,
) -> np.ndarray:
    """The whole first audio track as one mono float32 array at `sample_rate`."""
    path = Path(path)
    info = probe(path, min_duration=min_duration)
    # Preallocate from the declared duration; grow by doubling if it was an underestimate.
    buf = np.empty(max(int(info.duration * sample_rate) + sample_rate, sample_rate), np.float32)
    n = 0
    for block in iter_decode(path, sample_rate):
        if n + block.size > buf.size:
            grown = np.empty(max(buf.size * 2, n + block.size), np.float32)
            grown[:n] = buf[:n]
            buf = grown
        buf[n : n + block.size] = block
        n += block.size
    _check_duration(path, n / sample_rate, min_duration)
    # A view keeps the whole buffer alive: copy only when the estimate was well over.
    return buf[:n] if n >= buf.size * 0.9 else buf[:n].copy()
