"""The `process` pipeline: recordings in, every stage run in order, one result per recording.

recording ─ingest→ Narrative ─transcribe→ Transcript ─analyse→ Analysis ─render→ Video ─draft→ Draft

The pipeline is a tuple of `Stage`s (`PIPELINE`). Each is idempotent (a `done` stage is skipped
unless forced) and says in its `StageResult` whether it worked; a failure is recorded on its
narrative while the batch goes on. With `workers > 1` the stages run in the process pool; with
one worker, a story is transcribed and analysed while the one before it renders (`_Overlap`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from narratives.core.config import Settings
from narratives.core.errors import ConfigError, NarrativesError, UsageError
from narratives.policy import campaign_assignments, routing
from narratives.policy.sidecar import import_sidecar, sidecar_campaigns, sidecar_path
from narratives.records.stage import Stage, StageResult
from narratives.records.transcript import Transcript
from narratives.stages.draft.stage import Drafted, DraftStage
from narratives.stages.ingest import Found, find_recordings, register, workspace_outputs
from narratives.stages.pool import CRASHED, in_workers, worker_context
from narratives.stages.transcribe import Progress, TranscribeStage, load_transcript
from narratives.store.context import Context
from narratives.store.narrative_files import read_analysis, transcript_path

__all__ = ["PIPELINE", "STAGES", "ItemResult", "process_paths"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Deferred:
    """A stage whose module is imported when it first runs: the name is known up front (for
    `STAGES` and `--until`), the stage itself comes from `load`."""

    name: str
    load: Callable[[Progress], Stage]
    progress: Progress = field(default=lambda _event, _detail: None)

    def run(self, ctx: Context, narrative_id: str, *, force: bool = False) -> StageResult:
        return self.load(self.progress).run(ctx, narrative_id, force=force)


def _analyse(_progress: Progress) -> Stage:
    # NumPy and the models: imported on first use, keeping `narrative --help` fast.
    from narratives.stages.analyse.stage import AnalyseStage

    return AnalyseStage()


def _render(progress: Progress) -> Stage:
    # NumPy, Pillow and PyAV: imported on first use, as for analyse.
    from narratives.stages.render.stage import RenderStage

    return RenderStage(progress=progress)


#: Every stage, in the order the data flows.
PIPELINE: tuple[Stage, ...] = (
    TranscribeStage(),
    _Deferred("analyse", _analyse),
    _Deferred("render", _render),
    DraftStage(),
)
STAGES = tuple(stage.name for stage in PIPELINE)


def _no_progress(_event: str, _detail: Any) -> None:
    pass


@dataclass
class ItemResult:
    """What `process` says about one recording (one JSON line with `--json`)."""

    path: Path
    id: str | None = None
    #: ok (some work done) | skipped (all already done) | unassigned (analysed, but no
    #: campaign gets it: see `suggestions`) | failed
    status: str = "ok"
    error: str | None = None
    failed_stage: str | None = None
    stages: dict[str, str] = field(default_factory=dict)
    transcript: Transcript | None = None
    #: The campaigns the story goes to, once analysed (`routing.Route.to_json()` each).
    campaigns: list[dict[str, Any]] | None = None
    #: For an unassigned story: every campaign's fit, best first (`Suggestion.to_json()`).
    suggestions: list[dict[str, Any]] | None = None
    #: Drafts this run created or regenerated that now await review.
    new_drafts: int = 0
    #: Whether any stage did work so far (decides ok or skipped at the end; not reported).
    worked: bool = False

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


def _stages(
    wanted: Sequence[str], *, path: Path, settings: Settings | None, progress: Progress
) -> tuple[Stage, ...]:
    """The wanted stages of `PIPELINE`, bound to this batch, recording and progress display."""
    return tuple(
        _bind(stage, path, settings, progress) for stage in PIPELINE if stage.name in wanted
    )


def _bind(stage: Stage, path: Path, settings: Settings | None, progress: Progress) -> Stage:
    if isinstance(stage, TranscribeStage):
        return replace(stage, path=path, settings=settings, progress=progress)
    if isinstance(stage, _Deferred):
        return replace(stage, progress=progress)
    return stage


def _failure(exc: Exception) -> str:
    if isinstance(exc, NarrativesError):
        return str(exc)
    return f"unexpected error: {type(exc).__name__}: {exc}"


def _attempt(stage: Stage, ctx: Context, narrative_id: str, *, force: bool) -> StageResult:
    """Run one stage, timed; a raised failure becomes a `failed` result."""
    t0 = time.perf_counter()
    try:
        outcome = stage.run(ctx, narrative_id, force=force)
    except Exception as exc:  # a bug in one narrative must not sink the batch
        log.debug("%s failed on %s", stage.name, narrative_id[:12], exc_info=True)
        outcome = StageResult(stage.name, "failed", error=_failure(exc))
    seconds = round(time.perf_counter() - t0, 3)
    log.info("%s %s: %s in %.1f s", narrative_id[:12], stage.name, outcome.status, seconds)
    return replace(outcome, seconds=seconds)


def _route(ctx: Context, result: ItemResult) -> None:
    """Where an analysed story goes; a story that fits no campaign is `unassigned`, with the
    campaigns that fit best as suggestions (never silently dropped)."""
    assert result.id is not None
    analysis = read_analysis(ctx.workspace, result.id)
    if analysis is None or analysis.empty:
        return
    found = routing.routes(ctx, result.id, analysis)
    result.campaigns = [r.to_json() for r in found]
    if found or not routing.is_unassigned(ctx, result.id, analysis):
        return  # (a withdrawn story goes nowhere on purpose)
    result.status = "unassigned"
    result.suggestions = [s.to_json() for s in routing.suggestions(ctx, result.id, analysis)]


def _run_stages(
    ctx: Context,
    result: ItemResult,
    stages: Sequence[Stage],
    *,
    force: bool,
    is_new: bool,
    progress: Progress,
) -> ItemResult:
    """Run the stages for one registered recording, in order, until one fails."""
    result.worked = result.worked or is_new
    for stage in stages:
        progress("stage", stage.name)
        if not _run_one(ctx, result, stage, force=force):
            return _finish(result)
    return _conclude(ctx, result, routed=any(stage.name == "analyse" for stage in stages))


#: Stages that may run on the caller's thread while the next story's earlier stages run.
_LATE_STAGES = frozenset({"render", "draft"})
#: The name of the thread that runs a story's early stages ahead.
_HELPER = "narratives-early"


class _Overlap:
    """Stories one after another in one process, two at a time: a story's early stages
    (transcribe, analyse) run on a helper thread while the story before it is rendered and
    drafted on the caller's thread, so Whisper and the video encoder (ffmpeg, its own
    process) share the cores instead of taking turns. At most one story runs ahead, its
    models are the ones this process already loaded, and the stories come out in intake
    order (a recording that could not be taken in is reported at once). The first story has
    nothing to overlap with and runs on the caller's thread, as a single recording does.

    Both threads write through the same `Context`: its engine is made before the thread
    starts, and every store write is its own transaction, as with the worker pool. On Ctrl-C
    (or any exit) the helper stops at its next progress report or stage, its stage recorded
    as interrupted, as the caller's would be."""

    def __init__(self, ctx: Context, *, force: bool, progress: Progress) -> None:
        self.ctx, self.force, self.progress = ctx, force, progress
        self._ahead: tuple[ItemResult, tuple[Stage, ...], Future[bool], bool] | None = None
        self._thread: ThreadPoolExecutor | None = None
        self._stop = threading.Event()

    def report(self, event: str, detail: Any) -> None:
        """The stages' progress callback: passed on; on the helper thread after `close`,
        the interruption that stops its stage."""
        if self._stop.is_set() and threading.current_thread().name.startswith(_HELPER):
            raise KeyboardInterrupt
        self.progress(event, detail)

    def add(
        self, result: ItemResult, stages: Sequence[Stage], *, is_new: bool
    ) -> Iterator[ItemResult]:
        """Start `result`'s early stages; yields the story before it once it is finished."""
        early = tuple(s for s in stages if s.name not in _LATE_STAGES)
        late = tuple(s for s in stages if s.name in _LATE_STAGES)
        routed = any(s.name == "analyse" for s in early)
        if not early or not late:  # nothing to overlap (e.g. --until analyse)
            yield from self.drain()
            self.report("file", result.path)
            yield _run_stages(
                self.ctx, result, stages, force=self.force, is_new=is_new, progress=self.report
            )
            return
        if self._ahead is None:  # nothing to overlap with: here, on the caller's thread
            started: Future[bool] = Future()
            started.set_result(self._early(result, early, is_new))
            self._ahead = (result, late, started, routed)
            return
        if self._thread is None:
            _ = self.ctx.db  # the engine, made once before a second thread can ask for it
            self._thread = ThreadPoolExecutor(1, thread_name_prefix=_HELPER)
        started = self._thread.submit(self._early, result, early, is_new)
        yield from self.drain()
        self._ahead = (result, late, started, routed)

    def drain(self) -> Iterator[ItemResult]:
        """Finish the story running ahead, if any: its late stages, on this thread."""
        if self._ahead is None:
            return
        result, late, started, routed = self._ahead
        self._ahead = None
        if not started.result():
            yield _finish(result)
            return
        self.report("file", result.path)
        for stage in late:
            self.report("stage", stage.name)
            if not _run_one(self.ctx, result, stage, force=self.force):
                yield _finish(result)
                return
        yield _conclude(self.ctx, result, routed=routed)

    def _early(self, result: ItemResult, early: tuple[Stage, ...], is_new: bool) -> bool:
        """The early stages (on the helper thread, or the caller's); False when one failed."""
        self.report("file", result.path)
        result.worked = result.worked or is_new
        for stage in early:
            self.report("stage", stage.name)
            if not _run_one(self.ctx, result, stage, force=self.force):
                return False
        return True

    def close(self) -> None:
        """On every exit: a story queued ahead is not started, and one running stops at its
        next progress report or stage (a stage between reports, such as a batched
        transcription, is let finish), so the store is left consistent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.shutdown(wait=True, cancel_futures=True)
            self._thread = None


def _run_one(ctx: Context, result: ItemResult, stage: Stage, *, force: bool) -> bool:
    """One stage of one story, its outcome noted in `result`; False when it failed."""
    assert result.id is not None
    outcome = _attempt(stage, ctx, result.id, force=force)
    result.stages[stage.name] = outcome.status
    if outcome.status == "failed":
        result.status, result.error, result.failed_stage = "failed", outcome.error, stage.name
        return False
    if isinstance(outcome.record, Transcript):
        result.transcript = outcome.record
    elif isinstance(outcome.record, Drafted):
        result.new_drafts = outcome.record.awaiting_review
    result.worked = result.worked or outcome.worked
    return True


def _conclude(ctx: Context, result: ItemResult, *, routed: bool) -> ItemResult:
    """After the last stage: ok or skipped, and where an analysed story goes."""
    result.status = "ok" if result.worked else "skipped"
    if routed:
        try:
            _route(ctx, result)
        except Exception as exc:  # as in a stage: this narrative fails, the batch goes on
            result.status, result.error = "failed", _failure(exc)
    return _finish(result)


def cluster_step(
    result: ItemResult, stage_name: str, force: bool, last: bool, routed: bool, key: str
) -> ItemResult:
    """One stage of one story as a cluster task (`stages.cluster`): takes the story's result
    so far from the previous stage's task and hands it on; a failed story passes through."""
    if result.status == "failed":
        return result
    ctx = worker_context(key)
    (stage,) = _stages([stage_name], path=result.path, settings=ctx.settings, progress=_no_progress)
    if not _run_one(ctx, result, stage, force=force):
        return _finish(result)
    return _conclude(ctx, result, routed=routed) if last else result


