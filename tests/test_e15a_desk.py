"""The editors' desk (issue 15, items 2, 3, 6, 7), in-process: compare-and-swap writes and
what a lost race looks like on the page and in the terminal, the soft lock, consent at the
decision, media files, secure cookies, consent rewrites, date ranges, and users."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from starlette.testclient import TestClient

from narratives.cli import cli
from narratives.core.campaigns import get_campaign
from narratives.core.errors import (
    Conflict,
    InvalidState,
    PermissionDenied,
    UsageError,
)
from narratives.policy import consent as ledger
from narratives.stages.draft import stage as drafting
from narratives.store import audit, users
from narratives.store import drafts as draft_rows
from narratives.store.context import Context
from narratives.store.schema import audit_log, draft_viewers, narrative_paths
from narratives.web import create_app
from narratives.web.security import SECRET_FILE
from narratives.workflow import review, scheduling, takedown
from tests.review_fixtures import PASSWORD, add_narrative, add_render, add_user
from tests.web_client import client_for, csrf, login, post


@pytest.fixture
def drafted(ctx):
    """(narrative id, {channel: draft id}) with consent for both channels, editor kai."""
    add_user(ctx, "kai")
    nid = add_narrative(ctx)
    ids = {review.get_draft(ctx, i).channel: i for i in drafting.run(ctx, nid)}
    return nid, ids


def _audit_count(ctx, draft_id: int, action: str) -> int:
    with ctx.db.connect() as conn:
        return conn.execute(
            sa.select(sa.func.count()).where(
                audit_log.c.object_type == "draft",
                audit_log.c.object_id == str(draft_id),
                audit_log.c.action == action,
            )
        ).scalar()


# ----------------------------------------------------------------------------- item 2


def test_every_write_is_a_compare_and_swap_on_the_row_version(ctx, drafted):
    _, ids = drafted
    add_user(ctx, "fayez")
    stale = review.get_draft(ctx, ids["bluesky"])
    review.edit(ctx, stale.id, {"posts": ["Fayez got there first."]}, actor="fayez")
    now = review.get_draft(ctx, stale.id)
    assert now.revision == stale.revision + 1
    # A writer holding the version it read before: refused, nothing written, names who won.
    for write in (
        lambda conn: draft_rows.set_state(
            conn, stale, "approved", actor="kai", action="draft.approve"
        ),
        lambda conn: draft_rows.save_edit(conn, stale, {"posts": [{"text": "x"}]}, actor="kai"),
    ):
        with pytest.raises(Conflict, match=r"changed since you opened it \(edited by fayez\)"):
            with ctx.db.begin() as conn:
                write(conn)
    after = review.get_draft(ctx, stale.id)
    assert after.posts == ["Fayez got there first."] and after.state == "pending_review"
    assert after.revision == now.revision
    assert _audit_count(ctx, stale.id, "draft.approve") == 0
    assert _audit_count(ctx, stale.id, "draft.edit") == 1


def test_a_regeneration_racing_an_editor_keeps_the_editors_text(ctx, drafted, monkeypatch):
    """The draft stage read the row, an editor saved, then the stage wrote: its swap fails,
    it reads the draft again and keeps the editor's text."""
    nid, ids = drafted
    regenerate = draft_rows.regenerate
    raced = []

    def editor_saves_in_between(conn, row, **kwargs):
        if not raced:  # between the stage's read and its write, once
            raced.append(row.version)
            review.edit(ctx, row.id, {"posts": ["The editor's words."]}, actor="kai")
        return regenerate(conn, row, **kwargs)

    monkeypatch.setattr(draft_rows, "regenerate", editor_saves_in_between)
    (ctx.workspace.templates_dir / "posts" / "bluesky.j2").write_text(
        "A new template: {{ title }}\n"
    )
    drafting.run(ctx, nid, force=True)
    assert raced, "the stage did not regenerate"
    d = review.get_draft(ctx, ids["bluesky"])
    assert d.posts == ["The editor's words."] and d.edited
    assert d.generated["posts"][0]["text"].startswith("A new template")
    assert _audit_count(ctx, d.id, "draft.regenerate") == 1  # the lost write left no row


