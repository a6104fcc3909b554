"""Tags, routing, content notes and excerpts on stories no one here tuned on.

The bounds hold the figures bench/tagging.py measured on the corpus's held-out halves (ours,
and the stories written outside the team) a little below what was measured, so a regression
fails. Only held-out halves are scored here; the shipped example stories
(campaigns/examples.jsonl) are the tuning halves, and must stay so.
"""

from __future__ import annotations

import json
import re

import pytest

from narratives.core.campaigns import load_campaigns
from narratives.core.config import AnalyseSettings
from narratives.core.errors import ConfigError, ModelNotAvailable
from narratives.core.workspace import DEFAULTS_ROOT, Workspace
from narratives.stages.analyse.analyser import analyse_transcript
from narratives.stages.analyse.content_notes import cue_hits, note_specs
from narratives.stages.analyse.sentences import TimedWord, split_spans
from narratives.stages.analyse.tagging import (
    EXAMPLES_FILE,
    ExampleStory,
    check_examples,
    load_examples,
    train_words_model,
)
from narratives.stages.analyse.titles import is_title_phrase
from tests.corpus import (
    BENCH_ONLY,
    CALIBRATION,
    CALIBRATION_FILE,
    HELD_OUT,
    OUTSIDE_HELD_OUT,
    OUTSIDE_WRITERS,
    RESERVED,
    SPLIT,
    TUNING,
    analyse_stories,
    calibrate_note_threshold,
    calibrate_threshold,
    correction_experiment,
    examples_digest,
    has_reference,
    load_stories,
    rate,
    routing_figures,
    split,
    transcript_of,
    tuning_stories,
    versions,
    whole_sentence,
)

# ------------------------------------------------------------------ the corpus itself


def test_corpus_is_large_varied_and_split_once():
    stories = load_stories()
    assert len(stories) >= 150
    for tag in ("equal-access", "sleep-inequality", "grief-and-healing"):
        assert sum(s.main_tag == tag for s in stories) >= 20
    for tag in ("shared-dreamscapes", "neural-consent"):
        assert sum(s.main_tag == tag for s in stories) >= 20
    off = [s for s in stories if not s.tags]
    assert len(off) >= 40 and sum(s.hard_negative for s in off) >= 20
    assert all(40 <= len(s.text.split()) <= 200 for s in stories)
    halves = json.loads(SPLIT.read_text(encoding="utf-8"))
    assert set(halves) == {*TUNING, *CALIBRATION, *HELD_OUT, *RESERVED}
    seen: set[str] = set()
    for ids in halves.values():
        assert not seen & set(ids)  # no story in two halves
        seen |= set(ids)
    assert seen == {s.id for s in stories}
    # The stories written outside the team are halved on their own, per writer and stratum.
    outside = [s for s in stories if s.id[0] in "fgh"]
    assert len(outside) >= 150
    assert {s.id for s in outside} == set(halves["outside_tune"]) | set(halves["outside_heldout"])
    for writers, first, second in (
        ("fgh", "outside_tune", "outside_heldout"),
        ("ijk", "outside2_tune", "outside2_heldout"),
        ("lmn", "outside3_calibrate", "outside3_heldout"),
        ("opq", "outside4_calibrate", "outside4_heldout"),
        ("rst", "outside5_calibrate", "outside5_heldout"),
    ):
        batch = {s.id for s in stories if s.id[0] in writers}
        assert batch == set(halves[first]) | set(halves[second])
        for writer in writers:
            tune = [i for i in halves[first] if i[0] == writer]
            held = [i for i in halves[second] if i[0] == writer]
            assert abs(len(tune) - len(held)) <= 7  # at most one story per stratum apart


def test_shipped_examples_are_the_tuning_half_only():
    examples = load_examples(DEFAULTS_ROOT / "campaigns")
    tune = {s.text for s in tuning_stories()}
    held = {s.text for half in (*HELD_OUT, *CALIBRATION, *RESERVED) for s in split(half)}
    texts = {e.text for e in examples}
    assert texts == tune
    assert not texts & held


# ------------------------------------------------------------------ held-out figures


@pytest.fixture(scope="session")
def campaigns():
    return load_campaigns(Workspace(DEFAULTS_ROOT))


@pytest.fixture(scope="session")
def shipped_examples():
    return load_examples(DEFAULTS_ROOT / "campaigns")


@pytest.fixture(scope="session")
def held_out(campaigns, shipped_examples, tmp_path_factory):
    cache = tmp_path_factory.mktemp("example-vectors")
    return analyse_stories(split("heldout"), campaigns, shipped_examples, cache=cache)


@pytest.fixture(scope="session")
def held_out_outside(campaigns, shipped_examples, tmp_path_factory):
    """The held-out halves of the stories written outside the team (three batches)."""
    cache = tmp_path_factory.mktemp("example-vectors-outside")
    stories = [s for half in OUTSIDE_HELD_OUT for s in split(half)]
    return analyse_stories(stories, campaigns, shipped_examples, cache=cache)


