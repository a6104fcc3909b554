"""Videos through Bluesky's video service (issue 19, item 4), tested against a STAND-IN for the
service (tests/video_standin.py: no open-source one exists) that stores the video on the real
local PDS with the account's service token, as the real one does."""

from __future__ import annotations

import re
from collections import Counter

import httpx
import pytest
import sqlalchemy as sa

from narratives.channels.bluesky.client import BlueskyChannel
from narratives.channels.bluesky.post import (
    BlueskyAccount,
    BlueskyPost,
    Caption,
    VideoEmbed,
    VideoUpload,
    check_post,
    mp4_seconds,
)
from narratives.channels.bluesky.tids import new_tid
from narratives.core.campaigns import load_campaign_file
from narratives.core.errors import (
    ConfigError,
    PermanentChannelError,
    RateLimited,
    TransientChannelError,
)
from narratives.store.schema import delivery_attempts
from narratives.workflow.channels import open_publishers
from narratives.workflow.publishing import publish_delivery
from tests.delivery_fixtures import bluesky_content
from tests.test_publish_bluesky import PASSWORD_ENV, Sky, make_video
from tests.video_standin import VideoServiceStandIn

pytestmark = pytest.mark.pds


@pytest.fixture
def standin(pds):
    server = VideoServiceStandIn(pds.url).start()
    yield server
    server.stop()


@pytest.fixture
def sky(pds, workspace, monkeypatch):
    return Sky(pds, workspace, monkeypatch)


class Counting(httpx.HTTPTransport):
    def __init__(self):
        super().__init__()
        self.calls = Counter()
        self.uploads: list[str] = []

    def handle_request(self, request):
        nsid = request.url.path.rsplit("/", 1)[1]
        self.calls[nsid] += 1
        if nsid == "com.atproto.repo.uploadBlob":
            self.uploads.append(request.headers["content-type"])
        return super().handle_request(request)


def _channel(sky, pds, standin, workspace, **video):
    transport = Counting()
    settings = VideoUpload(mode="service", service_url=standin.url, poll=0.05, **video)
    account = BlueskyAccount(sky.handle, pds.url, PASSWORD_ENV)
    return BlueskyChannel(account, workspace, transport=transport, video=settings), transport


def _post(workspace, text="A video story."):
    video, vtt = make_video(workspace)
    return BlueskyPost(
        text,
        video=VideoEmbed(
            workspace.root / video,
            alt="An audiogram.",
            aspect_ratio=(160, 284),
            captions=(Caption(workspace.root / vtt, "en"),),
        ),
    )


def test_a_video_goes_through_the_video_service_and_is_embedded(sky, pds, standin, workspace):
    post = _post(workspace)
    channel, transport = _channel(sky, pds, standin, workspace)
    with channel:
        (ref,) = channel.publish([post], [new_tid()])
    record = pds.get_post(sky.did, ref.rkey)["value"]
    embed = record["embed"]
    assert embed["$type"] == "app.bsky.embed.video"
    cid = embed["video"]["ref"]["$link"]
    assert pds.get_blob(sky.did, cid) == post.video.path.read_bytes()
    assert embed["captions"][0]["lang"] == "en"
    # The video went to the service; only the captions were uploaded directly.
    assert transport.uploads == ["text/vtt"]
    assert standin.calls[:2] == ["app.bsky.video.getUploadLimits", "app.bsky.video.uploadVideo"]
    assert set(standin.calls[2:]) == {"app.bsky.video.getJobStatus"}
    limits_token, upload_token = standin.tokens
    assert (limits_token["aud"], limits_token["lxm"]) == (
        standin.did,
        "app.bsky.video.getUploadLimits",
    )
    pds_did = pds.xrpc("GET", "com.atproto.server.describeServer").json()["did"]
    assert (upload_token["aud"], upload_token["lxm"]) == (pds_did, "com.atproto.repo.uploadBlob")
    assert limits_token["iss"] == upload_token["iss"] == sky.did