def test_a_lost_save_shows_the_draft_as_it_is_now_and_keeps_the_unsaved_text(ctx, drafted):
    _, ids = drafted
    bsky = ids["bluesky"]
    client = client_for(ctx, user="ann")
    page = client.get(f"/drafts/{bsky}").text
    version = re.search(r'name="version" value="([^"]+)"', page).group(1)
    review.edit(ctx, bsky, {"posts": ["Kai's new opening."]}, actor="kai")
    r = client.post(
        f"/drafts/{bsky}/edit",
        data={"csrf": csrf(client, "/"), "version": version, "text": "Ann's unsaved words"},
    )
    assert r.status_code == 409
    assert "was changed since you opened it (edited by kai); it was not saved" in r.text
    assert 'id="unsaved"' in r.text and "Ann&#39;s unsaved words" in r.text
    assert "Kai&#39;s new opening." in r.text  # the page shows the text as it is now
    assert review.get_draft(ctx, bsky).posts == ["Kai's new opening."]
    # Approving from the old page is refused the same way, on the draft's page.
    r = client.post(f"/drafts/{bsky}/approve", data={"csrf": csrf(client, "/"), "version": version})
    assert r.status_code == 409 and 'id="refusal"' in r.text and "it was not approved" in r.text
    assert review.get_draft(ctx, bsky).state == "pending_review"


def test_a_refused_rejection_shows_the_draft_page_with_the_reason(ctx, drafted):
    _, ids = drafted
    client = client_for(ctx, user="ann")
    assert post(client, f"/drafts/{ids['rss']}/reject", {"reason": "off topic"}).status_code == 303
    r = post(client, f"/drafts/{ids['rss']}/request-changes", {"reason": "shorter"})
    assert r.status_code == 409 and 'id="refusal"' in r.text
    assert "it cannot become changes requested" in r.text and 'id="decision"' in r.text


def test_a_stale_approval_from_the_terminal_exits_6(ctx, drafted):
    _, ids = drafted
    bsky = ids["bluesky"]
    seen = review.get_draft(ctx, bsky).version
    add_user(ctx, "fayez")
    review.edit(ctx, bsky, {"posts": ["Changed meanwhile."]}, actor="fayez")
    r = CliRunner().invoke(cli, ["drafts", "approve", str(bsky), "--seen", seen, "--as", "kai"])
    assert r.exit_code == 6, r.output
    assert "changed since you opened it (edited by fayez)" in r.output
    assert review.get_draft(ctx, bsky).state == "pending_review"


def test_the_page_shows_who_else_has_the_draft_open(ctx, drafted):
    _, ids = drafted
    bsky = ids["bluesky"]
    ann, bob = client_for(ctx, user="ann"), client_for(ctx, user="bob")
    assert 'id="viewers"' not in ann.get(f"/drafts/{bsky}").text  # alone
    page = bob.get(f"/drafts/{bsky}").text
    assert re.search(r'id="viewers">Also open by <strong>ann</strong>', page)
    assert "Also open by <strong>bob</strong>" in ann.get(f"/drafts/{bsky}").text
    # The page's script asks the same (JSON), and so keeps its editor listed.
    assert bob.get(f"/drafts/{bsky}/viewers").json() == {"viewers": ["ann"]}
    # Ann left three minutes ago: no longer shown.
    with ctx.db.begin() as conn:
        conn.execute(
            draft_viewers.update()
            .where(draft_viewers.c.user_name == "ann")
            .values(seen_at=datetime.now(UTC) - timedelta(minutes=3))
        )
    assert 'id="viewers"' not in bob.get(f"/drafts/{bsky}").text
    # A page view within 15 s is not another write.
    with ctx.db.connect() as conn:
        before = conn.execute(
            sa.select(draft_viewers.c.seen_at).where(draft_viewers.c.user_name == "bob")
        ).scalar()
    bob.get(f"/drafts/{bsky}")
    with ctx.db.connect() as conn:
        assert (
            conn.execute(
                sa.select(draft_viewers.c.seen_at).where(draft_viewers.c.user_name == "bob")
            ).scalar()
            == before
        )


# ----------------------------------------------------------------------------- item 3


def _approve_button(html: str) -> str:
    return re.search(r'<button[^>]*id="approve"[^>]*>', html).group(0)


