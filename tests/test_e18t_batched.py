"""Batched transcription (issue 18, item 3): the guard that proves no words were lost, the
fallback to the plain path, and the setting.

The fast tests feed the guard windows built by hand; the slow ones run the real tiny.en
model (loaded once: `get_engine` caches it per process) on the sample recordings, batched
and plain, and against their scripts.
"""

from __future__ import annotations

import dataclasses
import logging
import re

import numpy as np
import pytest

from narratives.core.config import TranscribeSettings, load_settings
from narratives.core.errors import ConfigError, UsageError
from narratives.engines import whisper
from narratives.engines.whisper import Window, guard_windows
from narratives.records.transcript import Segment, Transcript, Word
from tests.conftest import SAMPLES

SR = 16000

#: Batched WER may exceed the plain path's by at most this (overall and per recording).
WER_MARGIN = 0.02


def _region(a: float, b: float) -> dict:
    return {"start": int(a * SR), "end": int(b * SR)}


_VOCABULARY = (
    SAMPLES.joinpath("dev-missed-bus.txt").read_text(encoding="utf-8").split()
    + SAMPLES.joinpath("lena-grandmother.txt").read_text(encoding="utf-8").split()
)


def _speech(a: float, b: float, rate: float = 3.0) -> list[Word]:
    """Words of a script spread evenly over a..b at `rate` words per second."""
    n = max(1, int((b - a) * rate))
    step = (b - a) / n
    first = int(a * 7) % 50
    return [
        Word(round(a + i * step, 3), round(a + (i + 0.8) * step, 3), f" {_VOCABULARY[first + i]}")
        for i in range(n)
    ]


def _window(regions: list[tuple[float, float]], words: list[Word], **seg) -> Window:
    w = Window([_region(a, b) for a, b in regions])
    text = "".join(x.text for x in words)
    if words:
        w.segments = [
            Segment(0, words[0].start, words[-1].end, text, words, **{"avg_logprob": -0.2, **seg})
        ]
    return w


REGIONS = [(0.5, 6.0), (6.5, 12.0), (13.0, 20.0)]


def _full() -> list[Word]:
    return [w for a, b in REGIONS for w in _speech(a, b)]


def test_guard_passes_a_complete_window():
    assert guard_windows([_window(REGIONS, _full())]) == []


def test_guard_catches_a_region_whose_words_are_missing():
    words = [w for w in _full() if not 6.5 <= w.start < 12.0]
    [(window, reason)] = guard_windows([_window(REGIONS, words)])
    assert "no words in the speech at 6.5-12.0 s" in reason


def test_guard_catches_words_missing_inside_a_region():
    """The end of a window cut off (a decode that stopped early): a gap inside speech."""
    words = [w for w in _full() if w.start < 15.0]
    [(_, reason)] = guard_windows([_window(REGIONS, words)])
    assert re.fullmatch(r"no words (at the end of|in) the speech at 1[45]\.\d-20\.0 s", reason), (
        reason
    )


def test_guard_ignores_pauses_between_regions_and_short_regions():
    regions = [(0.0, 5.0), (9.0, 14.0), (14.5, 15.2)]  # 4 s pause; a 0.7 s "um" with no words
    words = _speech(0.0, 5.0) + _speech(9.0, 14.0)
    assert guard_windows([_window(regions, words)]) == []


def test_guard_catches_too_few_words_without_word_times():
    words = _speech(0.5, 3.0)  # 7 words for 18 s of speech
    w = _window(REGIONS, words)
    for seg in w.segments:
        seg.words = []
    [(_, reason)] = guard_windows([w], word_timestamps=False)
    assert re.match(r"\d+ words in 18\.0 s of speech", reason)


def test_guard_catches_a_repetition_loop():
    words = [Word(0.5 + i * 0.3, 0.7 + i * 0.3, " the dream", 0.5) for i in range(60)]
    [(_, reason)] = guard_windows([_window(REGIONS, words)])
    assert "repetition" in reason or "repeated text" in reason


