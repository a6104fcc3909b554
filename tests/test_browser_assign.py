"""One-click campaign assignment in a real Chromium (Debian's) against uvicorn: an editor
follows the queue's note to the unassigned stories, assigns one, sees it leave the list and
its drafts appear."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from narratives.policy import campaign_assignments
from narratives.workflow import review
from tests.assign_fixtures import EQUITY, add_unassigned, without_render
from tests.review_fixtures import PASSWORD, add_user


@pytest.fixture
def ctx(workspace):
    return without_render(workspace)


@pytest.mark.browser
def test_one_click_assign_moves_the_story_into_the_queue(ctx, server, browser, test_output):
    add_user(ctx, "kai")
    nid = add_unassigned(ctx, title="The night bus to the sea", label="night-bus.wav")
    other = add_unassigned(ctx, "lost-2", title="A choir in the car park", label="choir.mp3")

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{server}/login")
    page.fill("#name", "kai")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{server}/")

    note = page.locator("#unassigned-note")
    expect(note).to_contain_text("2 stories fit no campaign.")
    note.locator("a").click()
    expect(page).to_have_url(f"{server}/unassigned")
    expect(page.locator("#unassigned-count")).to_have_text("2")
    story = page.locator(f"#story-{nid[:12]}")
    expect(story).to_contain_text("night-bus.wav")
    expect(story).to_contain_text("sleep-inequality 0.41")
    page.screenshot(path=str(test_output / "unassigned.png"), full_page=True)

    story.get_by_role("button", name="Assign to Emotional Equity").click()
    expect(page).to_have_url(f"{server}/unassigned")
    expect(page.locator(".flash")).to_contain_text(
        "“The night bus to the sea” is assigned to Emotional Equity."
    )
    expect(page.locator(f"#story-{nid[:12]}")).to_have_count(0)
    expect(page.locator(f"#story-{other[:12]}")).to_be_visible()
    expect(page.locator("#unassigned-count")).to_have_text("1")
    # Made in the background: the page reloads itself until the drafts are ready.
    job = page.locator("#jobs li").first
    expect(job).to_contain_text("Ready", timeout=30_000)
    expect(job.locator("a")).to_have_count(2)
    assert campaign_assignments.history(ctx, nid)[-1].source == "web"

    job.locator("a").first.click()
    expect(page.locator("#campaigns")).to_contain_text("assigned by kai")
    expect(page.locator(f"#campaign-{EQUITY} .why")).to_have_text("assigned by kai")
    page.locator("#campaigns").screenshot(path=str(test_output / "draft-campaigns.png"))
    page.click("header nav >> text=Queue")
    expect(page.locator("table.queue")).to_contain_text("The night bus to the sea")
    expect(page.locator("#unassigned-note")).to_contain_text("1 story fits no campaign.")
    page.screenshot(path=str(test_output / "queue-after-assign.png"), full_page=True)
    drafts = [d for d in review.list_drafts(ctx) if d.narrative_id == nid]
    assert {d.campaign for d in drafts} == {EQUITY} and len(drafts) == 2
    assert errors == []
