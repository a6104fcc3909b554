"""The queue an editor can live in (issue 15, item 5): search, sort, paging, counts that follow
the filters, bulk approve and reject with each draft still checked; the audit in words with
before and after; a tag correction keeps the model's score beside the editor's verdict."""

from __future__ import annotations

import re

import pytest

from narratives.stages.draft import stage as drafting
from narratives.store import audit
from narratives.web.audit_words import audit_row
from narratives.workflow import review, takedown
from tests.review_fixtures import add_narrative, add_render, add_user, analysis_for
from tests.web_client import client_for, csrf

EQUITY = "emotional-equity"


def _story(ctx, seed: str, title: str, *, consent: bool = True) -> dict[str, int]:
    nid = add_narrative(ctx, seed, analysis=analysis_for(title=title), consent=consent)
    add_render(ctx, nid, EQUITY)
    return {review.get_draft(ctx, i).channel: i for i in drafting.run(ctx, nid)}


def _shown(html: str) -> list[int]:
    return [int(m) for m in re.findall(r'<tr id="draft-(\d+)"', html)]


def _counts(html: str) -> dict[str, int]:
    return {s: int(n) for s, n in re.findall(r'data-state="(\w+)">(\d+)</strong>', html)}


@pytest.fixture
def stories(ctx):
    return {
        "clinic": _story(ctx, "s1", "Two lines at the dream clinic"),
        "bus": _story(ctx, "s2", "The night bus"),
        "garden": _story(ctx, "s3", "A garden of shared dreams", consent=False),
    }


def test_search_by_title_text_and_ids_and_counts_follow_the_filters(ctx, stories):
    client = client_for(ctx)
    review.approve(ctx, stories["bus"]["rss"], actor="kai")
    page = client.get("/").text
    assert len(_shown(page)) == 6
    assert _counts(page) == {
        "pending_review": 5,
        "approved": 1,
        "rejected": 0,
        "changes_requested": 0,
    }
    # By title (any case), and the counts are those of what matches.
    page = client.get("/?q=NIGHT+bus").text
    assert sorted(_shown(page)) == sorted(stories["bus"].values())
    assert _counts(page)["pending_review"] == 1 and _counts(page)["approved"] == 1
    assert '<strong id="total">2</strong>' in page
    # A state filter narrows the list; the counts still say how many per state.
    page = client.get("/?q=night+bus&state=approved").text
    assert _shown(page) == [stories["bus"]["rss"]]
    assert _counts(page)["pending_review"] == 1
    # By the draft's text, by draft id (#N) and by story id prefix.
    draft = review.get_draft(ctx, stories["garden"]["bluesky"])
    word = "grandmother"
    assert word in " ".join(draft.posts).lower()
    assert len(_shown(client.get(f"/?q={word}").text)) >= 2
    assert _shown(client.get(f"/?q=%23{draft.id}").text) == [draft.id]
    by_story = _shown(client.get(f"/?q={draft.narrative_id[:10]}").text)
    assert sorted(by_story) == sorted(stories["garden"].values())
    # Filters combine with the search, and the counts follow the channel filter.
    page = client.get("/?q=dream&channel=rss").text
    assert all(review.get_draft(ctx, i).channel == "rss" for i in _shown(page))
    assert sum(_counts(page).values()) == len(_shown(page))
    assert "No drafts match." in client.get("/?q=zzzz-nothing").text


def test_story_id_and_date_beside_the_title_and_the_same_title_told_apart(ctx, stories):
    again = _story(ctx, "s4", "The night bus")
    client = client_for(ctx)
    page = client.get("/?q=night+bus").text
    for ids in (stories["bus"], again):
        d = review.get_draft(ctx, ids["rss"])
        row = page.split(f'<tr id="draft-{d.id}"')[1].split("</tr>")[0]
        assert f"<code>{d.narrative_id[:8]}</code>" in row
        assert f"draft {d.id}" in row and d.created_at.strftime("%Y-%m-%d") in row


def test_sort_and_paging(ctx, stories, monkeypatch):
    from narratives.web.views import queue

    client = client_for(ctx)
    titles = client.get("/?sort=title").text
    order = [review.get_draft(ctx, i).title for i in _shown(titles)]
    assert order == sorted(order, key=str.casefold)
    # Four a page: two pages, the pager keeps the filters and the sort.
    monkeypatch.setattr(queue, "queue_page", _paged(queue.queue_page, 4))
    first = client.get("/?sort=oldest").text
    assert len(_shown(first)) == 4 and "Page 1 of 2" in first
    assert 'href="/?sort=oldest&amp;page=2"' in first
    second = client.get("/?sort=oldest&page=2").text
    assert len(_shown(second)) == 2 and not set(_shown(first)) & set(_shown(second))
    assert 'href="/?sort=oldest&amp;page=1"' in second
    # Past the end: the last page; nonsense: a clear error.
    assert _shown(client.get("/?sort=oldest&page=99").text) == _shown(second)
    assert client.get("/?sort=sideways").status_code == 400
    assert _shown(client.get("/?page=x").text)


def _paged(fn, n):
    def wrapper(site, filters, *, sort="updated", page=1, per_page=n):
        return fn(site, filters, sort=sort, page=page, per_page=n)

    return wrapper


