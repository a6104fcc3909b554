"""Issue 19's publishing defects without a network: after a 429 the deliveries that met it wake
at different times after its reset (margin and jitter), and waiting for it is not an attempt."""

from __future__ import annotations

import random
from datetime import timedelta

import sqlalchemy as sa

from narratives.channels.base import Outgoing, PublishResult
from narratives.core.campaigns import BLUESKY
from narratives.core.clock import utcnow
from narratives.core.errors import RateLimited, TransientChannelError
from narratives.store.delivery_queries import get_delivery
from narratives.store.schema import deliveries, delivery_attempts
from narratives.workflow import scheduling
from narratives.workflow.publishing import Backoff, publish_delivery
from tests.delivery_fixtures import add_draft, bluesky_content


class Limited:
    """A publisher whose server answers 429 (reset in `reset` s) until `open` is set."""

    channel = BLUESKY

    def __init__(self, reset: float) -> None:
        self.reset = reset
        self.open = False
        self.calls = 0

    def publish(self, item: Outgoing) -> PublishResult:
        self.calls += 1
        if not self.open:
            raise RateLimited("Bluesky rate limit reached", retry_after=self.reset)
        return PublishResult(posts=[], url="at://x")

    def after_commit(self, item):
        return None

    def take_down(self, campaign, posts):
        return []

    def close(self):
        return None


def _schedule(ctx, n: int):
    now = utcnow() - timedelta(seconds=1)
    ids = []
    for i in range(n):
        draft = add_draft(ctx, "emotional-equity", BLUESKY, content=bluesky_content(f"Post {i}."))
        ids.append(scheduling.schedule(ctx, draft, at=now, actor="kai", now=now).id)
    return ids


def test_deliveries_that_met_one_rate_limit_wake_apart_and_keep_their_attempts(ctx):
    ctx.settings.scheduler.max_attempts = 3
    ids = _schedule(ctx, 40)
    server = Limited(reset=20.0)
    backoff = Backoff(margin=2.0, spread=30.0)
    start = utcnow()
    retry_ats = []
    for delivery_id in ids:
        out = publish_delivery(ctx, delivery_id, {BLUESKY: server}, backoff=backoff)
        assert out.status == "retry", out.error
        retry_ats.append(out.delivery.retry_at)
    waits = [(t - start).total_seconds() for t in retry_ats]
    assert min(waits) >= 20.0 + 2.0, "never before the reset plus the margin"
    assert max(waits) <= 20.0 + 2.0 + 30.0 + 5.0
    assert len({round(w, 1) for w in waits}) > 30, "spread out, not all on the reset second"
    assert max(waits) - min(waits) > 10.0

    # Many more rate-limited rounds than the attempt limit: still waiting, never failed.
    delivery_id = ids[0]
    for _ in range(ctx.settings.scheduler.max_attempts + 3):
        with ctx.db.connect() as conn:
            later = get_delivery(conn, delivery_id).retry_at + timedelta(seconds=1)
        out = publish_delivery(ctx, delivery_id, {BLUESKY: server}, backoff=backoff, now=later)
        assert out.status == "retry"
        assert out.delivery.attempts == 0
    with ctx.db.connect() as conn:
        outcomes = set(
            conn.execute(
                sa.select(delivery_attempts.c.outcome).where(
                    delivery_attempts.c.delivery_id == delivery_id
                )
            ).scalars()
        )
    assert outcomes == {"rate_limited"}
    server.open = True
    with ctx.db.connect() as conn:
        later = get_delivery(conn, delivery_id).retry_at + timedelta(seconds=1)
    out = publish_delivery(ctx, delivery_id, {BLUESKY: server}, backoff=backoff, now=later)
    assert out.status == "published"


def test_other_transient_errors_still_count_toward_the_limit(ctx):
    ctx.settings.scheduler.max_attempts = 2
    (delivery_id,) = _schedule(ctx, 1)

    class Down(Limited):
        def publish(self, item):
            raise TransientChannelError("cannot reach Bluesky")

    server = Down(reset=0)
    statuses = []
    now = utcnow()
    for _ in range(2):
        out = publish_delivery(ctx, delivery_id, {BLUESKY: server}, now=now)
        statuses.append(out.status)
        now = out.delivery.retry_at or now
        now += timedelta(seconds=1)
    assert statuses == ["retry", "failed"]


def test_backoff_after_a_rate_limit_without_a_reset_time_uses_the_base():
    rng = random.Random(1)
    b = Backoff(base=30.0, margin=2.0, spread=10.0)
    waits = [b.after_rate_limit(None, rng) for _ in range(200)]
    assert all(32.0 <= w <= 42.0 for w in waits)
    assert all(b.after_rate_limit(5.0, rng) >= 7.0 for _ in range(200))


