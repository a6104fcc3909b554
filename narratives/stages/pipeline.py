"""The `process` pipeline: recordings in, every stage run in order, one result per recording.

recording ─ingest→ Narrative ─transcribe→ Transcript ─analyse→ Analysis ─render→ Video ─draft→ Draft

Each stage is idempotent (a `done` stage is skipped unless forced) and a failure is recorded
on its narrative while the batch goes on. The transcription stage lives here because it is
where files on disk become narratives; the engines are in `transcribe.py`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from narratives.core.config import Settings
from narratives.core.errors import ConfigError, NarrativesError, UsageError
from narratives.core.files import write_files_atomically
from narratives.policy import routing as assignments
from narratives.policy.consent import import_sidecar, sidecar_campaigns, sidecar_path
from narratives.records.transcript import Transcript
from narratives.stages.ingest import find_recordings, register, source_path
from narratives.store.context import Context
from narratives.store.schema import drafts, narratives, stage_runs, utcnow
from narratives.store.stage_runs import get_run, stage_run

__all__ = [
    "STAGES",
    "ItemResult",
    "Progress",
    "RenderOutcome",
    "process_paths",
    "render_many",
    "transcribe_stage",
    "load_transcript",
]

STAGES = ("transcribe", "analyse", "render", "draft")

#: Called with (event, detail): ("file", path), ("stage", name), ("fraction", 0..1).
Progress = Callable[[str, Any], None]


def _no_progress(_event: str, _detail: Any) -> None:
    pass


@dataclass
class ItemResult:
    path: Path
    id: str | None = None
    #: ok (some work done) | skipped (all already done) | unassigned (analysed, but no
    #: campaign gets it: see `suggestions`) | failed
    status: str = "ok"
    error: str | None = None
    failed_stage: str | None = None
    stages: dict[str, str] = field(default_factory=dict)
    transcript: Transcript | None = None
    #: The campaigns the story goes to, once analysed (`assignments.Route.to_json()` each).
    campaigns: list[dict[str, Any]] | None = None
    #: For an unassigned story: every campaign's fit, best first (`Suggestion.to_json()`).
    suggestions: list[dict[str, Any]] | None = None
    #: Drafts this run created or regenerated that now await review.
    new_drafts: int = 0

    def to_json(self, *, with_transcript: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "path": str(self.path),
            "id": self.id,
            "status": self.status,
            "error": self.error,
            "stages": self.stages,
        }
        if self.failed_stage:
            data["failed_stage"] = self.failed_stage
        if self.campaigns is not None:
            data["campaigns"] = self.campaigns
        if self.suggestions is not None:
            data["suggestions"] = self.suggestions
        data["new_drafts"] = self.new_drafts
        t = self.transcript
        data["language"] = t.language if t else None
        data["duration"] = t.duration if t else None
        if with_transcript:
            data["text"] = t.text if t else None
            data["segments"] = t.to_dict()["segments"] if t else None
        return data


def load_transcript(ctx: Context, narrative_id: str) -> Transcript:
    path = ctx.workspace.narrative_dir(narrative_id) / "transcript.json"
    return Transcript.from_dict(json.loads(path.read_text(encoding="utf-8")))


def transcribe_stage(
    ctx: Context,
    narrative_id: str,
    *,
    force: bool = False,
    path: Path | None = None,
    settings: Settings | None = None,
    progress: Progress = _no_progress,
) -> tuple[Transcript, bool]:
    """Transcribe one narrative; returns (transcript, whether work was done).

    A `done` run is skipped when engine, model and language are the ones asked for. The model
    and language are checked before anything is touched, and the new files replace the old
    ones only once written, so a failed run keeps the previous transcript. When the new
    transcript differs from the one it replaces, the rows of the later stages are removed:
    they were made from the old text, and a stage with no row is redone on the next run.
    """
    from narratives.engines import whisper as transcribe
    from narratives.media import captions

    settings = settings or ctx.settings
    opts = settings.transcribe
    run = get_run(ctx.db, narrative_id, "transcribe")
    out_dir = ctx.workspace.narrative_dir(narrative_id)
    requested = _request(opts.engine, opts.model, opts.language)
    previous = run.output.get("requested") if run and isinstance(run.output, dict) else None
    if (
        run
        and run.status == "done"
        and previous
        and _request(*previous) == requested
        and not force
        and (out_dir / "transcript.json").exists()
    ):
        return load_transcript(ctx, narrative_id), False

    opts = transcribe.check_settings(opts)
    path = path or source_path(ctx.db, narrative_id)
    with stage_run(ctx.db, narrative_id, "transcribe") as handle:
        handle.engine, handle.model = opts.engine, opts.model
        transcript = transcribe.transcribe_file(
            path,
            opts,
            narrative_id,
            progress=lambda done, total: progress("fraction", done / total if total else 1.0),
        )
        handle.model, handle.version = transcript.model, transcript.engine_version
        changed = _content(transcript.to_dict()) != _stored_content(out_dir / "transcript.json")
        write_files_atomically(
            out_dir,
            {
                "transcript.json": json.dumps(transcript.to_dict(), ensure_ascii=False, indent=1),
                "transcript.txt": transcript.text + "\n",
                "transcript.srt": captions.to_srt(transcript),
                "transcript.vtt": captions.to_webvtt(transcript),
            },
        )
        handle.output = {
            "requested": requested,
            "language": transcript.language,
            "duration": transcript.duration,
            "segments": len(transcript.segments),
            "words": len(transcript.words),
            "empty": transcript.is_empty,
        }
        with ctx.db.begin() as conn:
            conn.execute(
                narratives.update()
                .where(narratives.c.id == narrative_id)
                .values(
                    duration=transcript.duration, language=transcript.language, updated_at=utcnow()
                )
            )
            if changed:
                conn.execute(
                    stage_runs.delete().where(
                        stage_runs.c.narrative_id == narrative_id,
                        stage_runs.c.stage.in_(STAGES[1:]),
                    )
                )
    progress("fraction", 1.0)
    return transcript, True


def _request(engine: str, model: str, language: str = "") -> list[str]:
    """What a transcription was asked for; rows from before languages counted say detect."""
    from narratives.engines.whisper import request_language

    return [engine, model, request_language(language, model)]


def _content(data: dict[str, Any]) -> dict[str, Any]:
    """A transcript's content: everything but how long it took."""
    return {k: v for k, v in data.items() if k != "seconds"}


