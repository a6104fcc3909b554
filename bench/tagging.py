"""Tags, routing, content notes, summaries, quotes and titles on stories no one tuned on.

    .venv/bin/python bench/tagging.py [--set ours|outside|both ...] [--titles] [--json]

Reads the labelled corpus in tests/data/corpus/ and reports every figure on its held-out halves
(split.json): "ours" (parts a-d, written by the team) and "outside" (four batches, f-h, i-k,
l-n and o-q, written independently by twelve writers, AI assistants given only
tests/data/corpus/outside-brief.md: never the code, the tag descriptions or our stories).
The shipped example stories (campaigns/examples.jsonl) are the tuning halves. For
comparison it also scores the held-out half the old way (tag descriptions only, no examples),
and measures what 10 editor corrections of tuning stories do: the model trained without those
10 stories, then with them added as corrections.

Excerpt checks run on each held-out story as written and, unless it was written unpunctuated,
as an unpunctuated transcript: the share of summary sentences and quotes that start at a
sentence start and end at a sentence end of the written story, and the share of titles that
pass `narratives.stages.analyse.titles.is_title_phrase`. It also scores the sentence cuts
themselves on each punctuated held-out story made unpunctuated (`tests.corpus.boundary_figures`).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from narratives.core.campaigns import load_campaign_file  # noqa: E402
from narratives.core.workspace import DEFAULTS_ROOT  # noqa: E402
from narratives.engines.embeddings import get_embedder  # noqa: E402
from narratives.stages.analyse.analyser import analyse_transcript  # noqa: E402
from narratives.stages.analyse.tagging import load_examples  # noqa: E402
from narratives.stages.analyse.titles import is_title_phrase  # noqa: E402
from tests.corpus import (  # noqa: E402
    BENCH_ONLY,
    HELD_OUT,
    OUTSIDE_HELD_OUT,
    analyse_stories,
    boundary_figures,
    correction_experiment,
    has_reference,
    rate,
    routing_figures,
    split,
    transcript_of,
    tuning_stories,
    versions,
    whole_sentence,
)


def excerpt_figures(held, campaigns, examples, cache, done):
    """Whole-sentence shares per version (stories whose punctuation gives a reference), and
    the share of titles passing the rule (every story, every version). `done`: the analyses
    of the stories as written, by id (made for routing already)."""
    whole = {"written": [], "unpunctuated": []}
    quotes = {"written": [], "unpunctuated": []}
    # (marked as having a guessed end, whole) per summary sentence and quote
    marks: dict[str, list[tuple[bool, bool]]] = {"written": [], "unpunctuated": []}
    titles, shown = [], []
    for s in held:
        for name, text, origin in versions(s):
            a = done.get(s.id) if text == s.text else None
            a = a or analyse_transcript(
                transcript_of(text), campaigns=campaigns, examples=examples, cache_dir=cache
            )
            if has_reference(s):
                for e in a.summary:
                    ok = whole_sentence(s, text, origin, e.char_start, e.char_end)
                    whole[name].append(ok)
                    marks[name].append((e.guessed, ok))
                if a.quote:
                    q = a.quote
                    ok = whole_sentence(s, text, origin, q.char_start, q.char_end)
                    quotes[name].append(ok and not q.text.endswith("…"))
                    marks[name].append((q.guessed, ok and not q.text.endswith("…")))
            ok = is_title_phrase(a.title)
            titles.append(ok)
            shown.append((s.id, name, a.title, ok))
    return {
        "summary_whole_sentences.written": rate(whole["written"]),
        "quote_whole_sentences.written": rate(quotes["written"]),
        "summary_whole_sentences.unpunctuated": rate(whole["unpunctuated"]),
        "quote_whole_sentences.unpunctuated": rate(quotes["unpunctuated"]),
        # How useful the "check where it starts and ends" mark is to an editor: how often it
        # shows, how often a marked excerpt is whole anyway, and an unmarked one (should be 1).
        "marked_guessed.unpunctuated": rate([m for m, _ in marks["unpunctuated"]]),
        "whole_when_marked.unpunctuated": rate([ok for m, ok in marks["unpunctuated"] if m]),
        "whole_when_unmarked.unpunctuated": rate([ok for m, ok in marks["unpunctuated"] if not m]),
        "title_grammatical": rate(titles),
        "titles": len(titles),
    }, shown


def held_out_figures(held, campaigns, examples, cache) -> tuple[dict, list]:
    """Every figure of one held-out set: routing and notes (descriptions only, learnt, and the
    correction experiment), then the excerpt checks."""
    learnt = analyse_stories(held, campaigns, examples, cache=cache)
    report: dict = {
        "stories": len(held),
        "descriptions_only": routing_figures(analyse_stories(held, campaigns, [], cache=cache)),
        "learnt": routing_figures(learnt),
    }
    before, after, ids = correction_experiment(campaigns, held, cache)
    report["without_10_tuning_stories"] = before
    report["with_them_as_10_corrections"] = after
    report["corrected_stories"] = ids
    done = {s.id: a for s, a in learnt}
    report["excerpts"], titles = excerpt_figures(held, campaigns, examples, cache, done)
    report["sentence_cuts_unpunctuated"] = boundary_figures(held)
    return report, titles


SETS = {
    "ours": ("heldout",),
    "outside": (*OUTSIDE_HELD_OUT, *BENCH_ONLY),
    "outside1": ("outside_heldout",),
    "outside2": ("outside2_heldout",),
    "outside3": ("outside3_heldout",),
    "outside4": ("outside4_heldout",),
    "both": HELD_OUT,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--titles", action="store_true", help="also list every held-out title")
    parser.add_argument(
        "--set",
        choices=sorted(SETS),
        action="append",
        help="held-out set(s) to score: ours (written by the team), outside (written outside "
        "the team; outside1 to outside4 are its four batches), both (default: "
        "outside and both)",
    )
    args = parser.parse_args()
    t0 = time.perf_counter()
    shipped = DEFAULTS_ROOT / "campaigns"
    campaigns = [load_campaign_file(p) for p in sorted(shipped.glob("*.toml"))]
    examples = load_examples(DEFAULTS_ROOT / "campaigns")
    get_embedder()
    report: dict = {"tuning_stories": len(tuning_stories()), "examples": len(examples)}
    shown = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.set or ["outside", "both"]:
            held = [s for half in SETS[name] for s in split(half)]
            report[name], shown[name] = held_out_figures(held, campaigns, examples, Path(tmp))
    report["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    cols = [
        "descriptions_only",
        "learnt",
        "without_10_tuning_stories",
        "with_them_as_10_corrections",
    ]
    print(f"tuning halves: {report['tuning_stories']} stories ({len(examples)} examples)")
    for name in args.set or ["outside", "both"]:
        r = report[name]
        print(f"\nheld-out set {name!r}: {r['stories']} stories")
        print(f"{'figure':44s}" + "".join(f"{c[:14]:>16s}" for c in cols))
        for k in r["learnt"]:
            print(f"{k:44s}" + "".join(f"{r[c][k]:16.2f}" for c in cols))
        print()
        for k, v in r["excerpts"].items():
            print(f"{k:44s}{v:16.2f}" if isinstance(v, float) else f"{k:44s}{v:16d}")
        print("\nsentence cuts in unpunctuated transcripts")
        for k, v in r["sentence_cuts_unpunctuated"].items():
            print(f"{k:44s}{v:16.2f}")
        if args.titles:
            for sid, version, title, ok in shown[name]:
                print(f"  {sid:6s} {version:13s} {'ok ' if ok else 'BAD'} {title}")
    print(f"\n{report['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
