"""Whisper transcription behind one interface, with two engines on the same weights.

`FasterWhisperEngine` (CTranslate2, int8 on CPU) is the default; `OpenAIWhisperEngine` runs the
same shipped weights in PyTorch after `whisper_convert` turns them into a checkpoint. Both
decode through `narratives.media.audio` (so bad files are `BadRecording`), both drop non-speech
with faster-whisper's bundled Silero VAD, and both stream `Segment`s lazily with plain-float
times, so a caller can report progress and never holds the engine's own objects.
Engines are loaded once per process (`get_engine`) and reused across narratives.

Batched decoding (`transcribe.batch_size` > 0, faster-whisper only) runs faster-whisper's
`BatchedInferencePipeline`, then a guard checks every speech window it decoded against the VAD:
each speech region of a second or more must hold words, no stretch of speech may go without
words, and the words per second of speech must be plausible. A window that fails is decoded again
on the plain path (its speech only), logged at info level, and `TranscriptInfo` says which path
made the transcript and why a window fell back.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
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
    "Window",
    "guard_windows",
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

#: Batched decoding: faster-whisper's own windowing (speech joined into windows of at most this
#: many seconds, split at silences of 160 ms) and the guard's limits. A speech region this long
#: must hold a word; no stretch of speech this long may go without one (gaps are measured from
#: word to word inside the speech regions, so pauses between regions do not count); a window
#: with at least GUARD_MIN_SPEECH s of speech must have GUARD_MIN_RATE..GUARD_MAX_RATE words per
#: second of speech and no segment that compresses like a repetition loop.
BATCH_CHUNK_SECONDS = 30
GUARD_MIN_REGION = 1.0
GUARD_MAX_GAP = 1.5
#: The end of a speech region (which the VAD pads by 0.4 s) this long after its last word is a
#: lost ending: batched windows lose their last words more than any other.
GUARD_MAX_TAIL = 1.0
GUARD_MIN_SPEECH = 4.0
GUARD_MIN_RATE = 0.8
GUARD_MAX_RATE = 6.0
GUARD_MAX_COMPRESSION = 2.4

log = logging.getLogger(__name__)

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
    #: "plain", or "batched" when `batch_size` > 0 (faster-whisper, with the VAD and word
    #: times on: the guard needs both; otherwise plain).
    decoding: str = "plain"
    #: Speech windows the guard sent back to the plain path, with why: ["12.0-40.5 s: ...", ...].
    fallbacks: tuple[str, ...] = ()
    #: Windows decoded batched (0 on the plain path).
    windows: int = 0


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
        batch_size: int = 0,
        decoded: Callable[[float], None] | None = None,
    ) -> tuple[TranscriptInfo, Iterator[Segment]]:
        """Info at once; segments lazily, in order, times in seconds of the recording.

        `batch_size` > 0 asks for batched decoding where the engine has it (guarded: see
        the module's doc); engines without it take the plain path. Batched segments arrive
        only when the whole recording is done, so `decoded(seconds)` is told how far into
        the recording decoding has reached meanwhile (not called on the plain path, whose
        segments stream)."""
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
        batch_size: int = 0,
        decoded: Callable[[float], None] | None = None,
    ) -> tuple[TranscriptInfo, Iterator[Segment]]:
        samples = _as_audio(audio)
        language = _language(language, self._ref.name)
        if language and not self._model.model.is_multilingual and language != "en":
            raise ModelNotAvailable(
                f"{self.model} is English-only; cannot transcribe language {language!r}",
                hint="use a multilingual model such as `base`",
            )
        if batch_size < 0:
            raise UsageError(
                f"transcribe.batch_size must be 0 or more, not {batch_size}",
                hint="use 0 for the plain path, or e.g. 8 for batched decoding",
            )
        # The pipeline finds its windows with the VAD, and the guard needs word times to see
        # a lost region: without either, the plain path.
        if batch_size and vad and word_timestamps:
            return self._transcribe_batched(
                samples, language, beam_size, word_timestamps, batch_size, decoded
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

        return tinfo, _renumber(_segment(s) for s in raw)

    def _transcribe_batched(
        self,
        samples: np.ndarray,
        language: str | None,
        beam_size: int,
        word_timestamps: bool,
        batch_size: int,
        decoded: Callable[[float], None] | None = None,
    ) -> tuple[TranscriptInfo, Iterator[Segment]]:
        """The batched pipeline, its windows checked by `guard_windows`, and each failing window
        decoded again on the plain path. Done in full before returning (the guard needs every
        window), so segments arrive at once; `decoded` hears how far it has got meanwhile."""
        from faster_whisper import BatchedInferencePipeline
        from faster_whisper.vad import VadOptions

        # A pipeline per call: it keeps per-call state (the last word time) on itself.
        pipeline = BatchedInferencePipeline(self._model)
        vad_options = VadOptions(
            max_speech_duration_s=BATCH_CHUNK_SECONDS, min_silence_duration_ms=160
        )
        raw, info = pipeline.transcribe(
            samples,
            language=language,
            beam_size=beam_size,
            word_timestamps=word_timestamps,
            vad_filter=True,
            vad_parameters=vad_options,
            chunk_length=BATCH_CHUNK_SECONDS,
            batch_size=batch_size,
        )
        regions = list(info.transcription_options.clip_timestamps or [])
        windows = _windows(regions, BATCH_CHUNK_SECONDS)
        by_seek: dict[int, list[Segment]] = {}
        for s in raw:
            by_seek.setdefault(int(s.seek), []).append(_segment(s))
            if decoded is not None:
                decoded(float(s.end))
        for w in windows:
            w.segments = by_seek.pop(w.seek, [])
        if by_seek:  # output for a window we did not predict: trust nothing batched
            failures = [(w, "batched output did not match the speech windows") for w in windows]
        else:
            failures = guard_windows(windows, word_timestamps=word_timestamps)
        notes = []
        for w, reason in failures:
            note = f"{w.start:.1f}-{w.end:.1f} s: {reason}"
            log.info(
                "batched transcription: speech at %s; transcribed again on the plain path", note
            )
            notes.append(note)
            w.segments = self._plain_regions(
                samples, w.regions, info.language, beam_size, word_timestamps
            )
        segments = [part for w in windows for s in w.segments for part in _sentences(s)]
        log.debug(
            "decoded batched: %d window(s), %d transcribed again on the plain path",
            len(windows),
            len(notes),
        )
        tinfo = TranscriptInfo(
            language=info.language,
            language_probability=round(float(info.language_probability), 4),
            duration=round(samples.size / SAMPLE_RATE, 3),
            engine=self.name,
            model=self.model,
            engine_version=self.version,
            decoding="batched",
            fallbacks=tuple(notes),
            windows=len([w for w in windows if w.regions]),
        )
        return tinfo, _renumber(segments)

    def _plain_regions(
        self,
        samples: np.ndarray,
        regions: list[dict],
        language: str | None,
        beam_size: int,
        word_timestamps: bool,
    ) -> list[Segment]:
        """The plain path on these speech regions (joined, as its VAD would), in recording time."""
        from faster_whisper.vad import SpeechTimestampsMap

        if not regions:
            return []
        speech = np.concatenate([samples[r["start"] : r["end"]] for r in regions])
        raw, _ = self._model.transcribe(
            speech,
            language=language,
            beam_size=beam_size,
            word_timestamps=word_timestamps,
            vad_filter=False,
        )
        ts_map = SpeechTimestampsMap(regions, SAMPLE_RATE)
        out = []
        for s in raw:
            seg = _segment(s)
            for w in seg.words:
                index = ts_map.get_chunk_index((w.start + w.end) / 2)
                w.start = round(ts_map.get_original_time(w.start, index), 3)
                w.end = round(ts_map.get_original_time(w.end, index), 3)
            if seg.words:
                seg.start, seg.end = seg.words[0].start, seg.words[-1].end
            else:
                seg.start = round(ts_map.get_original_time(seg.start), 3)
                seg.end = round(ts_map.get_original_time(seg.end, is_end=True), 3)
            out.append(seg)
        return out


def _segment(s: Any) -> Segment:
    """Our Segment from a faster-whisper one (plain floats)."""
    return Segment(
        id=int(s.id),
        start=round(float(s.start), 3),
        end=round(float(s.end), 3),
        text=s.text,
        words=_words(s.words, getattr),
        avg_logprob=round(float(s.avg_logprob), 4),
        no_speech_prob=round(float(s.no_speech_prob), 4),
    )


@dataclass
class Window:
    """One window of the batched pipeline: VAD speech regions (in samples) decoded together."""

    regions: list[dict]
    #: The pipeline's `seek` for the window (its offset in joined speech, in 10 ms frames).
    seek: int = 0
    segments: list[Segment] = field(default_factory=list)

    @property
    def start(self) -> float:
        return self.regions[0]["start"] / SAMPLE_RATE if self.regions else 0.0

    @property
    def end(self) -> float:
        return self.regions[-1]["end"] / SAMPLE_RATE if self.regions else 0.0

    @property
    def speech(self) -> float:
        return sum(r["end"] - r["start"] for r in self.regions) / SAMPLE_RATE


def _windows(regions: list[dict], max_seconds: float) -> list[Window]:
    """The windows faster-whisper's `collect_chunks` makes of these regions, with the `seek`
    its batched pipeline gives their segments (the same arithmetic, without the audio)."""
    windows: list[Window] = []
    current: list[dict] = []
    size = total = 0
    for region in regions:
        n = region["end"] - region["start"]
        if size + n > max_seconds * SAMPLE_RATE:
            windows.append(Window(current, int(total / SAMPLE_RATE * 100)))
            total += size
            current, size = [region], n
        else:
            current.append(region)
            size += n
    windows.append(Window(current, int(total / SAMPLE_RATE * 100)))
    return [w for w in windows if w.regions]


def guard_windows(
    windows: Iterable[Window], *, word_timestamps: bool = True
) -> list[tuple[Window, str]]:
    """The windows whose transcript shows a loss, each with the reason.

    Only what would be kept counts (hallucinations are dropped before the check). With word
    times: every speech region of `GUARD_MIN_REGION` s or more holds a word, and no stretch of
    speech of `GUARD_MAX_GAP` s goes without one. Always: words per second of speech within
    `GUARD_MIN_RATE`..`GUARD_MAX_RATE` (windows of `GUARD_MIN_SPEECH` s or more), and no segment
    compressing better than `GUARD_MAX_COMPRESSION` (a repetition loop)."""
    failures = []
    for w in windows:
        reason = _loss(w, word_timestamps)
        if reason:
            failures.append((w, reason))
    return failures


def _loss(w: Window, word_timestamps: bool) -> str:
    import zlib

    kept = [s for s in w.segments if not is_hallucination(s)]
    n_words = sum(len(s.text.split()) for s in kept)
    speech = w.speech
    if speech >= GUARD_MIN_SPEECH:
        rate = n_words / speech
        if rate < GUARD_MIN_RATE:
            return f"{n_words} words in {speech:.1f} s of speech"
        if rate > GUARD_MAX_RATE:
            return f"{n_words} words in {speech:.1f} s of speech (repetition?)"
    for s in kept:
        data = s.text.strip().encode("utf-8")
        if len(data) > 40 and len(data) / len(zlib.compress(data)) > GUARD_MAX_COMPRESSION:
            return f"repeated text at {s.start:.1f} s"
    if not word_timestamps:
        return ""
    words = [(wd.start, wd.end) for s in kept for wd in s.words]
    for r in w.regions:
        a, b = r["start"] / SAMPLE_RATE, r["end"] / SAMPLE_RATE
        if b - a < GUARD_MIN_REGION:
            continue
        inside = sorted((max(s, a), min(e, b)) for s, e in words if e > a and s < b)
        if not inside:
            return f"no words in the speech at {a:.1f}-{b:.1f} s"
        last = a
        for s, e in inside:
            if s - last >= GUARD_MAX_GAP:
                return f"no words in the speech at {last:.1f}-{s:.1f} s"
            last = max(last, e)
        if b - last >= GUARD_MAX_TAIL:
            return f"no words at the end of the speech at {last:.1f}-{b:.1f} s"
    return ""


def _sentences(seg: Segment) -> list[Segment]:
    """A long batched segment (one per window) split after words ending a sentence, so
    segments stay sentence-sized as on the plain path."""
    if len(seg.words) < 2:
        return [seg]
    parts: list[list[Word]] = [[]]
    for w in seg.words:
        parts[-1].append(w)
        if w.text.rstrip().endswith((".", "?", "!")):
            parts.append([])
    parts = [p for p in parts if p]
    if len(parts) == 1:
        return [seg]
    return [
        Segment(
            id=seg.id,
            start=p[0].start,
            end=p[-1].end,
            text="".join(w.text for w in p),
            words=p,
            avg_logprob=seg.avg_logprob,
            no_speech_prob=seg.no_speech_prob,
        )
        for p in parts
    ]


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
        batch_size: int = 0,  # no batched path here: always the plain one
        decoded: Callable[[float], None] | None = None,  # segments stream: not needed
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
    total = samples.size / SAMPLE_RATE
    reached = 0.0

    def report(seconds: float) -> None:
        """Progress that never goes back (batched decoding reports, then its segments come)."""
        nonlocal reached
        if progress is not None and seconds > reached:
            reached = min(seconds, total)
            progress(reached, total)

    info, stream = engine.transcribe(
        samples,
        language=language or settings.language or None,
        beam_size=settings.beam_size,
        vad=settings.vad,
        word_timestamps=settings.word_timestamps,
        batch_size=settings.batch_size,
        decoded=report,
    )
    del samples
    segments = []
    for seg in stream:
        segments.append(seg)
        report(seg.end)
    if progress is not None:
        progress(total, total)
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
        decoding=info.decoding,
        fallbacks=list(info.fallbacks),
    )
