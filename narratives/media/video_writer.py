"""Encode planar YUV 4:2:0 frames and a WAV file to MP4 in one ffmpeg process.

Why not MoviePy's `write_videofile`: MoviePy 2.2.1's `FFMPEG_VideoWriter` always declares its
input as packed `rgb24` and ignores `pixel_format` (Zulko/moviepy#2539; the fix, PR #2462, is
not released). ffmpeg then converts every 1080x1920 frame from RGB to yuv420p on one thread,
about 6.5 ms a frame, and the pipe carries twice the bytes x264 needs. MoviePy also encodes
the audio in a separate pass before the video starts.

Here the renderer converts each layer to YUV once (`rgb_to_i420`) and composes frames in YUV,
so ffmpeg only encodes: H.264 yuv420p from stdin and AAC from the WAV, interleaved with
`+faststart`, tagged BT.709 limited range (what the conversion uses; players need not guess).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

import numpy as np

from narratives.core.errors import StageFailed
from narratives.media.ffmpeg import ffmpeg_exe

__all__ = ["I420Writer", "i420_planes", "raw_input_args", "rgb_to_i420", "x264_args", "yuv_of"]

#: BT.709 luma weights: the HD standard, and what the output is tagged with.
_KR, _KB = 0.2126, 0.0722
_KG = 1.0 - _KR - _KB
_COLOUR_TAGS = [
    "-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709",
    "-color_range", "tv",
]  # fmt: skip


def _ycbcr(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full-resolution Y, Cb, Cr (float32, limited range) of an RGB array."""
    f = rgb.astype(np.float32)
    r, g, b = f[..., 0], f[..., 1], f[..., 2]
    luma = _KR * r + _KG * g + _KB * b
    y = 16.0 + luma * (219.0 / 255.0)
    cb = 128.0 + (b - luma) * (224.0 / 255.0 / (2.0 * (1.0 - _KB)))
    cr = 128.0 + (r - luma) * (224.0 / 255.0 / (2.0 * (1.0 - _KR)))
    return y, cb, cr


def _u8(a: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)


