"""RSS/Atom feeds: what we write parses cleanly and round-trips; files are replaced atomically;
the public routes answer ETag/304 and serve only enclosed media; partner feeds are pulled from a
real HTTP server on 127.0.0.1."""

from __future__ import annotations

import functools
import http.server
import os
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest
import sqlalchemy as sa
from lxml import etree
from starlette.applications import Starlette
from starlette.testclient import TestClient

from narratives.channels.rss.render import PODCAST_NS, item_guid, media_name
from narratives.core.campaigns import get_campaign
from narratives.core.errors import PermanentChannelError
from narratives.store.schema import deliveries, feed_items
from narratives.web.public import routes
from narratives.workflow import feeds
from tests.delivery_fixtures import add_draft, rss_content, write_media

MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(range(256)) * 8
VTT = b"WEBVTT\n\n00:00.000 --> 00:02.000\nI dreamt there were two lines.\n"


def deliver(ctx, draft_id: int, state: str, published_at: datetime | None) -> int:
    from narratives.store.schema import drafts

    now = datetime.now(UTC)
    with ctx.db.begin() as conn:
        draft = conn.execute(sa.select(drafts).where(drafts.c.id == draft_id)).one()
        res = conn.execute(
            deliveries.insert().values(
                draft_id=draft_id,
                campaign=draft.campaign,
                channel="rss",
                state=state,
                scheduled_at=published_at or now,
                published_at=published_at,
                created_at=now,
                updated_at=now,
            )
        )
    return res.inserted_primary_key[0]


@pytest.fixture
def published(ctx, workspace):
    """Two published items (one with video and captions), plus items that must not appear."""
    video = write_media(workspace.root, "media/work/a/video-emotional-equity-vertical.mp4", MP4)
    vtt = write_media(workspace.root, "media/work/a/video-emotional-equity-vertical.vtt", VTT)
    write_media(workspace.root, "media/brand/emotional-equity-logo.png", b"\x89PNG\r\n\x1a\nlogo")
    first = add_draft(
        ctx,
        content=rss_content(
            "The two lines",
            content="Full transcript: two lines, one rope.",
            enclosure=video,
            captions=vtt,
        ),
    )
    second = add_draft(ctx, content=rss_content("Night shift", summary="She sleeps by day."))
    t1 = datetime(2026, 11, 2, 17, 0, tzinfo=UTC)
    deliver(ctx, first, "published", t1)
    deliver(ctx, second, "published", t1 + timedelta(days=2))
    for state in ("scheduled", "withdrawn", "cancelled", "failed"):
        deliver(ctx, add_draft(ctx, content=rss_content(f"hidden {state}")), state, None)
    return {"first": first, "second": second, "video": video, "vtt": vtt}


def narrative_of(ctx, draft_id):
    from narratives.store.schema import drafts

    with ctx.db.connect() as conn:
        return conn.execute(
            sa.select(drafts.c.narrative_id).where(drafts.c.id == draft_id)
        ).scalar()


def test_rss_and_atom_parse_cleanly_and_round_trip(ctx, workspace, published):
    files = feeds.write_campaign_feeds(ctx, "emotional-equity")
    campaign = get_campaign(workspace, "emotional-equity")
    guid1 = item_guid(campaign, narrative_of(ctx, published["first"]))
    size = len(MP4)
    for path, version in ((files.rss, "rss20"), (files.atom, "atom10")):
        parsed = feedparser.parse(path.read_bytes())
        assert not parsed.bozo, parsed.get("bozo_exception")
        assert parsed.version == version
        assert parsed.feed.title == "Emotional Equity: stories"
        assert [e.title for e in parsed.entries] == ["Night shift", "The two lines"]
        e = parsed.entries[1]
        assert e.id == guid1
        assert e.summary == "A dreamer waits in the line for people who cannot pay."
        # RSS content:encoded is HTML, Atom content is marked as text.
        text = "Full transcript: two lines, one rope."
        assert e.content[0].value == (f"<p>{text}</p>" if version == "rss20" else text)
        enclosure = next(link for link in e.links if link.rel == "enclosure")
        assert int(enclosure.length) == size and enclosure.type == "video/mp4"
        assert e.published_parsed[:5] == (2026, 11, 2, 17, 0)
        assert "enclosure" not in [link.rel for link in parsed.entries[0].links]
    rss = etree.fromstring(files.rss.read_bytes())
    ns = {"podcast": PODCAST_NS}
    transcripts = rss.findall(".//item/podcast:transcript", ns)
    assert len(transcripts) == 1 and transcripts[0].get("type") == "text/vtt"
    vtt_name = media_name(published["vtt"])
    assert transcripts[0].get("url").endswith(f"/feeds/media/{vtt_name}")
    assert rss.findtext("channel/image/url").endswith(".png")
    assert rss.find("channel/item/guid").get("isPermaLink") == "false"
    atom = feedparser.parse(files.atom.read_bytes())
    related = [lk for lk in atom.entries[1].links if lk.rel == "related"]
    assert related and related[0].type == "text/vtt"


