"""Which ffmpeg runs (issue 16, item 4): NARRATIVES_FFMPEG, else PATH, else the static build in
the imageio-ffmpeg wheel, so a pip install renders without a system ffmpeg."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from narratives.core.errors import NarrativesError
from narratives.media import effects
from narratives.media.audio import probe
from narratives.media.ffmpeg import ffmpeg_exe

SAMPLE = Path(__file__).resolve().parent.parent / "media" / "samples" / "amara-sanctuary-line.wav"


@pytest.fixture(autouse=True)
def fresh_lookup():
    ffmpeg_exe.cache_clear()
    yield
    ffmpeg_exe.cache_clear()


def test_path_first(monkeypatch):
    monkeypatch.delenv("NARRATIVES_FFMPEG", raising=False)
    assert ffmpeg_exe() == shutil.which("ffmpeg")


def test_without_a_system_ffmpeg_the_wheels_binary_does_the_work(monkeypatch, tmp_path):
    import imageio_ffmpeg

    monkeypatch.delenv("NARRATIVES_FFMPEG", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))  # no ffmpeg anywhere on it
    assert shutil.which("ffmpeg") is None
    assert ffmpeg_exe() == imageio_ffmpeg.get_ffmpeg_exe()
    out = effects.bleep_audio(SAMPLE, tmp_path / "bleeped.flac", [(0.5, 1.0)])
    assert abs(probe(out).duration - probe(SAMPLE).duration) < 0.1


def test_a_named_binary_wins(monkeypatch):
    import imageio_ffmpeg

    monkeypatch.setenv("NARRATIVES_FFMPEG", imageio_ffmpeg.get_ffmpeg_exe())
    assert ffmpeg_exe() == imageio_ffmpeg.get_ffmpeg_exe()


def test_a_named_binary_that_is_not_one_is_a_clear_error(monkeypatch, tmp_path):
    not_a_binary = tmp_path / "ffmpeg.txt"
    not_a_binary.write_text("hello")
    monkeypatch.setenv("NARRATIVES_FFMPEG", str(not_a_binary))
    with pytest.raises(NarrativesError, match="not an executable file") as err:
        ffmpeg_exe()
    assert str(not_a_binary) in str(err.value) and "imageio-ffmpeg" in err.value.hint
