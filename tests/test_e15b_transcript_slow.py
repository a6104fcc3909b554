"""Transcript correction through the real pipeline (Whisper, the analysis, tiny renders, the
draft stage): the correction reaches the summary, quote, captions, video and drafts; an edited
draft keeps the editor's text; `process --force` keeps the correction and
`--discard-corrections` drops it."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from click.testing import CliRunner

from narratives.cli import cli
from narratives.store.context import Context
from narratives.store.narrative_files import (
    corrected_transcript_path,
    read_analysis,
    read_original_transcript,
    read_transcript,
)
from narratives.workflow import corrections, review
from tests.review_fixtures import add_user

CAMPAIGN = "neural-mandate"


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("e15b-clip") / "clip.wav"
    subprocess.run(
        ["espeak-ng", "-s", "150", "-w", str(path), "The night bus was late and I fell asleep."],
        check=True,
    )
    return path


@pytest.fixture
def ctx(workspace):
    workspace.settings_path.write_text("[render]\nscale = 0.2\nfps = 6\n", encoding="utf-8")
    return Context(workspace)


def _run(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _lines(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


@pytest.mark.slow
def test_a_correction_reaches_analysis_captions_video_and_drafts(ctx, clip, tmp_path):
    add_user(ctx, "kai")
    rec = tmp_path / "rec"
    rec.mkdir()
    shutil.copy(clip, rec / "night.wav")
    first = _run("process", "--campaign", CAMPAIGN, "--as", "kai", "--json", str(rec))
    assert first.exit_code == 0, first.output
    (item,) = _lines(first.stdout)
    nid = item["id"]
    heard = corrections.text_form(read_transcript(ctx.workspace, nid))
    # tiny.en mishears the word after "night" ("first" for "bus"): the editor fixes it.
    words = heard.split()
    misheard = words[next(i for i, w in enumerate(words) if "night" in w.lower()) + 1]
    assert "tram" not in heard.lower(), heard
    drafts = {d.channel: d for d in review.list_drafts(ctx) if d.narrative_id == nid}
    # An editor's own text on the Bluesky draft: a correction must not overwrite it.
    review.edit(ctx, drafts["bluesky"].id, {"posts": ["The editor's own words."]}, actor="kai")

    fixed = tmp_path / "fixed.txt"
    fixed.write_text(heard.replace(f" {misheard} ", " tram ", 1), encoding="utf-8")
    out = _run("transcript", "edit", nid[:12], "--from-file", str(fixed), "--as", "kai", "--json")
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # One video: the vertical one the campaign's channels publish.
    assert result["changed"] and result["analysed"] and result["videos"] == 1
    assert result["errors"] == []

    original = read_original_transcript(ctx.workspace, nid)
    corrected = read_transcript(ctx.workspace, nid)
    assert "tram" in corrected.text.lower() and "tram" not in original.text.lower()
    # The corrected word took the time of the word it replaced.
    old = next(w for w in original.words if w.text.strip() == misheard)
    new = next(w for w in corrected.words if "tram" in w.text.lower())
    assert (new.start, new.end) == (old.start, old.end)

    analysis = read_analysis(ctx.workspace, nid)
    told = " ".join([analysis.summary_text, analysis.quote.text if analysis.quote else ""])
    assert "tram" in told.lower() and misheard.lower() not in told.lower()
    folder = ctx.workspace.narrative_dir(nid)
    assert "tram" in (folder / "transcript.vtt").read_text().lower()
    # The one video the campaign's channels publish (no square one unless it asks).
    assert "tram" in (folder / f"video-{CAMPAIGN}-vertical.vtt").read_text().lower()
    assert not (folder / f"video-{CAMPAIGN}-square.vtt").exists()
    after = {d.channel: d for d in review.list_drafts(ctx) if d.narrative_id == nid}
    assert "tram" in json.dumps(after["rss"].content).lower()
    assert after["bluesky"].posts == ["The editor's own words."]
    assert "tram" in json.dumps(after["bluesky"].generated).lower()

    # A new transcription keeps the correction; --discard-corrections drops it.
    again = _run("process", "--force", "--until", "analyse", "--json", str(rec))
    assert again.exit_code == 0, again.output
    assert corrected_transcript_path(ctx.workspace, nid).is_file()
    assert "tram" in read_analysis(ctx.workspace, nid).summary_text.lower()
    dropped = _run(
        "process", "--force", "--discard-corrections", "--until", "analyse", "--as", "kai", str(rec)
    )
    assert dropped.exit_code == 0, dropped.output
    assert not corrected_transcript_path(ctx.workspace, nid).exists()
    assert "tram" not in read_analysis(ctx.workspace, nid).summary_text.lower()
