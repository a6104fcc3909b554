"""The scheduler service (`narrative scheduler run`): APScheduler wakes deliveries on time.

Delivery rows are the truth; APScheduler jobs only wake them. Each waiting delivery has one job
(id = delivery id, a date trigger at its `scheduled_at` or `retry_at`) in a persistent
`SQLAlchemyJobStore` in the project's database. A job that runs calls
`publishing.publish_delivery`, whose atomic claim makes extra wake-ups harmless, so the job
store may lag or lead the deliveries without harm.

On start the service:
1. takes an exclusive lock (`.narratives/scheduler.lock`): it runs as a single active instance;
2. hands back deliveries a crash left `publishing` (the adapter's rkey + getRecord check makes
   the retry safe), only when their claim is stale: a `publish --now` still posting keeps its
   own; every sync does this again, so one killed while the service runs is retried too;
3. marks deliveries older than their campaign's `slots.missed_after_hours` with nothing of
   them out as `missed` (shown to editors; the rule of `store.deliveries`, which a publisher
   woken late applies too), and gives every other waiting delivery a job; due ones run at
   once, each once;
4. rebuilds the RSS/Atom feeds (heals a crash between a commit and a rebuild).

While running, a sync job re-reads the deliveries every few seconds, so deliveries scheduled,
moved or cancelled by other processes (the CLI, the web app) get, change or lose their job.
Jobs are written in bulk straight into the job store's table (one transaction, not one per
job), which keeps start-up with ten thousand deliveries within seconds.

SIGTERM or SIGINT stops taking new deliveries, lets the post in flight finish, and exits.
"""

from __future__ import annotations

import logging
import pickle
import signal
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import sqlalchemy as sa
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_STOPPED
from apscheduler.triggers.date import DateTrigger

from narratives.channels.base import Publisher
from narratives.core.clock import utcnow
from narratives.core.errors import InvalidState
from narratives.store import deliveries as store
from narratives.store.context import Context
from narratives.store.delivery_queries import waiting_times
from narratives.workflow.channels import default_publishers
from narratives.workflow.engagement import pull as pull_engagement
from narratives.workflow.feeds import write_all_feeds
from narratives.workflow.publishing import (
    Backoff,
    publish_delivery,
    recover_interrupted,
)
from narratives.workflow.takedown import expire_due

__all__ = ["SchedulerService", "ReconcileReport", "JOBS_TABLE"]

log = logging.getLogger(__name__)

JOBS_TABLE = "apscheduler_jobs"
_CHUNK = 500

#: The service whose jobs run in this process (job callables are stored by reference, so they
#: reach the service through this module-level name).
_active: SchedulerService | None = None


def _wake(delivery_id: int) -> None:
    """The job function: publish the delivery if it is (still) due."""
    service = _active
    if service is None:
        log.warning("delivery %s woke with no scheduler running", delivery_id)
        return
    service.dispatch(delivery_id)


class _DeliveryJobStore(SQLAlchemyJobStore):
    """The SQLAlchemy job store, tolerant of a job the sync already removed: APScheduler
    removes a date job after submitting it, and that must not fail if the row is gone."""

    def remove_job(self, job_id: str) -> None:
        try:
            super().remove_job(job_id)
        except JobLookupError:
            pass


class _Scheduler(BackgroundScheduler):
    """APScheduler's scheduler, quiet about a date job it cannot remove once stopped: it
    removes a job after running it, and if `stop()` came in between, its own `remove_job`
    only looks at pending jobs and raises in its thread. Nothing is lost: delivery rows are
    the truth, and the next start syncs the jobs to them."""

    def remove_job(self, job_id: str, jobstore: str | None = None) -> None:
        try:
            super().remove_job(job_id, jobstore)
        except JobLookupError:
            if self.state != STATE_STOPPED:
                raise