def _connect(address: str, ctx: Context, settings: Settings | None) -> Any:
    # dask.distributed is optional (the `cluster` extra) and heavy: loaded for --cluster only.
    try:
        from narratives.stages import cluster
    except ImportError as exc:
        raise UsageError(
            "--cluster needs dask.distributed", hint="pip install 'narratives[cluster]'"
        ) from exc
    return cluster.connect(address, ctx, settings)


def _run_on_cluster(
    cluster: Any,
    pending: list[tuple[ItemResult, bool]],
    wanted: list[str],
    force: bool,
    progress: Progress,
) -> Iterator[ItemResult]:
    routed = "analyse" in wanted
    chains = []
    for result, is_new in pending:
        result.worked = result.worked or is_new
        last = len(wanted) - 1
        steps = [(name, force, i == last, routed, cluster.key) for i, name in enumerate(wanted)]
        # The first task takes the story's result as it stands after intake; each next one
        # takes the task before it.
        chains.append(
            [(cluster_step, (result, *steps[0]))] + [(cluster_step, step) for step in steps[1:]]
        )
    for i, outcome in cluster.run_chains(chains):
        result = pending[i][0]
        progress("file", result.path)
        if isinstance(outcome, ItemResult):
            yield outcome
            continue
        result.status = "failed"
        result.error = f"the cluster could not run it: {type(outcome).__name__}: {outcome}"
        yield _finish(result)


