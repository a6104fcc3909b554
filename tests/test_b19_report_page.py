"""The engagement report page and the replies page without a network: what an empty campaign
shows, the tables and SVG charts from stored counts, escaping, and the answer forms' checks."""

from __future__ import annotations

import re
from datetime import timedelta

from narratives.core.clock import utcnow
from narratives.store import post_stats
from narratives.store.schema import deliveries, drafts
from narratives.workflow import engagement
from tests.delivery_fixtures import add_draft, bluesky_content
from tests.web_client import client_for, post

EVIL = '<script>alert("x")</script> --> story'
#: The times of two pulls (each stores every post's counts at once).
PULLS = [utcnow() - timedelta(hours=2), utcnow() - timedelta(hours=1)]


def _published(ctx, title: str, tags: list[str], days_ago: int, counts: list[dict]) -> int:
    draft_id = add_draft(ctx, "emotional-equity", "bluesky", content=bluesky_content(title))
    now = utcnow()
    with ctx.db.begin() as conn:
        conn.execute(
            drafts.update()
            .where(drafts.c.id == draft_id)
            .values(data={"title": title, "tags": tags})
        )
        uri = f"at://did:plc:abc/app.bsky.feed.post/{draft_id:013d}"
        delivery_id = conn.execute(
            deliveries.insert().values(
                draft_id=draft_id,
                campaign="emotional-equity",
                channel="bluesky",
                state="published",
                scheduled_at=now - timedelta(days=days_ago),
                published_at=now - timedelta(days=days_ago),
                posts=[{"rkey": "x", "uri": uri, "cid": "c"}],
                attempts=1,
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]
        for at, c in zip(PULLS[-len(counts) :], counts, strict=True):
            post_stats.record(conn, at, [(delivery_id, uri, c)])
    return delivery_id


def _c(likes, reposts=0, replies=0, quotes=0):
    return {"likes": likes, "reposts": reposts, "replies": replies, "quotes": quotes}


def test_a_campaign_with_nothing_published_says_so_instead_of_drawing(ctx):
    client = client_for(ctx)
    page = client.get("/campaigns/emotional-equity/report")
    assert page.status_code == 200
    assert "Nothing of Emotional Equity is published on Bluesky yet" in page.text
    assert "<img" not in page.text
    assert client.get("/campaigns/emotional-equity/report/story.svg").status_code == 404
    assert client.get("/campaigns/no-such/report").status_code == 404


def test_the_report_page_shows_latest_counts_tables_and_svg_charts(ctx):
    _published(ctx, "Story one", ["equal-access"], 9, [_c(1), _c(5, 2, 1, 0)])
    _published(ctx, EVIL, ["equal-access", "grief-and-healing"], 1, [_c(3, 0, 0, 2)])
    r = engagement.report(ctx, "emotional-equity")
    assert [s["likes"] for s in r.stories] == [5, 3], "the latest pull of each post counts"
    assert {t["tag"]: t["likes"] for t in r.tags} == {"equal-access": 8, "grief-and-healing": 3}
    assert len(r.weeks) in (1, 2) and sum(w["stories"] for w in r.weeks) == 2
    assert [s["likes"] for s in r.series] == [1, 8]

    client = client_for(ctx)
    page = client.get("/campaigns/emotional-equity/report").text
    assert EVIL not in page and "&lt;script&gt;" in page
    rows = re.findall(
        r"<tr><td>(.*?)</td>.*?</tr>", page.split('id="stories"')[1].split("</table>")[0]
    )
    assert rows == ["Story one", "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; --&gt; story"]
    for name in ("story", "week", "tag"):
        assert f'src="/campaigns/emotional-equity/report/{name}.svg"' in page
        chart = client.get(f"/campaigns/emotional-equity/report/{name}.svg")
        assert chart.status_code == 200
        assert chart.headers["content-type"].startswith("image/svg+xml")
        assert chart.text.startswith("<svg")
    # Not logged in: no report.
    assert client_for(ctx, user=None).get("/campaigns/emotional-equity/report").status_code in (
        302,
        303,
        401,
    )


def test_the_replies_page_of_an_unpublished_draft_and_answer_checks(ctx):
    draft_id = add_draft(ctx, "emotional-equity", "bluesky", state="pending_review")
    client = client_for(ctx)
    replies = client.get(f"/drafts/{draft_id}/replies")
    assert replies.status_code == 200 and "is not published on Bluesky" in replies.text
    assert f'href="/drafts/{draft_id}/replies"' in client.get(f"/drafts/{draft_id}").text
    foreign = "at://did:plc:other/app.bsky.feed.post/3k"
    page = f"/drafts/{draft_id}"
    r = post(client, f"{page}/replies/hide", {"story": foreign, "uri": foreign}, page=page)
    assert r.status_code == 404
    r = post(client, f"{page}/replies/detach", {"story": "", "uri": ""}, page=page)
    assert r.status_code == 400
    # Without the CSRF token the app refuses before any of this runs.
    r = client.post(f"/drafts/{draft_id}/replies/hide", data={"story": foreign, "uri": foreign})
    assert r.status_code == 403
