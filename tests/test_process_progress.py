"""`process` shows progress for rendering too, not only transcription (issue 16, item 7): the
pipeline's progress callback sees each video start and its frames advance to the end."""

from __future__ import annotations

import subprocess

import pytest

from narratives.core.campaigns import get_campaign
from narratives.core.config import RenderSettings, Settings
from narratives.records.video import campaign_formats
from narratives.stages.pipeline import process_paths
from narratives.store.context import Context

pytestmark = pytest.mark.slow

EQUITY = "emotional-equity"


def test_render_reports_each_video_and_its_frames(workspace, tmp_path):
    clip = tmp_path / "rest.wav"
    subprocess.run(
        ["espeak-ng", "-s", "150", "-w", str(clip),
         "My grandmother kept the community kitchen open for everyone, rich or poor."],
        check=True,
    )  # fmt: skip
    settings = Settings(render=RenderSettings(fps=8, scale=0.2))
    ctx = Context(workspace, settings)
    events: list[tuple[str, object]] = []
    [result] = process_paths(
        ctx,
        [clip],
        settings=settings,
        campaigns=[EQUITY],
        progress=lambda e, d: events.append((e, d)),
    )
    assert result.status == "ok", result.error
    stages = [d for e, d in events if e == "stage"]
    assert stages[:2] == ["transcribe", "analyse"]
    videos = [s for s in stages if s.startswith("render ")]
    formats = campaign_formats(get_campaign(workspace, EQUITY))  # the channels' (vertical)
    assert videos == [f"render {EQUITY}/{fmt}" for fmt in formats] and videos
    # After each video starts, its fraction rises to 1.0.
    for name in videos:
        at = events.index(("stage", name))
        fractions = []
        for event, detail in events[at + 1 :]:
            if event != "fraction":
                break
            fractions.append(detail)
        assert len(fractions) >= 2 and fractions == sorted(fractions) and fractions[-1] == 1.0
