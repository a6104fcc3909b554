"""The review web app, in process: login, CSRF, escaping, media, state rules and audit."""

from __future__ import annotations

import re
import stat

import pytest
from starlette.testclient import TestClient

from narratives.core.clock import utcnow
from narratives.records.transcript import Segment, Word
from narratives.stages.draft import stage as drafting
from narratives.store import redactions
from narratives.store.schema import consents, narrative_paths
from narratives.store.users import disable_user
from narratives.web import create_app
from narratives.web.security import SECRET_FILE
from narratives.workflow import review, scheduling
from narratives.workflow.feeds import write_campaign_feeds
from tests import web_client
from tests.review_fixtures import (
    PASSWORD,
    add_narrative,
    add_recording,
    add_render,
    add_user,
    transcript_for,
)

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


@pytest.fixture
def site(ctx):
    """An app with one narrative, its drafts and a video; editor `kai`."""
    add_user(ctx, "kai")
    t = transcript_for("x")
    t.segments.append(
        Segment(
            id=9,
            start=14.0,
            end=15.0,
            text=" <script>alert('t')</script>",
            words=[Word(14.0, 15.0, " <script>alert('t')</script>")],
        )
    )
    nid = add_narrative(ctx, transcript=t)
    add_render(ctx, nid, "emotional-equity")
    ids = {review.get_draft(ctx, i).channel: i for i in drafting.run(ctx, nid)}
    client = TestClient(create_app(ctx), follow_redirects=False)
    return client, nid, ids


def _csrf(client, path="/login") -> str:
    return _CSRF.search(client.get(path).text).group(1)


def login(client, name="kai", password=PASSWORD):
    token = _csrf(client)
    return client.post("/login", data={"name": name, "password": password, "csrf": token})


def _post(client, path, data=None, page=None):
    return web_client.post(client, path, data, page=page or "/")


def routes(nid, draft_id):
    gets = ["/", f"/drafts/{draft_id}", f"/media/{nid}/video-emotional-equity-vertical.mp4"]
    gets += [f"/media/{nid}/transcript.vtt", f"/media/{nid}/audio", "/nothing-here"]
    posts = [
        f"/drafts/{draft_id}/{a}"
        for a in ("approve", "reject", "request-changes", "edit", "comment", "tags")
    ] + ["/logout"]
    return gets, posts


def test_every_route_needs_a_login(site, ctx):
    client, nid, ids = site
    gets, posts = routes(nid, ids["bluesky"])
    for path in gets:
        r = client.get(path)
        if path.startswith("/media/"):
            assert r.status_code == 401, path
        else:
            assert r.status_code == 303, path
            assert r.headers["location"].startswith("/login?next=")
    token = _csrf(client)  # a pre-login session with a valid token still is no login
    for path in posts:
        assert client.post(path, data={"csrf": token}).status_code == 401, path
    assert review.get_draft(ctx, ids["bluesky"]).state == "pending_review"
    # The login page and the two static assets are the only public paths.
    assert client.get("/login").status_code == 200
    assert client.get("/static/review.js").status_code == 200
    assert client.get("/static/other.js").status_code == 303


def test_login_redirects_to_next_and_logout_ends_the_session(site):
    client, nid, ids = site
    r = client.get(f"/drafts/{ids['rss']}")
    r = client.get(r.headers["location"])
    token = _CSRF.search(r.text).group(1)
    nxt = re.search(r'name="next" value="([^"]*)"', r.text).group(1)
    r = client.post(
        "/login", data={"name": "kai", "password": PASSWORD, "csrf": token, "next": nxt}
    )
    assert r.status_code == 303 and r.headers["location"] == f"/drafts/{ids['rss']}"
    assert client.get(f"/drafts/{ids['rss']}").status_code == 200
    assert _post(client, "/logout").status_code == 303
    assert client.get("/").status_code == 303