#: Bounds a little below what bench/tagging.py measured on each held-out set, with the tag
#: neighbours, the word models and the thresholds calibrated on both calibration halves (0.35
#: and 0.4): recall and specificity per campaign, top tag, the other campaign's stories kept
#: out, content notes (recall, precision; note threshold 0.6, the name and place rules of stop
#: 31). Measured (stories):
#: outside1 (84): 0.97 / 0.88, 0.96 / 0.96, 0.95, 0.82 / 0.97, notes 0.84 / 0.75;
#: outside2 (81): 0.95 / 0.90, 0.96 / 0.90, 0.90, 0.90 / 0.94, notes 0.87 / 0.85;
#: ours (92): 0.97 / 0.89, 0.97 / 0.93, 0.86, 0.68 / 0.92, notes 0.83 / 0.71;
#: outside3 (82): 1.00 / 0.82, 0.93 / 1.00, 0.93, 0.82 / 0.97, notes 0.82 / 0.80.
HELD_OUT_BOUNDS = {
    "outside_heldout": (0.92, 0.83, 0.91, 0.91, 0.91, 0.77, 0.92, 0.79, 0.70),
    "outside2_heldout": (0.90, 0.85, 0.91, 0.85, 0.86, 0.85, 0.89, 0.82, 0.80),
    "heldout": (0.92, 0.84, 0.92, 0.88, 0.82, 0.63, 0.87, 0.78, 0.66),
    "outside3_heldout": (0.95, 0.77, 0.88, 0.95, 0.89, 0.77, 0.92, 0.77, 0.75),
}
_FIGURES = (
    "emotional-equity.recall",
    "emotional-equity.specificity",
    "neural-mandate.recall",
    "neural-mandate.specificity",
    "top1_tag_accuracy",
    "emotional-equity.specificity_other_campaign",
    "neural-mandate.specificity_other_campaign",
    "notes.recall",
    "notes.precision",
)


def _check_bounds(half: str, results) -> None:
    f = routing_figures(results)
    for key, bound in zip(_FIGURES, HELD_OUT_BOUNDS[half], strict=True):
        assert f[key] >= bound, (half, key, round(f[key], 3), bound)


@pytest.mark.slow
def test_routing_holds_on_stories_written_outside_the_team(held_out_outside):
    for half in OUTSIDE_HELD_OUT:
        ids = {s.id for s in split(half)}
        _check_bounds(half, [(s, a) for s, a in held_out_outside if s.id in ids])


def test_the_calibration_rule_takes_the_best_smaller_figure_and_the_higher_tie():
    on, off = [0.9, 0.8, 0.7, 0.45, 0.2], [0.1, 0.3, 0.5, 0.65]
    pick, table = calibrate_threshold(on, off, (0.4, 0.5, 0.6, 0.7))
    assert [(th, r, sp) for th, r, sp in table] == [
        (0.4, 0.8, 0.5), (0.5, 0.6, 0.5), (0.6, 0.6, 0.75), (0.7, 0.6, 1.0)
    ]  # fmt: skip
    assert pick == 0.7  # 0.6 and 0.7 tie at 0.6: the higher one


def test_shipped_tag_thresholds_are_the_calibrated_ones(campaigns):
    """Each campaign's threshold is what scripts/calibrate_tag_thresholds.py picked on the
    calibration halves, with the examples as shipped: changing either without calibrating again
    (`--write`) fails here. Measured at the picks (171 stories): emotional-equity (0.35) 0.96 /
    0.92, neural-mandate (0.4) 0.92 / 0.94."""
    recorded = json.loads(CALIBRATION_FILE.read_text(encoding="utf-8"))
    assert recorded["examples_sha256"] == examples_digest(
        DEFAULTS_ROOT / "campaigns" / EXAMPLES_FILE
    )
    assert recorded["stories"] == sum(len(split(half)) for half in CALIBRATION)
    for c in campaigns:
        r = recorded["campaigns"][c.slug]
        assert c.tag_threshold == r["pick"], (c.slug, r["pick"])
        row = next(row for row in r["table"] if row["threshold"] == r["pick"])
        assert min(row["recall"], row["specificity"]) >= 0.88, (c.slug, row)
    # The learnt content notes' threshold likewise (measured at 0.6: 0.80 / 0.83).
    notes = recorded["notes"]
    assert AnalyseSettings().learnt_note_threshold == notes["pick"], notes["pick"]
    row = next(row for row in notes["table"] if row["threshold"] == notes["pick"])
    assert min(row["recall"], row["precision"]) >= 0.75, row


