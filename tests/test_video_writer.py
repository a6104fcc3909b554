"""The I420 writer: frames composed in YUV go to a real ffmpeg/x264 and decode to their colours."""

from __future__ import annotations

import json
import subprocess
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from narratives.core.errors import StageFailed
from narratives.media.video_writer import I420Writer, i420_planes, rgb_to_i420, yuv_of

W, H, FPS = 64, 48, 10
#: Four flat blocks on even bounds, in colours far apart in hue.
BLOCKS = {
    (0, 24, 0, 32): (255, 163, 0),
    (0, 24, 32, 64): (20, 40, 200),
    (24, 48, 0, 32): (255, 241, 232),
    (24, 48, 32, 64): (30, 120, 60),
}


def _picture() -> np.ndarray:
    rgb = np.zeros((H, W, 3), np.uint8)
    for (top, bottom, left, right), colour in BLOCKS.items():
        rgb[top:bottom, left:right] = colour
    return rgb


def _i420(rgb: np.ndarray) -> np.ndarray:
    return np.concatenate([p.ravel() for p in rgb_to_i420(rgb)])


def _wav(path: Path, seconds: float) -> Path:
    t = np.arange(int(44100 * seconds)) / 44100
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes((np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2").tobytes())
    return path


def test_frames_and_audio_become_tagged_h264_that_decodes_to_the_drawn_colours(tmp_path):
    out = tmp_path / "v.mp4"
    frame = _i420(_picture())
    with I420Writer(out, width=W, height=H, fps=FPS, audio=_wav(tmp_path / "a.wav", 3.0)) as w:
        for _ in range(15):
            w.write(frame)
    info = json.loads(
        subprocess.run(
            ["ffprobe", "-v", "error", "-show_streams", "-of", "json", str(out)],
            check=True, capture_output=True, text=True,
        ).stdout
    )  # fmt: skip
    video, audio = info["streams"]
    assert (video["codec_name"], video["pix_fmt"]) == ("h264", "yuv420p")
    assert audio["codec_name"] == "aac"
    assert (video["color_space"], video["color_range"]) == ("bt709", "tv")
    # The audio (3 s) is cut to the frames written (1.5 s).
    assert abs(float(audio["duration"]) - 1.5) < 0.05
    with av.open(str(out)) as c:
        frames = [f.to_ndarray(format="rgb24").astype(int) for f in c.decode(video=0)]
    assert len(frames) == 15
    for (top, bottom, left, right), colour in BLOCKS.items():
        # Block centres, away from the edges where x264 smooths chroma across blocks.
        centre = frames[-1][top + 4 : bottom - 4, left + 4 : right - 4]
        # Mean over the block: compression noise averages out, a wrong matrix would not
        # (decoding these as BT.601 moves the saturated ones by 7 to 13 levels).
        assert np.abs(centre.mean(axis=(0, 1)) - np.array(colour)).max() <= 2, colour
        assert np.abs(centre - np.array(colour)).max() <= 8, colour


def test_yuv_of_a_colour_is_its_flat_picture_converted():
    for colour in BLOCKS.values():
        flat = np.zeros((2, 2, 3), np.uint8) + np.array(colour, np.uint8)
        assert yuv_of(colour) == tuple(int(p[0, 0]) for p in rgb_to_i420(flat))
    assert yuv_of((0, 0, 0)) == (16, 128, 128) and yuv_of((255, 255, 255)) == (235, 128, 128)


def test_planes_are_views_into_one_buffer():
    buf = _i420(_picture())
    y, u, v = i420_planes(buf, W, H)
    assert (y.shape, u.shape, v.shape) == ((H, W), (H // 2, W // 2), (H // 2, W // 2))
    u[0, 0] = 7
    assert buf[W * H] == 7


def test_odd_sizes_and_wrong_frames_are_refused(tmp_path):
    with pytest.raises(ValueError, match="even"):
        rgb_to_i420(np.zeros((5, 4, 3), np.uint8))
    out = tmp_path / "v.mp4"
    with pytest.raises(ValueError, match="bytes"):
        with I420Writer(out, width=W, height=H, fps=FPS, audio=_wav(tmp_path / "a.wav", 1)) as w:
            w.write(np.zeros(10, np.uint8))


def test_unreadable_audio_is_a_stage_error_naming_the_output(tmp_path):
    bad = tmp_path / "a.wav"
    bad.write_text("not audio")
    with pytest.raises(StageFailed, match=r"v\.mp4: ffmpeg failed: .*a\.wav"):
        with I420Writer(tmp_path / "v.mp4", width=W, height=H, fps=FPS, audio=bad) as w:
            for _ in range(200):
                w.write(_i420(_picture()))


def test_an_encoder_killed_mid_stream_is_a_stage_error(tmp_path):
    out = tmp_path / "v.mp4"
    with pytest.raises(StageFailed, match=r"v\.mp4: ffmpeg failed"):
        with I420Writer(out, width=W, height=H, fps=FPS, audio=_wav(tmp_path / "a.wav", 2)) as w:
            w.write(_i420(_picture()))
            w._proc.kill()  # the fault: the real encoder dies (as under the OOM killer)
            for _ in range(2000):
                w.write(_i420(_picture()))
