"""The excerpt: which whole sentences of a recording a video keeps when the recording is longer
than the campaign allows, and the words' times in the cut video.

The quote and the summary sentences are kept first, then their neighbours while they fit;
each kept sentence is padded into the silence around it, never past the middle of a pause.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from narratives.records.transcript import Transcript, Word

__all__ = [
    "PAD_AFTER",
    "SENTENCE_END",
    "Sentence",
    "length",
    "plan_cut",
    "remap",
    "sentences",
    "to_output_time",
    "words_of",
]

#: Silence kept around a sentence at a cut, at most (shared with its neighbour if closer).
PAD_BEFORE, PAD_AFTER = 0.2, 0.3
SENTENCE_END = re.compile(r"[.!?…][\"'”’)\]]*$")


def words_of(transcript: Transcript) -> list[Word]:
    """Word timings; a segment without them gets its words spread by length."""
    out: list[Word] = []
    for seg in transcript.segments:
        if seg.words:
            out.extend(w for w in seg.words if w.text.strip())
            continue
        parts = seg.text.split()
        total = sum(len(p) + 1 for p in parts) or 1
        t = seg.start
        for p in parts:
            d = (seg.end - seg.start) * (len(p) + 1) / total
            out.append(Word(t, t + d, " " + p))
            t += d
    return out


@dataclass
class Sentence:
    start: float
    end: float
    first: int
    last: int


def sentences(words: Sequence[Word]) -> list[Sentence]:
    out: list[Sentence] = []
    first = 0
    for i, w in enumerate(words):
        if SENTENCE_END.search(w.text.strip()) or i == len(words) - 1:
            out.append(Sentence(words[first].start, w.end, first, i))
            first = i + 1
    return out


def _edges(sents: Sequence[Sentence], duration: float) -> list[tuple[float, float]]:
    """Each sentence padded into the silence around it, never past the middle of a pause."""
    out = []
    for i, s in enumerate(sents):
        prev_end = sents[i - 1].end if i else 0.0
        next_start = sents[i + 1].start if i + 1 < len(sents) else duration
        a = s.start - min(PAD_BEFORE, max(0.0, s.start - prev_end) / (2 if i else 1))
        b = s.end + min(PAD_AFTER, max(0.0, next_start - s.end) / (2 if i + 1 < len(sents) else 1))
        out.append((max(0.0, a), min(duration, b)))
    return out


def _merged(indices: Iterable[int]) -> list[list[int]]:
    runs: list[list[int]] = []
    for i in sorted(set(indices)):
        if runs and runs[-1][-1] == i - 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _ranges(
    indices: Iterable[int], edges: Sequence[tuple[float, float]]
) -> list[tuple[float, float]]:
    return [(edges[r[0]][0], edges[r[-1]][1]) for r in _merged(indices)]


def length(ranges: Sequence[tuple[float, float]]) -> float:
    return sum(b - a for a, b in ranges)


def plan_cut(
    words: Sequence[Word],
    duration: float,
    limit: float,
    keys: Sequence[tuple[float, float]] = (),
) -> list[tuple[float, float]]:
    """Source intervals to keep so the result lasts at most `limit` seconds.

    Whole sentences only: first those overlapping the key intervals (the quote, then the
    summary sentences, in priority order), then their neighbours, nearest to the first key
    first, while they fit. A single sentence longer than the limit is cut at a word end.
    """
    if duration <= limit:
        return [(0.0, duration)]
    sents = sentences(words)
    if not sents:
        return [(0.0, limit)]
    edges = _edges(sents, duration)
    wanted = [
        i for a, b in keys for i, s in enumerate(sents) if s.start < b and s.end > a and b > a
    ]
    anchor = wanted[0] if wanted else 0
    chosen: list[int] = []
    for i in wanted or [0]:
        if i not in chosen and length(_ranges([*chosen, i], edges)) <= limit:
            chosen.append(i)
    if not chosen:
        # One sentence is longer than the whole limit: keep its words up to the limit.
        s = sents[anchor]
        a = edges[anchor][0]
        end = a
        for w in words[s.first : s.last + 1]:
            if w.end - a > limit - PAD_AFTER:
                break
            end = w.end
        return [(a, min(end + PAD_AFTER, a + limit))] if end > a else [(a, a + limit)]
    while True:
        # Neighbours of what is chosen: the sentence after before the one before.
        cands = sorted(
            {j for i in chosen for j in (i + 1, i - 1) if 0 <= j < len(sents)} - set(chosen),
            key=lambda j: (abs(j - anchor), j < anchor),
        )
        for j in cands:
            if length(_ranges([*chosen, j], edges)) <= limit:
                chosen.append(j)
                break
        else:
            return _ranges(chosen, edges)


def remap(
    words: Sequence[Word], ranges: Sequence[tuple[float, float]]
) -> list[tuple[float, float, str]]:
    """Words inside the kept ranges, in output time."""
    out = []
    offset = 0.0
    for a, b in ranges:
        for w in words:
            if w.start >= a - 1e-3 and w.end <= b + 1e-3:
                out.append((max(0.0, w.start - a) + offset, min(b, w.end) - a + offset, w.text))
        offset += b - a
    return out


def to_output_time(t: float, ranges: Sequence[tuple[float, float]]) -> float | None:
    offset = 0.0
    for a, b in ranges:
        if a <= t <= b:
            return t - a + offset
        offset += b - a
    return None