def test_the_note_calibration_replays_the_flags_and_takes_the_best_smaller_figure():
    from types import SimpleNamespace as NS

    def analysed(flagged, *scores):
        notes = [NS(name=n, score=sc, evidence=[]) for n, sc in scores]
        return NS(content_notes=notes, flagged_notes=flagged)

    results = [
        (NS(notes=["grief"]), analysed(["grief"], ("grief", 0.8), ("medical", 0.3))),
        (NS(notes=["medical"]), analysed([], ("grief", 0.2), ("medical", 0.55))),
        (NS(notes=[]), analysed([], ("grief", 0.45), ("medical", 0.5))),
        (NS(notes=["self-harm"]), analysed([], ("self-harm", 0.9))),  # needs evidence
    ]
    pick, table = calibrate_note_threshold(results, 0.6, {"self-harm"}, (0.4, 0.5, 0.6))
    assert [(th, round(r, 2), round(p, 2)) for th, r, p in table] == [
        (0.4, 0.67, 0.5), (0.5, 0.67, 0.67), (0.6, 0.33, 1.0)
    ]  # fmt: skip
    assert pick == 0.5
    with pytest.raises(AssertionError, match="replay"):
        calibrate_note_threshold(results, 0.5, {"self-harm"})  # flags were made at 0.6


@pytest.mark.slow
def test_routing_holds_on_the_held_out_half(held_out):
    _check_bounds("heldout", held_out)


@pytest.mark.slow
def test_content_notes_hold_on_the_held_out_half(held_out):
    f = routing_figures(held_out)
    assert f["notes.recall"] >= NOTES_RECALL
    assert f["notes.precision"] >= NOTES_PRECISION
    assert f["notes.grief.recall"] >= 0.70  # measured 0.75
    # Measured 0.62: 0.74 before the lower-case and kin-word name rules, which raised
    # named-people recall on the outside batches from 0.69-0.75 to 0.78-0.90.
    assert f["notes.named-people.precision"] >= 0.57


@pytest.mark.slow
def test_routing_is_far_better_than_descriptions_alone(held_out, campaigns, tmp_path):
    stories = [s for s, _ in held_out]
    old = routing_figures(analyse_stories(stories, campaigns, []))
    new = routing_figures(held_out)
    for slug in ("emotional-equity", "neural-mandate"):
        assert new[f"{slug}.recall"] > old[f"{slug}.recall"] + 0.5


@pytest.mark.slow
def test_editor_corrections_do_not_lower_held_out_figures(campaigns, held_out, tmp_path):
    """10 tuning stories left out of the examples, then given back as editors' corrections."""
    stories = [s for s, _ in held_out]
    before, after, _ = correction_experiment(campaigns, stories, tmp_path)
    for key in ("emotional-equity.recall", "neural-mandate.recall"):
        assert after[key] >= before[key] - 1e-9, key
    # Top-1 of one draw of 10 stories moves by a story either way even when the stories come
    # back as full examples (measured on the tuning halves: 16 draws, it fell in 4 with
    # corrections and in 7 with full examples; mean +0.005 and -0.003). Measured here: 0.83
    # before, 0.85 after (0.82 and 0.83 before the word models). More than one story lower
    # fails.
    one_story = 1 / sum(1 for s in stories if s.tags)
    assert after["top1_tag_accuracy"] >= before["top1_tag_accuracy"] - one_story - 1e-9
    assert (
        sum(after[k] for k in after if "." in k and "notes" not in k)
        >= sum(before[k] for k in before if "." in k and "notes" not in k) - 0.05
    )


@pytest.fixture(scope="session")
def held_out_excerpts(campaigns, shipped_examples, held_out, held_out_outside, tmp_path_factory):
    """Every held-out story (all held-out halves) as written, and as an unpunctuated
    transcript (all but batch 3), analysed as bench/tagging.py does. A story's text as written
    was analysed for routing already, so only its unpunctuated versions are analysed here."""
    cache = tmp_path_factory.mktemp("example-vectors-excerpts")
    done = {s.id: a for s, a in [*held_out, *held_out_outside]}
    out = []
    for half in HELD_OUT:
        if half in BENCH_ONLY:
            continue
        for s in split(half):
            for name, text, origin in versions(s):
                if text == s.text:
                    a = done[s.id]
                elif half == "outside3_heldout":
                    # Measured by bench/tagging.py (unpunctuated 0.86 / 0.89), not analysed
                    # again here, to keep the suite's time.
                    continue
                else:
                    a = analyse_transcript(
                        transcript_of(text),
                        campaigns=campaigns,
                        examples=shipped_examples,
                        cache_dir=cache,
                    )
                out.append((s, name, text, origin, a))
    return out


def _outside(story) -> bool:
    return story.id[0] in OUTSIDE_WRITERS


def _whole(rows, version, outside=False):
    hits = []
    for s, name, text, origin, a in rows:
        if name != version or not has_reference(s) or _outside(s) != outside:
            continue
        for e in [*a.summary, a.quote]:
            ok = whole_sentence(s, text, origin, e.char_start, e.char_end)
            hits.append(ok and not e.text.endswith("…"))
    return rate(hits), len(hits)


