"""The narrator's words a story is shown by: the summary sentences, the pull-quote, the title.

The summary is the most central sentences, chosen one by one away from those already chosen;
the quote is a whole sentence that sounds like a felt conviction; the title is a well-formed
phrase of the story's own words closest in meaning to the summary
(`narratives.stages.analyse.titles`).
"""

from __future__ import annotations

import numpy as np

from narratives.records.analysis import Excerpt
from narratives.stages.analyse.fillers import trim_fillers
from narratives.stages.analyse.timing import Sentence, TextWord, excerpt, norm
from narratives.stages.analyse.titles import choose_title, title_candidates

__all__ = [
    "QUOTE_MAX_CHARS",
    "QUOTE_HARD_MAX_CHARS",
    "MAX_TITLE_CANDIDATES",
    "UNSURE_WORD",
    "choose_summary",
    "choose_quote",
    "make_title",
    "candidate_titles",
]

QUOTE_MAX_CHARS = 200
#: Cost of a sentence end that is a guess, times the chance that it is wrong (summary, quote):
#: chosen on the corpus's calibration halves (`scripts/calibrate_excerpt_costs.py`).
GUESSED_END_COST = 1.0
QUOTE_GUESSED_END_COST = 8.0
#: A quote is cut (with "…") only when no sentence of the story is shorter than this.
QUOTE_HARD_MAX_CHARS = 300

_DANGLING = {
    "it", "this", "that", "these", "those", "then", "and", "but", "or", "he", "she", "they",
    "him", "her", "them", "his", "its", "their", "later", "also", "which", "because", "after",
}  # fmt: skip

_VECTORS: dict[tuple[int, tuple[str, ...]], np.ndarray] = {}


def _cached_vectors(embedder, texts: tuple[str, ...]) -> np.ndarray:
    key = (id(embedder), texts)
    if key not in _VECTORS:
        _VECTORS[key] = embedder.encode(list(texts))
    return _VECTORS[key]


def choose_summary(sentences: list[Sentence], vecs: np.ndarray, k: int) -> list[Sentence]:
    """`k` central sentences, each chosen away from those already chosen, in story order."""
    n = len(sentences)
    if n <= k:
        return list(sentences)
    sims = vecs @ vecs.T
    centrality = (sims.sum(axis=1) - 1.0) / max(n - 1, 1)
    base = centrality.copy()
    for s in sentences:
        words = len(s.text.split())
        if words < 5:
            base[s.index] -= 0.15
        elif words > 45:
            base[s.index] -= 0.05
        # Openings and conclusions carry a spoken story's gist.
        if s.index == 0 or s.index == n - 1:
            base[s.index] += 0.04
        # A sentence whose ends were guessed may be a fragment: the less likely, the worse.
        base[s.index] -= GUESSED_END_COST * ((1 - s.start_chance) + (1 - s.end_chance))
    chosen: list[int] = []
    while len(chosen) < k:
        best, best_val = None, -1e9
        for s in sentences:
            if s.index in chosen:
                continue
            val = base[s.index]
            if chosen:
                val -= 0.3 * float(max(sims[s.index, c] for c in chosen))
            first_word = norm(s.text.split()[0]) if s.text.split() else ""
            # A sentence leaning on the one before reads badly without it.
            if first_word in _DANGLING and (s.index - 1) not in chosen:
                val -= 0.08
            if val > best_val:
                best, best_val = s.index, val
        chosen.append(best)
    return [sentences[i] for i in sorted(chosen)]


def choose_quote(
    sentences: list[Sentence], vecs: np.ndarray, words: list[TextWord], embedder
) -> Excerpt | None:
    """The pull-quote: a whole sentence, central and sounding like a felt conviction."""
    if not sentences:
        return None
    n = len(sentences)
    sims = vecs @ vecs.T
    centrality = (sims.sum(axis=1) - 1.0) / max(n - 1, 1) if n > 1 else np.ones(1)
    proto = _cached_vectors(embedder, tuple(_QUOTABLE))
    quotable = (vecs @ proto.T).max(axis=1)
    best, best_val = None, -1e9
    # Whole sentences only: one that fits, else the shortest (cut only past the hard limit).
    fitting = [s for s in sentences if len(s.text) <= QUOTE_MAX_CHARS]
    pool = fitting or [min(sentences, key=lambda s: len(s.text))]
    for s in pool:
        length = len(s.text)
        val = 0.3 * float(centrality[s.index]) + 0.7 * float(quotable[s.index])
        # Ends guessed from the words alone (no punctuation, no pause) may be wrong.
        val -= QUOTE_GUESSED_END_COST * (1 - s.start_chance * s.end_chance)
        if length < 40:
            val -= 0.2
        elif length > 170:
            val -= 0.05
        first_word = norm(s.text.split()[0]) if s.text.split() else ""
        if first_word in _DANGLING:
            val -= 0.08
        if val > best_val:
            best, best_val = s, val
    chosen = excerpt(best)
    if len(chosen.text) > QUOTE_HARD_MAX_CHARS:
        chosen = _cut(best, words)
    return chosen


#: What a pull-quote sounds like: a felt conviction, said plainly.
_QUOTABLE = [
    "Everyone deserves the same chance to rest, no matter who they are.",
    "Nobody should have to carry this alone.",
    "It made me feel that we are not alone, and that things can change.",
    "What I learned is that this belongs to all of us.",
]


def _cut(s: Sentence, words: list[TextWord]) -> Excerpt:
    """A too-long sentence cut at the last word that fits, timed by its words."""
    ws = [words[i] for i in s.words]
    kept = [w for w in ws if w.char_end - s.char_start <= QUOTE_HARD_MAX_CHARS - 1] or ws[:1]
    raw = s.raw[: kept[-1].char_end - s.char_start].rstrip(",;: ")
    text = trim_fillers(raw)[: QUOTE_HARD_MAX_CHARS - 1].rstrip() + "…"
    start, end = s.char_start, s.char_start + len(raw)
    return Excerpt(text, raw, kept[0].start, kept[-1].end, start, end, s.start_chance < 1.0)


#: Phrases embedded to choose a title from (each costs a little model time).
MAX_TITLE_CANDIDATES = 200
#: A word Whisper gave less than this probability is likely misheard: no title is built on it.
UNSURE_WORD = 0.5


def make_title(
    sentences: list[Sentence], summary_vec: np.ndarray, embedder, unsure: set[str] = frozenset()
) -> str:
    """A well-formed phrase of the narrator's own words closest in meaning to the summary."""
    best = choose_title(candidate_titles(sentences), summary_vec, embedder.encode, unsure)
    if best:
        return best
    # No phrase passes the rule (a very short or broken story): its shortest whole sentence.
    shortest = min(sentences, key=lambda s: len(s.text.split())) if sentences else None
    return _capitalise(shortest.text.rstrip(",.;:")) if shortest else ""


def candidate_titles(sentences: list[Sentence]) -> list[str]:
    """Grammatical phrases from the whole story (`narratives.stages.analyse.titles`)."""
    return title_candidates([s.text for s in sentences], limit=MAX_TITLE_CANDIDATES)


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text
