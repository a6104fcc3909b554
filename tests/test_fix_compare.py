"""Revision compare: a draft's texts from its audit log, and the page that diffs two of them."""

from __future__ import annotations

import html

import pytest

from narratives.stages.draft import stage as drafting
from narratives.web.audit_words import revision_diff, revisions
from narratives.workflow import review
from tests import web_client
from tests.review_fixtures import PASSWORD, add_narrative, add_user


@pytest.fixture
def draft(ctx):
    """The Bluesky draft of one story, as the pipeline made it (one revision)."""
    add_user(ctx, "fay")
    nid = add_narrative(ctx)
    ids = {review.get_draft(ctx, i).channel: i for i in drafting.run(ctx, nid)}
    return ids["bluesky"]


def _edited_twice(ctx, draft_id):
    review.edit(ctx, draft_id, {"posts": ["Line one.\nLine two."]}, actor="fay")
    review.edit(ctx, draft_id, {"posts": ["Line one.\nLine 2, <script>x()</script>"]}, actor="fay")


def test_revisions_and_their_diff_from_the_audit(ctx, draft):
    first = review.get_draft(ctx, draft).posts
    _edited_twice(ctx, draft)
    review.approve(ctx, draft, actor="fay")  # no new text: no new revision
    revs = revisions(review.history(ctx, draft))
    assert [r.number for r in revs] == [1, 2, 3]
    assert [r.action for r in revs] == ["created the draft", "edited", "edited"]
    assert revs[1].actor == "fay" and revs[1].lines == ["Line one.", "Line two."]
    diff = revision_diff(revs[1], revs[2])
    assert ("", " Line one.") in diff
    assert ("del", "-Line two.") in diff
    assert ("add", "+Line 2, <script>x()</script>") in diff
    assert all(
        ("del", "-" + line) in revision_diff(revs[0], revs[2])
        for line in first[0].split("\n")
        if line
    )
    assert not any(kind for kind, _ in revision_diff(revs[2], revs[2]))


def test_compare_page_shows_removed_and_added_lines_escaped(ctx, draft):
    _edited_twice(ctx, draft)
    client = web_client.client_for(ctx)
    page = client.get(f"/drafts/{draft}").text
    assert f'href="/drafts/{draft}/compare"' in page and "Compare revisions" in page
    r = client.get(f"/drafts/{draft}/compare?a=2&b=3")
    assert r.status_code == 200
    diff = r.text.split('id="diff">')[1].split("</pre>")[0]
    assert '<span class="del">-Line two.</span>' in diff
    assert diff.startswith(' Line one.\n<span class="del">-Line two.</span>\n<span')
    assert '<span class="add">+Line 2, &lt;script&gt;x()&lt;/script&gt;</span>' in diff
    assert "<script>x()" not in r.text
    # Defaults: the first and the latest; both sides say who and when.
    r = client.get(f"/drafts/{draft}/compare")
    assert r.status_code == 200
    assert '<option value="1" selected>' in r.text and '<option value="3" selected>' in r.text
    sides = html.unescape(r.text.split('id="sides">')[1].split("</p>")[0])
    assert "Revision 1</span>: created the draft by" in sides
    assert "Revision 3</span>: edited by <strong>fay</strong>" in sides
    assert '<span class="del">-' in r.text and "+Line one." in r.text


@pytest.mark.parametrize("query", ["a=0", "a=99", "b=4", "a=x", "a=-1"])
def test_a_bad_revision_number_is_a_400_with_a_sentence(ctx, draft, query):
    _edited_twice(ctx, draft)
    client = web_client.client_for(ctx)
    r = client.get(f"/drafts/{draft}/compare?{query}")
    assert r.status_code == 400
    assert "pick a number from 1 to 3" in r.text


def test_one_revision_has_nothing_to_compare(ctx, draft):
    client = web_client.client_for(ctx)
    r = client.get(f"/drafts/{draft}/compare?a=5")
    assert r.status_code == 200
    assert 'id="nothing-to-compare"' in r.text and "nothing to compare" in r.text
    assert "<select" not in r.text


def test_compare_needs_a_login(ctx, draft):
    client = web_client.client_for(ctx, user=None)
    r = client.get(f"/drafts/{draft}/compare?a=1&b=1")
    assert r.status_code == 303
    assert r.headers["location"].startswith("/login?next=")
    assert client.get("/drafts/999999/compare").status_code == 303
    logged_in = web_client.client_for(ctx)
    assert logged_in.get("/drafts/999999/compare").status_code == 404


@pytest.mark.browser
def test_compare_fits_a_phone_and_the_form_picks_revisions(
    ctx, draft, server, browser, test_output
):
    add_user(ctx, "kai")
    _edited_twice(ctx, draft)
    review.edit(
        ctx, draft, {"posts": ["x" * 400 + "\n" + "https://example.org/" * 20]}, actor="kai"
    )
    page = browser.new_page(viewport={"width": 390, "height": 844})
    page.goto(f"{server}/login")
    page.fill("#name", "kai")
    page.fill("#password", PASSWORD)
    page.click("button[type=submit]")
    page.goto(f"{server}/drafts/{draft}")
    page.click("#compare-link")
    assert page.url.endswith(f"/drafts/{draft}/compare")
    page.screenshot(path=str(test_output / "fix-compare-phone.png"), full_page=True)
    width = page.evaluate("document.documentElement.scrollWidth")
    print("compare scrollWidth at 390 px:", width)
    assert width <= 390
    # The GET form, no script: pick 2 and 3.
    page.select_option("#rev-a", "2")
    page.select_option("#rev-b", "3")
    page.click("#compare button[type=submit]")
    assert page.url.endswith("?a=2&b=3")
    assert page.locator("#diff .del").first.inner_text() == "-Line two."
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