@pytest.mark.slow
def test_summaries_and_quotes_are_whole_sentences(held_out_excerpts):
    written, n = _whole(held_out_excerpts, "written")
    assert n > 100 and written >= 0.97
    flat, n = _whole(held_out_excerpts, "unpunctuated")
    assert n > 100 and flat >= UNPUNCTUATED_WHOLE
    # Stories written outside the team (batches 1 and 2): measured 1.00 written; unpunctuated
    # summaries 0.76 and 0.79, quotes 0.87 and 0.82 (0.66-0.75 with the logistic-regression
    # boundary model; 0.37 and 0.32 with the clause rules before it).
    written, n = _whole(held_out_excerpts, "written", outside=True)
    assert n > 100 and written >= 0.97
    flat, n = _whole(held_out_excerpts, "unpunctuated", outside=True)
    assert n > 100 and flat >= 0.72
    # Where a cut is a guess, the excerpt says so (the review page asks an editor to check
    # it): every unpunctuated excerpt that is not whole is marked.
    unmarked, marked = [], 0
    for s, name, text, origin, a in held_out_excerpts:
        if name != "unpunctuated" or not has_reference(s):
            continue
        for e in [*a.summary, a.quote]:
            marked += e.guessed
            if not e.guessed and not e.text.endswith("…"):
                if not whole_sentence(s, text, origin, e.char_start, e.char_end):
                    unmarked.append((s.id, e.text))
    assert unmarked == [] and marked > 0


@pytest.mark.slow
def test_every_title_is_a_grammatical_phrase(held_out_excerpts):
    titles = [a.title for *_, a in held_out_excerpts]
    assert all(titles)
    assert rate([is_title_phrase(t) for t in titles]) >= 0.97


# ------------------------------------------------------------------ rules


@pytest.mark.slow
def test_title_rule():
    assert is_title_phrase("A bridge made of light")
    assert is_title_phrase("The line for the sleep clinic")
    assert is_title_phrase("Nobody asked me")
    assert not is_title_phrase("Sharing a dream with strangers made")  # needs an object
    assert not is_title_phrase("The doors closed before")
    assert not is_title_phrase("And the doors closed before")
    assert not is_title_phrase("Rye")  # one word
    assert not is_title_phrase("of the")
    assert not is_title_phrase("1 2 3")
    # Fragments seen in review: a clause inside a noun phrase, a stray quote, a repetition.
    assert not is_title_phrase("A fool his dreams weren't theirs")
    assert is_title_phrase("My sister's flat")
    assert not is_title_phrase("The pasta' at the exact same moment")
    assert not is_title_phrase("A journey a journey")
    assert is_title_phrase("The walls in our block")
    assert is_title_phrase("The room where we slept")


@pytest.mark.slow
def test_a_pause_cuts_an_unpunctuated_run_and_is_sure():
    words_a = "we waited for hours outside the centre in the rain with the children".split()
    words_b = "nobody came to open the doors until the evening and then they turned us away".split()
    text = " ".join(words_a + words_b + words_a)
    timed, t, pos = [], 0.0, 0
    for k, w in enumerate(words_a + words_b + words_a):
        start = text.index(w, pos)
        pos = start + len(w)
        if k in (len(words_a), len(words_a) + len(words_b)):
            t += 1.2  # a pause before the next sentence
        timed.append(TimedWord(start, pos, t, t + 0.3))
        t += 0.35
    spans = split_spans(text, timed)
    starts = [text[s.start : s.end].split()[0] for s in spans]
    assert starts == ["we", "nobody", "we"]
    assert all(s.sure for s in spans)


def test_punctuated_sentences_are_not_cut():
    text = "I waited. " + " ".join(["and then we waited"] * 9) + " some more. It ended."
    spans = split_spans(text, [])
    assert [text[s.start : s.end] for s in spans][0] == "I waited."
    assert len(spans) == 3 and all(s.sure for s in spans)


