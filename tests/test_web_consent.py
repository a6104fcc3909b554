"""Consent, anonymity and fidelity on the review page, in process: record and withdraw consent,
hide names, and the "edited quote" marker."""

from __future__ import annotations

import html
import re
from datetime import UTC, date, datetime, timedelta

import pytest

from narratives.policy import consent
from narratives.stages.draft import stage as drafting
from narratives.store import audit, delivery_queries, redactions
from narratives.workflow import review, scheduling, takedown
from narratives.workflow.channels import default_publishers
from narratives.workflow.publishing import publish_delivery
from tests.delivery_fixtures import add_draft
from tests.review_fixtures import SENTENCES, add_narrative, add_render, analysis_for, transcript_for
from tests.web_client import client_for, csrf, flash, post

QUOTE = "My grandmother said rest should not be something you buy."


def _drafts(ctx, nid):
    return {review.get_draft(ctx, i).channel: i for i in drafting.run(ctx, nid)}


def _consent_log(ctx, nid):
    with ctx.db.connect() as conn:
        return audit.history(conn, "consent", nid)


def _form(**overrides):
    data = {
        "given_by": "Amara O.",
        "method": "recording",
        "channels": ["rss"],
        "named": "0",
        "given_at": "",
        "expires_at": "2031-01-01",
        "notes": "<b>Asked</b> us to leave out her street.",
    }
    data.update(overrides)
    return data


def test_consent_form_records_consent_with_an_audit_row(ctx):
    client = client_for(ctx)
    nid = add_narrative(ctx, consent=False)
    ids = _drafts(ctx, nid)
    page = client.get(f"/drafts/{ids['rss']}").text
    assert "No consent recorded." in page
    assert re.search(r'<details class="panel" open>\s*<summary>Record consent', page)

    r = post(client, f"/drafts/{ids['rss']}/consent", _form())
    assert r.status_code == 303 and r.headers["location"] == f"/drafts/{ids['rss']}"
    c = consent.get_consent(ctx, nid)
    assert (c.given_by, c.method, c.channels, c.anonymous) == (
        "Amara O.",
        "recording",
        ("rss",),
        True,
    )
    assert c.expires_at == datetime(2031, 1, 1, tzinfo=UTC)
    assert c.notes == "<b>Asked</b> us to leave out her street."
    [entry] = _consent_log(ctx, nid)
    assert (entry["actor"], entry["action"], entry["before"]) == ("kai", "consent.set", None)
    assert entry["after"]["channels"] == ["rss"]

    page = client.get(f"/drafts/{ids['rss']}").text
    assert 'id="consent-status">Active<' in page and "no, anonymous" in page
    assert "&lt;b&gt;Asked&lt;/b&gt;" in page and "<b>Asked</b>" not in page
    assert 'value="2031-01-01"' in page and 'value="recording" selected' in page
    bsky = client.get(f"/drafts/{ids['bluesky']}").text
    assert "Consent does not cover bluesky." in bsky

    # Update: both channels, named. That allows more: an editor may not, an admin may. The
    # same date given keeps the recorded time of day.
    given = c.given_at
    wider = _form(channels=["bluesky", "rss"], named="1", given_at=f"{given:%Y-%m-%d}")
    r = post(client, f"/drafts/{ids['rss']}/consent", wider)
    assert r.status_code == 403 and "only an admin" in r.text
    assert consent.get_consent(ctx, nid).channels == ("rss",)
    client = client_for(ctx, user="ada", role="admin")
    post(client, f"/drafts/{ids['rss']}/consent", wider)
    c = consent.get_consent(ctx, nid)
    assert c.channels == ("bluesky", "rss") and not c.anonymous and c.given_at == given
    assert "follow the change" in flash(client, f"/drafts/{ids['rss']}")
    log = _consent_log(ctx, nid)
    assert [e["action"] for e in log] == ["consent.set", "consent.set"]
    assert log[1]["before"]["anonymous"] is True and log[1]["after"]["anonymous"] is False


