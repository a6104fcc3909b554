"""The analysis stage on the six sample narratives, transcribed once per session with the
shipped Whisper tiny.en, and analysed with the shipped all-MiniLM-L6-v2."""

from __future__ import annotations

import json
import math

import pytest
import sqlalchemy as sa

from narratives.core.campaigns import load_campaigns
from narratives.core.clock import utcnow
from narratives.core.config import AnalyseSettings
from narratives.core.errors import ConfigError, InvalidState, ModelNotAvailable, NotFound
from narratives.records.analysis import Analysis
from narratives.records.transcript import Segment, Transcript, Word
from narratives.stages.analyse import stage as analyse
from narratives.stages.analyse.abstractive import abstractive_summary
from narratives.stages.analyse.analyser import analyse_transcript
from narratives.stages.analyse.entities import find_entities
from narratives.stages.analyse.excerpts import MAX_TITLE_CANDIDATES, candidate_titles
from narratives.stages.analyse.fillers import trim_fillers
from narratives.stages.analyse.stage import correct_tag, load_analysis, load_corrections
from narratives.stages.analyse.timing import align_words, split_sentences
from narratives.stages.analyse.titles import MAX_TITLE_WORDS, is_title_phrase
from narratives.store.audit import history
from narratives.store.schema import narratives as narratives_table
from narratives.store.stage_runs import get_run, stage_run

pytestmark = pytest.mark.slow

SAMPLES = {
    "amara-sanctuary-line": "amara-sanctuary-line.wav",
    "dev-missed-bus": "dev-missed-bus.mp4",
    "lena-grandmother": "lena-grandmother.m4a",
    "priya-neurosync": "priya-neurosync.flac",
    "tomas-night-shift": "tomas-night-shift.mp3",
    "yusuf-assembly": "yusuf-assembly.ogg",
}

EXPECTED = {
    "amara-sanctuary-line": ("emotional-equity", "equal-access"),
    "tomas-night-shift": ("emotional-equity", "sleep-inequality"),
    "lena-grandmother": ("emotional-equity", "grief-and-healing"),
    "yusuf-assembly": ("neural-mandate", "shared-dreamscapes"),
    "priya-neurosync": ("neural-mandate", "neural-consent"),
}


@pytest.fixture(scope="session")
def sample_transcripts(processed_samples) -> dict[str, Transcript]:
    """The six samples, transcribed once per session by the pipeline (see conftest)."""
    _ctx, done = processed_samples
    assert set(done) == set(SAMPLES)
    return {name: transcript for name, (_nid, transcript) in done.items()}


@pytest.fixture(scope="session")
def embedder():
    from narratives.engines.embeddings import get_embedder

    return get_embedder("all-MiniLM-L6-v2", threads=1)


@pytest.fixture(scope="session")
def sample_analyses(sample_transcripts, embedder) -> dict[str, Analysis]:
    from narratives.core.workspace import DEFAULTS_ROOT, Workspace

    campaigns = load_campaigns(Workspace(DEFAULTS_ROOT))
    return {
        name: analyse_transcript(t, campaigns=campaigns, embedder=embedder)
        for name, t in sample_transcripts.items()
    }


def _register(ctx, transcript: Transcript, label: str = "sample") -> str:
    """A narrative row, its transcript.json and a `done` transcribe run, as the pipeline leaves
    them."""
    nid = transcript.narrative_id
    now = utcnow()
    with ctx.db.begin() as conn:
        conn.execute(
            narratives_table.insert().values(
                id=nid, created_at=now, updated_at=now, size_bytes=1, label=label
            )
        )
    folder = ctx.workspace.narrative_dir(nid)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "transcript.json").write_text(json.dumps(transcript.to_dict()), encoding="utf-8")
    with stage_run(ctx.db, nid, "transcribe") as h:
        h.engine, h.model = transcript.engine, transcript.model
    return nid


