"""Fixes to the editors' desk (issue 15, review): the consent form's version, version-less bulk
approvals and transcript saves, the calendar's date range, the bulk limit, concurrent
withdrawals with no consent recorded, and the login limiter's IPv6 key."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from narratives.policy import consent as ledger
from narratives.stages.draft import stage as drafting
from narratives.store import consents as consent_rows
from narratives.store import login_attempts
from narratives.store.context import Context
from narratives.store.narrative_files import read_transcript
from narratives.web.security import LoginLimiter
from narratives.workflow import corrections, review, takedown
from tests.review_fixtures import add_narrative, add_user
from tests.web_client import client_for, csrf

CONSENT_VERSION = re.compile(r'name="consent_version" value="([^"]+)"')


def _drafts(ctx, nid):
    return {review.get_draft(ctx, i).channel: i for i in drafting.run(ctx, nid)}


def _form_as_read(page: str, client, draft_id: int, **changes) -> dict:
    """The consent form as the page showed it (every field as it was), with `changes`."""
    data = {
        "csrf": csrf(client, f"/drafts/{draft_id}"),
        "consent_version": CONSENT_VERSION.search(page).group(1),
        "given_by": "Amara O.",
        "method": "recording",
        "channels": ["bluesky", "rss"],
        "named": "1",
        "given_at": "",
        "expires_at": "",
        "notes": "",
    }
    data.update(changes)
    return data


# ----------------------------------------------------------------------------- 1: consent


def test_a_stale_consent_form_is_refused_and_the_newer_change_kept(ctx):
    nid = add_narrative(ctx)  # consent to both channels, named
    ids = _drafts(ctx, nid)
    add_user(ctx, "root", role="admin")
    before = ledger.get_consent(ctx, nid)
    # Ada (an admin too, so only the version can stop her) opens the draft's consent form.
    client = client_for(ctx, user="ada", role="admin")
    page = client.get(f"/drafts/{ids['rss']}").text
    assert CONSENT_VERSION.search(page).group(1) == str(before.version)
    form = _form_as_read(
        page, client, ids["rss"], given_by=before.given_by, notes="Called her back."
    )
    # Meanwhile root narrows the consent to RSS only.
    takedown.set_consent(
        ctx,
        nid,
        given_by=before.given_by,
        method=before.method,
        channels=["rss"],
        anonymous=before.anonymous,
        actor="root",
    )
    narrowed = ledger.get_consent(ctx, nid)
    assert narrowed.channels == ("rss",) and narrowed.version == before.version + 1
    # Ada saves the form she read (both channels ticked): refused, shown on the draft page.
    r = client.post(f"/drafts/{ids['rss']}/consent", data=form)
    assert r.status_code == 409
    assert 'id="refusal"' in r.text and "changed by someone else" in r.text
    assert 'id="consent-form"' in r.text  # the draft page, with the consent as it is now
    after = ledger.get_consent(ctx, nid)
    assert after.channels == ("rss",) and after.version == narrowed.version
    assert after.notes != "Called her back."
    # Read again, the same change saves.
    page = client.get(f"/drafts/{ids['rss']}").text
    form = _form_as_read(
        page, client, ids["rss"], given_by=before.given_by, channels=["rss"], notes="Called."
    )
    r = client.post(f"/drafts/{ids['rss']}/consent", data=form)
    assert r.status_code == 303
    assert ledger.get_consent(ctx, nid).notes == "Called."


def test_a_form_opened_before_any_consent_cannot_replace_one_recorded_since(ctx):
    nid = add_narrative(ctx, consent=False)
    ids = _drafts(ctx, nid)
    client = client_for(ctx, user="kai")
    page = client.get(f"/drafts/{ids['rss']}").text
    assert CONSENT_VERSION.search(page).group(1) == "none"
    form = _form_as_read(page, client, ids["rss"], channels=["rss", "bluesky"])
    takedown.set_consent(
        ctx, nid, given_by="Amara O.", method="form", channels=["rss"], actor="fayez"
    )
    r = client.post(f"/drafts/{ids['rss']}/consent", data=form)
    assert r.status_code == 409
    assert ledger.get_consent(ctx, nid).channels == ("rss",)
    r = client.post(f"/drafts/{ids['rss']}/consent", data={**form, "consent_version": "x1"})
    assert r.status_code == 400


# ----------------------------------------------------------------------------- 2: versions


def test_bulk_approve_without_a_version_approves_nothing(ctx):
    nid = add_narrative(ctx)
    ids = _drafts(ctx, nid)
    client = client_for(ctx)
    token = csrf(client, "/")
    data = {"csrf": token, "action": "approve", "ids": [str(ids["rss"]), str(ids["bluesky"])]}
    data[f"version-{ids['bluesky']}"] = ""  # sent empty
    r = client.post("/bulk", data=data)  # no version-{rss} at all
    assert r.status_code == 200
    assert "Approved 0 of 2 drafts" in r.text
    assert {review.get_draft(ctx, i).state for i in ids.values()} == {"pending_review"}
    # With the versions the queue shows, the same approval goes through.
    versions = dict(re.findall(r'name="version-(\d+)" value="([^"]+)"', client.get("/").text))
    data |= {f"version-{k}": v for k, v in versions.items()}
    r = client.post("/bulk", data=data)
    assert {review.get_draft(ctx, i).state for i in ids.values()} == {"approved"}


def test_a_transcript_save_without_a_version_cannot_overwrite_a_correction(ctx, monkeypatch):
    nid = add_narrative(ctx)
    _drafts(ctx, nid)
    # Remaking the outputs (models, video) is not what this is about.
    monkeypatch.setattr(
        corrections, "rederive", lambda *a, **k: corrections.Rederived(analysed=True)
    )
    client = client_for(ctx)
    path = f"/narratives/{nid}/transcript"
    page = client.get(path).text
    version = re.search(r'name="version" value="([^"]+)"', page).group(1)
    original = corrections.text_form(read_transcript(ctx.workspace, nid))
    first = original.replace("grandmother", "grandmama", 1)
    assert first != original
    r = client.post(path, data={"csrf": csrf(client, path), "text": first, "version": version})
    assert r.status_code == 303
    corrected = corrections.text_form(read_transcript(ctx.workspace, nid))
    assert "grandmama" in corrected
    client.get(path)  # the flash of the first save is shown (and gone)
    # A version-less save of the old text: refused, the correction stays.
    for extra in ({}, {"version": ""}):
        data = {"csrf": csrf(client, path), "text": original, **extra}
        r = client.post(path, data=data)
        assert r.status_code == 303
        assert "grandmama" in corrections.text_form(read_transcript(ctx.workspace, nid))
        assert "corrected this transcript after you opened it" in client.get(path).text


# ----------------------------------------------------------------------------- 3: small ones


@pytest.mark.parametrize(
    "query",
    [
        "view=month&start=9999-12-31",
        "view=week&start=0001-01-01",
        "view=month&start=0001-01-01",
        "view=week&start=9999-12-31",
    ],
)
def test_a_calendar_start_at_the_ends_of_time_is_a_400_with_a_sentence(ctx, query):
    client = client_for(ctx)
    r = client.get(f"/schedule?{query}")
    assert r.status_code == 400
    assert "The calendar shows 1970 to 2199" in r.text
    assert client.get("/schedule?view=month&start=2199-12-01").status_code == 200
    assert client.get("/schedule?view=week&start=1970-01-01").status_code == 200


def test_a_bulk_action_over_the_limit_says_how_many_were_not_processed(ctx):
    nid = add_narrative(ctx)
    ids = _drafts(ctx, nid)
    client = client_for(ctx)
    missing = [str(900000 + i) for i in range(200)]  # no such drafts: each is refused
    late = [str(ids["rss"]), str(ids["bluesky"])]
    data = {"csrf": csrf(client, "/"), "action": "reject", "ids": missing + late}
    r = client.post("/bulk", data=data)
    assert r.status_code == 200
    assert "2 more ticked drafts were not processed" in r.text
    assert "at most 200" in r.text
    assert {review.get_draft(ctx, i).state for i in ids.values()} == {"pending_review"}


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_db(request, workspace):
    """A workspace on SQLite, or on a fresh database of the tests' PostgreSQL server."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
        name = f"fixdesk_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"CREATE DATABASE {name}")
        admin.dispose()
        workspace.settings_path.write_text(f'[database]\nurl = "{url.rsplit("/", 1)[0]}/{name}"\n')
    ctx = Context(workspace)
    assert ctx.db.dialect.name == request.param.replace("postgres", "postgresql")
    return ctx


