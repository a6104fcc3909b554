"""Deliveries stay consistent under races and consent changes: one open delivery per draft even
with two processes scheduling at once, `fill` honouring consent, the published content kept on
the delivery, narrowed consent taking down what it no longer covers, and a takedown whose feed
rebuild fails left to be finished later."""

from __future__ import annotations

import multiprocessing
import os
from collections import Counter
from datetime import timedelta

import feedparser
import pytest
import sqlalchemy as sa

from narratives.core.clock import utcnow
from narratives.core.errors import InvalidState
from narratives.records.delivery import OPEN
from narratives.store import audit, users
from narratives.store.delivery_queries import get_delivery, list_deliveries
from narratives.store.schema import consents, deliveries
from narratives.workflow import publishing, review, scheduling, takedown
from tests.delivery_fixtures import add_draft, add_narrative, rss_content

CAMPAIGN = "emotional-equity"


def state_of(ctx, delivery_id: int) -> str:
    with ctx.db.connect() as conn:
        return get_delivery(conn, delivery_id).state


def open_per_draft(ctx, draft_ids) -> dict[int, int]:
    with ctx.db.connect() as conn:
        rows = conn.execute(
            sa.select(deliveries.c.draft_id, sa.func.count())
            .where(
                deliveries.c.draft_id.in_(list(draft_ids)),
                deliveries.c.state.in_(OPEN),
            )
            .group_by(deliveries.c.draft_id)
        ).all()
    return {d: 0 for d in draft_ids} | {r[0]: r[1] for r in rows}


def feed_titles(ctx) -> list[str]:
    path = ctx.workspace.feeds_dir / f"{CAMPAIGN}.xml"
    if not path.exists():
        return []
    return [e.title for e in feedparser.parse(path.read_bytes()).entries]


def audit_actions(ctx, object_type: str, object_id) -> list[str]:
    with ctx.db.connect() as conn:
        return [r["action"] for r in audit.history(conn, object_type, object_id)]


# ----------------------------------------------------------------------------- double scheduling


def _race_worker(home: str, draft_ids: list[int], mode: str, barrier, results) -> None:
    """One of two processes scheduling the same drafts at the same moment."""
    os.environ["NARRATIVES_HOME"] = home
    from narratives.core.workspace import current_workspace
    from narratives.store.context import Context

    ctx = Context(current_workspace())
    outcome: Counter[str] = Counter()
    barrier.wait(60)
    try:
        if mode == "schedule":
            for draft_id in draft_ids:
                try:
                    scheduling.schedule(ctx, draft_id, next_slot=True, actor="kai")
                    outcome["scheduled"] += 1
                except InvalidState:
                    outcome["refused"] += 1
        else:
            result = scheduling.fill(ctx, CAMPAIGN, actor="kai")
            outcome["scheduled"] += len(result.deliveries)
            outcome["refused"] += len(result.skipped)
    except Exception as exc:  # reported to the test, which fails on it
        outcome[f"{type(exc).__name__}: {exc}"] += 1
    results.put(dict(outcome))


@pytest.mark.parametrize("mode", ["schedule", "fill"])
def test_two_processes_scheduling_at_once_make_one_delivery_per_draft(ctx, workspace, mode):
    ids = [add_draft(ctx, channel="rss" if i % 2 else "bluesky") for i in range(20)]
    ctx.db.dispose()  # the workers open their own connections
    mp = multiprocessing.get_context("spawn")
    barrier, results = mp.Barrier(2), mp.Queue()
    workers = [
        mp.Process(target=_race_worker, args=(str(workspace.root), ids, mode, barrier, results))
        for _ in range(2)
    ]
    for w in workers:
        w.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for w in workers:
        w.join(30)
    assert [w.exitcode for w in workers] == [0, 0]
    total = Counter()
    for o in outcomes:
        total.update(o)
    assert set(total) <= {"scheduled", "refused"}, total  # no unhandled exception
    assert total["scheduled"] == 20
    assert open_per_draft(ctx, ids) == {d: 1 for d in ids}


def _rival(ctx, draft_id: int) -> None:
    """Another process's delivery of the same draft, committed between our check and INSERT."""
    now = utcnow()
    with ctx.db.begin() as conn:
        conn.execute(
            deliveries.insert().values(
                draft_id=draft_id,
                campaign=CAMPAIGN,
                channel="rss",
                state="scheduled",
                scheduled_at=now + timedelta(days=30),
                attempts=0,
                created_at=now,
                updated_at=now,
            )
        )


