"""Where sentences end in speech written down without punctuation: a learnt model.

Without punctuation, "...and we drove home | then the cat..." and "...told me | the cat..."
look alike to rules. MiniLM with a small trained adapter (`narratives.engines.sentence_starts`)
reads the words around each gap in context and gives the chance that a sentence starts there.
It was trained on punctuated spoken-style stories stripped of punctuation and capitals
(`scripts/train_sentence_boundaries.py`: its training text and the corpus's tuning halves,
never a held-out story). Cuts are then chosen together, not one by one: the most likely cuts
under a prior on sentence length, so one run-on is not cut into scraps.

`defaults/sentences/boundaries.json` holds the cut settings and the adapter files' SHA-256;
the adapter is in `defaults/sentences/adapter/`.
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
    "load_boundary_model",
    "normalise_words",
]

BOUNDARY_MODEL = Path(__file__).resolve().parents[2] / "defaults" / "sentences" / "boundaries.json"


def normalise_words(text: str) -> list[str]:
    """The words of `text` as an unpunctuated recogniser writes them: lower case, no
    punctuation (a word of punctuation alone becomes "")."""
    return [re.sub(r"[^\w'’-]", "", w).lower().strip("-") for w in text.split()]


@dataclass(frozen=True)
class BoundaryModel:
    """The settings cuts are chosen with, and the adapter that scores the gaps."""

    #: SHA-256 of each file in the adapter folder, as training wrote them.
    adapter_files: dict[str, str]
    #: log P(a sentence has n words), n = 1..len; longer ones take the last value.
    length_prior: list[float]
    #: How much the length prior counts against the per-gap evidence.
    prior_weight: float
    #: Added to every cut's log-odds (negative: fewer, surer cuts).
    cut_bias: float
    min_words: int
    max_words: int
    trained_on: dict

    def log_odds(self, words: list[str]) -> list[float]:
        """Per gap before words[k] (k >= 1), the log-odds that a sentence starts there;
        `words` as `normalise_words` gives them, none empty."""
        from narratives.engines.sentence_starts import get_sentence_start_model

        return get_sentence_start_model(self.adapter_files).log_odds(words)

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
                adapter_files=d["adapter_files"],
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
