"""Review rules (shared by web and CLI), users and passwords."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa

from narratives.core.errors import (
    ConsentError,
    InvalidState,
    NotFound,
    PermissionDenied,
    UsageError,
)
from narratives.stages.draft import stage as drafting
from narratives.store import audit, users
from narratives.store.schema import audit_log, tag_corrections
from narratives.workflow import review
from tests.review_fixtures import PASSWORD, add_narrative, add_user


@pytest.fixture
def drafted(ctx):
    """(bluesky draft id, rss draft id) for one narrative, and an editor `kai`."""
    add_user(ctx, "kai")
    nid = add_narrative(ctx)
    ids = drafting.run(ctx, nid)
    found = {review.get_draft(ctx, i).channel: i for i in ids}
    return found["bluesky"], found["rss"]


def _state(ctx, draft_id):
    return review.get_draft(ctx, draft_id).state


def test_approve_moves_pending_to_approved_and_is_audited(ctx, drafted):
    bsky, _ = drafted
    d = review.approve(ctx, bsky, actor="kai")
    assert d.state == "approved"
    entry = review.history(ctx, bsky)[-1]
    assert entry["actor"] == "kai" and entry["action"] == "draft.approve"
    assert entry["before"] == {"state": "pending_review"}
    assert entry["after"] == {"state": "approved"}
    assert entry["at"].tzinfo is not None


@pytest.mark.parametrize("first", ["approve", "reject", "request_changes"])
def test_only_a_draft_pending_review_can_be_approved(ctx, drafted, first):
    bsky, _ = drafted
    getattr(review, first)(ctx, bsky, actor="kai")
    with pytest.raises(InvalidState):
        review.approve(ctx, bsky, actor="kai")


def test_editing_an_approved_draft_sends_it_back_to_review(ctx, drafted):
    bsky, _ = drafted
    review.approve(ctx, bsky, actor="kai")
    d = review.edit(
        ctx, bsky, {"posts": ["A shorter, kinder first post.", "And a second."]}, actor="kai"
    )
    assert d.state == "pending_review"
    assert d.edited is True
    assert d.posts == ["A shorter, kinder first post.", "And a second."]
    assert d.generated != d.content  # the template's text is kept beside the edit
    entry = review.history(ctx, bsky)[-1]
    assert entry["action"] == "draft.edit"
    assert entry["before"]["state"] == "approved"
    assert entry["after"]["state"] == "pending_review"
    assert entry["after"]["content"]["posts"][0]["text"] == "A shorter, kinder first post."
    assert entry["before"]["content"]["posts"] != entry["after"]["content"]["posts"]


def test_an_edit_that_changes_nothing_is_not_audited(ctx, drafted):
    bsky, _ = drafted
    d = review.get_draft(ctx, bsky)
    n = len(review.history(ctx, bsky))
    review.edit(ctx, bsky, {"posts": d.posts}, actor="kai")
    assert len(review.history(ctx, bsky)) == n
    assert review.get_draft(ctx, bsky).edited is False


def test_an_over_long_post_can_be_saved_but_not_approved(ctx, drafted):
    bsky, _ = drafted
    review.edit(ctx, bsky, {"posts": ["x" * 301]}, actor="kai")
    d = review.get_draft(ctx, bsky)
    assert review.problems(d) == ["post 1 has 301 characters; Bluesky allows 300"]
    with pytest.raises(InvalidState, match="301"):
        review.approve(ctx, bsky, actor="kai")
    assert _state(ctx, bsky) == "pending_review"
    # 300 graphemes of emoji families are 7,500 bytes: Bluesky's 3,000-byte limit refuses them
    # (issue 19: every limit is checked before approval, not at the slot).
    review.edit(ctx, bsky, {"posts": ["👨\u200d👩\u200d👧\u200d👦" * 300]}, actor="kai")
    with pytest.raises(InvalidState, match="7500 bytes long; Bluesky allows 3000"):
        review.approve(ctx, bsky, actor="kai")
    # 120 of them: far more code points than graphemes, within both limits.
    review.edit(ctx, bsky, {"posts": ["👨\u200d👩\u200d👧\u200d👦" * 120]}, actor="kai")
    assert review.approve(ctx, bsky, actor="kai").state == "approved"


def test_reject_and_request_changes_rules(ctx, drafted):
    bsky, rss = drafted
    d = review.request_changes(ctx, bsky, actor="kai", reason="Too long")
    assert d.state == "changes_requested"
    assert review.history(ctx, bsky)[-1]["detail"] == "Too long"
    with pytest.raises(InvalidState):
        review.request_changes(ctx, bsky, actor="kai")
    assert review.reject(ctx, bsky, actor="kai").state == "rejected"
    with pytest.raises(InvalidState):
        review.reject(ctx, bsky, actor="kai")
    # An approval can be withdrawn by rejecting.
    review.approve(ctx, rss, actor="kai")
    assert review.reject(ctx, rss, actor="kai", reason="Withdrawn").state == "rejected"
    # Editing a rejected draft reopens it for review (and only approve approves it).
    d = review.edit(ctx, rss, {"title": "Reworked"}, actor="kai")
    assert d.state == "pending_review"


def test_unknown_or_disabled_users_cannot_act(ctx, drafted):
    bsky, _ = drafted
    with pytest.raises(PermissionDenied):
        review.approve(ctx, bsky, actor="mallory")
    users.disable_user(ctx, "kai", actor="test")
    with pytest.raises(PermissionDenied, match="disabled"):
        review.comment(ctx, bsky, "hello", actor="kai")
    assert _state(ctx, bsky) == "pending_review"


def test_comments_are_stored_and_audited(ctx, drafted):
    bsky, _ = drafted
    c = review.comment(ctx, bsky, "  Check the name in post 2.  ", actor="kai")
    assert c.body == "Check the name in post 2."
    assert [x.body for x in review.list_comments(ctx, bsky)] == ["Check the name in post 2."]
    assert review.history(ctx, bsky)[-1]["after"]["body"] == "Check the name in post 2."
    with pytest.raises(UsageError):
        review.comment(ctx, bsky, "   ", actor="kai")


def test_only_editable_fields_can_change(ctx, drafted):
    bsky, rss = drafted
    with pytest.raises(UsageError, match="video"):
        review.edit(ctx, bsky, {"video": "/etc/passwd"}, actor="kai")
    with pytest.raises(UsageError, match="link"):
        review.edit(ctx, rss, {"link": "https://evil.example"}, actor="kai")
    with pytest.raises(UsageError):
        review.edit(ctx, bsky, {"posts": []}, actor="kai")


def test_change_and_audit_row_commit_together(ctx, drafted, monkeypatch):
    bsky, _ = drafted

    def broken(*args, **kwargs):
        raise RuntimeError("audit table unavailable")

    monkeypatch.setattr(audit, "record", broken)
    with pytest.raises(RuntimeError):
        review.approve(ctx, bsky, actor="kai")
    with pytest.raises(RuntimeError):
        review.edit(ctx, bsky, {"posts": ["changed"]}, actor="kai")
    d = review.get_draft(ctx, bsky)
    assert d.state == "pending_review" and d.edited is False


def test_consent_hook_can_stop_an_approval(ctx, drafted, monkeypatch):
    """`_check_consent` is where issue 7's `narratives.policy.consent.check` is called."""
    bsky, _ = drafted
    seen = []

    def refuse(conn, draft):
        seen.append((draft.narrative_id, draft.channel))
        raise ConsentError("no consent for bluesky")

    monkeypatch.setattr(review, "_check_consent", refuse)
    with pytest.raises(ConsentError):
        review.approve(ctx, bsky, actor="kai")
    assert seen and seen[0][1] == "bluesky"
    assert _state(ctx, bsky) == "pending_review"
    assert review.history(ctx, bsky)[-1]["action"] == "draft.create"


