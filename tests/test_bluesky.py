"""The Bluesky channel: pure text rules, then publishing against a real PDS on 127.0.0.1.

Faults come from the real server wherever it can produce them (stopped, rate limited, blob too
large, wrong password). The one fault it cannot produce on demand, a reply lost after the server
committed the post, comes from `FlakyTransport`, a fault injector named as such.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grapheme
import httpx
import pytest
from atproto import Client

from narratives.channels.bluesky.client import BlueskyChannel
from narratives.channels.bluesky.facets import build_facets
from narratives.channels.bluesky.post import (
    BlueskyAccount,
    BlueskyPost,
    Caption,
    ImageEmbed,
    PublishedRef,
    VideoEmbed,
    check_post,
    labels_for_content_notes,
)
from narratives.channels.bluesky.text import MAX_GRAPHEMES, count_graphemes, split_thread
from narratives.channels.bluesky.tids import new_tid, thread_rkeys
from narratives.core.errors import PermanentChannelError, TransientChannelError

FAMILY = "\U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466"  # one grapheme, 25 bytes


def facet_texts(text: str, facets) -> list[tuple[str, str]]:
    """(covered text, feature type) of each facet, cut by its UTF-8 byte offsets."""
    data = text.encode("utf-8")
    out = []
    for facet in facets:
        index, feature = facet["index"], facet["features"][0]
        out.append((data[index["byteStart"] : index["byteEnd"]].decode("utf-8"), feature["$type"]))
    return out


def as_dicts(facets) -> list[dict]:
    return [
        {
            "index": {"byteStart": f.index.byte_start, "byteEnd": f.index.byte_end},
            "features": [{"$type": feat.py_type, **feat.model_dump()} for feat in f.features],
        }
        for f in facets
    ]


# --- graphemes, facets, threads (no server) --------------------------------------------------


def test_count_graphemes_like_bluesky():
    assert count_graphemes("abc") == 3
    assert count_graphemes(FAMILY) == 1
    assert count_graphemes("e\u0301") == 1  # e + combining acute
    assert count_graphemes("\U0001f1f5\U0001f1f9") == 1  # flag: two regional indicators
    assert count_graphemes("\U0001f44d\U0001f3fd") == 1  # thumbs up + skin tone
    assert count_graphemes("na\u0308i\u0308ve " + FAMILY * 2) == 8


def test_facets_have_utf8_byte_offsets():
    text = f"Olá {FAMILY} #café — see https://example.org/a_(b)). Thanks @bob.test!"
    facets = build_facets(text, {"bob.test": "did:plc:bob"}.get)
    covered = facet_texts(text, as_dicts(facets))
    assert covered == [
        ("#café", "app.bsky.richtext.facet#tag"),
        ("https://example.org/a_(b)", "app.bsky.richtext.facet#link"),
        ("@bob.test", "app.bsky.richtext.facet#mention"),
    ]
    assert facets[0].features[0].tag == "café"
    assert facets[0].index.byte_start == len("Olá ".encode()) + len(FAMILY.encode()) + 1
    assert facets[2].features[0].did == "did:plc:bob"


def test_facet_rules():
    text = "#2024 #end. (#inner) mail@x.test @nodot @ghost.test #tag"
    facets = build_facets(text, lambda handle: None)
    assert facet_texts(text, as_dicts(facets)) == [
        ("#end", "app.bsky.richtext.facet#tag"),
        ("#tag", "app.bsky.richtext.facet#tag"),
    ]
    # Without a resolver every mention stays text.
    assert build_facets("hi @bob.test") == []


def test_split_short_text_is_one_post():
    assert split_thread("  One post.  ") == ["One post."]
    assert split_thread("") == []


def test_split_thread_at_sentences():
    sentences = [f"Sentence number {i} says a little something about the dream." for i in range(30)]
    text = " ".join(sentences)
    posts = split_thread(text)
    assert len(posts) > 1
    assert all(count_graphemes(p) <= MAX_GRAPHEMES for p in posts)
    assert all(p.endswith(".") for p in posts)  # cut between sentences only
    assert " ".join(posts) == text


def test_split_thread_long_sentence_at_words_and_long_word_inside():
    words = ["word"] * 200
    posts = split_thread(" ".join(words))
    assert all(count_graphemes(p) <= MAX_GRAPHEMES for p in posts)
    assert " ".join(posts).split() == words
    giant = "x" * 700
    assert split_thread(giant) == ["x" * 300, "x" * 300, "x" * 100]


def test_split_thread_never_cuts_inside_a_link():
    url = "https://example.org/" + "a" * 400
    posts = split_thread(f"See this. {url} Thanks.")
    assert url in posts  # whole, in a post of its own (too long: an editor must shorten it)
    assert not any(p != url and "example.org" in p for p in posts)


def test_split_thread_counts_graphemes_not_code_points():
    text = " ".join([FAMILY] * 200)  # 399 graphemes, 5199 bytes
    posts = split_thread(text)
    assert all(count_graphemes(p) <= MAX_GRAPHEMES for p in posts)
    assert all(len(p.encode()) <= 3000 for p in posts)
    assert sum(grapheme.length(p.replace(" ", "")) for p in posts) == 200
    assert split_thread("e\u0301" * 300) == ["e\u0301" * 300]


def test_labels_for_content_notes():
    assert labels_for_content_notes([]) == ()
    assert labels_for_content_notes(["violence", "Self harm"]) == ("graphic-media",)
    assert labels_for_content_notes(["sexual violence", "nudity"]) == ("nudity", "sexual")
    assert labels_for_content_notes(["graphic_media"]) == ("graphic-media",)


def test_tids():
    keys = [new_tid() for _ in range(1000)]
    assert len(set(keys)) == 1000
    assert keys == sorted(keys)
    assert all(len(k) == 13 for k in keys)
    thread = thread_rkeys(keys[0], 5)
    assert thread[0] == keys[0] and thread == sorted(thread) and len(set(thread)) == 5
    assert thread_rkeys(keys[0], 5) == thread
    with pytest.raises(ValueError):
        thread_rkeys("not-a-tid", 2)


def test_check_post_refuses_before_any_network(tmp_path):
    with pytest.raises(PermanentChannelError, match="graphemes"):
        check_post(BlueskyPost("x" * 301))
    with pytest.raises(PermanentChannelError, match="self-label"):
        check_post(BlueskyPost("hi", labels=("scary",)))
    fake = tmp_path / "clip.mp4"
    fake.write_bytes(b"not a video at all")
    with pytest.raises(PermanentChannelError, match="video/mp4"):
        check_post(BlueskyPost("hi", video=VideoEmbed(fake, "alt")))
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff" * 1_000_000)
    with pytest.raises(PermanentChannelError, match="976.56 KB"):
        check_post(BlueskyPost("hi", images=(ImageEmbed(big, "alt"),)))
    small = tmp_path / "small.jpg"
    small.write_bytes(b"\xff" * 10)
    with pytest.raises(PermanentChannelError, match="at most 4"):
        check_post(BlueskyPost("hi", images=(ImageEmbed(small, "alt"),) * 5))


# --- against the real PDS --------------------------------------------------------------------

_handles = Counter()


def new_handle(prefix: str) -> str:
    _handles[prefix] += 1
    return f"{prefix}{_handles[prefix]}-{os.getpid()}.test"


class Poster:
    """An account on a PDS plus channels for it; the app password sits in an env var."""

    def __init__(self, server, workspace, monkeypatch, prefix="user"):
        self.server = server
        self.workspace = workspace
        self.did, self.handle, password = server.create_account(new_handle(prefix))
        self.env = f"TEST_BSKY_PW_{self.did.rsplit(':', 1)[1].upper()}"
        monkeypatch.setenv(self.env, password)
        self.password = password
        self.account = BlueskyAccount(self.handle, server.url, self.env)

    def channel(self, **kwargs) -> BlueskyChannel:
        return BlueskyChannel(self.account, self.workspace, **kwargs)

    def posts(self) -> list[dict]:
        return self.server.list_posts(self.did)


class CountingTransport(httpx.HTTPTransport):
    """Counts the XRPC methods called (observes only; the real server answers)."""

    def __init__(self):
        super().__init__()
        self.calls = Counter()
        self.answers = Counter()

    def handle_request(self, request):
        nsid = request.url.path.rsplit("/", 1)[-1]
        self.calls[nsid] += 1
        response = super().handle_request(request)
        self.answers[nsid, response.status_code] += 1
        return response


class FlakyTransport(httpx.HTTPTransport):
    """FAULT INJECTOR: the server receives and commits the `nth` call of `nsid`, then its reply
    is lost on the way back, as when a connection drops after the commit."""

    def __init__(self, nsid: str, nth: int = 1):
        super().__init__()
        self.nsid, self.nth, self.seen = nsid, nth, 0

    def handle_request(self, request):
        response = super().handle_request(request)
        if request.url.path.endswith(self.nsid):
            self.seen += 1
            if self.seen == self.nth:
                response.read()
                response.close()
                raise httpx.ReadError("reply lost (injected by FlakyTransport)", request=request)
        return response


@pytest.fixture
def poster(pds, workspace, monkeypatch):
    return Poster(pds, workspace, monkeypatch)


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


@pytest.fixture(scope="session")
def media(tmp_path_factory) -> Path:
    assert shutil.which("ffmpeg"), "ffmpeg is needed to make the test video"
    root = tmp_path_factory.mktemp("media")
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc=size=160x284:rate=10", "-f", "lavfi", "-i", "sine",
        "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac",
        str(root / "clip.mp4"),
    )  # fmt: skip
    ffmpeg("-f", "lavfi", "-i", "color=red:size=32x24", "-frames:v", "1", str(root / "red.png"))
    (root / "clip.en.vtt").write_text(
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nI dreamt of a door.\n\n"
        "00:00:01.000 --> 00:00:02.000\nIt opened onto the sea.\n",
        encoding="utf-8",
    )
    return root


@pytest.mark.pds
def test_text_post_with_facets_langs_and_mentions(pds, poster, workspace, monkeypatch):
    bob = Poster(pds, workspace, monkeypatch, prefix="bob")
    text = f"Sonho {FAMILY} #sonhos at https://example.org/ação with @{bob.handle} and @ghost.test"
    rkey = new_tid()
    with poster.channel() as channel:
        [ref] = channel.publish([BlueskyPost(text, langs=("pt", "en"))], [rkey])
    assert ref.rkey == rkey and ref.uri == f"at://{poster.did}/app.bsky.feed.post/{rkey}"

    record = pds.get_post(poster.did, rkey)
    assert record["cid"] == ref.cid
    value = record["value"]
    assert value["text"] == text and value["langs"] == ["pt", "en"]
    assert facet_texts(text, value["facets"]) == [
        ("#sonhos", "app.bsky.richtext.facet#tag"),
        ("https://example.org/ação", "app.bsky.richtext.facet#link"),
        (f"@{bob.handle}", "app.bsky.richtext.facet#mention"),
    ]
    assert value["facets"][2]["features"][0]["did"] == bob.did
    assert [r["uri"] for r in poster.posts()] == [ref.uri]


@pytest.mark.pds
def test_video_post_with_captions_alt_and_aspect_ratio(pds, poster, media):
    video = VideoEmbed(
        media / "clip.mp4",
        alt="A door opening onto the sea",
        aspect_ratio=(160, 284),
        captions=(Caption(media / "clip.en.vtt", "en"),),
    )
    post = BlueskyPost("A dream, told aloud.", langs=("en",), video=video)
    with poster.channel() as channel:
        [ref] = channel.publish([post], [new_tid()])

    embed = pds.get_post(poster.did, ref.rkey)["value"]["embed"]
    assert embed["$type"] == "app.bsky.embed.video"
    assert embed["alt"] == "A door opening onto the sea"
    assert (embed["aspectRatio"]["width"], embed["aspectRatio"]["height"]) == (160, 284)
    assert embed["video"]["mimeType"] == "video/mp4"
    assert embed["video"]["size"] == (media / "clip.mp4").stat().st_size
    [caption] = embed["captions"]
    assert caption["lang"] == "en" and caption["file"]["mimeType"] == "text/vtt"
    vtt = pds.get_blob(poster.did, caption["file"]["ref"]["$link"])
    assert vtt == (media / "clip.en.vtt").read_bytes()


@pytest.mark.pds
def test_image_post(pds, poster, media):
    image = ImageEmbed(media / "red.png", alt="A red square", aspect_ratio=(32, 24))
    with poster.channel() as channel:
        [ref] = channel.publish([BlueskyPost("Red.", images=(image,))], [new_tid()])
    embed = pds.get_post(poster.did, ref.rkey)["value"]["embed"]
    assert embed["$type"] == "app.bsky.embed.images"
    [img] = embed["images"]
    assert img["alt"] == "A red square" and img["image"]["mimeType"] == "image/png"
    assert (img["aspectRatio"]["width"], img["aspectRatio"]["height"]) == (32, 24)


def strong_ref(ref: dict) -> dict:
    assert ref.get("$type", "com.atproto.repo.strongRef") == "com.atproto.repo.strongRef"
    return {"uri": ref["uri"], "cid": ref["cid"]}


def assert_thread(pds, did: str, refs: list[PublishedRef]) -> None:
    root = {"uri": refs[0].uri, "cid": refs[0].cid}
    assert "reply" not in pds.get_post(did, refs[0].rkey)["value"]
    for previous, ref in zip(refs, refs[1:], strict=False):
        reply = pds.get_post(did, ref.rkey)["value"]["reply"]
        assert strong_ref(reply["root"]) == root
        assert strong_ref(reply["parent"]) == {"uri": previous.uri, "cid": previous.cid}


@pytest.mark.pds
def test_thread_of_three_and_self_labels(pds, poster):
    labels = labels_for_content_notes(["violence"])
    texts = ["First, the forest.", "Then the river.", "At last the house. #dreams"]
    posts = [BlueskyPost(t, langs=("en",), labels=labels) for t in texts]
    rkeys = thread_rkeys(new_tid(), 3)
    progress = []
    with poster.channel() as channel:
        refs = channel.publish(posts, rkeys, on_progress=progress.append)
    assert [r.rkey for r in refs] == rkeys
    assert progress == [refs[:1], refs[:2], refs]
    assert_thread(pds, poster.did, refs)
    for ref, text in zip(refs, texts, strict=True):
        value = pds.get_post(poster.did, ref.rkey)["value"]
        assert value["text"] == text
        assert value["labels"]["$type"] == "com.atproto.label.defs#selfLabels"
        assert [label["val"] for label in value["labels"]["values"]] == ["graphic-media"]
    assert len(poster.posts()) == 3


@pytest.mark.pds
def test_same_rkey_twice_posts_once(pds, poster):
    rkey = new_tid()
    post = BlueskyPost("Exactly once.")
    with poster.channel() as channel:
        [first] = channel.publish([post], [rkey])
    # A second run (say, after a crash before the delivery was marked published) with a new
    # channel: the PDS answers 500 to the duplicate rkey, and getRecord finds the first post.
    counting = CountingTransport()
    with poster.channel(transport=counting) as channel:
        [again] = channel.publish([post], [rkey])
    assert again == first
    assert counting.answers["com.atproto.repo.createRecord", 500] == 1
    assert counting.answers["com.atproto.repo.getRecord", 200] == 1
    assert [r["uri"] for r in poster.posts()] == [first.uri]


@pytest.mark.pds
def test_lost_reply_finds_the_committed_post(pds, poster):
    flaky = FlakyTransport("com.atproto.repo.createRecord")
    rkey = new_tid()
    with poster.channel(transport=flaky) as channel:
        [ref] = channel.publish([BlueskyPost("Did it land?")], [rkey])
    assert flaky.seen == 1
    assert pds.get_post(poster.did, rkey)["cid"] == ref.cid
    assert len(poster.posts()) == 1


@pytest.mark.pds
def test_thread_resumes_after_pds_stops_mid_thread(running_pds, poster):
    pds = running_pds
    posts = [BlueskyPost(f"Part {i} of the story.") for i in (1, 2, 3)]
    rkeys = thread_rkeys(new_tid(), 3)
    saved: list[list[PublishedRef]] = []

    def stop_after_first(refs):
        saved.append(refs)
        if len(refs) == 1:
            pds.stop()  # the server goes down between post 1 and post 2

    with poster.channel() as channel:
        with pytest.raises(TransientChannelError, match="cannot reach"):
            channel.publish(posts, rkeys, on_progress=stop_after_first)
        assert [len(s) for s in saved] == [1]
        pds.start()
        refs = channel.publish(posts, rkeys, already=saved[-1])
    assert refs[0] == saved[-1][0]
    assert_thread(pds, poster.did, refs)

    # Progress lost as well (crash before it was stored): still nothing is posted twice.
    with poster.channel() as channel:
        assert channel.publish(posts, rkeys) == refs
    assert sorted(r["uri"] for r in poster.posts()) == sorted(r.uri for r in refs)


@pytest.mark.pds
def test_pds_down_is_transient_then_success(running_pds, poster):
    pds = running_pds
    rkey = new_tid()
    with poster.channel(timeout=10) as channel:
        channel.lookup(rkey)  # logged in, session stored
        pds.stop()
        with pytest.raises(TransientChannelError) as caught:
            channel.publish([BlueskyPost("Anyone there?")], [rkey])
        assert caught.value.retry_after is None
        pds.start()
        [ref] = channel.publish([BlueskyPost("Anyone there?")], [rkey])
    assert [r["uri"] for r in poster.posts()] == [ref.uri]


@pytest.mark.pds
def test_rate_limited_login_is_transient_with_retry_after(pds_limited, workspace, monkeypatch):
    user = Poster(pds_limited, workspace, monkeypatch, prefix="limited")
    for _ in range(40):  # logins: 30 per 5 minutes per account
        response = pds_limited.xrpc(
            "POST",
            "com.atproto.server.createSession",
            json={"identifier": user.handle, "password": user.password},
        )
        if response.status_code == 429:
            break
        assert response.status_code == 200
    else:
        pytest.fail("the rate-limited PDS never answered 429")
    with user.channel() as channel:
        with pytest.raises(TransientChannelError, match="rate limit") as caught:
            channel.publish([BlueskyPost("Too soon.")], [new_tid()])
    assert 0 < caught.value.retry_after <= 300
    assert user.posts() == []


@pytest.mark.pds
def test_blob_over_the_limit_is_permanent(pds_limited, workspace, monkeypatch, media, tmp_path):
    user = Poster(pds_limited, workspace, monkeypatch, prefix="bigblob")
    big = tmp_path / "big.mp4"
    big.write_bytes((media / "clip.mp4").read_bytes() + b"\0" * 400_000)  # limit is 200 kB
    post = BlueskyPost("Too big.", video=VideoEmbed(big, "alt"))
    with user.channel() as channel:
        with pytest.raises(PermanentChannelError, match="too large"):
            channel.publish([post], [new_tid()])
    assert user.posts() == []


@pytest.mark.pds
def test_bad_app_password_is_permanent(poster, monkeypatch, workspace):
    monkeypatch.setenv(poster.env, "wrong-wrong-wrong-wrong")
    with poster.channel() as channel:
        with pytest.raises(PermanentChannelError, match="credentials"):
            channel.publish([BlueskyPost("Hello?")], [new_tid()])
        assert not channel.session_path.exists()
    assert poster.posts() == []


@pytest.mark.pds
def test_missing_app_password_names_the_variable(poster, monkeypatch):
    monkeypatch.delenv(poster.env)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    with poster.channel() as channel:
        with pytest.raises(PermanentChannelError) as caught:
            channel.publish([BlueskyPost("Hello?")], [new_tid()])
    assert poster.env in caught.value.hint


@pytest.mark.pds
def test_session_is_reused_private_and_without_password(poster, workspace):
    counting = CountingTransport()
    with poster.channel(transport=counting) as channel:
        channel.publish([BlueskyPost("One.")], [new_tid()])
        session_file = channel.session_path
    first_session = session_file.read_text()
    with poster.channel(transport=counting) as channel:
        channel.publish([BlueskyPost("Two.")], [new_tid()])
        channel.close()  # a closed channel opens again from the stored session
        channel.publish([BlueskyPost("Three.")], [new_tid()])
    assert counting.calls["com.atproto.server.createSession"] == 1
    assert counting.calls["com.atproto.repo.createRecord"] == 3
    assert session_file.read_text() == first_session

    assert stat.S_IMODE(session_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(workspace.state_dir.stat().st_mode) == 0o700
    assert session_file.is_relative_to(workspace.state_dir)
    for path in workspace.root.rglob("*"):
        if path.is_file():
            assert poster.password.encode() not in path.read_bytes(), path
    assert len(poster.posts()) == 3


@pytest.mark.pds
def test_expired_session_is_refreshed_or_replaced_by_a_login(pds, poster, monkeypatch):
    counting = CountingTransport()
    with poster.channel(transport=counting) as channel:
        channel.publish([BlueskyPost("Before.")], [new_tid()])
        session_file = channel.session_path
    stored = session_file.read_text()
    assert counting.calls["com.atproto.server.createSession"] == 1

    # Three hours later (the client's clock moves; the server is untouched) the access token
    # has expired: the SDK refreshes it and the refreshed session is stored.
    later = datetime.now(UTC) + timedelta(hours=3)
    monkeypatch.setattr(Client, "get_current_time", lambda self: later)
    with poster.channel(transport=counting) as channel:
        channel.publish([BlueskyPost("Refreshed.")], [new_tid()])
    assert counting.calls["com.atproto.server.refreshSession"] == 1
    assert counting.calls["com.atproto.server.createSession"] == 1
    refreshed = session_file.read_text()
    assert refreshed != stored

    # The server revokes the session: the refresh fails, and one new login replaces it.
    refresh_jwt = refreshed.split(":::")[3]
    revoked = pds.xrpc(
        "POST",
        "com.atproto.server.deleteSession",
        headers={"Authorization": f"Bearer {refresh_jwt}"},
    )
    assert revoked.status_code == 200
    with poster.channel(transport=counting) as channel:
        channel.publish([BlueskyPost("After.")], [new_tid()])
    assert counting.calls["com.atproto.server.createSession"] == 2
    assert session_file.read_text() not in (stored, refreshed)
    assert len(poster.posts()) == 3


@pytest.mark.pds
def test_delete_every_post_of_a_thread(pds, poster):
    posts = [BlueskyPost(t) for t in ("One.", "Two.", "Three.")]
    with poster.channel() as channel:
        refs = channel.publish(posts, thread_rkeys(new_tid(), 3))
        channel.delete(refs)
        assert poster.posts() == []
        channel.delete([r.uri for r in refs])  # twice is fine
        assert channel.lookup(refs[0].rkey) is None