def _stored_content(path: Path) -> dict[str, Any] | None:
    try:
        return _content(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def _later_stage(name: str) -> Callable[..., Any] | None:
    """The `run` function of a later stage, or None when that stage is not installed."""
    module = f"narratives.stages.{name}.stage"
    import importlib

    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise
    return mod.run


def _stage_marks(ctx: Context, narrative_id: str, stage: str) -> set[tuple]:
    """What the stage's rows say about their runs; unchanged across a call means no work."""
    from narratives.store.schema import stage_runs

    with ctx.db.connect() as conn:
        rows = conn.execute(
            sa.select(stage_runs.c.key, stage_runs.c.started_at, stage_runs.c.status).where(
                stage_runs.c.narrative_id == narrative_id, stage_runs.c.stage == stage
            )
        )
        return {tuple(r) for r in rows}


def _draft_marks(ctx: Context, narrative_id: str) -> dict[int, tuple[Any, str]]:
    """Each draft of the narrative: (when it last changed, its state)."""
    with ctx.db.connect() as conn:
        rows = conn.execute(
            sa.select(drafts.c.id, drafts.c.updated_at, drafts.c.state).where(
                drafts.c.narrative_id == narrative_id
            )
        )
        return {r.id: (r.updated_at, r.state) for r in rows}


def _new_pending(before: dict[int, tuple[Any, str]], after: dict[int, tuple[Any, str]]) -> int:
    """Drafts made or regenerated between the two marks that now await review."""
    return sum(
        1
        for draft_id, mark in after.items()
        if mark[1] == "pending_review" and before.get(draft_id) != mark
    )


def _route(ctx: Context, result: ItemResult) -> None:
    """Where an analysed story goes; a story that fits no campaign is `unassigned`, with the
    campaigns that fit best as suggestions (never silently dropped)."""
    assert result.id is not None
    analysis = assignments.read_analysis(ctx, result.id)
    if not analysis or analysis.get("empty"):
        return
    found = assignments.routes(ctx, result.id, analysis)
    result.campaigns = [r.to_json() for r in found]
    if found or not assignments.is_unassigned(ctx, result.id, analysis):
        return  # (a withdrawn story goes nowhere on purpose)
    result.status = "unassigned"
    result.suggestions = [s.to_json() for s in assignments.suggestions(ctx, result.id, analysis)]


def _run_stages(
    ctx: Context,
    result: ItemResult,
    stages: list[str],
    *,
    force: bool,
    is_new: bool,
    settings: Settings | None,
    progress: Progress,
) -> ItemResult:
    """Run the wanted stages for one registered recording, recording a failure on the result."""
    did_work = is_new
    try:
        for stage in stages:
            progress("stage", stage)
            result.failed_stage = stage
            if stage == "transcribe":
                result.transcript, worked = transcribe_stage(
                    ctx,
                    result.id,
                    force=force,
                    path=result.path,
                    settings=settings,
                    progress=progress,
                )
            else:
                fn = _later_stage(stage)
                if fn is None:
                    continue
                before = _stage_marks(ctx, result.id, stage)
                drafts_before = _draft_marks(ctx, result.id) if stage == "draft" else {}
                fn(ctx, result.id, force=force)
                worked = _stage_marks(ctx, result.id, stage) != before
                if stage == "draft":
                    result.new_drafts = _new_pending(drafts_before, _draft_marks(ctx, result.id))
            result.stages[stage] = "done" if worked else "skipped"
            did_work = did_work or worked
        result.failed_stage = None
        result.status = "ok" if did_work else "skipped"
        if "analyse" in stages:
            _route(ctx, result)
    except NarrativesError as exc:
        result.status, result.error = "failed", str(exc)
    except Exception as exc:  # a bug in one narrative must not sink the batch
        result.status = "failed"
        result.error = f"unexpected error: {type(exc).__name__}: {exc}"
    return _finish(result)


def _finish(result: ItemResult) -> ItemResult:
    if result.status == "failed":
        if result.failed_stage:
            result.stages[result.failed_stage] = "failed"
        if result.path.name not in (result.error or ""):
            result.error = f"{result.path.name}: {result.error}"
    return result


# Worker processes (spawned, so torch and OpenMP start clean) keep one Context, and so one
# loaded model per engine, for their whole life.
_WORKER_CTX: Context | None = None


def _worker_init(root: str, settings: Settings, workers: int) -> None:
    global _WORKER_CTX
    from narratives.core.workspace import Workspace

    if not settings.render.threads:
        # Share the cores out, so N workers encoding at once do not oversubscribe them.
        share = max(1, (os.cpu_count() or 1) // workers)
        settings = settings.model_copy(
            update={"render": settings.render.model_copy(update={"threads": share})}
        )
    _WORKER_CTX = Context(Workspace(Path(root)), settings)


def _worker_run(result: ItemResult, stages: list[str], force: bool, is_new: bool) -> ItemResult:
    assert _WORKER_CTX is not None
    return _run_stages(
        _WORKER_CTX,
        result,
        stages,
        force=force,
        is_new=is_new,
        settings=_WORKER_CTX.settings,
        progress=_no_progress,
    )


def process_paths(
    ctx: Context,
    paths: Iterable[Path],
    *,
    force: bool = False,
    stages: Iterable[str] = STAGES,
    settings: Settings | None = None,
    progress: Progress = _no_progress,
    workers: int = 1,
    campaigns: Sequence[str] = (),
    actor: str = "intake",
) -> Iterator[ItemResult]:
    """Run the pipeline on every recording found under `paths`, yielding one result each.

    Recordings are registered here, one at a time (hashing is I/O); with `workers > 1` the
    stages of different narratives then run in parallel processes, one thread each: on small
    machines that beats several threads inside one model. The same audio met twice in one
    batch is processed once.

    `campaigns` (`process --campaign`) are assigned to every recording of the batch, and the
    campaigns a recording's sidecar names to that recording, before its stages run; an unknown
    slug among `campaigns` is a UsageError before any file is touched, one in a sidecar fails
    that recording alone.
    """
    campaigns = assignments.check_slugs(ctx, campaigns)
    wanted = [s for s in STAGES if s in set(stages)]
    seen: dict[str, Path] = {}
    pending: list[tuple[ItemResult, bool]] = []
    duplicates: list[ItemResult] = []
    for found in find_recordings(paths, skip=[ctx.workspace.work_dir]):
        result = ItemResult(path=found.path)
        if found.error:
            result.status, result.error = "failed", f"{found.path}: {found.error}"
            yield result
            continue
        try:
            # Checked before anything is recorded: a bad slug leaves no trace of this file.
            named = _sidecar_campaigns(ctx, found.path)
            result.id, is_new = register(ctx.db, found.path)
            # `story.m4a` + `story.consent.toml`: the narrator's consent travels with the file.
            import_sidecar(ctx, result.id, found.path)
            # Staff said which campaigns it is for: recorded before the stages choose.
            assignments.record_intake(ctx, result.id, campaigns, actor=actor, source="intake")
            assignments.record_intake(ctx, result.id, named, actor=actor, source="sidecar")
        except NarrativesError as exc:
            result.status, result.error = "failed", str(exc)
            yield _finish(result)
            continue
        if result.id in seen:
            result.status = "skipped"
            result.stages = {"ingest": f"same recording as {seen[result.id].name}"}
            duplicates.append(result)  # reported last, with the transcript made meanwhile
            continue
        seen[result.id] = found.path
        if workers <= 1:
            progress("file", found.path)
            yield _run_stages(
                ctx,
                result,
                wanted,
                force=force,
                is_new=is_new,
                settings=settings,
                progress=progress,
            )
        else:
            pending.append((result, is_new))
    if pending:
        yield from _run_parallel(ctx, pending, wanted, force, settings, workers, progress)
    for result in duplicates:
        if (
            result.id is not None
            and (ctx.workspace.narrative_dir(result.id) / "transcript.json").exists()
        ):
            result.transcript = load_transcript(ctx, result.id)
        yield result


def _sidecar_campaigns(ctx: Context, recording: Path) -> list[str]:
    """The known campaign slugs the recording's sidecar names; ConfigError naming the
    sidecar for an unknown one."""
    named = sidecar_campaigns(recording)
    try:
        return assignments.check_slugs(ctx, named)
    except UsageError as exc:
        raise ConfigError(f"{sidecar_path(recording).name}: campaigns: {exc}") from None


def _pool(ctx: Context, settings: Settings | None, size: int, workers: int):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(
        max_workers=size,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(str(ctx.workspace.root), settings or ctx.settings, workers),
    )


def _crashed(result: ItemResult) -> ItemResult:
    result.status = "failed"
    result.error = (
        "the worker process crashed while processing this file (a native decoder crash "
        "or out of memory); the other recordings were not affected"
    )
    return _finish(result)


def _run_parallel(ctx, pending, wanted, force, settings, workers, progress):
    jobs = [(_worker_run, (result, wanted, force, is_new)) for result, is_new in pending]
    for i, outcome in _in_workers(ctx, settings, workers, jobs):
        result = pending[i][0]
        progress("file", result.path)
        if outcome is _CRASHED:
            yield _crashed(result)
        elif isinstance(outcome, Exception):  # e.g. a result that cannot travel back
            yield _finish(_failed_in_worker(result, outcome))
        else:
            yield outcome


#: What `_in_workers` yields for a job whose worker process died.
_CRASHED = object()


def _in_workers(
    ctx: Context,
    settings: Settings | None,
    workers: int,
    jobs: list[tuple[Callable[..., Any], tuple]],
) -> Iterator[tuple[int, Any]]:
    """Run `fn(*args)` jobs in a pool of worker processes, yielding (index, outcome) as each
    ends: its return value, the exception it raised, or `_CRASHED`.

    A worker that dies (a native crash, the OOM killer) breaks the whole pool, so the
    unfinished jobs are then run one at a time, each in a pool of its own: the one that
    crashes again is reported, and every other one finishes."""
    from concurrent.futures import as_completed
    from concurrent.futures.process import BrokenProcessPool

    finished: set[int] = set()
    with _pool(ctx, settings, min(workers, len(jobs)), workers) as pool:
        futures = {pool.submit(fn, *args): i for i, (fn, args) in enumerate(jobs)}
        for future in as_completed(futures):
            i = futures[future]
            try:
                outcome = future.result()
            except BrokenProcessPool:
                continue  # retried alone below
            except Exception as exc:
                outcome = exc
            finished.add(i)
            yield i, outcome
    for i, (fn, args) in enumerate(jobs):
        if i in finished:
            continue
        with _pool(ctx, settings, 1, workers) as alone:
            try:
                outcome = alone.submit(fn, *args).result()
            except BrokenProcessPool:
                outcome = _CRASHED
            except Exception as exc:
                outcome = exc
        yield i, outcome


@dataclass
class RenderOutcome:
    narrative_id: str
    videos: list[Any] = field(default_factory=list)
    error: str | None = None
    hint: str | None = None


def _worker_render(narrative_id: str, options: dict[str, Any]) -> RenderOutcome:
    from narratives.stages.render import stage as render

    assert _WORKER_CTX is not None
    try:
        videos = render.run(_WORKER_CTX, narrative_id, **options)
    except NarrativesError as exc:
        return RenderOutcome(narrative_id, error=str(exc), hint=exc.hint)
    return RenderOutcome(narrative_id, videos)


def render_many(
    ctx: Context,
    narrative_ids: Iterable[str],
    *,
    workers: int,
    force: bool = False,
    formats: list[str] | None = None,
    campaigns: list[str] | None = None,
) -> Iterator[RenderOutcome]:
    """Render narratives `workers` at a time in spawned processes, yielding each as it ends.

    One render's Python half draws frames on one core while x264 encodes; with one render
    per core and the encoder threads shared out, both cores stay busy without oversubscribing
    them (bench/render.py --batch). A narrative whose worker crashes is reported as failed."""
    ids = list(narrative_ids)
    options = {"force": force, "formats": formats, "campaigns": campaigns}
    jobs = [(_worker_render, (nid, options)) for nid in ids]
    for i, outcome in _in_workers(ctx, None, workers, jobs):
        if outcome is _CRASHED:
            yield RenderOutcome(
                ids[i],
                error="the worker process crashed while rendering (out of memory or a native "
                "crash); the other narratives were not affected",
            )
        elif isinstance(outcome, Exception):
            yield RenderOutcome(ids[i], error=f"worker failed: {type(outcome).__name__}: {outcome}")
        else:
            yield outcome


def _failed_in_worker(result: ItemResult, exc: Exception) -> ItemResult:
    result.status = "failed"
    result.error = f"worker failed: {type(exc).__name__}: {exc}"
    return result