def test_cues_flag_rare_notes():
    specs = {s.name: s for s in note_specs(AnalyseSettings())}
    assert cue_hits(specs["violence"], "and in march I got punched in the face by a lad")
    assert cue_hits(specs["self-harm"], "some nights I think about hurting myself again")
    assert not cue_hits(specs["violence"], "we had a friendly chat about the punchline")
    assert not cue_hits(specs["self-harm"], "I hurt my knee on the stairs")
    # Everyday phrases are not warnings.
    assert not cue_hits(specs["grief"], "My phone died during the session")
    assert cue_hits(specs["grief"], "since my nan passed away I have not slept")
    assert not cue_hits(specs["violence"], "an abuse of my data, and we are fighting for it")
    assert not cue_hits(specs["violence"], "a fight with the council about the clinic")
    assert not cue_hits(specs["medical"], "it was a stroke of luck, the operation of the clinic")
    assert cue_hits(specs["medical"], "she had a stroke last spring")
    # The wider lists: ways people say these things without the clinical word...
    assert cue_hits(specs["self-harm"], "her cousin took his own life the winter before")
    assert cue_hits(specs["self-harm"], "for a while I did not want to be here any more")
    assert cue_hits(specs["self-harm"], "I kept the crisis line number in my wallet")
    assert cue_hits(specs["violence"], "the bouncer threw him against the shutters")
    assert cue_hits(specs["violence"], "my stepdad used to hit us when he drank")
    assert cue_hits(specs["violence"], "he pulled a knife on me and pointed the knife at my chest")
    assert cue_hits(specs["medical"], "after his second stroke he could not hold a cup")
    assert cue_hits(specs["medical"], "the GP signed me off for a month")
    # ...and the everyday phrases that look like them.
    assert not cue_hits(specs["violence"], "then it hit me that she was right")
    assert not cue_hits(specs["violence"], "my coach pushed me to apply for the course")
    assert not cue_hits(specs["self-harm"], "my first attempt at sourdough was a brick")
    assert not cue_hits(specs["self-harm"], "I want to live somewhere with a garden")
    assert not cue_hits(specs["medical"], "my last stroke of the oar took us over the line")
    everyday = {
        "violence": [
            "the storm hit us on the second night",
            "my brother always beats me at chess",
            "she threw me a surprise party",
            "we got beaten two nil in the final",
            "the whole film was shot in the old docks",
            "my show bombed and then the bath bombs sold out",
        ],
        "self-harm": [
            "I didn't want to live in London",
            "the kids didn't want to go on the rides",
            "the divorce ended her life as she knew it",
            "the team did better without me",
        ],
        "medical": [
            "she's a nurse and he studied medicine",
            "laughter is the best medicine",
            "the comedian had us in stitches",
            "the kids on their tablets all evening",
            "the Great Depression hit our town hard",
        ],
    }
    for note, texts in everyday.items():
        for text in texts:
            assert not cue_hits(specs[note], text), (note, text)


def test_a_cue_must_be_a_regular_expression():
    with pytest.raises(ConfigError, match="cues"):
        note_specs(
            AnalyseSettings(
                content_notes=[{"name": "x", "description": "a long description", "cues": ["("]}]
            )
        )


def test_examples_file_errors_name_the_line(tmp_path):
    (tmp_path / "examples.jsonl").write_text('{"text": "fine", "tags": []}\nnot json\n')
    with pytest.raises(ConfigError, match=r"examples.jsonl:2"):
        load_examples(tmp_path)
    # A lone surrogate is valid JSON but no text: named, not a crash later.
    (tmp_path / "examples.jsonl").write_text('{"text": "fine"}\n{"text": "a \\ud800 b"}\n')
    with pytest.raises(ConfigError, match=r"examples.jsonl:2"):
        load_examples(tmp_path)
    assert load_examples(tmp_path / "nowhere") == []


def test_check_examples_reports_unknown_labels_and_thin_tags(campaigns):
    examples = [ExampleStory("a story", ("no-such-tag",), ("no-such-note",))]
    errors, remarks = check_examples(examples, campaigns, ["grief"])
    assert any("no-such-tag" in e for e in errors)
    assert any("no-such-note" in e for e in errors)
    assert len(remarks) == sum(len(c.tags) for c in campaigns)


def test_a_word_model_learns_a_label_from_the_words_stories_share():
    import numpy as np

    marked = [f"story {i} where the kettle whistled at dawn and we sat" for i in range(6)]
    plain = [f"story {i} about a long walk by the river with friends" for i in range(6)]
    y = np.array([True] * 6 + [False] * 6)
    model = train_words_model("tag:kettle", marked + plain, y)
    assert model.learnt and (model.positives, model.negatives) == (6, 6)
    assert model.probability("the kettle whistled again") > 0.6
    assert model.probability("a walk by the river") < 0.4
    assert train_words_model("tag:kettle", marked + plain, y) is model  # trained once
    # Too few either way, or no word shared by two stories: nothing is learnt from words.
    assert not train_words_model("tag:thin", marked[:4] + plain, y[2:]).learnt
    unique = [f"w{i}a w{i}b" for i in range(12)]
    assert not train_words_model("tag:unique", unique, y).learnt
    # Two different lists of texts are two different models, however their texts are cut.
    first = ["the paid room quiet\0dogs bark", "whistled kettle", *marked[2:], *plain]
    second = ["the paid room quiet", "dogs bark\0whistled kettle", *marked[2:], *plain]
    assert train_words_model("tag:cut", first, y) is not train_words_model("tag:cut", second, y)
    # Only the most recent models are kept (a review server sees a new set per correction).
    from narratives.stages.analyse import tagging

    for i in range(tagging._MODELS_KEPT + 5):
        train_words_model(f"tag:many-{i}", marked + plain, y)
    assert len(tagging._CACHE.models) == tagging._MODELS_KEPT
    assert train_words_model("tag:kettle", marked + plain, y) is not model  # trained again


