"""The scheduler service: reconcile on start, backoff, permanent failures, the atomic claim,
clean stops, and the RSS path end to end.

Transient and permanent failures come from `FaultInjectingPublisher`, a fault injector named as
such: a real channel cannot fail on demand. Everything else uses the real RSS publisher.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

import feedparser
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from narratives.channels.base import Outgoing, PublishResult
from narratives.core.campaigns import RSS
from narratives.core.clock import utcnow
from narratives.core.errors import InvalidState, PermanentChannelError, TransientChannelError
from narratives.store.delivery_queries import get_delivery, list_deliveries
from narratives.store.schema import deliveries, delivery_attempts
from narratives.workflow import scheduling
from narratives.workflow.channels import default_publishers
from narratives.workflow.publishing import Backoff, publish_delivery
from narratives.workflow.scheduler import JOBS_TABLE, SchedulerService
from tests.delivery_fixtures import add_draft, rss_content

FAST = Backoff(base=0.05, factor=2.0, cap=0.2, jitter=0.5)


class FaultInjectingPublisher:
    """Fails on purpose: `faults` is a list of exceptions raised by successive publishes (then
    it succeeds); `gate`, if set, holds each publish until released. Counts its calls."""

    channel = "rss"

    def __init__(self, ctx, faults=(), gate: threading.Event | None = None):
        self.faults = list(faults)
        self.gate = gate
        self.calls: list[int] = []
        self.started = threading.Event()
        self._rss = default_publishers(ctx)[RSS]

    def publish(self, item: Outgoing) -> PublishResult:
        self.calls.append(item.delivery.id)
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(60), "the test never released the gate"
        if self.faults:
            raise self.faults.pop(0)
        return self._rss.publish(item)

    def after_commit(self, item: Outgoing) -> None:
        self._rss.after_commit(item)


def wait_for(predicate, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    pytest.fail(f"gave up waiting for {what}")


def state(ctx, delivery_id: int) -> str:
    with ctx.db.connect() as conn:
        return get_delivery(conn, delivery_id).state


def attempts(ctx, delivery_id: int) -> list[str]:
    with ctx.db.connect() as conn:
        return [
            r.outcome
            for r in conn.execute(
                sa.select(delivery_attempts.c.outcome)
                .where(delivery_attempts.c.delivery_id == delivery_id)
                .order_by(delivery_attempts.c.id)
            )
        ]


def schedule_at(ctx, delta: timedelta, campaign="emotional-equity", **kw) -> int:
    """An RSS delivery due at now + delta (scheduled 'from the past' when delta < 0)."""
    draft = add_draft(ctx, campaign, content=rss_content(**kw) if kw else None)
    when = utcnow() + delta
    return scheduling.schedule(ctx, draft, at=when, actor="kai", now=when).id


@pytest.fixture
def services():
    started: list[SchedulerService] = []

    def make(ctx, **kw) -> SchedulerService:
        kw.setdefault("sync_interval", 0.5)
        kw.setdefault("backoff", FAST)
        service = SchedulerService(ctx, **kw)
        started.append(service)
        return service

    yield make
    for s in started:
        s.stop(wait=True)


def test_reconcile_runs_due_once_marks_old_missed_and_recovers_crashed(ctx, services):
    due = schedule_at(ctx, timedelta(hours=-1), title="Due an hour ago")
    old = schedule_at(ctx, timedelta(hours=-13), title="Too late")  # campaign limit: 12 h
    lisbon_old = schedule_at(ctx, timedelta(hours=-13), "neural-mandate")  # limit: 24 h
    future = schedule_at(ctx, timedelta(days=2))
    crashed = schedule_at(ctx, timedelta(minutes=-5), title="Crashed mid-publish")
    with ctx.db.begin() as conn:
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id == crashed)
            .values(state="publishing", attempts=1)
        )

    service = services(ctx)
    report = service.start()
    assert report.missed == [old]
    assert report.recovered == [crashed]
    assert report.future == 1 and report.due == 3
    for d in (due, lisbon_old, crashed):
        wait_for(lambda d=d: state(ctx, d) == "published", f"delivery {d} to publish")
    assert state(ctx, old) == "missed" and state(ctx, future) == "scheduled"
    with ctx.db.connect() as conn:
        missed = get_delivery(conn, old)
        jobs = dict(conn.execute(sa.text(f"SELECT id, next_run_time FROM {JOBS_TABLE}")).all())
    assert missed.last_error.startswith("missed:")
    assert set(jobs) == {str(future)}
    service.stop()

    # A second start publishes nothing again: each due delivery ran exactly once.
    services(ctx).start()
    assert attempts(ctx, due) == ["published"]
    assert attempts(ctx, crashed) == ["transient_error", "published"]
    rss = feedparser.parse((ctx.workspace.feeds_dir / "emotional-equity.xml").read_bytes())
    titles = [e.title for e in rss.entries]
    assert sorted(titles) == ["Crashed mid-publish", "Due an hour ago"]


def test_transient_errors_back_off_then_succeed(ctx, services):
    d = schedule_at(ctx, timedelta(seconds=-1))
    faults = [TransientChannelError("PDS unreachable")] * 3
    publisher = FaultInjectingPublisher(ctx, faults)
    services(ctx, publishers={"rss": publisher}).start()
    wait_for(lambda: state(ctx, d) == "published", "publish after retries")
    assert attempts(ctx, d) == ["transient_error"] * 3 + ["published"]
    assert publisher.calls == [d] * 4
    with ctx.db.connect() as conn:
        final = get_delivery(conn, d)
    assert final.attempts == 4 and final.retry_at is None and final.last_error is None


def test_backoff_delay_grows_and_honours_retry_after(ctx):
    d = schedule_at(ctx, timedelta(seconds=-1))
    slow = Backoff(base=60, factor=2, cap=3600, jitter=0.5)
    publisher = FaultInjectingPublisher(
        ctx,
        [TransientChannelError("503"), TransientChannelError("429", retry_after=900)],
    )
    first = publish_delivery(ctx, d, {"rss": publisher}, backoff=slow)
    assert first.status == "retry"
    wait1 = (first.delivery.retry_at - first.delivery.updated_at).total_seconds()
    assert 30 <= wait1 <= 60  # base 60 s minus up to half of it as jitter
    again = publish_delivery(ctx, d, {"rss": publisher}, now=first.delivery.retry_at)
    assert again.status == "retry"
    wait2 = (again.delivery.retry_at - again.delivery.updated_at).total_seconds()
    assert wait2 >= 900  # the server's retry_after wins over 60-120 s of backoff
    # Not due yet: nobody can claim it before retry_at.
    early = publish_delivery(ctx, d, {"rss": publisher})
    assert early.status == "skipped" and len(publisher.calls) == 2


def test_gives_up_after_max_attempts(ctx):
    ctx.settings.scheduler.max_attempts = 3
    d = schedule_at(ctx, timedelta(seconds=-1))
    publisher = FaultInjectingPublisher(ctx, [TransientChannelError("timeout")] * 10)
    outcome = None
    for _ in range(3):
        with ctx.db.connect() as conn:
            when = get_delivery(conn, d).wake_at
        outcome = publish_delivery(ctx, d, {"rss": publisher}, backoff=FAST, now=when)
    assert outcome.status == "failed"
    assert outcome.delivery.retry_at is None
    assert outcome.delivery.last_error.startswith("gave up after 3 attempts: timeout")
    assert publish_delivery(ctx, d, {"rss": publisher}).status == "skipped"
    assert len(publisher.calls) == 3


def test_permanent_error_stops_and_records_the_reason(ctx, services):
    d = schedule_at(ctx, timedelta(seconds=-1))
    publisher = FaultInjectingPublisher(
        ctx, [PermanentChannelError("content rejected", hint="shorten the text")]
    )
    service = services(ctx, publishers={"rss": publisher})
    service.start()
    wait_for(lambda: state(ctx, d) == "failed", "the permanent failure")
    service.sync()
    service.sync()
    with ctx.db.connect() as conn:
        failed = get_delivery(conn, d)
        jobs = conn.execute(sa.text(f"SELECT count(*) FROM {JOBS_TABLE}")).scalar()
    assert failed.retry_at is None and jobs == 0
    assert failed.last_error == "content rejected (shorten the text)"
    assert attempts(ctx, d) == ["permanent_error"] and publisher.calls == [d]


def test_unapproved_draft_is_not_published(ctx):
    d = schedule_at(ctx, timedelta(seconds=-1))
    from narratives.store.schema import drafts

    with ctx.db.begin() as conn:
        conn.execute(drafts.update().values(state="pending_review"))
    publisher = FaultInjectingPublisher(ctx)
    outcome = publish_delivery(ctx, d, {"rss": publisher})
    assert outcome.status == "failed" and "no longer approved" in outcome.error
    assert publisher.calls == []


def test_claim_lets_only_one_of_two_racers_publish(ctx):
    d = schedule_at(ctx, timedelta(seconds=-1))
    gate = threading.Event()
    publisher = FaultInjectingPublisher(ctx, gate=gate)
    results = []

    def race():
        results.append(publish_delivery(ctx, d, {"rss": publisher}).status)

    threads = [threading.Thread(target=race) for _ in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(results) == 3, "three losers")
    gate.set()
    for t in threads:
        t.join(30)
    assert sorted(results) == ["published", "skipped", "skipped", "skipped"]
    assert publisher.calls == [d]


def test_stop_finishes_the_post_in_flight_and_takes_no_more(ctx, services):
    first = schedule_at(ctx, timedelta(seconds=-2))
    second = schedule_at(ctx, timedelta(seconds=-1))
    gate = threading.Event()
    publisher = FaultInjectingPublisher(ctx, gate=gate)
    service = services(ctx, publishers={"rss": publisher}, workers=1)
    service.start()
    wait_for(publisher.started.is_set, "the first post to start")
    stopper = threading.Thread(target=service.stop)
    stopper.start()
    wait_for(lambda: not service.running, "stop to begin")
    gate.set()
    stopper.join(30)
    assert not stopper.is_alive()
    assert publisher.calls == [first]
    assert state(ctx, first) == "published" and state(ctx, second) == "scheduled"


def test_sync_picks_up_changes_made_by_other_processes(ctx, services):
    service = services(ctx)
    service.start()
    later = schedule_at(ctx, timedelta(seconds=1), title="Scheduled while running")
    cancelled = schedule_at(ctx, timedelta(seconds=2))
    scheduling.cancel(ctx, cancelled, actor="kai")
    wait_for(lambda: state(ctx, later) == "published", "the new delivery")
    service.sync()
    with ctx.db.connect() as conn:
        jobs = conn.execute(sa.text(f"SELECT id FROM {JOBS_TABLE}")).scalars().all()
    assert jobs == [] and state(ctx, cancelled) == "cancelled"
    assert attempts(ctx, cancelled) == []


def test_rss_end_to_end_through_the_job_store(ctx, services):
    d = schedule_at(ctx, timedelta(seconds=3), title="On time")
    service = services(ctx)
    service.start()
    with ctx.db.connect() as conn:
        job = conn.execute(sa.text(f"SELECT id, next_run_time FROM {JOBS_TABLE}")).one()
        due_at = get_delivery(conn, d).scheduled_at
    assert job.id == str(d) and job.next_run_time == pytest.approx(due_at.timestamp())
    wait_for(lambda: state(ctx, d) == "published", "the scheduled post")
    with ctx.db.connect() as conn:
        published = get_delivery(conn, d)
    assert published.published_at >= published.scheduled_at
    feed = ctx.workspace.feeds_dir / "emotional-equity.xml"

    def titles() -> list[str]:
        # The feed is rebuilt just after the state commits (after_commit): wait for it.
        parsed = feedparser.parse(feed.read_bytes()) if feed.exists() else None
        return [e.title for e in parsed.entries] if parsed and not parsed.bozo else []

    assert wait_for(titles, "the feed to list the item", 30) == ["On time"]


def test_one_service_per_process(ctx, services):
    services(ctx).start()
    with pytest.raises(InvalidState):
        services(ctx).start()


def test_publish_now_cli_takes_the_same_path(ctx):
    from narratives.cli import cli

    draft = add_draft(ctx, content=rss_content("Posted by hand"))
    res = CliRunner().invoke(cli, ["publish", str(draft), "--now", "--json", "--as", "kai"])
    assert res.exit_code == 0, res.output
    import json

    out = json.loads(res.output)
    assert out["status"] == "published" and out["delivery"]["attempts"] == 1
    feed = (ctx.workspace.feeds_dir / "emotional-equity.xml").read_bytes()
    assert b"Posted by hand" in feed
    again = CliRunner().invoke(cli, ["publish", str(draft), "--now", "--as", "kai"])
    assert again.exit_code == InvalidState.exit_code and "already published" in again.output


def test_scheduler_process_exits_cleanly_on_sigterm(ctx, workspace):
    d = schedule_at(ctx, timedelta(seconds=-1), title="Before SIGTERM")
    env = {**os.environ, "NARRATIVES_HOME": str(workspace.root)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from narratives.cli import main; main()",
            "scheduler",
            "run",
            "--sync-interval",
            "0.5",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(lambda: state(ctx, d) == "published", "the subprocess to publish")
        proc.terminate()
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, out
    assert "scheduler stopped" in out and "Traceback" not in out


def test_consent_is_checked_again_at_publish_time(ctx):
    from narratives.store.schema import consents

    d = schedule_at(ctx, timedelta(seconds=-1))
    with ctx.db.begin() as conn:
        conn.execute(consents.update().values(channels=["bluesky"]))
    publisher = FaultInjectingPublisher(ctx)
    outcome = publish_delivery(ctx, d, {"rss": publisher})
    assert outcome.status == "failed" and outcome.delivery.retry_at is None
    assert "rss" in outcome.error and publisher.calls == []
    assert attempts(ctx, d) == ["permanent_error"]


def test_a_draft_naming_an_anonymous_narrator_is_not_published(ctx):
    from narratives.store.redactions import mark_term

    d = schedule_at(ctx, timedelta(seconds=-1), content="Rosa told me to rest.")
    with ctx.db.connect() as conn:
        nid = conn.execute(
            sa.text(
                "select narrative_id from drafts where id = (select draft_id from "
                "deliveries where id = :d)"
            ),
            {"d": d},
        ).scalar()
    mark_term(ctx, nid, "Rosa", actor="kai")  # the fixtures' consent says anonymous
    publisher = FaultInjectingPublisher(ctx)
    outcome = publish_delivery(ctx, d, {"rss": publisher})
    assert outcome.status == "failed" and outcome.delivery.retry_at is None
    assert "Rosa" in outcome.error and "anonymous" in outcome.error
    assert publisher.calls == []


def test_withdrawn_while_publishing_is_taken_down(ctx):
    from narratives.workflow.takedown import withdraw

    d = schedule_at(ctx, timedelta(seconds=-1))
    with ctx.db.connect() as conn:
        nid = conn.execute(
            sa.text(
                "select narrative_id from drafts where id = (select draft_id from "
                "deliveries where id = :d)"
            ),
            {"d": d},
        ).scalar()
    publisher = FaultInjectingPublisher(ctx, gate=threading.Event())
    outcome: dict = {}
    t = threading.Thread(
        target=lambda: outcome.update(o=publish_delivery(ctx, d, {"rss": publisher}))
    )
    t.start()
    assert publisher.started.wait(30), "the publish never started"
    withdraw(ctx, nid, actor="kai", reason="the narrator changed their mind")
    publisher.gate.set()
    t.join(30)
    assert outcome["o"].status == "withdrawn"
    assert state(ctx, d) == "withdrawn"


def _narrative_of(ctx, delivery_id: int) -> str:
    with ctx.db.connect() as conn:
        return conn.execute(
            sa.text(
                "select narrative_id from drafts where id = (select draft_id from "
                "deliveries where id = :d)"
            ),
            {"d": delivery_id},
        ).scalar()


def _in_background(fn) -> tuple[threading.Thread, dict]:
    out: dict = {}
    t = threading.Thread(target=lambda: out.update(o=fn()))
    t.start()
    return t, out


def test_an_error_after_a_withdrawal_is_not_recorded_as_a_failure(ctx):
    """F2: the publish fails after consent was withdrawn: the delivery ends withdrawn (not
    failed and retried), with no failed attempt in the log."""
    from narratives.workflow.takedown import withdraw

    d = schedule_at(ctx, timedelta(seconds=-1))
    gate = threading.Event()
    publisher = FaultInjectingPublisher(ctx, faults=[TransientChannelError("PDS 502")], gate=gate)
    t, out = _in_background(lambda: publish_delivery(ctx, d, {"rss": publisher}))
    assert publisher.started.wait(30), "the publish never started"
    withdraw(ctx, _narrative_of(ctx, d), actor="kai", reason="the narrator changed their mind")
    gate.set()
    t.join(30)
    assert out["o"].status == "withdrawn"
    assert state(ctx, d) == "withdrawn"
    assert attempts(ctx, d) == []
    with ctx.db.connect() as conn:
        from narratives.store import audit

        assert "publish_failed" not in [r["action"] for r in audit.history(conn, "delivery", d)]


def test_publish_now_keeps_its_claim_when_the_scheduler_starts(ctx):
    """F3: a scheduler starting while `publish --now` is posting neither hands the delivery
    back nor publishes it a second time."""
    from narratives.workflow.publishing import publish_draft_now, recover_interrupted

    draft = add_draft(ctx, content=rss_content("Posted by hand"))
    gate = threading.Event()
    by_hand = FaultInjectingPublisher(ctx, gate=gate)
    t, out = _in_background(lambda: publish_draft_now(ctx, draft, {"rss": by_hand}, actor="kai"))
    assert by_hand.started.wait(30), "the publish never started"
    with ctx.db.connect() as conn:
        [d] = list_deliveries(conn, draft_id=draft)
    assert d.state == "publishing" and d.claimed_by and d.claimed_at
    assert recover_interrupted(ctx) == []
    scheduler = FaultInjectingPublisher(ctx)
    assert publish_delivery(ctx, d.id, {"rss": scheduler}).status == "skipped"
    gate.set()
    t.join(30)
    assert out["o"].status == "published" and scheduler.calls == []
    assert state(ctx, d.id) == "published" and attempts(ctx, d.id) == ["published"]


def test_a_claim_lost_to_a_finished_publish_is_found_not_taken_down(ctx):
    """F3: a slow publish whose lease lapsed, handed back and finished by another process,
    ends `found_existing`; it never takes the post down."""
    from narratives.store.claims import CLAIM_LEASE
    from narratives.workflow.publishing import recover_interrupted

    d = schedule_at(ctx, timedelta(seconds=-1))
    gate = threading.Event()
    slow = FaultInjectingPublisher(ctx, gate=gate)
    t, out = _in_background(lambda: publish_delivery(ctx, d, {"rss": slow}))
    assert slow.started.wait(30), "the publish never started"
    stale = utcnow() - CLAIM_LEASE - timedelta(seconds=1)
    with ctx.db.begin() as conn:
        conn.execute(deliveries.update().where(deliveries.c.id == d).values(claimed_at=stale))
    assert recover_interrupted(ctx) == [d]
    assert publish_delivery(ctx, d, {"rss": FaultInjectingPublisher(ctx)}).status == "published"
    gate.set()
    t.join(30)
    assert out["o"].status == "found_existing"
    assert state(ctx, d) == "published"
    assert attempts(ctx, d) == ["transient_error", "published"]


def test_sync_hands_back_a_delivery_whose_publisher_was_killed(ctx, services):
    """F4: a `publish --now` killed mid-post leaves its delivery `publishing`; the running
    scheduler's sync sees its owner is gone, marks it interrupted and publishes it."""
    import socket

    service = services(ctx)
    service.start()
    d = schedule_at(ctx, timedelta(days=2))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    with ctx.db.begin() as conn:
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id == d)
            .values(
                state="publishing",
                attempts=1,
                claimed_by=f"{socket.gethostname()}:{dead.pid}:0123abcd",
                claimed_at=utcnow(),
            )
        )
    wait_for(lambda: state(ctx, d) == "published", "the sync to hand the delivery back")
    with ctx.db.connect() as conn:
        errors = [
            r.error
            for r in conn.execute(
                sa.select(delivery_attempts.c.error).where(delivery_attempts.c.delivery_id == d)
            )
        ]
    assert any("interrupted" in (e or "") for e in errors)