def test_an_insert_the_index_refuses_is_the_same_invalid_state(ctx, monkeypatch):
    """The race made deterministic: the rival's delivery lands after our check passed."""
    draft = add_draft(ctx)
    real = scheduling.next_free_slot

    def next_free_slot(conn, *args, **kwargs):
        _rival(ctx, draft)
        return real(conn, *args, **kwargs)

    monkeypatch.setattr(scheduling, "next_free_slot", next_free_slot)
    with pytest.raises(InvalidState, match=f"draft {draft} already has delivery"):
        scheduling.schedule(ctx, draft, next_slot=True, actor="kai")
    assert open_per_draft(ctx, [draft]) == {draft: 1}


def test_publish_now_losing_the_race_is_refused_not_posted_twice(ctx, monkeypatch):
    draft = add_draft(ctx)
    real = scheduling.parse_when

    def parse_when(*args, **kwargs):
        _rival(ctx, draft)
        return real(*args, **kwargs)

    monkeypatch.setattr(scheduling, "parse_when", parse_when)
    with pytest.raises(InvalidState, match="already has delivery"):
        publishing.publish_draft_now(ctx, draft, actor="kai")
    with ctx.db.connect() as conn:
        [only] = list_deliveries(conn, draft_id=draft)
    assert only.state == "scheduled"  # the rival's, untouched


def test_fill_skips_and_reports_a_draft_scheduled_meanwhile(ctx, monkeypatch):
    first, second = add_draft(ctx), add_draft(ctx)
    real = scheduling.next_free_slot
    calls = []

    def next_free_slot(conn, *args, **kwargs):
        if not calls:
            _rival(ctx, first)
        calls.append(1)
        return real(conn, *args, **kwargs)

    monkeypatch.setattr(scheduling, "next_free_slot", next_free_slot)
    result = scheduling.fill(ctx, CAMPAIGN, actor="kai")
    assert [d.draft_id for d in result.deliveries] == [second]
    [(skipped, why)] = result.skipped
    assert skipped == first and "already has delivery" in why
    assert open_per_draft(ctx, [first, second]) == {first: 1, second: 1}


# ----------------------------------------------------------------------------- fill and consent


def test_fill_queues_only_drafts_whose_consent_covers_their_channel(ctx):
    covered = add_draft(ctx)
    withdrawn_nid = add_narrative(ctx)
    withdrawn = add_draft(ctx, narrative_id=withdrawn_nid)
    takedown.withdraw(ctx, withdrawn_nid, actor="kai", reason="narrator asked")
    missing = add_draft(ctx, narrative_id=add_narrative(ctx, consent=()))
    other_channel = add_draft(ctx, narrative_id=add_narrative(ctx, consent=("bluesky",)))
    expired_nid = add_narrative(ctx)
    expired = add_draft(ctx, narrative_id=expired_nid)
    with ctx.db.begin() as conn:
        conn.execute(
            consents.update()
            .where(consents.c.narrative_id == expired_nid)
            .values(expires_at=utcnow() - timedelta(days=1))
        )

    result = scheduling.fill(ctx, CAMPAIGN, actor="kai")
    assert [d.draft_id for d in result.deliveries] == [covered]
    reasons = dict(result.skipped)
    assert sorted(reasons) == sorted([withdrawn, missing, other_channel, expired])
    assert "withdrawn" in reasons[withdrawn]
    assert "no consent" in reasons[missing]
    assert "does not cover rss" in reasons[other_channel]
    assert "expired" in reasons[expired]
    assert open_per_draft(ctx, reasons) == {d: 0 for d in reasons}


# ----------------------------------------------------------------------------- snapshot


def test_published_content_is_kept_when_the_draft_is_edited_later(ctx):
    draft = add_draft(ctx, content=rss_content(title="Approved title"))
    out = publishing.publish_draft_now(ctx, draft, actor="kai")
    assert out.status == "published"
    edited = review.edit(ctx, draft, {"title": "An unreviewed edit"}, actor="kai")
    assert edited.state == "pending_review"
    with ctx.db.connect() as conn:
        kept = conn.execute(
            sa.select(deliveries.c.content).where(deliveries.c.id == out.delivery.id)
        ).scalar_one()
    assert kept == rss_content(title="Approved title")


# ----------------------------------------------------------------------------- narrowed consent


@pytest.fixture(autouse=True)
def kai_is_an_admin(ctx):
    """The actor of these tests; an admin, since some of them widen a consent."""
    users.add_user(ctx, "kai", "a-long-password-123", role="admin", actor="test")


def give(ctx, nid, channels=("bluesky", "rss"), **kw):
    return takedown.set_consent(
        ctx, nid, given_by="Ana Example", method="form", channels=list(channels), actor="kai", **kw
    )


