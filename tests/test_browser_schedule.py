"""Scheduling from the review page in a real Chromium (Debian's) against uvicorn: schedule an
approved draft in the next slot, then find it on the campaign's agenda."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from narratives.core.campaigns import get_campaign
from narratives.stages.draft import stage as drafting
from narratives.store import delivery_queries
from narratives.workflow import review, scheduling
from tests.review_fixtures import PASSWORD, add_narrative, add_render, add_user


@pytest.mark.browser
def test_schedule_in_the_next_slot_and_see_it_on_the_agenda(ctx, server, browser, test_output):
    add_user(ctx, "kai")
    nid = add_narrative(ctx)
    add_render(ctx, nid, "emotional-equity")
    ids = {review.get_draft(ctx, i).channel: i for i in drafting.run(ctx, nid)}
    draft_id = ids["bluesky"]
    review.approve(ctx, draft_id, actor="kai")
    # Something already on the agenda, so the page shows more than one day.
    review.approve(ctx, ids["rss"], actor="kai")
    scheduling.schedule(ctx, ids["rss"], at="2030-03-11 09:00", actor="kai")

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "console",
        lambda m: errors.append(m.text) if m.type == "error" and "media" not in m.text else None,
    )
    page.goto(f"{server}/login")
    page.fill("#name", "kai")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{server}/drafts/{draft_id}")

    button = page.locator("#schedule-next")
    expect(button).to_be_enabled()
    label = button.inner_text().split(": ", 1)[1]  # e.g. "Mon 30 Nov 2026, 09:00 PST"
    button.click()
    expect(page.locator(".flash")).to_have_text(f"Scheduled for {label}.")
    with ctx.db.connect() as conn:
        [d] = delivery_queries.list_deliveries(conn, draft_id=draft_id)
    assert d.state == "scheduled"
    delivery = page.locator(f"#delivery-{d.id}")
    expect(delivery).to_contain_text("Scheduled")
    expect(page.locator("#schedule-next")).to_have_count(0)

    page.click("header nav >> text=Schedule")
    expect(page).to_have_url(f"{server}/schedule")
    page.select_option("select[name=campaign]", "emotional-equity")
    page.click("form.filters button")
    expect(page).to_have_url(f"{server}/schedule?campaign=emotional-equity&show=upcoming&view=list")
    zone = get_campaign(ctx.workspace, "emotional-equity").slots.zone
    local = d.scheduled_at.astimezone(zone)
    row = page.locator(f"#delivery-{d.id}")
    expect(row).to_contain_text(f"{local:%H:%M} {local.tzname()}")
    expect(row).to_contain_text("Two lines at the dream clinic")
    expect(row).to_contain_text("Bluesky")
    day = page.locator("section.day", has=row).locator(".day-head")
    expect(day).to_have_text(f"{local:%A %-d %B %Y}")
    expect(page.locator(".day-head")).to_have_count(2)

    path = test_output / "agenda.png"
    page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000
    row.locator("a").click()
    expect(page).to_have_url(f"{server}/drafts/{draft_id}")
    page.screenshot(path=str(test_output / "draft-schedule.png"), full_page=True)
    assert errors == []
