"""Replies watch and engagement report (issue 19, items 2 and 3) on a real local network with
an AppView: other real accounts like, repost, reply and quote; `narrative stats pull` reads the
counts back through the campaign's account the way production reads them; the report, the
replies list and the editor's answers (hide a reply, detach a quote) go through the CLI."""

from __future__ import annotations

import csv
import io
import json
import re
import secrets

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from narratives.cli import cli
from narratives.core.clock import utcnow
from narratives.store.schema import drafts
from narratives.workflow import engagement, scheduling
from narratives.workflow.channels import open_publishers
from narratives.workflow.publishing import publish_delivery
from tests.delivery_fixtures import add_draft, bluesky_content
from tests.review_fixtures import add_user

pytestmark = [pytest.mark.pds, pytest.mark.slow]

PASSWORD_ENV = "NARRATIVES_BSKY_REPORT_TEST"


def run(*args: str):
    return CliRunner().invoke(cli, list(args), env={"NARRATIVES_USER": "kai"})


@pytest.fixture
def campaign(appview, workspace, monkeypatch):
    narrator = appview.create_account("campaign")
    monkeypatch.setenv(PASSWORD_ENV, narrator.app_password)
    slug = f"report-{secrets.token_hex(2)}"
    text = (workspace.campaigns_dir / "emotional-equity.toml").read_text()
    text = text.replace('slug = "emotional-equity"', f'slug = "{slug}"')
    text = re.sub(r'handle = "[^"]+"', f'handle = "{narrator.handle}"', text)
    text = re.sub(r'service = "[^"]+"', f'service = "{appview.pds_url}"', text)
    text = re.sub(r'password_env = "[^"]+"', f'password_env = "{PASSWORD_ENV}"', text)
    (workspace.campaigns_dir / f"{slug}.toml").write_text(text)
    return slug, narrator


def _publish(ctx, slug, text, tags, gates=None):
    content = bluesky_content(text)
    if gates:
        content["gates"] = gates
    draft_id = add_draft(ctx, slug, "bluesky", content=content)
    with ctx.db.begin() as conn:
        conn.execute(
            drafts.update()
            .where(drafts.c.id == draft_id)
            .values(data={"tags": tags, "title": text})
        )
    now = utcnow()
    d = scheduling.schedule(ctx, draft_id, at=now, actor="kai", now=now)
    with open_publishers(ctx) as publishers:
        out = publish_delivery(ctx, d.id, publishers)
    assert out.status == "published", out.error
    post = out.delivery.posts[0]
    return draft_id, post


def test_replies_and_engagement_end_to_end(ctx, appview, campaign):
    slug, narrator = campaign
    add_user(ctx, "kai")
    r = run("report", "--campaign", slug)
    assert r.exit_code == 0 and "there is nothing to report" in r.output
    assert engagement.charts(engagement.report(ctx, slug)) == {}

    _, a = _publish(ctx, slug, "Story A about rest.", ["equal-access", "sleep-inequality"])
    open_gates = {"replies": ["everyone"], "quotes": True}
    _, b = _publish(ctx, slug, "Story B about dreams.", ["equal-access"], gates=open_gates)
    ref_a, ref_b = ({"uri": p["uri"], "cid": p["cid"]} for p in (a, b))
    follower, liker, stranger = (
        appview.create_account(n) for n in ("follower", "liker", "stranger")
    )
    appview.create(follower, "app.bsky.graph.follow", {"subject": narrator.did})
    appview.process_all()
    for who in (follower, liker):
        appview.create(who, "app.bsky.feed.like", {"subject": ref_a})
    appview.create(liker, "app.bsky.feed.repost", {"subject": ref_a})
    answer = {"text": "Thank you.", "reply": {"root": ref_a, "parent": ref_a}}
    reply = appview.create(follower, "app.bsky.feed.post", answer)
    quote = appview.create(
        stranger,
        "app.bsky.feed.post",
        {"text": "Read this.", "embed": {"$type": "app.bsky.embed.record", "record": ref_b}},
    )
    appview.create(stranger, "app.bsky.feed.like", {"subject": ref_b})
    appview.process_all()

    r = run("stats", "pull", "--campaign", slug, "--json")
    assert r.exit_code == 0, r.output
    pulled = json.loads(r.output)
    assert pulled["stored"] == pulled["posts"] == 2 and not pulled["errors"]

    report = json.loads(run("report", "--campaign", slug, "--json").output)
    by_title = {s["title"]: s for s in report["stories"]}
    a_counts = {k: by_title["Story A about rest."][k] for k in engagement.COUNTS}
    b_counts = {k: by_title["Story B about dreams."][k] for k in engagement.COUNTS}
    assert a_counts == {"likes": 2, "reposts": 1, "replies": 1, "quotes": 0}
    assert b_counts == {"likes": 1, "reposts": 0, "replies": 0, "quotes": 1}
    tags = {t["tag"]: t for t in report["tags"]}
    assert tags["equal-access"]["likes"] == 3 and tags["equal-access"]["stories"] == 2
    assert tags["sleep-inequality"]["likes"] == 2
    assert sum(w["likes"] for w in report["weeks"]) == 3
    assert len(report["series"]) == 1 and report["series"][0]["likes"] == 3
    rows = list(csv.DictReader(io.StringIO(run("report", "--campaign", slug, "--csv").output)))
    assert sorted(int(r["likes"]) for r in rows) == [1, 2]
    svgs = engagement.charts(engagement.report(ctx, slug))
    assert set(svgs) == {"story", "week", "tag"}
    assert all(
        s.startswith("<svg") and "Story A about rest." in svgs["story"] for s in svgs.values()
    )

    listed = [
        json.loads(line)
        for line in run("replies", "--campaign", slug, "--json").output.splitlines()
    ]
    by_uri = {s["uri"]: s for s in listed}
    assert [x["uri"] for x in by_uri[a["uri"]]["replies"]] == [reply["uri"]]
    assert [x["uri"] for x in by_uri[b["uri"]]["quotes"]] == [quote["uri"]]

    r = run("replies", "hide", a["uri"], reply["uri"])
    assert r.exit_code == 0 and "Hidden." in r.output
    assert "already" in run("replies", "hide", a["uri"], reply["uri"]).output
    r = run("replies", "detach", b["uri"], quote["uri"])
    assert r.exit_code == 0 and "Detached." in r.output
    appview.process_all()
    # The AppView now shows the quote detached, and the thread's gate hides the reply.
    quoted = appview.appview("app.bsky.feed.getPosts", narrator, uris=[quote["uri"]])["posts"][0]
    assert quoted["embed"]["record"]["$type"] == "app.bsky.embed.record#viewDetached"
    post_a = appview.appview("app.bsky.feed.getPosts", narrator, uris=[a["uri"]])["posts"][0]
    assert post_a["threadgate"]["record"]["hiddenReplies"] == [reply["uri"]]
    # Who may reply did not change with it.
    assert post_a["threadgate"]["record"]["allow"] == [
        {"$type": "app.bsky.feed.threadgate#followerRule"}
    ]
    listed = [
        json.loads(line)
        for line in run("replies", "--campaign", slug, "--json").output.splitlines()
    ]
    by_uri = {s["uri"]: s for s in listed}
    assert by_uri[a["uri"]]["hidden"] == [reply["uri"]]
    assert by_uri[b["uri"]]["detached"] == [quote["uri"]]
    with ctx.db.connect() as conn:
        actions = conn.execute(
            sa.text("select action, actor from audit_log where action like 'replies.%' order by id")
        ).all()
    assert [tuple(x) for x in actions] == [
        ("replies.hide", "kai"),
        ("replies.hide", "kai"),
        ("replies.detach", "kai"),
    ]