def _finish(result: ItemResult) -> ItemResult:
    if result.status == "failed":
        if result.failed_stage:
            result.stages[result.failed_stage] = "failed"
        if result.path.name not in (result.error or ""):
            result.error = f"{result.path.name}: {result.error}"
    return result


def _worker_run(result: ItemResult, wanted: list[str], force: bool, is_new: bool) -> ItemResult:
    """One recording's stages in a pool worker, with the worker's Context and settings."""
    ctx = worker_context()
    stages = _stages(wanted, path=result.path, settings=ctx.settings, progress=_no_progress)
    return _run_stages(ctx, result, stages, force=force, is_new=is_new, progress=_no_progress)


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
    by_reference: bool | None = None,
    cluster: str | None = None,
) -> Iterator[ItemResult]:
    """Run the pipeline on every recording found under `paths`, yielding one result each.

    Recordings are registered here, one at a time (hashing is I/O); with `workers > 1` the
    stages of different narratives then run in parallel processes, one thread each: on small
    machines that beats several threads inside one model. With one worker, the next story's
    transcription and analysis run on a thread while the current one renders and drafts.
    The same audio met twice in one batch is processed once.

    `campaigns` (`process --campaign`) are assigned to every recording of the batch, and the
    campaigns a recording's sidecar names to that recording, before its stages run; an unknown
    slug among `campaigns` is a UsageError before any file is touched, one in a sidecar fails
    that recording alone.

    Recordings are copied into the workspace unless `by_reference` (default: the settings'
    `[ingest] keep`); an erased narrative's recording is refused unless `force`.
    """
    campaigns = campaign_assignments.check_slugs(ctx, campaigns)
    wanted = [s for s in STAGES if s in set(stages)]
    # A scheduler that does not answer is named before any recording is touched.
    on_cluster = _connect(cluster, ctx, settings) if cluster else None
    overlap = _Overlap(ctx, force=force, progress=progress)
    try:
        seen: dict[str, Path] = {}
        pending: list[tuple[ItemResult, bool]] = []
        duplicates: list[ItemResult] = []
        for found in find_recordings(paths, skip=workspace_outputs(ctx.workspace)):
            result, is_new = _intake(
                ctx, found, campaigns, actor, force=force, by_reference=by_reference
            )
            if result.status == "failed":
                yield result
            elif result.id in seen:
                result.status = "skipped"
                result.stages = {"ingest": f"same recording as {seen[result.id].name}"}
                duplicates.append(result)  # reported last, with the transcript made meanwhile
            elif workers <= 1 and on_cluster is None:
                seen[result.id] = found.path
                chosen = _stages(
                    wanted, path=found.path, settings=settings, progress=overlap.report
                )
                yield from overlap.add(result, chosen, is_new=is_new)
            else:
                seen[result.id] = found.path
                pending.append((result, is_new))
        yield from overlap.drain()
        if pending and on_cluster is not None:
            yield from _run_on_cluster(on_cluster, pending, wanted, force, progress)
        elif pending:
            yield from _run_parallel(ctx, pending, wanted, force, settings, workers, progress)
        for result in duplicates:
            if transcript_path(ctx.workspace, result.id).exists():
                result.transcript = load_transcript(ctx, result.id)
            yield result
    finally:
        overlap.close()
        # The cluster's client, on every path: an error, Ctrl-C, or a caller that stops early.
        if on_cluster is not None:
            on_cluster.close()


