"""The synthetic voice of a video: the public (redacted) transcript spoken by the shipped neural
voice (`engines.tts`), with every word's time taken from the synthesis, so the captions and
highlights follow the new audio and no sample of the recording is in the video.

The whole transcript is spoken once per narrative and kept beside its other files
(`voice-synthetic-<key>.wav` and `.json`), keyed by the words said and the voice: every campaign and
format renders from the same speech, and a re-render does not speak again unless the words
changed. The video is then made from it exactly as from a recording: its cut, soundtrack and
caption pages read the synthetic transcript; the quote and summary intervals (recording time)
are moved onto it word by word, and a cut's kept ranges are moved back for the records.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from narratives.core.files import atomic_write_json
from narratives.engines.tts import SHIPPED_VOICE, speak
from narratives.policy.voice import spoken
from narratives.records.transcript import Segment, Transcript, Word
from narratives.stages.render.cut import SENTENCE_END
from narratives.stages.render.soundtrack import write_wav

__all__ = ["SPEECH_FILE", "Revoiced", "plan", "revoice"]

SPEECH_FILE = "voice-synthetic"
#: A pause this long in the recording ends a chunk of speech (as sentences are found).
_GAP = 0.55
#: At most this many words are spoken in one go (an unpunctuated transcript has no ends).
_MAX_WORDS = 40


def _words(seg: Segment) -> list[Word]:
    """A segment's timed words; one without them gets its words spread by length."""
    if seg.words:
        return list(seg.words)
    parts = seg.text.split()
    total = sum(len(p) + 1 for p in parts) or 1
    out, t = [], seg.start
    for p in parts:
        d = (seg.end - seg.start) * (len(p) + 1) / total
        out.append(Word(t, t + d, " " + p))
        t += d
    return out


@dataclass(frozen=True)
class _Plan:
    """What will be said: the transcript's segments' words, in chunks, and its key."""

    segments: list[list[Word]]
    chunks: list[list[str]]
    key: str

    @property
    def words(self) -> list[Word]:
        return [w for ws in self.segments for w in ws]


def plan(transcript: Transcript) -> _Plan:
    """The chunks to speak (sentences, broken at long pauses and at `_MAX_WORDS`) and a key
    that changes when the words said or the voice change. Cheap: nothing is spoken."""
    segments = [_words(s) for s in transcript.segments]
    flat = [w for ws in segments for w in ws]
    chunks: list[list[str]] = [[]]
    for i, w in enumerate(flat):
        chunks[-1].append(spoken(w.text.strip()))
        nxt = flat[i + 1] if i + 1 < len(flat) else None
        if nxt is not None and (
            SENTENCE_END.search(w.text.strip())
            or nxt.start - w.end >= _GAP
            or len(chunks[-1]) >= _MAX_WORDS
        ):
            chunks.append([])
    chunks = [c for c in chunks if c]
    key = hashlib.sha256(json.dumps([SHIPPED_VOICE.digest, chunks]).encode()).hexdigest()[:16]
    return _Plan(segments, chunks, key)


@dataclass
class Revoiced:
    """The synthetic speech of a narrative: its WAV, the public transcript re-timed to it, and
    each word's time in the recording and in the speech (to move intervals between them)."""

    audio: Path
    transcript: Transcript
    key: str
    source: np.ndarray
    said: np.ndarray

    def to_speech(self, t: float) -> float:
        return float(np.interp(t, self.source, self.said))

    def to_recording(self, t: float) -> float:
        return float(np.interp(t, self.said, self.source))

    def keys(self, intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        """Recording intervals (the quote, the summary sentences) in speech time."""
        out = [(self.to_speech(a), self.to_speech(b)) for a, b in intervals]
        return [(a, b) for a, b in out if b > a]

    def recording_ranges(self, ranges: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
        """Speech intervals (a cut's kept ranges) in recording time."""
        return [(round(self.to_recording(a), 3), round(self.to_recording(b), 3)) for a, b in ranges]


def _anchors(words: Sequence[Word], times: Sequence[tuple[float, float]]):
    """Monotone (recording, speech) time pairs at every word's start and end."""
    src, said = [0.0], [0.0]
    for w, (a, b) in zip(words, times, strict=True):
        src += [w.start, max(w.start, w.end)]
        said += [a, max(a, b)]
    return np.maximum.accumulate(np.array(src)), np.maximum.accumulate(np.array(said))


def revoice(folder: Path, transcript: Transcript) -> Revoiced:
    """The narrative's synthetic speech: reused from `folder` when the same words were spoken
    by the same voice, else spoken now and kept there (written atomically). Two renders of one
    narrative at once (threads or processes) take turns, so the WAV and its word times always
    come from the same synthesis."""
    p = plan(transcript)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".{SPEECH_FILE}.lock", "a+b") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            times, duration = _spoken(folder, p)
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)
    segments, done = [], 0
    for seg, words in zip(transcript.segments, p.segments, strict=True):
        timed = [
            dataclasses.replace(w, start=a, end=b)
            for w, (a, b) in zip(words, times[done : done + len(words)], strict=True)
        ]
        done += len(words)
        if not timed:
            continue
        segments.append(
            dataclasses.replace(seg, start=timed[0].start, end=timed[-1].end, words=timed)
        )
    new = dataclasses.replace(transcript, segments=segments, duration=round(duration, 3))
    src, said = _anchors(p.words, times)
    return Revoiced(folder / f"{SPEECH_FILE}-{p.key}.wav", new, p.key, src, said)


def _spoken(folder: Path, p: _Plan) -> tuple[list[tuple[float, float]], float]:
    """(word times, duration) of the kept speech for plan `p`, spoken first if need be.
    Files are named by the key, so a video being made from older words keeps its own audio
    until newer speech replaces it."""
    wav, meta = folder / f"{SPEECH_FILE}-{p.key}.wav", folder / f"{SPEECH_FILE}-{p.key}.json"
    times: list[tuple[float, float]] | None = None
    duration = 0.0
    try:
        data = json.loads(meta.read_text(encoding="utf-8"))
        found = [(float(a), float(b)) for a, b in data["words"]]
        if data.get("key") == p.key and wav.is_file() and len(found) == len(p.words):
            times, duration = found, float(data["duration"])
    except (OSError, ValueError, KeyError, TypeError):
        times = None
    if times is None:
        speech = speak(p.chunks)
        times, duration = speech.words, speech.duration
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{SPEECH_FILE}.tmp.wav"
        try:
            write_wav(tmp, speech.samples, speech.rate)
            os.replace(tmp, wav)
        finally:
            tmp.unlink(missing_ok=True)
        atomic_write_json(
            meta,
            {"key": p.key, "voice": SHIPPED_VOICE.name, "duration": duration, "words": times},
        )
        for old in folder.glob(f"{SPEECH_FILE}-*"):
            if old not in (wav, meta):
                old.unlink(missing_ok=True)
    return times, duration
