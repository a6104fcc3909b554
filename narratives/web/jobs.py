"""Making a story's video and drafts after an editor assigns it a campaign, off the request.

It takes from seconds to minutes, so it runs on a worker thread (`OutputJobs`: one job at a
time, because renders use every core); the request returns at once and the pages say what is
being made.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from narratives.core.clock import utcnow
from narratives.core.errors import NarrativesError
from narratives.store.context import Context
from narratives.store.schema import drafts
from narratives.workflow import assignments

__all__ = ["OutputJob", "OutputJobs"]

log = logging.getLogger(__name__)


@dataclass
class OutputJob:
    """Making one story's video and drafts for one campaign, after an assignment."""

    id: int
    narrative_id: str
    campaign: str
    campaign_name: str
    title: str
    actor: str
    queued_at: datetime
    #: queued | running | done | failed (done with errors is "failed": something is missing)
    state: str = "queued"
    #: The last progress line ("rendering emotional-equity/vertical: 40%").
    step: str = ""
    finished_at: datetime | None = None
    videos: int = 0
    drafts: int = 0
    new_drafts: int = 0
    errors: list[str] = field(default_factory=list)
    #: The story's drafts for the campaign once the job is over (links on the pages).
    draft_ids: list[int] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return self.state in ("queued", "running")


class OutputJobs:
    """Runs `assignments.make_outputs` off the request thread, one job at a time, and keeps
    the recent jobs for the pages.

    In memory, on a daemon thread: stopping the server does not wait for a render, and a
    restart forgets the list, not the work. The assignment is already recorded, the stages
    record themselves, and a render cut short shows as interrupted and is redone by the next
    `narrative process` (or by assigning again).
    """

    #: Finished jobs remembered for the pages; running and queued ones are always kept.
    KEEP = 50

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._jobs: list[OutputJob] = []
        self._next_id = 1
        self._pending = 0
        self._queue: queue.Queue[OutputJob] = queue.Queue()
        self._worker: threading.Thread | None = None

    def submit(
        self, narrative_id: str, campaign: str, *, campaign_name: str, title: str, actor: str
    ) -> OutputJob:
        with self._lock:
            for job in self._jobs:
                # Already waiting to start: that job will make the same files.
                if (job.narrative_id, job.campaign, job.state) == (
                    narrative_id,
                    campaign,
                    "queued",
                ):
                    return replace(job)
            job = OutputJob(
                id=self._next_id,
                narrative_id=narrative_id,
                campaign=campaign,
                campaign_name=campaign_name,
                title=title,
                actor=actor,
                queued_at=utcnow(),
            )
            self._next_id += 1
            self._jobs.append(job)
            self._trim()
            self._pending += 1
            self._queue.put(job)
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(
                    target=self._work, name="narratives-outputs", daemon=True
                )
                self._worker.start()
            return replace(job)

    def _work(self) -> None:
        while True:
            job = self._queue.get()
            try:
                self._run(job)
            except Exception:  # never let one job stop the worker
                log.exception("output job %s failed", job.id)
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _trim(self) -> None:
        finished = [j for j in self._jobs if not j.active]
        drop = {j.id for j in finished[: max(0, len(finished) - self.KEEP)]}
        self._jobs = [j for j in self._jobs if j.id not in drop]

    def _update(self, job: OutputJob, **values: Any) -> None:
        with self._lock:
            for k, v in values.items():
                setattr(job, k, v)

    def _run(self, job: OutputJob) -> None:
        self._update(job, state="running", step="starting")
        errors: list[str] = []
        out = None
        try:
            out = assignments.make_outputs(
                self.ctx,
                job.narrative_id,
                campaigns=[job.campaign],
                progress=lambda message: self._update(job, step=message),
            )
            errors = list(out.errors)
        except NarrativesError as exc:
            errors = [f"{exc} ({exc.hint})" if exc.hint else str(exc)]
        except Exception:  # a bug: the page says so, the log has the traceback
            log.exception("making the outputs of %s for %s failed", job.narrative_id, job.campaign)
            errors = ["an unexpected error stopped it; the server's log has the details"]
        try:
            with self.ctx.db.connect() as conn:
                ids = list(
                    conn.execute(
                        sa.select(drafts.c.id)
                        .where(
                            drafts.c.narrative_id == job.narrative_id,
                            drafts.c.campaign == job.campaign,
                        )
                        .order_by(drafts.c.id)
                    ).scalars()
                )
        except Exception:
            log.exception("listing the drafts of %s failed", job.narrative_id)
            ids = []
        self._update(
            job,
            state="failed" if errors or not ids else "done",
            step="",
            finished_at=utcnow(),
            videos=out.videos if out else 0,
            drafts=out.drafts if out else 0,
            new_drafts=out.new_drafts if out else 0,
            errors=errors
            or ([] if ids else ["no draft was made (is the campaign's template missing?)"]),
            draft_ids=ids,
        )

    def recent(self, narrative_id: str | None = None, limit: int = 20) -> list[OutputJob]:
        """Copies of the latest jobs, newest first (of one story, when given)."""
        with self._lock:
            jobs = [
                replace(j, errors=list(j.errors), draft_ids=list(j.draft_ids))
                for j in self._jobs
                if narrative_id is None or j.narrative_id == narrative_id
            ]
        return list(reversed(jobs))[:limit]

    def active(self) -> list[OutputJob]:
        return [j for j in self.recent(limit=self.KEEP * 4) if j.active]

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until every submitted job is over (tests, shutdown); False on timeout."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)
