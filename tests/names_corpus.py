"""The labelled names corpus in tests/data/names/: loading, the fixed split, and scoring.

`sentences.jsonl` holds sentences written for measuring name and place detection (common and
rare first names, names at sentence start and in lower-case unpunctuated transcripts,
hyphenated, accented, spelled-out and initialled names, places with "St.", and sentences with
no names but capitalised words). Each has the people and places an anonymous narrator would
want hidden. `split.json` fixes, once, which sentences are the tuning half and which the
held-out half (`make_split` wrote it and refuses to write it again); figures are reported on
the held-out half only (bench/anonymise.py).
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

NAMES = Path(__file__).resolve().parent / "data" / "names"
SENTENCES = NAMES / "sentences.jsonl"
SPLIT = NAMES / "split.json"


@dataclass(frozen=True)
class Sentence:
    id: str
    style: str
    text: str
    #: (text, kind) of each person or place to hide.
    entities: tuple[tuple[str, str], ...]


def load_sentences() -> list[Sentence]:
    out = []
    for n, line in enumerate(SENTENCES.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        d = json.loads(line)
        ents = tuple((e["text"], e["kind"]) for e in d["entities"])
        for text, _ in ents:
            if text not in d["text"]:
                raise ValueError(f"{SENTENCES}:{n}: {text!r} is not in the sentence")
        out.append(Sentence(d["id"], d["style"], d["text"], ents))
    return out


def make_split(seed: int = 14) -> None:
    """Write split.json once: half of each style to tuning, half held out."""
    if SPLIT.exists():
        raise SystemExit(f"{SPLIT} exists: the split is made once")
    rng = random.Random(seed)
    by_style: dict[str, list[str]] = {}
    for s in load_sentences():
        by_style.setdefault(s.style, []).append(s.id)
    tune, held = [], []
    for ids in by_style.values():
        rng.shuffle(ids)
        half = len(ids) // 2
        tune += ids[:half]
        held += ids[half:]
    SPLIT.write_text(
        json.dumps({"seed": seed, "tune": sorted(tune), "held_out": sorted(held)}, indent=1) + "\n",
        encoding="utf-8",
    )


def split() -> tuple[list[Sentence], list[Sentence]]:
    """(tuning half, held-out half)."""
    ids = json.loads(SPLIT.read_text(encoding="utf-8"))
    by_id = {s.id: s for s in load_sentences()}
    return [by_id[i] for i in ids["tune"]], [by_id[i] for i in ids["held_out"]]


def _spans(text: str, needles: Iterable[str]) -> list[tuple[int, int]]:
    spans = []
    for needle in needles:
        start = text.find(needle)
        while start >= 0:
            spans.append((start, start + len(needle)))
            start = text.find(needle, start + 1)
    return spans


def score(
    sentences: Iterable[Sentence], detect: Callable[[str], list[tuple[int, int]]]
) -> dict[str, float | int]:
    """Recall (labelled entities overlapped by a detected span) and precision (detected spans
    that overlap a labelled entity) of `detect` (text -> character spans)."""
    gold_n = gold_hit = found_n = found_ok = 0
    misses, false = [], []
    for s in sentences:
        gold = _spans(s.text, [t for t, _ in s.entities])
        found = detect(s.text)
        for g in gold:
            gold_n += 1
            if any(a < g[1] and g[0] < b for a, b in found):
                gold_hit += 1
            else:
                misses.append(s.text[g[0] : g[1]])
        for f in found:
            found_n += 1
            if any(a < f[1] and f[0] < b for a, b in gold):
                found_ok += 1
            else:
                false.append(s.text[f[0] : f[1]])
    return {
        "recall": round(gold_hit / gold_n, 3) if gold_n else 1.0,
        "precision": round(found_ok / found_n, 3) if found_n else 1.0,
        "labelled": gold_n,
        "detected": found_n,
        "missed": misses,
        "false": false,
    }


if __name__ == "__main__":
    make_split()
