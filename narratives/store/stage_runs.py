"""Bookkeeping shared by the pipeline stages: one `stage_runs` row per narrative, stage and key.

A row says which engine, model and version produced the output, how long it took, and
whether it failed (with the reason). Stages are idempotent: a `done` row means skip,
unless forced (`reusable`). This module is the one writer of the table; whether a stage
worked is said by the `StageResult` it returns (`records/stage.py`), not read from here.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from narratives.core.clock import utcnow
from narratives.store.schema import stage_runs

__all__ = [
    "StageRun",
    "RunHandle",
    "get_run",
    "list_runs",
    "done_narratives",
    "reusable",
    "stage_run",
    "forget_runs",
    "is_interrupted",
]


@dataclass
class StageRun:
    narrative_id: str
    stage: str
    key: str
    status: str
    engine: str | None
    model: str | None
    version: str | None
    seconds: float | None
    error: str | None
    output: Any
    started_at: Any = None
    finished_at: Any = None


def _row(r) -> StageRun:
    m = r._mapping
    return StageRun(
        narrative_id=m["narrative_id"],
        stage=m["stage"],
        key=m["key"],
        status=m["status"],
        engine=m["engine"],
        model=m["model"],
        version=m["version"],
        seconds=m["seconds"],
        error=m["error"],
        output=m["output"],
        started_at=m["started_at"],
        finished_at=m["finished_at"],
    )


def get_run(db: Engine, narrative_id: str, stage: str, key: str = "") -> StageRun | None:
    with db.connect() as conn:
        r = conn.execute(
            sa.select(stage_runs).where(
                stage_runs.c.narrative_id == narrative_id,
                stage_runs.c.stage == stage,
                stage_runs.c.key == key,
            )
        ).first()
    return _row(r) if r else None


def list_runs(db: Engine, narrative_id: str | None = None) -> list[StageRun]:
    q = sa.select(stage_runs).order_by(stage_runs.c.narrative_id, stage_runs.c.id)
    if narrative_id:
        q = q.where(stage_runs.c.narrative_id == narrative_id)
    with db.connect() as conn:
        return [_row(r) for r in conn.execute(q)]


def reusable(
    db: Engine,
    narrative_id: str,
    stage: str,
    key: str = "",
    *,
    force: bool = False,
    fits: Callable[[StageRun], bool] = lambda run: True,
) -> StageRun | None:
    """The stage's `done` run when the stage may skip: not forced, and `fits` says the run
    was made from what the stage would use now. None means: run it."""
    run = None if force else get_run(db, narrative_id, stage, key)
    if run is None or run.status != "done" or not fits(run):
        return None
    return run


def forget_runs(conn: Connection, narrative_id: str, *, but: str) -> None:
    """Delete the narrative's rows of every stage but `but`: they were made from an input
    that has changed, and a stage with no row is redone on the next run."""
    conn.execute(
        stage_runs.delete().where(
            stage_runs.c.narrative_id == narrative_id, stage_runs.c.stage != but
        )
    )


def done_narratives(conn: Connection, stage: str) -> list[str]:
    """The narratives with a `done` row of `stage` (once per row: render has one per video)."""
    q = sa.select(stage_runs.c.narrative_id).where(
        stage_runs.c.stage == stage, stage_runs.c.status == "done"
    )
    return [r[0] for r in conn.execute(q)]


@dataclass
class RunHandle:
    """Filled in by the stage inside `stage_run`; written when the block ends."""

    stage: str = ""
    key: str = ""
    engine: str | None = None
    model: str | None = None
    version: str | None = None
    output: Any = None
    status: str = "done"
    extra: dict = field(default_factory=dict)


def _upsert(db: Engine, narrative_id: str, stage: str, key: str, values: dict) -> None:
    with db.begin() as conn:
        updated = conn.execute(
            stage_runs.update()
            .where(
                stage_runs.c.narrative_id == narrative_id,
                stage_runs.c.stage == stage,
                stage_runs.c.key == key,
            )
            .values(**values)
        ).rowcount
        if not updated:
            conn.execute(
                stage_runs.insert().values(
                    narrative_id=narrative_id, stage=stage, key=key, **values
                )
            )


def is_interrupted(run: StageRun) -> bool:
    """A `running` row whose process on this machine is gone (killed or crashed); the next
    `process` redoes it. Runs on other machines cannot be checked and count as running."""
    if run.status != "running" or not isinstance(run.output, dict):
        return False
    if run.output.get("host") != socket.gethostname():
        return False
    try:
        os.kill(int(run.output["pid"]), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, KeyError, TypeError, ValueError):
        return False
    return False


@contextmanager
def stage_run(db: Engine, narrative_id: str, stage: str, key: str = "") -> Iterator[RunHandle]:
    """Record a stage run: `running` on entry, then `done` (or the handle's status) or `failed`.

    The stage writes its files before leaving the block, so a `done` row always has its
    artifacts; on an exception the row says `failed` with the message and the error propagates.
    Ctrl-C (or a worker's SIGINT) is not the recording's fault: the row says `interrupted`.
    """
    started = utcnow()
    t0 = time.perf_counter()
    _upsert(
        db,
        narrative_id,
        stage,
        key,
        {
            "status": "running",
            "started_at": started,
            "finished_at": None,
            "seconds": None,
            "error": None,
            # Who is running it, so a run whose process died shows as interrupted.
            "output": {"pid": os.getpid(), "host": socket.gethostname()},
            "engine": None,
            "model": None,
            "version": None,
        },
    )
    handle = RunHandle(stage=stage, key=key)
    try:
        yield handle
    except BaseException as exc:
        interrupted = isinstance(exc, KeyboardInterrupt)
        _upsert(
            db,
            narrative_id,
            stage,
            key,
            {
                "status": "interrupted" if interrupted else "failed",
                "finished_at": utcnow(),
                "seconds": round(time.perf_counter() - t0, 3),
                "error": None if interrupted else (str(exc) or type(exc).__name__),
                "engine": handle.engine,
                "model": handle.model,
                "version": handle.version,
            },
        )
        raise
    _upsert(
        db,
        narrative_id,
        stage,
        key,
        {
            "status": handle.status,
            "finished_at": utcnow(),
            "seconds": round(time.perf_counter() - t0, 3),
            "output": handle.output,
            "engine": handle.engine,
            "model": handle.model,
            "version": handle.version,
        },
    )