def rgb_to_i420(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An H x W x 3 RGB array (H and W even) as Y (H x W), U and V (H/2 x W/2) planes.

    Chroma is the mean of each 2x2 block, which is what a 4:2:0 encoder keeps of it.
    """
    h, w = rgb.shape[:2]
    if h % 2 or w % 2:
        raise ValueError(f"I420 needs even sizes, got {w}x{h}")
    y, cb, cr = _ycbcr(rgb)

    def half(c: np.ndarray) -> np.ndarray:
        return (c[0::2, 0::2] + c[0::2, 1::2] + c[1::2, 0::2] + c[1::2, 1::2]) * 0.25

    return _u8(y), _u8(half(cb)), _u8(half(cr))


def yuv_of(colour: tuple[int, int, int]) -> tuple[int, int, int]:
    """One RGB colour as (Y, U, V) bytes."""
    y, cb, cr = _ycbcr(np.array(colour, np.uint8).reshape(1, 1, 3))
    return int(_u8(y)[0, 0]), int(_u8(cb)[0, 0]), int(_u8(cr)[0, 0])


def i420_planes(buf: np.ndarray, width: int, height: int) -> tuple[np.ndarray, ...]:
    """Writable Y, U, V views into one contiguous I420 frame buffer."""
    ys, cs = width * height, (width // 2) * (height // 2)
    return (
        buf[:ys].reshape(height, width),
        buf[ys : ys + cs].reshape(height // 2, width // 2),
        buf[ys + cs : ys + 2 * cs].reshape(height // 2, width // 2),
    )


def raw_input_args(width: int, height: int, fps: int) -> list[str]:
    """ffmpeg options reading raw I420 frames; the input path follows."""
    return [
        "-f",
        "rawvideo",
        "-pix_fmt",
        "yuv420p",
        "-s",
        f"{width}x{height}",
        "-r",
        str(fps),
        "-i",
    ]


def x264_args(
    preset: str = "veryfast", crf: int = 23, maxrate_kbps: int = 4000, threads: int | None = None
) -> list[str]:
    """The video encoder's options: H.264 at `crf`, its peaks capped at `maxrate_kbps` (VBV),
    yuv420p tagged BT.709. Shared with bench/pipeline.py's x264 floor, which encodes the same
    frames with exactly these options."""
    return [
        "-c:v", "libx264", "-preset", preset, "-crf", str(crf),
        "-maxrate", f"{maxrate_kbps}k", "-bufsize", f"{2 * maxrate_kbps}k",
        "-pix_fmt", "yuv420p", *_COLOUR_TAGS,
        "-threads", str(threads or min(os.cpu_count() or 1, 4)),
    ]  # fmt: skip


def _widen_pipe(pipe: IO[bytes] | None) -> None:
    """A pipe of 1 MiB (Linux allows that much unprivileged) instead of 64 KiB: a frame of
    1.4 MB then passes in two writes instead of twenty-two, each a switch between processes."""
    size = getattr(fcntl, "F_SETPIPE_SZ", None) if fcntl is not None else None
    if pipe is None or size is None:
        return
    with contextlib.suppress(OSError):  # over the system's limit: keep the default
        fcntl.fcntl(pipe.fileno(), size, 1 << 20)


class I420Writer:
    """`write()` I420 frames; on a clean exit the MP4 at `out` holds them and the audio.

    The video is as long as the frames written; audio past the last frame is dropped.
    ffmpeg's own error (its last lines) becomes a `StageFailed` naming the output file.
    """

    def __init__(
        self,
        out: Path,
        *,
        width: int,
        height: int,
        fps: int,
        audio: Path,
        preset: str = "veryfast",
        crf: int = 23,
        maxrate_kbps: int = 4000,
        audio_bitrate: str = "128k",
        threads: int | None = None,
    ) -> None:
        self.out, self.frame_bytes, self.frames = out, width * height * 3 // 2, 0
        ffmpeg = ffmpeg_exe()
        self.cmd = [
            ffmpeg, "-nostdin", "-v", "error", "-y",
            *raw_input_args(width, height, fps), "pipe:0", "-i", str(audio),
            "-map", "0:v:0", "-map", "1:a:0", "-shortest",
            *x264_args(preset, crf, maxrate_kbps, threads),
            # The fast AAC coder: half the CPU of the default (twoloop) for speech at 128k.
            "-c:a", "aac", "-aac_coder", "fast", "-b:a", audio_bitrate,
            "-movflags", "+faststart", "-f", "mp4", str(out),
        ]  # fmt: skip
        # stderr to a file, not a pipe: a pipe nobody reads can fill and stall ffmpeg.
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)
        self._proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stderr=self._log)
        _widen_pipe(self._proc.stdin)

    def write(self, frame: np.ndarray) -> None:
        if frame.nbytes != self.frame_bytes:
            raise ValueError(f"frame of {frame.nbytes} bytes, expected {self.frame_bytes}")
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(memoryview(np.ascontiguousarray(frame)).cast("B"))
        except BrokenPipeError:
            self._fail()
        self.frames += 1

    def _error(self) -> str:
        self._log.seek(0)
        lines = self._log.read().decode("utf-8", "replace").strip().splitlines()
        return "; ".join(lines[-3:]) or f"exit code {self._proc.returncode}"

    def _fail(self) -> None:
        self._proc.wait()
        raise StageFailed(f"{self.out.name}: ffmpeg failed: {self._error()}")

    def close(self) -> None:
        """Finish the file; raise if ffmpeg failed."""
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.close()
        except BrokenPipeError:
            pass
        if self._proc.wait() != 0:
            self._fail()
        if self.frames == 0:
            raise StageFailed(f"{self.out.name}: no frames to encode")

    def abort(self) -> None:
        """Stop ffmpeg without finishing; the caller removes the partial file."""
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()

    def __enter__(self) -> I420Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self.close()
            else:
                self.abort()
        finally:
            self._log.close()