# ------------------------------------------------------------------ quality bar on the samples


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_sample_gets_its_tag_and_is_on_topic(sample_analyses, name):
    campaign, tag = EXPECTED[name]
    result = sample_analyses[name].campaigns[campaign]
    assert result.top == tag, [(t.name, t.score) for t in result.tags]
    assert result.on_topic
    assert result.tags[0].name == tag and result.tags[0].score >= result.threshold
    assert tag in result.applied


def test_mundane_dream_is_off_topic_for_both_campaigns(sample_analyses):
    result = sample_analyses["dev-missed-bus"]
    assert set(result.campaigns) == {"emotional-equity", "neural-mandate"}
    for slug, c in result.campaigns.items():
        assert not c.on_topic, (slug, [(t.name, t.score) for t in c.tags])
        assert c.applied == []
        assert all(t.score < c.threshold for t in c.tags)


def test_on_topic_samples_are_off_topic_for_the_other_campaign(sample_analyses):
    for name, (campaign, _) in EXPECTED.items():
        other = "neural-mandate" if campaign == "emotional-equity" else "emotional-equity"
        assert not sample_analyses[name].campaigns[other].on_topic, name


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_summary_and_quote_are_the_narrators_words_with_times(
    sample_transcripts, sample_analyses, name
):
    transcript, result = sample_transcripts[name], sample_analyses[name]
    trimmed = trim_fillers(transcript.text)
    assert not result.empty
    assert 1 <= len(result.summary) <= 3
    excerpts = [*result.summary, result.quote]
    for e in excerpts:
        assert e.text and e.text in trimmed, e.text
        assert e.raw in transcript.text
        assert transcript.text[e.char_start : e.char_end] == e.raw
        assert 0 <= e.start < e.end <= transcript.duration + 1e-6
    starts = [s.start for s in result.summary]
    assert starts == sorted(starts)
    assert len(result.quote.text) <= 200
    assert result.title and result.title.lower() in transcript.text.lower()
    assert 2 <= len(result.title.split()) <= MAX_TITLE_WORDS
    assert is_title_phrase(result.title), result.title
    assert result.language == "en"
    assert -1 <= result.sentiment.compound <= 1


def test_an_unpunctuated_transcript_still_gets_a_short_summary(sample_transcripts, embedder):
    """Without punctuation the sentence splitter sees one sentence: it is cut at Whisper's
    segment ends and into pieces, so the summary is a few of them, not the whole story."""
    import re as _re

    words = " ".join(t.text for t in sample_transcripts.values())
    flat = _re.sub(r"[^\w\s'’-]", "", words).lower()
    result = analyse_transcript(_transcript(flat), campaigns=[], embedder=embedder)
    assert not result.empty and len(flat.split()) > 300
    assert 1 <= len(result.summary) <= 3
    assert all(len(s.raw.split()) <= 45 for s in result.summary)
    assert len(result.summary_text) < 1200
    for s in result.summary:
        assert flat[s.char_start : s.char_end] == s.raw


def test_title_candidates_come_from_the_whole_story():
    said = [f"On day {i} the number {i * 7} bus came late again." for i in range(130)]
    said.append("My grandmother said rest should not be bought.")
    t = _transcript(" ".join(said))
    sentences = split_sentences(t.text, align_words(t, t.text), t)
    phrases = candidate_titles(sentences)
    assert len(phrases) == MAX_TITLE_CANDIDATES
    assert any(p in said[-1] for p in phrases)  # the last sentence is in the running
    assert any(p in said[0] for p in phrases)


def test_summary_does_not_open_with_filler(sample_analyses, sample_transcripts):
    # Whisper wrote "So, I work nights..." for this sample.
    result = sample_analyses["tomas-night-shift"]
    assert sample_transcripts["tomas-night-shift"].text.startswith("So,")
    first = result.summary[0]
    assert first.raw.startswith("So,")
    assert first.text.startswith("I work")  # "I work nights" (plain), "I worked" (batched)
    # The trimmed quote starts at "I", not at "So".
    words = sample_transcripts["tomas-night-shift"].words
    so = next(w for w in words if w.text.strip().startswith("So"))
    assert first.start > so.start