def _intake(
    ctx: Context,
    found: Found,
    campaigns: Sequence[str],
    actor: str,
    *,
    force: bool = False,
    by_reference: bool | None = None,
) -> tuple[ItemResult, bool]:
    """Register a found recording, its sidecar's consent and its campaigns; (the result so
    far, whether the narrative is new). A recording that cannot be taken in is `failed`."""
    result = ItemResult(path=found.path)
    if found.error:
        result.status, result.error = "failed", f"{found.path}: {found.error}"
        return result, False
    try:
        # Checked before anything is recorded: a bad slug leaves no trace of this file.
        named = _sidecar_campaigns(ctx, found.path)
        result.id, is_new = register(
            ctx, found.path, by_reference=by_reference, force=force, actor=actor
        )
        # `story.m4a` + `story.consent.toml`: the narrator's consent travels with the file.
        import_sidecar(ctx, result.id, found.path)
        # Staff said which campaigns it is for: recorded before the stages choose.
        campaign_assignments.record_intake(ctx, result.id, campaigns, actor=actor, source="intake")
        campaign_assignments.record_intake(ctx, result.id, named, actor=actor, source="sidecar")
    except NarrativesError as exc:
        result.status, result.error = "failed", str(exc)
        return _finish(result), False
    return result, is_new