def test_builds_are_stable_and_guids_survive_rebuilds(ctx, published):
    first = feeds.write_campaign_feeds(ctx, "emotional-equity")
    before = first.rss.read_bytes(), first.atom.read_bytes()
    again = feeds.write_campaign_feeds(ctx, "emotional-equity")
    assert (again.rss.read_bytes(), again.atom.read_bytes()) == before
    ids = [e.id for e in feedparser.parse(before[0]).entries]
    add = add_draft(ctx, content=rss_content("A third story"))
    deliver(ctx, add, "published", datetime(2026, 11, 10, tzinfo=UTC))
    later = feedparser.parse(feeds.write_campaign_feeds(ctx, "emotional-equity").rss.read_bytes())
    assert [e.id for e in later.entries][1:] == ids


def test_feed_files_are_replaced_atomically(ctx, workspace, published, monkeypatch):
    files = feeds.write_campaign_feeds(ctx, "emotional-equity")
    old = files.rss.read_bytes()
    inode = files.rss.stat().st_ino
    deliver(ctx, add_draft(ctx, content=rss_content("Newest")), "published", datetime.now(UTC))

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        feeds.write_campaign_feeds(ctx, "emotional-equity")
    assert files.rss.read_bytes() == old  # the old feed is whole
    assert [p.name for p in workspace.feeds_dir.iterdir() if p.name.endswith(".tmp")] == []
    monkeypatch.undo()
    feeds.write_campaign_feeds(ctx, "emotional-equity")
    assert b"Newest" in files.rss.read_bytes()
    assert files.rss.stat().st_ino != inode  # a new file renamed over the old one


def test_public_routes_etag_and_not_modified(ctx, workspace, published):
    feeds.write_campaign_feeds(ctx, "emotional-equity")
    app = Starlette(routes=routes)
    app.state.workspace = workspace
    client = TestClient(app)
    r = client.get("/feeds/emotional-equity.xml")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/rss+xml")
    assert not feedparser.parse(r.content).bozo
    etag, modified = r.headers["etag"], r.headers["last-modified"]
    assert (
        client.get("/feeds/emotional-equity.xml", headers={"If-None-Match": etag}).status_code
        == 304
    )
    r304 = client.get("/feeds/emotional-equity.xml", headers={"If-Modified-Since": modified})
    assert r304.status_code == 304 and r304.content == b""
    stale = client.get("/feeds/emotional-equity.xml", headers={"If-None-Match": '"other"'})
    assert stale.status_code == 200
    atom = client.get("/feeds/emotional-equity.atom")
    assert atom.headers["content-type"].startswith("application/atom+xml")

    name = media_name(published["video"])
    media = client.get(f"/feeds/media/{name}")
    assert media.status_code == 200 and media.content == MP4
    again = client.get(f"/feeds/media/{name}", headers={"If-None-Match": media.headers["etag"]})
    assert again.status_code == 304
    # Nothing else is public: unknown names, paths, other files, other campaigns.
    for path in (
        f"/feeds/media/{'0' * 32}.mp4",
        "/feeds/media/..%2F..%2Fnarratives.db",
        f"/feeds/media/{media_name('narratives.db')}",
        "/feeds/nope.xml",
        "/feeds/emotional-equity.media.json",
        "/narratives.db",
        "/media/work/a/video-emotional-equity-vertical.mp4",
    ):
        assert client.get(path).status_code == 404, path


def test_withdrawn_item_media_stops_being_public(ctx, workspace, published):
    feeds.write_campaign_feeds(ctx, "emotional-equity")
    app = Starlette(routes=routes)
    app.state.workspace = workspace
    name = media_name(published["video"])
    assert TestClient(app).get(f"/feeds/media/{name}").status_code == 200
    with ctx.db.begin() as conn:
        conn.execute(
            deliveries.update()
            .where(deliveries.c.draft_id == published["first"])
            .values(state="withdrawn")
        )
    feeds.write_campaign_feeds(ctx, "emotional-equity")
    assert TestClient(app).get(f"/feeds/media/{name}").status_code == 404


def test_static_export_rewrites_links_and_copies_media(ctx, workspace, published, tmp_path):
    out = tmp_path / "site"
    written = feeds.build_static(ctx, out, base_url="https://cdn.example/stories/")
    rss_path = out / "feeds" / "emotional-equity.xml"
    assert rss_path in written and (out / "feeds" / "neural-mandate.atom") in written
    parsed = feedparser.parse(rss_path.read_bytes())
    assert not parsed.bozo
    enclosure = parsed.entries[1].enclosures[0]
    assert enclosure.href.startswith("https://cdn.example/stories/feeds/media/")
    copied = out / "feeds" / "media" / enclosure.href.rsplit("/", 1)[1]
    assert copied.read_bytes() == MP4
    assert b"127.0.0.1" not in rss_path.read_bytes()
    assert sorted(p.name for p in (out / "feeds").iterdir() if p.is_file()) == [
        "emotional-equity.atom",
        "emotional-equity.xml",
        "neural-mandate.atom",
        "neural-mandate.xml",
    ]
    # The workspace's own feeds still point at the server.
    feeds.write_campaign_feeds(ctx, "emotional-equity")
    assert b"cdn.example" not in (workspace.feeds_dir / "emotional-equity.xml").read_bytes()


