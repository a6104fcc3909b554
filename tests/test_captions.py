"""SRT and WebVTT: readable cues, valid timestamps, and files FFmpeg itself accepts."""

from __future__ import annotations

import re

import pytest

from narratives.media import captions
from narratives.records.transcript import Segment, Transcript, Word
from tests._speech import ffmpeg_cue_count

LONG = (
    "Last night I dreamed that the Neural Mandate Protocols were read aloud in the Dreamscape "
    "Assembly. Everyone listened, rich or poor, and nobody had to stand in a separate line. "
    "Then the Sleep Sanctuary opened its doors & we walked in <together> at 3600 seconds."
)


def _words(text: str, start: float, per_word: float = 0.3) -> list[Word]:
    return [
        Word(start + i * per_word, start + (i + 1) * per_word - 0.05, " " + w, 0.9)
        for i, w in enumerate(text.split())
    ]


def _transcript(*segments: Segment) -> Transcript:
    return Transcript("ef" * 32, "en", 4000.0, list(segments), "faster-whisper", "tiny.en")


@pytest.fixture
def timed() -> Transcript:
    words = _words(LONG, 3590.0)
    return _transcript(
        Segment(0, 1.0, 2.5, " A short one.", _words("A short one.", 1.0)),
        Segment(1, words[0].start, words[-1].end, " " + LONG, words),
    )


@pytest.fixture
def untimed() -> Transcript:
    return _transcript(Segment(0, 10.0, 40.0, " " + LONG, []))


@pytest.mark.parametrize("kind", ["timed", "untimed"])
def test_cues_are_readable_and_ordered(request, kind):
    t = request.getfixturevalue(kind)
    cues = captions.make_cues(t)
    assert len(cues) >= 5
    for cue in cues:
        assert 1 <= len(cue.lines) <= captions.MAX_LINES
        assert all(0 < len(line) <= captions.MAX_LINE_CHARS for line in cue.lines)
        assert cue.end > cue.start
        assert cue.end - cue.start <= captions.MAX_CUE_SECONDS + 0.5
    for a, b in zip(cues, cues[1:], strict=False):
        assert b.start >= a.end
    # Nothing lost or reordered.
    assert " ".join(" ".join(c.lines) for c in cues).split() == t.text.split()


def test_cues_follow_word_times_and_break_at_sentences(timed):
    cues = captions.make_cues(timed)
    assert cues[0].lines == ["A short one."] and cues[0].start == 1.0
    words = timed.segments[1].words
    assert cues[1].start == words[0].start
    assert cues[-1].end == pytest.approx(words[-1].end)
    assert any(c.lines[-1].endswith("separate line.") for c in cues)


def test_srt_format(timed):
    srt = captions.to_srt(timed)
    assert srt.startswith("1\n00:00:01,000 --> 00:00:01,850\nA short one.\n\n2\n")
    assert "00:59:50,000 --> " in srt  # hours roll over correctly
    spans = re.findall(r"^(\S+) --> (\S+)$", srt, flags=re.M)
    assert spans and all(
        re.fullmatch(r"\d\d:[0-5]\d:[0-5]\d,\d{3}", x) for span in spans for x in span
    )
    cues = captions.parse_srt(srt)
    assert len(cues) == len(captions.make_cues(timed))
    # SRT cannot escape: markup-like text is written as plain look-alikes (players would
    # read <together> as a tag and drop it).
    assert "& we walked in ‹together›" in " ".join(" ".join(c.lines) for c in cues)


def test_srt_text_cannot_pass_for_timing_or_styling():
    spoken = "She said --> go {\\an8} now <b>loud</b>."
    t = _transcript(Segment(0, 1.0, 4.0, " " + spoken, _words(spoken, 1.0)))
    srt = captions.to_srt(t)
    text_lines = [ln for ln in srt.splitlines() if ln and not re.match(r"^\d+$|^\S+ --> \S+$", ln)]
    assert text_lines and not any("-->" in ln or "<" in ln or "{" in ln for ln in text_lines)
    [cue] = captions.parse_srt(srt)
    assert " ".join(cue.lines) == "She said → go (\\an8) now ‹b›loud‹/b›."


def test_webvtt_format(timed):
    vtt = captions.to_webvtt(timed)
    assert vtt.startswith("WEBVTT\n\n00:00:01.000 --> 00:00:01.850\nA short one.\n")
    assert "&amp; we" in vtt and "&lt;together&gt;" in vtt
    cues = captions.parse_webvtt(vtt)
    assert len(cues) == len(captions.make_cues(timed))
    assert cues[0].start == 1.0


def test_timestamps():
    assert captions.format_timestamp(0) == "00:00:00,000"
    assert captions.format_timestamp(1.0) == "00:00:01,000"
    assert captions.format_timestamp(1.0, sep=".") == "00:00:01.000"
    assert captions.format_timestamp(3661.2345) == "01:01:01,234"
    assert captions.format_timestamp(59.9996) == "00:01:00,000"
    assert captions.format_timestamp(-0.2) == "00:00:00,000"


def test_empty_transcript_gives_valid_empty_files(tmp_path):
    t = _transcript()
    assert captions.to_srt(t) == ""
    assert captions.parse_webvtt(captions.to_webvtt(t)) == []


@pytest.mark.parametrize("kind", ["timed", "untimed"])
def test_ffmpeg_reads_the_files(request, tmp_path, kind):
    t = request.getfixturevalue(kind)
    n = len(captions.make_cues(t))
    srt = captions.write_srt(t, tmp_path / "c.srt")
    vtt = captions.write_webvtt(t, tmp_path / "sub" / "c.vtt")
    assert ffmpeg_cue_count(srt) == n
    assert ffmpeg_cue_count(vtt) == n
    assert not list(tmp_path.glob("**/*.tmp"))


def test_parsers_reject_broken_files():
    with pytest.raises(captions.CaptionError, match="WEBVTT"):
        captions.parse_webvtt("00:00:01.000 --> 00:00:02.000\nhello\n")
    with pytest.raises(captions.CaptionError, match="bad or missing time span"):
        captions.parse_webvtt("WEBVTT\n\n00:00:01,000 --> 00:00:02,000\nhello\n")
    with pytest.raises(captions.CaptionError, match="bad time span"):
        captions.parse_srt("1\n00:00:01.000 --> 00:00:02.000\nhello\n")
    with pytest.raises(captions.CaptionError, match="numbered"):
        captions.parse_srt("2\n00:00:01,000 --> 00:00:02,000\nhello\n")
    with pytest.raises(captions.CaptionError, match="ends before"):
        captions.parse_srt("1\n00:00:03,000 --> 00:00:02,000\nhello\n")
    # Cue ids, NOTE blocks and cue settings are valid WebVTT.
    ok = "WEBVTT - x\n\nNOTE hi\n\nid-1\n00:01.000 --> 00:02.000 align:start\nhello\n"
    assert captions.parse_webvtt(ok)[0].lines == ["hello"]
