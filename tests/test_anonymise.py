"""Anonymised mode: names out of text, captions, analysis and drafts; bleeped out of audio (checked
with an FFT and by transcribing the result again); metadata stripped; voice pitch-shifted."""

from __future__ import annotations

import hashlib
import json
import subprocess

import numpy as np
import pytest

from narratives.core.clock import utcnow
from narratives.core.config import TranscribeSettings
from narratives.core.errors import UsageError
from narratives.media import captions, effects
from narratives.media.audio import decode
from narratives.policy import anonymise
from narratives.records.redactions import Term
from narratives.records.transcript import Segment, Transcript, Word
from narratives.store import audit, redactions
from narratives.store.schema import narratives
from narratives.workflow.takedown import set_consent

ROSALIND = "My friend Rosalind met me at the station."


def add_narrative(ctx, data: bytes = b"x") -> str:
    nid = hashlib.sha256(data + str(id(ctx)).encode()).hexdigest()
    now = utcnow()
    with ctx.db.begin() as conn:
        conn.execute(
            narratives.insert().values(
                id=nid, created_at=now, updated_at=now, size_bytes=len(data), label="s.wav"
            )
        )
    return nid


def transcript(*words: tuple[float, float, str]) -> Transcript:
    ws = [Word(a, b, t) for a, b, t in words]
    text = "".join(w.text for w in ws)
    return Transcript(
        "f" * 64, "en", words[-1][1] + 0.5, [Segment(0, 0.0, ws[-1].end, text, ws)], "e", "m"
    )


# ----------------------------------------------------------------------------- text


def test_redact_text_whole_words_possessives_and_kinds():
    terms = [Term("Rosa", "person"), Term("Santa Cruz", "place"), Term("Ada Lovelace", "person")]
    text = (
        "Rosa's dream: ROSA walked from Santa  Cruz to the rosary. "
        "Ada Lovelace, later just Lovelace, met rosa in santa cruz."
    )
    assert anonymise.redact_text(text, terms) == (
        "[name]'s dream: [name] walked from [place] to the rosary. "
        "[name], later just [name], met [name] in [place]."
    )
    # Plain strings are names; nothing to hide leaves the text as it is.
    assert anonymise.redact_text("Ask Jo. Jogging helps.", ["Jo"]) == "Ask [name]. Jogging helps."
    assert anonymise.redact_text("Nothing here", []) == "Nothing here"


def test_bleep_intervals_from_word_times():
    t = transcript(
        (0.0, 0.3, " My"),
        (0.3, 0.6, " friend"),
        (0.6, 1.1, " Rosalind's,"),
        (1.1, 1.3, " in"),
        (1.3, 1.6, " Santa"),
        (1.6, 2.0, " Cruz."),
        (2.0, 2.5, " rosalind"),
    )
    terms = [Term("Rosalind", "person"), Term("Santa Cruz", "place")]
    assert anonymise.bleep_intervals(t, terms, pad=0.0) == [(0.6, 1.1), (1.3, 2.5)]
    assert anonymise.bleep_intervals(t, terms) == [(0.54, 1.16), (1.24, 2.56)]
    # An analysis entity carries its own time, bleeped even if the words differ.
    assert anonymise.bleep_intervals(t, [Term("Roz", "person", 2.0, 2.5, "analysis")], pad=0) == [
        (2.0, 2.5)
    ]


def test_anonymised_transcript_and_captions_hide_names():
    t = transcript(
        (0.0, 0.3, " My"),
        (0.3, 0.6, " friend"),
        (0.6, 0.9, " Ada"),
        (0.9, 1.2, " Lovelace's"),
        (1.2, 1.5, " dog,"),
        (1.5, 1.8, " from"),
        (1.8, 2.1, " Santa"),
        (2.1, 2.4, " Cruz."),
    )
    out = anonymise.anonymised_transcript(
        t, [Term("Ada Lovelace", "person"), Term("Santa Cruz", "place")]
    )
    assert [w.text for w in out.words] == [
        " My",
        " friend",
        " [name]'s",
        " dog,",
        " from",
        " [place].",
    ]
    assert (out.words[2].start, out.words[2].end) == (0.6, 1.2)
    assert out.text == "My friend [name]'s dog, from [place]."
    for text in (out.text, captions.to_srt(out), captions.to_webvtt(out)):
        assert "ada" not in text.lower() and "lovelace" not in text.lower()
        assert "santa" not in text.lower()
    assert t.words[2].text == " Ada"  # the original is untouched