def test_two_withdrawals_with_no_consent_recorded_both_succeed(any_db, monkeypatch):
    ctx = any_db
    nid = add_narrative(ctx, consent=False)
    now = datetime(2030, 1, 2, tzinfo=UTC)
    with ctx.db.begin() as conn:
        first = consent_rows.mark_withdrawn(conn, nid, now=now, actor="kai", reason="asked")
    assert first.withdrawn_at is not None
    # The second read no row (before the first committed): its insert finds the first's.
    real = consent_rows.load_consent
    calls = []

    def stale_then_real(conn, narrative_id):
        calls.append(narrative_id)
        return None if len(calls) == 1 else real(conn, narrative_id)

    monkeypatch.setattr(consent_rows, "load_consent", stale_then_real)
    with ctx.db.begin() as conn:
        second = consent_rows.mark_withdrawn(
            conn, nid, now=now + timedelta(seconds=1), actor="fayez", reason="asked again"
        )
    assert second.withdrawn_at == first.withdrawn_at and len(calls) >= 2
    monkeypatch.undo()
    assert ledger.get_consent(ctx, nid).withdrawn_at == first.withdrawn_at


def test_the_second_withdrawal_withdraws_a_consent_recorded_meanwhile(any_db, monkeypatch):
    ctx = any_db
    nid = add_narrative(ctx)  # a consent is recorded (not withdrawn)
    real = consent_rows.load_consent
    calls = []

    def stale_then_real(conn, narrative_id):
        calls.append(narrative_id)
        return None if len(calls) == 1 else real(conn, narrative_id)

    monkeypatch.setattr(consent_rows, "load_consent", stale_then_real)
    now = datetime(2030, 1, 2, tzinfo=UTC)
    with ctx.db.begin() as conn:
        after = consent_rows.mark_withdrawn(conn, nid, now=now, actor="kai", reason="asked")
    assert after.withdrawn_at == now and after.given_by != "(none recorded)"


def test_ipv6_clients_are_counted_by_their_64_prefix(ctx):
    assert login_attempts.address_key("2001:db8:1:2:aaaa::1") == "2001:db8:1:2::/64"
    assert login_attempts.address_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert login_attempts.address_key("192.0.2.7") == "192.0.2.7"
    assert login_attempts.address_key("testclient") == "testclient"
    limiter = LoginLimiter(ctx, limit=3, address_limit=5)
    # A new address in the same /64 for every guess: still one client.
    waits = [limiter.acquire("kai", f"2001:db8:1:2::{i:x}").wait for i in range(1, 6)]
    assert waits[:3] == [0, 0, 0] and all(w > 0 for w in waits[3:])
    sprayed = [limiter.acquire(f"user{i}", f"2001:db8:1:2:{i:x}::9").wait for i in range(8)]
    assert any(w > 0 for w in sprayed)
    # Another /64 is another client.
    assert limiter.acquire("kai", "2001:db8:1:3::1").wait == 0
    # A success from any address of the /64 forgets that prefix's failures for the name.
    limiter.succeeded("kai", "2001:db8:1:2::ffff")
    assert limiter.acquire("kai", "2001:db8:1:2::1234").wait == 0
