"""Decoding every accepted container, and a clean BadRecording (naming the file) for bad ones."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from narratives.core.errors import BadRecording
from narratives.media import audio
from tests._speech import ffmpeg, run, silence, speak

# Video tracks are tiny black frames: the tests are about the audio inside.
_VIDEO = ["-f", "lavfi", "-i", "color=c=black:s=64x64:r=10:d=4.5"]


@pytest.fixture(scope="session")
def source(tmp_path_factory) -> Path:
    return speak(tmp_path_factory.mktemp("src") / "speech.wav")


@pytest.fixture(scope="session")
def formats(tmp_path_factory, source) -> dict[str, Path]:
    """The same speech in every format the issue lists."""
    d = tmp_path_factory.mktemp("formats")
    out = {
        "wav-8k-mono": ["-ar", "8000", "-ac", "1"],
        "wav-16k-mono": ["-ar", "16000", "-ac", "1"],
        "wav-44k-stereo": ["-ar", "44100", "-ac", "2"],
        "wav-48k-stereo": ["-ar", "48000", "-ac", "2", "-c:a", "pcm_f32le"],
        "mp3": ["-c:a", "libmp3lame", "-b:a", "64k"],
        "m4a": ["-c:a", "aac", "-b:a", "64k"],
        "aac": ["-c:a", "aac", "-b:a", "64k", "-f", "adts"],
        "ogg": ["-c:a", "libvorbis", "-ac", "2"],
        "opus": ["-c:a", "libopus", "-b:a", "32k"],
        "flac": ["-c:a", "flac"],
    }
    paths = {}
    for name, args in out.items():
        ext = name.split("-")[0]
        paths[name] = d / f"{name}.{ext}"
        ffmpeg("-i", str(source), *args, str(paths[name]))
    videos = {
        "mp4": ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
        "mov": ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"],
        "webm": ["-c:v", "libvpx", "-deadline", "realtime", "-c:a", "libopus"],
    }
    for ext, args in videos.items():
        paths[ext] = d / f"clip.{ext}"
        ffmpeg(*_VIDEO, "-i", str(source), "-map", "0:v", "-map", "1:a", *args, str(paths[ext]))
    return paths


@pytest.fixture(scope="session")
def reference(source) -> np.ndarray:
    return audio.decode(source)


@pytest.mark.parametrize(
    "name",
    [
        "wav-8k-mono",
        "wav-16k-mono",
        "wav-44k-stereo",
        "wav-48k-stereo",
        "mp3",
        "m4a",
        "aac",
        "ogg",
        "opus",
        "flac",
        "mp4",
        "mov",
        "webm",
    ],
)
def test_each_format_decodes_to_16k_mono_float32(formats, reference, name):
    path = formats[name]
    info = audio.probe(path)
    assert info.sample_rate >= 8000 and info.channels in (1, 2) and info.codec
    samples = audio.decode(path)
    assert samples.dtype == np.float32 and samples.ndim == 1
    seconds = samples.size / audio.SAMPLE_RATE
    # Codecs add priming/padding; the speech itself must all be there.
    assert abs(seconds - reference.size / audio.SAMPLE_RATE) < 0.15
    assert 0.01 < float(np.sqrt(np.mean(samples**2))) < 1.0
    assert np.abs(samples).max() <= 1.5
    if info.duration and name != "aac":  # ADTS durations are estimated from the bitrate
        assert abs(info.duration - seconds) < 0.2


def test_probe_reports_container_facts(formats):
    info = audio.probe(formats["wav-48k-stereo"])
    assert (info.sample_rate, info.channels, info.container) == (48000, 2, "wav")
    assert info.codec == "pcm_f32le" and info.duration > 3
    assert audio.probe(formats["mp4"]).container.startswith("mov,mp4")


def test_stereo_is_mixed_not_one_channel(tmp_path):
    # Left channel speech-free, right channel a tone: mono must keep the tone (at half level).
    path = tmp_path / "lr.wav"
    run("sox", "-n", "-r", "16000", "-c", "2", str(path), "synth", "1", "sine", "0", "sine", "440")
    samples = audio.decode(path)
    assert 0.2 < float(np.abs(samples).max()) < 0.6


def test_iter_decode_streams_blocks_that_join_to_decode(source, reference):
    blocks = list(audio.iter_decode(source, block_seconds=1.0))
    assert len(blocks) >= 3
    assert all(b.size == audio.SAMPLE_RATE for b in blocks[:-1])
    np.testing.assert_array_equal(np.concatenate(blocks), reference)


def test_decode_resamples_to_other_rates(source, reference):
    samples = audio.decode(source, sample_rate=8000)
    assert abs(samples.size * 2 - reference.size) <= 16


# --- bad inputs -------------------------------------------------------------------------


@pytest.fixture
def bad_dir(tmp_path, source, formats) -> Path:
    d = tmp_path / "bad"
    d.mkdir()
    (d / "empty.wav").write_bytes(b"")
    (d / "notes.wav").write_text("Dear diary, this is not audio at all.\n" * 20)
    data = source.read_bytes()
    (d / "cut-header.wav").write_bytes(data[:30])
    (d / "cut-short.wav").write_bytes(data[: len(data) // 5])
    (d / "cut.mp3").write_bytes(formats["mp3"].read_bytes()[:200])
    (d / "cut.m4a").write_bytes(formats["m4a"].read_bytes()[:4000])
    ffmpeg(*_VIDEO, "-c:v", "libx264", "-preset", "ultrafast", str(d / "video-only.mp4"))
    silence(d / "blip.wav", 0.2)
    (d / "folder.wav").mkdir()
    return d


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("empty.wav", "empty file"),
        ("notes.wav", "not a recording"),
        ("cut-header.wav", "not a recording"),
        ("cut-short.wav", "truncated"),
        ("cut.mp3", "not a recording"),
        ("cut.m4a", "not a recording"),
        ("video-only.mp4", "no audio stream"),
        ("folder.wav", "is a directory"),
        ("missing.wav", "no such file"),
    ],
)
def test_bad_input_is_a_bad_recording_naming_the_file(bad_dir, name, reason):
    path = bad_dir / name
    for call in (audio.probe, audio.decode, lambda p: list(audio.iter_decode(p))):
        with pytest.raises(BadRecording) as exc:
            call(path)
        message = str(exc.value)
        assert message.startswith(f"{name}: ")
        assert reason in message
        assert "Traceback" not in message


def test_too_short_for_speech(bad_dir):
    with pytest.raises(BadRecording, match=r"^blip\.wav: too short to hold speech") as exc:
        audio.decode(bad_dir / "blip.wav", min_duration=0.5)
    assert "transcribe.min_duration" in exc.value.hint
    # The same clip is fine when the setting allows it.
    assert audio.decode(bad_dir / "blip.wav", min_duration=0.1).size == 3200


def test_permission_denied(tmp_path, source, monkeypatch):
    path = tmp_path / "locked.wav"
    shutil.copyfile(source, path)
    path.chmod(0)
    if os.geteuid() == 0:
        # root reads mode-000 files anyway; make the open fail as it would for anyone else.
        real_open = open

        def deny(file, *args, **kwargs):
            if Path(file) == path:
                raise PermissionError(13, "Permission denied", str(file))
            return real_open(file, *args, **kwargs)

        monkeypatch.setattr("builtins.open", deny)
    with pytest.raises(BadRecording, match=r"^locked\.wav: permission denied"):
        audio.decode(path)


def test_broken_symlink_is_unreadable_path(tmp_path):
    link = tmp_path / "gone.wav"
    link.symlink_to(tmp_path / "nowhere.wav")
    with pytest.raises(BadRecording, match=r"^gone\.wav: no such file"):
        audio.probe(link)


def test_corrupt_middle_is_reported_not_raised_raw(tmp_path, formats):
    # Garbage over most of an mp3: whatever PyAV makes of it, the caller sees BadRecording
    # or a (shorter) decode, never a PyAV exception.
    data = bytearray(formats["mp3"].read_bytes())
    data[2000:] = os.urandom(len(data) - 2000)
    path = tmp_path / "garbled.mp3"
    path.write_bytes(bytes(data))
    try:
        samples = audio.decode(path)
    except BadRecording as exc:
        assert str(exc).startswith("garbled.mp3: ")
    else:
        assert samples.dtype == np.float32