def test_missing_draft_is_not_found(ctx, drafted):
    with pytest.raises(NotFound):
        review.approve(ctx, 9999, actor="kai")


def test_list_filters(ctx, drafted):
    bsky, rss = drafted
    review.approve(ctx, rss, actor="kai")
    assert [d.id for d in review.list_drafts(ctx, channel="bluesky")] == [bsky]
    assert [d.id for d in review.list_drafts(ctx, state="approved")] == [rss]
    assert {d.id for d in review.list_drafts(ctx, tag="equal-access")} == {bsky, rss}
    assert review.list_drafts(ctx, tag="grief-and-healing") == []
    assert review.list_drafts(ctx, campaign="neural-mandate") == []
    with pytest.raises(UsageError):
        review.list_drafts(ctx, state="published")


def test_rss_text_round_trip(ctx, drafted):
    _, rss = drafted
    d = review.get_draft(ctx, rss)
    changes = review.text_to_changes(d, review.content_to_text(d))
    assert changes == {k: d.content[k] for k in ("title", "summary", "content")}
    with pytest.raises(UsageError):
        review.text_to_changes(d, "only a title")
    d2 = review.edit_text(ctx, rss, "New title\n---\nNew summary\n---\nBody\n", actor="kai")
    assert (d2.content["title"], d2.content["summary"], d2.content["content"]) == (
        "New title",
        "New summary",
        "Body",
    )