def test_no_open_redirect_after_login(site):
    client, _, _ = site
    token = _csrf(client)
    r = client.post(
        "/login",
        data={"name": "kai", "password": PASSWORD, "csrf": token, "next": "//evil.example/x"},
    )
    assert r.status_code == 303 and r.headers["location"] == "/"


def test_wrong_password_and_rate_limit(site, ctx):
    client, _, _ = site
    r = login(client, password="wrong password!")
    assert r.status_code == 400 and "Wrong name or password" in r.text
    for _ in range(4):
        assert login(client, password="wrong password!").status_code == 400
    # Five failures for this name from this address: even the right password waits.
    r = login(client)
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert client.get("/").status_code == 303
    # Another name is not locked out by someone guessing kai's password.
    add_user(ctx, "fayez")
    assert login(client, name="fayez").status_code == 303


def test_csrf_is_checked_on_every_post(site, ctx):
    client, _, ids = site
    assert client.post("/login", data={"name": "kai", "password": PASSWORD}).status_code == 403
    login(client)
    bsky = ids["bluesky"]
    for data in ({}, {"csrf": "forged"}, {"csrf": ""}):
        assert client.post(f"/drafts/{bsky}/approve", data=data).status_code == 403
        r = client.post(f"/drafts/{bsky}/edit", data={**data, "text": "hijacked"})
        assert r.status_code == 403
        assert client.post("/logout", data=data).status_code == 403
    d = review.get_draft(ctx, bsky)
    assert d.state == "pending_review" and "hijacked" not in d.posts
    # A token from another session is no good either.
    other = TestClient(client.app, follow_redirects=False)
    login(other)
    stolen = _csrf(other, "/")
    assert client.post(f"/drafts/{bsky}/approve", data={"csrf": stolen}).status_code == 403


def test_user_text_is_escaped(site, ctx):
    client, _, ids = site
    login(client)
    bsky = ids["bluesky"]
    _post(client, f"/drafts/{bsky}/edit", {"text": "<script>alert('d')</script>", "alt": "a"})
    _post(client, f"/drafts/{bsky}/comment", {"body": "<script>alert('c')</script>"})
    page = client.get(f"/drafts/{bsky}").text
    for marker in ("t", "d", "c"):
        assert f"<script>alert('{marker}')" not in page
        assert f"&lt;script&gt;alert(&#39;{marker}&#39;)&lt;/script&gt;" in page
    assert page.count("<script") == 1  # only the static review.js


def test_security_headers_and_cookie(site):
    client, _, _ = site
    r = login(client)
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie
    for r in (client.get("/"), client.get("/login"), client.get("/nothing")):
        csp = r.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert "frame-ancestors 'none'" in csp
        assert r.headers["x-frame-options"] == "DENY"
        assert r.headers["referrer-policy"] == "no-referrer"
        assert r.headers["x-content-type-options"] == "nosniff"


def test_secret_is_made_once_with_mode_0600(site, workspace, ctx):
    path = workspace.state_dir / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    secret = path.read_text()
    client, _, _ = site
    login(client)
    # A second app (a restart) reuses the key, so sessions survive it.
    again = TestClient(create_app(ctx), follow_redirects=False, cookies=client.cookies)
    assert path.read_text() == secret
    assert again.get("/").status_code == 200


