"""Titles: a well-formed phrase in the narrator's own words, closest in meaning to the summary.

A title used to be any 2-5 words between stop words, which gave fragments ("Morning I baked her
rye"). Now candidates are whole grammatical units read off spaCy's parse of each sentence: noun
phrases with what attaches to them ("a bridge made of light", "the line for the sleep clinic")
and short whole sentences ("Nobody asked me"). `is_title_phrase` is the rule a title must pass,
written once and used both to choose a title and to measure titles (bench/tagging.py):

- 2 to 8 words, from one sentence, with letters;
- parsed alone it is one tree: a noun phrase (its head a noun, proper noun or number) or a clause
  (a verb with its subject);
- it does not open with a conjunction, preposition, particle or auxiliary verb, nor end with a
  determiner, preposition, conjunction, particle, auxiliary or possessive word, or a verb that
  needs an object ("made", "told"): a dangling edge.

Words the recogniser was unsure of (low word probability) and names (proper nouns) are avoided:
a misheard word makes a bad title, and a name may have to be hidden.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["is_title_phrase", "title_candidates", "choose_title", "MAX_TITLE_WORDS"]

MAX_TITLE_WORDS = 8
MIN_TITLE_WORDS = 2
_BAD_START = {"CCONJ", "SCONJ", "ADP", "PART", "AUX", "PUNCT", "INTJ"}
_BAD_END = {"DET", "ADP", "CCONJ", "SCONJ", "PART", "AUX", "PUNCT", "INTJ"}
_HEADS = {"NOUN", "PROPN", "NUM"}
_FILLERS = {"um", "uh", "erm", "er", "hmm", "like", "yeah", "okay", "ok", "so", "well"}
#: Verbs that need what follows them: a title ending on one hangs ("...strangers made").
_NEEDS_OBJECT = set(
    """make give put tell bring keep find ask want need take get let say feel think show send
    buy pay call""".split()
)


def _edges_ok(tokens) -> bool:
    words = [t for t in tokens if not t.is_punct]
    if not MIN_TITLE_WORDS <= len(words) <= MAX_TITLE_WORDS:
        return False
    first, last = words[0], words[-1]
    if first.pos_ in _BAD_START or first.lower_ in _FILLERS:
        return False
    if last.pos_ in _BAD_END or last.lower_ in _FILLERS:
        return False
    # "her", "my", "their" at the end hang ("I baked her").
    if last.pos_ == "PRON" and last.dep_ == "poss":
        return False
    return not (last.pos_ in {"VERB", "AUX"} and last.lemma_.lower() in _NEEDS_OBJECT)


def is_title_phrase(title: str, nlp=None) -> bool:
    """The rule above, on a title parsed alone."""
    if not re.search(r"[^\W\d_]", title):
        return False
    if nlp is None:
        from narratives.engines.nlp import get_pipeline

        nlp = get_pipeline()
    doc = nlp(title.strip().rstrip(".!?"))
    tokens = [t for t in doc if not t.is_space]
    if not tokens or not _edges_ok(tokens):
        return False
    roots = [t for t in tokens if t.head == t or t.head not in tokens]
    if len(roots) != 1:
        return False
    root = roots[0]
    if root.pos_ in _HEADS:
        return True
    has_subject = any(c.dep_ in {"nsubj", "nsubjpass", "expl"} for c in root.children)
    return root.pos_ in {"VERB", "AUX"} and has_subject


def _span_ok(span) -> bool:
    if not _edges_ok(list(span)):
        return False
    # A name could be one an anonymous narrator's story must hide.
    return not any(t.pos_ == "PROPN" for t in span)


def title_candidates(sentences: Sequence[str], nlp=None, limit: int = 200) -> list[str]:
    """Noun phrases (with what attaches to them) and short sentences, in story order."""
    if nlp is None:
        from narratives.engines.nlp import get_pipeline

        nlp = get_pipeline()
    seen: dict[str, None] = {}
    for doc in nlp.pipe(list(sentences)):
        spans = []
        words = [t for t in doc if not t.is_punct]
        if MIN_TITLE_WORDS <= len(words) <= MAX_TITLE_WORDS:
            spans.append(doc[:])
        for chunk in doc.noun_chunks:
            if chunk.root.pos_ not in _HEADS:
                continue
            spans.append(chunk)
            # The chunk with what hangs off its head: "the line for the sleep clinic".
            sub = list(chunk.root.subtree)
            lo, hi = sub[0].i, sub[-1].i + 1
            if hi - lo == len(sub) and hi - lo <= MAX_TITLE_WORDS:
                spans.append(doc[lo:hi])
            # The chunk and one prepositional phrase after it.
            for child in chunk.root.rights:
                if child.dep_ in {"prep", "acl"}:
                    tail = list(child.subtree)
                    hi2 = tail[-1].i + 1
                    if hi2 - chunk.start <= MAX_TITLE_WORDS and len(tail) == hi2 - child.i:
                        spans.append(doc[chunk.start : hi2])
        for span in spans:
            if _span_ok(span):
                text = span.text.strip().rstrip(",;:.!?")
                seen.setdefault(text, None)
    phrases = list(seen)
    if len(phrases) > limit:
        picks = np.linspace(0, len(phrases) - 1, limit).round().astype(int)
        phrases = [phrases[i] for i in dict.fromkeys(picks.tolist())]
    return phrases


def choose_title(
    candidates: Sequence[str],
    summary_vec: np.ndarray,
    encode: Callable[[list[str]], np.ndarray],
    unsure_words: set[str] = frozenset(),
) -> str | None:
    """The candidate closest in meaning to the summary; a few words beat two, sure words beat
    words the recogniser doubted."""
    if not candidates:
        return None
    vecs = encode(list(candidates))
    scores = vecs @ summary_vec
    for i, phrase in enumerate(candidates):
        n = len(phrase.split())
        scores[i] += 0.02 * min(n, 5) - (0.02 * (n - 6) if n > 6 else 0.0)
        words = {re.sub(r"[^\w'-]", "", w).lower() for w in phrase.split()}
        if words & unsure_words:
            scores[i] -= 0.2
    # The best that also passes the rule when parsed alone (a gerund phrase does not).
    for i in np.argsort(-scores)[:20]:
        best = candidates[int(i)]
        best = best[:1].upper() + best[1:]
        if is_title_phrase(best):
            return best
    return None