def test_consent_form_refuses_bad_values_with_a_sentence(ctx):
    client = client_for(ctx, role="admin")  # the form names another giver: admins only
    nid = add_narrative(ctx)
    ids = _drafts(ctx, nid)
    before = consent.get_consent(ctx, nid)
    bad = [
        (_form(channels=[]), "Tick the channels"),
        (_form(channels=["rss", "fax"]), "Tick the channels"),
        (_form(given_by="  "), "Say who gave consent"),
        (_form(method="telepathy"), "how consent was given"),
        (_form(named=""), "may be named"),
        (_form(expires_at="31/01/2031"), "is not a date"),
        (_form(given_at="2020-05-01", expires_at="2020-01-01"), "expiry date must be after"),
        (_form(given_at="9999-12-31"), "is in the future"),
        (_form(given_at="1850-01-01"), "before 1900"),
        (_form(expires_at="9999-12-31"), "years ahead"),
        (_form(notes="x" * 4001), "invalid consent"),
    ]
    for data, message in bad:
        r = post(client, f"/drafts/{ids['rss']}/consent", data)
        assert r.status_code == 400, data
        assert message in r.text and "Traceback" not in r.text
    assert consent.get_consent(ctx, nid) == before


def test_withdraw_needs_the_confirm_box_then_takes_everything_down(ctx):
    client = client_for(ctx)
    nid = add_narrative(ctx)
    add_render(ctx, nid, "emotional-equity")
    ids = _drafts(ctx, nid)
    for draft_id in ids.values():
        review.approve(ctx, draft_id, actor="kai")
    waiting = scheduling.schedule(ctx, ids["bluesky"], at="2030-03-11 09:00", actor="kai")
    # The RSS item goes out for real (the feed is written), to be taken down below.
    out = scheduling.schedule(ctx, ids["rss"], at="2030-03-04 09:00", actor="kai")
    result = publish_delivery(ctx, out.id, default_publishers(ctx), now=out.scheduled_at)
    assert result.status == "published"
    feed_file = ctx.workspace.feeds_dir / "emotional-equity.xml"
    assert "Two lines at the dream clinic" in feed_file.read_text()

    page = client.get(f"/drafts/{ids['rss']}").text
    assert 'name="confirm" value="yes" required' in page
    r = post(client, f"/drafts/{ids['rss']}/consent/withdraw", {"reason": "She asked us"})
    assert r.status_code == 400 and "tick “I understand this deletes published posts”" in r.text
    assert consent.get_consent(ctx, nid).withdrawn_at is None
    r = post(client, f"/drafts/{ids['rss']}/consent/withdraw", {"confirm": "yes", "reason": ""})
    assert r.status_code == 400 and "reason" in r.text
    with ctx.db.connect() as conn:
        assert delivery_queries.get_delivery(conn, waiting.id).state == "scheduled"

    r = post(
        client,
        f"/drafts/{ids['rss']}/consent/withdraw",
        {"confirm": "yes", "reason": "She asked us by <email>"},
    )
    assert r.status_code == 200 and "Consent withdrawn" in r.text
    assert "nothing of this story is scheduled or published any more" in r.text
    assert re.search(rf'id="cancelled">1 \(deliveries {waiting.id}\)', r.text)
    assert re.search(rf'id="taken-down">1 \(deliveries {out.id}\)', r.text)
    assert 'id="feeds">emotional-equity<' in r.text
    assert "She asked us by &lt;email&gt;" in r.text
    with ctx.db.connect() as conn:
        assert delivery_queries.get_delivery(conn, waiting.id).state == "cancelled"
        assert delivery_queries.get_delivery(conn, out.id).state == "withdrawn"
    assert "Two lines at the dream clinic" not in feed_file.read_text()
    c = consent.get_consent(ctx, nid)
    assert c.withdrawn_at is not None and c.status() == "withdrawn"
    log = _consent_log(ctx, nid)
    assert ("kai", "consent.withdraw", "She asked us by <email>") in [
        (e["actor"], e["action"], e["detail"]) for e in log
    ]

    page = client.get(f"/drafts/{ids['bluesky']}").text
    assert 'id="consent-status">Withdrawn<' in page and 'id="withdraw-form"' not in page
    # Nothing can be scheduled again without a new consent.
    r = post(client, f"/drafts/{ids['bluesky']}/schedule", {"mode": "next"})
    assert r.status_code == 403 and "was withdrawn" in r.text
    # A new consent must be given after the withdrawal (by an admin: it allows more than the
    # withdrawn one); the form defaults to today.
    r = post(client, f"/drafts/{ids['bluesky']}/consent", _form(channels=["bluesky"]))
    assert r.status_code == 403
    client = client_for(ctx, user="ada", role="admin")
    post(client, f"/drafts/{ids['bluesky']}/consent", _form(channels=["bluesky"]))
    assert consent.get_consent(ctx, nid).status() == "active"


