"""The review page in a real Chromium (Debian's, never a downloaded one) against uvicorn."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from narratives.stages.draft import stage as drafting
from narratives.workflow import review
from tests.review_fixtures import PASSWORD, add_narrative, add_render, add_user


@pytest.mark.browser
def test_edit_past_the_limit_fix_save_approve(ctx, server, browser, test_output):
    add_user(ctx, "kai")
    nid = add_narrative(ctx)
    add_render(ctx, nid, "emotional-equity")
    ids = {review.get_draft(ctx, i).channel: i for i in drafting.run(ctx, nid)}
    draft_id = ids["bluesky"]

    page = browser.new_page(viewport={"width": 1360, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on(
        "console",
        lambda m: errors.append(m.text) if m.type == "error" and "media" not in m.text else None,
    )

    page.goto(f"{server}/drafts/{draft_id}")
    expect(page).to_have_url(f"{server}/login?next=%2Fdrafts%2F{draft_id}")
    page.fill("#name", "kai")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{server}/drafts/{draft_id}")
    expect(page.locator("#state")).to_have_text("Pending review")

    text = page.locator("#text")
    warning = page.locator("#text-warning")
    expect(warning).to_be_hidden()
    # Past 300 graphemes in the second post: the live counter warns at once.
    first = "A short opening post about two lines at the dream clinic."
    text.fill(f"{first}\n---\n" + "Rest is not a luxury. " * 15)
    expect(warning).to_be_visible()
    expect(page.locator("#text-count")).to_contain_text("Post 2: 329 / 300")
    expect(page.locator("#text-count")).to_have_class("counter warn")
    # Emoji families count as one each, as Bluesky counts them.
    text.fill("👨\u200d👩\u200d👧\u200d👦" * 300)
    expect(page.locator("#text-count")).to_have_text("Post 1: 300 / 300")
    expect(warning).to_be_hidden()
    # Fix it: split into a thread.
    text.fill(f"{first}\n---\nRest is not a luxury. Everyone deserves to dream.")
    expect(warning).to_be_hidden()
    page.click("#save")
    expect(page.locator(".flash")).to_contain_text("Saved")
    expect(page.locator(".post-text")).to_have_count(2)

    page.click("#approve")
    expect(page.locator(".flash")).to_contain_text("Approved")
    expect(page.locator("#state")).to_have_text("Approved")
    audit = page.locator("#audit")
    expect(audit).to_contain_text("approved")
    expect(audit.locator("tbody tr").first).to_contain_text("kai")
    expect(audit).to_contain_text("Pending review → Approved")
    expect(audit).to_contain_text("edited")

    page.screenshot(path=str(test_output / "draft-page.png"), full_page=True)
    assert (test_output / "draft-page.png").stat().st_size > 10_000
    assert errors == []

    d = review.get_draft(ctx, draft_id)
    assert d.state == "approved"
    assert d.posts == [first, "Rest is not a luxury. Everyone deserves to dream."]


@pytest.mark.browser
def test_transcript_timestamp_seeks_the_player(ctx, server, browser):
    add_user(ctx, "kai")
    nid = add_narrative(ctx)
    ids = drafting.run(ctx, nid)
    page = browser.new_page()
    page.goto(f"{server}/login")
    page.fill("#name", "kai")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{server}/drafts/{ids[0]}")
    # No video or recording here: the transcript still links its timestamps.
    link = page.locator("a.ts").nth(2)
    expect(link).to_have_attribute("href", "#t=8.0")
    expect(page.locator("#transcript mark.quote")).to_have_count(1)
