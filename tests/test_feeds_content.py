"""What our feeds show: the content as published (not later edits), text XML can carry, plain
text as proper HTML in content:encoded; and the static export keeps its media in step."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import feedparser
import lxml.html
import sqlalchemy as sa

from narratives.channels.rss.render import media_name
from narratives.store.schema import deliveries, drafts
from narratives.workflow import feeds
from tests.delivery_fixtures import add_draft, rss_content, write_media
from tests.test_feeds import MP4, VTT, deliver

T0 = datetime(2026, 11, 2, 17, 0, tzinfo=UTC)


def set_delivery_content(ctx, delivery_id: int, content: dict) -> None:
    with ctx.db.begin() as conn:
        conn.execute(
            deliveries.update().where(deliveries.c.id == delivery_id).values(content=content)
        )


def edit_draft(ctx, draft_id: int, **changes) -> None:
    """What an edit does to the row: new content, and back to review."""
    with ctx.db.begin() as conn:
        content = conn.execute(
            sa.select(drafts.c.content).where(drafts.c.id == draft_id)
        ).scalar_one()
        conn.execute(
            drafts.update()
            .where(drafts.c.id == draft_id)
            .values(content={**content, **changes}, state="pending_review")
        )


def entries(path):
    parsed = feedparser.parse(path.read_bytes())
    assert not parsed.bozo, parsed.get("bozo_exception")
    return parsed.entries


def test_an_unreviewed_edit_does_not_reach_the_feed(ctx):
    published = rss_content("Approved title", content="Approved text.")
    draft = add_draft(ctx, content=published)
    delivery = deliver(ctx, draft, "published", T0)
    set_delivery_content(ctx, delivery, published)
    # A delivery published before deliveries.content existed shows its draft.
    old = add_draft(ctx, content=rss_content("Old item"))
    deliver(ctx, old, "published", T0 - timedelta(days=1))

    edit_draft(ctx, draft, title="UNREVIEWED edit naming Robert Smith", content="Unreviewed.")
    files = feeds.write_campaign_feeds(ctx, "emotional-equity")
    for path in (files.rss, files.atom):
        got = entries(path)
        assert [e.title for e in got] == ["Approved title", "Old item"]
        assert "Approved text." in got[0].content[0].value
    assert b"Robert Smith" not in files.rss.read_bytes() + files.atom.read_bytes()


def test_characters_xml_cannot_carry_are_dropped(ctx):
    bad = "\x0b\x00\ufffe\ud800"
    draft = add_draft(
        ctx,
        content=rss_content(
            f"Story B {bad}pasted",
            summary=f"sum{bad}mary",
            content=f"con{bad}tent",
            link=f"https://emotional-equity.example/{bad}b",
        ),
    )
    deliver(ctx, draft, "published", T0)
    deliver(ctx, add_draft(ctx, content=rss_content("Story A")), "published", T0 - timedelta(1))
    files = feeds.write_campaign_feeds(ctx, "emotional-equity")
    for path in (files.rss, files.atom):
        b, a = entries(path)
        assert (b.title, b.summary, a.title) == ("Story B pasted", "summary", "Story A")
        assert lxml.html.fromstring(b.content[0].value).text_content() == "content"


def test_content_encoded_is_escaped_html_in_paragraphs(ctx):
    text = 'x ]]> y & <z> "q"\nsame paragraph\n\n  \nSecond <b>not bold</b>'
    summary = "a < b & c > d"
    draft = add_draft(
        ctx, content=rss_content("Rich & poor <b>lines</b>", summary=summary, content=text)
    )
    deliver(ctx, draft, "published", T0)
    files = feeds.write_campaign_feeds(ctx, "emotional-equity")

    (rss,) = entries(files.rss)
    assert rss.title == "Rich & poor <b>lines</b>" and rss.summary == summary
    assert rss.content[0].type == "text/html"
    html = lxml.html.fragment_fromstring(rss.content[0].value, create_parent="div")
    assert [p.text_content() for p in html.findall("p")] == [
        'x ]]> y & <z> "q"\nsame paragraph',
        "Second <b>not bold</b>",
    ]
    assert html.find(".//b") is None  # text stays text

    (atom,) = entries(files.atom)
    assert atom.content[0].type == "text/plain"
    assert atom.content[0].value == text.strip()


# --- static export -------------------------------------------------------------------------


def media_files(out):
    """The exported media but the campaigns' logos (channel images, always there)."""
    media = (out / "feeds" / "media").iterdir()
    return {p.name: p.read_bytes() for p in media if p.suffix != ".png"}


def test_static_export_recopies_changed_media_and_drops_withdrawn(ctx, workspace, tmp_path):
    video = write_media(workspace.root, "media/work/a/video.mp4", MP4)
    vtt = write_media(workspace.root, "media/work/a/video.vtt", VTT)
    kept = write_media(workspace.root, "media/work/b/video.mp4", MP4[::-1])
    first = add_draft(ctx, content=rss_content(enclosure=video, captions=vtt))
    deliver(ctx, first, "published", T0)
    deliver(ctx, add_draft(ctx, content=rss_content(enclosure=kept)), "published", T0)
    out = tmp_path / "site"
    feeds.build_static(ctx, out, base_url="https://cdn.example")
    names = {media_name(r): r for r in (video, vtt, kept)}
    assert set(media_files(out)) == set(names)

    # Re-anonymised captions of the same length are copied again.
    anonymised = VTT.replace(b"two lines", b"[name]   ")
    assert len(anonymised) == len(VTT)
    (workspace.root / vtt).write_bytes(anonymised)
    written = feeds.build_static(ctx, out, base_url="https://cdn.example")
    assert media_files(out)[media_name(vtt)] == anonymised
    assert out / "feeds" / "media" / media_name(video) not in written  # unchanged

    # A stray or withdrawn file goes; another campaign's export keeps its own media.
    (out / "feeds" / "media" / ".leftover.tmp").write_bytes(b"x")
    with ctx.db.begin() as conn:
        conn.execute(
            deliveries.update().where(deliveries.c.draft_id == first).values(state="withdrawn")
        )
    logos = {p.name for p in (out / "feeds" / "media").glob("*.png")}
    assert len(logos) == 2
    feeds.build_static(ctx, out, base_url="https://cdn.example", campaigns=["neural-mandate"])
    assert set(media_files(out)) == {media_name(kept)}
    assert {p.name for p in (out / "feeds" / "media").glob("*.png")} == logos
    feeds.build_static(ctx, out, base_url="https://cdn.example")
    assert media_files(out) == {media_name(kept): MP4[::-1]}
    assert (out / "feeds" / "emotional-equity.xml").read_bytes().count(b"<item>") == 1
