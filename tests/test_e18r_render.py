"""Issue 18, item 2: render only what someone will use, never the same frames twice, and each
campaign's own resolution and frame rate, on real renders (espeak-ng speech, tiny frames),
probed with PyAV. Renders are counted by wrapping the stage's `render_video`."""

from __future__ import annotations

import hashlib
import json
import subprocess
import wave
from fractions import Fraction
from pathlib import Path

import av
import pytest
from click.testing import CliRunner

from narratives.core.clock import utcnow
from narratives.core.config import RenderSettings, Settings
from narratives.records.transcript import Segment, Transcript, Word
from narratives.stages.draft import stage as drafting
from narratives.stages.render import stage as R
from narratives.store.context import Context
from narratives.store.schema import narrative_paths
from narratives.store.stage_runs import get_run
from narratives.workflow import assignments
from tests.review_fixtures import add_narrative, analysis_for

pytestmark = pytest.mark.slow

EQUITY, MANDATE = "emotional-equity", "neural-mandate"
SAID = "Everyone should get the same rest. My grandmother said so every night."
#: Tiny frames: 1080 * 0.1 = 108 px on the short edge at the workspace's defaults.
SCALE, FPS = 0.1, 6


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("e18r") / "said.wav"
    subprocess.run(["espeak-ng", "-s", "170", "-w", str(path), SAID], check=True)
    return path


def _transcript(nid: str, clip: Path) -> Transcript:
    with wave.open(str(clip)) as w:
        duration = w.getnframes() / w.getframerate()
    words, t, step = [], 0.3, (duration - 0.6) / len(SAID.split())
    for text in SAID.split():
        words.append(Word(round(t, 3), round(t + 0.8 * step, 3), " " + text))
        t += step
    seg = Segment(0, words[0].start, words[-1].end, SAID, words)
    return Transcript(nid, "en", duration, [seg], "hand", "none")


def _story(ctx: Context, clip: Path, seed: str = "e18r-1") -> str:
    """An analysed story with its recording, routed to emotional-equity by its tags."""
    nid = hashlib.sha256(seed.encode()).hexdigest()
    t = _transcript(nid, clip)
    w = t.segments[0].words
    quote = {"text": SAID, "raw": SAID, "start": w[0].start, "end": w[-1].end}
    analysis = analysis_for(title="The same rest", quote=quote, summary=[quote])
    add_narrative(ctx, seed, analysis=analysis, transcript=t)
    now = utcnow()
    with ctx.db.begin() as conn:
        conn.execute(
            narrative_paths.insert().values(
                narrative_id=nid, path=str(clip), first_seen=now, last_seen=now
            )
        )
    return nid


def _look(ctx: Context, slug: str, lines: str) -> None:
    """Sets the workspace campaign's `[look]` lines in place of `formats = []`."""
    path = ctx.workspace.campaigns_dir / f"{slug}.toml"
    text = path.read_text(encoding="utf-8")
    start = text.index("\nformats = ")
    end = text.index("\ntitle_line = ")
    path.write_text(text[:start] + "\n" + lines + text[end:], encoding="utf-8")


@pytest.fixture
def ctx(workspace) -> Context:
    return Context(workspace, Settings(render=RenderSettings(fps=FPS, scale=SCALE)))


@pytest.fixture
def renders(monkeypatch) -> list[tuple[str, str]]:
    """(campaign, format) of every video actually encoded."""
    made: list[tuple[str, str]] = []
    real = R.render_video

    def counting(audio, transcript, campaign, out, **kw):
        made.append((campaign.slug, kw["fmt"]))
        return real(audio, transcript, campaign, out, **kw)

    monkeypatch.setattr(R, "render_video", counting)
    return made


def _probe(path: Path) -> tuple[int, int, Fraction, int]:
    with av.open(str(path)) as container:
        v = container.streams.video[0]
        frames = sum(1 for _ in container.decode(v))
        return v.width, v.height, v.average_rate, frames