def test_lena_grief_note_and_entities(sample_analyses, sample_transcripts):
    from narratives.core.workspace import DEFAULTS_ROOT, Workspace

    result = sample_analyses["lena-grandmother"]
    notes = {n.name: n for n in result.content_notes}
    campaign_thresholds = [
        c.content_notes.threshold for c in load_campaigns(Workspace(DEFAULTS_ROOT))
    ]
    assert notes["grief"].flagged
    assert notes["grief"].score >= max(campaign_thresholds)
    assert notes["grief"].score == max(n.score for n in result.content_notes)
    # Self-harm is flagged on its cues alone: a grief story that says nothing of it is not.
    assert not notes["self-harm"].flagged and not notes["self-harm"].evidence
    ents = {e.text: e for e in result.entities}
    assert ents["Rosa"].kind == "person"
    assert ents["Valparaiso"].kind == "place"
    duration = sample_transcripts["lena-grandmother"].duration
    text = sample_transcripts["lena-grandmother"].text
    for e in result.entities:
        assert 0 <= e.start < e.end <= duration
        assert text[e.char_start : e.char_end] == e.text
    assert notes["named-people"].evidence == ["Rosa"]
    assert notes["identifying-places"].evidence == ["Valparaiso"]


def test_no_content_notes_flagged_for_the_mundane_dream(sample_analyses):
    result = sample_analyses["dev-missed-bus"]
    assert result.flagged_notes == []
    assert result.entities == []


def test_analysis_round_trips_through_json(sample_analyses):
    result = sample_analyses["lena-grandmother"]
    data = json.loads(json.dumps(result.to_dict()))
    assert data["summary_text"] == result.summary_text
    assert data["campaigns"]["emotional-equity"]["applied"] == ["grief-and-healing"]
    again = Analysis.from_dict(data)
    assert again == result


# ------------------------------------------------------------------ fillers and entities


@pytest.mark.parametrize(
    "raw, trimmed",
    [
        ("So, um, I work nights at the depot.", "I work nights at the depot."),
        ("There were two lines, you know, one for us.", "There were two lines, one for us."),
        ("I was, uh, standing in line.", "I was standing in line."),
        ("It was fine, you know.", "It was fine."),
        ("Um I slept. So, then I woke.", "I slept. Then I woke."),
        ("So many people came.", "So many people came."),
        ("Do you know the way?", "Do you know the way?"),
        ("I mean it. Well, I mean, the summer was over.", "I mean it. The summer was over."),
        (
            "My umbrella was under the errand boy's arm.",
            "My umbrella was under the errand boy's arm.",
        ),
    ],
)
def test_trim_fillers(raw, trimmed):
    assert trim_fillers(raw) == trimmed


def _transcript(text: str, nid: str = "a" * 64, duration: float | None = None) -> Transcript:
    """A transcript with one word every 0.4 s (for tests that need exact words)."""
    words, t = [], 0.0
    for token in text.split():
        words.append(Word(t, t + 0.3, " " + token))
        t += 0.4
    seg = Segment(0, 0.0, t, " " + text, words)
    return Transcript(nid, "en", duration or t + 1.0, [seg] if text else [], "test", "test")


def test_entities_heuristic():
    t = _transcript(
        "Yesterday my friend Jonas Berg drove me from Porto to the sea. Jonas laughed. "
        "On Monday I told Dr Okafor about it."
    )
    ents = [(e.text, e.kind) for e in find_entities(t)]
    assert ("Jonas Berg", "person") in ents
    assert ("Porto", "place") in ents
    assert ("Jonas", "person") in ents  # sentence-initial, but a person seen before
    assert ("Okafor", "person") in ents
    assert not any(name in ("Yesterday", "On", "Monday", "I") for name, _ in ents)
    jonas = next(e for e in find_entities(t) if e.text == "Jonas Berg")
    assert jonas.start == pytest.approx(1.2) and jonas.end == pytest.approx(1.9)