def test_media_is_served_by_id_and_kind_only(site, ctx, workspace, tmp_path):
    client, nid, _ = site
    add_recording(ctx, nid)
    login(client)
    r = client.get(f"/media/{nid}/video-emotional-equity-vertical.mp4")
    assert r.status_code == 200 and r.headers["content-type"] == "video/mp4"
    assert r.content.startswith(b"\x00\x00\x00\x18ftyp")
    assert (
        client.get(f"/media/{nid}/video-emotional-equity-vertical.vtt")
        .headers["content-type"]
        .startswith("text/vtt")
    )
    assert client.get(f"/media/{nid}/audio").status_code == 200
    bad = [
        f"/media/../{nid}/audio",
        "/media/%2e%2e/video-emotional-equity-vertical.mp4",
        f"/media/{nid}/%2e%2e%2fanalysis.json",
        f"/media/{nid}/..%2F..%2Fnarratives.toml",
        f"/media/{nid}/analysis.json",
        f"/media/{nid}/transcript.json",
        f"/media/{nid[:63]}/audio",
        f"/media/{nid.upper()}/audio",
        f"/media/{nid}/video-emotional-equity-square.mp4",  # not rendered
        "/media/..%2F..%2Fetc/passwd",
    ]
    for path in bad:
        assert client.get(path).status_code == 404, path
    # A symlink out of the workspace is refused even under an allowed name.
    outside = tmp_path / "secret.mp4"
    outside.write_bytes(b"secret")
    link = workspace.narrative_dir(nid) / "video-emotional-equity-square.mp4"
    link.symlink_to(outside)
    assert client.get(f"/media/{nid}/video-emotional-equity-square.mp4").status_code == 404


def test_recording_outside_the_workspace_is_not_served(site, ctx, tmp_path):
    client, nid, _ = site
    outside = tmp_path / "elsewhere.wav"
    outside.write_bytes(b"RIFF")
    with ctx.db.begin() as conn:
        conn.execute(
            narrative_paths.insert().values(
                narrative_id=nid, path=str(outside), first_seen=utcnow(), last_seen=utcnow()
            )
        )
    login(client)
    assert client.get(f"/media/{nid}/audio").status_code == 404


def test_draft_page_shows_everything_an_editor_needs(site):
    client, nid, ids = site
    login(client)
    page = client.get(f"/drafts/{ids['bluesky']}").text
    assert "Two lines at the dream clinic" in page
    assert f'src="/media/{nid}/video-emotional-equity-vertical.mp4"' in page
    assert f'src="/media/{nid}/video-emotional-equity-vertical.vtt"' in page
    # Clickable timestamps that work without JS (media fragment) and with it (data-t).
    assert f'href="/media/{nid}/video-emotional-equity-vertical.mp4#t=8.0"' in page
    assert 'data-t="8.00"' in page
    assert '<mark class="quote">My grandmother said rest should not be something you' in page
    assert '<mark class="summary">There were two lines' in page
    assert "equal-access" in page and "0.81" in page
    assert "grief" in page and "The narrator" in page
    assert 'data-graphemes="300"' in page
    assert "/ 300" in page
    assert "created" in page  # audit log


def test_consent_state_is_shown(site, ctx):
    client, nid, ids = site
    now = utcnow()
    login(client)
    with ctx.db.begin() as conn:
        conn.execute(consents.delete().where(consents.c.narrative_id == nid))
    assert "No consent recorded." in client.get(f"/drafts/{ids['bluesky']}").text
    with ctx.db.begin() as conn:
        conn.execute(
            consents.insert().values(
                narrative_id=nid,
                given_by="Amara O.",
                given_at=now,
                method="form",
                channels=["rss"],
                anonymous=True,
                updated_at=now,
            )
        )
    page = client.get(f"/drafts/{ids['bluesky']}").text
    assert "Amara O." in page and "no, anonymous" in page
    assert "Consent does not cover bluesky." in page
    assert "Consent does not cover" not in client.get(f"/drafts/{ids['rss']}").text


