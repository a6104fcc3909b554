"""Reply and quote controls (issue 19, item 1) against the real local PDS: threadgate and
postgate records written with the post's record key in the same write, exactly once under a
lost reply, per-draft overrides, and gone after a withdrawal.

The local network has no AppView, so these tests check the records' content (what the AppView
reads to refuse or hide a reply, or to refuse a quote), not their effect on other accounts.
"""

from __future__ import annotations

import httpx
import pytest

from narratives.channels.bluesky.client import BlueskyChannel
from narratives.channels.bluesky.post import BlueskyAccount, BlueskyPost, Gates
from narratives.channels.bluesky.tids import new_tid, thread_rkeys
from narratives.store.schema import delivery_attempts
from narratives.workflow.channels import open_publishers
from narratives.workflow.publishing import publish_delivery
from narratives.workflow.takedown import take_down_delivery
from tests.delivery_fixtures import bluesky_content
from tests.test_publish_bluesky import PASSWORD_ENV, Sky

pytestmark = pytest.mark.pds

THREADGATE = "app.bsky.feed.threadgate"
POSTGATE = "app.bsky.feed.postgate"


@pytest.fixture
def sky(pds, workspace, monkeypatch):
    return Sky(pds, workspace, monkeypatch)


def records(pds, did: str, collection: str) -> dict[str, dict]:
    """Every record of `collection` in the repo, by record key."""
    response = pds.xrpc(
        "GET",
        "com.atproto.repo.listRecords",
        params={"repo": did, "collection": collection, "limit": 100},
    )
    response.raise_for_status()
    return {r["uri"].rsplit("/", 1)[1]: r["value"] for r in response.json()["records"]}


def publish(ctx, d):
    with open_publishers(ctx) as publishers:
        return publish_delivery(ctx, d.id, publishers)


def test_campaign_defaults_write_a_threadgate_and_postgates_then_withdrawal_deletes_them(
    ctx, sky, pds
):
    d = sky.schedule(ctx, bluesky_content("First part of a dream.", "Second part."))
    outcome = publish(ctx, d)
    assert outcome.status == "published", outcome.error
    first, second = thread_rkeys(d.rkey, 2)
    post_uri = f"at://{sky.did}/app.bsky.feed.post/{first}"

    threadgates = records(pds, sky.did, THREADGATE)
    postgates = records(pds, sky.did, POSTGATE)
    # The shipped testimony default: replies from followers, no quote posts.
    assert set(threadgates) == {first}, "a threadgate belongs on the thread's first post only"
    gate = threadgates[first]
    assert gate["post"] == post_uri
    assert [r["$type"] for r in gate["allow"]] == ["app.bsky.feed.threadgate#followerRule"]
    assert set(postgates) == {first, second}
    for rkey, pg in postgates.items():
        assert pg["post"] == f"at://{sky.did}/app.bsky.feed.post/{rkey}"
        assert pg["embeddingRules"] == [{"$type": "app.bsky.feed.postgate#disableRule"}]

    taken = take_down_delivery(ctx, d.id, actor="kai", reason="test withdrawal")
    assert taken.after == "withdrawn", taken.error
    assert records(pds, sky.did, THREADGATE) == {}
    assert records(pds, sky.did, POSTGATE) == {}
    assert pds.list_posts(sky.did) == []


@pytest.mark.parametrize(
    ("override", "allow", "postgate"),
    [
        ({"replies": ["nobody"], "quotes": True}, [], False),
        (
            {"replies": ["mentioned", "following"], "quotes": False},
            ["#mentionRule", "#followingRule"],
            True,
        ),
        ({"replies": ["everyone"], "quotes": False}, None, True),
    ],
)
def test_a_drafts_own_choice_overrides_the_campaign(ctx, sky, pds, override, allow, postgate):
    content = bluesky_content("A story with its own reply rules.")
    content["gates"] = override
    d = sky.schedule(ctx, content)
    assert publish(ctx, d).status == "published"
    threadgates = records(pds, sky.did, THREADGATE)
    if allow is None:
        assert threadgates == {}
    else:
        rules = [
            r["$type"].removeprefix("app.bsky.feed.threadgate")
            for r in threadgates[d.rkey]["allow"]
        ]
        assert rules == allow
    assert (d.rkey in records(pds, sky.did, POSTGATE)) is postgate