def test_analysis_and_draft_redaction_keep_paths():
    terms = [Term("Rosalind", "person", 0.6, 1.1, "analysis")]
    analysis = {
        "title": "Rosalind at the station",
        "summary": [{"text": ROSALIND, "start": 0.0, "end": 2.0}],
        "quote": {"text": ROSALIND, "start": 0.0, "end": 2.0},
        "summary_text": ROSALIND,
        "entities": [{"text": "Rosalind", "kind": "person", "start": 0.6, "end": 1.1}],
        "content_notes": [{"name": "named-people", "evidence": ["Rosalind"]}],
    }
    out = anonymise.redact_analysis(analysis, terms)
    assert "rosalind" not in json.dumps(out).lower()
    assert out["quote"] == {
        "text": "My friend [name] met me at the station.",
        "start": 0.0,
        "end": 2.0,
    }
    assert out["entities"] == []

    content = {
        "posts": [{"text": "Rosalind waited. #EmotionalEquity"}],
        "alt": "Rosalind tells a dream",
        "video": "media/work/rosalind/video.mp4",
        "captions": "media/work/rosalind/video.vtt",
    }
    red = anonymise.redact_draft(content, terms)
    assert red["posts"][0]["text"] == "[name] waited. #EmotionalEquity"
    assert red["alt"] == "[name] tells a dream"
    assert red["video"] == content["video"] and red["captions"] == content["captions"]
    assert anonymise.draft_leaks(content, terms) == ["Rosalind"]
    assert anonymise.draft_leaks(red, terms) == []


# ----------------------------------------------------------------------------- storage


def test_marked_terms_stored_atomically_and_audited(ctx):
    nid = add_narrative(ctx)
    redactions.mark_term(ctx, nid, "Rosalind", actor="kai")
    redactions.mark_term(ctx, nid, "  rosalind ", actor="kai")  # same term
    redactions.mark_term(ctx, nid, "Santa Cruz", kind="place", actor="kai")
    path = ctx.workspace.narrative_dir(nid) / "redactions.json"
    stored = json.loads(path.read_text(encoding="utf-8"))
    assert [(t["text"], t["kind"], t["added_by"]) for t in stored["terms"]] == [
        ("Rosalind", "name", "kai"),
        ("Santa Cruz", "place", "kai"),
    ]
    # Only the file and its lock: no temporary file is left behind.
    assert sorted(p.name for p in path.parent.iterdir()) == [
        ".redactions.json.lock",
        "redactions.json",
    ]
    assert [t.text for t in redactions.unmark_term(ctx, nid, "ROSALIND", actor="kai")] == [
        "Santa Cruz"
    ]
    redactions.set_voice_disguise(ctx, nid, -4, actor="kai")
    assert redactions.voice_disguise(ctx, nid) == -4.0
    with ctx.db.connect() as conn:
        actions = [r["action"] for r in audit.history(conn, "narrative", nid)]
    assert actions == ["redaction.add", "redaction.add", "redaction.remove", "redaction.voice"]
    with pytest.raises(UsageError, match="semitones"):
        redactions.set_voice_disguise(ctx, nid, 30, actor="kai")


def test_for_publication_follows_consent(ctx):
    nid = add_narrative(ctx)
    t = transcript((0.0, 0.4, " Rosalind"), (0.4, 0.8, " waited."))
    analysis = {
        "title": "Rosalind waited",
        "entities": [{"text": "Rosalind", "kind": "name", "start": 0.0, "end": 0.4}],
    }
    # No consent recorded: anonymous, the safe default.
    pub = anonymise.for_publication(ctx, nid, t, analysis)
    assert pub.anonymous and pub.transcript.text == "[name] waited."
    assert pub.analysis["title"] == "[name] waited" and pub.intervals == [(0.0, 0.46)]
    assert pub.redactions.intervals == pub.intervals
    assert pub.redactions.replace("Rosalind's") == "[name]'s"
    set_consent(
        ctx, nid, given_by="Rosalind", method="form", channels=["rss"], anonymous=False, actor="kai"
    )
    named = anonymise.for_publication(ctx, nid, t, analysis)
    assert not named.anonymous and named.transcript is t and named.redactions is None


# ----------------------------------------------------------------------------- audio


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=120)