def test_a_name_that_only_opens_sentences_is_still_a_name():
    """No mid-sentence mention to learn it from: a capitalised word that only opens sentences
    and is rare in lower case is a name; ordinary words opening sentences are not."""

    def names(text):
        return [e.text for e in find_entities(_transcript(text))]

    assert names("Zoë was my best friend. Zoë died last year and I miss her.") == ["Zoë", "Zoë"]
    assert names("Rosa's laugh filled the clinic.") == ["Rosa"]  # not "Rosa's"
    assert names("Sleep was hard. Sleep never came. Everyone waited. Sanctuary closed.") == []
    # The same word written in lower case elsewhere is an ordinary word.
    assert names("Dreamers met. We were dreamers all along.") == []


def test_campaign_terms_are_not_private_names():
    t = _transcript("At the Dreamscape Assembly I met Rosa.")
    names = [e.text for e in find_entities(t, public_terms={"dreamscape", "assembly"})]
    assert names == ["Rosa"]


# ------------------------------------------------------------------ empty and near-empty


@pytest.mark.parametrize("text", ["", "Thanks."])
def test_silence_is_nothing_to_analyse(text, embedder):
    result = analyse_transcript(_transcript(text), campaigns=[], embedder=embedder)
    assert result.empty
    assert "nothing to analyse" in result.reason
    assert result.summary == [] and result.quote is None and result.title == ""
    assert result.campaigns == {} and result.content_notes == []
    assert Analysis.from_dict(result.to_dict()) == result


def test_stage_records_an_empty_analysis(ctx):
    nid = _register(ctx, _transcript("", nid="b" * 64))
    result = analyse.run(ctx, nid)
    assert result.empty
    assert load_analysis(ctx.workspace, nid).empty
    row = get_run(ctx.db, nid, "analyse")
    assert row.status == "done" and row.output["empty"] is True


# ------------------------------------------------------------------ the stage, files and rows


def test_run_writes_analysis_and_stage_row(ctx, sample_transcripts):
    transcript = sample_transcripts["amara-sanctuary-line"]
    nid = _register(ctx, transcript, "amara")
    result = analyse.run(ctx, nid)
    path = ctx.workspace.narrative_dir(nid) / "analysis.json"
    assert json.loads(path.read_text(encoding="utf-8")) == json.loads(json.dumps(result.to_dict()))
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    row = get_run(ctx.db, nid, "analyse")
    assert row.status == "done"
    assert row.engine == "extractive-minilm"
    assert row.model == "all-MiniLM-L6-v2"
    assert "transformers" in row.version
    assert row.seconds is not None and row.seconds > 0
    # With the shipped examples (the stage learns from the workspace's), Amara's "the same
    # Dreamscape" also reaches shared-dreamscapes (0.53; 0.35 before the independently written
    # stories joined the examples): a false positive on a sample, while on the held-out halves
    # fewer emotional-equity stories reach neural-mandate than before (test_tagging.py).
    assert row.output["top"]["emotional-equity"] == "equal-access"
    assert row.output["top"] == {s: c.top for s, c in result.campaigns.items() if c.on_topic}
    assert result.campaigns["emotional-equity"].top == "equal-access"

    # Done: a second run reads the file instead of analysing again.
    path.write_text(json.dumps({**result.to_dict(), "title": "kept"}), encoding="utf-8")
    assert analyse.run(ctx, nid).title == "kept"
    assert analyse.run(ctx, nid, force=True).title == result.title


