"""Reply and quote controls checked by their effect, on a real local network with an AppView
(tests/appview_fixtures.py): other real accounts reply and quote, and the AppView, read through
the PDS the way clients read it, refuses what the gates refuse."""

from __future__ import annotations

import pytest

from narratives.channels.bluesky.client import BlueskyChannel
from narratives.channels.bluesky.post import BlueskyAccount, BlueskyPost, Gates
from narratives.channels.bluesky.tids import new_tid

pytestmark = [pytest.mark.pds, pytest.mark.slow]

PASSWORD_ENV = "NARRATIVES_BSKY_APPVIEW_TEST"


def _publish(appview, workspace, monkeypatch, text: str, gates: Gates):
    narrator = appview.create_account("narrator")
    monkeypatch.setenv(PASSWORD_ENV, narrator.app_password)
    account = BlueskyAccount(narrator.handle, appview.pds_url, PASSWORD_ENV)
    with BlueskyChannel(account, workspace) as channel:
        (ref,) = channel.publish([BlueskyPost(text)], [new_tid()], gates=gates)
    return narrator, ref


def _reply(appview, who, ref):
    strong = {"uri": ref.uri, "cid": ref.cid}
    return appview.create(
        who,
        "app.bsky.feed.post",
        {"text": f"reply from {who.handle}", "reply": {"root": strong, "parent": strong}},
    )


def test_followers_only_replies_and_no_quotes_take_effect_in_the_appview(
    appview,
    workspace,
    monkeypatch,
):
    narrator, ref = _publish(
        appview, workspace, monkeypatch, "A testimony.", Gates(replies=("followers",), quotes=False)
    )
    follower = appview.create_account("follower")
    stranger = appview.create_account("stranger")
    appview.create(follower, "app.bsky.graph.follow", {"subject": narrator.did})
    appview.process_all()

    # What the app shows each of them before they try.
    post = appview.appview("app.bsky.feed.getPosts", stranger, uris=[ref.uri])["posts"][0]
    assert post["viewer"].get("replyDisabled") is True
    assert post["viewer"].get("embeddingDisabled") is True
    post = appview.appview("app.bsky.feed.getPosts", follower, uris=[ref.uri])["posts"][0]
    assert not post["viewer"].get("replyDisabled")
    assert post["threadgate"]["record"]["allow"] == [
        {"$type": "app.bsky.feed.threadgate#followerRule"}
    ]

    _reply(appview, follower, ref)
    _reply(appview, stranger, ref)
    quote = appview.create(
        stranger,
        "app.bsky.feed.post",
        {
            "text": "quoting it",
            "embed": {"$type": "app.bsky.embed.record", "record": {"uri": ref.uri, "cid": ref.cid}},
        },
    )
    appview.process_all()

    thread = appview.appview("app.bsky.feed.getPostThread", narrator, uri=ref.uri, depth=1)
    authors = {r["post"]["author"]["did"] for r in thread["thread"].get("replies", [])}
    assert follower.did in authors
    assert stranger.did not in authors, "the threadgate refuses a reply from a non-follower"
    quoted = appview.appview("app.bsky.feed.getPosts", narrator, uris=[quote["uri"]])["posts"][0]
    assert quoted["embed"]["record"]["$type"] == "app.bsky.embed.record#viewDetached"
    counts = appview.appview("app.bsky.feed.getPosts", narrator, uris=[ref.uri])["posts"][0]
    assert counts["replyCount"] == 1


def test_without_gates_anyone_may_reply_and_quote(appview, workspace, monkeypatch):
    narrator, ref = _publish(appview, workspace, monkeypatch, "An open post.", Gates())
    stranger = appview.create_account("stranger")
    _reply(appview, stranger, ref)
    appview.process_all()
    thread = appview.appview("app.bsky.feed.getPostThread", narrator, uri=ref.uri, depth=1)
    assert [r["post"]["author"]["did"] for r in thread["thread"]["replies"]] == [stranger.did]
    post = appview.appview("app.bsky.feed.getPosts", stranger, uris=[ref.uri])["posts"][0]
    assert not post["viewer"].get("replyDisabled")