def test_approve_is_off_with_the_reason_when_consent_is_missing_or_narrower(ctx):
    add_user(ctx, "kai")
    nid = add_narrative(ctx, consent=False)
    ids = {review.get_draft(ctx, i).channel: i for i in drafting.run(ctx, nid)}
    client = client_for(ctx, user="ann")
    page = client.get(f"/drafts/{ids['bluesky']}").text
    assert "disabled" in _approve_button(page)
    assert re.search(r'id="decision-consent"><strong>Consent: missing', page)
    assert "No consent is recorded" in re.search(r'id="approve-why">(.*?)</div>', page, re.S)[1]
    # The server refuses a forced approval too, on the draft's page (not an error page).
    r = post(client, f"/drafts/{ids['bluesky']}/approve")
    assert r.status_code == 403 and 'id="refusal"' in r.text and "Approve" in r.text
    assert review.get_draft(ctx, ids["bluesky"]).state == "pending_review"

    takedown.set_consent(ctx, nid, given_by="Amara", method="form", channels=["rss"], actor="kai")
    page = client.get(f"/drafts/{ids['bluesky']}").text
    assert "disabled" in _approve_button(page)
    assert "Consent: does not cover Bluesky" in page
    assert "does not cover bluesky (only: rss)" in page
    rss = client.get(f"/drafts/{ids['rss']}").text
    assert "disabled" not in _approve_button(rss) and "Consent: given" in rss
    assert "rss; anonymous; given by Amara" in rss


def test_approve_is_off_when_the_text_is_over_the_limit(ctx, drafted):
    _, ids = drafted
    review.edit(ctx, ids["bluesky"], {"posts": ["a" * 400]}, actor="kai")
    client = client_for(ctx, user="ann")
    page = client.get(f"/drafts/{ids['bluesky']}").text
    assert "disabled" in _approve_button(page)
    assert "Post 1 has 400 characters; Bluesky allows 300." in page
    r = post(client, f"/drafts/{ids['bluesky']}/approve")
    assert r.status_code == 409 and "cannot be approved: post 1 has 400" in r.text


def test_a_withdrawn_story_shows_withdrawn_everywhere_and_cannot_be_scheduled(ctx, drafted):
    nid, ids = drafted
    bsky = ids["bluesky"]
    review.approve(ctx, bsky, actor="kai")
    client = client_for(ctx, user="ann")
    page = client.get(f"/drafts/{bsky}").text
    assert 'id="schedule-next"' in page and "Schedule is off" not in page
    takedown.withdraw(ctx, nid, actor="kai", reason="the narrator asked")

    page = client.get(f"/drafts/{bsky}").text
    assert re.search(r'id="state">Consent withdrawn</span>', page)
    assert "was approved; it will not be published" in page
    assert re.search(r'<button[^>]*id="schedule-next"[^>]*disabled', page)
    assert re.search(r'<button[^>]*id="schedule-at"[^>]*disabled', page)
    assert (
        "Consent for this narrative was withdrawn"
        in re.search(r'id="schedule-why">(.*?)</div>', page, re.S)[1]
    )
    queue = client.get("/").text
    assert queue.count("Consent withdrawn") == 2  # both drafts of the story
    # The server refuses scheduling whatever the page says.
    r = post(client, f"/drafts/{bsky}/schedule", {"mode": "next"})
    assert r.status_code == 403
    r = CliRunner().invoke(cli, ["drafts", "list"])
    assert r.exit_code == 0 and r.output.count("withdrawn (was") == 2
    rows = [
        json.loads(line)
        for line in CliRunner().invoke(cli, ["drafts", "list", "--json"]).output.splitlines()
    ]
    assert {(r["state"], r["withdrawn"]) for r in rows} == {
        ("approved", True),
        ("pending_review", True),
    }


# ----------------------------------------------------------------------------- item 6


def test_media_links_out_of_the_media_folder_are_not_served(ctx, drafted):
    nid, _ = drafted
    add_render(ctx, nid, "emotional-equity")
    client = client_for(ctx, user="ann")  # makes the session secret
    folder = ctx.workspace.narrative_dir(nid)
    secret = ctx.workspace.state_dir / SECRET_FILE
    assert secret.is_file()
    ok = client.get(f"/media/{nid}/video-emotional-equity-vertical.mp4")
    assert ok.status_code == 200 and ok.content.startswith(b"\x00\x00\x00\x18ftyp")
    for name in ("video-emotional-equity-square.mp4", "transcript.vtt"):
        (folder / name).symlink_to(secret)
        r = client.get(f"/media/{nid}/{name}")
        assert r.status_code == 404 and secret.read_text().strip() not in r.text
    # A link to a regular file elsewhere in the workspace (outside media/) is refused too.
    (folder / "video-emotional-equity-vertical.vtt").unlink()
    (folder / "video-emotional-equity-vertical.vtt").symlink_to(ctx.workspace.settings_path)
    assert client.get(f"/media/{nid}/video-emotional-equity-vertical.vtt").status_code == 404
    # A "recording" that is a link to the secret, named like audio.
    (ctx.workspace.root / "recordings").mkdir(exist_ok=True)
    fake = ctx.workspace.root / "recordings" / "story.wav"
    fake.symlink_to(secret)
    with ctx.db.begin() as conn:
        conn.execute(
            narrative_paths.insert().values(
                narrative_id=nid,
                path=str(fake),
                first_seen=datetime.now(UTC),
                last_seen=datetime.now(UTC),
            )
        )
    r = client.get(f"/media/{nid}/audio")
    assert r.status_code == 404 and secret.read_text().strip() not in r.text