def test_stopping_while_a_job_finishes_raises_nothing(ctx, services):
    """APScheduler removes a date job after running it; if the service stopped in between,
    its own remove_job raised JobLookupError in its thread (seen as a thread warning)."""
    service = services(ctx)
    service.start()
    service.stop()
    service._aps.remove_job("delivery-999999")  # what its thread does after a run


def test_a_retry_pending_past_the_missed_limit_is_missed_unless_part_is_out(ctx, services):
    """Issue 6: every due, unpublished delivery older than the campaign's limit is missed on
    start, a failed one waiting for its retry too; one with a post already out is finished."""
    week_ago = utcnow() - timedelta(days=7)
    stale = schedule_at(ctx, timedelta(days=-7), title="Old news")
    half = schedule_at(ctx, timedelta(days=-7), title="Half out")
    recent = schedule_at(ctx, timedelta(hours=-1), title="Retry soon")
    with ctx.db.begin() as conn:
        for d in (stale, half, recent):
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id == d)
                .values(state="failed", attempts=1, retry_at=week_ago + timedelta(minutes=1))
            )
        # Stands in for a thread whose first post landed before the error.
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id == half)
            .values(posts=[{"rkey": "3abc", "uri": "at://did:plc:x/app.bsky.feed.post/3abc"}])
        )
    service = services(ctx)
    report = service.start()
    assert report.missed == [stale]
    wait_for(lambda: state(ctx, recent) == "published", "the recent retry to publish")
    assert state(ctx, stale) == "missed" and state(ctx, half) != "missed"
    with ctx.db.connect() as conn:
        assert get_delivery(conn, stale).retry_at is None