def _anonymous_story(ctx) -> str:
    sentences = list(SENTENCES)
    sentences[2] = (8.0, "My grandmother Rosalind said rest should not be something you buy.")
    quote = sentences[2][1]
    nid = add_narrative(
        ctx,
        transcript=transcript_for("x", sentences),
        analysis=analysis_for(quote={"text": quote, "raw": quote, "start": 8.0, "end": 12.0}),
        consent=False,
    )
    takedown.set_consent(
        ctx, nid, given_by="R.", method="form", channels=["bluesky", "rss"], actor="test"
    )
    return nid


def test_marked_names_are_listed_and_hidden_in_the_next_drafts(ctx):
    client = client_for(ctx)
    nid = _anonymous_story(ctx)
    ids = _drafts(ctx, nid)
    assert "Rosalind" in review.get_draft(ctx, ids["bluesky"]).posts[0]
    page = client.get(f"/drafts/{ids['bluesky']}").text
    assert "Nothing marked yet." in page and "still names" not in page

    r = post(client, f"/drafts/{ids['bluesky']}/hide", {"term": " Rosalind ", "kind": "name"})
    assert r.status_code == 303
    assert "“Rosalind” will be hidden" in flash(client, f"/drafts/{ids['bluesky']}")
    assert [(t.text, t.kind) for t in redactions.marked_terms(ctx, nid)] == [("Rosalind", "name")]
    with ctx.db.connect() as conn:
        [entry] = audit.history(conn, "narrative", nid)
    assert (entry["actor"], entry["action"]) == ("kai", "redaction.add")
    page = client.get(f"/drafts/{ids['bluesky']}").text
    assert '<span class="term">Rosalind</span>' in page and "marked by an editor" in page
    assert "This draft still names Rosalind" in page

    # The next generated drafts hide it; the page no longer warns, and an unedited draft
    # quoting the anonymised sentence is not an "edited quote".
    assert drafting.run(ctx, nid) == list(ids.values())
    for draft_id in ids.values():
        d = review.get_draft(ctx, draft_id)
        assert "Rosalind" not in str(d.content) and "[name]" in str(d.content)
    page = client.get(f"/drafts/{ids['bluesky']}").text
    assert "still names" not in page and 'id="quote-edited"' not in page
    # Editing the anonymised quote is caught too.
    posts = review.get_draft(ctx, ids["bluesky"]).posts
    assert "My grandmother [name] said rest" in posts[0]
    posts[0] = posts[0].replace("My grandmother [name] said", "Grandmother said")
    post(client, f"/drafts/{ids['bluesky']}/edit", {"text": "\n---\n".join(posts), "alt": "A"})
    assert 'id="quote-edited"' in client.get(f"/drafts/{ids['bluesky']}").text

    r = post(client, f"/drafts/{ids['bluesky']}/hide", {"term": "Lisbon", "kind": "country"})
    assert r.status_code == 400
    r = post(client, f"/drafts/{ids['bluesky']}/hide", {"term": "  ", "kind": "name"})
    assert r.status_code == 400
    post(client, f"/drafts/{ids['bluesky']}/unhide", {"term": "Rosalind"})
    assert redactions.marked_terms(ctx, nid) == []
    page = client.get(f"/drafts/{ids['bluesky']}").text
    assert "Nothing marked yet." in page and "“Rosalind” is no longer hidden." in page
    # A term that was never marked says so, rather than claiming it was unhidden.
    post(client, f"/drafts/{ids['bluesky']}/unhide", {"term": "Nobody"})
    assert "“Nobody” was not marked to hide." in client.get(f"/drafts/{ids['bluesky']}").text