def test_run_needs_a_finished_transcription(ctx, sample_transcripts):
    transcript = sample_transcripts["yusuf-assembly"]
    nid = transcript.narrative_id
    now = utcnow()
    with ctx.db.begin() as conn:
        conn.execute(
            narratives_table.insert().values(
                id=nid, created_at=now, updated_at=now, size_bytes=1, label="yusuf"
            )
        )
    with pytest.raises(InvalidState, match="not transcribed"):
        analyse.run(ctx, nid)
    with pytest.raises(NotFound):
        load_analysis(ctx.workspace, nid)


def test_tag_corrections_force_and_teach(ctx, sample_transcripts):
    dev = _register(ctx, sample_transcripts["dev-missed-bus"], "dev")
    yusuf = _register(ctx, sample_transcripts["yusuf-assembly"], "yusuf")
    assert not analyse.run(ctx, dev).campaigns["neural-mandate"].on_topic
    analyse.run(ctx, yusuf)

    before = next(
        t for t in analyse.run(ctx, dev).campaigns["neural-mandate"].tags
        if t.name == "shared-dreamscapes"
    )  # fmt: skip
    # An editor says the mundane dream is a shared dreamscape after all.
    after = correct_tag(ctx, dev, "neural-mandate", "shared-dreamscapes", True, "kai")
    nm = after.campaigns["neural-mandate"]
    assert nm.on_topic and nm.top == "shared-dreamscapes"
    tag = next(t for t in nm.tags if t.name == "shared-dreamscapes")
    assert tag.corrected is True and tag.applies
    # The story is now an example of the tag: the model learnt from it, so its score rose.
    assert tag.score > before.score + 0.1
    corrections = load_corrections(ctx, yusuf)
    examples = corrections.examples[("neural-mandate", "shared-dreamscapes")]
    assert examples == [(sample_transcripts["dev-missed-bus"].text, True)]

    # And says the tag does not apply to yusuf: forced off, whatever its score.
    after = correct_tag(ctx, yusuf, "neural-mandate", "shared-dreamscapes", False, "fayez")
    nm = after.campaigns["neural-mandate"]
    forced = next(t for t in nm.tags if t.name == "shared-dreamscapes")
    assert forced.corrected is False and not forced.applies and forced.score > nm.threshold
    assert nm.top == "neural-consent"
    assert nm.tags[-1].name == "shared-dreamscapes"

    with ctx.db.connect() as conn:
        rows = history(conn, "narrative", yusuf)
    assert [r["action"] for r in rows] == ["tag.correct"]
    assert rows[0]["actor"] == "fayez"
    assert rows[0]["before"]["applies"] is True
    assert rows[0]["after"] == {
        "campaign": "neural-mandate",
        "tag": "shared-dreamscapes",
        "applies": False,
    }
    # The stored analysis is the re-scored one.
    assert load_analysis(ctx.workspace, yusuf).campaigns["neural-mandate"].top == "neural-consent"

    with pytest.raises(NotFound):
        correct_tag(ctx, yusuf, "neural-mandate", "no-such-tag", True, "fayez")
    with ctx.db.connect() as conn:
        n = conn.execute(sa.text("select count(*) from tag_corrections")).scalar()
    assert n == 2


# ------------------------------------------------------------------ settings


def test_content_notes_can_be_configured(sample_transcripts, embedder):
    settings = AnalyseSettings(
        content_notes=[
            {
                "name": "oranges",
                "description": "Someone peeling or eating oranges or other fruit.",
                "examples": ["She was peeling oranges."],
            }
        ]
    )
    result = analyse_transcript(
        sample_transcripts["lena-grandmother"], campaigns=[], settings=settings, embedder=embedder
    )
    other = analyse_transcript(
        sample_transcripts["priya-neurosync"], campaigns=[], settings=settings, embedder=embedder
    )
    assert [n.name for n in result.content_notes] == ["oranges"]
    assert result.content_notes[0].score > other.content_notes[0].score + 0.15
    with pytest.raises(ConfigError, match="content_notes"):
        analyse_transcript(
            sample_transcripts["lena-grandmother"],
            campaigns=[],
            settings=AnalyseSettings(content_notes=[{"name": "x", "colour": "red"}]),
            embedder=embedder,
        )


