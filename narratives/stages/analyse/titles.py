"""Titles: a well-formed phrase in the narrator's own words, closest in meaning to the summary.

A title used to be any 2-5 words between stop words, which gave fragments ("Morning I baked her
rye"). Now candidates are whole grammatical units read off spaCy's parse of each sentence: noun
phrases with what attaches to them ("a bridge made of light", "the line for the sleep clinic")
and short whole sentences ("Nobody asked me"). `is_title_phrase` is the rule a title must pass,
written once and used both to choose a title and to measure titles (bench/tagging.py):

- 2 to 8 words, from one sentence, with letters;
- parsed alone it is one tree: a noun phrase (its head a noun, proper noun or number) or a clause
  (a verb with its subject);
- a noun phrase holds no clause of its own (a relative or participle clause is fine), no
  stray quote mark and no words said twice in a row;
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

from narratives.engines.nlp import get_pipeline

__all__ = ["is_title_phrase", "title_candidates", "choose_title", "MAX_TITLE_WORDS"]

MAX_TITLE_WORDS = 8
MIN_TITLE_WORDS = 2
_BAD_START = {"CCONJ", "SCONJ", "ADP", "PART", "AUX", "PUNCT", "INTJ"}
_BAD_END = {"DET", "ADP", "CCONJ", "SCONJ", "PART", "AUX", "PUNCT", "INTJ"}
_HEADS = {"NOUN", "PROPN", "NUM"}
_RELATIVE = {"that", "which", "who", "whom", "whose", "where", "when", "why"}
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
        nlp = get_pipeline()
    doc = nlp(title.strip().rstrip(".!?"))
    tokens = [t for t in doc if not t.is_space]
    if not tokens or not _edges_ok(tokens):
        return False
    roots = [t for t in tokens if t.head == t or t.head not in tokens]
    if len(roots) != 1:
        return False
    root = roots[0]
    words = [t.lower_ for t in tokens if t.is_alpha]
    if any(a == b for a, b in zip(words, words[1:], strict=False)) or _repeats(words):
        return False  # "A journey a journey"
    if sum(title.count(q) for q in '"“”') % 2 or re.search(r"\w['’](?:\s|$)(?<!s['’]\s)", title):
        return False  # a stray quote mark: "The pasta' at"
    # "My sister's flat": a short phrase's head noun is sometimes tagged as an adjective.
    noun_like = root.pos_ in _HEADS or (
        root.pos_ == "ADJ" and any(c.dep_ in {"poss", "det"} for c in root.children)
    )
    if noun_like:
        # A noun phrase may hold a relative or participle clause, not a clause of its own
        # ("Proper windows they sleep", "A fool his dreams weren't theirs").
        finite = [
            t for t in tokens
            if t.pos_ in {"VERB", "AUX"} and t.dep_ not in {"acl", "relcl", "amod", "compound"}
            and t.head.dep_ not in {"acl", "relcl"}
        ]  # fmt: skip
        # A relative clause with no relative word must leave a gap ("the people I met");
        # a complete clause there is a second sentence ("A fool his dreams weren't theirs").
        run_on = [
            t for t in tokens
            if t.dep_ == "relcl"
            and not any(c.lower_ in _RELATIVE for c in t.subtree)
            and any(c.dep_ in {"dobj", "attr", "acomp", "ccomp", "oprd"} for c in t.children)
        ]  # fmt: skip
        return not finite and not run_on
    subjects = [c for c in root.children if c.dep_ in {"nsubj", "nsubjpass", "expl"}]
    # A clause opens with its subject (or an adverb): "Proper windows they sleep" does not.
    opens = bool(subjects) and (
        tokens[0] in list(subjects[0].subtree) or tokens[0].pos_ in {"ADV", "SCONJ"}
    )
    return root.pos_ in {"VERB", "AUX"} and opens


def _repeats(words: list[str]) -> bool:
    """A phrase of two or more words said twice in a row ("a journey a journey")."""
    n = len(words)
    for size in range(2, n // 2 + 1):
        for i in range(n - 2 * size + 1):
            if words[i : i + size] == words[i + size : i + 2 * size]:
                return True
    return False


def _span_ok(span) -> bool:
    if not _edges_ok(list(span)):
        return False
    # A name could be one an anonymous narrator's story must hide.
    return not any(t.pos_ == "PROPN" for t in span)


def title_candidates(sentences: Sequence[str], nlp=None, limit: int = 200) -> list[str]:
    """Noun phrases (with what attaches to them) and short sentences, in story order."""
    if nlp is None:
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