def test_figures_pull_of_1000_published_posts_and_report_page(ctx, appview, campaign, test_output):
    """The closing note's figures: one pull of 1,000 published posts (time, requests), and the
    report page's render time for them. Written to test-output/b19_engagement_figures.json."""
    import time

    from narratives.store.schema import deliveries
    from tests.web_client import client_for

    slug, narrator = campaign
    now = utcnow()
    stamp = now.isoformat().replace("+00:00", "Z")
    refs = []
    for batch in range(5):  # applyWrites takes at most 200 writes
        writes = [
            {
                "$type": "com.atproto.repo.applyWrites#create",
                "collection": "app.bsky.feed.post",
                "value": {
                    "$type": "app.bsky.feed.post",
                    "text": f"S {batch}-{i}",
                    "createdAt": stamp,
                },
            }
            for i in range(200)
        ]
        r = appview.xrpc(
            "POST",
            "com.atproto.repo.applyWrites",
            token=narrator.access_jwt,
            json={"repo": narrator.did, "writes": writes},
        )
        r.raise_for_status()
        refs += [{"uri": w["uri"], "cid": w["cid"]} for w in r.json()["results"]]
    liker = appview.create_account("liker")
    for ref in refs[:10]:
        appview.create(liker, "app.bsky.feed.like", {"subject": ref})
    # 1,000 published deliveries of one post each (one draft each: a draft has one delivery).
    draft_ids = [add_draft(ctx, slug, "bluesky", content=bluesky_content("x")) for _ in refs]
    rows = [
        {
            "draft_id": d, "campaign": slug, "channel": "bluesky", "state": "published",
            "scheduled_at": now, "published_at": now, "attempts": 1, "created_at": now,
            "updated_at": now,
            "posts": [{"rkey": ref["uri"].rsplit("/", 1)[1], **ref}],
        }
        for d, ref in zip(draft_ids, refs, strict=True)
    ]  # fmt: skip
    with ctx.db.begin() as conn:
        conn.execute(deliveries.insert(), rows)
    appview.process_all()

    pulled = engagement.pull(ctx, slug)
    assert pulled.stored == pulled.posts == 1000 and not pulled.errors
    # 25 posts a request: 40 getPosts, plus at most a login and a session refresh.
    assert 40 <= pulled.requests <= 42
    report = engagement.report(ctx, slug)
    assert sum(s["likes"] for s in report.stories) == 10

    client = client_for(ctx)
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        page = client.get(f"/campaigns/{slug}/report")
        chart = client.get(f"/campaigns/{slug}/report/story.svg")
        timings.append(time.perf_counter() - started)
        assert page.status_code == chart.status_code == 200
    figures = {
        "posts": pulled.posts,
        "pull_seconds": round(pulled.seconds, 2),
        "pull_requests": pulled.requests,
        "report_page_and_story_chart_seconds_best_of_3": round(min(timings), 3),
    }
    (test_output / "b19_engagement_figures.json").write_text(json.dumps(figures, indent=2))
    print(figures)