def test_an_approval_or_edit_applies_only_to_the_text_that_was_read(site, ctx):
    """Kai opens the draft; Fay edits it; Kai's approve and save from the old page are
    refused, so nobody approves or overwrites a text they never saw."""
    client, _, ids = site
    login(client)
    bsky = ids["bluesky"]
    old = web_client.VERSION.search(client.get(f"/drafts/{bsky}").text).group(1)
    add_user(ctx, "fay")
    review.edit(ctx, bsky, {"posts": ["Fay's version."]}, actor="fay")
    r = _post(client, f"/drafts/{bsky}/approve", {"version": old})
    assert r.status_code == 409 and "changed since you opened it" in r.text
    assert review.get_draft(ctx, bsky).state == "pending_review"
    r = _post(client, f"/drafts/{bsky}/edit", {"version": old, "text": "Kai's.", "alt": "A"})
    assert r.status_code == 409
    assert review.get_draft(ctx, bsky).posts == ["Fay's version."]
    # A form without the version (not from the page) is refused the same way.
    assert _post(client, f"/drafts/{bsky}/approve", {"version": ""}).status_code == 409
    # From a fresh page, it goes through.
    assert _post(client, f"/drafts/{bsky}/approve").status_code == 303
    assert review.get_draft(ctx, bsky).state == "approved"


def test_the_draft_page_audit_shows_story_and_delivery_changes_and_what_an_edit_changed(site, ctx):
    client, nid, ids = site
    login(client)
    bsky = ids["bluesky"]
    redactions.mark_term(ctx, nid, "Rosalind", kind="name", actor="kai")
    _post(client, f"/drafts/{bsky}/edit", {"text": "First post.\n---\nSecond post.", "alt": "A"})
    review.approve(ctx, bsky, actor="kai")
    delivery = scheduling.schedule(ctx, bsky, next_slot=True, actor="kai")
    audit = client.get(f"/drafts/{bsky}").text.split('id="audit"')[1].split("</table>")[0]
    # In words, never raw keys, with what changed.
    assert "story:</span> <strong>marked a term to hide</strong> · “Rosalind” (name)" in audit
    assert f"delivery {delivery.id}:</span> <strong>scheduled a post" in audit
    assert "redaction.add" not in audit and "consent.set" not in audit
    assert "<summary>what changed</summary>" in audit
    assert "+First post." in audit and "+Second post." in audit


def test_review_actions_follow_the_state_rules_and_are_audited(site, ctx):
    client, _, ids = site
    login(client)
    bsky = ids["bluesky"]
    r = _post(client, f"/drafts/{bsky}/approve")
    assert r.status_code == 303 and r.headers["location"] == f"/drafts/{bsky}"
    assert review.get_draft(ctx, bsky).state == "approved"
    # Approving twice is a conflict with a friendly page, not a traceback.
    r = _post(client, f"/drafts/{bsky}/approve")
    assert r.status_code == 409 and "only a draft pending review" in r.text
    # Editing the approved draft sends it back to review.
    r = _post(client, f"/drafts/{bsky}/edit", {"text": "One.\n---\nTwo.", "alt": "A video."})
    d = review.get_draft(ctx, bsky)
    assert d.state == "pending_review" and d.posts == ["One.", "Two."] and d.edited
    assert "back in review" in client.get(f"/drafts/{bsky}").text
    # Over the limit: saved, shown with a warning, not approvable.
    _post(client, f"/drafts/{bsky}/edit", {"text": "é" * 301, "alt": "A video."})
    page = client.get(f"/drafts/{bsky}").text
    assert "post 1 has 301 characters" in page
    assert 'id="text-warning" role="alert" hidden' not in page
    assert _post(client, f"/drafts/{bsky}/approve").status_code == 409
    _post(client, f"/drafts/{bsky}/request-changes", {"reason": "Shorter please"})
    assert review.get_draft(ctx, bsky).state == "changes_requested"
    _post(client, f"/drafts/{bsky}/reject", {"reason": "Not this one"})
    assert review.get_draft(ctx, bsky).state == "rejected"
    _post(client, f"/drafts/{bsky}/comment", {"body": "Agreed."})
    actions = [(h["actor"], h["action"]) for h in review.history(ctx, bsky)]
    assert actions == [
        ("narratives", "draft.create"),
        ("kai", "draft.approve"),
        ("kai", "draft.edit"),
        ("kai", "draft.edit"),
        ("kai", "draft.request_changes"),
        ("kai", "draft.reject"),
        ("kai", "draft.comment"),
    ]
    page = client.get(f"/drafts/{bsky}").text
    assert "Shorter please" in page and "Not this one" in page
    assert "Approved → Pending review" in page