@pytest.mark.parametrize(
    ("code", "error", "says"),
    [
        ("validation_failure", PermanentChannelError, "refused the file"),
        ("encoding_failure", PermanentChannelError, "could not re-encode"),
        ("pds_upload_unsupported_blob_size", PermanentChannelError, "does not take a video"),
        ("pds_upload_failure", TransientChannelError, "could not store the video"),
    ],
)
def test_a_failed_job_is_a_clear_error_and_nothing_is_posted(
    sky, pds, standin, workspace, code, error, says
):
    standin.fail["clip.mp4"] = code
    channel, _ = _channel(sky, pds, standin, workspace)
    with channel, pytest.raises(error, match=says) as caught:
        channel.publish([_post(workspace)], [new_tid()])
    assert code in str(caught.value) and caught.value.hint
    if error is TransientChannelError:
        assert not isinstance(caught.value, PermanentChannelError)
    assert pds.list_posts(sky.did) == []


def test_the_daily_limit_waits_without_counting_an_attempt(ctx, sky, pds, standin, workspace):
    standin.daily_videos = 1
    path = workspace.campaigns_dir / "sky-test.toml"
    text = path.read_text()
    text = re.sub(
        r"(password_env = \"[^\"]+\"\n)",
        rf'\1video_upload = "service"\nvideo_service = "{standin.url}"\n',
        text,
        count=1,
    )
    path.write_text(text)
    video, vtt = make_video(workspace)
    first = sky.schedule(ctx, bluesky_content("First video.", video=video, captions=vtt))
    second = sky.schedule(ctx, bluesky_content("Second video.", video=video, captions=vtt))
    with open_publishers(ctx) as publishers:
        assert publish_delivery(ctx, first.id, publishers).status == "published"
        out = publish_delivery(ctx, second.id, publishers)
    assert out.status == "retry"
    assert "daily video limit" in out.error
    assert out.delivery.attempts == 0
    assert (out.delivery.retry_at - out.delivery.updated_at).total_seconds() > 0
    with ctx.db.connect() as conn:
        kinds = conn.execute(
            sa.select(delivery_attempts.c.outcome).where(
                delivery_attempts.c.delivery_id == second.id
            )
        ).scalars()
        assert list(kinds) == ["rate_limited"]
    assert [p["value"]["text"] for p in pds.list_posts(sky.did)] == ["First video."]


def test_daily_limit_from_the_channel_is_rate_limited(sky, pds, standin, workspace):
    standin.daily_videos = 0
    channel, _ = _channel(sky, pds, standin, workspace)
    with channel, pytest.raises(RateLimited, match="daily video limit") as caught:
        channel.publish([_post(workspace)], [new_tid()])
    assert caught.value.retry_after and 0 < caught.value.retry_after <= 86400


def test_campaign_video_limits_are_checked_before_any_upload(workspace):
    post = _post(workspace)
    assert mp4_seconds(post.video.path) == pytest.approx(2.0, abs=0.2)
    check_post(post, VideoUpload(max_seconds=3))
    with pytest.raises(PermanentChannelError, match="lasts 2 s; the limit is 1 s"):
        check_post(post, VideoUpload(max_seconds=1))
    with pytest.raises(PermanentChannelError, match="the limit is 1,000"):
        check_post(post, VideoUpload(max_bytes=1000))
    with pytest.raises(PermanentChannelError, match="at most 0 caption files"):
        check_post(post, VideoUpload(max_captions=0))

    path = workspace.campaigns_dir / "emotional-equity.toml"
    text = path.read_text().replace(
        "[channels.bluesky.gates]",
        "[channels.bluesky.video_limits]\nmax_bytes = 200_000_000\n\n[channels.bluesky.gates]",
    )
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_campaign_file(path)
    assert "channels.bluesky.video_limits.max_bytes" in str(err.value)
    assert str(path) in str(err.value)


def test_a_direct_video_upload_is_streamed_not_read_into_memory(sky, pds, workspace, tmp_path):
    import os
    import tracemalloc

    big = tmp_path / "big.mp4"
    with big.open("wb") as fh:  # 24 MB: an MP4 header, then noise
        fh.write(b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom")
        for _ in range(24):
            fh.write(os.urandom(1 << 20))
    transport = Counting()
    account = BlueskyAccount(sky.handle, pds.url, PASSWORD_ENV)
    with BlueskyChannel(account, workspace, transport=transport) as channel:
        channel._ensure_login()
        tracemalloc.start()
        blob = channel._upload(big, "video/mp4")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert blob.size == big.stat().st_size
    assert peak < 8 << 20, f"peak {peak:,} bytes: the file was read whole"
    assert blob.mime_type == "video/mp4"