def test_the_channels_format_only_and_never_the_same_frames_twice(ctx, clip, renders):
    nid = _story(ctx, clip)
    folder = ctx.workspace.narrative_dir(nid)
    # Bluesky and RSS publish the vertical video: the square one is not made.
    [video] = R.run(ctx, nid)
    assert (video.campaign, video.format, video.skipped) == (EQUITY, "vertical", False)
    assert renders == [(EQUITY, "vertical")]
    assert sorted(p.name for p in folder.glob("video-*.mp4")) == [f"video-{EQUITY}-vertical.mp4"]
    assert (video.width, video.height) == (108, 192)
    mtime = video.video.stat().st_mtime_ns

    # Every way the same video could be asked for again reuses it: a re-run, the pipeline's
    # stage under `process --force`, re-made outputs (a correction re-derived, the web's
    # output jobs), the drafts regenerated.
    assert R.run(ctx, nid)[0].skipped
    forced = R.RenderStage().run(ctx, nid, force=True)
    assert forced.status == "skipped" and all(v.skipped for v in forced.record)
    made = assignments.make_outputs(ctx, nid, force=True, actor="test")
    assert made.errors == [] and made.videos == 1 and made.drafts == 2
    assignments.make_outputs(ctx, nid, actor="test")
    drafting.run(ctx, nid, force=True)
    assert renders == [(EQUITY, "vertical")]
    assert video.video.stat().st_mtime_ns == mtime
    # Both channels' drafts carry that vertical video.
    drafts = drafting.build_drafts(ctx, nid)
    assert {d.channel for d in drafts} == {"bluesky", "rss"}
    assert {json.dumps(d.content).count(f"video-{EQUITY}-vertical.mp4") > 0 for d in drafts} == {
        True
    }

    # A changed input renders again, once; then it is reused again.
    _look(ctx, EQUITY, "formats = []\nfps = 4")
    assert not R.run(ctx, nid)[0].skipped and R.run(ctx, nid)[0].skipped
    assert renders == [(EQUITY, "vertical")] * 2
    assert _probe(video.video)[2] == 4
    # Changing it back is a change too (the file on disk is the 4 fps one).
    _look(ctx, EQUITY, "formats = []")
    assert not R.run(ctx, nid, force=True)[0].skipped
    assert _probe(video.video)[2] == FPS and len(renders) == 3
    # `narrative render --force` (reencode) is the one way to encode the same frames again.
    assert not R.run(ctx, nid, reencode=True)[0].skipped and len(renders) == 4


def test_each_campaign_renders_at_its_own_resolution_and_fps(ctx, clip, renders):
    nid = _story(ctx, clip)
    _look(ctx, EQUITY, "formats = []\nresolution = 720\nfps = 12")
    [small] = R.run(ctx, nid, campaigns=[EQUITY])
    [default] = R.run(ctx, nid, campaigns=[MANDATE])
    # 720 px on the short edge (x the test scale 0.1), 12 frames a second, in the file.
    width, height, rate, frames = _probe(small.video)
    assert (width, height) == (72, 128) and rate == 12
    assert frames == round(small.duration * 12)
    assert (small.width, small.height) == (72, 128)
    # The other campaign keeps the workspace's [render] settings.
    width, height, rate, frames = _probe(default.video)
    assert (width, height, rate) == (108, 192, FPS)
    assert frames == round(default.duration * FPS)
    # The resolution is part of the fingerprint: 720 -> 1080 renders again, at 1080.
    _look(ctx, EQUITY, "formats = []\nresolution = 1080\nfps = 12")
    [again] = R.run(ctx, nid, campaigns=[EQUITY])
    assert not again.skipped and _probe(again.video)[:3] == (108, 192, 12)
    assert renders == [(EQUITY, "vertical"), (MANDATE, "vertical"), (EQUITY, "vertical")]
    row = get_run(ctx.db, nid, "render", f"{EQUITY}/vertical")
    assert row.output["width"] == 108 and len(row.output["inputs"]) == 16