def _sidecar_campaigns(ctx: Context, recording: Path) -> list[str]:
    """The known campaign slugs the recording's sidecar names; ConfigError naming the
    sidecar for an unknown one."""
    named = sidecar_campaigns(recording)
    try:
        return campaign_assignments.check_slugs(ctx, named)
    except UsageError as exc:
        raise ConfigError(f"{sidecar_path(recording).name}: campaigns: {exc}") from None


def _run_parallel(
    ctx: Context,
    pending: list[tuple[ItemResult, bool]],
    wanted: list[str],
    force: bool,
    settings: Settings | None,
    workers: int,
    progress: Progress,
) -> Iterator[ItemResult]:
    jobs = [(_worker_run, (result, wanted, force, is_new)) for result, is_new in pending]
    for i, outcome in in_workers(ctx, settings, workers, jobs):
        result = pending[i][0]
        progress("file", result.path)
        if outcome is CRASHED:
            result.status = "failed"
            result.error = (
                "the worker process crashed while processing this file (a native decoder "
                "crash or out of memory); the other recordings were not affected"
            )
        elif isinstance(outcome, Exception):  # e.g. a result that cannot travel back
            result.status = "failed"
            result.error = f"worker failed: {type(outcome).__name__}: {outcome}"
        else:
            yield outcome
            continue
        yield _finish(result)
