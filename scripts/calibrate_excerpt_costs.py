"""Choose the cost of a guessed sentence end for summaries and quotes, on the calibration halves.

    .venv/bin/python scripts/calibrate_excerpt_costs.py [--json]

In an unpunctuated transcript without pauses, sentence ends are guessed by the boundary model,
and each guessed end carries its chance of being right. A summary sentence or quote pays
`cost x (1 - chance)` per end (`narratives.stages.analyse.excerpts`). This script chooses the
two costs on the corpus's calibration halves (`outside3_calibrate`, `outside4_calibrate`:
stories the boundary model never trained on; never examples) as unpunctuated transcripts:
for each, the value in its grid with the highest share of excerpts that are whole written
sentences; ties to the smaller value. The rule was written down before any figure. Each story
is analysed once and the choice is replayed per value.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from narratives.core.campaigns import load_campaign_file  # noqa: E402
from narratives.core.workspace import DEFAULTS_ROOT  # noqa: E402
from narratives.stages.analyse import analyser, excerpts  # noqa: E402
from narratives.stages.analyse.tagging import load_examples  # noqa: E402
from narratives.stages.analyse.timing import excerpt  # noqa: E402
from tests.corpus import (  # noqa: E402
    CALIBRATION,
    has_reference,
    split,
    transcript_of,
    versions,
    whole_sentence,
)

SUMMARY_GRID = (0.6, 1.0, 2.0, 4.0, 8.0)
QUOTE_GRID = (2.0, 4.0, 8.0, 16.0)


def _cases() -> list[tuple]:
    """Per calibration story with punctuation, its unpunctuated version and the arguments
    the analysis passed to the summary and quote choices."""
    shipped = DEFAULTS_ROOT / "campaigns"
    campaigns = [load_campaign_file(p) for p in sorted(shipped.glob("*.toml"))]
    examples = load_examples(shipped)
    seen: dict[str, tuple] = {}
    real_summary, real_quote = analyser.choose_summary, analyser.choose_quote

    def summary(*args):
        seen["summary"] = args
        return real_summary(*args)

    def quote(*args):
        seen["quote"] = args
        return real_quote(*args)

    analyser.choose_summary, analyser.choose_quote = summary, quote
    cases = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for story in [s for half in CALIBRATION for s in split(half)]:
                if not has_reference(story):
                    continue
                for name, text, origin in versions(story):
                    if name != "unpunctuated":
                        continue
                    seen.clear()
                    analyser.analyse_transcript(
                        transcript_of(text), campaigns=campaigns, examples=examples,
                        cache_dir=Path(tmp),
                    )  # fmt: skip
                    cases.append((story, text, origin, seen["summary"], seen.get("quote")))
    finally:
        analyser.choose_summary, analyser.choose_quote = real_summary, real_quote
    return cases


def _pick(table: dict[float, float]) -> float:
    best = max(table.values())
    return min(v for v, share in table.items() if share == best)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    cases = _cases()
    kept = excerpts.GUESSED_END_COST, excerpts.QUOTE_GUESSED_END_COST
    summary, quote = {}, {}
    try:
        for cost in SUMMARY_GRID:
            excerpts.GUESSED_END_COST = cost
            hits = [
                whole_sentence(s, text, origin, e.char_start, e.char_end)
                for s, text, origin, chosen_from, _ in cases
                for e in map(excerpt, excerpts.choose_summary(*chosen_from))
            ]
            summary[cost] = round(sum(hits) / len(hits), 3)
        for cost in QUOTE_GRID:
            excerpts.QUOTE_GUESSED_END_COST = cost
            hits = [
                whole_sentence(s, text, origin, e.char_start, e.char_end)
                and not e.text.endswith("…")
                for s, text, origin, _, chosen_from in cases
                if chosen_from
                for e in [excerpts.choose_quote(*chosen_from)]
            ]
            quote[cost] = round(sum(hits) / len(hits), 3)
    finally:
        excerpts.GUESSED_END_COST, excerpts.QUOTE_GUESSED_END_COST = kept
    report = {
        "stories": len(cases),
        "summary": {"shares": summary, "pick": _pick(summary), "shipped": kept[0]},
        "quote": {"shares": quote, "pick": _pick(quote), "shipped": kept[1]},
    }
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{len(cases)} unpunctuated calibration stories: whole-sentence share per cost")
    for name in ("summary", "quote"):
        r = report[name]
        row = "  ".join(f"{c:g}: {v:.3f}" for c, v in r["shares"].items())
        print(f"{name:8} {row}   pick {r['pick']:g}, shipped {r['shipped']:g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
