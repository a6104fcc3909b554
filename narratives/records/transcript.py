"""The transcription stage's record: a Transcript of Segments of Words, with times in seconds.

Plain dataclasses that round-trip through JSON (`to_dict`/`from_dict`); every later stage
(analysis, captions, video, drafts) reads a Transcript and never the engine's own objects.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["Word", "Segment", "Transcript"]


@dataclass
class Word:
    start: float
    end: float
    #: As the engine wrote it, usually with its leading space (" dream").
    text: str
    probability: float = 1.0


@dataclass
class Segment:
    id: int
    start: float
    end: float
    text: str
    words: list[Word] = field(default_factory=list)
    avg_logprob: float | None = None
    no_speech_prob: float | None = None


@dataclass
class Transcript:
    narrative_id: str
    language: str
    #: Length of the recording in seconds (not of the speech).
    duration: float
    segments: list[Segment]
    engine: str
    model: str
    engine_version: str = ""
    language_probability: float | None = None
    seconds: float | None = None
    #: "plain", or "batched" (faster-whisper's batched pipeline, checked window by window).
    decoding: str = "plain"
    #: Windows a batched decode lost words in and that were decoded again plainly, with why.
    fallbacks: list[str] = field(default_factory=list)

    @property
    def text(self) -> str:
        return " ".join(s.text.strip() for s in self.segments if s.text.strip())

    @property
    def words(self) -> list[Word]:
        return [w for s in self.segments for w in s.words]

    @property
    def is_empty(self) -> bool:
        return not self.text.strip()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["text"] = self.text
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        data = dict(data)
        data.pop("text", None)
        data["segments"] = [_segment(s) for s in data.get("segments", [])]
        return cls(**data)

    @classmethod
    def from_segments(
        cls, narrative_id: str, segments: Iterable[Segment], **info: Any
    ) -> Transcript:
        return cls(narrative_id=narrative_id, segments=list(segments), **info)


def _segment(data: dict[str, Any]) -> Segment:
    data = dict(data)
    data["words"] = [Word(**w) for w in data.get("words", [])]
    return Segment(**data)