def test_list_rule_names_each_list(ctx, sky, pds):
    lists = [f"at://{sky.did}/app.bsky.graph.list/{new_tid()}" for _ in range(2)]
    content = bluesky_content("Only the listed may reply.")
    content["gates"] = {"replies": ["lists"], "lists": lists, "quotes": True}
    d = sky.schedule(ctx, content)
    assert publish(ctx, d).status == "published"
    allow = records(pds, sky.did, THREADGATE)[d.rkey]["allow"]
    assert [(r["$type"], r["list"]) for r in allow] == [
        ("app.bsky.feed.threadgate#listRule", uri) for uri in lists
    ]


class LoseApplyWritesReplies(httpx.HTTPTransport):
    """Forwards every request; the reply to the first `n` applyWrites is lost after the server
    committed them (a dropped connection), as in a network fault."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.left = n
        self.apply_writes = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = super().handle_request(request)
        if request.url.path.endswith("com.atproto.repo.applyWrites"):
            self.apply_writes += 1
            if self.left > 0:
                self.left -= 1
                response.read()
                raise httpx.ReadError(
                    "connection reset after the server committed", request=request
                )
        return response


def test_a_lost_reply_is_read_back_so_post_and_gates_land_exactly_once(sky, pds, workspace):
    transport = LoseApplyWritesReplies(n=1)
    account = BlueskyAccount(sky.handle, pds.url, PASSWORD_ENV)
    gates = Gates(replies=("followers",), quotes=False)
    rkeys = thread_rkeys(new_tid(), 2)
    posts = [BlueskyPost("Lost reply, part one."), BlueskyPost("Part two.")]
    with BlueskyChannel(account, workspace, transport=transport) as channel:
        refs = channel.publish(posts, rkeys, gates=gates)
        assert refs[0].found and not refs[1].found, "the first was read back, the second sent"
        # A retry of the whole thread (the caller lost its progress) finds both.
        again = channel.publish(posts, rkeys, gates=gates)
        assert [r.uri for r in again] == [r.uri for r in refs]
        assert all(r.found for r in again)
        assert set(channel.gate_records(rkeys[0])) == {THREADGATE, POSTGATE}
    # The repeat's writes were refused by the server (the record keys exist) and read back.
    assert transport.apply_writes == 4
    assert sorted(r["uri"].rsplit("/", 1)[1] for r in pds.list_posts(sky.did)) == rkeys
    assert set(records(pds, sky.did, THREADGATE)) == {rkeys[0]}
    assert set(records(pds, sky.did, POSTGATE)) == set(rkeys)


def test_a_repeat_after_every_post_landed_is_logged_as_found_on_the_server(ctx, sky, pds):
    d = sky.schedule(ctx, bluesky_content("Posted by an attempt whose reply was lost."))
    account = BlueskyAccount(sky.handle, pds.url, PASSWORD_ENV)
    with BlueskyChannel(account, ctx.workspace) as channel:
        channel.publish(
            [BlueskyPost("Posted by an attempt whose reply was lost.")],
            [d.rkey],
            gates=Gates(replies=("followers",), quotes=False),
        )
    outcome = publish(ctx, d)
    assert outcome.status == "found_existing"
    with ctx.db.connect() as conn:
        outcomes = [
            r.outcome
            for r in conn.execute(
                delivery_attempts.select().where(delivery_attempts.c.delivery_id == d.id)
            )
        ]
    assert outcomes == ["found_existing"]
    assert len(pds.list_posts(sky.did)) == 1