@pytest.mark.slow
def test_tag_correction_is_stored_audited_and_rescored(ctx, drafted):
    nid = review.get_draft(ctx, drafted[0]).narrative_id
    review.correct_tag(ctx, nid, "emotional-equity", "grief-and-healing", True, actor="kai")
    rows = review.tag_corrections_for(ctx, nid)
    assert [(r["tag"], r["applies"], r["actor"]) for r in rows] == [
        ("grief-and-healing", True, "kai")
    ]
    with ctx.db.connect() as conn:
        entry = audit.history(conn, "narrative", nid)[-1]
    assert entry["action"] == "tag.correct" and entry["after"]["tag"] == "grief-and-healing"
    # The analysis was made again with the correction applied.
    analysis = json.loads((ctx.workspace.narrative_dir(nid) / "analysis.json").read_text())
    assert "grief-and-healing" in analysis["campaigns"]["emotional-equity"]["applied"]
    with pytest.raises(NotFound):
        review.correct_tag(ctx, nid, "emotional-equity", "no-such-tag", True, actor="kai")
    with ctx.db.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(tag_corrections)).scalar() == 1


# -- users -------------------------------------------------------------------------------------


def test_passwords_are_argon2id_and_authenticate(ctx):
    u = users.add_user(ctx, "fayez", PASSWORD, role="admin", actor="test")
    assert u.role == "admin" and u.is_admin
    with ctx.db.connect() as conn:
        digest = conn.execute(sa.text("select password_hash from users")).scalar()
    assert digest.startswith("$argon2id$") and PASSWORD not in digest
    assert users.authenticate(ctx, "fayez", PASSWORD).name == "fayez"
    assert users.authenticate(ctx, "fayez", PASSWORD + "x") is None
    assert users.authenticate(ctx, "nobody", PASSWORD) is None


def test_set_password_disable_and_enable(ctx):
    users.add_user(ctx, "kai", PASSWORD, actor="test")
    users.set_password(ctx, "kai", "another long passphrase", actor="admin")
    assert users.authenticate(ctx, "kai", PASSWORD) is None
    assert users.authenticate(ctx, "kai", "another long passphrase") is not None
    users.disable_user(ctx, "kai", actor="admin")
    assert users.authenticate(ctx, "kai", "another long passphrase") is None
    users.enable_user(ctx, "kai", actor="admin")
    assert users.authenticate(ctx, "kai", "another long passphrase") is not None
    with ctx.db.connect() as conn:
        actions = [
            r.action
            for r in conn.execute(sa.select(audit_log).where(audit_log.c.object_type == "user"))
        ]
    assert actions == ["user.add", "user.passwd", "user.disable", "user.enable"]


def test_user_validation(ctx):
    with pytest.raises(UsageError):
        users.add_user(ctx, "kai", "short", actor="test")
    with pytest.raises(UsageError):
        users.add_user(ctx, "Kai Mendoza", PASSWORD, actor="test")
    with pytest.raises(UsageError):
        users.add_user(ctx, "kai", PASSWORD, role="owner", actor="test")
    users.add_user(ctx, "kai", PASSWORD, actor="test")
    with pytest.raises(InvalidState):
        users.add_user(ctx, "kai", PASSWORD, actor="test")
    with pytest.raises(NotFound):
        users.set_password(ctx, "nobody", PASSWORD, actor="test")