def test_rss_edit_form(site, ctx):
    client, _, ids = site
    login(client)
    _post(
        client,
        f"/drafts/{ids['rss']}/edit",
        {"title": "New title", "summary": "New summary", "content": "Body"},
    )
    d = review.get_draft(ctx, ids["rss"])
    assert (d.content["title"], d.content["summary"], d.content["content"]) == (
        "New title",
        "New summary",
        "Body",
    )


@pytest.mark.slow
def test_tag_correction_form(site, ctx):
    client, nid, ids = site
    login(client)
    r = _post(client, f"/drafts/{ids['rss']}/tags", {"tag": "grief-and-healing", "applies": "1"})
    assert r.status_code == 303
    assert [(c["tag"], c["applies"]) for c in review.tag_corrections_for(ctx, nid)] == [
        ("grief-and-healing", True)
    ]
    assert "editor: applies" in client.get(f"/drafts/{ids['rss']}").text
    r = _post(client, f"/drafts/{ids['rss']}/tags", {"tag": "made-up", "applies": "0"})
    assert r.status_code == 404


def test_queue_filters(site, ctx):
    client, _, ids = site
    login(client)
    review.approve(ctx, ids["rss"], actor="kai")
    page = client.get("/").text
    assert f'href="/drafts/{ids["bluesky"]}"' in page and f'href="/drafts/{ids["rss"]}"' in page
    page = client.get("/?state=approved").text
    assert f'href="/drafts/{ids["rss"]}"' in page and f'href="/drafts/{ids["bluesky"]}"' not in page
    page = client.get("/?channel=bluesky&campaign=emotional-equity").text
    assert f'href="/drafts/{ids["bluesky"]}"' in page and f'href="/drafts/{ids["rss"]}"' not in page
    page = client.get("/?tag=grief-and-healing").text
    assert "No drafts match." in page
    assert client.get("/?state=bogus").status_code == 400


def test_errors_are_friendly_pages(site):
    client, _, _ = site
    login(client)
    r = client.get("/drafts/9999")
    assert r.status_code == 404 and "no draft 9999" in r.text and "Traceback" not in r.text
    r = client.get("/nothing-here")
    assert r.status_code == 404 and "There is no page here." in r.text


def test_a_disabled_user_loses_their_session(site, ctx):
    client, _, _ = site
    login(client)
    assert client.get("/").status_code == 200
    disable_user(ctx, "kai", actor="admin")
    assert client.get("/").status_code == 303
    assert login(client).status_code == 400


def test_feeds_are_public_on_the_review_server_and_nothing_else_is(site, ctx):
    import feedparser

    client, nid, _ = site
    write_campaign_feeds(ctx, "emotional-equity")
    rss = client.get("/feeds/emotional-equity.xml")
    assert rss.status_code == 200 and "rss" in rss.headers["content-type"]
    parsed = feedparser.parse(rss.content)
    assert not parsed.bozo and parsed.feed.title == "Emotional Equity: stories"
    assert client.get("/feeds/emotional-equity.atom").status_code == 200
    assert client.get("/feeds/nope.xml").status_code == 404
    for path in (
        "/feeds/../narratives.db",
        "/feeds/media/..%2fnarratives.db",
        f"/feeds/media/{nid}",
        "/feeds/emotional-equity.media.json",
    ):
        r = client.get(path, follow_redirects=False)
        assert r.status_code in (303, 401, 404) and b"SQLite" not in r.content, path
    # Private pages stay private.
    assert client.get("/", follow_redirects=False).status_code == 303
    assert client.get(f"/media/{nid}/transcript.vtt").status_code == 401