def test_edited_quote_badge_appears_only_after_the_quote_changes(ctx):
    client = client_for(ctx)
    nid = add_narrative(ctx)
    ids = _drafts(ctx, nid)
    bsky = ids["bluesky"]
    draft = review.get_draft(ctx, bsky)
    assert QUOTE in draft.posts[0]
    assert 'id="quote-edited"' not in client.get(f"/drafts/{bsky}").text
    assert "edited quote" not in client.get("/").text

    # An edit elsewhere in the text keeps the quote: no badge.
    posts = [*draft.posts]
    posts[-1] = posts[-1] + " Thank you for listening."
    post(client, f"/drafts/{bsky}/edit", {"text": "\n---\n".join(posts), "alt": "A video."})
    assert review.get_draft(ctx, bsky).edited
    assert 'id="quote-edited"' not in client.get(f"/drafts/{bsky}").text

    # One word of the narrator's sentence changed: marked on the draft and in the queue.
    posts[0] = posts[0].replace("something you buy", "something you pay for")
    post(client, f"/drafts/{bsky}/edit", {"text": "\n---\n".join(posts), "alt": "A video."})
    page = client.get(f"/drafts/{bsky}").text
    assert 'id="quote-edited"' in page and "Edited quote: the draft no longer quotes" in page
    queue = client.get("/").text
    row = re.search(rf'href="/drafts/{bsky}".*?</td>', queue, re.S).group(0)
    assert "edited quote" in row
    assert "edited quote" not in re.search(rf'href="/drafts/{ids["rss"]}".*?</td>', queue).group(0)


NEW_POSTS = ["consent", "consent/withdraw", "hide", "unhide"]


@pytest.mark.parametrize("token", [None, "", "forged"])
def test_new_consent_forms_check_csrf(ctx, token):
    client = client_for(ctx)
    draft_id = add_draft(ctx)
    nid = review.get_draft(ctx, draft_id).narrative_id
    before = consent.get_consent(ctx, nid)
    data = {**_form(), "confirm": "yes", "reason": "forged", "term": "Rosalind"}
    if token is not None:
        data["csrf"] = token
    for action in NEW_POSTS:
        r = client.post(f"/drafts/{draft_id}/{action}", data=data)
        assert r.status_code == 403 and "security token" in r.text, action
    assert consent.get_consent(ctx, nid) == before
    assert redactions.marked_terms(ctx, nid) == []


def test_new_consent_routes_need_a_login(ctx):
    client = client_for(ctx, user=None)
    draft_id = add_draft(ctx)
    nid = review.get_draft(ctx, draft_id).narrative_id
    token = csrf(client)
    data = {**_form(), "confirm": "yes", "reason": "no login", "term": "Rosalind", "csrf": token}
    for action in NEW_POSTS:
        assert client.post(f"/drafts/{draft_id}/{action}", data=data).status_code == 401, action
    assert consent.get_consent(ctx, nid).withdrawn_at is None
    assert consent.get_consent(ctx, nid).given_by == "the narrator"


def test_dates_are_read_as_dates(ctx):
    client = client_for(ctx, role="admin")  # a recorded consent's date: admins only
    nid = add_narrative(ctx)
    ids = _drafts(ctx, nid)
    given = date.today() - timedelta(days=3)
    post(client, f"/drafts/{ids['rss']}/consent", _form(given_at=given.isoformat()))
    c = consent.get_consent(ctx, nid)
    assert c.given_at == datetime.combine(given, datetime.min.time(), tzinfo=UTC)