class _SkippedRunsAreRoutine(logging.Filter):
    """APScheduler warns "maximum number of running instances reached" whenever a job fires
    while its previous run is still going: the sync on a short interval during a slow
    database, or a delivery re-put while it is publishing. With `max_instances=1` skipping is
    exactly what we want (the running one does the same work, and rows are the truth), so the
    notice is demoted to DEBUG instead of filling the log (62 warnings in one fault run)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if "maximum number of running instances reached" in str(record.msg):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
        return True


_SKIP_FILTER = _SkippedRunsAreRoutine()
logging.getLogger("apscheduler.scheduler").addFilter(_SKIP_FILTER)


@dataclass
class ReconcileReport:
    recovered: list[int] = field(default_factory=list)
    missed: list[int] = field(default_factory=list)
    due: int = 0
    future: int = 0
    jobs_written: int = 0
    jobs_removed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "recovered": self.recovered,
            "missed": self.missed,
            "due": self.due,
            "future": self.future,
            "jobs_written": self.jobs_written,
            "jobs_removed": self.jobs_removed,
        }


class SchedulerService:
    """One scheduler process. `start()` runs it in the background; `run()` blocks until a
    signal (or `stop()`); `stop()` finishes posts in flight and shuts APScheduler down."""

    def __init__(
        self,
        ctx: Context,
        *,
        publishers: Mapping[str, Publisher] | None = None,
        backoff: Backoff = Backoff(),
        sync_interval: float = 10.0,
        workers: int = 4,
        actor: str = "scheduler",
        stats_interval: float | None = 3600.0,
    ) -> None:
        self.ctx = ctx
        #: Seconds between engagement pulls (likes, reposts, replies, quotes); None: never.
        self.stats_interval = stats_interval
        self.publishers = publishers if publishers is not None else default_publishers(ctx)
        self.backoff = backoff
        self.sync_interval = sync_interval
        self.actor = actor
        self._stopping = threading.Event()
        self._stopped = threading.Event()
        self._lock_file: BinaryIO | None = None
        self._jobstore = _DeliveryJobStore(engine=ctx.db, tablename=JOBS_TABLE)
        self._aps = _Scheduler(
            jobstores={"default": self._jobstore, "internal": MemoryJobStore()},
            executors={"default": ThreadPoolExecutor(workers)},
            job_defaults={"coalesce": True, "misfire_grace_time": None, "max_instances": 1},
            timezone=UTC,
        )
        self._sync_guard = threading.Lock()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> ReconcileReport:
        global _active
        if _active is not None and _active is not self:
            raise InvalidState("another scheduler service is already running in this process")
        self._acquire_lock()
        try:
            self._jobstore.jobs_t.create(self.ctx.db, checkfirst=True)
            _active = self
            # Paused: the job store is brought up to date before anything fires.
            self._aps.start(paused=True)
            report = self.reconcile()
            self._aps.add_job(
                self.sync,
                "interval",
                seconds=self.sync_interval,
                id="narratives-sync",
                jobstore="internal",
                replace_existing=True,
            )
            self._aps.add_job(
                self.expire_consents,
                "interval",
                seconds=60,
                id="narratives-consent-expiry",
                jobstore="internal",
                replace_existing=True,
                next_run_time=utcnow(),
            )
            if self.stats_interval:
                self._aps.add_job(
                    self.pull_stats,
                    "interval",
                    seconds=self.stats_interval,
                    id="narratives-engagement",
                    jobstore="internal",
                    replace_existing=True,
                )
            self._aps.resume()
        except BaseException:
            _active = None
            self._release_lock()
            raise
        log.info(
            "scheduler started: %d due, %d waiting, %d missed, %d recovered",
            report.due,
            report.future,
            len(report.missed),
            len(report.recovered),
        )
        return report

    def stop(self, wait: bool = True) -> None:
        """Stop taking deliveries; with `wait`, let those in flight finish first."""
        global _active
        if self._stopped.is_set():
            return
        self._stopping.set()
        try:
            if self._aps.running:
                self._aps.shutdown(wait=wait)
        finally:
            if _active is self:
                _active = None
            for publisher in self.publishers.values():
                closer = getattr(publisher, "close", None)  # test doubles may have none
                if callable(closer):
                    closer()
            self._release_lock()
            self._stopped.set()
            log.info("scheduler stopped")

    def run(self) -> None:
        """Start, then block until SIGTERM/SIGINT (or `stop()` from another thread)."""
        stop_requested = threading.Event()

        def on_signal(signum: int, _frame: Any) -> None:
            log.info("received %s: finishing the post in flight", signal.Signals(signum).name)
            stop_requested.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not stop_requested.wait(0.5) and not self._stopping.is_set():
                pass
        finally:
            self.stop(wait=True)
            for s, handler in previous.items():
                signal.signal(s, handler)

    @property
    def running(self) -> bool:
        return self._aps.running and not self._stopping.is_set()

    # -- the work -----------------------------------------------------------------------------

    def dispatch(self, delivery_id: int) -> None:
        if self._stopping.is_set():
            return  # left as it is; the next start picks it up
        try:
            outcome = publish_delivery(
                self.ctx, delivery_id, self.publishers, actor=self.actor, backoff=self.backoff
            )
        except Exception:
            log.exception("delivery %s: unexpected failure", delivery_id)
            return
        d = outcome.delivery
        if outcome.status == "retry" and d is not None and d.retry_at is not None:
            self._put_jobs({d.id: d.retry_at})
        elif outcome.status not in ("skipped",):
            log.info("delivery %s: %s", delivery_id, outcome.status)

    def reconcile(self) -> ReconcileReport:
        """Bring deliveries and jobs into agreement (see the module docstring)."""
        report = ReconcileReport()
        now = utcnow()
        report.recovered = recover_interrupted(self.ctx, actor=self.actor, now=now)
        report.missed = self._mark_missed(now)
        wanted = self._waiting()
        report.due = sum(1 for t in wanted.values() if t <= now)
        report.future = len(wanted) - report.due
        report.jobs_written, report.jobs_removed = self._sync_jobs(wanted)
        try:
            write_all_feeds(self.ctx)
        except Exception:
            log.exception("rebuilding the feeds at start-up failed")
        return report

    def sync(self) -> None:
        """Give jobs to deliveries that gained or changed a time; drop jobs of the rest.

        It first hands back deliveries left `publishing` by a process that died since (a
        killed `narrative publish --now`): their claims are stale, so they retry here.
        """
        if self._stopping.is_set():
            return
        try:
            recovered = recover_interrupted(self.ctx, actor=self.actor)
            if recovered:
                log.info("interrupted deliveries handed back: %s", recovered)
            self._sync_jobs(self._waiting())
        except Exception:
            log.exception("syncing deliveries with jobs failed")

    def expire_consents(self) -> None:
        """Take down what expired or withdrawn consents no longer allow (issue 7)."""
        if self._stopping.is_set():
            return
        try:
            for report in expire_due(self.ctx, actor=self.actor):
                log.info("consent: %s of narrative %s", report.action, report.narrative_id)
        except Exception:
            log.exception("taking down expired consents failed")

    def pull_stats(self) -> None:
        """Store the counts of every published Bluesky post (issue 19): the report's series."""
        if self._stopping.is_set():
            return
        try:
            r = pull_engagement(self.ctx)
            log.info(
                "engagement: %d of %d posts in %.1f s, %d requests",
                r.stored,
                r.posts,
                r.seconds,
                r.requests,
            )
            for error in r.errors:
                log.warning("engagement: %s", error)
        except Exception:
            log.exception("pulling engagement counts failed")

    # -- internals ----------------------------------------------------------------------------

    def _mark_missed(self, now: datetime) -> list[int]:
        """Mark late deliveries missed: the one rule of `store.deliveries`, which
        `publish_delivery` applies too when it wakes one."""
        limits: dict[str, Any] = {}
        missed = []
        with self.ctx.db.begin() as conn:
            for d in store.overdue(conn, now):
                limit = limits.setdefault(d.campaign, store.missed_limit(self.ctx, d.campaign))
                if store.is_late(d, now, limit) and store.mark_missed(
                    conn, d, now, actor=self.actor, limit=limit
                ):
                    missed.append(d.id)
        return missed

    def _query(self, q: Any) -> list[Any]:
        with self.ctx.db.connect() as conn:
            return conn.execute(q).all()

    def _waiting(self) -> dict[int, datetime]:
        """Delivery id → when it wants to wake, for every delivery with something to do."""
        with self.ctx.db.connect() as conn:
            return waiting_times(conn)

    def _sync_jobs(self, wanted: dict[int, datetime]) -> tuple[int, int]:
        with self._sync_guard:
            t = self._jobstore.jobs_t
            have = {
                r.id: r.next_run_time for r in self._query(sa.select(t.c.id, t.c.next_run_time))
            }
            put = {
                i: when
                for i, when in wanted.items()
                if have.get(str(i)) is None or abs(have[str(i)] - when.timestamp()) > 0.001
            }
            gone = [job_id for job_id in have if job_id.isdigit() and int(job_id) not in wanted]
            if gone:
                with self.ctx.db.begin() as conn:
                    for k in range(0, len(gone), _CHUNK):
                        conn.execute(t.delete().where(t.c.id.in_(gone[k : k + _CHUNK])))
            self._put_jobs(put)
            return len(put), len(gone)

    def _put_jobs(self, when_by_id: dict[int, datetime]) -> None:
        """Write (replace) one date-triggered job per delivery, in one transaction."""
        if not when_by_id:
            return
        t = self._jobstore.jobs_t
        rows = []
        for delivery_id, when in when_by_id.items():
            job = Job(
                self._aps,
                id=str(delivery_id),
                func=_wake,
                args=(delivery_id,),
                kwargs={},
                trigger=DateTrigger(run_date=when, timezone=UTC),
                executor="default",
                name=f"delivery {delivery_id}",
                misfire_grace_time=None,
                coalesce=True,
                max_instances=1,
                next_run_time=when,
            )
            rows.append(
                {
                    "id": job.id,
                    "next_run_time": when.timestamp(),
                    "job_state": pickle.dumps(job.__getstate__(), self._jobstore.pickle_protocol),
                }
            )
        ids = [r["id"] for r in rows]
        with self.ctx.db.begin() as conn:
            for k in range(0, len(ids), _CHUNK):
                conn.execute(t.delete().where(t.c.id.in_(ids[k : k + _CHUNK])))
            conn.execute(t.insert(), rows)
        if self._aps.running:
            self._aps.wakeup()

    def _acquire_lock(self) -> None:
        path: Path = self.ctx.workspace.state_dir / "scheduler.lock"
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fh = open(path, "a+b")  # noqa: SIM115 - held for the service's lifetime
        try:
            import fcntl

            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover - not POSIX
            pass
        except OSError:
            fh.close()
            raise InvalidState(
                "another scheduler is already running for this workspace",
                hint=f"stop it first (lock: {path})",
            ) from None
        self._lock_file = fh

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None
