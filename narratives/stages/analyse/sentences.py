"""Whole sentences of a transcript, also when the speech recogniser wrote no punctuation.

Summaries, quotes and titles quote the narrator, so they must start and end where a sentence
does. Punctuated text is split by pysbd. A run of more words than a sentence plausibly holds
(an unpunctuated transcript) is cut where the evidence for a sentence boundary is strongest:
a pause in the speech, the end of a Whisper segment, and a model learnt from spoken stories
(`narratives.stages.analyse.boundaries`) that reads the words around each gap in context.
Cuts found without a pause are a guess, and each end carries its chance of being right, so
that quotes and summaries can prefer sentences whose ends are likely.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from narratives.stages.analyse.boundaries import (
    load_boundary_model,
    normalise_words,
    sigmoid,
)

__all__ = ["TimedWord", "SentenceSpan", "SureEnds", "split_spans", "MAX_SENTENCE_WORDS"]

#: A stretch longer than this is cut into sentences.
MAX_SENTENCE_WORDS = 40
#: A silence this long between two words is very likely a sentence boundary.
_PAUSE = 0.55
#: Log-odds a pause adds (plus up to 2 for a longer one), and the end of a Whisper segment.
_PAUSE_EVIDENCE = 3.0
_SEGMENT_END_EVIDENCE = 1.5


@dataclass(frozen=True)
class TimedWord:
    """A word's character span in the text, with its time in the recording when known."""

    char_start: int
    char_end: int
    start: float | None = None
    end: float | None = None


class SureEnds:
    """Whether a sentence's ends are sure (chance 1.0: the text's edge, end punctuation or a
    pause) rather than guessed from the words alone."""

    start_chance: float
    end_chance: float

    @property
    def sure_start(self) -> bool:
        return self.start_chance >= 1.0

    @property
    def sure_end(self) -> bool:
        return self.end_chance >= 1.0

    @property
    def sure(self) -> bool:
        return self.sure_start and self.sure_end


@dataclass(frozen=True)
class SentenceSpan(SureEnds):
    """A sentence's characters, and for each end the chance that a sentence really starts or
    ends there: 1.0 at the text's start or end, end punctuation or a pause; the learnt
    model's probability for a cut found from the words alone."""

    start: int
    end: int
    start_chance: float = 1.0
    end_chance: float = 1.0


def split_spans(
    text: str, words: list[TimedWord], segment_ends: list[int] | None = None
) -> list[SentenceSpan]:
    """The sentences of `text`, in order, covering its words."""
    import pysbd  # its rule tables load slowly: only when splitting

    segmenter = pysbd.Segmenter(language="en", clean=False, char_span=True)
    spans: list[tuple[int, int, float]] = []
    cursor = 0
    for span in segmenter.segment(text):
        raw = span.sent.strip()
        if not raw:
            continue
        first = text.find(raw, cursor)
        if first < 0:
            first = text.find(raw)
        cursor = first + len(raw)
        spans += _cut_long(text, first, cursor, words, segment_ends or [])
    out = []
    for k, (a, b, end_chance) in enumerate(spans):
        start_chance = 1.0 if k == 0 else spans[k - 1][2]
        out.append(SentenceSpan(a, b, start_chance, 1.0 if k == len(spans) - 1 else end_chance))
    return out


def _cut_long(
    text: str, start: int, end: int, words: list[TimedWord], segment_ends: list[int]
) -> list[tuple[int, int, float]]:
    """(start, end, the chance that a sentence ends there) of the sentences in text[start:end]."""
    punctuated = bool(re.search(r"[.!?…][\"'’”)\]]*$", text[start:end]))
    tokens = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", text[start:end])]
    if len(tokens) <= MAX_SENTENCE_WORDS:
        return [(start, end, 1.0 if punctuated else 0.5)]
    # Words made of punctuation alone ride with the word before them.
    normal = normalise_words(" ".join(text[a:b] for a, b in tokens))
    kept = [k for k, w in enumerate(normal) if w] or [0]
    evidence, sure = _gap_evidence(text, [tokens[k] for k in kept], words, segment_ends)
    model = load_boundary_model()
    log_odds = model.log_odds([normal[k] for k in kept])
    log_odds = [x + e for x, e in zip(log_odds, evidence, strict=True)]
    pieces, a = [], 0
    for c in [*model.choose_cuts(log_odds), len(kept)]:
        if c == len(kept):
            chance = 1.0 if punctuated else 0.5
        else:
            chance = 1.0 if sure[c - 1] else sigmoid(log_odds[c - 1])
        last = kept[c] - 1 if c < len(kept) else len(tokens) - 1
        pieces.append((tokens[kept[a]][0] if a else tokens[0][0], tokens[last][1], chance))
        a = c
    return pieces


def _gap_evidence(
    text: str, tokens: list[tuple[int, int]], words: list[TimedWord], segment_ends: list[int]
) -> tuple[list[float], list[bool]]:
    """Per gap between tokens (before token i, i >= 1): log-odds from the recording (a pause,
    a segment end) and whether a pause makes a cut there sure."""
    by_start = {w.char_start: w for w in words}
    ends = sorted(set(segment_ends))
    evidence, sure = [], []
    for i in range(1, len(tokens)):
        prev, cur = by_start.get(tokens[i - 1][0]), by_start.get(tokens[i][0])
        e, paused = 0.0, False
        if prev and cur and prev.end is not None and cur.start is not None:
            gap = cur.start - prev.end
            if gap >= _PAUSE:
                e += _PAUSE_EVIDENCE + min(gap, 2.0)
                paused = True
        if any(tokens[i - 1][1] <= x <= tokens[i][0] for x in ends):
            e += _SEGMENT_END_EVIDENCE
        evidence.append(e)
        sure.append(paused)
    return evidence, sure