def test_a_narrower_consent_from_the_form_says_what_it_took_down(ctx):
    client = client_for(ctx)
    nid = add_narrative(ctx, consent=False)
    add_render(ctx, nid, "emotional-equity")
    ids = _drafts(ctx, nid)
    post(client, f"/drafts/{ids['rss']}/consent", _form(channels=["bluesky", "rss"]))
    review.approve(ctx, ids["rss"], actor="kai")
    out = scheduling.schedule(ctx, ids["rss"], at="2030-03-04 09:00", actor="kai")
    assert publish_delivery(ctx, out.id, default_publishers(ctx), now=out.scheduled_at).status == (
        "published"
    )
    # Narrowing is an editor's to do: to Bluesky only, which takes the feed item down.
    r = post(client, f"/drafts/{ids['rss']}/consent", _form(channels=["bluesky"]))
    assert r.status_code == 303
    assert "It covers less: 1 published post(s) taken down." in flash(
        client, f"/drafts/{ids['rss']}"
    )


@pytest.mark.parametrize("which", ["none", "summary", "quote", "both", "abstract"])
def test_guessed_sentence_ends_are_pointed_out(ctx, which):
    """An excerpt cut from unpunctuated words may stop mid-sentence: the page says which."""
    data = analysis_for()
    if which in ("summary", "both", "abstract"):
        data["summary"][1]["guessed"] = True
    if which in ("quote", "both"):
        data["quote"]["guessed"] = True
    if which == "abstract":  # the summary shown is then the model's, not the guessed excerpt
        data["abstract"] = "A narrator remembers two lines at a clinic."
    nid = add_narrative(ctx, analysis=data)
    page = client_for(ctx).get(f"/drafts/{_drafts(ctx, nid)['rss']}").text
    said = re.search(
        r'<p class="warning small" id="guessed-ends">Check where the ([^<]*?) start', page
    )
    expected = {
        "none": None,
        "abstract": None,
        "summary": "summary",
        "quote": "quote",
        "both": "summary and the quote",
    }[which]
    assert (said[1] if said else None) == expected


def test_show_marks_an_excerpt_with_guessed_ends(ctx):
    from click.testing import CliRunner

    from narratives.cli import cli

    plain = add_narrative(ctx)
    data = analysis_for()
    data["quote"]["guessed"] = True
    guessed = add_narrative(ctx, "story-2", analysis=data)

    def shown(nid: str) -> str:
        r = CliRunner().invoke(cli, ["show", nid], catch_exceptions=False)
        assert r.exit_code == 0, r.output
        return " ".join(r.output.split())

    assert "guessed" not in shown(plain)
    text = shown(guessed)
    # Beside the quote only (the summary's ends are sure).
    assert text.count("guessed") == 1
    assert "something you buy.” (8.0–11.2s) (sentence ends guessed: check them)" in text


@pytest.mark.parametrize("method", ["learnt", "description"])
def test_the_tags_card_shows_which_tags_apply_as_the_analysis_decided(ctx, method):
    """A tag scored by its description has its own threshold: the card shows the analysis's
    decision and the threshold it used, not the learnt one for every tag, nor the campaign's
    current one (the shipped campaign's is no longer the 0.55 this analysis used)."""
    data = analysis_for()
    fit = data["campaigns"]["emotional-equity"]
    fit["method"] = method
    fit["threshold"] = 0.45 if method == "description" else 0.55
    scores = {"equal-access": 0.81, "sleep-inequality": 0.5, "grief-and-healing": 0.12}
    fit["tags"] = [
        {"name": n, "score": v, "applies": v >= fit["threshold"]} for n, v in scores.items()
    ]
    nid = add_narrative(ctx, analysis=data)
    page = client_for(ctx).get(f"/drafts/{_drafts(ctx, nid)['rss']}").text
    rows = re.findall(r'<tr class="(on|off)">\s*<td><span class="tag">([^<]+)</span>', page)
    assert sorted(name for _, name in rows) == sorted(scores)
    applying = {name for kind, name in rows if kind == "on"}
    if method == "description":
        assert applying == {"equal-access", "sleep-inequality"}
        said = "a tag applies from a score of 0.45 (scored by the tags’ descriptions"
    else:
        assert applying == {"equal-access"}
        said = "a tag applies from a score of 0.55."
    assert said in html.unescape(page)