# --- partner feeds --------------------------------------------------------------------------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def partner(tmp_path):
    """A partner site on 127.0.0.1: a podcast feed with audio, a 404 and a mislabelled file."""
    root = tmp_path / "partner"
    (root / "audio").mkdir(parents=True)
    wav = b"RIFF" + b"\x00" * 40 + b"data" + b"\x01\x02" * 500
    (root / "audio" / "first story.wav").write_bytes(wav)
    (root / "audio" / "second.mp3").write_bytes(b"ID3" + b"\x00" * 700)
    (root / "audio" / "page.txt").write_text("not audio")
    (root / "broken.xml").write_text("<rss><channel><title>Broken<item></channel>")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root))
    )
    base = f"http://127.0.0.1:{server.server_address[1]}"

    def item(guid, href, kind="audio/mpeg"):
        return (
            f"<item><title>{guid}</title><guid isPermaLink='false'>{guid}</guid>"
            f"<enclosure url='{href}' length='1' type='{kind}'/></item>"
        )

    (root / "feed.xml").write_text(
        "<?xml version='1.0' encoding='UTF-8'?>"
        "<rss version='2.0' xmlns:itunes='http://www.itunes.com/dtds/podcast-1.0.dtd'>"
        "<channel><title>Partner stories</title><link>http://127.0.0.1/</link>"
        "<description>d</description>"
        + item("p-1", f"{base}/audio/first%20story.wav", "audio/wav")
        + item("p-2", "/audio/second.mp3")  # relative to the feed
        + item("p-3", f"{base}/audio/gone.mp3")
        + item("p-4", f"{base}/audio/page.txt")
        + "<item><title>text only</title><guid>p-5</guid></item>"
        "</channel></rss>"
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield base, wav
    server.shutdown()
    server.server_close()


def test_pull_downloads_new_enclosures_once(ctx, workspace, partner):
    base, wav = partner
    # What a download killed over an hour ago left behind: removed by the next one.
    inbox = workspace.media_dir / "inbox"
    inbox.mkdir(parents=True)
    killed = inbox / ".0123-old.wav.abc.part"
    killed.write_bytes(b"half")
    os.utime(killed, (0, 0))
    report = feeds.pull(ctx, f"{base}/feed.xml", timeout=10, allow_private=True)
    assert report.title == "Partner stories"
    names = sorted(p.name.split("-", 1)[1] for p in report.downloaded)
    assert names == ["first-story.wav", "second.mp3"]
    for p in report.downloaded:
        assert p.parent == workspace.media_dir / "inbox" and p.is_file()
    assert wav in {p.read_bytes() for p in report.downloaded}
    failed = dict(report.failed)
    assert set(failed) == {"p-3", "p-4"}
    assert "404" in failed["p-3"] and "content-type text/plain" in failed["p-4"]
    assert not [p for p in (workspace.media_dir / "inbox").iterdir() if p.name.startswith(".")]

    with ctx.db.connect() as conn:
        rows = {r.guid: r.status for r in conn.execute(sa.select(feed_items))}
    assert rows == {"p-1": "downloaded", "p-2": "downloaded", "p-3": "failed", "p-4": "failed"}

    second = feeds.pull(ctx, f"{base}/feed.xml", timeout=10, allow_private=True)
    assert second.downloaded == [] and sorted(second.skipped) == ["p-1", "p-2"]
    assert len(list((workspace.media_dir / "inbox").iterdir())) == 2
    with ctx.db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(feed_items)).scalar() == 4


def test_pull_malformed_feed_is_a_clear_error(ctx, workspace, partner):
    base, _ = partner
    with pytest.raises(PermanentChannelError, match="not a well-formed RSS or Atom feed"):
        feeds.pull(ctx, f"{base}/broken.xml", timeout=10, allow_private=True)
    with pytest.raises(PermanentChannelError, match="HTTP 404"):
        feeds.pull(ctx, f"{base}/missing.xml", timeout=10, allow_private=True)
    assert not (workspace.media_dir / "inbox").exists()


def test_pull_enforces_the_size_limit(ctx, workspace, partner):
    base, _ = partner
    report = feeds.pull(ctx, f"{base}/feed.xml", timeout=10, max_bytes=800, allow_private=True)
    failed = dict(report.failed)
    assert "limit" in failed["p-1"]
    assert [p.name.endswith("second.mp3") for p in report.downloaded] == [True]


def test_cli_pull_without_processing(ctx, workspace, partner):
    import json

    from click.testing import CliRunner

    from narratives.cli import cli

    base, _ = partner
    res = CliRunner().invoke(
        cli, ["feeds", "pull", f"{base}/feed.xml", "--no-process", "--allow-private", "--json"]
    )
    assert res.exit_code == 1  # two items failed
    out = json.loads(res.output)
    assert len(out["downloaded"]) == 2 and {f["guid"] for f in out["failed"]} == {"p-3", "p-4"}
    assert all(Path(p).is_file() for p in out["downloaded"])
    assert os.environ["NARRATIVES_HOME"] == str(workspace.root)
