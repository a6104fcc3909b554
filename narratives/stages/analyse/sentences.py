"""Whole sentences of a transcript, also when the speech recogniser wrote no punctuation.

Summaries, quotes and titles quote the narrator, so they must start and end where a sentence
does. Punctuated text is split by pysbd. A run of more words than a sentence plausibly holds
(an unpunctuated transcript) is cut where the evidence for a sentence boundary is strongest:
a pause in the speech, the end of a Whisper segment, or a new clause that opens with its subject
or a time word ("...drove away | then a cat sat...", "...woke up | i kept thinking...") and
is not bound to what came before ("...thinking that i...", "...before i got in").
The parser of spaCy's small English pipeline (`narratives.engines.nlp`) supplies part-of-speech
tags and
dependencies for that last test; without punctuation its own sentence ends are unreliable.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from narratives.engines.nlp import get_pipeline

__all__ = ["TimedWord", "SentenceSpan", "split_spans", "MAX_SENTENCE_WORDS"]

#: A stretch longer than this is cut into sentences.
MAX_SENTENCE_WORDS = 40
#: Cutting stops once pieces are this short...
_TARGET_WORDS = 22
#: ...and never leaves a piece shorter than this.
_MIN_PIECE_WORDS = 5
#: A silence this long between two words is very likely a sentence boundary.
_PAUSE = 0.55
#: Boundary evidence this strong (a pause) makes a cut sure.
_SURE = 2.0

#: Words after which a new subject continues the same sentence ("I thought that we...").
_BINDING = set(
    """and but or nor so that because cause cuz when whenever if before after while until
    since than as where who whom whose which what how why though although unless once whether
    think thought know knew said say says told tell remember remembered felt feel guess hope
    wish realised realized like just even maybe probably mean meant said wondered wonder
    noticed notice saw see heard hear decided decide swear swore bet figured sure
    """.split()
)
_SUBJECTS = set(
    """i we she he they you it there nobody everyone everybody someone somebody people my our
    his her their""".split()
)
_TIME_OPENERS = set(
    """then later afterwards now anyway sometimes yesterday today tonight suddenly eventually
    honestly still""".split()
)


@dataclass(frozen=True)
class TimedWord:
    """A word's character span in the text, with its time in the recording when known."""

    char_start: int
    char_end: int
    start: float | None = None
    end: float | None = None


@dataclass(frozen=True)
class SentenceSpan:
    """A sentence's characters, and whether both its ends are sure: the text's start or end,
    end punctuation, or a pause. A cut found only from grammar may be wrong, so quotes and
    summaries prefer sentences whose ends are sure."""

    start: int
    end: int
    sure_start: bool
    sure_end: bool

    @property
    def sure(self) -> bool:
        return self.sure_start and self.sure_end


def split_spans(
    text: str, words: list[TimedWord], segment_ends: list[int] | None = None
) -> list[SentenceSpan]:
    """The sentences of `text`, in order, covering its words."""
    import pysbd  # its rule tables load slowly: only when splitting

    segmenter = pysbd.Segmenter(language="en", clean=False, char_span=True)
    spans: list[tuple[int, int, bool]] = []
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
    for k, (a, b, sure_end) in enumerate(spans):
        sure_start = k == 0 or spans[k - 1][2]
        out.append(SentenceSpan(a, b, sure_start, sure_end or k == len(spans) - 1))
    return out


def _cut_long(
    text: str, start: int, end: int, words: list[TimedWord], segment_ends: list[int]
) -> list[tuple[int, int, bool]]:
    """(start, end, whether the end is sure) of the sentences in text[start:end]."""
    punctuated = bool(re.search(r"[.!?…][\"'’”)\]]*$", text[start:end]))
    tokens = [(m.start() + start, m.end() + start) for m in re.finditer(r"\S+", text[start:end])]
    if len(tokens) <= MAX_SENTENCE_WORDS:
        return [(start, end, punctuated)]
    scores = _boundary_scores(text, tokens, words, segment_ends)
    cuts = _choose_cuts(scores, 0, len(tokens))
    pieces, a = [], 0
    for c in [*cuts, len(tokens)]:
        sure = punctuated if c == len(tokens) else scores[c] >= _SURE
        pieces.append((tokens[a][0], tokens[c - 1][1], sure))
        a = c
    return pieces


def _boundary_scores(
    text: str, tokens: list[tuple[int, int]], words: list[TimedWord], segment_ends: list[int]
) -> list[float]:
    """scores[i]: the evidence that a sentence starts at token i (0 where none)."""
    n = len(tokens)
    scores = [0.0] * n
    by_start = {w.char_start: w for w in words}
    ends = set(segment_ends)
    for i in range(1, n):
        prev, cur = by_start.get(tokens[i - 1][0]), by_start.get(tokens[i][0])
        if prev and cur and prev.end is not None and cur.start is not None:
            gap = cur.start - prev.end
            if gap >= _PAUSE:
                scores[i] += 2.0 + min(gap, 2.0)
        if any(tokens[i - 1][1] <= e <= tokens[i][0] for e in ends):
            scores[i] += 1.0
    # A new clause that opens with its subject or a time word, unbound to the one before.
    doc = get_pipeline()(text[tokens[0][0] : tokens[-1][1]])
    offset = tokens[0][0]
    tok_at = {t.idx + offset: t for t in doc}
    for i in range(1, n):
        t = tok_at.get(tokens[i][0])
        p = tok_at.get(tokens[i - 1][0])
        if t is None or p is None:
            continue
        word, before = t.lower_, p.lower_.strip("'’")
        if before in _BINDING or p.pos_ in {"ADP", "DET", "CCONJ", "SCONJ", "AUX", "PART", "PRON"}:
            continue
        if p.pos_ == "VERB" and p.dep_ not in {"ROOT", "conj"} and word in _SUBJECTS:
            continue
        opens_subject = word in _SUBJECTS and (
            t.dep_ in {"nsubj", "nsubjpass", "expl", "poss"} or t.head.dep_ in {"nsubj", "ROOT"}
        )
        if opens_subject or word in _TIME_OPENERS:
            scores[i] += 1.0 if opens_subject else 0.8
    return scores


def _choose_cuts(scores: list[float], a: int, b: int) -> list[int]:
    """Recursively cut tokens[a:b] at its strongest boundary nearest the middle."""
    if b - a <= _TARGET_WORDS:
        return []
    best, best_val = None, 0.0
    middle = (a + b) / 2
    for i in range(a + _MIN_PIECE_WORDS, b - _MIN_PIECE_WORDS + 1):
        if scores[i] <= 0:
            continue
        # Strong evidence first; among equals, the cut that halves the stretch.
        val = scores[i] - 0.02 * abs(i - middle)
        if best is None or val > best_val:
            best, best_val = i, val
    if best is None:
        if b - a <= MAX_SENTENCE_WORDS:
            return []
        # No evidence at all in a very long stretch: cut at the middle rather than quote it all.
        best = int(middle)
    return [*_choose_cuts(scores, a, best), best, *_choose_cuts(scores, best, b)]
