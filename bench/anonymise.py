"""Names and places found for anonymity, on sentences no one tuned on.

    .venv/bin/python bench/anonymise.py [--json] [--tune]

Reads the labelled names corpus in tests/data/names/ (sentences.jsonl, split once into a tuning
and a held-out half in split.json) and reports, on the held-out half (`--tune`: the tuning
half), the recall and precision of each detector of `narratives.stages.analyse.entities`:
the heuristic alone, spaCy's recogniser alone, and the two combined as the analysis stage
runs them (what it hides: finds the other detector overruled are listed, not hidden).
Recall: the labelled people and places that a detected span overlaps; precision: the detected
spans that overlap a labelled one. Each sentence is one transcript of evenly
timed words, as a recogniser without pauses would give it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from narratives.core.campaigns import load_campaign_file  # noqa: E402
from narratives.core.workspace import DEFAULTS_ROOT  # noqa: E402
from narratives.engines.nlp import get_pipeline  # noqa: E402
from narratives.stages.analyse.entities import (  # noqa: E402
    campaign_public_terms,
    entities_in,
    heuristic_entities,
    model_entities,
)
from narratives.stages.analyse.timing import align_words  # noqa: E402
from tests.corpus import transcript_of  # noqa: E402
from tests.names_corpus import score, split  # noqa: E402


def detectors(nlp, public):
    def run(fn):
        def detect(text: str) -> list[tuple[int, int]]:
            t = transcript_of(text)
            words = align_words(t, t.text)
            return [(e.char_start, e.char_end) for e in fn(t.text, words) if e.hide]

        return detect

    return {
        "heuristic": run(lambda text, words: heuristic_entities(text, words, public)),
        "model": run(lambda text, words: model_entities(text, words, public, nlp)),
        "combined": run(lambda text, words: entities_in(text, words, public, nlp=nlp)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--tune", action="store_true", help="score the tuning half instead")
    parser.add_argument("-v", "--verbose", action="store_true", help="list misses and extras")
    args = parser.parse_args()
    tune, held = split()
    half = tune if args.tune else held
    t0 = time.perf_counter()
    nlp = get_pipeline()
    # The campaigns' own capitalised words are public, as in the analysis stage.
    public = campaign_public_terms(
        [load_campaign_file(p) for p in sorted((DEFAULTS_ROOT / "campaigns").glob("*.toml"))]
    )
    figures = {name: score(half, fn) for name, fn in detectors(nlp, public).items()}
    seconds = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps({"half": "tune" if args.tune else "held_out", "n": len(half),
                          "seconds": seconds, **figures}, ensure_ascii=False))  # fmt: skip
        return
    which = "tuning" if args.tune else "held-out"
    n = figures["combined"]["labelled"]
    print(f"{which} half: {len(half)} sentences, {n} labelled people and places ({seconds} s)")
    print(f"{'detector':<10} {'recall':>7} {'precision':>10} {'found':>6}")
    for name, f in figures.items():
        print(f"{name:<10} {f['recall']:>7.3f} {f['precision']:>10.3f} {f['detected']:>6}")
        if args.verbose:
            print(f"    missed: {f['missed']}\n    extra:  {f['false']}")


if __name__ == "__main__":
    main()