def test_the_publisher_and_the_scheduler_agree_on_what_is_missed(ctx, services):
    """Issue 17: one missed rule. Each case is set up twice; one copy is woken by
    `publish_delivery` (a job firing late), the other found by the scheduler at start. Both
    must call the same copies missed: never tried, or a pending retry with nothing out."""
    now = utcnow()
    out = [{"rkey": "3abc", "uri": "at://did:plc:x/app.bsky.feed.post/3abc"}]
    cases = {
        # case: (hours late, state, retry pending, attempted before, posts), missed?
        "never tried": ((13, "scheduled", False, False, None), True),
        "moved after a try": ((13, "scheduled", False, True, None), False),
        "retry pending": ((13, "failed", True, True, None), True),
        "retry pending, part out": ((13, "failed", True, True, out), False),
        "stopped": ((13, "failed", False, True, None), False),
        "late within the limit": ((1, "scheduled", False, False, None), False),
    }

    def make(hours, state_, retry, attempted, posts) -> int:
        d = schedule_at(ctx, timedelta(hours=-hours))
        with ctx.db.begin() as conn:
            conn.execute(
                deliveries.update()
                .where(deliveries.c.id == d)
                .values(
                    state=state_,
                    retry_at=now - timedelta(minutes=1) if retry else None,
                    posts=posts,
                )
            )
            if attempted:
                conn.execute(
                    delivery_attempts.insert().values(
                        delivery_id=d, at=now, outcome="transient_error", error="x"
                    )
                )
        return d

    pairs = {name: (make(*setup), make(*setup)) for name, (setup, _) in cases.items()}
    woken = {
        name: publish_delivery(ctx, by_job, default_publishers(ctx), now=now).status == "missed"
        for name, (by_job, _) in pairs.items()
    }
    report = services(ctx).start()
    found = {name: at_start in report.missed for name, (_, at_start) in pairs.items()}
    assert woken == found == {name: missed for name, (_, missed) in cases.items()}