def test_withdraw_waits_for_a_delivery_a_publisher_holds_and_reports_it_pending(ctx):
    """A publisher is posting when consent is withdrawn: the withdrawal reports it pending
    (not "taken down 0") and, given time, sees the publisher take it down itself."""
    import threading
    import time

    from narratives.store import deliveries as store
    from narratives.store.claims import new_claim_owner
    from narratives.workflow.takedown import take_down_delivery, withdraw

    results = []
    for round_ in range(2):
        (delivery_id,) = _schedule(ctx, 1)
        with ctx.db.connect() as conn:
            nid = conn.execute(
                sa.text(
                    "select d.narrative_id from drafts d join deliveries x on x.draft_id = d.id "
                    "where x.id = :i"
                ),
                {"i": delivery_id},
            ).scalar_one()
        owner = new_claim_owner()
        with ctx.db.begin() as conn:
            assert store.claim(conn, delivery_id, utcnow(), owner)
            # Nothing stored yet (the takedown then needs no server): the publisher has
            # the delivery but has not recorded a post.
            conn.execute(deliveries.update().where(deliveries.c.id == delivery_id).values(posts=[]))

        def publisher_notices(delivery_id=delivery_id, owner=owner):
            # The publisher's conditional write fails, so it takes its posts down itself.
            time.sleep(0.5)
            take_down_delivery(ctx, delivery_id, actor="scheduler", reason="x", owner=owner)

        worker = threading.Thread(target=publisher_notices)
        worker.start()
        wait = 0.1 if round_ == 0 else 10.0
        report = withdraw(ctx, nid, actor="kai", reason="the narrator asked", wait=wait)
        worker.join()
        results.append((report.pending, report.withdrawn))
    assert results[0] == ([delivery_id - 1], []), "too short a wait: reported pending, not 0"
    assert results[1] == ([], [delivery_id]), "waited: the publisher's takedown is reported"


def test_apschedulers_skipped_run_notice_is_debug_not_a_warning(caplog):
    """A job that fires while its previous run is still going is skipped (max_instances=1):
    routine, so no warning; still visible at DEBUG."""
    import logging
    import threading
    import time

    from apscheduler.schedulers.background import BackgroundScheduler

    import narratives.workflow.scheduler  # noqa: F401  (installs the filter)

    release = threading.Event()

    def slow() -> None:
        release.wait(5)

    def run_for(seconds: float) -> None:
        aps = BackgroundScheduler()
        aps.add_job(slow, "interval", seconds=0.05, max_instances=1, coalesce=True)
        aps.start()
        time.sleep(seconds)
        release.set()
        aps.shutdown(wait=True)
        release.clear()

    with caplog.at_level(logging.WARNING):
        run_for(0.6)
    assert not [r for r in caplog.records if "running instances" in r.getMessage()]
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="apscheduler.scheduler"):
        run_for(0.6)
    skipped = [r for r in caplog.records if "running instances" in r.getMessage()]
    assert skipped and all(r.levelno == logging.DEBUG for r in skipped)


def test_the_scheduler_pulls_engagement_counts_periodically(ctx, caplog):
    import logging
    import time

    from narratives.workflow.scheduler import SchedulerService

    service = SchedulerService(ctx, publishers={}, sync_interval=0.5, stats_interval=0.3)
    with caplog.at_level(logging.INFO, logger="narratives.workflow.scheduler"):
        service.start()
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                pulls = [r for r in caplog.records if r.getMessage().startswith("engagement:")]
                if len(pulls) >= 2:
                    break
                time.sleep(0.1)
        finally:
            service.stop()
    assert len(pulls) >= 2, "the pull runs on its interval"
    assert pulls[0].getMessage().startswith("engagement: 0 of 0 posts")


def test_rate_limit_waits_never_count_under_concurrent_publishers(ctx):
    """Eight threads wake ten rate-limited deliveries over and over (240 wake-ups): every claim
    that met the limit is logged as a wait, none counts as an attempt, none is given up."""
    import threading

    ctx.settings.scheduler.max_attempts = 2
    ids = _schedule(ctx, 10)
    server = Limited(reset=1.0)
    backoff = Backoff(margin=0.0, spread=0.0)
    outcomes: list[str] = []
    lock = threading.Lock()
    start = utcnow()

    def worker(n: int) -> None:
        for round_ in range(30):
            # Each round is a moment after every retry time so far: all are due again.
            now = start + timedelta(seconds=10 * (round_ + 1))
            delivery_id = ids[(n + round_) % len(ids)]
            out = publish_delivery(ctx, delivery_id, {BLUESKY: server}, backoff=backoff, now=now)
            with lock:
                outcomes.append(out.status)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == 240
    assert set(outcomes) <= {"retry", "skipped"} and "retry" in outcomes
    with ctx.db.connect() as conn:
        waits = conn.execute(sa.select(sa.func.count()).select_from(delivery_attempts)).scalar_one()
        for delivery_id in ids:
            d = get_delivery(conn, delivery_id)
            assert d.state == "failed" and d.retry_at is not None and d.attempts == 0
    assert waits == outcomes.count("retry") == server.calls


