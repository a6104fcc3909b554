"""The transcribe stage: a registered recording becomes `transcript.json` (a `Transcript`), with
its text, SRT and WebVTT beside it. The engines themselves are `narratives.engines.whisper`.

A `done` run is skipped when engine, model and language are the ones asked for. The model and
language are checked before anything is touched, and the new files replace the old ones only
once written, so a failed run keeps the previous transcript. When the new transcript differs
from the one it replaces, the rows of the later stages are removed: they were made from the
old text, and a stage with no row is redone on the next run. A stored transcript that cannot
be read is transcribed again rather than failing the stage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from narratives.core.clock import utcnow
from narratives.core.config import Settings
from narratives.core.errors import UnreadableFile
from narratives.media import captions
from narratives.records.stage import StageResult
from narratives.records.transcript import Transcript
from narratives.stages.ingest import source_path, stored_copy
from narratives.store.context import Context
from narratives.store.narrative_files import (
    corrected_transcript_path,
    read_original_transcript,
    read_transcript,
    transcript_path,
    write_transcript,
)
from narratives.store.narrative_rows import set_transcribed
from narratives.store.stage_runs import RunHandle, StageRun, forget_runs, reusable, stage_run

__all__ = ["STAGE", "Progress", "TranscribeStage", "load_transcript", "run"]

STAGE = "transcribe"

log = logging.getLogger(__name__)

#: Called with (event, detail): ("file", path), ("stage", name), ("fraction", 0..1).
Progress = Callable[[str, Any], None]


def _no_progress(_event: str, _detail: Any) -> None:
    pass


def load_transcript(ctx: Context, narrative_id: str) -> Transcript:
    """The stored Transcript of a narrative whose transcript.json exists."""
    transcript = read_transcript(ctx.workspace, narrative_id)
    if transcript is None:
        raise FileNotFoundError(transcript_path(ctx.workspace, narrative_id))
    return transcript


@dataclass(frozen=True)
class TranscribeStage:
    """The stage as the pipeline runs it: the batch's settings and progress, and the path the
    recording was found at (else the newest registered path still on disk)."""

    settings: Settings | None = None
    progress: Progress = _no_progress
    path: Path | None = None
    name: str = STAGE

    def run(self, ctx: Context, narrative_id: str, *, force: bool = False) -> StageResult:
        return run(
            ctx,
            narrative_id,
            force=force,
            path=self.path,
            settings=self.settings,
            progress=self.progress,
        )


def run(
    ctx: Context,
    narrative_id: str,
    *,
    force: bool = False,
    path: Path | None = None,
    settings: Settings | None = None,
    progress: Progress = _no_progress,
) -> StageResult:
    """Transcribe one narrative; the result's record is its Transcript, new or reused."""
    # PyAV and the Whisper engines: loaded on first use, so `narrative --help` and commands
    # that never transcribe stay fast.
    from narratives.engines import whisper

    opts = (settings or ctx.settings).transcribe
    requested = _request(opts.engine, opts.model, opts.language)

    def fits(previous: StageRun) -> bool:
        asked = previous.output.get("requested") if isinstance(previous.output, dict) else None
        return bool(asked) and _request(*asked) == requested

    if (
        reusable(ctx.db, narrative_id, STAGE, force=force, fits=fits)
        and (stored := _stored(ctx, narrative_id)) is not None
    ):
        return StageResult(STAGE, "skipped", stored)

    opts = whisper.check_settings(opts)
    # The workspace's copy first (the same bytes, verified, and on the workspace's disk, which
    # a cluster's workers share), else the path this run found it at, else a remembered one.
    path = stored_copy(ctx, narrative_id) or path or source_path(ctx, narrative_id)
    with stage_run(ctx.db, narrative_id, STAGE) as handle:
        handle.engine, handle.model = opts.engine, opts.model
        transcript = whisper.transcribe_file(
            path,
            opts,
            narrative_id,
            progress=lambda done, total: progress("fraction", done / total if total else 1.0),
        )
        handle.model, handle.version = transcript.model, transcript.engine_version
        before = _stored(ctx, narrative_id)
        changed = before is None or _content(transcript) != _content(before)
        _write(ctx, narrative_id, transcript)
        _record(ctx, narrative_id, handle, transcript, requested, changed=changed)
    progress("fraction", 1.0)
    return StageResult(STAGE, "done", transcript)


def _write(ctx: Context, narrative_id: str, transcript: Transcript) -> None:
    """The transcript and its text and caption files, all replaced together. An editors'
    correction (transcript.corrected.json) is never overwritten: the text and captions stay
    made from it (`narrative process --discard-corrections` drops it)."""
    shown = read_transcript(ctx.workspace, narrative_id) if _corrected(ctx, narrative_id) else None
    shown = shown or transcript
    write_transcript(
        ctx.workspace,
        narrative_id,
        transcript,
        beside={
            "transcript.txt": shown.text + "\n",
            "transcript.srt": captions.to_srt(shown),
            "transcript.vtt": captions.to_webvtt(shown),
        },
    )


def _corrected(ctx: Context, narrative_id: str) -> bool:
    return corrected_transcript_path(ctx.workspace, narrative_id).is_file()


def _record(
    ctx: Context,
    narrative_id: str,
    handle: RunHandle,
    transcript: Transcript,
    requested: list[str],
    *,
    changed: bool,
) -> None:
    """The run's output, the narrative's length and language, and (for a new text) the
    later stages forgotten."""
    handle.output = {
        "requested": requested,
        "language": transcript.language,
        "duration": transcript.duration,
        "segments": len(transcript.segments),
        "words": len(transcript.words),
        "empty": transcript.is_empty,
    }
    with ctx.db.begin() as conn:
        set_transcribed(
            conn,
            narrative_id,
            duration=transcript.duration,
            language=transcript.language,
            now=utcnow(),
        )
        if changed:
            # Every other stage comes after this one and was made from the old text.
            forget_runs(conn, narrative_id, but=STAGE)


def _request(engine: str, model: str, language: str = "") -> list[str]:
    """What a transcription was asked for; rows from before languages counted say detect."""
    from narratives.engines.whisper import request_language  # PyAV and Whisper, as above

    return [engine, model, request_language(language, model)]


def _content(transcript: Transcript) -> dict[str, Any]:
    """A transcript's content: everything but how long it took."""
    return {k: v for k, v in transcript.to_dict().items() if k != "seconds"}


def _stored(ctx: Context, narrative_id: str) -> Transcript | None:
    """The stored transcript; None when there is none, or when it is damaged: the stage then
    transcribes again (and, the old text being unknown, counts the new one as changed)."""
    try:
        return read_original_transcript(ctx.workspace, narrative_id)
    except UnreadableFile as exc:
        log.warning("%s; transcribing it again", exc)
        return None