def test_cookies_are_secure_when_the_base_url_is_https(workspace):
    workspace.settings_path.write_text('[serve]\nbase_url = "https://stories.example.org"\n')
    ctx = Context(workspace)
    add_user(ctx, "kai")
    client = TestClient(create_app(ctx), base_url="https://testserver", follow_redirects=False)
    token = csrf(client)
    r = client.post("/login", data={"name": "kai", "password": PASSWORD, "csrf": token})
    assert r.status_code == 303
    assert "secure" in r.headers["set-cookie"].lower()


def test_cookies_are_not_marked_secure_on_plain_http(ctx):
    add_user(ctx, "kai")
    client = TestClient(create_app(ctx), follow_redirects=False)
    r = client.post("/login", data={"name": "kai", "password": PASSWORD, "csrf": csrf(client)})
    assert r.status_code == 303 and "secure" not in r.headers["set-cookie"].lower()


def test_who_gave_consent_and_when_is_for_admins_and_audited(ctx, drafted):
    nid, _ = drafted
    add_user(ctx, "root", role="admin")
    before = ledger.get_consent(ctx, nid)
    with pytest.raises(PermissionDenied, match="only an admin can change who gave consent"):
        takedown.set_consent(
            ctx, nid, given_by="Someone else", method="form", channels=["rss"], actor="kai"
        )
    with pytest.raises(PermissionDenied, match=r"its date"):
        takedown.set_consent(
            ctx,
            nid,
            given_by=before.given_by,
            method="form",
            channels=["rss"],
            given_at=before.given_at - timedelta(days=400),
            actor="kai",
        )
    assert ledger.get_consent(ctx, nid) == before
    # An editor may still narrow it (no date given: it keeps the date it was given).
    after = takedown.set_consent(
        ctx, nid, given_by=before.given_by, method="form", channels=["rss"], actor="kai"
    )
    assert after.given_at == before.given_at and after.channels == ("rss",)
    takedown.set_consent(
        ctx, nid, given_by="Amara Okafor", method="form", channels=["rss"], actor="root"
    )
    with ctx.db.connect() as conn:
        last = audit.history(conn, "consent", nid)[-1]
    assert last["actor"] == "root" and "who gave it (The narrator → Amara Okafor)" in last["detail"]
    assert last["before"]["given_by"] == "The narrator"
    assert last["after"]["given_by"] == "Amara Okafor"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("given_at", datetime(9999, 12, 31, tzinfo=UTC), "is in the future"),
        ("given_at", datetime(1850, 1, 1, tzinfo=UTC), "before 1900"),
        ("expires_at", datetime(9999, 12, 31, tzinfo=UTC), "years ahead"),
    ],
)
def test_consent_dates_must_be_sane(ctx, field, value, message):
    nid = add_narrative(ctx, consent=False)
    fields = {"given_by": "Amara", "method": "form", "channels": ["rss"], field: value}
    with pytest.raises(Exception, match=message) as info:
        ledger.record_consent(ctx, nid, actor="kai", **fields)
    assert info.value.exit_code == 2
    assert ledger.get_consent(ctx, nid) is None
    # A day ahead is fine (time zones).
    ledger.record_consent(
        ctx,
        nid,
        given_by="Amara",
        method="form",
        channels=["rss"],
        given_at=datetime.now(UTC) + timedelta(hours=20),
        actor="kai",
    )


