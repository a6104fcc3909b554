"""Whisper transcription behind one interface, with two engines on the same weights.

`FasterWhisperEngine` (CTranslate2, int8 on CPU) is the default; `OpenAIWhisperEngine` runs the
same shipped weights in PyTorch after `whisper_convert` turns them into a checkpoint. Both
decode through `narratives.media.audio` (so bad files are `BadRecording`), both drop non-speech
with faster-whisper's bundled Silero VAD, and both stream `Segment`s lazily with plain-float
times, so a caller can report progress and never holds the engine's own objects.
Engines are loaded once per process (`get_engine`) and reused across narratives.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from narratives.core.config import TranscribeSettings
from narratives.core.errors import ModelNotAvailable, UsageError
from narratives.engines.whisper_convert import load_openai_model
from narratives.engines.whisper_models import ModelRef, default_cache_dir, resolve_model
from narratives.media.audio import SAMPLE_RATE, decode
from narratives.records.transcript import Segment, Transcript, Word

__all__ = [
    "TranscriptInfo",
    "Engine",
    "FasterWhisperEngine",
    "OpenAIWhisperEngine",
    "get_engine",
    "clear_engines",
    "transcribe_file",
    "check_settings",
    "normalise_language",
    "request_language",
    "is_hallucination",
    "ENGINES",
]

ENGINES = ("faster-whisper", "openai-whisper")

#: A segment is dropped as invented text when Whisper both thinks the window holds no speech
#: and is unsure of its words (Whisper's own thresholds, applied per segment in both engines).
_NO_SPEECH_PROB = 0.6
_LOW_LOGPROB = -1.0
#: openai-whisper returns a whole result at once; feed it speech in groups of this many
#: seconds so segments still arrive as they are made on long recordings.
_OPENAI_GROUP_SECONDS = 300.0

Progress = Callable[[float, float], None]


@dataclass(frozen=True)
class TranscriptInfo:
    language: str
    language_probability: float | None
    #: Seconds of the recording (not of the speech).
    duration: float
    engine: str
    model: str
    engine_version: str


class Engine(Protocol):
    name: str
    model: str
    version: str

    def transcribe(
        self,
        audio: str | os.PathLike[str] | np.ndarray,
        *,
        language: str | None = None,
        beam_size: int = 5,
        vad: bool = True,
        word_timestamps: bool = True,
    ) -> tuple[TranscriptInfo, Iterator[Segment]]:
        """Info at once; segments lazily, in order, times in seconds of the recording."""
        ...


def is_hallucination(segment: Segment) -> bool:
    """True for empty segments and for text Whisper made up over silence or noise."""
    if not segment.text.strip():
        return True
    nsp, logprob = segment.no_speech_prob, segment.avg_logprob
    return (
        nsp is not None and logprob is not None and nsp > _NO_SPEECH_PROB and logprob < _LOW_LOGPROB
    )


def _as_audio(audio: str | os.PathLike[str] | np.ndarray) -> np.ndarray:
    if isinstance(audio, np.ndarray):
        return np.ascontiguousarray(audio, dtype=np.float32).reshape(-1)
    return decode(audio, SAMPLE_RATE)


def _renumber(segments: Iterable[Segment]) -> Iterator[Segment]:
    """Drop hallucinations and number what is left 0, 1, 2, ..."""
    n = 0
    for seg in segments:
        if is_hallucination(seg):
            continue
        seg.id = n
        n += 1
        yield seg


def _words(raw: Iterable[Any], get: Callable[[Any, str], Any]) -> list[Word]:
    return [
        Word(
            start=round(float(get(w, "start")), 3),
            end=round(float(get(w, "end")), 3),
            text=str(get(w, "word")),
            probability=round(float(get(w, "probability")), 4),
        )
        for w in raw or []
    ]


def _language(language: str | None, model_name: str) -> str | None:
    language = (language or "").strip() or None
    if language is None and model_name.endswith(".en"):
        return "en"
    return language


def normalise_language(code: str | None, *, what: str = "transcribe.language") -> str:
    """A Whisper language code in lower case, "" for detect; UsageError for unknown codes."""
    from faster_whisper.tokenizer import _LANGUAGE_CODES  # the codes Whisper knows

    code = (code or "").strip().lower()
    if code and code not in _LANGUAGE_CODES:
        raise UsageError(
            f"{what}: unknown language code {code!r}",
            hint="use a Whisper language code such as en, de, fr or es, or none to detect",
        )
    return code


def request_language(language: str | None, model_name: str) -> str:
    """The language a transcription is asked for, as its stage row records it ("" = detect)."""
    return _language(normalise_language(language), model_name) or ""


def check_settings(
    settings: TranscribeSettings, *, cache_dir: Path | None = None
) -> TranscribeSettings:
    """The settings with the language normalised, once the model is known to be here.

    Call before any work, so a bad model or language fails the command, not every file.
    """
    language = normalise_language(settings.language)
    resolve_model(settings.model, cache_dir=cache_dir)
    if language not in ("", "en") and settings.model.strip().endswith(".en"):
        raise ModelNotAvailable(
            f"{settings.model} is English-only; cannot transcribe language {language!r}",
            hint="use a multilingual model such as `base`",
        )
    return settings.model_copy(update={"language": language})


class FasterWhisperEngine:
    """CTranslate2 Whisper: about 4x faster than PyTorch on CPU at int8."""

    name = "faster-whisper"

    def __init__(self, ref: ModelRef, *, compute_type: str = "int8", threads: int = 1) -> None:
        import faster_whisper

        self.model = ref.label
        self.version = faster_whisper.__version__
        self._ref = ref
        target = str(ref.path) if ref.path else ref.name
        try:
            self._model = faster_whisper.WhisperModel(
                target, device="cpu", compute_type=compute_type, cpu_threads=threads
            )
        except ValueError as exc:  # e.g. a compute type this CPU lacks
            raise ModelNotAvailable(
                f"faster-whisper cannot load {self.model} with compute_type={compute_type}: {exc}",
                hint="use compute_type int8, int8_float32 or float32 on CPU",
            ) from None
        except (OSError, RuntimeError) as exc:
            raise ModelNotAvailable(
                f"faster-whisper cannot load {self.model}: {exc}",
                hint="check the model folder, or use the shipped tiny.en",
            ) from None

    def transcribe(
        self,
        audio: str | os.PathLike[str] | np.ndarray,
        *,
        language: str | None = None,
        beam_size: int = 5,
        vad: bool = True,
        word_timestamps: bool = True,
    ) -> tuple[TranscriptInfo, Iterator[Segment]]:
        samples = _as_audio(audio)
        language = _language(language, self._ref.name)
        if language and not self._model.model.is_multilingual and language != "en":
            raise ModelNotAvailable(
                f"{self.model} is English-only; cannot transcribe language {language!r}",
                hint="use a multilingual model such as `base`",
            )
        raw, info = self._model.transcribe(
            samples,
            language=language,
            beam_size=beam_size,
            word_timestamps=word_timestamps,
            vad_filter=vad,
        )
        tinfo = TranscriptInfo(
            language=info.language,
            language_probability=round(float(info.language_probability), 4),
            duration=round(samples.size / SAMPLE_RATE, 3),
            engine=self.name,
            model=self.model,
            engine_version=self.version,
        )
        del samples  # faster-whisper keeps what it needs; do not pin a second copy here

        def segments() -> Iterator[Segment]:
            for s in raw:
                yield Segment(
                    id=int(s.id),
                    start=round(float(s.start), 3),
                    end=round(float(s.end), 3),
                    text=s.text,
                    words=_words(s.words, getattr),
                    avg_logprob=round(float(s.avg_logprob), 4),
                    no_speech_prob=round(float(s.no_speech_prob), 4),
                )

        return tinfo, _renumber(segments())


class OpenAIWhisperEngine:
    """The reference PyTorch implementation on the same weights (converted once)."""

    name = "openai-whisper"

    def __init__(self, ref: ModelRef, *, threads: int = 1, cache_dir: Path | None = None) -> None:
        import torch
        import whisper

        self.model = ref.label
        self.version = whisper.__version__
        self._ref = ref
        self._threads = threads
        torch.set_num_threads(threads)
        if ref.path is not None:
            self._model = load_openai_model(
                ref.path, ref.sha256 or "", cache_dir or default_cache_dir()
            )
        else:
            try:
                self._model = whisper.load_model(ref.name, device="cpu")
            except Exception as exc:  # download failures come in many kinds
                raise ModelNotAvailable(
                    f"openai-whisper cannot load {ref.name!r}: {exc}",
                    hint="use the shipped tiny.en, or run once with internet to download it",
                ) from None
        self._lock = threading.Lock()  # one forward pass at a time: the model is shared

    def transcribe(
        self,
        audio: str | os.PathLike[str] | np.ndarray,
        *,
        language: str | None = None,
        beam_size: int = 5,
        vad: bool = True,
        word_timestamps: bool = True,
    ) -> tuple[TranscriptInfo, Iterator[Segment]]:
        samples = _as_audio(audio)
        duration = round(samples.size / SAMPLE_RATE, 3)
        language = _language(language, self._ref.name)
        multilingual = self._model.is_multilingual
        if language and not multilingual and language != "en":
            raise ModelNotAvailable(
                f"{self.model} is English-only; cannot transcribe language {language!r}",
                hint="use a multilingual model such as `base`",
            )
        chunks = _speech_chunks(samples) if vad else [{"start": 0, "end": samples.size}]
        probability: float | None = 1.0
        if language is None and not multilingual:
            language = "en"
        elif language is None:
            language, probability = self._detect_language(samples, chunks)
        info = TranscriptInfo(
            language=language,
            language_probability=probability,
            duration=duration,
            engine=self.name,
            model=self.model,
            engine_version=self.version,
        )
        options = {
            "language": language,
            "beam_size": beam_size,
            "best_of": 5,
            "fp16": False,
            "word_timestamps": word_timestamps,
            "verbose": None,
        }
        return info, _renumber(self._segments(samples, chunks, options))

    def _detect_language(self, samples: np.ndarray, chunks: list[dict]) -> tuple[str, float]:
        import whisper
        from faster_whisper.vad import collect_chunks

        speech = np.concatenate(collect_chunks(samples, chunks)[0]) if chunks else samples
        mel = whisper.log_mel_spectrogram(whisper.pad_or_trim(speech), self._model.dims.n_mels)
        with self._lock:
            _, probs = self._model.detect_language(mel)
        language = max(probs, key=probs.get)
        return language, round(float(probs[language]), 4)

    def _segments(
        self, samples: np.ndarray, chunks: list[dict], options: dict
    ) -> Iterator[Segment]:
        import torch
        import whisper
        from faster_whisper.vad import SpeechTimestampsMap, collect_chunks

        if not chunks:
            return
        # Like faster-whisper, transcribe the speech joined end to end and map times back, so
        # both engines see the same audio; groups keep each call (and its result) bounded.
        groups = _group_chunks(chunks, int(_OPENAI_GROUP_SECONDS * SAMPLE_RATE))
        for group in groups:
            speech = np.concatenate(collect_chunks(samples, group)[0])
            with self._lock:
                torch.set_num_threads(self._threads)
                result = whisper.transcribe(self._model, speech, **options)
            del speech
            ts_map = SpeechTimestampsMap(group, SAMPLE_RATE)
            for s in result["segments"]:
                yield _restore(s, ts_map)


def _speech_chunks(samples: np.ndarray) -> list[dict]:
    from faster_whisper.vad import VadOptions, get_speech_timestamps

    return get_speech_timestamps(samples, VadOptions())


def _group_chunks(chunks: list[dict], max_samples: int) -> list[list[dict]]:
    """Split speech chunks into consecutive groups of at most `max_samples` of speech."""
    groups: list[list[dict]] = [[]]
    size = 0
    for chunk in chunks:
        n = chunk["end"] - chunk["start"]
        if groups[-1] and size + n > max_samples:
            groups.append([])
            size = 0
        groups[-1].append(chunk)
        size += n
    return groups


def _restore(s: dict[str, Any], ts_map: Any) -> Segment:
    """An openai-whisper segment with times moved from joined speech to the recording."""
    words = _words(s.get("words"), dict.get)
    for w in words:
        index = ts_map.get_chunk_index((w.start + w.end) / 2)
        w.start = round(ts_map.get_original_time(w.start, index), 3)
        w.end = round(ts_map.get_original_time(w.end, index), 3)
    if words:
        start, end = words[0].start, words[-1].end
    else:
        start = ts_map.get_original_time(float(s["start"]))
        end = ts_map.get_original_time(float(s["end"]), is_end=True)
    return Segment(
        id=int(s["id"]),
        start=round(float(start), 3),
        end=round(float(end), 3),
        text=str(s["text"]),
        words=words,
        avg_logprob=round(float(s["avg_logprob"]), 4),
        no_speech_prob=round(float(s["no_speech_prob"]), 4),
    )


_ENGINES: dict[tuple, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def get_engine(settings: TranscribeSettings, *, cache_dir: Path | None = None) -> Engine:
    """The engine for these settings, loaded once per process and then reused."""
    ref = resolve_model(settings.model, cache_dir=cache_dir)
    compute_type = settings.compute_type if settings.engine == "faster-whisper" else "float32"
    key = (settings.engine, ref.name, str(ref.path), ref.sha256, compute_type, settings.threads)
    with _ENGINES_LOCK:
        engine = _ENGINES.get(key)
        if engine is None:
            if settings.engine == "faster-whisper":
                engine = FasterWhisperEngine(
                    ref, compute_type=settings.compute_type, threads=settings.threads
                )
            elif settings.engine == "openai-whisper":
                engine = OpenAIWhisperEngine(ref, threads=settings.threads, cache_dir=cache_dir)
            else:
                raise ModelNotAvailable(
                    f"unknown engine {settings.engine!r}", hint="use one of: " + ", ".join(ENGINES)
                )
            _ENGINES[key] = engine
    return engine


def clear_engines() -> None:
    """Forget loaded engines (frees their memory once nothing else holds them)."""
    with _ENGINES_LOCK:
        _ENGINES.clear()


def transcribe_file(
    path: str | os.PathLike[str],
    settings: TranscribeSettings,
    narrative_id: str,
    *,
    language: str | None = None,
    progress: Progress | None = None,
    cache_dir: Path | None = None,
) -> Transcript:
    """Decode, transcribe and collect one recording into a Transcript.

    `progress(done_seconds, total_seconds)` is called after each segment. Raises
    `BadRecording` for unusable files and `ModelNotAvailable` when weights are missing.
    """
    t0 = time.perf_counter()
    samples = decode(path, SAMPLE_RATE, min_duration=settings.min_duration)
    engine = get_engine(settings, cache_dir=cache_dir)
    info, stream = engine.transcribe(
        samples,
        language=language or settings.language or None,
        beam_size=settings.beam_size,
        vad=settings.vad,
        word_timestamps=settings.word_timestamps,
    )
    del samples
    segments = []
    for seg in stream:
        segments.append(seg)
        if progress is not None:
            progress(min(seg.end, info.duration), info.duration)
    if progress is not None:
        progress(info.duration, info.duration)
    return Transcript(
        narrative_id=narrative_id,
        language=info.language,
        duration=info.duration,
        segments=segments,
        engine=info.engine,
        model=info.model,
        engine_version=info.engine_version,
        language_probability=info.language_probability,
        seconds=round(time.perf_counter() - t0, 3),
    )
