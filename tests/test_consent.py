"""The consent ledger and its enforcement: records and audit, sidecar files, the checks review,
scheduling and publishing make, and withdrawal/expiry taking everything down again, end to end
against the real local PDS and the campaign's real feed files."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import threading
from datetime import UTC, date, datetime, timedelta

import feedparser
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from narratives.channels.bluesky.publisher import BlueskyPublisher
from narratives.channels.rss.render import item_guid
from narratives.cli import cli
from narratives.core.campaigns import get_campaign
from narratives.core.clock import utcnow
from narratives.core.errors import (
    ConfigError,
    ConsentError,
    InvalidState,
    NotFound,
    PermanentChannelError,
    PermissionDenied,
    UsageError,
)
from narratives.policy import consent, sidecar
from narratives.store import audit
from narratives.store.schema import deliveries, drafts, narratives
from narratives.workflow import publishing, takedown
from narratives.workflow.channels import default_publishers
from narratives.workflow.feeds import write_campaign_feeds
from tests.review_fixtures import add_user

_n = itertools.count(1)


def add_narrative(ctx, label: str = "story.m4a") -> str:
    nid = hashlib.sha256(f"{label}/{next(_n)}/{id(ctx)}".encode()).hexdigest()
    now = utcnow()
    with ctx.db.begin() as conn:
        conn.execute(
            narratives.insert().values(
                id=nid, created_at=now, updated_at=now, size_bytes=10, label=label
            )
        )
    return nid


def add_draft(ctx, nid: str, channel: str, content: dict, campaign="emotional-equity") -> int:
    now = utcnow()
    with ctx.db.begin() as conn:
        return conn.execute(
            drafts.insert().values(
                narrative_id=nid,
                campaign=campaign,
                channel=channel,
                state="approved",
                template=f"posts/{channel}.j2",
                template_hash="0" * 64,
                generated=content,
                content=content,
                created_at=now,
                updated_at=now,
            )
        ).inserted_primary_key[0]


def thread(*texts: str) -> dict:
    return {
        "posts": [{"text": t} for t in texts],
        "langs": ["en"],
        "labels": [],
        "video": None,
        "captions": None,
        "alt": "",
        "aspect_ratio": None,
        "content_warning": None,
    }


def feed_item(title: str) -> dict:
    return {
        "title": title,
        "summary": "A dreamer waits in the line for people who cannot pay.",
        "content": "I dreamt there were two lines.",
        "link": "https://emotional-equity.example/stories/two-lines",
        "enclosure": None,
        "captions": None,
    }


@pytest.fixture(autouse=True)
def kai_is_an_admin(ctx):
    """The actor of these tests; an admin, since some of them widen a consent (the rule
    itself is tested in test_only_an_admin_widens_a_consent)."""
    add_user(ctx, "kai", role="admin")


def give(ctx, nid, channels=("bluesky", "rss"), **kw):
    kw.setdefault("given_by", "Ana Example")
    kw.setdefault("method", "form")
    return takedown.set_consent(ctx, nid, channels=list(channels), actor="kai", **kw)


def delivery_state(ctx, delivery_id: int) -> str:
    with ctx.db.connect() as conn:
        return conn.execute(
            sa.select(deliveries.c.state).where(deliveries.c.id == delivery_id)
        ).scalar_one()


# ----------------------------------------------------------------------------- ledger


def test_only_an_admin_widens_a_consent(ctx):
    """Editors record a first consent, narrow it and withdraw it; allowing more (a channel,
    the name, a later end, consent again after a withdrawal) takes an admin."""
    add_user(ctx, "ed")  # an editor
    nid = add_narrative(ctx)

    def by(actor, **kw):
        kw.setdefault("given_by", "Ana Example")
        kw.setdefault("method", "form")
        kw.setdefault("channels", ["rss"])
        return takedown.set_consent(ctx, nid, actor=actor, **kw)

    by("ed", expires_at=date(2030, 1, 1))
    for wider, why in [
        ({"channels": ["rss", "bluesky"]}, "adds bluesky"),
        ({"anonymous": False, "expires_at": date(2030, 1, 1)}, "names the narrator"),
        ({"expires_at": date(2031, 1, 1)}, "ends later"),
        ({}, "ends later"),  # no end at all
    ]:
        with pytest.raises(PermissionDenied, match=why):
            by("ed", **wider)
        with pytest.raises(PermissionDenied, match="not a user"):
            by("mallory", **wider)
    assert consent.get_consent(ctx, nid).channels == ("rss",)
    by("ed", expires_at=date(2029, 6, 1), notes="narrower: an editor may")
    by("kai", channels=["rss", "bluesky"], anonymous=False)  # kai is an admin here
    takedown.withdraw(ctx, nid, actor="ed", reason="asked")
    later = utcnow() + timedelta(seconds=1)
    with pytest.raises(PermissionDenied, match="withdrawn"):
        by("ed", given_at=later)
    assert by("kai", given_at=later).status() == "active"


def test_set_get_and_every_change_audited(ctx):
    nid = add_narrative(ctx)
    assert consent.get_consent(ctx, nid) is None
    c = give(ctx, nid, channels=["rss", "bluesky"], expires_at=date(2099, 1, 1), notes="ok")
    assert c.channels == ("bluesky", "rss")  # canonical order
    assert c.anonymous is True  # the safe default
    assert c.expires_at == datetime(2099, 1, 1, tzinfo=UTC)  # a date: start of day, UTC
    assert c.status() == "active"
    assert consent.get_consent(ctx, nid) == c

    give(ctx, nid, channels=["rss"], anonymous=False)
    with ctx.db.connect() as conn:
        rows = audit.history(conn, "consent", nid)
    assert [r["action"] for r in rows] == ["consent.set", "consent.set"]
    assert rows[0]["before"] is None and rows[0]["after"]["channels"] == ["bluesky", "rss"]
    assert rows[1]["before"]["channels"] == ["bluesky", "rss"]
    assert rows[1]["after"]["channels"] == ["rss"] and rows[1]["after"]["anonymous"] is False
    assert all(r["actor"] == "kai" for r in rows)


@pytest.mark.parametrize(
    "changes, key",
    [
        ({"method": "email"}, "method"),
        ({"channels": []}, "channels"),
        ({"channels": ["mastodon"]}, "channels"),
        ({"given_by": "  "}, "given_by"),
    ],
)
def test_invalid_consent_names_the_field(ctx, changes, key):
    nid = add_narrative(ctx)
    args = {"given_by": "Ana", "method": "form", "channels": ["rss"], **changes}
    with pytest.raises(ConfigError) as err:
        takedown.set_consent(ctx, nid, actor="kai", **args)
    assert re.search(rf"^\s+{key}(\.\d+)?: ", str(err.value), re.M), str(err.value)
    assert consent.get_consent(ctx, nid) is None


def test_expiry_must_follow_the_date_given_and_narrative_must_exist(ctx):
    nid = add_narrative(ctx)
    with pytest.raises(UsageError, match="expiry"):
        give(ctx, nid, given_at=date(2026, 5, 1), expires_at=date(2026, 4, 1))
    with pytest.raises(NotFound):
        give(ctx, "a" * 64)


# ----------------------------------------------------------------------------- sidecars


SIDECAR = """\
given_by = "Ana Example"
given_at = 2026-03-01T10:00:00Z
method = "recording"
channels = ["bluesky"]
anonymous = false
expires_at = 2030-01-01
notes = "Agreed on tape at the Dreamscape Assembly."
"""


def test_sidecar_beside_recording(ctx, tmp_path):
    recording = tmp_path / "story.m4a"
    recording.write_bytes(b"audio")
    assert sidecar.sidecar_path(recording) == tmp_path / "story.consent.toml"
    assert sidecar.load_sidecar(recording) is None
    nid = add_narrative(ctx)
    assert sidecar.import_sidecar(ctx, nid, recording) is None

    (tmp_path / "story.consent.toml").write_text(SIDECAR, encoding="utf-8")
    parsed = sidecar.load_sidecar(recording)
    assert parsed is not None and parsed.method == "recording" and parsed.anonymous is False
    c = sidecar.import_sidecar(ctx, nid, recording)
    assert c.given_by == "Ana Example" and c.channels == ("bluesky",)
    assert c.given_at == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert c.expires_at == datetime(2030, 1, 1, tzinfo=UTC)
    with ctx.db.connect() as conn:
        [row] = audit.history(conn, "consent", nid)
    assert row["action"] == "consent.import" and row["actor"] == "import"
    assert row["detail"].endswith("story.consent.toml")

    # Re-processing the folder changes nothing, even when the file now says more.
    (tmp_path / "story.consent.toml").write_text(
        SIDECAR.replace('["bluesky"]', '["bluesky", "rss"]'), encoding="utf-8"
    )
    assert sidecar.import_sidecar(ctx, nid, recording).channels == ("bluesky",)
    # An explicit import replaces it.
    assert takedown.import_consent(ctx, nid, recording, actor="import", replace=True).channels == (
        "bluesky",
        "rss",
    )


@pytest.mark.parametrize(
    "text, needle",
    [
        (SIDECAR + 'pitch = "deep"\n', "pitch: Extra inputs are not permitted"),
        (SIDECAR.replace('"recording"', '"email"'), "method:"),
        (SIDECAR.replace("anonymous = false", 'anonymous = "maybe"'), "anonymous:"),
        (SIDECAR.replace('given_by = "Ana Example"\n', ""), "given_by: Field required"),
        ("given_by = \n", "cannot read consent"),
    ],
)
def test_bad_sidecars_name_file_and_key(tmp_path, text, needle):
    path = tmp_path / "story.consent.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        sidecar.load_sidecar(tmp_path / "story.m4a")
    assert str(path) in str(err.value)
    assert needle in str(err.value)


def test_withdrawn_consent_is_not_revived_by_an_old_sidecar(ctx, tmp_path):
    recording = tmp_path / "story.m4a"
    (tmp_path / "story.consent.toml").write_text(SIDECAR, encoding="utf-8")
    nid = add_narrative(ctx)
    sidecar.import_sidecar(ctx, nid, recording)
    takedown.withdraw(ctx, nid, actor="kai", reason="the narrator asked")
    assert sidecar.import_sidecar(ctx, nid, recording).status() == "withdrawn"
    with pytest.raises(ConsentError, match="withdrawn"):
        takedown.import_consent(ctx, nid, recording, actor="import", replace=True)
    # A consent given after the withdrawal does replace it.
    later = utcnow() + timedelta(seconds=1)
    assert give(ctx, nid, given_at=later).status() == "active"


# ----------------------------------------------------------------------------- checks


def test_checks_name_the_reason(ctx):
    nid = add_narrative(ctx)
    rss = add_draft(ctx, nid, "rss", feed_item("x"))
    with ctx.db.connect() as conn:
        with pytest.raises(ConsentError, match="no consent is recorded") as err:
            consent.check_approvable(conn, nid, "rss")
        assert "narrative consent set" in err.value.hint
        with pytest.raises(ConsentError, match="no consent is recorded"):
            consent.check_publishable(conn, rss, "rss")

    give(ctx, nid, channels=["bluesky"], expires_at=datetime(2030, 1, 1, tzinfo=UTC))
    with ctx.db.connect() as conn:
        assert consent.check_approvable(conn, nid, "bluesky").given_by == "Ana Example"
        assert consent.check(conn, nid, "bluesky").channels == ("bluesky",)
        with pytest.raises(ConsentError, match=r"does not cover rss \(only: bluesky\)"):
            consent.check_approvable(conn, nid, "rss")
        with pytest.raises(ConsentError, match="does not cover rss"):
            consent.check_publishable(conn, rss, "rss")
        with pytest.raises(ConsentError, match="expired on 2030-01-01"):
            consent.check_approvable(
                conn, nid, "bluesky", now=datetime(2030, 1, 1, 0, 0, 1, tzinfo=UTC)
            )
        with pytest.raises(NotFound):
            consent.check_publishable(conn, 99999, "rss")

    takedown.withdraw(ctx, nid, actor="kai", reason="changed her mind")
    with ctx.db.connect() as conn:
        with pytest.raises(ConsentError, match="withdrawn on"):
            consent.check_approvable(conn, nid, "bluesky")
        assert consent.is_anonymous(conn, nid) is True


def test_publish_refuses_without_consent(ctx):
    nid = add_narrative(ctx)
    draft = add_draft(ctx, nid, "rss", feed_item("No consent yet"))
    # Refused when scheduling already; the publish-time check has its own test.
    with pytest.raises(ConsentError, match="no consent is recorded"):
        publishing.publish_draft_now(ctx, draft, actor="kai")
    assert not (ctx.workspace.feeds_dir / "emotional-equity.xml").exists()


# ----------------------------------------------------------------------------- takedown


def feed_guids(ctx, slug="emotional-equity") -> list[str]:
    parsed = feedparser.parse((ctx.workspace.feeds_dir / f"{slug}.xml").read_bytes())
    assert not parsed.bozo, parsed.get("bozo_exception")
    return [e.id for e in parsed.entries]


def test_expiry_takes_down_feed_items_and_cancels_waiting(ctx):
    nid = add_narrative(ctx)
    other = add_narrative(ctx)
    give(ctx, nid, channels=["rss", "bluesky"], expires_at=utcnow() + timedelta(days=1))
    give(ctx, other, channels=["rss"])
    mine = add_draft(ctx, nid, "rss", feed_item("Mine"))
    theirs = add_draft(ctx, other, "rss", feed_item("Theirs"))
    waiting = add_draft(ctx, nid, "bluesky", thread("Later."))
    for d in (mine, theirs):
        assert publishing.publish_draft_now(ctx, d, actor="kai").status == "published"
    from narratives.workflow import scheduling

    scheduled = scheduling.schedule(ctx, waiting, at=utcnow() + timedelta(days=3), actor="kai")
    campaign = get_campaign(ctx.workspace, "emotional-equity")
    assert set(feed_guids(ctx)) == {item_guid(campaign, nid), item_guid(campaign, other)}

    assert takedown.expire_due(ctx, utcnow()) == []  # not yet
    reports = takedown.expire_due(ctx, utcnow() + timedelta(days=2))
    assert len(reports) == 1
    report = reports[0]
    assert report.action == "expire" and report.complete
    assert report.cancelled == [scheduled.id]
    assert len(report.withdrawn) == 1 and report.feeds_rebuilt == ["emotional-equity"]
    assert feed_guids(ctx) == [item_guid(campaign, other)]
    assert delivery_state(ctx, scheduled.id) == "cancelled"
    assert delivery_state(ctx, report.withdrawn[0]) == "withdrawn"
    # Nothing left to do: the next run is a no-op.
    assert takedown.expire_due(ctx, utcnow() + timedelta(days=2)) == []
    with ctx.db.connect() as conn:
        actions = [r["action"] for r in audit.history(conn, "consent", nid)]
        assert "consent.expire.takedown" in actions
        assert [r["action"] for r in audit.history(conn, "delivery", scheduled.id)][-1] == "cancel"


@pytest.fixture
def bluesky_campaign(pds, workspace, monkeypatch):
    """The emotional-equity campaign posting as a fresh account on the local PDS."""
    handle = f"consent{next(_n)}-{id(workspace) % 10_000}.test"
    did, handle, password = pds.create_account(handle)
    monkeypatch.setenv("TEST_CONSENT_BSKY_PW", password)
    path = workspace.campaigns_dir / "emotional-equity.toml"
    text = path.read_text(encoding="utf-8")
    text = re.sub(r'(?m)^handle = ".*"$', f'handle = "{handle}"', text)
    text = re.sub(r'(?m)^service = ".*"$', f'service = "{pds.url}"', text)
    text = re.sub(r'(?m)^password_env = ".*"$', 'password_env = "TEST_CONSENT_BSKY_PW"', text)
    path.write_text(text, encoding="utf-8")
    return did


@pytest.mark.pds
def test_withdrawal_end_to_end(ctx, pds, bluesky_campaign):
    did = bluesky_campaign
    nid = add_narrative(ctx)
    give(ctx, nid, channels=["bluesky", "rss"])
    post = add_draft(ctx, nid, "bluesky", thread("I dreamt of two lines.", "Only one moved."))
    item = add_draft(ctx, nid, "rss", feed_item("The two lines"))
    later = add_draft(ctx, nid, "bluesky", thread("A later post."), campaign="neural-mandate")
    out = [publishing.publish_draft_now(ctx, d, actor="kai") for d in (post, item)]
    assert [o.status for o in out] == ["published", "published"], [o.error for o in out]
    from narratives.workflow import scheduling

    waiting = scheduling.schedule(ctx, later, at=utcnow() + timedelta(days=7), actor="kai")

    rkeys = [p["rkey"] for p in out[0].delivery.posts]
    assert len(rkeys) == 2
    on_server = {r["uri"].rsplit("/", 1)[1] for r in pds.list_posts(did)}
    assert set(rkeys) <= on_server
    campaign = get_campaign(ctx.workspace, "emotional-equity")
    assert item_guid(campaign, nid) in feed_guids(ctx)

    result = CliRunner(env={"NARRATIVES_USER": "kai"}).invoke(
        cli,
        ["consent", "withdraw", nid[:12], "--reason", "narrator asked", "--yes", "--json"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["complete"] and report["errors"] == []
    assert report["cancelled"] == [waiting.id]
    assert sorted(report["withdrawn"]) == sorted(o.delivery.id for o in out)
    assert sorted(u.rsplit("/", 1)[1] for u in report["deleted_posts"]) == sorted(rkeys)
    assert report["feeds_rebuilt"] == ["emotional-equity"]

    # Gone from the server (listRecords and getRecord), the feed, and the delivery states.
    remaining = {r["uri"].rsplit("/", 1)[1] for r in pds.list_posts(did)}
    assert not remaining & set(rkeys)
    assert all(pds.get_post(did, k) is None for k in rkeys)
    assert item_guid(campaign, nid) not in feed_guids(ctx)
    assert [delivery_state(ctx, o.delivery.id) for o in out] == ["withdrawn", "withdrawn"]
    assert delivery_state(ctx, waiting.id) == "cancelled"
    with ctx.db.connect() as conn:
        log = audit.history(conn, "delivery", out[0].delivery.id)
        assert log[-1]["action"] == "withdraw" and len(log[-1]["after"]["deleted"]) == 2
        actions = [r["action"] for r in audit.history(conn, "consent", nid)]
        assert actions[-2:] == ["consent.withdraw", "consent.withdraw.takedown"]
        with pytest.raises(ConsentError, match="withdrawn"):
            consent.check_publishable(conn, post, "bluesky")

    # Nothing can go out again, and a second withdrawal finds nothing left to do.
    with pytest.raises(ConsentError, match="withdrawn"):
        publishing.publish_draft_now(ctx, item, actor="kai")
    assert takedown.withdraw(ctx, nid, actor="kai", reason="again").deliveries == []
    write_campaign_feeds(ctx, campaign)
    assert item_guid(campaign, nid) not in feed_guids(ctx)


@pytest.mark.pds
def test_takedown_interrupted_by_an_outage_is_finished_later(ctx, running_pds, bluesky_campaign):
    did = bluesky_campaign
    nid = add_narrative(ctx)
    give(ctx, nid, channels=["bluesky"])
    draft = add_draft(ctx, nid, "bluesky", thread("One post, then silence."))
    out = publishing.publish_draft_now(ctx, draft, actor="kai")
    assert out.status == "published", out.error
    rkey = out.delivery.posts[0]["rkey"]

    running_pds.stop()
    report = takedown.withdraw(ctx, nid, actor="kai", reason="narrator asked")
    assert not report.complete and report.withdrawn == []
    assert delivery_state(ctx, out.delivery.id) == "withdrawing"  # still live, not done

    running_pds.start()
    assert running_pds.get_post(did, rkey) is not None
    [finished] = takedown.expire_due(ctx)
    assert finished.complete and finished.withdrawn == [out.delivery.id]
    assert running_pds.get_post(did, rkey) is None
    assert takedown.expire_due(ctx) == []


class FaultInjectingBlueskyPublisher(BlueskyPublisher):
    """The real Bluesky publisher with a fault injector, named as such: the thread is held just
    before post `hold_before` is sent (a request slow in flight), with the earlier posts on the
    server but not yet recorded, until `release` is set. A real server cannot pause on demand."""

    def __init__(self, ctx, hold_before: int | None = None, fail_before: int | None = None):
        super().__init__(ctx.workspace)
        self.hold_before = hold_before
        self.fail_before = fail_before
        self.reached = threading.Event()
        self.release = threading.Event()

    def _hold(self, sent: int) -> None:
        if sent == self.fail_before:
            raise PermanentChannelError("injected: Bluesky rejected the post")
        if sent == self.hold_before:
            self.reached.set()
            assert self.release.wait(60), "the test never released the publisher"

    def _channel(self, campaign):
        channel, lock = super()._channel(campaign)
        injector = self

        class Holding:
            def publish(self, posts, rkeys, already=(), on_progress=None, **kwargs):
                injector._hold(len(already))

                def progress(refs):
                    injector._hold(len(refs))
                    on_progress(refs)

                return channel.publish(
                    posts, rkeys, already=already, on_progress=progress, **kwargs
                )

        return Holding(), lock


def _publish_in_background(ctx, delivery_id, publisher) -> tuple[threading.Thread, dict]:
    out: dict = {}
    t = threading.Thread(
        target=lambda: out.update(
            o=publishing.publish_delivery(ctx, delivery_id, {"bluesky": publisher})
        )
    )
    t.start()
    assert publisher.reached.wait(60), "the publish never reached the hold"
    return t, out


def _schedule_now(ctx, draft: int):
    from narratives.workflow import scheduling

    now = utcnow()
    return scheduling.schedule(ctx, draft, at=now, actor="kai", now=now)


@pytest.mark.pds
def test_withdrawal_while_a_post_is_in_flight_takes_it_down(ctx, pds, bluesky_campaign):
    """F1: the withdrawal's lookups run before the in-flight post lands; the publisher then
    finds its delivery withdrawing, and takes the post down itself."""
    did = bluesky_campaign
    nid = add_narrative(ctx)
    give(ctx, nid, channels=["bluesky"])
    d = _schedule_now(ctx, add_draft(ctx, nid, "bluesky", thread("In flight.")))
    publisher = FaultInjectingBlueskyPublisher(ctx, hold_before=0)
    t, out = _publish_in_background(ctx, d.id, publisher)

    report = takedown.withdraw(ctx, nid, actor="kai", reason="narrator asked")
    [taken] = report.deliveries
    assert taken.after == "withdrawing" and taken.deleted == []  # its publisher still holds it
    assert delivery_state(ctx, d.id) == "withdrawing"
    publisher.release.set()
    t.join(120)

    assert out["o"].status == "withdrawn"
    assert delivery_state(ctx, d.id) == "withdrawn"
    rkey = d.posts[0]["rkey"]
    assert pds.get_post(did, rkey) is None
    assert rkey not in {r["uri"].rsplit("/", 1)[1] for r in pds.list_posts(did)}
    assert takedown.expire_due(ctx) == []


@pytest.mark.pds
def test_withdrawal_mid_thread_stops_the_thread_and_takes_it_down(ctx, pds, bluesky_campaign):
    """F2: withdrawn after the first post of three landed: the publisher posts nothing more,
    records no failure, and every post is gone from the server."""
    did = bluesky_campaign
    nid = add_narrative(ctx)
    give(ctx, nid, channels=["bluesky"])
    draft = add_draft(ctx, nid, "bluesky", thread("One.", "Two.", "Three."))
    d = _schedule_now(ctx, draft)
    publisher = FaultInjectingBlueskyPublisher(ctx, hold_before=1)
    t, out = _publish_in_background(ctx, d.id, publisher)
    rkeys = [p["rkey"] for p in d.posts]
    assert pds.get_post(did, rkeys[0]) is not None  # landed, not yet recorded

    report = takedown.withdraw(ctx, nid, actor="kai", reason="narrator asked")
    assert [u.rsplit("/", 1)[1] for u in report.deleted_posts] == rkeys[:1]
    publisher.release.set()
    t.join(120)

    assert out["o"].status == "withdrawn"
    assert delivery_state(ctx, d.id) == "withdrawn"
    assert all(pds.get_post(did, k) is None for k in rkeys)
    with ctx.db.connect() as conn:
        actions = [r["action"] for r in audit.history(conn, "delivery", d.id)]
    assert "publish_failed" not in actions and "publish" not in actions
    assert takedown.expire_due(ctx) == []


@pytest.mark.pds
def test_attempted_cancelled_and_shortened_threads_are_taken_down(ctx, pds, bluesky_campaign):
    """F5: a post that landed for an attempt later cancelled, and the posts of a thread edited
    to be shorter, are still found and deleted by a withdrawal."""
    from narratives.workflow import scheduling

    did = bluesky_campaign
    nid, other = add_narrative(ctx), add_narrative(ctx)
    give(ctx, nid, channels=["bluesky"])
    give(ctx, other, channels=["bluesky"])
    # An attempt that landed its post and was killed before recording it, then cancelled.
    lost = _schedule_now(ctx, add_draft(ctx, other, "bluesky", thread("Landed, unrecorded.")))
    first = publishing.publish_delivery(ctx, lost.id, default_publishers(ctx))
    assert first.status == "published", first.error
    unrecorded = [{**p, "uri": None, "cid": None} for p in lost.posts]
    with ctx.db.begin() as conn:
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id == lost.id)
            .values(state="failed", retry_at=None, posts=unrecorded)
        )
    assert scheduling.cancel(ctx, lost.id, actor="kai").state == "cancelled"

    # A thread of three that fails for good after two posts went out: it cannot be cancelled
    # (that would orphan them); edited down to one post and moved, it keeps the dropped keys.
    draft = add_draft(ctx, nid, "bluesky", thread("First.", "Second.", "Third."))
    d = _schedule_now(ctx, draft)
    failing = FaultInjectingBlueskyPublisher(ctx, fail_before=2)
    assert publishing.publish_delivery(ctx, d.id, {"bluesky": failing}).status == "failed"
    with pytest.raises(InvalidState, match="on Bluesky already"):
        scheduling.cancel(ctx, d.id, actor="kai")
    with ctx.db.begin() as conn:
        conn.execute(
            drafts.update().where(drafts.c.id == draft).values(content=thread("Only one now."))
        )
    moved = scheduling.move(ctx, d.id, at=utcnow(), actor="kai", now=utcnow())
    done = publishing.publish_delivery(ctx, moved.id, default_publishers(ctx))
    assert done.status == "published", done.error
    rkeys = [p["rkey"] for p in d.posts]
    assert [p["rkey"] for p in done.delivery.posts] == rkeys  # the dropped keys are kept
    assert pds.get_post(did, rkeys[1]) is not None

    for narrative, delivery in ((other, lost), (nid, d)):
        report = takedown.withdraw(ctx, narrative, actor="kai", reason="narrator asked")
        assert report.complete and report.withdrawn == [delivery.id]
    gone = [lost.posts[0]["rkey"], *rkeys]
    assert all(pds.get_post(did, k) is None for k in gone)
    assert takedown.expire_due(ctx) == []


@pytest.mark.pds
def test_a_missed_retry_whose_post_landed_is_taken_down(ctx, pds, bluesky_campaign):
    """A retry that waited past the campaign's missed limit is marked missed, though its first
    attempt may have landed a post without recording it: a withdrawal still finds and deletes it."""
    from datetime import timedelta

    did = bluesky_campaign
    nid = add_narrative(ctx)
    give(ctx, nid, channels=["bluesky"])
    d = _schedule_now(ctx, add_draft(ctx, nid, "bluesky", thread("Landed, then missed.")))
    assert publishing.publish_delivery(ctx, d.id, default_publishers(ctx)).status == "published"
    rkey = d.posts[0]["rkey"]
    assert pds.get_post(did, rkey) is not None
    long_ago = utcnow() - timedelta(days=30)
    with ctx.db.begin() as conn:  # as if the attempt was killed before it recorded the post
        conn.execute(
            deliveries.update()
            .where(deliveries.c.id == d.id)
            .values(
                state="failed",
                scheduled_at=long_ago,
                retry_at=long_ago + timedelta(minutes=1),
                posts=[{**p, "uri": None, "cid": None} for p in d.posts],
            )
        )
    late = publishing.publish_delivery(ctx, d.id, default_publishers(ctx))
    assert late.status == "missed" and delivery_state(ctx, d.id) == "missed"

    report = takedown.withdraw(ctx, nid, actor="kai", reason="narrator asked")
    assert report.complete and report.withdrawn == [d.id], report
    assert pds.get_post(did, rkey) is None
    assert delivery_state(ctx, d.id) == "withdrawn"


# ----------------------------------------------------------------------------- CLI


def run(*args: str, input: str | None = None):
    env = {"NARRATIVES_USER": "kai"}
    return CliRunner(env=env).invoke(cli, list(args), input=input, catch_exceptions=False)


def test_cli_set_show_import_withdraw(ctx, tmp_path):
    nid = add_narrative(ctx)
    r = run(
        "consent", "set", nid[:10], "--by", "Ana", "--method", "in_person",
        "--channels", "bluesky,rss", "--named", "--expires", "2031-05-01", "--notes", "hi",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    r = run("consent", "show", nid[:10], "--json")
    shown = json.loads(r.output)
    assert shown["consent"]["channels"] == ["bluesky", "rss"]
    assert shown["consent"]["anonymous"] is False and shown["consent"]["status"] == "active"
    assert shown["consent"]["expires_at"].startswith("2031-05-01T00:00:00")

    bad = run("consent", "set", nid[:10], "--by", "Ana", "--method", "form", "--channels", "fax")
    assert bad.exit_code == 2 and "unknown channel fax" in bad.output

    sidecar = tmp_path / "story.consent.toml"
    sidecar.write_text(SIDECAR, encoding="utf-8")
    assert run("consent", "import", nid[:10], str(sidecar)).exit_code == 0
    assert consent.get_consent(ctx, nid).method == "recording"

    no = run("consent", "withdraw", nid[:10], "--reason", "asked", input="n\n")
    assert no.exit_code == 1 and consent.get_consent(ctx, nid).status() == "active"
    yes = run("consent", "withdraw", nid[:10], "--reason", "asked", "--yes")
    assert yes.exit_code == 0, yes.output
    assert consent.get_consent(ctx, nid).status() == "withdrawn"
    # Re-importing the old sidecar is a consent error (exit code 6), not a silent revival.
    again = run("consent", "import", nid[:10], str(sidecar))
    assert again.exit_code == 6 and "withdrawn" in again.output


def test_cli_says_what_a_narrower_consent_took_down(ctx):
    nid = add_narrative(ctx)
    give(ctx, nid, channels=["bluesky", "rss"])
    rss = add_draft(ctx, nid, "rss", feed_item("Mine"))
    out = publishing.publish_draft_now(ctx, rss, actor="kai")
    assert out.status == "published"
    r = run("consent", "set", nid[:10], "--by", "Ana", "--method", "form", "--channels", "bluesky")
    assert r.exit_code == 0, r.output
    assert "It covers less: taken down 1 published, cancelled 0 scheduled" in r.output