def test_dropping_a_channel_takes_down_and_cancels_only_that_channel(ctx):
    nid = add_narrative(ctx)
    published = publishing.publish_draft_now(
        ctx, add_draft(ctx, narrative_id=nid, content=rss_content(title="Mine")), actor="kai"
    )
    other = publishing.publish_draft_now(
        ctx, add_draft(ctx, content=rss_content(title="Theirs")), actor="kai"
    )
    later = utcnow() + timedelta(days=3)
    waiting_rss = scheduling.schedule(
        ctx, add_draft(ctx, "neural-mandate", narrative_id=nid), at=later, actor="kai"
    )
    waiting_sky = scheduling.schedule(
        ctx, add_draft(ctx, channel="bluesky", narrative_id=nid), at=later, actor="kai"
    )
    assert sorted(feed_titles(ctx)) == ["Mine", "Theirs"]

    narrower = give(ctx, nid, channels=["bluesky"])

    # The one who saved it is told what it took back (the CLI and the page show this).
    assert narrower.takedown.withdrawn == [published.delivery.id]
    assert narrower.takedown.cancelled == [waiting_rss.id]
    assert state_of(ctx, published.delivery.id) == "withdrawn"
    assert state_of(ctx, waiting_rss.id) == "cancelled"
    assert state_of(ctx, waiting_sky.id) == "scheduled"  # still covered
    assert state_of(ctx, other.delivery.id) == "published"
    assert feed_titles(ctx) == ["Theirs"]
    assert audit_actions(ctx, "consent", nid)[-2:] == ["consent.set", "consent.narrow.takedown"]
    assert takedown.expire_due(ctx) == []  # nothing left over


def test_asking_for_anonymity_takes_down_everything_made_while_named(ctx):
    nid = add_narrative(ctx)
    give(ctx, nid, anonymous=False)
    published = publishing.publish_draft_now(ctx, add_draft(ctx, narrative_id=nid), actor="kai")
    waiting = scheduling.schedule(
        ctx,
        add_draft(ctx, channel="bluesky", narrative_id=nid),
        at=utcnow() + timedelta(days=3),
        actor="kai",
    )
    give(ctx, nid, anonymous=False, notes="unchanged: nothing is taken down")
    assert state_of(ctx, published.delivery.id) == "published"

    give(ctx, nid, anonymous=True)

    assert state_of(ctx, published.delivery.id) == "withdrawn"
    assert state_of(ctx, waiting.id) == "cancelled"
    assert feed_titles(ctx) == []


def test_expire_due_takes_down_published_deliveries_outside_the_consent_channels(ctx):
    """A consent narrowed without its takedown (an older version, or one that crashed)."""
    nid = add_narrative(ctx)
    published = publishing.publish_draft_now(
        ctx, add_draft(ctx, narrative_id=nid, content=rss_content(title="Mine")), actor="kai"
    )
    kept = publishing.publish_draft_now(
        ctx, add_draft(ctx, content=rss_content(title="Theirs")), actor="kai"
    )
    with ctx.db.begin() as conn:
        conn.execute(
            consents.update().where(consents.c.narrative_id == nid).values(channels=["bluesky"])
        )

    [report] = takedown.expire_due(ctx)
    assert report.narrative_id == nid and report.action == "narrow" and report.complete
    assert report.withdrawn == [published.delivery.id]
    assert state_of(ctx, published.delivery.id) == "withdrawn"
    assert state_of(ctx, kept.delivery.id) == "published"
    assert feed_titles(ctx) == ["Theirs"]
    assert takedown.expire_due(ctx) == []


# ----------------------------------------------------------------------------- robustness


def test_a_feed_rebuild_that_fails_leaves_the_takedown_to_finish_later(ctx, monkeypatch):
    nid = add_narrative(ctx)
    out = publishing.publish_draft_now(
        ctx, add_draft(ctx, narrative_id=nid, content=rss_content(title="Mine")), actor="kai"
    )
    assert feed_titles(ctx) == ["Mine"]
    real = takedown.write_campaign_feeds

    def failing_rebuild(*args, **kwargs):
        raise ValueError("fault injection: the feed cannot be written")

    # Fault injection: an unexpected (non-narratives) error while rebuilding the feed.
    monkeypatch.setattr(takedown, "write_campaign_feeds", failing_rebuild)
    report = takedown.withdraw(ctx, nid, actor="kai", reason="narrator asked")

    assert not report.complete and report.withdrawn == []
    assert any("fault injection" in e for e in report.errors)
    assert state_of(ctx, out.delivery.id) == "withdrawing"  # still live: to be finished
    assert audit_actions(ctx, "consent", nid)[-2:] == [
        "consent.withdraw",
        "consent.withdraw.takedown",
    ]

    monkeypatch.setattr(takedown, "write_campaign_feeds", real)
    [finished] = takedown.expire_due(ctx)
    assert finished.complete and finished.withdrawn == [out.delivery.id]
    assert finished.feeds_rebuilt == [CAMPAIGN]
    assert state_of(ctx, out.delivery.id) == "withdrawn"
    assert feed_titles(ctx) == []
    assert takedown.expire_due(ctx) == []
