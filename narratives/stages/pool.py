"""The process pool: stages of many narratives at once, in spawned worker processes.

Workers are spawned, so torch and OpenMP start clean, and each keeps one Context (and so one
loaded model per engine) for its whole life. A worker that dies (a native crash, the OOM
killer) fails only the job it was running. `process --workers` (the pipeline) and
`render --workers` (`render_many`) both run here.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from narratives.core.config import Settings
from narratives.core.errors import NarrativesError
from narratives.core.workspace import Workspace
from narratives.store.context import Context

__all__ = ["CRASHED", "RenderOutcome", "in_workers", "init_worker", "render_many", "worker_context"]

#: What `in_workers` yields for a job whose worker process died.
CRASHED = object()

# The worker process's Contexts, made once each by `init_worker`: one for a pool worker (key
# ""), one per workspace a Dask worker serves (several runs may share a cluster).
_WORKER_CTXS: dict[str, Context] = {}


def init_worker(root: str, settings: Settings, cores: int, key: str = "") -> None:
    """Make this process's worker Context (a pool worker's initializer; a Dask worker's plugin).

    `cores` is this worker's share of the machine: the encoder threads a render uses unless
    `[render] threads` says otherwise, so workers encoding at once do not oversubscribe it.
    """
    if not settings.render.threads:
        settings = settings.model_copy(
            update={"render": settings.render.model_copy(update={"threads": max(1, cores)})}
        )
    _WORKER_CTXS[key] = Context(Workspace(Path(root)), settings)


def core_share(workers: int) -> int:
    """The cores of this machine each of `workers` pool workers may use."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def worker_context(key: str = "") -> Context:
    """The Context of this worker process (only inside a job `in_workers` or a cluster runs)."""
    return _WORKER_CTXS[key]


def _pool(ctx: Context, settings: Settings | None, size: int, workers: int) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(
        max_workers=size,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(str(ctx.workspace.root), settings or ctx.settings, core_share(workers)),
    )


def in_workers(
    ctx: Context,
    settings: Settings | None,
    workers: int,
    jobs: list[tuple[Callable[..., Any], tuple]],
) -> Iterator[tuple[int, Any]]:
    """Run `fn(*args)` jobs in a pool of worker processes, yielding (index, outcome) as each
    ends: its return value, the exception it raised, or `CRASHED`.

    A worker that dies (a native crash, the OOM killer) breaks the whole pool, so the
    unfinished jobs are then run one at a time, each in a pool of its own: the one that
    crashes again is reported, and every other one finishes."""
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
                outcome = CRASHED
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
    # numpy, Pillow and the video writer: loaded in the worker that renders.
    from narratives.stages.render import stage as render

    try:
        videos = render.run(worker_context(), narrative_id, **options)
    except NarrativesError as exc:
        return RenderOutcome(narrative_id, error=str(exc), hint=exc.hint)
    return RenderOutcome(narrative_id, videos)


def render_many(
    ctx: Context,
    narrative_ids: Iterable[str],
    *,
    workers: int,
    force: bool = False,
    reencode: bool = False,
    formats: list[str] | None = None,
    campaigns: list[str] | None = None,
) -> Iterator[RenderOutcome]:
    """Render narratives `workers` at a time in spawned processes, yielding each as it ends.

    One render's Python half draws frames on one core while x264 encodes; with one render
    per core and the encoder threads shared out, both cores stay busy without oversubscribing
    them (bench/render.py --batch). A narrative whose worker crashes is reported as failed."""
    ids = list(narrative_ids)
    options = {"force": force, "reencode": reencode, "formats": formats, "campaigns": campaigns}
    jobs = [(_worker_render, (nid, options)) for nid in ids]
    for i, outcome in in_workers(ctx, None, workers, jobs):
        if outcome is CRASHED:
            yield RenderOutcome(
                ids[i],
                error="the worker process crashed while rendering (out of memory or a native "
                "crash); the other narratives were not affected",
            )
        elif isinstance(outcome, Exception):
            yield RenderOutcome(ids[i], error=f"worker failed: {type(outcome).__name__}: {outcome}")
        else:
            yield outcome