def test_explicit_formats_still_render(ctx, clip, renders, workspace):
    nid = _story(ctx, clip)
    # A workspace made by an older version asks for both: it keeps getting both.
    _look(ctx, EQUITY, 'formats = ["vertical", "square"]')
    videos = R.run(ctx, nid)
    assert [(v.format, v.width, v.height) for v in videos] == [
        ("vertical", 108, 192),
        ("square", 108, 108),
    ]
    assert R.run(ctx, nid)[0].skipped and len(renders) == 2

    # Any format on request: `narrative render --format square` for the other campaign.
    from narratives.cli import cli

    workspace.settings_path.write_text(
        f"[render]\nfps = {FPS}\nscale = {SCALE}\n", encoding="utf-8"
    )
    args = ["render", nid[:10], "--campaign", MANDATE, "--format", "square", "--json"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    [line] = [x for x in result.output.splitlines() if x.startswith("{")]
    out = json.loads(line)
    assert (out["campaign"], out["format"], out["skipped"]) == (MANDATE, "square", False)
    assert _probe(workspace.root / out["video"])[:2] == (108, 108)
    # ... and without --format, the mandate campaign's channels need only the vertical one.
    result = CliRunner().invoke(cli, ["render", nid[:10], "--campaign", MANDATE, "--json"])
    formats = [json.loads(x)["format"] for x in result.output.splitlines() if x.startswith("{")]
    assert result.exit_code == 0 and formats == ["vertical"]
    # `--force` encodes the same video again, on request.
    result = CliRunner().invoke(cli, [*args, "--force"])
    [line] = [x for x in result.output.splitlines() if x.startswith("{")]
    assert result.exit_code == 0 and not json.loads(line)["skipped"]


def test_videos_from_before_fingerprints_are_kept_until_forced(ctx, clip, renders):
    """An upgrade does not make an archive's videos again; `process --force` does, once."""
    import sqlalchemy as sa

    from narratives.store.schema import stage_runs

    nid = _story(ctx, clip)
    [video] = R.run(ctx, nid)
    key = (stage_runs.c.narrative_id == nid) & (stage_runs.c.key == f"{EQUITY}/vertical")
    row = get_run(ctx.db, nid, "render", f"{EQUITY}/vertical")
    old = {k: v for k, v in row.output.items() if k != "inputs"}  # as older versions wrote it
    with ctx.db.begin() as conn:
        conn.execute(sa.update(stage_runs).where(key).values(output=old))
    assert R.run(ctx, nid)[0].skipped and len(renders) == 1
    # Nor once what must be hidden changes: that renders it again, as before.
    with ctx.db.begin() as conn:
        conn.execute(sa.update(stage_runs).where(key).values(output={**old, "privacy": "x"}))
    assert not R.run(ctx, nid)[0].skipped and len(renders) == 2
    with ctx.db.begin() as conn:
        conn.execute(sa.update(stage_runs).where(key).values(output=old))
    assert not R.RenderStage().run(ctx, nid, force=True).record[0].skipped
    assert len(renders) == 3 and "inputs" in get_run(ctx.db, nid, "render", video.key).output
    assert R.RenderStage().run(ctx, nid, force=True).status == "skipped" and len(renders) == 3


def test_what_changes_no_frame_renders_nothing_again(ctx, clip, renders):
    """Review findings: a new transcription run (other timings, other model confidences) of
    the same words, one more format asked for, or the default frame rate written down, leave
    the vertical video as it is."""
    from dataclasses import replace

    from narratives.store.narrative_files import read_transcript, write_transcript

    nid = _story(ctx, clip, seed="e18r-unchanged")
    [video] = R.run(ctx, nid)
    assert renders == [(EQUITY, "vertical")]
    t = read_transcript(ctx.workspace, nid)
    again = replace(
        t,
        seconds=(t.seconds or 0) + 1.7,
        language_probability=0.42,
        engine_version="9.9",
        segments=[
            replace(s, words=[replace(w, probability=0.5) for w in s.words]) for s in t.segments
        ],
    )
    write_transcript(ctx.workspace, nid, again)
    assert R.run(ctx, nid)[0].skipped
    _look(ctx, EQUITY, f'formats = ["square"]\nfps = {FPS}')
    made = R.run(ctx, nid)
    assert [(v.format, v.skipped) for v in made] == [("vertical", True), ("square", False)]
    assert renders == [(EQUITY, "vertical"), (EQUITY, "square")]
    # A changed word is a change.
    words = [replace(w, text=" Nobody") if i == 0 else w for i, w in enumerate(t.words)]
    write_transcript(ctx.workspace, nid, replace(t, segments=[replace(t.segments[0], words=words)]))
    assert not R.run(ctx, nid)[0].skipped