def test_a_post_cannot_be_scheduled_years_ahead(ctx, drafted):
    _, ids = drafted
    review.approve(ctx, ids["rss"], actor="kai")
    with pytest.raises(UsageError, match="more than 5 years ahead"):
        scheduling.schedule(ctx, ids["rss"], at="9999-01-01T10:00", actor="kai")
    soon = (datetime.now(UTC) + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
    assert scheduling.schedule(ctx, ids["rss"], at=soon, actor="kai").state == "scheduled"
    assert get_campaign(ctx.workspace, "emotional-equity")  # the campaign exists


def test_a_one_letter_or_stop_word_hidden_term_is_refused_on_the_page(ctx, drafted):
    _, ids = drafted
    client = client_for(ctx, user="ann")
    for term in ("a", "the", "x"):
        r = post(client, f"/drafts/{ids['rss']}/hide", {"term": term, "kind": "name"})
        assert r.status_code == 400 and "not hidden" in r.text


# ----------------------------------------------------------------------------- item 7


def test_roles_change_and_the_last_admin_stays(ctx):
    add_user(ctx, "root", role="admin")
    add_user(ctx, "kai")
    runner = CliRunner()
    r = runner.invoke(cli, ["users", "remove", "root"])
    assert r.exit_code == 6 and "last admin" in r.output
    assert runner.invoke(cli, ["users", "role", "root", "editor"]).exit_code == 6
    assert runner.invoke(cli, ["users", "disable", "root"]).exit_code == 6
    r = runner.invoke(cli, ["users", "role", "kai", "admin"])
    assert r.exit_code == 0 and "kai is now an admin" in r.output
    assert runner.invoke(cli, ["users", "role", "root", "editor"]).exit_code == 0
    assert runner.invoke(cli, ["users", "role", "nobody", "editor"]).exit_code == 5
    assert runner.invoke(cli, ["users", "role", "kai", "owner"]).exit_code == 2
    with ctx.db.connect() as conn:
        rows = [r for r in audit.history(conn, "user", "root") if r["action"] == "user.role"]
    assert rows[-1]["before"] == {"role": "admin"} and rows[-1]["after"] == {"role": "editor"}
    with pytest.raises(InvalidState, match="last admin"):
        users.remove_user(ctx, "kai", actor="test")


def test_a_removed_or_disabled_user_is_logged_out_and_cannot_log_in(ctx):
    add_user(ctx, "root", role="admin")
    client = client_for(ctx, user="kai")
    copy = TestClient(client.app, follow_redirects=False, cookies=dict(client.cookies))
    assert copy.get("/").status_code == 200
    kai_id = users.get_user(ctx, "kai").id
    r = CliRunner().invoke(cli, ["users", "remove", "kai"])
    assert r.exit_code == 0 and "Removed kai" in r.output
    assert copy.get("/").status_code == 303  # the session ended
    with ctx.db.connect() as conn:
        assert [r["action"] for r in audit.history(conn, "user", "kai")][-1] == "user.remove"
    # A new user given the same id (SQLite reuses the highest) is not the old session's user.
    add_user(ctx, "mallory")
    if users.get_user(ctx, "mallory").id == kai_id:
        assert copy.get("/").status_code == 303
    other = TestClient(client.app, follow_redirects=False)
    login(other, "mallory")
    users.disable_user(ctx, "mallory", actor="root")
    assert other.get("/").status_code == 303
    fresh = TestClient(client.app, follow_redirects=False)
    r = fresh.post("/login", data={"name": "mallory", "password": PASSWORD, "csrf": csrf(fresh)})
    assert r.status_code == 400


def test_users_add_without_a_terminal_names_password_stdin():
    r = CliRunner().invoke(cli, ["users", "add", "ana"], input="")
    assert r.exit_code == 2
    assert "--password-stdin" in r.output and "Traceback" not in r.output
    assert os.environ.get("NARRATIVES_HOME")  # the test workspace, not a real one


def test_the_consent_form_keeps_who_and_when_read_only_for_editors(ctx, drafted):
    _, ids = drafted
    editor = client_for(ctx, user="ann").get(f"/drafts/{ids['rss']}").text
    assert re.search(r'<input id="given_by"[^>]*readonly', editor)
    assert re.search(r'<input type="date" id="given_at"[^>]*readonly', editor)
    assert 'id="consent-fixed"' in editor
    admin = client_for(ctx, user="root", role="admin").get(f"/drafts/{ids['rss']}").text
    assert not re.search(r'<input id="given_by"[^>]*readonly', admin)
    # The server refuses it anyway (a readonly field is only a courtesy).
    client = client_for(ctx, user="eve")
    form = {"given_by": "Someone", "method": "form", "channels": "rss", "named": "1"}
    r = post(client, f"/drafts/{ids['rss']}/consent", form)
    assert r.status_code == 403 and "only an admin can change who gave consent" in r.text