@pytest.mark.slow
def test_the_word_models_never_see_fillers(campaigns, shipped_examples, monkeypatch):
    """Corrections are raw transcripts: "um" must not become evidence for a tag."""
    from narratives.stages.analyse import scoring
    from narratives.stages.analyse.scoring import Corrections

    seen: list[str] = []
    real = scoring.train_words_model

    def spy(name, texts, y):
        seen.extend(texts)
        return real(name, texts, y)

    monkeypatch.setattr(scoring, "train_words_model", spy)
    spoken = "So, um, we went to the session and, uh, it was, um, fine. Um, that's all really."
    corrections = Corrections(examples={("neural-mandate", "shared-dreamscapes"): [(spoken, True)]})
    analyse_transcript(
        transcript_of(spoken),
        campaigns=campaigns,
        examples=shipped_examples,
        corrections=corrections,
    )
    assert any("went to the session" in t for t in seen)
    assert not [t for t in seen if re.search(r"\b(?:um|uh)\b", t, re.I)]


@pytest.mark.slow
def test_a_tag_score_is_the_mean_of_its_embedding_and_word_models(
    campaigns, shipped_examples, monkeypatch
):
    import numpy as np

    from narratives.stages.analyse import scoring
    from narratives.stages.analyse.tagging import LabelModel

    class Sure:
        """A classifier that gives every story the probability p."""

        def __init__(self, p):
            self.p = p

        def predict_proba(self, rows):
            return np.array([[1 - self.p, self.p]] * len(rows))

    text = split("heldout")[0].text

    def scores_with(p):
        monkeypatch.setattr(
            scoring, "train_words_model", lambda name, texts, y: LabelModel(name, 9, 9, Sure(p))
        )
        a = analyse_transcript(transcript_of(text), campaigns=campaigns, examples=shipped_examples)
        return {(c, t.name): t.score for c, tags in a.campaigns.items() for t in tags.tags}

    low, high = scores_with(0.0), scores_with(1.0)
    assert low.keys() == high.keys() and len(low) == sum(len(c.tags) for c in campaigns)
    assert all(abs(high[k] - low[k] - 0.5) < 2e-3 for k in low), (low, high)


@pytest.mark.slow
def test_without_examples_tags_fall_back_to_descriptions(campaigns):
    a = analyse_transcript(transcript_of(split("heldout")[0].text), campaigns=campaigns)
    assert {c.method for c in a.campaigns.values()} == {"description"}
    assert all(c.threshold == 0.45 for c in a.campaigns.values())


@pytest.mark.slow
def test_campaign_files_check_their_examples(ctx):
    from click.testing import CliRunner

    from narratives.cli import cli

    path = ctx.workspace.campaigns_dir / "examples.jsonl"
    lines = len(path.read_text(encoding="utf-8").splitlines())
    with path.open("a", encoding="utf-8") as f:
        f.write("not json\n")
        f.write(json.dumps({"text": "x", "tags": ["made-up"]}) + "\n")
    result = CliRunner().invoke(cli, ["campaigns", "check"])
    assert result.exit_code == 2
    # Every bad line is reported with its number, not only the first.
    assert f"examples.jsonl:{lines + 1}: not an example story" in result.output
    assert f"examples.jsonl:{lines + 2}: tags no campaign defines: made-up" in result.output


def test_a_damaged_spacy_model_is_refused(tmp_path, monkeypatch):
    import shutil

    from narratives.engines import nlp

    folder = nlp._folder(nlp.SHIPPED_PIPELINE)
    copy = tmp_path / "model"
    shutil.copytree(folder, copy)
    (copy / "meta.json").write_text("{}", encoding="utf-8")
    monkeypatch.setattr(nlp, "_folder", lambda spec: copy)
    monkeypatch.setattr(nlp, "_LOADED", {})
    with pytest.raises(ModelNotAvailable, match="do not match the pinned digest"):
        nlp.get_pipeline()


# Measured on the held-out half by bench/tagging.py; the bounds sit a little below.
NOTES_RECALL = 0.78  # measured 0.83 (0.80 before the wider cues and place rules)
NOTES_PRECISION = 0.66  # measured 0.71 (0.75 before the name rules of stop 31)
#: Summaries 0.77, quotes 0.86 (0.67 and 0.75 with the logistic-regression boundary model,
#: 0.46 and 0.56 with the clause rules before it).
UNPUNCTUATED_WHOLE = 0.72


