"""The decision panel in a real Chromium (Debian's) against uvicorn: consent beside Approve,
buttons off with the reason, two editors in two browsers, and a withdrawal."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from narratives.stages.draft import stage as drafting
from narratives.workflow import review, takedown
from tests.review_fixtures import PASSWORD, add_narrative, add_user

pytestmark = pytest.mark.browser


def _login(browser, server: str, name: str, draft_id: int, *, clock: bool = False):
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    if clock:
        page.clock.install()  # the page's timers run when the test says
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{server}/drafts/{draft_id}")
    page.fill("#name", name)
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{server}/drafts/{draft_id}")
    return page, errors


def test_approve_waits_for_consent_and_says_why(ctx, server, browser):
    add_user(ctx, "kai")
    nid = add_narrative(ctx, consent=False)
    ids = {review.get_draft(ctx, i).channel: i for i in drafting.run(ctx, nid)}
    page, errors = _login(browser, server, "kai", ids["bluesky"])

    panel = page.locator("#decision")
    expect(panel.locator("#decision-consent")).to_contain_text("Consent: missing")
    expect(page.locator("#approve")).to_be_disabled()
    expect(page.locator("#approve-why")).to_contain_text("No consent is recorded")
    # The consent panel's state sits in the same card as Approve: no scrolling to find it.
    approve_box = page.locator("#approve").bounding_box()
    consent_box = page.locator("#decision-consent").bounding_box()
    assert abs(approve_box["y"] - consent_box["y"]) < 200

    # Consent for RSS only: still off for the Bluesky draft, with that reason.
    takedown.set_consent(ctx, nid, given_by="Amara", method="form", channels=["rss"], actor="kai")
    page.reload()
    expect(page.locator("#decision-consent")).to_contain_text("does not cover Bluesky")
    expect(page.locator("#approve")).to_be_disabled()

    add_user(ctx, "root", role="admin")  # adding a channel to a consent: admins only
    takedown.set_consent(
        ctx, nid, given_by="Amara", method="form", channels=["rss", "bluesky"], actor="root"
    )
    page.reload()
    expect(page.locator("#decision-consent")).to_contain_text("Consent: given")
    expect(page.locator("#approve")).to_be_enabled()
    page.click("#approve")
    expect(page.locator(".flash")).to_contain_text("Approved")
    expect(page.locator("#schedule-next")).to_be_enabled()

    # A withdrawal: the page says so where the state was, and Schedule is off with why.
    takedown.withdraw(ctx, nid, actor="kai", reason="the narrator asked")
    page.reload()
    expect(page.locator("#state")).to_have_text("Consent withdrawn")
    expect(page.locator("#schedule-next")).to_be_disabled()
    expect(page.locator("#schedule-at")).to_be_disabled()
    expect(page.locator("#schedule-why")).to_contain_text("was withdrawn")
    page.goto(f"{server}/")
    expect(page.locator("table")).to_contain_text("Consent withdrawn")
    assert errors == []


def test_two_editors_in_two_browsers(ctx, server, browser):
    add_user(ctx, "ann")
    add_user(ctx, "bob")
    nid = add_narrative(ctx)
    ids = {review.get_draft(ctx, i).channel: i for i in drafting.run(ctx, nid)}
    did = ids["bluesky"]
    ann, ann_errors = _login(browser, server, "ann", did, clock=True)
    expect(ann.locator("#viewers")).to_have_count(0)
    bob, bob_errors = _login(browser, server, "bob", did)
    # Bob sees that Ann has it open; Ann's open page learns of Bob within 30 s, no reload.
    expect(bob.locator("#viewers")).to_contain_text("ann")
    ann.clock.run_for(31_000)
    expect(ann.locator("#viewers")).to_contain_text("bob")

    # Both change the text from the same version; Ann saves first.
    ann.fill("#text", "Ann's opening for the thread.")
    bob.fill("#text", "Bob's opening for the thread.")
    ann.click("#save")
    expect(ann.locator(".flash")).to_contain_text("Saved")
    bob.click("#save")
    expect(bob.locator("#refusal")).to_contain_text("(edited by ann)")
    expect(bob.locator("#refusal")).to_contain_text("it was not saved")
    expect(bob.locator("#unsaved")).to_contain_text("Bob's opening for the thread.")
    expect(bob.locator(".post-text").first).to_have_text("Ann's opening for the thread.")
    assert review.get_draft(ctx, did).posts == ["Ann's opening for the thread."]

    # Bob's page now holds the current version: he can approve what he sees.
    bob.click("#approve")
    expect(bob.locator(".flash")).to_contain_text("Approved")
    # Ann's page predates the approval, but approving kept the text she read: her edit
    # applies (nothing of anyone's is lost) and sends the draft back to review.
    ann.fill("#text", "Ann's second thought.")
    ann.click("#save")
    expect(ann.locator(".flash")).to_contain_text("It is back in review")
    d = review.get_draft(ctx, did)
    assert d.state == "pending_review" and d.posts == ["Ann's second thought."]
    assert ann_errors == [] and bob_errors == []