def test_guard_counts_only_what_survives_the_hallucination_filter():
    """A whole window's segment that the filter drops (high no-speech, low log-prob) is a loss."""
    w = _window(REGIONS, _full(), no_speech_prob=0.9)
    w.segments[0].avg_logprob = -1.5
    [(_, reason)] = guard_windows([w])
    assert "words in" in reason or "no words" in reason


def test_windows_match_faster_whispers_own_chunking():
    """The guard's windows are the pipeline's: the same audio in each, the same `seek` for
    their segments. (faster-whisper's own chunk metadata leaves out the first region of each
    later chunk, though its audio is in the chunk: the audio is what counts.)"""
    from faster_whisper.vad import collect_chunks

    rng = np.random.default_rng(18)
    audio = np.arange(400 * SR, dtype=np.float32)
    for _ in range(20):
        regions, t = [], 0
        while t < 390 * SR:
            start = t + int(rng.integers(0, 3 * SR))
            end = min(start + int(rng.integers(SR // 10, 29 * SR)), 400 * SR)
            regions.append({"start": start, "end": end})
            t = end + 1
        chunks, meta = collect_chunks(audio, regions, max_duration=30)
        windows = whisper._windows(regions, 30)
        assert len(windows) == len(chunks) > 5
        for w, chunk, m in zip(windows, chunks, meta, strict=True):
            mine = np.concatenate([audio[r["start"] : r["end"]] for r in w.regions])
            assert np.array_equal(mine, chunk)
            assert w.seek == int(m["offset"] * 100)
        assert [r for w in windows for r in w.regions] == regions


def test_long_segments_are_split_into_sentences():
    words = [
        Word(0.0, 0.4, " I", 0.9),
        Word(0.4, 0.9, " slept.", 0.9),
        Word(1.2, 1.6, " Did", 0.9),
        Word(1.6, 2.0, " you?", 0.9),
        Word(2.3, 2.8, " Maybe", 0.9),
    ]
    seg = Segment(0, 0.0, 2.8, " I slept. Did you? Maybe", words, -0.2, 0.01)
    parts = whisper._sentences(seg)
    assert [p.text for p in parts] == [" I slept.", " Did you?", " Maybe"]
    assert [(p.start, p.end) for p in parts] == [(0.0, 0.9), (1.2, 2.0), (2.3, 2.8)]
    assert sum(len(p.words) for p in parts) == len(words)


@pytest.mark.parametrize("bad", [-1, 65, "eight"])
def test_a_bad_batch_size_is_a_clear_error(workspace, bad):
    path = workspace.settings_path
    text = path.read_text(encoding="utf-8")
    value = f'"{bad}"' if isinstance(bad, str) else str(bad)
    text = re.sub(r"(?m)^batch_size = .*\n", "", text)  # the shipped value, if any
    path.write_text(text.replace("[transcribe]\n", f"[transcribe]\nbatch_size = {value}\n"))
    with pytest.raises(ConfigError) as err:
        load_settings(workspace)
    message = str(err.value)
    assert str(path) in message and "transcribe.batch_size" in message


def test_the_default_batch_size_validates():
    assert TranscribeSettings().batch_size >= 0
    assert TranscribeSettings(batch_size=0).batch_size == 0


# --- the real model --------------------------------------------------------------------


def _normalise(text: str) -> str:
    text = text.lower().replace("-", " ")
    text = re.sub(r"[^\w\s']", " ", text)
    return " ".join(text.split())


def _wer(script, text: str) -> float:
    import jiwer

    return jiwer.wer(_normalise(script.read_text(encoding="utf-8")), _normalise(text))


@pytest.fixture(scope="module")
def fw():
    return whisper.get_engine(TranscribeSettings(engine="faster-whisper", model="tiny.en"))


@pytest.fixture(scope="module")
def decoded() -> dict:
    from narratives.media.audio import decode

    recordings = sorted(p for p in SAMPLES.iterdir() if p.suffix != ".txt")
    assert len(recordings) >= 5
    return {p.stem: decode(p) for p in recordings}


def _run(engine, samples, batch_size):
    info, segments = engine.transcribe(samples, beam_size=5, batch_size=batch_size)
    return info, list(segments)


def _text(segments) -> str:
    return " ".join(s.text.strip() for s in segments)


def _regions(samples) -> list[dict]:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    options = VadOptions(
        max_speech_duration_s=whisper.BATCH_CHUNK_SECONDS, min_silence_duration_ms=160
    )
    return get_speech_timestamps(samples, options)


def _as_windows(samples, segments) -> list[Window]:
    """The batched windows of this audio, each holding the transcript's segments inside it."""
    windows = whisper._windows(_regions(samples), whisper.BATCH_CHUNK_SECONDS)
    for w in windows:
        w.segments = [s for s in segments if w.start - 0.5 <= s.start < w.end + 0.5]
    return windows


@pytest.fixture(scope="module")
def both(fw, decoded) -> dict:
    """{stem: (plain segments, batched info, batched segments)} for every sample."""
    out = {}
    for stem, samples in decoded.items():
        _, plain = _run(fw, samples, 0)
        info, batched = _run(fw, samples, 8)
        out[stem] = (plain, info, batched)
    return out


@pytest.mark.slow
def test_batched_wer_stays_within_a_bound_of_the_plain_paths(both):
    import jiwer

    refs, plain_all, batched_all = [], [], []
    for stem, (plain, info, batched) in both.items():
        assert info.decoding == "batched" and info.windows >= 1
        script = SAMPLES / f"{stem}.txt"
        wp, wb = _wer(script, _text(plain)), _wer(script, _text(batched))
        assert wb <= wp + WER_MARGIN, f"{stem}: batched WER {wb:.3f}, plain {wp:.3f}"
        refs.append(_normalise(script.read_text(encoding="utf-8")))
        plain_all.append(_normalise(_text(plain)))
        batched_all.append(_normalise(_text(batched)))
    wp, wb = jiwer.wer(refs, plain_all), jiwer.wer(refs, batched_all)
    assert wb <= wp + WER_MARGIN, (wb, wp)


@pytest.mark.slow
def test_real_batched_runs_pass_the_guard_or_fell_back(both, decoded):
    """Whatever path made it, the final transcript of every sample has words in every speech
    region: batched output that passed, or windows redone on the plain path."""
    for stem, (_plain, info, batched) in both.items():
        assert guard_windows(_as_windows(decoded[stem], batched)) == [], (stem, info.fallbacks)
        assert len(info.fallbacks) <= info.windows
        times = [(w.start, w.end) for s in batched for w in s.words]
        assert times == sorted(times), f"{stem}: words out of order"


@pytest.mark.slow
def test_the_guard_catches_a_real_transcript_with_a_region_removed(both, decoded):
    stem = sorted(both)[0]
    samples = decoded[stem]
    _plain, _info, batched = both[stem]
    long = [r for r in _regions(samples) if r["end"] - r["start"] >= 1.5 * SR]
    region = long[len(long) // 2]
    a, b = region["start"] / SR, region["end"] / SR
    lossy = []
    for s in batched:
        kept = [w for w in s.words if not (w.end > a and w.start < b)]
        text = "".join(w.text for w in kept)
        lossy.append(Segment(s.id, s.start, s.end, text, kept, s.avg_logprob, s.no_speech_prob))
    failures = guard_windows(_as_windows(samples, lossy))
    assert failures, "the guard missed a removed region"
    assert any(f"{a:.1f}" in reason or "words in" in reason for _, reason in failures)


@pytest.mark.slow
def test_a_lossy_batched_decode_falls_back_and_keeps_every_word(fw, decoded, monkeypatch, caplog):
    """The pipeline made to lose the middle of its output (as on the issue's audio): the guard
    finds it, the window is decoded again on the plain path, it says so at info level, and the
    transcript is as good as the plain path's."""
    from faster_whisper import BatchedInferencePipeline

    stem = "amara-sanctuary-line"
    samples = decoded[stem]
    real = BatchedInferencePipeline.transcribe

    def lossy(self, *args, **kwargs):
        segments, info = real(self, *args, **kwargs)
        out = []
        for s in segments:
            middle = len(s.words) // 2
            cut = s.words[: middle - 12] + s.words[middle + 12 :]
            out.append(dataclasses.replace(s, words=cut, text="".join(w.word for w in cut)))
        return iter(out), info

    monkeypatch.setattr(BatchedInferencePipeline, "transcribe", lossy)
    _, plain = _run(fw, samples, 0)
    with caplog.at_level(logging.INFO, logger="narratives.engines.whisper"):
        info, segments = _run(fw, samples, 8)
    assert info.decoding == "batched" and len(info.fallbacks) == info.windows == 1
    assert "no words in the speech" in info.fallbacks[0]
    assert any("transcribed again on the plain path" in r.getMessage() for r in caplog.records)
    script = SAMPLES / f"{stem}.txt"
    assert _wer(script, _text(segments)) <= _wer(script, _text(plain)) + WER_MARGIN
    assert guard_windows(_as_windows(samples, segments)) == []


@pytest.mark.slow
def test_the_guard_catches_the_real_losses_of_timestamped_batched_decoding(
    fw, decoded, monkeypatch, caplog
):
    """A real lossy configuration, not a made-up one: the pipeline asked for timestamps
    (`without_timestamps=False`) drops the last seconds of its windows (measured: WER 0.134
    against 0.026 on the joined samples). The guard finds those windows and the plain path
    brings the words back."""
    from faster_whisper import BatchedInferencePipeline

    stems = sorted(decoded)[:3]
    samples = np.concatenate([decoded[s] for s in stems])
    script = " ".join((SAMPLES / f"{s}.txt").read_text(encoding="utf-8") for s in stems)
    real = BatchedInferencePipeline.transcribe

    def timestamped(self, *args, **kwargs):
        return real(self, *args, **{**kwargs, "without_timestamps": False})

    monkeypatch.setattr(BatchedInferencePipeline, "transcribe", timestamped)
    monkeypatch.setattr(whisper, "guard_windows", lambda *a, **k: [])
    _, unguarded = _run(fw, samples, 8)  # what the batched path alone returns
    monkeypatch.setattr(whisper, "guard_windows", guard_windows)
    with caplog.at_level(logging.INFO, logger="narratives.engines.whisper"):
        info, guarded = _run(fw, samples, 8)
    _, plain = _run(fw, samples, 0)
    import jiwer

    def wer(segments) -> float:
        return jiwer.wer(_normalise(script), _normalise(_text(segments)))

    assert info.fallbacks, "the guard passed a lossy decode"
    assert sum("on the plain path" in r.getMessage() for r in caplog.records) == len(info.fallbacks)
    assert wer(guarded) <= wer(plain) + WER_MARGIN
    assert wer(unguarded) > wer(guarded), "no loss to catch: the test proves nothing"
    assert len(_text(guarded).split()) > len(_text(unguarded).split())


@pytest.mark.slow
def test_every_window_falling_back_still_yields_every_regions_words(fw, decoded, monkeypatch):
    """With the guard made to reject everything, the whole recording comes from the plain path
    window by window, in recording time, words in order and inside the speech."""
    monkeypatch.setattr(whisper, "GUARD_MIN_RATE", 100.0)
    samples = np.concatenate([decoded["dev-missed-bus"], decoded["priya-neurosync"]])
    info, segments = _run(fw, samples, 4)
    assert info.fallbacks and len(info.fallbacks) == info.windows
    monkeypatch.undo()
    assert guard_windows(_as_windows(samples, segments)) == []
    words = [w for s in segments for w in s.words]
    assert [(w.start, w.end) for w in words] == sorted((w.start, w.end) for w in words)
    assert words[-1].end <= samples.size / SR + 0.05
    script = " ".join(
        (SAMPLES / f"{s}.txt").read_text(encoding="utf-8")
        for s in ("dev-missed-bus", "priya-neurosync")
    )
    import jiwer

    assert jiwer.wer(_normalise(script), _normalise(_text(segments))) <= 0.08


@pytest.mark.slow
def test_transcribe_file_takes_the_batched_path_from_the_settings(fw, caplog):
    settings = TranscribeSettings(engine="faster-whisper", model="tiny.en", batch_size=8)
    path = SAMPLES / "yusuf-assembly.ogg"
    with caplog.at_level(logging.DEBUG, logger="narratives.engines.whisper"):
        t = whisper.transcribe_file(path, settings, "ab" * 32)
    assert _wer(SAMPLES / "yusuf-assembly.txt", t.text) <= 0.12
    assert any("decoded batched" in r.getMessage() for r in caplog.records)
    # The transcript file says how it was decoded (and any window decoded again plainly).
    saved = Transcript.from_dict(t.to_dict())
    assert saved.decoding == "batched" and saved.fallbacks == []
    plain = whisper.transcribe_file(path, settings.model_copy(update={"batch_size": 0}), "cd" * 32)
    assert plain.decoding == "plain" and plain.to_dict()["decoding"] == "plain"


@pytest.mark.slow
def test_batched_decoding_says_how_far_it_has_got_before_its_segments_arrive(fw, decoded):
    """Batched segments come only when the whole recording is done (the guard needs every
    window); meanwhile `decoded` hears, window by window, how far into the recording it is."""
    import numpy as np

    samples = np.concatenate(list(decoded.values()))  # about 2 minutes: several windows
    heard: list[float] = []
    info, segments = fw.transcribe(samples, beam_size=5, batch_size=1, decoded=heard.append)
    segments = list(segments)
    assert info.decoding == "batched" and info.windows >= 3
    assert len(heard) >= info.windows and heard == sorted(heard)
    assert heard[0] < info.duration / 2 and heard[-1] >= segments[-1].end - 1.0
    # The plain path streams its segments and says nothing of the kind.
    plain: list[float] = []
    list(fw.transcribe(decoded["yusuf-assembly"], batch_size=0, decoded=plain.append)[1])
    assert plain == []


@pytest.mark.slow
def test_a_negative_batch_size_at_the_engine_is_a_usage_error(fw, decoded):
    with pytest.raises(UsageError, match="batch_size"):
        fw.transcribe(decoded["yusuf-assembly"], batch_size=-2)


@pytest.mark.slow
@pytest.mark.parametrize("off", ["vad", "word_timestamps"])
def test_without_the_vad_or_word_times_the_plain_path_is_taken(fw, decoded, off):
    """The guard needs speech regions and word times to see a loss: without them, batched
    decoding is not used at all (review finding: 72% of a window could go unnoticed)."""
    info, segments = fw.transcribe(decoded["yusuf-assembly"], batch_size=8, **{off: False})
    assert info.decoding == "plain" and info.windows == 0
    assert _wer(SAMPLES / "yusuf-assembly.txt", " ".join(s.text for s in segments)) <= 0.15


def test_a_lost_window_ending_is_caught():
    """Words lost at the end of a window (the failure batched decoding shows most) with the
    rest of the window intact: caught, though no gap inside the speech is long."""
    region = {"start": 0, "end": int(10.0 * 16000)}
    vocab = "we slept in the hall until the lights came on and nobody asked who paid".split()

    def window(n: int) -> Window:
        words = [Word(0.2 + 0.4 * i, 0.5 + 0.4 * i, " " + vocab[i % len(vocab)]) for i in range(n)]
        text = "".join(w.text for w in words)
        return Window([region], 0, [Segment(0, words[0].start, words[-1].end, text, words)])

    [(_, reason)] = guard_windows([window(21)])  # the last word ends at 8.5 s of 10
    assert "end of the speech" in reason
    assert guard_windows([window(24)]) == []  # to 9.7 s: the whole window
