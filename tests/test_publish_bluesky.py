"""Publishing to a real Bluesky PDS on 127.0.0.1 through the scheduler: text, thread and video
read back from the server; the server stopped mid-run; the scheduler process SIGKILLed during a
batch of 50 and restarted, with every post on the server exactly once."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

import pytest
import sqlalchemy as sa

from narratives.core.clock import utcnow
from narratives.records.delivery import Delivery
from narratives.store.delivery_queries import get_delivery, list_deliveries
from narratives.store.schema import deliveries
from narratives.workflow import scheduling
from narratives.workflow.channels import default_publishers
from narratives.workflow.publishing import Backoff
from narratives.workflow.scheduler import SchedulerService
from tests.delivery_fixtures import add_draft, bluesky_content

pytestmark = pytest.mark.pds

PASSWORD_ENV = "NARRATIVES_BSKY_SKY_TEST"


class Sky:
    """A test campaign posting as a fresh account on the local PDS."""

    def __init__(self, pds, workspace, monkeypatch):
        self.pds = pds
        self.workspace = workspace
        self.handle = f"sky-{secrets.token_hex(4)}.test"
        account = pds.create_account(self.handle)
        self.did = account.did
        monkeypatch.setenv(PASSWORD_ENV, account.app_password)
        self.env_password = account.app_password
        text = (workspace.campaigns_dir / "emotional-equity.toml").read_text()
        text = text.replace('slug = "emotional-equity"', 'slug = "sky-test"')
        text = re.sub(r'handle = "[^"]+"', f'handle = "{self.handle}"', text)
        text = re.sub(r'service = "[^"]+"', f'service = "{pds.url}"', text)
        text = re.sub(r'password_env = "[^"]+"', f'password_env = "{PASSWORD_ENV}"', text)
        (workspace.campaigns_dir / "sky-test.toml").write_text(text)

    def schedule(self, ctx, content, delta=timedelta(seconds=-1)) -> Delivery:
        draft = add_draft(ctx, "sky-test", "bluesky", content=content)
        when = utcnow() + delta
        return scheduling.schedule(ctx, draft, at=when, actor="kai", now=when)


@pytest.fixture
def sky(pds, workspace, monkeypatch):
    return Sky(pds, workspace, monkeypatch)


def wait_for(predicate, what: str, timeout: float = 120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    pytest.fail(f"gave up waiting for {what}")


def delivery(ctx, delivery_id) -> Delivery:
    with ctx.db.connect() as conn:
        return get_delivery(conn, delivery_id)


def make_video(workspace) -> tuple[str, str]:
    assert shutil.which("ffmpeg"), "ffmpeg is needed to make the test video"
    folder = workspace.root / "media" / "work" / "sky"
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
         "testsrc=size=160x284:rate=10", "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
         str(folder / "clip.mp4")],
        check=True,
    )  # fmt: skip
    (folder / "clip.vtt").write_text(
        "WEBVTT\n\n00:00:00.000 --> 00:00:02.000\nI dreamt of a door.\n", encoding="utf-8"
    )
    return "media/work/sky/clip.mp4", "media/work/sky/clip.vtt"


def test_text_thread_and_video_through_the_scheduler(ctx, sky, workspace):
    text = sky.schedule(ctx, bluesky_content("One small story. #EmotionalEquity"))
    thread = sky.schedule(ctx, bluesky_content("Part one of a dream.", "Part two.", "The end."))
    video_rel, vtt_rel = make_video(workspace)
    video = sky.schedule(
        ctx, bluesky_content("Watch this dream.", video=video_rel, captions=vtt_rel)
    )

    service = SchedulerService(ctx, sync_interval=0.5)
    service.start()
    try:
        for d in (text, thread, video):
            wait_for(lambda d=d: delivery(ctx, d.id).state == "published", f"delivery {d.id}")
    finally:
        service.stop()

    posted = sky.pds.get_post(sky.did, text.rkey)
    assert posted["value"]["text"] == "One small story. #EmotionalEquity"
    assert posted["value"]["langs"] == ["en"]
    [tag] = posted["value"]["facets"]
    assert tag["features"][0]["tag"] == "EmotionalEquity"

    keys = [p["rkey"] for p in thread.posts]
    records = [sky.pds.get_post(sky.did, k) for k in keys]
    assert [r["value"]["text"] for r in records] == [
        "Part one of a dream.",
        "Part two.",
        "The end.",
    ]
    assert "reply" not in records[0]["value"]
    for prev, rec in zip(records, records[1:], strict=False):
        assert rec["value"]["reply"]["parent"]["uri"] == prev["uri"]
        assert rec["value"]["reply"]["root"]["uri"] == records[0]["uri"]
    stored = delivery(ctx, thread.id).posts
    assert [p["uri"] for p in stored] == [r["uri"] for r in records]
    # The delivery keeps what went out (feeds and takedowns read it, not the draft).
    with ctx.db.connect() as conn:
        sent = conn.execute(
            sa.select(deliveries.c.content).where(deliveries.c.id == thread.id)
        ).scalar_one()
    assert [p["text"] for p in sent["posts"]] == ["Part one of a dream.", "Part two.", "The end."]

    embed = sky.pds.get_post(sky.did, video.rkey)["value"]["embed"]
    assert embed["$type"] == "app.bsky.embed.video"
    assert embed["video"]["mimeType"] == "video/mp4"
    assert embed["alt"].startswith("An audiogram")
    assert embed["captions"][0]["lang"] == "en"
    assert len(sky.pds.list_posts(sky.did)) == 5


def test_pds_stopped_mid_run_retries_then_succeeds(ctx, sky, running_pds):
    ctx.settings.scheduler.max_attempts = 100
    first = sky.schedule(ctx, bluesky_content("Before the outage."))
    service = SchedulerService(
        ctx, sync_interval=0.5, backoff=Backoff(base=0.3, factor=2, cap=1.5, jitter=0.3)
    )
    service.start()
    try:
        wait_for(lambda: delivery(ctx, first.id).state == "published", "the first post")
        running_pds.stop()
        second = sky.schedule(ctx, bluesky_content("During the outage."))
        wait_for(lambda: delivery(ctx, second.id).attempts >= 2, "failed attempts")
        failing = delivery(ctx, second.id)
        assert failing.state in ("failed", "publishing")
        running_pds.start()
        wait_for(lambda: delivery(ctx, second.id).state == "published", "the retry to land")
    finally:
        service.stop()
    texts = [r["value"]["text"] for r in sky.pds.list_posts(sky.did)]
    assert sorted(texts) == ["Before the outage.", "During the outage."]
    with ctx.db.connect() as conn:
        from narratives.store.schema import delivery_attempts

        outcomes = [
            r.outcome
            for r in conn.execute(
                delivery_attempts.select()
                .where(delivery_attempts.c.delivery_id == second.id)
                .order_by(delivery_attempts.c.id)
            )
        ]
    assert outcomes[0] == "transient_error" and outcomes[-1] == "published"
    assert outcomes.count("published") == 1


def _scheduler(workspace, sky) -> subprocess.Popen:
    env = {**os.environ, "NARRATIVES_HOME": str(workspace.root), PASSWORD_ENV: sky.env_password}
    return subprocess.Popen(
        [sys.executable, "-c", "from narratives.cli import main; main()", "scheduler", "run",
         "--sync-interval", "0.5"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip


def test_sigkill_during_a_batch_then_restart_posts_each_exactly_once(ctx, sky, workspace):
    batch = [sky.schedule(ctx, bluesky_content(f"Story {i:02d} of the batch.")) for i in range(50)]
    ids = {d.id for d in batch}

    def published() -> int:
        with ctx.db.connect() as conn:
            return sum(
                1
                for d in list_deliveries(conn, campaign="sky-test")
                if d.id in ids and d.state == "published"
            )

    first = _scheduler(workspace, sky)
    try:
        wait_for(lambda: len(sky.pds.list_posts(sky.did)) >= 5, "the batch to start")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    at_kill = published()
    assert at_kill < 50, "the batch finished before the kill; the test proved nothing"

    second = _scheduler(workspace, sky)
    try:
        wait_for(lambda: published() == 50, "every delivery after the restart", timeout=300)
        second.terminate()
        out, _ = second.communicate(timeout=60)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, out

    records = sky.pds.list_posts(sky.did)
    texts = Counter(r["value"]["text"] for r in records)
    assert len(records) == 50
    assert set(texts.values()) == {1}
    assert set(texts) == {f"Story {i:02d} of the batch." for i in range(50)}
    rkeys = {r["uri"].rsplit("/", 1)[1] for r in records}
    assert rkeys == {d.rkey for d in batch}
    # Each post went out with its campaign's reply and quote controls, exactly once (issue 19).
    for collection in ("app.bsky.feed.threadgate", "app.bsky.feed.postgate"):
        gates = sky.pds.xrpc(
            "GET",
            "com.atproto.repo.listRecords",
            params={"repo": sky.did, "collection": collection, "limit": 100},
        ).json()["records"]
        assert sorted(g["uri"].rsplit("/", 1)[1] for g in gates) == sorted(rkeys), collection


def test_a_half_posted_thread_past_the_missed_limit_is_finished_not_missed(ctx, sky, monkeypatch):
    """Post 1 of 3 lands, then an error; the editor moves it (attempts restart at 0) and the
    scheduler is down past the campaign's missed limit. It must finish the thread on restart,
    not mark it missed (which would leave it half posted, and a re-send would post twice)."""
    from narratives.channels.bluesky import client as bs
    from narratives.core.errors import TransientChannelError
    from narratives.workflow import publishing

    d = sky.schedule(ctx, bluesky_content("Part one.", "Part two.", "Part three."))
    real = bs.BlueskyChannel._publish_one
    calls = [0]

    def second_fails(self, post, rkey, reply, *args, **kwargs):  # fault: the PDS hiccups once
        calls[0] += 1
        if calls[0] == 2:
            raise TransientChannelError("PDS hiccup")
        return real(self, post, rkey, reply, *args, **kwargs)

    monkeypatch.setattr(bs.BlueskyChannel, "_publish_one", second_fails)
    out = publishing.publish_delivery(ctx, d.id, default_publishers(ctx), actor="t")
    assert out.status == "retry" and len(sky.pds.list_posts(sky.did)) == 1
    monkeypatch.setattr(bs.BlueskyChannel, "_publish_one", real)
    scheduling.move(ctx, d.id, at=utcnow() + timedelta(minutes=5), actor="kai")
    with ctx.db.begin() as conn:  # the scheduler was down for 13 h (the limit is 12 h)
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id == d.id)
            .values(scheduled_at=utcnow() - timedelta(hours=13))
        )

    service = SchedulerService(ctx, sync_interval=0.5)
    report = service.start()
    try:
        assert d.id not in report.missed
        wait_for(lambda: delivery(ctx, d.id).state == "published", "the thread to finish", 60)
    finally:
        service.stop()
    texts = Counter(r["value"]["text"] for r in sky.pds.list_posts(sky.did))
    assert texts == {"Part one.": 1, "Part two.": 1, "Part three.": 1}


def test_a_revoked_session_is_replaced_by_a_login_in_a_long_running_publisher(
    ctx, sky, monkeypatch
):
    """The same publishers (as in a scheduler that has run for hours): after the server
    revokes the session, the next post logs in again instead of failing for good."""
    from datetime import UTC, datetime

    from atproto import Client

    from narratives.workflow import publishing

    publishers = default_publishers(ctx)
    first = sky.schedule(ctx, bluesky_content("First."))
    assert publishing.publish_delivery(ctx, first.id, publishers, actor="t").status == "published"
    channel = next(iter(publishers["bluesky"]._channels.values()))
    refresh_jwt = channel.session_path.read_text().split(":::")[3]
    revoked = sky.pds.xrpc(
        "POST",
        "com.atproto.server.deleteSession",
        headers={"Authorization": f"Bearer {refresh_jwt}"},
    )
    assert revoked.status_code == 200
    later = datetime.now(UTC) + timedelta(hours=3)  # the access token has expired too
    monkeypatch.setattr(Client, "get_current_time", lambda self: later)
    for text in ("Second.", "Third."):
        d = sky.schedule(ctx, bluesky_content(text))
        out = publishing.publish_delivery(ctx, d.id, publishers, actor="t")
        assert out.status == "published", delivery(ctx, d.id).last_error
    texts = sorted(r["value"]["text"] for r in sky.pds.list_posts(sky.did))
    assert texts == ["First.", "Second.", "Third."]
