"""The transcript's words and sentences, placed in its text and timed.

Sentences are cut from `Transcript.text` (so each is an exact substring of it) by
`narratives.stages.analyse.sentences` and timed from the words that fall inside them; their
quoted text has filler words trimmed, and the untrimmed `raw` text is kept beside it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from narratives.records.analysis import Excerpt
from narratives.records.transcript import Segment, Transcript
from narratives.stages.analyse.fillers import trim_fillers
from narratives.stages.analyse.sentences import SureEnds, TimedWord, split_spans

__all__ = [
    "TextWord",
    "Sentence",
    "align_words",
    "split_sentences",
    "text_sentences",
    "norm",
    "excerpt",
]


@dataclass
class TextWord:
    """A transcript word with its times and its character span in the transcript's text."""

    text: str
    start: float
    end: float
    char_start: int
    char_end: int


@dataclass
class Sentence(SureEnds):
    """A whole sentence of the transcript: `raw` as spoken, `text` with fillers trimmed,
    timed by its kept words; `words` are indexes into the aligned words."""

    index: int
    raw: str
    text: str
    char_start: int
    char_end: int
    start: float
    end: float
    words: list[int]
    #: The chance that a sentence really starts / ends here: 1.0 where it is sure (text edge,
    #: end punctuation or a pause), less where the cut was guessed from the words alone.
    start_chance: float = 1.0
    end_chance: float = 1.0


def align_words(transcript: Transcript, text: str) -> list[TextWord]:
    """Each word's character span in `text`; words that cannot be found are left out."""
    words: list[TextWord] = []
    cursor = 0
    for w in transcript.words:
        token = w.text.strip()
        if not token:
            continue
        pos = text.find(token, cursor)
        if pos < 0 or pos - cursor > 80:
            continue
        words.append(TextWord(token, float(w.start), float(w.end), pos, pos + len(token)))
        cursor = pos + len(token)
    return words


def _segment_spans(transcript: Transcript) -> list[tuple[int, int, float, float]]:
    spans, cursor = [], 0
    for s in transcript.segments:
        t = s.text.strip()
        if not t:
            continue
        spans.append((cursor, cursor + len(t), float(s.start), float(s.end)))
        cursor += len(t) + 1
    return spans


def split_sentences(text: str, words: list[TextWord], transcript: Transcript) -> list[Sentence]:
    """The whole sentences of `text` (also unpunctuated speech), each timed and trimmed;
    sentences with no word left after trimming are dropped."""
    segments = _segment_spans(transcript)
    timed = [TimedWord(w.char_start, w.char_end, w.start, w.end) for w in words]
    spans = split_spans(text, timed, [s[1] for s in segments])
    sentences: list[Sentence] = []
    for span in spans:
        start, end = span.start, span.end
        raw = text[start:end].strip()
        if not raw:
            continue
        start = text.find(raw, start)
        end = start + len(raw)
        idx = [i for i, w in enumerate(words) if w.char_start < end and w.char_end > start]
        trimmed = trim_fillers(raw)
        if not re.search(r"\w", trimmed):
            continue
        if idx:
            t0, t1 = _trimmed_times(trimmed, [words[i] for i in idx])
        else:
            hit = [s for s in segments if s[0] < end and s[1] > start]
            if not hit:
                continue
            t0, t1 = min(s[2] for s in hit), max(s[3] for s in hit)
        sentences.append(
            Sentence(
                len(sentences),
                raw,
                trimmed,
                start,
                end,
                t0,
                t1,
                idx,
                span.start_chance,
                span.end_chance,
            )  # fmt: skip
        )
    duration = float(transcript.duration or 0.0)
    for s in sentences:
        if duration > 0:
            s.start = min(max(s.start, 0.0), duration)
            s.end = min(max(s.end, s.start), duration)
    return sentences


def norm(token: str) -> str:
    """A word compared without case or punctuation ("Rosa's," -> "rosa's")."""
    return re.sub(r"[^\w'-]", "", token).lower()


def _trimmed_times(trimmed: str, words: list[TextWord]) -> tuple[float, float]:
    """Start at the first kept word and end at the last, skipping trimmed fillers."""
    kept = [norm(t) for t in trimmed.split()]
    kept = [k for k in kept if k]
    first = next((w for w in words if kept and norm(w.text) == kept[0]), words[0])
    last = next((w for w in reversed(words) if kept and norm(w.text) == kept[-1]), words[-1])
    if last.end < first.start:
        first, last = words[0], words[-1]
    return round(first.start, 3), round(last.end, 3)


def excerpt(s: Sentence) -> Excerpt:
    """The record of a sentence: its text, raw words, times and place in the transcript."""
    guessed = s.start_chance < 1.0 or s.end_chance < 1.0
    return Excerpt(
        s.text, s.raw, round(s.start, 3), round(s.end, 3), s.char_start, s.char_end, guessed
    )


def text_sentences(text: str) -> list[str]:
    """The sentences of a written story (an example), split as a transcript's are."""
    transcript = Transcript("example", "en", 0.0, [Segment(0, 0.0, 0.0, text)], "text", "none")
    return [s.text for s in split_sentences(transcript.text, [], transcript)]
