"""Narratives, analyses and users written straight into a test workspace, in the shapes the
transcribe, analyse and render stages produce, so review tests need none of those stages."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from narratives.core.clock import utcnow
from narratives.records.transcript import Segment, Transcript, Word
from narratives.store.context import Context
from narratives.store.schema import narrative_paths, narratives, stage_runs
from narratives.store.stage_runs import stage_run
from narratives.store.users import add_user as _add
from narratives.workflow.takedown import set_consent

PASSWORD = "correct horse battery"

SENTENCES = [
    (0.0, "There were two lines at the dream clinic, one for people who paid."),
    (4.0, "The rest of us waited all night on plastic chairs."),
    (8.0, "My grandmother said rest should not be something you buy."),
    (12.0, "I still hear her voice when the night shift ends."),
]


def _segment(i: int, start: float, text: str) -> Segment:
    words, t = [], start
    for w in text.split():
        words.append(Word(start=round(t, 2), end=round(t + 0.3, 2), text=" " + w))
        t += 0.35
    return Segment(id=i, start=start, end=round(t, 2), text=" " + text, words=words)


def transcript_for(narrative_id: str, sentences=SENTENCES) -> Transcript:
    segments = [_segment(i, s, text) for i, (s, text) in enumerate(sentences)]
    return Transcript(
        narrative_id=narrative_id,
        language="en",
        duration=16.0,
        segments=segments,
        engine="faster-whisper",
        model="tiny.en",
    )


_S1 = "A narrator remembers a clinic with two lines."
_S2 = "Her grandmother said rest should not be bought."


def analysis_for(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "title": "Two lines at the dream clinic",
        "summary": [
            {"text": _S1, "raw": _S1, "start": 0.0, "end": 3.0},
            {"text": _S2, "raw": _S2, "start": 8.0, "end": 11.0},
        ],
        "summary_text": "A narrator remembers a clinic with two lines. Her grandmother said rest "
        "should not be bought.",
        "quote": {
            "text": "My grandmother said rest should not be something you buy.",
            "raw": "My grandmother said rest should not be something you buy.",
            "start": 8.0,
            "end": 11.2,
        },
        "campaigns": {
            "emotional-equity": {
                "tags": [
                    {"name": "equal-access", "score": 0.81},
                    {"name": "sleep-inequality", "score": 0.74},
                    {"name": "grief-and-healing", "score": 0.12},
                ],
                "top": "equal-access",
                "on_topic": True,
            },
            "neural-mandate": {
                "tags": [
                    {"name": "shared-dreamscapes", "score": 0.1},
                    {"name": "neural-consent", "score": 0.05},
                ],
                "top": None,
                "on_topic": False,
            },
        },
        "content_notes": [{"name": "grief", "score": 0.9}, {"name": "violence", "score": 0.02}],
        "language": "en",
        "empty": False,
    }
    data.update(overrides)
    return data


def add_narrative(
    ctx: Context,
    seed: str = "story-1",
    *,
    analysis: dict[str, Any] | None = None,
    transcript: Transcript | None = None,
    label: str = "story.wav",
    consent: bool = True,
) -> str:
    """A narrative row plus its transcript.json and analysis.json; returns its id.

    With `consent`, the narrator agreed to both channels and to be named, as most review
    tests assume; pass False to test what happens without it."""
    nid = hashlib.sha256(seed.encode()).hexdigest()
    now = utcnow()
    with ctx.db.begin() as conn:
        conn.execute(
            narratives.insert().values(
                id=nid,
                created_at=now,
                updated_at=now,
                size_bytes=1234,
                duration=16.0,
                language="en",
                title=None,
                label=label,
            )
        )
    folder = ctx.workspace.narrative_dir(nid)
    folder.mkdir(parents=True, exist_ok=True)
    t = transcript or transcript_for(nid)
    (folder / "transcript.json").write_text(json.dumps(t.to_dict()), encoding="utf-8")
    a = analysis if analysis is not None else analysis_for()
    (folder / "analysis.json").write_text(json.dumps(a), encoding="utf-8")
    with stage_run(ctx.db, nid, "transcribe") as run:  # as the pipeline leaves it
        run.engine, run.model = t.engine, t.model
    if consent:
        set_consent(
            ctx,
            nid,
            given_by="The narrator",
            method="form",
            channels=["bluesky", "rss"],
            anonymous=False,
            actor="test",
        )
    return nid


def add_recording(ctx: Context, nid: str, name: str = "recordings/story.wav") -> None:
    path = ctx.workspace.root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"RIFF....WAVEfmt ")
    now = utcnow()
    with ctx.db.begin() as conn:
        conn.execute(
            narrative_paths.insert().values(
                narrative_id=nid, path=str(path), first_seen=now, last_seen=now
            )
        )


def add_render(ctx: Context, nid: str, campaign: str, fmt: str = "vertical") -> str:
    """A finished render: the video, captions and thumbnail files and its stage_runs row."""
    folder = ctx.workspace.narrative_dir(nid)
    stem = folder / f"video-{campaign}-{fmt}"
    stem.with_suffix(".mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 64)
    stem.with_suffix(".vtt").write_text("WEBVTT\n\n00:00.000 --> 00:02.000\nHello\n")
    stem.with_suffix(".png").write_bytes(b"\x89PNG\r\n\x1a\n")
    now = utcnow()
    with ctx.db.begin() as conn:
        conn.execute(
            stage_runs.insert().values(
                narrative_id=nid,
                stage="render",
                key=f"{campaign}/{fmt}",
                status="done",
                engine="moviepy",
                started_at=now,
                finished_at=now,
                seconds=1.0,
                output={"video": str(stem.with_suffix(".mp4").relative_to(ctx.workspace.root))},
            )
        )
    return f"media/work/{nid}/video-{campaign}-{fmt}.mp4"


def add_user(ctx: Context, name: str = "kai", role: str = "editor") -> str:
    _add(ctx, name, PASSWORD, role=role, actor="test")
    return name