@pytest.mark.slow
def test_cli_tag_correction_teaches_and_is_audited(ctx):
    from click.testing import CliRunner

    from narratives.cli import cli
    from narratives.stages.analyse import stage as analyse
    from narratives.store.audit import history
    from narratives.store.users import add_user
    from tests.test_analyse import _register

    add_user(ctx, "kai", "a long enough password", actor="setup")
    settings = ctx.workspace.root / "narratives.toml"
    settings.write_text(settings.read_text().replace("[render]\n", "[render]\nenabled = false\n"))
    story = next(s for s in split("heldout") if not s.tags and not s.hard_negative)
    t = transcript_of(story.text, narrative_id="ab" * 32)
    nid = _register(ctx, t)
    before = analyse.run(ctx, nid).campaigns["neural-mandate"]
    assert not before.on_topic
    runner = CliRunner()
    args = ["tag", nid[:10], "neural-mandate", "shared-dreamscapes", "--as", "kai", "--json"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    fit = json.loads(result.stdout)
    assert fit["on_topic"] and fit["top"] == "shared-dreamscapes"
    corrected = next(t for t in fit["tags"] if t["name"] == "shared-dreamscapes")
    old = next(t for t in before.tags if t.name == "shared-dreamscapes")
    assert corrected["corrected"] is True and corrected["score"] > old.score
    with ctx.db.connect() as conn:
        assert [r["action"] for r in history(conn, "narrative", nid)] == ["tag.correct"]
    assert fit["gained"] == ["neural-mandate"] and fit["outputs"]["drafts"] >= 1
    assert _draft_states(ctx, nid) == {"pending_review"}
    # Saying it does not apply after all: the story leaves the campaign, its drafts leave review.
    args = [*args, "--does-not-apply"]
    undo = json.loads(runner.invoke(cli, args).stdout)
    assert undo["lost"] == ["neural-mandate"] and not undo["on_topic"]
    assert _draft_states(ctx, nid) == {"rejected"}
    bad = runner.invoke(cli, ["tag", nid[:10], "neural-mandate", "no-such", "--as", "kai"])
    assert bad.exit_code == 5 and "no-such" in bad.output and "shared-dreamscapes" in bad.output
    unknown = runner.invoke(cli, ["tag", nid[:10], "no-campaign", "x", "--as", "kai"])
    assert unknown.exit_code == 2 and "neural-mandate" in unknown.output


def _draft_states(ctx, narrative_id: str) -> set[str]:
    import sqlalchemy as sa

    from narratives.store.schema import drafts

    with ctx.db.connect() as conn:
        rows = conn.execute(sa.select(drafts.c.state).where(drafts.c.narrative_id == narrative_id))
        return {r.state for r in rows}


def test_example_vectors_are_computed_in_one_batch_and_read_back(tmp_path, monkeypatch):
    import numpy as np

    from narratives.stages.analyse import tagging

    monkeypatch.setattr(tagging._CACHE, "arrays", {})
    calls: list[list[str]] = []

    def compute_many(texts):
        calls.append(list(texts))
        return [np.full(3, len(t), dtype=np.float32) for t in texts]

    tagging.cached_array("story", "one", lambda t: np.zeros(3), tmp_path)
    got = tagging.cached_arrays("story", ["one", "three", "fives"], compute_many, tmp_path)
    assert calls == [["three", "fives"]]  # "one" was cached; the rest in one call
    assert [a.tolist() for a in got] == [[0, 0, 0], [5, 5, 5], [5, 5, 5]]
    tagging._CACHE.arrays.clear()
    again = tagging.cached_arrays("story", ["three", "one"], compute_many, tmp_path)
    assert len(calls) == 1 and [a.tolist() for a in again] == [[5, 5, 5], [0, 0, 0]]
    # Another model's vectors are never taken from memory; a damaged or empty file or one
    # of the wrong width is computed again.
    other = tagging.cached_arrays("story", ["one"], compute_many, tmp_path / "m2", model="m2")
    assert calls[-1] == ["one"] and other[0].tolist() == [3, 3, 3]
    files = sorted(tmp_path.glob("story-*.npy"))
    files[0].write_bytes(b"")
    files[1].write_bytes(b"\x93NUMPY garbage")
    files[2].unlink()
    np.save(files[2], np.zeros(7, dtype=np.float32))
    tagging._CACHE.arrays.clear()
    tagging.cached_arrays("story", ["one", "three", "fives"], compute_many, tmp_path, dim=3)
    assert sorted(calls[-1]) == ["fives", "one", "three"]


def _fill_cache_rounds(root: str, rounds: int, n_texts: int, barrier, out: str) -> None:
    """One of two processes filling the same fresh caches at once (see the test below)."""
    import time
    from pathlib import Path

    import numpy as np

    from narratives.stages.analyse import tagging

    computed, wrong = [], []

    def compute_many(texts):
        computed.append([r, list(texts)])
        time.sleep(0.01)  # long enough for the other process to reach the same chunk
        return [np.full(3, float(t.split()[-1]), dtype=np.float32) for t in texts]

    for r in range(rounds):
        tagging._CACHE.arrays.clear()  # only the disk is shared, as between processes
        texts = [f"round {r} story {i}" for i in range(n_texts)]
        barrier.wait()
        got = tagging.cached_arrays("story", texts, compute_many, Path(root) / str(r), dim=3)
        if [a.tolist() for a in got] != [[float(i)] * 3 for i in range(n_texts)]:
            wrong.append(r)
    Path(out).write_text(json.dumps({"computed": computed, "wrong": wrong}), encoding="utf-8")


def test_processes_filling_one_cache_split_the_work_and_never_repeat_it(tmp_path):
    """Pool or Dask workers that find a workspace's example cache empty split it by chunks:
    two real processes, 200 rounds of fresh caches started together; every vector is
    computed exactly once across both, both read every vector right, and each did some."""
    import multiprocessing

    from narratives.stages.analyse.tagging import CACHE_CHUNK

    rounds, n_texts = 200, 3 * CACHE_CHUNK + 5
    mp = multiprocessing.get_context("spawn")
    barrier = mp.Barrier(2)
    outs = [tmp_path / f"out{k}.json" for k in range(2)]
    procs = [
        mp.Process(
            target=_fill_cache_rounds, args=(str(tmp_path), rounds, n_texts, barrier, str(o))
        )
        for o in outs
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert [p.exitcode for p in procs] == [0, 0]
    results = [json.loads(o.read_text(encoding="utf-8")) for o in outs]
    assert [r["wrong"] for r in results] == [[], []]
    for r in range(rounds):
        done = [t for res in results for rr, texts in res["computed"] if rr == r for t in texts]
        assert sorted(done) == sorted(f"round {r} story {i}" for i in range(n_texts)), r
    # The work was split within rounds, not taken whole by whichever process came first.
    split_rounds = [
        r
        for r in range(rounds)
        if all(any(rr == r for rr, _ in res["computed"]) for res in results)
    ]
    assert len(split_rounds) > rounds // 2, len(split_rounds)


def test_a_chunk_held_by_a_dead_process_is_computed_by_the_next(tmp_path, monkeypatch):
    """The lock of a process killed mid-chunk is gone with it (the OS drops it): the next
    caller takes the chunk at once and computes what is missing."""
    import subprocess
    import sys
    import time

    import numpy as np

    from narratives.stages.analyse import tagging

    texts = [f"story {i}" for i in range(5)]
    lock = tagging._chunk_lock_path(tmp_path, tagging._cache_keys("story", texts))
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from filelock import FileLock; "
         "FileLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(120)",
         str(lock)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    holder.kill()
    holder.wait()
    tagging._CACHE.arrays.clear()
    calls = []

    def compute_many(ts):
        calls.append(list(ts))
        return [np.ones(2, dtype=np.float32) for _ in ts]

    monkeypatch.setattr(tagging, "_CHUNK_WAIT_SECONDS", 60.0)
    t0 = time.monotonic()
    got = tagging.cached_arrays("story", texts, compute_many, tmp_path)
    assert time.monotonic() - t0 < 30  # the dead holder's lock was not waited for
    assert calls == [texts] and len(got) == 5
    assert len(list(tmp_path.glob("story-*.npy"))) == 5


def test_a_chunk_held_too_long_is_computed_anyway(tmp_path, monkeypatch):
    """A process that holds a chunk and hangs costs the work again, never a stuck run."""
    import threading
    import time

    import numpy as np
    from filelock import FileLock

    from narratives.stages.analyse import tagging

    monkeypatch.setattr(tagging, "_CHUNK_WAIT_SECONDS", 0.2)
    monkeypatch.setattr(tagging._CACHE, "arrays", {})
    texts = ["one story", "another story"]
    path = tagging._chunk_lock_path(tmp_path, tagging._cache_keys("story", texts))
    held, release = threading.Event(), threading.Event()

    def hold():
        with FileLock(path, thread_local=False):
            held.set()
            release.wait(10)

    t = threading.Thread(target=hold)
    t.start()
    assert held.wait(5)
    t0 = time.monotonic()
    try:
        got = tagging.cached_arrays("story", texts, lambda ts: [np.zeros(2) for _ in ts], tmp_path)
        waited = time.monotonic() - t0
    finally:
        release.set()
        t.join()
    assert waited >= 0.2  # it waited its turn first, then did the work itself
    assert [a.tolist() for a in got] == [[0, 0], [0, 0]]


@pytest.mark.slow
def test_each_embedding_model_keeps_its_own_example_vectors(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from narratives.stages.analyse import tagging

    monkeypatch.setattr(tagging._CACHE, "arrays", {})  # a memory hit would write no file
    from narratives.engines.embeddings import get_embedder
    from narratives.stages.analyse.scoring import _model_folder

    real = get_embedder()
    other = SimpleNamespace(name=real.name, sha256="0" * 64, location=real.location)
    assert _model_folder(real) != _model_folder(other)
    story = split("tune")[0]
    analyse_transcript(
        transcript_of(story.text),
        campaigns=load_campaigns(Workspace(DEFAULTS_ROOT)),
        examples=[ExampleStory(s.text, s.tags, s.notes) for s in split("tune")[:12]],
        cache_dir=tmp_path,
    )
    folders = [p.name for p in tmp_path.iterdir()]
    assert folders == [_model_folder(real)]
    assert len(list((tmp_path / folders[0]).glob("story-*.npy"))) == 12
