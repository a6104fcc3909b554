"""Issue 19 without a network: reply and quote settings in campaign files (validated, naming
file and key), a draft's own choice on the review page (audited, back to review), and every
Bluesky limit checked before approval."""

from __future__ import annotations

import re

import pytest

from narratives.channels.bluesky.limits import MAX_ALT_GRAPHEMES, draft_problems
from narratives.core.campaigns import load_campaign_file
from narratives.core.errors import ConfigError, InvalidState, UsageError
from narratives.store import audit
from narratives.workflow import review
from tests.delivery_fixtures import add_draft, bluesky_content
from tests.review_fixtures import add_user
from tests.web_client import client_for, flash, post


def _campaign_with(workspace, gates_toml: str):
    path = workspace.campaigns_dir / "emotional-equity.toml"
    text = path.read_text()
    text = re.sub(
        r"\[channels\.bluesky\.gates\]\n(?:[^\[\n].*\n)*",
        f"[channels.bluesky.gates]\n{gates_toml}\n",
        text,
    )
    path.write_text(text)
    return path


def test_the_shipped_campaigns_gate_testimony(workspace):
    for path in sorted(workspace.campaigns_dir.glob("*.toml")):
        gates = load_campaign_file(path).channels.bluesky.gates
        assert gates.replies == ["followers"] and gates.quotes is False, path.name


@pytest.mark.parametrize(
    ("toml", "key", "says"),
    [
        ('replies = ["friends"]', "channels.bluesky.gates.replies", "unknown reply rule 'friends'"),
        ('replies = ["nobody", "followers"]', "channels.bluesky.gates.replies", "combined"),
        ('replies = ["lists"]\nlists = ["http://x"]', "channels.bluesky.gates.lists", "AT URI"),
        ('replies = ["lists"]', "channels.bluesky.gates", 'needs the lists'),
        ('replies = ["followers"]\nquote = false', "channels.bluesky.gates.quote", "Extra inputs"),
    ],
)  # fmt: skip
def test_a_bad_reply_rule_or_list_is_a_config_error_naming_file_and_key(workspace, toml, key, says):
    path = _campaign_with(workspace, toml)
    with pytest.raises(ConfigError) as err:
        load_campaign_file(path)
    message = str(err.value)
    assert str(path) in message
    assert f"  {key}:" in message, message
    assert says in message


def test_a_list_rule_with_lists_loads(workspace):
    uri = "at://did:plc:abcdefghijklmnopqrstuvwx/app.bsky.graph.list/3kabcdefghi22"
    path = _campaign_with(workspace, f'replies = ["lists", "mentioned"]\nlists = ["{uri}"]')
    gates = load_campaign_file(path).channels.bluesky.gates
    assert gates.lists == [uri] and gates.quotes is True


def test_every_bluesky_limit_is_a_problem_before_approval(ctx):
    add_user(ctx, "kai")
    content = bluesky_content("A short post.")
    content["alt"] = "é" * (MAX_ALT_GRAPHEMES + 1)
    draft_id = add_draft(
        ctx, "emotional-equity", "bluesky", content=content, state="pending_review"
    )
    with pytest.raises(InvalidState, match=r"alt text\) has 1001 characters; Bluesky allows 1000"):
        review.approve(ctx, draft_id, actor="kai")
    # Combining marks: 1,000 graphemes of two code points each still fit.
    review.edit(ctx, draft_id, {"alt": "e\u0301" * MAX_ALT_GRAPHEMES}, actor="kai")
    assert review.approve(ctx, draft_id, actor="kai").state == "approved"

    assert draft_problems({"posts": [{"text": "x"}], "langs": ["en", "fr", "de", "es"]}) == [
        "4 language tags; Bluesky allows 3"
    ]
    assert draft_problems({"posts": [{"text": "🇺🇦" * 301}]}) == [
        "post 1 has 301 characters; Bluesky allows 300"
    ]
    assert draft_problems({"posts": [{"text": "x"}], "labels": ["spoilers"]}) == [
        "not a Bluesky self-label: spoilers"
    ]
    lists = [f"at://did:plc:abc/app.bsky.graph.list/{i}" for i in range(5)]
    gates = {"replies": ["followers", "lists"], "lists": lists, "quotes": False}
    assert draft_problems({"posts": [{"text": "x"}], "gates": gates}) == [
        "6 reply rules (lists count one each); Bluesky allows 5"
    ]


def test_a_bad_gate_override_is_refused_by_edit(ctx):
    add_user(ctx, "kai")
    draft_id = add_draft(ctx, "emotional-equity", "bluesky", state="pending_review")
    with pytest.raises(UsageError, match="unknown reply rule 'friends'"):
        review.edit(ctx, draft_id, {"gates": {"replies": ["friends"]}}, actor="kai")


def test_the_review_page_sets_and_clears_a_drafts_reply_settings(ctx):
    draft_id = add_draft(ctx, "emotional-equity", "bluesky", state="pending_review")
    client = client_for(ctx)
    page = f"/drafts/{draft_id}"
    html = client.get(page).text
    assert 'id="gates-form"' in html
    assert "Campaign setting (followers)" in html and "Campaign setting (not allowed)" in html

    form = {"replies": "nobody", "quotes": "", "version": _version(client, page)}
    r = post(client, f"{page}/gates", form, page=page)
    assert r.status_code == 303
    assert "Reply and quote settings saved." in flash(client, page)
    draft = review.get_draft(ctx, draft_id)
    # Quotes were left to the campaign: its setting (off) is written with the reply choice.
    assert draft.content["gates"] == {"replies": ["nobody"], "lists": [], "quotes": False}
    assert '<option value="nobody" selected>' in client.get(page).text

    assert review.approve(ctx, draft_id, actor="kai").state == "approved"
    form = {"replies": "", "quotes": "on", "version": _version(client, page)}
    r = post(client, f"{page}/gates", form, page=page)
    assert r.status_code == 303
    assert "back in review" in flash(client, page)
    draft = review.get_draft(ctx, draft_id)
    assert draft.state == "pending_review"
    assert draft.content["gates"] == {"replies": ["followers"], "lists": [], "quotes": True}

    form = {"replies": "", "quotes": "", "version": _version(client, page)}
    r = post(client, f"{page}/gates", form, page=page)
    assert "gates" not in review.get_draft(ctx, draft_id).content
    with ctx.db.connect() as conn:
        edits = [h for h in audit.history(conn, "draft", draft_id) if h["action"] == "draft.edit"]
    assert len(edits) == 3 and all(h["actor"] == "kai" for h in edits)

    form = {"replies": "friends", "version": _version(client, page)}
    r = post(client, f"{page}/gates", form, page=page)
    assert r.status_code == 400


def _version(client, page: str) -> str:
    return re.search(r'name="version" value="([^"]+)"', client.get(page).text).group(1)
