"""Scheduling: slots in the campaign's zone across DST changes, fill, cancel/move, refusals."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from itertools import islice

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from narratives.cli import cli
from narratives.core.campaigns import get_campaign
from narratives.core.errors import InvalidState, UsageError
from narratives.store import audit
from narratives.store.delivery_queries import list_deliveries
from narratives.store.schema import deliveries, delivery_attempts
from narratives.workflow import scheduling
from tests.delivery_fixtures import add_draft, bluesky_content

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
TID = re.compile(r"^[234567abcdefghij][234567abcdefghijklmnopqrstuvwxyz]{12}$")


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def make_campaign(ws, slug: str, timezone: str, weekly: list[str]) -> None:
    """A copy of emotional-equity with other slots."""
    text = (ws.campaigns_dir / "emotional-equity.toml").read_text()
    text = text.replace('slug = "emotional-equity"', f'slug = "{slug}"')
    text = re.sub(
        r"\[slots\].*?(?=\n\[)",
        f'[slots]\ntimezone = "{timezone}"\nweekly = {json.dumps(weekly)}\n'
        "missed_after_hours = 12\n",
        text,
        flags=re.S,
    )
    (ws.campaigns_dir / f"{slug}.toml").write_text(text)


def slots(ws, slug, after, n):
    return list(islice(scheduling.slot_times(get_campaign(ws, slug), after), n))


# --- slots and daylight saving ---------------------------------------------------------------


def test_los_angeles_slots_keep_wall_clock_across_fall_back(workspace):
    got = slots(workspace, "emotional-equity", utc(2026, 10, 28, 0, 0), 6)
    # wed 18:30, fri 12:00, mon 09:00 in PDT (UTC-7), then the same in PST (UTC-8) after Nov 1.
    assert got == [
        utc(2026, 10, 29, 1, 30),
        utc(2026, 10, 30, 19, 0),
        utc(2026, 11, 2, 17, 0),
        utc(2026, 11, 5, 2, 30),
        utc(2026, 11, 6, 20, 0),
        utc(2026, 11, 9, 17, 0),
    ]
    zone = get_campaign(workspace, "emotional-equity").slots.zone
    assert {t.astimezone(zone).strftime("%H:%M") for t in got} == {"18:30", "12:00", "09:00"}


def test_los_angeles_slots_across_spring_forward(workspace):
    got = slots(workspace, "emotional-equity", utc(2026, 3, 6, 0, 0), 2)
    assert got == [utc(2026, 3, 6, 20, 0), utc(2026, 3, 9, 16, 0)]  # PST fri, PDT mon


def test_lisbon_slots_across_both_changes(workspace):
    spring = slots(workspace, "neural-mandate", utc(2026, 3, 28, 0, 0), 4)
    # sat 11:00 WET (UTC+0); tue 19:00 and thu 19:00 WEST (UTC+1); sat 11:00 WEST.
    assert spring == [
        utc(2026, 3, 28, 11, 0),
        utc(2026, 3, 31, 18, 0),
        utc(2026, 4, 2, 18, 0),
        utc(2026, 4, 4, 10, 0),
    ]
    autumn = slots(workspace, "neural-mandate", utc(2026, 10, 24, 0, 0), 2)
    assert autumn == [utc(2026, 10, 24, 10, 0), utc(2026, 10, 27, 19, 0)]


def test_slot_in_spring_gap_moves_forward_by_the_gap(workspace):
    make_campaign(workspace, "gap-la", "America/Los_Angeles", ["sun 02:30"])
    make_campaign(workspace, "gap-lisbon", "Europe/Lisbon", ["sun 01:30"])
    la = slots(workspace, "gap-la", utc(2026, 3, 7, 0, 0), 2)
    # 02:30 does not exist on 8 March: it becomes 03:30 PDT; a week later 02:30 PDT.
    assert la == [utc(2026, 3, 8, 10, 30), utc(2026, 3, 15, 9, 30)]
    lisbon = slots(workspace, "gap-lisbon", utc(2026, 3, 28, 0, 0), 1)
    assert lisbon == [utc(2026, 3, 29, 1, 30)]  # = 02:30 WEST


def test_slot_in_autumn_overlap_takes_the_first_occurrence(workspace):
    make_campaign(workspace, "fold-la", "America/Los_Angeles", ["sun 01:30"])
    make_campaign(workspace, "fold-lisbon", "Europe/Lisbon", ["sun 01:30"])
    assert slots(workspace, "fold-la", utc(2026, 10, 31, 0, 0), 2) == [
        utc(2026, 11, 1, 8, 30),  # 01:30 PDT, the earlier of the two 01:30s
        utc(2026, 11, 8, 9, 30),
    ]
    assert slots(workspace, "fold-lisbon", utc(2026, 10, 24, 0, 0), 1) == [
        utc(2026, 10, 25, 0, 30)  # 01:30 WEST
    ]


def test_explicit_time_in_gap_is_refused_and_in_overlap_is_first(ctx):
    draft = add_draft(ctx)
    before = datetime(2026, 2, 1, tzinfo=UTC)
    with pytest.raises(UsageError, match="does not exist"):
        scheduling.schedule(
            ctx, draft, at="2026-03-08 02:30", tz="America/Los_Angeles", actor="kai", now=before
        )
    d = scheduling.schedule(
        ctx, draft, at="2026-11-01 01:30", tz="America/Los_Angeles", actor="kai", now=before
    )
    assert d.scheduled_at == utc(2026, 11, 1, 8, 30)


# --- schedule -------------------------------------------------------------------------------


def test_schedule_at_uses_campaign_zone_by_default_and_stores_utc(ctx):
    lisbon = add_draft(ctx, "neural-mandate")
    d = scheduling.schedule(ctx, lisbon, at="2026-12-01 18:30", actor="fayez", now=NOW)
    assert d.scheduled_at == utc(2026, 12, 1, 18, 30)  # WET = UTC in December
    la = add_draft(ctx, "neural-mandate")
    d2 = scheduling.schedule(
        ctx, la, at="2026-12-01 18:30", tz="America/Los_Angeles", actor="fayez", now=NOW
    )
    assert d2.scheduled_at == utc(2026, 12, 2, 2, 30)
    with ctx.db.connect() as conn:
        raw = conn.exec_driver_sql(
            "SELECT scheduled_at FROM deliveries WHERE id = ?", (d2.id,)
        ).scalar()
    assert str(raw).startswith("2026-12-02 02:30")
    assert d.state == d2.state == "scheduled"


def test_next_slot_takes_free_slots_per_channel(ctx):
    a, b = add_draft(ctx, "neural-mandate"), add_draft(ctx, "neural-mandate")
    sky = add_draft(ctx, "neural-mandate", "bluesky")
    first = scheduling.schedule(ctx, a, next_slot=True, actor="fayez", now=NOW)
    second = scheduling.schedule(ctx, b, next_slot=True, actor="fayez", now=NOW)
    third = scheduling.schedule(ctx, sky, next_slot=True, actor="fayez", now=NOW)
    # 2026-11-20 is a Friday: next slots are sat 11:00 and tue 19:00 (WET = UTC).
    assert first.scheduled_at == utc(2026, 11, 21, 11, 0)
    assert second.scheduled_at == utc(2026, 11, 24, 19, 0)
    assert third.scheduled_at == first.scheduled_at  # another channel, same slot


def test_time_in_the_past_is_refused(ctx):
    draft = add_draft(ctx)
    with pytest.raises(UsageError, match="in the past"):
        scheduling.schedule(ctx, draft, at="2026-11-01 09:00", actor="kai", now=NOW)


@pytest.mark.parametrize("state", ["pending_review", "rejected", "changes_requested"])
def test_only_approved_drafts_can_be_scheduled(ctx, state):
    draft = add_draft(ctx, state=state)
    with pytest.raises(InvalidState, match=f"is {state}"):
        scheduling.schedule(ctx, draft, next_slot=True, actor="kai", now=NOW)
    with ctx.db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(deliveries)).scalar() == 0


def test_a_draft_is_scheduled_once(ctx):
    draft = add_draft(ctx)
    d = scheduling.schedule(ctx, draft, next_slot=True, actor="kai", now=NOW)
    with pytest.raises(InvalidState, match=f"already has delivery {d.id}"):
        scheduling.schedule(ctx, draft, next_slot=True, actor="kai", now=NOW)


def test_bluesky_delivery_gets_one_record_key_per_thread_post(ctx):
    draft = add_draft(
        ctx, "emotional-equity", "bluesky", content=bluesky_content("one", "two", "three")
    )
    d = scheduling.schedule(ctx, draft, next_slot=True, actor="kai", now=NOW)
    keys = [p["rkey"] for p in d.posts]
    assert len(keys) == 3 and len(set(keys)) == 3
    assert all(TID.match(k) for k in keys) and keys == sorted(keys)
    assert d.rkey == keys[0]
    assert all(p["uri"] is None for p in d.posts)
    moved = scheduling.move(ctx, d.id, at="2026-12-24 09:00", actor="kai", now=NOW)
    assert moved.posts == d.posts and moved.rkey == d.rkey  # keys are fixed once


def test_rss_delivery_has_no_record_key(ctx):
    d = scheduling.schedule(ctx, add_draft(ctx), next_slot=True, actor="kai", now=NOW)
    assert d.rkey is None and d.posts is None


# --- fill, cancel, move ---------------------------------------------------------------------


def test_fill_queues_approved_unscheduled_drafts_into_free_slots(ctx):
    approved = [add_draft(ctx, "neural-mandate") for _ in range(3)]
    pending = add_draft(ctx, "neural-mandate", state="pending_review")
    other_campaign = add_draft(ctx, "emotional-equity")
    taken = scheduling.schedule(ctx, approved[0], next_slot=True, actor="fayez", now=NOW)

    result = scheduling.fill(ctx, "neural-mandate", actor="fayez", now=NOW)
    filled = result.deliveries
    assert result.skipped == []
    assert sorted(d.draft_id for d in filled) == approved[1:]
    assert [d.scheduled_at for d in filled] == [utc(2026, 11, 24, 19, 0), utc(2026, 11, 26, 19, 0)]
    assert taken.scheduled_at == utc(2026, 11, 21, 11, 0)
    with ctx.db.connect() as conn:
        ids = {d.draft_id for d in list_deliveries(conn)}
    assert pending not in ids and other_campaign not in ids
    assert scheduling.fill(ctx, "neural-mandate", actor="fayez", now=NOW).deliveries == []


def test_cancel_frees_the_slot_and_is_audited(ctx):
    d = scheduling.schedule(ctx, add_draft(ctx), next_slot=True, actor="kai", now=NOW)
    cancelled = scheduling.cancel(ctx, d.id, actor="kai", reason="wrong week")
    assert cancelled.state == "cancelled"
    with pytest.raises(InvalidState, match="cannot be cancelled"):
        scheduling.cancel(ctx, d.id, actor="kai")
    again = scheduling.schedule(ctx, add_draft(ctx), next_slot=True, actor="kai", now=NOW)
    assert again.scheduled_at == d.scheduled_at
    with ctx.db.connect() as conn:
        rows = audit.history(conn, "delivery", d.id)
    assert [r["action"] for r in rows] == ["schedule", "cancel"]
    assert rows[1]["before"]["state"] == "scheduled" and rows[1]["after"]["state"] == "cancelled"
    assert rows[1]["detail"] == "wrong week" and rows[1]["actor"] == "kai"


def test_cancel_keeps_track_of_bluesky_posts_that_may_be_out(ctx):
    """F5: a failed Bluesky delivery with posts out cannot be cancelled (it would orphan them;
    `move` finishes the thread). One attempted without a recorded post can, and scheduling
    the draft again reuses its record keys, so a post that landed unrecorded is found, not
    posted twice."""
    draft = add_draft(ctx, "emotional-equity", "bluesky", content=bluesky_content("a", "b"))
    d = scheduling.schedule(ctx, draft, next_slot=True, actor="kai", now=NOW)
    out = [{**d.posts[0], "uri": f"at://did:plc:x/app.bsky.feed.post/{d.rkey}", "cid": "c"}]
    with ctx.db.begin() as conn:
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id == d.id)
            .values(state="failed", attempts=1, posts=out + d.posts[1:])
        )
        conn.execute(
            delivery_attempts.insert().values(
                delivery_id=d.id, at=NOW, outcome="transient_error", error="lost reply"
            )
        )
    with pytest.raises(InvalidState, match="on Bluesky already") as err:
        scheduling.cancel(ctx, d.id, actor="kai")
    assert "move" in (err.value.hint or "")

    with ctx.db.begin() as conn:
        conn.execute(deliveries.update().where(deliveries.c.id == d.id).values(posts=d.posts))
    # `move` resets the attempt counter (for backoff); the attempt on record still counts.
    moved = scheduling.move(ctx, d.id, next_slot=True, actor="kai", now=NOW)
    assert moved.attempts == 0
    assert scheduling.cancel(ctx, d.id, actor="kai").state == "cancelled"
    again = scheduling.schedule(ctx, draft, next_slot=True, actor="kai", now=NOW)
    assert again.id != d.id and [p["rkey"] for p in again.posts] == [p["rkey"] for p in d.posts]


def test_move_changes_time_and_refuses_published(ctx):
    d = scheduling.schedule(ctx, add_draft(ctx), next_slot=True, actor="kai", now=NOW)
    moved = scheduling.move(ctx, d.id, at="2026-12-02 18:30", actor="kai", now=NOW)
    assert moved.scheduled_at == utc(2026, 12, 3, 2, 30)
    nxt = scheduling.move(ctx, d.id, next_slot=True, actor="kai", now=NOW)
    assert nxt.scheduled_at == utc(2026, 11, 20, 20, 0)  # fri 12:00 PST, today
    with ctx.db.begin() as conn:
        conn.execute(deliveries.update().values(state="published"))
    with pytest.raises(InvalidState, match="cannot be moved"):
        scheduling.move(ctx, d.id, at="2026-12-09 18:30", actor="kai", now=NOW)
    with ctx.db.connect() as conn:
        actions = [r["action"] for r in audit.history(conn, "delivery", d.id)]
    assert actions == ["schedule", "move", "move"]


def test_unknown_draft_and_time_zone(ctx):
    from narratives.core.errors import NotFound

    with pytest.raises(NotFound):
        scheduling.schedule(ctx, 999, next_slot=True, actor="kai", now=NOW)
    with pytest.raises(UsageError, match="time zone"):
        scheduling.schedule(
            ctx, add_draft(ctx), at="2026-12-01 10:00", tz="Mars/Olympus", actor="kai", now=NOW
        )


# --- CLI ------------------------------------------------------------------------------------


def test_cli_short_forms_of_the_issue(ctx):
    a = add_draft(ctx, "neural-mandate")
    b = add_draft(ctx, "neural-mandate")
    runner = CliRunner()
    res = runner.invoke(
        cli,
        ["schedule", str(a), "--at", "2030-12-01 18:30", "--tz", "Europe/Lisbon", "--json"],
        env={"NARRATIVES_USER": "fayez"},
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["draft_id"] == a and out["scheduled_at"].startswith("2030-12-01T18:30")
    res = runner.invoke(
        cli, ["schedule", "--campaign", "neural-mandate", "--fill", "--json", "--as", "fayez"]
    )
    assert res.exit_code == 0, res.output
    assert [json.loads(line)["draft_id"] for line in res.output.splitlines()] == [b]
    res = runner.invoke(cli, ["schedule", "list", "--json"])
    assert len(res.output.splitlines()) == 2
    res = runner.invoke(cli, ["schedule", str(a), "--next-slot", "--as", "fayez"])
    assert res.exit_code == InvalidState.exit_code and "already has delivery" in res.output


def test_no_consent_for_the_channel_no_scheduling(ctx):
    from narratives.core.errors import ConsentError
    from tests.delivery_fixtures import add_narrative

    only_rss = add_narrative(ctx, consent=("rss",))
    sky = add_draft(ctx, "emotional-equity", "bluesky", narrative_id=only_rss)
    with pytest.raises(ConsentError):
        scheduling.schedule(ctx, sky, next_slot=True, actor="kai", now=NOW)
    rss = add_draft(ctx, "emotional-equity", "rss", narrative_id=only_rss)
    assert scheduling.schedule(ctx, rss, next_slot=True, actor="kai", now=NOW).state == "scheduled"


@pytest.mark.parametrize("text", ["2030-13-01 09:00", "2030-02-30 09:00", "2030-01-01 25:00"])
def test_impossible_times_are_usage_errors(text):
    from zoneinfo import ZoneInfo

    from narratives.core.errors import UsageError
    from narratives.workflow.scheduling import parse_when

    with pytest.raises(UsageError, match="cannot read the time"):
        parse_when(text, ZoneInfo("Europe/Lisbon"))
