"""Where sentences end in speech written down without punctuation: a learnt model.

Without punctuation, "...and we drove home | then the cat..." and "...told me | the cat..."
look alike to rules. A logistic regression over the words and part-of-speech tags around each
gap between two words, and the parse arcs that cross it, gives the chance that a sentence
starts there. It was trained on punctuated spoken-style stories stripped of punctuation and
capitals (`scripts/train_sentence_boundaries.py`: its training text and the corpus's tuning
halves, never a held-out story). Cuts are then chosen together, not one by one: the most
likely cuts under a prior on sentence length, so one run-on is not cut into scraps.

The weights are a small JSON file shipped with the package; this module needs no scikit-learn.
"""

from __future__ import annotations

import json
import math
import re
import threading
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BOUNDARY_MODEL",
    "BoundaryModel",
    "gap_features",
    "load_boundary_model",
    "normalise_words",
]

BOUNDARY_MODEL = Path(__file__).resolve().parents[2] / "defaults" / "sentences" / "boundaries.json"


def normalise_words(text: str) -> list[str]:
    """The words of `text` as an unpunctuated recogniser writes them: lower case, no
    punctuation (a word of punctuation alone becomes "")."""
    return [re.sub(r"[^\w'’-]", "", w).lower().strip("-") for w in text.split()]


def gap_features(words: list[str], doc) -> list[dict[str, float]]:
    """Features of each gap between two words: entry k-1 describes the gap before words[k].

    `doc` is spaCy's parse of `" ".join(words)` (words as `normalise_words` gives them)."""
    n = len(words)
    starts, pos = [], 0
    for w in words:
        starts.append(pos)
        pos += len(w) + 1
    at = {t.idx: t for t in doc}
    toks = [at.get(s) for s in starts]
    heads = [(t.i, t.head.i) for t in doc]

    def word(j: int) -> str:
        return words[j] if 0 <= j < n else ("<s>" if j < 0 else "</s>")

    def tag(j: int) -> str:
        t = toks[j] if 0 <= j < n else None
        return t.tag_ if t is not None else ("BOS" if j < 0 else "EOS")

    out: list[dict[str, float]] = []
    for i in range(1, n):
        f = {
            "w0=" + word(i): 1.0,
            "w-1=" + word(i - 1): 1.0,
            "w+1=" + word(i + 1): 1.0,
            "w-2=" + word(i - 2): 1.0,
            "p0=" + tag(i): 1.0,
            "p-1=" + tag(i - 1): 1.0,
            "p+1=" + tag(i + 1): 1.0,
            "p-2=" + tag(i - 2): 1.0,
            "p-1p0=" + tag(i - 1) + "|" + tag(i): 1.0,
            "p0p+1=" + tag(i) + "|" + tag(i + 1): 1.0,
            "w-1p0=" + word(i - 1) + "|" + tag(i): 1.0,
            "p-1w0=" + tag(i - 1) + "|" + word(i): 1.0,
        }
        t, p = toks[i], toks[i - 1]
        if t is not None:
            f["d0=" + t.dep_] = 1.0
            f["spacy_start"] = float(bool(t.is_sent_start))
            f["head_left"] = float(t.head.i < t.i)
        if p is not None:
            f["d-1=" + p.dep_] = 1.0
            if t is not None:
                # Parse arcs joining a word left of the gap to one right of it.
                cross = sum(1 for a, b in heads if min(a, b) <= p.i < max(a, b))
                f[f"cross={min(cross, 4)}"] = 1.0
        out.append(f)
    return out


@dataclass(frozen=True)
class BoundaryModel:
    """The learnt weights and the settings cuts are chosen with."""

    weights: dict[str, float]
    intercept: float
    #: log P(a sentence has n words), n = 1..len; longer ones take the last value.
    length_prior: list[float]
    #: How much the length prior counts against the per-gap evidence.
    prior_weight: float
    #: Added to every cut's log-odds (negative: fewer, surer cuts).
    cut_bias: float
    min_words: int
    max_words: int
    trained_on: dict

    def log_odds(self, features: list[dict[str, float]]) -> list[float]:
        """Per gap, the log-odds that a sentence starts there."""
        w = self.weights
        return [self.intercept + sum(w.get(k, 0.0) * v for k, v in f.items()) for f in features]

    def _prior(self, n: int) -> float:
        return self.length_prior[min(n, len(self.length_prior)) - 1]

    def choose_cuts(self, log_odds: list[float]) -> list[int]:
        """Word indexes where sentences start (besides 0): the best segmentation by the
        gaps' evidence and the length prior. `log_odds[k-1]` is the gap before word k."""
        n = len(log_odds) + 1
        lo_len, hi_len = self.min_words, self.max_words
        best = [-math.inf] * (n + 1)
        back = [0] * (n + 1)
        best[0] = 0.0
        for b in range(1, n + 1):
            for a in range(max(0, b - hi_len), b):
                if best[a] == -math.inf:
                    continue
                short = b - a < lo_len and not (a == 0 and b == n)
                val = best[a] + self.prior_weight * self._prior(b - a) - (50.0 if short else 0.0)
                if a > 0:
                    val += log_odds[a - 1] + self.cut_bias
                if val > best[b]:
                    best[b], back[b] = val, a
        cuts, b = [], n
        while b > 0:
            a = back[b]
            if a > 0:
                cuts.append(a)
            b = a
        return sorted(cuts)


_LOCK = threading.Lock()
_LOADED: dict[Path, BoundaryModel] = {}


def load_boundary_model(path: Path = BOUNDARY_MODEL) -> BoundaryModel:
    """The shipped model, read once per process."""
    with _LOCK:
        if path not in _LOADED:
            d = json.loads(path.read_text(encoding="utf-8"))
            _LOADED[path] = BoundaryModel(
                weights=d["weights"],
                intercept=d["intercept"],
                length_prior=d["length_prior"],
                prior_weight=d["prior_weight"],
                cut_bias=d["cut_bias"],
                min_words=d["min_words"],
                max_words=d["max_words"],
                trained_on=d["trained_on"],
            )
        return _LOADED[path]


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 50.0), -50.0)))