def test_bulk_approve_checks_each_draft_and_says_what_happened(ctx, stories):
    client = client_for(ctx)
    page = client.get("/").text
    versions = dict(re.findall(r'name="version-(\d+)" value="([^"]+)"', page))
    clinic, garden = stories["clinic"], stories["garden"]
    # Someone edits one clinic draft after the queue was read: that approval is refused.
    review.edit(ctx, clinic["rss"], {"summary": "Changed meanwhile."}, actor="kai")
    ticked = [clinic["bluesky"], clinic["rss"], garden["rss"]]
    data = {"csrf": csrf(client, "/"), "action": "approve", "ids": [str(i) for i in ticked]}
    data |= {f"version-{k}": v for k, v in versions.items()}
    r = client.post("/bulk", data=data)
    assert r.status_code == 200
    results = dict(re.findall(r'data-draft="(\d+)">(.*?)</li>', r.text, re.S))
    assert set(map(int, results)) == set(ticked)
    assert results[str(clinic["bluesky"])].endswith(": approved")
    stale = results[str(clinic["rss"])]
    assert "changed" in stale and "not approved" in stale
    assert "consent" in results[str(garden["rss"])].lower()
    assert "Approved 1 of 3 drafts" in r.text
    states = {i: review.get_draft(ctx, i).state for i in ticked}
    assert states == {
        clinic["bluesky"]: "approved",
        clinic["rss"]: "pending_review",
        garden["rss"]: "pending_review",
    }


def test_bulk_reject_with_a_reason_keeps_the_filters_and_needs_csrf(ctx, stories):
    client = client_for(ctx)
    bus = stories["bus"]
    r = client.post("/bulk", data={"action": "reject", "ids": [str(bus["rss"])]})
    assert r.status_code == 403 and review.get_draft(ctx, bus["rss"]).state == "pending_review"
    token = csrf(client, "/")
    r = client.post(
        "/bulk",
        data={
            "csrf": token,
            "action": "reject",
            "reason": "Off topic",
            "ids": [str(bus["rss"]), str(bus["bluesky"]), "999999"],
            "back": "q=night+bus",
        },
    )
    assert r.status_code == 200
    assert "Rejected 2 of 3 drafts" in r.text and "no draft 999999" in r.text
    assert sorted(_shown(r.text)) == sorted(bus.values())  # the filtered queue again
    assert {review.get_draft(ctx, i).state for i in bus.values()} == {"rejected"}
    r = client.post("/bulk", data={"csrf": token, "action": "delete", "ids": ["1"]})
    assert r.status_code == 400
    r = client.post("/bulk", data={"csrf": token, "action": "approve"})
    assert "No draft was ticked." in r.text


def test_audit_rows_in_words_with_before_and_after(ctx, stories):
    add_user(ctx, "fayez")
    rss = stories["clinic"]["rss"]
    nid = review.get_draft(ctx, rss).narrative_id
    review.edit(ctx, rss, {"summary": "A new summary."}, actor="fayez")
    review.approve(ctx, rss, actor="fayez")
    takedown.set_consent(
        ctx,
        nid,
        given_by="The narrator",
        method="form",
        channels=["rss"],
        anonymous=False,
        actor="fayez",
    )
    rows = [audit_row(h) for h in review.history(ctx, rss, related=True)]
    words = {r.action for r in rows}
    assert {"created the draft", "edited", "approved", "recorded the consent"} <= words
    assert not any("." in r.action for r in rows)  # no raw keys
    edit = next(r for r in rows if r.action == "edited")
    assert "text changed" in edit.changes and "+A new summary." in edit.diff
    approve = next(r for r in rows if r.action == "approved")
    assert "Pending review → Approved" in approve.changes
    consent = [r for r in rows if r.action == "recorded the consent"][-1]
    assert "Channels: bluesky, rss → rss" in consent.changes
    with ctx.db.connect() as conn:
        raw = audit.history(conn, "consent", nid)
    assert raw[-1]["action"] == "consent.set"
    # The page shows the same words.
    page = client_for(ctx).get(f"/drafts/{rss}").text
    assert "Channels: bluesky, rss → rss" in page and "consent.set" not in page


def test_a_tag_correction_keeps_the_models_score_beside_the_verdict(ctx, stories, monkeypatch):
    from narratives.stages.analyse import stage as analysing

    rss = stories["clinic"]["rss"]
    nid = review.get_draft(ctx, rss).narrative_id
    # The analysis itself needs the embedding model (slow tier); here the re-score is skipped
    # and the correction and its audit row are what the page reads.
    monkeypatch.setattr(analysing, "run", lambda ctx_, nid_, force=False: None)
    add_user(ctx, "kai")
    review.correct_tag(ctx, nid, EQUITY, "grief-and-healing", True, actor="kai")
    review.correct_tag(ctx, nid, EQUITY, "grief-and-healing", False, actor="kai")
    page = client_for(ctx, user="fayez").get(f"/drafts/{rss}").text
    row = page.split('<span class="tag">grief-and-healing</span>')[1].split("</tr>")[0]
    assert "editor: does not apply" in row
    assert "model: 0.12" in row  # the score the model gave, before any correction
    assert "model score 0.12 · editor: applies" in page  # the audit row says both
