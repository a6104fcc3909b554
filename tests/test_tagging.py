"""Tags, routing, content notes and excerpts on stories no one here tuned on.

The bounds hold the figures bench/tagging.py measured on the corpus's held-out half a little
below what was measured, so a regression fails. Only the held-out half is scored here; the
shipped example stories (campaigns/examples.jsonl) are the tuning half, and must stay so.
"""

from __future__ import annotations

import json

import pytest

from narratives.core.campaigns import load_campaigns
from narratives.core.config import AnalyseSettings
from narratives.core.errors import ConfigError, ModelNotAvailable
from narratives.core.workspace import DEFAULTS_ROOT, Workspace
from narratives.stages.analyse.analyser import analyse_transcript
from narratives.stages.analyse.content_notes import cue_hits, note_specs
from narratives.stages.analyse.sentences import TimedWord, split_spans
from narratives.stages.analyse.tagging import ExampleStory, check_examples, load_examples
from narratives.stages.analyse.titles import is_title_phrase
from tests.corpus import (
    SPLIT,
    analyse_stories,
    correction_experiment,
    has_reference,
    load_stories,
    rate,
    routing_figures,
    split,
    transcript_of,
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
    assert not set(halves["tune"]) & set(halves["heldout"])
    assert set(halves["tune"]) | set(halves["heldout"]) == {s.id for s in stories}


def test_shipped_examples_are_the_tuning_half_only():
    examples = load_examples(DEFAULTS_ROOT / "campaigns")
    tune = {s.text for s in split("tune")}
    held = {s.text for s in split("heldout")}
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


@pytest.mark.slow
def test_routing_holds_on_the_held_out_half(held_out):
    f = routing_figures(held_out)
    # Measured: 0.93, 0.85, 0.86, 0.93, 0.85.
    assert f["emotional-equity.recall"] >= 0.88
    assert f["emotional-equity.specificity"] >= 0.80
    assert f["neural-mandate.recall"] >= 0.82
    assert f["neural-mandate.specificity"] >= 0.88
    assert f["top1_tag_accuracy"] >= 0.80


@pytest.mark.slow
def test_content_notes_hold_on_the_held_out_half(held_out):
    f = routing_figures(held_out)
    assert f["notes.recall"] >= NOTES_RECALL
    assert f["notes.precision"] >= NOTES_PRECISION
    assert f["notes.grief.recall"] >= 0.78  # measured 0.83
    assert f["notes.named-people.precision"] >= 0.7  # measured 0.79


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
    before, after, _ = correction_experiment(campaigns, [s for s, _ in held_out], tmp_path)
    for key in (
        "emotional-equity.recall",
        "neural-mandate.recall",
        "top1_tag_accuracy",
    ):
        assert after[key] >= before[key] - 1e-9, key
    assert (
        sum(after[k] for k in after if "." in k and "notes" not in k)
        >= sum(before[k] for k in before if "." in k and "notes" not in k) - 0.05
    )


@pytest.fixture(scope="session")
def held_out_excerpts(tmp_path_factory):
    """Every held-out story as written and as an unpunctuated transcript, without tags."""
    out = []
    for s in split("heldout"):
        for name, text, origin in versions(s):
            a = analyse_transcript(transcript_of(text), campaigns=[])
            out.append((s, name, text, origin, a))
    return out


def _whole(rows, version):
    hits = []
    for s, name, text, origin, a in rows:
        if name != version or not has_reference(s):
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
    assert load_examples(tmp_path / "nowhere") == []


def test_check_examples_reports_unknown_labels_and_thin_tags(campaigns):
    examples = [ExampleStory("a story", ("no-such-tag",), ("no-such-note",))]
    errors, remarks = check_examples(examples, campaigns, ["grief"])
    assert any("no-such-tag" in e for e in errors)
    assert any("no-such-note" in e for e in errors)
    assert len(remarks) == sum(len(c.tags) for c in campaigns)


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
NOTES_RECALL = 0.66  # measured 0.71
NOTES_PRECISION = 0.64  # measured 0.70
UNPUNCTUATED_WHOLE = 0.42  # measured 0.46 (summaries) and 0.56 (quotes)


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
