"""Scheduling on the review page, in process: the agenda, and schedule / move / cancel from a
draft's page, through narratives.workflow.scheduling (states, consent and audit are its
business)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from narratives.core.campaigns import get_campaign
from narratives.store import audit, delivery_queries
from narratives.workflow import scheduling
from narratives.workflow.channels import default_publishers
from narratives.workflow.publishing import publish_delivery
from narratives.workflow.review import get_draft
from narratives.workflow.takedown import set_consent
from tests.delivery_fixtures import add_draft, rss_content
from tests.web_client import client_for, csrf, flash, post, row

# 2030: US daylight saving starts on Sunday 10 March, so Monday 09:00 (an emotional-equity
# slot, America/Los_Angeles) is 17:00 UTC on the 4th and 16:00 UTC on the 11th.
BEFORE_DST = "2030-03-04 09:00"
AFTER_DST = "2030-03-11 09:00"


def _deliveries(ctx, draft_id):
    with ctx.db.connect() as conn:
        return delivery_queries.list_deliveries(conn, draft_id=draft_id)


def _actions(ctx, delivery_id):
    with ctx.db.connect() as conn:
        return [(h["actor"], h["action"]) for h in audit.history(conn, "delivery", delivery_id)]


def test_agenda_shows_local_wall_clock_time_across_dst(ctx):
    client = client_for(ctx)
    first = add_draft(ctx, content=rss_content("Before the change"))
    second = add_draft(ctx, content=rss_content("After the change"))
    lisbon = add_draft(ctx, "neural-mandate", content=rss_content("A Lisbon story"))
    a = scheduling.schedule(ctx, first, at=BEFORE_DST, actor="kai")
    b = scheduling.schedule(ctx, second, at=AFTER_DST, actor="kai")
    c = scheduling.schedule(ctx, lisbon, next_slot=True, actor="kai")
    assert a.scheduled_at == datetime(2030, 3, 4, 17, 0, tzinfo=UTC)
    assert b.scheduled_at == datetime(2030, 3, 11, 16, 0, tzinfo=UTC)

    page = client.get("/schedule?campaign=emotional-equity").text
    assert "Posting slots: mon 09:00, wed 18:30, fri 12:00" in page
    assert "times in America/Los_Angeles" in page
    assert "Monday 4 March 2030" in page and "Monday 11 March 2030" in page
    assert page.index("Monday 4 March 2030") < page.index("Monday 11 March 2030")
    before, after = row(page, f"delivery-{a.id}"), row(page, f"delivery-{b.id}")
    assert "<strong>09:00</strong>" in before and "PST" in before
    assert "<strong>09:00</strong>" in after and "PDT" in after
    assert "Before the change" not in after  # rows are per delivery
    assert f'href="/drafts/{first}"' in before and "Scheduled" in before
    assert "16:00" not in page and "17:00" not in page
    assert f'id="delivery-{c.id}"' not in page  # another campaign

    # All campaigns: each delivery in its own campaign's zone.
    page = client.get("/schedule").text
    lisbon_row = row(page, f"delivery-{c.id}")
    assert "Europe/Lisbon" in lisbon_row and "America/Los_Angeles" in row(page, f"delivery-{a.id}")
    local = c.scheduled_at.astimezone(get_campaign(ctx.workspace, "neural-mandate").slots.zone)
    assert f"<strong>{local:%H:%M}</strong>" in lisbon_row
    assert client.get("/schedule?campaign=nope").status_code == 404


def test_schedule_at_a_time_from_the_draft_page(ctx):
    client = client_for(ctx)
    draft_id = add_draft(ctx)
    page = client.get(f"/drafts/{draft_id}").text
    assert 'id="schedule-tz" name="tz" value="America/Los_Angeles"' in page
    assert 'type="datetime-local" id="schedule-when"' in page
    assert "Schedule in the next free slot: " in page

    r = post(client, f"/drafts/{draft_id}/schedule", {"mode": "at", "when": "2030-03-11T09:00"})
    assert r.status_code == 303 and r.headers["location"] == f"/drafts/{draft_id}"
    assert flash(client, f"/drafts/{draft_id}") == "Scheduled for Mon 11 Mar 2030, 09:00 PDT."
    [d] = _deliveries(ctx, draft_id)
    assert d.state == "scheduled" and d.scheduled_at == datetime(2030, 3, 11, 16, tzinfo=UTC)
    assert _actions(ctx, d.id) == [("kai", "schedule")]
    page = client.get(f"/drafts/{draft_id}").text
    assert "Mon 11 Mar 2030" in row(page, f"delivery-{d.id}")
    assert 'id="schedule-when"' not in page  # scheduled at most once

    # Another zone for the same wall-clock time: Lisbon summer time is UTC+1.
    other = add_draft(ctx)
    post(
        client,
        f"/drafts/{other}/schedule",
        {"mode": "at", "when": "2030-07-01T09:00", "tz": "Europe/Lisbon"},
    )
    [d] = _deliveries(ctx, other)
    assert d.scheduled_at == datetime(2030, 7, 1, 8, tzinfo=UTC)


def test_next_slot_then_move_and_cancel(ctx):
    client = client_for(ctx)
    draft_id = add_draft(ctx)
    campaign = get_campaign(ctx.workspace, "emotional-equity")
    r = post(client, f"/drafts/{draft_id}/schedule", {"mode": "next"})
    assert r.status_code == 303
    [d] = _deliveries(ctx, draft_id)
    local = d.scheduled_at.astimezone(campaign.slots.zone)
    assert (local.weekday(), local.time()) in campaign.slots.parsed()
    assert d.scheduled_at > datetime.now(UTC)

    post(client, f"/deliveries/{d.id}/move", {"mode": "at", "when": "2030-03-04T09:00"})
    [moved] = _deliveries(ctx, draft_id)
    assert moved.id == d.id and moved.scheduled_at == datetime(2030, 3, 4, 17, tzinfo=UTC)
    assert "moved to Mon 4 Mar 2030, 09:00 PST" in flash(client, f"/drafts/{draft_id}")

    post(client, f"/deliveries/{d.id}/move", {"mode": "next"})
    [again] = _deliveries(ctx, draft_id)
    assert again.scheduled_at < moved.scheduled_at and again.state == "scheduled"

    r = post(client, f"/deliveries/{d.id}/cancel")
    assert r.status_code == 303 and r.headers["location"] == f"/drafts/{draft_id}"
    [cancelled] = _deliveries(ctx, draft_id)
    assert cancelled.state == "cancelled"
    assert _actions(ctx, d.id) == [
        ("kai", "schedule"),
        ("kai", "move"),
        ("kai", "move"),
        ("kai", "cancel"),
    ]
    page = client.get(f"/drafts/{draft_id}").text
    assert "Cancelled" in row(page, f"delivery-{d.id}")
    assert 'id="schedule-next"' in page  # it can be scheduled again
    # A cancelled delivery cannot be moved: a friendly conflict page.
    r = post(client, f"/deliveries/{d.id}/move", {"mode": "next"})
    assert r.status_code == 409 and "cannot be moved" in r.text and "Traceback" not in r.text
    assert "from today on" in client.get("/schedule").text  # nothing upcoming


def test_only_approved_drafts_and_real_times_can_be_scheduled(ctx):
    client = client_for(ctx)
    pending = add_draft(ctx, state="pending_review")
    page = client.get(f"/drafts/{pending}").text
    assert "Only approved drafts can be scheduled." in page and 'id="schedule-next"' not in page
    r = post(client, f"/drafts/{pending}/schedule", {"mode": "next"})
    assert r.status_code == 409
    assert "only approved drafts can be scheduled" in r.text and "Traceback" not in r.text
    assert _deliveries(ctx, pending) == []

    approved = add_draft(ctx)
    bad = [
        {"mode": "at", "when": ""},
        {"mode": "at", "when": "2030-13-01T09:00"},
        {"mode": "at", "when": "2020-01-06T09:00"},  # the past
        {"mode": "at", "when": "2030-03-10T02:30"},  # inside the spring-forward gap
        {"mode": "at", "when": "2030-03-11T09:00", "tz": "Mars/Olympus"},
        {},
    ]
    for data in bad:
        r = post(client, f"/drafts/{approved}/schedule", data)
        assert r.status_code == 400, data
        assert "Traceback" not in r.text
    assert _deliveries(ctx, approved) == []
    # No consent for the channel: refused with the reason (issue 7).
    no_consent = add_draft(ctx, narrative_id=None, channel="bluesky", state="approved")
    set_consent(
        ctx,
        get_draft(ctx, no_consent).narrative_id,
        given_by="the narrator",
        method="form",
        channels=["rss"],
        actor="test",
    )
    r = post(client, f"/drafts/{no_consent}/schedule", {"mode": "next"})
    assert r.status_code == 403 and "does not cover bluesky" in r.text


def test_failed_and_missed_deliveries_are_flagged_for_editors(ctx):
    client = client_for(ctx)
    # A permanent error: the enclosure the item points at is not in the workspace.
    broken = add_draft(ctx, content=rss_content("Broken", enclosure="media/gone.mp4"))
    late = add_draft(ctx, content=rss_content("Late"))
    d1 = scheduling.schedule(ctx, broken, at=BEFORE_DST, actor="kai")
    d2 = scheduling.schedule(ctx, late, at=AFTER_DST, actor="kai")
    publishers = default_publishers(ctx)
    out = publish_delivery(ctx, d1.id, publishers, now=d1.scheduled_at + timedelta(minutes=1))
    assert out.status == "failed"
    out = publish_delivery(ctx, d2.id, publishers, now=d2.scheduled_at + timedelta(hours=13))
    assert out.status == "missed"

    page = client.get("/schedule?campaign=emotional-equity").text
    assert 'id="attention"' in page and "Needs an editor" in page
    failed = row(page, f"attention-{d1.id}")
    assert "Failed" in failed and "stopped" in failed
    assert "enclosure file media/gone.mp4 does not exist" in failed
    missed = row(page, f"attention-{d2.id}")
    assert "Missed" in missed and "missed: due" in missed

    # The permanent error's reason is on the draft (issue 6), with its attempt.
    page = client.get(f"/drafts/{broken}").text
    assert "Publishing stopped" in page and "media/gone.mp4 does not exist" in page
    assert "permanent error: the item&#39;s enclosure file" in page
    assert f'action="/deliveries/{d1.id}/move"' in page  # a failed delivery can be moved
    page = client.get(f"/drafts/{late}").text
    assert "Missed its time" in page and 'id="schedule-next"' in page

    # Rescheduling the missed draft takes it off the editors' list.
    post(client, f"/drafts/{late}/schedule", {"mode": "next"})
    page = client.get("/schedule?campaign=emotional-equity").text
    assert f'id="attention-{d2.id}"' not in page and f'id="attention-{d1.id}"' in page
    # Moving the failed one schedules it afresh.
    post(client, f"/deliveries/{d1.id}/move", {"mode": "next"})
    page = client.get("/schedule").text
    assert 'id="attention"' not in page


NEW_POSTS = ["/drafts/{d}/schedule", "/deliveries/{v}/cancel", "/deliveries/{v}/move"]


@pytest.mark.parametrize("token", [None, "", "forged"])
def test_new_schedule_forms_check_csrf(ctx, token):
    client = client_for(ctx)
    draft_id = add_draft(ctx)
    other = add_draft(ctx)
    v = scheduling.schedule(ctx, other, at=AFTER_DST, actor="kai").id
    data = {"mode": "next"} if token is None else {"mode": "next", "csrf": token}
    for path in NEW_POSTS:
        r = client.post(path.format(d=draft_id, v=v), data=data)
        assert r.status_code == 403, path
        assert "security token" in r.text
    assert _deliveries(ctx, draft_id) == []
    [d] = _deliveries(ctx, other)
    assert d.state == "scheduled" and d.scheduled_at == datetime(2030, 3, 11, 16, tzinfo=UTC)


def test_new_schedule_routes_need_a_login(ctx):
    client = client_for(ctx, user=None)
    draft_id = add_draft(ctx)
    v = scheduling.schedule(ctx, add_draft(ctx), at=AFTER_DST, actor="kai").id
    for path in ("/schedule", "/schedule?campaign=emotional-equity"):
        r = client.get(path)
        assert r.status_code == 303 and r.headers["location"].startswith("/login?next=")
    token = csrf(client)  # a valid token of a session without a login
    for path in NEW_POSTS:
        r = client.post(path.format(d=draft_id, v=v), data={"mode": "next", "csrf": token})
        assert r.status_code == 401, path
    assert _deliveries(ctx, draft_id) == []
    with ctx.db.connect() as conn:
        assert delivery_queries.get_delivery(conn, v).state == "scheduled"
