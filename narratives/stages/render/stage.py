"""The render stage: a captioned audiogram video per campaign and format of a narrative, with
one `stage_runs` row each (key `"<campaign>/<format>"`).

The package splits the work by concept: `layout` (templates/video/<format>.toml), `fonts`
(which font draws what, wrapping by measured width), `cut` (the excerpt of a long recording),
`soundtrack` (the audio: cut, faded, disguised, bleeped), `pages` (caption pages, the end
card, the WebVTT), `design` (everything drawn once, composed per frame) and `video` (one
video encoded). This module decides what to render and when a finished render is reused.

What: each campaign renders the formats its channels publish (`records.video.campaign_formats`:
vertical for Bluesky and for the RSS enclosure) plus the extras its `[look] formats` asks for
(none by default; a workspace whose campaign TOML still says `formats = ["vertical",
"square"]` keeps rendering both: explicit wins), or exactly the formats asked for
(`narrative render --format`). Each at the campaign's `[look] resolution` (short edge, px) and
`[look] fps`, else the workspace's `[render]` ones.

When: never the same frames twice. A finished video is reused when its inputs fingerprint
(`_Job.inputs`: the public transcript, title and key intervals, the privacy fingerprint, the
campaign's look and end-card text, the layout, the asset files, size, fps, preset) matches,
whoever asks: a re-run, `process --force`, a re-derived correction, the web's output jobs.
`force` only stops trusting rows older than the fingerprint; `reencode` (`narrative render
--force`) encodes again regardless. Everything public comes from `for_publication`, so a
video made while the narrator was named is never reused once they must be anonymous (see
`_privacy_fingerprint`).

An anonymous narrator in a campaign with `voice = "synthetic"`, or whose consent chose it
(`narrative consent voice`, preferred over the campaign's), is not heard at all: `revoice`
has the shipped neural voice speak the redacted transcript, and the video is made from that
speech and its word times (`policy.voice` decides, `engines.tts` speaks). The voice a video
is published with is part of its privacy fingerprint, so changing the choice renders again. The
voice package is checked before the first video, so a missing or damaged one fails here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from narratives.core.campaigns import Campaign, get_campaign
from narratives.core.errors import ConfigError, InvalidState
from narratives.core.workspace import Workspace
from narratives.engines.tts import check_voice
from narratives.policy.anonymise import Publication, for_publication
from narratives.policy.routing import routes
from narratives.policy.voice import SYNTHETIC, published_voice
from narratives.records.analysis import Analysis
from narratives.records.redactions import Redactions
from narratives.records.stage import StageResult
from narratives.records.transcript import Transcript
from narratives.records.video import FORMATS, Video, campaign_formats, video_file, video_key
from narratives.stages.ingest import source_path
from narratives.stages.render.cut import sentences, words_of
from narratives.stages.render.layout import Layout, load_layout
from narratives.stages.render.revoice import Revoiced, plan, revoice
from narratives.stages.render.video import asset_paths, frame_scale, render_video
from narratives.store.context import Context
from narratives.store.narrative_files import read_analysis, read_transcript
from narratives.store.schema import narratives
from narratives.store.stage_runs import get_run, stage_run

__all__ = ["STAGE", "RenderStage", "frame_rate", "run"]

STAGE = "render"

#: Bumped when the drawing or encoding changes what the same inputs produce, so finished
#: videos are made again once (part of the inputs fingerprint).
RENDERER = 1

#: `progress(key, frames_done, frames_total)`
StageProgress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RenderStage:
    """The render stage as the pipeline runs it (the narrative's routes, each campaign's
    formats): done when it rendered a video, skipped when every one was reused (or there
    was nothing to render)."""

    name: str = STAGE
    #: The pipeline's progress callback: ("stage", "render <campaign>/<format>") as each video
    #: starts, then ("fraction", frames done / frames) while it encodes.
    progress: Callable[[str, Any], None] | None = None

    def run(self, ctx: Context, narrative_id: str, *, force: bool = False) -> StageResult:
        videos = run(ctx, narrative_id, force=force, progress=_frames_to(self.progress))
        worked = any(not video.skipped for video in videos)
        return StageResult(STAGE, "done" if worked else "skipped", videos)


def _frames_to(progress: Callable[[str, Any], None] | None) -> StageProgress | None:
    """Turns the render's per-video frame counts into the pipeline's progress events."""
    if progress is None:
        return None
    current: list[str] = []

    def report(key: str, done: int, total: int) -> None:
        if current != [key]:
            current[:] = [key]
            progress("stage", f"{STAGE} {key}")
        progress("fraction", done / total if total else 1.0)

    return report


def run(
    ctx: Context,
    narrative_id: str,
    *,
    force: bool = False,
    reencode: bool = False,
    formats: Sequence[str] | None = None,
    campaigns: Sequence[str | Campaign] | None = None,
    redactions: Redactions | None = None,
    progress: StageProgress | None = None,
) -> list[Video]:
    """Render every (campaign, format) video of a narrative; one `stage_runs` row each.

    Campaigns: `campaigns` when given, else the narrative's routes (`routing.routes`:
    the campaigns staff assigned it to, or else those its tags fit). Formats: `formats` when
    given, else `campaign_formats` (the channels' formats plus `look.formats`). A `done` row
    whose files exist and whose inputs fingerprint matches is reused, even when `force`
    (which only stops trusting rows made before fingerprints were kept); `reencode` renders
    regardless. `progress(key, frames_done, frames_total)`.
    """
    if not ctx.settings.render.enabled:
        return []
    transcript, analysis = _inputs(ctx, narrative_id)
    if (analysis is not None and analysis.empty) or transcript.is_empty:
        return []
    analysed = analysis is not None
    if campaigns is None and analysed:
        # Explicit assignments first, then the tag fit (`policy.routing.routes`).
        routed = [r.campaign for r in routes(ctx, narrative_id, analysis)]
    # Everything public is derived from the anonymised copies when the narrator must stay
    # anonymous (the default while no consent says otherwise).
    pub = for_publication(ctx, narrative_id, transcript, analysis.to_dict() if analysis else None)
    redactions = redactions or pub.redactions
    ws: Workspace = ctx.workspace
    if campaigns is not None:
        chosen = [c if isinstance(c, Campaign) else get_campaign(ws, c) for c in campaigns]
    elif analysed:
        chosen = [get_campaign(ws, slug) for slug in routed]
    else:
        raise InvalidState(
            f"{narrative_id[:12]}: not analysed yet, so its campaigns are unknown",
            hint="run the analysis first, or name the campaigns (--campaign SLUG)",
        )
    for f in formats or ():
        if f not in FORMATS:
            raise ConfigError(f"unknown video format {f!r}", hint=f"one of {', '.join(FORMATS)}")
    if any(published_voice(c, pub.anonymous, pub.voice_mode) == SYNTHETIC for c in chosen):
        # Before any video: a missing or damaged voice package is named now, with the fix.
        check_voice()
    job = _Job(ctx, narrative_id, pub, redactions, progress)
    return [
        job.video(campaign, fmt, force=force, reencode=reencode)
        for campaign in chosen
        for fmt in list(formats or campaign_formats(campaign))
    ]


def frame_rate(ctx: Context, campaign: Campaign) -> int:
    """The campaign's `[look] fps`, else the workspace's `[render] fps`."""
    return campaign.look.fps or ctx.settings.render.fps


def _resolution(ctx: Context, campaign: Campaign) -> int:
    """The campaign's `[look] resolution` (short edge, px), else `[render] resolution`."""
    return campaign.look.resolution or ctx.settings.render.resolution


def _drawn(transcript: Transcript) -> dict[str, Any]:
    """What of a transcript a video shows or says: the words and their times, not how long
    the transcription took or how sure the model was (those change on every run)."""
    return {
        "language": transcript.language,
        "duration": round(transcript.duration, 3),
        "segments": [
            [
                round(s.start, 3),
                round(s.end, 3),
                s.text,
                [[round(w.start, 3), round(w.end, 3), w.text] for w in s.words],
            ]
            for s in transcript.segments
        ],
    }


def _inputs(ctx: Context, narrative_id: str) -> tuple[Transcript, Analysis | None]:
    """The transcript (required) and the analysis (None when there is none yet)."""
    transcript = read_transcript(ctx.workspace, narrative_id)
    if transcript is None:
        raise InvalidState(
            f"{narrative_id[:12]}: no transcript yet", hint="run `narrative process` first"
        )
    return transcript, read_analysis(ctx.workspace, narrative_id)


class _Job:
    """What every video of one narrative is made from: the public transcript, title, keys
    and redactions, the source recording (looked up once, when first needed)."""

    def __init__(
        self,
        ctx: Context,
        narrative_id: str,
        pub: Publication,
        redactions: Redactions | None,
        progress: StageProgress | None,
    ) -> None:
        self.ctx, self.narrative_id = ctx, narrative_id
        self.transcript, self.analysis = pub.transcript, pub.analysis
        self.pub = pub
        self.redactions, self.voice_semitones = redactions, pub.voice_semitones
        self.privacy = _privacy_fingerprint(pub, redactions)
        self.title = _title(ctx, narrative_id, self.analysis, self.transcript)
        self.keys = _keys(self.analysis)
        self.progress = progress
        self._audio_path: Path | None = None
        self._revoiced: Revoiced | None = None
        self._layouts: dict[str, Layout] = {}
        self._assets: dict[Path, str] = {}

    def _layout(self, fmt: str) -> Layout:
        if fmt not in self._layouts:
            self._layouts[fmt] = load_layout(self.ctx.workspace, fmt)
        return self._layouts[fmt]

    def _scale(self, campaign: Campaign, fmt: str) -> float:
        return frame_scale(
            self._layout(fmt), _resolution(self.ctx, campaign), self.ctx.settings.render.scale
        )

    def _asset(self, path: Path) -> str:
        if path not in self._assets:
            self._assets[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        return self._assets[path]

    def inputs(self, campaign: Campaign, fmt: str) -> str:
        """The fingerprint of everything the video is made of: equal fingerprints, equal
        frames and sound, so a finished video with the same one is never made again."""
        ws, settings = self.ctx.workspace, self.ctx.settings.render
        try:
            assets = {k: self._asset(p) for k, p in asset_paths(ws, campaign).items() if p}
        except ConfigError as exc:  # a missing file: the render itself names it
            assets = {"missing": str(exc)}
        data = {
            "renderer": RENDERER,
            "format": fmt,
            "privacy": self._privacy(campaign),
            "transcript": _drawn(self.transcript),
            "title": self.title,
            "keys": [[round(a, 3), round(b, 3)] for a, b in self.keys],
            "campaign": campaign.model_dump(
                mode="json", include={"name", "hashtags", "link", "max_video_seconds"}
            ),
            # Which formats, and at what size and rate, are in "format", "scale" and "fps":
            # asking for one more format, or writing down the default, changes no frame.
            "look": campaign.look.model_dump(mode="json", exclude={"formats", "resolution", "fps"}),
            "layout": self._layout(fmt).model_dump(mode="json"),
            "assets": assets,
            "scale": self._scale(campaign, fmt),
            "fps": frame_rate(self.ctx, campaign),
            "preset": settings.preset,
        }
        blob = json.dumps(data, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def _voice(self, campaign: Campaign) -> str:
        return published_voice(campaign, self.pub.anonymous, self.pub.voice_mode)

    def _privacy(self, campaign: Campaign) -> str:
        """The privacy fingerprint of this campaign's videos: a synthetic voice (the
        campaign's or the narrator's choice) adds itself and the words it says, so a change
        of the voice a video is published with renders it again."""
        if self._voice(campaign) != SYNTHETIC:
            return self.privacy
        extra = f"{SYNTHETIC}:{plan(self.transcript).key}"
        return hashlib.sha256(f"{self.privacy}/{extra}".encode()).hexdigest()[:16]

    def _speech(self) -> Revoiced:
        """The synthetic speech, made once for every campaign and format of the narrative."""
        if self._revoiced is None:
            folder = self.ctx.workspace.narrative_dir(self.narrative_id)
            self._revoiced = revoice(folder, self.transcript)
        return self._revoiced

    def video(self, campaign: Campaign, fmt: str, *, force: bool, reencode: bool) -> Video:
        """The video for one campaign and format: a finished one reused, else rendered."""
        inputs = self.inputs(campaign, fmt)
        if not reencode and (done := self._finished(campaign, fmt, inputs, force)) is not None:
            return done
        return self._render(campaign, fmt, inputs)

    def _finished(self, campaign: Campaign, fmt: str, inputs: str, force: bool) -> Video | None:
        """The `done` render, if its files exist and it was made of the same inputs. A row
        from before inputs were fingerprinted is trusted as it was then (same privacy), unless
        `force`: upgrading does not make an archive's videos again, `process --force` does."""
        ws = self.ctx.workspace
        prev = get_run(self.ctx.db, self.narrative_id, STAGE, video_key(campaign.slug, fmt))
        if (
            prev is None
            or prev.status != "done"
            or not isinstance(prev.output, dict)
            or not all(
                isinstance(prev.output.get(k), str) and (ws.root / prev.output[k]).is_file()
                for k in ("video", "captions", "thumbnail")
            )
        ):
            return None
        out = prev.output
        if "inputs" in out:
            same = out["inputs"] == inputs
        else:
            same = not force and out.get("privacy") == self._privacy(campaign)
        if not same:
            return None
        return Video.from_output(ws.root, self.narrative_id, campaign.slug, fmt, out, skipped=True)

    def _render(self, campaign: Campaign, fmt: str, inputs: str) -> Video:
        ctx, ws, settings = self.ctx, self.ctx.workspace, self.ctx.settings.render
        key = video_key(campaign.slug, fmt)
        layout = self._layout(fmt)
        synthetic = self._voice(campaign) == SYNTHETIC
        if not synthetic:
            self._audio_path = self._audio_path or source_path(ctx, self.narrative_id)
        progress = self.progress
        folder = ws.narrative_dir(self.narrative_id)
        with stage_run(ctx.db, self.narrative_id, STAGE, key) as handle:
            handle.engine = "moviepy"
            handle.model = f"layout:{fmt}"
            # moviepy.__version__ is stale in 2.2.1 (it says 2.1.2); the metadata is not.
            handle.version = version("moviepy")
            if synthetic:
                # Nothing of the recording: the shipped voice's speech, its words and times.
                speech = self._speech()
                audio, transcript, keys = speech.audio, speech.transcript, speech.keys(self.keys)
                words = self.redactions.replacements if self.redactions else {}
                redactions, semitones = Redactions(intervals=(), replacements=words), None
            else:
                audio, transcript, keys = self._audio_path, self.transcript, self.keys
                redactions, semitones = self.redactions, self.voice_semitones
            r = render_video(
                audio,
                transcript,
                campaign,
                folder / video_file(campaign.slug, fmt),
                fmt=fmt,
                layout=layout,
                workspace=ws,
                title=self.title,
                keys=keys,
                fps=frame_rate(ctx, campaign),
                scale=self._scale(campaign, fmt),
                preset=settings.preset,
                threads=settings.threads or None,
                redactions=redactions,
                voice_semitones=semitones,
                progress=(lambda d, t: progress(key, d, t)) if progress else None,
            )
            result = Video(
                self.narrative_id,
                campaign.slug,
                fmt,
                r.video,
                r.captions,
                r.thumbnail,
                r.duration,
                r.width,
                r.height,
                r.cut,
                # The records keep recording time (what the drafts and the editor read).
                speech.recording_ranges(r.cut_ranges) if synthetic else r.cut_ranges,
                r.missing_glyphs,
                voice=SYNTHETIC if synthetic else None,
            )
            handle.output = {
                **result.output(ws.root),
                "privacy": self._privacy(campaign),
                "inputs": inputs,
            }
        return result


def _interval(item: Any) -> tuple[float, float] | None:
    if isinstance(item, Mapping):
        a, b = item.get("start"), item.get("end")
        if isinstance(a, int | float) and isinstance(b, int | float) and b > a:
            return float(a), float(b)
    return None


def _keys(analysis: Mapping[str, Any]) -> list[tuple[float, float]]:
    """Source intervals to keep first if the recording must be cut: the quote, then the
    summary sentences."""
    keys = [k for k in [_interval(analysis.get("quote"))] if k]
    # The analysis stores its summary as a list of timed sentences.
    summary = analysis.get("summary") or []
    if isinstance(summary, Mapping):
        summary = summary.get("sentences") or []
    keys += [k for s in summary if (k := _interval(s))]
    return keys


def _title(
    ctx: Context, narrative_id: str, analysis: Mapping[str, Any], transcript: Transcript
) -> str:
    if isinstance(analysis.get("title"), str) and analysis["title"].strip():
        return analysis["title"].strip()
    with ctx.db.connect() as conn:
        title = conn.execute(
            sa.select(narratives.c.title).where(narratives.c.id == narrative_id)
        ).scalar()
    if title:
        return title
    words = words_of(transcript)
    first = sentences(words)
    text = " ".join(w.text.strip() for w in words[: first[0].last + 1]) if first else ""
    return text[:80] or "A narrative"


def _privacy_fingerprint(pub: Publication, redactions: Redactions | None) -> str:
    """Changes whenever what must be hidden changes, so a video made while the narrator was
    named is never reused once they must be anonymous (or a new name is marked)."""
    data = {
        "anonymous": pub.anonymous,
        "intervals": [list(map(float, i)) for i in (redactions.intervals if redactions else [])],
        "replacements": sorted((redactions.replacements or {}).items()) if redactions else [],
        "voice": pub.voice_semitones,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]