def test_settings_file_accepts_content_notes(workspace):
    from narratives.core.config import load_settings

    workspace.settings_path.write_text(
        '[analyse]\nthreads = 1\n[[analyse.content_notes]]\nname = "fire"\n'
        'description = "A house or a forest on fire."\nexamples = ["The house burned."]\n',
        encoding="utf-8",
    )
    settings = load_settings(workspace)
    assert settings.analyse.content_notes[0]["name"] == "fire"
    assert settings.analyse.threads == 1


# ------------------------------------------------------------------ abstractive path


@pytest.fixture(scope="session")
def tiny_seq2seq(tmp_path_factory, sample_transcripts):
    """A real, tiny, randomly initialised T5 with a word-level tokenizer trained here."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, T5Config, T5ForConditionalGeneration

    folder = tmp_path_factory.mktemp("tiny-t5")
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["<pad>", "</s>", "<unk>"])
    tok.train_from_iterator([t.text for t in sample_transcripts.values()], trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        model_max_length=24,
    )
    config = T5Config(
        vocab_size=tok.get_vocab_size(),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    torch.manual_seed(0)
    T5ForConditionalGeneration(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_abstractive_summary_chunks_and_limits_length(tiny_seq2seq, sample_transcripts):
    text = sample_transcripts["lena-grandmother"].text
    sentences = [s for s in text.split(". ") if s]
    result = abstractive_summary(sentences, str(tiny_seq2seq), max_tokens=20)
    n_tokens = len(text.split())
    assert result["max_input"] == 24
    assert result["chunks"] >= math.ceil(n_tokens / 24)
    assert 0 < result["generated_tokens"] <= 20
    assert isinstance(result["text"], str)


def test_summary_model_setting_switches_to_abstractive(tiny_seq2seq, sample_transcripts, embedder):
    settings = AnalyseSettings(summary_model=str(tiny_seq2seq), summary_max_tokens=16)
    result = analyse_transcript(
        sample_transcripts["priya-neurosync"], campaigns=[], settings=settings, embedder=embedder
    )
    assert result.engine == "abstractive+extractive-minilm"
    assert str(tiny_seq2seq) in result.model
    assert result.summary  # the extractive sentences stay, with their times
    # Random weights say nothing useful, but they say it in the transcript's words, within limits.
    assert result.abstract
    assert result.summary_text == result.abstract
    assert 1 <= len(result.abstract.split()) <= 16


def test_missing_summary_model_is_a_clear_error(sample_transcripts, embedder):
    settings = AnalyseSettings(summary_model="facebook/bart-large-cnn")
    with pytest.raises(ModelNotAvailable) as info:
        analyse_transcript(
            sample_transcripts["priya-neurosync"],
            campaigns=[],
            settings=settings,
            embedder=embedder,
        )
    assert "summary_model" in info.value.hint


# ------------------------------------------------------------------ the command


def test_cli_analyse(ctx, sample_transcripts):
    from click.testing import CliRunner

    from narratives.cli import cli

    nid = _register(ctx, sample_transcripts["priya-neurosync"], "priya")
    runner = CliRunner()
    result = runner.invoke(cli, ["analyse", nid[:10], "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert data["narrative_id"] == nid
    assert data["campaigns"]["neural-mandate"]["top"] == "neural-consent"

    result = runner.invoke(cli, ["analyse", "--all"])
    assert result.exit_code == 0, result.output
    assert nid[:12] in result.stdout and "neural-consent" in result.stdout

    result = runner.invoke(cli, ["analyse"])
    assert result.exit_code == 2
    result = runner.invoke(cli, ["analyse", "ffff"])
    assert result.exit_code == 5