def tags(path) -> dict:
    out = subprocess.run(
        [
            "ffprobe",
            "-v",
            "error",
            "-show_entries",
            "format_tags:stream_tags",
            "-of",
            "json",
            str(path),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(out.stdout)
    found = dict(data.get("format", {}).get("tags", {}))
    for s in data.get("streams", []):
        found.update(s.get("tags", {}))
    return {k.lower(): v for k, v in found.items()}


def dominant_hz(samples: np.ndarray, rate: int) -> tuple[float, float]:
    """(strongest frequency, share of the energy within 50 Hz of it)."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size))) ** 2
    freqs = np.fft.rfftfreq(samples.size, 1 / rate)
    peak = freqs[int(np.argmax(spectrum))]
    share = spectrum[np.abs(freqs - peak) <= 50].sum() / spectrum.sum()
    return float(peak), float(share)


@pytest.fixture(scope="session")
def spoken_name(tmp_path_factory):
    """The sentence spoken by espeak-ng and transcribed by faster-whisper (tiny.en)."""
    from narratives.engines.whisper import transcribe_file

    root = tmp_path_factory.mktemp("anon")
    wav = root / "rosalind.wav"
    # en-us at 160 wpm: tiny.en hears "Rosalind" (at the default voice it writes "Roselyn").
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(wav), ROSALIND], check=True)
    # The plain path: the batched one (transcribe.batch_size) writes "Roselyn" here.
    t = transcribe_file(wav, TranscribeSettings(batch_size=0), "0" * 64)
    return wav, t


@pytest.mark.slow
def test_spoken_name_is_bleeped_and_gone_from_every_text(ctx, spoken_name, tmp_path):
    from narratives.engines.whisper import transcribe_file
    from narratives.stages.analyse.entities import find_entities

    wav, t = spoken_name
    [name] = [w for w in t.words if "rosalind" in w.text.lower()]
    # The analysis stage's own entity finder names the terms to hide.
    entities = [vars(e) for e in find_entities(t, model=True)]
    assert [e["text"] for e in entities] == ["Rosalind"]
    nid = add_narrative(ctx, wav.read_bytes())
    analysis = {
        "title": "Rosalind at the station",
        "summary": [{"text": t.text, "start": 0.0, "end": t.duration}],
        "quote": {"text": t.text, "start": 0.0, "end": t.duration},
        "entities": entities,
    }
    pub = anonymise.for_publication(ctx, nid, t, analysis)
    assert pub.anonymous and pub.intervals
    (a, b) = pub.intervals[0]
    assert a <= name.start and b >= name.end

    out = effects.bleep_audio(wav, tmp_path / "bleeped.m4a", pub.intervals)
    rate = 16000
    before, after = decode(wav, rate), decode(out, rate)
    assert abs(after.size - before.size) < rate * 0.1
    lo, hi = round(name.start * rate), round(name.end * rate)
    peak, share = dominant_hz(after[lo:hi], rate)
    assert abs(peak - 1000) < 15 and share > 0.9, (peak, share)
    speech_peak, speech_share = dominant_hz(before[lo:hi], rate)
    assert abs(speech_peak - 1000) > 50 or speech_share < 0.5  # it was speech before
    # Outside the bleep the speech is intact (AAC round trip: correlated, not bit-exact).
    keep = slice(round((b + 0.05) * rate), round(min(t.duration, b + 1.0) * rate))
    assert np.corrcoef(before[keep], after[keep][: before[keep].size])[0, 1] > 0.9
    assert not {"title", "artist", "comment", "encoder"} & set(tags(out))

    # Whisper, asked again, no longer hears the name but still hears the rest.
    heard = transcribe_file(out, TranscribeSettings(), "1" * 64).text.lower()
    assert "rosalind" not in heard and "station" in heard, heard

    texts = {
        "transcript": pub.transcript.text,
        "srt": captions.to_srt(pub.transcript),
        "vtt": captions.to_webvtt(pub.transcript),
        "summary": json.dumps(pub.analysis["summary"]),
        "quote": pub.analysis["quote"]["text"],
        "title": pub.analysis["title"],
        "post": anonymise.redact_draft(
            {"posts": [{"text": f"“{t.text}” #EmotionalEquity"}]}, pub.terms
        )["posts"][0]["text"],
    }
    for kind, text in texts.items():
        assert "rosalind" not in text.lower(), kind
        assert "[name]" in text, kind
    assert "station" in texts["transcript"]


def test_strip_metadata_removes_identifying_tags(tmp_path):
    src = tmp_path / "phone.m4a"
    ffmpeg(
        "-f", "lavfi", "-i", "sine=frequency=440:duration=0.5",
        "-metadata", "title=Rosalind at the station", "-metadata", "artist=Ana Example",
        "-metadata", "location=+38.7223-009.1393/", "-metadata", "comment=recorded on Ana's phone",
        "-c:a", "aac", str(src),
    )  # fmt: skip
    assert {"title", "artist", "comment"} <= set(tags(src))
    out = effects.strip_metadata(src, tmp_path / "clean.m4a")
    left = tags(out)
    assert not {"title", "artist", "location", "comment", "encoder"} & set(left), left
    assert "rosalind" not in out.read_bytes().decode("latin-1").lower()
    assert decode(out, 16000).size == pytest.approx(decode(src, 16000).size, abs=1600)


def test_voice_disguise_shifts_pitch_and_keeps_length(tmp_path):
    src = tmp_path / "tone.wav"
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=220:duration=1.5:sample_rate=16000", str(src))
    out = effects.disguise_voice(src, tmp_path / "low.wav", semitones=-3)
    a, b = decode(src, 16000), decode(out, 16000)
    assert abs(b.size - a.size) < 16000 * 0.05
    peak, _ = dominant_hz(b[1600:-1600], 16000)
    assert abs(peak - 220 * 2 ** (-3 / 12)) < 6, peak  # 185 Hz, not 220
    shifted = effects.disguise_samples(a, 16000, semitones=4)
    assert shifted.size == a.size
    assert abs(dominant_hz(shifted[1600:-1600], 16000)[0] - 220 * 2 ** (4 / 12)) < 6


@pytest.mark.slow
def test_published_video_is_bleeped_with_captions_redacted(ctx, spoken_name, tmp_path):
    """The render stage given `for_publication`'s transcript and redactions: the video's own
    audio track is the tone at the name, and its captions say [name]."""
    from narratives.core.campaigns import get_campaign
    from narratives.stages.render.video import render_video

    wav, t = spoken_name
    [name] = [w for w in t.words if "rosalind" in w.text.lower()]
    nid = add_narrative(ctx, wav.read_bytes() + b"video")
    redactions.mark_term(ctx, nid, "Rosalind", actor="kai")
    pub = anonymise.for_publication(ctx, nid, t, {"title": "Rosalind at the station"})
    campaign = get_campaign(ctx.workspace, "emotional-equity")
    done = render_video(
        wav,
        pub.transcript,
        campaign,
        tmp_path / "video.mp4",
        workspace=ctx.workspace,
        title=pub.analysis["title"],
        fps=5,
        scale=0.25,
        threads=1,
        redactions=pub.redactions,
    )
    assert not done.cut
    rate = 16000
    audio = decode(done.video, rate)
    lo, hi = round(name.start * rate), round(name.end * rate)
    peak, share = dominant_hz(audio[lo:hi], rate)
    assert abs(peak - 1000) < 15 and share > 0.9, (peak, share)
    vtt = done.captions.read_text(encoding="utf-8")
    assert "[name]" in vtt and "rosalind" not in vtt.lower()
    assert not {"title", "artist", "comment"} & set(tags(done.video))


def test_a_name_is_hidden_whatever_its_accents_case_or_unicode_form():
    """Whisper may write "Zoe" for "Zoë", and a Mac types a decomposed "Zoë" (e + U+0308):
    all are the same name to hide; other words that merely contain it are not."""
    import unicodedata

    from narratives.policy.anonymise import redact_text

    marked = [Term("Zoë", "person")]
    for text in ["Zoe came", "ZOË came", unicodedata.normalize("NFD", "Zoë came")]:
        assert anonymise.redact_text(text, marked) == "[name] came", text
    decomposed = [Term(unicodedata.normalize("NFD", "Zoë"), "person")]
    assert redact_text("Zoë's dog.", decomposed) == "[name]'s dog."
    assert redact_text("Zoey and Straße stay.", marked) == "Zoey and Straße stay."
    # A double-barrelled name is hidden whole, not "[name]-Marie".
    assert (
        redact_text("Zoë-Marie's dog, and Zoë - twice.", marked)
        == "[name]'s dog, and [name] - twice."
    )
