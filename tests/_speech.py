"""Test audio made on the spot: espeak-ng speech, sox silence, ffmpeg for every container."""

from __future__ import annotations

import subprocess
from pathlib import Path

#: A short first-person dream narrative; tiny.en gets most of it right.
SCRIPT = (
    "Last night I dreamed that the Neural Mandate Protocols were read aloud in the "
    "Dreamscape Assembly. Everyone listened, rich or poor, and nobody had to stand "
    "in a separate line."
)


def run(*args: str) -> None:
    subprocess.run(args, check=True, capture_output=True, timeout=120)


def speak(path: Path, text: str = SCRIPT) -> Path:
    run("espeak-ng", "-w", str(path), text)
    return path


def silence(path: Path, seconds: float, rate: int = 16000, noise: float = 0.0) -> Path:
    """Digital silence, or (with `noise`) a faint hiss at that amplitude."""
    if noise:
        run(
            "sox",
            "-n",
            "-r",
            str(rate),
            "-c",
            "1",
            "-b",
            "16",
            str(path),
            "synth",
            str(seconds),
            "whitenoise",
            "vol",
            str(noise),
        )
    else:
        run(
            "sox",
            "-n",
            "-r",
            str(rate),
            "-c",
            "1",
            "-b",
            "16",
            str(path),
            "trim",
            "0.0",
            str(seconds),
        )
    return path


def ffmpeg(*args: str) -> None:
    run("ffmpeg", "-nostdin", "-v", "error", "-y", *args)


def ffmpeg_cue_count(path: Path) -> int:
    """Have FFmpeg's own SRT/WebVTT demuxer read a caption file; returns the cues it found."""
    r = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "srt", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr
    return r.stdout.count(" --> ")
