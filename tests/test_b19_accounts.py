"""`narrative accounts check|logout|retry` and `narrative consent expire` against the real
local PDS: a bad app password is caught by a fresh login and its saved session forgotten, and
the deliveries it stopped go back in line in one command once it is fixed."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from narratives.cli import cli
from narratives.core.clock import utcnow
from narratives.store.schema import consents, drafts
from narratives.workflow.channels import open_publishers
from narratives.workflow.publishing import publish_delivery
from tests.delivery_fixtures import add_draft, bluesky_content, rss_content
from tests.test_publish_bluesky import PASSWORD_ENV, Sky, delivery

pytestmark = pytest.mark.pds


@pytest.fixture
def sky(pds, workspace, monkeypatch):
    return Sky(pds, workspace, monkeypatch)


def run(*args: str):
    return CliRunner().invoke(cli, list(args), env={"NARRATIVES_USER": "kai"})


def publish(ctx, d):
    with open_publishers(ctx) as publishers:
        return publish_delivery(ctx, d.id, publishers)


def test_a_bad_password_is_caught_its_session_forgotten_and_its_deliveries_retried(
    ctx, sky, monkeypatch
):
    first = sky.schedule(ctx, bluesky_content("Posted with the good password."))
    assert publish(ctx, first).status == "published"
    sessions = list((ctx.workspace.state_dir / "bluesky").glob("*.session"))
    assert len(sessions) == 1

    r = run("accounts", "check", "--campaign", "sky-test", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.splitlines()[0])["ok"] is True

    # The app password is revoked (here: replaced by a wrong one). The saved session would go
    # on posting; a check logs in afresh, is refused, and forgets the session.
    monkeypatch.setenv(PASSWORD_ENV, "wrong-wrong-wrong-wrong")
    r = run("accounts", "check", "--campaign", "sky-test", "--json")
    assert r.exit_code == 8, r.output
    line = json.loads(r.output.splitlines()[0])
    assert line["ok"] is False and "credentials" in line["error"]
    assert not sessions[0].exists(), "the saved session is forgotten"

    stopped = [sky.schedule(ctx, bluesky_content(f"Waiting {i}.")) for i in range(3)]
    for d in stopped:
        out = publish(ctx, d)
        assert out.status == "failed" and "credentials" in out.error
    assert len(sky.pds.list_posts(sky.did)) == 1, "nothing went out on the old session"

    monkeypatch.setenv(PASSWORD_ENV, sky.env_password)
    r = run("accounts", "retry", "--campaign", "sky-test", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["moved"] == [d.id for d in stopped]
    for d in stopped:
        assert delivery(ctx, d.id).state == "scheduled"
        assert publish(ctx, d).status == "published"
    assert len(sky.pds.list_posts(sky.did)) == 4
    r = run("accounts", "retry", "--campaign", "sky-test")
    assert "No delivery was stopped by credentials." in r.output

    r = run("accounts", "logout", "--campaign", "sky-test")
    assert r.exit_code == 0 and "logged out" in r.output
    assert not list((ctx.workspace.state_dir / "bluesky").glob("*.session"))
    r = run("accounts", "logout", "--campaign", "sky-test")
    assert "no saved session" in r.output


def test_consent_expire_takes_down_what_an_expired_consent_covered_without_a_scheduler(ctx):
    draft_id = add_draft(ctx, "emotional-equity", "rss", content=rss_content())
    from narratives.workflow import scheduling

    now = utcnow()
    d = scheduling.schedule(ctx, draft_id, at=now + timedelta(days=3), actor="kai", now=now)
    r = run("consent", "expire")
    assert r.exit_code == 0 and "Nothing has expired." in r.output
    with ctx.db.begin() as conn:
        nid = conn.execute(
            sa.select(drafts.c.narrative_id).where(drafts.c.id == draft_id)
        ).scalar_one()
        conn.execute(
            consents.update()
            .where(consents.c.narrative_id == nid)
            .values(expires_at=now - timedelta(minutes=1))
        )
    r = run("consent", "expire", "--json")
    assert r.exit_code == 0, r.output
    report = json.loads(r.output.splitlines()[0])
    assert report["action"] == "expire" and report["cancelled"] == [d.id]
    assert delivery(ctx, d.id).state == "cancelled"


def test_logout_ends_the_session_on_the_server_with_its_refresh_token(ctx, sky):
    """Fix bsky-2: deleteSession is authorised by the refresh token (`auth: refresh`). After
    `accounts logout` the old refresh token no longer refreshes on the real PDS; when the server
    refuses to end a session, logout warns and exits 8 (and forgets it here all the same)."""
    from atproto import Session

    r = run("accounts", "check", "--campaign", "sky-test")
    assert r.exit_code == 0, r.output
    (path,) = (ctx.workspace.state_dir / "bluesky").glob("*.session")
    saved = path.read_text(encoding="utf-8")
    refresh_jwt = Session.decode(saved.strip()).refresh_jwt

    r = run("accounts", "logout", "--campaign", "sky-test")
    assert r.exit_code == 0, r.output
    assert f"{sky.handle}: logged out" in r.output and "warning" not in r.output
    assert not path.exists()
    refreshed = sky.pds.xrpc(
        "POST",
        "com.atproto.server.refreshSession",
        headers={"Authorization": f"Bearer {refresh_jwt}"},
    )
    assert refreshed.status_code in (400, 401), refreshed.text
    assert refreshed.json()["error"] in ("ExpiredToken", "InvalidToken"), refreshed.text

    # A saved session whose refresh token the server does not accept (here: the access token
    # in its place, as the old code sent): the server refuses to end it, and logout says so.
    r = run("accounts", "check", "--campaign", "sky-test")
    assert r.exit_code == 0, r.output
    session = Session.decode(path.read_text(encoding="utf-8").strip())
    live_refresh = session.refresh_jwt
    session.refresh_jwt = session.access_jwt
    path.write_text(session.encode(), encoding="utf-8")
    r = run("accounts", "logout", "--campaign", "sky-test")
    assert r.exit_code == 8, r.output
    said = " ".join(r.output.split())
    assert "warning" in said and "the server did not end the session" in said
    assert "InvalidToken" in said, said
    assert not path.exists(), "forgotten here all the same"
    # Not ended on the server indeed: its real refresh token still works.
    refreshed = sky.pds.xrpc(
        "POST",
        "com.atproto.server.refreshSession",
        headers={"Authorization": f"Bearer {live_refresh}"},
    )
    assert refreshed.status_code == 200, refreshed.text
