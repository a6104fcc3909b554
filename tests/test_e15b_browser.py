"""Every page at phone size (issue 15, item 4), in a real Chromium (Debian's) against uvicorn:
at 390x844 no page is wider than the screen, and on a draft the decision comes first."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect

from narratives.core.clock import utcnow
from narratives.stages.draft import stage as drafting
from narratives.workflow import review, scheduling
from tests.assign_fixtures import add_unassigned
from tests.review_fixtures import (
    PASSWORD,
    add_narrative,
    add_render,
    add_user,
    analysis_for,
)

PHONE = {"width": 390, "height": 844}

#: A long unbroken word and long titles: what pushes a narrow page wide.
LONG_TITLE = "A remarkably long title about the two lines at the Dreamscape sleep clinic at night"


def _width(page) -> int:
    return page.evaluate("document.documentElement.scrollWidth")


def _story(ctx):
    nid = add_narrative(ctx, analysis=analysis_for(title=LONG_TITLE))
    add_render(ctx, nid, "emotional-equity")
    ids = {review.get_draft(ctx, i).channel: i for i in drafting.run(ctx, nid)}
    return nid, ids


@pytest.mark.browser
def test_every_page_fits_a_phone(ctx, server, browser, test_output):
    add_user(ctx, "kai")
    nid, ids = _story(ctx)
    # A second story with a scheduled post (the agenda) and one that fits no campaign.
    nid2 = add_narrative(ctx, "story-2")
    add_render(ctx, nid2, "emotional-equity")
    ids2 = {review.get_draft(ctx, i).channel: i for i in drafting.run(ctx, nid2)}
    review.approve(ctx, ids2["rss"], actor="kai")
    soon = utcnow() + timedelta(days=30)
    scheduling.schedule(ctx, ids2["rss"], at=soon.strftime("%Y-%m-%d 09:00"), actor="kai")
    review.approve(ctx, ids2["bluesky"], actor="kai")
    later = soon + timedelta(days=1)
    scheduling.schedule(ctx, ids2["bluesky"], at=later.strftime("%Y-%m-%d 09:00"), actor="kai")
    add_unassigned(ctx, title=LONG_TITLE + " and the sea")

    page = browser.new_page(viewport=PHONE)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    widths: dict[str, int] = {}

    page.goto(f"{server}/login")
    widths["login"] = _width(page)
    page.fill("#name", "kai")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{server}/")

    pages = {
        "queue": "/",
        "draft bluesky": f"/drafts/{ids['bluesky']}",
        "draft rss": f"/drafts/{ids['rss']}",
        "unassigned": "/unassigned",
        "schedule": "/schedule",
        "transcript": f"/narratives/{nid}/transcript",
        "error": "/drafts/999999",
    }
    for name, path in pages.items():
        page.goto(f"{server}{path}")
        widths[name] = _width(page)
        page.screenshot(
            path=str(test_output / f"e15b-phone-{name.replace(' ', '-')}.png"), full_page=True
        )

    # On a phone the decision comes before the preview.
    for channel in ("bluesky", "rss"):
        page.goto(f"{server}/drafts/{ids[channel]}")
        decision = page.locator("section.actions").bounding_box()
        preview = page.locator("section.card", has_text="Preview").first.bounding_box()
        assert decision["y"] < preview["y"], channel
        approve = page.locator("#approve").bounding_box()
        assert approve["x"] >= 0 and approve["x"] + approve["width"] <= PHONE["width"], channel

    # The withdrawn page: what an editor sees after withdrawing consent.
    page.goto(f"{server}/drafts/{ids['rss']}")
    page.evaluate(
        "() => { const f = document.getElementById('withdraw-form');"
        " f.querySelector('[name=confirm]').checked = true;"
        " f.querySelector('[name=reason]').value = 'The narrator asked';"
        " f.submit(); }"
    )
    expect(page.locator("h1")).to_have_text("Consent withdrawn")
    widths["withdrawn"] = _width(page)

    (test_output / "e15b-phone-widths.json").write_text(json.dumps(widths, indent=1))
    print("scrollWidth at 390 px:", widths)
    assert set(widths) == {*pages, "login", "withdrawn"}
    assert {k: v for k, v in widths.items() if v > PHONE["width"]} == {}
    assert errors == []


@pytest.mark.browser
def test_the_queue_searches_pages_and_bulk_approves_in_a_phone(ctx, server, browser):
    add_user(ctx, "kai")
    _, ids = _story(ctx)
    page = browser.new_page(viewport=PHONE)
    page.goto(f"{server}/login")
    page.fill("#name", "kai")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{server}/")
    page.fill("#search", "dreamscape")
    page.locator("form.filters button").click()
    expect(page).to_have_url(re.compile(r"q=dreamscape"))
    expect(page.locator("#total")).to_have_text("2")
    page.check("#select-all")
    expect(page.locator("#queue-rows input[name=ids]:checked")).to_have_count(2)
    page.click("#bulk-approve")
    expect(page.locator("#bulk-results li")).to_have_count(2)
    expect(page.locator("#bulk-results")).to_contain_text("approved")
    assert {review.get_draft(ctx, i).state for i in ids.values()} == {"approved"}
    assert _width(page) <= PHONE["width"]


@pytest.mark.browser
def test_correct_a_word_on_the_transcript_page(ctx, server, browser, monkeypatch):
    """From the draft's link to the transcript page: fix a word, save, see it stored and
    audited; the outputs are remade off the request (the stages themselves are slow-tier)."""
    from narratives.store.narrative_files import read_transcript
    from narratives.workflow import corrections

    remade: list[str] = []

    def fake_rederive(ctx_, narrative_id, *, actor, progress=None):
        remade.append(actor)
        return corrections.Rederived(analysed=True)

    monkeypatch.setattr(corrections, "rederive", fake_rederive)
    add_user(ctx, "kai")
    nid, ids = _story(ctx)
    page = browser.new_page(viewport=PHONE)
    page.goto(f"{server}/login")
    page.fill("#name", "kai")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{server}/drafts/{ids['rss']}")
    page.click("#correct-transcript")
    expect(page).to_have_url(f"{server}/narratives/{nid}/transcript")
    box = page.locator("#transcript-text")
    box.fill(box.input_value().replace("dream clinic", "Dreamscape clinic"))
    page.click("#save-transcript")
    expect(page.locator(".flash")).to_contain_text("Correction saved (1 word changed)")
    expect(page.locator("#corrected")).to_be_visible()
    expect(page.locator("#corrections")).to_contain_text("corrected")
    page.locator("#corrections summary").first.click()
    expect(page.locator("#corrections pre").first).to_contain_text(
        "+There were two lines at the Dreamscape clinic"
    )
    assert "Dreamscape clinic" in read_transcript(ctx.workspace, nid).text
    for _ in range(50):  # the remake runs on the server's worker thread
        page.reload()
        if page.locator("#remake").get_attribute("data-state") == "done":
            break
        page.wait_for_timeout(100)
    expect(page.locator("#remake")).to_have_attribute("data-state", "done")
    assert remade == ["kai"]
    assert _width(page) <= PHONE["width"]