class DailyLimited(Limited):
    """A publisher whose video service says the account's daily limit is reached until `open`:
    like `VideoService`, it asks to wait until the next UTC midnight, from the test's clock."""

    def __init__(self, clock) -> None:
        super().__init__(reset=0)
        self.clock = clock

    def publish(self, item: Outgoing) -> PublishResult:
        self.calls += 1
        if not self.open:
            now = self.clock()
            midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
            raise RateLimited(
                "Bluesky's daily video limit is reached for this account",
                retry_after=(midnight - now).total_seconds(),
            )
        return PublishResult(posts=[], url="at://x")


def test_a_delivery_held_by_the_daily_video_limit_is_not_missed_and_goes_out_after_reset(
    ctx, monkeypatch
):
    """Fix bsky-1: scheduled 08:00 UTC, the daily limit holds it until midnight (16 h, past
    the campaign's 12 h missed limit). Neither the scheduler's sweep nor its wake-up calls it
    missed while it waits; it publishes after the reset. A wait that itself lies 12 h in the
    past (no scheduler ran all that time) is still missed, and so is a never-tried delivery."""
    from datetime import UTC, datetime

    from narratives.store import deliveries as store
    from narratives.workflow import publishing
    from narratives.workflow.scheduler import SchedulerService

    day = datetime(2027, 3, 1, tzinfo=UTC)
    slot = day.replace(hour=8)
    clock = {"now": slot}
    monkeypatch.setattr(publishing, "utcnow", lambda: clock["now"])
    assert store.missed_limit(ctx, "emotional-equity") == timedelta(hours=12)

    def scheduled(text: str) -> int:
        draft = add_draft(ctx, "emotional-equity", BLUESKY, content=bluesky_content(text))
        return scheduling.schedule(
            ctx, draft, at=slot, actor="kai", now=slot - timedelta(hours=1)
        ).id

    held, other, never = scheduled("Held."), scheduled("Held too."), scheduled("Never tried.")
    server = DailyLimited(lambda: clock["now"])
    backoff = Backoff(margin=2.0, spread=30.0)
    for delivery_id in (held, other):
        out = publish_delivery(ctx, delivery_id, {BLUESKY: server}, backoff=backoff, now=slot)
        assert out.status == "retry" and "daily video limit" in out.error
        assert out.delivery.attempts == 0
        assert (
            day + timedelta(days=1) <= out.delivery.retry_at <= day + timedelta(days=1, minutes=1)
        )

    # +15.9 h, 23:54 UTC: waiting for the reset, not missed (the sweep and a wake-up agree).
    late = slot + timedelta(hours=15.9)
    service = SchedulerService(ctx, publishers={BLUESKY: server}, stats_interval=None)
    assert service._mark_missed(late) == [never], "only the never-tried one is missed"
    with ctx.db.connect() as conn:
        d = get_delivery(conn, held)
        assert store.waits_for_server(conn, held) and not store.waits_for_server(conn, never)
    assert d.state == "failed" and d.retry_at is not None
    assert store.is_late(d, late, timedelta(hours=12), server_wait=True) is False
    woken = publish_delivery(ctx, held, {BLUESKY: server}, backoff=backoff, now=late)
    assert woken.status == "skipped", "not due yet, and not missed"

    # After the reset it publishes, 16 h after its slot.
    server.open = True
    with ctx.db.connect() as conn:
        after_reset = get_delivery(conn, held).retry_at + timedelta(seconds=1)
    clock["now"] = after_reset
    out = publish_delivery(ctx, held, {BLUESKY: server}, backoff=backoff, now=after_reset)
    assert out.status == "published", out.error
    assert out.delivery.state == "published"

    # No scheduler ran for 12 h after the reset: that is lateness, and it is missed.
    with ctx.db.connect() as conn:
        reset = get_delivery(conn, other).retry_at
    assert service._mark_missed(reset + timedelta(hours=11.9)) == []
    assert service._mark_missed(reset + timedelta(hours=12.1)) == [other]
    with ctx.db.connect() as conn:
        missed = get_delivery(conn, other)
    assert missed.state == "missed" and "held by the server's limit" in missed.last_error
